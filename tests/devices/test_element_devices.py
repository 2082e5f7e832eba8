"""Diode spread and temperature reach the registry elements (clip, antiparallel, leaky,
antiparallel_shockley): before, ``board.devices.diode_spread`` and ``temperature`` left those boards
exactly nominal without a word."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.laws import with_element
from hil.devices import parse_devices

X = np.random.default_rng(0).uniform(-2, 2, (6, 3))
SPREAD = {"diode_spread": {"v_ref_dtod": 0.1, "i_s_dtod": 0.5, "n_dtod": 0.05, "r_s_dtod": 0.2}}


def _base():
    return random_circuit(6, 3, 4, seed=1, coupling_degree=2, g_range=(1e-5, 1e-4))


def _spread_board(element):
    c = with_element(_base(), element)
    b = NonIdealBoard(c, 1e-8, 1e-3, parse_devices(SPREAD))
    return c, b, b.model.diode_xi, 0.1


@pytest.mark.parametrize("element, expected", [
    ({"model": "clip", "v_lo": 0.0, "v_hi": 0.3},
     lambda xi, s: {"model": "clip", "v_lo": list(-np.abs(s * xi[3])), "v_hi": list(0.3 + np.abs(s * xi[0]))}),
    ({"model": "leaky", "r_s": 2e4},
     lambda xi, s: {"model": "leaky", "v_ref": list(-np.abs(s * xi[3])), "r_s": list(2e4 * (1 + 0.2 * xi[2]))}),
])
def test_spread_widens_clamps_and_shifts_kinks(element, expected):
    c, board, xi, s = _spread_board(element)
    want = SimulatedBoard(with_element(_base(), expected(xi, s))).measure(X).e
    got = board.measure(X).e
    assert np.abs(got - SimulatedBoard(c).measure(X).e).max() > 1e-3  # the spread is seen
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_antiparallel_window_is_widened_on_both_sides():
    c, board, xi, s = _spread_board({"model": "antiparallel", "v_b": 0.2})
    el = board.true_diodes().element
    np.testing.assert_allclose(el.v_lo, -0.2 - np.abs(s * xi[3]))
    np.testing.assert_allclose(el.v_hi, 0.2 + np.abs(s * xi[0]))


def test_antiparallel_shockley_follows_temperature_and_i_s_spread():
    el = {"model": "antiparallel_shockley"}
    hot = NonIdealBoard(with_element(_base(), el), 1e-8, 1e-3, parse_devices({"temperature": {"temperature_c": 80.0}}))
    ref = SimulatedBoard(with_element(_base(), {**el, "temperature_c": 80.0})).measure(X).e
    np.testing.assert_allclose(hot.measure(X).e, ref, rtol=0, atol=1e-12)
    assert np.abs(ref - SimulatedBoard(with_element(_base(), el)).measure(X).e).max() > 1e-3
    c, board, xi, _ = _spread_board(el)
    bank = board.true_diodes().element.bank
    np.testing.assert_allclose(bank.i_s / c.diodes.element.bank.i_s, np.exp(0.5 * xi[0]))


def test_pot_series_resistance_without_its_span_is_a_config_error():
    from hil.config import ConfigError

    with pytest.raises(ConfigError, match="board.devices.levels.r_ab"):
        parse_devices({"levels": {"n_levels": 129, "level_map": "linear_r", "r_series": 50.0}})
    parse_devices({"levels": {"n_levels": 129, "level_map": "linear_r", "r_series": 50.0, "r_ab": 1e5}})
