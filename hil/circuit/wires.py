"""Wire (IR-drop) resistance of the crossbar arrays, solved exactly in the nodal system.

Each conductance matrix of a board is a physical crossbar: ``g_in`` (n, p) has one
row line per source and one column line per hidden node; ``g_out`` (q, n) has one
row line per hidden node and one column line per output port.  Cell (i, j) of an
array with R rows and C columns has a row-line node and a column-line node joined
by the device; row segments ``r_wire_row`` (Ω) join neighbouring row nodes, column
segments ``r_wire_col`` (Ω) neighbouring column nodes; the row driver enters at
column 0 through ``r_source`` and the column line leaves at row R−1 through
``r_terminal`` to its terminal (hidden node or output port).

The 2·R·C wire nodes of every array are eliminated **exactly** (Schur complement,
Kron reduction: the row lines row by row, then the column lines block by block).  What remains is again a grounded Laplacian among the terminals, i.e. a
resistor–diode circuit with effective (dense) ``g_in``, ``g_hh`` and ``g_out`` plus
source–source and port–port conductances that only carry current between fixed
potentials.  The equilibrium solvers run on that effective circuit unchanged; the
hidden-node voltages are the exact solution of the full nodal system
(:func:`array_laplacian` assembles that full system for cross-checks).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from hil.circuit.coupling import Coupling
from hil.circuit.model import Circuit


@dataclass(frozen=True)
class WireSpec:
    """Wire and periphery resistances in ohms (CrossSim-style names).

    ``r_wire_row`` / ``r_wire_col``: per cell segment of a row / column line (> 0);
    ``r_source``: driver to the first row node (0 = the driver sits on the line);
    ``r_terminal``: last column node to its terminal (0 = directly connected).
    """

    r_wire_row: float
    r_wire_col: float
    r_source: float = 0.0
    r_terminal: float = 0.0

    def __post_init__(self):
        if not (self.r_wire_row > 0 and self.r_wire_col > 0):
            raise ValueError("r_wire_row and r_wire_col must be > 0 ohm (disable the wire model instead)")
        if self.r_source < 0 or self.r_terminal < 0:
            raise ValueError("r_source and r_terminal must be >= 0 ohm")


def array_laplacian(g: np.ndarray, spec: WireSpec) -> tuple[sp.csr_matrix, int, np.ndarray, np.ndarray]:
    """Full nodal Laplacian (S) of one crossbar with R row terminals and C column terminals.

    ``g`` is (R, C): device (i, j) joins row line i and column line j.  Node order:
    R row terminals, C column terminals, then the wire nodes (row nodes of cell (i, j)
    at ``T + i*C + j``, column nodes at ``T + R*C + i*C + j``, with T = R + C); a zero
    ``r_source`` / ``r_terminal`` merges the first row node / last column node into its
    terminal.  Returns the (floating, zero row-sum) Laplacian, T and the (R, C) node
    indices of every cell's row node and column node.
    """
    R, C = g.shape
    T = R + C
    row = T + np.arange(R * C).reshape(R, C)
    col = T + R * C + np.arange(R * C).reshape(R, C)
    if spec.r_source == 0:
        row[:, 0] = np.arange(R)
    if spec.r_terminal == 0:
        col[R - 1, :] = R + np.arange(C)
    a, b, w = [], [], []

    def add(na, nb, cond):
        na, nb = np.ravel(na), np.ravel(nb)
        cond = np.broadcast_to(np.ravel(cond) if np.ndim(cond) else cond, na.shape)
        a.append(na), b.append(nb), w.append(np.asarray(cond, dtype=float))

    add(row, col, g)  # devices
    add(row[:, :-1], row[:, 1:], 1.0 / spec.r_wire_row)
    add(col[:-1, :], col[1:, :], 1.0 / spec.r_wire_col)
    if spec.r_source > 0:
        add(np.arange(R), row[:, 0], 1.0 / spec.r_source)
    if spec.r_terminal > 0:
        add(R + np.arange(C), col[R - 1, :], 1.0 / spec.r_terminal)
    a, b, w = np.concatenate(a), np.concatenate(b), np.concatenate(w)
    N = T + 2 * R * C
    off = sp.coo_matrix((np.concatenate([-w, -w]), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(N, N)).tocsr()
    lap = off - sp.diags(np.asarray(off.sum(axis=1)).ravel())
    # merged (unused) wire-node indices stay as isolated zero rows; give them a unit diagonal
    used = np.zeros(N, bool)
    used[a] = used[b] = True
    lap = lap + sp.diags((~used).astype(float))
    return lap.tocsr(), T, row, col


@dataclass
class ReducedArray:
    """Kron reduction of one crossbar: the terminal Laplacian ``s`` (T, T) in siemens,
    terminals ordered [row terminals (R), column terminals (C)]."""

    s: np.ndarray


def _row_elimination(g: np.ndarray, spec: WireSpec) -> np.ndarray:
    """Eliminate the row-line nodes of every row exactly: (R, 1 + C, 1 + C) Laplacians over
    [the row's source terminal, the row's C column-line nodes] (batched dense Schur complements)."""
    R, C = g.shape
    gw = 1.0 / spec.r_wire_row
    merged = spec.r_source == 0
    n_int = C - 1 if merged else C
    K = n_int + 1 + C  # local nodes: internal row nodes, source terminal, column nodes
    src = n_int
    col = n_int + 1 + np.arange(C)
    row_node = (np.r_[src, np.arange(C - 1)] if merged else np.arange(C))  # local index of r_{i,j}
    M = np.zeros((R, K, K))

    def link(a, b, cond):
        M[:, a, a] += cond
        M[:, b, b] += cond
        M[:, a, b] -= cond
        M[:, b, a] -= cond

    for j in range(C):
        link(row_node[j], col[j], g[:, j])
        if j + 1 < C:
            link(row_node[j], row_node[j + 1], gw)
    if not merged:
        link(src, row_node[0], 1.0 / spec.r_source)
    I, E = slice(0, n_int), slice(n_int, K)
    if n_int == 0:
        return M
    X = np.linalg.solve(M[:, I, I], M[:, I, E])
    return M[:, E, E] - M[:, E, I] @ X  # (a stacked matrix product: three times faster than the einsum)


def reduce_array(g: np.ndarray, spec: WireSpec) -> ReducedArray:
    """Eliminate every wire node of a crossbar exactly; returns the terminal Laplacian.

    First the row lines (a batched dense Schur complement per row), then the column
    lines by block elimination along the columns (C×C blocks, block tridiagonal through
    the column wires; each block is inverted once, and since the block of row i couples to the
    sources of rows 0 … i only, each step updates only those).  Exact to rounding; O(R·C³ + R²·C²)
    work, and every eliminated block is dominated by the strong wire conductances, so no tiny
    (subnormal) fill-in and no ill-conditioned inverse.
    """
    R, C = g.shape
    S_row = _row_elimination(g, spec)  # (R, 1 + C, 1 + C)
    gc = 1.0 / spec.r_wire_col
    merged_end = spec.r_terminal == 0
    S_ss = np.zeros((R, R))
    Bt = np.zeros((C, R))  # coupling of the current column block to the sources
    Dt = None
    for i in range(R):
        D = S_row[i, 1:, 1:].copy()
        D[np.diag_indices(C)] += gc * ((i > 0) + (i < R - 1))
        S_ss[i, i] += S_row[i, 0, 0]
        B = np.zeros((C, R))
        B[:, i] = S_row[i, 1:, 0]
        if Dt is not None:  # eliminate the previous block (coupled by -gc·I)
            # (the previous block couples to the sources of rows 0 … i − 1 only: its other columns are 0;
            # the block's inverse times them is one matrix product, twice as fast as solving for them
            # alongside, and as accurate here: the block is dominated by the column wires' gc)
            Xi = np.linalg.inv(Dt)
            XB = Xi @ Bt[:, :i]
            D -= gc * gc * Xi
            B[:, :i] += gc * XB
            S_ss[:i, :i] -= Bt[:, :i].T @ XB
        Dt, Bt = D, B
    if merged_end:
        S_hh, S_hs = Dt, Bt
    else:
        gt = 1.0 / spec.r_terminal
        Dt = Dt + gt * np.eye(C)
        X = np.linalg.solve(Dt, np.concatenate([np.eye(C), Bt], axis=1))
        S_hh = gt * np.eye(C) - gt * gt * X[:, :C]
        S_hs = gt * X[:, C:]
        S_ss -= Bt.T @ X[:, C:]
    s = np.block([[S_ss, S_hs.T], [S_hs, S_hh]])
    s = 0.5 * (s + s.T)
    return ReducedArray(s=s)


@dataclass
class WiredCircuit:
    """An exact terminal model of a circuit whose ``g_in`` and ``g_out`` arrays have wires.

    Attributes:
        effective: the circuit on the original terminals (dense effective couplings).
        g_src_src: (p, p) conductances between sources (zero diagonal), S.
        g_port_port: (q, q) conductances between output ports (zero diagonal), S.
        arrays: the two reductions (``g_in``, ``g_out``).
    """

    effective: Circuit
    g_src_src: np.ndarray
    g_port_port: np.ndarray
    arrays: dict

    def port_currents(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Add the port–port currents to the effective circuit's port currents (B, q), A."""
        g = self.g_port_port
        return y + w @ g.T - w * g.sum(axis=1)

    def source_currents(self, i_src: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Add the source–source currents to the effective circuit's source currents (B, p), A."""
        g = self.g_src_src
        return i_src + u * g.sum(axis=1) - u @ g.T


def _off(s: np.ndarray) -> np.ndarray:
    out = -s.copy()
    np.fill_diagonal(out, 0.0)
    return np.maximum(out, 0.0)


def apply_wires(circuit: Circuit, spec: WireSpec) -> WiredCircuit:
    """The exact terminal model of ``circuit`` with wire resistance on its two crossbars.

    ``g_hh`` and ``g_leak`` are discrete resistors without wires.  The effective
    ``g_hh`` includes the couplings that the shared lines create between hidden nodes.
    """
    with _one_blas_thread():
        return _apply_wires(circuit, spec)


#: the BLAS libraries of this process, found once (a search of the loaded libraries per call costs more
#: than a small reduction)
_BLAS_CONTROLLER: list = []


def _one_blas_thread():
    """Many small dense solves run faster on one BLAS thread (and do not oversubscribe)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _apply_wires(circuit: Circuit, spec: WireSpec) -> WiredCircuit:
    n, p, q = circuit.n_hidden, circuit.n_sources, circuit.n_outputs
    r_in = reduce_array(circuit.g_in.T, spec)  # rows = sources, columns = hidden
    s_in = r_in.s
    g_in_eff = _off(s_in)[p:, :p]
    g_ss = _off(s_in)[:p, :p]
    hh = _off(s_in)[p:, p:]
    arrays = {"g_in": r_in}
    g_out_eff = np.zeros((q, n))
    g_oo = np.zeros((q, q))
    if q:
        r_out = reduce_array(circuit.g_out.T, spec)  # rows = hidden, columns = ports
        s_out = r_out.s
        g_out_eff = _off(s_out)[n:, :n]
        g_oo = _off(s_out)[n:, n:]
        hh = hh + _off(s_out)[:n, :n]
        arrays["g_out"] = r_out
    # the shared lines couple every pair of hidden nodes: the effective coupling is dense by nature
    g_hh = circuit.g_hh.toarray() + hh
    g_hh = 0.5 * (g_hh + g_hh.T)
    np.fill_diagonal(g_hh, 0.0)
    eff = replace(circuit, g_in=g_in_eff, g_hh=Coupling.from_dense(g_hh, g_hh > 0), g_out=g_out_eff, _cache={})
    return WiredCircuit(effective=eff, g_src_src=g_ss, g_port_port=g_oo, arrays=arrays)
