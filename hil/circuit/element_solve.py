"""Equilibrium solvers for any registered node element (:mod:`hil.circuit.laws`).

KCL with element law F: ``K e − b + F(e) = 0`` (K the SPD nodal matrix, S; b the nodal
source currents, A).

* Piecewise-linear elements: a primal–dual active-set method over several regions per node
  (clamped at the lower end, clamped at the upper end, or on one of the linear segments).
  Given the regions, one linear solve gives e; the new region of node k is where the
  resolvent σ_{1/c_k}(e_k + λ_k/c_k) lands, λ = b − K e the current the element must carry
  and c_k = K_kk.  For one-sided clamps this is the PDAS of Hintermüller–Ito–Kunisch.  A
  repeated region set or too many iterations falls back to MON Peaceman–Rachford with the
  element's resolvent, followed by one active-set polish.  Accepted only with a certificate
  (domain, dual and KCL residuals, scaled) ≤ ``tol``.
* Smooth elements: damped Newton with the element's own voltage limiting and backtracking,
  source stepping on failure; converged only when every update and KCL residual is within
  tolerance and no limiting was active.

Both return ``(e, region_or_None, g_d, report)`` or raise :class:`SolveError`.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hil.circuit.laws.base import CLAMP_HI, CLAMP_LO, NodeElement
from hil.circuit.report import SolveError, SolveReport

DENSE_LIMIT = 600


def _dense(K) -> np.ndarray:
    return K.toarray() if sp.issparse(K) else np.asarray(K)


def _matvec(K, e: np.ndarray) -> np.ndarray:
    return e @ K.T if not sp.issparse(K) else (K @ e.T).T


def _singular(batch: int) -> SolveError:
    """The error of a singular nodal system (``batch`` samples): a node whose equilibrium is not unique."""
    report = SolveReport(False, "linear solve", batch=batch)
    report.note = ("the nodal matrix is singular: a hidden node, or group of coupled nodes, without any conductance "
                   "to a source, rail, output port or ground, whose element carries no current there, floats and has "
                   "no unique equilibrium")
    return SolveError("equilibrium not unique", report)


def solve_shifted(K, clamped: np.ndarray, value: np.ndarray, shift: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (K + diag(shift)) e = rhs on free nodes with e = value on clamped nodes, per sample.

    ``clamped``, ``value``, ``shift``, ``rhs``: (B, n).  Dense batched solve up to
    ``DENSE_LIMIT`` nodes, sparse LU per distinct (clamp, shift) pattern above.
    """
    B, n = rhs.shape
    value = np.where(clamped, value, 0.0)
    rhs = rhs - _matvec(K, value)  # move the clamped values to the right-hand side
    if n <= DENSE_LIMIT:
        Kd = _dense(K)
        M = np.broadcast_to(Kd, (B, n, n)).copy()
        idx = np.arange(n)
        M[:, idx, idx] += shift
        free = ~clamped
        M *= free[:, :, None] & free[:, None, :]
        M[:, idx, idx] += clamped
        r = np.where(clamped, 0.0, rhs)
        try:
            e = np.linalg.solve(M, r[..., None])[..., 0]
        except np.linalg.LinAlgError:
            raise _singular(B) from None
    else:
        Ks = sp.csc_matrix(K)
        e = np.empty((B, n))
        cache: dict = {}
        for i in range(B):
            f = np.flatnonzero(~clamped[i])
            key = (clamped[i].tobytes(), shift[i].tobytes())
            if key not in cache:
                try:
                    cache[key] = spla.splu((Ks[f][:, f] + sp.diags(shift[i, f])).tocsc())
                except RuntimeError:  # "Factor is exactly singular"
                    raise _singular(B) from None
            e[i] = 0.0
            if f.size:
                e[i, f] = cache[key].solve(rhs[i, f])
    return np.where(clamped, value, e)


