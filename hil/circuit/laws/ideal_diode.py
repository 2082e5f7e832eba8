"""Ideal diode between the node and a reference (ground or a rail), either orientation.

Orientation +1: anode at the reference V_r, cathode at the node — clamps e ≥ V_r,
σ_a(x) = max(x, V_r).  Orientation −1: anode at the node — clamps e ≤ V_r,
σ_a(x) = min(x, V_r).  F is 0 inside the domain (the diode blocks).
"""

from __future__ import annotations

import numpy as np

from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement, PiecewiseLaw
from hil.circuit.laws.common import orientation_and_ref
from hil.circuit.laws.spice_forms import near_ideal_diode, reference_node


@register
class IdealDiode(NodeElement):
    name = "ideal"
    summary = "ideal diode to a reference: ReLU max(x, v_ref) (orientation +1) or min(x, v_ref) (−1)"
    keys = {"orientation": "+1 anode at the reference (clamps e ≥ v_ref) or −1 (clamps e ≤ v_ref); per node or scalar",
            "v_ref": "reference potential of the diode's other terminal, V"}

    def __init__(self, orientation, v_ref):
        orientation = np.asarray(orientation, dtype=int)
        super().__init__(orientation.shape[0])
        self.orientation = orientation
        self.v_ref = np.broadcast_to(np.asarray(v_ref, dtype=float), orientation.shape).copy()

    @classmethod
    def from_config(cls, sec, n: int):
        return cls(*orientation_and_ref(sec, n))

    def law(self) -> PiecewiseLaw:
        up = self.orientation > 0
        lo = np.where(up, self.v_ref, -np.inf)
        hi = np.where(up, np.inf, self.v_ref)
        z = np.zeros((self.n, 1))
        return PiecewiseLaw(lo, hi, np.zeros((self.n, 0)), z, z.copy())

    def reference_voltages(self) -> np.ndarray:
        return self.v_ref

    def spice(self, k: int, node: str, tag: str):
        lines, ref = reference_node(node, "ref", float(self.v_ref[k]))
        anode, cathode = (ref, node) if self.orientation[k] > 0 else (node, ref)
        return lines + [f"D{tag} {anode} {cathode} DIDEAL"], near_ideal_diode()
