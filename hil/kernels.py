"""Compiled inner loops (numba) for the per-step hot paths of training.

Each kernel does in one pass over its arrays what a sequence of numpy calls would do in
many, without fast-math (no reassociation or fused multiply-add).  They agree with the numpy
formulas they replace to rounding, not bit for bit: Adam's step is written as
c·m/(√v + eps·√(1−β₂ᵗ)) (algebraically lr·m̂/(√v̂ + eps)), and the nodal sums add in another
order than numpy's pairwise sums, so a training trajectory can differ from the one before the
kernels in the last bits and, over many steps, by a sample or so.  Kernels do not check bounds:
their callers check the shapes first.  They run on one thread and are compiled once per machine (``cache=True``
keeps the machine code next to this file; a first compile takes about a second;
division by zero gives ±inf or NaN as in numpy, which the callers' certificates reject).

* :func:`ideal_diagonal_kernel` — the closed-form ideal-diode solve of uncoupled nodes with
  the residuals of its KKT certificate, reduced for the whole batch;
  :func:`diagonal_phases_kernel` — the same for the ± phases of a held operating point, with the
  port check, w·G_out and the scaled certificate in the same call.
* :func:`adam_kernel` — one Adam step with projection onto the programmable range.
* :func:`hl_phase_kernel` — the central responses of a stacked ± measurement, the
  symmetry (flip) test and the diode-state comparison of both phases, per sample.
* :func:`hl_drive_kernel`, :func:`flip_accounting_kernel` — the port drives of the ± phases and
  the per-sample flip bookkeeping of ``hl``; :func:`hl_held_pass_kernel` — the phase kernel and
  the bookkeeping in one call, for phases whose sources held their voltages;
  :func:`cross_entropy_drive_kernel` — the loss, ŵ and the drives of the phases in one call;
  :func:`hl_plus_phase_kernel` — the + phase alone (its state check, one-sided responses and
  v·v̂); :func:`hl_minus_rows_kernel` — the − phase of the samples whose + phase changed a state
  (and v·v̂ once every one of them is resolved);
  :func:`hl_first_pass_kernel` — the held ± pass and v·v̂.
* :func:`branch_factors_kernel`, :func:`response_diagonal_kernel`, :func:`mean_offset_kernel`,
  :func:`response_product_kernel` (few samples), :func:`response_product_blas_kernel` (a matrix
  product per group), :func:`batch_response_product` (either, by batch size) —
  v·v̂ for every conductance (:meth:`hil.board.BoardTopology.mean_branch_product` from node arrays,
  :meth:`~hil.board.BoardTopology.mean_response_product` from the parts of a held-source response).
* :func:`cross_entropy_kernel`, :func:`differential_argmax_kernel` — the loss, its gradient and
  the predictions on differential port currents; :func:`exp_into` — an exp whose loop
  vectorises (within 1 ulp of numpy's), for the softmax.
* :func:`source_voltages_kernel`, :func:`finite_abs_max`, :func:`repeats_of`,
  :func:`held_rows_kernel` — input checks and held-input matching of the lean uncoupled
  measurement path (:mod:`hil.circuit.uncoupled`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

@njit(cache=True, nogil=True, error_model="numpy")
def ideal_diagonal_kernel(b, delta, diag, s, h, e, z, mu, on):  # pragma: no cover - compiled
    """Solve e = clamp(b / diag) per node and form the certificate's residuals (see
    :func:`hil.circuit.ideal.solve_ideal_diagonal`).

    ``b`` (B₀, n) nodal source currents (A); ``delta`` either has no rows (then row r solves
    b[r]) or R = e.shape[0] rows, and row r solves b[r mod B₀] + delta[r] (the held sources of
    an operating point plus the port change of a perturbation phase, without tiling b).
    ``diag`` (n,) diagonal of K (S), ``s`` (n,) diode orientation as ±1.0, ``h`` (n,) clamp
    levels (V).  Writes e (node voltages), z = s(e − h) (blocking voltages), mu (diode
    currents) and on (conducting), all (R, n); ``z`` may have no rows when s = 1 and h = 0
    (then z = e and is not written).  Returns (min z, min mu, max |KCL at the free nodes|, max |mu·z|, max |K e|,
    max |b|, conducting count, all finite).

    The clamp and the reductions are written with selects into per-node running values
    (reduced over the nodes at the end), so the loop over the nodes carries no dependence
    from one node to the next: which diodes conduct is data, and a mispredicted branch per
    node would cost more than the arithmetic.  Minima and maxima are exact in any order, and
    any ±inf/NaN (also 0/0 at a node without conductance) makes the finiteness flag False.
    """
    R, n = e.shape
    B0 = b.shape[0]
    shifted = delta.shape[0] > 0
    lo, hi = _clamp_bounds(s, h)
    acc = _new_accumulators(n)
    row = np.empty(n)
    for r in range(R):
        rb = r % B0
        if shifted:  # the shifted right-hand side of this row first (a simple loop that vectorises)
            for k in range(n):
                row[k] = b[rb, k] + delta[r, k]
        else:
            for k in range(n):
                row[k] = b[rb, k]
        _solve_row(row, r, diag, s, h, lo, hi, e, z, mu, on, z.shape[0] > 0, acc)
    return _reduce_accumulators(acc)


#: above this many phase rows :func:`diagonal_phases_kernel` forms w G_out as one matrix product
PHASE_PRODUCT_ROWS = 8


@njit(cache=True, nogil=True, error_model="numpy")
def diagonal_phases_kernel(b, w, g_out, diag, s, h, floor_v, e, z, mu, on):  # pragma: no cover - compiled
    """The perturbation phases of a held operating point, solved and certified in one call:
    :func:`ideal_diagonal_kernel` with its ``delta`` = ``w`` G_out, the port voltages checked on
    the way, and the certificate scaled as :func:`hil.circuit.ideal.scaled_certificate` does.

    ``b`` (B₀, n) held nodal source currents (A); ``w`` (R, q) port voltages (V), row r is sample
    r mod B₀; ``g_out`` (q, n) output conductances (S); ``floor_v`` the voltage scale without the
    ports (max of the sources' scale and the clamp levels, V).  w G_out is one BLAS product above
    :data:`PHASE_PRODUCT_ROWS` rows (there it is faster) and summed row by row, over the ports in
    order, below.  Writes e, z, mu, on as :func:`ideal_diagonal_kernel`.  Returns (ports finite,
    voltage scale V, current scale A, primal, dual, KCL, complementarity residuals (scaled), the
    worst of them (inf when anything was not finite), max |KCL| A, conducting count).
    """
    R, n = e.shape
    q = w.shape[1]
    B0 = b.shape[0]
    write_z = z.shape[0] > 0
    bad = 0.0
    top = 0.0
    for r in range(R):
        for j in range(q):
            v = w[r, j]
            bad += v - v  # 0 unless some entry is ±inf or NaN
            top = max(top, abs(v))
    lo, hi = _clamp_bounds(s, h)
    acc = _new_accumulators(n)
    row = np.empty(n)
    d = np.empty(n)
    product = R > PHASE_PRODUCT_ROWS
    if product:  # w G_out into e first: row r of it is read into ``row`` before the solve writes e[r]
        np.dot(w, g_out, e)
    for r in range(R):
        rb = r % B0
        if product:
            for k in range(n):
                row[k] = b[rb, k] + e[r, k]
        else:
            for k in range(n):
                d[k] = 0.0
            for o in range(q):  # (w G_out)[r], summed over the ports in order
                wo = w[r, o]
                for k in range(n):
                    d[k] += wo * g_out[o, k]
            for k in range(n):
                row[k] = b[rb, k] + d[k]
        _solve_row(row, r, diag, s, h, lo, hi, e, z, mu, on, write_z, acc)
    lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, count, finite = _reduce_accumulators(acc)
    scale_v = max(floor_v, top)
    scale_i, primal, dual, kcl_rel, complementarity, worst = scaled_residuals(lo_z, lo_mu, kcl_abs, comp_abs, ke_abs,
                                                                              b_abs, finite, scale_v)
    return bad == 0.0, scale_v, scale_i, primal, dual, kcl_rel, complementarity, worst, kcl_abs, count


@njit(inline="always")
def scaled_residuals(lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, finite, scale_v):  # pragma: no cover - compiled
    """:func:`hil.circuit.ideal.scaled_certificate` inside compiled code (the same operations, so the
    same numbers): (current scale A, primal, dual, KCL and complementarity residuals relative to
    the scales, the worst of them, inf when something was not finite)."""
    scale_i = max(b_abs, ke_abs, 1e-300)
    primal = max(-lo_z, 0.0) / scale_v
    dual = max(-lo_mu, 0.0) / scale_i
    kcl_rel = kcl_abs / scale_i
    complementarity = comp_abs / scale_v / scale_i
    worst = max(max(primal, dual), max(complementarity, kcl_rel)) if finite else np.inf
    return scale_i, primal, dual, kcl_rel, complementarity, worst


@njit(inline="always")
def _clamp_bounds(s, h):  # pragma: no cover - compiled
    """The clamp of every node as bounds (n,) each: e ≥ h where s = +1, e ≤ h where s = −1 (V)."""
    n = h.shape[0]
    lo = np.empty(n)
    hi = np.empty(n)
    for k in range(n):
        lo[k] = h[k] if s[k] > 0.0 else -np.inf
        hi[k] = np.inf if s[k] > 0.0 else h[k]
    return lo, hi


@njit(inline="always")
def _new_accumulators(n):  # pragma: no cover - compiled
    """Per-node running values of the certificate: min z, min mu, max |KCL|, max |mu z|, max |K e|,
    max |b|, non-finite, count (8, n)."""
    acc = np.zeros((8, n))
    for k in range(n):
        acc[0, k] = np.inf
        acc[1, k] = np.inf
    return acc


@njit(inline="always")
def _solve_row(row, r, diag, s, h, lo, hi, e, z, mu, on, write_z, acc):  # pragma: no cover - compiled
    """Row r of :func:`diagonal_phases_kernel`: the closed form of nodal currents ``row`` (n,), written
    into e, mu, on (and z) and folded into the accumulators (shared with :func:`ideal_diagonal_kernel`)."""
    n = row.shape[0]
    for k in range(n):
        bk = row[k]
        ek, zk, mk, c, cf, bad, kcl, comp, ke = _clamped_node(bk, diag[k], h[k], s[k], lo[k], hi[k])
        e[r, k] = ek
        mu[r, k] = mk
        on[r, k] = c
        acc[0, k] = min(zk, acc[0, k])
        acc[1, k] = min(mk, acc[1, k])
        acc[2, k] = max(kcl, acc[2, k])
        acc[3, k] = max(comp, acc[3, k])
        acc[4, k] = max(ke, acc[4, k])
        acc[5, k] = max(abs(bk), acc[5, k])
        acc[6, k] += bad
        acc[7, k] += cf
    if write_z:
        for k in range(n):
            z[r, k] = (e[r, k] - h[k]) * s[k]


@njit(inline="always")
def _reduce_accumulators(acc):  # pragma: no cover - compiled
    """(min z, min mu, max |KCL|, max |mu z|, max |K e|, max |b|, conducting count, all finite)."""
    n = acc.shape[1]
    lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs = np.inf, np.inf, 0.0, 0.0, 0.0, 0.0
    count = 0.0
    nan_sum = 0.0
    for k in range(n):
        lo_z = min(lo_z, acc[0, k])
        lo_mu = min(lo_mu, acc[1, k])
        kcl_abs = max(kcl_abs, acc[2, k])
        comp_abs = max(comp_abs, acc[3, k])
        ke_abs = max(ke_abs, acc[4, k])
        b_abs = max(b_abs, acc[5, k])
        nan_sum += acc[6, k]
        count += acc[7, k]
    return lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, int(count), nan_sum == 0.0


@njit(inline="always")
def _clamped_node(bk, dk, hk, sk, lok, hik):  # pragma: no cover - compiled
    """One node of :func:`ideal_diagonal_kernel`: (e, z, mu, conducting, conducting as 0/1,
    0 unless something is ±inf or NaN, |KCL residual| if free, |mu·z|, |K e|)."""
    ef = bk / dk
    c = (ef - hk) * sk < 0.0  # the free solution violates the clamp: the diode conducts
    cf = 1.0 if c else 0.0
    ek = lok if ef < lok else ef
    ek = hik if ek > hik else ek
    zk = (ek - hk) * sk
    ke = dk * ek
    res = ke - bk  # K e − b: s·mu where clamped, the KCL residual where free
    mk = (res * sk) * cf  # (× 1 or × 0: exact)
    free = res * (1.0 - cf)
    comp = mk * zk
    return ek, zk, mk, c, cf, (ef - ef) + (res - res) + (comp - comp), abs(free), abs(comp), abs(ke)


@njit(cache=True, nogil=True, error_model="numpy")
def adam_kernel(g, grad, m, v, frozen, b1, b2, scale, eps_term, g_min, g_max, out):  # pragma: no cover
    """One Adam step over every conductance, in place on the moments ``m`` and ``v``.

    new = clip(g − scale·m / (√v + eps_term), g_min, g_max) with m = β₁m + (1−β₁)·grad and
    v = β₂v + (1−β₂)·grad², where ``scale`` = lr·√(1−β₂ᵗ)/(1−β₁ᵗ) and ``eps_term`` =
    eps·√(1−β₂ᵗ); the entries listed in ``frozen`` keep zero moments and their conductance.
    """
    c1 = 1.0 - b1
    c2 = 1.0 - b2
    for i in range(g.shape[0]):
        gi = grad[i]
        mi = m[i] * b1 + gi * c1
        vi = v[i] * b2 + (gi * c2) * gi
        m[i] = mi
        v[i] = vi
        # (numpy's scalar minimum, maximum and sqrt: they vectorise, and a NaN propagates as in np.clip)
        out[i] = np.minimum(np.maximum(g[i] - (mi * scale) / (np.sqrt(vi) + eps_term), g_min), g_max)
    for i in frozen:
        m[i] = 0.0
        v[i] = 0.0
        out[i] = g[i]


@njit(cache=True, nogil=True, error_model="numpy")
def hl_phase_kernel(e_both, w_both, e0, w0, on_both, on0, phase_ok, es, rel_tol, noise_floor, n_hat_e, n_hat_w,
                    plus_flip, minus_flip, by_response, states_name_regions=True):  # pragma: no cover - compiled
    """Per sample of a stacked ± measurement (rows k and k + K are the + and − phase of sample k):

    * the central response (v₊ − v₋)·(1/(2 ε_k)) of every hidden node and port into ``n_hat_e`` (K, n)
      and ``n_hat_w`` (K, q);
    * ``by_response[k]``: the ± responses are not mirror images, max|v₊ + v₋ − 2v₀| >
      rel_tol/2 · max|v₊ − v₋| + noise_floor (a flip seen in the readings alone);
    * ``plus_flip[k]`` / ``minus_flip[k]``: a diode state of that phase differs from the
      operating point's (only when ``on_both`` has rows; otherwise left False);
    * where exactly one phase changed a state and ``phase_ok[k]``, the responses of sample k are
      instead the other phase's one-sided difference, (v₊ − v₀)/ε_k or (v₀ − v₋)/ε_k.

    Without ``states_name_regions`` (elements with two clamps, both reported on: a phase that
    changed no state may still have gone from one clamp to the other) a state change in either
    phase counts for both, so no sample is resolved from one phase.
    """
    K = e0.shape[0]
    n = e0.shape[1]
    q = w0.shape[1]
    states = on_both.shape[0] > 0
    for k in range(K):
        half_inv = 1.0 / (2.0 * es[k])  # (one division per sample, a product per node: within 1 ulp)
        for j in range(n):  # the responses first: a loop without reductions vectorises
            n_hat_e[k, j] = (e_both[k, j] - e_both[k + K, j]) * half_inv
        for j in range(q):
            n_hat_w[k, j] = (w_both[k, j] - w_both[k + K, j]) * half_inv
        asym, resp = _asym_resp(e_both, e0, k, K, n, 0.0, 0.0)
        asym, resp = _asym_resp(w_both, w0, k, K, q, asym, resp)
        by_response[k] = asym > resp * (rel_tol / 2.0) + noise_floor
        if states:
            pf = False
            mf = False
            for j in range(n):  # without branches: the comparison vectorises
                o = on0[k, j]
                pf |= on_both[k, j] != o
                mf |= on_both[k + K, j] != o
            if not states_name_regions:
                pf = mf = pf or mf
            plus_flip[k] = pf
            minus_flip[k] = mf
            if pf != mf and phase_ok[k]:  # the phase that kept every state gives the exact response
                off = K if pf else 0
                for j in range(n):
                    v = e_both[k + off, j]
                    n_hat_e[k, j] = (e0[k, j] - v if pf else v - e0[k, j]) / es[k]
                for j in range(q):
                    v = w_both[k + off, j]
                    n_hat_w[k, j] = (w0[k, j] - v if pf else v - w0[k, j]) / es[k]


@njit(inline="always")
def _asym_resp(v_both, v0, k, K, m, asym, resp):  # pragma: no cover - compiled
    """(max(asym, max_j |v₊ + v₋ − 2v₀|), max(resp, max_j |v₊ − v₋|)) over the m columns of sample k
    (rows k and k + K of ``v_both``), in four interleaved running maxima per quantity (exact in
    any order; a NaN never raises one)."""
    a1 = a2 = a3 = r1 = r2 = r3 = 0.0
    m4 = m - m % 4
    p = v_both[k]
    n = v_both[k + K]
    z = v0[k]
    for j in range(0, m4, 4):
        a0_ = abs(p[j] + n[j] - z[j] - z[j])
        a1_ = abs(p[j + 1] + n[j + 1] - z[j + 1] - z[j + 1])
        a2_ = abs(p[j + 2] + n[j + 2] - z[j + 2] - z[j + 2])
        a3_ = abs(p[j + 3] + n[j + 3] - z[j + 3] - z[j + 3])
        d0 = abs(p[j] - n[j])
        d1 = abs(p[j + 1] - n[j + 1])
        d2 = abs(p[j + 2] - n[j + 2])
        d3 = abs(p[j + 3] - n[j + 3])
        asym = a0_ if a0_ > asym else asym
        a1 = a1_ if a1_ > a1 else a1
        a2 = a2_ if a2_ > a2 else a2
        a3 = a3_ if a3_ > a3 else a3
        resp = d0 if d0 > resp else resp
        r1 = d1 if d1 > r1 else r1
        r2 = d2 if d2 > r2 else r2
        r3 = d3 if d3 > r3 else r3
    for j in range(m4, m):
        a = abs(p[j] + n[j] - z[j] - z[j])
        d = abs(p[j] - n[j])
        asym = a if a > asym else asym
        resp = d if d > resp else resp
    for a in (a1, a2, a3):
        asym = a if a > asym else asym
    for d in (r1, r2, r3):
        resp = d if d > resp else resp
    return asym, resp


@njit(cache=True, nogil=True, error_model="numpy")
def branch_factors_kernel(a, b, h0, n, fixed, inv, ranges, left, right, moves):  # pragma: no cover
    """The two factors of :meth:`hil.board.BoardTopology.mean_branch_product` in one pass.

    ``a``, ``b`` (B, nodes) node arrays; hidden nodes are columns h0 … h0 + n − 1, ``fixed``
    the fixed-potential columns; ``inv`` = 1/B.  Fills ``left`` (2B + 2, n) with
    [−a_h·inv ; dh ; 1 ; −b_h] (dh_k = Σ_b a_bk b_bk · inv) and ``right`` (2B + 2, f) with
    [b_f ; 1 ; df ; a_f·inv] (df_j = Σ_b (a_bj·inv) b_bj), and ``moves[i]`` = (any b_f ≠ 0,
    any a_f ≠ 0) over the fixed columns ``ranges[i, 0]`` … ``ranges[i, 1]`` − 1.
    """
    B = a.shape[0]
    nf = fixed.shape[0]
    dh = left[B]
    df = right[B + 1]
    for k in range(n):
        dh[k] = 0.0
    for j in range(nf):
        df[j] = 0.0
    for r in range(B):  # row by row: every array is read and written along its rows
        for k in range(n):
            ak = a[r, h0 + k]
            bk = b[r, h0 + k]
            left[r, k] = ak * -inv
            left[B + 2 + r, k] = -bk
            dh[k] += ak * bk
        for j in range(nf):
            c = fixed[j]
            bj = b[r, c]
            aj = a[r, c] * inv
            right[r, j] = bj
            right[B + 2 + r, j] = aj
            df[j] += aj * bj
    for k in range(n):
        dh[k] *= inv
        left[B + 1, k] = 1.0
    for j in range(nf):
        right[B, j] = 1.0
    for i in range(ranges.shape[0]):  # which sides move: scanned afterwards, stopping at the first non-zero
        moves[i, 0] = _any_nonzero(right, 0, B, ranges[i, 0], ranges[i, 1])
        moves[i, 1] = _any_nonzero(right, B + 2, 2 * B + 2, ranges[i, 0], ranges[i, 1])


@njit(cache=True, nogil=True, error_model="numpy")
def response_diagonal_kernel(e, e_hat, w, w_hat, inv, dh, df):  # pragma: no cover - compiled
    """The diagonal terms of a batch-mean v·v̂: dh_k = Σ_b e_bk ê_bk · inv into ``dh`` (n,) for
    ``e``, ``e_hat`` (B, n) and df_o = Σ_b w_bo ŵ_bo · inv into ``df`` (q,) for ``w``, ``w_hat``
    (B, q); returns whether some port voltage of ``w`` is not 0 V."""
    B, n = e.shape
    q = w.shape[1]
    for k in range(n):
        dh[k] = 0.0
    for j in range(q):
        df[j] = 0.0
    w_moves = False
    for r in range(B):
        for k in range(n):
            dh[k] += e[r, k] * e_hat[r, k]
        for j in range(q):
            df[j] += w[r, j] * w_hat[r, j]
            w_moves |= w[r, j] != 0.0
    for k in range(n):
        dh[k] *= inv
    for j in range(q):
        df[j] *= inv
    return w_moves


@njit(cache=True, nogil=True, error_model="numpy")
def mean_offset_kernel(m, dh, df, inv, hidden_rows):  # pragma: no cover - compiled
    """In place m ← dh + df − inv·m, the hidden nodes' ``dh`` along one axis and the fixed nodes'
    ``df`` along the other: m[k, j] for ``hidden_rows`` (m (n, w)), else m[j, k] (m (w, n)).
    Turns the products Σ_b (…) of a group into its batch mean of v·v̂."""
    if hidden_rows:
        for k in range(m.shape[0]):
            d = dh[k]
            for j in range(m.shape[1]):
                m[k, j] = (d + df[j]) - inv * m[k, j]
    else:
        for j in range(m.shape[0]):
            f = df[j]
            for k in range(m.shape[1]):
                m[j, k] = (dh[k] + f) - inv * m[j, k]


@njit(cache=True, nogil=True, error_model="numpy")
def _transposed_product(x, y, out):  # pragma: no cover - compiled
    """``out`` ← xᵀ y (a BLAS product) for C-ordered (rows × a) ``x``, (rows × b) ``y``, (a × b) ``out``."""
    np.dot(x.T, y, out)


#: no source map for :func:`source_response_sums` (every source column in the matrix product)
NO_SOURCE_MAP = np.empty((0, 4), dtype=np.int64)


@njit(inline="always")
def _no_source_sums():  # pragma: no cover - compiled
    """:func:`source_response_sums`' answer when the map does not apply: four arrays without entries."""
    return np.empty((0, 0)), np.empty(0), np.empty(0, dtype=np.int64), np.empty(0)


@njit(cache=True, nogil=True, error_model="numpy")
def source_response_sums(u, e_hat, sources):  # pragma: no cover - compiled
    """The batch sums Σ_b ê_bk u_bj of every hidden node k and source j as one matrix product over
    the independent source columns: (sums (n, f) over those f columns, Σ_b ê_bk (n,), column of
    ``sums`` per source (p,) int64, −1 for a rail, factor per source (p,)), so that the sum of
    source j is factor_j · sums[k, column_j], or factor_j · Σ_b ê_bk for a rail; every array
    without entries when ``sources`` does not apply to ``u``.

    ``sources`` (p, 4) int64, one row per source j: (0, ·, position among the independent
    columns, ·) for an independent column; (1, i, ·, s) for a column that is ``s`` (±1) times
    source i's (an inverted copy of an input: u_bj = s·u_bi, exactly); (2, ·, ·, ·) for a rail
    (u_bj the same in every sample).  The copies and the rails are checked against ``u`` first,
    entry by entry, row by row (a NaN never matches): if one does not hold, or no column
    repeats, nothing is formed.
    """
    B, p = u.shape
    n = e_hat.shape[1]
    if sources.shape[0] != p or B == 0:
        return _no_source_sums()
    col_of = np.empty(p, dtype=np.int64)
    factor = np.empty(p)
    # the sources of each kind as index lists (so that the passes over u below have no branches)
    lists = np.empty((4, p), dtype=np.int64)  # (one allocation for the four)
    free_src = lists[0]  # source j of independent column c
    copy_src = lists[1]  # a copy j …
    copy_of = lists[2]  # … of source i …
    copy_sign = np.empty(p)  # … with sign s
    rail_src = lists[3]
    n_free = n_copy = n_rail = 0
    for j in range(p):
        kind = sources[j, 0]
        if kind == 0:
            free_src[sources[j, 2]] = j
            n_free += 1
            col_of[j] = sources[j, 2]
            factor[j] = 1.0
        elif kind == 1:
            copy_src[n_copy] = j
            copy_of[n_copy] = sources[j, 1]
            copy_sign[n_copy] = float(sources[j, 3])
            n_copy += 1
            col_of[j] = sources[sources[j, 1], 2]
            factor[j] = float(sources[j, 3])
        else:
            rail_src[n_rail] = j
            n_rail += 1
            col_of[j] = -1
            factor[j] = u[0, j]
    if n_free == p:
        return _no_source_sums()
    free = np.empty((B, n_free))
    total = np.zeros(n)
    for r in range(B):  # row by row through u (C order); a NaN never matches
        same = True
        for c in range(n_copy):
            same &= u[r, copy_src[c]] == copy_sign[c] * u[r, copy_of[c]]
        for c in range(n_rail):
            same &= u[r, rail_src[c]] == factor[rail_src[c]]
        if not same:
            return _no_source_sums()
        for c in range(n_free):
            free[r, c] = u[r, free_src[c]]
        for k in range(n):  # (Σ_b ê_bk in the same pass, sample by sample)
            total[k] += e_hat[r, k]
    sums = np.empty((n, n_free))
    _transposed_product(e_hat, free, sums)
    return sums, total, col_of, factor


@njit(cache=True, nogil=True, error_model="numpy")
def response_product_blas_kernel(u, e, w, e_hat, w_hat, inv, blocks, sources, dh, df, out):  # pragma: no cover
    """:func:`response_product_kernel` for larger batches, where each dense group is one BLAS
    product (two for a port group when some port voltage of ``w`` is not 0 V) written straight
    into its slice of ``out`` and turned into the batch mean in place (:func:`mean_offset_kernel`);
    a source group whose columns repeat (``sources``) is written from the one product over the
    independent columns, the mean formed as it is written (the same operations).
    Same arguments (``blocks`` (G, 5) int64 rows as there), plus ``df`` (q,) for the ports' diagonal
    terms; all arrays C-contiguous float64.  One compiled call instead of a Python loop over the
    groups (the Python steps between the products cost about as much as a small product).
    ``sources``: how the source columns repeat (:func:`source_response_sums`; no rows: none
    assumed); when it holds for ``u``, the source groups read their sums from one matrix product
    over the independent columns instead of one over every source."""
    n = e.shape[1]
    w_moves = response_diagonal_kernel(e, e_hat, w, w_hat, inv, dh, df)
    sums, total, col_of, factor = source_response_sums(u, e_hat, sources)
    for g in range(blocks.shape[0]):
        start, kind, c0, c1, row_major = blocks[g, 0], blocks[g, 1], blocks[g, 2], blocks[g, 3], blocks[g, 4]
        width = c1 - c0
        if kind == 2:  # hidden × ground: dh_k
            for k in range(n):
                out[start + k] = dh[k]
            continue
        m = out[start:start + n * width].reshape((n, width) if row_major else (width, n))
        if kind == 0 and col_of.shape[0]:  # the source sums from the one product over independent columns,
            # turned into the batch mean as they are written (the operations of mean_offset_kernel, df = 0)
            if row_major:
                for k in range(n):
                    d = dh[k] + 0.0
                    for j in range(width):
                        c = col_of[c0 + j]
                        m[k, j] = d - inv * (factor[c0 + j] * (sums[k, c] if c >= 0 else total[k]))
            else:
                for j in range(width):
                    c = col_of[c0 + j]
                    f = factor[c0 + j]
                    for k in range(n):
                        m[j, k] = (dh[k] + 0.0) - inv * (f * (sums[k, c] if c >= 0 else total[k]))
            continue
        fixed = u if kind == 0 else w_hat  # the source voltages, or the ports' drive
        if c0 != 0 or c1 != fixed.shape[1]:
            fixed = np.ascontiguousarray(fixed[:, c0:c1])
        lhs = e_hat if kind == 0 else e
        # (every product is Xᵀ Y of two C-ordered arrays into a C-ordered one: one compiled form)
        _transposed_product(lhs, fixed, m) if row_major else _transposed_product(fixed, lhs, m)
        if kind == 1 and w_moves:  # + Σ_b ê_bk w_bo for ports not at 0 V
            ports = w if c0 == 0 and c1 == w.shape[1] else np.ascontiguousarray(w[:, c0:c1])
            more = np.empty(m.shape)
            _transposed_product(e_hat, ports, more) if row_major else _transposed_product(ports, e_hat, more)
            m += more
        mean_offset_kernel(m, dh, df[c0:c1] if kind == 1 else np.zeros(width), inv, row_major == 1)


@njit(cache=True, nogil=True, error_model="numpy")
def response_product_kernel(u, e, w, e_hat, w_hat, inv, blocks, dh, out):  # pragma: no cover - compiled
    """Batch means of v·v̂ per conductance for a response that is 0 at the sources and ground,
    group by group, without factor arrays (for small batches, where calling a matrix product
    costs more than doing it).

    ``u`` (B, p), ``e``/``e_hat`` (B, n), ``w``/``w_hat`` (B, q); ``inv`` = 1/B.  ``blocks`` (G, 5)
    int64 rows (first edge, kind 0 source / 1 port / 2 ground, first column, last column + 1
    in that kind's columns, 1 if row-major (hidden node outer) else 0).  Writes
    dh_k = Σ_b e_bk ê_bk·inv into ``dh`` (n,) and, into ``out``: hidden × source
    dh_k − inv·Σ_b ê_bk u_bj; hidden × port dh_k + df_o − inv·Σ_b (e_bk ŵ_bo + ê_bk w_bo) with
    df_o = Σ_b w_bo ŵ_bo·inv; hidden × ground dh_k.  The sums over the batch run as row
    updates along the group's inner index (they vectorise).
    """
    B, n = e.shape
    q = w.shape[1]
    for k in range(n):
        dh[k] = 0.0
    for r in range(B):
        for k in range(n):
            dh[k] += e[r, k] * e_hat[r, k]
    for k in range(n):
        dh[k] *= inv
    df = np.zeros(q)
    for r in range(B):
        for o in range(q):
            df[o] += (w[r, o] * inv) * w_hat[r, o]
    for g in range(blocks.shape[0]):
        start, kind, c0, c1, row_major = blocks[g, 0], blocks[g, 1], blocks[g, 2], blocks[g, 3], blocks[g, 4]
        width = c1 - c0
        if kind == 2:
            for k in range(n):
                out[start + k] = dh[k]
            continue
        # the group as a 2-D view, written row by row (contiguous inner loops vectorise); the first
        # sample's terms are added in the same pass that writes dh (+ df), as (dh + df) + term
        o = out[start:start + n * width].reshape((n, width) if row_major else (width, n))
        if B == 0:
            continue
        for r in range(B):
            er = e[r]
            hr = e_hat[r]
            first = r == 0
            if kind == 0:
                ur = u[r, c0:c1]
                if row_major:
                    for k in range(n):
                        a = hr[k] * -inv
                        ok = o[k]
                        if first:
                            base = dh[k]
                            for j in range(width):
                                ok[j] = base + a * ur[j]
                        else:
                            for j in range(width):
                                ok[j] += a * ur[j]
                else:
                    for j in range(width):
                        a = ur[j] * -inv
                        oj = o[j]
                        if first:
                            for k in range(n):
                                oj[k] = dh[k] + hr[k] * a
                        else:
                            for k in range(n):
                                oj[k] += hr[k] * a
            else:
                wr = w[r, c0:c1]
                whr = w_hat[r, c0:c1]
                if row_major:
                    for k in range(n):
                        a = er[k] * -inv
                        b = hr[k] * -inv
                        ok = o[k]
                        if first:
                            for j in range(width):
                                ok[j] = (dh[k] + df[c0 + j]) + (a * whr[j] + b * wr[j])
                        else:
                            for j in range(width):
                                ok[j] += a * whr[j] + b * wr[j]
                else:
                    for j in range(width):
                        a = whr[j] * -inv
                        b = wr[j] * -inv
                        oj = o[j]
                        if first:
                            extra = df[c0 + j]
                            for k in range(n):
                                oj[k] = (dh[k] + extra) + (er[k] * a + hr[k] * b)
                        else:
                            for k in range(n):
                                oj[k] += er[k] * a + hr[k] * b


#: up to this many samples a batch mean of v·v̂ is one compiled pass over the groups
#: (:func:`response_product_kernel`); above, one matrix product per group (calling one costs more
#: than doing it for a few samples)
SMALL_BATCH = 4


@njit(cache=True, nogil=True, error_model="numpy")
def batch_response_product(u, e, w, e_hat, w_hat, inv, blocks, sources, out):  # pragma: no cover - compiled
    """Batch means of v·v̂ per conductance (see :func:`response_product_kernel`, same arguments but
    ``dh``): the compiled pass for up to :data:`SMALL_BATCH` samples, a matrix product per group
    (:func:`response_product_blas_kernel`, which uses the source map ``sources``) above."""
    n = e.shape[1]
    if e.shape[0] <= SMALL_BATCH:
        response_product_kernel(u, e, w, e_hat, w_hat, inv, blocks, np.empty(n), out)
    else:
        response_product_blas_kernel(u, e, w, e_hat, w_hat, inv, blocks, sources, np.empty(n),
                                     np.empty(w.shape[1]), out)


@njit(inline="always")
def _any_nonzero(m, r0, r1, c0, c1):  # pragma: no cover - compiled
    """Any m[r, c] ≠ 0 for r0 ≤ r < r1, c0 ≤ c < c1."""
    for r in range(r0, r1):
        for c in range(c0, c1):
            if m[r, c] != 0.0:
                return True
    return False


@njit(cache=True, nogil=True, error_model="numpy")
def count_changes(new, old):  # pragma: no cover - compiled
    """How many entries of ``new`` differ from ``old`` (both (m,))."""
    count = 0
    for i in range(new.shape[0]):
        count += new[i] != old[i]
    return count


@njit(cache=True, nogil=True, error_model="numpy")
def nodal_sums_kernel(g_in, hh_row_sum, g_leak, g_out, rows, diag, in_col_sum, out_row_sum):  # pragma: no cover
    """Diagonal of K for the hidden nodes ``rows`` and, when their arrays have entries, the
    column sums of ``g_in`` (p,) and the row sums of ``g_out`` (q,), siemens.

    diag[k] = Σ_j g_in[k, j] + hh_row_sum[k] + g_leak[k] + Σ_o g_out[o, k], every sum in a
    fixed order, so a partial update adds in exactly the order of a full one.
    """
    p = g_in.shape[1]
    q = g_out.shape[0]
    p8 = p - p % 8
    # every row in ascending order (a full refresh): the column sums are added in the same pass,
    # in the same order (ascending rows) as the separate pass below
    fused = in_col_sum.shape[0] > 0 and rows.shape[0] == g_in.shape[0]
    for i in range(rows.shape[0]):
        fused = fused and rows[i] == i
    if in_col_sum.shape[0]:
        in_col_sum[:] = 0.0
    for k in rows:
        # eight running sums (independent additions pipeline and vectorise; the order is fixed,
        # so still deterministic), combined pairwise in a fixed order
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        s4 = 0.0
        s5 = 0.0
        s6 = 0.0
        s7 = 0.0
        for j in range(0, p8, 8):
            s0 += g_in[k, j]
            s1 += g_in[k, j + 1]
            s2 += g_in[k, j + 2]
            s3 += g_in[k, j + 3]
            s4 += g_in[k, j + 4]
            s5 += g_in[k, j + 5]
            s6 += g_in[k, j + 6]
            s7 += g_in[k, j + 7]
        s_in = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        for j in range(p8, p):
            s_in += g_in[k, j]
        if fused:
            for j in range(p):
                in_col_sum[j] += g_in[k, j]
        s_out = 0.0
        for o in range(q):
            s_out += g_out[o, k]
        diag[k] = s_in + hh_row_sum[k] + g_leak[k] + s_out
    if in_col_sum.shape[0] and not fused:
        for k in range(g_in.shape[0]):
            for j in range(p):
                in_col_sum[j] += g_in[k, j]
    if out_row_sum.shape[0]:
        for o in range(q):
            s = 0.0
            for k in range(g_out.shape[1]):
                s += g_out[o, k]
            out_row_sum[o] = s


@njit(cache=True, nogil=True, error_model="numpy")
def source_voltages_kernel(x, idx, sign, offset, u):  # pragma: no cover - compiled
    """Source voltages of sources that each follow one input or are rails, with their scale.

    u[r, j] = x[r, idx[j]] (sign +1), −x[r, idx[j]] (sign −1), plus ``offset[j]`` where it is
    not 0; a rail (sign 0) is ``offset[j]``.  ``x`` (B, n_inputs), u (B, p), volts.  Returns
    (max |u|, every entry of ``x`` finite).
    """
    B = x.shape[0]
    p = u.shape[1]
    bad = 0.0
    for r in range(B):
        for i in range(x.shape[1]):
            v = x[r, i]
            bad += v - v  # 0 unless some input is ±inf or NaN
    top = 0.0
    for r in range(B):
        for j in range(p):
            sj = sign[j]
            v = x[r, idx[j]] if sj > 0.0 else (-x[r, idx[j]] if sj < 0.0 else 0.0)
            if offset[j] != 0.0:
                v += offset[j]
            u[r, j] = v
            top = max(top, abs(v))
    return top, bad == 0.0


#: ln 2 split in two (the high part has trailing zero bits, so k·LN2_HI is exact for |k| < 2¹¹)
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2_E = 1.4426950408889634


@njit(cache=True, nogil=True, error_model="numpy")
def exp_into(x, out):  # pragma: no cover - compiled
    """out[i] = exp(x[i]) for the 1-D float arrays ``x`` and ``out``, within 1 ulp of ``np.exp``,
    NaN for NaN, 0 and inf where exp under- or overflows.  Written so that the loops vectorise (a loop of scalar ``np.exp`` calls does not):
    x = k·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor polynomial to degree 13 (remainder below
    2⁻⁵⁶), and 2^k applied as two powers of two built from their exponent bits (so that results
    down to the subnormal range and up to the overflow are scaled exactly, with one rounding)."""
    n = x.shape[0]
    scale_bits = np.empty(n, dtype=np.int64)
    for i in range(n):
        xi = x[i]
        xi = xi if xi > -746.0 else -746.0  # (a NaN takes -746 here and is restored below)
        xi = xi if xi < 710.0 else 710.0
        kf = np.floor(xi * _LOG2_E + 0.5)
        r = (xi - kf * _LN2_HI) - kf * _LN2_LO
        out[i] = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (
            1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0 + r * (1.0 / 362880.0 + r * (
                1.0 / 3628800.0 + r * (1.0 / 39916800.0 + r * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0)))))))))))))
        scale_bits[i] = np.int64(kf)
    half = np.empty(n, dtype=np.int64)
    for i in range(n):  # 2^k = 2^(k//2) · 2^(k − k//2), each a normal number for -1076 ≤ k ≤ 1024
        k = scale_bits[i]
        h = k >> 1
        half[i] = (h + 1023) << 52
        scale_bits[i] = (k - h + 1023) << 52
    s1 = half.view(np.float64)
    s2 = scale_bits.view(np.float64)
    for i in range(n):
        xi = x[i]
        out[i] = (out[i] * s1[i]) * s2[i] if xi == xi else xi


