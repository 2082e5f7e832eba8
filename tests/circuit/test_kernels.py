"""The compiled kernels (hil.kernels) against the numpy formulas they replace."""

import numpy as np
import pytest

from hil.circuit.ideal import solve_ideal_diagonal
from hil.circuit.report import SolveError
from hil.kernels import count_changes, hl_phase_kernel, nodal_sums_kernel
from hil.train.estimators import response_flips


def _phase_case(seed: int, k: int = 9, n: int = 7, q: int = 4):
    rng = np.random.default_rng(seed)
    e0, w0 = rng.normal(size=(k, n)), rng.normal(size=(k, q))
    de, dw = rng.normal(size=(k, n)) * 1e-3, rng.normal(size=(k, q)) * 1e-3
    e_both = np.concatenate([e0 + de, e0 - de])
    w_both = np.concatenate([w0 + dw, w0 - dw])
    e_both[k:][::3] += rng.normal(size=e_both[k:][::3].shape) * 1e-3  # some samples lose their symmetry
    on0 = rng.random((k, n)) < 0.5
    on_both = np.concatenate([on0, on0])
    on_both[1, 2] ^= True  # + phase of sample 1 flipped
    on_both[k + 4, 0] ^= True  # − phase of sample 4 flipped
    on_both[3, 1] ^= True
    on_both[k + 3, 5] ^= True  # both phases of sample 3
    es = rng.uniform(0.5, 2.0, k)
    return e0, w0, e_both, w_both, on0, on_both, es


@pytest.mark.parametrize("noise_v", [0.0, 1e-4])
def test_phase_kernel_equals_the_numpy_responses_and_flip_tests(noise_v):
    e0, w0, e_both, w_both, on0, on_both, es = _phase_case(2)
    k, n, q = e0.shape[0], e0.shape[1], w0.shape[1]
    out = np.full((k, 2 + n + q), np.nan)  # non-contiguous views as the estimator passes them
    nh_e, nh_w = out[:, 2:2 + n], out[:, 2 + n:]
    flips = np.zeros((3, k), bool)
    hl_phase_kernel(e_both, w_both, e0, w0, on_both, on0, np.zeros(k, bool), es, 1e-3, 5.0 * np.sqrt(6.0) * noise_v,
                    nh_e, nh_w, flips[0], flips[1], flips[2])
    npl = np.concatenate([e_both[:k], w_both[:k]], axis=1)
    nmi = np.concatenate([e_both[k:], w_both[k:]], axis=1)
    ref = np.concatenate([e0, w0], axis=1)
    # the central response as a product with 1/(2ε): within an ulp of the division
    central = (npl - nmi) * (1.0 / (2 * es[:, None]))
    assert np.array_equal(np.concatenate([nh_e, nh_w], axis=1), central)
    assert np.allclose(central, (npl - nmi) / (2 * es[:, None]), rtol=5e-16, atol=0.0)
    expected = response_flips(npl, ref, nmi, noise_v, 1e-3)
    assert np.array_equal(flips[2], expected) and expected.any() and not expected.all()
    sides = np.any(on_both.reshape(2, k, -1) != on0, axis=2)
    assert np.array_equal(flips[0], sides[0]) and np.array_equal(flips[1], sides[1])
    assert flips[0].tolist().count(True) == 2 and flips[1].tolist().count(True) == 2
    # without states the comparison is skipped
    none = np.zeros((3, k), bool)
    hl_phase_kernel(e_both, w_both, e0, w0, np.zeros((0, 0), bool), np.zeros((0, 0), bool), np.ones(k, bool), es, 1e-3, 0.0,
                    nh_e, nh_w, none[0], none[1], none[2])
    assert not none[:2].any()
    # with valid phases, a sample where only one phase flipped takes the other one's one-sided difference
    valid = np.zeros((3, k), bool)
    hl_phase_kernel(e_both, w_both, e0, w0, on_both, on0, np.ones(k, bool), es, 1e-3, 0.0, nh_e, nh_w,
                    valid[0], valid[1], valid[2])
    got = np.concatenate([nh_e, nh_w], axis=1)
    single = sides[0] ^ sides[1]
    side = np.where(sides[0][:, None], ref - nmi, npl - ref) / es[:, None]
    assert np.array_equal(got[single], side[single]) and np.array_equal(got[~single], central[~single])


def test_uncoupled_solve_rejects_an_undetermined_node():
    # no conductance and no current at node 1: b/K = 0/0 is not a solution, even after the clamp
    with pytest.raises(SolveError, match="not certified"):
        solve_ideal_diagonal(np.array([1e-4, 0.0]), np.array([[1e-5, 0.0]]), np.ones(2), np.zeros(2), 1.0)


def test_nodal_sums_partial_rows_equal_the_full_refresh():
    rng = np.random.default_rng(3)
    n, p, q = 11, 13, 5  # p not a multiple of 4: the tail of the four running sums is used
    g_in, g_out = rng.uniform(0, 1e-4, (n, p)), rng.uniform(0, 1e-4, (q, n))
    hh, leak = rng.uniform(0, 1e-5, n), rng.uniform(0, 1e-6, n)
    full, col, row = np.empty(n), np.empty(p), np.empty(q)
    nodal_sums_kernel(g_in, hh, leak, g_out, np.arange(n), full, col, row)
    np.testing.assert_allclose(full, g_in.sum(1) + hh + leak + g_out.sum(0), rtol=1e-14)
    np.testing.assert_allclose(col, g_in.sum(0), rtol=1e-14)
    np.testing.assert_allclose(row, g_out.sum(1), rtol=1e-14)
    part = np.full(n, np.nan)
    rows = np.array([0, 4, 10])
    nodal_sums_kernel(g_in, hh, leak, g_out, rows, part, np.empty(0), np.empty(0))
    assert np.array_equal(part[rows], full[rows]) and np.isnan(np.delete(part, rows)).all()


def test_count_changes():
    a = np.arange(10.0)
    b = a.copy()
    b[[2, 7]] = -1.0
    assert count_changes(a, a) == 0 and count_changes(b, a) == 2
