"""``hil activation``: measured activation of each element equals its σ_a; plot written; clean errors."""

import json

import pytest

from hil.cli import main
from hil.circuit.laws import ELEMENTS


@pytest.mark.parametrize("name", sorted(ELEMENTS))
def test_measured_activation_equals_closed_form(name, capsys):
    assert main(["activation", name, "--points", "41", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["max_abs_dev_v"] <= 1e-9


def test_plot_and_config_subject(tmp_path, capsys):
    png = tmp_path / "act.png"
    assert main(["activation", "sim-digits-shockley", "--a", "1000", "--points", "31", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert "max |measured" in capsys.readouterr().out


def test_bad_parameters_are_one_line_errors(capsys):
    assert main(["activation", "clip", "--param", "v_hi=-1"]) == 2
    assert main(["activation", "clip", "--range", "2,1"]) == 2
    assert main(["activation", "nonexistent-element-or-config"]) in (1, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "v_hi" in err
