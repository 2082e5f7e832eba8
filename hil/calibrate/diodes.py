"""Diode I–V fit per hidden node, in circuit.

All sources and output ports are stepped together to −s (log-spaced s), which forward-biases
every standard-orientation diode (anode at its reference, cathode at the node); with every
terminal at the same potential the diode current is not a small difference of large branch
currents.  With the
calibrated conductances, the KCL of node k gives the diode current from measured voltages,

    I_k = Σ_j G_in[k,j](u_j − e_k) + Σ_o G_out[o,k](w_o − e_k) − g_leak,k e_k + Σ_l G_hh[k,l](e_l − e_k),

and the diode voltage is V_k = v_ref − e_k (v_ref nominal, 0 V by default).  The model
V = n V_T ln(1 + I/I_s) + I R_s is fitted per node: first linear least squares on the points
with I ≫ I_s (V = A ln I + B + R_s I, A = nV_T, B = −nV_T ln I_s), then nonlinear least squares
(residual in V) with ln I_s as the parameter.  V_T comes from the bench temperature.  For ideal
diodes the clamp level is estimated instead (mean node voltage while conducting).
Caveats: the current is only as accurate as the conductances (a 0.2 % conductance error is a
0.2 % current error, ≈ nV_T·0.002 in V); R_s is only observable when I·R_s exceeds the voltage
noise at the highest currents (the fit reports its standard error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from hil.calibrate.offsets import ChannelOffsets, samples_in_range
from hil.circuit.elements import thermal_voltage


@dataclass
class DiodeFit:
    """Per hidden node: I_s (A), n, R_s (Ω), RMS fit residual (V); or the clamp level (V) for ideal diodes."""

    i_s: np.ndarray
    n: np.ndarray
    r_s: np.ndarray
    residual_v: np.ndarray
    clamp_v: np.ndarray
    currents_a: np.ndarray  # (S, n) the currents of the sweep
    voltages_v: np.ndarray  # (S, n) diode voltages of the sweep
    g_leak_s: np.ndarray  # (n,) leak conductance fitted with the diode, S


def node_currents(board, g: np.ndarray, u: np.ndarray, e: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Current (A) flowing from the network into each hidden node's diode, from KCL with conductances ``g``."""
    topo = board.topology
    V = np.concatenate([u, e, w, np.zeros((u.shape[0], 1))], axis=1)
    a, b = topo.edges[:, 0], topo.edges[:, 1]
    branch = (V[:, b] - V[:, a]) * g  # current into node a through each conductance
    p, n = topo.n_sources, topo.n_hidden
    out = np.zeros((u.shape[0], n))
    for col, node, sign in ((a, a, 1.0), (b, b, -1.0)):
        hid = (node >= p) & (node < p + n)
        np.add.at(out.T, node[hid] - p, sign * branch[:, hid].T)
    return out


