"""Device non-ideality families and the non-ideal simulated board."""

from __future__ import annotations

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.solve import EquilibriumSolver
from hil.config import ConfigError
from hil.devices import PRESETS, parse_devices
from hil.devices.faults import OPEN, STUCK_OFF, STUCK_ON
from hil.devices.levels import Levels

G_MIN, G_MAX = 1e-7, 1e-4


def _board(devices: dict, seed: int = 0, n: int = 6):
    c = random_circuit(n, n_inputs=4, n_outputs=2, seed=seed, coupling_degree=0, g_range=(1e-6, 1e-4))
    return c, NonIdealBoard(c, G_MIN, G_MAX, parse_devices(devices))


def test_presets_parse_and_ideal_preset_is_ideal():
    for name in PRESETS:
        spec = parse_devices({"preset": name})
        assert spec.is_ideal == (name == "ideal")
    with pytest.raises(ConfigError, match=r"board.devices.faults.p_stuck_on: must be >= 0"):
        parse_devices({"faults": {"p_stuck_on": -0.1}})
    with pytest.raises(ConfigError, match=r"board.devices.wires.r_wire_rows: unknown key"):
        parse_devices({"wires": {"r_wire_rows": 1.0}})


def test_ideal_families_reproduce_the_ideal_board():
    c, b = _board({"dtod": {"enabled": False}})
    ref = SimulatedBoard(c, G_MIN, G_MAX)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 4))
    np.testing.assert_allclose(b.measure(x).y, ref.measure(x).y, rtol=1e-12, atol=0)


def test_quantised_levels_linear_g_and_digital_pot():
    g = np.array([1.2e-7, 5.04e-5, 9.99e-5, 2e-4])
    lg = Levels(enabled=True, n_levels=11).quantise(g, 0.0, 1e-4)
    np.testing.assert_allclose(lg, [0.0, 5e-5, 1e-4, 1e-4])
    pot = Levels(enabled=True, n_levels=257, level_map="linear_r", r_series=1e3, r_wiper=50.0, r_ab=1e5)
    q = pot.quantise(np.array([1e-5, 1e-4]), 1e-8, 1e-3)
    taps = (1.0 / q - 1050.0) / 1e5 * 256
    np.testing.assert_allclose(taps, np.round(taps), atol=1e-9)


def test_static_draws_are_seeded_and_independent_per_family():
    _, a = _board({"seed": 3, "dtod": {"g_dtod_std": 0.1}, "faults": {"p_stuck_on": 0.2}})
    _, b = _board({"seed": 3, "dtod": {"g_dtod_std": 0.1}})
    _, c = _board({"seed": 4, "dtod": {"g_dtod_std": 0.1}})
    np.testing.assert_array_equal(a.model.dtod_factor, b.model.dtod_factor)  # faults on/off: same spread
    assert not np.array_equal(a.model.dtod_factor, c.model.dtod_factor)


def test_programming_noise_is_dynamic_and_state_dependent():
    _, b = _board({"prog_noise": {"prog_noise_model": "proportional", "prog_noise_scale": 0.05}}, n=40)
    m = b.topology.n_conductances
    target = np.full(m, 5e-5)
    b.program(target)
    first = b.true_conductances()
    rel = first / target - 1
    assert 0.03 < rel.std() < 0.07
    b.program(target)  # unchanged targets are not re-written
    np.testing.assert_array_equal(b.true_conductances(), first)
    b.program(target * 1.0001)
    assert not np.array_equal(b.true_conductances(), first)


def test_faults_ignore_programming():
    _, b = _board({"faults": {"p_stuck_on": 0.1, "p_stuck_off": 0.1, "p_open": 0.1}}, n=40)
    codes = b.model.fault_codes
    b.program(np.full(codes.size, 3e-5))
    g = b.true_conductances()
    assert np.all(g[codes == STUCK_ON] == G_MAX) and np.all(g[codes == STUCK_OFF] == G_MIN)
    assert np.all(g[codes == OPEN] == 0.0) and np.all(g[codes == 0] == 3e-5)
    assert 0.05 < np.mean(codes == STUCK_ON) < 0.15


