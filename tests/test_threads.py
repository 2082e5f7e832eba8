"""BLAS thread control: parsing, applying, metadata."""

import json

import pytest

from hil.threads import blas_info, configure_blas_threads, requested_threads


def test_requested_threads_from_config_env_and_default(monkeypatch):
    monkeypatch.delenv("HIL_BLAS_THREADS", raising=False)
    assert requested_threads() == 1
    monkeypatch.setenv("HIL_BLAS_THREADS", "2")
    assert requested_threads() == 2
    assert requested_threads(3) == 3  # the config wins over the environment
    monkeypatch.setenv("HIL_BLAS_THREADS", "auto")
    assert requested_threads() is None
    for bad in ("zero", 0, -1, True):
        with pytest.raises(ValueError):
            requested_threads(bad)


def test_configure_limits_blas_and_reports_it(monkeypatch):
    monkeypatch.delenv("HIL_BLAS_THREADS", raising=False)
    try:
        info = configure_blas_threads(1)
        assert info["blas_threads"] == 1
        assert all(lib["threads"] == 1 for lib in info["blas"])
    finally:
        configure_blas_threads("auto")
    assert "blas" in blas_info()


def test_a_limit_set_before_any_board_exists_covers_the_kernels_blas_too():
    """In a fresh interpreter, threads configured first (as a benchmark does) also limit the BLAS the
    compiled kernels call (scipy's, loaded only when a kernel first runs): before, that one kept
    the library default of one thread per core."""
    import subprocess
    import sys

    code = ("import os; os.environ.pop('HIL_BLAS_THREADS', None)\n"
            "from hil.threads import configure_blas_threads\n"
            "info = configure_blas_threads(1)\n"
            "import json, scipy.linalg.cython_blas, threadpoolctl\n"
            "print(json.dumps({d['filepath']: d['num_threads'] for d in threadpoolctl.threadpool_info()\n"
            "                  if d['user_api'] == 'blas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    threads = json.loads(out)  # library file → threads
    assert threads and set(threads.values()) == {1}, threads


def test_train_records_threads_in_metadata_and_rejects_bad_values(tmp_path, monkeypatch, capsys):
    from hil.cli import main

    monkeypatch.setenv("HIL_BLAS_THREADS", "1")
    args = ["train", "sim-xor", "--quiet", "--runs-dir", str(tmp_path), "--set", "train.epochs=1",
            "--set", "output.plots=false"]
    try:
        assert main(args) == 0
        meta = json.loads(next(tmp_path.glob("*/metadata.json")).read_text())
        assert meta["blas_threads"] == 1 and meta["blas"]
        monkeypatch.setenv("HIL_BLAS_THREADS", "many")
        capsys.readouterr()
        assert main(args) == 2
        assert "HIL_BLAS_THREADS" in capsys.readouterr().err
        assert main(args + ["--set", "train.blas_threads=0"]) == 2
        assert "train.blas_threads" in capsys.readouterr().err
    finally:
        configure_blas_threads("auto")
