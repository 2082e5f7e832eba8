"""Where an `hl` gradient's cost sits: its compiled work against the Python around it.

Usage: python benchmarks/gradient_floor.py [--inputs 16] [--batches 1 64] [--repeats 9]

For an uncoupled network of 64 hidden ideal-diode nodes and 20 output ports (as
``benchmarks/gradient.py``), this times, each as the fastest of ``--repeats`` loops (wall clock,
one BLAS thread):

  forward    board.measure(x), fresh inputs every call
  gradient   estimate("hl", board, x, ..., delta_v=1 mV), fresh inputs every call
  and every compiled piece a gradient adds to its forward, called directly on the same arrays:
  the loss with the ± drives, the + phase's solve (with w·G_out), the held-input
  comparison, the + phase kernel (responses and state comparison) and v·v̂ for every conductance
  (once per gradient: inside the + phase kernel, or inside the − phase kernel when one was measured).
  The − phase itself (a solve of the few samples whose + phase changed a diode state) is left
  out of the floor; the fraction of gradients that measure one is printed.

It prints the compiled floor (forward + compiled pieces) as a ratio to the forward, and the rest
(Python between the calls, and a forward that runs colder inside a gradient than in a loop of
forwards) in forwards.  The pieces reach into the estimator's and the board's internals: this is a
diagnostic of the current code, not a measure of any public interface.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hil, not an installed one

from hil.boards.simulated import SimulatedBoard  # noqa: E402
from hil.circuit.generate import random_circuit  # noqa: E402
from hil.kernels import (batch_response_product, cross_entropy_drive_kernel, diagonal_phases_kernel,  # noqa: E402
                         hl_plus_phase_kernel, repeats_of)
from hil.train import estimators as est  # noqa: E402
from hil.train.estimators import estimate  # noqa: E402
from hil.train.losses import Loss  # noqa: E402

DELTA_V = 1e-3  # V, the drive of benchmarks/gradient.py


def fastest_us(call, number: int, repeats: int) -> float:
    """The fastest of ``repeats`` loops of ``number`` calls, µs per call."""
    call()
    return min(timeit.repeat(call, number=number, repeat=repeats)) / number * 1e6


def floor(n_inputs: int, batch: int, repeats: int, n_fresh: int = 400, seed: int = 0) -> dict:
    """Times (µs) of the forward, the gradient and each compiled piece, and the fraction of gradients
    that measured a − phase."""
    c = random_circuit(64, n_inputs, 20, seed=seed, coupling_degree=0, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, 1, (batch, n_inputs)) for _ in range(n_fresh)]
    ts = [rng.integers(0, 10, batch) for _ in range(n_fresh)]
    turn = iter(range(10 ** 12))

    def fresh() -> int:
        return next(turn) % n_fresh

    t = {"forward": fastest_us(lambda: board.measure(xs[fresh()]), n_fresh, repeats)}

    def gradient():
        i = fresh()
        estimate("hl", board, xs[i], ts[i], loss, {"delta_v": DELTA_V})

    t["gradient"] = fastest_us(gradient, n_fresh, repeats)

    x, topo = xs[0], board.topology
    op = board.measure(x)
    labels = loss._kernel_labels(op.y, ts[0])
    _, n, q, m = est._check_shapes(topo, op)
    val, w_hat, eps, w_both = np.empty(batch), np.empty((batch, q)), np.empty((batch, 1)), np.empty((2 * batch, q))
    y, w0, e0, u0 = est._c(op.y), est._c(op.w), est._c(op.e), est._c(op.u)
    d_sparse = loss._d_sparse
    t["loss and drives"] = fastest_us(lambda: cross_entropy_drive_kernel(
        y, labels, *d_sparse, 1e5, w0, DELTA_V, val, w_hat, eps, w_both), 3000, repeats)
    w_plus = np.ascontiguousarray(w_both[:batch])
    held_x, held = board._last
    solver = board._uncoupled._solver
    nodal = solver.nodal
    e, mu, on, no_z = np.empty((batch, n)), np.empty((batch, n)), np.empty((batch, n), bool), np.empty((0, n))
    t["+ phase solve"] = fastest_us(lambda: diagonal_phases_kernel(
        held.b_src, w_plus, nodal.g_out, nodal.diag, solver._s_float, solver._h_float, 1.0, e, no_z, mu, on),
        3000, repeats)
    t["held-input check"] = fastest_us(lambda: repeats_of(x, held_x), 3000, repeats)
    plus = board.measure(x, w_plus)
    plan = topo._response_plan()
    out, e_hat, w_resp, changed = np.empty(m), np.empty((batch, n)), np.empty((batch, q)), np.empty(batch, bool)
    e1, w1, on1, on0 = est._c(plus.e), est._c(plus.w), est._c(plus.on, est._BOOL), est._c(op.on, est._BOOL)
    no_values = np.empty(0)  # (no entries: the kernel leaves v·v̂ out)
    t["+ phase kernel"] = fastest_us(lambda: hl_plus_phase_kernel(
        e1, w1, e0, w0, on1, on0, eps[:, 0], u0, plan[3], plan[4], e_hat, w_resp, changed, no_values), 3000, repeats)
    t["v·v̂"] = fastest_us(lambda: batch_response_product(u0, e0, w0, e_hat, w_resp, 1.0 / batch, plan[3], plan[4], out),
                          3000, repeats)
    mirrored = [estimate("hl", board, xs[i], ts[i], loss, {"delta_v": DELTA_V}).stats["mirror_measured"] > 0
                for i in range(n_fresh)]
    t["− phase fraction"] = float(np.mean(mirrored))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    from hil.threads import configure_blas_threads

    configure_blas_threads()
    for batch in args.batches:
        t = floor(args.inputs, batch, args.repeats)
        pieces = ("loss and drives", "+ phase solve", "held-input check", "+ phase kernel", "v·v̂")
        compiled = sum(t[k] for k in pieces)
        fwd, grad = t["forward"], t["gradient"]
        print(f"batch {batch}, {args.inputs} inputs: forward {fwd:.1f} µs, gradient {grad:.1f} µs, ratio {grad / fwd:.2f}")
        print("  compiled pieces (µs): " + ", ".join(f"{k} {t[k]:.1f}" for k in pieces)
              + f"; a − phase was measured in {100 * t['− phase fraction']:.0f} % of the gradients")
        print(f"  compiled floor: {(fwd + compiled) / fwd:.2f} forwards; the rest (Python between the calls, colder "
              f"caches): {(grad - fwd - compiled) / fwd:.2f} forwards")


if __name__ == "__main__":
    main()
