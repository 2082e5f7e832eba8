"""The hil command: clear errors for bad configs (exit 2, no traceback), solve/netlist/configs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hil.cli import main

CIRCUIT = {
    "circuit": {
        "name": "cli-demo",
        "seed": 1,
        "inputs": {"count": 2, "inverted": True, "rails": {"vb_p": 1.0}},
        "hidden": {"count": 4, "element": {"model": "shockley", "preset": "1N4148"}},
        "outputs": {"count": 2, "differential": True},
        "conductances": {"g_in": {"uniform": [1e-5, 1e-4]}, "g_hh": None, "g_leak": 1e-7,
                         "g_out": {"uniform": [1e-5, 1e-4]}},
    },
    "inputs": [[0.5, -2.0], [-1.0, 1.5]],
}


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_solve_json_reports_nodes_currents_and_convergence(tmp_path, capsys):
    assert main(["solve", write(tmp_path, CIRCUIT), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # uncoupled Shockley nodes: each solved as its own loop, then certified by Newton's tests
    assert out["report"]["converged"] and out["report"]["method"] == "per-node"
    s0 = out["samples"][0]
    assert set(s0["nodes"]) >= {"x0", "x1", "x0_n", "x1_n", "vb_p", "h0", "h3", "y0", "y1", "0"} - {"0"}
    assert set(s0["ports"]) == {"Vy0", "Vy1"} and set(s0["diodes"]) == {"Dh0", "Dh1", "Dh2", "Dh3"}
    assert len(out["samples"]) == 2
    # KCL over the whole network: what the sources deliver leaves through ports, leaks and diodes
    # (anode-at-ground diodes: forward current flows from ground into the node).
    delivered = sum(s0["sources"].values())
    leaving = (sum(s0["ports"].values()) + sum(1e-7 * s0["nodes"][f"h{k}"] for k in range(4))
               - sum(d["forward_current_a"] for d in s0["diodes"].values()))
    assert abs(delivered - leaving) <= 1e-15 + 1e-12 * abs(delivered)


def test_solve_text_output_and_input_override(tmp_path, capsys):
    assert main(["solve", write(tmp_path, CIRCUIT), "--input", "0.1,0.2"]) == 0
    out = capsys.readouterr().out
    assert "V(h0) =" in out and "converged via" in out


def test_repeated_input_solves_every_vector(tmp_path, capsys):
    """``--input`` given twice solves both vectors, in order (it kept only the last one before)."""
    assert main(["solve", write(tmp_path, CIRCUIT), "--input", "0.1,0.2", "--input=-0.3,0.4", "--json"]) == 0
    samples = json.loads(capsys.readouterr().out)["samples"]
    assert [s["inputs"] for s in samples] == [[0.1, 0.2], [-0.3, 0.4]]
    assert samples[0]["nodes"]["x0"] == 0.1 and samples[1]["nodes"]["x0"] == -0.3


def test_netlist_of_several_inputs_needs_all_inputs(tmp_path, capsys):
    out = tmp_path / "deck.cir"
    args = ["netlist", write(tmp_path, CIRCUIT), "-o", str(out), "--input", "0.1,0.2", "--input=-0.3,0.4"]
    assert main(args) == 2
    assert "--all-inputs" in capsys.readouterr().err and not list(tmp_path.glob("deck*"))
    assert main(args + ["--all-inputs"]) == 0
    decks = sorted(p.name for p in tmp_path.glob("deck*"))
    assert decks == ["deck_0.cir", "deck_1.cir"]
    assert "[-0.3, 0.4]" in (tmp_path / "deck_1.cir").read_text()


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("circuit", ["input=[[0.5,1.0]]"], "input: unknown key (did you mean 'inputs'?)"),
        ("circuit", ["seed=3"], "seed: unknown key"),
        ("sim-xor", ["input=[[0.5,1.0]]"], "input: unknown key"),
        ("sim-xor", ["foo.bar=1"], "foo: unknown key"),
        ("sim-xor", ["board.g_min=abc"], "board.g_min: expected a number"),
        ("sim-xor", ["data.name=nosuch"], "data.name: must be one of"),
        ("sim-xor", ["train.epochs=-5"], "train.epochs: must be > 0"),
    ],
)
@pytest.mark.parametrize("command", ["solve", "netlist"])
def test_solve_and_netlist_check_every_key_of_the_config(tmp_path, capsys, command, config, overrides, message):
    """Unknown keys and bad values outside the circuit are errors (exit 2), as for ``hil train``: a
    misspelt ``inputs`` solved the zero vector before, and exited 0."""
    target = write(tmp_path, CIRCUIT) if config == "circuit" else config
    args = [command, target] + [a for o in overrides for a in ("--set", o)]
    args += ["-o", str(tmp_path / "deck.cir")] if command == "netlist" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "deck.cir").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["circuit"]["hidden"]["element"].update(preset="1N9999"), "circuit.hidden.element.preset"),
        (lambda d: d["circuit"].update(outptus={}), "did you mean 'outputs'"),
        (lambda d: d.update(inputs=[[1.0, 2.0, 3.0]]), "3 values per vector"),
    ],
)
def test_config_mistakes_exit_2_with_one_line_each(tmp_path, capsys, mutate, message):
    data = json.loads(json.dumps(CIRCUIT))
    mutate(data)
    assert main(["solve", write(tmp_path, data)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_config_typo_is_reported_not_raised(tmp_path, capsys):
    from hil.config import load_yaml

    raw = load_yaml("sim-xor")
    raw["train"]["optimiser"] = raw["train"].pop("optimizer")
    raw["train"]["epochs"] = -3
    assert main(["train", write(tmp_path, raw), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train.optimiser: unknown key (did you mean 'optimizer'?)" in err
    assert "train.epochs: must be > 0" in err


def test_missing_file_and_bad_yaml(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["solve", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_configs_lists_shipped_configs(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in ("sim-digits", "sim-digits-shockley", "sim-xor"):
        assert name in out


def test_shipped_configs_all_parse():
    from hil.boards.factory import make_board
    from hil.config import embedded_config_names, load_yaml
    from hil.train.settings import parse_settings

    for name in embedded_config_names():
        raw = load_yaml(name)
        if "board" not in raw:
            continue
        s = parse_settings(raw, name)
        if s.backend == "instruments":  # opening it needs the bench (tests/boards run it emulated)
            assert s.instrument_board.bench.circuit is not None
            continue
        board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
        assert board.topology.n_conductances > 0


def test_netlist_written_with_matching_names(tmp_path, capsys):
    out = tmp_path / "net.cir"
    assert main(["netlist", write(tmp_path, CIRCUIT), "-o", str(out)]) == 0
    deck = out.read_text()
    for name in ("Vx0", "Vy1", "Dh2", ".options", "temp=27"):
        assert name.lower() in deck.lower()


def test_console_script_runs_as_a_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hil.cli", "solve", write(tmp_path, CIRCUIT), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["circuit"] == "cli-demo"


def _xor(**edits):
    from hil.config import load_yaml

    raw = load_yaml("sim-xor")
    for path, val in edits.items():
        node = raw
        *parts, last = path.split(".")
        for p in parts:
            node = node[p]
        node[last] = val
    return raw


@pytest.mark.parametrize(
    "edits, message",
    [
        ({"board.circuit.hidden.element": {"model": "shockley", "i_s": ["a"] * 8}}, "element.i_s"),
        ({"board.circuit.hidden.element": {"model": "ideal", "orientation": ["a"] * 8}}, "element.orientation"),
        ({"board.circuit.outputs.voltage": ["a", 0, 0, 0]}, "outputs.voltage"),
        ({"board.circuit.conductances.g_leak": ["a"] * 8}, "conductances.g_leak"),
        ({"board.circuit.conductances.g_in": {"uniform": ["a", "b"]}}, "conductances.g_in"),
        ({"board.circuit.conductances.g_hh": {"random": {"degree": -1}}}, "g_hh.random.degree"),
        ({"board.circuit.conductances.g_hh": {"random": {"low": 1e-5, "high": 1e-6}}}, "g_hh.random.high"),
        ({"seed": -1}, "seed: must be >= 0"),
        ({"board.circuit.seed": -1}, "circuit.seed: must be >= 0"),
        ({"board.circuit.inputs.count": 3}, "the circuit has 3 inputs, the xor data set has 2"),
        ({"board.circuit.conductances": {"g_in": 1e-5, "g_leak": 1e-7}}, "conductances.g_out: required"),
    ],
)
def test_malformed_training_configs_never_traceback(tmp_path, capsys, edits, message):
    assert main(["train", write(tmp_path, _xor(**edits)), "--runs-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("inputs", [[[1.0, "a"]], "x", [[1.0], [1.0, 2.0]], [[float("nan"), 1.0]]])
def test_malformed_solve_inputs_never_traceback(tmp_path, capsys, inputs):
    data = json.loads(json.dumps(CIRCUIT))
    data["inputs"] = inputs
    assert main(["solve", write(tmp_path, data), "--json"]) == 2
    assert "inputs" in capsys.readouterr().err


def test_bad_override_and_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "sim-xor", "--set", "train.epochs=[1"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(_xor()))
    assert main(["train", "--resume", str(run)]) == 2
    assert "no completed epoch" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()


def test_summary_names_the_plots_folder_only_when_plots_were_written(tmp_path, capsys):
    args = ["train", "sim-xor", "-q", "--runs-dir", str(tmp_path), "--set", "train.epochs=2"]
    assert main(args + ["--set", "output.plots=false"]) == 0
    assert "plots             none written" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "plots             " + str(tmp_path) in out


def test_bench_run_solves_and_exports_its_circuit_and_eval_says_why_not(tmp_path, capsys):
    """A run trained on a (here emulated) bench: hil solve / netlist use the bench's circuit with the
    trained conductances; hil eval, which would need the bench itself, is one line, exit 2."""
    assert main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path / "runs"),
                 "--set", "train.epochs=1", "--set", "output.plots=false"]) == 0
    run = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["solve", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["converged"]
    assert main(["netlist", str(run), "-o", str(tmp_path / "bench.cir")]) == 0
    assert "the bench's circuit simulated" in capsys.readouterr().out
    assert (tmp_path / "bench.cir").read_text().count("\nR") >= 80
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "board.backend: instruments" in err and "metrics.csv" in err and "Traceback" not in err


def test_interrupted_rehearsal_says_to_resume_it_with_emulate(tmp_path, capsys, monkeypatch):
    """The resume command an interrupted --emulate run prints must rehearse again, not open the real bench."""
    from hil.train.loop import Trainer

    real_epoch = Trainer._epoch

    def one_epoch_then_ctrl_c(self):
        if self.epoch >= 1:
            raise KeyboardInterrupt()
        return real_epoch(self)

    monkeypatch.setattr(Trainer, "_epoch", one_epoch_then_ctrl_c)
    assert main(["train", "bench-xor", "--emulate", "-q", "--runs-dir", str(tmp_path), "--set", "train.epochs=2",
                 "--set", "output.plots=false"]) == 130
    run = next(tmp_path.iterdir())
    assert f"continue with 'hil train --resume {run} --emulate'" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_epoch", real_epoch)
    assert main(["train", "--resume", str(run), "--emulate", "-q"]) == 0
    assert "epochs            2" in capsys.readouterr().out


def test_summary_gives_the_median_epoch_time_and_a_slow_first_epoch(tmp_path, capsys, monkeypatch):
    """The mean would carry the first epoch's one-time kernel compilation (20 s against 0.02 s)."""
    import csv
    import re

    from hil.train.rundir import RunDir

    append = RunDir.append_metrics

    def first_epoch_slow(self, row):  # as if epoch 1 had compiled the kernels
        return append(self, dict(row, epoch_time_s=100.0) if row["epoch"] == 1 else row)

    monkeypatch.setattr(RunDir, "append_metrics", first_epoch_slow)
    assert main(["train", "sim-xor", "-q", "--runs-dir", str(tmp_path), "--set", "train.epochs=5",
                 "--set", "output.plots=false"]) == 0
    out = capsys.readouterr().out
    run = next(tmp_path.iterdir())
    with open(run / "metrics.csv", newline="") as f:
        times = [float(r["epoch_time_s"]) for r in csv.DictReader(f)]
    assert times[0] == 100.0 and len(times) == 5
    line = next(l for l in out.splitlines() if l.lstrip().startswith("epochs"))
    median = float(re.search(r"median ([0-9.e+-]+) s per epoch", line).group(1))
    assert median == pytest.approx(float(np.median(times)), rel=1e-2) and median < 1.0
    assert line.endswith(", epoch 1: 100 s)")


