"""The non-ideal board refuses non-finite conductances before anything is written, as the simulated
board does.  Before, NaN was written to the devices (the next measurement raised a SolveError blaming
a floating node, or a CouplingError with wires) and ±inf was clipped to the range silently."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.circuit.generate import random_circuit
from hil.devices.model import parse_devices


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_conductances_are_refused_and_nothing_is_written(bad):
    c = random_circuit(4, 2, 2, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4))
    board = NonIdealBoard(c, 1e-8, 1e-4, parse_devices({"dtod": {"g_dtod_std": 0.01}}))
    before = board.true_conductances()
    g = board.read_conductances()
    g[3] = bad
    with pytest.raises(ValueError, match=r"conductances must be finite \(siemens\); R_h0_x1_n is"):
        board.program(g)
    assert np.array_equal(board.true_conductances(), before)
    assert np.isfinite(board.measure(np.zeros((1, 2))).y).all()
