"""VISA smoke tests: B2900, DAQ970A and 707B drivers through real pyvisa on pyvisa-sim resources."""

from __future__ import annotations

import math

import pytest

from hil.drivers.daq970a import Daq970a
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InstrumentReportedError, LimitViolation
from hil.drivers.keithley707b import Keithley707B
from hil.drivers.keysight_b2900 import KeysightB2900
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.transport import VisaTransport

pytestmark = pytest.mark.filterwarnings("error")

B2900 = "TCPIP::192.0.2.20::5025::SOCKET"
DAQ = "TCPIP::192.0.2.30::5025::SOCKET"
MATRIX = "TCPIP::192.0.2.40::5025::SOCKET"
CFG = SmuChannelConfig(limits=SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05,
                                           max_slew_v_per_s=10.0),
                       nplc=0.1, current_range_a=1e-4, autozero="off", source_delay_s=0.001)


def open_transport(sim_managers, yaml_name: str, address: str, name: str) -> VisaTransport:
    return VisaTransport(sim_managers(yaml_name), address, name=name, timeout_s=0.2)


def test_b2900_connect_configure_measure_and_shutdown(sim_managers):
    smu = KeysightB2900(open_transport(sim_managers, "keysight_b2900.yaml", B2900, "smu"),
                        configs={"1": CFG, "2": CFG}, sleep=lambda s: None)
    smu.connect()
    assert smu.channels == ("1", "2") and smu.identity.serial == "SIM0020"
    smu.output("1", True)
    assert smu.output_enabled("1") is True and smu.output_enabled("2") is False
    smu.set_voltage("1", 0.01)
    assert smu.voltage_setpoint("1") == pytest.approx(0.01)
    reading = smu.measure_current("1")
    assert reading.value == pytest.approx(1.25e-6) and reading.compliance is False
    assert smu.compliance_tripped("1") is False
    report = smu.safe_shutdown()
    assert report.safe and smu.shutdown_errors == []  # every shutdown command known to the simulator
    assert smu.output_enabled("1") is False and smu.voltage_setpoint("1") == 0.0
    assert smu.drain_errors() == []
    smu.close()


def test_b2900_unknown_command_lands_in_the_error_queue(sim_managers):
    smu = KeysightB2900(open_transport(sim_managers, "keysight_b2900.yaml", B2900, "smu"))
    smu.connect()
    smu._write(":SOUR3:VOLT 1")
    with pytest.raises(InstrumentReportedError) as info:
        smu.check_errors()
    assert info.value.code == -113
    assert smu.drain_errors() == []
    with pytest.raises(InstrumentConfigError):
        smu.set_voltage("1", 0.1)  # channel not configured: refused before any I/O
    smu.close()


def test_b2900_unknown_address_is_rejected_at_connect(sim_managers):
    smu = KeysightB2900(open_transport(sim_managers, "keysight_b2900.yaml",
                                       "TCPIP::192.0.2.99::5025::SOCKET", "nobody"))
    with pytest.raises(InstrumentProtocolError):
        smu.connect()
    smu.close()


def test_daq970a_scan_with_overload_and_error_queue(sim_managers):
    daq = Daq970a(open_transport(sim_managers, "daq970a.yaml", DAQ, "daq"))
    daq.connect()
    daq.configure_scan([101, 102, 103], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    values = daq.read_scan()
    assert values[:2].tolist() == [pytest.approx(0.1), pytest.approx(-0.25)] and values[2] == math.inf
    daq._write("VOLT:DC:NPLC 3,(@101)")
    assert [e.code for e in daq.drain_errors()] == [-113]
    assert daq.safe_shutdown().safe and daq.shutdown_errors == []
    assert daq.drain_errors() == []
    daq.close()


def test_707b_connect_switch_verify_and_shutdown(sim_managers):
    matrix = Keithley707B(open_transport(sim_managers, "keithley707b.yaml", MATRIX, "matrix"),
                          forbidden=["1A01", "1B01"])
    matrix.connect()
    assert matrix.closed() == frozenset()
    matrix.connect(["1C03"], exclusive=True)
    assert matrix.closed() == {("C", 3)}
    with pytest.raises(LimitViolation):
        matrix.connect(["1A01"], exclusive=True)
    # The simulator models the closed set through channel.close() only; it accepts
    # channel.open(...) but cannot apply it, so the simulated state is reset directly here.
    matrix._write('channel.close("nil")')
    assert matrix.closed() == frozenset()
    matrix._write("beep.beep(1, 440)")
    entries = matrix.drain_errors()
    assert [e.code for e in entries] == [-285]
    assert matrix.safe_shutdown().safe and matrix.shutdown_errors == []
    assert matrix.drain_errors() == []
    matrix.close()
