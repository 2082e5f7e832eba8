"""Iris on the simulated board and on the instrument board (same network, same seed), side by side.

    PYTHONPATH=$PWD python benchmarks/bench_iris.py [--epochs N] [--noise-v V] [--noise-a A]

The instrument board runs over the in-process protocol-level bench (``hil.bench.inprocess``:
triggered list sweeps, one circuit, seeded Gaussian reading noise — by default 3 µV per node
reading, as a DAQ970A on its 10 V range at 1 NPLC, and 2 nA per current reading, as an SMU on its
1 mA range), with the bench-iris wiring and the acquisition settings of ``configs/bench-iris.yaml``;
conductances are written exactly (the programming path is tested separately). Prints train and
test accuracy of both and the difference in points.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from hil.bench.inprocess import InProcessBench
from hil.boards.bench_factory import build_instrument_board
from hil.boards.factory import make_board
from hil.config import load_yaml
from hil.train.data import load_dataset
from hil.train.loop import Trainer
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings


def train(board, settings, data) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(tmp, settings.name)
        t0 = time.perf_counter()
        with board:
            r = Trainer(board, settings, data, run, progress=False).fit()
        return r.train_acc, r.test_acc, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--noise-v", type=float, default=3e-6, help="node-voltage reading noise, V")
    p.add_argument("--noise-a", type=float, default=2e-9, help="current reading noise, A")
    args = p.parse_args(argv)
    sim_settings = parse_settings(load_yaml("configs/sim-iris.yaml"), "sim-iris")
    bench_settings = parse_settings(load_yaml("configs/bench-iris.yaml"), "bench-iris")
    for s in (sim_settings, bench_settings):
        s.epochs, s.plots = args.epochs, False
    data = load_dataset("iris", sim_settings.input_scale_v)
    sim = make_board("simulated", sim_settings.circuit, sim_settings.g_min, sim_settings.g_max)
    spec = bench_settings.instrument_board
    w = spec.bench.wiring
    smus = {i for group in (w.sources, w.outputs) for i, _ in group.values()}
    limits = {i: next(iter(spec.bench.instruments[i].channels.values())).smu_config().limits for i in smus}
    fake = InProcessBench(spec.bench.circuit, {"sources": w.sources, "outputs": w.outputs, "hidden": w.hidden}, limits,
                          seed=spec.bench.seed, current_noise_a=args.noise_a, voltage_noise_v=args.noise_v)
    bounds = (bench_settings.g_min, bench_settings.g_max)
    board = build_instrument_board(spec, fake.instruments, bounds, rehearsal_world=fake.world)
    rows = [("simulated board", *train(sim, sim_settings, data)),
            (f"instrument board (in-process, noise {args.noise_v:g} V / {args.noise_a:g} A)",
             *train(board, bench_settings, data))]
    print(f"iris, {args.epochs} epochs, estimator hl, same network and seed")
    print(f"{'board':58s} {'train':>7s} {'test':>7s} {'wall s':>7s}")
    for name, tr, te, wall in rows:
        print(f"{name:58s} {100 * tr:6.2f}% {100 * te:6.2f}% {wall:7.1f}")
    print(f"difference (test, points): {100 * (rows[1][2] - rows[0][2]):+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
