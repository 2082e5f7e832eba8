"""VISA smoke tests through real pyvisa with the pyvisa-sim models in drivers/sim/.

Each test uses a private copy of the YAML (pyvisa-sim keeps state per path) and a manager closed at
teardown; warnings are errors so a termination mismatch cannot pass silently.
"""

from __future__ import annotations

import pytest

from hil.drivers.keithley2450 import Keithley2450
from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.transport import VisaTransport

pytestmark = pytest.mark.filterwarnings("error")

LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0)
CFG_2450 = SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="once", source_delay_s=0.001)
CFG_2600 = CFG_2450


@pytest.fixture
def smu2450(sim_managers):
    rm = sim_managers("keithley2450.yaml")
    transport = VisaTransport(rm, "TCPIP::192.0.2.10::5025::SOCKET", name="smu2450", timeout_s=0.3)
    drv = Keithley2450(transport, configs={"": CFG_2450}, sleep=lambda s: None)
    yield drv
    drv.close()


@pytest.fixture
def smu2600(sim_managers):
    rm = sim_managers("keithley2600.yaml")
    transport = VisaTransport(rm, "TCPIP::192.0.2.20::5025::SOCKET", name="smu2600", timeout_s=0.3)
    drv = Keithley2600(transport, configs={"a": CFG_2600}, sleep=lambda s: None)
    yield drv
    drv.close()


def test_2450_connect_identify_configure(smu2450):
    smu2450.connect()
    assert smu2450.identity.serial == "SIM0001"
    assert smu2450.line_frequency_hz == 50.0
    assert smu2450.transport.resource_name == "TCPIP0::192.0.2.10::5025::SOCKET"
    assert smu2450.drain_errors() == []


def test_2450_unknown_command_found_in_queue_then_drained(smu2450):
    smu2450.connect()
    smu2450.transport.write(":SOUR:VOLT:NONSENSE 1")
    assert smu2450.drain_errors() == [(-113, "Undefined header")]
    assert smu2450.drain_errors() == []


def test_2450_level_round_trip_reset_and_shutdown(smu2450):
    smu2450.connect()
    smu2450.set_voltage("", 0.1)
    assert smu2450.voltage_setpoint("") == pytest.approx(0.1)
    smu2450.reset()
    assert smu2450.output_enabled("") is False
    assert smu2450.safe_shutdown().safe and smu2450.shutdown_errors == []
    assert smu2450.drain_errors() == []


def test_2600_connect_identify_configure(smu2600):
    smu2600.connect()
    assert smu2600.matched_model == "2602B" and smu2600.channels == ("a", "b")
    assert smu2600.line_frequency_hz == 50.0
    assert smu2600.compliance_tripped("a") is False
    assert smu2600.drain_errors() == []


def test_2600_unknown_statement_found_in_queue_then_drained(smu2600):
    smu2600.connect()
    smu2600.transport.write("smua.source.levelx = 1")
    assert smu2600.drain_errors() == [(-285, "Program syntax error")]
    assert smu2600.drain_errors() == []


def test_2600_reset_and_shutdown(smu2600):
    smu2600.connect()
    smu2600.reset()
    assert smu2600.safe_shutdown().safe and smu2600.shutdown_errors == []
    assert smu2600.drain_errors() == []
    assert smu2600.output_enabled("a") is False and smu2600.output_enabled("b") is False
