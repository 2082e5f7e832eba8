"""Ideal-diode equilibrium: primal–dual active-set (PDAS) solver for the nodal LCP.

Problem (physics.md §2.2), per sample, with K the grounded Laplacian (SPD M-matrix),
b the nodal source currents, diode orientation s and reference h:

    K e - b = s * mu,   mu >= 0,   z = s (e - h) >= 0,   mu * z = 0.

mu is the diode current (A) in its forward direction; z the diode's blocking voltage (V).
PDAS converges monotonically in finitely many steps for M-matrices; a visited-set guard
falls back to Peaceman–Rachford splitting and a final PDAS polish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hil.circuit.linsolve import MaskedSolver
from hil.circuit.report import SolveError, SolveReport, certificate_note
from hil.kernels import ideal_diagonal_kernel


@dataclass
class IdealSolution:
    e: np.ndarray  # (B, n) node voltages, V
    mu: np.ndarray  # (B, n) diode forward currents, A
    on: np.ndarray  # (B, n) bool, diode conducting (clamped)
    report: SolveReport


def _residual(K, e: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Nodal KCL residual K e − b (B, n) in amperes, for a dense or sparse K or a diagonal K given as (n,)."""
    if isinstance(K, np.ndarray):
        return K * e - b if K.ndim == 1 else e @ K.T - b
    return (K @ e.T).T - b


def certify(K, e: np.ndarray, b: np.ndarray, s: np.ndarray, h: np.ndarray, on: np.ndarray, scale_v: float,
            residual: np.ndarray | None = None) -> dict:
    """Scaled KKT residuals of a candidate solution (primal, dual, complementarity, KCL).

    Vectorised over the batch.  ``K`` is the nodal matrix (dense or sparse) or, for
    uncoupled nodes, its diagonal (n,); ``residual`` (K e − b, A) may be passed when known.
    """
    r = _residual(K, e, b) if residual is None else residual
    mu = np.where(on, s * r, 0.0)
    z = s * (e - h)
    diag = K if K.ndim == 1 else K.diagonal()
    if not e.size:
        return {"primal": 0.0, "dual": 0.0, "complementarity": 0.0, "kcl_abs": 0.0, "kcl_rel": 0.0,
                "mu": mu, "z": z, "scale_i": 1e-300}
    scale_i = max(float(np.abs(b).max()), float(np.abs(diag * e).max()), 1e-300)
    kcl = float(np.abs(np.where(on, 0.0, r)).max())
    return {
        "primal": max(float(-z.min()), 0.0) / scale_v,
        "dual": max(float(-mu.min()), 0.0) / scale_i,
        "complementarity": float(np.abs(mu * z).max()) / scale_v / scale_i,
        "kcl_abs": kcl,
        "kcl_rel": kcl / scale_i,
        "mu": mu,
        "z": z,
        "scale_i": scale_i,
    }


def _conclude(e, on, cert, *, batch: int, iterations: int, path: str, stuck: list, tol: float, scale_v: float,
              t0: float) -> IdealSolution:
    """Report of a finished active-set solve; raises :class:`SolveError` unless certified."""
    worst = max(cert["primal"], cert["dual"], cert["complementarity"], cert["kcl_rel"])
    if not np.isfinite(e).all():  # NaN would slip through max(); a non-finite answer is never certified
        worst = float("inf")
    z, mu = cert["z"], cert["mu"]
    scale_i = cert["scale_i"]
    if z.size:
        margin_min = float(np.maximum(z / scale_v, mu / scale_i).min())
        degenerate = int(np.count_nonzero((z <= 1e-12 * scale_v) & (np.abs(mu) <= 1e-12 * scale_i)))
    else:
        margin_min, degenerate = None, 0
    report = SolveReport(
        converged=not stuck and worst <= tol,
        method=path,
        iterations={"pdas": iterations},
        batch=batch,
        kcl_residual_a=cert["kcl_abs"],
        kcl_residual_rel=cert["kcl_rel"],
        kkt_primal=cert["primal"],
        kkt_dual=cert["dual"],
        kkt_complementarity=cert["complementarity"],
        n_on_mean=float(np.count_nonzero(on) / max(batch, 1)),
        degenerate=degenerate,
        min_margin=margin_min,
        wall_time_s=time.perf_counter() - t0,
        failed_samples=stuck,
    )
    if not report.converged:
        reason = (
            f"active set did not settle for samples {stuck[:10]}"
            if stuck
            else certificate_note(worst, tol)
        )
        report.note = reason
        raise SolveError("ideal-diode equilibrium not certified: " + reason, report)
    return IdealSolution(e, mu, on, report)  # the certificate's mu is already 0 where a diode is off


