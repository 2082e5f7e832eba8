"""board.backend: instruments — validation with dotted paths, all problems at once."""

import copy

import pytest

from hil.config import ConfigError, load_yaml
from hil.train.settings import parse_settings


@pytest.fixture
def raw():
    return load_yaml("configs/bench-xor.yaml")


def test_shipped_bench_config_is_valid(raw):
    s = parse_settings(raw, "bench-xor")
    spec = s.instrument_board
    assert s.backend == "instruments" and spec.bench.name == "xor-bench"
    assert spec.programming["settings"].rel_tol == 0.02
    assert len(spec.programming["devices"]) == spec.bench.circuit.topology().n_conductances


def test_every_mistake_reported_with_its_path(raw):
    bad = copy.deepcopy(raw)
    bench = load_yaml("configs/benches/xor-bench.yaml")
    bench["instruments"]["smu1"]["channels"]["a"].pop("max_step_v")
    bench["instruments"]["smu2"]["channels"]["b"]["v_max"] = -2.0
    bench["wiring"]["hidden"].pop("h3")
    bench["wiring"]["outputs"]["y0"] = "smu1.a"  # already drives x0
    bad["board"]["bench"] = bench
    bad["board"]["acquisition"]["mode"] = "fast"
    bad["board"]["programming"]["v_read"] = 2.0
    del bad["board"]["programming"]["devices"]["R_h0_x0"]
    with pytest.raises(ConfigError) as exc:
        parse_settings(bad, "x")
    text = "\n".join(exc.value.problems)
    for needle in ("board.bench.instruments.smu1.channels.a.max_step_v: required",
                   "board.bench.instruments.smu2.channels.b.v_max",
                   "board.bench.wiring.hidden: not wired: h3",
                   "board.bench.wiring.outputs.y0: smu1.a is already wired",
                   "board.acquisition.mode",
                   "v_read",
                   "board.programming.devices: no crosspoints for 1 conductance"):
        assert needle in text, (needle, text)


def test_bench_keys_rejected_on_the_simulated_backend():
    raw = load_yaml("configs/sim-xor.yaml")
    raw["board"]["bench"] = "xor-bench"
    with pytest.raises(ConfigError, match="board.bench: unknown key"):
        parse_settings(raw, "x")


def test_programming_channel_checked_against_the_bench(raw):
    raw["board"]["programming"]["smu"] = "smu1.b"
    raw["board"]["programming"]["matrix"] = "daq"
    with pytest.raises(ConfigError) as exc:
        parse_settings(raw, "x")
    assert exc.value.problems == ["board.programming.smu: smu1.b already drives a circuit node; programming needs its own channel",
                                  "board.programming.matrix: 'daq' is not a switch matrix of the bench"]


def test_two_devices_on_the_same_crosspoints_rejected(raw):
    raw["board"]["programming"]["devices"]["R_h0_x1"] = list(raw["board"]["programming"]["devices"]["R_h0_x0"])
    with pytest.raises(ConfigError, match="board.programming.devices.R_h0_x1: selected by the same crosspoints as R_h0_x0"):
        parse_settings(raw, "x")


def test_triggered_acquisition_refused_when_drivers_cannot(raw):
    raw["board"]["acquisition"]["mode"] = "triggered"
    with pytest.raises(ConfigError, match=r"board.acquisition.mode: triggered acquisition needs .*smu1 \(keithley2600 "
                       r"without trigger_line\)") as err:
        parse_settings(raw, "x")
    assert "daq970a" not in str(err.value)  # the DAQ970A driver has triggered scans


@pytest.mark.parametrize("key, value, needle", [
    ("v_max", 3.0, "board.programming.v_max: pulses up to 3 V exceed prog.a's limits (-1.6 .. 1.6 V)"),
    ("reset_v", -1.7, "board.programming.reset_v: -1.7 V exceeds prog.a's limits (-1.6 .. 1.6 V)"),
])
def test_programming_pulses_beyond_the_programming_channels_limits_are_a_config_error(raw, key, value, needle):
    """Caught when the config is read (exit 2), not as a LimitViolation at the first large pulse mid-run."""
    raw["board"]["programming"][key] = value
    if key == "reset_v":
        raw["board"]["programming"]["v_max"] = 1.7
    with pytest.raises(ConfigError) as exc:
        parse_settings(raw, "x")
    assert any(needle in p for p in exc.value.problems), exc.value.problems


def test_programming_pulse_edge_beyond_max_step_is_a_config_error(raw):
    bench = load_yaml("configs/benches/xor-bench.yaml")
    bench["instruments"]["prog"]["channels"]["a"]["max_step_v"] = 1.0
    raw["board"]["bench"] = bench
    with pytest.raises(ConfigError) as exc:
        parse_settings(raw, "x")
    assert any("board.programming.v_max" in p and "max_step_v 1 V" in p for p in exc.value.problems), \
        exc.value.problems


def test_levels_beyond_the_bench_limits_are_configuration_errors_before_the_bench_is_opened(tmp_path, capsys):
    """An input scale or hl drive that takes a channel beyond its bench limits used to stop the run at
    its first batch (exit 1, 'instrument fault') after the bench was opened, and hil estimate predicted
    the run's time all the same; now both name the key, the node and the channel (exit 2)."""
    from hil.cli import main

    assert main(["estimate", "bench-xor", "--set", "data.input_scale_v=5"]) == 2
    err = capsys.readouterr().err
    assert "data.input_scale_v: x0 would reach 0 .. 5 V, beyond smu1.a's limits -1.5 .. 1.5 V" in err, err
    assert main(["train", "bench-xor", "--runs-dir", str(tmp_path), "--set", "train.hl.delta_v=2"]) == 2
    err = capsys.readouterr().err
    assert "train.hl.delta_v: y0 would reach -2 .. 2 V, beyond smu4.a's limits -1.5 .. 1.5 V" in err, err
    assert "Traceback" not in err and "cannot open the bench" not in err
    assert not any(tmp_path.iterdir())  # no run directory: nothing started
    assert main(["estimate", "bench-xor", "--set", "train.hl.delta_v=0.5"]) == 0  # within the limits


def test_device_crosspoints_must_exist_on_the_programming_matrix(raw):
    """A crosspoint beyond the matrix's rows/columns, in another slot, or forbidden used to pass the
    config check and stop the run at the first device selection ('internal error', exit 1)."""
    bench = load_yaml("configs/benches/xor-bench.yaml")
    bench["instruments"]["matrix"]["forbidden"] = ["1H12"]
    bad = copy.deepcopy(raw)
    bad["board"]["bench"] = bench
    devices = bad["board"]["programming"]["devices"]
    devices["R_h0_x0"], devices["R_h0_x1"], devices["R_h0_x0_n"] = ["1Z99"], ["2A02"], ["1H12"]
    with pytest.raises(ConfigError) as info:
        parse_settings(bad, "bench-xor")
    problems = "\n".join(info.value.problems)
    assert "board.programming.devices.R_h0_x0: not on matrix: crosspoint '1Z99': rows ABCDEFGH" in problems, problems
    assert "board.programming.devices.R_h0_x1: not on matrix: crosspoint '2A02' is not in slot 1" in problems
    assert "board.programming.devices.R_h0_x0_n: 1H12: a forbidden crosspoint of matrix" in problems
