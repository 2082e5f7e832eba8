"""Robustness of in-situ training to device non-idealities (digits), one run.

Usage: nice -n 10 python benchmarks/robustness.py [--seeds 0 1 2] [--epochs 40]
           [--sweep-epochs 15] [--skip-sweeps] [--skip-rram] [--plot docs/robustness.png]

Rows, per seed s (training seed, initial conductances and board instance ``board.devices.seed``):

1. ideal: the config with ``board.devices`` removed, trained in situ (reference);
2. ex-situ: the ideal run's conductances written to the non-ideal board with write-verify
   (2 % tolerance, read-back averaged over 4 reads) and the calibrated reading offsets
   subtracted, evaluated there;
3. in-situ + calibration + compensation: ``hil calibrate`` procedure on the non-ideal board,
   then training (``hl``) through the compensation wrapper (offsets, stuck mask);
4. in-situ without compensation: training on the raw non-ideal board.

Configs: ``sim-digits-mismatch`` (diode turn-on spread, wires, 1 % stuck, reading offsets) and
the same network with ``preset: rram-crossbar``.  Sweeps (seed 0, ``--sweep-epochs``): one
non-ideality at a time on an otherwise ideal board, in situ (no compensation) vs ex situ (write-
verify), plotted to ``--plot``.  Test accuracy on the held-out 25 % split; never used to tune.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np

from hil.boards.calibrated import CalibratedBoard
from hil.boards.factory import make_board
from hil.calibrate import store
from hil.calibrate.run import calibrate
from hil.calibrate.settings import CalibrationSettings, parse_calibration
from hil.config import apply_overrides, load_yaml
from hil.train.data import load_dataset
from hil.train.loop import Trainer, evaluate
from hil.train.losses import Loss
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings

CONFIG = "sim-digits-mismatch"


def settings_for(raw: dict):
    return parse_settings(copy.deepcopy(raw))


def build(s):
    return make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)


def train(board, s, data, root: str) -> tuple[float, np.ndarray]:
    rd = RunDir.create(root, s.name)
    tr = Trainer(board, s, data, rd, progress=False)
    tr.fit()
    return evaluate(board, Loss(s.loss, s.gain_per_a, board.topology.differential), data.test)[0], tr._g_cmd


def accuracy(board, s, data) -> float:
    return evaluate(board, Loss(s.loss, s.gain_per_a, board.topology.differential), data.test)[0]


def run_seed(raw_base: dict, seed: int, epochs: int, root: str, data, ideal_g=None) -> dict:
    raw = apply_overrides(copy.deepcopy(raw_base), [f"seed={seed}", f"board.circuit.seed={seed}",
                                                    f"board.devices.seed={seed}", f"train.epochs={epochs}",
                                                    "output.plots=false"])
    s_dev = settings_for(raw)
    ideal_raw = copy.deepcopy(raw)
    ideal_raw["board"].pop("devices")
    s_ideal = settings_for(ideal_raw)
    out = {}
    t0 = time.perf_counter()
    if ideal_g is None:
        out["ideal"], ideal_g = train(build(s_ideal), s_ideal, data, root)
        out["ideal_g"] = ideal_g
    cs = parse_calibration(s_dev.calibration)
    cs.dir = f"{root}/cal"
    board = build(s_dev)
    name = store.board_id(s_dev.name, s_dev.circuit, s_dev.devices)
    calibrate(board, cs, name, 27.0, "ideal", progress=lambda m: None)
    cal = store.newest(cs.dir, name)
    # ex situ: write-verify the ideal conductances, subtract reading offsets, evaluate
    wv = copy.copy(cs)
    wv.write_verify_rel_tol, wv.stuck_mask = 0.02, False
    ex_board = CalibratedBoard(build(s_dev), cal, wv)
    ex_board.program(ideal_g)
    out["ex-situ (write-verify)"] = accuracy(ex_board, s_dev, data)
    out["write_verify"] = ex_board.last_write_verify
    # in situ with calibration + compensation
    out["in-situ + cal + comp"], _ = train(CalibratedBoard(build(s_dev), cal, cs), s_dev, data, root)
    # in situ, no compensation
    out["in-situ, no comp"], _ = train(build(s_dev), s_dev, data, root)
    out["seconds"] = time.perf_counter() - t0
    return out


def sweep(raw_base: dict, family: str, key: str, values, epochs: int, root: str, data, ideal_g) -> list[tuple]:
    rows = []
    for v in values:
        raw = apply_overrides(copy.deepcopy(raw_base), [f"train.epochs={epochs}", "output.plots=false"])
        raw["board"]["devices"] = {"preset": "ideal", "seed": 0, family: {key: v}}
        rows.append(_one(raw, v, root, data, ideal_g, f"{family}.{key}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--sweep-epochs", type=int, default=10)
    ap.add_argument("--rram-epochs", type=int, default=10)
    ap.add_argument("--skip-sweeps", action="store_true")
    ap.add_argument("--skip-rram", action="store_true")
    ap.add_argument("--plot", default="docs/robustness.png")
    ap.add_argument("--sweep-in-situ", action=argparse.BooleanOptionalAction, default=True,
                    help="also train in situ at every sweep point (slow); --no-sweep-in-situ: ex situ only")
    ap.add_argument("--parts", nargs="+", default=["mismatch", "rram", "sweeps"], choices=["mismatch", "rram", "sweeps"],
                    help="which parts to run (default all)")
    args = ap.parse_args()
    IN_SITU["on"] = args.sweep_in_situ
    data = load_dataset("digits", 1.0, 0.0)
    raw_base = load_yaml(CONFIG)
    presets = [("sim-digits-mismatch", raw_base)] if "mismatch" in args.parts else []
    if not args.skip_rram and "rram" in args.parts:
        rr = copy.deepcopy(raw_base)
        rr["board"]["devices"] = {"preset": "rram-crossbar"}
        presets.append(("rram-crossbar", rr))
    rows_order = ["ideal", "ex-situ (write-verify)", "in-situ + cal + comp", "in-situ, no comp"]
    with tempfile.TemporaryDirectory() as root:
        ideal_cache: dict[int, tuple] = {}
        for label, raw in presets:
            res = []
            for seed in (args.seeds if label == "sim-digits-mismatch" else args.seeds[:1]):
                ep = args.epochs if label == "sim-digits-mismatch" else args.rram_epochs
                r = run_seed(raw, seed, ep, root, data, ideal_g=None if ep != args.epochs else ideal_cache.get(seed, (None, None))[1])
                if "ideal" in r and ep == args.epochs:
                    ideal_cache[seed] = (r["ideal"], r.pop("ideal_g"))
                r["ideal"] = r.get("ideal", ideal_cache.get(seed, (np.nan, None))[0])
                res.append(r)
                print(f"{label} seed {seed}: " + ", ".join(f"{k} {100 * r[k]:.2f} %" for k in rows_order)
                      + f" (write-verify {r['write_verify']}, {r['seconds']:.0f} s)", flush=True)
            print(f"\n### {label} ({len(res)} seed(s), {ep} epochs)\n")
            print("| row | test acc. mean | min | Δ vs ideal (mean) |\n|---|---|---|---|")
            base = np.mean([r["ideal"] for r in res])
            for k in rows_order:
                v = np.array([r[k] for r in res])
                print(f"| {k} | {100 * v.mean():.2f} % | {100 * v.min():.2f} % | {100 * (v.mean() - base):+.2f} |")
            print(flush=True)
        if args.skip_sweeps or "sweeps" not in args.parts:
            return
        # ideal conductances of seed 0 for the ex-situ arm of the sweeps
        raw0 = apply_overrides(copy.deepcopy(raw_base), ["train.epochs=%d" % args.epochs, "output.plots=false"])
        raw0["board"].pop("devices")
        s0 = settings_for(raw0)
        g_ideal = ideal_cache[0][1] if 0 in ideal_cache else train(build(s0), s0, data, root)[1]
        sweeps = {
            "programming noise (relative σ)": ("prog_noise", "prog_noise_scale", [0.0, 0.02, 0.05, 0.1]),
            "stuck devices (fraction, half on / half off)": ("faults", "p_stuck_on", [0.0, 0.01, 0.02, 0.05]),
            "wire resistance (Ω per cell)": ("wires", "r_wire_row", [0.001, 0.01, 0.1, 1.0]),
            "diode turn-on spread (V)": ("diode_spread", "v_ref_dtod", [0.0, 0.02, 0.05, 0.1]),
        }
        results = {}
        for title, (fam, key, vals) in sweeps.items():
            print(f"sweep: {title}", flush=True)
            if fam == "faults":
                results[title] = []
                for v in vals:
                    r = sweep_faults(raw_base, v, args.sweep_epochs, root, data, g_ideal)
                    results[title].append(r)
            elif fam == "wires":
                results[title] = sweep_wires(raw_base, vals, args.sweep_epochs, root, data, g_ideal)
            else:
                results[title] = sweep(raw_base, fam, key, vals, args.sweep_epochs, root, data, g_ideal)
        plot(results, args.plot)
        print(f"wrote {args.plot}")


def sweep_faults(raw_base, p_total, epochs, root, data, g_ideal):
    raw = apply_overrides(copy.deepcopy(raw_base), [f"train.epochs={epochs}", "output.plots=false"])
    raw["board"]["devices"] = {"preset": "ideal", "seed": 0, "faults": {"p_stuck_on": p_total / 2, "p_stuck_off": p_total / 2}}
    return _one(raw, p_total, root, data, g_ideal, "faults")


def sweep_wires(raw_base, vals, epochs, root, data, g_ideal):
    out = []
    for v in vals:
        raw = apply_overrides(copy.deepcopy(raw_base), [f"train.epochs={epochs}", "output.plots=false"])
        raw["board"]["devices"] = {"preset": "ideal", "seed": 0, "wires": {"r_wire_row": v, "r_wire_col": v}}
        out.append(_one(raw, v, root, data, g_ideal, "wires"))
    return out


IN_SITU = {"on": True}


def _one(raw, v, root, data, g_ideal, label):
    s = settings_for(raw)
    board = build(s)
    cs = CalibrationSettings(write_verify_rel_tol=0.02, stuck_mask=False, offsets=False)
    fake = store.Calibration(path=None, meta={}, arrays={"fault_code": np.zeros(board.topology.n_conductances, np.int8),
                                                         "fault_fixed_s": np.zeros(board.topology.n_conductances)})
    ex = CalibratedBoard(board, fake, cs)
    ex.program(g_ideal)
    ex_acc = accuracy(ex, s, data)
    in_acc = train(build(s), s, data, root)[0] if IN_SITU["on"] else float("nan")
    print(f"  sweep {label}={v}: ex-situ {100 * ex_acc:.2f} %, in-situ {100 * in_acc:.2f} %", flush=True)
    return (v, ex_acc, in_acc)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6))
    for ax, (title, rows) in zip(np.atleast_1d(axes), results.items()):
        v = [r[0] for r in rows]
        if not all(np.isnan(r[2]) for r in rows):
            ax.plot(v, [100 * r[2] for r in rows], "o-", label="in situ (hl)")
        ax.plot(v, [100 * r[1] for r in rows], "s--", label="ex situ (write-verify)")
        if "wire" in title:
            ax.set_xscale("log")
        ax.set(title=title, xlabel=title.split("(")[-1].rstrip(")"), ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
