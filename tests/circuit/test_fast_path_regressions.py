"""Regressions found reviewing the compiled fast paths: each case against the general solver."""

import dataclasses

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.solve import EquilibriumSolver


@pytest.mark.parametrize("degree", [0, 4], ids=["uncoupled", "coupled"])
def test_non_zero_configured_port_voltages(degree):
    # the lean uncoupled path had no voltage scale for configured (non-zero) port voltages and
    # raised UnboundLocalError on every operating point
    c = random_circuit(10, 3, 2, seed=0, coupling_degree=degree, g_range=(1e-6, 1e-4))
    c = dataclasses.replace(c, output_voltage=np.array([0.3, -0.2]), _cache={})
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3))
    m = SimulatedBoard(c, 1e-8, 1e-4).measure(x)
    ref = EquilibriumSolver(c).solve(c.source_voltages(x))
    assert np.array_equal(m.w, ref.w) and np.array_equal(m.on, ref.on)
    np.testing.assert_allclose(m.y, ref.y, rtol=1e-12, atol=1e-12 * np.abs(ref.y).max())
    np.testing.assert_allclose(m.e, ref.e, rtol=0, atol=1e-12)
    assert m.info["report"].converged