@njit(cache=True, nogil=True, error_model="numpy")
def cross_entropy_kernel(y, t, indptr, cols, vals, gain, loss, dy):  # pragma: no cover - compiled
    """Softmax cross-entropy on differential port currents, per sample, in one pass.

    ``y`` (B, q) port currents (A), ``t`` (B,) class labels, the differential matrix d (k, q) by
    its nonzero entries (compressed rows: class c has the entries ``vals[indptr[c]:indptr[c + 1]]``
    in the columns ``cols[…]``, ascending), ``gain`` (1/A).  Logits z = gain · d y; writes
    ``loss`` (B,) = −log softmax(z)_t and ``dy`` (B, q) = gain · (softmax(z) − onehot(t)) d, in
    A⁻¹ (see :func:`_cross_entropy_by_port` for the order of every sum).  Returns False if a
    label is outside 0 … k − 1 (nothing written).
    """
    if not _labels_in_range(t, indptr.shape[0] - 1):
        return False
    d_t = _cross_entropy_by_port(y, t, indptr, cols, vals, gain, loss)
    B, q = y.shape
    for r in range(B):
        for j in range(q):
            dy[r, j] = d_t[j, r] * gain
    return True


@njit(inline="always")
def _labels_in_range(t, k):  # pragma: no cover - compiled
    """Every class label of ``t`` in 0 … k − 1."""
    ok = True
    for r in range(t.shape[0]):
        ok &= (t[r] >= 0) & (t[r] < k)
    return ok


