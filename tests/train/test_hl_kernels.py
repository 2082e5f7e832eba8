"""Compiled parts of a training step (drives, flip bookkeeping, cross-entropy) against the numpy formulas they replace, and the hl gradient they give against hl-exact."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.kernels import (NO_SOURCE_MAP, batch_response_product, cross_entropy_kernel, flip_accounting_kernel,
                         hl_drive_kernel, response_product_kernel)
from hil.train.estimators import estimate, hl_gradient
from hil.train.losses import Loss


def test_drive_kernel_equals_the_numpy_drive():
    rng = np.random.default_rng(0)
    w_hat, w0 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    w_hat[2] = 0.0  # no drive at all: scale 1
    eps, both = np.empty((6, 1)), np.empty((12, 5))
    hl_drive_kernel(w_hat, w0, 0.01, eps, both)
    amp = np.max(np.abs(w_hat), axis=1, keepdims=True)
    amp[amp == 0] = 1.0
    ref_eps = 0.01 / amp
    assert np.array_equal(eps, ref_eps)
    assert np.array_equal(both, np.concatenate([w0 + ref_eps * w_hat, w0 - ref_eps * w_hat]))
    given = ref_eps / 10.0
    hl_drive_kernel(w_hat, w0, 0.0, given, both)  # a re-measurement: the given, smaller drive
    assert np.array_equal(given, ref_eps / 10.0) and np.array_equal(both[:6], w0 + given * w_hat)


def _group_reference(u, e, w, e_hat, w_hat, blocks, m):
    """v·v̂ batch means per conductance of dense groups, written out from the node arrays (numpy)."""
    out = np.full(m, np.nan)
    for first, kind, c0, c1, row_major in blocks:
        if kind == 2:  # hidden × ground
            out[first:first + e.shape[1]] = np.mean(e * e_hat, axis=0)
            continue
        fixed, fixed_hat = (u, np.zeros(u.shape)) if kind == 0 else (w, w_hat)
        v = e[:, :, None] - fixed[:, None, c0:c1]  # (B, n, width): hidden node − fixed node
        v_hat = e_hat[:, :, None] - fixed_hat[:, None, c0:c1]
        g = np.mean(v * v_hat, axis=0)
        out[first:first + g.size] = (g if row_major else g.T).ravel()
    return out


@pytest.mark.parametrize("ports_at_zero", [True, False])
def test_group_products_equal_the_node_formula_for_column_ranges_and_both_orders(ports_at_zero):
    """The compiled pass (few samples) and the matrix product per group (more samples) give the
    same batch means of v·v̂ as the node formula, for groups over part of the source or port columns,
    in either edge order, with ports at 0 V or not."""
    rng = np.random.default_rng(3)
    p, n, q = 7, 5, 6
    blocks = np.array([[0, 0, 0, 3, 1], [15, 0, 3, 7, 0], [35, 1, 0, 2, 0], [45, 1, 2, 6, 1], [65, 2, 0, 1, 1]],
                      dtype=np.int64)  # (first edge, kind source/port/ground, first column, end column, row-major)
    m = 70
    for batch in (1, 4, 5, 33):
        u, e, w, e_hat, w_hat = (rng.normal(size=(batch, k)) for k in (p, n, q, n, q))
        if ports_at_zero:
            w[:] = 0.0
        ref = _group_reference(u, e, w, e_hat, w_hat, blocks, m)
        out = np.full(m, np.nan)
        batch_response_product(u, e, w, e_hat, w_hat, 1.0 / batch, blocks, NO_SOURCE_MAP, out)
        assert np.max(np.abs(out - ref)) <= 1e-13 * np.max(np.abs(ref))
        loop = np.full(m, np.nan)
        response_product_kernel(u, e, w, e_hat, w_hat, 1.0 / batch, blocks, np.empty(n), loop)
        assert np.max(np.abs(out - loop)) <= 1e-13 * np.max(np.abs(ref))



def test_inverted_copies_and_rails_share_one_product_and_are_checked_against_the_sources():
    """With a source map (three inputs, inverted copies of two, two rails) the matrix product runs over
    the three independent columns only and gives the node formula's means; a u that does not follow
    the map (a copy off by 1 mV, or a rail that moves) is taken column by column, still exact."""
    from hil.board import _source_repeats

    rng = np.random.default_rng(5)
    n, q, batch = 5, 6, 33
    m = np.zeros((7, 3))
    m[[0, 1, 2], [0, 1, 2]] = 1.0
    m[[3, 4], [0, 1]] = -1.0
    offset = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0])
    sources = _source_repeats(m, offset)
    assert sources[:, 0].tolist() == [0, 0, 0, 1, 1, 2, 2] and sources[3, 1] == 0 and sources[3, 3] == -1
    assert _source_repeats(np.eye(3), np.zeros(3)).shape[0] == 0  # nothing repeats: no map
    blocks = np.array([[0, 0, 0, 3, 1], [15, 0, 3, 7, 0], [35, 1, 0, 2, 0], [45, 1, 2, 6, 1], [65, 2, 0, 1, 1]],
                      dtype=np.int64)
    x = rng.normal(size=(batch, 3))
    u = x @ m.T + offset
    e, w, e_hat, w_hat = (rng.normal(size=(batch, k)) for k in (n, q, n, q))
    for broken in (None, (3, 1e-3), (5, 1e-3)):
        v = u.copy()
        if broken is not None:
            v[7, broken[0]] += broken[1]
        ref = _group_reference(v, e, w, e_hat, w_hat, blocks, 70)
        out = np.full(70, np.nan)
        batch_response_product(v, e, w, e_hat, w_hat, 1.0 / batch, blocks, sources, out)
        assert np.max(np.abs(out - ref)) <= 1e-13 * np.max(np.abs(ref))

def test_flip_accounting_equals_the_numpy_bookkeeping():
    rng = np.random.default_rng(1)
    for _ in range(20):
        k = 17
        plus, minus, resp, ok, readable = (rng.random(k) < f for f in (0.3, 0.3, 0.3, 0.8, 0.7))
        single, flips = np.empty(k, bool), np.empty(k, bool)
        counts = flip_accounting_kernel(plus, minus, resp, ok, readable, single, flips)
        changed = plus | minus
        ref_single = (plus ^ minus) & ok
        flagged = (changed | resp) & ok
        ref_flips = flagged & ~ref_single
        unreadable = int(np.count_nonzero(ref_flips & ~readable))
        ref_flips &= readable
        assert np.array_equal(single, ref_single) and np.array_equal(flips, ref_flips)
        assert counts == (int(flagged.sum()), int(np.count_nonzero(resp & ~changed)), int(ref_single.sum()),
                          unreadable)


def test_compiled_exp_is_within_one_ulp_of_numpy_everywhere():
    """The vectorising exp of the cross-entropy kernel: normal, subnormal, overflowing and special
    arguments as numpy's exp gives them, to 1 ulp (a subnormal's ulp is the smallest subnormal)."""
    from hil.kernels import exp_into

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-760.0, 720.0, 200_000), rng.uniform(-1.0, 1.0, 20_000),
                        [np.nan, np.inf, -np.inf, 0.0, -0.0, 709.78, 709.79, -745.13, -745.14, -708.4, 1e-300]])
    got = np.empty_like(x)
    exp_into(x, got)
    with np.errstate(over="ignore", under="ignore"):
        ref = np.exp(x)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isfinite(ref)], ref[~np.isfinite(ref)], equal_nan=True)
    assert np.all(got[ref == 0.0] == 0.0)
    ok = np.isfinite(ref) & (ref > 0.0)
    assert np.max(np.abs(got[ok] - ref[ok]) / np.spacing(ref[ok])) <= 1.0


def test_cross_entropy_kernel_refuses_labels_out_of_range_and_predicts_as_numpy():
    """(Its values against the numpy formula: tests/train/test_hl_lean.py, both loops.)"""
    rng = np.random.default_rng(2)
    d = np.kron(np.eye(5), [1.0, -1.0])
    loss = Loss("cross_entropy", 1e5, d)
    y = rng.normal(0, 3e-5, (11, 10))
    with pytest.raises(ValueError, match="class labels"):
        loss.value_and_grad(y, np.full(11, 5))
    assert not cross_entropy_kernel(y, np.full(11, -1), *loss._d_sparse, 1e5, np.empty(11), np.empty((11, 10)))
    assert np.array_equal(loss.predict(y), np.argmax(loss.scores(y), axis=1))
    y[3, 4] = np.nan  # a NaN logit is the maximum, as for numpy's argmax
    y[4] = 0.0  # ties: the first class
    assert np.array_equal(loss.predict(y), np.argmax(loss.scores(y), axis=1))


@pytest.mark.parametrize("d", [np.kron(np.eye(5), [1.0, -1.0]),
                               np.array([[1.0, 0.0, -2.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])],
                         ids=["pairs", "any"])
def test_the_fused_loss_and_drive_kernel_equals_its_steps_bit_for_bit(d):
    """The lean lane's one call (loss, ŵ = −∂ℓ/∂y, the drive per sample and the ± port voltages) gives
    exactly what the loss kernel, a negation and the drive kernel give one after the other: with
    ports away from 0 V, a sample whose softmax is exactly one-hot (ŵ = 0: the drive falls back to
    ε = delta_v) and a NaN current."""
    from hil.kernels import cross_entropy_drive_kernel, hl_drive_kernel

    rng = np.random.default_rng(11)
    loss = Loss("cross_entropy", 2e4, d)
    B, q = 9, d.shape[1]
    y, t = rng.normal(0, 5e-5, (B, q)), rng.integers(0, d.shape[0], B)
    y[2] = 0.0
    y[2, np.flatnonzero(d[t[2]] > 0)[0]] = 1.0  # a logit far above the rest: softmax exactly one-hot
    y[5, 1] = np.nan
    w0 = rng.normal(0, 0.1, (B, q))
    val, dy = np.empty(B), np.empty((B, q))
    assert cross_entropy_kernel(y, t, *loss._d_sparse, 2e4, val, dy)
    w_hat, eps, w_both = -dy, np.empty((B, 1)), np.empty((2 * B, q))
    hl_drive_kernel(w_hat, w0, 1e-3, eps, w_both)
    got = [np.empty(B), np.empty((B, q)), np.empty((B, 1)), np.empty((2 * B, q))]
    assert cross_entropy_drive_kernel(y, t, *loss._d_sparse, 2e4, w0, 1e-3, *got)
    assert not np.any(w_hat[2]) and eps[2, 0] == 1e-3
    for a, b in zip(got, (val, w_hat, eps, w_both)):
        assert np.array_equal(a, b, equal_nan=True)
    assert not cross_entropy_drive_kernel(y, np.full(B, d.shape[0]), *loss._d_sparse, 2e4, w0, 1e-3, *got)


def test_hl_through_the_lean_path_equals_hl_exact():
    c = random_circuit(32, 6, 6, seed=4, coupling_degree=0, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(4)
    x, t = rng.uniform(-1, 1, (16, 6)), rng.integers(0, 3, 16)
    hl = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    exact = estimate("hl-exact", board, x, t, loss)
    assert hl.stats["unresolved_flips"] == 0
    assert np.max(np.abs(hl.grad - exact.grad)) <= 1e-9 * np.abs(exact.grad).max()
    assert np.max(np.abs(hl.source_grad - exact.source_grad)) <= 1e-9 * np.abs(exact.source_grad).max()


@pytest.mark.parametrize("delta_v", [-0.01, 0.0, float("nan"), float("inf")])
def test_hl_rejects_a_drive_that_is_not_a_positive_voltage(delta_v):
    # the compiled drive kernel picks eps only for delta_v > 0; anything else used to read an
    # uninitialised eps and return a NaN or garbage gradient marked unbiased
    c = random_circuit(8, 3, 4, seed=0, coupling_degree=0, g_range=(1e-6, 1e-4))
    board = SimulatedBoard(c, 1e-8, 1e-4)
    loss = Loss("cross_entropy", 1e5, np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    x = np.random.default_rng(0).uniform(-1, 1, (6, 3))
    with pytest.raises(ValueError, match="delta_v"):
        hl_gradient(board, x, np.array([0, 1, 0, 1, 1, 0]), loss, delta_v=delta_v)


@pytest.mark.parametrize("name", ["cross_entropy", "mse", "linear"])
def test_loss_refuses_a_target_count_other_than_the_batch(name):
    from hil.train.losses import Loss

    loss = Loss(name, 1e4, np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    y = np.random.default_rng(0).normal(0, 1e-4, (5, 4))
    with pytest.raises(ValueError, match="3 target\\(s\\) for a batch of 5 samples"):
        loss.value_and_grad(y, np.array([0, 1, 0]))
    assert loss.value_and_grad(y, np.array([0, 1, 0, 1, 1]))[0].shape == (5,)


def test_hl_refuses_diode_states_of_the_wrong_shape():
    """The compiled phase kernel reads ``on`` without bounds checks: a board reporting fewer
    states than hidden nodes is refused in one line, never read past its end."""
    from dataclasses import replace

    class FewStates(SimulatedBoard):
        def measure(self, x, w=None, **kw):
            m = super().measure(x, w, **kw)
            return m if m.on is None else replace(m, on=np.ascontiguousarray(m.on[:, :2]))

    c = random_circuit(32, 6, 6, seed=4, coupling_degree=0, g_range=(1e-6, 1e-4))
    board = FewStates(c)
    loss = Loss("cross_entropy", 1e5, c.differential_matrix())
    rng = np.random.default_rng(4)
    x, t = rng.uniform(-1, 1, (16, 6)), rng.integers(0, 3, 16)
    with pytest.raises(ValueError, match="diode states"):
        hl_gradient(board, x, t, loss, 1e-3, central=True)


def test_optimizer_refuses_a_state_of_another_size():
    """Adam's compiled pass reads the moments without bounds checks: a loaded state whose moments
    do not match the conductances is refused (a resumed checkpoint's opt_v was not checked)."""
    from hil.train.optim import Optimizer

    opt = Optimizer("adam", 1e-3, 1e-6, 1e-4, np.ones(8, bool))
    with pytest.raises(ValueError, match="moments"):
        opt.load_state_dict({"step": np.array(3), "m": np.zeros(8), "v": np.zeros(2)})
    with pytest.raises(ValueError, match="moments"):
        opt.load_state_dict({"step": np.array(3), "m": np.zeros((8, 1)), "v": np.zeros(8)})
    opt.load_state_dict({"step": np.array(3), "m": np.zeros(8), "v": np.zeros(8)})
    assert opt.step(np.full(8, 5e-5), np.ones(8)).shape == (8,)
