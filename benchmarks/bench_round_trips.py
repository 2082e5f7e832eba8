"""Instrument exchanges per `hl` training step on the instrument board, by batch size and network size.

    PYTHONPATH=$PWD python benchmarks/bench_round_trips.py [--emulated]

For batch sizes 1, 8, 32 and two networks (xor-sized: 6 sources, 8 hidden nodes, 4 outputs;
iris-sized: 10 sources, 16 hidden nodes, 6 outputs) it runs one `hl` step (operating point and
the ± drive of every output port in one sweep) and prints the number of instrument exchanges
(queries, uploads and trigger commands, each counted once, as a VISA round trip would be):

* ``triggered``: every instrument has the triggered list-sweep/scan capability (in-process
  protocol-level bench): one upload per channel, one start, one read-back per instrument and one
  error-queue check per instrument — O(instruments × sweeps), independent of the batch size;
* ``stepwise``: the fallback with the plain protocol (set every level, read every port, one scan
  per point) — O(points × channels), for contrast.

With ``--emulated`` it also counts, through real pyvisa-py sockets, the lines (and queries) the
emulators received for one step: the stepwise path on ``scpi-xor`` (B = 1, 8) and the triggered
path on ``scpi-xor-triggered`` (B2902A list sweeps and DAQ970A scans stepped by one bench trigger
line; B = 1, 8, 32) and ``scpi-xor-2450-triggered`` (the same with two 2450 followers), where queries stay constant and lines grow only by one list-upload message
per 100 points and SMU channel, and on ``tsp-xor-triggered`` (2602B list sweeps paced by the first
SMU's trigger timer on digital I/O line 1; B = 1, 8, 32), where every instrument receives one
script per sweep (its lines grow only by one list-building line per 100 points and channel).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hil.bench.inprocess import InProcessBench
from hil.boards.instrument import BoardTiming, BoardWiring, InstrumentBoard, Port
from hil.boards.simulated import SimulatedBoard
from hil.circuit.build import build_circuit
from hil.drivers.limits import SourceLimits
from hil.train.estimators import estimate
from hil.train.losses import Loss

NETWORKS = {
    "xor-sized (6 src, 8 hidden, 4 out)": {"count": 2, "hidden": 8, "outputs": 4},
    "iris-sized (10 src, 16 hidden, 6 out)": {"count": 4, "hidden": 16, "outputs": 6},
}
LIMITS = SourceLimits(v_min=-1.5, v_max=1.5, i_compliance_a=1e-2, max_step_v=0.5, max_slew_v_per_s=1e4)


def circuit_for(n_in: int, n_hidden: int, n_out: int):
    return build_circuit({
        "name": "bench", "seed": 1,
        "inputs": {"count": n_in, "inverted": True, "rails": {"vb_p": 1.0, "vb_n": -1.0}},
        "hidden": {"count": n_hidden, "element": {"model": "ideal"}},
        "outputs": {"count": n_out, "voltage": 0.0, "differential": True},
        "conductances": {"g_in": {"uniform": [1e-5, 1e-4]}, "g_hh": "none", "g_leak": 1e-8,
                         "g_out": {"uniform": [1e-5, 1e-4]}},
    }, "circuit")


def board_for(c, mode: str):
    wires = {"sources": {}, "outputs": {}, "hidden": {}}
    for k, node in enumerate(list(c.source_names) + list(c.output_names)):
        wires["sources" if node in c.source_names else "outputs"][node] = (f"smu{k // 2}", "ab"[k % 2])
    for k, node in enumerate(c.hidden_names):
        wires["hidden"][node] = ("daq", str(101 + k))
    smus = {i for kind in ("sources", "outputs") for i, _ in wires[kind].values()}
    bench = InProcessBench(c, wires, {n: LIMITS for n in smus})
    wiring = BoardWiring(**{k: {n: Port(*v) for n, v in wires[k].items()} for k in wires})
    steps = {f"{i}.{ch}": LIMITS.max_step_v for kind in ("sources", "outputs") for i, ch in wires[kind].values()}
    topo = SimulatedBoard(c).topology
    return InstrumentBoard(topo, bench.instruments, wiring, BoardTiming(acquisition=mode), steps), bench, topo


def one_step(board, topo, B: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (B, topo.n_inputs))
    t = rng.integers(0, topo.differential.shape[0], B)
    estimate("hl", board, x, t, Loss("cross_entropy", 1e5, topo.differential), {"delta_v": 1e-3, "max_retries": 0})


def in_process_table() -> None:
    print(f"{'network':40s} {'B':>3s} {'instruments':>11s} {'triggered':>10s} {'stepwise':>9s}")
    for label, size in NETWORKS.items():
        c = circuit_for(size["count"], size["hidden"], size["outputs"])
        for B in (1, 8, 32):
            counts = {}
            for mode in ("triggered", "stepwise"):
                board, bench, topo = board_for(c, mode)
                board.connect()
                before = bench.exchanges
                one_step(board, topo, B)
                counts[mode] = bench.exchanges - before
                board.close()
            print(f"{label:40s} {B:3d} {len(bench.instruments):11d} {counts['triggered']:10d} {counts['stepwise']:9d}")


def emulated_table() -> None:
    from hil.boards.bench_config import InstrumentBoardSpec
    from hil.boards.bench_factory import make_instrument_board
    from hil.emulate.bench import EmulatedBench

    print("\nthrough pyvisa-py sockets (emulated benches, ideal readings so the world solves stay fast):")
    print("  scpi-xor: 2450s on two outputs, without trigger_line, so the stepwise path; scpi-xor-triggered: "
          "B2902As + DAQ970A on one trigger line; scpi-xor-2450-triggered: scpi-xor with the 2450s following on "
          "digital I/O line 1; tsp-xor-triggered: 2602Bs + DAQ970A on digital I/O line 1")
    print(f"{'bench':20s} {'path':>10s} {'B':>3s} {'points':>7s} {'lines':>7s} {'queries':>8s} {'per instrument (lines/queries)'}")
    for name, mode, sizes in (("scpi-xor", "stepwise", (1, 8)), ("scpi-xor-triggered", "triggered", (1, 8, 32)),
                              ("scpi-xor-2450-triggered", "triggered", (1, 8, 32)),
                              ("tsp-xor-triggered", "triggered", (1, 8, 32))):
        acq = {"acquisition": mode, "settle_s": 0.0, "ramp_points": True, "max_points": 2000, "noise_floor_v": 5e-6}
        for B in sizes:
            with EmulatedBench(name, time_mode="virtual", readings="exact") as eb:
                spec = InstrumentBoardSpec(eb.loopback_bench, acq, {"scheme": "none"})
                board = make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s)
                with board:
                    board.connect()
                    eb.settle()
                    before = {n: len(e.transcript.received()) for n, e in eb.emulators.items()}
                    points0 = board.stats.points
                    one_step(board, board.topology, B)
                    eb.settle()
                    got = {n: e.transcript.received()[before[n]:] for n, e in eb.emulators.items()}
                    points = board.stats.points - points0
                lines = sum(len(v) for v in got.values())
                queries = sum(sum(_is_query(x) for x in v) for v in got.values())
                per = " ".join(f"{n}:{len(v)}/{sum(_is_query(x) for x in v)}" for n, v in got.items())
                print(f"{name:20s} {mode:>10s} {B:3d} {points:7d} {lines:7d} {queries:8d} {per}")


def _is_query(line: str) -> bool:
    """A line that asks for a reply: SCPI ``…?`` or TSP ``print(…)`` / ``printbuffer(…)``."""
    return "?" in line or line.lstrip().startswith("print")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emulated", action="store_true", help="also count through the emulated scpi-xor benches")
    args = p.parse_args(argv)
    in_process_table()
    if args.emulated:
        emulated_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
