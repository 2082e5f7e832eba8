"""Input and port voltages must be real numbers: complex values (whose imaginary part numpy drops with
only a warning) and text ('1', which numpy reads as 1.0) are one TypeError naming the argument."""

import numpy as np
import pytest

import hil.api as api


@pytest.fixture(scope="module")
def board():
    return api.build_board("sim-xor")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("x, says", [(np.array([[1 + 1j, 0.0]]), "complex numbers"), ([["1", "0"]], "text")])
def test_inputs_that_are_not_real_numbers_are_refused(board, x, says):
    with pytest.raises(TypeError, match=rf"x: expected input voltages \(real numbers\), got {says}"):
        api.measure(board, x)
    with pytest.raises(TypeError, match=rf"x: expected input voltages \(real numbers\), got {says}"):
        api.gradient(board, x, [0], api.make_loss("sim-xor", board))


@pytest.mark.filterwarnings("error")
def test_port_voltages_that_are_complex_are_refused(board):
    with pytest.raises(TypeError, match=r"w: expected output-port voltages \(real numbers\), got complex"):
        api.measure(board, [[0.0, 1.0]], w=np.zeros(4, complex))