@njit(inline="always")
def _cross_entropy_by_port(y, t, indptr, cols, vals, gain, loss):  # pragma: no cover - compiled
    """The body of :func:`cross_entropy_kernel` with the samples along the inner index (labels
    checked): writes ``loss`` (B,) and returns (q, B) Σ_c (softmax(z) − onehot(t))_c d_cj per
    port j and sample, which times ``gain`` is ∂ℓ/∂y transposed.

    Every loop over classes or ports runs over the whole batch inside, so that it vectorises (a
    loop per sample over ten classes and twenty ports does not, and its short loops cost more
    than their arithmetic).  Per sample the operations and their order are those of the plain
    formula: z_c = gain · (sum of y_j d_cj left to right over class c's entries, from 0.0),
    shifted by the sample's largest; softmax(z)_c = exp(z_c − max z) · (1 / Σ exp, summed in
    class order), the exponentials of the whole batch in one :func:`exp_into` pass; the loss
    log Σ − (z_t − max z); each port's sum over the classes that read it, in class order."""
    B, q = y.shape
    k = indptr.shape[0] - 1
    y_t = np.empty((q, B))
    for r in range(B):
        for j in range(q):
            y_t[j, r] = y[r, j]
    z = np.zeros((k, B))
    top = np.full(B, -np.inf)
    for c in range(k):
        zc = z[c]
        for i in range(indptr[c], indptr[c + 1]):
            yj = y_t[cols[i]]
            v = vals[i]
            for r in range(B):
                zc[r] += yj[r] * v
        for r in range(B):
            zc[r] *= gain
            top[r] = max(top[r], zc[r])
    for c in range(k):
        zc = z[c]
        for r in range(B):
            zc[r] -= top[r]
    ex = np.empty((k, B))
    exp_into(z.reshape(k * B), ex.reshape(k * B))  # (one pass: vectorised)
    total = np.zeros(B)
    for c in range(k):
        for r in range(B):
            total[r] += ex[c, r]
    inv = np.empty(B)
    for r in range(B):
        loss[r] = -(z[t[r], r] - np.log(total[r]))
        inv[r] = 1.0 / total[r]
    d_t = np.zeros((q, B))
    for c in range(k):
        exc = ex[c]
        for i in range(indptr[c], indptr[c + 1]):
            dj = d_t[cols[i]]
            v = vals[i]
            for r in range(B):
                p = exc[r] * inv[r] - (1.0 if t[r] == c else 0.0)  # (− 0.0: exact)
                dj[r] += p * v
    return d_t


