"""Temperature: diode laws at ``temperature_c`` (SPICE scaling of I_s, V_T) and resistor tempco.

R(T) = R(T_nom)(1 + tc1 ΔT + tc2 ΔT²), ΔT = temperature_c − tnom_c, so every device
conductance is divided by that factor; the diode bank gets the operating temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hil.circuit.elements import DiodeBank
from hil.devices.base import Family


@dataclass(frozen=True)
class Temperature(Family):
    temperature_c: float = 27.0
    tnom_c: float = 27.0
    tc1: float = 0.0
    tc2: float = 0.0
    key = "temperature"

    def check(self):
        return [("temperature_c", "below absolute zero")] if self.temperature_c <= -273.15 else []

    def conductance_factor(self) -> float:
        if not self.enabled:
            return 1.0
        dt = self.temperature_c - self.tnom_c
        return 1.0 / (1.0 + self.tc1 * dt + self.tc2 * dt * dt)

    def apply(self, bank: DiodeBank) -> DiodeBank:
        if not self.enabled:
            return bank
        return replace(bank, temperature_c=self.temperature_c, tnom_c=self.tnom_c)
