"""`hl-exact` on the non-ideal board: the adjoint of the circuit the operating point was measured on
(registry elements with clamps, read noise), and the board's piecewise-linear flag for flip checks."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.laws import with_element
from hil.devices.model import parse_devices
from hil.train.estimators import estimate
from hil.train.losses import Loss

CLAMPING = {"clip": {"model": "clip", "v_lo": 0.0, "v_hi": 0.3},
            "antiparallel": {"model": "antiparallel", "v_b": 0.2},
            "leaky-rail": {"model": "leaky", "r_s": 2e4, "v_ref": -0.1}}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def batch(c, seed=0, size=5):
    rng = np.random.default_rng(seed)
    return rng.uniform(-2, 2, (size, c.n_inputs)), rng.integers(0, 2, size)


@pytest.mark.parametrize("name", CLAMPING)
def test_hl_exact_on_nonideal_board_shorts_clamped_elements(name):
    c = with_element(random_circuit(8, 3, 4, seed=7, coupling_degree=2, g_range=(1e-5, 1e-4)), CLAMPING[name])
    x, t = batch(c)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    board = NonIdealBoard(c, 1e-8, 1e-3, parse_devices({}))  # every family off: the nominal circuit
    exact = estimate("hl-exact", SimulatedBoard(c), x, t, loss).grad
    got = estimate("hl-exact", board, x, t, loss)
    assert np.any(board.measure(x).on)  # some element sits at a clamp
    assert rel(got.grad, exact) <= 1e-12
    hl = estimate("hl", board, x, t, loss, {"delta_v": 1e-4})
    assert board.measure(x).piecewise_linear  # flips judged from element states, not as smooth diodes
    assert not hl.stats["may_be_biased"] and rel(hl.grad, exact) <= 1e-9


def test_hl_exact_under_read_noise_uses_the_operating_points_conductances():
    c = random_circuit(8, 3, 4, seed=3, coupling_degree=2, g_range=(1e-5, 1e-4))
    x, t = batch(c, seed=1)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    spec = parse_devices({"read_noise": {"read_noise_scale": 0.05}, "seed": 4})
    board = NonIdealBoard(c, 1e-8, 1e-3, spec)
    state = board.state_dict()
    got = estimate("hl-exact", board, x, t, loss)
    # the same board call again: the read-noise draw of the operating point, from the same stream
    twin = NonIdealBoard(c, 1e-8, 1e-3, spec)
    twin.load_state_dict(state)
    seen = twin.model.seen(twin.true_conductances(), 0.0, read=True)
    np.testing.assert_allclose(got.op.e, SimulatedBoard(c.with_conductances(seen)).measure(x).e, rtol=1e-12,
                               atol=1e-15)
    exact = estimate("hl-exact", SimulatedBoard(c.with_conductances(seen)), x, t, loss).grad
    assert rel(got.grad, exact) <= 1e-12
