"""``board.devices`` on a cascade is refused with its dotted path: the cascade board simulates ideal
stages only, and it used to drop the section silently (a user asking for discrete-bench non-idealities
trained an ideal cascade without a word)."""

import pytest

import hil.api as api
from hil.cli import main
from hil.config import ConfigError


def test_devices_on_a_cascade_are_refused_before_a_run_exists(tmp_path, capsys):
    cfg = api.load_config("sim-xor-cascade", ["board.devices={preset: discrete-bench}"])
    with pytest.raises(ConfigError, match=r"board\.devices: non-idealities are simulated on one-stage boards only"):
        api.build_board(cfg)
    assert main(["train", "sim-xor-cascade", "--set", "board.devices={preset: discrete-bench}",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "board.devices" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_an_ideal_devices_section_is_accepted():
    cfg = api.load_config("sim-xor-cascade", ["board.devices={preset: ideal}"])
    assert type(api.build_board(cfg)).__name__ == "CascadeBoard"
