"""Evaluating a run on a simulated non-ideal board sees the devices the checkpoint saved (their
programming noise, drift clock and random stream), not a new programming of the same targets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import hil.api as api
from hil.cli import main
from hil.train.rundir import RunDir


@pytest.fixture(scope="module")
def rram_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "sim-iris", "-q", "--runs-dir", str(runs), "--set", "train.epochs=2",
                 "--set", "output.plots=false", "--set", "board.devices={preset: rram-crossbar, seed: 1, "
                 "drift: {drift_nu_mean: 0.05, drift_nu_std: 0.02, t0: 1.0, seconds_per_measure: 0.01}}"]) == 0
    return next(runs.iterdir())


def test_load_run_restores_the_checkpoints_devices_and_clock(rram_run):
    _, ck = RunDir(rram_run).load_checkpoint_with_fallback("last")
    run = api.load_run(rram_run, "last")
    state = run.board.state_dict()
    assert float(ck["board_clock_s"]) > 0.0  # training measured: the devices drifted for a while
    assert float(state["board_clock_s"]) == float(ck["board_clock_s"])
    assert np.array_equal(run.board.true_conductances(), ck["board_g_dev_s"])  # not a new programming
    assert np.array_equal(state["board_t_prog_s"], ck["board_t_prog_s"])
    fresh = api.build_board(api.load_config(str(rram_run / "config.resolved.yaml")))
    fresh.program(ck["conductances_s"], rel_tol=0.0)
    assert not np.array_equal(fresh.true_conductances(), ck["board_g_dev_s"])  # what eval measured before


def test_eval_measures_the_checkpoints_devices_every_time(rram_run, capsys):
    """``hil eval`` gives what the devices of the checkpoint give (read by hand: programmed, then their
    saved state put back), the same on every call; a new programming of the same targets gives
    another accuracy on this run (what eval reported before it restored the devices)."""
    capsys.readouterr()
    results = []
    for _ in range(2):
        assert main(["eval", str(rram_run), "--checkpoint", "last", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["accuracy"] == results[1]["accuracy"] and results[0]["loss"] == results[1]["loss"]

    _, ck = RunDir(rram_run).load_checkpoint_with_fallback("last")
    run = api.load_run(rram_run, "last")
    by_hand = api.build_board(api.load_config(str(rram_run / "config.resolved.yaml")))
    by_hand.program(ck["conductances_s"], rel_tol=0.0)
    fresh = api.evaluate_run(dataclasses.replace(run, board=by_hand)).accuracy
    by_hand.load_state_dict({k: v for k, v in ck.items() if k.startswith("board_")})
    restored = api.evaluate_run(dataclasses.replace(run, board=by_hand))
    assert results[0]["accuracy"] == restored.accuracy and results[0]["loss"] == pytest.approx(restored.loss, rel=1e-12)
    assert fresh != restored.accuracy
