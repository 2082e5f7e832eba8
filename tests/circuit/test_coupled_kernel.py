"""The compiled PDAS–CG solve of coupled ideal-diode networks against the general solvers, and its fallbacks."""

import dataclasses

import numpy as np
import pytest

import hil.circuit.coupled as cp
from hil.circuit.coupled import solve_ideal_coupled
from hil.circuit.coupled_kernels import CG_FAILED, NOT_SETTLED, SETTLED, coupled_certificate_kernel, pdas_cg_kernel
from hil.circuit.generate import random_circuit
from hil.circuit.ideal import certify, solve_ideal
from hil.circuit.linsolve import MaskedSolver
from hil.circuit.nodal import NodalSystem
from hil.circuit.report import SolveError


def case(n, seed, mixed, batch=8, v_ref=0.0, degree=4):
    """A random coupled network, its nodal system, source currents b (batch, n) in A and its diodes
    (with references spread over ±``v_ref`` volts)."""
    c = random_circuit(n, 6, 3, seed=seed, coupling_degree=degree, mixed_orientation=mixed)
    d = c.diodes
    if v_ref:
        d = dataclasses.replace(d, v_ref=np.random.default_rng(seed).uniform(-v_ref, v_ref, n))
    nd = NodalSystem(c)
    u = c.source_voltages(np.random.default_rng(seed).uniform(-2, 2, (batch, c.n_inputs)))
    return c, nd, u @ nd.g_in.T, d


def dense_general(c):
    """The general active-set solver on the dense matrix (dense LU per step)."""
    return MaskedSolver(c.laplacian_dense(), c.laplacian_sparse())


def kernel_arrays(nd, b, s, h, cold=True, on=None, e=None, max_cg=500, max_pdas=50):
    B, n = b.shape
    on = np.empty((B, n), bool) if on is None else on.copy()
    e = np.empty((B, n)) if e is None else e.copy()
    status, z, mu = np.empty(B, np.int64), np.empty((B, n)), np.empty((B, n))
    k = nd.k_csr
    cert, counts = pdas_cg_kernel(k.indptr, k.indices, k.data, nd.diag, b, np.asarray(s, float), np.asarray(h, float),
                                  on, e, cold, False, 1e-14, max_cg, max_pdas, status, z, mu)
    return on, e, status, z, mu, cert, counts


@pytest.mark.parametrize("n, seed, mixed, v_ref", [(30, 0, False, 0.0), (30, 1, True, 0.3), (150, 2, False, 0.0),
                                                   (150, 3, True, 0.5)])
def test_kernel_equals_general_active_set_solver(n, seed, mixed, v_ref):
    c, nd, b, d = case(n, seed, mixed, v_ref=v_ref)
    scale = 2.0
    fast = solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, scale)
    ref = solve_ideal(dense_general(c), b, d.orientation, d.v_ref, None, scale)
    assert fast.report.method == "pdas" and fast.report.converged
    assert np.array_equal(fast.on, ref.on)
    assert fast.on.any() and (~fast.on).any()  # both diode states occur
    assert np.max(np.abs(fast.e - ref.e)) <= 1e-12 * scale
    assert np.max(np.abs(fast.mu - ref.mu)) <= 1e-12 * np.abs(b).max()


