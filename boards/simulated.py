"""The simulated board: a resistor–diode crossbar solved exactly by :mod:`hil.circuit`.

It implements :class:`hil.board.Board` and the simulated-only
:class:`hil.board.ExactLinearization` capability.  Conductance programming is exact
(clipped to the programmable range); non-idealities are layered on in later modules.
The equilibrium solver and its factorizations are kept between calls, and the last
operating point warm-starts the next solve of the same inputs (perturbation phases).
"""

from __future__ import annotations

import math

import numpy as np

from hil.board import BoardBase, BoardTopology, Measurement
from hil.circuit.model import Circuit
from hil.circuit.solve import CircuitState, EquilibriumSolver, source_currents_of
from hil.circuit.coupled_lean import CoupledIdealSolves
from hil.circuit.uncoupled import UncoupledIdealSolves
from hil.kernels import held_rows_kernel, repeats_of


def board_topology(circuit: Circuit) -> BoardTopology:
    """The board view of a circuit's topology."""
    topo = circuit.topology()
    n, p, q = circuit.n_hidden, circuit.n_sources, circuit.n_outputs
    kinds = ("source",) * p + ("hidden",) * n + ("output",) * q + ("ground",)
    offset = np.array([s.voltage if s.kind == "rail" else 0.0 for s in circuit.sources])
    shapes = {"g_in": (n, p), "g_hh": (topo.groups["g_hh"].stop - topo.groups["g_hh"].start,),
              "g_leak": (n,), "g_out": (q, n)}
    return BoardTopology(
        node_names=topo.node_names, node_kinds=kinds, edges=topo.edges, edge_names=topo.edge_names,
        groups=topo.groups, source_matrix=circuit.input_jacobian(), source_offset=offset,
        output_voltage=circuit.output_voltage.copy(), differential=circuit.differential_matrix(),
        group_shapes=shapes,
    )


class _SourceCurrentsOnRead(Measurement):
    """A measurement whose source currents are formed when first read.

    ``i_src = u·ΣG_in − e·G_in`` (KCL at the source nodes) is a (B, n) × (n, p) product that
    a training step never reads; it is formed from the voltages of this measurement and
    the input conductances of the moment it was taken (a snapshot the board never writes
    into), so reading it later, after reprogramming, gives the same currents as at once.
    """

    @property
    def i_src(self) -> np.ndarray:
        d = self.__dict__
        if d.get("_i_src") is None and "_inputs" in d:
            g_in, g_in_col = d.pop("_inputs")
            d["_i_src"] = source_currents_of(self.u, self.e, g_in, g_in_col)
        return d.get("_i_src")

    @i_src.setter
    def i_src(self, value) -> None:
        self.__dict__["_i_src"] = value

    def __setattr__(self, name: str, value) -> None:
        # an assignment (a wrapper correcting readings, say) withdraws the board's word on the arrays
        self.__dict__.pop("exact_for", None)
        object.__setattr__(self, name, value)


class _CurrentsOnRead(_SourceCurrentsOnRead):
    """A measurement whose port currents ``y`` and source voltages ``u`` (the held sources
    repeated) are also formed when first read, by the solve's state
    (:class:`hil.circuit.uncoupled.UncoupledIdealSolves` phases, from the output conductances
    of the moment of the solve): an ``hl`` gradient reads only node voltages."""

    @property
    def y(self) -> np.ndarray:
        d = self.__dict__
        if d.get("_y") is None and "_state" in d:
            d["_y"] = d["_state"].y
        return d.get("_y")

    @y.setter
    def y(self, value) -> None:
        self.__dict__["_y"] = value

    @property
    def u(self) -> np.ndarray:
        d = self.__dict__
        if d.get("_u") is None and "_state" in d:
            d["_u"] = d["_state"].u
        return d.get("_u")

    @u.setter
    def u(self, value) -> None:
        self.__dict__["_u"] = value

    @property
    def info(self) -> dict:
        """{"report": the solve report, "g_d": None}, formed when first read (the report too)."""
        d = self.__dict__
        if d.get("_info") is None and "_state" in d:
            st = d["_state"]
            d["_info"] = {"report": st.report, "g_d": st.g_d}
        return d.get("_info")

    @info.setter
    def info(self, value) -> None:
        self.__dict__["_info"] = value