class _FakeIndex:
    """A kernel's cache index as numba reads it: entries, or {} when missing or stale."""

    def __init__(self, entries: dict):
        self.entries = entries

    def _load_index(self) -> dict:
        return self.entries


def test_train_says_when_it_compiles_the_kernels_for_the_first_time(tmp_path, capsys, monkeypatch):
    import hil.cli as cli

    cold = [_FakeIndex({}), _FakeIndex({})]
    monkeypatch.setattr(cli, "_kernel_cache_indexes", lambda: cold)
    build = cli.api._board_and_data

    def board_building_compiles_a_kernel(*a, **k):  # as the real board does: the check must come first
        cold[0].entries = {"signature": "machine code"}
        return build(*a, **k)

    monkeypatch.setattr(cli.api, "_board_and_data", board_building_compiles_a_kernel)
    args = ["train", "sim-xor", "--runs-dir", str(tmp_path / "runs"), "--set", "train.epochs=1",
            "--set", "output.plots=false"]
    assert main(args) == 0
    assert "compiling the numeric kernels" in capsys.readouterr().out
    assert main(args) == 0
    assert "compiling" not in capsys.readouterr().out
    assert main(args + ["-q"]) == 0 and "compiling" not in capsys.readouterr().out


def test_the_compile_check_reads_numbas_own_cache_indexes():
    """The notice follows numba: no kernel with a valid index (missing, or stale after an upgrade
    changed the source) means compiling; a reinstall of the same source keeps the cache and says
    nothing.  The real indexes are read without error and agree with numba's cache use."""
    import hil.cli as cli
    from hil import kernels

    indexes = cli._kernel_cache_indexes()
    assert len(indexes) >= 20 and all(callable(i._load_index) for i in indexes)
    kernels.adam_kernel(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(0, np.int64), 0.9, 0.999,
                        1e-3, 1e-8, 0.0, 1.0, np.zeros(1))  # compiled (or loaded) and cached now
    assert not cli._kernels_not_compiled_yet()