def fit_diodes(board, g: np.ndarray, offsets: ChannelOffsets | None, temperature_c: float = 27.0,
               v_ref: float = 0.0, sweep_v: np.ndarray | None = None, repeats: int = 8,
               min_drive_v: float = 0.02, fit_law: bool = True) -> DiodeFit:
    """Sweep all sources to −s, compute diode currents from KCL and fit each node.

    ``fit_law``: fit the Shockley law (``shockley`` elements); False for elements without an
    exponential law (ideal diodes and the other piecewise-linear elements), whose reading noise and
    turn-on spread would otherwise yield meaningless fits: only their clamp levels are reported.

    The default sweep goes from 0.05 V to 8 V, or to the lowest ``v_min`` magnitude of the board's
    channels when it reports them (``level_bounds_v``, an instrument bench)."""
    topo = board.topology
    if sweep_v is None:
        top = 8.0
        if hasattr(board, "level_bounds_v"):
            top = min(top, float(np.min(-board.level_bounds_v()[0])))
        if not top > 0.05:
            raise RuntimeError(f"diode I-V sweep: the channels allow at most {top:g} V below 0 V (need > 0.05 V)")
        sweep_v = np.geomspace(0.05, top, 48)
    s = np.asarray(sweep_v, float)
    U = -np.repeat(s[:, None], topo.n_sources, axis=1)
    W = -np.repeat(s[:, None], topo.n_outputs, axis=1)
    es, ws = [], []
    in_range = np.ones(s.size, bool)
    for _ in range(repeats):
        m = board.measure_sources(U, W)
        es.append(m.e - (offsets.e if offsets is not None else 0.0))
        ws.append(m.w)
        # a step whose node-voltage reading sat at full scale, or whose sources were not applied as
        # commanded, is left out (the fit reads node voltages only: a current reading at full
        # scale does not matter; a board that gives no detail marks the whole sample)
        ok = samples_in_range(m, ("e", "sources"))
        if ok is not None:
            in_range &= ok
    if not in_range.all():
        s, U, W = s[in_range], U[in_range], W[in_range]
        es, ws = [e[in_range] for e in es], [w[in_range] for w in ws]
    E = np.mean(es, axis=0)
    g_no_leak = np.array(g, dtype=float)
    leak_sl = topo.groups["g_leak"]
    g_leak0 = np.maximum(g_no_leak[leak_sl], 0.0)
    g_no_leak[leak_sl] = 0.0
    # KCL at a node: (current in from the terminals I0) + (diode forward current, from the
    # reference into the node) + (leak current from ground, −g_leak·e) = 0, so
    # I_forward = −I0 + g_leak·e; g_leak is fitted with the diode (the in-circuit leak estimate
    # is rarely observable), the terminal conductances come from the calibration.
    I0 = node_currents(board, g_no_leak, U, E, ws[0])
    Vd = v_ref - E
    vt = thermal_voltage(temperature_c)
    n_nodes = topo.n_hidden
    i_s, n_em, r_s, res, leak = (np.full(n_nodes, np.nan) for _ in range(5))
    I_d = -I0 + g_leak0 * E
    for k in range(n_nodes if fit_law else 0):
        # keep points whose drive across the conductances is well above source/reading errors
        ok = (I_d[:, k] > 0) & (s + E[:, k] > min_drive_v)
        if ok.sum() < 6:
            continue
        x, v = I_d[ok, k], Vd[ok, k]
        i0, ek = -I0[ok, k], E[ok, k]
        A = np.stack([np.log(x), np.ones_like(x), x], axis=1)
        a0, b0, r0 = np.linalg.lstsq(A, v, rcond=None)[0]
        scale_ek = float(np.max(np.abs(ek)))
        if not (np.all(np.isfinite([a0, b0, r0])) and a0 > 0 and scale_ek > 0):
            continue  # no exponential law in the sweep (e.g. an ideal diode pinned at its clamp): not fitted
        n0 = max(a0 / vt, 0.5)
        lis0 = -b0 / max(a0, 1e-6)

        def resid(theta):
            lis, nn, rr, gl = theta
            cur = np.maximum(i0 + gl * ek, 1e-300)
            return nn * vt * np.log1p(cur / np.exp(lis)) + cur * rr - v

        start = [float(np.clip(lis0, -59, -1)), float(np.clip(n0, 0.31, 4.9)), float(np.clip(r0, 0.0, 1e5)),
                 float(g_leak0[k])]
        gl_scale = max(float(np.max(x) / scale_ek) * 1e-3, 1e-12)
        sol = least_squares(resid, start, bounds=([-60, 0.3, 0.0, 0.0], [0.0, 5.0, 1e6, np.inf]),
                            x_scale=[1.0, 0.1, max(abs(r0), 1.0), gl_scale], xtol=1e-15, ftol=1e-15, gtol=1e-15)
        i_s[k], n_em[k], r_s[k], leak[k] = np.exp(sol.x[0]), sol.x[1], sol.x[2], sol.x[3]
        res[k] = float(np.sqrt(np.mean(sol.fun ** 2)))
    clamp = E[-1]  # at the strongest drive an ideal diode pins the node at its clamp level
    I_d = -I0 + np.where(np.isfinite(leak), leak, g_leak0) * E
    return DiodeFit(i_s, n_em, r_s, res, clamp, I_d, Vd, leak)
