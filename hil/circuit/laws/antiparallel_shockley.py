"""Antiparallel pair of Shockley diodes from the node to a reference: an odd, compressive activation.

F(e) = i_D(e − v_ref) − i_D(v_ref − e) ≈ 2 I_s sinh((e − v_ref)/(nV_T)) (plus gmin across each
junction); g_d = g_D(e − v_ref) + g_D(v_ref − e).  σ_a is inverted by scalar Newton: linear
near 0 with slope 1/(1 + 2aI_s/(nV_T)), logarithmic for large |x|.  No series resistance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hil.circuit.elements import limit_junction
from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement
from hil.circuit.laws.shockley import diode_model
from hil.circuit.laws.spice_forms import reference_node


@register
class AntiparallelShockley(NodeElement):
    uses_diode_bank = True  # configured with the diode keys (preset, i_s, n, temperature_c, v_ref)
    name = "antiparallel_shockley"
    piecewise_linear = False
    summary = "antiparallel Shockley diodes: 2 I_s sinh(e/(nV_T)), odd and logarithmically compressive"
    keys = {}  # diode-bank keys (preset, i_s, n, temperature_c, v_ref, …); r_s must be 0

    def __init__(self, bank):
        super().__init__(bank.count)
        if np.any(bank.r_s > 0):
            bank = replace(bank, r_s=np.zeros(bank.count))
        self.bank = bank

    def current(self, e):
        b = self.bank
        v = np.asarray(e, dtype=float) - b.v_ref
        i1, g1 = b.junction_current(v)
        i2, g2 = b.junction_current(-v)
        return i1 - i2, g1 + g2

    def limit(self, e_new, e_old):
        b = self.bank
        v_new, v_old = e_new - b.v_ref, e_old - b.v_ref
        vte, vcrit = b.vte, b.critical_voltage()
        up, m1 = limit_junction(v_new, v_old, vte, vcrit)
        down, m2 = limit_junction(-v_new, -v_old, vte, vcrit)
        v = np.where(v_new >= 0, up, -down)
        return b.v_ref + v, np.where(v_new >= 0, m1, m2)

    def reference_voltages(self):
        return self.bank.v_ref

    def with_devices(self, spread, xi, temperature):
        """Spread of I_s and n (no R_s; a reference shift would make the pair non-passive) and the
        operating temperature of the diode bank."""
        bank = self.bank
        if spread.enabled:
            bank = replace(bank, i_s=bank.i_s * np.exp(spread.i_s_dtod * xi[0]),
                           n=bank.n * np.maximum(1.0 + spread.n_dtod * xi[1], 0.1))
        return AntiparallelShockley(temperature.apply(bank))

    def spice(self, k: int, node: str, tag: str):
        b = self.bank
        lines, ref = reference_node(node, "ref", float(b.v_ref[k]))
        return lines + [f"D{tag}_f {node} {ref} DS{tag}", f"D{tag}_r {ref} {node} DS{tag}"], {f"DS{tag}": diode_model(b, k)}

    def spice_options(self):
        return {"gmin": self.bank.gmin_s, "temp": self.bank.temperature_c, "tnom": self.bank.tnom_c}