@njit(cache=True, nogil=True, error_model="numpy")
def hl_drive_kernel(w_hat, w0, delta_v, eps, w_both):  # pragma: no cover - compiled
    """Port voltages of the stacked ± phases of ``hl``: rows r and r + K of ``w_both`` (2K, q) are
    w0[r] + eps[r]·ŵ[r] and w0[r] − eps[r]·ŵ[r] (V).

    With ``delta_v`` > 0 the drive scale is chosen first, eps[r] = delta_v / max_j |ŵ[r, j]|
    (1 where ŵ[r] is 0), so that the largest port excursion is ``delta_v`` volts; with
    ``delta_v`` = 0 the given ``eps`` (K, 1) is used (a re-measurement with a smaller drive).
    """
    K, q = w_hat.shape
    for r in range(K):
        if delta_v > 0.0:
            amp = 0.0
            for j in range(q):
                amp = max(amp, abs(w_hat[r, j]))
            eps[r, 0] = delta_v / (amp if amp != 0.0 else 1.0)
        er = eps[r, 0]
        for j in range(q):
            drive = er * w_hat[r, j]
            w_both[r, j] = w0[r, j] + drive
            w_both[r + K, j] = w0[r, j] - drive


@njit(cache=True, nogil=True, error_model="numpy")
def flip_accounting_kernel(plus_flip, minus_flip, by_response, phase_ok, readable, single, flips):  # pragma: no cover
    """Per-sample bookkeeping of a stacked ± measurement after :func:`hl_phase_kernel`.

    ``single`` = exactly one phase changed a diode state (and both phases are valid): resolved
    from the other phase; ``flips`` = flagged (a state changed or the responses are not mirror
    images), valid, not resolved that way, and readable after a smaller drive: to re-measure.
    Returns (flagged valid samples, samples seen by the response check alone, resolved from one
    phase, flipped but unreadable).
    """
    flagged_count = 0
    by_response_only = 0
    singles = 0
    unreadable = 0
    for k in range(plus_flip.shape[0]):
        changed = plus_flip[k] or minus_flip[k]
        ok = phase_ok[k]
        if by_response[k] and not changed:
            by_response_only += 1
        one = (plus_flip[k] != minus_flip[k]) and ok
        single[k] = one
        flagged = (changed or by_response[k]) and ok
        flagged_count += flagged
        f = flagged and not one
        if f and not readable[k]:
            unreadable += 1
            f = False
        flips[k] = f
        singles += one
    return flagged_count, by_response_only, singles, unreadable


