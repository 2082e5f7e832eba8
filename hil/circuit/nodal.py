"""The programmable state of a circuit in flat form: conductances and the nodal matrix K.

The structure (which conductance connects which nodes, the sparsity pattern of K, the
hidden↔hidden adjacency) is built once per topology.  Programming new conductances
writes only the entries that changed and recomputes only the diagonal entries of K
that they touch, so a step that changes c conductances costs O(c) (a changed coupling
resistor also re-adds the coupling sums of its two nodes, O(degree) each).  The coupling is
kept as a list of pairs and a sparse matrix; no dense n×n array is formed.

K is the grounded Laplacian of the hidden nodes (physics.md §1.2), siemens:

    K = diag(Σ_j g_in[k, j] + Σ_l g_hh[k, l] + g_leak[k] + Σ_o g_out[o, k]) − G_hh.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hil.circuit.model import Circuit
from hil.kernels import count_changes, nodal_sums_kernel

_NONE = np.empty(0)  # "not this time" for the optional outputs of the sums kernel


class NodalSystem:
    """Flat conductances (S) and the nodal matrix of one circuit topology.

    Attributes (views into the flat vector ``g``, updated in place by :meth:`program`):
        g_in (n, p), g_hh_values (m_hh,), g_leak (n,), g_out (q, n).
        pairs: (m_hh, 2) hidden index pairs k < l of the coupling resistors.
        diag: (n,) diagonal of K.  k_csr: K as a CSR matrix whose ``data`` is updated in place.
        version: incremented by every programming step that changed something.
    """

    def __init__(self, circuit: Circuit):
        topo = circuit.topology()
        self.topology = topo
        n, p, q = circuit.n_hidden, circuit.n_sources, circuit.n_outputs
        self.n, self.p, self.q = n, p, q
        self.g = np.array(circuit.conductance_vector(), dtype=float)
        self._views()
        self._hh_slice = topo.groups["g_hh"]
        self._shared = False  # a snapshot of g and the source / port sums is held outside (copy before writing)
        self.pairs = circuit.hh_pairs()
        self.coupled = self.pairs.shape[0] > 0
        self._build_structure()
        self.diag = np.empty(n)
        self.hh_row_sum = np.zeros(n)
        self.in_col_sum = np.empty(p)
        self.out_row_sum = np.empty(q)
        self.version = 0
        self._all_rows = np.arange(n)
        self._refresh_all()

    def _views(self) -> None:
        """The per-group views into the flat vector ``g``."""
        gr, n, p, q = self.topology.groups, self.n, self.p, self.q
        self.g_in = self.g[gr["g_in"]].reshape(n, p)
        self.g_hh_values = self.g[gr["g_hh"]]
        self.g_leak = self.g[gr["g_leak"]]
        self.g_out = self.g[gr["g_out"]].reshape(q, n)

    def input_snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(g_in (n, p), in_col_sum (p,)) as they are now, never modified afterwards (S); the same holds
        for ``g_out`` and ``out_row_sum`` read at this moment.

        No copy is made: the next programming step that changes something writes into fresh
        arrays instead (copy on write), so quantities derived later from a snapshot (the
        source currents or port currents of a measurement, computed when first read) use the
        conductances of the moment the snapshot was taken.
        """
        self._shared = True
        return self.g_in, self.in_col_sum

    # ---- structure (once per topology) ------------------------------------------------
    def _build_structure(self) -> None:
        n, pairs = self.n, self.pairs
        m = pairs.shape[0]
        k, l = pairs[:, 0], pairs[:, 1]
        # Padded adjacency: for each node, the pair indices touching it (-1 = padding, value 0).
        deg = np.bincount(np.concatenate([k, l]), minlength=n) if m else np.zeros(n, int)
        width = int(deg.max(initial=0))
        nbr = np.full((n, max(width, 1)), m, dtype=np.int64)
        if m:
            ends = np.concatenate([k, l])
            pidx = np.concatenate([np.arange(m), np.arange(m)])
            order = np.lexsort((pidx, ends))
            ends, pidx = ends[order], pidx[order]
            start = np.concatenate([[0], np.cumsum(deg)[:-1]])
            slot = np.arange(ends.size) - start[ends]
            nbr[ends, slot] = pidx
        self._nbr = nbr
        self._vals_ext = np.zeros(m + 1)  # coupling values with a trailing 0 for padding
        # CSR pattern of K: diagonal plus both orientations of each pair; remember positions.
        rows = np.concatenate([np.arange(n), k, l])
        cols = np.concatenate([np.arange(n), l, k])
        tags = np.arange(rows.size, dtype=float) + 1.0
        pattern = sp.csr_matrix((tags, (rows, cols)), shape=(n, n))
        pattern.sort_indices()
        where = np.empty(rows.size, dtype=np.int64)
        where[pattern.data.astype(np.int64) - 1] = np.arange(rows.size)
        self._pos_diag = where[:n]
        self._pos_kl = where[n:n + m]
        self._pos_lk = where[n + m:]
        self.k_csr = sp.csr_matrix((np.zeros(rows.size), pattern.indices.copy(), pattern.indptr.copy()), shape=(n, n))
        # K is symmetric: the same arrays read as CSC are K as well (shared data, no copy).
        self.k_csc = sp.csc_matrix((self.k_csr.data, self.k_csr.indices, self.k_csr.indptr), shape=(n, n), copy=False)

    # ---- values ------------------------------------------------------------------------
    # Every sum is taken left to right by one compiled kernel (:func:`hil.kernels.nodal_sums_kernel`),
    # so a partial update (a subset of rows) adds in exactly the order of a full refresh:
    # results are bit-identical.
    def _sums(self, rows: np.ndarray, columns: bool, ports: bool) -> None:
        """Recompute diag[rows] (and all source column sums / port row sums when asked), S."""
        nodal_sums_kernel(self.g_in, self.hh_row_sum, self.g_leak, self.g_out, rows, self.diag,
                          self.in_col_sum if columns else _NONE, self.out_row_sum if ports else _NONE)

    def _refresh_hh(self) -> None:
        if not self.coupled:  # no coupling: the sums stay 0 and K has no off-diagonal entries
            return
        self._vals_ext[:-1] = self.g_hh_values
        self.hh_row_sum[:] = self._vals_ext[self._nbr].sum(axis=1)
        self.k_csr.data[self._pos_kl] = -self.g_hh_values
        self.k_csr.data[self._pos_lk] = -self.g_hh_values

    def _refresh_hh_pairs(self, pairs: np.ndarray, rows: np.ndarray) -> None:
        """Coupling pairs ``pairs`` changed: rewrite their K entries and the coupling sums of
        ``rows`` (which hold both ends of every changed pair) — O(changed · degree)."""
        vals = self.g_hh_values[pairs]
        self._vals_ext[pairs] = vals
        self.hh_row_sum[rows] = self._vals_ext[self._nbr[rows]].sum(axis=1)
        self.k_csr.data[self._pos_kl[pairs]] = -vals
        self.k_csr.data[self._pos_lk[pairs]] = -vals

    def _refresh_all(self) -> None:
        self._refresh_hh()
        self._sums(self._all_rows, True, True)
        self.k_csr.data[self._pos_diag] = self.diag

    def program(self, g: np.ndarray) -> int:
        """Write conductances ``g`` (m,) in siemens; returns how many changed.

        Only changed entries are written; only the diagonal entries of K they touch are
        recomputed (everything is recomputed when more than a quarter of the conductances
        changed, which costs the same).  The source column sums are recomputed whenever
        an input conductance changed.  The result is bit-identical to building a new
        system from scratch.
        """
        g = np.asarray(g, dtype=float)
        if g.shape != self.g.shape:
            raise ValueError(f"expected {self.g.size} conductances, got shape {g.shape}")
        count = int(count_changes(g if g.flags.c_contiguous else np.ascontiguousarray(g), self.g))
        if count == 0:
            return 0
        self.version += 1
        if self._shared:  # a snapshot is held outside: keep those arrays as they are
            self.g = g.copy() if count * 4 > self.g.size else self.g.copy()
            self._views()
            self.in_col_sum = self.in_col_sum.copy()
            self.out_row_sum = self.out_row_sum.copy()
            self._shared = False
        elif count * 4 > self.g.size:
            np.copyto(self.g, g)
        if count * 4 > self.g.size:
            self._refresh_all()
            return count
        changed = np.flatnonzero(g != self.g)
        self.g[changed] = g[changed]
        edges = self.topology.edges
        hid0 = self.p
        a, b = edges[changed, 0], edges[changed, 1]
        touched = np.concatenate([a[(a >= hid0) & (a < hid0 + self.n)], b[(b >= hid0) & (b < hid0 + self.n)]]) - hid0
        rows = np.unique(touched)
        hh = self._hh_slice
        in_hh = (changed >= hh.start) & (changed < hh.stop)
        if np.any(in_hh):
            self._refresh_hh_pairs(changed[in_hh] - hh.start, rows)
        out0 = hid0 + self.n
        self._sums(rows, bool(np.any(b < hid0)), bool(np.any((b >= out0) & (b < out0 + self.q))))
        self.k_csr.data[self._pos_diag[rows]] = self.diag[rows]
        return count

    def k_dense(self) -> np.ndarray:
        """K as a dense (n, n) array (for small coupled networks only)."""
        return self.k_csr.toarray()

    def circuit(self, template: Circuit) -> Circuit:
        """``template`` with the current conductances (a full copy; for export and fallbacks)."""
        return template.with_conductances(self.g)


def port_currents(e: np.ndarray, g_out: np.ndarray, row_sum: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Currents from the network into the output ports (B, q), A, by KCL at the ports:
    y = e G_outᵀ − (Σ_k G_out[:, k]) w for hidden-node voltages ``e`` (B, n) and port voltages
    ``w`` (B, q), V; ``g_out`` (q, n) and its row sums ``row_sum`` (q,), S; ``w`` None: every
    port at 0 V."""
    y = e @ g_out.T
    if w is not None:
        y -= row_sum * w
    return y