def orientation_sign(s: np.ndarray) -> int:
    """+1 or −1 when every diode has that orientation, 0 when they are mixed (or there are none)."""
    if s.size and np.all(s == s.flat[0]) and s.flat[0] in (-1, 1):
        return int(s.flat[0])
    return 0


class _MarginsOnRead(SolveReport):
    """A report whose two diagnostics, ``min_margin`` and ``degenerate``, are formed when first read.

    They describe a certified solution (how far the closest diode is from its kink, how many
    sit on it) and play no part in accepting it; the arrays they come from are kept.
    """

    def _margins(self) -> None:
        d = self.__dict__
        source = d.pop("_margin_source", None)
        if source is not None:
            z, mu, scale_v, scale_i = source
            margin = np.maximum(z * (1.0 / scale_v), mu * (1.0 / scale_i))
            d["min_margin"] = float(margin.min()) if margin.size else None  # (an empty batch has no diode)
            # both ≤ 1e-12 scaled (on a certified solution mu ≥ −tol, so this is also |mu| ≤ 1e-12)
            d["degenerate"] = int(np.count_nonzero(margin <= 1e-12))

    @property
    def min_margin(self) -> float | None:
        self._margins()
        return self.__dict__.get("min_margin")

    @min_margin.setter
    def min_margin(self, value) -> None:
        self.__dict__["min_margin"] = value

    @property
    def degenerate(self) -> int:
        self._margins()
        return self.__dict__.get("degenerate", 0)

    @degenerate.setter
    def degenerate(self, value) -> None:
        self.__dict__["degenerate"] = value


_NO_ROWS = np.empty((0, 0))  # "no such array" for the kernel's optional (R, n) arguments


def _float_c(a) -> np.ndarray:
    """``a`` as a C-contiguous float64 array (itself when it already is one)."""
    if isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float64)


def _per_node(a, n: int) -> np.ndarray:
    """A scalar or per-node value as a contiguous float64 array (n,)."""
    if isinstance(a, np.ndarray) and a.shape == (n,) and a.dtype == np.float64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)))


