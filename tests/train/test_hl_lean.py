"""The lean lane of ``hl`` (hil.train.estimators._hl_lean) and the one-call held phases of uncoupled
ideal boards (UncoupledIdealSolves._held_phases): the same answers as the general code, every
phase row certified, failures raised."""

import dataclasses

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.report import SolveError
from hil.circuit.solve import EquilibriumSolver
from hil.train.estimators import _hl_central, estimate
from hil.train.losses import Loss


def _setup(coupling=0, inputs=6, n=24, q=6, seed=0):
    c = random_circuit(n, inputs, q, seed=seed, coupling_degree=coupling, g_range=(1e-6, 1e-4))
    return c, SimulatedBoard(c), Loss("cross_entropy", 1e5, c.differential_matrix())


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("coupling", [0, 4])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_lean_lane_equals_the_general_path(coupling, batch):
    """Same gradient and ∂ℓ/∂u (to rounding: the lean lane takes the + phase's one-sided difference
    where that phase changed no state, exact as the central one is), loss and statistics as the
    general central path, also when single-phase flips are resolved in the lean lane (a large
    drive makes them)."""
    c, board, loss = _setup(coupling)
    rng = np.random.default_rng(batch)
    x, t = rng.uniform(-1, 1, (batch, 6)), rng.integers(0, 3, batch)
    resolved = 0
    for delta_v in (1e-3, 0.2):
        lean = estimate("hl", board, x, t, loss, {"delta_v": delta_v})
        op = board.measure(x)
        val, dy = loss.value_and_grad(op.y, t)
        ref = _hl_central(board, board.topology, x, op, val, -dy, delta_v, 3, False, 1e-3)
        assert _rel(lean.grad, ref.grad) <= 1e-10
        assert np.array_equal(lean.loss, ref.loss)
        assert _rel(lean.source_grad, ref.source_grad) <= 1e-10
        mirrored = lean.stats["mirror_measured"]
        if mirrored == batch:  # both phases of every sample: the central path's own bookkeeping
            assert _rel(lean.grad, ref.grad) <= 1e-12 and _rel(lean.source_grad, ref.source_grad) <= 1e-12
            assert {k: v for k, v in lean.stats.items() if k != "valid"} == \
                {k: v for k, v in ref.stats.items() if k != "valid"}
        elif lean.stats["retries"] == 0:  # the − phase only where the + phase changed a state, resolved from it
            assert lean.stats["flipped_samples"] == lean.stats["one_sided"] == mirrored
            assert mirrored <= ref.stats["flipped_samples"] and not lean.stats["may_be_biased"]
        else:  # some flipped in both phases: only those re-measured, as the central path re-measures them
            assert lean.stats["retries"] == ref.stats["retries"]
            assert lean.stats["unresolved_flips"] == ref.stats["unresolved_flips"]
            assert lean.stats["flipped_samples"] >= mirrored > 0
            assert lean.stats["may_be_biased"] == ref.stats["may_be_biased"]
        assert np.array_equal(lean.stats["valid"], ref.stats["valid"])
        resolved += lean.stats["one_sided"]
        for f in dataclasses.fields(lean):  # every field of the result is set
            getattr(lean, f.name)
        assert lean.per_sample is None and lean.op.e.shape == (batch, 24)
    if batch == 40:
        assert resolved > 0  # the lean lane's own flip bookkeeping was exercised


def test_lean_lane_hands_over_to_the_general_path_on_invalid_or_noisy_phases():
    c, board, loss = _setup()

    class Marked(SimulatedBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            if w is None:
                return m
            valid = np.ones(m.e.shape[0], bool)
            valid[0] = False
            return dataclasses.replace(m, valid=valid, noise_v=1e-12)

    rng = np.random.default_rng(5)
    x, t = rng.uniform(-1, 1, (4, 6)), rng.integers(0, 3, 4)
    r = estimate("hl", Marked(c), x, t, loss, {"delta_v": 1e-3})
    assert r.stats["invalid_samples"] == 1 and not r.stats["valid"][0] and r.stats["may_be_biased"]
    exact = estimate("hl-exact", board, x[1:], t[1:], loss)
    assert _rel(r.grad, exact.grad) <= 1e-6


def test_held_phases_equal_the_general_solver_and_report_when_read():
    c, board, _ = _setup(inputs=6, q=6)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (3, 6))
    board.measure(x)
    for w in (rng.normal(0, 0.05, (6, 6)), rng.normal(0, 0.05, (30, 6))):  # in-kernel w·G_out and a matrix product
        k = w.shape[0] // 3
        both = board.measure(np.concatenate([x] * k), w)
        ref = EquilibriumSolver(c).solve(c.source_voltages(np.concatenate([x] * k)), w)
        assert np.array_equal(both.on, ref.on) and _rel(both.e, ref.e) <= 1e-13 and _rel(both.y, ref.y) <= 1e-13
        assert _rel(both.i_src, ref.i_src) <= 1e-13 and np.array_equal(both.u, ref.u)
        rep = both.info["report"]
        assert rep.converged and rep.batch == w.shape[0] and rep.kkt_primal == 0.0
        assert rep.kcl_residual_rel <= 1e-12 and rep.min_margin is not None and rep.wall_time_s > 0
        assert both.valid is None and both.noise_v == 0.0 and both.held_sources[1] == k
        assert dataclasses.replace(both).y.shape == (w.shape[0], 6)  # every field readable


def test_held_phases_check_ports_and_raise_when_not_certified():
    c, board, _ = _setup()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 6))
    board.measure(x)
    w = rng.normal(0, 0.05, (4, 6))
    w[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        board.measure(np.concatenate([x, x]), w)
    held = board._last[1]
    held.b_src[1, 3] = np.inf  # a corrupted held point: no row of it can be certified
    with pytest.raises(SolveError, match="not certified") as err:
        board.measure(np.concatenate([x, x]), rng.normal(0, 0.05, (4, 6)))
    assert not err.value.report.converged and err.value.report.batch == 4
    board.safe_state()
    board.measure(x)
    board._solver.kkt_tol = -1.0  # an impossible tolerance: the certificate is checked, never skipped
    with pytest.raises(SolveError):
        board.measure(np.concatenate([x, x]), rng.normal(0, 0.05, (4, 6)))


def _random_differential_matrix() -> np.ndarray:
    rng = np.random.default_rng(4)
    d = rng.normal(0, 1, (4, 7)) * (rng.random((4, 7)) < 0.5)  # rows with 0 … 7 nonzero entries
    d[2] = 0.0
    return d


@pytest.mark.parametrize("d", [_random_differential_matrix(), np.pad(np.kron(np.eye(3), [1.0, -1.0]), ((0, 0), (0, 1)))],
                         ids=["any", "pairs"])
def test_cross_entropy_on_any_differential_matrix_equals_the_numpy_formula(d):
    """Both loops of the compiled cross-entropy: the general one (classes of 0 … 7 entries) and the
    one for classes that are each one differential pair (and a port no class reads)."""
    rng = np.random.default_rng(4)
    loss = Loss("cross_entropy", 3e4, d)
    y, t = rng.normal(0, 3e-5, (9, 7)), rng.integers(0, d.shape[0], 9)
    val, dy = loss.value_and_grad(y, t)
    z = 3e4 * (y @ d.T)
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    dz = np.exp(logp)
    dz[np.arange(9), t] -= 1.0
    assert np.max(np.abs(val + logp[np.arange(9), t])) <= 1e-13 * np.abs(val).max()
    assert np.max(np.abs(dy - 3e4 * (dz @ d))) <= 1e-13 * np.abs(dy).max()