def test_train_names_the_calibration_it_applies(tmp_path, capsys, monkeypatch):
    import hil.calibrate.apply as apply

    used = {"path": "calibrations/demo/20260101T000000Z", "created_utc": "2026-01-01T00:00:00+00:00", "stale": [],
            "offsets": True, "gains": False, "stuck_mask": True, "write_verify_rel_tol": 0.0, "drift": "none"}
    monkeypatch.setattr(apply, "wrap_with_calibration", lambda board, *a, **k: (board, {"calibration": used}))
    args = ["train", "sim-xor", "--runs-dir", str(tmp_path), "--set", "train.epochs=1", "--set", "output.plots=false"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "hil train: applying calibration calibrations/demo/20260101T000000Z (offsets, stuck mask)" in out[1:3]
    monkeypatch.setattr(apply, "wrap_with_calibration", lambda board, *a, **k: (board, {"calibration": None}))
    assert main(args) == 0
    assert "calibration" not in capsys.readouterr().out


def test_resume_says_which_run_it_continues_from_which_epoch(tmp_path, capsys):
    assert main(["train", "sim-xor", "-q", "--runs-dir", str(tmp_path), "--set", "train.epochs=2",
                 "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"hil train: continuing {run} from epoch 2 (of 3)"
    assert main(["train", "--resume", str(run), "--set", "train.epochs=4", "-q"]) == 0
    assert "continuing" not in capsys.readouterr().out


def test_configs_name_prints_the_shipped_file_to_start_your_own(tmp_path, capsys):
    from hil.config import embedded_config_path

    assert main(["configs", "sim-xor"]) == 0
    text = capsys.readouterr().out
    assert text == embedded_config_path("sim-xor").read_text()
    mine = tmp_path / "mine.yaml"
    mine.write_text(text.replace("name: sim-xor", "name: mine"))
    assert main(["train", str(mine), "--runs-dir", str(tmp_path / "runs"), "-q", "--set", "train.epochs=1",
                 "--set", "output.plots=false"]) == 0
    assert main(["configs", "scpi-xor"]) == 0 and "instruments:" in capsys.readouterr().out  # a shipped bench
    assert main(["configs", "sim-xr"]) == 2
    assert "did you mean 'sim-xor'?" in capsys.readouterr().err


def test_an_unverified_shutdown_says_how_to_make_the_outputs_safe():
    """'CHECK THE BENCH' named the outputs but no next step; it now names the probe that reconnects,
    reads them back, ramps them to 0 V and switches them off."""
    from hil.cli import _outputs_state

    line = _outputs_state(["prog.a: not verified (InstrumentTimeout)"])
    assert "CHECK THE BENCH: outputs not verified off: prog.a: not verified (InstrumentTimeout)" in line
    assert "hil instruments probe RESOURCE --driver DRIVER" in line
    assert _outputs_state([]) == "safe shutdown ran, every output read back off"
