"""The compiled per-node Shockley path against its numpy references: the closed-form loop solve
against the Newton-polished one, the compiled certificate against ``newton_certificate``."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import wrightomega

import hil.circuit.shockley as sh
from hil.circuit.generate import random_circuit
from hil.circuit.shockley import (NewtonTolerances, newton_certificate, uncoupled_certificate, uncoupled_start,
                                  uncoupled_start_polished)
from hil.circuit.shockley_kernels import _omega_iterated
from hil.circuit.solve import EquilibriumSolver

CASES = [(seed, preset, mixed) for seed in range(2) for preset in ("1N4148", "BAT42") for mixed in (False, True)]


def network(seed, preset="1N4148", mixed=False, spice=False, n=12):
    c = random_circuit(n, 4, 4, seed=seed, diode="shockley", preset=preset, coupling_degree=0,
                       mixed_orientation=mixed, spice_compat=spice)
    return c, EquilibriumSolver(c)


def sources(c, seed, batch=8, amp=5.0):
    u = c.source_voltages(np.random.default_rng(300 + seed).uniform(-amp, amp, (batch, c.n_inputs)))
    return u @ c.g_in.T


def system(solver, diodes=None):
    return sh._System(solver.k_dense, solver.k_sparse, diodes or solver.circuit.diodes)


@pytest.mark.parametrize("seed, preset, mixed", CASES)
@pytest.mark.parametrize("amp", [5.0, 40.0])
def test_closed_form_equals_newton_polished_loop(seed, preset, mixed, amp):
    c, solver = network(seed, preset, mixed)
    b = sources(c, seed, amp=amp)
    diag = system(solver).diag
    e, vj = uncoupled_start(c.diodes, diag, b)
    e_ref, vj_ref = uncoupled_start_polished(c.diodes, diag, b)
    # The reference stops its Newton polish within 1e-15 V + 1e-15·|vj|; through g_D that moves
    # e = (b + s i_D)/K_kk by up to g_D·δvj/K_kk (1.5e-13 V in a conducting 40 V case, where
    # the closed form matched a 40-digit solution to 1 ulp), on top of rounding in b/K_kk.
    g_d = c.diodes.junction_current(vj_ref)[1]
    bound = 2.5e-15 * (1.0 + np.abs(vj_ref)) * g_d / diag + 4e-16 * (np.abs(b / diag) + np.abs(e_ref))
    assert np.all(np.abs(e - e_ref) <= bound)
    np.testing.assert_allclose(vj, vj_ref, rtol=0, atol=2.5e-15)
    # both branches of ω are exercised: the series (z < −5) and the iteration
    s, vte, i_s = c.diodes.orientation, c.diodes.vte, c.diodes.i_s_at_temperature
    r = c.diodes.r_s + 1 / diag
    z = np.log(r * i_s / vte) + (s * (c.diodes.v_ref - b / diag) + r * i_s) / vte
    assert (z < sh.OMEGA_SERIES_BELOW).any() and (z >= sh.OMEGA_SERIES_BELOW).any()


@pytest.mark.parametrize("spice", [False, True])
@pytest.mark.parametrize("seed, preset, mixed", CASES)
def test_compiled_certificate_equals_numpy_certificate(seed, preset, mixed, spice):
    c, solver = network(seed, preset, mixed, spice)
    sys = system(solver)
    tol = NewtonTolerances()
    b = sources(c, seed, amp=20.0)
    e, vj = uncoupled_start(c.diodes, sys.diag, b)
    for e_try in (e, e + 1e-7 * (np.arange(8) == 3)[:, None]):  # the second fails sample 3
        ok_ref, r, f_ref, g_ref, step_ref = newton_certificate(sys, tol, e_try, b, vj)
        cert = uncoupled_certificate(c.diodes, sys.diag, tol, e_try, b, vj)
        np.testing.assert_array_equal(cert.ok, ok_ref)
        np.testing.assert_allclose(cert.current, f_ref, rtol=1e-12, atol=1e-20)
        np.testing.assert_allclose(cert.g_d, g_ref, rtol=1e-12, atol=1e-20)
        # updates and residuals at the rounding floor differ in the last bits (a scalar Newton loop
        # stops per node); the rejected sample's update (0.1 µV) agrees to rounding
        floor_a = 1e-14 * max(np.abs(b).max(), np.abs(f_ref).max())  # A
        floor_v = 1e-15 * (1.0 + np.abs(e_try).max())  # V
        np.testing.assert_allclose(cert.step_max, step_ref, rtol=1e-7, atol=floor_v)
        np.testing.assert_allclose(cert.residual_abs, np.abs(r).max(), rtol=1e-7, atol=floor_a)
        np.testing.assert_allclose(cert.residual_norm, np.linalg.norm(r, axis=1).max(), rtol=1e-7, atol=floor_a)
        assert cert.n_on == np.sum(np.abs(f_ref) > 1e3 * c.diodes.i_s_at_temperature)
    assert cert.ok.sum() == 7 and not cert.ok[3]


def test_certificate_without_series_resistance_and_from_a_poor_start():
    c, solver = network(1, mixed=True)
    d0 = replace(c.diodes, r_s=np.zeros_like(c.diodes.r_s))
    sys = system(solver, d0)
    tol = NewtonTolerances()
    b = sources(c, 1)
    e, vj = uncoupled_start(d0, sys.diag, b)
    ok_ref, _, f_ref, g_ref, _ = newton_certificate(sys, tol, e, b, vj)
    cert = uncoupled_certificate(d0, sys.diag, tol, e, b, vj)
    assert cert.ok.all() and ok_ref.all()
    np.testing.assert_allclose(cert.current, f_ref, rtol=1e-13, atol=1e-20)
    # with series resistance, a junction start of 0 V: the kernel's Newton iterates to the same answer
    sys = system(solver)
    e, vj = uncoupled_start(c.diodes, sys.diag, b)
    good = uncoupled_certificate(c.diodes, sys.diag, tol, e, b, vj)
    cold = uncoupled_certificate(c.diodes, sys.diag, tol, e, b, np.zeros_like(vj))
    assert cold.ok.all()
    np.testing.assert_allclose(cold.current, good.current, rtol=1e-12, atol=1e-20)


def test_non_finite_voltages_are_never_certified_and_bad_shapes_are_refused():
    c, solver = network(0)
    sys = system(solver)
    tol = NewtonTolerances()
    b = sources(c, 0)
    e, vj = uncoupled_start(c.diodes, sys.diag, b)
    for bad in (np.nan, np.inf):
        e_bad = e.copy()
        e_bad[2, 4] = bad
        ok = uncoupled_certificate(c.diodes, sys.diag, tol, e_bad, b, vj).ok
        assert not ok[2] and ok[np.arange(8) != 2].all()
    b_bad = b.copy()
    b_bad[1, 0] = np.inf
    assert uncoupled_start(c.diodes, sys.diag, b_bad) is None
    with pytest.raises(ValueError, match="batch"):
        uncoupled_certificate(c.diodes, sys.diag, tol, e[:, :-1], b, vj)
    with pytest.raises(ValueError, match="shapes differ"):
        uncoupled_certificate(c.diodes, sys.diag, tol, e[:4], b, vj)
    with pytest.raises(ValueError, match="batch"):
        uncoupled_start(c.diodes, sys.diag, b[:, :-1])


def test_compiled_omega_iteration_and_series_match_scipy():
    z = np.concatenate([np.linspace(-5, 5, 1001), np.linspace(5, 1000, 997), np.geomspace(1000, 1e9, 301)])
    got = np.array([_omega_iterated(v) for v in z])
    np.testing.assert_allclose(got, np.real(wrightomega(z)), rtol=1e-14, atol=0)
    # from z = 10 on one update: within rounding of the two-update numpy reference
    high = np.concatenate([np.linspace(10, 12, 2001), np.geomspace(12, 1e9, 2001)])
    np.testing.assert_allclose([_omega_iterated(v) for v in high], sh.wright_omega(high), rtol=4e-16, atol=0)
    low = np.linspace(-800, -5.0 - 1e-9, 2001)
    np.testing.assert_allclose(sh.wright_omega(low), np.real(wrightomega(low)), rtol=5e-15, atol=0)
