"""Epoch time of the digits network on the simulated board against digital and physical baselines.

Usage: python benchmarks/epoch.py [--sizes 64 256 1024] [--repeats 3] [--only ideal,coupled,shockley] [--cpu]
       python benchmarks/epoch.py --memory 1024     # peak numpy memory, coupled vs uncoupled

For every hidden width H, one run interleaves (repetition by repetition, so machine load
hits every variant alike) one training epoch of

  mlp       the numpy one-hidden-layer ReLU network (benchmarks/numpy_mlp.py), 64 → H → 10,
            Adam, the same batches (batch 32) — the digital baseline;
  ideal     configs/sim-digits.yaml widened to H hidden nodes, uncoupled ideal diodes, every
            gradient measured by the `hl` estimator through the board protocol (two
            or three measurements per batch, flips detected, KKT certificate checked);
  coupled   the same with sparse hidden↔hidden coupling of degree 4 (g_hh trained too);
  shockley  configs/sim-digits-shockley.yaml widened to H, next to
  shock-ideal the same network with ideal diodes;

and prints the median epoch time of each and the target ratios:
  ideal / mlp ≤ 3,  coupled / ideal ≤ 5,  shockley / shock-ideal ≤ 3.
Epoch time is the training part of an epoch (all batches: measure, gradient, optimizer,
programming), as recorded by the trainer in metrics.csv.  ``--cpu`` reads this process's CPU
time instead of the wall clock for every variant (the trainer's clock and the MLP's alike),
which other users of a shared machine distort much less.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from numpy_mlp import NumpyMLP  # noqa: E402

from hil.boards.factory import make_board  # noqa: E402
from hil.config import apply_overrides, load_yaml  # noqa: E402
from hil.train.data import load_dataset  # noqa: E402
from hil.train.loop import Trainer  # noqa: E402
from hil.train.rundir import RunDir  # noqa: E402
from hil.train.settings import parse_settings  # noqa: E402

COUPLED = ["board.circuit.conductances.g_hh={random: {degree: 4, low: 1.0e-6, high: 1.0e-5}}",
           "train.trainable=[g_in, g_hh, g_out]"]
VARIANTS = {
    "ideal": ("sim-digits", []),
    "coupled": ("sim-digits", COUPLED),
    "shockley": ("sim-digits-shockley", []),
    "shock-ideal": ("sim-digits-shockley", ["board.circuit.hidden.element={model: ideal}"]),
}


def make_trainer(config: str, overrides: list[str], n_hidden: int, root: str) -> Trainer:
    """A trainer for ``config`` widened to ``n_hidden`` hidden nodes (no plots, no test evaluation)."""
    raw = apply_overrides(load_yaml(config), [f"board.circuit.hidden.count={n_hidden}", *overrides])
    raw["output"] = {"runs_dir": root, "plots": False}
    raw["train"]["evaluate_test"] = False
    s = parse_settings(raw)
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
    data = load_dataset(s.dataset, s.input_scale_v, s.validation_fraction)
    return Trainer(board, s, data, RunDir.create(root, f"{s.name}-{n_hidden}"), progress=False)


def use_cpu_clock() -> None:
    """Make the trainer and the MLP runner time with this process's CPU time (``--cpu``)."""
    import time
    import types

    import hil.train.loop as loop

    loop.time = types.SimpleNamespace(perf_counter=time.process_time)
    MLPRunner.clock = staticmethod(time.process_time)


class MLPRunner:
    """The numpy baseline on the digits split used by the configs (pixels / 16), batch 32."""

    clock = staticmethod(__import__("time").perf_counter)

    def __init__(self, n_hidden: int, batch_size: int = 32, seed: int = 0):
        self._time = self.clock
        self.data = load_dataset("digits", 1.0)
        self.net = NumpyMLP(64, n_hidden, 10, seed)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def epoch(self) -> float:
        perm = self.rng.permutation(len(self.data.train.y))
        t0 = self._time()
        self.net.epoch(self.data.train.x, self.data.train.y, self.batch_size, perm)
        return self._time() - t0


