"""The board protocol shared by the trainer, calibration and every backend.

A board is what a bench can do: apply a batch of input vectors (volts), optionally
with voltages at the output ports, and measure port currents, source currents and
hidden-node voltages; program conductances (siemens) and read them back; describe
which conductance connects which nodes; go to a safe state.  Everything is
batch-first and in SI units.  Nothing here knows about circuits or instruments.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from hil.circuit.coupled_kernels import edge_products_kernel
from hil.kernels import NO_SOURCE_MAP, batch_response_product, branch_factors_kernel

NODE_KINDS = ("source", "hidden", "output", "ground")


@dataclass(frozen=True)
class BoardTopology:
    """Nodes and conductances of a board, in the flat parameter order.

    Attributes:
        node_names: every node: sources, hidden nodes, output ports, ground (last).
        node_kinds: one of ``source``, ``hidden``, ``output``, ``ground`` per node.
        edges: (m, 2) node indices of each programmable conductance; branch voltage
            ``V[a] - V[b]``.
        edge_names: one name per conductance.
        groups: group name (``g_in``, ``g_hh``, ``g_leak``, ``g_out``) → slice of the flat vector.
        source_matrix: (p, n_inputs) du/dx: how logical inputs map to source voltages.
        source_offset: (p,) fixed source voltages (bias rails), volts.
        output_voltage: (q,) port voltages in normal operation, volts.
        differential: (n_pairs, q) y_diff = differential @ y; empty when single-ended (a cascade whose last
            stage is single-ended: one row per last-stage port, selecting it).
        group_shapes: matrix shape of each group for plotting (e.g. (n, p)).
    """

    node_names: tuple[str, ...]
    node_kinds: tuple[str, ...]
    edges: np.ndarray
    edge_names: tuple[str, ...]
    groups: dict[str, slice]
    source_matrix: np.ndarray
    source_offset: np.ndarray
    output_voltage: np.ndarray
    differential: np.ndarray
    group_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def n_conductances(self) -> int:
        """Number of programmable conductances m (edges)."""
        return int(self.edges.shape[0])

    @property
    def n_inputs(self) -> int:
        """Number of logical inputs per sample (columns of ``x``)."""
        return int(self.source_matrix.shape[1])

    @property
    def n_sources(self) -> int:
        """Number of voltage sources p (inputs, their inverted copies and rails)."""
        return int(self.source_matrix.shape[0])

    @property
    def n_outputs(self) -> int:
        """Number of output ports q."""
        return int(self.output_voltage.shape[0])

    @property
    def n_hidden(self) -> int:
        """Number of hidden nodes n."""
        return sum(1 for k in self.node_kinds if k == "hidden")

    def source_voltages(self, x: np.ndarray) -> np.ndarray:
        """Source voltages u (B, p) for logical inputs x (B, n_inputs), volts."""
        x = np.atleast_2d(x)
        cache = self.__dict__.setdefault("_plan_cache", {})
        if "sources" not in cache:
            cache["sources"] = _source_plan(self.source_matrix, self.source_offset)
        plan = cache["sources"]
        if plan is None:  # a general linear input map
            return x @ self.source_matrix.T + self.source_offset
        kind, data = plan
        if kind == "gather":  # each source follows one input (±1) or is a rail (0)
            idx, sign = data
            return np.take(x, idx, axis=1) * sign + self.source_offset
        u = np.empty((x.shape[0], self.source_matrix.shape[0]))
        for dst, src, sign in data:  # a few runs of consecutive inputs, inverted copies and rails
            if sign > 0:
                u[:, dst] = x[:, src]
            elif sign < 0:
                np.negative(x[:, src], out=u[:, dst])
            else:
                u[:, dst] = self.source_offset[dst]
        return u

    def node_voltages(self, m: "Measurement") -> np.ndarray:
        """All node voltages (B, nodes) of a measurement, in ``node_names`` order."""
        B = m.e.shape[0]
        return np.concatenate([m.u, m.e, m.w, np.zeros((B, 1))], axis=1)

    def mean_branch_product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Batch mean of (a_α − a_β)(b_α − b_β) for every conductance (m,), from node arrays (B, nodes).

        Every conductance of a crossbar has a hidden node at its first end.  For a hidden node
        k and a fixed-potential node j (source, output port, ground) the mean is
        ``dh_k + df_j − Σ_b (a_bk b_bj + b_bk a_bj)/B`` with ``dh_k = Σ_b a_bk b_bk/B`` and
        ``df_j = Σ_b a_bj b_bj/B``: for a group that covers every hidden node × a range of
        fixed nodes (``g_in``, ``g_leak``, ``g_out``) all three terms come out of one matrix
        product written straight into the result, ``[−a_h | dh | 1 | −b_h]ᵀ``-side times
        ``[b_f ; 1 ; df ; a_f]``, leaving out a side whose fixed nodes are all at 0 V in
        that range (ground; ports at 0 V; sources in a response, which are the same in every
        phase).  O(B·n·fixed) work, no gathers.  Hidden↔hidden conductances, which exist
        only where the coupling has an edge, are correlated edge by edge (O(B·edges)).
        """
        cache = self.__dict__.setdefault("_plan_cache", {})
        if "top_node" not in cache:
            cache["top_node"] = int(self.edges.max()) if self.edges.size else -1
        if a.ndim != 2 or a.shape != b.shape or a.shape[1] <= cache["top_node"]:
            raise ValueError(f"mean_branch_product: two node-voltage arrays of equal shape (batch, nodes) "
                             f"expected, got {a.shape} and {b.shape}")
        B = a.shape[0]
        if B == 0:  # no sample: the mean is undefined
            return np.full(self.edges.shape[0], np.nan)
        i, j = self.edges[:, 0], self.edges[:, 1]
        plan = self._gather_plan()
        if plan is None:
            c = a.T @ b / B
            return c[i, i] - c[i, j] - c[j, i] + c[j, j]
        hidden, fixed, blocks, rest, flat, pair_edges = plan
        out = np.empty(self.edges.shape[0])
        inv = 1.0 / B  # the batch mean
        n, n_fixed = hidden.stop - hidden.start, fixed.size
        # Left factor (rows) [−a_h/B; dh; 1; −b_h] and right factor [b_f; 1; df; a_f/B]: their product
        # over the 2B + 2 rows is dh_k + df_j − Σ_b (a_bk b_bj + b_bk a_bj)/B for every (k, j).
        left = np.empty((2 * B + 2, n))
        right = np.empty((2 * B + 2, n_fixed))
        ranges = self.__dict__["_plan_cache"]["ranges"]
        moves = np.empty((ranges.shape[0], 2), dtype=np.bool_)
        branch_factors_kernel(_float_c(a), _float_c(b), hidden.start, n, fixed, inv, ranges, left, right, moves)
        for (sl, c0, c1, row_major), (b_moves, a_moves) in zip(blocks, moves.tolist()):
            # whole hidden × fixed-range groups, straight into ``out``; a side whose fixed nodes
            # are all at 0 V in that range is left out
            rows = slice(0 if b_moves else B, 2 * B + 2 if a_moves else B + 2)
            _block_product(left[rows], right[rows, c0:c1], out[sl], row_major)
        if rest.size:
            hidden_pos, fixed_pos = flat
            dh, df = left[B], right[B + 1]
            cross = left[:B + 2].T @ right[:B + 2] + left[B:].T @ right[B:] - dh[:, None] - df[None, :]
            out[rest] = cross.ravel()[hidden_pos * n_fixed + fixed_pos]
        if pair_edges.size:  # hidden↔hidden edges: one compiled pass, no gathered temporaries
            ends = self.__dict__["_plan_cache"].setdefault(
                "pair_ends", (np.ascontiguousarray(i[pair_edges]), np.ascontiguousarray(j[pair_edges])))
            edge_products_kernel(_float_c(a), _float_c(b), ends[0], ends[1], inv, pair_edges, out)
        return out

    def mean_response_product(self, u: np.ndarray, e: np.ndarray, w: np.ndarray, e_hat: np.ndarray,
                              w_hat: np.ndarray) -> np.ndarray:
        """:meth:`mean_branch_product` of the node voltages [u, e, w, 0] and a response [0, ê, ŵ, 0]
        that is zero at the sources (they held their voltages) and ground, from the parts.

        ``u`` (B, p), ``e``/``e_hat`` (B, n), ``w``/``w_hat`` (B, q), in V (or V per unit drive).
        No (B, nodes) array is assembled: a hidden × source group is ``dh_k − Σ_b ê_bk u_bj / B``,
        hidden × ground is ``dh_k`` and hidden × port ``dh_k + df_o − Σ_b (e_bk ŵ_bo + ê_bk w_bo) / B``
        (``df_o = Σ_b w_bo ŵ_bo / B``; the second sum only with ports not at 0 V).  Above a few
        samples each group is one matrix product (two for ports not at 0 V) written straight into
        the gradient and turned into the mean in place.  Falls back to assembling the node
        arrays when the conductances do not come in such groups.
        """
        B = e.shape[0]
        plan = self._response_plan()
        if plan is None or B == 0 or u.shape[0] != B or w.shape[0] != B or e_hat.shape != e.shape \
                or w_hat.shape != w.shape:
            zeros = np.zeros((B, 1))
            a = np.concatenate([u, e, w, zeros], axis=1)
            b = np.concatenate([np.zeros(u.shape), e_hat, w_hat, zeros], axis=1)
            return self.mean_branch_product(a, b)
        _, pair_ends, pair_edges, table, sources = plan
        inv = 1.0 / B
        out = np.empty(self.edges.shape[0])
        e, e_hat = _float_c(e), _float_c(e_hat)
        batch_response_product(_float_c(u), e, _float_c(w), e_hat, _float_c(w_hat), inv, table, sources, out)
        if pair_edges.size:  # hidden↔hidden edges, on the hidden-node arrays themselves
            edge_products_kernel(e, e_hat, pair_ends[0], pair_ends[1], inv, pair_edges, out)
        return out

    def _response_plan(self):
        """The groups of :meth:`mean_response_product`: ((slice, kind, first, last, row_major) per dense
        group, with kind ``source``/``port``/``ground`` and the range in that kind's columns;
        hidden↔hidden edge ends in hidden-node columns; their edge indices; the groups as the
        compiled passes' (G, 5) table; how the source columns repeat, :func:`_source_repeats`), or
        None when some conductance is not in such a group."""
        cache = self.__dict__.setdefault("_plan_cache", {})
        if "response" not in cache:
            plan, result = self._gather_plan(), None
            if plan is not None and not plan[3].size:
                hidden, fixed, blocks, _, _, pair_edges = plan
                kinds = np.array(self.node_kinds)
                p, q = self.n_sources, self.n_outputs
                expected = np.concatenate([np.flatnonzero(kinds == "source"), np.flatnonzero(kinds == "output"),
                                           np.flatnonzero(kinds == "ground")])
                ordered = (np.array_equal(fixed, expected) and np.array_equal(expected[:p], np.arange(p))
                           and hidden.start == p and np.array_equal(expected[p:p + q], hidden.stop + np.arange(q))
                           and expected.size == p + q + 1)
                out = []
                for sl, c0, c1, row_major in blocks if ordered else ():
                    if c1 <= p:
                        out.append((sl, "source", c0, c1, row_major))
                    elif c0 >= p and c1 <= p + q:
                        out.append((sl, "port", c0 - p, c1 - p, row_major))
                    elif c0 == p + q and c1 == p + q + 1:
                        out.append((sl, "ground", 0, 1, row_major))
                    else:
                        break
                else:
                    if ordered:
                        i, j = self.edges[:, 0], self.edges[:, 1]
                        ends = (np.ascontiguousarray(i[pair_edges] - hidden.start),
                                np.ascontiguousarray(j[pair_edges] - hidden.start))
                        code = {"source": 0, "port": 1, "ground": 2}
                        table = np.array([[sl.start, code[kind], c0, c1, int(row_major)]
                                          for sl, kind, c0, c1, row_major in out], np.int64).reshape(-1, 5)
                        result = (tuple(out), ends, pair_edges, table,
                                  _source_repeats(self.source_matrix, self.source_offset))
            cache["response"] = result
        return cache["response"]

    def _gather_plan(self):
        """How :meth:`mean_branch_product` splits the conductances, or None if the edges do not fit.

        (hidden slice, fixed-node indices, dense blocks, other edges to fixed nodes with
        their (hidden, fixed) positions, hidden↔hidden edges).  A dense block is a group
        whose edges are every hidden node × a contiguous range of fixed nodes, in
        row-major (hidden outer) or column-major order: its products are formed directly.
        """
        cache = self.__dict__.setdefault("_plan_cache", {})
        if "plan" not in cache:
            kinds = np.array(self.node_kinds)
            idx = np.flatnonzero(kinds == "hidden")
            i, j = self.edges[:, 0], self.edges[:, 1]
            plan = None
            if idx.size and np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)):
                hidden = slice(int(idx[0]), int(idx[-1]) + 1)
                n = idx.size
                if np.all((i >= hidden.start) & (i < hidden.stop)):
                    fixed = np.flatnonzero(kinds != "hidden")
                    pos = np.full(len(kinds), -1)
                    pos[fixed] = np.arange(fixed.size)
                    to_hidden = (j >= hidden.start) & (j < hidden.stop)
                    covered = np.zeros(i.size, bool)
                    blocks = []
                    for sl in self.groups.values():
                        if sl.stop <= sl.start or np.any(to_hidden[sl]) or (sl.stop - sl.start) % n:
                            continue
                        k, c = i[sl] - hidden.start, pos[j[sl]]
                        width = (sl.stop - sl.start) // n
                        c0 = int(c.min())
                        cols = c0 + np.arange(width)
                        for row_major in (True, False):
                            kk, cc = (np.repeat(np.arange(n), width), np.tile(cols, n)) if row_major else \
                                (np.tile(np.arange(n), width), np.repeat(cols, n))
                            if np.array_equal(k, kk) and np.array_equal(c, cc):
                                blocks.append((sl, c0, c0 + width, row_major))
                                covered[sl] = True
                                break
                    rest = np.flatnonzero(~to_hidden & ~covered)
                    flat = (i[rest] - hidden.start, pos[j[rest]])
                    plan = (hidden, fixed, blocks, rest, flat, np.flatnonzero(to_hidden))
            cache["plan"] = plan
            cache["ranges"] = np.array([[c0, c1] for _, c0, c1, _ in plan[2]] if plan else [], np.int64).reshape(-1, 2)
        return cache["plan"]

    def branch_voltages(self, m: "Measurement") -> np.ndarray:
        """Voltage across every conductance (B, m), volts."""
        v = self.node_voltages(m)
        return v[:, self.edges[:, 0]] - v[:, self.edges[:, 1]]


