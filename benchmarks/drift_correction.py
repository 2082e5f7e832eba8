"""What drift correction repairs: port readings after the devices drift, against the readings right
after they were written.

Usage: nice -n 10 python benchmarks/drift_correction.py [CONFIG] [--nu-std 0 0.02] [--seconds 1e5]
(default ``sim-digits-mismatch`` with ``drift`` ν = 0.05, t0 = 20 s; about 10 s per ν spread).

For each ν spread: calibrate the config's board (with that drift) into a temporary folder, then,
for every ``board.calibration.drift`` mode (none, global, per_output, re-measured every board
call), build a fresh board, wrap it with the calibration as ``hil train`` does, write its
conductances through the wrapper (as a training step does; the drift reference is read right
after the write), read ``--samples`` training samples (the readings just after the write), let
``--seconds`` pass and read them again.  Printed: the rms change of the port currents against the
readings just after the write, relative to their rms, and what the best single factor (one for all
ports, and one per port) fitted on those same samples would leave (a bound no reference-pattern
correction can beat).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hil, not an installed one

import hil.api as hil  # noqa: E402


def relative_rms(y: np.ndarray, ref: np.ndarray) -> float:
    """rms(y − ref) / rms(ref)."""
    return float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref ** 2)))


def run(config: str, nu_std: float, seconds: float, samples: int) -> dict:
    """The relative rms changes (see the module doc) for one ν spread."""
    drift = f"board.devices.drift={{drift_nu_mean: 0.05, drift_nu_std: {nu_std}, t0: 20.0}}"
    out = {}
    with tempfile.TemporaryDirectory() as root:
        base = [drift, f"board.calibration.dir={root}"]
        cfg = hil.load_config(config, overrides=base)
        hil.calibrate(hil.build_board(cfg), cfg)
        x = hil.load_data(cfg).train.x[:samples]
        for mode in ("none", "global", "per_output"):
            cfg = hil.load_config(config, overrides=base + [f"board.calibration.drift={mode}",
                                                            "board.calibration.drift_every=1"])
            board, _ = hil.apply_calibration(hil.build_board(cfg), cfg)
            board.program(board.read_conductances())
            written = board.measure(x).y
            board.elapse(seconds)
            later = board.measure(x).y
            out[mode] = relative_rms(later, written)
            if mode == "none":
                one = float(np.sum(written * later) / np.sum(later * later))
                each = np.sum(written * later, axis=0) / np.sum(later * later, axis=0)
                out["best single factor"] = relative_rms(one * later, written)
                out["best factor per port"] = relative_rms(each * later, written)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="sim-digits-mismatch")
    ap.add_argument("--nu-std", type=float, nargs="+", default=[0.0, 0.02])
    ap.add_argument("--seconds", type=float, default=1e5)
    ap.add_argument("--samples", type=int, default=128)
    args = ap.parse_args()
    print(f"{args.config}, drift ν 0.05 ± spread, t0 20 s; {args.samples} training samples read right after the "
          f"write and {args.seconds:g} s later; rms change of the port currents relative to their rms")
    for s in args.nu_std:
        r = run(args.config, s, args.seconds, args.samples)
        print(f"ν spread {s:g}: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in r.items()))


if __name__ == "__main__":
    main()
