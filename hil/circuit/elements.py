"""Nonlinear node elements: ideal and Shockley diodes.

Every hidden node carries one diode between the node and a reference potential
``v_ref`` (volts).  ``orientation = +1`` puts the anode at the reference and the
cathode at the node (the diode clamps ``e >= v_ref``); ``orientation = -1`` puts
the anode at the node (clamps ``e <= v_ref``).

For a Shockley diode the branch voltage is ``V_D = anode - cathode``, i.e.
``V_D = s * (v_ref - e)`` with ``s`` the orientation, and the current the
element draws out of the node is ``F(e) = -s * i_D(V_D)``; its incremental
conductance seen from the node is ``dF/de = g_D(V_D) >= 0`` for either
orientation.

Physical constants follow CODATA 2019 by default.  ``spice_compat=True`` selects
the constants and reverse-bias formula of ngspice-39 (see :mod:`hil.circuit.spice`
and physics.md §8.3) so that our solutions agree with ngspice to ~1e-13 V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.special import wrightomega

BOLTZMANN_J_PER_K = 1.380649e-23
ELEMENTARY_CHARGE_C = 1.602176634e-19
#: ngspice-39 uses CODATA 2014 values (const.h); their ratio differs by 3.4e-7.
NGSPICE_BOLTZMANN_J_PER_K = 1.38064852e-23
NGSPICE_ELEMENTARY_CHARGE_C = 1.6021766208e-19
ZERO_CELSIUS_K = 273.15
#: SPICE's default junction shunt conductance (siemens).
SPICE_GMIN_S = 1e-12

#: Diode parameter presets: saturation current (A), emission coefficient, series resistance (ohm).
DIODE_PRESETS: dict[str, dict[str, float]] = {
    "1N4148": {"i_s": 2.52e-9, "n": 1.752, "r_s": 0.568},
    "BAT42": {"i_s": 1e-7, "n": 1.1, "r_s": 12.0},
}

#: ``none`` removes the diodes (a purely linear resistor network: the linear control).
DIODE_KINDS = ("ideal", "shockley", "none")


def thermal_voltage(temperature_c: float, spice_compat: bool = False) -> float:
    """Thermal voltage k_B T / q in volts at ``temperature_c`` (degrees Celsius)."""
    k, q = (
        (NGSPICE_BOLTZMANN_J_PER_K, NGSPICE_ELEMENTARY_CHARGE_C)
        if spice_compat
        else (BOLTZMANN_J_PER_K, ELEMENTARY_CHARGE_C)
    )
    return k * (temperature_c + ZERO_CELSIUS_K) / q


@dataclass(frozen=True)
class DiodeBank:
    """The diodes of all ``n`` hidden nodes (one per node), as per-node arrays.

    Attributes:
        kind: ``"ideal"``, ``"shockley"`` or ``"none"`` (no diodes; one kind per circuit).
        orientation: (n,) +1 (anode at the reference) or -1 (anode at the node).
        v_ref: (n,) reference potential of each diode's other terminal, volts.
        i_s: (n,) saturation current at ``tnom_c``, amperes (Shockley only).
        n: (n,) emission coefficient (Shockley only).
        r_s: (n,) series resistance, ohms (Shockley only; 0 means none).
        temperature_c: operating temperature, degrees Celsius.
        tnom_c: temperature at which ``i_s`` was specified, degrees Celsius.
        gmin_s: conductance across each junction, siemens (SPICE adds 1e-12 S).
        spice_compat: use ngspice-39 constants and reverse-bias formula.
    """

    kind: str
    orientation: np.ndarray
    v_ref: np.ndarray
    i_s: np.ndarray
    n: np.ndarray
    r_s: np.ndarray
    temperature_c: float = 27.0
    tnom_c: float = 27.0
    xti: float = 3.0
    eg_ev: float = 1.11
    gmin_s: float = SPICE_GMIN_S
    spice_compat: bool = False
    #: a :class:`hil.circuit.laws.NodeElement` for kinds other than ideal/shockley/none, solved by
    #: :mod:`hil.circuit.element_solve`; None for the built-in fast paths.
    element: object | None = field(default=None, compare=False, repr=False)

    @property
    def count(self) -> int:
        return int(self.orientation.shape[0])

    @property
    def law(self):
        """The element object (:mod:`hil.circuit.laws`) of this bank: its law, activation and SPICE form."""
        from hil.circuit.laws import element_for_bank

        return element_for_bank(self)

    @property
    def is_ideal(self) -> bool:
        return self.kind == "ideal"

    @property
    def is_linear(self) -> bool:
        """True when the nodes carry no diode at all."""
        return self.kind == "none"

    @property
    def vt(self) -> float:
        """Thermal voltage at the operating temperature, volts."""
        return thermal_voltage(self.temperature_c, self.spice_compat)

    @cached_property
    def i_s_at_temperature(self) -> np.ndarray:
        """Saturation current at ``temperature_c`` (A), SPICE-style scaling from ``tnom_c``."""
        if self.temperature_c == self.tnom_c:
            return self.i_s
        t = self.temperature_c + ZERO_CELSIUS_K
        t0 = self.tnom_c + ZERO_CELSIUS_K
        ratio = t / t0
        return self.i_s * ratio ** (self.xti / self.n) * np.exp(
            self.eg_ev / (self.n * self.vt) * (ratio - 1.0)
        )

    @cached_property
    def vte(self) -> np.ndarray:
        """Emission-scaled thermal voltage n*V_T per diode, volts."""
        return self.n * self.vt

    # ---- junction law -------------------------------------------------
    def junction_current(self, vd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Junction current (A) and conductance (S) at junction voltage ``vd`` (V), per diode.

        ``vd`` broadcasts against the per-diode arrays (last axis = diode).
        """
        i_s = self.i_s_at_temperature
        vte = self.vte
        if not self.spice_compat:
            ex = np.exp(np.minimum(vd / vte, 700.0))
            return i_s * (ex - 1.0) + self.gmin_s * vd, i_s * ex / vte + self.gmin_s
        # ngspice dioload.c (no breakdown parameter): exponential down to -3 n V_T,
        # then a cubic tail -I_s (1 + (3 n V_T / (e V_D))^3).
        fwd = vd >= -3.0 * vte
        ex = np.exp(np.minimum(np.where(fwd, vd, 0.0) / vte, 700.0))
        safe_vd = np.where(fwd, -1.0, vd)
        arg = (3.0 * vte / (np.e * safe_vd)) ** 3
        cur = np.where(fwd, i_s * (ex - 1.0), -i_s * (1.0 + arg)) + self.gmin_s * vd
        cond = np.where(fwd, i_s * ex / vte, 3.0 * i_s * arg / safe_vd) + self.gmin_s
        return cur, cond

    def branch_current(self, v: np.ndarray,
                       junction_start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Current (A) and conductance (S) of diode + series resistance at branch voltage ``v`` (V).

        ``junction_start`` (V), a known close junction voltage, starts the series-resistance solve.
        """
        if not np.any(self.r_s > 0):
            return self.junction_current(v)
        _, cur, g = self._junction_solve(v, start=junction_start)
        return cur, g / (1.0 + self.r_s * g)

    def _junction_voltage(self, v: np.ndarray) -> np.ndarray:
        """Solve v = vj + r_s * i_D(vj) for the junction voltage vj (V)."""
        return self._junction_solve(v)[0]

    def _junction_solve(self, v: np.ndarray, r_series: np.ndarray | None = None,
                        start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Junction voltage (V) with the junction current (A) and conductance (S) evaluated there.

        Vectorised safeguarded Newton on h(vj) = vj + r_s i_D(vj) − v.  Where the series
        drop is small (r_s·g_D(v) ≤ 0.5, every diode of a typical network) Newton starts
        from vj = v and needs two or three evaluations of the junction law; only strongly
        forward-biased entries start from the closed form of the ideal-Shockley + R_s pair
        (Wright omega: never overflows, but costs several exponentials per entry).  The
        returned vj is the last point where the law was evaluated; the Newton step from it
        is below 1e-15 V (relative 1e-15).

        ``r_series`` (Ω, broadcast against ``v``) replaces the diode's own r_s, e.g. by
        r_s plus the Thevenin resistance of the node it sits on; ``start`` (V) replaces
        the starting point (the safeguarded Newton converges from any start).
        """
        rs = np.broadcast_to(self.r_s if r_series is None else r_series, v.shape)
        vj = np.array(v if start is None else start, dtype=float, copy=True)
        cur, g = self.junction_current(vj)
        far = rs * g > 0.5 if start is None else np.zeros((), bool)
        if far.any():
            i_s = np.broadcast_to(self.i_s_at_temperature, v.shape)[far]
            vte = np.broadcast_to(self.vte, v.shape)[far]
            rf, vf = rs[far], v[far]
            zeta = np.log(i_s * rf / vte) + (vf + i_s * rf) / vte
            vj[far] = vf - rf * (vte / rf * np.real(wrightomega(zeta)) - i_s)
            cur, g = self.junction_current(vj)
        lo = np.minimum(v, 0.0)
        hi = np.maximum(v, 0.0)
        for _ in range(100):
            step = (vj + rs * cur - v) / (1.0 + rs * g)
            new = np.clip(vj - step, lo, hi)
            if np.all(np.abs(new - vj) <= 1e-15 + 1e-15 * np.abs(vj)):
                return vj, cur, g
            vj = new
            cur, g = self.junction_current(vj)
        raise ArithmeticError("series-resistance junction solve did not converge")

    def node_current(self, e: np.ndarray, junction_start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Current drawn out of each node by its diode (A) and d/de of it (S); ``e`` in volts.

        ``junction_start``: see :meth:`branch_current`.
        """
        s = self.orientation
        vd = s * (self.v_ref - e)
        cur, g = self.branch_current(vd, junction_start)
        return -s * cur, g

    def critical_voltage(self) -> np.ndarray:
        """SPICE junction-limiting voltage V_crit = nV_T ln(nV_T / (sqrt(2) I_s)), volts."""
        vte = self.vte
        return vte * np.log(vte / (np.sqrt(2.0) * self.i_s_at_temperature))


def limit_junction(v_new: np.ndarray, v_old: np.ndarray, vte: np.ndarray, vcrit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPICE ``pnjlim``: limit a Newton update of a junction voltage (volts).

    Returns the limited voltage and a boolean mask of where limiting was applied.
    """
    big = (v_new > vcrit) & (np.abs(v_new - v_old) > 2.0 * vte)
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = 1.0 + (v_new - v_old) / vte
        from_pos = np.where(arg > 0, v_old + vte * np.log(np.where(arg > 0, arg, 1.0)), vcrit)
        from_neg = vte * np.log(np.maximum(v_new, 1e-300) / vte)
    limited = np.where(v_old > 0, from_pos, from_neg)
    out = np.where(big, limited, v_new)
    return out, big & (out != v_new)


def shockley_diode_relu(x: np.ndarray, a_ohm: float, i_s: float, n: float, vt: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form "diode ReLU" σ_a(x) and σ'_a(x) of a grounded-anode Shockley diode (no R_s, no gmin).

    σ_a(x) is the node voltage (V) when a source ``x`` (V) drives the diode through a
    resistance ``a_ohm`` (Ω): physics.md §6.
    """
    vte = n * vt
    w = np.real(wrightomega(np.log(a_ohm * i_s / vte) + (a_ohm * i_s - x) / vte))
    return x - a_ohm * i_s + vte * w, 1.0 / (1.0 + w)
