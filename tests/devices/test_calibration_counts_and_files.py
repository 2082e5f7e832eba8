"""The calibration's device counts add up (a device that cannot be read out or judged is never
counted healthy), and ``hil train`` refuses a calibration that cannot apply to the configured
board (another size, an unreadable file) with one line and exit 2, instead of failing mid-run."""

from __future__ import annotations

import json

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.calibrate.faults import FaultMap
from hil.calibrate.run import FAULT_IMAGE_COLOURS, calibrate, fault_map_image_codes
from hil.calibrate.settings import CalibrationSettings
from hil.circuit.generate import random_circuit
from hil.cli import main
from hil.devices import parse_devices


def test_fault_counts_are_disjoint_and_add_up_to_every_device():
    # judged devices: sure healthy, undecided (not flagged), flagged but uncertain, sure stuck, unreadable;
    # the last device is outside the map (a g_leak)
    posterior = np.array([0.001, 0.3, 0.7, 0.999, np.nan, np.nan])
    code = np.array([0, 0, 1, 2, 0, 0], np.int8)
    judged = np.array([True, True, True, True, True, False])
    fmap = FaultMap(code, np.zeros(6), np.ones(6), 0.0, None, None, (0.0, 1.0), posterior, None, None, judged)
    counts = fmap.counts()
    assert counts == {"healthy": 1, "stuck high": 1, "stuck low / open": 1, "unresolved": 2, "not characterised": 1}
    assert sum(counts.values()) == code.size
    assert fmap.unresolved == counts["unresolved"]
    # report.png draws them apart: unresolved in their own colour, not in the healthy grey
    assert fault_map_image_codes(code, fmap.unresolved_devices()).tolist() == [0, 3, 1, 2, 3, 0]


def test_summary_never_counts_devices_that_cannot_be_read_out_as_healthy(tmp_path):
    # 8 hidden nodes fed by 6 sources: no conductance can be read out in circuit (the XOR board)
    c = random_circuit(8, n_inputs=2, n_outputs=4, seed=3, coupling_degree=0, g_range=(1e-5, 1e-4), g_leak_s=1e-8)
    board = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"dtod": {"g_dtod_std": 0.01}}))
    cs = CalibrationSettings()
    cs.dir, cs.repeats, cs.gain_repeats = tmp_path, 2, 2
    path, summary = calibrate(board, cs, "xor-like", 27.0, "ideal", progress=lambda s: None)
    topo = board.topology
    mapped = sum(topo.groups[g].stop - topo.groups[g].start for g in ("g_in", "g_out"))
    counts = summary["fault_counts"]
    assert counts["healthy"] == 0 and counts["unresolved"] == mapped == summary["fault_map_unresolved"]
    assert sum(counts.values()) == topo.n_conductances
    assert "unresolved" in (path / "report.md").read_text()
    png = matplotlib.image.imread(path / "report.png")[..., :3]
    orange = np.all(np.abs(png - np.array(matplotlib.colors.to_rgb(FAULT_IMAGE_COLOURS[3]))) < 0.02, axis=-1)
    grey = np.all(np.abs(png - np.array(matplotlib.colors.to_rgb(FAULT_IMAGE_COLOURS[0]))) < 0.02, axis=-1)
    assert orange.sum() > 100 * max(grey.sum(), 1)  # the fault map panels: every mapped device unresolved
    assert "devices" not in summary  # none given: hil train then never warns of another board.devices section


@pytest.fixture(scope="module")
def calibrated_xor(tmp_path_factory):
    """A calibration of sim-xor on a discrete bench, and the --set options that select it."""
    root = tmp_path_factory.mktemp("cal")
    dev = ["--set", "board.devices={preset: discrete-bench, seed: 3}",
           "--set", f"board.calibration={{dir: {root}, repeats: 2, gain_repeats: 2, amplitude_v: 0.2}}"]
    assert main(["calibrate", "sim-xor"] + dev) == 0
    (folder,) = [p for p in root.rglob("calibration.json")]
    return folder.parent, dev


def _train(tmp_path, dev, *extra):
    return main(["train", "sim-xor", "-q", "--runs-dir", str(tmp_path / "runs"), "--set", "train.epochs=1",
                 "--set", "output.plots=false", *dev, *extra])


def test_train_refuses_a_calibration_of_another_board_size(tmp_path, capsys, calibrated_xor):
    folder, dev = calibrated_xor
    capsys.readouterr()
    # same circuit name, preset and device seed, but 16 hidden nodes: its arrays cannot apply
    assert _train(tmp_path, dev, "--set", "board.circuit.hidden.count=16") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder) in err and "hil calibrate" in err
    assert "this board has 6, 16, 4" in err


