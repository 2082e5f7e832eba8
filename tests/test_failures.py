"""Every failure is one line with the right exit code (2 configuration, 1 runtime), never a traceback."""

import json
import warnings
from pathlib import Path

import pytest
import yaml

from hil.cli import main
from hil.config import load_yaml


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def xor(**edits):
    raw = load_yaml("sim-xor")
    raw["output"] = {"plots": False}
    for path, val in edits.items():
        node = raw
        *parts, last = path.split(".")
        for p in parts:
            node = node[p]
        node[last] = val
    return raw


def one_line(err: str) -> None:
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    # a config error with several problems is a header plus one line per problem; anything else is a single line
    assert len(lines) == 1 or lines[0].startswith("hil: invalid configuration"), err
    if lines[0].startswith("hil: invalid configuration"):
        assert all(l.startswith("  - ") for l in lines[1:]), err


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("edits, message", [
    ({"train.optimizer.lr": INF}, "train.optimizer.lr: must be a finite number"),
    ({"train.gain_per_a": INF}, "train.gain_per_a: must be a finite number"),
    ({"train.gain_per_a": 1e300}, "train.gain_per_a: must be between"),
    ({"train.hl.delta_v": INF}, "train.hl.delta_v: must be a finite number"),
    ({"train.hl.delta_v": 1e6}, "train.hl.delta_v: must be between"),
    ({"data.input_scale_v": INF}, "data.input_scale_v: must be a finite number"),
    ({"data.input_scale_v": 1e300}, "data.input_scale_v: must be between"),
    ({"board.circuit.inputs.rails.vb_p": INF}, "inputs.rails.vb_p: expected a finite voltage"),
    ({"board.circuit.inputs.rails.vb_p": 1e300}, "inputs.rails.vb_p: must be between"),
    ({"board.circuit.hidden.element": {"model": "shockley", "temperature_c": NAN}}, "element.temperature_c"),
    ({"board.circuit.hidden.element": {"model": "shockley", "temperature_c": INF}}, "element.temperature_c"),
    ({"board.circuit.conductances.g_in": {"uniform": [0.0, INF]}}, "conductances.g_in: uniform"),
    ({"board.circuit.conductances.g_leak": INF}, "conductances.g_leak"),
    ({"board.g_max": INF}, "board.g_max: must be a finite number"),
    ({"name": "a\x00b"}, "name: must be printable"),
    ({"name": "a\nb"}, "name: must be printable"),
    ({"name": "x" * 300}, "name: too long"),
    ({"board.circuit.name": "c\nd"}, "circuit.name: must be printable"),
])
def test_absurd_values_are_refused_up_front(tmp_path, capsys, edits, message):
    assert main(["train", write(tmp_path, xor(**edits)), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    one_line(err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_inputs_of_1e300_volts_are_refused(tmp_path, capsys):
    data = {"circuit": xor()["board"]["circuit"], "inputs": [[1e300, 0.0]]}
    assert main(["solve", write(tmp_path, data)]) == 2
    err = capsys.readouterr().err
    assert "inputs: input voltages must be within" in err
    one_line(err)
    assert main(["solve", write(tmp_path, data), "--input", "1e300,0"]) == 2
    assert "--input" in capsys.readouterr().err


def test_sizes_beyond_memory_are_refused_with_the_estimate(tmp_path, capsys):
    circuit = {"inputs": {"count": 100_000}, "hidden": {"count": 10_000_000}, "outputs": {"count": 2},
               "conductances": {"g_in": 1e-5, "g_out": 1e-5}}
    assert main(["solve", write(tmp_path, {"circuit": circuit})]) == 2
    err = capsys.readouterr().err
    assert "10000000 hidden nodes" in err and "GiB" in err
    one_line(err)


@pytest.mark.parametrize("kind", ["binary", "latin1", "directory", "unreadable", "nested", "empty"])
def test_unreadable_config_files(tmp_path, capsys, monkeypatch, kind):
    p = tmp_path / "c.yaml"
    if kind == "binary":
        p.write_bytes(b"\x00\x01\x02name: x\n")
    elif kind == "latin1":
        p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    elif kind == "directory":
        p.mkdir()
    elif kind == "unreadable":
        p.write_text("name: x\n")
        real = Path.read_bytes

        def refuse(self):
            if self == p:
                raise PermissionError(13, "Permission denied")
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    elif kind == "nested":
        p.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        p.write_text("")
    assert main(["train", str(p), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err or "nested" in err
    one_line(err)


def test_override_nested_5000_deep_is_one_line(capsys):
    assert main(["train", "sim-xor", "--set", "train.epochs=" + "[" * 5000 + "]" * 5000]) == 2
    one_line(capsys.readouterr().err)


def test_runs_dir_that_is_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "sim-xor", "--runs-dir", str(f), "-q"]) == 2
    err = capsys.readouterr().err
    assert "--runs-dir" in err and "not a directory" in err
    one_line(err)
    assert main(["train", "sim-xor", "--runs-dir", str(f / "sub"), "-q"]) == 2
    one_line(capsys.readouterr().err)
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(tmp_path) else real(path, mode))
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err
    one_line(err)


@pytest.mark.parametrize("target", ["missing/net.cir", "dir", "a\nb.cir"])
def test_netlist_output_paths(tmp_path, capsys, target):
    (tmp_path / "dir").mkdir()
    assert main(["netlist", "spice-shockley", "-o", str(tmp_path / target)]) == 2
    err = capsys.readouterr().err
    assert "-o" in err
    one_line(err)


def test_solve_failure_is_one_line_with_the_report(tmp_path, capsys, monkeypatch):
    from hil.circuit import solve as solve_mod
    from hil.circuit.report import SolveError, SolveReport

    def fail(self, u, w=None, warm=None):
        raise SolveError("Newton did not converge", SolveReport(False, "newton→gmin→source", {"newton": 200},
                                                                batch=1, kcl_residual_a=1e-3))

    monkeypatch.setattr(solve_mod.EquilibriumSolver, "solve", fail)
    assert main(["solve", "spice-shockley"]) == 1
    err = capsys.readouterr().err
    assert "solve failed: Newton did not converge" in err and "NOT converged via newton→gmin→source" in err
    one_line(err)


def test_resume_that_changes_the_circuit_shape(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=2",
                 "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "-q", "--set", "board.circuit.hidden.count=9"]) == 2
    err = capsys.readouterr().err
    assert "cannot change the circuit" in err and "board.circuit.hidden.count=9" in err
    one_line(err)


def test_no_runtime_warning_for_a_shockley_node_without_conductance(tmp_path, capsys):
    data = {"circuit": {
        "name": "w", "inputs": {"count": 2, "inverted": True},
        "hidden": {"count": 3, "element": {"model": "shockley", "preset": "1N4148"}},
        "outputs": {"count": 2, "differential": True},
        "conductances": {"g_in": [[1e-5, 0, 0, 0], [0, 0, 0, 0], [1e-5, 1e-5, 0, 0]], "g_hh": None,
                         "g_leak": 0, "g_out": [[1e-5, 0, 1e-5], [0, 0, 1e-5]]}},
        "inputs": [[0.5, -0.3]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["solve", write(tmp_path, data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"]["converged"] and abs(out["samples"][0]["nodes"]["h1"]) < 1e-12


def test_unexpected_exceptions_are_one_line(capsys, monkeypatch):
    import hil.cli as cli

    monkeypatch.setattr(cli, "cmd_configs", lambda args: (_ for _ in ()).throw(ZeroDivisionError("boom")))
    monkeypatch.delenv("HIL_DEBUG", raising=False)
    assert main(["configs"]) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: boom" in err
    one_line(err)


def test_closed_output_pipe_is_quiet():
    import os
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m hil solve spice-shockley | head -1", shell=True, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert r.stdout.startswith("circuit spice-shockley-40") and r.stderr == ""
