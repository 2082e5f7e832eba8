"""The instrument board over capability protocols, on the in-process bench."""

import numpy as np
import pytest

from hil.board import Board, PhasedMeasurement
from hil.boards.instrument import BoardTiming, ramp_plan
from hil.train.estimators import estimate
from hil.train.losses import Loss
from tests.boards.conftest import make_boards


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 2)), rng.integers(0, 2, n)


def test_protocols(boards):
    board, _, _ = boards
    assert isinstance(board, Board) and isinstance(board, PhasedMeasurement)


def test_measure_equals_simulated_board(boards):
    board, sim, _ = boards
    x, _ = batch(8)
    m, s = board.measure(x), sim.measure(x)
    for key in ("y", "i_src", "e"):
        np.testing.assert_allclose(getattr(m, key), getattr(s, key), rtol=1e-12, atol=1e-15)
    assert m.valid.all() and board.stats.stepwise_points == 0


def test_hl_gradient_equals_simulated_board(boards):
    """One hl gradient through the bench equals the simulated board's, noise and quantisation off."""
    board, sim, _ = boards
    x, t = batch(8, seed=1)
    loss = Loss("cross_entropy", 1e5, sim.topology.differential)
    bench_hl = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    sim_hl = estimate("hl", sim, x, t, loss, {"delta_v": 1e-3})
    exact = estimate("hl-exact", sim, x, t, loss)
    assert bench_hl.stats["phases"] == 1 + 2 * sim.topology.n_outputs
    assert rel(bench_hl.grad, sim_hl.grad) <= 1e-9
    assert rel(bench_hl.grad, exact.grad) <= 1e-9


@pytest.mark.parametrize("B", [1, 8, 32])
def test_exchanges_per_step_independent_of_batch(B):
    board, sim, bench = make_boards()
    x, t = batch(B)
    loss = Loss("cross_entropy", 1e5, sim.topology.differential)
    board.connect()
    before = bench.exchanges
    estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    per_step = bench.exchanges - before
    n_inst = len(bench.instruments)
    assert board.stats.sweeps == 1
    assert per_step <= 6 * n_inst + 12  # arm + start + fetch + error queue per instrument: no per-point loop
    board.close()


def test_stepwise_fallback_matches_and_counts_points():
    board, sim, bench = make_boards(timing=BoardTiming(acquisition="stepwise"))
    x, _ = batch(3)
    m = board.measure(x)
    np.testing.assert_allclose(m.e, sim.measure(x).e, rtol=1e-12, atol=1e-15)
    assert board.stats.stepwise_points == 3 and board.stats.sweeps == 0
    board.close()


def test_stepwise_points_are_counted_as_they_are_measured():
    """A progress display (hil calibrate) reads stats.measured_points while a batch runs: on the
    stepwise path it grows point by point, not only when the batch ends."""
    board, _, _ = make_boards(timing=BoardTiming(acquisition="stepwise"))
    board.connect()
    seen = []
    for name in board._scanners():
        inst = board.instruments[name]
        read = inst.read_scan

        def counting_read(read=read):
            seen.append(board.stats.measured_points)
            return read()

        inst.read_scan = counting_read
    board.measure(batch(4)[0])
    per_point = sorted(set(seen))
    assert per_point == [0, 1, 2, 3] and board.stats.measured_points == 4
    board.close()


def test_ramp_plan_keeps_steps_and_returns_to_zero():
    levels = np.array([[1.2, -1.0], [-1.2, 0.1]])
    path, keep = ramp_plan(levels, np.array([0.5, 0.5]), True)
    assert np.all(np.abs(np.diff(np.vstack([np.zeros(2), path, np.zeros(2)]), axis=0)) <= 0.5 + 1e-12)
    np.testing.assert_array_equal(path[keep], levels)
    with pytest.raises(ValueError, match="max_step_v"):
        ramp_plan(levels, np.array([0.5, 0.5]), False)


def test_safe_state_on_every_exit(boards):
    board, _, bench = boards
    x, _ = batch(2)
    board.measure(x)
    assert not bench.all_outputs_off_at_zero()  # outputs on at 0 V between batches
    board.safe_state()
    assert bench.all_outputs_off_at_zero()


def test_exception_mid_batch_leaves_outputs_off():
    board, _, bench = make_boards()
    board.connect()
    smu = bench.instruments["smu0"]

    def broken(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM turned into one) during the sweep

    smu.fetch_sweep = broken
    with pytest.raises(KeyboardInterrupt):
        with board:
            board.measure(batch(4)[0])
    assert bench.all_outputs_off_at_zero()


def test_compliance_marks_samples_invalid():
    from hil.drivers.limits import SourceLimits

    tight = SourceLimits(v_min=-1.5, v_max=1.5, i_compliance_a=2.5e-4, max_step_v=0.5, max_slew_v_per_s=1e4)
    board, sim, bench = make_boards(limits=tight)
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    m = board.measure(x)
    big = np.max(np.abs(np.concatenate([sim.measure(x).y, sim.measure(x).i_src], 1)), axis=1) >= 0.98 * 2.5e-4
    np.testing.assert_array_equal(m.valid, ~big)
    assert big.any() and not big.all()
    board.close()


def test_a_slow_instrument_shutdown_says_so_on_stderr(monkeypatch, capsys):
    """A frozen instrument waits out every shutdown step's timeout (minutes for a whole bench, silent
    before): each instrument slower than SLOW_SHUTDOWN_S gets a line with what its shutdown reported."""
    import hil.boards.instrument as module

    board, _, bench = make_boards()
    board.connect()
    board.measure(batch(2)[0])
    monkeypatch.setattr(module, "SLOW_SHUTDOWN_S", -1.0)  # every instrument counts as slow
    board.safe_state()
    lines = capsys.readouterr().err.strip().splitlines()
    n = len(bench.instruments)
    assert len(lines) == n and lines[-1].endswith(f"{n} of {n} instruments done")
    assert all(l.startswith("hil: safe shutdown: ") and "took" in l for l in lines)
    assert bench.all_outputs_off_at_zero()
    monkeypatch.setattr(module, "SLOW_SHUTDOWN_S", 5.0)
    board.safe_state()
    assert capsys.readouterr().err == ""  # quick shutdowns say nothing
