"""Flip detection from the measurements alone (no diode states) and the one-sweep hl path."""

import dataclasses

import numpy as np
import pytest

from hil.board import BoardBase
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate, response_flips
from hil.train.losses import Loss


class StatelessBoard(BoardBase):
    """A simulated board that hides diode states, as an instrument board must."""

    def __init__(self, inner):
        self.inner = inner
        self.topology = inner.topology
        self.conductance_bounds = inner.conductance_bounds

    def measure(self, x, w=None):
        return dataclasses.replace(self.inner.measure(x, w), on=None, piecewise_linear=False)

    def program(self, g, rel_tol=0.01):
        return self.inner.program(g, rel_tol)

    def read_conductances(self):
        return self.inner.read_conductances()


class PhasedBoard(StatelessBoard):
    """Adds the PhasedMeasurement capability by measuring phase after phase."""

    def __init__(self, inner):
        super().__init__(inner)
        self.sweeps = 0

    def measure_phases(self, x, w_phases):
        self.sweeps += 1
        return [self.measure(x, w) for w in w_phases]


def setup(seed, diode, batch=6):
    c = random_circuit(9, 3, 4, seed=seed, diode=diode, coupling_degree=2, mixed_orientation=True,
                       g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (batch, 3))
    t = rng.integers(0, 2, batch)
    return SimulatedBoard(c), x, t, Loss("cross_entropy", 1e4, c.differential_matrix())


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_response_flips_thresholds():
    n0 = np.zeros((3, 4))
    plus = np.array([[1.0, 2, 0, 0], [1.0, 2, 0, 0], [1e-9, 0, 0, 0]]) * 1e-3
    minus = -plus.copy()
    minus[1, 0] = -0.5e-3  # sample 1: asymmetric response (a kink between the phases)
    flagged = response_flips(plus, n0, minus)
    assert flagged.tolist() == [False, True, False]
    # the same asymmetry under a noise floor larger than it is not a flip
    assert not response_flips(plus, n0, minus, noise_v=1e-3).any()


@pytest.mark.parametrize("seed", range(3))
def test_ideal_flips_found_without_states(seed):
    board, x, t, loss = setup(seed, "ideal")
    exact = estimate("hl-exact", board, x, t, loss).grad
    big = {"delta_v": 0.5, "max_retries": 4}
    with_states = estimate("hl", board, x, t, loss, big)
    assert with_states.stats["flipped_samples"] > 0  # δ = 0.5 V flips diodes on this network
    blind = estimate("hl", StatelessBoard(board), x, t, loss, big)
    assert blind.stats["flips_from_response"] > 0
    assert rel(blind.grad, exact) <= 1e-9
    no_check = estimate("hl", StatelessBoard(board), x, t, loss, dict(big, flip_rel_tol=np.inf))
    assert rel(no_check.grad, exact) > 1e-3  # what the check prevents


@pytest.mark.parametrize("seed", (1, 2))
def test_shockley_leaving_linear_region_is_noticed(seed):
    board, x, t, loss = setup(seed, "shockley")
    exact = estimate("hl-exact", board, x, t, loss).grad
    opts = {"delta_v": 0.3, "max_retries": 4, "flip_rel_tol": 1e-4}
    checked = estimate("hl", board, x, t, loss, opts)
    unchecked = estimate("hl", board, x, t, loss, dict(opts, flip_rel_tol=np.inf))
    assert checked.stats["flips_from_response"] > 0  # the states of smooth diodes say nothing
    assert rel(checked.grad, exact) < rel(unchecked.grad, exact) / 10
    # at a small drive nothing is flagged and the central estimate is already accurate
    small = estimate("hl", board, x, t, loss, {"delta_v": 1e-3})
    assert small.stats["flipped_samples"] == 0
    assert rel(small.grad, exact) <= 1e-6


