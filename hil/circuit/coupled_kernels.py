"""Compiled kernels (numba) for ideal-diode networks with sparse hidden↔hidden coupling.

The nodal matrix K (S) is passed as the three arrays of a CSR matrix (``indptr``,
``indices``, ``data``) with its diagonal ``diag``; K is a grounded Laplacian, symmetric
positive definite with positive diagonal.  Per sample, the kernels work on one row of
the batch at a time with O(n) workspace, so nothing grows with the batch but the
outputs.  They do not check bounds (their caller, :mod:`hil.circuit.coupled`, checks
shapes) and run on one thread; ``cache=True`` keeps the machine code next to this file.

* :func:`pdas_cg_kernel` — the ideal-diode LCP by primal–dual active sets (PDAS), each
  linear step a Jacobi-preconditioned conjugate-gradient solve on the sample's free set,
  warm-started from the previous step; per-sample status (settled, CG failed, PDAS did
  not settle) so the caller can hand unfinished samples to a direct solver.
  The last PDAS step's active-set test is formed from a fresh K e (not the CG recurrence),
  and the same pass gives each settled row its KKT certificate.
* :func:`pdas_cg_recorded` — the same, also writing K e of each answer out, or starting from a
  known K e of the starting voltages (the held point's, for its perturbation phases).
* :func:`held_phases_kernel` — the same solve for the perturbation phases of a held
  operating point: each row's right-hand side is the held sources plus its port change and
  its start the held active set and voltages, gathered in the kernel (no tiled copies).
* :func:`held_phases_certified` — :func:`held_phases_kernel` with the port
  voltages' check and the certificate's scaling in the same call (the lean phases' one call).
* :func:`coupled_certificate_kernel` — the same KKT certificate (the residuals of
  :func:`hil.circuit.ideal.certify`) of any candidate solution, for rows solved elsewhere.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hil.kernels import finite_abs_max, scaled_residuals

#: Status codes of :func:`pdas_cg_kernel`, per sample.
SETTLED, CG_FAILED, NOT_SETTLED = 0, 1, 2


@njit(cache=True, nogil=True, error_model="numpy")
def _row_dot(indptr, indices, data, k, v):  # pragma: no cover - compiled
    """(K v)_k for one row k of the CSR matrix."""
    acc = 0.0
    for jj in range(indptr[k], indptr[k + 1]):
        acc += data[jj] * v[indices[jj]]
    return acc


@njit(cache=True, nogil=True, error_model="numpy")
def pdas_cg_kernel(indptr, indices, data, diag, b, s, h, on, e, cold, mirror, rtol, max_cg, max_pdas,
                   status, z, mu):  # pragma: no cover - compiled
    """:func:`pdas_cg_recorded` without K e carried in or out (see there)."""
    none = np.empty((0, 0))
    return pdas_cg_recorded(indptr, indices, data, diag, b, s, h, on, e, cold, mirror, rtol, max_cg, max_pdas,
                            status, z, mu, none, none)


@njit(cache=True, nogil=True, error_model="numpy")
def pdas_cg_recorded(indptr, indices, data, diag, b, s, h, on, e, cold, mirror, rtol, max_cg, max_pdas,
                     status, z, mu, ke_in, ke_out):  # pragma: no cover - compiled
    """Solve K e − b = s·mu, mu ≥ 0, z = s(e − h) ≥ 0, mu·z = 0 for every row of ``b`` (B, n), A.

    ``on`` (B, n) bool and ``e`` (B, n) V are read as the starting active set and the
    starting voltages (a warm start, e.g. a held operating point) unless ``cold``; with
    ``cold`` the start is the uncoupled closed form, each node its own one-variable LCP
    with the coupling left out (e = clamp(b_k/K_kk)), which weak coupling leaves close to
    the answer.  Both are overwritten with the result.  ``s`` (n,) orientation ±1.0 and
    ``h`` (n,) clamp levels (V) as float arrays.

    ``mirror`` (warm starts of an even batch): where row i + B/2 starts from the same held
    point as row i (the − and + perturbation phases of one sample) and row i settled in one
    step on that set, row i + B/2 starts from row i's answer reflected about the held
    voltages, 2·e_held − e_i — on the held set the response is linear, so this is the
    − phase's answer up to rounding and its CG usually has nothing left to do.  Only a start:
    the CG test on the true residual decides as for any other start.

    One PDAS step fixes e = h on the active (conducting) set A and solves
    K_FF e_F = b_F − K_FA h_A by CG with the Jacobi preconditioner on the free nodes only,
    starting from the current e_F, until ||r_F||₂ ≤ rtol·||b_F − K_FA h_A||₂ (true
    residual at the start, recurrence residual after); then A becomes
    {k : mu_k − K_kk z_k > 0} with mu and z formed from a fresh K e (of a warm start that
    already met the CG test, the free rows' K e of the residual pass, formed from the same e
    in the same order, is reused: the mirrored − phases skip that part of the pass).  The sample is
    settled when A no longer changes (PDAS on an M-matrix settles in finitely many steps).

    The last step's fresh K e − b is the sample's KKT certificate: ``z`` and ``mu`` (B, n)
    receive the blocking voltages (V) and diode currents (A, 0 off the conducting set).
    Writes ``status`` per sample (SETTLED, CG_FAILED when CG hit ``max_cg`` iterations or
    broke down, NOT_SETTLED after ``max_pdas`` steps).

    ``ke_out`` (B, n), when it has rows, receives each row's K e (A) from its last certificate
    pass (for a settled row: K e of the answer).  ``ke_in`` (B, n), when it has rows and every
    clamp level h is 0, is K e of the starting voltages of each row (the ``ke_out`` of the held
    point a warm start copies): the first step of a row that starts from them (not reflected)
    then takes its free rows' residual from it instead of a matrix pass — the same numbers in the
    same order, so the same answer bit for bit (with h = 0 the clamped part K_FA h_A is 0).

    Returns, reduced over the settled rows, (min z, min mu, max |KCL residual at free nodes|,
    max |mu·z|, max |K_kk e_k|, max |b|, conducting count, all finite), then (most PDAS steps of a sample, total CG
    iterations, unsettled samples).
    """
    B, n = b.shape
    free = np.empty(n, dtype=np.int64)
    r = np.empty(n)
    zv = np.empty(n)
    p = np.zeros(n)  # full length (indexed by the matrix), 0 on A
    q = np.empty(n)
    ke = np.empty(n)  # (K e)_k of the free rows from the residual pass, reused while e is unchanged
    h_zero = True
    for k in range(n):
        if h[k] != 0.0:
            h_zero = False
    carried = ke_in.shape[0] > 0 and h_zero and not cold
    record = ke_out.shape[0] > 0
    g_lo_z, g_lo_mu, g_kcl, g_comp, g_ke, g_b = np.inf, np.inf, 0.0, 0.0, 0.0, 0.0
    g_count = 0
    g_finite = True
    one_step = np.zeros(B, dtype=np.bool_)
    most_steps = 0
    cg_total = 0
    unsettled = 0
    half = B // 2 if mirror and B % 2 == 0 else 0
    twin = np.zeros(half, dtype=np.bool_)  # row i + half starts from the same held point as row i
    for i in range(half):
        same = True
        for k in range(n):
            if e[i, k] != e[i + half, k] or on[i, k] != on[i + half, k]:
                same = False
                break
        twin[i] = same
    for i in range(B):
        ei = e[i]
        oi = on[i]
        bi = b[i]
        zi = z[i]
        mi = mu[i]
        reflected = i >= half > 0 and twin[i - half] and status[i - half] == SETTLED and one_step[i - half]
        if reflected:
            ep = e[i - half]
            for k in range(n):
                ei[k] = 2.0 * ei[k] - ep[k]
        if cold:
            for k in range(n):
                v = bi[k] / diag[k]
                c = (v - h[k]) * s[k] < 0.0
                oi[k] = c
                ei[k] = h[k] if c else v
        st = NOT_SETTLED
        it = 0
        total = 0
        while it < max_pdas:
            it += 1
            nf = 0
            for k in range(n):
                if oi[k]:
                    ei[k] = h[k]
                else:
                    free[nf] = k
                    nf += 1
            # residual of the current iterate on the free rows, and the norm of the free rows'
            # right-hand side b_F − K_FA h_A (the CG tolerance is relative to it)
            rr = 0.0
            bb = 0.0
            if carried and it == 1 and not reflected:  # K e of the start is known; K_FA h_A = 0
                for t in range(nf):
                    k = free[t]
                    acc = ke_in[i, k]
                    ke[k] = acc
                    rk = bi[k] - acc
                    fk = bi[k] - 0.0
                    r[t] = rk
                    rr += rk * rk
                    bb += fk * fk
            else:
                for t in range(nf):
                    k = free[t]
                    acc = 0.0
                    acc_a = 0.0
                    for jj in range(indptr[k], indptr[k + 1]):
                        j = indices[jj]
                        v = data[jj] * ei[j]
                        acc += v
                        if oi[j]:
                            acc_a += v
                    if not cold:
                        ke[k] = acc
                    rk = bi[k] - acc
                    fk = bi[k] - acc_a
                    r[t] = rk
                    rr += rk * rk
                    bb += fk * fk
            target = rtol * rtol * bb
            ok = rr <= target
            unchanged = ok and not cold  # a warm start already meets the CG test: e stays as it is
            if not ok and bb == 0.0:  # K_FF e_F = 0 with K_FF positive definite: e_F = 0
                for t in range(nf):
                    ei[free[t]] = 0.0
                ok = True
            if not ok:
                rz = 0.0
                for t in range(nf):
                    zk = r[t] / diag[free[t]]
                    p[free[t]] = zk
                    rz += r[t] * zk
                for _ in range(max_cg):
                    total += 1
                    pq = 0.0
                    for t in range(nf):
                        k = free[t]
                        acc = 0.0
                        for jj in range(indptr[k], indptr[k + 1]):
                            acc += data[jj] * p[indices[jj]]  # p is 0 on A: only K_FF counts
                        q[t] = acc
                        pq += p[k] * acc
                    if not pq > 0.0:  # breakdown (or NaN): not SPD on F as far as CG can tell
                        break
                    alpha = rz / pq
                    rr = 0.0
                    rz_new = 0.0
                    for t in range(nf):
                        k = free[t]
                        ei[k] += alpha * p[k]
                        rk = r[t] - alpha * q[t]
                        r[t] = rk
                        zk = rk / diag[k]
                        zv[t] = zk
                        rz_new += rk * zk
                        rr += rk * rk
                    if rr <= target:
                        ok = True
                        break
                    beta = rz_new / rz
                    rz = rz_new
                    for t in range(nf):
                        k = free[t]
                        p[k] = zv[t] + beta * p[k]
                for t in range(nf):
                    p[free[t]] = 0.0
            if not ok:
                st = CG_FAILED
                break
            # active-set update from a fresh K e − b: mu_k − K_kk z_k > 0 (mu = 0 on F, z = 0 on A);
            # the same pass forms the row's certificate
            changed = False
            lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs = np.inf, np.inf, 0.0, 0.0, 0.0, 0.0
            count = 0
            nan_sum = 0.0
            for k in range(n):
                if unchanged and not oi[k]:
                    acc = ke[k]  # the residual pass formed this row's K e from the same e, in the same order
                else:
                    acc = 0.0
                    for jj in range(indptr[k], indptr[k + 1]):
                        acc += data[jj] * ei[indices[jj]]
                if record:
                    ke_out[i, k] = acc
                res = acc - bi[k]
                zk = s[k] * (ei[k] - h[k])
                if oi[k]:
                    mk = s[k] * res
                    new = mk - diag[k] * zk > 0.0
                    count += 1
                else:
                    mk = 0.0
                    new = -diag[k] * zk > 0.0
                    kcl_abs = max(kcl_abs, abs(res))
                if new != oi[k]:
                    changed = True
                    oi[k] = new
                comp = mk * zk
                zi[k] = zk
                mi[k] = mk
                nan_sum += (res - res) + (zk - zk) + (comp - comp)
                lo_z = min(lo_z, zk)
                lo_mu = min(lo_mu, mk)
                comp_abs = max(comp_abs, abs(comp))
                ke_abs = max(ke_abs, abs(diag[k] * ei[k]))
                b_abs = max(b_abs, abs(bi[k]))
            if not changed:
                st = SETTLED
                g_lo_z = min(g_lo_z, lo_z)
                g_lo_mu = min(g_lo_mu, lo_mu)
                g_kcl = max(g_kcl, kcl_abs)
                g_comp = max(g_comp, comp_abs)
                g_ke = max(g_ke, ke_abs)
                g_b = max(g_b, b_abs)
                g_count += count
                g_finite = g_finite and nan_sum == 0.0
                break
        status[i] = st
        one_step[i] = it == 1
        most_steps = max(most_steps, it)
        cg_total += total
        unsettled += st != SETTLED
    return (g_lo_z, g_lo_mu, g_kcl, g_comp, g_ke, g_b, g_count, g_finite), (most_steps, cg_total, unsettled)


@njit(cache=True, nogil=True, error_model="numpy")
def held_phases_kernel(indptr, indices, data, diag, b_held, e_held, on_held, ke_held, rows, dw, s, h, rtol, max_cg,
                       max_pdas, b, on, e, status, z, mu):  # pragma: no cover - compiled
    """:func:`pdas_cg_kernel` for perturbation phases of a held operating point, warm-started from it.

    Row r of the R = ``dw.shape[0]`` rows is held sample j = ``rows[r mod len(rows)]`` (j = r mod
    B₀ when ``rows`` is empty; ``b_held`` (B₀, n) its nodal source currents in A, ``e_held``
    (B₀, n) V and ``on_held`` its certified voltages and active set) with its port currents
    moved by ``dw[r]`` (A): the row's right-hand side b[r] = b_held[j] + dw[r] and its start
    (e, on) = the held point's are written into ``b``, ``e``, ``on`` (R, n), then the rows are
    solved as :func:`pdas_cg_kernel` solves a held warm start (``mirror``: where row r + R/2
    starts from the same held point as row r, the − phase starts from the + phase's answer
    reflected about it).  ``ke_held`` (B₀, n), when it has rows, is K e of the held voltages
    (A), which spares each row's first residual pass (see :func:`pdas_cg_recorded`).
    Returns what :func:`pdas_cg_kernel` returns.
    """
    R, n = dw.shape
    B0 = b_held.shape[0]
    m = rows.shape[0]
    carry = ke_held.shape[0] > 0
    ke_in = np.empty((R if carry else 0, n if carry else 0))
    for r in range(R):
        j = rows[r % m] if m > 0 else r % B0
        for k in range(n):
            b[r, k] = b_held[j, k] + dw[r, k]
            e[r, k] = e_held[j, k]
            on[r, k] = on_held[j, k]
        if carry:
            for k in range(n):
                ke_in[r, k] = ke_held[j, k]
    return pdas_cg_recorded(indptr, indices, data, diag, b, s, h, on, e, False, True, rtol, max_cg, max_pdas,
                            status, z, mu, ke_in, np.empty((0, 0)))


#: Entries of the statistics array :func:`held_phases_certified` returns.
(STAT_LO_Z, STAT_LO_MU, STAT_KCL, STAT_COMP, STAT_KE, STAT_B, STAT_N_ON, STAT_FINITE, STAT_STEPS, STAT_CG,
 STAT_UNSETTLED, STAT_W_SCALE, STAT_W_FINITE, STAT_SCALE_V, STAT_SCALE_I, STAT_PRIMAL, STAT_DUAL, STAT_KCL_REL,
 STAT_COMP_REL, STAT_WORST) = range(20)


@njit(cache=True, nogil=True, error_model="numpy")
def held_phases_certified(indptr, indices, data, diag, b_held, e_held, on_held, ke_held, rows, w, dw, s, h, rtol,
                          max_cg, max_pdas, u_scale, vref_max, b, on, e, status, z, mu, stats):  # pragma: no cover - compiled
    """:func:`held_phases_kernel` with its checks and certificate scaling in the same call.

    ``w`` (R, q) are the port voltages of the R rows (V) and ``dw`` (R, n) = w G_out their
    nodal currents (A).  First max |w| and whether every port voltage is finite; when one is
    not, nothing is solved (the caller raises).  Else the rows are solved as
    :func:`held_phases_kernel` solves them, into fresh arrays, and the batch's KKT reductions
    are scaled as :func:`hil.circuit.ideal.scaled_certificate` scales them, with the voltage
    scale max(``u_scale``, max |w|, ``vref_max``, 1e-300) (the same operations in the same
    order, so the same numbers).  Writes ``b``, ``on``, ``e``, ``status``, ``z``, ``mu`` (R, n / R)
    as :func:`held_phases_kernel` does, and ``stats`` (20,), indexed by the ``STAT_*``
    constants: the reductions and counts that kernel returns, max |w|,
    w finite (1.0/0.0), scale_v (V), scale_i (A), the scaled primal, dual, KCL and
    complementarity residuals and the worst of them (inf when an entry was not finite).
    """
    stats[:] = 0.0
    top, w_finite = finite_abs_max(w)
    stats[STAT_W_SCALE] = top
    if not w_finite:
        stats[STAT_WORST] = np.inf
        return
    stats[STAT_W_FINITE] = 1.0
    (lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, n_on, finite), (steps, cg_total, unsettled) = held_phases_kernel(
        indptr, indices, data, diag, b_held, e_held, on_held, ke_held, rows, dw, s, h, rtol, max_cg, max_pdas,
        b, on, e, status, z, mu)
    scale_v = max(max(max(u_scale, top), vref_max), 1e-300)
    scale_i, primal, dual, kcl_rel, complementarity, worst = scaled_residuals(lo_z, lo_mu, kcl_abs, comp_abs, ke_abs,
                                                                              b_abs, finite, scale_v)
    stats[STAT_LO_Z] = lo_z
    stats[STAT_LO_MU] = lo_mu
    stats[STAT_KCL] = kcl_abs
    stats[STAT_COMP] = comp_abs
    stats[STAT_KE] = ke_abs
    stats[STAT_B] = b_abs
    stats[STAT_N_ON] = n_on
    stats[STAT_FINITE] = 1.0 if finite else 0.0
    stats[STAT_STEPS] = steps
    stats[STAT_CG] = cg_total
    stats[STAT_UNSETTLED] = unsettled
    stats[STAT_SCALE_V] = scale_v
    stats[STAT_SCALE_I] = scale_i
    stats[STAT_PRIMAL] = primal
    stats[STAT_DUAL] = dual
    stats[STAT_KCL_REL] = kcl_rel
    stats[STAT_COMP_REL] = complementarity
    stats[STAT_WORST] = worst


@njit(cache=True, nogil=True, error_model="numpy")
def coupled_certificate_kernel(indptr, indices, data, diag, b, s, h, e, on, z, mu):  # pragma: no cover - compiled
    """The KKT residuals of a candidate (e, on) for every row of ``b`` (B, n), as :func:`certify` forms them.

    Writes z = s(e − h) (blocking voltages, V) and mu = s(K e − b) on the conducting set,
    0 elsewhere (diode currents, A).  Returns (min z, min mu, max |KCL residual at the
    free nodes|, max |mu·z|, max |K_kk e_k|, max |b|, conducting count, all finite).
    """
    B, n = b.shape
    lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs = np.inf, np.inf, 0.0, 0.0, 0.0, 0.0
    count = 0
    nan_sum = 0.0
    for i in range(B):
        ei = e[i]
        for k in range(n):
            res = _row_dot(indptr, indices, data, k, ei) - b[i, k]
            zk = s[k] * (ei[k] - h[k])
            if on[i, k]:
                mk = s[k] * res
                count += 1
            else:
                mk = 0.0
                kcl_abs = max(kcl_abs, abs(res))
            comp = mk * zk
            z[i, k] = zk
            mu[i, k] = mk
            nan_sum += (res - res) + (zk - zk) + (comp - comp)
            lo_z = min(lo_z, zk)
            lo_mu = min(lo_mu, mk)
            comp_abs = max(comp_abs, abs(comp))
            ke_abs = max(ke_abs, abs(diag[k] * ei[k]))
            b_abs = max(b_abs, abs(b[i, k]))
    return lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, count, nan_sum == 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def edge_products_kernel(a, b, first, second, inv, where, out):  # pragma: no cover - compiled
    """Batch mean of (a_i − a_j)(b_i − b_j) for the node pairs (first[t], second[t]) of a coupling.

    ``a``, ``b`` (B, nodes) node voltages (V) of two measurements; writes
    ``out[where[t]] = inv · Σ_r (a[r, i] − a[r, j])(b[r, i] − b[r, j])`` (``inv`` = 1/B), one
    pass over the rows with no gathered (B × pairs) temporaries.
    """
    m = first.shape[0]
    acc = np.zeros(m)
    for r in range(a.shape[0]):
        ar = a[r]
        br = b[r]
        for t in range(m):
            i = first[t]
            j = second[t]
            acc[t] += (ar[i] - ar[j]) * (br[i] - br[j])
    for t in range(m):
        out[where[t]] = acc[t] * inv