@njit(cache=True, nogil=True, error_model="numpy")
def hl_held_pass_kernel(e_both, w_both, e0, w0, on_both, on0, phase_ok, es, rel_tol, noise_floor, all_readable,
                        n_hat_e, n_hat_w, flags, states_name_regions=True):  # pragma: no cover - compiled
    """One pass of ``hl`` over a stacked ± measurement whose sources held their voltages:
    :func:`hl_phase_kernel` and :func:`flip_accounting_kernel` in one call.

    ``flags`` (6, K) bool receives (plus_flip, minus_flip, by_response, readable, single, flips);
    its ``readable`` row is read as given (whether a flagged sample's response would survive a
    smaller drive) unless ``all_readable`` (an exact board), when it is set True;
    ``states_name_regions`` as for :func:`hl_phase_kernel`.  Returns the counts of
    :func:`flip_accounting_kernel`.
    """
    K = e0.shape[0]
    plus_flip = flags[0]
    minus_flip = flags[1]
    readable = flags[3]
    for k in range(K):
        plus_flip[k] = False
        minus_flip[k] = False
        if all_readable:
            readable[k] = True
    hl_phase_kernel(e_both, w_both, e0, w0, on_both, on0, phase_ok, es, rel_tol, noise_floor, n_hat_e, n_hat_w,
                    plus_flip, minus_flip, flags[2], states_name_regions)
    return flip_accounting_kernel(plus_flip, minus_flip, flags[2], phase_ok, readable, flags[4], flags[5])


