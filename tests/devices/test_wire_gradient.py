"""Gradients on a board with crossbar wires: the device gradient against central finite
differences, the line-terminal product's bias, and the estimators saying so."""

from __future__ import annotations

import numpy as np
import pytest

from hil.api import named_conductances
from hil.boards.nonideal import NonIdealBoard
from hil.circuit.generate import random_circuit
from hil.circuit.wire_bias import device_gradient, device_voltages, ir_drop_estimate
from hil.circuit.wires import WireSpec
from hil.devices import parse_devices
from hil.train.estimators import ep_gradient, fd_gradient, hl_exact_gradient, hl_gradient
from hil.train.losses import Loss

LOSS = Loss("cross_entropy", 1e4, np.zeros((0, 0)))


def _board(r_wire: float | None):
    c = random_circuit(6, n_inputs=5, n_outputs=4, seed=1, coupling_degree=0, g_range=(1e-5, 1e-4),
                       diode="ideal", g_leak_s=1e-6)
    devices = {"preset": "ideal"}
    if r_wire is not None:
        devices["wires"] = {"r_wire_row": r_wire, "r_wire_col": r_wire}
    return NonIdealBoard(c, 1e-8, 1e-4, parse_devices(devices))


def _batch():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (8, 5)), rng.integers(0, 4, 8)


def _exact(board, spec, x, t):
    op = board.measure(x)
    w_hat = -LOSS.value_and_grad(op.y, t)[1]
    e_hat, _ = board.linearized_response(x, w_hat)
    g = named_conductances(board)
    return device_gradient(g["g_in"], g["g_out"], spec, op.u, op.e, op.w, e_hat, w_hat)


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_device_gradient_matches_central_differences_and_the_terminal_product_does_not():
    r = 300.0  # Ω per segment: IR drops of tens of % on this small board
    board, (x, t) = _board(r), _batch()
    fd = named_conductances(board, fd_gradient(board, x, t, LOSS).grad)
    exact = _exact(board, WireSpec(r, r), x, t)
    terminal = named_conductances(board, hl_exact_gradient(board, x, t, LOSS).grad)
    for k in ("g_in", "g_out"):
        assert _rel(exact[k], fd[k]) < 1e-6
        assert _rel(terminal[k], fd[k]) > 0.1  # v·v̂ at the line terminals is not the device gradient


def test_terminal_product_error_is_of_the_order_of_the_reported_ir_drop():
    r = 3.0  # Ω: about 1 % drops
    board, (x, t) = _board(r), _batch()
    exact = _exact(board, WireSpec(r, r), x, t)
    res = hl_exact_gradient(board, x, t, LOSS)
    drop = res.op.info["wire_ir_drop"]
    assert 1e-3 < drop < 0.05
    terminal = named_conductances(board, res.grad)
    for k in ("g_in", "g_out"):
        assert _rel(terminal[k], exact[k]) < 3 * drop


@pytest.mark.parametrize("estimator", [hl_gradient, hl_exact_gradient, ep_gradient])
def test_terminal_estimators_flag_wire_bias(estimator):
    x, t = _batch()
    wired = estimator(_board(30.0), x, t, LOSS).stats
    assert wired["may_be_biased"] and "wires" in wired["bias_note"] and "%" in wired["bias_note"]
    plain = estimator(_board(None), x, t, LOSS).stats
    assert not plain["bias_note"] or "wires" not in plain["bias_note"]


def test_finite_differences_do_not_flag_wires():
    x, t = _batch()
    st = fd_gradient(_board(30.0), x, t, LOSS).stats
    assert not st.get("bias_note") or "wires" not in st["bias_note"]


def test_ir_drop_estimate_matches_one_line_to_first_order():
    """One row line of 8 devices fed at column 0, every column at 0 V: the drop at the far
    end from the full nodal solve agrees with the first-order estimate when it is small."""
    g = np.full((1, 8), 1e-4)
    spec = WireSpec(r_wire_row=0.5, r_wire_col=0.5)
    v = device_voltages(g, spec, np.r_[1.0, np.zeros(8)][None, :])[0, 0]
    drop = 1.0 - v.min()
    est = ir_drop_estimate(g, spec)
    assert est == pytest.approx(0.5 * 1e-4 * sum(range(8)))
    assert drop == pytest.approx(est, rel=2 * est)  # second-order terms: O(est²)
    assert np.all(np.diff(v) < 0)  # the drop grows along the line
