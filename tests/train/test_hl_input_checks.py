"""Input checks of ``hl``'s lean lane and of the cross-entropy labels: a malformed operating-point measurement (arrays whose batch
sizes or port counts disagree) is refused with a one-line error, as the general path refuses
it, never read past its end by the compiled kernels."""

import dataclasses

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


def _board_with_op(change):
    """A simulated board whose operating-point measurement (no port voltages given) is altered by ``change``."""
    c = random_circuit(12, 4, 4, seed=3, coupling_degree=0, g_range=(1e-6, 1e-4))

    class Altered(SimulatedBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            return change(m) if w is None else m

    return Altered(c), Loss("cross_entropy", 1e5, c.differential_matrix())


@pytest.mark.parametrize("change", [
    lambda m: dataclasses.replace(m, e=m.e[:-1]),  # one sample's node voltages missing
    lambda m: dataclasses.replace(m, u=m.u[:-1]),  # one sample's source voltages missing
    lambda m: dataclasses.replace(m, w=m.w[:, :-1]),  # fewer ports than port currents
], ids=["short-e", "short-u", "narrow-w"])
def test_hl_refuses_an_operating_point_of_inconsistent_shapes(change):
    board, loss = _board_with_op(change)
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, (3, 4)), rng.integers(0, 2, 3)
    with pytest.raises(ValueError, match="shape"):
        estimate("hl", board, x, t, loss, {"delta_v": 1e-3})


@pytest.mark.parametrize("labels", [[0.0, 1.5, 1.0], [0.0, -1.0, 1.0], [0.0, 2.0, 1.0]])
def test_cross_entropy_refuses_labels_that_are_not_classes(labels):
    """Labels given as floats take the numpy formula: a fractional or negative label (numpy would
    truncate it or index from the end) is refused as the compiled pass refuses an int label out of range."""
    loss = Loss("cross_entropy", 1e4, np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    y = np.random.default_rng(1).normal(0, 1e-4, (3, 4))
    with pytest.raises(ValueError, match="class labels"):
        loss.value_and_grad(y, np.array(labels))
    whole = np.array([0.0, 1.0, 1.0])  # integral floats are labels
    assert np.allclose(loss.value_and_grad(y, whole)[1], loss.value_and_grad(y, whole.astype(int))[1], rtol=1e-12)


@pytest.mark.parametrize("name", ["mse", "linear"])
@pytest.mark.parametrize("labels", [[0.0, 1.5, 1.0], [0, -1, 1], [0, 2, 1]])
def test_mse_and_linear_refuse_labels_that_are_not_classes(name, labels):
    """Class labels for the MSE (±1 one-hot) and linear (push the true class up) losses: a fractional,
    negative or too large label is refused with the cross-entropy's message instead of giving an
    all −1 target (MSE) or being truncated / read from the end (linear)."""
    loss = Loss(name, 1e4, np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    y = np.random.default_rng(1).normal(0, 1e-4, (3, 4))
    with pytest.raises(ValueError, match="class labels must be (whole numbers )?0 … 1"):
        loss.value_and_grad(y, np.array(labels))
    whole = np.array([0.0, 1.0, 1.0])  # integral floats are labels
    assert np.allclose(loss.value_and_grad(y, whole)[1], loss.value_and_grad(y, whole.astype(int))[1], rtol=1e-12)
