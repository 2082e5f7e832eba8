"""Perturbation phases of a held ideal-diode operating point, solved on its active set.

Hardware linearization measures the operating point and then the same inputs with the
output ports moved by a small drive (±ε ŵ).  As long as no diode changes state, the node
voltages respond linearly to the port change on the operating point's active set A:

    e = e₀ + ê,   K_FF ê_F = (Δw G_out)_F,   ê_A = 0,

one linear solve with the operating point's matrix instead of a new active-set solve.
When the phases are the held points repeated (the + and − drives of every sample), one
factorisation per held point serves all its phases (:meth:`MaskedSolver.solve_columns`).

Nothing is assumed about the answer: a row is kept only if it keeps the active set's
signs (blocking voltage ≥ 0 at free nodes, diode current ≥ 0 at clamped ones, both to the
certificate's tolerance); rows where a diode flipped are solved by PDAS from the held set;
the whole batch then passes the same KKT certificate as every ideal solve.  If it does not,
the caller falls back to its general path.
"""

from __future__ import annotations

import time

import numpy as np

from hil.circuit.ideal import IdealSolution, _conclude, certify, solve_ideal
from hil.circuit.linsolve import MaskedSolver
from hil.circuit.report import SolveError


def _repeats(on: np.ndarray, e: np.ndarray) -> int:
    """k when the held rows are the first R/k rows repeated k times (k = 2 or 1), else 1."""
    R = on.shape[0]
    if R < 2 or R % 2:
        return 1
    half = R // 2
    return 2 if np.array_equal(on[:half], on[half:]) and np.array_equal(e[:half], e[half:]) else 1


def solve_held_set(solver: MaskedSolver, b: np.ndarray, db: np.ndarray, e0: np.ndarray, on0: np.ndarray,
                   s: np.ndarray, h: np.ndarray, scale_v: float, tol: float, fallback=None) -> IdealSolution | None:
    """Ideal-diode solution for sources ``b`` (R, n) in A, which differ by ``db`` from those of a held,
    certified operating point with node voltages ``e0`` (R, n) in V and active set ``on0``.

    Returns the certified solution (method ``"held-set"``, or ``"held-set→pdas"`` when some rows
    needed PDAS), or None when the batch could not be certified this way.
    """
    t0 = time.perf_counter()
    R, n = b.shape
    k = _repeats(on0, e0)
    if k == 2:
        half = R // 2
        de = solver.solve_columns(on0[:half], np.stack([db[:half], db[half:]], axis=2))
        de = np.concatenate([de[..., 0], de[..., 1]])
    else:
        de = solver.solve(on0, np.zeros(n), db)
    e = e0 + de
    K = solver.k_dense if solver.k_dense is not None else solver.k_sparse
    cert = certify(K, e, b, s, h, on0, scale_v)
    on, path, iters = on0, "held-set", 1
    if _worst(cert) > tol:
        # Rows that left the held set's signs (a diode flipped): PDAS from the held set.
        z, mu, scale_i = cert["z"], cert["mu"], cert["scale_i"]
        flipped = np.any((z < -tol * scale_v) & ~on0, axis=1) | np.any(mu < -tol * scale_i, axis=1)
        bad = np.flatnonzero(flipped)
        if not bad.size:
            return None
        try:
            sub = solve_ideal(solver, b[bad], s, h, on0[bad], scale_v, tol=tol, fallback=fallback)
        except SolveError:
            return None
        e[bad] = sub.e
        on = on0.copy()
        on[bad] = sub.on
        path, iters = "held-set→pdas", 1 + sub.report.iterations.get("pdas", 0)
        cert = certify(K, e, b, s, h, on, scale_v)
        if _worst(cert) > tol:
            return None
    if not np.isfinite(e).all():
        return None
    return _conclude(e, on, cert, batch=R, iterations=iters, path=path, stuck=[], tol=tol, scale_v=scale_v, t0=t0)


def _worst(cert: dict) -> float:
    """The largest scaled KKT residual of a certificate (inf when not a number)."""
    worst = max(cert["primal"], cert["dual"], cert["complementarity"], cert["kcl_rel"])
    return worst if np.isfinite(worst) else float("inf")
