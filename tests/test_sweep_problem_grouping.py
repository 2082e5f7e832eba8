"""hil sweep: a config problem shared by many runs of a sweep is reported once, with the runs it
concerns, not once per (grid point, seed)."""

import pytest

from hil.config import ConfigError
from hil.sweep.spec import expand, parse_sweep


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        expand(parse_sweep(data))
    return info.value.problems


def test_a_mistake_under_set_is_one_line_for_the_whole_grid():
    problems = _problems({"config": "sim-xor", "set": {"train.epochz": 2},
                          "grid": {"train.optimizer.lr": [1e-6, 2e-6, 5e-6], "board.circuit.hidden.count": [4, 8]},
                          "seeds": [0, 1, 2]})
    assert problems == ["every run: train.epochz: unknown key (did you mean 'epochs'?)"]


def test_a_bad_grid_value_names_its_point_and_seeds_once():
    problems = _problems({"config": "sim-xor", "grid": {"train.optimizer.lr": [5e-6, -1.0, -2.0]},
                          "seeds": [0, 1]})
    assert problems == ["train.optimizer.lr=-1 (seeds 0, 1); train.optimizer.lr=-2 (seeds 0, 1): "
                        "train.optimizer.lr: must be > 0"]


def test_a_problem_of_one_run_keeps_its_point_and_seed():
    problems = _problems({"config": "sim-xor", "grid": {"train.batch_size": [0, 2]}})
    assert problems == ["train.batch_size=0 (seed 0): train.batch_size: must be > 0"]


def test_many_points_are_cut_short_with_a_count():
    problems = _problems({"config": "sim-xor", "grid": {"train.optimizer.lr": [-1.0, -2.0, -3.0, -4.0, -5.0, 1e-6]}})
    assert problems == ["train.optimizer.lr=-1 (seed 0); train.optimizer.lr=-2 (seed 0); train.optimizer.lr=-3 "
                        "(seed 0) and 2 more runs: train.optimizer.lr: must be > 0"]


def test_a_grid_key_past_the_end_of_a_list_names_the_sweep_file(tmp_path):
    from hil.sweep.spec import load_sweep

    f = tmp_path / "stages.yaml"
    f.write_text("config: sim-xor-cascade\ngrid: {board.stages.7.buffer_gain: [2, 4]}\n")
    with pytest.raises(ConfigError) as info:
        expand(load_sweep(str(f)))
    assert str(info.value) == (f"invalid configuration in {f}: grid.board.stages.7.buffer_gain: "
                               "board.stages.7.buffer_gain: no list entry 7 in the training config")
