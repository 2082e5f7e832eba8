"""Config helpers shared by element modules."""

from __future__ import annotations

import numpy as np

from hil.circuit.laws.base import per_node

MAX_ABS_VOLTAGE_V = 1e4


def voltage(v: float) -> str | None:
    return None if np.isfinite(v) and abs(v) <= MAX_ABS_VOLTAGE_V else f"must be a finite voltage within ±{MAX_ABS_VOLTAGE_V:g} V"


def orientation_and_ref(sec, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``orientation`` (+1/−1, scalar or per node) and ``v_ref`` (V) of a diode-like element."""
    orientation = per_node(sec, "orientation", 1.0, n)
    if not np.all(np.isin(orientation, (-1.0, 1.0))):
        sec.error("orientation", "must be +1 (anode at the reference) or -1 (anode at the node)")
        orientation = np.ones(n)
    return orientation.astype(int), per_node(sec, "v_ref", 0.0, n, voltage)
