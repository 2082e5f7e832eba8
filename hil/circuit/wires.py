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
Kron reduction: sparse LU of the wire-node block, every terminal as a right-hand
side).  What remains is again a grounded Laplacian among the terminals, i.e. a
resistor–diode circuit with effective (dense) ``g_in``, ``g_hh`` and ``g_out`` plus
source–source and port–port conductances that only carry current between fixed
potentials.  The equilibrium solvers run on that effective circuit unchanged; the
hidden-node voltages are the exact solution of the full nodal system, and
:func:`wire_node_voltages` recovers every eliminated node (true device voltages).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

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
    """Kron reduction of one crossbar: terminal Laplacian ``s`` (T, T) and the back-substitution map."""

    s: np.ndarray  # (T, T) effective terminal Laplacian, S
    back: np.ndarray  # (N_wire, T) wire-node voltages = back @ terminal voltages
    row_node: np.ndarray  # (R, C) index of each cell's row node in [terminals, wire nodes]
    col_node: np.ndarray  # (R, C) index of each cell's column node

    def device_voltages(self, terminal_v: np.ndarray) -> np.ndarray:
        """Voltage across every device (B, R, C), row node minus column node, from terminal voltages (B, T)."""
        full = np.concatenate([terminal_v, terminal_v @ self.back.T], axis=1)
        return full[:, self.row_node] - full[:, self.col_node]


def reduce_array(g: np.ndarray, spec: WireSpec) -> ReducedArray:
    """Eliminate every wire node of a crossbar exactly (sparse LU of the wire block)."""
    lap, T, row, col = array_laplacian(g, spec)
    L_ii = lap[T:, T:].tocsc()
    L_it = lap[T:, :T].toarray()
    lu = spla.splu(L_ii, permc_spec="COLAMD")
    x = lu.solve(-L_it)  # wire voltages per unit terminal voltage
    s = lap[:T, :T].toarray() + lap[:T, T:] @ x
    s = 0.5 * (s + s.T)
    return ReducedArray(s=s, back=x, row_node=row, col_node=col)


@dataclass
class WiredCircuit:
    """An exact terminal model of a circuit whose ``g_in`` and ``g_out`` arrays have wires.

    Attributes:
        effective: the circuit on the original terminals (dense effective couplings).
        g_src_src: (p, p) conductances between sources (zero diagonal), S.
        g_port_port: (q, q) conductances between output ports (zero diagonal), S.
        arrays: the two reductions (``g_in``, ``g_out``) for wire-node recovery.
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
    g_hh = circuit.g_hh + hh
    g_hh = 0.5 * (g_hh + g_hh.T)
    np.fill_diagonal(g_hh, 0.0)
    eff = replace(circuit, g_in=g_in_eff, g_hh=g_hh, g_out=g_out_eff, coupling_mask=g_hh > 0, _cache={})
    return WiredCircuit(effective=eff, g_src_src=g_ss, g_port_port=g_oo, arrays=arrays)


def device_voltages(wired: WiredCircuit, u: np.ndarray, e: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """True voltage across every device (V) of each array, recovered from the terminal voltages.

    ``g_in``: (B, n, p) in the layout of ``circuit.g_in`` (hidden-side node minus source side,
    as the board's branch voltage); ``g_out``: (B, q, n) (hidden side minus port side).
    """
    out = {}
    v = wired.arrays["g_in"].device_voltages(np.concatenate([u, e], axis=1))  # (B, p, n): source - hidden
    out["g_in"] = -np.transpose(v, (0, 2, 1))
    if "g_out" in wired.arrays:
        v = wired.arrays["g_out"].device_voltages(np.concatenate([e, w], axis=1))  # (B, n, q): hidden - port
        out["g_out"] = np.transpose(v, (0, 2, 1))
    return out
