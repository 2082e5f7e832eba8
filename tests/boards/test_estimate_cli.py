"""hil estimate: bench-time prediction from the bench timing (instruments.md-style model)."""

import json

import pytest

from hil.cli import main
from hil.config import load_yaml
from hil.estimate_cli import estimate_run
from hil.train.settings import parse_settings


def test_estimate_prints_step_epoch_run(capsys):
    assert main(["estimate", "bench-xor"]) == 0
    out = capsys.readouterr().out
    for word in ("per list point", "per step", "per epoch", "whole run", "program"):
        assert word in out


def test_estimate_json_scales_with_nplc(capsys):
    assert main(["estimate", "bench-xor", "--json"]) == 0
    slow = json.loads(capsys.readouterr().out)
    raw = load_yaml("configs/bench-xor.yaml")
    raw["board"]["bench"] = load_yaml("configs/benches/xor-bench.yaml")
    raw["board"]["bench"]["timing"]["nplc"] = 0.1
    for inst in raw["board"]["bench"]["instruments"].values():
        for ch in (inst.get("channels") or {}).values():
            ch.pop("nplc", None)
            if inst["driver"] == "daq970a":
                ch["nplc"] = 0.2  # the DAQ's integration times: 0.02, 0.2, 1, ... (0.1 is refused)
    fast = estimate_run(parse_settings(raw, "x"))
    assert fast["t_smu_s"] < slow["t_smu_s"] / 5
    # points per step: B samples × (1 + 2q) phases plus ramp points, independent of NPLC
    assert slow["points_per_step"] == fast["points_per_step"] >= 4 * 9


def test_estimate_refuses_simulated_backend(capsys):
    assert main(["estimate", "sim-xor"]) == 2
    assert "board.backend" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--pulses-per-device", "-3"], ["--touched", "5"], ["--touched", "nan"]])
def test_estimate_refuses_absurd_assumptions(option, capsys):
    assert main(["estimate", "bench-xor", *option]) == 2
    err = capsys.readouterr().err
    assert option[0] in err and "Traceback" not in err


def test_estimate_takes_programming_statistics_from_a_run(tmp_path, capsys):
    """--from-run: pulses per touched device and the touched fraction from a run's metrics.csv."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,program_pulses,program_pulsed\n1,1,30,12\n2,2,18,8\n")
    assert main(["estimate", "bench-xor", "--from-run", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["assumptions"]
    assert got["pulses_per_device"] == pytest.approx(48 / 20)
    assert got["touched_fraction"] == pytest.approx(20 / (2 * got["trainable_devices"]))
    (run / "metrics.csv").write_text("epoch,step,train_acc\n1,1,0.5\n")
    assert main(["estimate", "bench-xor", "--from-run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--from-run" in err and "program_pulsed" in err and "Traceback" not in err


# Virtual bench time per epoch of the shipped bench configs, measured once on the emulated bench
# (write-verify pulses through the sockets, host round trips charged):
#   python benchmarks/estimate_agreement.py bench-iris --epochs 3   (273.2, 274.6, 251.6 s)
#   python benchmarks/estimate_agreement.py bench-xor --epochs 8    (31.1, 23.6, 21.8, 25.8, 22.2, 21.2, 21.9, 24.8 s)
#   python benchmarks/estimate_agreement.py bench-xor-tsp --epochs 8 (113.3, 87.5, 78.5, 74.8, 64.5, 63.0, 68.7, 59.3 s)
# docs/bench-training.md §6 states the same numbers.
EMULATED_EPOCH_S = {"bench-iris": 266.47, "bench-xor": 24.05, "bench-xor-tsp": 76.2}


@pytest.mark.parametrize("config", sorted(EMULATED_EPOCH_S))
def test_default_estimate_of_shipped_bench_configs_agrees_with_the_emulated_clock(config, capsys):
    """Without options, hil estimate uses the config's declared programming figures and lands within
    10 % of the emulated bench's clock per epoch; the output names where the figures came from."""
    assert main(["estimate", config, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["assumptions"]["source"] == "board.programming.expected"
    epoch = r["epoch_measure_s"] + r["epoch_program_s"]
    assert abs(epoch / EMULATED_EPOCH_S[config] - 1) <= 0.10, epoch
    assert main(["estimate", config]) == 0
    assert "from board.programming.expected of " + config in capsys.readouterr().out


def test_estimate_without_declared_figures_says_it_uses_the_default(capsys):
    assert main(["estimate", "bench-iris", "--set", "board.programming.expected=null", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["assumptions"]["source"] == "default"
    assert (r["assumptions"]["pulses_per_device"], r["assumptions"]["touched_fraction"]) == (3.0, 1.0)
    assert main(["estimate", "bench-iris", "--set", "board.programming.expected=null"]) == 0
    assert "the built-in default" in capsys.readouterr().out
    assert main(["estimate", "bench-iris", "--touched", "0.5", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)["assumptions"]
    assert (given["source"], given["touched_fraction"], given["pulses_per_device"]) == ("given", 0.5, 2.0)


def test_declared_programming_figures_are_validated(capsys):
    assert main(["estimate", "bench-xor", "--set", "board.programming.expected.touched_fraction=1.5",
                 "--set", "board.programming.expected.pulse=2", "--set",
                 "board.programming.expected.pulses_per_device=abc"]) == 2
    err = capsys.readouterr().err
    assert "board.programming.expected.touched_fraction: a fraction" in err
    assert "board.programming.expected.pulse: unknown key" in err
    assert "board.programming.expected.pulses_per_device: expected a number" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("override, path", [("train.estimator=fd", "train.estimator: "),
                                            ("board.bench=no-such-bench", "board.bench: bench file not found")])
def test_estimate_config_mistakes_are_one_line_with_the_dotted_path(override, path, capsys):
    assert main(["estimate", "bench-xor", "--set", override]) == 2
    err = capsys.readouterr().err
    assert path in err and "Traceback" not in err and "internal error" not in err


def test_one_figure_on_the_command_line_names_where_the_other_came_from(capsys):
    assert main(["estimate", "bench-iris", "--pulses-per-device", "4"]) == 0
    assert "as given on the command line (the other figure from board.programming.expected)" in \
        capsys.readouterr().out
