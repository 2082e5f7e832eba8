"""Why ex-situ transfer loses what it loses on ``sim-digits-mismatch``: one family at a time.

Usage: nice -n 10 python benchmarks/exsitu_ablation.py [--seeds 0 1 2] [--epochs 40]

Per seed: train the ideal board in situ (``hl``), then write its conductances with
write-verify (2 %, mean of 4 reads) to non-ideal boards and evaluate there, with the reading
offsets of a zero-reading calibration subtracted (what a user without in-situ training has):

* ``all``: the full ``sim-digits-mismatch`` board;
* ``all but <family>``: that family switched off (what it costs = its removal's gain);
* ``only <family>``: an otherwise ideal board with that one family on.

Test accuracy on the held-out split; nothing here is tuned on it.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np

from hil.boards.calibrated import CalibratedBoard
from hil.boards.factory import make_board
from hil.calibrate.offsets import zero_readings
from hil.calibrate.settings import CalibrationSettings
from hil.calibrate.store import Calibration
from hil.config import apply_overrides, load_yaml
from hil.train.data import load_dataset
from hil.train.loop import Trainer, evaluate
from hil.train.losses import Loss
from hil.train.rundir import RunDir
from hil.train.settings import parse_settings

CONFIG = "sim-digits-mismatch"
FAMILIES = ["dtod", "diode_spread", "dac", "adc_current", "adc_voltage", "wires", "faults"]


def offsets_only_calibration(board) -> Calibration:
    """A calibration holding only zero-reading offsets (and no fault map)."""
    off = zero_readings(board)
    m = board.topology.n_conductances
    return Calibration(path=None, meta={}, arrays={
        "offset_y": off.y, "offset_i_src": off.i_src, "offset_e": off.e,
        "fault_code": np.zeros(m, np.int8), "fault_fixed_s": np.zeros(m)})


def ex_situ(devices: dict, raw: dict, g_ideal: np.ndarray, data) -> float:
    r = copy.deepcopy(raw)
    r["board"]["devices"] = devices
    s = parse_settings(r)
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)
    cs = CalibrationSettings(write_verify_rel_tol=0.02, stuck_mask=False, offsets=True)
    ex = CalibratedBoard(board, offsets_only_calibration(board), cs)
    ex.program(g_ideal)
    return evaluate(ex, Loss(s.loss, s.gain_per_a, board.topology.differential), data.test)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    base = load_yaml(CONFIG)
    data = load_dataset("digits", float(base["data"]["input_scale_v"]), 0.0)  # the config's operating point
    table: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            raw = apply_overrides(copy.deepcopy(base), [f"seed={seed}", f"board.circuit.seed={seed}",
                                                        f"board.devices.seed={seed}", f"train.epochs={args.epochs}",
                                                        "output.plots=false"])
            dev = raw["board"]["devices"]
            ideal_raw = copy.deepcopy(raw)
            ideal_raw["board"].pop("devices")
            s = parse_settings(copy.deepcopy(ideal_raw))
            board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
            tr = Trainer(board, s, data, RunDir.create(root, s.name), progress=False)
            tr.fit()
            g = tr._g_cmd
            rows = {"ideal": evaluate(board, Loss(s.loss, s.gain_per_a, board.topology.differential), data.test)[0],
                    "all": ex_situ(dev, raw, g, data)}
            for fam in FAMILIES:
                d = copy.deepcopy(dev)
                d[fam] = {**d.get(fam, {}), "enabled": False}
                rows[f"all but {fam}"] = ex_situ(d, raw, g, data)
                only = {"preset": "ideal", "seed": seed, fam: {"enabled": True}}
                from hil.devices.presets import PRESETS
                only[fam] = {**PRESETS["discrete-bench"].get(fam, {}), **dev.get(fam, {}), "enabled": True}
                rows[f"only {fam}"] = ex_situ(only, raw, g, data)
            for k, v in rows.items():
                table.setdefault(k, []).append(v)
            print(f"seed {seed}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in rows.items()), flush=True)
    print("\n| board | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | Δ vs ideal |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    ideal = np.mean(table["ideal"])
    for k, v in table.items():
        print(f"| {k} | " + " | ".join(f"{100 * x:.2f} %" for x in v) + f" | {100 * np.mean(v):.2f} % | {100 * (np.mean(v) - ideal):+.2f} |")


if __name__ == "__main__":
    main()
