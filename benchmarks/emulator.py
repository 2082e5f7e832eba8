"""Loopback figures of the emulated bench, through real pyvisa-py and the real drivers.

On the shipped ``scpi-xor`` bench (sim-xor array, 6 B2902A/2450 SMUs, DAQ970A), median of
``--repeats`` runs, printed as a table:

* ``*IDN?`` round trip (mean of 200 queries on one connection), ms;
* ``:SOUR1:VOLT <v>`` + DAQ ``READ?`` of 8 channels (a level on one instrument read through
  another: the world re-solved), ms;
* a 100-point two-channel B2900 list sweep through ``KeysightB2900.list_sweep``: wall time, and
  the bench time the virtual clock modelled for it (1 PLC at 50 Hz, 1 ms acquire delay);
* connecting every driver of the bench, ms.

Usage::

    python benchmarks/emulator.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hil.bench.instruments import make_driver
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench


def _one_run() -> dict[str, float]:
    out: dict[str, float] = {}
    with EmulatedBench("scpi-xor", time_mode="virtual") as bench, ResourceManagers() as rms:
        loop = bench.loopback_bench
        t = time.perf_counter()
        drivers = {n: make_driver(s, rms, sleep=lambda _s: None) for n, s in loop.instruments.items()}
        for d in drivers.values():
            d.connect()
        out["connect 7 drivers (ms)"] = (time.perf_counter() - t) * 1e3
        res = drivers["smu_x"].transport
        t = time.perf_counter()
        for _ in range(200):
            res.query("*IDN?")
        out["*IDN? round trip (ms)"] = (time.perf_counter() - t) / 200 * 1e3
        smu, daq = drivers["smu_x"], drivers["daq"]
        smu.output("1", True)
        t = time.perf_counter()
        for k in range(20):
            smu.set_voltage("1", 0.1 * (k % 2))
            daq.read_scan()
        out["set level + 8-channel DAQ scan (ms)"] = (time.perf_counter() - t) / 20 * 1e3
        sweep = drivers["smu_y01"]
        sweep.output("1", True)
        sweep.output("2", True)
        levels = 0.05 * np.sin(np.linspace(0, 2 * np.pi, 100))
        t_bench = bench.clock.now_s
        t = time.perf_counter()
        sweep.list_sweep({"1": levels, "2": -levels}, 0.0)
        out["100-point 2-channel sweep, wall (ms)"] = (time.perf_counter() - t) * 1e3
        out["same sweep, modelled bench time (ms)"] = (bench.clock.now_s - t_bench) * 1e3
        for d in drivers.values():
            d.safe_shutdown()
            d.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = [_one_run() for _ in range(args.repeats)]
    width = max(len(k) for k in runs[0])
    print(f"{'figure'.ljust(width)}  median of {args.repeats}")
    for key in runs[0]:
        print(f"{key.ljust(width)}  {statistics.median(r[key] for r in runs):10.3f}")


if __name__ == "__main__":
    main()