@njit(cache=True, nogil=True, error_model="numpy")
def finite_abs_max(a):  # pragma: no cover - compiled
    """(max |a|, every entry finite) of a 2-D array in one pass (0 for an empty array)."""
    top = 0.0
    bad = 0.0
    for r in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[r, j]
            bad += v - v  # 0 unless some entry is ±inf or NaN
            top = max(top, abs(v))
    return top, bad == 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def repeats_of(x, held):  # pragma: no cover - compiled
    """k ≥ 1 when the rows of ``x`` (k·B, m) are the rows of ``held`` (B, m) repeated k times, else 0."""
    B = held.shape[0]
    if B == 0 or x.shape[1] != held.shape[1] or x.shape[0] % B:
        return 0
    m = x.shape[1]
    for r in range(x.shape[0]):
        rb = r % B
        same = True
        for j in range(m):  # a whole row without an early exit: the comparison vectorises
            same &= x[r, j] == held[rb, j]
        if not same:
            return 0
    return x.shape[0] // B


@njit(cache=True, nogil=True, error_model="numpy")
def held_rows_kernel(x, held, rows):  # pragma: no cover - compiled
    """Whether ``x`` (k·K, m) is K rows of ``held`` (B, m) stacked k ≥ 1 times; writes their
    held indices into ``rows`` (K,) (the first equal held row).  False if not (``rows`` then undefined)."""
    K = rows.shape[0]
    B, m = held.shape
    if K == 0 or x.shape[0] % K or x.shape[1] != m:
        return False
    for r in range(K):
        found = -1
        for i in range(B):
            if held[i, 0] == x[r, 0]:
                same = True
                for j in range(m):
                    if held[i, j] != x[r, j]:
                        same = False
                        break
                if same:
                    found = i
                    break
        if found < 0:
            return False
        rows[r] = found
    for r in range(K, x.shape[0]):
        for j in range(m):
            if x[r, j] != x[r % K, j]:
                return False
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def differential_argmax_kernel(y, d, gain, out):  # pragma: no cover - compiled
    """Predicted class per sample: argmax_c gain·Σ_j d[c, j]·y[r, j] (the first maximum), from port
    currents ``y`` (B, q) in A and the differential matrix ``d`` (k, q); written into ``out`` (B,)."""
    B, q = y.shape
    k = d.shape[0]
    for r in range(B):
        best = 0
        top = -np.inf
        for c in range(k):
            s = 0.0
            for j in range(q):
                s += y[r, j] * d[c, j]
            z = gain * s
            if z != z:  # NaN counts as the maximum, the first one wins (as numpy's argmax)
                best = c
                break
            if z > top or c == 0:
                top = z
                best = c
        out[r] = best


