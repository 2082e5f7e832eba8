"""A hidden node programmed to have no conductance at all, on registry elements (leaky, clip,
antiparallel, linear, none): the solve is refused with its cause, as for ideal diodes, unless the
element itself fixes the node (linear with g_lin > 0: e = 0).  Before, the piecewise solver died with
numpy's ``LinAlgError: Singular matrix`` (and linear g_lin > 0 failed although its answer is unique)."""

import numpy as np
import pytest

import hil.api as api
from hil.boards.simulated import SimulatedBoard
from hil.circuit.report import SolveError


def floating_h0(element, coupled):
    c = {"name": "f", "seed": 1, "inputs": {"count": 3, "inverted": True},
         "hidden": {"count": 5, "element": element}, "outputs": {"count": 2},
         "conductances": {"g_in": {"uniform": [1e-6, 1e-4]}, "g_out": {"uniform": [1e-6, 1e-4]},
                          "g_hh": {"pairs": [[1, 2, 1e-5], [2, 3, 2e-5]]} if coupled else "none"}}
    board = SimulatedBoard(api.build_circuit({"circuit": c}), g_min=0.0, g_max=1e-3)
    g = board.read_conductances()
    g[[k for k, nm in enumerate(board.topology.edge_names) if nm.startswith("R_h0_")]] = 0.0
    board.program(g, rel_tol=0.0)
    return board


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("element", [{"model": "leaky", "r_s": 1e4}, {"model": "clip", "v_lo": 0.0, "v_hi": 0.2},
                                     {"model": "antiparallel", "v_b": 0.1}, {"model": "linear", "g_lin": 0.0},
                                     {"model": "none"}])
def test_a_floating_node_is_refused_with_its_cause(element, coupled):
    board = floating_h0(element, coupled)
    with pytest.raises(SolveError, match=r"(singular|non-finite node voltages).*floats and has no unique equilibrium"):
        api.measure(board, [[0.3, 0.1, -0.2]])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("coupled", [False, True])
def test_a_node_held_by_its_linear_element_alone_solves(coupled):
    board = floating_h0({"model": "linear", "g_lin": 1e-5}, coupled)
    m = api.measure(board, [[0.3, 0.1, -0.2], [-0.5, 0.2, 0.4]])
    assert m.info["report"].converged and np.all(m.e[:, 0] == 0.0) and np.all(np.isfinite(m.e))
    loss = api.make_loss(None, board, gain_per_a=1e4)
    r = api.gradient(board, [[0.3, 0.1, -0.2]], [0], loss, estimator="hl-exact")
    assert np.all(np.isfinite(r.grad)) and not r.stats["may_be_biased"]


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_mon_view_refuses_a_resistance_that_is_not_finite_and_positive(alpha):
    from hil.circuit.mon import mon_view

    with pytest.raises(ValueError, match=r"alpha_ohm must be a finite resistance > 0 \(ohm\)"):
        mon_view(api.build_circuit("sim-xor"), alpha)


@pytest.mark.parametrize("element, accepted", [({"model": "linear", "g_lin": 1e-5}, True),
                                               ({"model": "antiparallel_shockley"}, True),
                                               ({"model": "linear", "g_lin": 0.0}, False),
                                               ({"model": "leaky", "r_s": 1e3}, False), ({"model": "ideal"}, False)])
def test_a_node_tied_only_by_its_element_is_floating_only_when_the_element_can_carry_no_current(element, accepted):
    # validation used to refuse a node held by a linear element (or a Shockley pair) alone as floating, although
    # its equilibrium is unique and the solver finds it
    c = {"circuit": {"inputs": {"count": 2}, "hidden": {"count": 2, "element": element}, "outputs": {"count": 2},
                     "conductances": {"g_in": [[0.0, 0.0], [1e-5, 1e-5]], "g_out": [[0.0, 1e-5], [0.0, 1e-5]],
                                      "g_leak": 0.0}}}
    if accepted:
        m = api.measure(SimulatedBoard(api.build_circuit(c)), [[0.3, -0.1]])
        assert m.info["report"].converged and m.e[0, 0] == 0.0
    else:
        with pytest.raises(api.ConfigError, match=r"floating node\(s\) h0"):
            api.build_circuit(c)
