"""Fast paths give the answers of the general paths; programming in place equals a rebuild."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.ideal import solve_ideal, solve_ideal_diagonal
from hil.circuit.linsolve import MaskedSolver, batched_masked_pcg
from hil.circuit.nodal import NodalSystem
from hil.circuit.solve import EquilibriumSolver


def _inputs(c, batch, seed, amp=2.0):
    return c.source_voltages(np.random.default_rng(seed).uniform(-amp, amp, (batch, c.n_inputs)))


@pytest.mark.parametrize("seed, mixed", [(0, False), (1, True), (2, True)])
def test_uncoupled_closed_form_equals_general_active_set_solver(seed, mixed):
    c = random_circuit(40, 6, 4, seed=seed, coupling_degree=0, mixed_orientation=mixed)
    solver = EquilibriumSolver(c)
    u = _inputs(c, 16, seed)
    b = u @ c.g_in.T
    d = c.diodes
    fast = solve_ideal_diagonal(solver.nodal.diag, b, d.orientation, d.v_ref, 2.0)
    # the general PDAS on the dense nodal matrix (no diagonal shortcut)
    general = solve_ideal(MaskedSolver(c.laplacian_dense(), c.laplacian_sparse(), diagonal=None), b,
                          d.orientation, d.v_ref, None, 2.0)
    assert np.array_equal(fast.on, general.on)
    assert np.max(np.abs(fast.e - general.e)) <= 1e-12 * 2.0
    assert np.max(np.abs(fast.mu - general.mu)) <= 1e-12 * np.abs(b).max()
    assert fast.report.converged and fast.report.kkt_complementarity <= 1e-12
    assert fast.on.any() and (~fast.on).any()  # both diode states occur


def test_uncoupled_certificate_matches_the_general_one_and_catches_errors():
    from hil.circuit.ideal import certify

    c = random_circuit(8, 3, 2, seed=3, coupling_degree=0)
    solver = EquilibriumSolver(c)
    b = _inputs(c, 4, 0) @ c.g_in.T
    d = c.diodes
    sol = solve_ideal_diagonal(solver.nodal.diag, b, d.orientation, d.v_ref, 2.0)
    by_diag = certify(solver.nodal.diag, sol.e, b, d.orientation, d.v_ref, sol.on, 2.0)
    by_matrix = certify(c.laplacian_dense(), sol.e, b, d.orientation, d.v_ref, sol.on, 2.0)
    for key in ("primal", "dual", "complementarity", "kcl_rel"):
        assert abs(by_diag[key] - by_matrix[key]) <= 1e-15
    e_bad = sol.e.copy()
    off = np.argwhere(~sol.on)[0]
    e_bad[tuple(off)] *= 1 + 1e-6
    assert certify(solver.nodal.diag, e_bad, b, d.orientation, d.v_ref, sol.on, 2.0)["kcl_rel"] > 1e-12


def test_batched_masked_cg_equals_sparse_lu():
    c = random_circuit(150, 6, 4, seed=4, coupling_degree=4)
    rng = np.random.default_rng(0)
    clamped = rng.random((8, 150)) < 0.4
    rhs = rng.normal(size=(8, 150)) * 1e-4
    h = np.zeros(150)
    k = c.laplacian_sparse()
    lu = MaskedSolver(None, k, iterative=False).solve(clamped, h, rhs)
    cg_solver = MaskedSolver(None, k, iterative=True)
    cg = cg_solver.solve(clamped, h, rhs)
    assert cg_solver.cg_fallbacks == 0
    assert np.max(np.abs(cg - lu)) <= 1e-12 * np.abs(lu).max()
    # a sample CG cannot finish in the allowed iterations is reported as not done
    x, done = batched_masked_pcg(k.tocsr(), k.diagonal(), ~clamped, rhs, max_iter=1)
    assert not done.all()


def test_coupled_solve_iterative_equals_direct():
    c = random_circuit(120, 6, 4, seed=5, coupling_degree=4)
    u = _inputs(c, 12, 5)
    a = EquilibriumSolver(c)
    a.compiled_coupled = False  # batched CG in the general active-set solver
    b = EquilibriumSolver(c)
    b.compiled_coupled = False
    b.masked.iterative = False  # sparse LU
    k = EquilibriumSolver(c)  # the compiled PDAS–CG kernel
    sa, sb, sk = a.solve(u), b.solve(u), k.solve(u)
    assert sk.report.method == "pdas" and "cg" in sk.report.iterations
    for s in (sa, sk):
        assert np.array_equal(s.on, sb.on)
        assert np.max(np.abs(s.e - sb.e)) <= 1e-12 * np.abs(u).max()


@pytest.mark.parametrize("degree", [0, 3])
def test_programming_changed_conductances_equals_rebuild(degree):
    c = random_circuit(30, 5, 4, seed=6, coupling_degree=degree)
    rng = np.random.default_rng(1)
    nodal = NodalSystem(c)
    g = c.conductance_vector()
    for fraction in (0.01, 0.1, 1.0):  # partial updates and a full refresh
        g = g.copy()
        pick = rng.random(g.size) < fraction
        g[pick] *= rng.uniform(0.5, 1.5, pick.sum())
        assert nodal.program(g) == np.count_nonzero(pick)
        fresh = NodalSystem(c.with_conductances(g))
        assert np.array_equal(nodal.g, fresh.g)
        assert np.array_equal(nodal.diag, fresh.diag)
        assert np.array_equal(nodal.k_csr.toarray(), fresh.k_csr.toarray())
        assert np.array_equal(nodal.in_col_sum, fresh.in_col_sum)
        assert np.array_equal(nodal.out_row_sum, fresh.out_row_sum)
        # the nodal matrix is the circuit's grounded Laplacian
        np.testing.assert_allclose(nodal.k_csr.toarray(), c.with_conductances(g).laplacian_dense(),
                                   rtol=1e-15, atol=1e-20)
    assert nodal.program(g) == 0  # nothing changed: nothing written


def test_board_program_matches_a_board_built_from_the_programmed_circuit():
    c = random_circuit(25, 4, 4, seed=7, coupling_degree=2)
    board = SimulatedBoard(c, g_min=1e-8, g_max=1e-4)
    x = np.random.default_rng(2).uniform(-1, 1, (5, c.n_inputs))
    g = c.conductance_vector().copy()
    g[::7] *= 0.7
    got = board.program(g)
    rebuilt = SimulatedBoard(c.with_conductances(np.clip(g, 1e-8, 1e-4)), g_min=1e-8, g_max=1e-4)
    assert np.array_equal(got, rebuilt.read_conductances())
    for name in ("g_in", "g_leak", "g_out"):
        assert np.array_equal(getattr(board.circuit, name), getattr(rebuilt.circuit, name))
    assert np.array_equal(board.circuit.g_hh.pairs, rebuilt.circuit.g_hh.pairs)
    assert np.array_equal(board.circuit.g_hh.values, rebuilt.circuit.g_hh.values)
    m1, m2 = board.measure(x), rebuilt.measure(x)
    assert np.array_equal(m1.e, m2.e) and np.array_equal(m1.y, m2.y) and np.array_equal(m1.i_src, m2.i_src)


@pytest.mark.parametrize("degree", [0, 3])
def test_branch_correlation_plan_equals_direct_formula(degree):
    c = random_circuit(12, 3, 4, seed=8, coupling_degree=degree)
    topo = SimulatedBoard(c).topology
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, len(topo.node_names))), rng.normal(size=(7, len(topo.node_names)))
    a[:, -1] = b[:, -1] = 0.0  # ground
    i, j = topo.edges[:, 0], topo.edges[:, 1]
    direct = np.mean((a[:, i] - a[:, j]) * (b[:, i] - b[:, j]), axis=0)
    got = topo.mean_branch_product(a, b)
    assert np.max(np.abs(got - direct)) <= 1e-12 * np.abs(direct).max()
    assert len(topo._gather_plan()[2]) == 3  # g_in, g_leak, g_out formed as dense blocks


@pytest.mark.parametrize("degree", [0, 3])
def test_stacked_perturbation_phases_equal_separate_measurements(degree):
    c = random_circuit(20, 4, 4, seed=9, coupling_degree=degree)
    board, ref = SimulatedBoard(c), SimulatedBoard(c)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (6, c.n_inputs))
    w = rng.uniform(-0.01, 0.01, (6, c.n_outputs))
    board.measure(x)
    both = board.measure(np.concatenate([x, x]), np.concatenate([w, -w]))
    for half, ww in ((slice(0, 6), w), (slice(6, 12), -w)):
        sep = ref.measure(x, ww)
        assert np.array_equal(both.on[half], sep.on)
        assert np.max(np.abs(both.e[half] - sep.e)) <= 1e-12
        assert np.max(np.abs(both.i_src[half] - sep.i_src)) <= 1e-12 * np.abs(sep.i_src).max()


def test_board_program_rejects_bad_vectors_and_keeps_its_state():
    c = random_circuit(6, 2, 2, seed=10, coupling_degree=0)
    board = SimulatedBoard(c)
    g0 = board.read_conductances()
    bad = g0.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        board.program(bad)
    with pytest.raises(ValueError, match="conductances"):
        board.program(g0[:-1])
    assert np.array_equal(board.read_conductances(), g0)


def test_non_finite_voltages_are_never_certified():
    from hil.circuit.report import SolveError

    diag = np.array([1e-4, 0.0])  # the second node has no conductance at all
    b = np.array([[1e-4, 1e-5]])
    with pytest.raises(SolveError):
        solve_ideal_diagonal(diag, b, np.ones(2), np.zeros(2), 1.0)
