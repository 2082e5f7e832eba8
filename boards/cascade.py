"""A cascade of resistor–element stages coupled by unity-direction buffers, simulated stage by stage.

Stage s is an ordinary crossbar circuit (:class:`~hil.boards.simulated.SimulatedBoard`).  Its
logical inputs are the voltages of the buffered hidden nodes of stage s−1 multiplied by the
buffer gain A_s (voltage followers: they draw no current from stage s−1 and supply whatever
stage s needs); stage 0 takes the data inputs.  The network outputs are the port currents of
the last stage.

The board exposes the whole cascade through the ordinary board protocol: one flat conductance
vector (stage after stage, groups named ``s<k>.g_in`` …), one node list (all sources, all hidden
nodes, all ports, ground), measurements that concatenate the stages.  Its adjoint
(:meth:`CascadeBoard.linearized_response`) runs the backward order: the last stage with the
output drive, then each earlier stage with sources shorted, elements frozen and the
back-propagated signal −∂ℓ/∂e injected as currents into its buffered nodes, ∂ℓ/∂e being the
buffer gain times the current delivered by the shorted buffer outputs of the next stage.

For the physical ``hl`` estimator the board has the :class:`hil.board.BufferedInjection`
capability (:meth:`CascadeBoard.measure_stage`): one stage measured at the operating point with
its ports driven and currents injected into its buffered nodes by current sources, as a bench
with a current source at every buffer input would do it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.board import BoardBase, BoardTopology, Measurement, StageLayout
from hil.boards.simulated import SimulatedBoard


@dataclass(frozen=True)
class StageLink:
    """How stage s is driven by stage s−1: buffered hidden-node indices of s−1 and buffer gain A (V/V)."""

    buffered: np.ndarray
    gain: float


def _cascade_topology(stages: list[SimulatedBoard]) -> tuple[BoardTopology, list[dict]]:
    """The combined topology and, per stage, slices into the combined node/parameter/port vectors."""
    topos = [b.topology for b in stages]
    p = [t.n_sources for t in topos]
    n = [t.n_hidden for t in topos]
    q = [t.n_outputs for t in topos]
    P, N, Q = sum(p), sum(n), sum(q)
    names, kinds, edges, edge_names, groups, shapes = [], [], [], [], {}, {}
    layout = []
    for s, t in enumerate(topos):
        src0, hid0, out0 = sum(p[:s]), P + sum(n[:s]), P + N + sum(q[:s])
        layout.append({"src": slice(src0, src0 + p[s]), "hid": slice(hid0 - P, hid0 - P + n[s]),
                       "out": slice(out0 - P - N, out0 - P - N + q[s])})
    for s, t in enumerate(topos):  # node order: every stage's sources, hidden, ports; ground last
        names += [f"s{s}.{nm}" for nm in t.node_names[: p[s]]]
        kinds += ["source"] * p[s]
    for s, t in enumerate(topos):
        names += [f"s{s}.{nm}" for nm in t.node_names[p[s]: p[s] + n[s]]]
        kinds += ["hidden"] * n[s]
    for s, t in enumerate(topos):
        names += [f"s{s}.{nm}" for nm in t.node_names[p[s] + n[s]: p[s] + n[s] + q[s]]]
        kinds += ["output"] * q[s]
    names.append("0")
    kinds.append("ground")
    offset = 0
    for s, t in enumerate(topos):
        remap = np.concatenate([np.arange(p[s]) + sum(p[:s]), np.arange(n[s]) + P + sum(n[:s]),
                                np.arange(q[s]) + P + N + sum(q[:s]), [P + N + Q]])
        edges.append(remap[t.edges])
        edge_names += [f"s{s}.{nm}" for nm in t.edge_names]
        for g, sl in t.groups.items():
            groups[f"s{s}.{g}"] = slice(sl.start + offset, sl.stop + offset)
            if g in t.group_shapes:
                shapes[f"s{s}.{g}"] = t.group_shapes[g]
        layout[s]["params"] = slice(offset, offset + t.n_conductances)
        offset += t.n_conductances
    source_matrix = np.zeros((P, topos[0].n_inputs))
    source_matrix[: p[0]] = topos[0].source_matrix  # later stages follow buffers, not the data inputs
    last = topos[-1]
    # the class scores come from the last stage's ports only: a single-ended last stage gets a selection
    # matrix (an empty one would make every stage's ports, earlier ones included, a class score)
    d_last = last.differential if last.differential.size else np.eye(q[-1])
    differential = np.zeros((d_last.shape[0], Q))
    differential[:, layout[-1]["out"]] = d_last
    topo = BoardTopology(
        node_names=tuple(names), node_kinds=tuple(kinds), edges=np.concatenate(edges), edge_names=tuple(edge_names),
        groups=groups, source_matrix=source_matrix,
        source_offset=np.concatenate([t.source_offset for t in topos]),
        output_voltage=np.concatenate([t.output_voltage for t in topos]), differential=differential,
        group_shapes=shapes,
    )
    return topo, layout


class CascadeBoard(BoardBase):
    """Stages of simulated crossbars coupled by buffers (see the module docstring).

    Args:
        stages: one :class:`SimulatedBoard` per stage, in signal order.
        links: for every stage after the first, the buffered nodes of the previous stage
            (their count must equal the stage's number of logical inputs) and the buffer gain.
    """

    #: Perturbing the output ports alone leaves the earlier stages unexcited: a cascade's gradient
    #: needs the backward order (``hl`` through :meth:`measure_stage`, ``hl-exact``) or ``fd``.
    needs_backward_order = True

    def __init__(self, stages: list[SimulatedBoard], links: list[StageLink]):
        if len(stages) < 1 or len(links) != len(stages) - 1:
            raise ValueError("need at least one stage and one link per stage after the first")
        for s, (link, board) in enumerate(zip(links, stages[1:]), start=1):
            n_prev = stages[s - 1].topology.n_hidden
            if link.buffered.size != board.topology.n_inputs:
                raise ValueError(f"stage {s}: {board.topology.n_inputs} inputs but {link.buffered.size} buffered nodes")
            if link.buffered.size and (link.buffered.min() < 0 or link.buffered.max() >= n_prev):
                raise ValueError(f"stage {s}: buffered node index outside 0..{n_prev - 1}")
            if not np.isfinite(link.gain) or link.gain <= 0:
                raise ValueError(f"stage {s}: buffer gain must be > 0 (V/V)")
        bounds = {b.conductance_bounds for b in stages}
        if len(bounds) != 1:
            raise ValueError("every stage must have the same programmable conductance range")
        self.stages, self.links = list(stages), list(links)
        self._topology, self._layout = _cascade_topology(self.stages)
        #: (x, logical inputs of every stage, row index) of the last operating point measured
        self._held: tuple[np.ndarray, list[np.ndarray], dict] | None = None
        self._stage_layouts = tuple(
            StageLayout(b.topology, lay["src"], lay["hid"], lay["out"], lay["params"],
                        self.links[s - 1].buffered.copy() if s else np.zeros(0, int),
                        self.links[s - 1].gain if s else 1.0)
            for s, (b, lay) in enumerate(zip(self.stages, self._layout)))

    # ---- protocol -----------------------------------------------------------------------
    @property
    def topology(self) -> BoardTopology:
        return self._topology

    @property
    def conductance_bounds(self) -> tuple[float, float]:
        return self.stages[0].conductance_bounds

    @property
    def depth(self) -> int:
        return len(self.stages)

    def stage_inputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Logical inputs of every stage (V): x for stage 0, A·(buffered node voltages) after."""
        xs = [np.atleast_2d(np.asarray(x, dtype=float))]
        for s, link in enumerate(self.links, start=1):
            prev = self.stages[s - 1].measure(xs[-1])
            xs.append(link.gain * prev.e[:, link.buffered])
        return xs

    def measure(self, x: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        ms, xs_s, stage_x = [], x, []
        for s, board in enumerate(self.stages):
            if s:
                link = self.links[s - 1]
                xs_s = link.gain * ms[-1].e[:, link.buffered]
            ws = None if w is None else np.atleast_2d(w)[:, self._layout[s]["out"]]
            ms.append(board.measure(xs_s, ws))
            stage_x.append(xs_s)
        if w is None:  # the operating point: every stage's inputs are held for measure_stage
            self._held = (x.copy(), stage_x, {})
        cat = lambda attr: np.concatenate([getattr(m, attr) for m in ms], axis=1)
        on = cat("on") if all(m.on is not None for m in ms) else None
        return Measurement(u=cat("u"), w=cat("w"), y=cat("y"), i_src=cat("i_src"), e=cat("e"), on=on,
                           piecewise_linear=all(m.piecewise_linear for m in ms),
                           info={"stages": [m.info for m in ms]})

    def program(self, g: np.ndarray, rel_tol: float = 0.01) -> np.ndarray:
        g = np.asarray(g, dtype=float)
        if g.shape != (self._topology.n_conductances,):
            raise ValueError(f"expected {self._topology.n_conductances} conductances, got shape {g.shape}")
        self._held = None
        return np.concatenate([b.program(g[lay["params"]], rel_tol) for b, lay in zip(self.stages, self._layout)])

    def read_conductances(self) -> np.ndarray:
        return np.concatenate([b.read_conductances() for b in self.stages])

    def safe_state(self) -> None:
        self._held = None
        for b in self.stages:
            b.safe_state()

    # ---- current injection at buffered nodes (hil.board.BufferedInjection) ---------------------
    @property
    def stage_layouts(self) -> tuple[StageLayout, ...]:
        return self._stage_layouts

    def measure_stage(self, x: np.ndarray, stage: int, w: np.ndarray | None = None,
                      injected: np.ndarray | None = None) -> Measurement:
        """Stage ``stage`` measured with port voltages ``w`` and currents ``injected`` at its buffered nodes.

        See :class:`hil.board.BufferedInjection`: the earlier stages sit at the operating point of
        ``x`` (B, n_inputs; V), ``w`` (k·B, q_s; V) and ``injected`` (k·B, n_buf; A, one column per
        buffer of the next stage) may stack k phases.  Returns the stage's own measurement.
        """
        if not 0 <= int(stage) < self.depth:
            raise ValueError(f"stage must be in 0..{self.depth - 1}, got {stage}")
        stage = int(stage)
        x = np.atleast_2d(np.asarray(x, dtype=float))
        B = x.shape[0]
        board = self.stages[stage]
        rows = {np.shape(a)[0] for a in (w, injected) if a is not None}
        if len(rows) > 1 or (rows and (B == 0 or next(iter(rows)) % B)):
            raise ValueError(f"w and injected must hold the same whole number of phases of the {B} samples")
        k = next(iter(rows)) // B if rows else 1
        nodes = np.zeros((k * B, board.topology.n_hidden))
        if injected is not None:
            injected = np.asarray(injected, dtype=float)
            if stage == self.depth - 1:
                raise ValueError("the last stage has no buffered nodes to inject into")
            buffered = self.links[stage].buffered
            if injected.shape[1:] != (buffered.size,):
                raise ValueError(f"stage {stage}: expected one current per buffer ({buffered.size}), "
                                 f"got shape {injected.shape}")
            np.add.at(nodes.T, buffered, injected.T)
        xs = self._held_inputs(x, stage)
        return board.measure_injected(np.tile(xs, (k, 1)) if k > 1 else xs, nodes, w)

    def _held_inputs(self, x: np.ndarray, stage: int) -> np.ndarray:
        """Logical inputs (V) of ``stage`` at the operating point of ``x``.

        Taken from the held operating point when ``x`` is its batch or a selection of its rows
        (re-measuring flagged samples), else measured stage by stage.
        """
        if self._held is not None:
            hx, held_inputs, index = self._held
            if hx.shape == x.shape and np.array_equal(hx, x):
                return held_inputs[stage]
            if x.shape[1:] == hx.shape[1:]:
                if not index:
                    index.update((row.tobytes(), i) for i, row in enumerate(hx))
                rows = [index.get(row.tobytes()) for row in x]
                if None not in rows:
                    return held_inputs[stage][rows]
        xs = x
        for s in range(1, stage + 1):
            link = self.links[s - 1]
            xs = link.gain * self.stages[s - 1].measure(xs).e[:, link.buffered]
        return xs

    # ---- backward order (simulated adjoint of every stage) ---------------------------------------
    def linearized_response(self, x: np.ndarray, w_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ê of every stage (B, Σn) in volts and î (B, Σp) in amperes, last stage first.

        Stage S: output ports driven at ŵ.  Stage s < S: sources shorted, elements frozen, and
        the currents −∂ℓ/∂e_s injected into its buffered nodes, where
        ∂ℓ/∂e_s[buffered] = A_{s+1} · (∂u/∂x)ᵀ î_{s+1} (î: currents the shorted sources of
        stage s+1 deliver, = ∂ℓ/∂u by reciprocity).
        """
        xs = self.stage_inputs(x)
        w_hat = np.atleast_2d(w_hat)
        B = xs[0].shape[0]
        e_hat: list[np.ndarray] = [None] * self.depth  # type: ignore[list-item]
        i_hat: list[np.ndarray] = [None] * self.depth  # type: ignore[list-item]
        injected = None
        for s in range(self.depth - 1, -1, -1):
            board = self.stages[s]
            e_hat[s], i_hat[s] = board.linearized_response(xs[s], w_hat[:, self._layout[s]["out"]], injected)
            if s:
                link = self.links[s - 1]
                dl_dx = i_hat[s] @ board.topology.source_matrix  # ∂ℓ/∂(stage-s logical inputs)
                injected = np.zeros((B, self.stages[s - 1].topology.n_hidden))
                np.add.at(injected.T, link.buffered, -(link.gain * dl_dx).T)
        return np.concatenate(e_hat, axis=1), np.concatenate(i_hat, axis=1)


def build_cascade(stages: list, g_min: float, g_max: float, path: str = "board.stages") -> CascadeBoard:
    """A cascade board from the ``board.stages`` list of a config.

    Each entry: ``circuit`` (a circuit mapping, as ``board.circuit``), and for every stage after
    the first ``buffer_gain`` (V/V, default 1) and optionally ``buffered`` (indices of the previous
    stage's hidden nodes that drive this stage's inputs; default all of them, in order).
    Raises :class:`hil.config.ConfigError` with dotted paths.
    """
    from hil.circuit.build import build_circuit
    from hil.config import ConfigError, Section

    if not isinstance(stages, list) or not stages:
        raise ConfigError([f"{path}: expected a non-empty list of stages"])
    problems: list[str] = []
    boards, links = [], []
    for s, raw in enumerate(stages):
        sec = Section(raw, f"{path}[{s}]", problems)
        circ = sec.get("circuit", dict)
        gain = sec.get("buffer_gain", float, 1.0, check=lambda v: None if 0 < v <= 1e3 else "must be in (0, 1000] V/V")
        buffered = sec.get("buffered", list, None)
        sec.finish()
        if s == 0 and (sec.has("buffer_gain") or sec.has("buffered")):
            problems.append(f"{path}[0]: the first stage takes the data inputs (no buffer_gain/buffered)")
        if circ is None or problems:
            continue
        try:
            c = build_circuit(circ, f"{path}[{s}].circuit")
        except ConfigError as exc:
            problems += exc.problems if hasattr(exc, "problems") else [str(exc)]
            continue
        if s:
            n_prev = boards[-1].topology.n_hidden
            idx = np.arange(n_prev) if buffered is None else np.asarray(buffered)
            if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= n_prev)):
                problems.append(f"{path}[{s}].buffered: indices of stage {s - 1}'s hidden nodes (0..{n_prev - 1})")
                continue
            if c.n_inputs != idx.size:
                problems.append(f"{path}[{s}].circuit.inputs: {c.n_inputs} inputs, but stage {s - 1} buffers "
                                f"{idx.size} hidden nodes into it")
                continue
            links.append(StageLink(idx.astype(int), float(gain)))
        boards.append(SimulatedBoard(c, g_min=g_min, g_max=g_max))
    if problems:
        raise ConfigError(problems)
    return CascadeBoard(boards, links)
