"""Programming noise: a fresh draw every time a device is written (state dependent).

g ← max(0, g* + s·σ_p(g*)·ξ) with ``prog_noise_model``:
``constant`` σ_p = g_max; ``proportional`` σ_p = g*; ``poly`` σ_p = g_max·(c₀ + c₁ r + c₂ r²),
r = g*/g_max, coefficients ``prog_coeff`` relative to g_max (aihwkit's PCM-like fit is
(0.26348, 1.9650, −1.1731) µS at 25 µS); ``s`` = ``prog_noise_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg

PCM_PROG_COEFF = (0.26348 / 25.0, 1.9650 / 25.0, -1.1731 / 25.0)


@dataclass(frozen=True)
class ProgrammingNoise(Family):
    prog_noise_model: str = "proportional"
    prog_noise_scale: float = 0.0
    prog_coeff: tuple = PCM_PROG_COEFF
    key = "prog_noise"

    def check(self):
        out = non_neg(prog_noise_scale=self.prog_noise_scale)
        if self.prog_noise_model not in ("none", "constant", "proportional", "poly"):
            out.append(("prog_noise_model", "must be none, constant, proportional or poly"))
        if len(self.prog_coeff) != 3:
            out.append(("prog_coeff", "needs three coefficients (c0, c1, c2), relative to g_max"))
        return out

    def sigma(self, g: np.ndarray, g_max: float) -> np.ndarray:
        """Standard deviation (S) of one write aimed at ``g`` (S)."""
        if not self.enabled or self.prog_noise_model == "none":
            return np.zeros_like(g)
        s = self.prog_noise_scale
        if self.prog_noise_model == "constant":
            return np.full_like(g, s * g_max)
        if self.prog_noise_model == "proportional":
            return s * np.abs(g)
        r = g / g_max
        c0, c1, c2 = self.prog_coeff
        return s * g_max * np.maximum(c0 + c1 * r + c2 * r * r, 0.0)

    def write(self, rng: np.random.Generator, g: np.ndarray, g_max: float) -> np.ndarray:
        """Conductances (S) that a write of targets ``g`` leaves (one normal draw per device)."""
        xi = rng.standard_normal(g.shape)
        return np.maximum(g + self.sigma(g, g_max) * xi, 0.0)
