"""Train the digits network with each node element and print accuracies and the activation.

    PYTHONPATH=$PWD python benchmarks/elements_digits.py [--epochs N] [--seeds 0,1,2]

Every run starts from the shipped `sim-digits` config (its optimizer settings were chosen on a
20 % validation split with ideal diodes) with the element swapped; 20 % of the training set is
held out as validation, the test set is reported as is.  Element parameters are set a priori
(not tuned).  Slow elements (smooth Newton) take minutes per epoch on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

import hil.api as api

ELEMENTS = {
    "ideal": "{model: ideal}",
    "leaky (r_s 200 Ω)": "{model: leaky, r_s: 200.0}",
    "clip [0, 0.3 V]": "{model: clip, v_lo: 0.0, v_hi: 0.3}",
    "antiparallel (±0.3 V)": "{model: antiparallel, v_b: 0.3}",
    "linear control (none)": "{model: none}",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="", help="comma-separated subset of element labels (prefix match)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"| element | validation (mean, min) | test (mean, min) | epochs | seeds |")
    print("|---|---|---|---|---|")
    for label, element in ELEMENTS.items():
        if args.only and not any(label.startswith(o) for o in args.only.split(",")):
            continue
        val, test = [], []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = api.train("sim-digits", overrides=[f"board.circuit.hidden.element={element}",
                                                       "data.validation_fraction=0.2", f"seed={seed}",
                                                       f"board.circuit.seed={seed}", f"train.epochs={args.epochs}",
                                                       "output.plots=false"], runs_dir=tmp)
            val.append(r.val_acc)
            test.append(r.test_acc)
        print(f"| {label} | {100 * np.mean(val):.2f} / {100 * min(val):.2f} % | {100 * np.mean(test):.2f} / "
              f"{100 * min(test):.2f} % | {args.epochs} | {len(seeds)} |", flush=True)


if __name__ == "__main__":
    main()
