"""The linear loss refuses a float target it could read two ways."""

import numpy as np
import pytest

from hil.train.losses import Loss


def test_linear_loss_refuses_a_float_vector_as_long_as_both_the_batch_and_the_ports():
    loss = Loss("linear", 1.0, np.zeros((0, 0)))
    y = np.arange(9.0).reshape(3, 3) * 1e-6
    with pytest.raises(ValueError, match="reads as coefficients"):
        loss.value_and_grad(y, np.array([1.0, 0.0, 2.0]))  # coefficients or labels 1, 0, 2?
    # unambiguous forms still work: integer labels, (B, q) coefficients, (q,) with B != q
    labels = loss.value_and_grad(y, np.array([1, 0, 2]))[1]
    assert np.allclose(labels.sum(axis=1), 0.0)
    c = np.array([1.0, 0.0, 2.0])
    assert np.allclose(loss.value_and_grad(y, np.tile(c, (3, 1)))[1], np.tile(c, (3, 1)))
    assert np.allclose(loss.value_and_grad(y[:2], c)[0], y[:2] @ c)
