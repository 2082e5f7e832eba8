"""Ideal diode in series with a resistance R_s: the leaky ReLU.

Orientation +1 (anode at the reference V_r): F(e) = (e − V_r)/R_s for e < V_r, 0 above;
σ_a(x) = x for x ≥ V_r, V_r + (x − V_r)·R_s/(R_s + a) below (slope R_s/(R_s + a)).
Orientation −1 mirrors it.  The law is piecewise linear with one kink at V_r and no clamp.
"""

from __future__ import annotations

import numpy as np

from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement, PiecewiseLaw, per_node
from hil.circuit.laws.common import orientation_and_ref
from hil.circuit.laws.spice_forms import near_ideal_diode, num, reference_node


def _positive(v: float) -> str | None:
    return None if v > 0 and np.isfinite(v) else "must be > 0 and finite"


@register
class LeakyDiode(NodeElement):
    name = "leaky"
    summary = "ideal diode + series resistance r_s: leaky ReLU with slope r_s/(r_s + a) below v_ref"
    keys = {"r_s": "series resistance of the diode, Ω (per node or scalar)",
            "orientation": "+1 conducts when e < v_ref (anode at the reference) or −1 when e > v_ref",
            "v_ref": "reference potential, V"}

    def __init__(self, orientation, v_ref, r_s):
        orientation = np.asarray(orientation, dtype=int)
        super().__init__(orientation.shape[0])
        self.orientation = orientation
        self.v_ref = np.broadcast_to(np.asarray(v_ref, dtype=float), orientation.shape).copy()
        self.r_s = np.broadcast_to(np.asarray(r_s, dtype=float), orientation.shape).copy()

    @classmethod
    def from_config(cls, sec, n: int):
        orientation, v_ref = orientation_and_ref(sec, n)
        return cls(orientation, v_ref, per_node(sec, "r_s", 10e3, n, _positive))

    def law(self) -> PiecewiseLaw:
        g = 1.0 / self.r_s
        up = (self.orientation > 0)[:, None]
        slopes = np.where(up, np.stack([g, 0 * g], 1), np.stack([0 * g, g], 1))
        intercepts = -slopes * self.v_ref[:, None]
        inf = np.full(self.n, np.inf)
        return PiecewiseLaw(-inf, inf, self.v_ref[:, None].copy(), slopes, intercepts)

    def reference_voltages(self) -> np.ndarray:
        return self.v_ref

    def with_devices(self, spread, xi, temperature):
        """Turn-on spread (one-sided: the diode conducts a little later, v_ref − s·|σξ|) and the
        series resistance's spread; an ideal diode has no temperature law."""
        if not spread.enabled:
            return self
        return LeakyDiode(self.orientation, self.v_ref - self.orientation * np.abs(spread.v_ref_dtod * xi[3]),
                          self.r_s * np.maximum(1.0 + spread.r_s_dtod * xi[2], 1e-6))

    def spice(self, k: int, node: str, tag: str):
        lines, ref = reference_node(node, "ref", float(self.v_ref[k]))
        mid = f"{node}_rs"
        anode, cathode = (ref, mid) if self.orientation[k] > 0 else (mid, ref)
        return lines + [f"D{tag} {anode} {cathode} DIDEAL", f"R{tag}_s {mid} {node} {num(self.r_s[k])}"], near_ideal_diode()
