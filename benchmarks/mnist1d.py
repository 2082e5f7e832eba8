"""MNIST-1D results table: the ideal-diode network and its linear control trained through the
board, beside digital baselines on the same split.

Usage: python benchmarks/mnist1d.py [--seeds 0 1 2] [--workers N] [--cluster ADDRESS]
                                    [--output sweeps/mnist1d-benchmark] [--skip-baselines]
                                    [--configs sim-mnist1d sim-mnist1d-linear sim-mnist1d-cascade]

* hil rows: ``configs/sim-mnist1d.yaml``, ``configs/sim-mnist1d-linear.yaml`` (the same
  network with ``element: {model: none}``) and ``configs/sim-mnist1d-cascade.yaml`` (a 2-stage
  buffered cascade) over the seeds, run by ``hil sweep`` (so a second invocation reuses
  finished runs; delete the output directory to start afresh).  The one-stage networks measure
  every gradient with the ``hl`` estimator through the board protocol, the cascade with the
  estimator its config names; the reported accuracy is the network after the last epoch on the
  1000 test samples.  ``--configs`` runs a subset of these rows.
* Digital baselines (scikit-learn) on the same 4000/1000 split and the same input scaling
  (per-feature standardisation on the training set): logistic regression and ReLU MLPs with
  one and two hidden layers.  Their hyper-parameters (regularisation, widths) are chosen on
  the same 20 % validation split of the training set that chose the hil settings
  (``benchmarks/mnist1d-tuning.yaml``); the test set is used only for the final numbers.

Prints a Markdown table: test accuracy mean and min over the seeds, each seed, seconds per
epoch and the fraction of hidden diodes conducting.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

# this file's name would shadow the mnist1d package when run as a script: drop its folder from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np

from hil.sweep import parse_sweep, run_sweep
from hil.train.data import DataSpec, load_data

CONFIGS = [("hil, ideal diodes (sim-mnist1d)", "sim-mnist1d"),
           ("hil, same network, diodes removed (sim-mnist1d-linear)", "sim-mnist1d-linear"),
           ("hil, 2-stage buffered cascade, ideal diodes (sim-mnist1d-cascade)", "sim-mnist1d-cascade")]


def hil_rows(seeds: list[int], output: str, workers: int | None, cluster: str | None,
             configs: list[str]) -> list[tuple]:
    chosen = [(label, c) for label, c in CONFIGS if c in configs]
    spec = parse_sweep({"name": "mnist1d-benchmark", "grid": {"config": [c for _, c in chosen]},
                        "seeds": seeds, "set": {"output.plots": False}, "metric": "test_acc", "output": output})
    outcome = run_sweep(spec, workers=workers, cluster=cluster)
    rows = []
    for label, config in chosen:
        runs = [r for r in outcome.rows if r["config"] == config and r["status"] == "finished"]
        if len(runs) != len(seeds):
            raise SystemExit(f"{config}: {len(seeds) - len(runs)} run(s) did not finish; see {outcome.directory}")
        accs = [float(r["test_acc"]) for r in sorted(runs, key=lambda r: r["seed"])]
        spe = float(np.mean([float(r["seconds_per_epoch"]) for r in runs]))
        on = float(np.mean([float(r["conduction_fraction"]) for r in runs]))
        rows.append((label, accs, f"{spe:.2f}", f"{100 * on:.0f} %", "shipped config"))
    return rows


def _fit(make, x, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        m = make().fit(x, y)
        return m, time.perf_counter() - t0


def baseline_rows(seeds: list[int]) -> list[tuple]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    val = load_data(DataSpec("mnist1d", scaling="standardize", validation_fraction=0.2))
    full = load_data(DataSpec("mnist1d", scaling="standardize"))
    families = [
        ("logistic regression (lbfgs)", lambda p, s: LogisticRegression(C=p["C"], max_iter=5000),
         [{"C": c} for c in (0.01, 0.1, 1.0, 10.0)]),
        ("MLP, 1 hidden ReLU layer (adam)",
         lambda p, s: MLPClassifier(p["hidden"], alpha=p["alpha"], max_iter=300, random_state=s),
         [{"hidden": (h,), "alpha": a} for h, a in itertools.product((100, 256, 512), (1e-4, 1e-1))]),
        ("MLP, 2 hidden ReLU layers (adam)",
         lambda p, s: MLPClassifier(p["hidden"], alpha=p["alpha"], max_iter=300, random_state=s),
         [{"hidden": (h, h), "alpha": a} for h, a in itertools.product((100, 256), (1e-4, 1e-1))]),
    ]
    rows = []
    for label, make, grid in families:
        scores = [_fit(lambda: make(p, seeds[0]), val.train.x, val.train.y)[0].score(val.val.x, val.val.y)
                  for p in grid]
        best = grid[int(np.argmax(scores))]
        accs, per_epoch = [], []
        for s in seeds:
            m, t = _fit(lambda: make(best, s), full.train.x, full.train.y)
            accs.append(m.score(full.test.x, full.test.y))
            per_epoch.append(t / max(int(np.max(m.n_iter_)), 1))
        chosen = ", ".join(f"{k}={v}" for k, v in best.items())
        rows.append((f"digital {label}", accs, f"{np.mean(per_epoch):.3f}", "–",
                     f"{chosen} (val {100 * max(scores):.1f} %)"))
        print(f"done: {label}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=None, help="local processes for the hil runs (default: cores)")
    ap.add_argument("--cluster", default=None, help="Dask scheduler address for the hil runs")
    ap.add_argument("--output", default="sweeps/mnist1d-benchmark", help="sweep directory of the hil runs")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--configs", nargs="*", default=[c for _, c in CONFIGS], choices=[c for _, c in CONFIGS],
                    help="hil rows to run (default: all)")
    args = ap.parse_args()
    rows = hil_rows(args.seeds, args.output, args.workers, args.cluster, args.configs) if args.configs else []
    if not args.skip_baselines:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # small matrices: one BLAS thread is fastest on a shared machine
            rows += baseline_rows(args.seeds)
    n = len(args.seeds)
    print()
    print(f"| model | test acc. mean / min ({n} seeds) | per seed | s per epoch | diodes conducting | "
          f"hyper-parameters |")
    print("|---|---|---|---|---|---|")
    for label, accs, spe, on, hp in rows:
        per = " / ".join(f"{100 * a:.1f}" for a in accs)
        print(f"| {label} | {100 * np.mean(accs):.2f} / {100 * np.min(accs):.2f} % | {per} | {spe} | {on} | {hp} |")
    print(f"\nseeds {args.seeds}; MNIST-1D standard split 4000 train / 1000 test (one error = 0.1 %)")


if __name__ == "__main__":
    main()