def _certificate(K, law, e, region, b, scale_v):
    """Scaled domain, dual and KCL residuals and the current scale (A)."""
    lam = b - _matvec(K, e)  # current the element carries out of each node
    f, _ = law.current(e)
    diag = K.diagonal() if sp.issparse(K) else np.diag(K)
    scale_i = max(float(np.abs(b).max(initial=0.0)), float(np.abs(diag * e).max(initial=0.0)), 1e-300)
    free = region >= 0
    lo_s, hi_s = law.bounds(region)
    primal = np.where(free, np.maximum(lo_s - e, 0) + np.maximum(e - hi_s, 0), 0.0)
    f_lo = law.current(np.broadcast_to(law.lo, e.shape))[0] if np.any(np.isfinite(law.lo)) else 0 * e
    f_hi = law.current(np.broadcast_to(law.hi, e.shape))[0] if np.any(np.isfinite(law.hi)) else 0 * e
    dual = np.where(region == CLAMP_LO, np.maximum(lam - f_lo, 0), 0.0) + np.where(region == CLAMP_HI, np.maximum(f_hi - lam, 0), 0.0)
    kcl = np.abs(np.where(free, lam - f, 0.0))
    return {"primal": float(primal.max(initial=0.0)) / scale_v, "dual": float(dual.max(initial=0.0)) / scale_i,
            "kcl_abs": float(kcl.max(initial=0.0)), "kcl_rel": float(kcl.max(initial=0.0)) / scale_i,
            "lam": lam, "scale_i": scale_i}


def at_kinks(law, e: np.ndarray, lam: np.ndarray, scale_v: float, scale_i: float, rel: float = 1e-12) -> int:
    """How many nodes (over all samples) sit exactly on a kink of their law, where the network is
    not differentiable: on an interior breakpoint whose two segments differ in slope, or at a
    clamp (finite domain end) carrying no current beyond its segment's (the clamp just touching).
    ``e`` node voltages (V), ``lam`` the current each element carries (A); "exactly" is within
    ``rel`` of the voltage and current scales."""
    tv, ti = rel * scale_v, rel * scale_i
    at = np.zeros(e.shape, bool)
    for j in range(law.kinks.shape[1]):
        bends = law.slopes[:, j] != law.slopes[:, j + 1]
        at |= bends & (np.abs(e - law.kinks[:, j]) <= tv)
    for end in (law.lo, law.hi):
        finite = np.isfinite(end)
        if finite.any():
            at_end = np.where(finite, end, 0.0)
            f_end = law.current(np.broadcast_to(at_end, e.shape))[0]
            at |= finite & (np.abs(e - at_end) <= tv) & (np.abs(lam - f_end) <= ti)
    return int(np.count_nonzero(at))


def _solve_regions(K, law, region, b):
    clamped = region < 0
    value = np.where(region == CLAMP_LO, law.lo, np.where(region == CLAMP_HI, law.hi, 0.0))
    g, icpt = law.coefficients(region)
    g = np.where(clamped, 0.0, g)
    return solve_shifted(K, clamped, value, g, b - np.where(clamped, 0.0, icpt))


