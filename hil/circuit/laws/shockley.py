"""Shockley diode to a reference (the "diode ReLU"), with optional series resistance.

Wraps the junction law of :class:`hil.circuit.elements.DiodeBank` (saturation current,
emission coefficient, temperature scaling, series resistance, SPICE-compatible
constants).  F(e) = −s·i_D(s·(v_ref − e)); σ_a has the Wright-omega closed form of
:func:`hil.circuit.elements.shockley_diode_relu` (grounded anode, no R_s).
"""

from __future__ import annotations

import numpy as np

from hil.circuit.elements import limit_junction
from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement
from hil.circuit.laws.spice_forms import num, reference_node


@register
class ShockleyDiode(NodeElement):
    name = "shockley"
    piecewise_linear = False
    summary = "Shockley diode (i_s, n, r_s, temperature): the diode ReLU with a logarithmic floor"
    keys = {}  # parsed with the diode-bank keys (preset, i_s, n, r_s, temperature_c, …)

    def __init__(self, bank):
        super().__init__(bank.count)
        self.bank = bank

    def current(self, e):
        return self.bank.node_current(np.asarray(e, dtype=float))

    def limit(self, e_new, e_old):
        b = self.bank
        s = b.orientation
        vd_new, vd_old = s * (b.v_ref - e_new), s * (b.v_ref - e_old)
        vd, mask = limit_junction(vd_new, vd_old, b.vte, b.critical_voltage())
        return b.v_ref - s * vd, mask

    def reference_voltages(self):
        return self.bank.v_ref

    def spice(self, k: int, node: str, tag: str):
        b = self.bank
        lines, ref = reference_node(node, "ref", float(b.v_ref[k]))
        anode, cathode = (ref, node) if b.orientation[k] > 0 else (node, ref)
        return lines + [f"D{tag} {anode} {cathode} DS{tag}"], {f"DS{tag}": diode_model(b, k)}

    def spice_options(self):
        return {"gmin": self.bank.gmin_s, "temp": self.bank.temperature_c, "tnom": self.bank.tnom_c}


def diode_model(b, k: int) -> str:
    par = f"IS={num(b.i_s[k])} N={num(b.n[k])}"
    if b.r_s[k] > 0:
        par += f" RS={num(b.r_s[k])}"
    return f"D({par} TNOM={num(b.tnom_c)} XTI={num(b.xti)} EG={num(b.eg_ev)})"
