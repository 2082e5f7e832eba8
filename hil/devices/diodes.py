"""Diode parameter spread (static per diode): I_s, n, R_s and the reference voltage.

ln I_s ~ N(ln I_s, i_s_dtod²) (``i_s_dtod`` is σ of ln I_s); n·(1 + n_dtod ξ);
R_s·(1 + r_s_dtod ξ); turn-on spread of the reference: v_ref − s·|v_ref_dtod ξ| (V, s the
orientation), i.e. each diode starts conducting a little later than nominal.  The spread is
one-sided so the element stays passive: a diode whose clamp level sat on the conducting side
of 0 V would push current into the network with every source at 0 V.  For ideal diodes only
the reference (clamp level) matters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hil.circuit.elements import DiodeBank
from hil.devices.base import Family, non_neg


@dataclass(frozen=True)
class DiodeSpread(Family):
    i_s_dtod: float = 0.0
    n_dtod: float = 0.0
    r_s_dtod: float = 0.0
    v_ref_dtod: float = 0.0
    key = "diode_spread"

    def check(self):
        return non_neg(i_s_dtod=self.i_s_dtod, n_dtod=self.n_dtod, r_s_dtod=self.r_s_dtod, v_ref_dtod=self.v_ref_dtod)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Standard normal draws (4, n) for I_s, n, R_s, v_ref (always drawn: same stream either way)."""
        return rng.standard_normal((4, n))

    def apply(self, bank: DiodeBank, xi: np.ndarray) -> DiodeBank:
        if not self.enabled or bank.is_linear:
            return bank
        if bank.element is not None:  # a registry element applies the spread to its own diodes
            return bank
        return replace(
            bank,
            i_s=bank.i_s * np.exp(self.i_s_dtod * xi[0]),
            n=bank.n * np.maximum(1.0 + self.n_dtod * xi[1], 0.1),
            r_s=bank.r_s * np.maximum(1.0 + self.r_s_dtod * xi[2], 0.0),
            v_ref=bank.v_ref - bank.orientation * np.abs(self.v_ref_dtod * xi[3]),
        )