def solve_piecewise(K, b: np.ndarray, element: NodeElement, scale_v: float, tol: float = 1e-12,
                    warm_region: np.ndarray | None = None, max_iter: int = 50):
    """Equilibrium of a piecewise-linear element network; returns (e, region, g_d, report)."""
    t0 = time.perf_counter()
    law = element.law()
    b = np.atleast_2d(b)
    diag = K.diagonal() if sp.issparse(K) else np.diag(_dense(K))
    loose = ~(diag > 0)  # nodes tied to nothing but their element (every conductance programmed to 0 S)
    if loose.any():
        # unique only where the element conducts on its whole domain (e.g. linear with g_lin > 0); elsewhere any
        # voltage of a zero-current segment or clamp is an equilibrium
        if np.any(loose & ~law.conducts_everywhere()):
            raise _singular(b.shape[0])
        diag = np.where(loose, law.slopes.max(axis=1), diag)  # the resolvent's step for such a node
    if warm_region is not None and warm_region.shape == b.shape:
        region = warm_region.copy()
    else:
        e0 = solve_shifted(K, np.zeros(b.shape, bool), 0 * b, np.broadcast_to(np.where(loose, diag, 0.0), b.shape), b)
        region = law.resolvent_region(e0, diag)
    path, its = ["active-set"], {"active-set": 0}
    seen = [set() for _ in range(b.shape[0])]
    todo = np.ones(b.shape[0], bool)
    e = np.zeros_like(b)
    stuck: list[int] = []
    for it in range(max_iter):
        its["active-set"] = it + 1
        rows = np.flatnonzero(todo)
        e[rows] = _solve_regions(K, law, region[rows], b[rows])
        lam = b[rows] - _matvec(K, e[rows])
        new = law.resolvent_region(e[rows] + lam / diag, diag)
        done = np.all(new == region[rows], axis=1)
        for i, r in enumerate(rows):
            if not done[i]:
                key = new[i].tobytes()
                if key in seen[r]:
                    stuck.append(int(r))
                    done[i] = True
                seen[r].add(key)
        region[rows] = np.where(done[:, None], region[rows], new)
        todo[rows[done]] = False
        if not todo.any():
            break
    stuck += [int(i) for i in np.flatnonzero(todo)]
    if stuck:  # cycle or too many iterations: MON Peaceman–Rachford, then one active-set polish
        path += ["pr", "active-set"]
        rows = np.array(sorted(set(stuck)))
        z, n_pr = peaceman_rachford_elements(K, b[rows], element, tol=1e-14)
        its["pr"] = n_pr
        reg = law.resolvent_region(z + (b[rows] - _matvec(K, z)) / diag, diag)
        region[rows] = reg
        e[rows] = _solve_regions(K, law, reg, b[rows])
    cert = _certificate(K, law, e, region, b, scale_v)
    ok = max(cert["primal"], cert["dual"], cert["kcl_rel"]) <= tol
    g, _ = law.coefficients(region)
    g_d = np.where(region < 0, 0.0, g)
    report = SolveReport(bool(ok), "→".join(path), its, batch=b.shape[0], kcl_residual_a=cert["kcl_abs"],
                         kcl_residual_rel=cert["kcl_rel"], kkt_primal=cert["primal"], kkt_dual=cert["dual"],
                         kkt_complementarity=0.0, n_on_mean=float((region < 0).sum(axis=1).mean()),
                         degenerate=at_kinks(law, e, cert["lam"], scale_v, cert["scale_i"]) if ok else 0,
                         wall_time_s=time.perf_counter() - t0)
    if not ok:
        report.note = (f"certificate primal {cert['primal']:.1e}, dual {cert['dual']:.1e}, "
                       f"KCL {cert['kcl_rel']:.1e} relative exceeds {tol:.0e}")
        raise SolveError(f"{element.name} active-set solve not certified", report)
    return e, region, g_d, report


def peaceman_rachford_elements(K, b: np.ndarray, element: NodeElement, step: float | None = None,
                               tol: float = 1e-13, max_iter: int = 100_000) -> tuple[np.ndarray, int]:
    """MON Peaceman–Rachford in circuit variables with the element's resolvent σ_s (s in Ω).

    ``z = σ_s(ξ); ξ½ = 2z − ξ; z½ = (I + sK)⁻¹(ξ½ + s b); ξ = 2z½ − ξ½``.  Converges for any s > 0.
    """
    Kd = _dense(K)
    n = Kd.shape[0]
    if step is None:
        step = 1.0 / float(np.mean(np.diag(Kd)))
    V = np.linalg.inv(np.eye(n) + step * Kd)
    xi = np.zeros_like(b)
    z_old = None
    for it in range(1, max_iter + 1):
        z, _ = element.activation(xi, step)
        xh = 2 * z - xi
        zh = (xh + step * b) @ V.T
        xi = 2 * zh - xh
        if z_old is not None and np.max(np.abs(z - z_old)) <= tol * (1 + np.max(np.abs(z))):
            return z, it
        z_old = z
    raise SolveError("Peaceman–Rachford did not converge", SolveReport(False, "pr", {"pr": max_iter}))


