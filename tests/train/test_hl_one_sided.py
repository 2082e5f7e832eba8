"""hl on a piecewise-linear board that reports diode states: a flip in only one of the two phases is
resolved from the other phase (exact), flips in both are re-measured; ∂ℓ/∂u is formed on read."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


def setup(seed):
    c = random_circuit(30, 4, 4, seed=seed, coupling_degree=0)
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(-2, 2, (16, 4)), rng.integers(0, 2, 16)
    return SimulatedBoard(c), x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_single_phase_flips_are_exact_without_re_measuring():
    board, x, t, loss = setup(1)
    exact = estimate("hl-exact", board, x, t, loss)
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.03, "max_retries": 0})
    assert res.stats["one_sided"] > 0 and res.stats["flipped_samples"] == res.stats["one_sided"]
    assert res.stats["retries"] == 0 and res.stats["unresolved_flips"] == 0 and not res.stats["may_be_biased"]
    assert rel(res.grad, exact.grad) <= 1e-12
    assert rel(res.source_grad, exact.source_grad) <= 1e-11


@pytest.mark.parametrize("seed", range(3))
def test_flips_in_both_phases_are_still_re_measured(seed):
    board, x, t, loss = setup(seed)
    exact = estimate("hl-exact", board, x, t, loss)
    blind = estimate("hl", board, x, t, loss, {"delta_v": 0.3, "max_retries": 0})
    assert blind.stats["unresolved_flips"] > 0 and rel(blind.grad, exact.grad) > 1e-3
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.3, "max_retries": 6})
    assert res.stats["retries"] > 0 and res.stats["unresolved_flips"] == 0
    assert rel(res.grad, exact.grad) <= 1e-9 and rel(res.source_grad, exact.source_grad) <= 1e-8


def test_source_gradient_is_formed_from_the_readings_when_read():
    board, x, t, loss = setup(2)
    res = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    assert "_source_grad" not in res.__dict__ or res.__dict__["_source_grad"] is None
    g = board.read_conductances()
    board.program(g * 1.5)  # reprogramming afterwards changes nothing in what was measured
    exact = estimate("hl-exact", SimulatedBoard(board.circuit.with_conductances(g)), x, t, loss)
    assert rel(res.source_grad, exact.source_grad) <= 1e-9
