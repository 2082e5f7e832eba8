"""Fast paths of the Shockley solver against its reference path (damped Newton from the
piecewise-linear start): the exact per-node solve of uncoupled networks and its certificate."""

import numpy as np
import pytest

import hil.circuit.shockley as sh
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.report import SolveError
from hil.circuit.shockley import NewtonTolerances, initial_guess, newton_certificate, solve_shockley, uncoupled_start
from hil.circuit.solve import EquilibriumSolver
from hil.train.estimators import estimate
from hil.train.losses import Loss

CASES = [(seed, preset, mixed, spice) for seed in range(2) for preset in ("1N4148", "BAT42")
         for mixed in (False, True) for spice in (False, True)]


def uncoupled(seed, preset="1N4148", mixed=False, spice=False, n=12):
    return random_circuit(n, 4, 4, seed=seed, diode="shockley", preset=preset, coupling_degree=0,
                          mixed_orientation=mixed, spice_compat=spice)


def sources(c, seed, batch=8, amp=5.0):
    u = c.source_voltages(np.random.default_rng(200 + seed).uniform(-amp, amp, (batch, c.n_inputs)))
    return u @ c.g_in.T


def reference(solver, b):
    """The general path: damped Newton from the piecewise-linear start."""
    sys = sh._System(solver.k_dense, solver.k_sparse, solver.circuit.diodes)
    e0 = initial_guess(sys, b, solver._shockley_start)
    return solve_shockley(solver.k_dense, solver.k_sparse, solver.circuit.diodes, b, solver._shockley_start, e0)


@pytest.mark.parametrize("seed, preset, mixed, spice", CASES)
def test_per_node_solve_equals_newton_reference(seed, preset, mixed, spice):
    c = uncoupled(seed, preset, mixed, spice)
    solver = EquilibriumSolver(c)
    b = sources(c, seed)
    fast = solve_shockley(solver.k_dense, solver.k_sparse, c.diodes, b, solver._shockley_start)
    ref = reference(solver, b)
    assert fast.report.method == "per-node" and fast.report.converged
    assert ref.report.method.startswith("newton") and ref.report.iterations["newton"] >= 2
    np.testing.assert_allclose(fast.e, ref.e, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fast.current, ref.current, rtol=1e-9, atol=1e-16)
    np.testing.assert_allclose(fast.g_d, ref.g_d, rtol=1e-9, atol=1e-16)
    assert fast.report.kcl_residual_rel <= 1e-10
    on = np.abs(fast.current) > 1e3 * c.diodes.i_s
    assert on.any() and (~on).any()  # both diode states are exercised


def test_per_node_solve_strongly_forward_and_reverse_biased():
    """Tens of volts: Wright-omega start deep in the exponential law, and far reverse bias."""
    c = uncoupled(3, "1N4148", mixed=True)
    solver = EquilibriumSolver(c)
    b = sources(c, 3, amp=40.0)
    fast = solve_shockley(solver.k_dense, solver.k_sparse, c.diodes, b, solver._shockley_start)
    ref = reference(solver, b)
    assert fast.report.method == "per-node"
    np.testing.assert_allclose(fast.e, ref.e, rtol=1e-12, atol=1e-12)
    assert np.abs(fast.current).max() > 1e-3  # milliamperes: far into the exponential


def test_certificate_rejects_a_perturbed_sample_and_newton_repairs_it(monkeypatch):
    c = uncoupled(1)
    solver = EquilibriumSolver(c)
    b = sources(c, 1)
    sys = sh._System(solver.k_dense, solver.k_sparse, c.diodes)
    tol = NewtonTolerances()
    e, vj = uncoupled_start(c.diodes, sys.diag, b)
    ok, r, _, _, step = newton_certificate(sys, tol, e, b, vj)
    assert ok.all() and step.max() < 1e-12
    bad = e.copy()
    bad[3, 5] += 1e-7
    ok_bad = newton_certificate(sys, tol, bad, b)[0]
    assert not ok_bad[3] and ok_bad[np.arange(8) != 3].all()
    # A start that fails the certificate for one sample: that sample continues with Newton.
    real = sh.uncoupled_start

    def off_for_sample_3(diodes, diag, bb):
        e_exact, vj = real(diodes, diag, bb)
        return e_exact + 1e-3 * (np.arange(8) == 3)[:, None], vj

    monkeypatch.setattr(sh, "uncoupled_start", off_for_sample_3)
    mixed = solve_shockley(solver.k_dense, solver.k_sparse, c.diodes, b, solver._shockley_start)
    assert mixed.report.method == "per-node→newton" and mixed.report.converged
    np.testing.assert_allclose(mixed.e, e, rtol=1e-12, atol=1e-13)


def test_per_node_solve_raises_when_it_cannot_be_certified():
    c = uncoupled(2, "BAT42")
    solver = EquilibriumSolver(c)
    b = sources(c, 2)
    impossible = NewtonTolerances(reltol=0.0, vntol=0.0, abstol=0.0, max_iter=2)
    with pytest.raises(SolveError) as exc:
        solve_shockley(solver.k_dense, solver.k_sparse, c.diodes, b, solver._shockley_start, tol=impossible)
    rep = exc.value.report
    assert not rep.converged and rep.failed_samples
    assert rep.method == "per-node→newton→gmin→source"


def test_node_without_conductance_falls_back_to_newton_start():
    c = uncoupled(0)
    diag = np.full(c.n_hidden, 1e-4)
    diag[2] = 0.0
    assert uncoupled_start(c.diodes, diag, np.zeros((1, c.n_hidden))) is None


def test_hl_on_uncoupled_shockley_board_is_second_order_and_notices_large_drives():
    c = random_circuit(16, 4, 4, seed=4, diode="shockley", coupling_degree=0, g_range=(1e-5, 1e-4),
                       mixed_orientation=True)
    board = SimulatedBoard(c)
    rng = np.random.default_rng(4)
    x = rng.uniform(-4, 4, (6, 4))
    t = rng.integers(0, 2, 6)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    exact = estimate("hl-exact", board, x, t, loss).grad
    rel = lambda g: np.max(np.abs(g - exact)) / np.max(np.abs(exact))
    errs = [rel(estimate("hl", board, x, t, loss, {"delta_v": d}).grad) for d in (1e-2, 1e-3)]
    assert errs[1] <= 1e-5 and 80 <= errs[0] / errs[1] <= 120
    assert board.measure(x).info["report"].method == "per-node"
    big = estimate("hl", board, x, t, loss, {"delta_v": 0.5, "max_retries": 4, "flip_rel_tol": 1e-4})
    assert big.stats["flips_from_response"] > 0


def test_real_wright_omega_matches_scipy_over_the_whole_line():
    from scipy.special import wrightomega

    z = np.concatenate([np.linspace(-750, 1000, 3001), np.linspace(-5, 5, 2001), [-690.5, 0.0, 1.0]])
    got = sh.wright_omega(z)
    ref = np.real(wrightomega(z))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)
    inside = (z > -700) & (z < 700)
    np.testing.assert_allclose(got[inside] + np.log(got[inside]), z[inside], rtol=1e-14, atol=1e-13)
