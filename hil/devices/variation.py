"""Device-to-device variation: a static multiplicative factor per device.

``normal``: g·(1 + σξ); ``lognormal``: g·exp(σξ − σ²/2) (mean-preserving).  Drawn once per
board instance (a 1 % resistor stays 1 % off for its whole life).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg


@dataclass(frozen=True)
class DeviceVariation(Family):
    g_dtod_std: float = 0.0
    g_dtod_dist: str = "normal"
    key = "dtod"

    def check(self):
        out = non_neg(g_dtod_std=self.g_dtod_std)
        if self.g_dtod_dist not in ("normal", "lognormal"):
            out.append(("g_dtod_dist", "must be normal or lognormal"))
        return out

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """Static factors (m,) multiplying every programmed conductance (1 when disabled)."""
        xi = rng.standard_normal(m)
        if not self.enabled or self.g_dtod_std == 0:
            return np.ones(m)
        s = self.g_dtod_std
        if self.g_dtod_dist == "lognormal":
            return np.exp(s * xi - 0.5 * s * s)
        return np.maximum(1.0 + s * xi, 0.0)
