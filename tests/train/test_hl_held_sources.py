"""The lean hl path (held sources known from the board, v·v̂ from the parts) against straightforward references."""

import dataclasses

import numpy as np
import pytest

from hil.board import Measurement
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.kernels import repeats_of
from hil.train.estimators import estimate
from hil.train.losses import Loss


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def network(coupling, n_inputs=6, batch=5, seed=0):
    c = random_circuit(12, n_inputs, 4, seed=seed, coupling_degree=coupling, g_range=(1e-6, 1e-4))
    rng = np.random.default_rng(seed + 1)
    x, t = rng.uniform(0, 1, (batch, n_inputs)), rng.integers(0, 2, batch)
    return c, SimulatedBoard(c), x, t, Loss("cross_entropy", 1e5, c.differential_matrix())


def reference_hl(board, x, t, loss, delta_v, central=False):
    """hl written out plainly: operating point, the + phase (and the − phase when ``central``), node
    responses, and the batch mean of (v_a − v_b)(v̂_a − v̂_b) per conductance by gathering both
    ends.  On an exact board whose + phase changed no diode state, hl takes the one-sided
    difference (exact there), so that is the reference of its arithmetic."""
    topo = board.topology
    op = board.measure(x)
    _, dy = loss.value_and_grad(op.y, t)
    w_hat = -dy
    eps = delta_v / np.max(np.abs(w_hat), axis=1, keepdims=True)
    n0 = topo.node_voltages(op)
    plus = topo.node_voltages(board.measure(x, op.w + eps * w_hat))
    if central:  # (the same solves as hl's: the comparison is of arithmetic, not of a solver's tolerance)
        n_hat = (plus - topo.node_voltages(board.measure(x, op.w - eps * w_hat))) / (2 * eps)
    else:
        n_hat = (plus - n0) / eps
    a, b = topo.edges[:, 0], topo.edges[:, 1]
    return np.mean((n0[:, a] - n0[:, b]) * (n_hat[:, a] - n_hat[:, b]), axis=0)


@pytest.mark.parametrize("coupling", [0, 4], ids=["uncoupled", "coupled"])
@pytest.mark.parametrize("batch", [1, 3, 9])  # one compiled pass (≤ 4 samples) and the factored products
def test_hl_equals_the_plain_reference_and_hl_exact(coupling, batch):
    c, board, x, t, loss = network(coupling, batch=batch)
    res = estimate("hl", board, x, t, loss, {"delta_v": 1e-4})
    assert res.stats["flipped_samples"] == 0 and not res.stats["may_be_biased"]
    assert res.stats["mirror_measured"] == 0  # no state changed in the + phase: no − phase needed
    assert rel(res.grad, reference_hl(board, x, t, loss, 1e-4)) <= 1e-12
    assert rel(res.grad, reference_hl(board, x, t, loss, 1e-4, central=True)) <= 1e-10  # both exact: rounding
    assert rel(res.grad, estimate("hl-exact", board, x, t, loss).grad) <= 1e-9
    kept = estimate("hl", board, x, t, loss, {"delta_v": 1e-4, "keep_per_sample": True})
    assert np.array_equal(kept.grad, res.grad)
    assert rel(kept.per_sample.mean(axis=0), res.grad) <= 1e-12


@pytest.mark.parametrize("coupling", [0, 4], ids=["uncoupled", "coupled"])
@pytest.mark.parametrize("batch", [1, 2, 7, 40])
@pytest.mark.parametrize("ports_at_zero", [True, False])
def test_mean_response_product_equals_mean_branch_product(coupling, batch, ports_at_zero):
    c, board, *_ = network(coupling, n_inputs=9)
    topo = board.topology
    rng = np.random.default_rng(batch)
    p, n, q = topo.n_sources, topo.n_hidden, topo.n_outputs
    u, e, w, e_hat, w_hat = (rng.normal(size=(batch, k)) for k in (p, n, q, n, q))
    if ports_at_zero:
        w[:] = 0.0
    zeros = np.zeros((batch, 1))
    a = np.concatenate([u, e, w, zeros], axis=1)
    b = np.concatenate([np.zeros((batch, p)), e_hat, w_hat, zeros], axis=1)
    assert topo._response_plan() is not None  # the crossbar groups are recognised, no fallback
    assert rel(topo.mean_response_product(u, e, w, e_hat, w_hat), topo.mean_branch_product(a, b)) <= 1e-13


def test_phases_say_their_sources_were_held_and_form_them_when_read():
    c, board, x, t, loss = network(0)
    op = board.measure(x)
    w = np.concatenate([op.w + 1e-3, op.w - 1e-3])
    both = board.measure(np.concatenate([x, x]), w)
    assert both.held_sources[0] is op.u and both.held_sources[1] == 2
    assert "_u" not in both.__dict__ or both.__dict__["_u"] is None  # not formed until read
    np.testing.assert_array_equal(both.u, np.concatenate([op.u, op.u]))
    fresh = SimulatedBoard(c).measure(np.concatenate([x, x]), w)  # no held point: a full solve
    assert fresh.held_sources is None
    np.testing.assert_allclose(both.e, fresh.e, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(both.y, fresh.y, rtol=1e-12, atol=1e-18)
    # a measurement rebuilt by a wrapper does not carry the board's word: estimators compare instead
    assert Measurement.held_sources is None and dataclasses.replace(both).held_sources is None


def test_a_wrapper_that_rebuilds_measurements_gives_the_same_gradient():
    c, board, x, t, loss = network(0, batch=6)

    class Rebuilding:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def measure(self, x, w=None):
            return dataclasses.replace(self.inner.measure(x, w))  # no held_sources: compared row by row

    direct = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    wrapped = estimate("hl", Rebuilding(SimulatedBoard(c)), x, t, loss, {"delta_v": 1e-3})
    assert rel(wrapped.grad, direct.grad) <= 1e-15


def test_repeats_of_finds_a_difference_anywhere():
    rng = np.random.default_rng(0)
    held = rng.normal(size=(5, 33))
    stacked = np.concatenate([held, held])
    assert repeats_of(stacked, held) == 2
    for r, j in ((0, 0), (9, 32), (7, 13)):
        other = stacked.copy()
        other[r, j] = np.nextafter(other[r, j], np.inf)
        assert repeats_of(other, held) == 0
        other[r, j] = np.nan
        assert repeats_of(other, held) == 0
