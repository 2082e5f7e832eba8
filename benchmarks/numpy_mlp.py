"""The digital side-by-side baseline: a plain numpy one-hidden-layer ReLU network.

Same logical shape as the digits circuit (n_inputs → n_hidden ReLU → n_classes with
biases), same batches, same loss (softmax cross-entropy) and the same optimizer family
(Adam) as the trained board, trained by backprop.  Only numpy, so its epoch time is the
floor a Python training loop can reach on this machine.
"""

from __future__ import annotations

import numpy as np


class NumpyMLP:
    """One hidden ReLU layer, softmax cross-entropy, Adam (lr in weight units per step)."""

    def __init__(self, n_inputs: int, n_hidden: int, n_classes: int, seed: int = 0, lr: float = 1e-3):
        rng = np.random.default_rng(seed)
        self.params = [
            rng.normal(0, 1 / np.sqrt(n_inputs), (n_inputs, n_hidden)), np.zeros(n_hidden),
            rng.normal(0, 1 / np.sqrt(n_hidden), (n_hidden, n_classes)), np.zeros(n_classes),
        ]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self.lr = lr

    def forward(self, x: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2 = self.params
        return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One backprop + Adam step on a batch; returns the mean loss."""
        w1, b1, w2, b2 = self.params
        h = np.maximum(x @ w1 + b1, 0.0)
        z = h @ w2 + b2
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        B = x.shape[0]
        loss = float(-np.log(p[np.arange(B), y]).mean())
        dz = p
        dz[np.arange(B), y] -= 1.0
        dz /= B
        dh = (dz @ w2.T) * (h > 0)
        grads = [x.T @ dh, dh.sum(axis=0), h.T @ dz, dz.sum(axis=0)]
        self.t += 1
        b1c, b2c = 1 - 0.9**self.t, 1 - 0.999**self.t
        for prm, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            prm -= self.lr * (m / b1c) / (np.sqrt(v / b2c) + 1e-8)
        return loss

    def epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, perm: np.ndarray) -> float:
        """One pass over (x, y) in the order ``perm``; returns the mean loss."""
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            total += self.step(x[idx], y[idx]) * len(idx)
        return total / len(y)