class _TiledState:
    """The held operating point repeated k times, as a warm start for a stacked batch.

    Only what the solve actually reads is tiled, on first access (uncoupled ideal diodes
    read just the source voltages and their source currents ``b_src``).
    """

    def __init__(self, st: CircuitState, k: int):
        self._st, self._k = st, k
        self.report = st.report

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        a = getattr(self._st, name)
        if isinstance(a, np.ndarray):
            a = np.tile(a, (self._k,) + (1,) * (a.ndim - 1))
        setattr(self, name, a)  # later reads (and identity checks such as ``warm.u is u``) see one array
        return a


def _same_inputs(held: np.ndarray, x: np.ndarray) -> bool:
    """``np.array_equal(held, x)`` for two float arrays, rejecting most differences on the first entry."""
    if held.shape != x.shape:
        return False
    if held is x or not x.size:
        return True
    return bool(held[0, 0] == x[0, 0]) and np.array_equal(held, x)


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _repeats(held: tuple[np.ndarray, CircuitState], x: np.ndarray) -> int:
    """k when the 2-D float inputs ``x`` are the held inputs (always 2-D) stacked k ≥ 1 times, else 0
    (one compiled comparison)."""
    if x.shape[0] < held[0].shape[0]:
        return 0  # (fewer rows than held: a few held samples at most, see :meth:`SimulatedBoard._from_held`)
    return int(repeats_of(_contiguous(x), held[0]))


def _tiled(held: tuple[np.ndarray, CircuitState] | None, x: np.ndarray) -> _TiledState | None:
    """The held operating point repeated k times if ``x`` is the held inputs stacked k times, else None."""
    if held is None or held[0].shape[0] == 0 or x.shape[0] % held[0].shape[0] or x.shape[1:] != held[0].shape[1:]:
        return None
    k = x.shape[0] // held[0].shape[0]
    if k < 2 or not (x.reshape(k, *held[0].shape) == held[0]).all():
        return None
    return _TiledState(held[1], k)


