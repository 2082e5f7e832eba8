"""Two-sided clamps: the clipping element and the antiparallel pair of ideal diodes.

Both confine the node to [v_lo, v_hi] with no current inside (F = 0): σ_a(x) =
clip(x, v_lo, v_hi), slope 1 inside, 0 when clamped.

* ``clip`` — an ideal Zener (cathode at the node) of voltage v_hi with v_lo = 0, or two
  ideal diodes to rails at v_lo and v_hi: the clipped ReLU.
* ``antiparallel`` — two antiparallel ideal diodes to ground, each in series with an offset
  source of v_b: the hard-tanh clip(x, −v_b, v_b).

SPICE form: a near-ideal diode from the low rail to the node and one from the node to the
high rail.
"""

from __future__ import annotations

import numpy as np

from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement, PiecewiseLaw, per_node
from hil.circuit.laws.common import voltage
from hil.circuit.laws.spice_forms import near_ideal_diode, reference_node


class _Box(NodeElement):
    def __init__(self, v_lo, v_hi):
        v_lo, v_hi = np.asarray(v_lo, dtype=float), np.asarray(v_hi, dtype=float)
        super().__init__(v_lo.shape[0])
        if np.any(v_hi <= v_lo):
            raise ValueError("clamp levels need v_lo < v_hi (V)")
        self.v_lo, self.v_hi = v_lo, v_hi

    def law(self) -> PiecewiseLaw:
        z = np.zeros((self.n, 1))
        return PiecewiseLaw(self.v_lo, self.v_hi, np.zeros((self.n, 0)), z, z.copy())

    def reference_voltages(self) -> np.ndarray:
        return np.maximum(np.abs(self.v_lo), np.abs(self.v_hi))

    def with_devices(self, spread, xi, temperature):
        """Turn-on spread of both ideal diodes, one-sided (each conducts a little later): the clamp
        window widens to [v_lo − |σξ₃|, v_hi + |σξ₀|]; ideal diodes have no temperature law."""
        if not spread.enabled:
            return self
        out = object.__new__(type(self))
        _Box.__init__(out, self.v_lo - np.abs(spread.v_ref_dtod * xi[3]), self.v_hi + np.abs(spread.v_ref_dtod * xi[0]))
        return out

    def spice(self, k: int, node: str, tag: str):
        l1, lo = reference_node(node, "lo", float(self.v_lo[k]))
        l2, hi = reference_node(node, "hi", float(self.v_hi[k]))
        return l1 + l2 + [f"D{tag}_lo {lo} {node} DIDEAL", f"D{tag}_hi {node} {hi} DIDEAL"], near_ideal_diode()


def _levels(sec, n, lo_key, lo_default, hi_key, hi_default):
    lo = per_node(sec, lo_key, lo_default, n, voltage)
    hi = per_node(sec, hi_key, hi_default, n, voltage)
    if np.any(hi <= lo):
        sec.error(hi_key, f"must be above {lo_key} at every node")
        hi = lo + 1.0
    return lo, hi


@register
class Clip(_Box):
    name = "clip"
    summary = "Zener or diodes to two rails: clipped ReLU clip(x, v_lo, v_hi)"
    keys = {"v_lo": "lower clamp (anode rail of the lower diode), V; 0 for a Zener",
            "v_hi": "upper clamp (Zener voltage or upper rail), V"}

    @classmethod
    def from_config(cls, sec, n: int):
        return cls(*_levels(sec, n, "v_lo", 0.0, "v_hi", 1.0))


@register
class AntiparallelIdeal(_Box):
    name = "antiparallel"
    summary = "antiparallel ideal diodes with offsets ±v_b: hard-tanh clip(x, −v_b, v_b)"
    keys = {"v_b": "offset of each diode of the pair, V (> 0)"}

    @classmethod
    def from_config(cls, sec, n: int):
        vb = per_node(sec, "v_b", 0.5, n, lambda v: None if 0 < v <= 1e4 else "must be > 0 V and at most 1e4 V")
        return cls(-vb, vb)
