"""Cost of one `hl` gradient (all conductances) as a ratio of one forward solve, through the board.

Usage: python benchmarks/gradient.py [--repeats N] [--calls N] [--cpu] [--couplings 0 4] [--inputs 16 64 256]
       [--batches 1 64]

For each network, with fresh inputs for every call (so no cached operating point is
reused by the forward timing), we time, in chunks of ``--calls`` calls interleaved
repetition by repetition (so machine load hits both alike; a chunk is long enough that
one pre-emption does not decide a batch-1 timing; "chunks": ``--calls`` forwards in a row,
then ``--calls`` gradients in a row, each repeating one operation as an evaluation pass or a
training loop does; "after a gradient": gradient, gradient, forward, … with the second gradient
and the forward each timed alone, so that both follow a gradient, as in a training loop, and the
forward runs in the caches a gradient leaves, as the gradient's own operating point does),
  forward   board.measure(x)                         (the operating point only)
  gradient  estimate("hl", board, x, ..., delta_v=1 mV) (operating point, the +εŵ phase, the −εŵ
                                                      phase of the samples whose + phase changed
                                                      a diode state, v·v̂ for every conductance)
for one sample and for a batch of 64, and print medians, per-sample costs and both ratios.
Networks keep 64 hidden nodes (ideal diodes) and grow the number of inputs, so the number
of conductances grows ~16× while the per-sample gradient cost should stay flat.
Target: gradient ≤ 3× forward.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hil, not an installed one

from hil.boards.simulated import SimulatedBoard  # noqa: E402
from hil.circuit.generate import random_circuit  # noqa: E402
from hil.train.estimators import estimate  # noqa: E402
from hil.train.losses import Loss  # noqa: E402


def bench(n_inputs: int, coupling: int, batch: int, repeats: int, calls: int, clock, seed: int = 0) -> dict:
    """Median over ``repeats`` of the time per call (s) of ``calls`` forward measurements and, right
    after them in the same repetition, ``calls`` gradients (``fwd``, ``grad``); then of ``calls``
    gradients and forwards that each follow an untimed gradient (``after_fwd``, ``after_grad``).
    Fresh inputs for every call."""
    c = random_circuit(64, n_inputs, 20, seed=seed, coupling_degree=coupling, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(seed)
    n = 5 * repeats * calls + 2
    xs = [rng.uniform(0, 1, (batch, n_inputs)) for _ in range(n)]
    ts = [rng.integers(0, 10, batch) for _ in range(n)]
    board.measure(xs[-1])  # first-call costs (factorisation caches, imports)
    estimate("hl", board, xs[-2], ts[-2], loss, {"delta_v": 1e-3})
    fwd, grad, after_fwd, after_grad = [], [], [], []
    k = 0
    for _ in range(repeats):
        t0 = clock()
        for _ in range(calls):
            board.measure(xs[k])
            k += 1
        t1 = clock()
        for _ in range(calls):
            estimate("hl", board, xs[k], ts[k], loss, {"delta_v": 1e-3})
            k += 1
        t2 = clock()
        fwd.append((t1 - t0) / calls)
        grad.append((t2 - t1) / calls)
        f_sum = g_sum = 0.0
        for _ in range(calls):  # after a gradient: each timed call follows an (untimed) gradient
            estimate("hl", board, xs[k], ts[k], loss, {"delta_v": 1e-3})
            t0 = clock()
            estimate("hl", board, xs[k + 1], ts[k + 1], loss, {"delta_v": 1e-3})
            t1 = clock()
            board.measure(xs[k + 2])
            t2 = clock()
            k += 3
            g_sum += t1 - t0
            f_sum += t2 - t1
        after_fwd.append(f_sum / calls)
        after_grad.append(g_sum / calls)
    return {"m": c.topology().n_conductances, "fwd": float(np.median(fwd)), "grad": float(np.median(grad)),
            "after_fwd": float(np.median(after_fwd)), "after_grad": float(np.median(after_grad))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--calls", type=int, default=10,
                    help="calls per timed chunk (at batch 1 a chunk lasts milliseconds, not one call)")
    ap.add_argument("--cpu", action="store_true",
                    help="time with this process's CPU time (one BLAS thread) instead of wall time")
    ap.add_argument("--couplings", type=int, nargs="+", default=[0, 4],
                    help="coupling degrees to run (0: uncoupled hidden nodes)")
    ap.add_argument("--inputs", type=int, nargs="+", default=[16, 64, 256], help="numbers of inputs to run")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes to run")
    args = ap.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    from hil.threads import blas_summary, configure_blas_threads

    configure_blas_threads()
    print(f"BLAS: {blas_summary()}")
    print("hl gradient vs forward solve, simulated board, 64 hidden ideal-diode nodes, 20 output ports; "
          f"{'CPU' if args.cpu else 'wall'} clock, median of {args.repeats} chunks of {args.calls} calls")
    print("per-sample times and ratios of the chunks; the last column is the ratio of calls that each follow a gradient")
    print(f"{'inputs':>6} {'coupling':>8} {'conductances':>12} {'batch':>5} {'forward/sample':>15} "
          f"{'gradient/sample':>16} {'ratio':>6} {'after a gradient':>16}")
    for coupling in args.couplings:
        for n_inputs in args.inputs:
            for batch in args.batches:
                r = bench(n_inputs, coupling, batch, args.repeats, args.calls, clock)
                print(f"{n_inputs:>6} {coupling:>8} {r['m']:>12} {batch:>5} {1e6 * r['fwd'] / batch:>12.1f} µs "
                      f"{1e6 * r['grad'] / batch:>13.1f} µs {r['grad'] / r['fwd']:>6.2f} "
                      f"{r['after_grad'] / r['after_fwd']:>16.2f}")


if __name__ == "__main__":
    main()
