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

With ``--emulated`` it also runs the stepwise path through real pyvisa-py sockets against the
emulated ``scpi-xor`` bench and counts the lines the emulators received (B = 1 and 8).
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

    acq = {"acquisition": "stepwise", "settle_s": 0.0, "ramp_points": True, "max_points": 2000, "noise_floor_v": 5e-6}
    print("\nthrough pyvisa-py sockets, emulated scpi-xor bench (stepwise: the drivers have no triggered sweeps yet)")
    print(f"{'B':>3s} {'lines received per hl step':>28s}")
    for B in (1, 8):
        with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
            spec = InstrumentBoardSpec(eb.loopback_bench, acq, {"scheme": "none"})
            board = make_instrument_board(spec, (1e-8, 1e-4), clock=lambda: eb.clock.now_s)
            with board:
                board.connect()
                count = lambda: sum(len(emu.transcript.received()) for emu in eb.emulators.values())
                before = count()
                one_step(board, board.topology, B)
                print(f"{B:3d} {count() - before:28d}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emulated", action="store_true", help="also count through the emulated scpi-xor bench")
    args = p.parse_args(argv)
    in_process_table()
    if args.emulated:
        emulated_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
