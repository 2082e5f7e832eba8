"""In-circuit conductance read-out by least squares from Hadamard probe patterns.

Each source j is driven with u_j = A·h_j (h a row of a Hadamard matrix, one pattern per row,
the all-ones row excluded: UUᵀ ∝ I, the best-conditioned probe set).  Per port the measured
currents are linear in the unknown conductances with measured regressors, whatever state the
diodes are in (an all-positive {0, A} variant that keeps every diode off was tried and
conditions the regression several times worse):

    i_j = Σ_k G_in[k, j] (u_j − e_k)          (source j)
    y_o = Σ_k G_out[o, k] (e_k − w_o)          (output port o, w = 0)

solved per port by least squares over the P patterns, repeated ``repeats`` times (each repeat
is one board call). Read noise gives each call its own conductances, so when the patterns
outnumber the unknowns of a port twice over, every call is fitted on its own and the calls'
answers are averaged (the standard error combines their spread with the misfit no fit
explains); otherwise one fit over all calls.  Readings are offset-corrected first.  Caveats reported with the result: noise in the measured node
voltages (regressors) biases the slopes toward zero (errors in variables; the ratio of that
noise to the regressor spread is reported); with wire resistance the terminal voltages are not
the device voltages, so the estimates are effective conductances; ``g_hh`` and ``g_leak`` come
from the KCL of each hidden node over the patterns where its diode is off (node voltage above
the clamp by 5 reading σ; a conducting diode carries an unknown current), and are only as good
as the residual of the g_in / g_out fit: a leak far below the other conductances at a node is
not observable and is reported as such (``leak_stderr``: the standard error of each g_leak estimate).

Identifiability: a port equation has n + 1 unknowns (its conductances to the n hidden nodes and
the intercept), but its regressors only vary as much as the probe patterns let them: while the
diodes keep their states the node voltages are a linear function of the p source voltages, so a
network with more hidden nodes than sources (n > p) cannot be read out in circuit from any number
of patterns (and never from fewer distinct patterns than unknowns).  A port with fewer distinct
patterns than unknowns, or whose pattern-averaged regressor matrix is singular to 1e-9 relative
(exact readings), is not fitted: its conductances are NaN with an infinite standard error, counted
in ``unidentifiable`` (the calibration file and report say so), instead of a minimum-norm answer
that fits the readings perfectly and is wrong.  A read-out that is identifiable but noisy (a
small singular value near the reading noise) is fitted; its standard errors say how well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import hadamard

from hil.calibrate.offsets import ChannelOffsets, require_in_range


@dataclass
class ConductanceEstimate:
    """Estimated conductances (m,) in S in the board's flat order, with diagnostics."""

    g: np.ndarray
    residual_rel: np.ndarray  # (ports,) RMS residual / RMS current per port equation
    condition: float  # largest condition number of a port's regressor matrix
    eiv_ratio: float  # voltage-reading noise / regressor spread (errors-in-variables bias ~ ratio²)
    diodes_off_fraction: float  # fraction of (pattern, node) pairs above the clamp
    leak_stderr: np.ndarray  # (n,) standard error of each g_leak estimate, S (nan: node never off)
    patterns: int
    repeats: int
    g_stderr: np.ndarray | None = None  # (m,) least-squares standard error of each g_in / g_out estimate, S (nan elsewhere)
    unidentifiable: int = 0  # conductances (of g_in, g_out and the g_hh/g_leak that need them) left NaN: see the module docstring


def probe_patterns(p: int, amplitude_v: float) -> np.ndarray:
    """(P − 1, p) source voltages ±A: rows 1..P−1 of a Hadamard matrix (size P ≥ p + 1)."""
    size = 1
    while size < p + 1:
        size *= 2
    return amplitude_v * hadamard(size)[1:, :p].astype(float)


