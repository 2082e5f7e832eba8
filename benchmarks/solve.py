"""Solver speed versus ``ngspice -b``, measured side by side in one run.

Network (physics.md §8.2): 32 input sources (±5 V), dense input conductances 10–100 µS,
one bias resistor (10–100 µS) per hidden node to a −1 V rail, sparse hidden↔hidden
coupling (average degree 4, 10–100 µS), 10 output ports at 0 V with dense 10–100 µS
readout conductances; one diode per hidden node, anode at ground.  Diodes: ideal, or
Shockley with I_s = 1e-14 A, n = 1, no series resistance (solver in ``spice_compat``
mode so the ngspice answers can be checked at the same time).

Per input vector, in a batch of 64: our time = (build the solver + batched solve of all
64 vectors) / 64, best of ``--repeats``; ngspice time = mean wall time over the first few
vectors of the same batch, both with deck writing and output parsing ("ngspice/vector")
and of the ``ngspice -b`` subprocess alone ("subprocess").  The speed-up is the
conservative one: subprocess time / our time.  Also reported: max |ΔV| between
the two on those vectors (V) and the mean number of conducting diodes.

Usage::

    python benchmarks/solve.py                 # 100, 300, 1000 hidden nodes
    python benchmarks/solve.py --sizes 100 300 --spice-vectors 2
    python benchmarks/solve.py --profile 1000  # cProfile of our batched Shockley solve
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.circuit.coupling import random_coupling  # noqa: E402
from hil.circuit.elements import DiodeBank  # noqa: E402
from hil.circuit.model import Circuit, make_sources  # noqa: E402
from hil.circuit.solve import EquilibriumSolver  # noqa: E402
from hil.circuit.spice import ngspice_executable, run_ngspice, write_netlist  # noqa: E402

N_INPUTS = 32
N_OUTPUTS = 10
BATCH = 64
#: Targets at 1000 hidden nodes: ngspice time / our time.
TARGETS = {"shockley": 50.0, "ideal": 100.0}


def benchmark_circuit(n_hidden: int, diode: str, seed: int = 0) -> Circuit:
    """The §8.2 benchmark network with ``n_hidden`` hidden nodes (conductances in S)."""
    rng = np.random.default_rng(seed)
    sources = make_sources(N_INPUTS, False, [("vb", -1.0)])
    g_in = rng.uniform(10e-6, 100e-6, (n_hidden, N_INPUTS + 1))
    g_hh = random_coupling(n_hidden, 2, 10e-6, 100e-6, rng)
    g_out = rng.uniform(10e-6, 100e-6, (N_OUTPUTS, n_hidden))
    diodes = DiodeBank(
        kind=diode, orientation=np.ones(n_hidden, int), v_ref=np.zeros(n_hidden),
        i_s=np.full(n_hidden, 1e-14), n=np.ones(n_hidden), r_s=np.zeros(n_hidden), spice_compat=True,
    )
    return Circuit(
        sources=sources, hidden_names=tuple(f"h{k}" for k in range(n_hidden)),
        output_names=tuple(f"y{o}" for o in range(N_OUTPUTS)), g_in=g_in, g_hh=g_hh,
        g_leak=np.zeros(n_hidden), g_out=g_out, diodes=diodes, output_voltage=np.zeros(N_OUTPUTS),
        name=f"bench-{n_hidden}-{diode}",
    ).validate()


def time_ours(circuit: Circuit, u: np.ndarray, repeats: int) -> tuple[float, object]:
    """Best-of-``repeats`` wall time (s) of building the solver and solving the whole batch."""
    best, state = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = EquilibriumSolver(circuit).solve(u)
        best = min(best, time.perf_counter() - t0)
    return best, state


def time_ngspice(circuit: Circuit, u: np.ndarray, state, n_vectors: int) -> tuple[float, float, float]:
    """Mean per-vector ngspice time (s), mean subprocess-only time (s), max |ΔV| (V)."""
    total = sub = 0.0
    dv = 0.0
    for b in range(n_vectors):
        t0 = time.perf_counter()
        res = run_ngspice(write_netlist(circuit, u=u[b]))
        total += time.perf_counter() - t0
        sub += res.elapsed_s
        dv = max(dv, float(np.max(np.abs(res.hidden_voltages(circuit) - state.e[b]))))
    return total / n_vectors, sub / n_vectors, dv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--diodes", nargs="+", default=["ideal", "shockley"], choices=["ideal", "shockley"])
    ap.add_argument("--spice-vectors", type=int, default=0, help="vectors timed with ngspice (default 8/4/3 by size)")
    ap.add_argument("--repeats", type=int, default=2, help="repeats of our batched solve (best is reported)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="profile our Shockley and ideal solves at N nodes and exit")
    args = ap.parse_args(argv)

    if args.profile:
        for diode in args.diodes:
            c = benchmark_circuit(args.profile, diode)
            u = c.source_voltages(np.random.default_rng(1).uniform(-5, 5, (BATCH, N_INPUTS)))
            prof = cProfile.Profile()
            prof.enable()
            EquilibriumSolver(c).solve(u)
            prof.disable()
            print(f"--- profile: {diode}, {args.profile} hidden nodes, batch {BATCH} ---")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
        return 0

    have_spice = ngspice_executable() is not None
    if not have_spice:
        print("ngspice not found: only our solver is timed")
    header = (f"{'hidden':>6} {'diode':>8} {'resistors':>9} {'ours/vector':>12} {'method':>16} "
              f"{'ON/n':>6} {'ngspice/vector':>15} {'subprocess':>12} {'speed-up':>9} {'target':>7} {'max|dV| V':>10}")
    print(f"batch {BATCH}, {N_INPUTS} inputs (±5 V), bias rail −1 V, {N_OUTPUTS} outputs")
    print(header)
    print("-" * len(header))
    status = 0
    for n in args.sizes:
        for diode in args.diodes:
            c = benchmark_circuit(n, diode)
            x = np.random.default_rng(1).uniform(-5.0, 5.0, (BATCH, N_INPUTS))
            u = c.source_voltages(x)
            t_ours, state = time_ours(c, u, args.repeats)
            per_ours = t_ours / BATCH
            n_res = int(np.count_nonzero(c.conductance_vector()))
            on = float(state.on.sum(axis=1).mean()) / n
            line = (f"{n:>6} {diode:>8} {n_res:>9} {per_ours * 1e3:>9.3f} ms {state.report.method:>16} {on:>6.2f}")
            if have_spice:
                k = args.spice_vectors or (8 if n <= 100 else 4 if n <= 300 else 3)
                t_sp, t_sub, dv = time_ngspice(c, u, state, k)
                ratio = t_sub / per_ours  # conservative: ngspice subprocess only, no deck I/O
                target = TARGETS[diode] if n >= 1000 else None
                tgt = f"{target:>6.0f}x" if target else f"{'':>7}"
                line += f" {t_sp * 1e3:>12.1f} ms {t_sub * 1e3:>9.1f} ms {ratio:>8.1f}x {tgt} {dv:>10.1e}"
                if target and ratio < target:
                    line += "  BELOW TARGET"
                    status = 1
            print(line, flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
