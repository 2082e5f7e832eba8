"""Channel gains through the board protocol, with the sources as the declared reference.

Readings follow m = γ·x + o per channel (γ the gain, o the offset from :mod:`.offsets`).

* **Voltage channels (hidden nodes)**, common-level method: every source and output port is
  commanded to the same level s (positive, so standard-orientation diodes stay off), at 32
  levels from 0.05 to 1.5 V.  A passive
  network then sits at s everywhere: no current flows except the leak to ground, whose share of
  a node's conductance (g_leak / Σg, about 1e-6 on the shipped boards) is the method's bias.
  γ_e is the least-squares slope of m_e against s.  The reference is the sources themselves: their gain
  errors enter as the conductance-weighted mean over all sources seen by a node.
* **Current channels (sources and output ports)**, charge conservation: with the diodes off,
  the current the sources deliver leaves through the output ports (Σ i_src = Σ y, up to the
  leak), for any applied voltages.  Driving sources *and* ports with P ≥ p + q varied
  non-negative patterns (0/A rows of a Hadamard matrix, plus common-mode rows with every
  terminal at A) makes the only consistent weighting of the readings the true inverse gains
  r = 1/γ: r is the null vector of the (offset-corrected, noise-scaled) reading matrix
  [m_src, −m_y, −Σₖ e_k], found by SVD (total least squares, since every column is noisy).  The
  last column is the leak to ground with one common g_leak per node: small as it is, the total
  leak is comparable to 1e-4 of one channel's current and would otherwise bias the gains by that
  much; the common-mode rows (no current except the leak) make it identifiable.  A spread of
  the leak between nodes is not modelled.  Charge conservation fixes the *relative* current gains only; the common
  scale is the declared reference: the mean of 1/γ over all current channels is set to 1
  (the average of p + q independent instrument gains).  A common current scale is the same as a
  common conductance scale: it changes no classification and no in-situ gradient direction.

Diagnostics reported with the result: the smallest-to-next singular value ratio (how well the
null vector is determined) and the corrected KCL imbalance relative to the channel currents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import hadamard

from hil.calibrate.offsets import ChannelOffsets, require_in_range


@dataclass
class ChannelGains:
    """Gain per channel (reading per true value): ``y`` (q,), ``i_src`` (p,), ``e`` (n,); diagnostics."""

    y: np.ndarray
    i_src: np.ndarray
    e: np.ndarray
    null_ratio: float  # smallest / second smallest singular value of the current-reading matrix (≪ 1: well determined)
    imbalance_rel: float  # RMS of the corrected KCL residual / RMS channel current
    patterns: int


def common_level_voltage_gains(board, offsets: ChannelOffsets, low_v: float = 0.05, high_v: float = 1.5,
                               levels: int = 32, readings: int = 32) -> np.ndarray:
    """Hidden-node voltage gains (n,): every source and port at ``levels`` common levels from
    ``low_v`` to ``high_v`` (V; on an instrument bench at most the lowest channel ``v_max``), slope
    of the readings by least squares.  Many levels average
    the source quantisation (a 16-bit ±10 V source is 0.3 mV per step) instead of taking it
    twice from a two-point difference."""
    topo = board.topology
    if hasattr(board, "level_bounds_v"):  # an instrument bench: the common level stays within every channel
        high_v = min(high_v, float(np.min(board.level_bounds_v()[1])))
        if not high_v > low_v:
            raise RuntimeError(f"voltage-channel gains: the channels allow at most {high_v:g} V above 0 V "
                               f"(need > {low_v:g} V)")
    s = np.linspace(low_v, high_v, levels)
    u = np.repeat(s, readings)[:, None] * np.ones((1, topo.n_sources))
    w = np.repeat(s, readings)[:, None] * np.ones((1, topo.n_outputs))
    m = board.measure_sources(u, w)
    require_in_range(m, "voltage-channel gains", f"the common levels reach {high_v:g} V on every terminal")
    e = m.e - offsets.e
    x = np.repeat(s, readings)
    xc = x - x.mean()
    return (xc @ (e - e.mean(axis=0))) / (xc @ xc)


def kcl_current_gains(board, offsets: ChannelOffsets, amplitude_v: float = 0.2,
                      repeats: int = 8) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """(gain_i_src, gain_y, null_ratio, imbalance_rel, patterns) from charge conservation."""
    topo = board.topology
    p, q = topo.n_sources, topo.n_outputs
    size = 1
    while size < p + q + 1:
        size *= 2
    h = hadamard(size)[1:, : p + q]
    pat = amplitude_v * (h > 0).astype(float)  # 0 / A: every node at or above 0 V, diodes off
    # common-mode rows (every terminal at A): no current but the leak, which pins the leak term
    pat = np.concatenate([pat, np.full((max(size // 16, 4), p + q), amplitude_v)])
    src, out, leak = [], [], []
    for _ in range(repeats):
        m = board.measure_sources(pat[:, :p], pat[:, p:])
        require_in_range(m, "current-channel gains", f"lower board.calibration.amplitude_v (now {amplitude_v:g} V)")
        src.append(m.i_src - offsets.i_src)
        out.append(m.y - offsets.y)
        leak.append((m.e - offsets.e).sum(axis=1, keepdims=True))
    # Σ i_src − Σ y − g_L·Σ e = 0: the leak to ground (a common g_L per node) is a column too
    M = np.concatenate([np.concatenate(src), -np.concatenate(out), -np.concatenate(leak)], axis=1)
    sigma = np.concatenate([offsets.i_src_sigma, offsets.y_sigma, [np.sqrt(np.sum(offsets.e_sigma ** 2))]])
    scale = np.where(sigma > 0, sigma, max(float(np.median(sigma)), 1e-15))
    _, sv, vt = np.linalg.svd(M / scale, full_matrices=False)
    r = vt[-1] / scale
    r = r / r[: p + q].mean()
    gains = 1.0 / r[: p + q]
    resid = M @ r
    imbalance = float(np.sqrt(np.mean(resid ** 2)) / max(np.sqrt(np.mean(M ** 2)), 1e-300))
    return gains[:p], gains[p:], float(sv[-1] / sv[-2]), imbalance, M.shape[0]


def estimate_gains(board, offsets: ChannelOffsets, amplitude_v: float = 0.2, repeats: int = 8) -> ChannelGains:
    """Every channel's gain (see the module docstring)."""
    g_src, g_y, ratio, imbalance, n = kcl_current_gains(board, offsets, amplitude_v, repeats)
    g_e = common_level_voltage_gains(board, offsets)
    return ChannelGains(g_y, g_src, g_e, ratio, imbalance, n)


class GainCorrected:
    """A view of ``board`` whose readings are gain-corrected (offsets kept, so later steps
    subtract them as before): m' = (m − o)/γ + o.  Passes every other call through."""

    def __init__(self, board, offsets: ChannelOffsets, gains: ChannelGains):
        self._b, self._o, self._g = board, offsets, gains

    def __getattr__(self, name):
        if name == "_b":
            raise AttributeError(name)
        return getattr(self._b, name)

    def measure_sources(self, u, w=None):
        m = self._b.measure_sources(u, w)
        o, g = self._o, self._g
        m.y = (m.y - o.y) / g.y + o.y
        m.i_src = (m.i_src - o.i_src) / g.i_src + o.i_src
        m.e = (m.e - o.e) / g.e + o.e
        return m
