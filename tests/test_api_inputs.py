"""hil.api called with the wrong input a Python user plausibly passes: one clear exception
naming the argument and what was expected, never a numpy/numba traceback or a silent wrong answer."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import hil.api as api
from hil.cli import main
from hil.config import ConfigError

XOR = api.load_config("sim-xor")
IRIS = api.load_config("sim-iris")


@pytest.fixture(scope="module")
def xor_board():
    return api.build_board(XOR)


@pytest.fixture(scope="module")
def iris():
    board = api.build_board(IRIS)
    data = api.load_data(IRIS)
    return board, api.make_loss(IRIS, board), data.train.x[:4], data.train.y[:4]


# ---- configs ------------------------------------------------------------------------------------
def test_load_config_refuses_a_source_that_is_not_a_path():
    with pytest.raises(TypeError, match=r"source: expected a YAML path or a shipped config name, got NoneType"):
        api.load_config(None)


def test_overrides_given_as_one_string_are_refused_with_the_fix():
    """A plain string would be read character by character ("override 't': expected key.path=value" × 12)."""
    for call in (lambda: api.load_config("sim-xor", overrides="train.epochs=3"),
                 lambda: api.train("sim-xor", overrides="train.epochs=3")):
        with pytest.raises(TypeError, match=r"overrides: expected a list of 'key.path=value' strings.*"
                                            r"\['train.epochs=3'\]"):
            call()


def test_overrides_given_as_a_dict_are_refused_with_the_fix():
    """A dict's keys alone used to be read as overrides ("override 'train.epochs': expected key.path=value")."""
    with pytest.raises(TypeError, match=r"overrides: .*got a dict \(write overrides=\['train.epochs=3'\]\)"):
        api.load_config("sim-xor", overrides={"train.epochs": 3})


@pytest.mark.parametrize("fn", [api.build_board, api.build_circuit, api.load_data, api.parse_config])
def test_config_functions_take_a_shipped_name_like_train_does(fn):
    """``train("sim-xor")`` loads the name; the other config functions did not (AttributeError or a
    list of 'required' keys for a config that is fine)."""
    assert fn("sim-xor") is not None


@pytest.mark.parametrize("fn", [api.build_board, api.build_circuit, api.load_data, api.parse_config])
def test_config_functions_refuse_what_is_not_a_config(fn):
    with pytest.raises(TypeError, match=r"config: expected a config dict \(from load_config\), TrainSettings, "
                                        r"a YAML path or a shipped config name; got list"):
        fn([1, 2])


# ---- measure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("x, says", [
    (np.zeros((2, 2, 2)), r"x: expected input voltages of shape \(batch, 2\) in V, got shape \(2, 2, 2\)"),
    ([[0.0, 1.0, 2.0]], r"x: expected input voltages of shape \(batch, 2\) in V, got shape \(1, 3\)"),
    ([0.0, 1.0, 2.0], r"x: expected input voltages of shape \(batch, 2\) in V, got shape \(3,\)"),
    ([[0.0, 1.0], [1.0]], r"x: expected input voltages of shape \(batch, 2\) in V \(a ragged list"),
    ("abc", r"x: expected input voltages \(numbers\), got str"),
    (None, r"x: expected input voltages \(numbers\), got NoneType"),
    ([[np.nan, 1.0]], r"x: input voltages must be finite; sample 0 holds nan"),
    ([[0.0, 1.0], [1.0, np.inf]], r"x: input voltages must be finite; sample 1 holds inf"),
])
def test_measure_names_x_and_its_expected_shape(xor_board, x, says):
    """A 3-D batch used to reach numba (a TypingError page), a ragged list numpy's 'inhomogeneous shape'."""
    with pytest.raises(ValueError if x is not None and not isinstance(x, str) else TypeError, match=says):
        api.measure(xor_board, x)


def test_measure_takes_one_sample_as_a_flat_list(xor_board):
    assert api.measure(xor_board, [0.0, 1.0]).y.shape == (1, 4)


def test_measure_port_voltages_are_checked_like_the_inputs(xor_board):
    with pytest.raises(ValueError, match=r"w: expected output-port voltages of shape \(1, 4\) in V, got shape \(1, 1\)"):
        api.measure(xor_board, [[0.0, 1.0]], w=[[0.0]])
    m = api.measure(xor_board, [[0.0, 1.0], [1.0, 0.0]], w=[0.0, 0.0, 0.0, 0.0])  # one set for every sample
    assert m.w.shape == (2, 4)


@pytest.mark.parametrize("call", [
    lambda cfg: api.measure(cfg, [[0.0, 1.0]]),
    lambda cfg: api.make_loss(cfg, cfg),
    lambda cfg: api.named_conductances(cfg),
])
def test_a_config_given_where_a_board_belongs_is_named(call):
    with pytest.raises(TypeError, match=r"board: expected a hil board \(hil.board.Board, e.g. from build_board\), got dict"):
        call(XOR)


