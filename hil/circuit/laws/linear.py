"""A plain conductance to ground at each node (or nothing): the linear control.

``model: none`` is the network without any element (F = 0); ``model: linear`` adds a
conductance g_lin (S) to ground, F(e) = g_lin·e, σ_a(x) = x/(1 + a·g_lin).
"""

from __future__ import annotations

import numpy as np

from hil.circuit.laws import register
from hil.circuit.laws.base import NodeElement, PiecewiseLaw, per_node
from hil.circuit.laws.spice_forms import num


@register
class Linear(NodeElement):
    name = "linear"
    summary = "a conductance g_lin to ground (F = g_lin·e): linear activation x/(1 + a·g_lin)"
    keys = {"g_lin": "conductance from each node to ground, S (≥ 0)"}

    def __init__(self, g_lin):
        g_lin = np.asarray(g_lin, dtype=float)
        super().__init__(g_lin.shape[0])
        self.g_lin = g_lin

    @classmethod
    def from_config(cls, sec, n: int):
        return cls(per_node(sec, "g_lin", 0.0, n, lambda v: None if 0 <= v < np.inf else "must be ≥ 0 S"))

    def law(self) -> PiecewiseLaw:
        inf = np.full(self.n, np.inf)
        return PiecewiseLaw(-inf, inf, np.zeros((self.n, 0)), self.g_lin[:, None].copy(), np.zeros((self.n, 1)))

    def spice(self, k: int, node: str, tag: str):
        g = float(self.g_lin[k])
        return ([f"R{tag}_lin {node} 0 {num(1.0 / g)}"] if g > 0 else []), {}


@register
class NoElement(Linear):
    name = "none"
    summary = "no element: the linear resistor network (control)"
    keys = {}

    def __init__(self, n: int):
        super().__init__(np.zeros(int(n)))

    @classmethod
    def from_config(cls, sec, n: int):
        return cls(n)
