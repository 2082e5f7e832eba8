"""Perturbation phases of coupled ideal-diode networks on the held active set, against cold solves."""

import numpy as np
import pytest

import hil.circuit.linsolve as ls
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.held_set import solve_held_set
from hil.circuit.linsolve import MaskedSolver
from hil.circuit.solve import EquilibriumSolver
from hil.train.estimators import estimate
from hil.train.losses import Loss


def network(n=24, seed=0, mixed=True):
    return random_circuit(n, 5, 4, seed=seed, coupling_degree=3, mixed_orientation=mixed)


def phases(solver, c, seed, batch=6, drive=1e-3):
    """The held operating point of ``batch`` samples and its ± port drives stacked (2·batch rows)."""
    rng = np.random.default_rng(seed)
    u = c.source_voltages(rng.uniform(-2, 2, (batch, c.n_inputs)))
    op = solver.solve(u)
    w_hat = rng.normal(size=(batch, c.n_outputs))
    w = np.concatenate([op.w + drive * w_hat, op.w - drive * w_hat])
    rep = lambda a: np.concatenate([a, a])
    held = type(op)(rep(op.u), rep(op.w), rep(op.e), rep(op.diode_current), rep(op.on), None, rep(op.y),
                    rep(op.i_src), op.report, rep(op.b_src))
    return held, w


@pytest.mark.parametrize("mode", ["kernel", "dense", "cg", "lu"])
def test_phases_on_held_set_equal_cold_solves(monkeypatch, mode):
    if mode not in ("dense", "kernel"):
        monkeypatch.setattr(ls, "DENSE_MAX_NODES", 10)
    c = network(seed=1)
    solver = EquilibriumSolver(c)
    solver.compiled_coupled = mode == "kernel"  # the general held-set paths otherwise
    if mode == "lu":
        solver.masked.iterative = False
    assert (solver.k_dense is not None) == (mode in ("dense", "kernel"))
    held, w = phases(solver, c, 1, drive=1e-6)
    st = solver.solve(held.u, w, warm=held)
    assert st.report.method == "held-set" and st.report.converged
    general = EquilibriumSolver(c)
    general.compiled_coupled = mode == "dense"  # the kernel's answer against the general solver's
    cold = general.solve(held.u, w)
    np.testing.assert_array_equal(st.on, cold.on)
    np.testing.assert_allclose(st.e, cold.e, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.y, cold.y, rtol=1e-10, atol=1e-18)


@pytest.mark.parametrize("compiled", [False, True])
def test_unpaired_phases_and_flipped_rows_go_through_pdas(compiled):
    c = network(seed=2)
    solver = EquilibriumSolver(c)
    solver.compiled_coupled = compiled
    held, w = phases(solver, c, 2, drive=2.0)  # volts: diodes flip in some rows
    w[1] += 0.3  # rows no longer mirror each other: one solve per row
    st = solver.solve(held.u, w, warm=held)
    assert st.report.method == "held-set→pdas" and st.report.converged
    assert (st.on != held.on).any()
    general = EquilibriumSolver(c)
    general.compiled_coupled = not compiled
    cold = general.solve(held.u, w)
    np.testing.assert_array_equal(st.on, cold.on)
    np.testing.assert_allclose(st.e, cold.e, rtol=0, atol=1e-12)


