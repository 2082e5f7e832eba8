"""hil.api.gradient checks every estimator option as the config does (train.hl.*, train.ep.*, train.fd.*):
a flag must be a bool, a retry count a whole number ≥ 0, a number finite and in its range.  Before,
``max_retries=-1`` or ``"a"``, ``central="no"``, ``flip_rel_tol=nan`` (which silently switches off the
± symmetry flip check) and ``rel_step=0.9`` were taken, and ``fd`` with ``max_retries=-1`` died with
an UnboundLocalError."""

import numpy as np
import pytest

import hil.api as api
from hil.config import ConfigError

XOR = api.load_config("sim-xor")


@pytest.fixture(scope="module")
def board_and_loss():
    board = api.build_board(XOR)
    return board, api.make_loss(XOR, board)


@pytest.mark.parametrize("estimator, options, says", [
    ("hl", {"max_retries": -1}, r"hl\.max_retries: expected a whole number ≥ 0, got int -1"),
    ("hl", {"max_retries": 1.5}, r"hl\.max_retries: expected a whole number ≥ 0"),
    ("hl", {"max_retries": "a"}, r"hl\.max_retries: expected a whole number ≥ 0, got str"),
    ("hl", {"max_retries": True}, r"hl\.max_retries: expected a whole number ≥ 0, got bool"),
    ("hl", {"central": "no"}, r"hl\.central: expected true or false, got str 'no'"),
    ("hl", {"one_sweep": 1}, r"hl\.one_sweep: expected true or false"),
    ("hl", {"flip_rel_tol": float("nan")}, r"hl\.flip_rel_tol: must be a finite number"),
    ("hl", {"flip_rel_tol": -1e-3}, r"hl\.flip_rel_tol: must be > 0"),
    ("hl", {"delta_v": float("inf")}, r"hl\.delta_v: must be a finite number \(V\)"),
    ("hl", {"delta_v": 100.0}, r"hl\.delta_v: must be in \(0, 10\] V, got 100\.0"),
    ("ep", {"delta_v": 0.0}, r"ep\.delta_v: must be in \(0, 10\] V"),
    ("ep", {"max_retries": -2}, r"ep\.max_retries: expected a whole number ≥ 0"),
    ("ep", {"centred": "yes"}, r"ep\.centred: expected true or false"),
    ("ep", {"beta": "1e-7"}, r"ep\.beta: expected a number"),
    ("fd", {"max_retries": -1}, r"fd\.max_retries: expected a whole number ≥ 0"),
    ("fd", {"rel_step": 0.9}, r"fd\.rel_step: must be in \(0, 0\.5\), got 0\.9"),
    ("fd", {"g_floor": -1.0}, r"fd\.g_floor: must be ≥ 0 S"),
])
def test_a_bad_option_value_is_one_config_error_naming_it(board_and_loss, estimator, options, says):
    board, loss = board_and_loss
    with pytest.raises(ConfigError, match=says):
        api.gradient(board, [[0.0, 1.0]], [1], loss, estimator=estimator, **options)


@pytest.mark.parametrize("estimator, options", [
    ("hl", {"max_retries": 0, "central": np.bool_(False), "flip_rel_tol": 1e-2, "delta_v": 1, "one_sweep": False}),
    ("hl", {"max_retries": np.int64(2), "keep_per_sample": True}),
    ("ep", {"beta": None, "centred": True, "max_retries": 0}),
    ("fd", {"rel_step": 1e-3, "g_floor": 0.0, "max_retries": 0}),
])
def test_good_option_values_pass(board_and_loss, estimator, options):
    board, loss = board_and_loss
    r = api.gradient(board, [[0.0, 1.0]], [1], loss, estimator=estimator, **options)
    assert np.all(np.isfinite(r.grad))
