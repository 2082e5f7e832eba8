"""``hl-exact`` on registry elements (leaky, clip, antiparallel, …) says when a node sits exactly on a
kink of its element's law, as it does for ideal diodes: the loss is not differentiable there and the
frozen state gives one one-sided derivative, so the answer must not be reported as exact."""

import numpy as np
import pytest

import hil.api as hil
from hil.boards.simulated import SimulatedBoard
from hil.circuit.element_solve import at_kinks
from hil.circuit.laws.base import PiecewiseLaw


def board_of(element, rails=True):
    c = {"name": "k", "seed": 2, "inputs": {"count": 3, "inverted": True,
                                            **({"rails": {"vp": 1.0, "vn": -1.0}} if rails else {})},
         "hidden": {"count": 6, "element": element},
         "outputs": {"count": 4, "differential": True},
         "conductances": {"g_in": {"uniform": [1e-6, 1e-4]}, "g_leak": 1e-7, "g_out": {"uniform": [1e-6, 1e-4]},
                          "g_hh": {"random": {"degree": 2, "low": 1e-6, "high": 5e-5}}}}
    board = SimulatedBoard(hil.build_circuit({"circuit": c}), g_min=0.0, g_max=1e-3)
    return board, hil.make_loss(None, board, gain_per_a=2e4)


@pytest.mark.parametrize("element", [{"model": "leaky", "r_s": 2e4}, {"model": "clip", "v_lo": 0.0, "v_hi": 0.2},
                                     {"model": "leaky", "r_s": 2e4, "v_ref": 0.0, "orientation": -1}])
def test_hl_exact_names_element_nodes_at_their_kink(element):
    board, loss = board_of(element, rails=False)
    # no rails and zero inputs: every node sits at 0 V carrying 0 A, on the element's kink
    r = hil.gradient(board, np.zeros((2, 3)), [0, 1], loss, estimator="hl-exact")
    assert r.stats["may_be_biased"] and "exactly at their kink" in r.stats["bias_note"]
    assert board.measure(np.zeros((2, 3))).info["report"].degenerate == 12


@pytest.mark.parametrize("element", [{"model": "leaky", "r_s": 2e4}, {"model": "clip", "v_lo": 0.0, "v_hi": 0.2},
                                     {"model": "antiparallel", "v_b": 0.15}, {"model": "linear", "g_lin": 1e-5}])
def test_hl_exact_away_from_kinks_is_not_flagged(element):
    board, loss = board_of(element)
    x = np.random.default_rng(1).uniform(-1, 1, (5, 3))
    r = hil.gradient(board, x, [0, 1, 0, 1, 1], loss, estimator="hl-exact")
    assert not r.stats["may_be_biased"], r.stats["bias_note"]


def test_at_kinks_counts_breakpoints_and_touching_clamps_only():
    # one node: clamp at 0 V, slope 1e-3 S on [0, 0.5], slope 1e-4 S above (kink at 0.5 V)
    law = PiecewiseLaw(lo=np.array([0.0]), hi=np.array([np.inf]), kinks=np.array([[0.5]]),
                       slopes=np.array([[1e-3, 1e-4]]), intercepts=np.array([[0.0, 4.5e-4]]))
    e = np.array([[0.5], [0.0], [0.0], [0.3]])
    lam = np.array([[5e-4], [0.0], [-1e-4], [3e-4]])  # at the kink; clamp touching; clamp carrying; free
    assert at_kinks(law, e, lam, 1.0, 1e-3) == 2


def test_hl_exact_on_a_cascade_names_nodes_at_their_kink_in_any_stage():
    # a cascade reports one solve report per stage (info["stages"]); hl-exact used to read only a
    # top-level report, so 14 nodes on their kinks went unreported
    def stage(seed, n_in, n, q, element):
        return {"name": f"s{seed}", "seed": seed, "inputs": {"count": n_in, "inverted": True},
                "hidden": {"count": n, "element": element}, "outputs": {"count": q, "differential": q > 1},
                "conductances": {"g_in": {"uniform": [1e-6, 1e-4]}, "g_leak": 1e-7, "g_out": {"uniform": [1e-6, 1e-4]}}}

    cfg = {"name": "k", "board": {"backend": "simulated", "g_min": 0.0, "g_max": 1e-3, "stages": [
        {"circuit": stage(0, 2, 4, 1, {"model": "ideal"})},
        {"buffer_gain": 2.0, "circuit": stage(1, 4, 3, 4, {"model": "leaky", "r_s": 1e4})}]},
        "data": {"name": "xor"}, "train": {}}
    board = hil.build_board(cfg)
    loss = hil.make_loss(None, board, gain_per_a=1e4)
    r = hil.gradient(board, np.zeros((2, 2)), [0, 1], loss, estimator="hl-exact")
    assert r.stats["may_be_biased"] and r.stats["bias_note"].startswith("14 diode(s) exactly at their kink")
    away = hil.gradient(board, [[0.4, -0.3], [0.7, 0.2]], [0, 1], loss, estimator="hl-exact")
    assert not away.stats["may_be_biased"], away.stats["bias_note"]
