"""Time and memory per training epoch against the number of hidden nodes (digits, ideal diodes).

Usage: python benchmarks/scaling.py [--sizes 64 128 256 512 1024 2048 4096] [--epochs 2]
                                    [--plot docs/scaling.png]

Each width runs in its own process (so peak memory is that width's alone): the
configs/sim-digits.yaml network widened to H hidden nodes (gain scaled by 64/H so the
logits keep their size) trains ``--epochs`` epochs through the board protocol (`hl`
estimator); we record the median seconds per epoch and the peak resident memory of the
process (ru_maxrss) and its growth over the memory after imports.  The script prints a
table, fits time ∝ H^k and memory ∝ H^k on the widths ≥ 256 by least squares in log–log,
and draws both against H on log axes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def one(n_hidden: int, epochs: int) -> dict:
    """Train one width in this process; returns seconds per epoch and memory figures (MiB)."""
    from hil.boards.factory import make_board
    from hil.config import apply_overrides, load_yaml
    from hil.threads import configure_blas_threads
    from hil.train.data import load_dataset
    from hil.train.loop import Trainer
    from hil.train.rundir import RunDir
    from hil.train.settings import parse_settings

    configure_blas_threads()
    load_dataset("digits", 1.0)  # imports (scikit-learn) count in the baseline, not the growth
    base = _rss_mib()
    raw = apply_overrides(load_yaml("sim-digits"), [f"board.circuit.hidden.count={n_hidden}",
                                                   f"train.gain_per_a={1e5 * 64 / n_hidden}",
                                                   f"train.epochs={epochs}"])
    with tempfile.TemporaryDirectory() as root:
        raw["output"] = {"runs_dir": root, "plots": False}
        raw["train"]["evaluate_test"] = False
        s = parse_settings(raw)
        board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
        data = load_dataset(s.dataset, s.input_scale_v)
        tr = Trainer(board, s, data, RunDir.create(root, s.name), progress=False)
        times = [tr._epoch()["epoch_time_s"] for _ in range(epochs)]
    peak = _rss_mib()
    return {"hidden": n_hidden, "epoch_s": float(np.median(times)), "peak_mib": peak, "growth_mib": peak - base,
            "conductances": int(board.topology.n_conductances)}


def fit_exponent(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def plot(rows: list[dict], path: Path, k_time: float, k_mem: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = np.array([r["hidden"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].loglog(h, [r["epoch_s"] for r in rows], "o-", base=2)
    axes[0].set_title(f"time per epoch (fit ∝ H^{k_time:.2f} for H ≥ 256)")
    axes[0].set_ylabel("seconds per epoch")
    axes[1].loglog(h, [r["growth_mib"] for r in rows], "o-", base=2, label="growth over imports")
    axes[1].loglog(h, [r["peak_mib"] for r in rows], "s--", base=2, label="peak resident")
    axes[1].set_title(f"memory (growth fit ∝ H^{k_mem:.2f} for H ≥ 256)")
    axes[1].set_ylabel("MiB")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("hidden nodes H")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("digits, ideal diodes, batch 32, hl gradient through the board, 1 BLAS thread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--plot", default="", help="write the plot to this PNG")
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.epochs)))
        return 0
    rows = []
    print(f"{'hidden':>6} {'conductances':>12} {'s/epoch':>9} {'peak RSS MiB':>13} {'growth MiB':>11}")
    for h in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(h), "--epochs", str(args.epochs)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{h:>6} {r['conductances']:>12} {r['epoch_s']:>9.3f} {r['peak_mib']:>13.0f} {r['growth_mib']:>11.0f}",
              flush=True)
    big = [r for r in rows if r["hidden"] >= 256]
    if len(big) >= 2:
        k_t = fit_exponent([r["hidden"] for r in big], [r["epoch_s"] for r in big])
        k_m = fit_exponent([r["hidden"] for r in big], [max(r["growth_mib"], 1e-3) for r in big])
        print(f"fitted growth for H >= 256: time ∝ H^{k_t:.2f}, memory growth ∝ H^{k_m:.2f}")
        if args.plot:
            plot(rows, Path(args.plot), k_t, k_m)
            print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
