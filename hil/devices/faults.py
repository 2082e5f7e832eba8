"""Faulty devices (static categorical draw): stuck-on (g_max), stuck-off (g_min), open (0 S).

A faulty device ignores programming.  Codes: 0 healthy, 1 stuck-on, 2 stuck-off, 3 open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg

HEALTHY, STUCK_ON, STUCK_OFF, OPEN = 0, 1, 2, 3
FAULT_NAMES = {HEALTHY: "healthy", STUCK_ON: "stuck_on", STUCK_OFF: "stuck_off", OPEN: "open"}


@dataclass(frozen=True)
class Faults(Family):
    p_stuck_on: float = 0.0
    p_stuck_off: float = 0.0
    p_open: float = 0.0
    key = "faults"

    def check(self):
        out = non_neg(p_stuck_on=self.p_stuck_on, p_stuck_off=self.p_stuck_off, p_open=self.p_open)
        if self.p_stuck_on + self.p_stuck_off + self.p_open > 1:
            out.append(("p_stuck_on", "fault probabilities add up to more than 1"))
        return out

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """Fault code (m,) per device (all healthy when disabled)."""
        r = rng.random(m)
        codes = np.zeros(m, dtype=np.int8)
        if not self.enabled:
            return codes
        c1 = self.p_stuck_on
        c2 = c1 + self.p_stuck_off
        c3 = c2 + self.p_open
        codes[r < c1] = STUCK_ON
        codes[(r >= c1) & (r < c2)] = STUCK_OFF
        codes[(r >= c2) & (r < c3)] = OPEN
        return codes

    @staticmethod
    def apply(codes: np.ndarray, g: np.ndarray, g_min: float, g_max: float) -> np.ndarray:
        """Replace faulty devices' conductances (S) by their fixed value."""
        out = g.copy()
        out[codes == STUCK_ON] = g_max
        out[codes == STUCK_OFF] = g_min
        out[codes == OPEN] = 0.0
        return out
