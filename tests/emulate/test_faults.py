"""Every fault of the injection API, observed through real pyvisa-py (and the real drivers)."""

from __future__ import annotations

import math
import time

import pytest

from hil.bench.instruments import make_driver
from hil.drivers.errors import (
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    InterlockError,
)
from hil.drivers.transport import VisaTransport

pytestmark = pytest.mark.hil_bench("scpi-xor")


def _no_sleep(_s: float) -> None:
    return None


def _transport(bench, managers, name, timeout_s=1.0):
    return VisaTransport(managers.get("@py"), bench.resources[name], name=name, timeout_s=timeout_s)


def _driver(bench, managers, name, **kw):
    drv = make_driver(bench.loopback_bench.instruments[name], managers, sleep=_no_sleep, **kw)
    drv.connect()
    return drv


def test_no_reply_times_out_and_the_link_recovers(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y2"]
    t = _transport(emulated_bench, visa_resource_managers, "smu_y2")
    try:
        emu.faults.no_reply(match=r"SOUR:VOLT\?")
        t.write(":SOUR:VOLT 0.1")
        with pytest.raises(InstrumentTimeout):
            t.query(":SOUR:VOLT?")
        assert t.query(":SOUR:VOLT?").startswith("1.000000E-01")   # executed, reply withheld once
        assert [e.detail["fault"] for e in emu.transcript.entries("fault")] == ["no_reply"]
    finally:
        t.close()


def test_late_reply_arrives_after_the_timeout(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y2"]
    t = _transport(emulated_bench, visa_resource_managers, "smu_y2", timeout_s=0.5)
    try:
        emu.faults.late_reply(1.0)
        with pytest.raises(InstrumentTimeout):
            t.query("*IDN?")
        time.sleep(0.8)
        assert t.read().startswith("KEITHLEY")                       # the stale line is still there
        assert t.query(":OUTP?") == "0"
    finally:
        t.close()


def test_drop_connection_breaks_the_link(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y2"]
    t = _transport(emulated_bench, visa_resource_managers, "smu_y2")
    try:
        emu.faults.drop_connection()
        with pytest.raises((InstrumentTimeout, InstrumentConnectionError)):
            t.query("*IDN?")
        assert emu.transcript.entries("rx")[-1].detail.get("dropped") is True
    finally:
        t.close()
    again = _transport(emulated_bench, visa_resource_managers, "smu_y2")   # the instrument lives on
    try:
        assert again.query("*IDN?").startswith("KEITHLEY")
    finally:
        again.close()


def test_refused_connection_fails_connect(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y3"]
    emu.refuse_connections(True)
    try:
        with pytest.raises(InstrumentConnectionError):
            drv = make_driver(emulated_bench.loopback_bench.instruments["smu_y3"], visa_resource_managers)
            try:
                drv.connect()
            finally:
                drv.close()
    finally:
        emu.refuse_connections(False)
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y3")
    drv.close()


def test_endless_reply_is_bounded(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y2"]
    t = _transport(emulated_bench, visa_resource_managers, "smu_y2", timeout_s=0.5)
    try:
        emu.faults.endless_reply(max_s=1.0)
        start = time.monotonic()
        with pytest.raises((InstrumentTimeout, InstrumentProtocolError)):
            t.query("*IDN?")
        assert time.monotonic() - start < 5.0
        assert emu.transcript.entries("fault")[-1].detail["fault"] == "endless_reply"
    finally:
        t.close()


def test_garbage_reply_is_a_protocol_error(emulated_bench, visa_resource_managers):
    emulated_bench.emulators["daq"].faults.garbage_reply(match=r"\*IDN")
    drv = make_driver(emulated_bench.loopback_bench.instruments["daq"], visa_resource_managers)
    try:
        with pytest.raises(InstrumentProtocolError):
            drv.connect()
    finally:
        drv.close()


def test_pushed_error_is_reported_by_the_driver(emulated_bench, visa_resource_managers):
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y01")
    try:
        emulated_bench.emulators["smu_y01"].push_error(-200, "Execution error; injected")
        with pytest.raises(InstrumentReportedError) as info:
            drv.check_errors()
        assert info.value.code == -200
    finally:
        drv.safe_shutdown()
        drv.close()


def test_forced_compliance_flags_the_reading(emulated_bench, visa_resource_managers):
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y2")
    try:
        drv.output("", True)
        emulated_bench.emulators["smu_y2"].faults.force_compliance("")
        forced = drv.measure_current("")
        assert forced.compliance and abs(forced.value) == pytest.approx(1e-3, rel=1e-2)
        assert drv.compliance_tripped("")
    finally:
        drv.safe_shutdown()
        drv.close()


@pytest.mark.parametrize("kind, check", [("overflow", math.isinf), ("missing", math.isnan)])
def test_sentinels_become_inf_and_nan(emulated_bench, visa_resource_managers, kind, check):
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y01")
    try:
        drv.output("1", True)
        emulated_bench.emulators["smu_y01"].faults.sentinel(kind, channel="1")
        reading = drv.measure_current("1")
        assert check(reading.value) and reading.compliance
    finally:
        drv.safe_shutdown()
        drv.close()


def test_daq_overflow_sentinel(emulated_bench, visa_resource_managers):
    drv = _driver(emulated_bench, visa_resource_managers, "daq")
    try:
        emulated_bench.emulators["daq"].faults.sentinel("overflow", channel="103")
        values = drv.read_scan()
        assert math.isinf(values[2]) and all(math.isfinite(v) for k, v in enumerate(values) if k != 2)
    finally:
        drv.close()


def test_interlock_open_blocks_output_on(emulated_bench, visa_resource_managers):
    emu = emulated_bench.emulators["smu_y2"]
    emu.faults.interlock_open()
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y2")
    try:
        with pytest.raises(InterlockError):
            drv.output("", True)
        assert ":OUTP ON" not in emu.transcript.received()
        assert not any(s["output_on"] for s in emu.output_history(""))
    finally:
        emu.faults.clear("interlock_open")
        drv.safe_shutdown()
        drv.close()


def test_misreported_level_reaches_the_driver(emulated_bench, visa_resource_managers):
    drv = _driver(emulated_bench, visa_resource_managers, "smu_y01")
    try:
        emulated_bench.emulators["smu_y01"].faults.misreport_level(7.5, channel="1", count=1)
        if "1" in drv._configs and drv.config("1").limits.v_max < 7.5:
            from hil.drivers.errors import ImplausibleReadbackError

            with pytest.raises(ImplausibleReadbackError):  # outside the configured limits: unknown
                drv.voltage_setpoint("1")
        else:
            assert drv.voltage_setpoint("1") == 7.5
        assert drv.voltage_setpoint("1") == 0.0
    finally:
        drv.safe_shutdown()
        drv.close()