def estimate_conductances(board, offsets: ChannelOffsets | None, amplitude_v: float = 0.5,
                          repeats: int = 64) -> ConductanceEstimate:
    """Least-squares conductances of ``g_in`` and ``g_out``; ``g_hh``/``g_leak`` from hidden-node KCL."""
    topo = board.topology
    p, n, q = topo.n_sources, topo.n_hidden, topo.n_outputs
    U = probe_patterns(p, amplitude_v)
    ys, iss, es = [], [], []
    off_count, total = 0, 0
    for _ in range(repeats):
        m = board.measure_sources(U)
        require_in_range(m, "conductance read-out", f"lower board.calibration.amplitude_v (now {amplitude_v:g} V)")
        y, i_src, e = m.y, m.i_src, m.e
        if offsets is not None:
            y, i_src, e = y - offsets.y, i_src - offsets.i_src, e - offsets.e
        ys.append(y), iss.append(i_src), es.append(e)
        if m.on is not None:
            off_count += int(np.sum(~m.on))
            total += m.on.size
    Y, I, E = np.concatenate(ys), np.concatenate(iss), np.concatenate(es)
    Uall = np.tile(U, (repeats, 1))
    g = np.zeros(topo.n_conductances)
    se = np.full(topo.n_conductances, np.nan)
    g_in = np.zeros((n, p))
    se_in = np.zeros((n, p))
    resid, conds = [], []
    ones = np.ones((E.shape[0], 1))
    P = U.shape[0]
    # Per-call fits, averaged: read noise gives every board call its own conductances, shared by
    # that call's P patterns, so each call is fitted exactly on its own and the R answers are
    # averaged (their spread enters the standard error). A pooled fit over all calls mixes the
    # calls' conductances through their different regressors and scatters several times more.
    per_call = repeats >= 2 and P >= 2 * (n + 1)
    # pattern-averaged node voltages: the regressors without most of their reading noise, for the rank test
    E_mean = E.reshape(repeats, P, n).mean(axis=0)
    bad_in, bad_out = np.zeros(p, bool), np.zeros(q, bool)
    for j in range(p):
        bad_in[j] = not _full_rank(np.concatenate([U[:, [j]] - E_mean, np.ones((P, 1))], axis=1))
        if bad_in[j]:
            g_in[:, j], se_in[:, j] = np.nan, np.inf
            conds.append(np.inf)
            resid.append(np.nan)
            continue
        # an intercept absorbs the current a source offset drives (and any residual reading offset)
        X = np.concatenate([Uall[:, [j]] - E, ones], axis=1)  # (P·R, n + 1)
        coef, sv = _fit(X, I[:, j], repeats, per_call)
        g_in[:, j] = coef[:-1].mean(axis=1) if per_call else coef[:-1]
        fitted = _predict(X, coef, repeats, per_call)
        se_in[:, j] = _stderr(X, I[:, j] - fitted, X.shape[1] * (repeats if per_call else 1))[:-1]
        if per_call:  # the calls' spread (read noise) and what no call's fit explains (model error)
            se_in[:, j] = np.hypot(se_in[:, j], _spread(coef[:-1]))
        conds.append(sv)
        resid.append(np.sqrt(np.mean((fitted - I[:, j]) ** 2)) / max(np.sqrt(np.mean(I[:, j] ** 2)), 1e-300))
    g_out = np.zeros((q, n))
    se_out = np.zeros((q, n))
    X = np.concatenate([E, ones], axis=1)
    out_rank_ok = _full_rank(np.concatenate([E_mean, np.ones((P, 1))], axis=1))
    for o in range(q):
        if not out_rank_ok:  # every output port has the same regressors
            bad_out[o] = True
            g_out[o], se_out[o] = np.nan, np.inf
            conds.append(np.inf)
            resid.append(np.nan)
            continue
        coef, sv = _fit(X, Y[:, o], repeats, per_call)
        g_out[o] = coef[:-1].mean(axis=1) if per_call else coef[:-1]
        fitted = _predict(X, coef, repeats, per_call)
        se_out[o] = _stderr(X, Y[:, o] - fitted, X.shape[1] * (repeats if per_call else 1))[:-1]
        if per_call:
            se_out[o] = np.hypot(se_out[o], _spread(coef[:-1]))
        conds.append(sv)
        resid.append(np.sqrt(np.mean((fitted - Y[:, o]) ** 2)) / max(np.sqrt(np.mean(Y[:, o] ** 2)), 1e-300))
    g[topo.groups["g_in"]] = g_in.ravel()
    g[topo.groups["g_out"]] = g_out.ravel()
    se[topo.groups["g_in"]] = se_in.ravel()
    se[topo.groups["g_out"]] = se_out.ravel()
    # hidden-node KCL (diodes off): the current that g_in and g_out do not explain flows
    # through g_leak (to ground) and g_hh (to the other hidden nodes)
    rest = -(E * g_in.sum(axis=1) - Uall @ g_in.T + E * g_out.sum(axis=0))  # (P·R, n) A into each node
    hh = topo.groups["g_hh"]
    pairs = topo.edges[hh] - p  # hidden indices
    leak_se = np.full(n, np.nan)
    floor = 5.0 * (offsets.e_sigma if offsets is not None else np.zeros(n)) + 1e-12
    known = np.isfinite(rest).all(axis=0)  # nodes whose g_in / g_out are all identified
    for k in range(n):
        off_rows = E[:, k] > floor[k]
        if not known[k]:
            g[topo.groups["g_leak"].start + k] = np.nan
            for t, (a, b) in enumerate(pairs):
                if a == k or b == k:
                    g[hh.start + t] = np.nan
            continue
        if off_rows.sum() < 4:
            continue
        cols = [E[:, k]]  # leak: current e_k·g_leak leaves the node
        idx = [("leak", k)]
        for t, (a, b) in enumerate(pairs):
            if a == k or b == k:
                other = b if a == k else a
                cols.append(E[:, k] - E[:, other])
                idx.append(("hh", t))
        A = np.stack(cols, axis=1)[off_rows]
        coef = np.linalg.lstsq(A, rest[off_rows, k], rcond=None)[0]
        dof = max(A.shape[0] - A.shape[1], 1)
        s2 = float(np.sum((A @ coef - rest[off_rows, k]) ** 2)) / dof
        leak_se[k] = np.sqrt(s2 * np.linalg.pinv(A.T @ A)[0, 0])
        for (kind, t), c in zip(idx, coef):
            if kind == "leak":  # a passive leak is >= 0: a negative estimate is noise or bias
                g[topo.groups["g_leak"].start + k] = max(c, 0.0)
            else:  # each g_hh resistor appears in two node equations: average them
                g[hh.start + t] += 0.5 * c
    spread = float(np.std(E, axis=0).mean())
    noise = float(np.mean(offsets.e_sigma)) if offsets is not None else 0.0
    unknown = int(np.count_nonzero(np.isnan(g)))
    return ConductanceEstimate(g, np.array(resid), float(max(conds)), noise / spread if spread > 0 else np.inf,
                               off_count / total if total else float("nan"), leak_se, U.shape[0], repeats, se,
                               unknown)


