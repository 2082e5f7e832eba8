"""``Measurement.exact_for``: the simulated board vouches for the form of its lean measurements, the
promise holds for every kind of call, an assignment withdraws it, and ``hl`` gives the same
answer bit for bit whether it reads the arrays as vouched for or checks and converts them."""

import dataclasses

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.train.estimators import estimate
from hil.train.losses import Loss


def board_and_data(coupling: int = 0, batch: int = 32, seed: int = 0):
    c = random_circuit(24, 6, 6, seed=seed, coupling_degree=coupling, g_range=(1e-6, 1e-4))
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(0, 1, (batch, 6)), rng.integers(0, 3, batch)
    return SimulatedBoard(c), x, t, Loss("cross_entropy", 1e5, c.differential_matrix())


def assert_as_promised(m, topo, rows: int) -> None:
    """What ``exact_for`` promises: exact, valid, states reported, C-ordered arrays of the widths."""
    assert m.exact_for is topo
    assert m.valid is None and m.noise_v == 0 and m.piecewise_linear
    widths = {"u": topo.n_sources, "e": topo.n_hidden, "w": topo.n_outputs, "y": topo.n_outputs,
              "on": topo.n_hidden}
    for name, width in widths.items():
        a = getattr(m, name)
        assert a.shape == (rows, width), name
        assert a.flags.c_contiguous, name
        assert a.dtype == (np.bool_ if name == "on" else np.float64), name


@pytest.mark.parametrize("coupling", [0, 4])
def test_every_lean_measurement_of_an_ideal_board_is_vouched_for(coupling):
    board, x, _, _ = board_and_data(coupling)
    topo = board.topology
    op = board.measure(x)
    assert_as_promised(op, topo, 32)
    assert_as_promised(board.measure(x), topo, 32)  # the held operating point again
    w = np.random.default_rng(1).normal(0, 1e-3, (64, topo.n_outputs))
    assert_as_promised(board.measure(np.concatenate([x, x]), w), topo, 64)  # ± phases stacked
    rows = np.array([3, 7, 3])
    assert_as_promised(board.measure(x[rows], w[:3]), topo, 3)  # some held samples again
    assert_as_promised(board.measure(x[:5] + 0.1, w[:5]), topo, 5)  # new inputs with port voltages
    assert_as_promised(board.measure(np.asfortranarray(x)), topo, 32)  # any input layout


@pytest.mark.parametrize("kind", ["coupled, general solver", "shockley"])
def test_other_boards_and_paths_do_not_vouch(kind):
    if kind == "shockley":
        c = random_circuit(12, 4, 4, seed=0, diode="shockley")
        board, x = SimulatedBoard(c), np.random.default_rng(0).uniform(0, 1, (4, 4))
    else:
        board, x, _, _ = board_and_data(coupling=4)
        board._solver.compiled_coupled = False  # (the general active-set solver answers)
    assert board.measure(x).exact_for is None


def test_an_assignment_withdraws_the_promise():
    board, x, _, _ = board_and_data()
    m = board.measure(x)
    m.e = m.e[:, ::-1]  # (a view in another order: no longer what the board vouched for)
    assert m.exact_for is None
    m = board.measure(x + 0.2, np.zeros((32, board.topology.n_outputs)))
    m.valid = np.ones(32, bool)
    assert m.exact_for is None
    assert dataclasses.replace(board.measure(x)).exact_for is None  # a measurement built anew


class Wrapped:
    """The same board, each measurement passed through :meth:`reading` (the wrapper's change)."""

    def __init__(self, board):
        self.inner = board

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, x, w=None):
        return self.reading(self.inner.measure(x, w))


class WithoutPromise(Wrapped):
    """Measurements stripped of ``exact_for`` (the estimator checks everything)."""

    @staticmethod
    def reading(m):
        m.__dict__.pop("exact_for", None)
        return m


@pytest.mark.parametrize("coupling", [0, 4])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_hl_is_the_same_bit_for_bit_with_and_without_the_promise(batch, coupling):
    board, _, _, loss = board_and_data(coupling, batch)
    plain = WithoutPromise(board)
    rng = np.random.default_rng(3)
    minus_seen = 0
    for _ in range(12):
        x, t = rng.uniform(0, 1, (batch, 6)), rng.integers(0, 3, batch)
        for delta_v in (1e-3, 0.05):
            a = estimate("hl", board, x, t, loss, {"delta_v": delta_v})
            b = estimate("hl", plain, x, t, loss, {"delta_v": delta_v})
            assert np.array_equal(a.grad, b.grad) and np.array_equal(a.loss, b.loss)
            assert np.array_equal(a.source_grad, b.source_grad)
            assert {k: v for k, v in a.stats.items() if k != "valid"} == \
                {k: v for k, v in b.stats.items() if k != "valid"}
            minus_seen += a.stats["mirror_measured"] > 0
    assert minus_seen  # the − phase (rows of held samples) was exercised too


class NotesInPlace(Wrapped):
    """A wrapper that adds its bias note to the board's ``info`` in place (no attribute assigned)."""

    @staticmethod
    def reading(m):
        m.info["varying_conductances"] = "devices drift between board calls"
        return m


def test_a_note_written_into_info_is_still_reported():
    board, x, t, loss = board_and_data()
    res = estimate("hl", NotesInPlace(board), x, t, loss, {"delta_v": 1e-3})
    assert res.op.exact_for is board.topology  # (the arrays are still as vouched for)
    assert res.stats["may_be_biased"] and res.stats["bias_note"] == "devices drift between board calls"


@dataclasses.dataclass
class Reading:
    """A board's own measurement type with the fields of :class:`hil.board.Measurement` only."""

    u: np.ndarray
    w: np.ndarray
    y: np.ndarray
    i_src: np.ndarray
    e: np.ndarray
    on: np.ndarray = None
    piecewise_linear: bool = False
    valid: np.ndarray = None
    noise_v: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)


class OwnMeasurementType(Wrapped):
    @staticmethod
    def reading(m):
        return Reading(m.u, m.w, m.y, m.i_src, m.e, m.on, m.piecewise_linear, m.valid, m.noise_v, dict(m.info))


def test_a_board_with_its_own_measurement_type_is_measured_as_before():
    board, x, t, loss = board_and_data()
    res = estimate("hl", OwnMeasurementType(board), x, t, loss, {"delta_v": 1e-3})
    assert np.array_equal(res.grad, estimate("hl", board, x, t, loss, {"delta_v": 1e-3}).grad)
