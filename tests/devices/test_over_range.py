"""Readings at full scale on the non-ideal board: the sample is marked invalid (as an instrument's
overflow reading would be), estimators leave it out, and calibration refuses or skips such readings
instead of fitting the range as if it were the signal."""

import numpy as np
import pytest

from hil.boards.nonideal import NonIdealBoard
from hil.calibrate.conductances import estimate_conductances
from hil.calibrate.diodes import fit_diodes
from hil.calibrate.offsets import zero_readings
from hil.circuit.generate import random_circuit
from hil.devices import parse_devices
from hil.train.estimators import estimate
from hil.train.losses import Loss


def _board(devices, diode="ideal", n=8, inputs=8):
    c = random_circuit(n, n_inputs=inputs, n_outputs=4, seed=0, coupling_degree=0, g_range=(1e-5, 1e-4),
                       diode=diode, g_leak_s=1e-6)
    return NonIdealBoard(c, 1e-8, 1e-4, parse_devices(devices))


def test_port_current_at_full_scale_marks_the_sample_invalid_and_hl_leaves_it_out():
    b = _board({"adc_current": {"adc_bits": 16, "adc_range": 2e-5}})
    x = np.random.default_rng(0).uniform(-1, 1, (16, b.topology.n_inputs))
    m = b.measure(x)
    over = np.any(np.abs(m.y) >= 2e-5 * (1 - 1e-4), axis=1)
    assert 0 < over.sum() < len(x)
    np.testing.assert_array_equal(m.valid, ~over)
    t = np.zeros(len(x), int)
    r = estimate("hl", b, x, t, Loss("cross_entropy", 1e5, b._nominal.differential_matrix()), {"delta_v": 1e-3})
    assert r.stats["invalid_samples"] >= over.sum() and r.stats["may_be_biased"]


def test_conductance_read_out_refuses_currents_beyond_the_range():
    b = _board({"adc_current": {"adc_bits": 16, "adc_range": 2e-4}})
    off = zero_readings(b)
    with pytest.raises(RuntimeError, match="conductance read-out: .* over a channel's range.*amplitude_v \\(now 0.5 V\\)"):
        estimate_conductances(b, off, 0.5, 2)
    est = estimate_conductances(b, off, 0.05, 2)  # small probes stay inside the range
    sl = b.topology.groups["g_in"]
    assert np.max(np.abs(est.g[sl] / b.true_conductances()[sl] - 1)) < 0.1


def test_diode_sweep_skips_steps_whose_node_voltages_sit_at_full_scale():
    devices = {"adc_voltage": {"adc_bits": 16, "adc_range": 0.6}}  # the sweep drives the diodes to about 0.7 V
    b = _board(devices, diode="shockley")
    off = zero_readings(b)
    est = estimate_conductances(b, off, 0.05, 4)
    fit = fit_diodes(b, est.g, off)
    d = b.true_diodes()
    assert np.all(np.abs(fit.voltages_v) < 0.6 - 2 * 1.2 / 65535)  # the steps read at full scale were left out
    assert np.nanmax(np.abs(fit.i_s / d.i_s - 1)) <= 0.05 and np.nanmax(np.abs(fit.n / d.n - 1)) <= 0.01


def test_port_currents_at_full_scale_in_perturbation_phases_leave_the_sample_valid_and_read_nan():
    """With port voltages given (the ± phases of hl, the nudges of ep) an estimator reads the node
    voltages only: a port-current reading at full scale leaves the sample valid, and the reading is
    NaN instead of the range, so nothing can take the range for the signal."""
    b = _board({"adc_current": {"adc_bits": 16, "adc_range": 2e-5}})
    x = np.random.default_rng(0).uniform(-1, 1, (16, b.topology.n_inputs))
    op = b.measure(x)
    w = op.w + 0.5 * np.sign(np.random.default_rng(1).normal(size=op.w.shape))  # drives the port currents over range
    m = b.measure(x, w)
    over = m.info["over_range"]["y"]
    assert over.any()
    assert m.valid is None or m.valid[over].all()
    assert np.isnan(m.y[over]).all() and np.isfinite(m.y[~over]).all() and np.isfinite(m.e).all()
