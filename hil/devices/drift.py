"""Conductance drift after programming: g(t) = g_prog·((t + t0)/t0)^−ν, ν drawn per device.

t is the time since the device was last written (s).  ν ~ N(drift_nu_mean, drift_nu_std),
clipped at 0, static per device.  The board's clock advances by ``seconds_per_measure`` per
board call and by explicit ``elapse(seconds)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg


@dataclass(frozen=True)
class Drift(Family):
    drift_nu_mean: float = 0.0
    drift_nu_std: float = 0.0
    t0: float = 1.0
    seconds_per_measure: float = 0.0
    key = "drift"

    def check(self):
        out = non_neg(drift_nu_mean=self.drift_nu_mean, drift_nu_std=self.drift_nu_std,
                      seconds_per_measure=self.seconds_per_measure)
        if not self.t0 > 0:
            out.append(("t0", "must be > 0 s"))
        return out

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """Drift exponents ν (m,), zero when disabled."""
        xi = rng.standard_normal(m)
        if not self.enabled:
            return np.zeros(m)
        return np.maximum(self.drift_nu_mean + self.drift_nu_std * xi, 0.0)

    def factor(self, nu: np.ndarray, age_s: np.ndarray) -> np.ndarray:
        """Multiplicative drift factor (m,) after ``age_s`` seconds since programming."""
        if not self.enabled:
            return np.ones_like(nu)
        return ((np.maximum(age_s, 0.0) + self.t0) / self.t0) ** (-nu)