# ---- gradient -----------------------------------------------------------------------------------
def test_one_hot_targets_for_cross_entropy_are_refused_not_misread(iris):
    """(B, k) one-hot targets used to be read as a (B, k) table of labels: a wrong loss and gradient
    with no error when B == k, an IndexError otherwise."""
    board, loss, x, y = iris
    for target in (np.eye(3)[y], np.eye(3)[y[:3]], y[:, None]):
        xs = x[:len(target)]
        with pytest.raises(ValueError, match=r"target: .*one class label 0 … 2 per sample, shape \(\d,\)"):
            api.gradient(board, xs, target, loss)


def test_mse_targets_of_the_wrong_width_are_refused(iris):
    board, _, x, y = iris
    mse = api.make_loss(IRIS, board, name="mse")
    with pytest.raises(ValueError, match=r"target: .*class labels \(4,\) or logit-space targets \(4, 3\)"):
        api.gradient(board, x, y[:, None].astype(float), mse)  # broadcast against (4, 3) before
    assert api.gradient(board, x, 2.0 * np.eye(3)[y] - 1.0, mse).grad.shape == (board.topology.n_conductances,)


@pytest.mark.parametrize("target, says", [
    ([5], r"target: class labels must be 0 … 1"),
    ([0.5], r"target: class labels must be whole numbers 0 … 1, got 0.5"),
    (1, r"target: a scalar for a batch of 1 samples"),
    ([1, 0], r"target: 2 target\(s\) for a batch of 1 samples"),
    ([np.nan], r"target: must be finite, got nan"),
    (["1"], r"target: expected numbers \(class labels or values\), got an array of str"),
])
def test_gradient_names_a_bad_target(xor_board, target, says):
    loss = api.make_loss(XOR, xor_board)
    with pytest.raises((ValueError, TypeError), match=says):
        api.gradient(xor_board, [[0.0, 1.0]], target, loss)


def test_a_loss_made_for_another_board_is_refused_before_measuring(xor_board, iris):
    """A loss built for the iris board (3 differential pairs of 6 ports) on the XOR board (2 of 4)
    used to fail inside numpy's matmul."""
    board, iris_loss, _, _ = iris
    with pytest.raises(ValueError, match=r"loss: made for a board with 6 output ports \(3 differential pairs\); "
                                         r"this board has 4 \(2 differential pairs\)"):
        api.gradient(xor_board, [[0.0, 1.0]], [1], iris_loss)


@pytest.mark.parametrize("loss", ["cross_entropy", None])
def test_gradient_wants_a_loss_object(xor_board, loss):
    with pytest.raises(TypeError, match=r"loss: expected a Loss \(from make_loss\(config, board\)\), got"):
        api.gradient(xor_board, [[0.0, 1.0]], [1], loss)


def test_gradient_refuses_an_empty_batch(xor_board):
    loss = api.make_loss(XOR, xor_board)
    with pytest.raises(ValueError, match=r"x: an empty batch"):
        api.gradient(xor_board, np.zeros((0, 2)), np.zeros(0, int), loss)


def test_gradient_option_of_the_wrong_type_is_named(xor_board):
    loss = api.make_loss(XOR, xor_board)
    with pytest.raises(ConfigError, match=r"hl.delta_v: expected a number \(V\), got str"):
        api.gradient(xor_board, [[0.0, 1.0]], [1], loss, delta_v="0.01")


# ---- named_conductances, train_steps, train, evaluate_run ---------------------------------------
def test_named_conductances_checks_the_vector_length(xor_board, iris):
    """by="element" used to zip a short vector silently into the first names."""
    m = xor_board.topology.n_conductances
    for by in ("group", "element"):
        with pytest.raises(ValueError, match=rf"values: expected one value per conductance, shape \({m},\), got shape \(5,\)"):
            api.named_conductances(xor_board, np.zeros(5), by=by)
    r = api.gradient(xor_board, [[0.0, 1.0]], [1], api.make_loss(XOR, xor_board))
    with pytest.raises(TypeError, match=r"values: .*pass result.grad"):
        api.named_conductances(xor_board, r)


@pytest.mark.parametrize("steps", [-1, 2.5, "3", True])
def test_train_steps_wants_a_whole_number_of_steps(xor_board, steps):
    with pytest.raises((ValueError, TypeError), match=r"steps: expected a whole number ≥ 0"):
        api.train_steps(xor_board, XOR, [[0.0, 1.0]], [1], steps=steps)