def test_stale_operating_point_is_not_certified_and_the_general_path_answers():
    c = network(seed=3)
    solver = EquilibriumSolver(c)
    held, w = phases(solver, c, 3, drive=1e-6)
    d = c.diodes
    b = held.b_src + w @ solver.nodal.g_out
    db = (w - held.w) @ solver.nodal.g_out
    wrong = held.e + 1e-6  # not an operating point of these conductances
    assert solve_held_set(solver.masked, b, db, wrong, held.on, d.orientation, d.v_ref, 3.0, 1e-12) is None
    good = solve_held_set(solver.masked, b, db, held.e, held.on, d.orientation, d.v_ref, 3.0, 1e-12)
    assert good is not None and good.report.method == "held-set"
    # A board drops its held point when reprogrammed: the next phases are solved afresh.
    board = SimulatedBoard(c)
    x = np.random.default_rng(3).uniform(-2, 2, (4, c.n_inputs))
    board.measure(x)
    g = board.read_conductances()
    g[: g.size // 2] *= 1.5
    board.program(g)
    w2 = np.full((8, c.n_outputs), 1e-3)
    m = board.measure(np.concatenate([x, x]), w2)
    assert m.info["report"].method == "pdas"
    fresh = SimulatedBoard(board.circuit).measure(np.concatenate([x, x]), w2)
    np.testing.assert_allclose(m.e, fresh.e, rtol=0, atol=1e-12)


def test_solve_columns_equals_column_by_column():
    c = network(seed=4)
    solver = EquilibriumSolver(c)
    rng = np.random.default_rng(4)
    clamped = rng.random((5, c.n_hidden)) < 0.4
    rhs = rng.normal(size=(5, c.n_hidden, 3)) * 1e-5
    got = solver.masked.solve_columns(clamped, rhs)
    for sparse in (False, True):
        ms = MaskedSolver(None if sparse else solver.k_dense, solver.k_sparse)
        for j in range(3):
            ref = ms.solve(clamped, np.zeros(c.n_hidden), rhs[..., j])
            np.testing.assert_allclose(got[..., j], ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_hl_on_coupled_board_is_exact_and_detects_flips():
    c = network(n=16, seed=5)
    board = SimulatedBoard(c)
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, (12, c.n_inputs))
    t = rng.integers(0, 2, 12)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    exact = estimate("hl-exact", board, x, t, loss).grad
    rel = lambda g: np.max(np.abs(g - exact)) / np.max(np.abs(exact))
    assert rel(estimate("hl", board, x, t, loss, {"delta_v": 1e-3}).grad) <= 1e-9
    big = estimate("hl", board, x, t, loss, {"delta_v": 2.0, "max_retries": 0})
    assert big.stats["flipped_samples"] > 0 and rel(big.grad) > 1e-3
    fixed = estimate("hl", board, x, t, loss, {"delta_v": 2.0, "max_retries": 8})
    assert rel(fixed.grad) <= 1e-9


def test_small_dense_batches_reuse_lu_factors_by_active_set():
    c = network(seed=6)
    solver = EquilibriumSolver(c)
    ms = solver.masked
    rng = np.random.default_rng(6)
    clamped = rng.random((8, c.n_hidden)) < 0.3
    h = rng.normal(size=c.n_hidden) * 0.1
    rhs = rng.normal(size=(8, c.n_hidden)) * 1e-5
    batched = ms.solve(clamped, h, rhs)  # 8 > DENSE_LU_MAX_BATCH: one batched LAPACK solve
    before = ms.factorizations
    small = np.vstack([ms.solve(clamped[i:i + 2], h, rhs[i:i + 2]) for i in range(0, 8, 2)])
    np.testing.assert_allclose(small, batched, rtol=0, atol=1e-12 * np.abs(batched).max())
    assert ms.factorizations == before + 8
    again = ms.solve(clamped[:2], h, -rhs[:2])  # same sets: back-substitution only
    assert ms.factorizations == before + 8
    np.testing.assert_allclose(again, ms.solve(clamped[:2], h, -rhs[:2]), rtol=0, atol=0)
    for _ in range(10):  # 40 more sets: the cache stays bounded
        ms.solve(rng.random((4, c.n_hidden)) < 0.5, h, rhs[:4])
    size = ms._dense_factor(clamped[0])[0].nbytes + ms._dense_factor(clamped[0])[1].nbytes
    assert len(ms._dense_lu) <= ls.DENSE_LU_CACHE_BYTES // size
    assert ms._dense_lu_bytes == sum(f[0].nbytes + f[1].nbytes for f in ms._dense_lu.values()) <= ls.DENSE_LU_CACHE_BYTES