def _block_product(lhs: np.ndarray, rhs: np.ndarray, out: np.ndarray, row_major: bool) -> np.ndarray:
    """lhsᵀ rhs ((n × w) from (rows × n) and (rows × w)) written into ``out`` (n·w,), a group of
    conductances whose edges run hidden-outer (``row_major``, returned as an (n, w) view of
    ``out``) or fixed-node-outer (a (w, n) view)."""
    n, w = lhs.shape[1], rhs.shape[1]
    if row_major:
        return np.matmul(lhs.T, rhs, out=out.reshape(n, w))
    return np.matmul(rhs.T, lhs, out=out.reshape(w, n))


def _float_c(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous float64 array (itself when it already is one)."""
    return a if a.dtype == np.float64 and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=np.float64)


def _source_repeats(m: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """How the source columns of u = x·mᵀ + offset repeat, as the (p, 4) int64 rows of
    :func:`hil.kernels.source_response_sums`: a source that follows an input with sign ±1 and no
    offset, where an earlier such source follows the same input, is ±1 times that source (an
    inverted copy); a source that follows no input is a rail; any other is independent.
    ``NO_SOURCE_MAP`` when some source mixes inputs or scales one (:func:`hil.circuit.uncoupled.source_gather`
    finds no input per source), or when no column repeats."""
    from hil.circuit.uncoupled import source_gather  # (here, not at import: it brings in the solvers)

    gather = source_gather(m, offset)
    if gather is None:
        return NO_SOURCE_MAP
    idx, sign, offset = gather
    p = idx.shape[0]
    rows, first, n_free = np.zeros((p, 4), dtype=np.int64), {}, 0
    for j in range(p):
        if sign[j] == 0:
            rows[j, 0] = 2
        elif offset[j] == 0 and int(idx[j]) in first:
            i = first[int(idx[j])]
            rows[j] = (1, i, 0, int(sign[j] * sign[i]))
        else:
            if offset[j] == 0:
                first[int(idx[j])] = j
            rows[j] = (0, 0, n_free, 0)
            n_free += 1
    return rows if n_free < p else NO_SOURCE_MAP


def _source_plan(m: np.ndarray, offset: np.ndarray):
    """How to form u = x·mᵀ + offset: None (a general matrix), ("gather", (idx, sign)) when every
    source follows one input with ±1 or is a rail, or ("runs", [(dst, src, sign)]) when those
    sources come in a few runs of consecutive inputs with one sign (inputs, inverted copies,
    rails): then u is assembled from slices without a gather."""
    if not np.all(np.count_nonzero(m, axis=1) <= 1):
        return None
    idx, sign = np.argmax(np.abs(m), axis=1), m.sum(axis=1)
    if not np.all(np.isin(sign, (-1.0, 0.0, 1.0))) or np.any(offset[sign != 0] != 0):
        return "gather", (idx, sign)
    runs, start = [], 0
    for k in range(1, len(idx) + 1):
        if k < len(idx) and sign[k] == sign[start] and (sign[k] == 0 or idx[k] == idx[k - 1] + 1):
            continue
        src = slice(int(idx[start]), int(idx[start]) + k - start)
        runs.append((slice(start, k), src, float(sign[start])))
        start = k
    return ("runs", runs) if len(runs) <= 6 else ("gather", (idx, sign))


@dataclass
class Measurement:
    """What one batch measurement returns.  Voltages in V, currents in A.

    Attributes:
        u: (B, p) source voltages applied.  w: (B, q) output-port voltages applied.
        y: (B, q) currents from the network into the output ports.
        i_src: (B, p) currents delivered by the sources into the network.
        e: (B, n) hidden-node voltages.
        on: (B, n) diode conduction states where the board can tell, else None.
        piecewise_linear: the elements are ideal (switching) diodes, so a change of ``on``
            between phases means the linearization itself changed (a flip).  The converse (no
            change, so one linear region) needs states that name the region; a board whose
            elements have two clamps, both reported on, says ``info["ambiguous_states"] = True``.
        valid: (B,) True where the sample is trustworthy; a board marks samples False that hit
            a current limit, returned an over-range or missing-data sentinel, or are otherwise
            unusable.  None means every sample is valid.  The trainer never uses an invalid
            sample (see :func:`valid_mask`).
        noise_v: standard deviation of one node-voltage reading in V (0 for an exact board);
            estimators use it as the noise floor of their consistency checks.
        info: backend-specific evidence (e.g. the solve report).

    A board that applied exactly the source voltages of an earlier measurement again, k
    times stacked, may say so per instance in ``held_sources`` = (that measurement's ``u``
    array, k) — then ``u`` holds those voltages k times over; estimators use it to skip
    comparing the arrays.  It is not a field: ``dataclasses.replace`` and any measurement a
    wrapper builds drop it (None: not known).

    A board may also vouch, per instance, for the form the compiled passes of ``hl`` read, by
    setting ``exact_for`` to its :class:`BoardTopology`: every sample valid, no reading noise,
    piecewise-linear elements with their states reported, and u, e, w, y (float64) and ``on``
    (bool) C-contiguous with one row per sample and that topology's widths.  Estimators then
    skip checking and converting the arrays (the compiled passes read them without bounds
    checks: a board sets it only where it holds by construction); ``info`` they still read
    every time.  It is not a field either, and a board's measurement class must drop it when an
    attribute is assigned (a wrapper that corrects readings assigns them).

    The arrays are the board's: a board may keep them as its held operating point and return
    the same arrays for the same inputs again, so treat them as read-only and copy one before
    changing it in place (:func:`hil.measure` returns copies).
    """

    held_sources = None  # (u of the earlier measurement, k) where the board knows; see above
    exact_for = None  # the topology whose compiled form the board vouches for; see above

    u: np.ndarray
    w: np.ndarray
    y: np.ndarray
    i_src: np.ndarray
    e: np.ndarray
    on: np.ndarray | None = None
    piecewise_linear: bool = False
    valid: np.ndarray | None = None
    noise_v: float = 0.0
    info: dict = field(default_factory=dict)


def valid_mask(m: Measurement) -> np.ndarray:
    """(B,) boolean mask of usable samples (all True when the board marked none invalid)."""
    B = m.y.shape[0]
    return np.ones(B, bool) if m.valid is None else np.asarray(m.valid, bool).reshape(B)


@dataclass
class ProgramResult:
    """What programming achieved, per conductance (all arrays (m,), conductances in S).

    Attributes:
        target: requested conductances (after clipping to the programmable range).
        achieved: read-back conductances after programming (what the board now holds).
        pulses: programming pulses applied per device (0 for exact or untouched devices).
        converged: the device ended within the relative tolerance of its target.
        stuck: the device did not respond to pulses (no change beyond the read noise).
        rel_tol: the relative tolerance that was asked for.
        seconds: wall (or bench) time spent programming, s.
    """

    target: np.ndarray
    achieved: np.ndarray
    pulses: np.ndarray
    converged: np.ndarray
    stuck: np.ndarray
    rel_tol: float
    seconds: float = 0.0

    @classmethod
    def exact(cls, target: np.ndarray, achieved: np.ndarray, rel_tol: float = 0.0) -> "ProgramResult":
        """A result for a board that programs exactly (simulations, bypassed devices)."""
        res = cls(np.asarray(target, float), np.asarray(achieved, float), *_exact_evidence(achieved.shape[0]), rel_tol)
        res._exact = True  # every device converged, none stuck, no pulses (summary's fast path)
        return res

    @property
    def error(self) -> np.ndarray:
        """Relative error |achieved − target| / max(target, tiny) per device."""
        return np.abs(self.achieved - self.target) / np.maximum(np.abs(self.target), 1e-30)

    def summary(self) -> dict:
        """Per-epoch style summary: device counts, pulse totals, error statistics."""
        if self.__dict__.get("_exact") and (self.achieved is self.target or np.array_equal(self.achieved, self.target)):
            # Exact programming read back equal to the target (simulations): no per-device passes.
            return {"devices": int(self.target.size), "unconverged": 0, "stuck": 0, "pulses": 0, "pulsed": 0,
                    "max_rel_error": 0.0, "mean_rel_error": 0.0, "seconds": float(self.seconds)}
        err = self.error
        return {"devices": int(self.target.size), "unconverged": int(np.sum(~self.converged)),
                "stuck": int(np.sum(self.stuck)), "pulses": int(np.sum(self.pulses)),
                "pulsed": int(np.count_nonzero(np.asarray(self.pulses) > 0)),
                "max_rel_error": float(err.max(initial=0.0)), "mean_rel_error": float(err.mean()) if err.size else 0.0,
                "seconds": float(self.seconds)}


@functools.lru_cache(maxsize=8)
def _exact_evidence(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pulses 0, converged True, stuck False) for m devices: shared read-only arrays."""
    out = (np.zeros(m, int), np.ones(m, bool), np.zeros(m, bool))
    for a in out:
        a.setflags(write=False)
    return out


def as_program_result(target: np.ndarray, returned, bounds: tuple[float, float]) -> ProgramResult:
    """Normalise what ``Board.program`` returned (read-back array or :class:`ProgramResult`)."""
    if isinstance(returned, ProgramResult):
        return returned
    if returned is target and isinstance(target, np.ndarray) and target.dtype == np.float64:
        # The board took the request as it was (inside its range) and holds exactly that.
        return ProgramResult.exact(target, target)
    return ProgramResult.exact(np.clip(np.asarray(target, float), *bounds), np.asarray(returned, float))


@runtime_checkable
class Board(Protocol):
    """A trainable resistor–diode board (simulated or on instruments)."""

    @property
    def topology(self) -> BoardTopology: ...

    @property
    def conductance_bounds(self) -> tuple[float, float]:
        """Programmable range (g_min, g_max) in siemens."""
        ...

    def measure(self, x: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        """Apply inputs x (B, n_inputs) and port voltages w (B, q; default the normal
        port voltages), let the circuit settle and measure it."""
        ...

    def program(self, g: np.ndarray, rel_tol: float = 0.01) -> "np.ndarray | ProgramResult":
        """Program conductances (m,) in siemens within ``rel_tol``.

        Returns the read-back (m,), or a :class:`ProgramResult` with the read-back in
        ``achieved`` and per-device evidence (boards that program physical devices);
        :func:`as_program_result` accepts both.
        """
        ...

    def read_conductances(self) -> np.ndarray:
        """Read back the conductances (m,) in siemens."""
        ...

    def safe_state(self) -> None:
        """Sources to 0 V and outputs off (idempotent, never raises)."""
        ...

    def __enter__(self) -> "Board": ...

    def __exit__(self, *exc) -> None: ...


@runtime_checkable
class ExactLinearization(Protocol):
    """Optional capability of simulated boards: the linearized (adjoint) circuit itself.

    With every source shorted, diodes frozen at the operating point of ``x`` (ideal: ON
    shorted, OFF open; smooth: incremental conductance), and the output ports driven
    at ``w_hat`` volts, return the hidden-node voltages ê (B, n) and the currents î
    (B, p) delivered by the shorted sources.
    """

    def linearized_response(self, x: np.ndarray, w_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class PhasedMeasurement(Protocol):
    """Optional capability: several phases of one batch measured as one sweep.

    ``w_phases`` is a list of port-voltage arrays (B, q), ``None`` meaning the normal port
    voltages (the operating point).  All ``len(w_phases) × B`` points are applied in one
    run of the bench (one uploaded list per source channel, one read-back per
    instrument) and returned as one :class:`Measurement` per phase, in order.
    """

    def measure_phases(self, x: np.ndarray, w_phases: list) -> list[Measurement]: ...


class UnsupportedCapability(TypeError):
    """A board was asked for an optional capability it does not have (the message says which and why)."""


@dataclass(frozen=True)
class StageLayout:
    """One stage of a buffered cascade as the board's flat vectors see it.

    Attributes:
        topology: the stage on its own (its node order, conductances, groups, input map du/dx).
        sources: columns of ``Measurement.u`` / ``i_src`` that belong to this stage.
        hidden: columns of ``Measurement.e``.
        outputs: columns of ``Measurement.w`` / ``y``.
        params: entries of the flat conductance vector.
        buffered: for every logical input of this stage, the index (among the previous stage's
            hidden nodes) of the node its buffer senses; empty for the first stage.
        gain: gain A of those buffers, V/V (input j = A · e_prev[buffered[j]]); 1 for the first stage.
    """

    topology: BoardTopology
    sources: slice
    hidden: slice
    outputs: slice
    params: slice
    buffered: np.ndarray
    gain: float = 1.0


@runtime_checkable
class BufferedInjection(Protocol):
    """Optional capability of cascade boards: current sources at the nodes that feed buffers.

    ``stage_layouts`` describes the stages in signal order.  ``measure_stage`` applies the
    inputs x (B, n_inputs) to the whole cascade, so every stage before ``stage`` sits at its
    operating point, and measures stage ``stage`` alone with

    * port voltages ``w`` (k·B, q_s) in V (default: the normal port voltages), and
    * currents ``injected`` (k·B, n_buf) in A from current sources into the nodes of this stage
      that the buffers of stage ``stage + 1`` sense, one column per buffer in the order of
      ``stage_layouts[stage + 1].buffered`` (a node sensed by several buffers receives their sum).

    ``w`` and ``injected`` may hold k phases of the batch stacked ([phase 1; phase 2; …]); x is
    given once.  Returns the stage's :class:`Measurement` (k·B rows; its own sources, hidden
    nodes and ports).  The stage's inputs stay at their operating point whatever is injected:
    the buffers before it draw no current and nothing flows back through them.
    """

    @property
    def stage_layouts(self) -> tuple[StageLayout, ...]: ...

    def measure_stage(self, x: np.ndarray, stage: int, w: np.ndarray | None = None,
                      injected: np.ndarray | None = None) -> Measurement: ...


def require_buffered_injection(board, purpose: str) -> BufferedInjection:
    """``board`` if it has :class:`BufferedInjection`, else :class:`UnsupportedCapability` naming ``purpose``."""
    if isinstance(board, BufferedInjection):
        return board
    raise UnsupportedCapability(
        f"{purpose} needs current sources at the buffered nodes of every stage (the BufferedInjection board "
        f"capability), which a {type(board).__name__} does not have")


class BoardBase:
    """Context-manager behaviour shared by backends: always end in the safe state."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.safe_state()

    def safe_state(self) -> None:  # pragma: no cover - overridden
        pass
