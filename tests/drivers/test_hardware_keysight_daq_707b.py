"""Hardware tests for the B2900, DAQ970A and 707B drivers (skipped unless the resource is given).

    pytest tests/drivers/test_hardware_keysight_daq_707b.py \
        --resource b2900=TCPIP::<ip>::5025::SOCKET --resource daq=TCPIP::<ip>::5025::SOCKET \
        --resource matrix=TCPIP::<ip>::5025::SOCKET

The ``open_instrument`` fixture runs ``safe_shutdown()`` at teardown and asserts an empty error
queue, every output off and no closed relays. Nothing here drives more than 0 V into the bench.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig

CFG = SmuChannelConfig(limits=SourceLimits(v_min=-0.1, v_max=0.1, i_compliance_a=1e-4, max_step_v=0.01,
                                           max_slew_v_per_s=1.0),
                       nplc=1.0, current_range_a=1e-4, autozero="off", source_delay_s=0.001)


@pytest.mark.hardware("b2900")
def test_b2900_zero_volt_reading_and_sweep(open_instrument):
    smu = open_instrument("b2900", "keysight_b2900", configs={"1": CFG})
    assert smu.drain_errors() == []
    assert smu.output_enabled("1") is False
    smu.output("1", True)
    reading = smu.measure_current("1")
    assert math.isfinite(reading.value) and abs(reading.source_value) < 1e-3
    result = smu.list_sweep({"1": np.zeros(5)}, settle_s=0.01)
    assert result.i_meas.shape == (5, 1) and np.all(np.abs(result.v_source) < 1e-3)
    smu.output("1", False)
    assert smu.output_enabled("1") is False


@pytest.mark.hardware("b2900")
def test_b2900_pulse_commands_are_accepted_and_leave_the_output_at_zero(open_instrument):
    """The list-based pulse at 0 V amplitude: the instrument accepts every command (``pulse`` ends
    with an error-queue check), and the channel is back in fixed mode at 0 V with the output on."""
    smu = open_instrument("b2900", "keysight_b2900", configs={"1": CFG})
    smu.output("1", True)
    smu.pulse("1", 0.0, 1e-4, count=3)
    assert smu.output_enabled("1") is True and smu.voltage_setpoint("1") == 0.0
    smu.output("1", False)


@pytest.mark.hardware("daq")
def test_daq970a_scan_of_first_channel(open_instrument):
    daq = open_instrument("daq", "daq970a")
    daq.configure_scan([101], nplc=1, range_v=10, autozero="once", delay_s=0.01)
    values = daq.read_scan()
    assert values.shape == (1,)
    single = daq.measure_voltage(101)
    if math.isfinite(values[0]):
        assert single == pytest.approx(values[0], abs=0.1)  # same channel, same settings, 10 V range
    assert daq.snapshot()["settings"]["scan"]["channels"] == [101]


@pytest.mark.hardware("matrix")
def test_707b_connect_leaves_everything_open(open_instrument):
    matrix = open_instrument("matrix", "keithley707b")
    assert matrix.closed() == frozenset()
    matrix.open_all()
    assert matrix.drain_errors() == []