@pytest.mark.parametrize("seed, diode", [(s, d) for s in range(2) for d in ("ideal", "shockley")])
def test_one_sweep_port_basis_equals_direct_hl(seed, diode):
    board, x, t, loss = setup(seed, diode)
    exact = estimate("hl-exact", board, x, t, loss).grad
    phased = PhasedBoard(board)
    res = estimate("hl", phased, x, t, loss, {"delta_v": 1e-3})
    assert phased.sweeps == 1 and res.stats["phases"] == 1 + 2 * board.topology.n_outputs
    assert rel(res.grad, exact) <= (1e-10 if diode == "ideal" else 1e-5)


def test_invalid_samples_never_enter_the_gradient():
    board, x, t, loss = setup(0, "ideal")

    class Marking(StatelessBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            valid = np.ones(len(x), bool)
            valid[0] = False
            return dataclasses.replace(m, valid=valid)

    res = estimate("hl", Marking(board), x, t, loss, {"delta_v": 1e-3})
    ref = estimate("hl-exact", board, x[1:], t[1:], loss).grad
    assert res.stats["invalid_samples"] == 1
    assert rel(res.grad, ref) <= 1e-10


#: what every hl result's ``stats`` holds, whichever way it was measured
HL_STATS = {"flipped_samples", "flips_from_response", "retries", "one_sided", "unresolvable", "mirror_measured",
            "unresolved_flips", "invalid_samples", "may_be_biased", "bias_note", "valid"}


@pytest.mark.parametrize("path", ["lean", "stacked", "one-sided", "one-sweep", "cascade"])
def test_every_hl_path_reports_the_same_statistics(path):
    """A script that reads ``stats["mirror_measured"]`` (or any other count) works on every board."""
    if path == "cascade":
        from tests.train.test_cascade import batch, cascade

        board = cascade([{"model": "ideal"}] * 2)
        x, t = batch(board, size=6)
        loss = Loss("cross_entropy", 1e4, board.topology.differential)
    else:
        board, x, t, loss = setup(0, "ideal")
        board = {"lean": board, "stacked": StatelessBoard(board), "one-sided": board,
                 "one-sweep": PhasedBoard(board)}[path]
    res = estimate("hl", board, x, t, loss, {"delta_v": 1e-3, "central": path != "one-sided"})
    assert HL_STATS <= set(res.stats), HL_STATS - set(res.stats)
    assert res.stats["mirror_measured"] == (0 if path in ("lean", "one-sided") else len(x))


@pytest.mark.parametrize("path", ["stacked", "one-sweep"])
def test_a_sample_invalid_at_its_operating_point_is_not_re_measured_for_a_flip(path):
    """Such a sample is left out of the gradient anyway: re-measuring its flip wastes board calls and
    its count made the bias note speak of flips in samples the gradient does not use."""
    board, x, t, loss = setup(1, "ideal", batch=8)
    big = {"delta_v": 0.5, "max_retries": 1}
    alone = [estimate("hl", StatelessBoard(board), x[i:i + 1], t[i:i + 1], loss, big).stats["flipped_samples"]
             for i in range(len(x))]
    bad = int(np.argmax(alone))
    assert alone[bad] > 0  # this sample flips at this drive

    class InvalidAtRest(StatelessBoard):
        def measure(self, x, w=None):
            m = super().measure(x, w)
            if w is None:  # the operating point: sample `bad` invalid
                valid = np.ones(len(x), bool)
                valid[bad] = False
                return dataclasses.replace(m, valid=valid)
            return m

    class PhasedInvalidAtRest(InvalidAtRest):
        def measure_phases(self, x, w_phases):
            return [self.measure(x, w) for w in w_phases]

    b = InvalidAtRest(board) if path == "stacked" else PhasedInvalidAtRest(board)
    res = estimate("hl", b, x, t, loss, {**big, "one_sweep": path == "one-sweep"})
    assert res.stats["invalid_samples"] == 1 and not res.stats["valid"][bad]
    others = [i for i in range(len(x)) if i != bad]
    ref = estimate("hl", StatelessBoard(board) if path == "stacked" else PhasedBoard(board), x[others], t[others], loss,
                   {**big, "one_sweep": path == "one-sweep"})
    assert res.stats["flipped_samples"] == ref.stats["flipped_samples"]
    assert res.stats["unresolved_flips"] == ref.stats["unresolved_flips"]
    assert rel(res.grad, ref.grad) <= 1e-12