def solve_smooth(K, b: np.ndarray, element: NodeElement, e0: np.ndarray | None = None, reltol: float = 1e-9,
                 vntol: float = 1e-12, abstol: float = 1e-15, max_iter: int = 100):
    """Damped Newton with element limiting on K e − b + F(e) = 0; returns (e, None, g_d, report)."""
    t0 = time.perf_counter()
    b = np.atleast_2d(b)
    path, its = ["newton"], {}
    e, g, ok, info = _newton(K, b, element, np.zeros_like(b) if e0 is None else e0.copy(), reltol, vntol, abstol, max_iter)
    its["newton"] = info["iterations"]
    if not ok:  # source stepping from the exact solution 0 at zero sources
        path.append("source")
        lam, step, e = 0.0, 0.1, np.zeros_like(b)
        n_steps = 0
        while lam < 1.0:
            trial = min(1.0, lam + step)
            e_t, g, ok_t, info = _newton(K, trial * b, element, e, reltol, vntol, abstol, max_iter)
            n_steps += 1
            if ok_t:
                lam, e, step = trial, e_t, step * 2
            else:
                step /= 2
                if step < 1e-6:
                    break
        its["source"] = n_steps
        ok = lam >= 1.0
    report = SolveReport(bool(ok), "→".join(path), its, batch=b.shape[0], max_step_v=info["step"],
                         kcl_residual_a=info["kcl_abs"], kcl_residual_rel=info["kcl_rel"],
                         wall_time_s=time.perf_counter() - t0)
    if not ok:
        report.note = "Newton and source stepping failed"
        raise SolveError(f"{element.name} Newton solve did not converge", report)
    return e, None, g, report


def _newton(K, b, element, e, reltol, vntol, abstol, max_iter):
    Kd_diag = K.diagonal() if sp.issparse(K) else np.diag(K)
    f, g = element.current(e)
    r = _matvec(K, e) - b + f
    info = {"iterations": 0, "step": np.inf, "kcl_abs": np.inf, "kcl_rel": np.inf}
    for it in range(1, max_iter + 1):
        delta = solve_shifted(K, np.zeros(e.shape, bool), 0 * e, g, -r)
        e_new, limited = element.limit(e + delta, e)
        # Backtracking per sample (a limited step is taken as it is, as SPICE does).
        s = np.ones((e.shape[0], 1))
        norm0 = np.linalg.norm(r, axis=1)
        accept = np.any(limited, axis=1)
        trial = e_new.copy()
        f_t, g_t = element.current(trial)
        r_t = _matvec(K, trial) - b + f_t
        for _ in range(21):
            accept |= np.linalg.norm(r_t, axis=1) <= (1 - 1e-4 * s[:, 0]) * norm0 + 1e-300
            if accept.all():
                break
            s = np.where(accept[:, None], s, s / 2)
            trial = e + s * (e_new - e)
            f_t, g_t = element.current(trial)
            r_t = _matvec(K, trial) - b + f_t
        step = np.abs(trial - e)
        e, f, g, r = trial, f_t, g_t, r_t
        scale = np.abs(Kd_diag * e) + np.abs(b) + np.abs(f)
        info.update(iterations=it, step=float(step.max(initial=0.0)), kcl_abs=float(np.abs(r).max(initial=0.0)),
                    kcl_rel=float(np.abs(r).max(initial=0.0) / max(float(scale.max(initial=0.0)), 1e-300)))
        if (not limited.any() and np.all(step <= reltol * np.abs(e) + vntol)
                and np.all(np.abs(r) <= reltol * scale + abstol)):
            return e, g, True, info
    return e, g, False, info
