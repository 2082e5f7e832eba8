"""Shockley-diode equilibrium: damped Newton with junction limiting, gmin and source stepping.

KCL residual per node (physics.md §2.3):  r(e) = K e - b + F(e),  J(e) = K + diag(g_d(e)),
with F the current each diode draws out of its node.  A sample is converged only when
(i) every Newton update satisfies |de| <= reltol*max(|e|, |e_prev|) + vntol,
(ii) every residual satisfies |r| <= reltol*(largest current at the node) + abstol, and
(iii) no junction limiting was active in the last iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hil.circuit.elements import DiodeBank, limit_junction
from hil.circuit.linsolve import solve_diagonal_shift
from hil.circuit.report import SolveError, SolveReport


@dataclass
class NewtonTolerances:
    """Convergence tolerances: relative, node voltage (V), current (A); iteration limits."""

    reltol: float = 1e-10
    vntol: float = 1e-12
    abstol: float = 1e-15
    max_iter: int = 100
    max_backtracks: int = 20


@dataclass
class ShockleySolution:
    e: np.ndarray  # (B, n) node voltages, V
    current: np.ndarray  # (B, n) current drawn out of each node by its diode, A
    g_d: np.ndarray  # (B, n) incremental diode conductance, S
    report: SolveReport


class _System:
    def __init__(self, k_dense, k_sparse, diodes: DiodeBank):
        self.k_dense = k_dense
        self.k_sparse = k_sparse
        self.diodes = diodes
        self.diag = k_sparse.diagonal()

    def scaled(self, lam: float) -> "_System":
        """The same network with every source, diode references included, scaled by ``lam``."""
        from dataclasses import replace

        return _System(self.k_dense, self.k_sparse, replace(self.diodes, v_ref=lam * self.diodes.v_ref))

    def matvec(self, e):
        return e @ self.k_dense.T if self.k_dense is not None else (self.k_sparse @ e.T).T

    def residual(self, e, b, gshunt=0.0):
        f, g = self.diodes.node_current(e)
        return self.matvec(e) - b + f + gshunt * e, f, g

    def current_scale(self, e, b, f):
        """Largest current magnitude at each node (A): sources, diagonal term, diode."""
        return np.maximum(np.maximum(np.abs(b), np.abs(self.diag * e)), np.abs(f))


def _residual_within(sys: _System, tol: NewtonTolerances, e, b, r, f) -> np.ndarray:
    """Per sample: every KCL residual within reltol·(largest current at the node) + abstol."""
    return np.all(np.abs(r) <= tol.reltol * sys.current_scale(e, b, f) + tol.abstol, axis=1)


def _newton(sys: _System, b, e, tol: NewtonTolerances, gshunt: float = 0.0):
    """Run damped Newton on every sample; returns (e, converged mask, iterations, last step)."""
    d = sys.diodes
    s, vref = d.orientation, d.v_ref
    vte, vcrit = d.vte, d.critical_voltage()
    B = b.shape[0]
    done = np.zeros(B, bool)
    last_step = np.zeros(B)
    it = 0
    r, f, g = sys.residual(e, b, gshunt)
    for it in range(1, tol.max_iter + 1):
        act = np.flatnonzero(~done)
        if act.size == 0:
            it -= 1
            break
        ea, ra = e[act], r[act]
        delta = -solve_diagonal_shift(sys.k_dense, sys.k_sparse, g[act] + gshunt, ra)
        e_try = ea + delta
        # Junction limiting on each diode's branch voltage V_D = s (v_ref - e).
        vd_old = s * (vref - ea)
        vd_new = s * (vref - e_try)
        vd_lim, limited = limit_junction(vd_new, vd_old, vte, vcrit)
        e_try = np.where(limited, vref - s * vd_lim, e_try)
        step = e_try - ea
        # Backtracking on the residual norm.
        norm0 = np.linalg.norm(ra, axis=1)
        t = np.ones(act.size)
        r_new, f_new, g_new = sys.residual(e_try, b[act], gshunt)
        conv_r = _residual_within(sys, tol, e_try, b[act], r_new, f_new)
        for _ in range(tol.max_backtracks):
            bad = np.linalg.norm(r_new, axis=1) > (1.0 - 1e-4 * t) * norm0
            bad &= norm0 > 0
            # A residual already within tolerance is at the rounding floor: never backtrack there.
            bad &= ~conv_r
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
            e_try = ea + t[:, None] * step
            r_new, f_new, g_new = sys.residual(e_try, b[act], gshunt)
            conv_r = _residual_within(sys, tol, e_try, b[act], r_new, f_new)
        dv = e_try - ea
        conv_v = np.all(np.abs(dv) <= tol.reltol * np.maximum(np.abs(e_try), np.abs(ea)) + tol.vntol, axis=1)
        conv = conv_v & conv_r & ~limited.any(axis=1)
        e[act], r[act], f[act], g[act] = e_try, r_new, f_new, g_new
        last_step[act] = np.max(np.abs(dv), axis=1)
        done[act[conv]] = True
    return e, done, it, last_step


def initial_guess(sys: _System, b: np.ndarray, ideal_solve) -> np.ndarray:
    """Piecewise-linear start: ideal diodes whose clamp sits one diode drop beyond v_ref.

    The drop is first guessed from the mean source current, then corrected node by node
    from the current each clamped diode carries in that piecewise-linear solution
    (V = n V_T ln(1 + I/I_s)), which removes most of Newton's early iterations.
    """
    d = sys.diodes
    i_s = d.i_s_at_temperature
    scale = max(float(np.abs(b).mean()), 1e-15)
    v_on = d.vte * np.log1p(0.1 * scale / i_s)
    h = d.v_ref - d.orientation * v_on
    e = ideal_solve(b, h)
    current = d.orientation * (sys.matvec(e) - b)  # forward current of each clamped diode, A
    clamped = np.abs(e - h) <= 1e-12 * np.maximum(np.abs(h), 1.0)
    drop = d.vte * np.log1p(np.maximum(current, 0.0) / i_s)
    return np.where(clamped, d.v_ref - d.orientation * drop, e)


def solve_shockley(
    k_dense,
    k_sparse,
    diodes: DiodeBank,
    b: np.ndarray,
    ideal_solve,
    e0: np.ndarray | None = None,
    tol: NewtonTolerances | None = None,
    lambda_min: float | None = None,
) -> ShockleySolution:
    """Solve the Shockley network for a batch ``b`` (B, n) of nodal source currents (A).

    ``ideal_solve(b, h)`` returns ideal-diode node voltages for clamp levels ``h`` and is
    used for the piecewise-linear initial guess.  Raises :class:`SolveError` when neither
    Newton nor gmin stepping nor source stepping converges.
    """
    t0 = time.perf_counter()
    tol = tol or NewtonTolerances()
    sys = _System(k_dense, k_sparse, diodes)
    B = b.shape[0]
    e = initial_guess(sys, b, ideal_solve) if e0 is None else e0.copy()
    e, done, it, last = _newton(sys, b, e, tol)
    path, iters = "newton", {"newton": it}
    if not done.all():
        idx = np.flatnonzero(~done)
        e_sub, ok, its = _gmin_stepping(sys, b[idx], e[idx], tol)
        path += "→gmin"
        iters["gmin"] = its
        e[idx] = e_sub
        done[idx] = ok
        if not done.all():
            idx = np.flatnonzero(~done)
            e_sub, ok, its = _source_stepping(sys, b[idx], tol)
            path += "→source"
            iters["source"] = its
            e[idx] = e_sub
            done[idx] = ok
    r, f, g = sys.residual(e, b)
    scale = sys.current_scale(e, b, f)
    report = SolveReport(
        converged=bool(done.all()),
        method=path,
        iterations=iters,
        batch=B,
        max_step_v=float(last.max(initial=0.0)),
        kcl_residual_a=float(np.abs(r).max(initial=0.0)),
        kcl_residual_rel=float((np.abs(r) / np.maximum(scale, 1e-300)).max(initial=0.0)),
        n_on_mean=float(np.sum(np.abs(f) > 1e3 * diodes.i_s_at_temperature) / max(B, 1)),
        wall_time_s=time.perf_counter() - t0,
        failed_samples=np.flatnonzero(~done).tolist(),
    )
    lam_min = lambda_min if lambda_min is not None else _lambda_min(k_dense, k_sparse)
    if lam_min > 0:
        report.error_bound_v = float(np.linalg.norm(r, axis=1).max(initial=0.0) / lam_min)
    if not report.converged:
        report.note = "damped Newton, gmin stepping and source stepping all failed"
        raise SolveError("Shockley-diode equilibrium did not converge", report)
    return ShockleySolution(e, f, g, report)


def _lambda_min(k_dense, k_sparse) -> float:
    """Smallest eigenvalue of the grounded Laplacian (S), for the a-posteriori error bound."""
    if k_dense is not None:
        return float(np.linalg.eigvalsh(k_dense)[0])
    from scipy.sparse.linalg import eigsh

    try:
        return float(eigsh(k_sparse, k=1, sigma=0, which="LM", return_eigenvectors=False)[0])
    except Exception:  # no bound rather than a wrong one
        return 0.0


def _gmin_stepping(sys: _System, b, e, tol: NewtonTolerances):
    """Continuation on a shunt conductance from every node to ground (S), reduced 10x per stage."""
    g = 1e-2 * float(sys.diag.max())
    total = 0
    factor = 10.0
    while True:
        e_try, ok, it, _ = _newton(sys, b, e.copy(), tol, gshunt=g)
        total += it
        if ok.all():
            e = e_try
            if g == 0.0:
                return e, ok, total
            g = g / factor if g / factor > 1e-16 * sys.diag.max() else 0.0
        else:
            if factor < 1.5:
                return e_try, np.zeros(b.shape[0], bool), total
            g *= factor
            factor = np.sqrt(factor)
            g /= factor


def _source_stepping(sys: _System, b, tol: NewtonTolerances):
    """Continuation on the source scale lambda in [0, 1] (inputs, ports and diode references);
    lambda = 0 has the exact solution e = 0 because F(0) = 0."""
    lam, step = 0.0, 0.1
    e = np.zeros_like(b)
    total = 0
    while lam < 1.0:
        nxt = min(1.0, lam + step)
        e_try, ok, it, _ = _newton(sys.scaled(nxt), nxt * b, e.copy(), tol)
        total += it
        if ok.all():
            e, lam, step = e_try, nxt, step * 2
        else:
            step /= 2
            if step < 1e-6:
                return e, np.zeros(b.shape[0], bool), total
    return e, np.ones(b.shape[0], bool), total
