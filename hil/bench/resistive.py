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

from dataclasses import dataclass, field

import numpy as np

from hil.devices.pulses import PulseResponse

__all__ = ["ResistiveDeviceModel"]


def _in_process_response() -> PulseResponse:
    """The in-process bench's default law: stronger saturation on the way down than the device family's."""
    return PulseResponse(gamma_down=1.5)


@dataclass
class ResistiveDeviceModel:
    """Pulse response of m devices (SI units).

    Attributes:
        g_min, g_max: conductance bounds, S.
        response: the step law and its settings (threshold V, rates, exponents, reference width s),
            the :class:`~hil.devices.pulses.PulseResponse` of the device families; its window
            settings are not used here (the bounds are ``g_min``, ``g_max``).
        c2c: relative cycle-to-cycle standard deviation of each step.
        stuck: (m,) devices that ignore pulses (optional).
        seed: RNG seed.
    """

    g_min: float
    g_max: float
    response: PulseResponse = field(default_factory=_in_process_response)
    c2c: float = 0.1
    stuck: np.ndarray | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.g_min < self.g_max:
            raise ValueError("need 0 <= g_min < g_max")
        self._rng = np.random.default_rng(self.seed)

    def pulse(self, g: float, k: int, amplitude_v: float, width_s: float) -> float:
        """Conductance of device k after one pulse, S."""
        if self.stuck is not None and self.stuck[k]:
            return g
        if abs(amplitude_v) <= self.response.v_threshold:
            return g
        step = self.response.step(g, amplitude_v, width_s, self.g_min, self.g_max)
        step *= 1.0 + self.c2c * self._rng.standard_normal()
        return float(min(max(g + step, self.g_min), self.g_max))
