"""The lean measurement path of uncoupled ideal diodes (hil.circuit.uncoupled) and its kernels,
against the general equilibrium solver and the numpy formulas they replace."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.ideal import solve_ideal_diagonal
from hil.circuit.solve import EquilibriumSolver
from hil.circuit.uncoupled import source_gather
from hil.kernels import finite_abs_max, held_rows_kernel, repeats_of, source_voltages_kernel


def _board(seed=0, n=24, inputs=6, q=4):
    c = random_circuit(n, inputs, q, seed=seed, coupling_degree=0, g_range=(1e-6, 1e-4))
    return c, SimulatedBoard(c, g_min=1e-8, g_max=1e-4)


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.abs(b).max(), 1e-300)


def test_shifted_rows_solve_the_tiled_right_hand_side_bit_for_bit():
    rng = np.random.default_rng(0)
    diag, b = rng.uniform(1e-5, 1e-4, 9), rng.normal(0, 1e-5, (4, 9))
    delta = rng.normal(0, 1e-6, (12, 9))
    for s, h in ((np.ones(9), np.zeros(9)), (np.where(rng.random(9) < 0.5, 1.0, -1.0), rng.normal(0, 0.1, 9))):
        shifted = solve_ideal_diagonal(diag, b, s, h, 1.0, delta=delta)
        tiled = solve_ideal_diagonal(diag, np.tile(b, (3, 1)) + delta, s, h, 1.0)
        assert np.array_equal(shifted.e, tiled.e) and np.array_equal(shifted.on, tiled.on)
        assert np.array_equal(shifted.mu, tiled.mu)
        assert shifted.report.kkt_complementarity == tiled.report.kkt_complementarity
        assert shifted.report.min_margin == tiled.report.min_margin  # z formed alike (also when s·(e − h) ≠ e)
    assert shifted.on.any() and not shifted.on.all()
    with pytest.raises(ValueError):
        solve_ideal_diagonal(diag, b, s, h, 1.0, delta=delta[:10])  # 10 rows do not repeat 4 held ones


def test_operating_point_and_phases_equal_the_general_solver():
    c, board = _board()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (7, 6))
    m = board.measure(x)
    ref = EquilibriumSolver(c).solve(c.source_voltages(x))
    assert np.array_equal(m.on, ref.on) and m.on.any() and not m.on.all()
    assert _rel(m.e, ref.e) <= 1e-13 and _rel(m.y, ref.y) <= 1e-13 and _rel(m.i_src, ref.i_src) <= 1e-13
    assert np.array_equal(m.u, c.source_voltages(x))
    w = rng.normal(0, 0.05, (14, 4))
    both = board.measure(np.concatenate([x, x]), w)  # the held inputs twice: held source currents
    ref = EquilibriumSolver(c).solve(c.source_voltages(np.concatenate([x, x])), w)
    assert np.array_equal(both.on, ref.on) and _rel(both.e, ref.e) <= 1e-13 and _rel(both.y, ref.y) <= 1e-13
    assert both.info["report"].converged and both.info["report"].kkt_primal == 0.0
    rows = np.array([5, 1, 1])  # some held samples again (a re-measurement), stacked twice
    sub = board.measure(np.concatenate([x[rows], x[rows]]), w[:6])
    ref = EquilibriumSolver(c).solve(c.source_voltages(np.concatenate([x[rows], x[rows]])), w[:6])
    assert np.array_equal(sub.on, ref.on) and _rel(sub.e, ref.e) <= 1e-13 and _rel(sub.y, ref.y) <= 1e-13


def test_port_currents_of_phases_formed_on_read_use_the_conductances_of_the_measurement():
    c, board = _board(seed=2)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (5, 6))
    board.measure(x)
    w = rng.normal(0, 0.05, (10, 4))
    both = board.measure(np.concatenate([x, x]), w)
    eager = EquilibriumSolver(c).solve(c.source_voltages(np.concatenate([x, x])), w)
    g = board.read_conductances()
    board.program(g * 0.6)  # every conductance changes before y is read
    assert _rel(both.y, eager.y) <= 1e-13


def test_bad_inputs_raise_one_line_errors():
    c, board = _board()
    x = np.zeros((3, 6))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        board.measure(x)
    board.measure(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="finite"):
        board.measure(np.zeros((6, 6)), np.full((6, 4), np.inf))
    with pytest.raises(ValueError, match="shape"):
        board.measure(np.zeros((6, 6)), np.zeros((6, 3)))
    empty = board.measure(np.zeros((0, 6)))
    assert empty.e.shape == (0, 24) and empty.y.shape == (0, 4)


def test_source_gather_and_kernel_equal_the_source_map():
    c, board = _board()
    topo = board.topology
    gather = source_gather(topo.source_matrix, topo.source_offset)
    x = np.random.default_rng(3).uniform(-1, 1, (4, 6))
    x[0, 0], x[1, 1] = -0.0, 0.0
    u = np.empty((4, topo.n_sources))
    top, finite = source_voltages_kernel(x, *gather, u)
    ref = topo.source_voltages(x)
    assert np.array_equal(u, ref) and np.array_equal(np.signbit(u), np.signbit(ref))
    assert top == np.abs(ref).max() and finite
    x[2, 3] = np.inf
    assert not source_voltages_kernel(x, *gather, u)[1]
    assert source_gather(np.array([[1.0, 1.0]]), np.zeros(1)) is None  # a source mixing two inputs
    assert source_gather(np.array([[2.0]]), np.zeros(1)) is None


def test_row_matching_kernels():
    rng = np.random.default_rng(5)
    held = rng.normal(size=(5, 3))
    assert repeats_of(np.concatenate([held, held, held]), held) == 3
    assert repeats_of(held, held) == 1
    other = np.concatenate([held, held])
    other[7, 2] += 1e-15
    assert repeats_of(other, held) == 0
    rows = np.empty(2, np.int64)
    assert held_rows_kernel(np.concatenate([held[[4, 0]], held[[4, 0]]]), held, rows) and list(rows) == [4, 0]
    assert not held_rows_kernel(np.concatenate([held[[4, 0]], held[[0, 4]]]), held, rows)  # not a repeat
    assert not held_rows_kernel(np.concatenate([held[[4]] + 1.0, held[[4]] + 1.0]), held, np.empty(1, np.int64))
    top, finite = finite_abs_max(np.array([[1.0, -3.0], [2.0, 0.5]]))
    assert top == 3.0 and finite and not finite_abs_max(np.array([[np.nan]]))[1]
