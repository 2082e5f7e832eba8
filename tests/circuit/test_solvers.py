"""Equilibrium solvers: KKT certificates, agreement with the MON fixed point, structural facts,
convergence reports and errors."""

import numpy as np
import pytest

from hil.circuit.elements import shockley_diode_relu, thermal_voltage
from hil.circuit.generate import random_circuit
from hil.circuit.mon import forward_backward, mon_view, peaceman_rachford
from hil.circuit.report import SolveError
from hil.circuit.shockley import NewtonTolerances
from hil.circuit.solve import EquilibriumSolver

CASES = [(seed, diode, mixed, deg) for seed in range(4) for diode in ("ideal", "shockley")
         for mixed in (False, True) for deg in (0, 3)]


def inputs(c, seed, batch=6, amp=3.0):
    return c.source_voltages(np.random.default_rng(100 + seed).uniform(-amp, amp, (batch, c.n_inputs)))


@pytest.mark.parametrize("seed, diode, mixed, degree", CASES)
def test_circuit_solution_equals_mon_fixed_point_for_two_alphas(seed, diode, mixed, degree):
    c = random_circuit(10, 4, 4, seed=seed, diode=diode, mixed_orientation=mixed, coupling_degree=degree)
    u = inputs(c, seed)
    st = EquilibriumSolver(c).solve(u)
    assert st.report.converged
    s = c.diodes.orientation
    for alpha in (1e3, 2e4):
        view = mon_view(c, alpha)
        z_fb, rep_fb = forward_backward(view, u)
        z_pr, rep_pr = peaceman_rachford(view, u)
        assert rep_fb.converged and rep_pr.converged
        assert np.max(np.abs(s * z_fb - st.e)) <= 1e-9
        assert np.max(np.abs(s * z_pr - st.e)) <= 1e-9
        # the MON readout gives the port currents
        np.testing.assert_allclose(z_pr @ view.C.T + view.d, st.y, rtol=0, atol=1e-9 * np.abs(st.y).max())


@pytest.mark.parametrize("seed", range(5))
def test_pdas_kkt_certificate_and_independent_qp(seed):
    from scipy.optimize import minimize

    c = random_circuit(12, 4, 2, seed=seed, coupling_degree=3, mixed_orientation=True)
    u = inputs(c, seed, batch=3)
    st = EquilibriumSolver(c).solve(u)
    r = st.report
    assert r.kkt_primal <= 1e-12 and r.kkt_dual <= 1e-12 and r.kkt_complementarity <= 1e-12
    assert r.kcl_residual_rel <= 1e-12
    # Independent oracle: the co-content QP min ½eᵀLe − bᵀe s.t. s(e − h) ≥ 0 (SLSQP, tight).
    L = c.laplacian_dense()
    s = c.diodes.orientation
    for b_idx in range(u.shape[0]):
        b = c.g_in @ u[b_idx]
        scale = np.abs(b).max()
        res = minimize(lambda e: (0.5 * e @ L @ e - b @ e) / scale, np.zeros(c.n_hidden),
                       jac=lambda e: (L @ e - b) / scale, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": lambda e: s * e, "jac": lambda e: np.diag(s)}],
                       options={"ftol": 1e-15, "maxiter": 1000})
        assert np.max(np.abs(res.x - st.e[b_idx])) <= 1e-6


def test_structural_facts_scale_homogeneity_zero_in_max_principle():
    c = random_circuit(15, 4, 4, seed=7, coupling_degree=3)
    u = inputs(c, 7)
    st = EquilibriumSolver(c).solve(u)
    # scale invariance: conductances ×c leave e, multiply currents by c
    st2 = EquilibriumSolver(c.with_conductances(3.0 * c.conductance_vector())).solve(u)
    assert np.max(np.abs(st2.e - st.e)) <= 1e-12 * np.abs(st.e).max()
    np.testing.assert_allclose(st2.y, 3.0 * st.y, rtol=1e-12, atol=1e-20)
    # positive homogeneity when every source (rails too) is scaled
    st3 = EquilibriumSolver(c).solve(2.5 * u)
    assert np.max(np.abs(st3.e - 2.5 * st.e)) <= 1e-12 * np.abs(st3.e).max()
    # zero in, zero out
    assert np.all(EquilibriumSolver(c).solve(np.zeros_like(u)).e == 0.0)
    # maximum principle
    lo = np.minimum(0, u.min(axis=1, keepdims=True))
    hi = np.maximum(0, u.max(axis=1, keepdims=True))
    assert np.all(st.e >= lo - 1e-12) and np.all(st.e <= hi + 1e-12)


def test_reciprocity_dy_du_equals_minus_di_dw():
    c = random_circuit(8, 3, 4, seed=4, coupling_degree=2, diode="shockley")
    u0 = inputs(c, 4, batch=1)
    solver = EquilibriumSolver(c)
    h = 1e-6
    dy_du = np.zeros((c.n_outputs, c.n_sources))
    for j in range(c.n_sources):
        du = np.zeros_like(u0)
        du[0, j] = h
        dy_du[:, j] = (solver.solve(u0 + du).y - solver.solve(u0 - du).y)[0] / (2 * h)
    di_dw = np.zeros((c.n_sources, c.n_outputs))
    for o in range(c.n_outputs):
        dw = np.zeros((1, c.n_outputs))
        dw[0, o] = h
        di_dw[:, o] = (solver.solve(u0, dw).i_src - solver.solve(u0, -dw).i_src)[0] / (2 * h)
    np.testing.assert_allclose(dy_du, -di_dw.T, rtol=1e-6, atol=1e-9 * np.abs(dy_du).max())


