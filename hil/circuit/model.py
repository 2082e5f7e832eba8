"""Resistor–diode crossbar circuits: topology, conductances (siemens), validation.

Node families (names are unique across the circuit and shared with the SPICE
export and ``hil solve --json``):

* **sources** ``p``: voltage sources driving the crossbar rows.  Each is an
  ``input`` (takes a logical input ``x_j``), an ``inverted`` copy (takes
  ``-x_j``, for signed weights) or a ``rail`` (fixed bias voltage).
* **hidden** ``n``: free nodes, each with one diode to a reference
  (:class:`~hil.circuit.elements.DiodeBank`) and a leak conductance to ground.
* **outputs** ``q``: ports held at a fixed voltage (0 V by default) whose
  currents are the network outputs; consecutive or listed pairs form
  differential outputs ``y+ - y-``.
* ``0`` is ground.

Conductances: ``g_in`` (n, p) source→hidden, ``g_hh`` a sparse
:class:`~hil.circuit.coupling.Coupling` of hidden↔hidden resistors (pairs k<l and their
conductances; no (n, n) array), ``g_leak`` (n,) hidden→ground, ``g_out`` (q, n) hidden→output port.
For compatibility the constructor also takes ``g_hh`` as a symmetric (n, n) array (with
``coupling_mask`` naming the resistors; default: the nonzero entries) or a scipy.sparse matrix
(its stored entries), and converts it on construction.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, replace
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from hil.circuit.coupling import Coupling, CouplingError
from hil.circuit.elements import DiodeBank

SOURCE_KINDS = ("input", "inverted", "rail")
GROUND = "0"


class CircuitError(ValueError):
    """An invalid circuit description; the message names the offending field."""

    def __init__(self, field_path: str, message: str):
        self.field = field_path
        super().__init__(f"{field_path}: {message}")


@dataclass(frozen=True)
class Source:
    """A voltage source node.  ``index`` is the logical input it follows (input/inverted)."""

    name: str
    kind: str
    index: int = -1
    voltage: float = 0.0


@dataclass(frozen=True)
class Topology:
    """Which conductance connects which nodes, in the flat parameter order.

    ``edges[k] = (a, b)`` are indices into ``node_names`` (sources, hidden,
    outputs, ground in that order); the branch voltage is ``V[a] - V[b]``.
    ``groups`` maps a group name (``g_in``, ``g_hh``, ``g_leak``, ``g_out``) to
    the slice of the flat vector it occupies.
    """

    node_names: tuple[str, ...]
    edges: np.ndarray
    edge_names: tuple[str, ...]
    groups: dict[str, slice]
    n_sources: int
    n_hidden: int
    n_outputs: int

    @property
    def n_conductances(self) -> int:
        return int(self.edges.shape[0])

    @property
    def ground_index(self) -> int:
        return len(self.node_names) - 1


@dataclass(frozen=True)
class Circuit:
    """A resistor–diode crossbar network.  All conductances in siemens, voltages in volts."""

    sources: tuple[Source, ...]
    hidden_names: tuple[str, ...]
    output_names: tuple[str, ...]
    g_in: np.ndarray
    g_hh: Coupling
    g_leak: np.ndarray
    g_out: np.ndarray
    diodes: DiodeBank
    output_voltage: np.ndarray
    differential_pairs: tuple[tuple[int, int], ...] = ()
    coupling_mask: InitVar[np.ndarray | None] = None
    name: str = "circuit"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self, coupling_mask: np.ndarray | None) -> None:
        g = self.g_hh
        if isinstance(g, Coupling):
            if coupling_mask is not None:
                raise ValueError("coupling_mask applies only to a dense g_hh (a Coupling lists its resistors)")
            return
        try:
            if sp.issparse(g):
                g = sp.csr_matrix(g)  # duplicates summed
                upper = sp.triu(g, 1).tocoo()
                if (g != g.T).nnz or g.diagonal().any():
                    raise CouplingError("must be symmetric with a zero diagonal (one resistor per node pair)")
                coupling = Coupling.from_pairs(g.shape[0], np.stack([upper.row, upper.col], axis=1), upper.data)
            else:
                coupling = Coupling.from_dense(g, coupling_mask)
        except CouplingError as exc:
            raise CircuitError(exc.field, str(exc)) from None
        object.__setattr__(self, "g_hh", coupling)

    # ---- sizes and names ---------------------------------------------------
    @property
    def n_sources(self) -> int:
        return len(self.sources)

    @property
    def n_hidden(self) -> int:
        return len(self.hidden_names)

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    @property
    def n_inputs(self) -> int:
        """Number of logical inputs x (one per distinct ``input`` source)."""
        idx = [s.index for s in self.sources if s.kind != "rail"]
        return max(idx) + 1 if idx else 0

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    @property
    def node_names(self) -> tuple[str, ...]:
        return self.source_names + self.hidden_names + self.output_names + (GROUND,)

    def element_names(self) -> dict[str, tuple[str, ...]]:
        """Element names shared by the SPICE netlist and ``hil solve --json``.

        ``sources``: ``V<source>`` (input and rail sources), ``ports``: ``V<output>``
        (0 V or fixed-voltage port sources), ``diodes``: ``D<hidden>``, ``resistors``:
        ``R_<a>_<b>`` for every conductance in :meth:`topology` order.
        """
        return {
            "sources": tuple(f"V{s}" for s in self.source_names),
            "ports": tuple(f"V{o}" for o in self.output_names),
            "diodes": tuple(f"D{h}" for h in self.hidden_names),
            "resistors": self.topology().edge_names,
        }

    # ---- validation ----------------------------------------------------------
    def validate(self) -> "Circuit":
        """Raise :class:`CircuitError` naming the field if the description is not a valid network."""
        n, p, q = self.n_hidden, self.n_sources, self.n_outputs
        names = self.node_names
        seen: set[str] = set()
        for nm in names:
            if nm in seen:
                raise CircuitError("names", f"node name {nm!r} is used twice")
            seen.add(nm)
        if n == 0:
            raise CircuitError("hidden.count", "a circuit needs at least one hidden node")
        if self.g_hh.n != n:
            raise CircuitError("conductances.g_hh", f"coupling of {self.g_hh.n} hidden nodes for {n} hidden nodes")
        for fname, arr, shape in (
            ("conductances.g_in", self.g_in, (n, p)),
            ("conductances.g_hh", self.g_hh.values, (self.g_hh.m,)),
            ("conductances.g_leak", self.g_leak, (n,)),
            ("conductances.g_out", self.g_out, (q, n)),
            ("outputs.voltage", self.output_voltage, (q,)),
        ):
            if arr.shape != shape:
                raise CircuitError(fname, f"shape {arr.shape} does not match the topology {shape}")
            if not np.all(np.isfinite(arr)):
                raise CircuitError(fname, "contains a non-finite value")
        for fname, arr in (
            ("conductances.g_in", self.g_in),
            ("conductances.g_leak", self.g_leak),
            ("conductances.g_out", self.g_out),
        ):
            if np.any(arr < 0):
                k = np.unravel_index(int(np.argmin(arr)), arr.shape)
                raise CircuitError(fname, f"negative conductance {arr[k]:.3g} S at index {tuple(int(i) for i in k)}")
        if np.any(self.g_hh.values < 0):
            i = int(np.argmin(self.g_hh.values))
            k, l = (int(x) for x in self.g_hh.pairs[i])
            raise CircuitError("conductances.g_hh", f"negative conductance {self.g_hh.values[i]:.3g} S "
                               f"at index {(k, l)}")
        d = self.diodes
        if d.count != n:
            raise CircuitError("hidden.element", f"{d.count} diodes for {n} hidden nodes")
        if not np.all(np.isin(d.orientation, (-1, 1))):
            raise CircuitError("hidden.element.orientation", "must be +1 or -1 per node")
        if d.kind == "shockley":
            if np.any(d.i_s <= 0):
                raise CircuitError("hidden.element.i_s", "saturation current must be > 0 A")
            if np.any(d.n <= 0):
                raise CircuitError("hidden.element.n", "emission coefficient must be > 0")
            if np.any(d.r_s < 0):
                raise CircuitError("hidden.element.r_s", "series resistance must be >= 0 ohm")
        for i, (a, b) in enumerate(self.differential_pairs):
            if not (0 <= a < q and 0 <= b < q) or a == b:
                raise CircuitError(f"outputs.differential[{i}]", "must name two distinct output ports")
        self._check_grounded()
        return self

    def _check_grounded(self) -> None:
        """Every connected hidden component needs a conductance to a fixed potential."""
        n = self.n_hidden
        on = self.g_hh.values > 0
        adj = sp.csr_matrix((np.ones(int(on.sum())), (self.g_hh.pairs[on, 0], self.g_hh.pairs[on, 1])), shape=(n, n))
        ncomp, labels = connected_components(adj, directed=False)
        anchored = (self.g_in.sum(axis=1) + self.g_leak + self.g_out.sum(axis=0)) > 0
        # A Shockley diode (with gmin) also ties the node to its reference.
        if self.diodes.kind == "shockley" and self.diodes.gmin_s > 0:
            anchored = np.ones(n, dtype=bool)
        element = self.diodes.element
        if element is not None:  # an element conducting on its whole domain ties the node (linear, Shockley pairs)
            if element.piecewise_linear:
                anchored = anchored | element.law().conducts_everywhere()
            else:
                anchored = np.ones(n, dtype=bool)  # smooth registry laws are strictly increasing (sinh of e)
        for c in range(ncomp):
            members = np.flatnonzero(labels == c)
            if not np.any(anchored[members]):
                names = ", ".join(self.hidden_names[k] for k in members[:5])
                raise CircuitError(
                    "conductances",
                    f"floating node(s) {names}: no conductance path to an input, rail, output port or ground",
                )

    # ---- linear algebra --------------------------------------------------------
    def laplacian_dense(self) -> np.ndarray:
        """Grounded Laplacian L (n, n) in siemens."""
        diag = self.g_in.sum(axis=1) + self.g_hh.row_sums() + self.g_leak + self.g_out.sum(axis=0)
        return np.diag(diag) - self.g_hh.toarray()

    def laplacian_sparse(self) -> sp.csc_matrix:
        """Grounded Laplacian L (n, n) in siemens, sparse (diagonal plus the coupling pairs)."""
        diag = self.g_in.sum(axis=1) + self.g_hh.row_sums() + self.g_leak + self.g_out.sum(axis=0)
        return (sp.diags(diag) - self.g_hh.tocsr()).tocsc()

    def source_voltages(self, x: np.ndarray) -> np.ndarray:
        """Map logical inputs x (B, n_inputs) in volts to source voltages u (B, p)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs per sample, got {x.shape[1]}")
        u = np.empty((x.shape[0], self.n_sources))
        for j, s in enumerate(self.sources):
            if s.kind == "input":
                u[:, j] = x[:, s.index]
            elif s.kind == "inverted":
                u[:, j] = -x[:, s.index]
            else:
                u[:, j] = s.voltage
        return u

    def input_jacobian(self) -> np.ndarray:
        """du/dx (p, n_inputs): +1 for input copies, -1 for inverted copies, 0 for rails."""
        m = np.zeros((self.n_sources, self.n_inputs))
        for j, s in enumerate(self.sources):
            if s.kind == "input":
                m[j, s.index] = 1.0
            elif s.kind == "inverted":
                m[j, s.index] = -1.0
        return m

    def differential_matrix(self) -> np.ndarray:
        """D (n_pairs, q) with y_diff = D y."""
        d = np.zeros((len(self.differential_pairs), self.n_outputs))
        for i, (a, b) in enumerate(self.differential_pairs):
            d[i, a] = 1.0
            d[i, b] = -1.0
        return d

    # ---- flat parameter view ------------------------------------------------------
    def hh_pairs(self) -> np.ndarray:
        """(m_hh, 2) index pairs k<l of the hidden↔hidden resistors that exist (read-only)."""
        return self.g_hh.pairs

    def topology(self) -> Topology:
        """Flat parameter order: g_in (row-major), g_hh pairs, g_leak, g_out (row-major)."""
        if "topology" in self._cache:
            return self._cache["topology"]
        n, p, q = self.n_hidden, self.n_sources, self.n_outputs
        hid0, out0, gnd = p, p + n, p + n + q
        names = self.node_names
        kk, jj = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
        e_in = np.stack([hid0 + kk.ravel(), jj.ravel()], axis=1)
        pairs = self.hh_pairs()
        e_hh = np.stack([hid0 + pairs[:, 0], hid0 + pairs[:, 1]], axis=1)
        e_leak = np.stack([hid0 + np.arange(n), np.full(n, gnd)], axis=1)
        oo, kk2 = np.meshgrid(np.arange(q), np.arange(n), indexing="ij")
        e_out = np.stack([hid0 + kk2.ravel(), out0 + oo.ravel()], axis=1)
        edges = np.concatenate([e_in, e_hh, e_leak, e_out]).astype(np.int64)
        sizes = [len(e_in), len(e_hh), len(e_leak), len(e_out)]
        starts = np.cumsum([0] + sizes)
        groups = {g: slice(int(starts[i]), int(starts[i + 1])) for i, g in enumerate(("g_in", "g_hh", "g_leak", "g_out"))}
        edge_names = tuple(f"R_{names[a]}_{names[b]}" for a, b in edges)
        topo = Topology(names, edges, edge_names, groups, p, n, q)
        self._cache["topology"] = topo
        return topo

    def conductance_vector(self) -> np.ndarray:
        """Conductances (S) in the flat order of :meth:`topology`."""
        return np.concatenate([
            self.g_in.ravel(),
            self.g_hh.values,
            self.g_leak,
            self.g_out.ravel(),
        ])

    def with_conductances(self, g: np.ndarray) -> "Circuit":
        """A copy with conductances taken from a flat vector (S) in :meth:`topology` order."""
        topo = self.topology()
        g = np.asarray(g, dtype=float)
        if g.shape != (topo.n_conductances,):
            raise ValueError(f"expected {topo.n_conductances} conductances, got shape {g.shape}")
        n, p, q = self.n_hidden, self.n_sources, self.n_outputs
        return replace(
            self,
            g_in=g[topo.groups["g_in"]].reshape(n, p).copy(),
            g_hh=self.g_hh.with_values(g[topo.groups["g_hh"]]),
            g_leak=g[topo.groups["g_leak"]].copy(),
            g_out=g[topo.groups["g_out"]].reshape(q, n).copy(),
            _cache={"topology": topo},
        )

    def with_diodes(self, diodes: DiodeBank) -> "Circuit":
        """A copy with another diode bank (the conductance topology, which the diodes are not part of,
        is kept)."""
        return replace(self, diodes=diodes, _cache={k: v for k, v in self._cache.items() if k == "topology"})


def make_sources(n_inputs: int, inverted: bool, rails: Sequence[tuple[str, float]], input_names: Sequence[str] | None = None) -> tuple[Source, ...]:
    """Build the source list: inputs, optional inverted copies (``<name>_n``), then rails."""
    names = list(input_names) if input_names is not None else [f"x{j}" for j in range(n_inputs)]
    out = [Source(nm, "input", j) for j, nm in enumerate(names)]
    if inverted:
        out += [Source(f"{nm}_n", "inverted", j) for j, nm in enumerate(names)]
    out += [Source(nm, "rail", -1, float(v)) for nm, v in rails]
    return tuple(out)
