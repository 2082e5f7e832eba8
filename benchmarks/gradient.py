"""Cost of one `hl` gradient (all conductances) as a ratio of one forward solve, through the board.

Usage: python benchmarks/gradient.py [--repeats N] [--cpu]

For each network, with fresh inputs every repetition (so no cached operating point is
reused by the forward timing), we time
  forward   board.measure(x)                         (the operating point only)
  gradient  estimate("hl", board, x, ..., delta_v=1 mV) (operating point, +εŵ and −εŵ phases,
                                                      v·v̂ for every conductance)
for one sample and for a batch of 64, and print medians, per-sample costs and the ratio.
Networks keep 64 hidden nodes (ideal diodes) and grow the number of inputs, so the number
of conductances grows ~16× while the per-sample gradient cost should stay flat.
Target: gradient ≤ 3× forward.  ``--cpu`` times this process's CPU time instead of wall time
(BLAS runs on one thread), which other processes on a loaded machine distort much less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


CLOCK = time.perf_counter  # wall time; --cpu: this process's CPU time (one BLAS thread), steadier under load


def median_time(fn, repeats: int) -> float:
    times = []
    for r in range(repeats):
        t0 = CLOCK()
        fn(r)
        times.append(CLOCK() - t0)
    return float(np.median(times))


def bench(n_inputs: int, coupling: int, batch: int, repeats: int, seed: int = 0) -> dict:
    c = random_circuit(64, n_inputs, 20, seed=seed, coupling_degree=coupling, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, 1, (batch, n_inputs)) for _ in range(2 * repeats)]
    ts = [rng.integers(0, 10, batch) for _ in range(2 * repeats)]
    fwd = median_time(lambda r: board.measure(xs[2 * r]), repeats)
    grad = median_time(lambda r: estimate("hl", board, xs[2 * r + 1], ts[2 * r + 1], loss, {"delta_v": 1e-3}), repeats)
    return {"m": c.topology().n_conductances, "fwd": fwd, "grad": grad}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cpu", action="store_true", help="time with process CPU time instead of wall time")
    args = ap.parse_args()
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    from hil.threads import blas_summary, configure_blas_threads

    configure_blas_threads()
    print(f"BLAS: {blas_summary()}")
    print("hl gradient vs forward solve, simulated board, 64 hidden ideal-diode nodes, 20 output ports")
    print(f"{'inputs':>6} {'coupling':>8} {'conductances':>12} {'batch':>5} {'forward/sample':>15} "
          f"{'gradient/sample':>16} {'ratio':>6}")
    for coupling in (0, 4):
        for n_inputs in (16, 64, 256):
            for batch in (1, 64):
                r = bench(n_inputs, coupling, batch, args.repeats)
                print(f"{n_inputs:>6} {coupling:>8} {r['m']:>12} {batch:>5} {1e6 * r['fwd'] / batch:>12.1f} µs "
                      f"{1e6 * r['grad'] / batch:>13.1f} µs {r['grad'] / r['fwd']:>6.2f}")


if __name__ == "__main__":
    main()
