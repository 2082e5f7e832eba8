"""Hidden↔hidden coupling resistors kept sparse: one entry per physical resistor.

A circuit with ``n`` hidden nodes and ``m`` coupling resistors stores them as

* ``pairs`` (m, 2): hidden-node indices (k, l) with k < l, sorted by k and then l (the order
  of the ``g_hh`` block of the flat conductance vector, and of the ``R_<k>_<l>`` resistors);
* ``values`` (m,): their conductances in siemens.

A pair stays in the topology when its conductance is programmed to 0 S (the resistor is
still there, it just conducts nothing), so the flat parameter layout never changes while a
network trains.  Memory is 24 bytes per resistor; no (n, n) array is formed unless asked for
with :meth:`Coupling.toarray` (small networks, oracles, plots).

Reading a circuit's coupling::

    c.g_hh.pairs, c.g_hh.values      # the resistors and their conductances (S)
    c.g_hh[k, l]                     # one conductance (0.0 where there is no resistor)
    c.g_hh.tocsr()                   # symmetric scipy.sparse (n, n) matrix
    c.g_hh.toarray()                 # dense symmetric (n, n) array (small n only)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

FIELD = "conductances.g_hh"


class CouplingError(ValueError):
    """An invalid coupling description; ``field`` is the config field it belongs to."""

    def __init__(self, message: str, field_path: str = FIELD):
        self.field = field_path
        super().__init__(message)


@dataclass(frozen=True, eq=False)
class Coupling:
    """The coupling resistors of ``n`` hidden nodes: ``pairs`` (m, 2) with k < l, sorted, and
    their conductances ``values`` (m,) in siemens.  Use :meth:`from_pairs` to build one from
    unsorted pairs, :meth:`from_dense` from a symmetric (n, n) matrix, :meth:`none` for none."""

    n: int
    pairs: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        pairs = self.pairs
        if not (isinstance(pairs, np.ndarray) and pairs.dtype == np.int64 and pairs.ndim == 2
                and pairs.shape[1] == 2 and not pairs.flags.writeable):
            pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)  # an own, read-only copy
            pairs.flags.writeable = False
        values = np.asarray(self.values, dtype=float)
        if values.shape != (pairs.shape[0],):
            raise CouplingError(f"{pairs.shape[0]} resistor pairs but values of shape {values.shape}")
        if values.size and np.any(values < 0):  # (NaN is refused with the circuit's other values)
            i = int(np.flatnonzero(values < 0)[0])
            raise CouplingError(f"coupling conductance {values[i]:g} S between hidden nodes {int(pairs[i, 0])} and "
                                f"{int(pairs[i, 1])} is negative (a resistor's conductance is ≥ 0 S)")
        if pairs.size:
            k, l = pairs[:, 0], pairs[:, 1]
            if k.min() < 0 or l.max() >= self.n:
                raise CouplingError(f"a pair names a hidden node outside 0..{self.n - 1}")
            if np.any(k >= l):
                raise CouplingError("each pair must be (k, l) with k < l (no self-loops; one resistor per pair)")
            if np.any(np.diff(k * self.n + l) <= 0):
                raise CouplingError("pairs must be sorted by (k, l) without repeats (use Coupling.from_pairs)")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "values", values)

    def __setstate__(self, state: dict) -> None:  # unpickling: the topology stays read-only
        self.__dict__.update(state)
        self.pairs.flags.writeable = False

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def none(cls, n: int) -> "Coupling":
        """No coupling between ``n`` hidden nodes."""
        return cls(n, np.empty((0, 2), np.int64), np.empty(0))

    @classmethod
    def from_pairs(cls, n: int, pairs, values) -> "Coupling":
        """From unordered pairs (either orientation) and their conductances (S).

        Raises :class:`CouplingError` for a self-loop or a pair given twice.
        """
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        values = np.asarray(values, dtype=float).reshape(-1)
        if values.shape[0] != pairs.shape[0]:
            raise CouplingError(f"{pairs.shape[0]} resistor pairs but {values.shape[0]} conductances")
        if np.any(pairs[:, 0] == pairs[:, 1]):
            i = int(np.flatnonzero(pairs[:, 0] == pairs[:, 1])[0])
            raise CouplingError(f"pair {i} joins hidden node {int(pairs[i, 0])} to itself (no self-loops)")
        lo, hi = pairs.min(axis=1), pairs.max(axis=1)
        if pairs.size and (lo.min() < 0 or hi.max() >= n):
            raise CouplingError(f"a pair names a hidden node outside 0..{n - 1}")
        order = np.lexsort((hi, lo))
        lo, hi, values = lo[order], hi[order], values[order]
        key = lo * n + hi
        rep = np.flatnonzero(np.diff(key) == 0)
        if rep.size:
            raise CouplingError(f"hidden nodes {int(lo[rep[0]])} and {int(hi[rep[0]])} are joined twice "
                                "(one resistor per pair)")
        return cls(n, np.stack([lo, hi], axis=1), values)

    @classmethod
    def from_dense(cls, g, mask=None) -> "Coupling":
        """From a symmetric (n, n) matrix with zero diagonal (S); the resistors are the nonzero
        entries above the diagonal, or those of ``mask`` when given (a resistor may be 0 S; an entry
        of either triangle names the pair).  A nonzero conductance outside the mask is an error."""
        g = np.asarray(g, dtype=float)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            raise CouplingError(f"shape {g.shape} is not a square (n, n) matrix")
        if not np.all(np.isfinite(g)):
            raise CouplingError("contains a non-finite value")
        if not np.array_equal(g, g.T):
            raise CouplingError("must be symmetric (one resistor per node pair)")
        if np.any(np.diag(g) != 0):
            raise CouplingError("diagonal must be zero (no self-loops)")
        sel = (g != 0) if mask is None else np.asarray(mask, dtype=bool)
        if mask is not None:
            if sel.shape != g.shape:
                raise CouplingError(f"mask of shape {sel.shape} for a matrix of shape {g.shape}")
            outside = np.triu((g != 0) & ~(sel | sel.T), 1)
            if outside.any():
                k, l = (int(i) for i in np.argwhere(outside)[0])
                raise CouplingError(f"conductance {g[k, l]:g} S between hidden nodes {k} and {l} is outside the mask "
                                    "(the mask names every resistor; it would be dropped)")
        k, l = np.nonzero(np.triu(sel | sel.T, 1) if mask is not None else np.triu(sel, 1))
        return cls(g.shape[0], np.stack([k, l], axis=1), g[k, l])

    def with_values(self, values) -> "Coupling":
        """The same resistors with new conductances (m,) in siemens."""
        return Coupling(self.n, self.pairs, np.array(values, dtype=float))

    # ---- reading ----------------------------------------------------------------------------
    @property
    def m(self) -> int:
        """Number of coupling resistors."""
        return int(self.pairs.shape[0])

    def __len__(self) -> int:
        return self.m

    @property
    def nbytes(self) -> int:
        return int(self.pairs.nbytes + self.values.nbytes)

    @property
    def shape(self) -> tuple[int, int]:
        """(n, n): the shape of the matrix this coupling stands for."""
        return (self.n, self.n)

    def _index(self, k: int, l: int) -> int:
        """Position of the resistor joining k and l, or -1."""
        a, b = (k, l) if k < l else (l, k)
        key = self.__dict__.get("_keys")
        if key is None:  # sorted keys k·n + l, built on the first lookup
            key = self.pairs[:, 0] * self.n + self.pairs[:, 1]
            object.__setattr__(self, "_keys", key)
        i = int(np.searchsorted(key, a * self.n + b))
        return i if i < key.size and key[i] == a * self.n + b else -1

    def __getitem__(self, kl: tuple[int, int]) -> float:
        """Conductance (S) between hidden nodes k and l (0.0 where there is no resistor)."""
        k, l = (int(i) for i in kl)
        if not (0 <= k < self.n and 0 <= l < self.n):
            raise IndexError(f"hidden node index out of range 0..{self.n - 1}: {(k, l)}")
        i = self._index(k, l) if k != l else -1
        return float(self.values[i]) if i >= 0 else 0.0

    def row_sums(self) -> np.ndarray:
        """Σ_l g_hh[k, l] for every hidden node k (n,), S."""
        k, l = self.pairs[:, 0], self.pairs[:, 1]
        return np.bincount(k, self.values, self.n) + np.bincount(l, self.values, self.n)

    def tocsr(self) -> sp.csr_matrix:
        """The symmetric (n, n) coupling matrix as scipy.sparse CSR (both orientations), S."""
        k, l = self.pairs[:, 0], self.pairs[:, 1]
        return sp.csr_matrix((np.concatenate([self.values, self.values]),
                              (np.concatenate([k, l]), np.concatenate([l, k]))), shape=(self.n, self.n))

    def toarray(self) -> np.ndarray:
        """The symmetric (n, n) coupling matrix as a dense array, S (n² × 8 bytes: small n only)."""
        g = np.zeros((self.n, self.n))
        k, l = self.pairs[:, 0], self.pairs[:, 1]
        g[k, l] = self.values
        g[l, k] = self.values
        return g

    def degrees(self) -> np.ndarray:
        """Number of coupling resistors at every hidden node (n,)."""
        return np.bincount(self.pairs.ravel(), minlength=self.n)

    def __repr__(self) -> str:
        return f"Coupling(n={self.n}, m={self.m} resistors)"


def random_coupling(n: int, degree: int, low_s: float, high_s: float, rng: np.random.Generator) -> Coupling:
    """Random sparse coupling: every node k draws ``degree`` distinct partners l (a draw of k
    itself is skipped) and each drawn pair a conductance uniform in [low_s, high_s] (S).  A pair
    drawn twice keeps its last draw; a pair drawn at exactly 0 S is left out.  O(n · degree)."""
    drawn: dict[int, float] = {}  # key k·n + l (k < l) → conductance, S
    size = min(degree, n - 1) if n > 1 else 0
    for k in range(n):
        for l in rng.choice(n, size=size, replace=False):
            if l != k:
                a, b = (k, int(l)) if k < l else (int(l), k)
                drawn[a * n + b] = rng.uniform(low_s, high_s)
    keys = np.fromiter(drawn.keys(), dtype=np.int64, count=len(drawn))
    vals = np.fromiter(drawn.values(), dtype=float, count=len(drawn))
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    keep = vals > 0
    return Coupling(n, np.stack([keys[keep] // n, keys[keep] % n], axis=1), vals[keep])