def test_kernel_certificate_equals_certify_on_the_dense_matrix_and_catches_errors():
    c, nd, b, d = case(40, 4, True, v_ref=0.2)
    on, e, status, z, mu, cert, counts = kernel_arrays(nd, b, d.orientation, d.v_ref)
    assert (status == SETTLED).all() and counts[2] == 0
    ref = certify(c.laplacian_dense(), e, b, d.orientation, d.v_ref, on, 2.0)
    lo_z, lo_mu, kcl_abs, comp_abs, ke_abs, b_abs, n_on, finite = cert
    assert finite and n_on == np.count_nonzero(on)
    assert abs(max(-lo_z, 0.0) / 2.0 - ref["primal"]) <= 1e-15
    assert abs(kcl_abs / ref["scale_i"] - ref["kcl_rel"]) <= 1e-15
    assert abs(max(-lo_mu, 0.0) / ref["scale_i"] - ref["dual"]) <= 1e-15
    assert abs(comp_abs / 2.0 / ref["scale_i"] - ref["complementarity"]) <= 1e-15
    assert max(ke_abs, b_abs) == ref["scale_i"]
    np.testing.assert_allclose(mu, ref["mu"], rtol=0, atol=1e-15 * ref["scale_i"])
    np.testing.assert_array_equal(z, ref["z"])
    # the stand-alone certificate kernel gives the same residuals
    z2, mu2 = np.empty_like(z), np.empty_like(mu)
    k = nd.k_csr
    again = coupled_certificate_kernel(k.indptr, k.indices, k.data, nd.diag, b, d.orientation.astype(float),
                                       np.asarray(d.v_ref, float), e, on, z2, mu2)
    np.testing.assert_allclose(again[:6], cert[:6], rtol=1e-12, atol=1e-30)
    # a voltage moved by 1 µV at a free node is caught by the KCL residual
    bad = e.copy()
    bad[tuple(np.argwhere(~on)[0])] += 1e-6
    worse = coupled_certificate_kernel(k.indptr, k.indices, k.data, nd.diag, b, d.orientation.astype(float),
                                       np.asarray(d.v_ref, float), bad, on, z2, mu2)
    assert worse[2] / max(worse[4], worse[5]) > 1e-9
    # NaN is never certified
    bad[0, 0] = np.nan
    assert not coupled_certificate_kernel(k.indptr, k.indices, k.data, nd.diag, b, d.orientation.astype(float),
                                          np.asarray(d.v_ref, float), bad, on, z2, mu2)[7]


def test_kernel_reports_unfinished_samples():
    c, nd, b, d = case(120, 5, False)
    *_, status, _, _, _, counts = kernel_arrays(nd, b, d.orientation, d.v_ref, max_cg=1)
    assert (status == CG_FAILED).any() and counts[2] == np.count_nonzero(status != SETTLED)
    *_, status, _, _, _, counts = kernel_arrays(nd, b, d.orientation, d.v_ref, max_pdas=1)
    assert (status == NOT_SETTLED).any() and counts[0] == 1


@pytest.mark.parametrize("limit", ["cg", "pdas"])
def test_unfinished_samples_go_to_the_general_solver(monkeypatch, limit):
    c, nd, b, d = case(120, 6, True)
    if limit == "cg":
        monkeypatch.setattr(cp, "max_cg_iterations", lambda n: 1)
    else:
        monkeypatch.setattr(cp, "MAX_PDAS", 1)
    general = MaskedSolver(None, nd.k_csc)
    sol = solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0, general=general)
    assert sol.report.method.startswith("pdas→") and sol.report.converged
    ref = solve_ideal(dense_general(c), b, d.orientation, d.v_ref, None, 2.0)
    assert np.array_equal(sol.on, ref.on)
    assert np.max(np.abs(sol.e - ref.e)) <= 1e-12 * 2.0
    with pytest.raises(SolveError, match="did not finish"):  # never returned unfinished
        solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0)


def test_a_failed_certificate_hands_the_batch_to_the_general_solver(monkeypatch):
    c, nd, b, d = case(60, 7, False)
    monkeypatch.setattr(cp, "CG_RTOL", 1e-4)  # CG stops far too early: the certificate must say so
    with pytest.raises(SolveError, match="not certified"):
        solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0)
    sol = solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0, general=dense_general(c))
    assert sol.report.method == "pdas→pdas" and sol.report.kcl_residual_rel <= 1e-12


def test_non_finite_input_is_not_certified():
    c, nd, b, d = case(30, 8, False, batch=3)
    b[1, 4] = np.nan
    with pytest.raises(SolveError):
        solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0, general=dense_general(c))