@pytest.mark.parametrize("broken", ["json", "npz"])
def test_train_refuses_an_unreadable_calibration_naming_it(tmp_path, capsys, calibrated_xor, broken):
    folder, dev = calibrated_xor
    name = "calibration.json" if broken == "json" else "calibration.npz"
    good = (folder / name).read_bytes()
    try:
        (folder / name).write_bytes(good[: len(good) // 3])  # a file cut short (disk full, copy interrupted)
        capsys.readouterr()
        assert _train(tmp_path, dev) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(folder) in err and "unreadable calibration" in err
    finally:
        (folder / name).write_bytes(good)


def test_calibration_json_is_strict_json_with_null_for_undefined_numbers(calibrated_xor):
    """An xor board with discrete-bench devices cannot be identified: its condition number is
    infinite and its port residual undefined; the file holds null there, not Infinity/NaN, which
    strict JSON readers reject."""
    folder, _ = calibrated_xor

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    meta = json.loads((folder / "calibration.json").read_text(), parse_constant=refuse)
    assert meta["max_condition_number"] is None


def test_train_warns_when_the_board_was_configured_differently_since(tmp_path, capsys, calibrated_xor):
    folder, dev = calibrated_xor
    assert json.loads((folder / "calibration.json").read_text())["devices"] == {"preset": "discrete-bench", "seed": 3}
    capsys.readouterr()
    assert _train(tmp_path, dev, "--set", "board.devices.faults={p_stuck_on: 0.2}") == 0
    err = capsys.readouterr().err
    assert "another board.devices section" in err and "hil calibrate" in err


def test_ideal_diode_board_gets_clamp_levels_not_a_shockley_fit(tmp_path):
    """Ideal diodes have no exponential law: with reading noise and a turn-on spread the sweep used to
    yield 'fits' with n at its lower bound (0.3) on half the nodes of sim-digits-mismatch, and the
    report plotted their I_s instead of the clamp levels."""
    c = random_circuit(8, n_inputs=8, n_outputs=2, seed=1, coupling_degree=0, g_range=(1e-5, 1e-4), g_leak_s=1e-8)
    board = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"preset": "discrete-bench", "diode_spread": {"v_ref_dtod": 0.033}}))
    cs = CalibrationSettings()
    cs.dir, cs.repeats, cs.gain_repeats, cs.amplitude_v = tmp_path, 2, 2, 0.2
    path, _ = calibrate(board, cs, "ideal-diodes", 27.0, "ideal", progress=lambda s: None)
    a = np.load(path / "calibration.npz")
    assert np.all(np.isnan(a["diode_i_s_a"])) and np.all(np.isnan(a["diode_n"]))
    truth = board.true_diodes().v_ref
    assert np.std(truth) > 0.01  # a real spread to resolve
    assert np.max(np.abs(a["diode_clamp_v"] - truth)) <= 1e-3  # V


def test_train_says_which_calibration_it_applies_or_that_there_is_none(tmp_path, capsys, calibrated_xor):
    folder, dev = calibrated_xor
    capsys.readouterr()
    other = ["--set", "board.devices={preset: discrete-bench, seed: 4}", dev[2], dev[3]]  # never calibrated
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path / "r2"), "--set", "train.epochs=1",
                 "--set", "output.plots=false", *other]) == 0
    out = capsys.readouterr().out
    assert "hil train: no calibration found in" in out and "xor-2x8x4-discrete-bench-4" in out
    run = next((tmp_path / "r2").iterdir())
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    assert "calibration" not in capsys.readouterr().out  # the run recorded none: it goes on without one
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path / "r3"), "--set", "train.epochs=1",
                 "--set", "output.plots=false", *dev]) == 0
    assert f"hil train: applying calibration {folder}" in capsys.readouterr().out
    run = next((tmp_path / "r3").iterdir())
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    assert f"hil train: applying calibration {folder}" in capsys.readouterr().out


