"""Protocol tests for the Keysight B2900 driver: exact command strings via ScriptedTransport."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.blocks import encode_ieee_block
from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    LimitViolation,
)
from hil.drivers.keysight_b2900 import KeysightB2900, map_sentinels, status_in_compliance
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig, SourceMeter
from hil.drivers.transport import ScriptedTransport

OK = '+0,"No error"'
LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0)
CFG = SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="off", source_delay_s=0.001)
IDN2 = "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"
IDN1 = "Agilent Technologies,B2911A,MY52000002,2.0.1225.1024"


def connect_seq(idn: str, channels: tuple[str, ...], outputs: dict[str, str] | None = None) -> list:
    outputs = outputs or {}
    seq = [("*IDN?", idn), (":SYST:ERR?", OK), ("*CLS", None),
           (":FORM:ELEM:SENS CURR,STAT,SOUR", None), (":FORM:BORD NORM", None), (":FORM:DATA ASC", None)]
    for ch in channels:
        seq += [(f":OUTP{ch}:ON:AUTO OFF", None), (f":OUTP{ch}:OFF:AUTO OFF", None)]
    for ch in channels:
        seq += [(f":OUTP{ch}?", outputs.get(ch, "0")), (f":SOUR{ch}:VOLT?", "+0.000000E+00")]
    return seq


def config_seq(ch: str, *, off_mode: str = "ZERO", four_wire: str = "OFF") -> list:
    return [(f":SOUR{ch}:FUNC:MODE VOLT", None), (f":SOUR{ch}:VOLT:MODE FIX", None),
            (f":SOUR{ch}:VOLT:RANG:AUTO OFF", None), (f":SOUR{ch}:VOLT:RANG 1", None),
            (f':SENS{ch}:FUNC "CURR"', None), (f":SENS{ch}:CURR:RANG:AUTO OFF", None),
            (f":SENS{ch}:CURR:RANG 0.0001", None), (f":SENS{ch}:CURR:NPLC 0.1", None),
            (f":SENS{ch}:CURR:PROT 0.0001", None), (f":SENS{ch}:REM {four_wire}", None),
            (f":OUTP{ch}:OFF:MODE {off_mode}", None), (f":OUTP{ch}:PROT ON", None),
            (f":TRIG{ch}:SOUR AINT", None), (f":TRIG{ch}:COUN 1", None), (f":TRIG{ch}:TRAN:DEL 0", None),
            (f":TRIG{ch}:ACQ:DEL 0.001", None)]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(script: list, *, configs=None, binary: bool = False) -> tuple[KeysightB2900, ScriptedTransport, Sleeps]:
    transport = ScriptedTransport(script, name="smu")
    sleeps = Sleeps()
    drv = KeysightB2900(transport, configs=configs, binary=binary, sleep=sleeps)
    return drv, transport, sleeps


def connected_2ch(extra: list, *, binary: bool = False):
    script = connect_seq(IDN2, ("1", "2")) + config_seq("1") + config_seq("2") + [(":SYST:ERR?", OK)] + extra
    drv, t, sleeps = make(script, configs={"1": CFG, "2": CFG}, binary=binary)
    drv.connect()
    return drv, t, sleeps


def test_connect_two_channel_model_sets_channels_and_satisfies_protocol():
    drv, t, _ = connected_2ch([])
    assert drv.channels == ("1", "2")
    assert drv.matched_model == "B2902A"
    assert isinstance(drv, SourceMeter)
    snap = drv.snapshot()
    assert snap["settings"]["channels"] == ["1", "2"] and snap["settings"]["1"]["nplc"] == 0.1
    t.verify()


def test_connect_single_channel_model_uses_suffix_1_only():
    drv, t, _ = make(connect_seq(IDN1, ("1",)) + [(":SYST:ERR?", OK)])
    drv.connect()
    assert drv.channels == ("1",)
    t.verify()


def test_connect_rejects_config_for_missing_channel_before_configuring():
    drv, t, _ = make([("*IDN?", IDN1)], configs={"2": CFG})
    with pytest.raises(InstrumentConfigError, match="channels"):
        drv.connect()
    t.verify()


def test_connect_rejects_wrong_model():
    drv, t, _ = make([("*IDN?", "Keysight Technologies,34465A,MY1,1.0")])
    with pytest.raises(InstrumentProtocolError, match="34465A"):
        drv.connect()
    t.verify()


def test_connect_reports_errors_left_by_configuration():
    script = connect_seq(IDN1, ("1",)) + [(":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", OK)]
    drv, t, _ = make(script)
    with pytest.raises(InstrumentReportedError) as info:
        drv.connect()
    assert info.value.code == -113 and info.value.entries == ((-113, "Undefined header"),)
    t.verify()


def test_connect_ramps_down_and_switches_off_an_output_left_on():
    script = connect_seq(IDN1, ("1",), outputs={"1": "1"})
    script[-1] = (":SOUR1:VOLT?", "+1.000000E-01")
    script += [(":SOUR1:VOLT 0.05", None), (":SOUR1:VOLT 0", None), (":OUTP1 OFF", None)]
    script += config_seq("1") + [(":SYST:ERR?", OK)]
    drv, t, sleeps = make(script, configs={"1": CFG})
    drv.connect()
    assert sleeps == [pytest.approx(0.005)] * 2
    t.verify()


def test_configure_off_mode_and_four_wire_and_autozero_rejected():
    cfg = SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="off",
                           source_delay_s=0.001, off_mode="himp", four_wire=True)
    script = connect_seq(IDN1, ("1",)) + [(":SYST:ERR?", OK)] + config_seq("1", off_mode="HIZ", four_wire="ON")
    script += [(":SYST:ERR?", OK)]
    drv, t, _ = make(script)
    drv.connect()
    drv.configure("1", cfg)
    with pytest.raises(InstrumentConfigError, match="autozero"):
        drv.configure("1", SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="once"))
    with pytest.raises(InstrumentConfigError, match="nplc"):
        drv.configure("1", SmuChannelConfig(limits=LIMITS, nplc=200, current_range_a=1e-4, autozero="off"))
    t.verify()


def test_set_voltage_output_off_writes_once_and_out_of_limit_writes_nothing():
    drv, t, _ = connected_2ch([(":SOUR2:VOLT 0.5", None)])
    drv.set_voltage("2", 0.5)
    with pytest.raises(LimitViolation):
        drv.set_voltage("1", 1.5)
    with pytest.raises(InstrumentConfigError):
        drv.set_voltage("3", 0.1)
    t.verify()


def test_output_on_then_ramped_level_change_and_setpoint_query():
    extra = [(":OUTP1 ON", None), (":SOUR1:VOLT 0.05", None), (":SOUR1:VOLT 0.1", None),
             (":SOUR1:VOLT?", "+1.000000E-01")]
    drv, t, sleeps = connected_2ch(extra)
    drv.output("1", True)
    drv.set_voltage("1", 0.1)
    assert drv.voltage_setpoint("1") == pytest.approx(0.1)
    assert sleeps == [pytest.approx(0.005)] * 2
    t.verify()


def test_output_state_compliance_flag_and_current_limit():
    extra = [(":OUTP2?", "1"), (":SENS2:CURR:PROT:TRIP?", "1"), (":SENS1:CURR:PROT:TRIP?", "0"),
             (":SENS1:CURR:PROT 5e-05", None)]
    drv, t, _ = connected_2ch(extra)
    assert drv.output_enabled("2") is True
    assert drv.compliance_tripped("2") is True
    assert drv.compliance_tripped("1") is False
    drv.set_current_limit("1", 5e-5)
    with pytest.raises(LimitViolation):
        drv.set_current_limit("1", 1e-3)
    t.verify()


def test_measure_current_parses_elements_status_and_refuses_with_output_off():
    still_on = (":OUTP1?", "1")  # read back after every measurement (output protection)
    extra = [(":OUTP1 ON", None),
             (":MEAS? (@1)", "+1.234500E-06,+0.000000E+00,+0.000000E+00"), still_on,
             (":MEAS? (@1)", "+9.990000E-05,+2.000000E+00,+0.000000E+00"), still_on,
             (":MEAS? (@1)", "+9.910000E+37,+0.000000E+00,+0.000000E+00"), still_on]
    drv, t, _ = connected_2ch(extra)
    with pytest.raises(InstrumentError, match="output is off"):
        drv.measure_current("1")
    drv.output("1", True)
    r = drv.measure_current("1")
    assert (r.value, r.source_value, r.compliance) == (pytest.approx(1.2345e-6), 0.0, False)
    assert drv.measure_current("1").compliance is True
    missing = drv.measure_current("1")
    assert math.isnan(missing.value) and missing.compliance is True
    t.verify()


def sweep_setup(ch: str, levels: str, n: int, delay: str) -> list:
    return [(f":SOUR{ch}:LIST:VOLT {levels}", None), (f":TRIG{ch}:COUN {n}", None),
            (f":TRIG{ch}:ACQ:DEL {delay}", None), (f":SOUR{ch}:VOLT:MODE LIST", None)]


def sweep_restore(ch: str) -> list:
    return [(f":SOUR{ch}:VOLT:MODE FIX", None), (f":TRIG{ch}:COUN 1", None), (f":TRIG{ch}:ACQ:DEL 0.001", None)]


def on_both() -> list:
    return [(":OUTP1 ON", None), (":OUTP2 ON", None)]


def test_list_sweep_two_channels_synchronised_ascii_with_status_and_sentinel():
    data = ",".join([
        "+1.0E-06,+0,+0.01", "-2.0E-06,+0,-0.01",        # point 0: ch1 then ch2
        "+2.0E-06,+4,+0.02", "-4.0E-06,+0,-0.02",        # point 1: ch1 status bit 2 = compliance
        "+3.0E-06,+0,+0.03", "+9.910000E+37,+0,+9.910000E+37",  # point 2: ch2 missing
    ])
    extra = on_both() + sweep_setup("2", "-0.01,-0.02,-0.03", 3, "0.002") + sweep_setup("1", "0.01,0.02,0.03", 3, "0.002")
    extra += [(":INIT (@1,2)", None), ("*OPC?", "1"), (":FETC:ARR? (@1,2)", data)]
    extra += sweep_restore("2") + sweep_restore("1")
    extra += [(":SOUR2:VOLT?", "+0.0E+00"), (":SOUR1:VOLT?", "+0.0E+00"), (":SYST:ERR?", OK)]
    extra += [(":OUTP2?", "1"), (":OUTP1?", "1")]
    drv, t, _ = connected_2ch(extra)
    drv.output("1", True)
    drv.output("2", True)
    res = drv.list_sweep({"2": [-0.01, -0.02, -0.03], "1": [0.01, 0.02, 0.03]}, settle_s=0.001)
    assert res.channels == ("2", "1")
    np.testing.assert_allclose(res.v_source[:2], [[-0.01, 0.01], [-0.02, 0.02]])
    np.testing.assert_allclose(res.i_meas[:, 1], [1e-6, 2e-6, 3e-6])
    assert math.isnan(res.i_meas[2, 0]) and math.isnan(res.v_source[2, 0])
    assert res.compliance.tolist() == [[False, False], [False, True], [True, False]]
    assert t.timeouts and max(t.timeouts) > 5.0
    t.verify()


def test_list_sweep_binary_block_big_endian_with_nan():
    values = [1e-6, 0.0, 0.01, np.nan, 0.0, np.nan]
    block = encode_ieee_block(values, ">f8") + b"\n"
    extra = [(":OUTP1 ON", None)] + sweep_setup("1", "0.01,0.02", 2, "0.001")
    extra += [(":INIT (@1)", None), ("*OPC?", "1"), (":FORM:DATA REAL,64", None), (":FETC:ARR? (@1)", block),
              (":FORM:DATA ASC", None)]
    extra += sweep_restore("1") + [(":SOUR1:VOLT?", "+0.0E+00"), (":SYST:ERR?", OK), (":OUTP1?", "1")]
    drv, t, _ = connected_2ch(extra, binary=True)
    drv.output("1", True)
    res = drv.list_sweep({"1": [0.01, 0.02]}, settle_s=0.0)
    assert res.i_meas[0, 0] == pytest.approx(1e-6) and math.isnan(res.i_meas[1, 0])
    assert res.compliance[:, 0].tolist() == [False, True]
    t.verify()


def test_list_sweep_long_list_is_chunked_with_append():
    levels = np.full(150, 0.01)
    body = ",".join(["+1.0E-06,+0,+0.01"] * 150)
    chunk1 = ",".join(["0.01"] * 100)
    chunk2 = ",".join(["0.01"] * 50)
    extra = [(":OUTP1 ON", None), (":SOUR1:LIST:VOLT " + chunk1, None), (":SOUR1:LIST:VOLT:APP " + chunk2, None),
             (":TRIG1:COUN 150", None), (":TRIG1:ACQ:DEL 0.001", None), (":SOUR1:VOLT:MODE LIST", None),
             (":INIT (@1)", None), ("*OPC?", "1"), (":FETC:ARR? (@1)", body)]
    extra += sweep_restore("1") + [(":SOUR1:VOLT?", "+0.0E+00"), (":SYST:ERR?", OK), (":OUTP1?", "1")]
    drv, t, _ = connected_2ch(extra)
    drv.output("1", True)
    res = drv.list_sweep({"1": levels}, settle_s=0.0)
    assert res.i_meas.shape == (150, 1)
    t.verify()


def test_list_sweep_refusals_write_nothing():
    drv, t, _ = connected_2ch([(":OUTP1 ON", None)])
    with pytest.raises(LimitViolation):                      # step from 0 V too large
        drv.list_sweep({"1": [0.2]}, settle_s=0.01)
    with pytest.raises(InstrumentError, match="outputs off"):
        drv.list_sweep({"2": [0.01]}, settle_s=0.01)
    with pytest.raises(LimitViolation, match="2500"):
        drv.list_sweep({"1": np.zeros(2501)}, settle_s=0.01)
    drv.output("1", True)
    with pytest.raises(LimitViolation):                      # slew: 0.05 V in ~3 ms > 10 V/s
        drv.list_sweep({"1": [0.05]}, settle_s=0.0)
    t.verify()


def test_sweep_restores_fixed_mode_when_opc_times_out():
    extra = [(":OUTP1 ON", None)] + sweep_setup("1", "0.01", 1, "0.001")
    # the list may still run: abort first, then resync (discard, *IDN?, drain), then restore
    extra += [(":INIT (@1)", None), ("*OPC?", None), (":ABOR (@1)", None), ("*IDN?", IDN2), (":SYST:ERR?", OK)]
    extra += sweep_restore("1")
    drv, t, _ = connected_2ch(extra)
    drv.output("1", True)
    with pytest.raises(InstrumentError):
        drv.list_sweep({"1": [0.01]}, settle_s=0.0)
    t.verify()


def test_safe_shutdown_ramps_to_zero_switches_off_and_is_idempotent():
    extra = [(":OUTP1 ON", None), (":SOUR1:VOLT 0.05", None), (":SOUR1:VOLT 0.1", None)]
    verify = [(":OUTP1?", "0"), (":SOUR1:VOLT?", "+0.000000E+00"), (":OUTP2?", "0"), (":SOUR2:VOLT?", "+0.0E+00")]
    shutdown = [(":ABOR (@1,2)", None), (":SOUR1:VOLT 0.05", None), (":SOUR1:VOLT 0", None), (":OUTP1 OFF", None),
                (":OUTP2 OFF", None), *verify, (":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", OK)]
    again = [(":ABOR (@1,2)", None), (":OUTP1 OFF", None), (":OUTP2 OFF", None), *verify, (":SYST:ERR?", OK)]
    drv, t, _ = connected_2ch(extra + shutdown + again)
    drv.output("1", True)
    drv.set_voltage("1", 0.1)
    drv.safe_shutdown()
    drv.safe_shutdown()
    assert t.timeouts[-2:] == [2.0, 5.0]
    t.verify()


def test_safe_shutdown_never_raises_when_link_is_dead():
    from hil.drivers.errors import InstrumentConnectionError
    lost = InstrumentConnectionError("lost")
    extra = [(":OUTP1 ON", None), (":ABOR (@1,2)", lost), (":SOUR1:VOLT 0.05", lost), (":OUTP1 OFF", lost),
             (":OUTP2 OFF", lost), (":OUTP1?", lost), (":SYST:ERR?", lost)]
    drv, t, _ = connected_2ch(extra)
    drv.output("1", True)
    drv._setpoint["1"] = 0.1
    report = drv.safe_shutdown()
    t.verify()
    assert not report.safe and report.maybe_live == ("1", "2")
    assert "MAY STILL BE LIVE" in report.summary()


def test_abort_returns_list_mode_channel_to_fixed():
    drv, t, _ = connected_2ch([(":ABOR (@1,2)", None), (":SOUR2:VOLT:MODE FIX", None), (":ABOR (@1,2)", None)])
    drv._list_active.add("2")
    drv._abort()
    drv._abort()
    t.verify()


def test_helpers_status_bits_and_sentinels():
    assert status_in_compliance([0, 2, 4, 6, 8, 8192, np.nan]).tolist() == [False, True, True, True, False, False, False]
    v = map_sentinels([9.91e37, 9.9e37, -9.9e37, 1.0])
    assert math.isnan(v[0]) and v[1] == math.inf and v[2] == -math.inf and v[3] == 1.0


# -- review fixes: configure refused while sourcing, output off ramps first, power rule per reading --


def test_configure_refused_while_output_on_is_a_limit_violation_and_writes_nothing():
    drv, t, _ = connected_2ch([(":OUTP1 ON", None)])
    drv.output("1", True)
    with pytest.raises(LimitViolation, match="output off before configure"):
        drv.configure("1", CFG)
    t.verify()


def test_output_off_ramps_level_to_zero_first():
    extra = [(":OUTP2 ON", None), (":SOUR2:VOLT 0.05", None), (":SOUR2:VOLT 0.1", None),
             (":SOUR2:VOLT 0.05", None), (":SOUR2:VOLT 0", None), (":OUTP2 OFF", None)]
    drv, t, sleeps = connected_2ch(extra)
    drv.output("2", True)
    drv.set_voltage("2", 0.1)
    drv.output("2", False)
    t.verify()
    assert sleeps == [pytest.approx(0.005)] * 4


def test_list_sweep_power_violation_on_one_channel_makes_every_swept_channel_safe():
    from hil.drivers.errors import PowerLimitError
    power = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0,
                         max_power_w=1e-6)
    data = ",".join(["+1.0E-06,+0,+0.01", "+5.0E-04,+0,+0.01"])   # ch2: 0.01 V * 0.5 mA = 5 uW
    extra = on_both() + sweep_setup("1", "0.01", 1, "0.002") + sweep_setup("2", "0.01", 1, "0.002")
    extra += [(":INIT (@1,2)", None), ("*OPC?", "1"), (":FETC:ARR? (@1,2)", data)]
    extra += sweep_restore("1") + sweep_restore("2")
    extra += [(":SOUR1:VOLT?", "+5.0E-02"), (":SOUR2:VOLT?", "+1.0E-01")]
    extra += [(":SOUR1:VOLT 0", None), (":OUTP1 OFF", None),
              (":SOUR2:VOLT 0.05", None), (":SOUR2:VOLT 0", None), (":OUTP2 OFF", None)]
    drv, t, _ = connected_2ch(extra)
    drv._configs["2"] = SmuChannelConfig(limits=power, nplc=0.1, current_range_a=1e-3, autozero="off",
                                         source_delay_s=0.001)
    drv.output("1", True)
    drv.output("2", True)
    with pytest.raises(PowerLimitError) as info:
        drv.list_sweep({"1": [0.01], "2": [0.01]}, settle_s=0.001)
    t.verify()
    err = info.value
    assert (err.channel, err.point, err.channels_made_safe) == ("2", 0, ("1", "2"))
    assert err.value == pytest.approx(5e-6) and err.limit == 1e-6
    assert not drv._output_on["1"] and not drv._output_on["2"]


def test_list_sweep_without_power_limit_does_not_apply_the_power_rule():
    data = "+1.0E-04,+0,+0.5"  # at the 100 µA limit (and range)
    extra = [(":OUTP1 ON", None)] + sweep_setup("1", "0.01", 1, "0.002")
    extra += [(":INIT (@1)", None), ("*OPC?", "1"), (":FETC:ARR? (@1)", data)]
    extra += sweep_restore("1") + [(":SOUR1:VOLT?", "+0.0E+00"), (":SYST:ERR?", OK), (":OUTP1?", "1")]
    drv, t, _ = connected_2ch(extra)
    drv.output("1", True)
    res = drv.list_sweep({"1": [0.01]}, settle_s=0.001)
    assert res.compliance.tolist() == [[True]]  # at-limit rule only
    t.verify()
