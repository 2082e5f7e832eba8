"""Wall time of one bench-iris training step through the emulated bench's sockets.

    PYTHONPATH=$PWD python benchmarks/emulated_iris_step.py [--repeats 3]

Runs, against the emulated iris bench (eight B2902A, DAQ970A, 707B, 2601B; devices modelled), one
``hl`` gradient of a batch of 8 (the measurement of one training step) and one write-verify
programming of a ±2 µS update of every device, and prints the median wall time of each, the
world solves they needed and the virtual bench time they took, with the world's certified
shortcuts on and off (off: a full world solve for every compliance check and every loaded DMM
reading), and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from hil.boards.bench_factory import make_instrument_board
from hil.config import load_yaml
from hil.emulate.bench import EmulatedBench
from hil.train.data import load_dataset
from hil.train.estimators import estimate
from hil.train.losses import Loss
from hil.train.settings import parse_settings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    s = parse_settings(load_yaml("configs/bench-iris.yaml"), "bench-iris")
    spec = s.instrument_board
    data = load_dataset("iris", s.input_scale_v)
    x, t = data.train.x[:8], data.train.y[:8]
    rows = {f"{name}, shortcuts {mode}": [] for mode in ("on", "off")
            for name in ("measure (hl, batch 8)", "program (85 devices, ±2 µS)")}
    with EmulatedBench(spec.bench, time_mode="virtual", programming=spec.programming, devices=s.devices,
                       g_bounds=(s.g_min, s.g_max), round_trips=True) as eb:
        board = make_instrument_board(spec, (s.g_min, s.g_max), resources=eb.resources, clock=lambda: eb.clock.now_s)
        with board:
            loss = Loss(s.loss, s.gain_per_a, board.topology.differential)
            g = board.read_conductances()
            rng = np.random.default_rng(0)
            for _ in range(args.repeats):
                for mode in ("on", "off"):
                    eb.world.fast_paths = mode == "on"
                    for name, work in (("measure (hl, batch 8)",
                                        lambda: estimate("hl", board, x, t, loss, s.estimator_options)),
                                       ("program (85 devices, ±2 µS)", lambda: board.program(
                                           np.clip(g + rng.uniform(-2e-6, 2e-6, g.size), s.g_min, s.g_max),
                                           rel_tol=0.0))):
                        solves, v0, w0 = eb.world.solve_count, eb.clock.now_s, time.perf_counter()
                        work()
                        rows[f"{name}, shortcuts {mode}"].append(
                            (time.perf_counter() - w0, eb.world.solve_count - solves, eb.clock.now_s - v0))
    print(f"{'bench-iris, one step':44s} {'wall s':>8s} {'solves':>7s} {'bench s':>8s}")
    med = {}
    for name, vals in rows.items():
        med[name] = wall, solves, bench = tuple(statistics.median(v[k] for v in vals) for k in range(3))
        print(f"{name:44s} {wall:8.3f} {solves:7.0f} {bench:8.2f}")
    for name in ("measure (hl, batch 8)", "program (85 devices, ±2 µS)"):
        print(f"wall ratio off/on, {name}: {med[name + ', shortcuts off'][0] / med[name + ', shortcuts on'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
