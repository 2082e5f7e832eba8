"""Batched linear solves for nodal systems: dense batched LU for small networks, sparse LU above.

A *masked* system clamps the nodes in a boolean mask ``A`` to given values and solves
the remaining rows of ``K v = b``; this is the linear step of the active-set solver and
of the frozen-diode (hardware-linearized) circuit.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgWarning, lu_factor, lu_solve
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


def batched_masked_pcg(k_csr: sp.csr_matrix, diag: np.ndarray, free: np.ndarray, rhs: np.ndarray,
                       rtol: float = 1e-14, max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Jacobi-preconditioned CG on K_FF v_F = rhs_F for every sample at once (F = ``free``, (B, n) bool).

    Clamped rows and columns are removed by masking (the masked operator is SPD on F),
    so one sparse product serves the whole batch per iteration whatever each sample's
    set is; finished samples leave the batch.  Entries outside F are returned as 0.
    Returns the solutions and a per-sample flag telling whether ||r|| <= rtol ||rhs_F||
    was reached (callers fall back to a direct solve otherwise).
    """
    B, n = rhs.shape
    max_iter = max_iter or int(20 * np.sqrt(n) + 100)
    mask_all = free.astype(float)
    b_all = rhs * mask_all
    x_all = b_all / diag
    target_all = rtol * np.linalg.norm(b_all, axis=1)
    done = np.zeros(B, bool)
    act = np.arange(B)
    mask, dinv, target, x = mask_all, mask_all / diag, target_all, x_all.copy()
    r = b_all - (k_csr @ x.T).T * mask
    z = r * dinv
    p = z.copy()
    rz = np.einsum("ij,ij->i", r, z)
    for _ in range(max_iter + 1):
        fin = np.einsum("ij,ij->i", r, r) <= target * target
        if fin.any():
            x_all[act] = x
            done[act[fin]] = True
            keep = ~fin
            if not keep.any():
                break
            act, mask, dinv, target = act[keep], mask[keep], dinv[keep], target[keep]
            x, r, p, rz = x[keep], r[keep], p[keep], rz[keep]
        ap = (k_csr @ p.T).T * mask
        pap = np.einsum("ij,ij->i", p, ap)
        alpha = rz / np.where(pap > 0, pap, np.inf)
        x += alpha[:, None] * p
        r -= alpha[:, None] * ap
        z = r * dinv
        rz_new = np.einsum("ij,ij->i", r, z)
        p = z + (rz_new / np.where(rz > 0, rz, np.inf))[:, None] * p
        rz = rz_new
    else:
        x_all[act] = x
    return x_all, done


#: Coupled networks above this many hidden nodes solve masked systems by batched CG
#: (falling back to a cached sparse LU per active set for any sample CG cannot finish).
ITERATIVE_MIN_NODES = DENSE_MAX_NODES

#: Bytes of sparse LU factors kept per solver (least recently used are dropped first).
LU_CACHE_BYTES = 256 * 2**20


#: Dense solves of at most this many samples factorise each sample's matrix once and keep the
#: LU factors by active set, so the perturbation phases that follow an operating point on the
#: same set only back-substitute (larger batches use one batched LAPACK solve instead).
DENSE_LU_MAX_BATCH = 4

#: Bytes of dense LU factors kept per solver, by active set (least recently used are dropped first;
#: 32 sets of an 80-node network).
DENSE_LU_CACHE_BYTES = 32 * (8 * 80 * 80 + 4 * 80)


