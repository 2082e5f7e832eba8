"""The whole calibration (``hil calibrate``): measure, fit, save the file, write the report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hil.calibrate import store
from hil.calibrate.conductances import estimate_conductances, probe_patterns
from hil.calibrate.diodes import fit_diodes
from hil.calibrate.faults import characterise
from hil.calibrate.gains import GainCorrected, estimate_gains
from hil.calibrate.offsets import require_in_range, zero_readings
from hil.calibrate.settings import CalibrationSettings

CAVEATS = [
    "current-channel gains are relative: their common scale is the channels' mean (no absolute current reference)",
    "voltage-channel gains take the sources as the reference (source gain errors enter averaged over the sources)",
    "source (DAC) offsets and gains are not separated from the network: they bias in-circuit estimates slightly",
    "with wire resistance the in-circuit conductances are effective values (terminal voltages, not device voltages)",
    "g_leak is only observable when its current stands out of the g_in/g_out fit residual (see leak_stderr)",
]


def calibrate(board, cs: CalibrationSettings, board_name: str, temperature_c: float | None,
              diode_kind: str, progress=print, devices: dict | None = None) -> tuple[Path, dict]:
    """Run every step on ``board`` through its protocol; returns the calibration path and summary.
    ``devices``: the config's ``board.devices`` section, recorded so that ``hil train`` can warn when a
    simulated board of the same name was configured differently since."""
    t0 = time.perf_counter()
    topo = board.topology
    progress("1/6 zero readings (every source at 0 V): channel offsets and noise")
    off = zero_readings(board)
    progress(f"2/6 channel gains (charge conservation for currents, common levels for voltages, {cs.gain_repeats} repeats)")
    gains = estimate_gains(board, off, cs.amplitude_v, cs.gain_repeats)
    board = GainCorrected(board, off, gains)  # every later step reads gain-corrected channels
    progress(f"3/6 conductance read-out: {probe_patterns(topo.n_sources, cs.amplitude_v).shape[0]} Hadamard patterns "
             f"x {cs.repeats} repeats")
    now = estimate_conductances(board, off, cs.amplitude_v, cs.repeats)
    if now.unidentifiable:
        progress(f"    warning: {now.unidentifiable} of {topo.n_conductances} conductances cannot be read out in "
                 f"circuit ({topo.n_hidden} hidden nodes for {topo.n_sources} sources: the node voltages do not vary "
                 "independently enough); they are left unknown (NaN), as are their fault map and diode fits")
    progress("4/6 programming response and fault map (two programmed levels)")
    fmap = characterise(board, off, repeats=cs.repeats, amplitude_v=cs.amplitude_v, own_state=now.g)
    progress("5/6 diode I-V sweep")
    dfit = fit_diodes(board, now.g, off, temperature_c=temperature_c if temperature_c is not None else 27.0,
                      fit_law="shockley" in diode_kind)  # piecewise-linear elements: clamp levels only
    progress("6/6 drift reference patterns")
    u_ref = probe_patterns(topo.n_sources, cs.amplitude_v)[:16]
    ref = board.measure_sources(u_ref)
    require_in_range(ref, "drift reference", f"lower board.calibration.amplitude_v (now {cs.amplitude_v:g} V)")
    summary = {
        "temperature_c": temperature_c,
        "diode_model": diode_kind,
        "patterns": now.patterns, "repeats": now.repeats,
        "max_condition_number": now.condition,
        "max_port_residual_rel": float(np.nanmax(now.residual_rel)) if np.isfinite(now.residual_rel).any() else float("nan"),
        "unidentifiable_conductances": now.unidentifiable,
        "errors_in_variables_ratio": now.eiv_ratio,
        "faulty_devices": int(fmap.faulty.sum()),
        "fault_map_unresolved": fmap.unresolved,
        "gain_null_ratio": gains.null_ratio, "gain_kcl_imbalance_rel": gains.imbalance_rel,
        "fault_counts": fmap.counts(),  # disjoint; they add up to every conductance of the board
        "programming_scatter_rel": fmap.prog_scatter,
        "median_programming_gain": float(np.nanmedian(fmap.gain)) if np.isfinite(fmap.gain).any() else float("nan"),
        "offset_sigma": {"y_a": float(np.mean(off.y_sigma)), "i_src_a": float(np.mean(off.i_src_sigma)),
                         "e_v": float(np.mean(off.e_sigma))},
        "seconds": None,
        "caveats": CAVEATS + ([f"{now.unidentifiable} conductances are not identifiable in circuit (more hidden "
                                "nodes than the probe patterns can vary independently): NaN in conductance_s"]
                              if now.unidentifiable else []),
    }
    arrays = {
        "offset_y": off.y, "offset_i_src": off.i_src, "offset_e": off.e,
        "sigma_y": off.y_sigma, "sigma_i_src": off.i_src_sigma, "sigma_e": off.e_sigma,
        "gain_y": gains.y, "gain_i_src": gains.i_src, "gain_e": gains.e,
        "conductance_s": now.g, "port_residual_rel": now.residual_rel, "leak_stderr_s": now.leak_stderr,
        "fault_code": fmap.code, "fault_fixed_s": fmap.fixed_value, "fault_posterior": fmap.posterior, "programming_gain": fmap.gain,
        "level_targets_s": np.array(fmap.levels), "level_low_s": fmap.low.g, "level_high_s": fmap.high.g,
        "diode_i_s_a": dfit.i_s, "diode_n": dfit.n, "diode_r_s_ohm": dfit.r_s, "diode_fit_residual_v": dfit.residual_v,
        "diode_clamp_v": dfit.clamp_v, "diode_fit_g_leak_s": dfit.g_leak_s, "diode_sweep_i_a": dfit.currents_a, "diode_sweep_v": dfit.voltages_v,
        "drift_u": u_ref, "drift_y": ref.y - off.y,
    }
    if devices is not None:  # (a calibration that records none is never judged against a config's section)
        summary["devices"] = devices
    summary["seconds"] = time.perf_counter() - t0
    path = store.save(cs.dir, board_name, summary, arrays)
    write_report(path, topo, summary, arrays, fmap.unresolved_devices())
    return path, summary


#: colours of the fault-map image, by :func:`fault_map_image_codes`: healthy, stuck high, stuck low/open, unresolved
FAULT_IMAGE_COLOURS = ("#e8e8e8", "#d62728", "#1f77b4", "#ff7f0e")


def fault_map_image_codes(code: np.ndarray, unresolved: np.ndarray | None) -> np.ndarray:
    """The fault codes (0 healthy, 1 stuck high, 2 stuck low/open) with 3 for the devices the map leaves
    ``unresolved`` (bool mask: not flagged, and not healthy beyond doubt, as
    :meth:`hil.calibrate.faults.FaultMap.unresolved_devices` says)."""
    out = np.asarray(code).astype(np.int64)
    if unresolved is not None:
        out[np.asarray(unresolved, bool)] = 3
    return out


def write_report(path: Path, topo, summary: dict, a: dict, unresolved: np.ndarray | None = None) -> None:
    """``report.md`` and plots (fit residuals, fault map, parameter histograms) next to the file;
    ``unresolved``: the devices the fault map leaves unresolved (bool (m,)), drawn in their own colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    ax[0, 0].bar(np.arange(a["port_residual_rel"].size), a["port_residual_rel"])
    ax[0, 0].set(title="conductance fit: RMS residual per port equation", xlabel="port (sources, then outputs)",
                 ylabel="residual / RMS current")
    shapes = topo.group_shapes
    codes = fault_map_image_codes(a["fault_code"], unresolved)
    for col, gname in ((1, "g_in"), (2, "g_out")):
        sl = topo.groups[gname]
        img = codes[sl].reshape(shapes.get(gname, (-1, 1)))
        ax[0, col].imshow(img, cmap=matplotlib.colors.ListedColormap(list(FAULT_IMAGE_COLOURS)),
                          vmin=0, vmax=len(FAULT_IMAGE_COLOURS) - 1, aspect="auto", interpolation="nearest")
        ax[0, col].set(title=f"fault map {gname} (grey healthy, red stuck high,\nblue stuck low/open, "
                             "orange unresolved)")
    g = a["conductance_s"]
    ax[1, 0].hist(g[np.isfinite(g)] * 1e6, bins=60)
    ax[1, 0].set(title="in-circuit conductances", xlabel="µS", ylabel="devices")
    gain = a["programming_gain"]
    ax[1, 1].hist(gain[np.isfinite(gain)], bins=60)
    ax[1, 1].set(title="programming gain (read / target)", xlabel="gain", ylabel="devices")
    if np.any(np.isfinite(a["diode_i_s_a"])):
        ax[1, 2].hist(np.log10(a["diode_i_s_a"][np.isfinite(a["diode_i_s_a"])]), bins=20)
        ax[1, 2].set(title="diode fit: log10 I_s (A)", xlabel="log10 I_s", ylabel="nodes")
    else:
        ax[1, 2].hist(a["diode_clamp_v"] * 1e3, bins=20)
        ax[1, 2].set(title="diode clamp level", xlabel="mV", ylabel="nodes")
    fig.tight_layout()
    fig.savefig(path / "report.png", dpi=90)
    plt.close(fig)
    lines = [f"# Calibration {path.name} of {summary.get('board', path.parent.name)}", "",
             "| quantity | value |", "|---|---|"]
    for k in ("patterns", "repeats", "max_condition_number", "max_port_residual_rel", "unidentifiable_conductances",
              "errors_in_variables_ratio",
              "faulty_devices", "fault_map_unresolved", "gain_null_ratio", "gain_kcl_imbalance_rel", "programming_scatter_rel", "median_programming_gain", "seconds"):
        v = summary[k]
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines.append(f"| fault counts | {summary['fault_counts']} |")
    lines.append(f"| reading noise σ | {summary['offset_sigma']} |")
    lines += ["", "Caveats:", ""] + [f"- {c}" for c in summary["caveats"]] + ["", "![report](report.png)", ""]
    (path / "report.md").write_text("\n".join(lines))
