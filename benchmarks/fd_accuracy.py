"""Accuracy of the ``fd`` estimator against the exact linearized gradient (``hl-exact``).

Random crossbars (9 hidden nodes, 3 inputs, 4 outputs, coupling degree 2, both diode laws)
with small leak conductances, whose loss sensitivity is small: the per-conductance relative
error |fd − exact| / |exact| is reported for every group, worst case over 3 seeds.

    PYTHONPATH=$PWD python benchmarks/fd_accuracy.py
"""

from __future__ import annotations

import time

import numpy as np

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


def worst_errors(diode: str, leak_s: float, seeds=range(3)) -> tuple[dict[str, float], float]:
    worst: dict[str, float] = {}
    seconds = 0.0
    for seed in seeds:
        c = random_circuit(9, 3, 4, seed=seed, diode=diode, coupling_degree=2, mixed_orientation=True,
                           g_range=(1e-5, 1e-4))
        c = c.with_conductances(np.concatenate([c.conductance_vector()[:c.topology().groups["g_leak"].start],
                                                np.full(c.n_hidden, leak_s),
                                                c.conductance_vector()[c.topology().groups["g_out"]]]))
        board = SimulatedBoard(c, g_min=0.0, g_max=1e-3)
        rng = np.random.default_rng(seed)
        x = rng.uniform(-2, 2, (5, 3))
        t = rng.integers(0, 2, 5)
        loss = Loss("cross_entropy", 1e4, c.differential_matrix())
        exact = estimate("hl-exact", board, x, t, loss).grad
        t0 = time.perf_counter()
        fd = estimate("fd", board, x, t, loss).grad
        seconds += time.perf_counter() - t0
        scale = np.max(np.abs(exact))
        for name, sl in c.topology().groups.items():
            e, f = exact[sl], fd[sl]
            keep = np.abs(e) > 1e-9 * scale  # exactly-zero sensitivities have no relative error
            if keep.any():
                worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(f[keep] - e[keep]) / np.abs(e[keep]))))
    return worst, seconds


if __name__ == "__main__":
    print("diode     leak (S)  " + "  ".join(f"{g:>9s}" for g in ("g_in", "g_hh", "g_leak", "g_out")) + "   fd time")
    for diode in ("ideal", "shockley"):
        for leak in (1e-6, 1e-8):
            w, sec = worst_errors(diode, leak)
            print(f"{diode:9s} {leak:8.0e}  " + "  ".join(f"{w.get(g, float('nan')):9.1e}" for g in
                                                        ("g_in", "g_hh", "g_leak", "g_out")) + f"   {sec:.2f} s")
