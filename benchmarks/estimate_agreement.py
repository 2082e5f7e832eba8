"""``hil estimate`` against the emulated bench's virtual clock, per epoch.

    PYTHONPATH=$PWD python benchmarks/estimate_agreement.py bench-iris --epochs 3
    PYTHONPATH=$PWD python benchmarks/estimate_agreement.py bench-xor --epochs 8

Rehearses CONFIG for a few epochs with ``hil train CONFIG --emulate`` (write-verify pulses through
the sockets, virtual bench clock), then prints the bench time per epoch the emulated bench's clock
read (``bench_time_s`` in metrics.csv, mean over the epochs) next to ``hil estimate``'s prediction
under three programming assumptions: the built-in default (3 pulses on every trainable device per
step), the config's ``board.programming.expected`` and ``--from-run`` of this very rehearsal, and
the pulses per device and touched fraction the rehearsal measured (to copy into the config).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a bench training config (path or shipped name)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs to rehearse (default 3)")
    args = ap.parse_args()

    from hil.config import apply_overrides, load_yaml
    from hil.estimate_cli import DEFAULT_PULSES_PER_DEVICE, DEFAULT_TOUCHED_FRACTION, estimate_run, \
        programming_from_run
    from hil.train.settings import parse_settings

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "hil", "train", args.config, "--emulate", "-q",
                        "--set", f"train.epochs={args.epochs}", "--set", "output.plots=false",
                        "--runs-dir", tmp], check=True, env=env, cwd=ROOT)
        run = next(Path(tmp).iterdir())
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        clock = sum(float(r["bench_time_s"]) for r in rows) / len(rows)
        settings = parse_settings(apply_overrides(load_yaml(args.config), [f"train.epochs={args.epochs}"]),
                                  args.config)
        measured = programming_from_run(str(run), settings)
    per_epoch = ", ".join(f"{float(r['bench_time_s']):.1f}" for r in rows)
    print(f"{args.config}: {len(rows)} epochs on the emulated bench, virtual clock {clock:.1f} s per epoch "
          f"(per epoch: {per_epoch} s)")
    print(f"  measured programming: {measured[0]:.3g} pulses per reprogrammed device, "
          f"{measured[1]:.3g} of the trainable devices per step")
    cases = [("built-in default", (DEFAULT_PULSES_PER_DEVICE, DEFAULT_TOUCHED_FRACTION)),
             ("board.programming.expected", (None, None)), ("--from-run (this rehearsal)", measured)]
    for label, (pulses, touched) in cases:
        r = estimate_run(settings, pulses, touched)
        if label.startswith("board") and r["assumptions"]["source"] == "default":
            print(f"  {label:30s} not declared in {args.config}")
            continue
        epoch = r["epoch_measure_s"] + r["epoch_program_s"]
        print(f"  {label:30s} {epoch:7.1f} s per epoch (measure {r['epoch_measure_s']:.1f} s, program "
              f"{r['epoch_program_s']:.1f} s): {100 * (epoch / clock - 1):+.1f} % against the clock")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