class MaskedSolver:
    """Solve K_FF v_F = rhs_F - K_FA h_A with v_A = h_A, per sample, reusing factorizations.

    Sparse factorizations are cached by active set, so samples (and later perturbation
    phases) that share a set share one LU.
    """

    def __init__(self, k_dense: np.ndarray | None, k_sparse: sp.csc_matrix, cache_bytes: int = LU_CACHE_BYTES,
                 diagonal: np.ndarray | None = None, iterative: bool | None = None):
        self.k_dense = k_dense
        self.k_sparse = k_sparse
        self.n = k_sparse.shape[0]
        # Uncoupled hidden nodes (a single crossbar layer): K is diagonal, solves are divisions.
        if diagonal is None and k_sparse.nnz == np.count_nonzero(k_sparse.diagonal()):
            diagonal = k_sparse.diagonal()
        self.diagonal = diagonal
        self.iterative = (k_dense is None and self.n > ITERATIVE_MIN_NODES) if iterative is None else iterative
        self._lu: OrderedDict[bytes, object] = OrderedDict()
        self._lu_bytes = 0
        self._cache_bytes = cache_bytes
        self.factorizations = 0
        self.cg_fallbacks = 0
        self._kcsr = None
        self._dense_lu: OrderedDict[bytes, tuple] = OrderedDict()
        self._dense_lu_bytes = 0

    def solve(self, clamped: np.ndarray, h: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """clamped: (B, n) bool; h: (n,) clamp values (V); rhs: (B, n) currents (A)."""
        B, n = rhs.shape
        if self.diagonal is not None:
            # A node with no conductance at all (zero diagonal) is only defined when clamped;
            # its unclamped value is never used, so the division by zero must not warn.
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(clamped, h[None, :], rhs / self.diagonal)
        if self.k_dense is not None and B <= DENSE_LU_MAX_BATCH:
            r = np.where(clamped, h[None, :], rhs)
            return np.stack([lu_solve(self._dense_factor(clamped[i]), r[i], check_finite=False) for i in range(B)]) \
                if B else np.empty_like(rhs)
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
        if self._kcsr is None:
            self._kcsr = self.k_sparse.tocsr()
        kcsr = self._kcsr
        if self.iterative:
            return self._solve_cg(kcsr, clamped, h, rhs)
        return self._solve_lu(kcsr, clamped, h, rhs, range(B), np.empty_like(rhs))

    def solve_columns(self, clamped: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """K_FF x_F = rhs_F with x = 0 on clamped nodes, for k right-hand sides per sample.

        clamped: (G, n) bool; rhs: (G, n, k) currents (A); returns (G, n, k) volts.  Dense
        systems factorise each sample's K_FF once for all its k columns (e.g. the + and −
        perturbation phases of one operating point); the other paths solve column by column.
        """
        G, n, k = rhs.shape
        if self.k_dense is None or self.diagonal is not None:
            rows = np.repeat(clamped, k, axis=0)
            flat = np.moveaxis(rhs, 2, 1).reshape(G * k, n)
            x = self.solve(rows, np.zeros(n), flat)
            return np.moveaxis(x.reshape(G, k, n), 1, 2)
        free = ~clamped
        r = np.where(free[:, :, None], rhs, 0.0)
        if G <= DENSE_LU_MAX_BATCH:
            return np.stack([lu_solve(self._dense_factor(clamped[i]), r[i], check_finite=False) for i in range(G)]) \
                if G else np.empty_like(rhs)
        mats = np.where(free[:, :, None], self.k_dense[None, :, :], 0.0)
        idx = np.arange(n)
        mats[:, idx, idx] += clamped
        self.factorizations += G
        return np.linalg.solve(mats, r)

    def _dense_factor(self, clamped: np.ndarray):
        """LU factors of K with the rows of ``clamped`` nodes replaced by identity rows, cached by set."""
        key = np.packbits(clamped).tobytes()
        lu = self._dense_lu.get(key)
        if lu is not None:
            self._dense_lu.move_to_end(key)
            return lu
        m = np.where(clamped[:, None], 0.0, self.k_dense)
        m[np.flatnonzero(clamped), np.flatnonzero(clamped)] = 1.0
        with warnings.catch_warnings():  # a singular K (a floating node) gives non-finite voltages,
            warnings.simplefilter("ignore", LinAlgWarning)  # which the certificate refuses, naming the cause
            lu = lu_factor(m, check_finite=False)
        self.factorizations += 1
        size = lu[0].nbytes + lu[1].nbytes
        while self._dense_lu and self._dense_lu_bytes + size > DENSE_LU_CACHE_BYTES:
            old = self._dense_lu.popitem(last=False)[1]
            self._dense_lu_bytes -= old[0].nbytes + old[1].nbytes
        self._dense_lu[key] = lu
        self._dense_lu_bytes += size
        return lu

    def _solve_cg(self, kcsr, clamped, h, rhs):
        """Batched CG on every sample's free set; sparse LU for samples CG did not finish."""
        free = ~clamped
        v_clamp = np.where(clamped, h[None, :], 0.0)
        r = rhs - (kcsr @ v_clamp.T).T if np.any(h) else rhs
        x, done = batched_masked_pcg(kcsr, kcsr.diagonal(), free, r)
        out = x + v_clamp
        if not done.all():
            bad = np.flatnonzero(~done)
            self.cg_fallbacks += bad.size
            self._solve_lu(kcsr, clamped, h, rhs, bad, out)
        return out

    def _solve_lu(self, kcsr, clamped, h, rhs, samples, out):
        """Per-sample sparse LU of K_FF, cached by active set within a byte budget (LRU)."""
        for b in samples:
            a = clamped[b]
            key = np.packbits(a).tobytes()
            f = np.flatnonzero(~a)
            v = np.where(a, h, 0.0)
            if f.size:
                lu = self._lu.get(key)
                if lu is None:
                    lu = splu(kcsr[f][:, f].tocsc(), permc_spec="MMD_AT_PLUS_A")
                    size = 12 * (lu.L.nnz + lu.U.nnz) + 16 * f.size
                    while self._lu and self._lu_bytes + size > self._cache_bytes:
                        self._lu_bytes -= self._lu.popitem(last=False)[1][1]
                    self._lu[key] = (lu, size)
                    self._lu_bytes += size
                    self.factorizations += 1
                else:
                    self._lu.move_to_end(key)
                    lu = lu[0]
                r = rhs[b, f]
                if a.any() and np.any(h[a] != 0):
                    r = r - kcsr[f][:, np.flatnonzero(a)] @ h[a]
                v[f] = lu.solve(r)
            out[b] = v
        return out