def test_drift_power_law():
    _, b = _board({"drift": {"drift_nu_mean": 0.05, "drift_nu_std": 0.0, "t0": 10.0}})
    g0 = b.true_conductances()
    b.elapse(990.0)
    seen = b.model.seen(g0, b.clock_s - b._t_prog, read=False)
    np.testing.assert_allclose(seen, g0 * (1000.0 / 10.0) ** -0.05, rtol=1e-12)


def test_noisy_conductances_enter_the_equilibrium():
    """Read noise changes the solved node voltages consistently with KCL, not only the outputs."""
    c, b = _board({"read_noise": {"read_noise_model": "proportional", "read_noise_scale": 0.05}})
    x = np.random.default_rng(1).uniform(0, 1, (3, 4))
    m1, m2 = b.measure(x), b.measure(x)
    assert np.max(np.abs(m1.e - m2.e)) > 1e-6  # the hidden voltages move, too
    # each measurement is an exact equilibrium of some conductance state: zero at u = 0
    z = b.measure_sources(np.zeros((1, b.topology.n_sources)))
    np.testing.assert_array_equal(z.e, 0.0)
    np.testing.assert_array_equal(z.y, 0.0)


def test_diode_spread_shifts_the_clamp_level():
    c, b = _board({"diode_spread": {"v_ref_dtod": 0.05}})
    v_ref = b.true_diodes().v_ref
    assert np.std(v_ref) > 0.01
    st = EquilibriumSolver(c.with_diodes(b.true_diodes())).solve(c.source_voltages(-np.ones((1, 4))))
    np.testing.assert_allclose(b.measure(-np.ones((1, 4))).e, st.e, atol=1e-12)


def test_reading_chain_offsets_gain_and_quantisation():
    _, b = _board({"adc_current": {"adc_offset_std": 1e-7, "adc_bits": 12, "adc_range": 1e-3}})
    z = b.measure_sources(np.zeros((4, b.topology.n_sources)))
    # with every source (rails included) at 0 V the network carries no current: the readings are the (quantised) offsets
    step = 2e-3 / (2 ** 12 - 1)
    np.testing.assert_allclose(z.y[0], np.round(b.model.adc_y_static[1] / step) * step, atol=1e-18)


def test_board_state_round_trip_is_bit_exact():
    devices = {"preset": "rram-crossbar", "wires": {"enabled": False}}
    _, a = _board(devices)
    x = np.random.default_rng(2).uniform(0, 1, (4, 4))
    a.program(a.read_conductances() * 1.1)
    a.measure(x)
    state = a.state_dict()
    ya = [a.measure(x).y for _ in range(2)]
    _, b = _board(devices)
    b.load_state_dict(state)
    yb = [b.measure(x).y for _ in range(2)]
    for p, q in zip(ya, yb):
        np.testing.assert_array_equal(p, q)


def test_hl_matches_hl_exact_on_a_wired_spread_board():
    """The physical perturbation gradient and the exact adjoint agree on the non-ideal circuit."""
    from hil.train.estimators import hl_exact_gradient, hl_gradient
    from hil.train.losses import Loss

    c = random_circuit(8, n_inputs=4, n_outputs=4, seed=0, coupling_degree=1, g_range=(1e-6, 1e-4))
    b = NonIdealBoard(c, G_MIN, G_MAX, parse_devices({
        "wires": {"r_wire_row": 2.0, "r_wire_col": 2.0}, "diode_spread": {"v_ref_dtod": 0.05},
        "dtod": {"g_dtod_std": 0.1}, "faults": {"p_stuck_on": 0.1}}))
    x = np.random.default_rng(3).uniform(-1, 1, (6, 4))
    loss = Loss("cross_entropy", 1e5, b.topology.differential)
    t = np.array([0, 1, 0, 1, 1, 0])
    a = hl_gradient(b, x, t, loss, delta_v=1e-3)
    e = hl_exact_gradient(b, x, t, loss)
    assert a.stats["flipped_samples"] == 0
    np.testing.assert_allclose(a.grad, e.grad, rtol=0, atol=1e-9 * np.max(np.abs(e.grad)))
