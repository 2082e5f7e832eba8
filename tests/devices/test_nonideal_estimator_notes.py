"""What the estimators say on a non-ideal board: conductances that change between board calls (read
noise, drift), finite differences through imperfect programming (levels, spread), and boards whose
``program`` returns a :class:`ProgramResult`."""

import numpy as np
import pytest

from hil.board import ProgramResult
from hil.boards.nonideal import NonIdealBoard
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.devices.model import parse_devices
from hil.train.estimators import estimate
from hil.train.losses import Loss


def setup(devices, seed=7):
    c = random_circuit(6, 3, 4, seed=seed, coupling_degree=2, g_range=(1e-5, 1e-4))
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-2, 2, (4, 3)), rng.integers(0, 2, 4)
    return c, NonIdealBoard(c, 1e-8, 1e-4, parse_devices(devices)), x, t, Loss("cross_entropy", 1e4,
                                                                               c.differential_matrix())


@pytest.mark.parametrize("devices, why", [({"read_noise": {"read_noise_scale": 0.001}}, "read noise 0.001"),
                                          ({"drift": {"drift_nu_mean": 0.05, "seconds_per_measure": 1.0}}, "drift")])
@pytest.mark.parametrize("est", ["hl", "ep", "hl-exact"])
def test_conductances_changing_between_calls_are_named(devices, why, est):
    c, board, x, t, loss = setup(devices)
    r = estimate(est, board, x, t, loss, {"delta_v": 1e-3} if est != "hl-exact" else {})
    assert r.stats["may_be_biased"]
    assert "change from one board call to the next" in r.stats["bias_note"] and why in r.stats["bias_note"]


def test_a_static_board_adds_no_such_note():
    c, board, x, t, loss = setup({"dtod": {"g_dtod_std": 0.05}})
    r = estimate("ep", board, x, t, loss, {"delta_v": 1e-3})
    assert not r.stats["may_be_biased"], r.stats["bias_note"]


def test_fd_names_steps_below_one_level():
    c, board, x, t, loss = setup({"levels": {"n_levels": 16}})
    r = estimate("fd", board, x, t, loss)
    assert r.stats["unresponsive"] > 0 and "exactly unchanged" in r.stats["bias_note"]
    exact = SimulatedBoard(c.with_conductances(board.true_conductances()))
    assert np.all(np.isfinite(r.grad))
    assert estimate("fd", exact, x, t, loss).stats["unresponsive"] == 0


def test_fd_says_when_the_board_does_not_hold_what_it_reads_back():
    c, board, x, t, loss = setup({"dtod": {"g_dtod_std": 0.1}})
    r = estimate("fd", board, x, t, loss)
    assert r.stats["board_moved_rel"] > 1e-3 and "programming is not exact" in r.stats["bias_note"]
    # the operating point and the steps see one board: no diode flips made up by the first rewrite
    assert r.stats["unresolved_flips"] == 0
    assert estimate("fd", SimulatedBoard(c), x, t, loss).stats["board_moved_rel"] == 0.0


def test_fd_on_a_board_that_redraws_its_devices_names_the_redraw_not_flips():
    """With devices.redraw: write every finite-difference step measures a new board instance: the note
    says so (it used to report every conductance as a diode flip within the smallest step), and no step
    is retried smaller (four programming events per step for nothing)."""
    devices = {"dtod": {"g_dtod_std": 0.05}, "diode_spread": {"v_ref_dtod": 0.02}}
    c, board, x, t, loss = setup({**devices, "redraw": "write"})
    programs = []
    original = board.program
    board.program = lambda g, rel_tol=0.01: programs.append(1) or original(g, rel_tol)
    r = estimate("fd", board, x, t, loss)
    note = r.stats["bias_note"]
    assert "new devices at every programming event" in note and "every step measures another board" in note
    assert "flipped within the smallest step" not in note
    m = board.topology.n_conductances
    assert len(programs) == 2 * m + 2  # the base, one pair of steps per conductance, the restore
    _, static, *_ = setup(devices)
    r = estimate("fd", static, x, t, loss)
    assert "new devices" not in r.stats["bias_note"]


class VerifiedBoard:
    """A simulated board whose ``program`` returns a ProgramResult (as a bench's write-verify does)."""

    def __init__(self, board):
        self._b = board

    def __getattr__(self, name):
        return getattr(self._b, name)

    def program(self, g, rel_tol=0.01):
        got = self._b.program(g, rel_tol)
        return ProgramResult.exact(np.asarray(g, float), np.asarray(got, float))


def test_fd_accepts_a_program_result():
    c, _, x, t, loss = setup({})
    ref = estimate("fd", SimulatedBoard(c), x, t, loss).grad
    got = estimate("fd", VerifiedBoard(SimulatedBoard(c)), x, t, loss).grad
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
