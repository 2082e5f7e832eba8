"""A pulse-response model of resistive memory devices, for emulated and in-process benches.

Each device has a conductance in [g_min, g_max] that moves with every voltage pulse above a
threshold: up for positive pulses, down for negative ones, by a step that shrinks as the
device approaches the bound it is moving towards (nonlinear, with different exponents and
scales up and down: asymmetric), scales with the overdrive and the width, and carries
cycle-to-cycle noise.  Reads are not modelled here (a read is the circuit's own current at
the read voltage).  Stuck devices ignore pulses.  The step law is
:class:`hil.devices.pulses.PulseResponse` (the one the emulated bench uses), with a plain
relative cycle-to-cycle noise: a light-weight stand-in for the in-process test bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devices.pulses import PulseResponse

__all__ = ["ResistiveDeviceModel"]


@dataclass
class ResistiveDeviceModel:
    """Pulse response of m devices (SI units).

    Attributes:
        g_min, g_max: conductance bounds, S.
        v_threshold: pulses with |V| at or below this do nothing, V.
        rate_up, rate_down: relative step (of g_max − g_min) per volt of overdrive and per
            ``width_ref_s`` of width, up and down.
        gamma_up, gamma_down: nonlinearity exponents (0 = linear).
        width_ref_s: width at which the rates apply, s.
        c2c: relative cycle-to-cycle standard deviation of each step.
        stuck: (m,) devices that ignore pulses (optional).
        seed: RNG seed.
    """

    g_min: float
    g_max: float
    v_threshold: float = 0.5
    rate_up: float = 0.02
    rate_down: float = 0.03
    gamma_up: float = 1.0
    gamma_down: float = 1.5
    width_ref_s: float = 1e-4
    c2c: float = 0.1
    stuck: np.ndarray | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.g_min < self.g_max:
            raise ValueError("need 0 <= g_min < g_max")
        self._rng = np.random.default_rng(self.seed)
        self._response = PulseResponse(v_threshold=self.v_threshold, rate_up=self.rate_up, rate_down=self.rate_down,
                                       gamma_up=self.gamma_up, gamma_down=self.gamma_down,
                                       width_ref_s=self.width_ref_s)

    def pulse(self, g: float, k: int, amplitude_v: float, width_s: float) -> float:
        """Conductance of device k after one pulse, S."""
        if self.stuck is not None and self.stuck[k]:
            return g
        if abs(amplitude_v) <= self.v_threshold:
            return g
        step = self._response.step(g, amplitude_v, width_s, self.g_min, self.g_max)
        step *= 1.0 + self.c2c * self._rng.standard_normal()
        return float(min(max(g + step, self.g_min), self.g_max))