def bench_size(n_hidden: int, variants: list[str], repeats: int) -> dict[str, float]:
    """Median epoch time (s) of each variant and of the numpy MLP, interleaved repetitions."""
    times: dict[str, list[float]] = {"mlp": []}
    with tempfile.TemporaryDirectory() as root:
        trainers = {v: make_trainer(*VARIANTS[v], n_hidden, root) for v in variants}
        mlp = MLPRunner(n_hidden)
        mlp.epoch()  # warm-up (first-call costs of numpy/BLAS)
        for tr in trainers.values():
            tr.s.epochs = 10**6
        for _ in range(repeats):
            times["mlp"].append(mlp.epoch())
            for v, tr in trainers.items():
                times.setdefault(v, []).append(tr._epoch()["epoch_time_s"])
    return {k: float(np.median(t)) for k, t in times.items()}


def peak_memory(n_hidden: int) -> dict[str, float]:
    """Peak numpy/Python allocation (bytes, tracemalloc) over building and one epoch, per variant."""
    out = {}
    for v in ("ideal", "coupled"):  # first-use imports, compiled-code loading and data, not counted
        with tempfile.TemporaryDirectory() as root:
            make_trainer(*VARIANTS[v], 8, root)._epoch()
    for v in ("ideal", "coupled"):
        with tempfile.TemporaryDirectory() as root:
            tracemalloc.start()
            tr = make_trainer(*VARIANTS[v], n_hidden, root)
            tr._epoch()
            out[v] = float(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            del tr
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="ideal,coupled,shockley", help="comma list of: ideal, coupled, shockley")
    ap.add_argument("--memory", type=int, default=0, metavar="H", help="only compare peak memory at H hidden nodes")
    ap.add_argument("--cpu", action="store_true", help="time with this process's CPU time instead of wall time")
    args = ap.parse_args(argv)
    if args.cpu:
        use_cpu_clock()
    from hil.threads import blas_summary, configure_blas_threads

    configure_blas_threads()
    print(f"BLAS: {blas_summary()}")
    if args.memory:
        mem = peak_memory(args.memory)
        print(f"peak traced memory at {args.memory} hidden nodes (build + one epoch): "
              f"uncoupled {mem['ideal'] / 2**20:.1f} MiB, coupled {mem['coupled'] / 2**20:.1f} MiB, "
              f"ratio {mem['coupled'] / mem['ideal']:.2f} (target ≤ 1.5)")
        return 0
    chosen = [v.strip() for v in args.only.split(",") if v.strip()]
    variants = ["ideal"] + (["coupled"] if "coupled" in chosen else [])
    if "shockley" in chosen:
        variants += ["shockley", "shock-ideal"]
    print(f"digits, batch 32 (Shockley config: batch 16), median of {args.repeats} epochs, seconds per epoch "
          f"({'CPU' if args.cpu else 'wall'} clock)")
    hdr = f"{'hidden':>6} " + " ".join(f"{v:>11}" for v in ["mlp", *variants])
    hdr += f" {'ideal/mlp':>9}" + (f" {'coupled/ideal':>13}" if "coupled" in variants else "")
    hdr += f" {'shockley/ideal':>14}" if "shockley" in variants else ""
    print(hdr)
    for n in args.sizes:
        t = bench_size(n, variants, args.repeats)
        line = f"{n:>6} " + " ".join(f"{t[v]:>11.4f}" for v in ["mlp", *variants])
        line += f" {t['ideal'] / t['mlp']:>9.2f}"
        if "coupled" in t:
            line += f" {t['coupled'] / t['ideal']:>13.2f}"
        if "shockley" in t:
            line += f" {t['shockley'] / t['shock-ideal']:>14.2f}"
        print(line, flush=True)
    print("targets: ideal/mlp ≤ 3, coupled/ideal ≤ 5, shockley/ideal ≤ 3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
