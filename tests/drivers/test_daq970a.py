"""Protocol tests for the DAQ970A/34970A scanner driver: exact command strings via ScriptedTransport."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.daq970a import Daq970a, ScanConfig, channel_list
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InstrumentReportedError
from hil.drivers.protocols import Scanner
from hil.drivers.transport import ScriptedTransport

OK = '+0,"No error"'
IDN = "Keysight Technologies,DAQ970A,MY58000001,A.02.04-00.16-11.29-00.02-02-01"
CONNECT = [("*IDN?", IDN), ("SYST:ERR?", OK), ("*CLS", None), ("FORM:READ:CHAN OFF", None),
           ("FORM:READ:TIME OFF", None), ("TRIG:SOUR IMM", None), ("TRIG:COUN 1", None), ("SYST:ERR?", OK)]
L = "(@101,102,110)"
SCAN = [(f"CONF:VOLT:DC 10,DEF,{L}", None), (f"VOLT:DC:NPLC 1,{L}", None), (f"ZERO:AUTO OFF,{L}", None),
        (f"INP:IMP:AUTO ON,{L}", None),
        (f"ROUT:CHAN:DEL 0.002,{L}", None), (f"ROUT:SCAN {L}", None), ("TRIG:SOUR IMM", None),
        ("TRIG:COUN 1", None)]


def connected(extra, **kwargs):
    t = ScriptedTransport(CONNECT + extra, name="daq")
    drv = Daq970a(t, **kwargs)
    drv.connect()
    return drv, t


def test_connect_identifies_and_sets_reading_format():
    drv, t = connected([])
    assert isinstance(drv, Scanner)
    assert drv.matched_model == "DAQ970A"
    assert drv.snapshot()["settings"]["scan"] is None
    t.verify()


def test_connect_accepts_34970a_and_rejects_other_models():
    t = ScriptedTransport([("*IDN?", "HEWLETT-PACKARD,34970A,0,13-2-2")] + CONNECT[1:], name="daq")
    Daq970a(t).connect()
    t.verify()
    t = ScriptedTransport([("*IDN?", "Keysight Technologies,34465A,MY1,A.03")], name="daq")
    with pytest.raises(InstrumentProtocolError):
        Daq970a(t).connect()
    t.verify()


def test_configure_scan_exact_commands_then_error_check():
    drv, t = connected(SCAN + [("SYST:ERR?", OK)])
    drv.configure_scan([101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    assert drv.snapshot()["settings"]["scan"] == {"channels": [101, 102, 110], "nplc": 1.0, "range_v": 10.0,
                                                  "autozero": "off", "delay_s": 0.002,
                                                  "input_impedance": ">10 GOhm"}
    t.verify()


def test_configure_scan_reported_error_raises():
    drv, t = connected(SCAN + [("SYST:ERR?", '-222,"Data out of range"'), ("SYST:ERR?", OK)])
    with pytest.raises(InstrumentReportedError) as info:
        drv.configure_scan([101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    assert info.value.code == -222
    t.verify()


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=[102, 101]), "ascending"),
    (dict(channels=[101, 101]), "ascending"),
    (dict(channels=[401]), "slot"),
    (dict(channels=[]), "at least one"),
    (dict(nplc=0.5), "nplc"),
    (dict(range_v=5), "range_v"),
    (dict(autozero="auto"), "autozero"),
    (dict(delay_s=61), "delay_s"),
])
def test_configure_scan_invalid_arguments_write_nothing(kwargs, match):
    drv, t = connected([])
    args = dict(channels=[101, 102], nplc=1, range_v=10, autozero="off", delay_s=0.0) | kwargs
    with pytest.raises(InstrumentConfigError, match=match):
        drv.configure_scan(**args)
    t.verify()


def test_module_layout_is_enforced():
    drv, t = connected([], slots={1: 20})
    with pytest.raises(InstrumentConfigError, match="01-20"):
        drv.configure_scan([121], nplc=1, range_v=10, autozero="off", delay_s=0.0)
    with pytest.raises(InstrumentConfigError, match="no module"):
        drv.configure_scan([201], nplc=1, range_v=10, autozero="off", delay_s=0.0)
    t.verify()


def test_read_scan_in_order_with_sentinels_and_raised_timeout():
    reply = "+1.000000E-01,-9.90000000E+37,+9.91000000E+37"
    drv, t = connected(SCAN + [("SYST:ERR?", OK), ("READ?", reply)])
    drv.configure_scan([101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    values = drv.read_scan()
    assert values[0] == pytest.approx(0.1) and values[1] == -math.inf and math.isnan(values[2])
    assert t.timeouts[0] > 5.0 and t.timeouts[-1] == 5.0
    t.verify()


def test_read_scan_wrong_count_is_protocol_error_and_needs_configuration():
    drv, t = connected(SCAN + [("SYST:ERR?", OK), ("READ?", "+1.0E-01,+2.0E-01")])
    with pytest.raises(InstrumentConfigError, match="configure_scan"):
        drv.read_scan()
    drv.configure_scan([101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    with pytest.raises(InstrumentProtocolError, match="expected 3"):
        drv.read_scan()
    t.verify()


def test_measure_voltage_narrows_and_restores_the_scan_list():
    extra = SCAN + [("SYST:ERR?", OK), ("ROUT:SCAN (@102)", None), ("READ?", "-2.500000E-01"),
                    (f"ROUT:SCAN {L}", None)]
    drv, t = connected(extra)
    drv.configure_scan([101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0.002)
    assert drv.measure_voltage(102) == pytest.approx(-0.25)
    with pytest.raises(InstrumentConfigError, match="not configured"):
        drv.measure_voltage(103)
    t.verify()


def test_scan_given_at_construction_is_applied_at_connect():
    script = CONNECT[:-1] + [(c.replace("0.002", "0"), r) for c, r in SCAN] + [("SYST:ERR?", OK)]
    t = ScriptedTransport(script, name="daq")
    drv = Daq970a(t, scan=dict(channels=[101, 102, 110], nplc=1, range_v=10, autozero="off", delay_s=0))
    drv.connect()
    assert drv.scan is not None and drv.scan.channels == (101, 102, 110)
    t.verify()


def test_safe_shutdown_aborts_and_drains_and_never_raises():
    from hil.drivers.errors import InstrumentConnectionError
    drv, t = connected([("ABOR", None), ("SYST:ERR?", OK), ("ABOR", InstrumentConnectionError("lost")),
                        ("SYST:ERR?", InstrumentConnectionError("lost"))])
    drv.safe_shutdown()
    drv.safe_shutdown()
    t.verify()


def test_helpers():
    assert channel_list([101, 203]) == "(@101,203)"
    cfg = ScanConfig([101, 102], 10, 1, "on", 0.0)
    assert cfg.scan_time_s() == pytest.approx(2 * (2 * 10 / 50 + 0.02))
    np.testing.assert_equal(cfg.channels, (101, 102))
