"""The compiled kernels read no bounds themselves: their callers check shapes first, so a wrong
size is a one-line ValueError instead of memory read past an array's end."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.build import build_circuit
from hil.train.optim import Optimizer

CIRCUIT = {"seed": 3, "inputs": {"count": 2, "inverted": True, "rails": {"vb_p": 1.0, "vb_n": -1.0}},
           "hidden": {"count": 4, "element": {"model": "ideal"}}, "outputs": {"count": 2, "voltage": 0.0},
           "conductances": {"g_in": {"uniform": [1e-5, 1e-4]}, "g_hh": "none", "g_leak": 1e-8,
                            "g_out": {"uniform": [1e-5, 1e-4]}}}


def adam(m=5):
    return Optimizer("adam", 1e-6, 1e-6, 1e-4, np.ones(m, bool))


def test_adam_takes_a_scalar_gradient_as_every_entry():
    g = np.full(5, 5e-5)
    assert np.array_equal(adam().step(g.copy(), 1.0), adam().step(g.copy(), np.ones(5)))
    opt = adam()
    opt.step(g.copy(), 1.0)
    np.testing.assert_allclose(opt.state["m"], 0.1)


@pytest.mark.parametrize("g, grad", [(np.full(5, 5e-5), np.ones(3)), (np.full(3, 5e-5), np.ones(5))])
def test_adam_refuses_mismatched_sizes(g, grad):
    with pytest.raises(ValueError):
        adam().step(g, grad)


def board():
    return SimulatedBoard(build_circuit(CIRCUIT, "board.circuit"), g_min=1e-8, g_max=1e-4)


def test_branch_product_refuses_unequal_batches_and_is_nan_for_none():
    topo = board().topology
    n = int(topo.edges.max()) + 1
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="equal shape"):
        topo.mean_branch_product(rng.normal(size=(4, n)), rng.normal(size=(2, n)))
    assert np.isnan(topo.mean_branch_product(np.zeros((0, n)), np.zeros((0, n)))).all()

