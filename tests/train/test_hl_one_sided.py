"""hl on a piecewise-linear board that reports diode states: a flip in only one of the two phases is
resolved from the other phase (exact), flips in both are re-measured; ∂ℓ/∂u is formed on read."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


def setup(seed):
    c = random_circuit(30, 4, 4, seed=seed, coupling_degree=0)
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(-2, 2, (16, 4)), rng.integers(0, 2, 16)
    return SimulatedBoard(c), x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_single_phase_flips_are_exact_without_re_measuring():
    board, x, t, loss = setup(1)
    exact = estimate("hl-exact", board, x, t, loss)
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.03, "max_retries": 0})
    assert res.stats["one_sided"] > 0 and res.stats["flipped_samples"] == res.stats["one_sided"]
    assert res.stats["retries"] == 0 and res.stats["unresolved_flips"] == 0 and not res.stats["may_be_biased"]
    assert rel(res.grad, exact.grad) <= 1e-12
    assert rel(res.source_grad, exact.source_grad) <= 1e-11


@pytest.mark.parametrize("seed", range(3))
def test_flips_in_both_phases_are_still_re_measured(seed):
    board, x, t, loss = setup(seed)
    exact = estimate("hl-exact", board, x, t, loss)
    blind = estimate("hl", board, x, t, loss, {"delta_v": 0.3, "max_retries": 0})
    assert blind.stats["unresolved_flips"] > 0 and rel(blind.grad, exact.grad) > 1e-3
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.3, "max_retries": 6})
    assert res.stats["retries"] > 0 and res.stats["unresolved_flips"] == 0
    assert rel(res.grad, exact.grad) <= 1e-9 and rel(res.source_grad, exact.source_grad) <= 1e-8


def test_source_gradient_is_formed_from_the_readings_when_read():
    board, x, t, loss = setup(2)
    res = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    assert "_source_grad" not in res.__dict__ or res.__dict__["_source_grad"] is None
    g = board.read_conductances()
    board.program(g * 1.5)  # reprogramming afterwards changes nothing in what was measured
    exact = estimate("hl-exact", SimulatedBoard(board.circuit.with_conductances(g)), x, t, loss)
    assert rel(res.source_grad, exact.source_grad) <= 1e-9


class RecordingBoard:
    """A board that records every measure call it receives: (inputs, port voltages)."""

    def __init__(self, board):
        self.inner, self.calls = board, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, x, w=None):
        self.calls.append((np.array(x), None if w is None else np.array(w)))
        return self.inner.measure(x, w)


@pytest.mark.parametrize("coupling, seed", [(0, 1), (4, 2)])
def test_exact_boards_measure_the_minus_phase_only_where_the_plus_phase_changed_a_state(coupling, seed):
    """Operating point, the + phase of every sample, then the − phase of exactly the samples whose
    + phase changed a diode state (as the board received them); the gradient is still exact."""
    c = random_circuit(30, 4, 4, seed=seed, coupling_degree=coupling)
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(-2, 2, (16, 4)), rng.integers(0, 2, 16)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    board = RecordingBoard(SimulatedBoard(c))
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.03, "max_retries": 0})
    (x0, w0), (xp, wp), *rest = board.calls
    assert w0 is None and np.array_equal(x0, x) and np.array_equal(xp, x)  # op, then the + phase (B rows)
    op = board.inner.measure(x)
    plus = board.inner.measure(x, wp)
    changed = np.flatnonzero(np.any(plus.on != op.on, axis=1))
    assert 0 < changed.size < len(x)  # this drive flips some samples' + phase, not all
    assert len(rest) == 1  # one more call: the − phase of those samples only
    xm, wm = rest[0]
    assert np.array_equal(xm, x[changed]) and np.allclose(wm - op.w[changed], -(wp - op.w)[changed], rtol=0,
                                                          atol=1e-15)
    assert res.stats["mirror_measured"] == changed.size == res.stats["one_sided"]
    exact = estimate("hl-exact", board.inner, x, t, loss)
    assert rel(res.grad, exact.grad) <= (1e-12 if coupling == 0 else 1e-9)
    assert rel(res.source_grad, exact.source_grad) <= 1e-9


def test_noisy_boards_still_measure_both_phases_of_every_sample_in_one_call():
    from dataclasses import replace

    class Noisy(SimulatedBoard):
        def measure(self, x, w=None):
            return replace(super().measure(x, w), noise_v=1e-9)

    board, x, t, loss = setup(3)
    rec = RecordingBoard(Noisy(board.circuit))
    res = estimate("hl", rec, x, t, loss, {"delta_v": 1e-3})
    assert [len(xc) for xc, _ in rec.calls] == [16, 32] and res.stats["mirror_measured"] == 16



def test_a_minus_phase_that_moved_the_sources_is_not_used():
    """A board whose − phase of the re-measured samples did not hold their sources (here they moved
    by 1 µV): nothing of that phase enters the gradient; the − phase of the whole batch is
    measured instead, and the gradient is still exact."""
    from dataclasses import replace

    class MovingSources(SimulatedBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            return replace(m, u=m.u + 1e-6) if w is not None and len(x) < 16 else m

    c = random_circuit(30, 4, 4, seed=1, coupling_degree=0)
    rng = np.random.default_rng(1)
    x, t = rng.uniform(-2, 2, (16, 4)), rng.integers(0, 2, 16)
    loss = Loss("cross_entropy", 1e4, c.differential_matrix())
    board = RecordingBoard(MovingSources(c))
    res = estimate("hl", board, x, t, loss, {"delta_v": 0.03, "max_retries": 0})
    sizes = [len(xc) for xc, _ in board.calls]
    assert sizes[:2] == [16, 16] and 0 < sizes[2] < 16 and sizes[3:] == [16]  # op, +, − of some, − of all
    assert res.stats["mirror_measured"] == 16
    assert rel(res.grad, estimate("hl-exact", SimulatedBoard(c), x, t, loss).grad) <= 1e-12

@pytest.mark.parametrize("seed", range(2))
def test_samples_flipped_in_both_phases_alone_are_re_measured(seed):
    """A large drive flips some samples in both phases: after the + phase of every sample and the −
    phase of the flipped ones, only the samples flipped in both are measured again (both phases,
    a 10× smaller drive); no call repeats the − phase of the whole batch, and the answer is exact."""
    board, x, t, loss = setup(seed)
    rec = RecordingBoard(board)
    res = estimate("hl", rec, x, t, loss, {"delta_v": 0.3, "max_retries": 6})
    sizes = [len(xc) for xc, _ in rec.calls]
    mirrored = res.stats["mirror_measured"]
    assert sizes[:3] == [16, 16, mirrored] and 0 < mirrored < 16 and res.stats["retries"] >= 1
    op = board.measure(x)
    minus_x, minus_w = rec.calls[2]
    changed = np.array([any(np.array_equal(row, m) for m in minus_x) for row in x])
    again = rec.calls[3][0]
    assert len(again) % 2 == 0 and np.array_equal(again[:len(again) // 2], again[len(again) // 2:])
    both = [i for i in range(16) if any(np.array_equal(x[i], a) for a in again)]
    assert 0 < len(both) == len(again) // 2 and changed[both].all()  # a subset of the − phase's samples
    for xc, _ in rec.calls[3:]:  # every later call: both phases of samples flipped in both, never the whole batch
        half = len(xc) // 2
        assert len(xc) == 2 * half and np.array_equal(xc[:half], xc[half:])
        assert all(any(np.array_equal(row, x[i]) for i in both) for row in xc[:half])
    exact = estimate("hl-exact", board, x, t, loss)
    assert res.stats["unresolved_flips"] == 0 and not res.stats["may_be_biased"]
    assert rel(res.grad, exact.grad) <= 1e-9 and rel(res.source_grad, exact.source_grad) <= 1e-8
    assert op.e.shape == (16, 30) and minus_w.shape == (mirrored, 4)
