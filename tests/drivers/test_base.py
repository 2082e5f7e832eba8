"""DriverBase / ScpiDriver plumbing: connect, error queue, resync, shutdown, errors, registry."""

from __future__ import annotations

import pytest

from hil.drivers.base import ScpiDriver
from hil.drivers.errors import (
    ComplianceError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitViolation,
)
from hil.drivers.protocols import ErrorQueue, Instrument
from hil.drivers.registry import DRIVERS, driver_info, driver_names, load_driver
from hil.drivers.errors import InstrumentConfigError
from hil.drivers.transport import ScriptedTransport

IDN = "Keysight Technologies,DAQ970A,MY1,A.03"
OK = '+0,"No error"'


class MiniScanner(ScpiDriver):
    """The smallest complete SCPI driver: what a colleague's driver starts from."""

    SUPPORTED_MODELS = ("DAQ970A",)
    DESCRIPTION = "test double"
    ERROR_QUERY = "SYST:ERR?"
    LINE_FREQUENCY_QUERY = None

    def _shutdown_steps(self):
        return [("abort", lambda: self._write("ABOR")), ("open relays", lambda: self._write("ROUT:OPEN:ALL"))]


CONNECT = [("*IDN?", IDN), ("SYST:ERR?", OK), ("*CLS", None), ("SYST:ERR?", OK)]


def connected(extra):
    t = ScriptedTransport(CONNECT + list(extra), name="daq")
    d = MiniScanner(t)
    d.connect()
    return d, t


def test_structural_protocols():
    d, _ = connected([])
    assert isinstance(d, Instrument) and isinstance(d, ErrorQueue)


def test_check_errors_whitelist_and_report():
    d, t = connected([("SYST:ERR?", '-221,"Settings conflict"'), ("SYST:ERR?", OK),
                      ("SYST:ERR?", '-221,"Settings conflict"'), ("SYST:ERR?", '-100,"Command error"'),
                      ("SYST:ERR?", OK)])
    assert d.check_errors(allowed={-221}) == [(-221, "Settings conflict")]
    with pytest.raises(InstrumentReportedError) as info:
        d.check_errors(allowed={-221})
    assert (info.value.code, info.value.message) == (-100, "Command error")
    assert len(info.value.entries) == 2 and info.value.instrument == "daq"
    t.verify()


def test_drain_limit_is_protocol_error():
    d, _ = connected([("SYST:ERR?", '-350,"Queue overflow"')] * 2)
    with pytest.raises(InstrumentProtocolError, match="not empty after 2"):
        d.drain_errors(max_entries=2)


def test_resync_discards_confirms_identity_and_drains():
    d, t = connected([("X?", None), ("*IDN?", IDN), ("SYST:ERR?", '-410,"Query INTERRUPTED"'), ("SYST:ERR?", OK),
                      ("X?", "42")])
    assert d._query_idempotent("X?") == "42"
    assert t.discards == 1
    t.verify()


def test_resync_retries_once_then_connection_error():
    d, t = connected([("*IDN?", None), ("*IDN?", "OTHER,MODEL,1,1")])
    with pytest.raises(InstrumentConnectionError, match="resync failed"):
        d.resync()
    assert t.discards == 2


def test_safe_shutdown_logs_failures_runs_every_step_never_raises(caplog):
    d, t = connected([("ABOR", InstrumentTimeout("no reply")), ("ROUT:OPEN:ALL", None), ("SYST:ERR?", OK)])
    d.safe_shutdown()
    t.verify()
    assert "abort failed" in caplog.text


def test_safe_shutdown_survives_dead_link():
    d, t = connected([])
    t.close()
    d.safe_shutdown()  # every step fails with a connection error; nothing escapes


def test_exception_attributes_and_text():
    e = InstrumentTimeout("no reply", instrument="smu", command="*IDN?")
    assert isinstance(e, InstrumentError) and "smu" in str(e) and "*IDN?" in str(e)
    c = ComplianceError("a", 1e-4, 1.2e-4, instrument="smu")
    assert (c.channel, c.limit, c.value) == ("a", 1e-4, 1.2e-4)
    lv = LimitViolation("v_max", 2.0, 1.0)
    assert (lv.name, lv.value, lv.bound) == ("v_max", 2.0, 1.0)
    r = InstrumentReportedError(-113, "Undefined header")
    assert r.entries == ((-113, "Undefined header"),)


def test_registry_entries_load_and_agree_with_classes():
    assert {"keithley2450", "keithley2600"} <= set(driver_names())
    for name, info in DRIVERS.items():
        cls = load_driver(name)
        assert tuple(cls.SUPPORTED_MODELS) == info.models, name
        assert cls.DESCRIPTION == info.description, name
        assert info.name == name


def test_registry_unknown_name():
    with pytest.raises(InstrumentConfigError, match="unknown driver"):
        driver_info("nope")


def test_shutdown_interrupted_during_verification_is_not_reported_safe():
    from hil.drivers.keithley2450 import Keithley2450
    from hil.drivers.transport import ScriptedTransport

    t = ScriptedTransport([(":ABOR", None), (":OUTP OFF", None), (":OUTP?", KeyboardInterrupt()),
                           (":SYST:ERR?", '0,"No error"')])
    smu = Keithley2450(t)
    smu._output_on[""], smu._setpoint[""] = False, 0.0
    with pytest.raises(KeyboardInterrupt):
        smu.safe_shutdown()
    assert not smu.last_shutdown.safe and smu.last_shutdown.maybe_live == ("",)
    t.verify()