class SimulatedBoard(BoardBase):
    """A board whose physics is the exact equilibrium of a :class:`~hil.circuit.model.Circuit`.

    Args:
        circuit: the network (its conductances are the initial programmed state).
        g_min, g_max: programmable conductance range, siemens.
    """

    def __init__(self, circuit: Circuit, g_min: float = 0.0, g_max: float = np.inf):
        if not 0 <= g_min < g_max:
            raise ValueError("need 0 <= g_min < g_max (siemens)")
        circuit.validate()
        self._topology = board_topology(circuit)
        self._n_inputs = self._topology.n_inputs
        self._bounds = (float(g_min), float(g_max))
        self._diodes = circuit.diodes
        self._piecewise_linear = bool(circuit.diodes.law.piecewise_linear)
        #: the elements' on/off states do not name their regions (two clamps): said in every measurement's
        #: ``info["ambiguous_states"]``, so that no estimator takes "no state changed" for "stayed linear"
        self._ambiguous_states = not circuit.diodes.law.states_name_regions()
        self._solver = EquilibriumSolver(circuit)
        d = circuit.diodes
        #: the lean certified path of uncoupled ideal diodes (None for every other network)
        self._uncoupled = (UncoupledIdealSolves(self._solver, self._topology.source_matrix, self._topology.source_offset)
                           if d.is_ideal and d.element is None and not self._solver.nodal.coupled else None)
        #: the lean certified path of coupled ideal diodes (None for every other network)
        self._coupled = (CoupledIdealSolves(self._solver, self._topology.source_matrix, self._topology.source_offset)
                         if d.is_ideal and d.element is None and self._solver.nodal.coupled else None)
        #: ``exact_for`` of the lean paths' measurements (see :class:`~hil.board.Measurement`): their
        #: arrays are formed C-contiguous with the topology's widths, every sample valid and exact
        #: (also where the compiled coupled path hands a batch to the general active-set solver)
        self._exact_token = (self._topology if (self._uncoupled is not None or self._coupled is not None)
                             and self._piecewise_linear and not self._ambiguous_states else None)
        self._last: tuple[np.ndarray, CircuitState] | None = None
        self._stale: tuple[np.ndarray, CircuitState] | None = None  # before the last programming

    # ---- protocol -----------------------------------------------------------
    @property
    def topology(self) -> BoardTopology:
        """Nodes, conductances (edges) and their groups, the source map and the differential readout."""
        return self._topology

    @property
    def conductance_bounds(self) -> tuple[float, float]:
        """Programmable range (g_min, g_max) in siemens."""
        return self._bounds

    @property
    def circuit(self) -> Circuit:
        """The circuit with the conductances currently programmed."""
        return self._solver.circuit

    def measure(self, x: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        """The certified equilibrium for inputs ``x`` (B, n_inputs) in V and port voltages ``w`` (B, q)
        in V (default: the configured ones); raises ValueError for a wrong shape or a non-finite
        input and :class:`~hil.circuit.report.SolveError` when a solve is not certified.  The
        arrays of the returned measurement are the board's own (copy before changing them)."""
        fast, held = self._uncoupled, self._last
        if fast is not None and w is not None and held is not None and type(x) is np.ndarray and x.ndim == 2 \
                and x.dtype == np.float64 and (st := self._from_held(fast, x, w)) is not None:
            # the held sources k times with new port voltages (the phases of a gradient), or some
            # held samples (a phase of a few of them): the held-point rules of
            # :meth:`_solve_uncoupled`, without its general checks
            return self._held_phases_measurement(st)
        if w is not None and self._coupled is not None and (st := self._solve_coupled(x, w, True)) is not None:
            return self._held_phases_measurement(st)  # the same for coupled ideal diodes (held phases only)
        st = self._solve(x, w) if fast is None else self._solve_uncoupled(x, w)
        if st.i_src is not None:
            return Measurement(u=st.u, w=st.w, y=st.y, i_src=st.i_src, e=st.e, on=st.on,
                               piecewise_linear=self._piecewise_linear, info=self._info(st))
        lazy_y = "_ports" in st.__dict__  # port currents not formed yet (uncoupled phases)
        if not lazy_y:
            m = _SourceCurrentsOnRead.__new__(_SourceCurrentsOnRead)  # every field set here (cheaper than __init__)
            m.__dict__.update(u=st.u, w=st.w, y=st.y, _i_src=None, e=st.e, on=st.on,
                              piecewise_linear=self._piecewise_linear, valid=None, noise_v=0.0, info=self._info(st),
                              _inputs=self._solver.nodal.input_snapshot(),
                              exact_for=self._exact_token if fast is not None or self._solver.compiled_coupled
                              else None)  # (coupled: the compiled path's states only, those it finishes too)
            return m
        return self._held_phases_measurement(st)

    def _info(self, st: CircuitState) -> dict:
        """A measurement's ``info``: the solve report, the elements' incremental conductances and, for
        elements whose states do not name their regions, ``"ambiguous_states": True``."""
        info = {"report": st.report, "g_d": st.g_d}
        if self._ambiguous_states:
            info["ambiguous_states"] = True
        return info

    def _held_phases_measurement(self, st: CircuitState) -> Measurement:
        """The measurement of held sources with new port voltages: u (the held sources stacked), y,
        the source currents and ``info`` (with the solve report) formed when first read."""
        m = _CurrentsOnRead.__new__(_CurrentsOnRead)  # (cheaper than __init__; valid and noise_v: the defaults,
        # u, y, i_src and info: formed when first read)
        m.__dict__.update(w=st.w, e=st.e, on=st.on, piecewise_linear=self._piecewise_linear,
                          _inputs=self._solver.nodal.input_snapshot(), _state=st,
                          held_sources=st.__dict__["held_sources"],  # this board solved exactly those sources
                          exact_for=self._exact_token)
        return m

    def program(self, g: np.ndarray, rel_tol: float = 0.01) -> np.ndarray:
        """Program conductances (m,) in siemens, clipped to the programmable range; returns the read-back.

        Programming is exact, so the read-back is the clipped request (a new array unless the
        request was already inside the range and given as a float array, which is then returned
        as it is: the board keeps its own copy).
        """
        g = np.asarray(g, dtype=float)
        if g.shape != (self._topology.n_conductances,):
            raise ValueError(f"expected {self._topology.n_conductances} conductances, got shape {g.shape}")
        lo, hi = (float(g.min()), float(g.max())) if g.size else (0.0, 0.0)
        g_min, g_max = self._bounds
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min/max propagate NaN and show ±inf
            raise ValueError("conductances must be finite (siemens)")
        if lo < g_min or hi > g_max:
            g = np.clip(g, g_min, g_max)
        # Only the changed conductances are written; the circuit structure is kept.
        if self._solver.program(g):
            self._stale, self._last = self._last or self._stale, None
        return g

    def read_conductances(self) -> np.ndarray:
        """The programmed conductances (m,) in siemens (exact: a simulation reads without noise)."""
        return self._solver.nodal.g.copy()

    def safe_state(self) -> None:
        """Nothing is energised in a simulation; forget the held operating points."""
        self._last = self._stale = None

    # ---- simulated-only capability ------------------------------------------------
    def linearized_response(self, x: np.ndarray, w_hat: np.ndarray,
                            injected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Adjoint circuit at the operating point of ``x``: ê (B, n) volts, î (B, p) amperes.

        Sources shorted, elements frozen, output ports driven at ``w_hat`` (V) and, optionally,
        currents ``injected`` (B, n) in amperes fed into the hidden nodes (a loss on node
        voltages, or the back-propagated signal of a later cascade stage).
        """
        st = self._solve(x, None)
        nd = self._solver.nodal
        rhs = np.atleast_2d(w_hat) @ nd.g_out
        if injected is not None:
            rhs = rhs + injected
        e_hat = self._solver.adjoint_voltages(st, rhs)  # sources shorted, elements frozen
        i_hat = -e_hat @ nd.g_in
        return e_hat, i_hat

    def measure_injected(self, x: np.ndarray, injected: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        """Measure with currents ``injected`` (B, n) in A fed into the hidden nodes by current sources.

        ``x`` (B, n_inputs) in V, ``w`` (B, q) port voltages in V (default: the normal ones).  The
        held operating point of the same inputs (or of inputs stacked k times) warm-starts the
        solve; the result is not held as an operating point.
        """
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self._topology.n_inputs:
            raise ValueError(f"expected {self._topology.n_inputs} inputs per sample, got {x.shape[1]}")
        injected = np.asarray(injected, dtype=float)
        if injected.shape != (x.shape[0], self._topology.n_hidden) or not np.isfinite(injected).all():
            raise ValueError(f"injected currents must be finite, shape {(x.shape[0], self._topology.n_hidden)} (A)")
        held = self._last
        if held is not None and held[0].shape == x.shape and np.array_equal(held[0], x):
            warm = held[1]
        else:
            warm = _tiled(held, x)
        u = warm.u if warm is not None else self._topology.source_voltages(x)
        st = self._solver.solve(u, w, warm=warm, injected=injected)
        return Measurement(u=st.u, w=st.w, y=st.y, i_src=st.i_src, e=st.e, on=st.on,
                           piecewise_linear=self._diodes.law.piecewise_linear, info=self._info(st))

    # ---- internals ----------------------------------------------------------------------
    def _solve_uncoupled(self, x, w) -> CircuitState:
        """:meth:`_solve` for uncoupled ideal diodes: the same held-point rules, the lean certified solves."""
        if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float64):
            x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.ndim != 2 or x.shape[1] != self._n_inputs:  # a 3-D batch would reach the compiled kernels
            raise ValueError(f"expected inputs of shape (batch, {self._n_inputs}) in V, got shape {x.shape}")
        fast = self._uncoupled
        if (st := self._from_held(fast, x, w)) is not None:
            return st
        st = fast.measure_inputs(x, w)
        if w is None:
            self._last = (x.copy(), st)
        return st

    def _from_held(self, lean, x: np.ndarray, w) -> CircuitState | None:
        """The held-point rules of a lean path (``x`` checked): the held operating point again for the
        same inputs; for the held inputs stacked k times, or rows that are each some held sample
        (a ± pair of phases of a few samples is those rows twice), with port voltages ``w``,
        ``lean``'s phases of the held sources; else None (a new solve)."""
        held = self._last
        if held is None:
            return None
        if w is None:  # same inputs, same conductances: the held operating point
            return held[1] if _same_inputs(held[0], x) else None
        if k := _repeats(held, x):
            return lean.phases(held[1], k, w)  # the held sources, new port voltages
        rows = np.empty(x.shape[0], dtype=np.int64)  # some held samples again (once, or a ± pair of each)
        if rows.size and held_rows_kernel(_contiguous(x), held[0], rows):
            return lean.phases(held[1], 1, w, rows)
        return None

    def _solve(self, x, w) -> CircuitState:
        if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float64):
            x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.ndim != 2 or x.shape[1] != self._topology.n_inputs:
            raise ValueError(f"expected inputs of shape (batch, {self._topology.n_inputs}) in V, got shape {x.shape}")
        if self._coupled is not None and self._solver.compiled_coupled:
            return self._solve_coupled(x, w)
        same = lambda held: held is not None and _same_inputs(held[0], x)
        if same(self._last):
            if w is None:
                return self._last[1]  # same inputs, same conductances: the held operating point
            warm = self._last[1]
            u = warm.u
        elif w is not None and (warm := _tiled(self._last, x)) is not None:
            u = warm.u  # the held inputs repeated (several perturbation phases in one batch)
        else:  # the operating point before the last programming is a starting point only
            warm = self._stale[1] if self._solver.warm_starts and same(self._stale) else None
            u = self._topology.source_voltages(x)
        st = self._solver.solve(u, w, warm=warm, source_currents=False)
        if w is None:
            self._last = (x.copy(), st)
        return st

    def _solve_coupled(self, x: np.ndarray, w, held_only: bool = False) -> CircuitState | None:
        """:meth:`_solve` for coupled ideal diodes (``x`` checked): the same held-point rules, the lean
        certified solves of :class:`~hil.circuit.coupled_lean.CoupledIdealSolves`.

        ``held_only`` (``x`` not checked, ``w`` given): only the phases of the held sources stacked k
        times (a float (k·B, m) array), else None for the general route of :meth:`_solve`."""
        lean, held = self._coupled, self._last
        if held_only:
            if held is not None and self._solver.compiled_coupled and type(x) is np.ndarray and x.ndim == 2 \
                    and x.dtype == np.float64 and (k := _repeats(held, x)):
                return lean.phases(held[1], k, w)
            return None
        if (st := self._from_held(lean, x, w)) is not None:
            return st
        stale = self._stale  # the operating point before the last programming is a starting point only
        warm = stale[1] if stale is not None and _same_inputs(stale[0], x) else None
        st = lean.measure_inputs(_contiguous(x), w, warm)
        if w is None:
            self._last = (x.copy(), st)
        return st
