"""Compiled certificate of uncoupled Shockley-diode nodes (numba).

An uncoupled node k (K diagonal) with its diode and the diode's series resistance r_s is a
single loop driven by the node's Thevenin source; :func:`hil.circuit.shockley.uncoupled_start`
solves it in closed form.  :func:`certificate_kernel` then evaluates damped Newton's
convergence tests at that answer for every node of the batch in one pass, from scratch: the
branch voltage s·(v_ref − e) is solved again for its junction voltage with the diode's own
r_s (safeguarded Newton started at the closed form's vj), and the KCL residual
r = K_kk·e − b + F(e) and the Newton update r/(K_kk + g) are formed and tested per node —
the tests of :func:`hil.circuit.shockley.newton_certificate`, with the same floating-point
operations per node (no fast-math, no reassociation).  The one exponential per node at the
start is computed by the caller with numpy (vectorised, several times faster than a scalar
call); further Newton steps, rarely needed, evaluate it here.

The only difference from numpy: a scalar Newton loop stops when its own node has converged,
where the vectorised one keeps updating converged entries until every entry has; results
agree to rounding (tested).  The kernel reads no bounds: the caller checks shapes, dtypes and
contiguity first.  A non-converged or non-finite node never passes: its sample is reported
as not certified and the caller continues it with damped Newton.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Junction-solve iteration limit and stopping tolerance (V), as in DiodeBank._junction_solve.
_JUNCTION_MAX_ITER = 100
_JUNCTION_TOL = 1e-15


@njit(cache=True, nogil=True, error_model="numpy")
def _junction_law(vd, i_s, vte, gmin, spice):  # pragma: no cover - compiled
    """Junction current (A) and conductance (S) at junction voltage ``vd`` (V); see DiodeBank.junction_current."""
    return _junction_law_ex(vd, math.exp(min(vd / vte, 700.0)), i_s, vte, gmin, spice)


@njit(cache=True, nogil=True, error_model="numpy")
def _junction_law_ex(vd, ex, i_s, vte, gmin, spice):  # pragma: no cover - compiled
    """:func:`_junction_law` given ex = exp(min(vd/nV_T, 700)) (computed by the caller, vectorised)."""
    if not spice or vd >= -3.0 * vte:
        return i_s * (ex - 1.0) + gmin * vd, i_s * ex / vte + gmin
    arg = (3.0 * vte / (np.e * vd)) ** 3.0  # ngspice's reverse tail below −3 nV_T
    return -i_s * (1.0 + arg) + gmin * vd, 3.0 * i_s * arg / vd + gmin


@njit(cache=True, nogil=True, error_model="numpy")
def _junction_newton(v, rs, vj, cur, g, i_s, vte, gmin, spice):  # pragma: no cover - compiled
    """Safeguarded Newton on vj + rs·i_D(vj) = v from ``vj`` (where the law gives ``cur``, A,
    and ``g``, S), clipped to [min(v, 0), max(v, 0)].

    Returns (vj, i_D, g_D, converged) with i_D, g_D evaluated at the returned vj (the last
    point where the law was evaluated; the next step from it is below 1e-15 V + 1e-15·|vj|).
    """
    lo = min(v, 0.0)
    hi = max(v, 0.0)
    for _ in range(_JUNCTION_MAX_ITER):
        step = (vj + rs * cur - v) / (1.0 + rs * g)
        new = min(max(vj - step, lo), hi)
        if abs(new - vj) <= _JUNCTION_TOL + _JUNCTION_TOL * abs(vj):
            return vj, cur, g, True
        vj = new
        cur, g = _junction_law(vj, i_s, vte, gmin, spice)
    return vj, cur, g, False


@njit(cache=True, nogil=True, error_model="numpy")
def certificate_kernel(e, b, vj, ex, diag, s, v_ref, i_s, vte, r_s, gmin, spice, reltol, vntol, abstol,
                       f, g, step_max, stats):  # pragma: no cover - compiled
    """Damped Newton's convergence tests at node voltages ``e`` (B, n) of uncoupled nodes.

    ``b`` (B, n) nodal source currents (A); ``vj`` (B, n) junction voltages that start each
    series-resistance solve (V) and ``ex`` (B, n) = exp(min(vj/nV_T, 700)) (the caller's
    vectorised exponential); ``diag`` (n,) K's diagonal (S); ``s`` (n,) orientation ±1.0;
    ``v_ref`` (n,) diode reference (V); ``i_s`` (n,) saturation current at temperature (A);
    ``vte`` (n,) nV_T (V); ``r_s`` (n,) series resistance (Ω); ``gmin`` junction shunt (S);
    ``spice``: ngspice's reverse tail; Newton's tolerances.  Per node: the junction voltage of the branch voltage s·(v_ref − e) with r_s
    (safeguarded Newton), F = −s·i_D, g = g_D/(1 + r_s g_D), r = K_kk e − b + F, update
    r/(K_kk + g); the node passes when |update| ≤ reltol·|e| + vntol and
    |r| ≤ reltol·max(|b|, |K_kk e|, |F|) + abstol.  Writes f (B, n) the current drawn out
    of each node (A), g (B, n) its conductance (S), step_max (B,) the largest update per
    sample (V), and stats (4,): max |r| (A), max |r|/scale, max over samples of Σ r² (A²),
    count of diodes with |F| > 1000 I_s.  Returns (B,) bool: certified samples.
    """
    B, n = e.shape
    ok = np.ones(B, np.bool_)
    r_abs = 0.0
    r_rel = 0.0
    r_sq_max = 0.0
    n_on = 0.0
    for row in range(B):
        good = True
        big = 0.0
        sq = 0.0
        for k in range(n):
            dk = diag[k]
            sk = s[k]
            ik = i_s[k]
            rs = r_s[k]
            ek = e[row, k]
            bk = b[row, k]
            vd = sk * (v_ref[k] - ek)
            if rs > 0.0:
                vjk = vj[row, k]
                cur, gj = _junction_law_ex(vjk, ex[row, k], ik, vte[k], gmin, spice)
                _, cur, gj, conv = _junction_newton(vd, rs, vjk, cur, gj, ik, vte[k], gmin, spice)
                gk = gj / (1.0 + rs * gj)
            else:
                cur, gk = _junction_law(vd, ik, vte[k], gmin, spice)
                conv = True
            fk = -sk * cur
            ke = ek * dk
            res = ke - bk + fk
            upd = res / (dk + gk)
            scale = max(max(abs(bk), abs(ke)), abs(fk))
            ar = abs(res)
            au = abs(upd)
            good = good and conv and au <= reltol * abs(ek) + vntol and ar <= reltol * scale + abstol
            f[row, k] = fk
            g[row, k] = gk
            big = max(big, au)
            sq += res * res
            r_abs = max(r_abs, ar)
            r_rel = max(r_rel, ar / max(scale, 1e-300))
            if abs(fk) > 1e3 * ik:
                n_on += 1.0
        # a NaN anywhere fails the comparisons above, so it is never certified
        ok[row] = good
        step_max[row] = big
        r_sq_max = max(r_sq_max, sq)
    stats[0] = r_abs
    stats[1] = r_rel
    stats[2] = r_sq_max
    stats[3] = n_on
    return ok


@njit(cache=True, nogil=True, error_model="numpy")
def _omega_iterated(z):  # pragma: no cover - compiled
    """Wright omega for z ≥ −5: the start and two Fritsch–Shafer–Crowley updates of
    :func:`hil.circuit.shockley.wright_omega` (ln(1 + x) for log1p: x = e^z ≥ e^−5 here, and
    the updates remove the start's rounding); one update from z = 10 on, where the asymptotic
    start is close enough that a second moves ω by at most 3e-16 (relative: rounding)."""
    if z < 1.0:
        l1 = math.log(1.0 + math.exp(z))
        w = l1 * (1.0 - math.log(1.0 + l1) / (2.0 + l1))
    else:
        lz = math.log(z)
        w = z - lz + lz / z
    w = max(w, 1e-300)
    for _ in range(1 if z >= 10.0 else 2):
        r = z - w - math.log(w)
        wp1 = 1.0 + w
        q = 2.0 * wp1 * (wp1 + (2.0 / 3.0) * r)
        w = w * (1.0 + r / wp1 * (q - r) / (q - 2.0 * r))
    return w


@njit(cache=True, nogil=True, error_model="numpy")
def loop_arguments_kernel(b, diag, s, v_ref, ri, den, log_c, vte, floor, a, z, x):  # pragma: no cover - compiled
    """The arguments of :func:`loop_closed_form_kernel` in one pass, with numpy's operations in numpy's
    order (so the same numbers): A = (s (v_ref − b/K_kk) + R I_s) / den into ``a``,
    z = ln(C/nV_T) + A/nV_T into ``z`` and min(z, ``floor``) into ``x`` (whose exponential the
    caller then takes in place, vectorised); ``b`` (B, n) A, per node ``diag`` (S), ``s``,
    ``v_ref`` (V), ``ri`` = R I_s (V), ``den``, ``log_c`` = ln(C/nV_T), ``vte`` (V)."""
    B, n = b.shape
    for row in range(B):
        for k in range(n):
            ak = (s[k] * (v_ref[k] - b[row, k] / diag[k]) + ri[k]) / den[k]
            zk = log_c[k] + ak / vte[k]
            a[row, k] = ak
            z[row, k] = zk
            x[row, k] = min(zk, floor)


@njit(cache=True, nogil=True, error_model="numpy")
def loop_closed_form_kernel(b, a, z, x, diag, s, v_ref, i_s, vte, c, rt, gmin, series_below, e, vj):  # pragma: no cover - compiled
    """Finish the closed-form loop solve of :func:`hil.circuit.shockley.uncoupled_start`.

    ``b`` (B, n) nodal source currents (A); ``a`` (B, n) = A (V) and ``z`` (B, n) the Wright
    omega argument of each loop; ``x`` (B, n) = exp(min(z, series_below)) (the caller's
    vectorised exponential); ``diag`` (n,) K's diagonal (S); ``s`` (n,) orientation ±1.0;
    ``v_ref`` (n,) diode reference (V); ``i_s`` (n,) saturation current (A); ``vte`` (n,)
    nV_T (V); ``c`` (n,) = C (V); ``rt`` (n,) loop resistance r_s + 1/K_kk (Ω).
    Below ``series_below`` ω is the eight-term series in x (a few ulp) and
    vj = A − nV_T ω, i_D = I_s (nV_T ω / C − 1) + gmin vj.  Above, ω is iterated (relative
    error ≈ 1e-14, which a forward current of nV_T·ω/R would carry into e) and one Newton
    step on the loop, vj + R i_D(vj) = v_th with the law evaluated, removes that error;
    i_D is moved along its tangent.  Then e = (b + s i_D)/K_kk.  Writes e and vj (B, n);
    returns True when every e is finite.
    """
    B, n = b.shape
    finite = 0.0
    for row in range(B):
        for k in range(n):
            zk = z[row, k]
            vk = vte[k]
            ik = i_s[k]
            dk = diag[k]
            sk = s[k]
            bk = b[row, k]
            if zk < series_below:
                xk = x[row, k]
                p = -52.01269841269841 * xk + 23.343055555555555  # −8⁷/8!, 7⁶/7!
                p = p * xk - 10.8
                p = p * xk + 5.208333333333333
                p = p * xk - 2.6666666666666665
                p = p * xk + 1.5
                p = p * xk - 1.0
                p = p * xk + 1.0
                w = p * xk
                v = a[row, k] - vk * w
                cur = ik * (w * (vk / c[k]) - 1.0) + gmin * v
            else:
                w = _omega_iterated(zk)
                v = a[row, k] - vk * w
                ex = math.exp(min(v / vk, 700.0))
                cur = ik * (ex - 1.0) + gmin * v
                g = ik * ex / vk + gmin
                v_th = sk * (v_ref[k] - bk / dk)
                step = (v + rt[k] * cur - v_th) / (1.0 + rt[k] * g)
                v -= step
                cur -= g * step
            ek = (bk + sk * cur) / dk
            finite += ek - ek  # stays 0 unless ±inf or NaN
            e[row, k] = ek
            vj[row, k] = v
    return finite == 0.0
