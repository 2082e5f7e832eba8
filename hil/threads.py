"""BLAS thread count for training and benchmarks.

The matrices of a board simulation are small (tens to a few thousand rows, batches of
16–64), and on a shared or loaded machine a second BLAS thread mostly waits for a core:
measured on 2 shared cores, small products ran 3.5–4× slower with two OpenBLAS threads
than with one.  The default is therefore one BLAS thread; override it with the config key
``train.blas_threads`` or the environment variable ``HIL_BLAS_THREADS`` (an integer, or
``auto`` to leave the library default).  The value in force is recorded in the run's
``metadata.json``.
"""

from __future__ import annotations

import os

ENV_VAR = "HIL_BLAS_THREADS"
DEFAULT_THREADS = 1

_limiter = None  # the active threadpool limit (kept alive so the limit stays in force)


def requested_threads(configured: int | str | None = None) -> int | None:
    """Thread count to apply: the config value, else ``$HIL_BLAS_THREADS``, else 1; None = library default.

    Raises ValueError for a value that is neither a positive integer nor ``auto``.
    """
    val = configured if configured is not None else os.environ.get(ENV_VAR, DEFAULT_THREADS)
    if isinstance(val, str):
        if val.strip().lower() == "auto":
            return None
        try:
            val = int(val)
        except ValueError:
            raise ValueError(f"{ENV_VAR}: expected a positive integer or 'auto', got {val!r}") from None
    if isinstance(val, bool) or not isinstance(val, int) or val < 1:
        raise ValueError(f"BLAS threads: expected a positive integer or 'auto', got {val!r}")
    return val


def configure_blas_threads(configured: int | str | None = None) -> dict:
    """Limit the BLAS thread pools of this process (see module docstring); returns :func:`blas_info`."""
    global _limiter
    import importlib

    from threadpoolctl import threadpool_limits

    # a limit applies to the libraries loaded when it is set: both are loaded first (numpy's BLAS for
    # the products written in Python, scipy's for those inside the compiled kernels), so that a
    # caller that configures threads before building a board limits the kernels' BLAS too
    for module in ("numpy", "scipy.linalg.cython_blas"):
        importlib.import_module(module)
    n = requested_threads(configured)
    if _limiter is not None:
        _limiter.restore_original_limits()
        _limiter = None
    if n is not None:
        _limiter = threadpool_limits(limits=n, user_api="blas")
    return blas_info(requested="auto" if n is None else n)


def blas_info(requested: int | str | None = None) -> dict:
    """BLAS libraries and their current thread counts (and the requested count), for run metadata."""
    from threadpoolctl import threadpool_info

    libs = [{"library": d.get("internal_api"), "version": d.get("version"), "threads": d.get("num_threads")}
            for d in threadpool_info() if d.get("user_api") == "blas"]
    return {"blas": libs, "blas_threads": requested}


def blas_summary() -> str:
    """One line: library, version and threads of each BLAS in use."""
    libs = blas_info()["blas"]
    return ", ".join(f"{d['library']} {d['version']} × {d['threads']} thread(s)" for d in libs) or "no BLAS found"
