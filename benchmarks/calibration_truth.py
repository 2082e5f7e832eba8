"""``hil calibrate``'s estimates on a shipped simulated config against the simulator's truth.

Usage: nice -n 10 python benchmarks/calibration_truth.py [CONFIG] [--set KEY=VALUE …]
(default ``sim-digits-mismatch``; ``sim-digits-rram`` takes about a minute).

Runs the whole calibration (:func:`hil.calibrate.run.calibrate`, board protocol only) into a
temporary folder, then reads the truth the calibration never sees (device conductances, fault
codes, reading-chain offsets and gains, diode references) and prints one line per quantity:
conductance errors of the devices that are not stuck, channel offsets in units of the
calibration's own reading σ, channel gains (currents relative to their mean inverse gain, the
calibration's declared reference), fault-map precision / recall and the disjoint device counts,
and the diode fit (Shockley elements) or clamp levels (piecewise-linear elements).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from hil.boards.factory import make_board
from hil.calibrate import store
from hil.calibrate.run import calibrate
from hil.calibrate.settings import parse_calibration
from hil.config import apply_overrides, load_yaml
from hil.train.settings import parse_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="sim-digits-mismatch")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    s = parse_settings(apply_overrides(load_yaml(args.config), args.set), args.config)
    cs = parse_calibration(s.calibration)
    board = make_board(s.backend, s.circuit, s.g_min, s.g_max, s.instrument_board, devices=s.devices)
    kind = ((s.circuit or {}).get("hidden", {}).get("element", {}) or {}).get("model", "ideal")
    with tempfile.TemporaryDirectory() as root:
        cs.dir = root
        path, summary = calibrate(board, cs, "truth", 27.0, kind, progress=lambda _: None)
        a = store.load(path).arrays
    topo, model = board.topology, board.model
    truth_g = model.seen(board.true_conductances(), 0.0, read=False)  # no read-noise draw
    stuck = model.fault_codes != 0
    print(f"{args.config}: {summary['seconds']:.1f} s, {topo.n_conductances} conductances")
    for name in ("g_in", "g_out"):
        sl = topo.groups[name]
        ok = ~stuck[sl] & (truth_g[sl] > 0)
        rel = np.abs(a["conductance_s"][sl] / truth_g[sl] - 1)[ok]
        absf = np.abs(a["conductance_s"][sl] - truth_g[sl])[ok] / s.g_max
        print(f"  {name}: |error| / device median {np.nanmedian(rel):.3%}, 99th pct {np.nanpercentile(rel, 99):.3%}; "
              f"/ g_max median {np.nanmedian(absf):.3%}, max {np.nanmax(absf):.3%}")
    for ch, static in (("y", model.adc_y_static), ("i_src", model.adc_src_static), ("e", model.adc_e_static)):
        err = np.abs(a[f"offset_{ch}"] - static[1]) / a[f"sigma_{ch}"]
        print(f"  offset {ch}: max |error| {np.max(err):.3g} reading σ")
    inv = 1.0 / np.concatenate([1 + model.adc_src_static[0], 1 + model.adc_y_static[0]])
    for ch, static, relative in (("y", model.adc_y_static, True), ("i_src", model.adc_src_static, True),
                                 ("e", model.adc_e_static, False)):
        true_gain = (1 + static[0]) * (inv.mean() if relative else 1.0)
        print(f"  gain {ch}: max |error| {np.max(np.abs(a[f'gain_{ch}'] - true_gain)):.3g} "
              f"(truth spread σ {np.std(true_gain):.3g})")
    judged = np.zeros(topo.n_conductances, bool)
    for name in ("g_in", "g_out"):
        judged[topo.groups[name]] = True
    flagged, real = a["fault_code"] != 0, stuck & judged
    tp = int(np.sum(flagged & real))
    sure = judged & ~flagged & np.isfinite(a["fault_posterior"]) & (a["fault_posterior"] < 0.01)
    print(f"  fault map: {int(real.sum())} stuck, {int(flagged.sum())} flagged, precision {tp / max(flagged.sum(), 1):.1%}, "
          f"recall {tp / max(real.sum(), 1):.1%}; counts {summary['fault_counts']}; "
          f"stuck among the 'healthy' {int(np.sum(sure & stuck))}")
    if flagged.any():
        fixed_err = np.abs(a["fault_fixed_s"][flagged] - truth_g[flagged]) / s.g_max
        print(f"  stuck mask values of the flagged devices: |error| / g_max median {np.median(fixed_err):.3%}, "
              f"max {np.max(fixed_err):.3%}")
    d = board.true_diodes()
    if np.isfinite(a["diode_i_s_a"]).any():
        for key, true in (("diode_i_s_a", d.i_s), ("diode_n", d.n), ("diode_r_s_ohm", d.r_s)):
            print(f"  {key}: max |relative error| {np.nanmax(np.abs(a[key] / true - 1)):.3g}")
    else:
        print(f"  diode clamp levels: max |error| {np.max(np.abs(a['diode_clamp_v'] - d.v_ref)) * 1e3:.3g} mV "
              f"(truth spread σ {np.std(d.v_ref) * 1e3:.3g} mV)")


if __name__ == "__main__":
    main()
