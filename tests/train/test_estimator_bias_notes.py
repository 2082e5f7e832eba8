"""Every estimator leaves out samples a board marks invalid and says when its answer may not be the
gradient: invalid samples (ep, fd), reading noise (ep, fd, hl-exact), diodes exactly at their kink
(hl-exact)."""

import dataclasses

import numpy as np
import pytest

from hil.board import Measurement
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


class FlakyBoard:
    """A simulated board whose instrument marks sample 0 of every call invalid and returns an
    over-range sentinel for it (as a bench does on compliance); optional reading noise figure."""

    def __init__(self, board: SimulatedBoard, noise_v: float = 0.0):
        self._b, self.noise_v = board, noise_v

    def __getattr__(self, name):
        return getattr(self._b, name)

    def measure(self, x, w=None) -> Measurement:
        m = self._b.measure(x, w)
        valid = np.ones(m.y.shape[0], bool)
        valid[0] = False
        y = np.array(m.y)
        y[0] = 9.9e37
        return dataclasses.replace(m, y=y, e=np.where(valid[:, None], m.e, 9.9e37), valid=valid,
                                   noise_v=self.noise_v)


def setup(seed=0, batch=6):
    c = random_circuit(8, 3, 4, seed=seed, coupling_degree=2, g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(-2, 2, (batch, 3)), rng.integers(0, 2, batch)
    return c, x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("est, opts", [("ep", {"delta_v": 1e-3}), ("fd", {"rel_step": 1e-4})])
def test_invalid_samples_are_left_out_and_reported(est, opts):
    c, x, t, loss = setup()
    exact = estimate("hl-exact", SimulatedBoard(c), x[1:], t[1:], loss).grad  # the valid samples only
    r = estimate(est, FlakyBoard(SimulatedBoard(c)), x, t, loss, opts)
    assert np.all(np.isfinite(r.grad)) and rel(r.grad, exact) <= 1e-6
    assert r.stats["invalid_samples"] == 1 and not r.stats["valid"][0] and r.stats["valid"][1:].all()
    assert r.stats["may_be_biased"] and "1 invalid sample" in r.stats["bias_note"]


@pytest.mark.parametrize("est", ["ep", "fd"])
def test_reading_noise_is_named(est):
    c, x, t, loss = setup(1)

    class Noisy(FlakyBoard):
        def measure(self, x, w=None):
            return dataclasses.replace(self._b.measure(x, w), noise_v=self.noise_v)

    r = estimate(est, Noisy(SimulatedBoard(c), noise_v=1e-5), x, t, loss, {})
    assert r.stats["may_be_biased"] and "reading noise 1e-05 V" in r.stats["bias_note"]


def test_hl_exact_names_diodes_exactly_at_their_kink():
    c = random_circuit(3, 2, 4, seed=0, coupling_degree=0, inverted=False, g_range=(1e-5, 1e-4))
    g_in = c.g_in.copy()
    g_in[0] = [5e-5, 5e-5, 0.0, 0.0]  # node 0 sees x0 and x1 only: x0 = −x1 puts it exactly at 0 V with 0 A
    c = dataclasses.replace(c, g_in=g_in, _cache={}).validate()
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    board = SimulatedBoard(c)
    at_kink = estimate("hl-exact", board, np.array([[1.0, -1.0]]), np.array([0]), loss)
    assert at_kink.stats["may_be_biased"] and "exactly at their kink" in at_kink.stats["bias_note"]
    away = estimate("hl-exact", board, np.array([[1.0, -0.5]]), np.array([0]), loss)
    assert not away.stats["may_be_biased"]


@pytest.mark.parametrize("est", ["hl", "hl-exact", "ep", "fd"])
def test_an_empty_batch_is_refused_not_averaged_to_nan(est):
    c, _, _, loss = setup()
    with pytest.raises(ValueError, match="empty batch"):
        estimate(est, SimulatedBoard(c), np.zeros((0, 3)), np.zeros(0, int), loss)


@pytest.mark.parametrize("degree", [0, 2])
def test_solve_report_of_an_empty_batch_reads_without_error(degree):
    from hil.circuit.solve import EquilibriumSolver

    c = random_circuit(5, 3, 4, seed=0, coupling_degree=degree)
    report = EquilibriumSolver(c).solve(np.zeros((0, c.n_sources))).report
    assert report.converged and report.degenerate == 0 and report.min_margin is None


@pytest.mark.parametrize("opts", [{"beta": 0.0}, {"beta": -1e-3}, {"beta": float("nan")}, {"delta_v": 0.0},
                                  {"delta_v": -0.01}])
def test_ep_refuses_a_nudge_that_is_not_positive(opts):
    c, x, t, loss = setup()
    with pytest.raises(ValueError, match="ep: (beta|delta_v) must be a positive"):
        estimate("ep", SimulatedBoard(c), x, t, loss, opts)


@pytest.mark.parametrize("step", [0.0, -1e-4, float("inf")])
def test_fd_refuses_a_step_that_is_not_positive(step):
    c, x, t, loss = setup()
    with pytest.raises(ValueError, match="fd: rel_step must be a positive"):
        estimate("fd", SimulatedBoard(c), x, t, loss, {"rel_step": step})