def _full_rank(X: np.ndarray) -> bool:
    """Whether the (patterns, unknowns) regressor matrix ``X`` can determine every unknown: at least as
    many rows as columns and no singular value below 1e-9 of the largest."""
    if X.shape[0] < X.shape[1]:
        return False
    sv = np.linalg.svd(X, compute_uv=False)
    return bool(sv[-1] > 1e-9 * sv[0])


def _fit(X: np.ndarray, y: np.ndarray, repeats: int, per_call: bool) -> tuple[np.ndarray, float]:
    """Least squares of ``y`` on ``X``: one fit over all rows, or (``per_call``) one per board call
    (R consecutive blocks of rows). Returns the coefficients ((k,) or (k, R)) and the largest
    condition number of the regressor matrices."""
    if not per_call:
        coef, _, _, sv = np.linalg.lstsq(X, y, rcond=None)
        return coef, (sv[0] / sv[-1] if sv[-1] > 0 else np.inf)
    Xr = X.reshape(repeats, -1, X.shape[1])
    yr = y.reshape(repeats, -1)
    coefs, cond = np.empty((X.shape[1], repeats)), 0.0
    for r in range(repeats):
        c, _, _, sv = np.linalg.lstsq(Xr[r], yr[r], rcond=None)
        coefs[:, r] = c
        cond = max(cond, sv[0] / sv[-1] if sv[-1] > 0 else np.inf)
    return coefs, cond


def _predict(X: np.ndarray, coef: np.ndarray, repeats: int, per_call: bool) -> np.ndarray:
    """The fitted values of :func:`_fit`'s coefficients, row by row."""
    if not per_call:
        return X @ coef
    Xr = X.reshape(repeats, -1, X.shape[1])
    return np.einsum("rpk,kr->rp", Xr, coef).ravel()


def _spread(coefs: np.ndarray) -> np.ndarray:
    """Standard error of the mean of per-call estimates (k, R): their sample std over sqrt(R)."""
    return coefs.std(axis=1, ddof=1) / np.sqrt(coefs.shape[1])


def _stderr(X: np.ndarray, resid: np.ndarray, params: int | None = None) -> np.ndarray:
    """Standard error of each least-squares coefficient: sqrt(diag(s²·(XᵀX)⁻¹)), s² = RSS/(N − k),
    k = ``params`` (the coefficients fitted to produce ``resid``; default X's columns).

    The residual includes everything the linear port model does not explain (read and reading
    noise, and model error such as wire drops), so a poorly modelled board gets wide errors."""
    dof = max(X.shape[0] - (X.shape[1] if params is None else params), 1)
    s2 = float(resid @ resid) / dof
    return np.sqrt(np.maximum(s2 * np.diag(np.linalg.pinv(X.T @ X)), 0.0))
