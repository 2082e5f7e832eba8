"""Read noise: each read (a conductance read-back or one settle-and-measure of the board)
sees the conductances with a fresh fluctuation, which enters the equilibrium.

``proportional``: g(1 + σ_r ξ); ``additive``: g + σ_r·g_max·ξ (clipped at 0); σ_r =
``read_noise_scale``.  One draw per device per read; every sample of a batch measured in
one board call shares it (the batch is one settle-and-measure of the array).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.base import Family, non_neg


@dataclass(frozen=True)
class ReadNoise(Family):
    read_noise_model: str = "proportional"
    read_noise_scale: float = 0.0
    key = "read_noise"

    def check(self):
        out = non_neg(read_noise_scale=self.read_noise_scale)
        if self.read_noise_model not in ("none", "additive", "proportional"):
            out.append(("read_noise_model", "must be none, additive or proportional"))
        return out

    @property
    def active(self) -> bool:
        return self.enabled and self.read_noise_model != "none" and self.read_noise_scale > 0

    def read(self, rng: np.random.Generator, g: np.ndarray, g_max: float) -> np.ndarray:
        """Conductances (S) seen by one read."""
        if not self.active:
            return g
        xi = rng.standard_normal(g.shape)
        if self.read_noise_model == "proportional":
            return np.maximum(g * (1.0 + self.read_noise_scale * xi), 0.0)
        return np.maximum(g + self.read_noise_scale * g_max * xi, 0.0)
