"""Wire resistance family: the crossbar lines solved exactly (see :mod:`hil.circuit.wires`)."""

from __future__ import annotations

from dataclasses import dataclass

from hil.circuit.wires import WireSpec
from hil.devices.base import Family, non_neg


@dataclass(frozen=True)
class Wires(Family):
    """Ω per cell segment (row / column lines), driver and terminal resistances in Ω."""

    r_wire_row: float = 1.0
    r_wire_col: float = 1.0
    r_source: float = 0.0
    r_terminal: float = 0.0
    key = "wires"

    def check(self):
        out = non_neg(r_source=self.r_source, r_terminal=self.r_terminal)
        for k in ("r_wire_row", "r_wire_col"):
            if not getattr(self, k) > 0:
                out.append((k, "must be > 0 ohm (set enabled: false to remove wires)"))
        return out

    def spec(self) -> WireSpec | None:
        if not self.enabled:
            return None
        return WireSpec(self.r_wire_row, self.r_wire_col, self.r_source, self.r_terminal)
