"""Conductance range and quantised levels (linear-G levels, digital-potentiometer taps).

``linear_g``: n_levels evenly spaced conductances g_q = g_min + Δ·round((g − g_min)/Δ),
Δ = (g_max − g_min)/(n_levels − 1).  ``linear_r`` (digital potentiometer with N = n_levels − 1
steps): R(t) = r_series + r_wiper + (t/N)·r_ab, g = 1/R; when ``r_ab`` is 0 the pot spans the
board range (r_series + r_wiper = 1/g_max, r_ab = 1/g_min − 1/g_max).  Static, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family


@dataclass(frozen=True)
class Levels(Family):
    """``n_levels`` (0: continuous), ``level_map`` (linear_g | linear_r), resistances in Ω."""

    n_levels: int = 0
    level_map: str = "linear_g"
    r_series: float = 0.0
    r_wiper: float = 0.0
    r_ab: float = 0.0
    key = "levels"

    def check(self):
        out = []
        if self.level_map not in ("linear_g", "linear_r"):
            out.append(("level_map", "must be linear_g or linear_r"))
        if self.n_levels == 1 or self.n_levels < 0:
            out.append(("n_levels", "must be 0 (continuous) or >= 2"))
        for k in ("r_series", "r_wiper", "r_ab"):
            if getattr(self, k) < 0:
                out.append((k, "must be >= 0 ohm"))
        if self.level_map == "linear_r" and self.r_ab == 0 and (self.r_series > 0 or self.r_wiper > 0):
            out.append(("r_ab", "give the pot's end-to-end resistance (ohm) with r_series or r_wiper: r_ab 0 makes "
                                "the pot span the board range and would ignore them"))
        return out

    def quantise(self, g: np.ndarray, g_min: float, g_max: float) -> np.ndarray:
        """Nearest programmable level (S) of each target conductance (S), clipped to the range."""
        g = np.clip(g, g_min, g_max)
        if not self.enabled or self.n_levels == 0:
            return g
        if self.level_map == "linear_g":
            d = (g_max - g_min) / (self.n_levels - 1)
            return g_min + d * np.round((g - g_min) / d)
        steps = self.n_levels - 1
        r0 = self.r_series + self.r_wiper
        r_ab = self.r_ab
        if r_ab == 0:
            r0, r_ab = 1.0 / g_max, (1.0 / g_min - 1.0 / g_max) if g_min > 0 else 1e12
        r = 1.0 / np.maximum(g, 1e-300)
        t = np.clip(np.round((r - r0) / r_ab * steps), 0, steps)
        return 1.0 / (r0 + t / steps * r_ab)
