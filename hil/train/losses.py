"""Losses on (differential) output currents.

Network outputs are currents y (A).  With differential pairs the class scores are
``y_diff = D y``; logits are ``gain_per_a * y_diff`` (gain in 1/A).  Each loss returns
the per-sample loss and ∂ℓ/∂y for every *port* (A⁻¹), which is what the hardware
linearization drives (ŵ = −κ ∂ℓ/∂y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.kernels import cross_entropy_kernel, differential_argmax_kernel

LOSSES = ("cross_entropy", "mse", "linear")


_INT64 = np.dtype(np.int64)


@dataclass(frozen=True)
class Loss:
    """A loss on port currents.

    Args:
        name: ``cross_entropy`` (targets are class labels), ``mse`` (targets are
            logit-space values of shape (B, k), or class labels meaning ±1 one-hot) or
            ``linear``: ℓ = Σ_j c_j y_j, linear in the port currents.  Its targets are either
            coefficient vectors c (B, q) or (q,) in 1/A, used as given, or class labels t
            (a float vector as long as both the batch and the ports is refused: it reads both ways),
            meaning ℓ = −(z_t − mean_k z_k) on the logits z (push the true class up, the
            others down; unbounded, so the programmable range is what limits it).
        gain_per_a: current-to-logit gain, 1/A.
        differential: (k, q) matrix mapping port currents to scores (identity if empty).
    """

    name: str
    gain_per_a: float
    differential: np.ndarray

    def scores(self, y: np.ndarray) -> np.ndarray:
        """Logits (B, k) from port currents y (B, q) in amperes."""
        d = self.differential
        return self.gain_per_a * (y @ d.T if d.size else y)

    def value_and_grad(self, y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss (B,) and ∂ℓ/∂y (B, q) in A⁻¹."""
        t = self._kernel_labels(y, target)
        if t is not None:  # one compiled pass per batch (logits, softmax, loss, ∂ℓ/∂y through the differential pairs)
            y_c = y if y.dtype == np.float64 and y.flags.c_contiguous else np.ascontiguousarray(y, dtype=float)
            loss, dy = np.empty(y.shape[0]), np.empty(y.shape)
            if not cross_entropy_kernel(y_c, t, *self._d_sparse, float(self.gain_per_a), loss, dy):
                raise ValueError(self._label_range())
            return loss, dy
        z = self.scores(y)
        if self.name == "cross_entropy":
            zs = z - z.max(axis=1, keepdims=True)
            logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
            t = _class_labels(target, z.shape[0], z.shape[1])
            loss = -logp[np.arange(len(t)), t]
            dz = np.exp(logp)
            dz[np.arange(len(t)), t] -= 1.0
        elif self.name == "mse":
            t = _per_sample(np.asarray(target), z.shape[0])
            if t.ndim == 1:  # class labels → ±1 one-hot targets in logit space
                t = _class_labels(t, z.shape[0], z.shape[1])
                t = 2.0 * (np.arange(z.shape[1])[None, :] == t[:, None]) - 1.0
            elif t.shape != z.shape:  # (B, 1) would broadcast against (B, k)
                raise ValueError(f"mse targets of shape {t.shape} for {z.shape[1]} logits per sample")
            r = z - t
            loss = 0.5 * np.sum(r * r, axis=1)
            dz = r
        elif self.name == "linear":
            t = np.asarray(target)
            if t.ndim >= 1 and np.issubdtype(t.dtype, np.floating) and t.shape[-1] == y.shape[1] and (
                    t.ndim == 2 or t.ndim == 1 and len(t) != len(y)):
                c = np.broadcast_to(t, y.shape)  # coefficients on the port currents, 1/A
                return np.sum(c * y, axis=1), np.array(c, dtype=float)
            if t.ndim == 1 and t.dtype.kind == "f" and len(t) == len(y) == y.shape[1]:
                raise ValueError(f"linear loss: a float target of length {len(t)} for {len(y)} samples of {y.shape[1]} "
                                 "ports reads as coefficients (q,) or as class labels (B,); give coefficients "
                                 "as (B, q) or labels as integers")
            k = z.shape[1]
            t = _class_labels(t, z.shape[0], k)
            dz = np.full(z.shape, 1.0 / k)
            dz[np.arange(len(t)), t] -= 1.0
            loss = np.sum(dz * z, axis=1)
        else:
            raise ValueError(f"unknown loss {self.name!r}; choose from {LOSSES}")
        d = self.differential
        dy = self.gain_per_a * (dz @ d if d.size else dz)
        return loss, dy

    def _kernel_labels(self, y: np.ndarray, target) -> np.ndarray | None:
        """The class labels as int64 (B,) when the compiled cross-entropy applies (cross-entropy on
        differential pairs, (B, q) port currents, one integer label per sample), else None."""
        width = self.__dict__.get("_kernel_width")  # q for cross-entropy on a differential matrix, else 0
        if width is None:
            d = self.differential
            width = d.shape[1] if self.name == "cross_entropy" and d.size else 0
            object.__setattr__(self, "_kernel_width", width)
        if width and y.ndim == 2 and y.shape[1] == width:
            t = target if type(target) is np.ndarray else np.asarray(target)
            if t.ndim == 1 and t.shape[0] == y.shape[0]:
                if t.dtype is _INT64:
                    return t
                if t.dtype.kind in "iu":
                    return t.astype(np.int64)
        return None

    def _label_range(self) -> str:
        """The error message of a class label out of range."""
        return f"class labels must be 0 … {self.differential.shape[0] - 1}"

    @property
    def _d_c(self) -> np.ndarray:
        """The differential matrix as a C-contiguous float array (formed once)."""
        d = self.__dict__.get("_d_contiguous")
        if d is None:
            d = np.ascontiguousarray(self.differential, dtype=float)
            object.__setattr__(self, "_d_contiguous", d)
        return d

    @property
    def _d_sparse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The differential matrix by its nonzero entries, row by row: (row starts (k + 1,), columns,
        values), formed once."""
        sp = self.__dict__.get("_d_nonzero")
        if sp is None:
            d = self._d_c
            rows, cols = np.nonzero(d)
            indptr = np.searchsorted(rows, np.arange(d.shape[0] + 1)).astype(np.int64)
            sp = (indptr, cols.astype(np.int64), np.ascontiguousarray(d[rows, cols]))
            object.__setattr__(self, "_d_nonzero", sp)
        return sp

    def predict(self, y: np.ndarray) -> np.ndarray:
        """Predicted class per sample (B,): the largest logit (one compiled pass with differential pairs)."""
        d = self.differential
        if d.size and isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == d.shape[1] and y.dtype == np.float64 \
                and d.shape[0] > 0 and np.isfinite(self.gain_per_a):
            out = np.empty(y.shape[0], dtype=np.int64)
            differential_argmax_kernel(y if y.flags.c_contiguous else np.ascontiguousarray(y), self._d_c,
                                       float(self.gain_per_a), out)
            return out
        return np.argmax(self.scores(y), axis=1)


def _class_labels(target, batch: int, k: int) -> np.ndarray:
    """One class label 0 … k − 1 per sample as ints; a one-line ValueError for a label that is not
    one (fractional, negative or too large: numpy would truncate it or index from the end)."""
    raw = _per_sample(np.asarray(target), batch)
    if raw.ndim != 1:  # a (B, k) one-hot or (B, 1) table would index as a table of labels
        raise ValueError(f"class labels must be one per sample, shape ({batch},); got shape {raw.shape}")
    t = raw.astype(int)
    if t.size and raw.dtype.kind not in "iub" and not np.array_equal(t, raw):
        bad = raw[t != raw].flat[0]
        raise ValueError(f"class labels must be whole numbers 0 … {k - 1}, got {bad:g}")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"class labels must be 0 … {k - 1}")
    return t


def _per_sample(t: np.ndarray, batch: int) -> np.ndarray:
    """``t`` when it holds one target per sample of the batch; a one-line ValueError otherwise."""
    if t.ndim == 0 or len(t) != batch:
        raise ValueError(f"{'a scalar' if t.ndim == 0 else f'{len(t)} target(s)'} for a batch of {batch} samples")
    return t
