"""hil sweep and train.trainable groups that a grid point's board lacks: refused by the sweep's
validation before any run (exit 2), as training itself refuses them."""

import pytest

from hil.config import ConfigError
from hil.sweep.spec import expand, parse_sweep


def test_a_grid_point_training_only_missing_groups_stops_the_sweep_before_any_run():
    """sim-xor has no hidden↔hidden conductances: a point with train.trainable [g_hh] is a config
    mistake, reported with the point before anything runs, not as a failed run to retry."""
    spec = parse_sweep({"config": "sim-xor", "set": {"train.epochs": 1},
                        "grid": {"train.trainable": [["g_hh"], ["g_out"]]}})
    with pytest.raises(ConfigError, match=r"train\.trainable=\['g_hh'\] \(seed 0\): train\.trainable: g_hh select"):
        expand(spec)


def test_grid_points_whose_groups_exist_expand():
    spec = parse_sweep({"config": "sim-xor", "set": {"train.epochs": 1},
                        "grid": {"train.trainable": [["g_leak"], ["g_out"], ["g_hh", "g_in"]]}})
    assert len(expand(spec)) == 3


def test_a_stage_that_the_cascade_lacks_stops_the_sweep_too():
    spec = parse_sweep({"config": "sim-xor-cascade", "set": {"train.epochs": 1},
                        "grid": {"train.trainable": [["g_out", "s7.g_in"], ["s1.g_in"]]}})
    with pytest.raises(ConfigError, match=r"train\.trainable: s7\.g_in name\(s\) no group of this board"):
        expand(spec)
