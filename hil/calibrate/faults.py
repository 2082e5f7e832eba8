"""Faulty-device map and programming response from two programmed states.

Every device is programmed to a low and then a high level and read out in circuit
(:mod:`.conductances`) after each.  The low levels are drawn per device (uniform in
``low_fraction`` ± 0.1 of the range, seeded) and the high level is the low one plus
``high_fraction − low_fraction`` of the range: identical levels would make the hidden nodes
indistinguishable and the in-circuit regression ill-conditioned.  A healthy device follows: its response
slope (ĝ_high − ĝ_low)/(t_high − t_low) is near 1.  A device whose slope is below
``slope_threshold`` ignores programming; it is *stuck high* if it reads near g_max, *stuck
low* (stuck-off or open) otherwise.  The slope of each healthy device is its programming
gain (device-to-device factor) and the scatter of ĝ/t around it measures programming noise:
both are stored for write-verify.  Afterwards the board is programmed back to a read-back of
its original state (the protocol exposes no commanded targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.calibrate.conductances import ConductanceEstimate, estimate_conductances
from hil.calibrate.offsets import ChannelOffsets

HEALTHY, STUCK_HIGH, STUCK_LOW = 0, 1, 2
FAULT_LABELS = {HEALTHY: "healthy", STUCK_HIGH: "stuck high", STUCK_LOW: "stuck low / open"}


@dataclass
class FaultMap:
    """Per-device fault code (0 healthy, 1 stuck high, 2 stuck low/open), fixed value (S),
    programming gain (ĝ per unit target) and the relative programming scatter."""

    code: np.ndarray
    fixed_value: np.ndarray  # S, the read value of faulty devices (0 for healthy ones)
    gain: np.ndarray  # slope of the programming response per device
    prog_scatter: float  # robust relative std of ĝ_high/(gain·t_high) over healthy devices
    low: ConductanceEstimate
    high: ConductanceEstimate
    levels: tuple[float, float]  # mean targets of the two states, S

    @property
    def faulty(self) -> np.ndarray:
        return self.code != HEALTHY


def characterise(board, offsets: ChannelOffsets, groups: tuple[str, ...] = ("g_in", "g_out"),
                 low_fraction: float = 0.25, high_fraction: float = 0.75, slope_threshold: float = 0.5,
                 repeats: int = 32, amplitude_v: float = 0.5, seed: int = 0) -> FaultMap:
    """Program low/high levels, read out in circuit, classify every device of ``groups``."""
    topo = board.topology
    g_min, g_max = board.conductance_bounds
    g_max_eff = g_max if np.isfinite(g_max) else 1e-3
    span = g_max_eff - g_min
    rng = np.random.default_rng(seed)
    t_low = g_min + span * (low_fraction + rng.uniform(-0.1, 0.1, topo.n_conductances))
    t_high = t_low + span * (high_fraction - low_fraction)
    sel = np.zeros(topo.n_conductances, bool)
    for gname in groups:
        sel[topo.groups[gname]] = True
    original = board.read_conductances()
    base = original.copy()
    try:
        base[sel] = t_low[sel]
        board.program(base, rel_tol=0.0)
        low = estimate_conductances(board, offsets, amplitude_v, repeats)
        base[sel] = t_high[sel]
        board.program(base, rel_tol=0.0)
        high = estimate_conductances(board, offsets, amplitude_v, repeats)
    finally:
        board.program(original, rel_tol=0.0)
    slope = (high.g - low.g) / (t_high - t_low)
    code = np.zeros(topo.n_conductances, np.int8)
    stuck = sel & (slope < slope_threshold)
    mid = g_min + 0.5 * span
    code[stuck & (high.g >= mid)] = STUCK_HIGH
    code[stuck & (high.g < mid)] = STUCK_LOW
    fixed = np.where(stuck, 0.5 * (low.g + high.g), 0.0)
    healthy = sel & ~stuck
    gain = np.where(healthy, high.g / t_high, np.nan)
    ratio = (low.g / t_low)[healthy] / np.where(gain[healthy] > 0, gain[healthy], 1.0)
    mad = float(np.median(np.abs(ratio - np.median(ratio)))) * 1.4826 if ratio.size else float("nan")
    return FaultMap(code, fixed, gain, mad / np.sqrt(2.0), low, high, (float(np.mean(t_low[sel])), float(np.mean(t_high[sel]))))