def test_warm_start_from_a_held_point_equals_a_cold_solve():
    c, nd, b, d = case(100, 9, True, v_ref=0.2)
    held = solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0)
    rng = np.random.default_rng(9)
    for size, flips in ((1e-9, False), (3e-5, True)):  # A: tiny port drive, no flip; a large one flips diodes
        b2 = b + rng.normal(size=b.shape) * size
        warm = solve_ideal_coupled(nd.k_csr, nd.diag, b2, d.orientation, d.v_ref, 2.0, warm_on=held.on,
                                   warm_e=held.e, held=True)
        cold = solve_ideal(dense_general(c), b2, d.orientation, d.v_ref, None, 2.0)
        assert warm.report.method == ("held-set→pdas" if flips else "held-set")
        assert np.array_equal(warm.on, cold.on) and (np.any(warm.on != held.on) == flips)
        assert np.max(np.abs(warm.e - cold.e)) <= 1e-12 * 2.0


def test_empty_batch():
    c, nd, b, d = case(30, 10, False)
    sol = solve_ideal_coupled(nd.k_csr, nd.diag, b[:0], d.orientation, d.v_ref, 2.0)
    assert sol.e.shape == (0, 30) and sol.report.converged


def test_stacked_phases_start_from_the_mirrored_answer_and_equal_cold_solves():
    c, nd, b, d = case(100, 11, False, v_ref=0.0)
    held = solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0)
    db = np.random.default_rng(11).normal(size=b.shape) * 1e-9  # the ± drive of each sample: no flip
    both = np.concatenate([b + db, b - db])
    twice = lambda a: np.concatenate([a, a])
    runs = {}
    for mirror in (False, True):
        runs[mirror] = solve_ideal_coupled(nd.k_csr, nd.diag, both, d.orientation, d.v_ref, 2.0,
                                           warm_on=twice(held.on), warm_e=twice(held.e), held=mirror)
    cold = solve_ideal(dense_general(c), both, d.orientation, d.v_ref, None, 2.0)
    for sol in runs.values():
        assert np.array_equal(sol.on, cold.on)
        assert np.max(np.abs(sol.e - cold.e)) <= 1e-12 * 2.0
    # the − phases had (almost) nothing left to solve
    assert runs[True].report.iterations["cg"] < runs[False].report.iterations["cg"]


def test_shapes_are_checked_before_the_kernel_runs():
    c, nd, b, d = case(30, 12, False)
    with pytest.raises(ValueError, match="warm start"):
        solve_ideal_coupled(nd.k_csr, nd.diag, b, d.orientation, d.v_ref, 2.0, warm_on=np.zeros((1, 30), bool))
    with pytest.raises(ValueError, match="do not fit"):
        solve_ideal_coupled(nd.k_csr, nd.diag, b[:, :20], d.orientation, d.v_ref, 2.0)


def test_edge_products_equal_the_direct_formula_for_any_memory_layout():
    from hil.boards.simulated import SimulatedBoard

    c = random_circuit(40, 3, 4, seed=13, coupling_degree=4)
    topo = SimulatedBoard(c).topology
    rng = np.random.default_rng(13)
    a = np.asfortranarray(rng.normal(size=(5, len(topo.node_names))))
    b = rng.normal(size=(len(topo.node_names), 5)).T  # a transposed view
    a[:, -1] = b[:, -1] = 0.0  # ground
    i, j = topo.edges[:, 0], topo.edges[:, 1]
    direct = np.mean((a[:, i] - a[:, j]) * (b[:, i] - b[:, j]), axis=0)
    got = topo.mean_branch_product(a, b)
    pairs = topo._gather_plan()[5]
    assert pairs.size > 40
    assert np.max(np.abs(got - direct)) <= 1e-12 * np.abs(direct).max()


def test_zero_right_hand_side_from_a_nonzero_start():
    c, nd, b, d = case(40, 14, False, batch=2)
    zero = np.zeros_like(b)
    start = np.random.default_rng(14).uniform(0.1, 1.0, b.shape)  # ReLU nodes: every diode off
    sol = solve_ideal_coupled(nd.k_csr, nd.diag, zero, d.orientation, d.v_ref, 1.0,
                              warm_on=np.zeros(b.shape, bool), warm_e=start)
    assert sol.report.method == "pdas" and np.all(sol.e == 0.0)
