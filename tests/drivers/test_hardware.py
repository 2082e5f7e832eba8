"""Driver tests against real instruments; skipped unless the resource is given.

    pytest tests/drivers/test_hardware.py --resource smu2450=TCPIP::10.0.0.5::5025::SOCKET \
                                          --resource smu2600=TCPIP::10.0.0.6::5025::SOCKET

Levels stay within ±50 mV and the current limit at 10 µA, so an open or resistive fixture is
safe. Teardown (conftest ``open_instrument``) shuts down and asserts an empty error queue and
every output off, also after a failure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig

LIMITS = SourceLimits(v_min=-0.05, v_max=0.05, i_compliance_a=1e-5, max_step_v=0.01, max_slew_v_per_s=1.0)
CFG = SmuChannelConfig(limits=LIMITS, nplc=1.0, current_range_a=1e-5, autozero="once", source_delay_s=0.001)

SMUS = [
    pytest.param("smu2450", "keithley2450", "", marks=pytest.mark.hardware("smu2450"), id="2450"),
    pytest.param("smu2600", "keithley2600", "a", marks=pytest.mark.hardware("smu2600"), id="2600B"),
]


@pytest.mark.parametrize("resource,driver,ch", SMUS)
def test_connect_snapshot_clean_queue(open_instrument, resource, driver, ch):
    smu = open_instrument(resource, driver, configs={ch: CFG})
    snap = smu.snapshot()
    assert snap["identity"]["serial"]
    assert snap["line_frequency_hz"] in (50.0, 60.0)
    assert smu.drain_errors() == []
    assert smu.output_enabled(ch) is False


@pytest.mark.parametrize("resource,driver,ch", SMUS)
def test_output_cycle_ramp_and_spot_reading(open_instrument, resource, driver, ch):
    smu = open_instrument(resource, driver, configs={ch: CFG})
    smu.set_voltage(ch, 0.0)
    smu.output(ch, True)
    assert smu.output_enabled(ch) is True
    smu.set_voltage(ch, 0.03)  # three ramp steps
    assert smu.voltage_setpoint(ch) == pytest.approx(0.03, abs=1e-6)
    reading = smu.measure_current(ch)
    assert math.isfinite(reading.value) or reading.compliance
    assert reading.source_value == pytest.approx(0.03, abs=1e-3)
    smu.set_voltage(ch, 0.0)
    smu.output(ch, False)
    smu.check_errors()


@pytest.mark.parametrize("resource,driver,ch", SMUS)
def test_small_list_sweep(open_instrument, resource, driver, ch):
    smu = open_instrument(resource, driver, configs={ch: CFG})
    smu.set_voltage(ch, 0.0)
    smu.output(ch, True)
    levels = [0.005, 0.01, 0.005, 0.0]
    result = smu.list_sweep({ch: levels}, settle_s=0.01)
    assert result.i_meas.shape == (4, 1)
    np.testing.assert_allclose(result.v_source[:, 0], levels, atol=1e-3)
    assert smu.voltage_setpoint(ch) == pytest.approx(0.0, abs=1e-6)
    smu.output(ch, False)
