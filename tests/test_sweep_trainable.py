"""hil sweep and train.trainable groups that a grid point's board lacks (e6f67c2 refuses them)."""

import pytest

from hil.config import ConfigError
from hil.sweep.spec import expand, parse_sweep


@pytest.mark.xfail(strict=True, reason="expand() validates settings only; the board's groups are checked when the "
                                       "point trains: the point fails (exit 1, 'run again to retry'), not exit 2")
def test_a_grid_point_training_only_missing_groups_stops_the_sweep_before_any_run():
    """sim-xor has no hidden↔hidden conductances: a point with train.trainable [g_hh] is a config
    mistake, which docs/sweep.md says is reported before anything runs (exit 2); it is only found
    when that point trains, after the other points ran, and reported as a failed run to retry."""
    spec = parse_sweep({"config": "sim-xor", "set": {"train.epochs": 1},
                        "grid": {"train.trainable": [["g_hh"], ["g_out"]]}})
    with pytest.raises(ConfigError, match=r"train\.trainable"):
        expand(spec)
