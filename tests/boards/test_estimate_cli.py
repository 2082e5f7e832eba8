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