@njit(cache=True, nogil=True, error_model="numpy")
def cross_entropy_drive_kernel(y, t, indptr, cols, vals, gain, w0, delta_v, loss, w_hat, eps,
                               w_both):  # pragma: no cover - compiled
    """The loss of an operating point and the port drives of ``hl``'s ± phases in one call:
    :func:`cross_entropy_kernel` (``loss`` (B,)), ŵ = −∂ℓ/∂y into ``w_hat`` (B, q), then
    :func:`hl_drive_kernel` (``eps`` (B, 1), ``w_both`` (2B, q): the + phase in rows 0 … B − 1, the
    − phase below).  The same operations as the steps one by one.
    Returns False if a label is outside 0 … k − 1 (nothing else written)."""
    if not _labels_in_range(t, indptr.shape[0] - 1):
        return False
    d_t = _cross_entropy_by_port(y, t, indptr, cols, vals, gain, loss)
    B, q = y.shape
    for r in range(B):
        for j in range(q):
            w_hat[r, j] = -(d_t[j, r] * gain)
    hl_drive_kernel(w_hat, w0, delta_v, eps, w_both)
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def hl_first_pass_kernel(e_both, w_both, e0, w0, on_both, on0, es, rel_tol, u, blocks, sources, n_hat_e, n_hat_w,
                         flags, out):  # pragma: no cover - compiled
    """The first pass of ``hl`` on an exact board whose ± phases held the sources and every sample
    valid: :func:`hl_held_pass_kernel` (every phase valid, no reading noise) and, when no sample is
    left to re-measure (none flagged, or each resolved from the phase that kept its states) and
    ``out`` has entries, :func:`batch_response_product` of the responses into ``out`` (with
    ``blocks`` and ``sources`` as there; hidden↔hidden edges are left to the caller).  Returns the
    counts of :func:`flip_accounting_kernel`."""
    K = e0.shape[0]
    phase_ok = np.ones(K, dtype=np.bool_)
    counts = hl_held_pass_kernel(e_both, w_both, e0, w0, on_both, on0, phase_ok, es, rel_tol, 0.0, True,
                                 n_hat_e, n_hat_w, flags)
    if counts[0] == counts[2] and out.shape[0] > 0:
        batch_response_product(u, e0, w0, n_hat_e, n_hat_w, 1.0 / K, blocks, sources, out)
    return counts