def solve_ideal_diagonal(diag: np.ndarray, b: np.ndarray, s: np.ndarray, h: np.ndarray, scale_v: float = 1.0,
                         tol: float = 1e-12, sign: int | None = None, h_zero: bool | None = None,
                         delta: np.ndarray | None = None) -> IdealSolution:
    """The ideal-diode LCP when K = diag(``diag``) (uncoupled hidden nodes), for a batch ``b`` (B, n) in A.

    Every node is a one-variable LCP: e = b/K_kk unless that violates the clamp, then
    e = h and the diode carries the rest — exactly where PDAS lands after its first step.
    Solve, KKT certificate and report are fused: the residuals of :func:`certify` (primal
    z ≥ 0, dual mu ≥ 0, complementarity mu·z = 0, KCL at the free nodes; scaled by the
    voltage scale and by the current scale max(|b|, |K e|)) are formed and reduced for the
    whole batch in one compiled pass (:func:`hil.kernels.ideal_diagonal_kernel`).  ``sign`` is
    :func:`orientation_sign` of ``s`` when the caller knows it.

    ``delta`` (R, n), when given, makes a batch of R rows whose nodal currents are
    ``b[r mod B₀] + delta[r]`` (b (B₀, n) held, R a multiple of B₀): the perturbation phases
    of held sources, solved without forming the tiled right-hand side.
    """
    t0 = time.perf_counter()
    if sign is None:
        sign = orientation_sign(s)
    if h_zero is None:
        h_zero = not np.any(h)
    if delta is None:
        B, n = b.shape
        delta = _NO_ROWS
    else:
        B, n = delta.shape
        if b.shape[1] != n or b.shape[0] == 0 or B % b.shape[0]:
            raise ValueError(f"solve_ideal_diagonal: {B} shifted rows of {n} nodes do not repeat a held batch "
                             f"of shape {b.shape}")
        delta = _float_c(delta)
    if not B or not n:  # nothing to solve: an empty, trivially certified batch
        empty = np.zeros((B, n))
        return IdealSolution(empty, empty.copy(), np.zeros((B, n), bool),
                             SolveReport(True, "pdas", {"pdas": 0}, batch=B, kkt_primal=0.0, kkt_dual=0.0,
                                         kkt_complementarity=0.0, wall_time_s=time.perf_counter() - t0))
    return _diagonal_solution(_per_node(diag, n), _float_c(b), _per_node(s, n), _per_node(h, n), scale_v, tol,
                             sign == 1 and h_zero, delta, t0)


def scaled_certificate(lo_z: float, lo_mu: float, kcl_abs: float, comp_abs: float, ke_abs: float, b_abs: float,
                       finite: bool, scale_v: float) -> tuple[float, float, float, float, float, float]:
    """The scaled KKT residuals from a compiled certificate pass's batch reductions (inside compiled
    code: :func:`hil.kernels.scaled_residuals`, the same operations).

    ``lo_z`` (V) and ``lo_mu`` (A) are the smallest blocking voltage and diode current,
    ``kcl_abs`` (A) and ``comp_abs`` (V·A) the largest KCL residual at the free nodes and
    mu·z, ``ke_abs``/``b_abs`` (A) the largest |K_kk e_k| and |b|; ``finite`` is False when
    any entry was not finite. Returns (current scale in A, primal, dual, KCL and
    complementarity residuals relative to the scales, and the worst of them, inf when not finite).
    """
    scale_i = max(b_abs, ke_abs, 1e-300)
    primal = max(-lo_z, 0.0) / scale_v
    dual = max(-lo_mu, 0.0) / scale_i
    kcl_rel = kcl_abs / scale_i
    complementarity = comp_abs / scale_v / scale_i
    worst = max(primal, dual, complementarity, kcl_rel) if finite else float("inf")
    return scale_i, primal, dual, kcl_rel, complementarity, worst


def _diagonal_solution(diag: np.ndarray, b: np.ndarray, s: np.ndarray, h: np.ndarray, scale_v: float, tol: float,
                      relu: bool, delta: np.ndarray, t0: float | None = None) -> IdealSolution:
    """:func:`solve_ideal_diagonal` for arguments already in the kernel's form: contiguous float
    arrays ``diag``, ``s``, ``h`` (n,), ``b`` (B₀, n), ``delta`` (R, n) or with no rows, a non-empty
    batch; ``relu`` when every s = 1 and h = 0 (then z is e itself)."""
    if t0 is None:
        t0 = time.perf_counter()
    B, n = delta.shape if delta.shape[0] else b.shape
    # One compiled pass: closed form, the certificate's z (blocking voltage), mu (diode
    # current), the KCL residual at the free nodes and mu·z, reduced for the whole batch.
    # A node without any conductance (zero diagonal, possible only for Shockley starting
    # points) gives a non-finite voltage that the certificate rejects.
    e = np.empty((B, n))
    z = _NO_ROWS if relu else np.empty((B, n))
    mu = np.empty((B, n))
    on = np.empty((B, n), dtype=np.bool_)
    lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, n_on, finite = ideal_diagonal_kernel(b, delta, diag, s, h, e, z, mu, on)
    if relu:
        z = e
    scale_i, primal, dual, kcl_rel, complementarity, worst = scaled_certificate(
        lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, finite, scale_v)
    converged = worst <= tol
    report = _MarginsOnRead(
        converged=converged, method="pdas", iterations={"pdas": 1}, batch=B, kcl_residual_a=kcl_abs,
        kcl_residual_rel=kcl_rel, kkt_primal=primal, kkt_dual=dual, kkt_complementarity=complementarity,
        n_on_mean=n_on / B, wall_time_s=time.perf_counter() - t0,
    )
    report.__dict__["_margin_source"] = (z, mu, scale_v, scale_i)
    if not converged:
        report.note = certificate_note(worst, tol)
        raise SolveError("ideal-diode equilibrium not certified: " + report.note, report)
    return IdealSolution(e, mu, on, report)


