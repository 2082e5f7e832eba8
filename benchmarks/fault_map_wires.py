"""Fault-map precision and recall against wire resistance (simulator truth known).

Usage: nice -n 10 python benchmarks/fault_map_wires.py [--board small|digits] [--ohms 0 0.005 0.02 0.1 0.3 1]

``small``: discrete-bench readings, 16 hidden nodes, 40 inputs, 4 outputs, 1 % faulty, 4 repeats
(the board of tests/devices/test_calibration.py).  ``digits``: the board of
``configs/sim-digits-mismatch.yaml`` with its wire resistance replaced, 8 repeats (about 10
minutes per level on a loaded machine).  Prints one line per level: faulty, flagged, precision,
recall and the number of unresolved devices.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hil.boards.factory import make_board
from hil.boards.nonideal import NonIdealBoard
from hil.calibrate.faults import characterise
from hil.calibrate.offsets import zero_readings
from hil.circuit.generate import random_circuit
from hil.config import load_yaml
from hil.devices import parse_devices
from hil.train.settings import parse_settings


def small_board(r_wire: float) -> NonIdealBoard:
    dev = {"preset": "discrete-bench", "faults": {"p_stuck_on": 0.005, "p_stuck_off": 0.004, "p_open": 0.001}, "seed": 2}
    if r_wire:
        dev["wires"] = {"r_wire_row": r_wire, "r_wire_col": r_wire}
    c = random_circuit(16, n_inputs=40, n_outputs=4, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4), diode="ideal",
                       g_leak_s=1e-6)
    return NonIdealBoard(c, 1e-8, 1e-4, parse_devices(dev))


def digits_board(r_wire: float):
    raw = load_yaml("sim-digits-mismatch")
    raw["board"]["devices"]["wires"] = {"r_wire_row": r_wire, "r_wire_col": r_wire} if r_wire else {"enabled": False}
    s = parse_settings(raw)
    return make_board(s.backend, s.circuit, s.g_min, s.g_max, devices=s.devices)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", choices=("small", "digits"), default="small")
    ap.add_argument("--ohms", type=float, nargs="+", default=[0.0, 0.005, 0.02, 0.1, 0.3, 1.0],
                    help="wire resistance per cell segment, ohm")
    args = ap.parse_args()
    for r in args.ohms:
        board = small_board(r) if args.board == "small" else digits_board(r)
        t0 = time.perf_counter()
        fmap = characterise(board, zero_readings(board), repeats=4 if args.board == "small" else 8, amplitude_v=0.2)
        truth = board.model.fault_codes != 0
        tp = int(np.sum(truth & fmap.faulty))
        print(f"{args.board} board, {r:g} ohm per segment: {truth.sum()} faulty, {fmap.faulty.sum()} flagged, "
              f"precision {100 * tp / max(fmap.faulty.sum(), 1):.1f} %, recall {100 * tp / truth.sum():.1f} %, "
              f"{fmap.unresolved} unresolved ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
