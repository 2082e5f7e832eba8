"""The node-element abstraction: one object per kind of two-terminal element at a hidden node.

Every hidden node k carries one element between the node and ground (or a rail).  An
element is described by its law ``F(e)`` = current (A) leaving the node into the
element at node voltage ``e`` (V), monotone nondecreasing, and everything the rest of
the framework derives from it:

* ``current(e)`` — F(e) and the incremental conductance g_d = F'(e) (S): the KCL
  term of the equilibrium and the phase-2 element of hardware linearization;
* ``activation(x, a)`` — the MON activation σ_a = (I + aF)⁻¹ and its slope σ'_a,
  the node voltage when a source x (V) drives the element through a resistance a (Ω);
* ``spice(...)`` — its ngspice form;
* ``piecewise_linear`` — whether the law is piecewise linear (then ``law()`` gives its
  pieces and the active-set solver applies; otherwise damped Newton).

Piecewise-linear laws (:class:`PiecewiseLaw`) have a domain [lo, hi] (either end may be
infinite; a finite end is a clamp, i.e. an ideal diode to that potential) and finite
slopes in between, continuous inside the domain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Region codes of a node in the piecewise-linear solver (segments are 0, 1, …).
CLAMP_LO = -1
CLAMP_HI = -2


@dataclass(frozen=True)
class PiecewiseLaw:
    """A continuous piecewise-linear monotone law on a closed domain, per node.

    Attributes:
        lo, hi: (n,) domain ends, volts (``-inf`` / ``inf`` when unbounded).  At a finite end
            the element clamps the node (vertical piece of the graph).
        kinks: (n, m) interior breakpoints, volts, ascending, strictly inside (lo, hi).
        slopes: (n, m+1) conductance of each segment, S (finite, ≥ 0).
        intercepts: (n, m+1) F on segment j is ``intercepts[:, j] + slopes[:, j] * e`` (A).
    """

    lo: np.ndarray
    hi: np.ndarray
    kinks: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray

    @property
    def n_segments(self) -> int:
        return int(self.slopes.shape[1])

    def conducts_everywhere(self) -> np.ndarray:
        """(n,) whether each node's element conducts on its whole (unbounded) domain: every segment's
        slope > 0 and no clamp, so it alone ties the node to a unique voltage (e.g. linear, g_lin > 0)."""
        return (self.slopes.min(axis=1) > 0) & ~np.isfinite(self.lo) & ~np.isfinite(self.hi)

    def bounds(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voltage interval (V) of each node's segment (B, n) for segment indices ``region``."""
        ends = np.concatenate([self.lo[:, None], self.kinks, self.hi[:, None]], axis=1)  # (n, m+2)
        r = np.clip(region, 0, self.n_segments - 1)
        idx = np.arange(ends.shape[0])
        return ends[idx, r], ends[idx, r + 1]

    def segment(self, e: np.ndarray) -> np.ndarray:
        """Segment index (B, n) containing voltage ``e`` (clipped into the domain)."""
        seg = np.zeros(e.shape, dtype=int)
        for j in range(self.kinks.shape[1]):
            seg += e > self.kinks[:, j]
        return seg

    def coefficients(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slope S, intercept A) per node for segment indices (clamped nodes: the nearest end segment)."""
        r = np.clip(region, 0, self.n_segments - 1)
        idx = np.arange(self.slopes.shape[0])
        return self.slopes[idx, r], self.intercepts[idx, r]

    def current(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F(e) (A) and F'(e) (S) inside the domain (e is clipped to it)."""
        ec = np.clip(e, self.lo, self.hi)
        g, c = self.coefficients(self.segment(ec))
        return c + g * ec, g

    def resolvent_region(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Region of σ_{1/c}(x): where e + F(e)/c = x lands (CLAMP_LO, CLAMP_HI or a segment).

        ``c`` (n,) in S.  At a finite domain end the graph is vertical, so every x beyond
        ``end + F(end)/c`` maps to the clamp.
        """
        f_lo = self.current(np.broadcast_to(self.lo, x.shape))[0] if np.any(np.isfinite(self.lo)) else 0.0
        f_hi = self.current(np.broadcast_to(self.hi, x.shape))[0] if np.any(np.isfinite(self.hi)) else 0.0
        with np.errstate(invalid="ignore"):
            x_lo = np.where(np.isfinite(self.lo), self.lo + f_lo / c, -np.inf)
            x_hi = np.where(np.isfinite(self.hi), self.hi + f_hi / c, np.inf)
        seg = np.zeros(x.shape, dtype=int)
        if self.kinks.shape[1]:
            fk = np.stack([self.current(np.broadcast_to(self.kinks[:, j], x.shape))[0]
                           for j in range(self.kinks.shape[1])], axis=-1)
            xk = self.kinks + fk / c[..., None] if np.ndim(c) else self.kinks + fk / c
            seg = np.sum(x[..., None] > xk, axis=-1)
        region = np.where(x <= x_lo, CLAMP_LO, np.where(x >= x_hi, CLAMP_HI, seg))
        return region

    def resolvent(self, x: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
        """σ_a(x) (V) and σ'_a(x) for a series resistance ``a`` (Ω)."""
        c = np.full(self.lo.shape, 1.0 / a)
        region = self.resolvent_region(np.asarray(x, dtype=float), c)
        g, icpt = self.coefficients(region)
        free = (x - a * icpt) / (1.0 + a * g)
        sigma = np.where(region == CLAMP_LO, self.lo, np.where(region == CLAMP_HI, self.hi, free))
        slope = np.where(region < 0, 0.0, 1.0 / (1.0 + a * g))
        return sigma, slope


class NodeElement(ABC):
    """Base class of node elements; subclasses live in one module each and register themselves.

    Subclasses set ``name``, ``piecewise_linear`` and ``summary`` and implement
    :meth:`from_config`, :meth:`current` (smooth) or :meth:`law` (piecewise linear),
    :meth:`spice` and :meth:`reference_voltages`.
    """

    name: ClassVar[str] = ""
    piecewise_linear: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    #: Config keys the element reads under ``hidden.element`` (besides ``model``), with descriptions.
    keys: ClassVar[dict[str, str]] = {}

    def __init__(self, n: int):
        self.n = int(n)

    # ---- construction --------------------------------------------------------------
    @classmethod
    def from_config(cls, sec, n: int) -> "NodeElement":
        """Build ``n`` elements from their own config keys (elements with a ``keys`` table)."""
        raise TypeError(f"element {cls.name!r} is built from the diode-bank keys, not from its own section")

    # ---- law -------------------------------------------------------------------------
    def law(self) -> PiecewiseLaw:
        raise TypeError(f"element {self.name!r} is not piecewise linear")

    def current(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Current leaving each node into its element (A) and its derivative (S), at e (V)."""
        return self.law().current(np.asarray(e, dtype=float))

    def states_name_regions(self) -> bool:
        """Whether the conduction state a board reports per node (on: at a clamp or on a segment of
        positive slope; off: on a flat segment) names the node's region of the law, i.e. each node
        has at most one region that reads on and at most one that reads off.  Not so for two clamps
        (``clip``, ``antiparallel``): a node can go from one clamp to the other within one
        perturbation, through the free region between them, without any reported state changing,
        so "no state changed" does not mean "stayed in one linear region".  True for smooth
        elements (their states are not used to judge linearity)."""
        if not self.piecewise_linear:
            return True
        law = self.law()
        on = (np.isfinite(law.lo).astype(int) + np.isfinite(law.hi).astype(int)
              + np.count_nonzero(law.slopes > 0, axis=1))
        return bool(np.all(on <= 1) and np.all(np.count_nonzero(law.slopes == 0, axis=1) <= 1))

    def limit(self, e_new: np.ndarray, e_old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Limit a Newton update of the node voltages (V); returns (limited, mask where applied)."""
        return e_new, np.zeros(e_new.shape, bool)

    def reference_voltages(self) -> np.ndarray:
        """(n,) a voltage scale of the element's own references (rails, clamps), V."""
        return np.zeros(self.n)

    # ---- MON activation ----------------------------------------------------------------
    def activation(self, x: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
        """σ_a(x) = (I + aF)⁻¹(x) (V) and σ'_a(x) = 1/(1 + a g_d(σ)), for series resistance a (Ω)."""
        x = np.asarray(x, dtype=float)
        if self.piecewise_linear:
            return self.law().resolvent(x, a)
        return smooth_resolvent(self, x, a)

    # ---- SPICE -----------------------------------------------------------------------------
    @abstractmethod
    def spice(self, k: int, node: str, tag: str) -> tuple[list[str], dict[str, str]]:
        """Deck lines for node ``node`` (k-th hidden) and ``.model`` cards {name: parameters}."""

    def spice_options(self) -> dict[str, float]:
        """``.options`` entries the element needs (gmin, temp, tnom)."""
        return {}

    # ---- device non-idealities ---------------------------------------------------------------
    def with_devices(self, spread, xi: np.ndarray, temperature) -> "NodeElement":
        """This element with its diodes' static spread and operating temperature (``hil.devices``).

        ``spread`` is the :class:`~hil.devices.diodes.DiodeSpread` family, ``xi`` its standard
        normal draws (4, n) (rows: I_s, n, R_s, reference), ``temperature`` the
        :class:`~hil.devices.temperature.Temperature` family; each is applied only when enabled.
        The default, for elements without a diode, is the element itself.
        """
        return self


def smooth_resolvent(element: NodeElement, x: np.ndarray, a: float, tol: float = 1e-15) -> tuple[np.ndarray, np.ndarray]:
    """Solve z + aF(z) = x per entry by bracketed Newton (monotone F with F(0) = 0 at ground)."""
    z = np.zeros_like(x)
    lo = np.minimum(x, 0.0)
    hi = np.maximum(x, 0.0)
    for _ in range(300):
        f, g = element.current(z)
        h = z + a * f - x
        lo = np.where(h < 0, z, lo)
        hi = np.where(h > 0, z, hi)
        new = z - h / (1.0 + a * g)
        bad = (new <= lo) | (new >= hi) | ~np.isfinite(new)
        new = np.where(bad, 0.5 * (lo + hi), new)
        if np.all(np.abs(new - z) <= tol * (1.0 + np.abs(z))):
            f, g = element.current(new)
            return new, 1.0 / (1.0 + a * g)
        z = new
    from hil.circuit.report import SolveError, SolveReport

    raise SolveError("element resolvent did not converge", SolveReport(False, "resolvent"))


def per_node(sec, key: str, default: float, n: int, check=None) -> np.ndarray:
    """A scalar or per-node list config value as an (n,) float array."""
    val = sec.raw(key, default) if hasattr(sec, "raw") else default
    if isinstance(val, list):
        try:
            arr = np.asarray(val, dtype=float)
        except (TypeError, ValueError):
            sec.error(key, "must be a number or a list of numbers")
            return np.full(n, float(default))
        if arr.shape != (n,):
            sec.error(key, f"list of {arr.size} values for {n} hidden nodes")
            return np.full(n, float(default))
    elif isinstance(val, (int, float)) and not isinstance(val, bool):
        arr = np.full(n, float(val))
    else:
        sec.error(key, "must be a number or a list of numbers")
        return np.full(n, float(default))
    if check is not None:
        for v in (float(arr.min()), float(arr.max())):
            msg = check(v)
            if msg:
                sec.error(key, msg)
                return np.full(n, float(default))  # reported; a valid stand-in so the element still builds
    return arr
