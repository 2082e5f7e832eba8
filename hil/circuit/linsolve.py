"""Batched linear solves for nodal systems: dense batched LU for small networks, sparse LU above.

A *masked* system clamps the nodes in a boolean mask ``A`` to given values and solves
the remaining rows of ``K v = b``; this is the linear step of the active-set solver and
of the frozen-diode (hardware-linearized) circuit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

#: Networks up to this many hidden nodes use dense batched LAPACK solves (measured: above
#: ~100 nodes per-sample sparse LU is faster for a batch of 64).
DENSE_MAX_NODES = 80


def use_dense(n: int) -> bool:
    return n <= DENSE_MAX_NODES


def solve_diagonal_shift(k_dense: np.ndarray | None, k_sparse: sp.csc_matrix, shift: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (K + diag(shift_b)) x_b = rhs_b for every sample b.  shift, rhs: (B, n)."""
    n = rhs.shape[1]
    if k_sparse.nnz == np.count_nonzero(k_sparse.diagonal()):
        return rhs / (k_sparse.diagonal() + shift)
    if k_dense is not None:
        mats = np.broadcast_to(k_dense, (rhs.shape[0], n, n)).copy()
        idx = np.arange(n)
        mats[:, idx, idx] += shift
        return np.linalg.solve(mats, rhs[..., None])[..., 0]
    out, done = batched_pcg(k_sparse, shift, rhs)
    for b in np.flatnonzero(~done):  # LU for any system CG could not finish
        lu = splu((k_sparse + sp.diags(shift[b])).tocsc(), permc_spec="MMD_AT_PLUS_A")
        out[b] = lu.solve(rhs[b])
    return out


def batched_pcg(k_sparse: sp.csc_matrix, shift: np.ndarray, rhs: np.ndarray, rtol: float = 1e-14,
                max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Jacobi-preconditioned conjugate gradients on (K + diag(shift_b)) x_b = rhs_b, all b at once.

    K + diag(shift) is symmetric positive definite (grounded Laplacian plus non-negative
    diode conductances) and, Jacobi-scaled, well conditioned; one sparse matrix product
    serves the whole batch per iteration.  Returns the solutions and a per-sample flag
    telling whether ||r|| <= rtol ||rhs|| was reached (callers fall back to LU otherwise).
    """
    n = rhs.shape[1]
    max_iter = max_iter or int(20 * np.sqrt(n) + 100)
    kt = k_sparse.tocsr()
    dinv = 1.0 / (k_sparse.diagonal()[None, :] + shift)
    apply = lambda v: (kt @ v.T).T + shift * v
    x = rhs * dinv
    r = rhs - apply(x)
    z = r * dinv
    p = z.copy()
    rz = np.sum(r * z, axis=1)
    target = rtol * np.linalg.norm(rhs, axis=1)
    done = np.linalg.norm(r, axis=1) <= target
    for _ in range(max_iter):
        if done.all():
            break
        ap = apply(p)
        pap = np.sum(p * ap, axis=1)
        alpha = np.where(done | (pap <= 0), 0.0, rz / np.where(pap > 0, pap, 1.0))
        x += alpha[:, None] * p
        r -= alpha[:, None] * ap
        done |= np.linalg.norm(r, axis=1) <= target
        z = r * dinv
        rz_new = np.sum(r * z, axis=1)
        beta = np.where(done | (rz <= 0), 0.0, rz_new / np.where(rz > 0, rz, 1.0))
        p = z + beta[:, None] * p
        rz = rz_new
    return x, done


class MaskedSolver:
    """Solve K_FF v_F = rhs_F - K_FA h_A with v_A = h_A, per sample, reusing factorizations.

    Sparse factorizations are cached by active set, so samples (and later perturbation
    phases) that share a set share one LU.
    """

    def __init__(self, k_dense: np.ndarray | None, k_sparse: sp.csc_matrix, cache_size: int = 4096):
        self.k_dense = k_dense
        self.k_sparse = k_sparse
        self.n = k_sparse.shape[0]
        # Uncoupled hidden nodes (a single crossbar layer): K is diagonal, solves are divisions.
        self.diagonal = k_sparse.diagonal() if k_sparse.nnz == np.count_nonzero(k_sparse.diagonal()) else None
        self._lu: dict[bytes, object] = {}
        self._cache_size = cache_size
        self.factorizations = 0

    def solve(self, clamped: np.ndarray, h: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """clamped: (B, n) bool; h: (n,) clamp values (V); rhs: (B, n) currents (A)."""
        B, n = rhs.shape
        if self.diagonal is not None:
            # A node with no conductance at all (zero diagonal) is only defined when clamped;
            # its unclamped value is never used, so the division by zero must not warn.
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(clamped, h[None, :], rhs / self.diagonal)
        if self.k_dense is not None:
            free = ~clamped
            K = self.k_dense
            # Full system with clamped rows replaced by identity: M v = r.
            mats = np.where(free[:, :, None], K[None, :, :], 0.0)
            idx = np.arange(n)
            mats[:, idx, idx] += clamped
            r = np.where(free, rhs, h[None, :])
            self.factorizations += B
            return np.linalg.solve(mats, r[..., None])[..., 0]
        out = np.empty_like(rhs)
        kcsr = self.k_sparse.tocsr()
        for b in range(B):
            a = clamped[b]
            key = np.packbits(a).tobytes()
            f = np.flatnonzero(~a)
            v = np.where(a, h, 0.0)
            if f.size:
                lu = self._lu.get(key)
                if lu is None:
                    if len(self._lu) >= self._cache_size:
                        self._lu.clear()
                    lu = splu(kcsr[f][:, f].tocsc(), permc_spec="MMD_AT_PLUS_A")
                    self._lu[key] = lu
                    self.factorizations += 1
                r = rhs[b, f]
                if a.any() and np.any(h[a] != 0):
                    r = r - kcsr[f][:, np.flatnonzero(a)] @ h[a]
                v[f] = lu.solve(r)
            out[b] = v
        return out