@njit(cache=True, nogil=True, error_model="numpy")
def hl_plus_phase_kernel(e1, w1, e0, w0, on1, on0, es, u, blocks, sources, n_hat_e, n_hat_w, changed,
                         out):  # pragma: no cover - compiled
    """The + phase of ``hl`` on an exact piecewise-linear board whose phase held the sources: per
    sample k, whether a diode state differs from the operating point's (into ``changed`` (K,)),
    and the one-sided response (v₊ − v₀)·(1/ε_k) of every hidden node and port into ``n_hat_e``
    (K, n) and ``n_hat_w`` (K, q).  When no state changed and ``out`` has entries, the batch
    means of v·v̂ (:func:`batch_response_product`, with ``blocks`` and ``sources`` as there) are
    written into ``out``.  Returns the number of samples whose + phase changed a state.

    With no state changed, the segment from the operating point to the + phase lies in one
    region of the piecewise-linear network (the region is convex and holds both ends), where the
    network is linear: the one-sided difference is the linear response exactly, as the central
    one is.
    """
    K, n = e0.shape
    q = w0.shape[1]
    count = 0
    for k in range(K):
        inv = 1.0 / es[k]  # (one division per sample, a product per node: within 1 ulp)
        for j in range(n):
            n_hat_e[k, j] = (e1[k, j] - e0[k, j]) * inv
        for j in range(q):
            n_hat_w[k, j] = (w1[k, j] - w0[k, j]) * inv
        flip = False
        for j in range(n):  # without branches: the comparison vectorises
            flip |= on1[k, j] != on0[k, j]
        changed[k] = flip
        count += flip
    if count == 0 and out.shape[0] > 0:
        batch_response_product(u, e0, w0, n_hat_e, n_hat_w, 1.0 / K, blocks, sources, out)
    return count


@njit(cache=True, nogil=True, error_model="numpy")
def hl_minus_rows_kernel(u_minus, u0, e_minus, w_minus, on_minus, e0, w0, on0, rows, es, n_hat_e, n_hat_w,
                         changed, blocks, sources, out):  # pragma: no cover - compiled
    """The − phase of the samples ``rows`` (K,) of ``hl``'s operating point (their + phase changed a
    diode state).  Returns −1, writing nothing, unless the phase held their sources exactly
    (``u_minus[i]`` (K, p) equal to ``u0[rows[i]]``, V; a NaN never matches).  Else ``changed[i]``
    (K,) says whether a diode state of ``on_minus[i]`` differs from the operating point's
    ``on0[rows[i]]``; for each sample whose − phase changed none, its one-sided responses
    (v₀ − v₋)/ε are written into row ``rows[i]`` of ``n_hat_e`` (B, n) and ``n_hat_w`` (B, q); and
    the number of samples whose − phase changed a state is returned.  When none did and ``out``
    has entries, the batch means of v·v̂ of the whole batch's responses (every sample now
    resolved) are written into ``out`` (:func:`batch_response_product`, ``blocks`` and ``sources``
    as there, ``u0`` the operating point's sources).  ``e_minus`` (K, n),
    ``w_minus`` (K, q) the phase's readings, ``e0``/``w0`` the operating point's, ``es`` (B, 1)
    the drives (V per unit ŵ)."""
    K, n = e_minus.shape
    q = w_minus.shape[1]
    p = u0.shape[1]
    if u_minus.shape[0] != K or u_minus.shape[1] != p:
        return -1
    for i in range(K):
        same = True
        for j in range(p):  # without an early exit: the comparison vectorises
            same &= u_minus[i, j] == u0[rows[i], j]
        if not same:
            return -1
    count = 0
    for i in range(K):
        r = rows[i]
        flip = False
        for j in range(n):  # without branches: the comparison vectorises
            flip |= on_minus[i, j] != on0[r, j]
        changed[i] = flip
        count += flip
        if flip:
            continue
        for j in range(n):
            n_hat_e[r, j] = (e0[r, j] - e_minus[i, j]) / es[r, 0]
        for j in range(q):
            n_hat_w[r, j] = (w0[r, j] - w_minus[i, j]) / es[r, 0]
    if count == 0 and out.shape[0] > 0:
        batch_response_product(u0, e0, w0, n_hat_e, n_hat_w, 1.0 / e0.shape[0], blocks, sources, out)
    return count
