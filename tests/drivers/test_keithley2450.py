"""Protocol tests for the Keithley 2450 driver: exact command strings via ScriptedTransport."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InterlockError,
    LimitViolation,
)
from hil.drivers.keithley2450 import Keithley2450
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import Reading, SmuChannelConfig, SourceMeter
from hil.drivers.transport import ScriptedTransport

OK = '0,"No error"'
LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0)
CFG = SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="once", source_delay_s=0.001)

CONNECT = [
    ("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2450,04321,1.7.12b"),
    ("*LANG?", "SCPI"),
    (":SYST:ERR?", OK),
    ("*CLS", None),
    (":SYST:LFR?", "50"),
    (":FORM:DATA ASC", None),
    (":OUTP?", "0"),
    (":SOUR:VOLT?", "+0.000000E+00"),
]
#: read-back at the end of every safe_shutdown: output off, level 0 V
VERIFY = [(":OUTP?", "0"), (":SOUR:VOLT?", "+0.000000E+00")]

CONFIG = [
    (":SOUR:FUNC VOLT", None),
    (":SOUR:VOLT:RANG 1", None),
    (":SOUR:VOLT:ILIM 0.0001", None),
    (":SOUR:VOLT:DEL 0.001", None),
    (":SOUR:VOLT:READ:BACK ON", None),
    (':SENS:FUNC "CURR"', None),
    (":SENS:CURR:RANG:AUTO OFF", None),
    (":SENS:CURR:RANG 0.0001", None),
    (":SENS:CURR:NPLC 0.1", None),
    (":SENS:CURR:AZER OFF", None),
    (":SENS:AZER:ONCE", None),
    (":SENS:CURR:RSEN OFF", None),
    (":SENS:COUN 1", None),
    (":OUTP:SMOD ZERO", None),
]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connected(extra, *, configs=True):
    """A connected driver whose transport expects ``extra`` after the connect sequence."""
    script = CONNECT + (CONFIG if configs else []) + [(":SYST:ERR?", OK)] + list(extra)
    t = ScriptedTransport(script, name="smu")
    sleeps = Sleeps()
    smu = Keithley2450(t, configs={"": CFG} if configs else None, sleep=sleeps)
    smu.connect()
    return smu, t, sleeps


def on_at(smu, t, level):
    """Drive the cached state to output on at ``level`` (bypassing I/O) for later tests."""
    smu._output_on[""] = True
    smu._setpoint[""] = level


def test_satisfies_sourcemeter_protocol():
    with ScriptedTransport([]) as t:
        assert isinstance(Keithley2450(t), SourceMeter)


def test_connect_exact_sequence_and_snapshot():
    smu, t, _ = connected([])
    t.verify()
    snap = smu.snapshot()
    assert snap["identity"]["model"] == "MODEL 2450"
    assert snap["line_frequency_hz"] == 50.0
    assert snap["settings"]["_"]["limits"]["i_compliance_a"] == 1e-4
    assert snap["settings"]["_"]["nplc"] == 0.1


def test_connect_logs_and_clears_stale_errors(caplog):
    script = CONNECT[:2] + [(":SYST:ERR?", '-113,"Undefined header;1;2"'), (":SYST:ERR?", OK)] + CONNECT[3:]
    with ScriptedTransport(script + [(":SYST:ERR?", OK)]) as t:
        Keithley2450(t).connect()
    assert "Undefined header" in caplog.text


@pytest.mark.parametrize("lang", ["TSP", "SCPI2400"])
def test_wrong_command_set_is_refused(lang):
    with ScriptedTransport([CONNECT[0], ("*LANG?", lang)]) as t:
        with pytest.raises(InstrumentProtocolError, match=r"\*LANG SCPI"):
            Keithley2450(t).connect()


@pytest.mark.parametrize("idn", ["", "KEITHLEY INSTRUMENTS INC.,MODEL 2460,1,1", "garbage"])
def test_wrong_or_empty_identity_is_refused(idn):
    with ScriptedTransport([("*IDN?", idn)]) as t:
        with pytest.raises(InstrumentProtocolError):
            Keithley2450(t).connect()


def test_identity_model_token_case_insensitive():
    with ScriptedTransport([("*IDN?", "keithley instruments,model 2450,1,1")]) as t:
        assert Keithley2450(t).identify().serial == "1"


def test_connect_ramps_down_output_left_on():
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", "+1.000000E-01"),
                            (":SOUR:VOLT 0.05", None), (":SOUR:VOLT 0", None), (":OUTP OFF", None)]
    sleeps = Sleeps()
    with ScriptedTransport(script + CONFIG + [(":SYST:ERR?", OK)]) as t:
        Keithley2450(t, configs={"": CFG}, sleep=sleeps).connect()
    assert sleeps == [0.005, 0.005]


def test_connect_raises_on_configuration_error():
    script = CONNECT + CONFIG + [(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", OK)]
    with ScriptedTransport(script) as t:
        with pytest.raises(InstrumentReportedError) as info:
            Keithley2450(t, configs={"": CFG}).connect()
    assert info.value.code == -222 and info.value.entries == ((-222, "Data out of range"),)


def test_allowed_errors_are_tolerated():
    script = CONNECT + [(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", OK)]
    with ScriptedTransport(script) as t:
        Keithley2450(t, allowed_errors=[-222]).connect()


def test_configure_commands_and_autozero_modes():
    cfg = SmuChannelConfig(limits=LIMITS, nplc=1, current_range_a=1e-3, autozero="on", source_delay_s=0,
                           off_mode="himp", four_wire=True, voltage_range_v=2.0)
    smu, t, _ = connected([
        (":SOUR:FUNC VOLT", None), (":SOUR:VOLT:RANG 2", None), (":SOUR:VOLT:ILIM 0.0001", None),
        (":SOUR:VOLT:DEL 0", None), (":SOUR:VOLT:READ:BACK ON", None), (':SENS:FUNC "CURR"', None),
        (":SENS:CURR:RANG:AUTO OFF", None), (":SENS:CURR:RANG 0.001", None), (":SENS:CURR:NPLC 1", None),
        (":SENS:CURR:AZER ON", None), (":SENS:CURR:RSEN ON", None), (":SENS:COUN 1", None),
        (":OUTP:SMOD HIMP", None), (":SYST:ERR?", OK)])
    smu.configure("", cfg)
    t.verify()
    assert smu.config("") is cfg


@pytest.mark.parametrize("nplc", [0.001, 11])
def test_configure_rejects_nplc_outside_range_before_io(nplc):
    smu, t, _ = connected([])
    with pytest.raises(InstrumentConfigError):
        smu.configure("", SmuChannelConfig(limits=LIMITS, nplc=nplc, current_range_a=1e-4))
    t.verify()


def test_configure_rejects_unknown_channel():
    smu, t, _ = connected([])
    with pytest.raises(InstrumentConfigError):
        smu.configure("a", CFG)


def test_set_voltage_with_output_off_is_one_write():
    smu, t, sleeps = connected([(":SOUR:VOLT 0.5", None)])
    smu.set_voltage("", 0.5)
    t.verify()
    assert sleeps == []


def test_set_voltage_with_output_on_is_ramped():
    smu, t, sleeps = connected([(":SOUR:VOLT 0.04", None), (":SOUR:VOLT 0.08", None), (":SOUR:VOLT 0.12", None)])
    on_at(smu, t, 0.0)
    smu.set_voltage("", 0.12)
    t.verify()
    assert sleeps == [0.005] * 3


@pytest.mark.parametrize("level", [1.5, -1.01, math.nan, math.inf])
def test_out_of_limit_level_writes_nothing(level):
    smu, t, _ = connected([])
    with pytest.raises(LimitViolation):
        smu.set_voltage("", level)
    t.verify()


def test_power_limit_narrows_bounds():
    limits = SourceLimits(v_min=-1, v_max=1, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10,
                          max_power_w=2e-5)
    smu, t, _ = connected([])
    smu._configs[""] = SmuChannelConfig(limits=limits, nplc=0.1, current_range_a=1e-4)
    with pytest.raises(LimitViolation) as info:
        smu.set_voltage("", 0.3)
    assert info.value.bound == pytest.approx(0.2)
    t.verify()


def test_set_voltage_unconfigured_channel_refused_before_io():
    smu, t, _ = connected([], configs=False)
    with pytest.raises(InstrumentConfigError):
        smu.set_voltage("", 0.1)
    t.verify()


def test_voltage_setpoint_reads_instrument():
    smu, t, _ = connected([(":SOUR:VOLT?", "+2.500000E-01")])
    assert smu.voltage_setpoint("") == 0.25


def test_set_current_limit_and_refusal():
    smu, t, _ = connected([(":SOUR:VOLT:ILIM 5e-05", None)])
    smu.set_current_limit("", 5e-5)
    with pytest.raises(LimitViolation):
        smu.set_current_limit("", 2e-4)
    with pytest.raises(LimitViolation):
        smu.set_current_limit("", 0)
    t.verify()


@pytest.mark.parametrize("reply,expected", [("1", True), ("0", False)])
def test_compliance_tripped(reply, expected):
    smu, t, _ = connected([(":SOUR:VOLT:ILIM:TRIP?", reply)])
    assert smu.compliance_tripped("") is expected


def test_output_on_checks_interlock_then_switches():
    smu, t, _ = connected([(":OUTP:INT:TRIP?", "1"), (":OUTP ON", None), (":OUTP?", "1")])
    smu.output("", True)
    assert smu.output_enabled("") is True
    t.verify()


def test_output_on_refused_when_interlock_open():
    smu, t, _ = connected([(":OUTP:INT:TRIP?", "0")])
    with pytest.raises(InterlockError):
        smu.output("", True)
    t.verify()


def test_output_on_refused_when_level_far_from_zero():
    smu, t, _ = connected([(":SOUR:VOLT 0.5", None)])
    smu.set_voltage("", 0.5)
    with pytest.raises(LimitViolation, match="output_on_level"):
        smu.output("", True)
    t.verify()


def test_output_off():
    smu, t, _ = connected([(":OUTP OFF", None), (":OUTP?", "0")])
    smu.output("", False)
    assert smu.output_enabled("") is False


def test_measure_current_parses_reading_and_flag():
    smu, t, _ = connected([(':READ? "defbuffer1", SOUR, READ', "+1.000000E-01,+2.500000E-05"),
                           (":SOUR:VOLT:ILIM:TRIP?", "0")])
    r = smu.measure_current("")
    assert r == Reading(value=2.5e-5, source_value=0.1, compliance=False)


def test_measure_current_compliance_from_instrument_and_software_rule():
    smu, t, _ = connected([
        (':READ? "defbuffer1", SOUR, READ', "+1.000000E-01,+9.900000E-05"), (":SOUR:VOLT:ILIM:TRIP?", "0"),
        (':READ? "defbuffer1", SOUR, READ', "+1.000000E-01,+1.000000E-06"), (":SOUR:VOLT:ILIM:TRIP?", "1"),
    ])
    assert smu.measure_current("").compliance is True  # 0.99 of the limit
    assert smu.measure_current("").compliance is True  # instrument flag


@pytest.mark.parametrize("token,check", [("+9.9E37", math.isinf), ("+9.91E37", math.isnan)])
def test_measure_current_sentinels(token, check):
    smu, t, _ = connected([(':READ? "defbuffer1", SOUR, READ', f"+1.0E-01,{token}"), (":SOUR:VOLT:ILIM:TRIP?", "0")])
    r = smu.measure_current("")
    assert check(r.value) and r.compliance


def test_measure_current_garbage_is_protocol_error():
    smu, t, _ = connected([(':READ? "defbuffer1", SOUR, READ', "+1.0E-01")])
    with pytest.raises(InstrumentProtocolError):
        smu.measure_current("")


def sweep_script(levels, data, stored=None):
    stored = len(levels) if stored is None else stored
    return [
        (':TRAC:CLE "defbuffer1"', None),
        (":SOUR:LIST:VOLT " + ",".join(levels), None),
        (':SOUR:SWE:VOLT:LIST 1, 0.001, 1, ON, "defbuffer1"', None),
        (":INIT", None),
        ("*WAI", None),
        (':TRAC:ACT? "defbuffer1"', str(stored)),
    ] + ([(f':TRAC:DATA? 1, {stored}, "defbuffer1", SOUR, READ', data)] if stored else []) + [
        (":SOUR:VOLT?", "+0.000000E+00"),
        (":SYST:ERR?", OK),
    ]


def test_list_sweep_exact_commands_and_parsing():
    data = "+1.0E-02,+1.0E-06,+2.0E-02,+2.0E-06,+1.0E-02,+9.91E37"
    smu, t, _ = connected(sweep_script(["0.01", "0.02", "0.01"], data))
    on_at(smu, t, 0.0)
    res = smu.list_sweep({"": [0.01, 0.02, 0.01]}, settle_s=0.001)
    t.verify()
    assert res.channels == ("",)
    np.testing.assert_allclose(res.v_source[:, 0], [0.01, 0.02, 0.01])
    np.testing.assert_allclose(res.i_meas[:2, 0], [1e-6, 2e-6])
    assert math.isnan(res.i_meas[2, 0])
    assert res.compliance[:, 0].tolist() == [False, False, True]
    assert t.timeouts[0] > 5.0  # raised for the read-back, then restored
    assert t.timeout_s == 5.0


def test_list_sweep_long_list_is_chunked_by_100():
    data = ",".join(["+1.0E-02,+1.0E-06"] * 150)
    script = sweep_script(["0.01"] * 100, data, stored=150)
    script.insert(2, (":SOUR:LIST:VOLT:APP " + ",".join(["0.01"] * 50), None))
    smu, t, _ = connected(script)
    on_at(smu, t, 0.0)
    res = smu.list_sweep({"": [0.01] * 150}, settle_s=0.001)
    assert res.i_meas.shape == (150, 1)
    t.verify()


def test_list_sweep_aborted_by_fail_abort_flags_missing_points():
    smu, t, _ = connected(sweep_script(["0.01", "0.02"], "+1.0E-02,+1.0E-04", stored=1))
    on_at(smu, t, 0.0)
    res = smu.list_sweep({"": [0.01, 0.02]}, settle_s=0.001)
    assert res.compliance[:, 0].tolist() == [True, True]
    assert math.isnan(res.i_meas[1, 0])


@pytest.mark.parametrize("levels,settle", [
    ([0.01, 0.2], 0.001),        # step 0.19 V > max_step_v
    ([0.1], 0.001),              # first point 0.1 V away from present level 0 V
    ([0.01, 1.5], 0.001),        # out of bounds
    ([0.01, 0.05], 0.0),         # 0.04 V in ~2 ms > 10 V/s
    ([0.01], 1e-5),              # below the 2450's 50 us delay
    ([], 0.001),                 # empty
])
def test_list_sweep_refusals_write_nothing(levels, settle):
    smu, t, _ = connected([])
    on_at(smu, t, 0.0)
    with pytest.raises(LimitViolation):
        smu.list_sweep({"": levels}, settle_s=settle)
    t.verify()


def test_list_sweep_requires_output_on():
    smu, t, _ = connected([])
    with pytest.raises(InstrumentError, match="outputs off"):
        smu.list_sweep({"": [0.01]}, settle_s=0.001)
    t.verify()


def test_reset_reapplies_configuration():
    smu, t, _ = connected([("*RST", None), (":SOUR:VOLT?", "+0.0E+00")] + CONFIG + [(":SYST:ERR?", OK)])
    smu.reset()
    t.verify()


def test_safe_shutdown_ramps_down_and_switches_off():
    smu, t, sleeps = connected([
        (":ABOR", None), (":SOUR:VOLT 0.05", None), (":SOUR:VOLT 0", None), (":OUTP OFF", None), *VERIFY,
        (":SYST:ERR?", OK),
    ])
    on_at(smu, t, 0.1)
    report = smu.safe_shutdown()
    t.verify()
    assert report.safe and report.verified == {"": True}
    assert t.timeouts[0] == smu.shutdown_timeout_s and t.timeout_s == 5.0
    assert sleeps == [0.005, 0.005]


def test_safe_shutdown_continues_after_errors_and_never_raises(caplog):
    from hil.drivers.errors import InstrumentTimeout
    smu, t, _ = connected([
        (":ABOR", InstrumentTimeout("dead")), (":SOUR:VOLT 0.05", None), (":SOUR:VOLT 0", None),
        (":OUTP OFF", None), *VERIFY, (":SYST:ERR?", '-200,"Execution error"'), (":SYST:ERR?", OK),
    ])
    on_at(smu, t, 0.1)
    smu.safe_shutdown()
    t.verify()
    assert "abort failed" in caplog.text and "Execution error" in caplog.text


def test_safe_shutdown_is_idempotent():
    smu, t, _ = connected([(":ABOR", None), (":OUTP OFF", None), *VERIFY, (":SYST:ERR?", OK)] * 2)
    smu.safe_shutdown()
    smu.safe_shutdown()
    t.verify()


def test_context_manager_connects_and_shuts_down():
    script = CONNECT + [(":SYST:ERR?", OK), (":ABOR", None), (":OUTP OFF", None), *VERIFY, (":SYST:ERR?", OK)]
    with ScriptedTransport(script) as t:
        with Keithley2450(t) as smu:
            assert smu.identity is not None
    assert t.closed


# -- review fixes: connect ramp without limits, stale errors, power rule, configure/output-off safety --

POWER_LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0,
                            max_power_w=2e-5)
POWER_CFG = SmuChannelConfig(limits=POWER_LIMITS, nplc=0.1, current_range_a=1e-3, autozero="once",
                             source_delay_s=0.001)


def test_connect_ramps_unconfigured_output_with_builtin_step_before_switching_off():
    from hil.drivers.smu import UNCONFIGURED_RAMP_DWELL_S, UNCONFIGURED_RAMP_STEP_V
    assert (UNCONFIGURED_RAMP_STEP_V, UNCONFIGURED_RAMP_DWELL_S) == (0.1, 0.1)
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", "-3.000000E-01"),
                            (":SOUR:VOLT -0.2", None), (":SOUR:VOLT -0.1", None), (":SOUR:VOLT 0", None),
                            (":OUTP OFF", None), (":SYST:ERR?", OK)]
    sleeps = Sleeps()
    with ScriptedTransport(script) as t:
        smu = Keithley2450(t, sleep=sleeps)  # no configs, as `hil instruments probe` builds it
        smu.connect()
        t.verify()
    assert sleeps == [0.1, 0.1, 0.1]
    assert smu.state_at_connect == {"": {"output_on": True, "source_level_v": -0.3}}
    outputs = smu.snapshot()["outputs"]["_"]
    assert outputs["output_on"] is False and outputs["source_level_v"] == 0.0
    assert outputs["at_connect"] == {"output_on": True, "source_level_v": -0.3}


def test_connect_output_on_at_zero_is_switched_off_without_level_writes():
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", "+0.000000E+00"), (":OUTP OFF", None),
                            (":SYST:ERR?", OK)]
    sleeps = Sleeps()
    with ScriptedTransport(script) as t:
        Keithley2450(t, sleep=sleeps).connect()
        t.verify()
    assert sleeps == []


def test_connect_keeps_stale_errors_for_the_caller():
    script = CONNECT[:2] + [(":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", '-222,"Data out of range"'),
                            (":SYST:ERR?", OK)] + CONNECT[3:] + [(":SYST:ERR?", OK)]
    with ScriptedTransport(script) as t:
        smu = Keithley2450(t)
        smu.connect()
        t.verify()
    assert smu.stale_errors == [(-113, "Undefined header"), (-222, "Data out of range")]


def test_safe_shutdown_ramps_unconfigured_channel_known_on():
    smu, t, sleeps = connected([(":ABOR", None), (":SOUR:VOLT 0.1", None), (":SOUR:VOLT 0", None),
                                (":OUTP OFF", None), *VERIFY, (":SYST:ERR?", OK)], configs=False)
    on_at(smu, t, 0.2)
    smu.safe_shutdown()
    t.verify()
    assert sleeps == [0.1, 0.1]


def test_measure_current_above_max_power_ramps_down_switches_off_and_raises():
    from hil.drivers.errors import ComplianceError, PowerLimitError
    smu, t, sleeps = connected([
        (':READ? "defbuffer1", SOUR, READ', "+1.500000E-01,+2.000000E-04"), (":SOUR:VOLT:ILIM:TRIP?", "0"),
        (":SOUR:VOLT 0.1", None), (":SOUR:VOLT 0.05", None), (":SOUR:VOLT 0", None), (":OUTP OFF", None),
    ])
    smu._configs[""] = POWER_CFG
    on_at(smu, t, 0.15)
    with pytest.raises(PowerLimitError) as info:
        smu.measure_current("")
    t.verify()
    assert isinstance(info.value, ComplianceError)
    assert info.value.value == pytest.approx(3e-5) and info.value.limit == 2e-5 and info.value.point is None
    assert info.value.channels_made_safe == ("",) and info.value.safe_state_failures == ()
    assert sleeps == [0.005] * 3
    assert smu._output_on[""] is False and smu._setpoint[""] == 0.0


def test_measure_current_within_max_power_returns_reading():
    smu, t, _ = connected([(':READ? "defbuffer1", SOUR, READ', "+1.500000E-01,+1.300000E-04"),
                           (":SOUR:VOLT:ILIM:TRIP?", "0")])
    smu._configs[""] = POWER_CFG
    on_at(smu, t, 0.15)
    assert smu.measure_current("").value == pytest.approx(1.3e-4)  # 19.5 uW < 20 uW
    t.verify()
    assert smu._output_on[""] is True


def test_power_error_still_switches_off_when_the_ramp_fails():
    from hil.drivers.errors import InstrumentTimeout, PowerLimitError
    smu, t, _ = connected([
        (':READ? "defbuffer1", SOUR, READ', "+1.000000E-01,+5.000000E-04"), (":SOUR:VOLT:ILIM:TRIP?", "1"),
        (":SOUR:VOLT 0.05", InstrumentTimeout("dead")), (":OUTP OFF", None), (":SOUR:VOLT 0", None),
    ])
    smu._configs[""] = POWER_CFG
    on_at(smu, t, 0.1)
    with pytest.raises(PowerLimitError) as info:
        smu.measure_current("")
    t.verify()
    assert info.value.channels_made_safe == () and info.value.safe_state_failures[0][0] == ""


def test_list_sweep_point_above_max_power_makes_safe_and_raises():
    from hil.drivers.errors import PowerLimitError
    limits = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0,
                          max_power_w=1e-6)
    script = [
        (':TRAC:CLE "defbuffer1"', None),
        (":SOUR:LIST:VOLT 0.01,0.01", None),
        (':SOUR:SWE:VOLT:LIST 1, 0.001, 1, ON, "defbuffer1"', None),
        (":INIT", None), ("*WAI", None), (':TRAC:ACT? "defbuffer1"', "2"),
        (':TRAC:DATA? 1, 2, "defbuffer1", SOUR, READ', "+1.0E-02,+5.0E-05,+1.0E-02,+2.0E-04"),
        (":SOUR:VOLT?", "+5.000000E-03"),
        (":SOUR:VOLT 0", None), (":OUTP OFF", None),
    ]
    smu, t, _ = connected(script)
    smu._configs[""] = SmuChannelConfig(limits=limits, nplc=0.1, current_range_a=1e-3, source_delay_s=0.001)
    on_at(smu, t, 0.005)
    with pytest.raises(PowerLimitError) as info:
        smu.list_sweep({"": [0.01, 0.01]}, settle_s=0.001)
    t.verify()
    assert info.value.point == 1 and info.value.value == pytest.approx(2e-6)
    assert smu._output_on[""] is False


def test_configure_refused_while_output_on_writes_nothing():
    smu, t, _ = connected([])
    on_at(smu, t, 0.1)
    with pytest.raises(LimitViolation, match="output off before configure"):
        smu.configure("", CFG)
    t.verify()
    assert smu.config("") is CFG


def test_output_off_ramps_level_to_zero_first():
    smu, t, sleeps = connected([(":SOUR:VOLT 0.08", None), (":SOUR:VOLT 0.04", None), (":SOUR:VOLT 0", None),
                                (":OUTP OFF", None)])
    on_at(smu, t, 0.12)
    smu.output("", False)
    t.verify()
    assert sleeps == [0.005] * 3
    assert smu._setpoint[""] == 0.0 and smu._output_on[""] is False


def test_output_off_at_zero_volts_is_one_write():
    smu, t, sleeps = connected([(":OUTP OFF", None)])
    on_at(smu, t, 0.0)
    smu.output("", False)
    t.verify()
    assert sleeps == []


def test_output_off_switches_off_even_when_the_level_cannot_be_read():
    smu, t, _ = connected([(":SOUR:VOLT?", "garbage"), (":OUTP OFF", None)])
    on_at(smu, t, math.nan)
    with pytest.raises(InstrumentProtocolError):
        smu.output("", False)
    t.verify()
    assert smu._output_on[""] is False


# -- issue 9: resync before the next exchange, implausible read-backs, failed connect --------------


def test_timeout_resyncs_before_the_next_exchange_even_a_write():
    from hil.drivers.errors import InstrumentTimeout
    smu, t, _ = connected([
        (':READ? "defbuffer1", SOUR, READ', None),                # times out
        ("*IDN?", CONNECT[0][1]), (":SYST:ERR?", OK),            # resync first ...
        (":SOUR:VOLT 0.05", None),                                # ... then the write
    ])
    smu._output_on[""] = False
    with pytest.raises(InstrumentTimeout):
        smu._read_spot("")
    smu.set_voltage("", 0.05)
    t.verify()
    assert t.discards == 1


def test_connect_with_implausible_level_switches_off_without_a_ramp():
    from hil.drivers.errors import ImplausibleReadbackError
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", "+5.000000E+01"),
                            (":OUTP OFF", None), (":SOUR:VOLT 0", None), (":OUTP?", "0")]
    with ScriptedTransport(script) as t:
        smu = Keithley2450(t, configs={"": CFG})
        with pytest.raises(ImplausibleReadbackError) as info:
            smu.connect()
        t.verify()
    assert info.value.channel == "" and info.value.value == 50.0 and info.value.output_off_verified
    assert smu.state_at_connect[""]["implausible"].startswith("outside the configured")


@pytest.mark.parametrize("reply", ["nan", "+9.910000E+37", "+9.9E+37", "-1.0E+30"])
def test_non_finite_or_absurd_level_is_unknown_even_without_configuration(reply):
    from hil.drivers.errors import ImplausibleReadbackError
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", reply),
                            (":OUTP OFF", None), (":SOUR:VOLT 0", None), (":OUTP?", "0")]
    with ScriptedTransport(script) as t:
        with pytest.raises(ImplausibleReadbackError):
            Keithley2450(t).connect()
        t.verify()


def test_connect_failing_mid_ramp_runs_shutdown_and_attaches_the_report():
    """The lost ramp write leaves the level unknown, so shutdown reads it back before ramping."""
    from hil.drivers.errors import InstrumentConnectionError
    lost = InstrumentConnectionError("lost")
    # the failed write leaves the level unknown: the shutdown reads it back instead of assuming 0.1 V
    script = CONNECT[:6] + [(":OUTP?", "1"), (":SOUR:VOLT?", "+1.000000E-01"), (":SOUR:VOLT 0.05", lost),
                            (":ABOR", lost), (":SOUR:VOLT?", lost), (":OUTP OFF", lost), (":OUTP?", lost),
                            (":SYST:ERR?", lost)]
    with ScriptedTransport(script) as t:
        smu = Keithley2450(t, configs={"": CFG}, sleep=Sleeps())
        with pytest.raises(InstrumentConnectionError) as info:
            smu.connect()
        t.verify()
    report = info.value.shutdown_report
    assert not report.safe and report.maybe_live == ("",)
    assert any("MAY STILL BE LIVE" in note for note in info.value.__notes__)
