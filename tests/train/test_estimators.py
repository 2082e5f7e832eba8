"""Gradient estimators against independent oracles (physics.md §3, §4, §8.1)."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.mon import implicit_gradient, mon_view, peaceman_rachford
from hil.train.estimators import estimate
from hil.train.losses import Loss

SETUPS = [(seed, diode) for seed in range(3) for diode in ("ideal", "shockley")]


def setup(seed, diode, batch=5):
    c = random_circuit(9, 3, 4, seed=seed, diode=diode, coupling_degree=2, mixed_orientation=True,
                       g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (batch, 3))
    t = rng.integers(0, 2, batch)
    return c, SimulatedBoard(c), x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def mon_conductance_gradient(c, x, t, loss, alpha=5e3):
    """Winston–Kolter implicit gradient in MON variables, chained by hand to every conductance."""
    view = mon_view(c, alpha)
    u = c.source_voltages(x)
    z, _ = peaceman_rachford(view, u, tol=1e-15)
    y = z @ view.C.T + view.d
    _, dy = loss.value_and_grad(y, t)
    mu = implicit_gradient(view, z, u, dy @ view.C)  # ∂ℓ/∂x at x = Wz + Uu + bias
    s = c.diodes.orientation.astype(float)
    topo = c.topology()
    p, n = c.n_sources, c.n_hidden
    grad = np.zeros(topo.n_conductances)
    for k, (a, b) in enumerate(topo.edges):
        inc = np.zeros(n)
        for node, sign in ((a, 1.0), (b, -1.0)):
            if p <= node < p + n:
                inc[node - p] = sign
        sb = s * inc  # L = Σ g_k b_k b_kᵀ  ⇒  ∂W/∂g_k = −a (S b_k)(S b_k)ᵀ
        g_k = -alpha * (mu @ sb) * (z @ sb)
        if k < topo.groups["g_in"].stop:  # U = a S G_in
            g_k = g_k + alpha * s[a - p] * mu[:, a - p] * u[:, b]
        if k >= topo.groups["g_out"].start:  # readout y = G_out S z
            o = b - (p + n)
            g_k = g_k + dy[:, o] * s[a - p] * z[:, a - p]
        grad[k] = g_k.mean()
    return grad


@pytest.mark.parametrize("seed, diode", SETUPS)
def test_hl_exact_equals_mon_implicit_gradient(seed, diode):
    c, board, x, t, loss = setup(seed, diode)
    exact = estimate("hl-exact", board, x, t, loss).grad
    assert rel(exact, mon_conductance_gradient(c, x, t, loss)) <= 1e-12


@pytest.mark.parametrize("seed, diode", SETUPS)
def test_hl_exact_equals_central_finite_differences(seed, diode):
    c, board, x, t, loss = setup(seed, diode)
    exact = estimate("hl-exact", board, x, t, loss)
    fd = estimate("fd", board, x, t, loss, {"rel_step": 1e-4})
    assert rel(exact.grad, fd.grad) <= 1e-7
    # the FD estimator reprograms; it must leave the board as it found it
    np.testing.assert_array_equal(board.read_conductances(), c.conductance_vector())


@pytest.mark.parametrize("seed", range(3))
def test_hl_ideal_is_exact_without_flips(seed):
    c, board, x, t, loss = setup(seed, "ideal")
    exact = estimate("hl-exact", board, x, t, loss).grad
    for delta in (1e-2, 1e-3):
        hl = estimate("hl", board, x, t, loss, {"delta_v": delta})
        assert hl.stats["flipped_samples"] == 0
        assert rel(hl.grad, exact) <= 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_hl_smooth_error_is_second_order(seed):
    c, board, x, t, loss = setup(seed, "shockley")
    exact = estimate("hl-exact", board, x, t, loss).grad
    errs = [rel(estimate("hl", board, x, t, loss, {"delta_v": d}).grad, exact) for d in (1e-2, 1e-3)]
    assert 80 <= errs[0] / errs[1] <= 120
    one_sided = [rel(estimate("hl", board, x, t, loss, {"delta_v": d, "central": False}).grad, exact)
                 for d in (1e-2, 1e-3)]
    assert 8 <= one_sided[0] / one_sided[1] <= 12  # first order


def test_hl_detects_flips_and_retries_with_smaller_drive():
    c, board, x, t, loss = setup(0, "ideal", batch=20)
    exact = estimate("hl-exact", board, x, t, loss).grad
    big = estimate("hl", board, x, t, loss, {"delta_v": 2.0, "max_retries": 0})
    assert big.stats["flipped_samples"] > 0 and rel(big.grad, exact) > 1e-3
    fixed = estimate("hl", board, x, t, loss, {"delta_v": 2.0, "max_retries": 6})
    assert rel(fixed.grad, exact) <= 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_ep_bias_laws_without_flips(seed):
    c, board, x, t, loss = setup(seed, "ideal")
    exact = estimate("hl-exact", board, x, t, loss, {"keep_per_sample": True})
    w_hat = -loss.value_and_grad(exact.op.y, t)[1]
    beta = 1e-4 / np.abs(w_hat).max()
    one = estimate("ep", board, x, t, loss, {"beta": beta, "centred": False, "keep_per_sample": True})
    # v̂ per branch from the exact linearization: per-sample grad = v v̂
    topo = board.topology
    e_hat, i_hat = board.linearized_response(x, w_hat)
    nodes = np.concatenate([np.zeros_like(exact.op.u), e_hat, w_hat, np.zeros((len(x), 1))], axis=1)
    v_hat = nodes[:, topo.edges[:, 0]] - nodes[:, topo.edges[:, 1]]
    bias = one.per_sample - exact.per_sample
    scale = np.abs(exact.per_sample).max()
    assert np.max(np.abs(bias - 0.5 * beta * v_hat**2)) <= 1e-9 * scale
    assert np.all(bias >= -1e-9 * scale)
    centred = estimate("ep", board, x, t, loss, {"beta": beta, "centred": True})
    assert rel(centred.grad, exact.grad) <= 1e-9


def test_ep_centred_smooth_is_second_order():
    c, board, x, t, loss = setup(1, "shockley")
    exact = estimate("hl-exact", board, x, t, loss)
    w_hat = -loss.value_and_grad(exact.op.y, t)[1]
    b0 = 1e-2 / np.abs(w_hat).max()
    errs = [rel(estimate("ep", board, x, t, loss, {"beta": b}).grad, exact.grad) for b in (b0, b0 / 10)]
    assert 80 <= errs[0] / errs[1] <= 120


def test_input_sensitivities_match_finite_differences():
    c, board, x, t, loss = setup(2, "shockley", batch=1)
    hl = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    ex = estimate("hl-exact", board, x, t, loss)
    u = c.source_voltages(x)
    from hil.circuit.solve import EquilibriumSolver

    solver = EquilibriumSolver(c)
    fd = np.zeros(c.n_sources)
    for j in range(c.n_sources):
        h = 1e-5
        du = np.zeros_like(u)
        du[0, j] = h
        lp = loss.value_and_grad(solver.solve(u + du).y, t)[0][0]
        lm = loss.value_and_grad(solver.solve(u - du).y, t)[0][0]
        fd[j] = (lp - lm) / (2 * h)
    assert rel(ex.source_grad[0], fd) <= 1e-7
    assert rel(hl.source_grad[0], fd) <= 1e-5


def test_euler_identity_ideal():
    """Σ g ∂ℓ/∂g = Σ y ∂ℓ/∂y for ideal diodes (scale invariance, physics §1.3)."""
    c, board, x, t, loss = setup(0, "ideal")
    ex = estimate("hl-exact", board, x, t, loss)
    _, dy = loss.value_and_grad(ex.op.y, t)
    lhs = float(board.read_conductances() @ ex.grad)
    rhs = float(np.mean(np.sum(ex.op.y * dy, axis=1)))
    assert abs(lhs - rhs) <= 1e-12 * max(abs(rhs), 1e-30) + 1e-15


def test_fd_divides_by_the_step_actually_programmed_at_the_bounds():
    c, _, x, t, loss = setup(0, "ideal")
    g = c.conductance_vector()
    board = SimulatedBoard(c, g_min=0.0, g_max=float(g.max()))  # the largest conductance sits at g_max
    k = int(np.argmax(g))
    exact = estimate("hl-exact", board, x, t, loss).grad
    fd = estimate("fd", board, x, t, loss).grad
    assert fd[k] == pytest.approx(exact[k], rel=1e-4)  # one-sided there: O(h); clipping used to halve it


def test_fd_at_the_bounds_uses_the_steps_a_quantised_board_programmed():
    """The one-sided formula assumed its second point at exactly twice the first step; a board that
    programs conductances on a grid of levels puts it elsewhere (here at 2.33 steps: the slope was
    0.83× the true one), and the formula now uses both programmed steps."""
    c, _, x, t, loss = setup(0, "ideal")
    level = 3e-7  # S between programmable levels
    g = np.round(c.conductance_vector() / level) * level
    c = c.with_conductances(g)  # on the grid from the start

    class Levels(SimulatedBoard):
        def program(self, g, rel_tol=0.01):
            return super().program(np.round(np.asarray(g, dtype=float) / level) * level, rel_tol)

    k = int(np.argmax(g))
    board = Levels(c, g_min=0.0, g_max=float(g[k]))  # the largest conductance sits at g_max: one-sided there
    exact = estimate("hl-exact", board, x, t, loss).grad
    fd = estimate("fd", board, x, t, loss, {"rel_step": 1e-6 / float(g[k])}).grad  # h = 1 µS: steps of 3 and 7 levels
    assert fd[k] == pytest.approx(exact[k], rel=1e-3)