def test_calibrate_configuration_errors_are_one_plain_line_naming_the_config(capsys):
    assert main(["calibrate", "sim-xor-cascade", "--set", "board.devices={preset: discrete-bench}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count("invalid configuration") == 1 and "ConfigError" not in err
    assert "in sim-xor-cascade: board.devices" in err
    assert main(["calibrate", "sim-xor", "--set", "board.devices={preset: discrete-bench}",
                 "--set", "board.calibration.repeats=0"]) == 2
    assert "in sim-xor: board.calibration.repeats" in capsys.readouterr().err


def test_python_api_calibrates_and_applies_like_the_cli(tmp_path):
    import hil.api as hil

    cfg = hil.load_config("sim-xor", overrides=["board.devices={preset: discrete-bench, seed: 5}",
                                                 f"board.calibration={{dir: {tmp_path}, repeats: 2, gain_repeats: 2}}"])
    board = hil.build_board(cfg)
    path, summary = hil.calibrate(board, cfg)
    assert path.parent.name == "xor-2x8x4-discrete-bench-5"  # where hil train looks
    assert sum(summary["fault_counts"].values()) == board.topology.n_conductances
    wrapped, used = hil.apply_calibration(hil.build_board(cfg), cfg)
    assert used == path and wrapped is not board
    z = hil.measure(wrapped, [[0.0, 0.0]])
    assert z.info and "readings corrected with the calibrated offsets and gains" in z.info["reading_errors"]
    with pytest.raises(hil.ConfigError, match="cannot"):
        hil.calibrate(hil.build_board("sim-xor"), "sim-xor")


def test_python_api_calibration_path_is_absolute_like_apply_calibrations(tmp_path, monkeypatch):
    import hil.api as hil

    monkeypatch.chdir(tmp_path)
    cfg = hil.load_config("sim-xor", overrides=["board.devices={preset: discrete-bench, seed: 5}",
                                                 "board.calibration={dir: cal, repeats: 2, gain_repeats: 2}"])
    path, _ = hil.calibrate(hil.build_board(cfg), cfg)
    _, used = hil.apply_calibration(hil.build_board(cfg), cfg)
    assert path.is_absolute() and path == used == tmp_path / "cal" / path.parent.name / path.name


def test_python_api_refuses_to_calibrate_another_configs_board(tmp_path):
    """``calibrate(board, config)`` files the calibration under the config's board, which ``train``
    then applies: a board of other devices or another size is refused before anything is measured
    (another config's board was calibrated and filed under this one's name before)."""
    import hil.api as hil

    cal = f"board.calibration={{dir: {tmp_path}, repeats: 2, gain_repeats: 2}}"
    cfg = hil.load_config("sim-xor", overrides=["board.devices={preset: discrete-bench, seed: 5}", cal])
    other_seed = hil.build_board(hil.load_config("sim-xor", overrides=["board.devices={preset: discrete-bench, seed: 6}"]))
    with pytest.raises(hil.ConfigError, match="preset 'discrete-bench', seed 6\\) are not the config's"):
        hil.calibrate(other_seed, cfg)
    other_size = hil.build_board(hil.load_config("sim-xor", overrides=["board.devices={preset: discrete-bench, seed: 5}",
                                                                        "board.circuit.hidden.count=4"]))
    with pytest.raises(hil.ConfigError, match="4 hidden nodes, 4 ports and 44 conductances, the config's board has 6, 8, 4 and 88"):
        hil.calibrate(other_size, cfg)
    assert not any(tmp_path.iterdir())  # nothing filed


def test_eval_of_a_calibrated_run_reads_through_its_calibration(tmp_path, capsys, calibrated_xor):
    """hil eval rebuilt the raw board: on sim-digits-mismatch (5 µA reading offsets) a run whose
    training reported 94.89 % test accuracy evaluated at 87.78 %."""
    import hil.api as hil

    folder, dev = calibrated_xor
    assert _train(tmp_path, dev) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    run = hil.load_run(run_dir, "last")
    assert run.board.cal.path == folder  # the same readings and stuck mask as in training
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--checkpoint", "last", "-q"]) == 0
    assert f"calibration {folder}" in capsys.readouterr().out


def test_solve_and_netlist_of_a_run_on_a_non_ideal_board(tmp_path, capsys, calibrated_xor):
    """Both stopped with an internal error (the non-ideal board keeps no nominal circuit)."""
    _, dev = calibrated_xor
    assert _train(tmp_path, dev) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["solve", str(run_dir), "--json"]) == 0
    assert main(["netlist", str(run_dir), "-o", str(tmp_path / "trained.cir")]) == 0
    assert "nominal circuit" in capsys.readouterr().out and (tmp_path / "trained.cir").is_file()


def test_drift_ratio_compares_offset_corrected_readings_even_with_offsets_off(tmp_path):
    """The drift reference is stored offset- (and gain-) corrected; with ``offsets: false`` the fresh
    reference readings kept their offsets, so an undrifted board got a wrong scale factor."""
    from hil.boards.calibrated import CalibratedBoard
    from hil.calibrate import store
    from hil.calibrate.offsets import zero_readings

    c = random_circuit(6, n_inputs=4, n_outputs=2, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4), g_leak_s=1e-6)
    b = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"adc_current": {"adc_offset_std": 5e-6},
                                                      "drift": {"drift_nu_mean": 0.05, "t0": 1.0}}))
    off = zero_readings(b, 64)
    u = np.random.default_rng(0).uniform(-0.2, 0.2, (16, b.topology.n_sources))
    m = b.topology.n_conductances
    cal = store.Calibration(tmp_path, {}, {
        "offset_y": off.y, "offset_i_src": off.i_src, "offset_e": off.e, "fault_code": np.zeros(m, np.int8),
        "fault_fixed_s": np.zeros(m), "drift_u": u, "drift_y": b.measure_sources(u).y - off.y})
    x = np.random.default_rng(1).uniform(0, 1, (8, 4))
    raw = b.measure(x).y
    comp = CalibratedBoard(b, cal, CalibrationSettings(offsets=False, stuck_mask=False, drift="global")).measure(x).y
    np.testing.assert_allclose(comp, raw, rtol=1e-6)  # nothing has drifted yet: the factor is 1


