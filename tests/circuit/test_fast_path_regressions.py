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


@pytest.mark.parametrize("degree", [0, 4], ids=["uncoupled", "coupled"])
def test_non_ideal_board_never_reuses_source_currents_of_other_conductances(degree):
    # the held state's source currents G_in·u were reused whenever the same source array came
    # back, even after the conductances had drifted: a certified answer to the old network
    from hil.boards.nonideal import NonIdealBoard
    from hil.devices import parse_devices

    c = random_circuit(10, 4, 2, seed=0, coupling_degree=degree, g_range=(1e-6, 1e-4))
    spec = parse_devices({"drift": {"enabled": True, "drift_nu_mean": 0.1, "drift_nu_std": 0.0}})
    board, ref = NonIdealBoard(c, 1e-7, 1e-4, spec), NonIdealBoard(c, 1e-7, 1e-4, spec)
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, board.topology.n_conductances)
    u = board.topology.source_voltages(np.random.default_rng(1).uniform(-1, 1, (3, 4)))
    for b in (board, ref):
        b.program(g)
        b.measure_sources(u)
        b.elapse(1e6)  # the devices drift: other conductances from now on
    m, r = board.measure_sources(u), ref.measure_sources(u.copy())  # the same array object again / a copy
    np.testing.assert_allclose(m.y, r.y, rtol=1e-12, atol=1e-12 * np.abs(r.y).max())
    np.testing.assert_allclose(m.i_src, r.i_src, rtol=1e-12, atol=1e-12 * np.abs(r.i_src).max())
