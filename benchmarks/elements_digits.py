"""Train the digits network with each node element (3 seeds) and print a Markdown table.

    PYTHONPATH=$PWD python benchmarks/elements_digits.py [--epochs 20] [--seeds 0 1 2] [--workers 2]
                                                         [--output sweeps/elements-digits] [--only MODEL …]

Every element of the registry is trained on the same digits task through the board protocol
(``hl`` gradient), 20 % of the training set held out as validation; the accuracies are those of
the network after the last epoch, on validation and on the test set, mean and min over the seeds.

* Piecewise-linear elements (and the linear control ``none``) start from the shipped
  ``sim-digits`` config (1 V inputs and rails; its optimizer settings were chosen on a 20 %
  validation split with ideal diodes) with ``hidden.element`` swapped.
* The Shockley elements start from ``sim-digits-shockley`` (10 V inputs and rails so that the
  junctions conduct, conductances 10x lower; its settings were chosen the same way).

Element parameters are set a priori, not tuned.  The runs go through ``hil sweep`` (two sweeps,
one per base config, under ``--output``), so a second invocation reuses finished runs.
"""

from __future__ import annotations

import argparse

import numpy as np

from hil.sweep import parse_sweep, run_sweep

# (label, base config, hidden.element)
ELEMENTS = [
    ("`ideal` (ReLU)", "sim-digits", {"model": "ideal"}),
    ("`leaky` (r_s 200 Ω: leaky ReLU)", "sim-digits", {"model": "leaky", "r_s": 200.0}),
    ("`clip` [0, 0.3 V] (clipped ReLU)", "sim-digits", {"model": "clip", "v_lo": 0.0, "v_hi": 0.3}),
    ("`antiparallel` (±0.3 V: hard-tanh)", "sim-digits", {"model": "antiparallel", "v_b": 0.3}),
    ("`linear` (1 mS to ground)", "sim-digits", {"model": "linear", "g_lin": 1.0e-3}),
    ("`none` (linear control)", "sim-digits", {"model": "none"}),
    ("`shockley` 1N4148 (diode ReLU), 10 V", "sim-digits-shockley",
     {"model": "shockley", "preset": "1N4148", "temperature_c": 27}),
    ("`antiparallel_shockley` 1N4148, 10 V", "sim-digits-shockley",
     {"model": "antiparallel_shockley", "preset": "1N4148", "temperature_c": 27}),
]


def run(epochs: int, seeds: list[int], workers: int | None, output: str, only: list[str] | None = None) -> list[tuple]:
    chosen = [e for e in ELEMENTS if not only or e[2]["model"] in only]
    rows = []
    for base in dict.fromkeys(c for _, c, _ in chosen):
        elements = [(label, el) for label, c, el in chosen if c == base]
        spec = parse_sweep({
            "name": f"elements-{base}", "config": base,
            "set": {"data.validation_fraction": 0.2, "train.epochs": epochs, "output.plots": False},
            "grid": {"board.circuit.hidden.element": [el for _, el in elements]},
            "seeds": seeds, "metric": "val_acc", "output": f"{output}/{base}"})
        outcome = run_sweep(spec, workers=workers)
        for label, el in elements:
            runs = [r for r in outcome.rows if r["status"] == "finished"
                    and r["board.circuit.hidden.element"] in (el, str(el))]
            if len(runs) != len(seeds):
                raise SystemExit(f"{label}: {len(seeds) - len(runs)} run(s) did not finish; see {outcome.directory}")
            runs.sort(key=lambda r: int(r["seed"]))
            rows.append((label, base, [float(r["val_acc"]) for r in runs], [float(r["test_acc"]) for r in runs],
                         float(np.mean([float(r["seconds_per_epoch"]) for r in runs])),
                         float(np.mean([float(r["conduction_fraction"]) for r in runs]))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: cores)")
    ap.add_argument("--output", default="sweeps/elements-digits", help="sweep directory")
    ap.add_argument("--only", nargs="*", default=None, metavar="MODEL",
                    help="train only these element models (e.g. --only shockley antiparallel_shockley)")
    args = ap.parse_args()
    rows = run(args.epochs, args.seeds, args.workers, args.output, args.only)
    n = len(args.seeds)
    print(f"\n| element | base config | validation mean / min ({n} seeds) | test mean / min | test per seed | "
          f"s per epoch | nodes conducting |")
    print("|---|---|---|---|---|---|---|")
    for label, base, val, test, spe, on in rows:
        per = " / ".join(f"{100 * a:.1f}" for a in test)
        print(f"| {label} | {base} | {100 * np.mean(val):.2f} / {100 * min(val):.2f} % | "
              f"{100 * np.mean(test):.2f} / {100 * min(test):.2f} % | {per} | {spe:.2f} | {100 * on:.0f} % |")
    print(f"\n{args.epochs} epochs, seeds {args.seeds}, 20 % of the training set held out for validation")


if __name__ == "__main__":
    main()