def solve_ideal(
    solver: MaskedSolver,
    b: np.ndarray,
    s: np.ndarray,
    h: np.ndarray,
    warm_on: np.ndarray | None = None,
    scale_v: float = 1.0,
    max_iter: int = 50,
    tol: float = 1e-12,
    fallback=None,
) -> IdealSolution:
    """Solve the ideal-diode LCP for a batch of right-hand sides ``b`` (B, n) in amperes.

    ``warm_on`` (B, n) seeds the active (conducting) set, e.g. from the previous sample
    or the operating point of a perturbation phase.  ``fallback(b_subset, on_subset)``
    returns a better starting set for samples on which PDAS cycles.
    Raises :class:`SolveError` if the KKT certificate exceeds ``tol``.
    """
    t0 = time.perf_counter()
    K = solver.k_dense if solver.k_dense is not None else solver.k_sparse
    B, n = b.shape
    diag = K.diagonal()
    if warm_on is None:
        e0 = solver.solve(np.zeros((B, n), bool), h, b)
        on = s * (e0 - h) < 0
    else:
        on = warm_on.copy()
    e = np.zeros((B, n))
    active = np.arange(B)
    iters = 0
    seen: list[set[bytes]] = [set() for _ in range(B)]
    cycled: list[int] = []
    path = "pdas"
    while active.size and iters < max_iter:
        iters += 1
        e[active] = solver.solve(on[active], h, b[active])
        mu = np.where(on[active], s * _residual(K, e[active], b[active]), 0.0)
        z = s * (e[active] - h)
        new_on = (mu - diag * z) > 0
        same = np.all(new_on == on[active], axis=1)
        still = []
        for i_local, bidx in enumerate(active):
            if same[i_local]:
                continue
            key = np.packbits(new_on[i_local]).tobytes()
            if key in seen[bidx]:
                cycled.append(int(bidx))
                continue
            seen[bidx].add(key)
            still.append(i_local)
        on[active[still]] = new_on[still]
        active = active[still]
    stuck = sorted(set(cycled) | set(active.tolist()))
    if stuck and fallback is not None:
        path = "pdas→pr→pdas"
        idx = np.array(stuck)
        on[idx] = fallback(b[idx], on[idx])
        sub = solve_ideal(solver, b[idx], s, h, on[idx], scale_v, max_iter, tol, None)
        e[idx], on[idx] = sub.e, sub.on
        iters += sub.report.iterations.get("pdas", 0)
        stuck = []
    cert = certify(K, e, b, s, h, on, scale_v)
    # One refinement pass against rounding in ill-conditioned systems.
    if max(cert["primal"], cert["dual"], cert["complementarity"], cert["kcl_rel"]) > tol and not stuck:
        resid = np.where(on, 0.0, _residual(K, e, b))
        e = e - solver.solve(on, np.zeros_like(h), resid)
        cert = certify(K, e, b, s, h, on, scale_v)
    return _conclude(e, on, cert, batch=B, iterations=iters, path=path, stuck=stuck, tol=tol, scale_v=scale_v, t0=t0)
