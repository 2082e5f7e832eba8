"""Ideal-diode equilibrium of networks with sparse hidden↔hidden coupling, in compiled kernels.

The general active-set solver (:func:`hil.circuit.ideal.solve_ideal`) runs its PDAS loop in
Python and a batched CG per step; for the sparse networks of training (a few hundred to a few
thousand hidden nodes, coupling degree ~4) most of its time was Python overhead per CG
iteration.  Here the whole PDAS loop with its CG solves runs per sample in one compiled kernel
(:func:`hil.circuit.coupled_kernels.pdas_cg_kernel`):

* operating points start from the uncoupled closed form (every node its own LCP, coupling
  left out), perturbation phases from the held operating point's active set and voltages;
* each PDAS step's CG starts from the previous step's voltages;
* samples the kernel cannot finish (CG out of iterations, PDAS not settled) go to the general
  solver (batched CG, then sparse LU per active set in a byte-bounded cache, then
  Peaceman–Rachford), never returned unfinished;
* the whole batch then passes the same KKT certificate as every ideal solve, formed from a
  fresh K e − b (for settled samples in the kernel's last pass, for samples the general solver
  answered by :func:`hil.circuit.coupled_kernels.coupled_certificate_kernel`); if it does not,
  the general solver answers the whole batch and certifies (or raises) itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from hil.circuit.coupled_kernels import SETTLED, coupled_certificate_kernel, pdas_cg_kernel
from hil.circuit.ideal import IdealSolution, _MarginsOnRead, _float_c, _per_node, scaled_certificate, solve_ideal
from hil.circuit.linsolve import MaskedSolver
from hil.circuit.report import SolveError, certificate_note

#: Relative tolerance of each CG solve, ||r_F||₂ ≤ CG_RTOL·||rhs_F||₂ (as the batched CG of linsolve).
CG_RTOL = 1e-14

#: PDAS steps before a sample is handed to the general solver.
MAX_PDAS = 50


def max_cg_iterations(n: int) -> int:
    """CG iterations allowed per linear solve on n nodes before the sample falls back."""
    return int(20 * math.sqrt(n) + 100)


def solve_ideal_coupled(k_csr: sp.csr_matrix, diag: np.ndarray, b: np.ndarray, s: np.ndarray, h: np.ndarray,
                        scale_v: float, tol: float = 1e-12, warm_on: np.ndarray | None = None,
                        warm_e: np.ndarray | None = None, general: MaskedSolver | None = None,
                        fallback=None, held: bool = False) -> IdealSolution:
    """Ideal-diode node voltages for nodal currents ``b`` (B, n) in A on a sparse coupled K (S).

    ``k_csr``: K as a CSR matrix (float64 values); ``diag`` (n,) its diagonal; ``s`` (n,) diode
    orientation ±1, ``h`` (n,) clamp levels in V; ``scale_v`` the voltage scale (V) of the
    certificate.  ``warm_on`` (B, n) / ``warm_e`` (B, n, V): start active set and voltages
    (``held``: they are the held operating point of these inputs, reported as ``held-set``; in an
    even batch whose halves repeat the held point, the − phases start from the + phases'
    answers reflected about it).
    ``general``: the masked solver of the same K for samples the kernel cannot finish and
    for a batch whose certificate fails; ``fallback``: the general solver's cycling fallback.
    Raises :class:`SolveError` when no path certifies the batch.
    """
    t0 = time.perf_counter()
    B, n = b.shape
    if k_csr.shape != (n, n) or np.shape(diag) != (n,):
        raise ValueError(f"solve_ideal_coupled: K {k_csr.shape} and diagonal {np.shape(diag)} do not fit {n} nodes")
    if warm_on is not None and (np.shape(warm_on) != (B, n) or (warm_e is not None and np.shape(warm_e) != (B, n))):
        raise ValueError(f"solve_ideal_coupled: warm start of shape {np.shape(warm_on)} for a batch of shape {(B, n)}")
    s_f, h_f = _per_node(s, n), _per_node(h, n)
    b = _float_c(b)
    cold = warm_on is None
    on = np.empty((B, n), dtype=np.bool_) if cold else np.array(warm_on, dtype=np.bool_, order="C")
    if cold:
        e = np.empty((B, n))
    elif warm_e is not None:
        e = np.array(warm_e, dtype=np.float64, order="C")
    else:
        e = np.where(on, h_f[None, :], 0.0)
    status = np.empty(B, dtype=np.int64)
    z = np.empty((B, n))
    mu = np.empty((B, n))
    indptr, indices, data = k_csr.indptr, k_csr.indices, k_csr.data
    diag_f = _per_node(diag, n)
    reductions, counts = pdas_cg_kernel(indptr, indices, data, diag_f, b, s_f, h_f, on, e, cold, held, CG_RTOL,
                                        max_cg_iterations(n), MAX_PDAS, status, z, mu)
    return conclude_coupled(k_csr, diag_f, b, s_f, h_f, scale_v, tol, on, e, z, mu, status, reductions, counts, held,
                            lambda: warm_on, None if general is None else lambda: general, fallback, t0)


def conclude_coupled(k_csr: sp.csr_matrix, diag: np.ndarray, b: np.ndarray, s: np.ndarray, h: np.ndarray,
                     scale_v: float, tol: float, on: np.ndarray, e: np.ndarray, z: np.ndarray, mu: np.ndarray,
                     status: np.ndarray, reductions: tuple, counts: tuple, held: bool,
                     restart: Callable[[], np.ndarray | None], general: Callable[[], MaskedSolver] | None, fallback,
                     t0: float) -> IdealSolution:
    """The certified solution from a :func:`~hil.circuit.coupled_kernels.pdas_cg_kernel` pass over ``b`` (B, n), A.

    ``on``, ``e``, ``z``, ``mu``, ``status`` are the kernel's outputs and ``reductions``,
    ``counts`` what it returned; ``diag``, ``s``, ``h`` the per-node float arrays it read
    (S, ±1, V); ``held``: it started from a held operating point.  Rows the kernel did not
    settle go to the general masked solver ``general()`` (with its cycling ``fallback``) and get the
    same certificate from a fresh K e; when the batch's KKT certificate still exceeds
    ``tol`` at voltage scale ``scale_v`` (V), the general solver answers the whole batch,
    started from ``restart()`` (the warm active set, or None).  Raises :class:`SolveError`
    when no path certifies the batch.
    """
    B, n = b.shape
    indptr, indices, data = k_csr.indptr, k_csr.indices, k_csr.data
    (lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, n_on, finite), (steps, cg_total, unsettled) = reductions, counts
    path = "held-set" if held else "pdas"
    if held and steps > 1:
        path += "→pdas"  # some diode flipped against the held set: PDAS went on from it
    iterations = {"pdas": steps, "cg": cg_total}
    if unsettled:
        rows = np.flatnonzero(status != SETTLED)
        if general is None:
            raise SolveError("coupled ideal-diode solve: kernel did not finish and no general solver was given",
                             _MarginsOnRead(False, path, iterations, batch=B, failed_samples=rows.tolist()))
        sub = solve_ideal(general(), b[rows], s, h, None, scale_v, tol=tol, fallback=fallback)
        e[rows], on[rows] = sub.e, sub.on
        path += "→" + sub.report.method
        # their certificate, formed with the same residuals from a fresh K e
        zs, ms = np.empty((rows.size, n)), np.empty((rows.size, n))
        lz, lm, kc, cp, ke, ba, cnt, fin = coupled_certificate_kernel(indptr, indices, data, diag, b[rows], s, h,
                                                                     e[rows], on[rows], zs, ms)
        z[rows], mu[rows] = zs, ms
        lo_z, lo_mu, kcl_abs, comp_abs = min(lo_z, lz), min(lo_mu, lm), max(kcl_abs, kc), max(comp_abs, cp)
        ke_abs, b_abs, n_on, finite = max(ke_abs, ke), max(b_abs, ba), n_on + cnt, finite and fin
    scale_i, primal, dual, kcl_rel, complementarity, worst = scaled_certificate(
        lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, finite, scale_v)
    if not worst <= tol:
        if general is None:
            raise SolveError(f"coupled ideal-diode solve not certified: {certificate_note(worst, tol)}",
                             _MarginsOnRead(False, path, iterations, batch=B))
        sol = solve_ideal(general(), b, s, h, restart(), scale_v, tol=tol, fallback=fallback)  # raises if not certified
        sol.report.method = path + "→" + sol.report.method
        return sol
    report = _MarginsOnRead(
        converged=True, method=path, iterations=iterations, batch=B, kcl_residual_a=kcl_abs,
        kcl_residual_rel=kcl_rel, kkt_primal=primal, kkt_dual=dual, kkt_complementarity=complementarity,
        n_on_mean=n_on / max(B, 1), wall_time_s=time.perf_counter() - t0,
    )
    report.__dict__["_margin_source"] = (z, mu, scale_v, scale_i)
    return IdealSolution(e, mu, on, report)
