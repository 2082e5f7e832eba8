"""Shockley-diode equilibrium: damped Newton with junction limiting, gmin and source stepping.

KCL residual per node (physics.md §2.3):  r(e) = K e - b + F(e),  J(e) = K + diag(g_d(e)),
with F the current each diode draws out of its node.  A sample is converged only when
(i) every Newton update satisfies |de| <= reltol*max(|e|, |e_prev|) + vntol,
(ii) every residual satisfies |r| <= reltol*(largest current at the node) + abstol, and
(iii) no junction limiting was active in the last iteration.

Uncoupled nodes (K diagonal, a single crossbar layer) need no Newton iteration on the
network: each node is a diode + series resistance driven through the node's Thevenin
equivalent, a loop with a closed form (:func:`uncoupled_start`).  That answer is accepted
only if it passes the tests of :func:`newton_certificate` (the Newton update from it and its
KCL residual both within the tolerances above), evaluated afresh for the whole batch in one
compiled pass (:func:`uncoupled_certificate`, :mod:`hil.circuit.shockley_kernels`); samples
that fail them continue with damped Newton and the fallbacks, exactly as without the fast path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hil.circuit.elements import DiodeBank, limit_junction
from hil.circuit.linsolve import solve_diagonal_shift
from hil.circuit.report import SolveError, SolveReport
from hil.circuit.shockley_kernels import certificate_kernel, loop_arguments_kernel, loop_closed_form_kernel


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
    def __init__(self, k_dense, k_sparse, diodes: DiodeBank, diag: np.ndarray | None = None):
        self.k_dense = k_dense
        self.k_sparse = k_sparse
        self.diodes = diodes
        self.diag = k_sparse.diagonal() if diag is None else diag
        #: K is diagonal (uncoupled nodes): linear solves are divisions, nodes are independent.
        self.uncoupled = k_sparse.nnz == np.count_nonzero(self.diag)

    def scaled(self, lam: float) -> "_System":
        """The same network with every source, diode references included, scaled by ``lam``."""
        from dataclasses import replace

        return _System(self.k_dense, self.k_sparse, replace(self.diodes, v_ref=lam * self.diodes.v_ref), self.diag)

    def matvec(self, e):
        if self.uncoupled:
            return e * self.diag
        return e @ self.k_dense.T if self.k_dense is not None else (self.k_sparse @ e.T).T

    def newton_step(self, g, r):
        """The Newton update (K + diag(g))⁻¹ r per sample (V), for conductances g and residuals r (B, n)."""
        if self.uncoupled:
            return r / (self.diag + g)
        return solve_diagonal_shift(self.k_dense, self.k_sparse, g, r)

    def residual(self, e, b, gshunt=0.0, junction_start=None):
        f, g = self.diodes.node_current(e, junction_start)
        return self.matvec(e) - b + f + gshunt * e, f, g

    def current_scale(self, e, b, f):
        """Largest current magnitude at each node (A): sources, diagonal term, diode."""
        return np.maximum(np.maximum(np.abs(b), np.abs(self.diag * e)), np.abs(f))


def _residual_within(sys: _System, tol: NewtonTolerances, e, b, r, f) -> np.ndarray:
    """Per sample: every KCL residual within reltol·(largest current at the node) + abstol."""
    return np.all(np.abs(r) <= tol.reltol * sys.current_scale(e, b, f) + tol.abstol, axis=1)


def newton_certificate(sys: _System, tol: NewtonTolerances, e: np.ndarray, b: np.ndarray,
                       junction_start: np.ndarray | None = None):
    """Per sample (B,): True where damped Newton would stop at ``e`` without moving it.

    Checks the convergence tests of :func:`_newton` at ``e`` itself: the Newton update from
    ``e`` satisfies |de| <= reltol·|e| + vntol at every node, and every KCL residual is
    within reltol·(largest current at the node) + abstol.  Such an update is far below the
    2·nV_T that junction limiting needs, so (iii) holds as well.  Returns the mask, the
    residual r, diode currents F and conductances g at ``e`` and the update size (V) per sample.
    ``junction_start`` (V) starts the series-resistance solves (only where that converges fast).
    """
    r, f, g = sys.residual(e, b, junction_start=junction_start)
    step = sys.newton_step(g, r)
    ok = np.all(np.abs(step) <= tol.reltol * np.abs(e) + tol.vntol, axis=1)
    ok &= _residual_within(sys, tol, e, b, r, f)
    return ok, r, f, g, np.max(np.abs(step), axis=1, initial=0.0)


#: Below this argument :func:`wright_omega` sums its power series in e^z instead of iterating.
OMEGA_SERIES_BELOW = -5.0


def wright_omega(z: np.ndarray) -> np.ndarray:
    """Wright omega ω(z) for real z: the solution of ω + ln ω = z (so ω = W(e^z), W Lambert's).

    Below z = −5 (x = e^z ≤ 0.0067): the series ω = Σ (−n)^(n−1)/n! xⁿ (Lagrange inversion of
    ω e^ω = x) to eight terms (truncation below 1e-15 relative: the ninth term is 119·x⁹; a few
    ulp of rounding), from one exponential; it is e^z to double precision where that underflows.  Above: twice as fast as
    :func:`scipy.special.wrightomega` (which works in complex arithmetic): a start from the
    approximation ln(1 + x)·(1 − ln(1 + ln(1 + x)) / (2 + ln(1 + x))) below z = 1 and from
    z − ln z + ln z / z above, then two iterations of the fourth-order Fritsch–Shafer–Crowley
    update; relative error below 1e-14 everywhere (tested against SciPy).
    """
    z = np.asarray(z, dtype=float)
    low = z < OMEGA_SERIES_BELOW
    if low.all():
        return _omega_series(np.exp(z))
    if not low.any():
        return _omega_iterated(z)
    w = np.empty_like(z)
    w[low] = _omega_series(np.exp(z[low]))
    w[~low] = _omega_iterated(z[~low])
    return w


def _omega_series(x: np.ndarray) -> np.ndarray:
    """Σ_{n=1..8} (−n)^(n−1)/n! xⁿ by Horner's rule (x = e^z ≤ e^−5)."""
    p = -52.01269841269841 * x + 23.343055555555555  # −8⁷/8!, 7⁶/7!
    for coef in (-10.8, 5.208333333333333, -2.6666666666666665, 1.5, -1.0, 1.0):
        p *= x
        p += coef
    return p * x


def _omega_iterated(z: np.ndarray) -> np.ndarray:
    """Start and two Fritsch–Shafer–Crowley updates (see :func:`wright_omega`)."""
    l1 = np.log1p(np.exp(np.minimum(z, 1.0)))
    zz = np.maximum(z, 1.0)
    lz = np.log(zz)
    w = np.where(z < 1.0, l1 * (1.0 - np.log1p(l1) / (2.0 + l1)), zz - lz + lz / zz)
    np.maximum(w, 1e-300, out=w)
    for _ in range(2):
        r = z - w - np.log(w)
        wp1 = 1.0 + w
        q = 2.0 * wp1 * (wp1 + (2.0 / 3.0) * r)
        w = w * (1.0 + r / wp1 * (q - r) / (q - 2.0 * r))
    return w


def uncoupled_start_polished(diodes: DiodeBank, diag: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Node voltages (B, n) of uncoupled Shockley nodes (K = diag(``diag``), S) for sources ``b`` (A).

    Node k sees the rest of the network as a Thevenin source b_k/K_kk volts behind 1/K_kk
    ohms, so its diode, the diode's series resistance and that source form one loop: the
    junction voltage solves vj + R i_D(vj) = v_th with R = r_s + 1/K_kk and
    v_th = s (v_ref − b_k/K_kk), a monotone scalar equation, and then
    e = (b + s i_D(vj)) / K_kk satisfies KCL.  The loop has a closed form (Wright omega) for
    the exponential law with its gmin term; a safeguarded Newton on every node at once then
    confirms it (or polishes it) to 1e-15 V.
    Returns (e, vj) or None when a node has no conductance or the scalar solve does not
    converge; the result is a candidate that the caller still certifies.  Used in
    ngspice-compatible mode (whose reverse law has no closed form) and as the reference of
    :func:`uncoupled_start`'s closed form (tests compare the two).
    """
    if not np.all(diag > 0):
        return None
    s, vte, i_s = diodes.orientation, diodes.vte, diodes.i_s_at_temperature
    r_total = diodes.r_s + 1.0 / diag  # ohms around each loop
    v_th = s * (diodes.v_ref - b / diag)  # open-circuit branch voltage, V
    # vj (1 + R gmin) = v_th + R I_s − R I_s e^{vj/nV_T}  ⇒  vj = A − nV_T ω(ln(C/nV_T) + A/nV_T),
    # the exponential law with its gmin term in closed form (Wright omega).  ngspice's law
    # has another form below −3 nV_T, so in that mode reverse-biased loops start from v_th.
    exp_law = slice(None) if not diodes.spice_compat else v_th > 0
    den = 1.0 + r_total * diodes.gmin_s
    a, c = (v_th + r_total * i_s) / den, r_total * i_s / den
    if diodes.spice_compat:
        c = np.broadcast_to(c, v_th.shape)[exp_law]
        a, vte_e = a[exp_law], np.broadcast_to(vte, v_th.shape)[exp_law]
    else:
        vte_e = vte
    start = v_th.copy()
    start[exp_law] = a - vte_e * wright_omega(np.log(c / vte_e) + a / vte_e)  # the polish below clips
    try:
        vj, cur, _ = diodes._junction_solve(v_th, r_series=r_total, start=start)
    except ArithmeticError:
        return None
    e = (b + s * cur) / diag
    return (e, vj) if np.isfinite(e).all() else None


#: Per-node arrays of recently used diode banks, by identity (a bank is frozen and never written).
_NODE_ARRAYS: dict[int, tuple[DiodeBank, tuple[np.ndarray, ...]]] = {}


def _node_arrays(diodes: DiodeBank, n: int) -> tuple[np.ndarray, ...]:
    """Per-node (n,) contiguous float arrays: orientation, v_ref (V), I_s (A), nV_T (V), r_s (Ω)."""
    hit = _NODE_ARRAYS.get(id(diodes))
    if hit is not None and hit[0] is diodes and hit[1][0].shape[0] == n:
        return hit[1]
    arrays = tuple(np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=float), (n,)))
                   for x in (diodes.orientation, diodes.v_ref, diodes.i_s_at_temperature, diodes.vte, diodes.r_s))
    if len(_NODE_ARRAYS) >= 8:
        _NODE_ARRAYS.pop(next(iter(_NODE_ARRAYS)))
    _NODE_ARRAYS[id(diodes)] = (diodes, arrays)
    return arrays


def _batch(b: np.ndarray, n: int) -> np.ndarray:
    """``b`` as a C-contiguous float (B, n) array (the kernels read no bounds: shapes checked here)."""
    b = np.ascontiguousarray(b, dtype=float)
    if b.ndim != 2 or b.shape[1] != n:
        raise ValueError(f"expected a (batch, {n}) array, got shape {b.shape}")
    return b


def uncoupled_start(diodes: DiodeBank, diag: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Node voltages (B, n) of uncoupled Shockley nodes (K = diag(``diag``), S) for sources ``b`` (A).

    Node k sees the rest of the network as a Thevenin source b_k/K_kk volts behind 1/K_kk
    ohms, so its diode, the diode's series resistance and that source form one loop: the
    junction voltage solves vj (1 + R gmin) = v_th + R I_s − R I_s e^{vj/nV_T} with
    R = r_s + 1/K_kk and v_th = s (v_ref − b_k/K_kk).  With A = (v_th + R I_s)/(1 + R gmin)
    and C = R I_s/(1 + R gmin) its solution is vj = A − nV_T ω, ω = ω(ln(C/nV_T) + A/nV_T)
    (Wright omega), and the same ω gives the junction's exponential without evaluating it:
    e^{vj/nV_T} = nV_T ω / C, so i_D = I_s (nV_T ω/C − 1) + gmin vj and
    e = (b + s i_D)/K_kk.  The arguments and one exponential per node are formed with numpy
    (vectorised), ω and the rest in one compiled pass
    (:func:`hil.circuit.shockley_kernels.loop_closed_form_kernel`): ω's series below z = −5
    (most nodes: reverse-biased or barely conducting), and above it the iteration of
    :func:`wright_omega` followed by one Newton step on the loop with the law evaluated (a
    conducting loop's current is large, so ω's last rounding would otherwise reach e).
    In ngspice-compatible mode (another law below −3 nV_T) the polished start
    :func:`uncoupled_start_polished` answers instead.  Returns (e, vj), V, or None when a
    node has no conductance or a voltage is not finite; the result is a candidate that the
    caller still certifies (:func:`uncoupled_certificate` evaluates the law afresh).
    """
    if diodes.spice_compat:
        return uncoupled_start_polished(diodes, diag, b)
    if not np.all(diag > 0):
        return None
    diag = np.ascontiguousarray(diag, dtype=float)
    n = diag.shape[0]
    b = _batch(b, n)
    s, v_ref, i_s, vte, r_s = _node_arrays(diodes, n)
    r_total = r_s + 1.0 / diag  # ohms around each loop
    den = 1.0 + r_total * diodes.gmin_s
    c = r_total * i_s / den  # per node, V
    # A = (s (v_ref − b/K_kk) + R I_s)/den (V), z = ln(C/nV_T) + A/nV_T, min(z, −5): one compiled pass
    a, z, x = np.empty_like(b), np.empty_like(b), np.empty_like(b)
    loop_arguments_kernel(b, diag, s, v_ref, r_total * i_s, den, np.log(c / vte), vte, OMEGA_SERIES_BELOW, a, z, x)
    np.exp(x, out=x)  # the exponentials, vectorised; the rest compiled
    e, vj = np.empty_like(b), np.empty_like(b)
    finite = loop_closed_form_kernel(b, a, z, x, diag, s, v_ref, i_s, vte, c, r_total, float(diodes.gmin_s),
                                    OMEGA_SERIES_BELOW, e, vj)
    return (e, vj) if finite else None


@dataclass
class UncoupledCertificate:
    """Damped Newton's convergence tests at a per-node solution, and what the report needs."""

    ok: np.ndarray  # (B,) certified samples
    current: np.ndarray  # (B, n) current drawn out of each node by its diode, A
    g_d: np.ndarray  # (B, n) its incremental conductance, S
    step_max: np.ndarray  # (B,) largest Newton update from e per sample, V
    residual_abs: float  # largest |KCL residual|, A
    residual_rel: float  # largest |KCL residual| / (largest current at its node)
    residual_norm: float  # largest 2-norm of a sample's residual vector, A
    n_on: int  # diodes with forward current above 1000 I_s, whole batch


def uncoupled_certificate(diodes: DiodeBank, diag: np.ndarray, tol: NewtonTolerances, e: np.ndarray,
                          b: np.ndarray, junction_start: np.ndarray) -> UncoupledCertificate:
    """:func:`newton_certificate` for uncoupled nodes in one compiled pass (same tests, same arithmetic).

    ``junction_start`` (V, (B, n)) starts each series-resistance solve; the branch voltage
    s·(v_ref − e) is solved again from it, so a wrong ``e`` is caught whatever the start.
    """
    diag = np.ascontiguousarray(diag, dtype=float)
    n = diag.shape[0]
    b, e, vj = _batch(b, n), _batch(e, n), _batch(junction_start, n)
    if not (b.shape == e.shape == vj.shape):
        raise ValueError(f"shapes differ: b {b.shape}, e {e.shape}, junction start {vj.shape}")
    s, v_ref, i_s, vte, r_s = _node_arrays(diodes, n)
    f, g, step, stats = np.empty_like(e), np.empty_like(e), np.empty(e.shape[0]), np.zeros(4)
    ex = np.exp(np.minimum(vj / vte, 700.0))  # the junction law's exponential at the start, vectorised
    ok = certificate_kernel(e, b, vj, ex, diag, s, v_ref, i_s, vte, r_s, float(diodes.gmin_s), bool(diodes.spice_compat),
                            float(tol.reltol), float(tol.vntol), float(tol.abstol), f, g, step, stats)
    return UncoupledCertificate(ok, f, g, step, float(stats[0]), float(stats[1]), float(np.sqrt(stats[2])),
                                int(stats[3]))


def _newton(sys: _System, b, e, tol: NewtonTolerances, gshunt: float = 0.0):
    """Run damped Newton on every sample; returns (e, converged mask, iterations, last step, (r, F, g) at e)."""
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
        delta = -sys.newton_step(g[act] + gshunt, ra)
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
    return e, done, it, last_step, (r, f, g)


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
    diag: np.ndarray | None = None,
) -> ShockleySolution:
    """Solve the Shockley network for a batch ``b`` (B, n) of nodal source currents (A).

    ``ideal_solve(b, h)`` returns ideal-diode node voltages for clamp levels ``h`` and is
    used for the piecewise-linear initial guess.  Without ``e0``, uncoupled networks start
    from their exact per-node solution (:func:`uncoupled_start`), which Newton only has to
    certify.  ``diag`` is K's diagonal (S) when the caller keeps it.  Raises
    :class:`SolveError` when neither Newton nor gmin stepping nor source stepping converges.
    """
    t0 = time.perf_counter()
    tol = tol or NewtonTolerances()
    sys = _System(k_dense, k_sparse, diodes, diag)
    B = b.shape[0]
    exact = uncoupled_start(diodes, sys.diag, b) if e0 is None and sys.uncoupled else None
    summary = None  # (max |r|, max relative |r|, max per-sample ‖r‖₂, conducting diodes) when known
    if exact is not None:
        e = exact[0]
        cert = uncoupled_certificate(diodes, sys.diag, tol, e, b, exact[1])
        done, f, g, last = cert.ok, cert.current, cert.g_d, cert.step_max
        summary = (cert.residual_abs, cert.residual_rel, cert.residual_norm, cert.n_on)
        path, iters, r = "per-node", {"per-node": 1}, None
    else:
        e = initial_guess(sys, b, ideal_solve) if e0 is None else e0.copy()
        done, last, path, iters, r = np.zeros(B, bool), np.zeros(B), "", {}, None
    if not done.all():
        summary = None
        idx = np.flatnonzero(~done)
        whole = idx.size == B
        e_sub, ok, it, last_sub, rfg = _newton(sys, b if whole else b[idx], e if whole else e[idx], tol)
        e[idx], done[idx], last[idx] = e_sub, ok, last_sub
        path, iters["newton"] = (path + "→newton" if path else "newton"), it
        r = rfg[0] if whole else None
        if whole:
            f, g = rfg[1], rfg[2]
    if not done.all():
        idx = np.flatnonzero(~done)
        e_sub, ok, its = _gmin_stepping(sys, b[idx], e[idx], tol)
        path += "→gmin"
        iters["gmin"] = its
        e[idx] = e_sub
        done[idx] = ok
        r = None
        if not done.all():
            idx = np.flatnonzero(~done)
            e_sub, ok, its = _source_stepping(sys, b[idx], tol)
            path += "→source"
            iters["source"] = its
            e[idx] = e_sub
            done[idx] = ok
    if summary is None:
        if r is None:  # some samples moved after their last evaluation
            r, f, g = sys.residual(e, b)
        scale = sys.current_scale(e, b, f)
        summary = (float(np.abs(r).max(initial=0.0)),
                   float((np.abs(r) / np.maximum(scale, 1e-300)).max(initial=0.0)),
                   float(np.linalg.norm(r, axis=1).max(initial=0.0)),
                   int(np.sum(np.abs(f) > 1e3 * diodes.i_s_at_temperature)))
    report = SolveReport(
        converged=bool(done.all()),
        method=path,
        iterations=iters,
        batch=B,
        max_step_v=float(last.max(initial=0.0)),
        kcl_residual_a=summary[0],
        kcl_residual_rel=summary[1],
        n_on_mean=float(summary[3] / max(B, 1)),
        wall_time_s=time.perf_counter() - t0,
        failed_samples=np.flatnonzero(~done).tolist(),
    )
    lam_min = lambda_min if lambda_min is not None else _lambda_min(k_dense, k_sparse)
    if lam_min > 0:
        report.error_bound_v = float(summary[2] / lam_min)
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
        e_try, ok, it, _, _ = _newton(sys, b, e.copy(), tol, gshunt=g)
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
        e_try, ok, it, _, _ = _newton(sys.scaled(nxt), nxt * b, e.copy(), tol)
        total += it
        if ok.all():
            e, lam, step = e_try, nxt, step * 2
        else:
            step /= 2
            if step < 1e-6:
                return e, np.zeros(b.shape[0], bool), total
    return e, np.ones(b.shape[0], bool), total