def test_a_run_whose_calibration_is_gone_resumes_only_when_told_and_evaluates_with_a_warning(tmp_path, capsys,
                                                                                             calibrated_xor):
    folder, dev = calibrated_xor
    assert _train(tmp_path, dev) == 0
    run_dir = str(next((tmp_path / "runs").iterdir()))
    moved = folder.with_name(folder.name + "-moved")
    folder.rename(moved)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", run_dir, "--set", "train.epochs=2", "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "calibration.json is missing" in err and "apply=false" in err
        assert main(["eval", run_dir, "-q"]) == 0
        assert "using the board without it" in capsys.readouterr().err
        assert main(["train", "--resume", run_dir, "--set", "train.epochs=2", "--set",
                     "board.calibration.apply=false", "-q"]) == 0
    finally:
        moved.rename(folder)


def test_stuck_devices_fixed_values_are_read_at_the_boards_own_state_inside_the_range():
    """With wire drops, the programmed low/high states of the neighbours shift a stuck device's read-out:
    the mean of those two read-outs was up to 10 % of g_max off on sim-digits-mismatch, some below 0 S
    (the stuck mask then reported a negative conductance to the trainer)."""
    from hil.calibrate.conductances import estimate_conductances
    from hil.calibrate.faults import characterise
    from hil.calibrate.offsets import zero_readings

    c = random_circuit(16, n_inputs=40, n_outputs=4, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4), g_leak_s=1e-6)
    b = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"preset": "discrete-bench", "seed": 2, "wires": {
        "r_wire_row": 0.1, "r_wire_col": 0.1}, "faults": {"p_stuck_on": 0.005, "p_stuck_off": 0.004, "p_open": 0.001}}))
    off = zero_readings(b)
    own = estimate_conductances(b, off, 0.2, 4)
    fmap = characterise(b, off, repeats=4, amplitude_v=0.2, own_state=own.g)
    flagged = fmap.faulty
    assert flagged.sum() >= 5
    truth = b.model.seen(b.true_conductances(), 0.0, read=False)
    fixed = fmap.fixed_value[flagged]
    assert np.all((fixed >= 1e-8) & (fixed <= 1e-4))
    # measured: median 0.005 % of g_max (was 0.28 %), max 5.7 % (was 12 %) at 0.1 ohm per segment
    assert np.median(np.abs(fixed - truth[flagged])) <= 1e-3 * 1e-4


def test_a_run_finds_its_calibration_from_any_working_directory_and_after_a_move(tmp_path, monkeypatch, capsys):
    """A run records its calibration's absolute path and the path relative to the run directory:
    evaluated or resumed from another working directory it used to warn that the calibration (a path
    relative to where it trained) could not be read and to go on without it (eval), or refuse (resume)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    dev = ["--set", "board.devices={preset: discrete-bench, seed: 3}",
           "--set", "board.calibration={dir: cal, repeats: 2, gain_repeats: 2, amplitude_v: 0.2}"]
    assert main(["calibrate", "sim-xor"] + dev) == 0
    assert main(["train", "sim-xor", "-q", "--runs-dir", "runs", "--set", "train.epochs=1",
                 "--set", "output.plots=false", *dev]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    (cal_json,) = (tmp_path / "cal").rglob("calibration.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--checkpoint", "last", "-q"]) == 0
    out, err = capsys.readouterr()
    assert f"calibration {cal_json.parent}" in out and "warning" not in err
    assert main(["train", "--resume", str(run_dir), "-q", "--set", "train.epochs=2"]) == 0
    # runs and calibrations moved together (an archive, another machine): found from the run directory
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(tmp_path / "runs"), str(moved / "runs"))
    shutil.move(str(tmp_path / "cal"), str(moved / "cal"))
    capsys.readouterr()
    assert main(["eval", str(moved / "runs" / run_dir.name), "--checkpoint", "last", "-q"]) == 0
    out, err = capsys.readouterr()
    assert f"calibration {moved / 'cal'}" in out and "warning" not in err
