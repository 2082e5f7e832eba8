"""Optimizers in conductance space with projection onto the programmable range.

Parameters are conductances in siemens.  Adam's step is ``lr`` siemens times the
normalised moment ratio (``eps`` is in the gradient's units, 1/S per unit loss); SGD's
``lr`` is in S² per unit loss.  After each step the
conductances are projected onto [g_min, g_max]; frozen entries (mask False) never move.
State is a plain dict of arrays so that checkpoints restore it exactly.
"""

from __future__ import annotations

import math

import numpy as np

from hil.kernels import adam_kernel

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")


def trainable_mask(topology, trainable) -> np.ndarray:
    """(m,) bool: the conductances of the groups named in ``trainable`` (a plain name such as ``g_in``
    selects that group in every cascade stage, ``s1.g_in`` one stage).  ValueError when a stage name
    is not a group of this board (``s7.g_in`` on a two-stage cascade, ``s0.g_in`` on a single
    network), or when the names select no conductance of it (e.g. only ``g_hh`` on a network
    without hidden↔hidden conductances), so that a run never ignores a name without saying so."""
    mask = np.zeros(topology.n_conductances, bool)
    for gname, sl in topology.groups.items():
        if gname in trainable or gname.split(".", 1)[-1] in trainable:
            mask[sl] = True
    sizes = ", ".join(f"{g} ({sl.stop - sl.start})" for g, sl in topology.groups.items())
    if unknown := [str(t) for t in trainable if "." in str(t) and t not in topology.groups]:
        raise ValueError(f"train.trainable: {', '.join(unknown)} name(s) no group of this board (its groups and "
                         f"sizes: {sizes})")
    if not mask.any():
        raise ValueError(f"train.trainable: {', '.join(trainable)} select(s) no conductance of this board "
                         f"(its groups and sizes: {sizes}): the optimizer would move nothing")
    return mask


class Optimizer:
    def __init__(self, name: str, lr: float, g_min: float, g_max: float, mask: np.ndarray,
                 momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-12,
                 schedule: str = "constant", total_steps: int = 1, lr_final_fraction: float = 0.0):
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
        self.name, self.lr, self.g_min, self.g_max = name, lr, g_min, g_max
        self.mask = mask.astype(bool)
        self.momentum, self.betas, self.eps = momentum, betas, eps
        self.schedule, self.total_steps, self.lr_final_fraction = schedule, max(total_steps, 1), lr_final_fraction
        m = mask.shape[0]
        self.state = {"step": 0, "m": np.zeros(m), "v": np.zeros(m)}

    def current_lr(self) -> float:
        if self.schedule == "cosine":
            frac = min(self.state["step"] / self.total_steps, 1.0)
            lo = self.lr_final_fraction
            return self.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * frac)))
        return self.lr

    def step(self, g: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Return projected new conductances (S) from gradient ∂ℓ/∂g (1/S).

        Works in place on the moment arrays: Adam is one compiled pass over the m
        conductances (:func:`hil.kernels.adam_kernel`), SGD a few numpy passes.  Frozen
        entries keep zero moments and their conductance (the gradient is never modified).
        """
        st = self.state
        lr = self.current_lr()
        st["step"] += 1
        frozen = self.__dict__.get("_frozen")
        if frozen is None or frozen[1] != self.mask.shape[0]:
            frozen = self._frozen = (np.flatnonzero(~self.mask), self.mask.shape[0])
        frozen = frozen[0]
        m = st["m"]
        if (g.shape if isinstance(g, np.ndarray) else np.shape(g)) != m.shape:
            raise ValueError(f"expected {m.shape[0]} conductances, got shape {np.shape(g)}")
        # a scalar gradient applies to every parameter; any other shape must match (ValueError)
        if isinstance(grad, np.ndarray) and grad.shape == m.shape and grad.dtype == np.float64:
            gr = grad
        else:
            gr = np.broadcast_to(np.asarray(grad, dtype=float), m.shape)
        buf = np.empty(m.shape)
        if self.name == "sgd":
            m *= self.momentum
            m += gr
            if frozen.size:
                m[frozen] = 0.0
            upd = np.multiply(m, lr, out=buf)
        else:  # one compiled pass: moments, step, projection and frozen entries
            b1, b2 = self.betas
            t = st["step"]
            # lr·m̂/(√v̂ + eps) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ), written as c·m/(√v + eps·√(1−β₂ᵗ)).
            root_c2 = math.sqrt(1 - b2**t)
            g_arr = g if isinstance(g, np.ndarray) and g.dtype == np.float64 and g.flags.c_contiguous \
                else np.ascontiguousarray(g, dtype=float)
            adam_kernel(g_arr, gr if gr.flags.c_contiguous else np.ascontiguousarray(gr), m, st["v"], frozen,
                        float(b1), float(b2), lr * root_c2 / (1 - b1**t), self.eps * root_c2,
                        float(self.g_min), float(self.g_max), buf)
            return buf
        new = np.subtract(g, upd, out=upd)
        np.clip(new, self.g_min, self.g_max, out=new)
        if frozen.size:
            new[frozen] = np.asarray(g)[frozen]
        return new

    def state_dict(self) -> dict:
        return {"step": np.array(self.state["step"]), "m": self.state["m"].copy(), "v": self.state["v"].copy()}

    def load_state_dict(self, d: dict) -> None:
        m, v = np.array(d["m"], float), np.array(d["v"], float)
        if m.shape != self.mask.shape or v.shape != self.mask.shape:  # the Adam kernel reads no bounds
            raise ValueError(f"optimizer moments of shapes {m.shape} and {v.shape} do not match "
                             f"{self.mask.shape[0]} conductances")
        self.state = {"step": int(d["step"]), "m": m, "v": v}