def test_trainable_groups_that_this_board_lacks_are_refused_not_trained_silently(tmp_path, xor_board):
    """sim-xor has no hidden↔hidden conductances: training only g_hh used to run every step (and
    every epoch of a run) without moving a single conductance."""
    only_hh = api.apply_overrides(copy.deepcopy(XOR), ["train.trainable=[g_hh]"])
    before = xor_board.read_conductances()
    with pytest.raises(ValueError, match=r"train\.trainable: g_hh select\(s\) no conductance of this board .*g_hh \(0\)"):
        api.train_steps(xor_board, only_hh, [[0.0, 1.0]], [1], steps=2)
    np.testing.assert_array_equal(xor_board.read_conductances(), before)
    with pytest.raises(ConfigError, match=r"train\.trainable: g_hh select\(s\) no conductance"):
        api.train(only_hh, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before a run directory was made
    staged = api.apply_overrides(copy.deepcopy(XOR), ["train.trainable=[g_out, s1.g_in]"])  # not a cascade
    with pytest.raises(ValueError, match=r"train\.trainable: s1\.g_in name\(s\) no group of this board"):
        api.train_steps(xor_board, staged, [[0.0, 1.0]], [1], steps=1)
    both = api.apply_overrides(copy.deepcopy(XOR), ["train.trainable=[g_hh, g_out]"])  # a group that exists trains
    losses = api.train_steps(xor_board, both, [[0.0, 1.0], [1.0, 1.0]], [1, 0], steps=2)
    assert losses[1] != losses[0]


@pytest.mark.parametrize("epochs", [0, -1, "x", 1.5])
def test_train_refuses_a_meaningless_epoch_count_before_making_a_run(tmp_path, epochs):
    """epochs=0 used to write a run directory that trained nothing (train_acc nan)."""
    with pytest.raises(ConfigError, match=r"epochs: must be a whole number > 0"):
        api.train(XOR, runs_dir=tmp_path, epochs=epochs)
    assert not any(tmp_path.iterdir())


def test_python_errors_name_python_arguments_not_cli_flags(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"configuration: checkpoint: must be one of last, best; got 'bset'"):
        api.load_run(tmp_path, checkpoint="bset")
    with pytest.raises(ConfigError, match=r"configuration: run_dir .*nope: not a run directory") as err:
        api.resume(tmp_path / "nope")
    assert "--resume" not in str(err.value)
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=1",
                 "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"with overrides train.epochs=x:") as err:
        api.resume(run, overrides=["train.epochs=x"])
    assert "--set" not in str(err.value)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=x"]) == 2  # the command line names its options
    assert "with --set train.epochs=x" in capsys.readouterr().err


def test_evaluate_run_takes_a_run_directory_or_says_what_it_wants(tmp_path):
    with pytest.raises(TypeError, match=r"run: expected a LoadedRun \(from load_run\) or a run directory, got NoneType"):
        api.evaluate_run(None)
    with pytest.raises(ConfigError, match=r"not a run directory"):
        api.evaluate_run(tmp_path / "nope")


def test_a_runs_directory_given_as_a_run_names_its_newest_run(tmp_path):
    for name in ("20260101T000000Z_sim-xor", "20260102T000000Z_sim-xor"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.resolved.yaml").write_text("train: {}\n")
    with pytest.raises(ConfigError, match=r"a runs directory holding 2 runs, not a run directory: give one of them "
                                          r"\(the newest is .*20260102T000000Z_sim-xor\)"):
        api.load_run(tmp_path)


def test_a_bench_config_refused_by_build_board_names_the_python_way_out():
    with pytest.raises(ConfigError, match=r"in Python: simulated_twin=True"):
        api.build_board("bench-xor")
    assert api.build_board("bench-xor", simulated_twin=True).topology.n_inputs == 2


@pytest.mark.parametrize("call", [lambda p, d: api.train(XOR, runs_dir=d, progress=p), lambda p, d: api.resume(d, progress=p)])
def test_a_progress_mode_typo_is_refused_before_anything_runs(tmp_path, call):
    """progress="bars" used to train silently with plain lines and no within-epoch progress."""
    with pytest.raises(ValueError, match=r"progress: expected True, False, 'bar' or 'lines', got 'bars'"):
        call("bars", tmp_path)
    assert not any(tmp_path.iterdir())


def test_run_sweep_takes_a_sweep_file_path_or_names_what_it_wants(tmp_path):
    """run_sweep("lr.yaml") used to fail with AttributeError: 'str' object has no attribute 'configs'."""
    from hil.sweep import run_sweep

    with pytest.raises(TypeError, match=r"spec: expected a SweepSpec \(from load_sweep\) or a sweep file's path, got NoneType"):
        run_sweep(None)
    with pytest.raises(ConfigError, match=r"file not found"):
        run_sweep(str(tmp_path / "lr.yaml"))
    (tmp_path / "lr.yaml").write_text("config: sim-xor\noutput: out\ngrid:\n  train.optimizer.lr: [1.0e-6, 2.0e-6]\n")
    outcome = run_sweep(tmp_path / "lr.yaml", output=str(tmp_path / "out"), dry_run=True, echo=lambda line: None)
    assert len(outcome.points) == 2 and outcome.ran == 0  # a dry run lists the points, runs nothing


@pytest.mark.parametrize("gain", [True, "1e5", [1e5]])
def test_make_loss_wants_a_number_for_its_gain(xor_board, gain):
    """``gain_per_a=True`` used to become a gain of 1/A (a bool is an int to Python), a string 1e5/A."""
    with pytest.raises(ConfigError, match="gain_per_a: expected a number"):
        api.make_loss(XOR, xor_board, gain_per_a=gain)
