"""The fused uncoupled solve (closed form + KKT certificate), source currents formed on read, and
the board-side fast paths agree with the general code and with exact formulas."""

import numpy as np
import pytest

from hil.board import as_program_result
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.ideal import certify, solve_ideal, solve_ideal_diagonal
from hil.circuit.linsolve import MaskedSolver
from hil.circuit.nodal import NodalSystem
from hil.circuit.report import SolveError
from hil.circuit.solve import EquilibriumSolver
from hil.train.optim import Optimizer


def _case(seed, orientation, v_ref):
    c = random_circuit(30, 5, 4, seed=seed, coupling_degree=0)
    n = c.n_hidden
    rng = np.random.default_rng(seed)
    s = {"+": np.ones(n, int), "-": -np.ones(n, int), "mixed": rng.choice([-1, 1], n)}[orientation]
    h = np.zeros(n) if v_ref == 0 else rng.uniform(-0.3, 0.3, n)
    b = c.source_voltages(rng.uniform(-2, 2, (12, c.n_inputs))) @ c.g_in.T
    return c, EquilibriumSolver(c).nodal.diag, b, s, h


@pytest.mark.parametrize("orientation", ["+", "-", "mixed"])
@pytest.mark.parametrize("v_ref", [0, 1])
def test_fused_solve_and_certificate_equal_the_general_ones(orientation, v_ref):
    c, diag, b, s, h = _case(3, orientation, v_ref)
    fast = solve_ideal_diagonal(diag, b, s, h, 2.0)
    general = solve_ideal(MaskedSolver(c.laplacian_dense(), c.laplacian_sparse(), diagonal=None), b, s, h, None, 2.0)
    assert np.array_equal(fast.on, general.on) and fast.on.any() and (~fast.on).any()
    assert np.max(np.abs(fast.e - general.e)) <= 1e-12 * 2.0
    assert np.max(np.abs(fast.mu - general.mu)) <= 1e-12 * np.abs(b).max()
    # the fused residuals are the certificate of the returned solution, computed independently
    ref = certify(c.laplacian_dense(), fast.e, b, s, h, fast.on, 2.0)
    r = fast.report
    assert abs(r.kkt_primal - ref["primal"]) <= 1e-15 and abs(r.kkt_dual - ref["dual"]) <= 1e-15
    assert abs(r.kkt_complementarity - ref["complementarity"]) <= 1e-15
    assert abs(r.kcl_residual_rel - ref["kcl_rel"]) <= 1e-15
    # the diagnostics formed on read follow their definitions
    z, mu, si = ref["z"], ref["mu"], ref["scale_i"]
    assert r.min_margin == pytest.approx(float(np.maximum(z / 2.0, mu / si).min()), rel=1e-12, abs=1e-300)
    assert r.degenerate == int(np.count_nonzero((z <= 1e-12 * 2.0) & (np.abs(mu) <= 1e-12 * si)))
    assert r.to_dict()["min_margin"] == r.min_margin


def test_fused_solve_raises_on_states_it_cannot_certify():
    s, h = np.ones(2, int), np.zeros(2)
    # a negative "conductance" gives the clamped diode a negative current: dual infeasible
    with pytest.raises(SolveError, match="not certified") as err:
        solve_ideal_diagonal(np.array([-1e-4, 1e-4]), np.array([[1e-5, 1e-5]]), s, h, 1.0)
    assert err.value.report.kkt_dual > 1e-12 and not err.value.report.converged
    for bad in (np.nan, np.inf):
        with pytest.raises(SolveError):
            solve_ideal_diagonal(np.array([1e-4, 1e-4]), np.array([[bad, 1e-5]]), s, h, 1.0)
    empty = solve_ideal_diagonal(np.array([1e-4, 1e-4]), np.zeros((0, 2)), s, h, 1.0)
    assert empty.report.converged and empty.e.shape == (0, 2)


def test_source_currents_formed_on_read_use_the_conductances_of_the_measurement():
    c = random_circuit(12, 3, 4, seed=1, coupling_degree=0)
    board = SimulatedBoard(c, g_min=1e-8, g_max=1e-4)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    m = board.measure(x)
    eager = EquilibriumSolver(c).solve(c.source_voltages(x))
    g = board.read_conductances()
    for scale in (0.5, 0.7):  # a full and then a partial reprogramming after the measurement
        g = g.copy()
        g[: (g.size if scale == 0.5 else 3)] *= scale
        board.program(g)
    assert np.array_equal(m.i_src, eager.i_src)  # read only now, after two programming steps
    fresh = board.measure(x)
    assert np.max(np.abs(fresh.i_src - EquilibriumSolver(c.with_conductances(g)).solve(
        c.source_voltages(x)).i_src)) <= 1e-15 * np.abs(fresh.i_src).max()