def test_batched_equals_one_by_one_and_sparse_equals_dense(monkeypatch):
    import hil.circuit.linsolve as ls

    c = random_circuit(40, 6, 4, seed=11, coupling_degree=3, diode="shockley")
    u = inputs(c, 11, batch=8)
    batched = EquilibriumSolver(c).solve(u).e
    single = np.vstack([EquilibriumSolver(c).solve(u[i:i + 1]).e for i in range(8)])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-12)
    monkeypatch.setattr(ls, "DENSE_MAX_NODES", 10)
    for diode in ("ideal", "shockley"):
        cc = random_circuit(40, 6, 4, seed=11, coupling_degree=3, diode=diode)
        sparse = EquilibriumSolver(cc).solve(u)
        assert EquilibriumSolver(cc).k_dense is None
        monkeypatch.setattr(ls, "DENSE_MAX_NODES", 300)
        dense = EquilibriumSolver(cc).solve(u)
        monkeypatch.setattr(ls, "DENSE_MAX_NODES", 10)
        np.testing.assert_allclose(sparse.e, dense.e, rtol=0, atol=1e-12)


def test_report_fields_and_newton_convergence():
    c = random_circuit(20, 4, 4, seed=1, diode="shockley", coupling_degree=2)
    st = EquilibriumSolver(c).solve(inputs(c, 1))
    r = st.report
    assert r.converged and r.method.startswith("newton") and 1 <= r.iterations["newton"] <= 30
    assert r.kcl_residual_rel <= 1e-10 and r.error_bound_v is not None and r.error_bound_v < 1e-9
    assert r.batch == 6 and r.wall_time_s > 0


def test_forced_non_convergence_raises_with_report():
    c = random_circuit(10, 4, 2, seed=2, diode="shockley", preset="BAT42")
    u = inputs(c, 2, amp=5.0)
    with pytest.raises(SolveError) as exc:
        EquilibriumSolver(c, tolerances=NewtonTolerances(max_iter=1)).solve(u)
    rep = exc.value.report
    assert not rep.converged and rep.failed_samples
    assert rep.method == "newton→gmin→source"
    assert "did not converge" in str(exc.value)


def test_ideal_solver_raises_when_active_set_cannot_settle():
    from hil.circuit.ideal import solve_ideal
    from hil.circuit.linsolve import MaskedSolver

    c = random_circuit(30, 4, 2, seed=5, coupling_degree=3)
    solver = EquilibriumSolver(c)
    b = inputs(c, 5) @ c.g_in.T
    wrong_start = np.zeros_like(b, dtype=bool)
    with pytest.raises(SolveError, match="active set did not settle"):
        solve_ideal(MaskedSolver(solver.k_dense, solver.k_sparse), b, c.diodes.orientation, c.diodes.v_ref,
                    ~wrong_start, max_iter=1)


def test_shockley_resolvent_matches_closed_form_diode_relu():
    """σ_a of a grounded-anode 1N4148 (no R_s, no gmin) = the Wright-omega closed form (physics §6)."""
    from dataclasses import replace

    c = random_circuit(5, 2, 2, seed=0, diode="shockley")
    d = replace(c.diodes, r_s=np.zeros(5), gmin_s=0.0)
    view = mon_view(c.with_diodes(d), 1e3)
    x = np.linspace(-5, 2, 5)[None, :]
    closed, slope = shockley_diode_relu(x, 1e3, 2.52e-9, 1.752, thermal_voltage(27.0))
    assert np.max(np.abs(view.activation(x) - closed)) <= 1e-12
    np.testing.assert_allclose(view.activation_slope(x), slope, rtol=1e-8)
    # table of physics.md §6 at a = 1 kΩ
    np.testing.assert_allclose(closed[0, 0], -0.6508, atol=1e-4)


def test_non_finite_inputs_are_refused_not_solved():
    for diode in ("ideal", "shockley", "none"):
        c = random_circuit(6, 2, 2, seed=1, diode=diode)
        u = c.source_voltages(np.array([[np.nan, 1.0]]))
        with pytest.raises(ValueError, match="finite"):
            EquilibriumSolver(c).solve(u)


def test_linear_network_is_certified_and_matches_direct_solve():
    c = random_circuit(12, 3, 2, seed=3, diode="none", coupling_degree=2)
    u = inputs(c, 3)
    st = EquilibriumSolver(c).solve(u)
    assert st.report.converged and st.report.kcl_residual_rel <= 1e-12
    direct = np.linalg.solve(c.laplacian_dense(), (u @ c.g_in.T).T).T
    np.testing.assert_allclose(st.e, direct, rtol=0, atol=1e-12)