@pytest.mark.parametrize("fraction", [0.01, 1.0])
def test_input_snapshot_is_never_written_and_programming_still_equals_a_rebuild(fraction):
    c = random_circuit(20, 4, 4, seed=2, coupling_degree=0)
    nodal = NodalSystem(c)
    g_in, col = nodal.input_snapshot()
    kept = g_in.copy(), col.copy()
    g = c.conductance_vector().copy()
    pick = np.random.default_rng(3).random(g.size) < fraction
    g[pick] *= 1.3
    assert nodal.program(g) == np.count_nonzero(pick)
    assert np.array_equal(g_in, kept[0]) and np.array_equal(col, kept[1])
    fresh = NodalSystem(c.with_conductances(g))
    for name in ("g", "diag", "in_col_sum", "out_row_sum"):
        assert np.array_equal(getattr(nodal, name), getattr(fresh, name))
    assert np.array_equal(nodal.g_in, fresh.g_in)


@pytest.mark.parametrize("inverted", [True, False])
def test_source_voltages_from_runs_equal_the_input_matrix(inverted):
    c = random_circuit(5, 7, 4, seed=0, inverted=inverted)
    topo = SimulatedBoard(c).topology
    x = np.random.default_rng(0).normal(size=(9, 7))
    u = topo.source_voltages(x)
    assert topo._plan_cache["sources"][0] == "runs"
    assert np.array_equal(u, x @ topo.source_matrix.T + topo.source_offset)
    assert np.array_equal(u, c.source_voltages(x))


def test_branch_products_without_dense_blocks_and_with_still_sources():
    import dataclasses

    c = random_circuit(10, 3, 4, seed=4, coupling_degree=0)
    topo = SimulatedBoard(c).topology
    rng = np.random.default_rng(5)
    N = len(topo.node_names)
    a, b = rng.normal(size=(6, N)), rng.normal(size=(6, N))
    a[:, -1] = b[:, -1] = 0.0
    b[:, :c.n_sources] = 0.0  # a response: the sources do not move
    a[:, c.n_sources + c.n_hidden:-1] = 0.0  # ports at 0 V at the operating point

    def direct(t):
        i, j = t.edges[:, 0], t.edges[:, 1]
        return np.mean((a[:, i] - a[:, j]) * (b[:, i] - b[:, j]), axis=0)

    ref = direct(topo)
    assert np.max(np.abs(topo.mean_branch_product(a, b) - ref)) <= 1e-12 * np.abs(ref).max()
    # the same conductances listed in a scrambled order: no group is a dense block any more
    perm = rng.permutation(topo.n_conductances)
    scrambled = dataclasses.replace(topo, edges=topo.edges[perm], edge_names=tuple(np.array(topo.edge_names)[perm]),
                                    groups={"all": slice(0, topo.n_conductances)})
    assert scrambled._gather_plan()[2] == [] and scrambled._gather_plan()[3].size == topo.n_conductances
    got = scrambled.mean_branch_product(a, b)
    assert np.max(np.abs(got - ref[perm])) <= 1e-12 * np.abs(ref).max()


def test_adam_in_place_equals_the_textbook_update_with_frozen_entries():
    rng = np.random.default_rng(6)
    m_size = 50
    mask = rng.random(m_size) < 0.8
    opt = Optimizer("adam", 1e-6, 1e-8, 1e-4, mask)
    g = rng.uniform(1e-6, 1e-5, m_size)
    m, v = np.zeros(m_size), np.zeros(m_size)
    for t in range(1, 6):
        grad = rng.normal(size=m_size) * 1e4
        new = opt.step(g, grad)
        gr = np.where(mask, grad, 0.0)
        m = 0.9 * m + 0.1 * gr
        v = 0.999 * v + 0.001 * gr * gr
        ref = np.clip(g - 1e-6 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-12), 1e-8, 1e-4)
        ref[~mask] = g[~mask]
        np.testing.assert_allclose(new, ref, rtol=1e-12, atol=0)
        assert np.array_equal(new[~mask], g[~mask])
        g = new
    st = opt.state_dict()
    np.testing.assert_allclose(st["m"], m, rtol=1e-12, atol=1e-300)
    assert np.all(st["m"][~mask] == 0) and np.all(st["v"][~mask] == 0)


def test_programming_returns_the_request_when_in_range_and_clips_otherwise():
    c = random_circuit(6, 2, 2, seed=7, coupling_degree=0)
    board = SimulatedBoard(c, g_min=1e-8, g_max=1e-4)
    g = np.clip(c.conductance_vector(), 1e-8, 1e-4) * 0.9
    got = board.program(g)
    assert got is g and np.array_equal(board.read_conductances(), g)
    pr = as_program_result(g, got, board.conductance_bounds)
    assert pr.summary()["unconverged"] == 0 and pr.achieved is g
    g[0] = 1.0  # the caller's array changes later: the board keeps what it was given
    assert board.read_conductances()[0] != 1.0
    high = g.copy()
    high[1] = 5e-4
    got = board.program(high)
    assert got is not high and got[1] == 1e-4 and np.array_equal(board.read_conductances(), got)
