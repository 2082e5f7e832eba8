"""Protocol tests for the Keithley 2600B TSP driver: exact statements via ScriptedTransport."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.blocks import encode_ieee_block
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InstrumentReportedError, LimitViolation
from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig, SourceMeter
from hil.drivers.transport import ScriptedTransport

EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t1.00000e+00"
ZERO = "0.00000e+00"
LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0)
CFG = SmuChannelConfig(limits=LIMITS, nplc=0.1, current_range_a=1e-4, autozero="once", source_delay_s=0.001)


def connect_script(model="2602B", channels=("a", "b")):
    script = [
        ("*IDN?", f"Keithley Instruments Inc., Model {model}, 1398765, 3.3.5"),
        ("print(localnode.model)", model),
        ("print(errorqueue.next())", EMPTY),
        ("errorqueue.clear()", None),
        ("print(localnode.linefreq)", "6.00000e+01"),
        ("format.data = format.ASCII", None),
    ]
    for ch in channels:
        script += [(f"print(smu{ch}.source.output)", ZERO), (f"print(smu{ch}.source.levelv)", ZERO)]
    return script


def config_script(ch, cfg=CFG):
    s = f"smu{ch}"
    return [(line, None) for line in (
        f"{s}.source.func = {s}.OUTPUT_DCVOLTS",
        f"{s}.source.autorangev = {s}.AUTORANGE_OFF",
        f"{s}.source.rangev = 1",
        f"{s}.source.limiti = 0.0001",
        f"{s}.source.delay = 0.001",
        f"{s}.measure.autorangei = {s}.AUTORANGE_OFF",
        f"{s}.measure.rangei = 0.0001",
        f"{s}.measure.nplc = 0.1",
        f"{s}.measure.autozero = {s}.AUTOZERO_ONCE",
        f"{s}.measure.delay = 0",
        f"{s}.measure.count = 1",
        f"{s}.sense = {s}.SENSE_LOCAL",
        f"{s}.source.offmode = {s}.OUTPUT_ZERO",
    )]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connected(extra, *, channels=("a", "b"), binary=False):
    script = connect_script()
    for ch in channels:
        script += config_script(ch)
    script += [("print(errorqueue.next())", EMPTY)] + list(extra)
    t = ScriptedTransport(script, name="smu26")
    sleeps = Sleeps()
    smu = Keithley2600(t, configs={ch: CFG for ch in channels}, sleep=sleeps, binary_transfer=binary)
    smu.connect()
    return smu, t, sleeps


def test_satisfies_sourcemeter_protocol():
    with ScriptedTransport([]) as t:
        assert isinstance(Keithley2600(t), SourceMeter)


def test_connect_sequence():
    smu, t, _ = connected([])
    t.verify()
    assert smu.channels == ("a", "b")
    assert smu.line_frequency_hz == 60.0
    assert smu.snapshot()["model"] == "2602B"


def test_single_channel_model_narrows_channels_and_rejects_smub():
    with ScriptedTransport(connect_script("2601B", ("a",)) + [("print(errorqueue.next())", EMPTY)]) as t:
        smu = Keithley2600(t)
        smu.connect()
    assert smu.channels == ("a",)
    t2 = ScriptedTransport(connect_script("2601B", ("a",))[:2])
    with pytest.raises(InstrumentConfigError):
        Keithley2600(t2, configs={"b": CFG}).connect()


WIDE = SourceLimits(v_min=-100.0, v_max=100.0, i_compliance_a=1e-4, max_step_v=0.05, max_slew_v_per_s=10.0)
WIDE_CFG = SmuChannelConfig(limits=WIDE, nplc=0.1, current_range_a=1e-4, autozero="once", source_delay_s=0.001)


def test_limits_beyond_the_named_models_range_are_refused_before_any_io():
    """A 2602B sources at most 40.4 V: 100 V limits are refused when the bench names the model
    (nothing written), accepted for a 2612B, whose 200 V range covers them."""
    with ScriptedTransport([]) as t:
        with pytest.raises(InstrumentConfigError, match=r"v_min -100 V is beyond the 2602B's 40\.4 V source range"):
            Keithley2600(t, model="2602B", configs={"a": WIDE_CFG})
        t.verify()
        assert Keithley2600(t, model="2612B", configs={"a": WIDE_CFG}).max_source_v == 202.0


def test_limits_beyond_the_identified_models_range_are_refused_at_configure():
    """Without a model named, the model the instrument identifies as decides: a 2602B refuses a
    configuration with 100 V limits before writing any of it."""
    smu, t, _ = connected([], channels=())
    assert smu.max_source_v == 40.4
    with pytest.raises(InstrumentConfigError, match=r"beyond the 2602B's 40\.4 V source range"):
        smu.configure("a", WIDE_CFG)
    t.verify()  # nothing written after connect


def test_a_readback_beyond_the_identified_models_range_is_implausible():
    """50 V read back at connect is beyond any 2602B level (its range is 40 V): never a ramp start;
    the output is switched off at once and 0 V programmed."""
    from hil.drivers.errors import ImplausibleReadbackError

    script = connect_script(channels=())
    script += [("print(smua.source.output)", "1.00000e+00"), ("print(smua.source.levelv)", "5.00000e+01"),
               ("smua.source.output = smua.OUTPUT_OFF", None), ("smua.source.levelv = 0", None),
               ("print(smua.source.output)", ZERO)]
    with ScriptedTransport(script) as t:
        smu = Keithley2600(t)
        smu.channels = ("a",)
        with pytest.raises(ImplausibleReadbackError) as info:
            smu.connect()
        t.verify()
    assert info.value.value == 50.0 and info.value.output_off_verified
    assert smu.state_at_connect["a"]["implausible"] == "beyond the instrument's 40.4 V range"


def test_localnode_model_mismatch_is_protocol_error():
    script = connect_script()[:1] + [("print(localnode.model)", "2636B")]
    with ScriptedTransport(script) as t:
        with pytest.raises(InstrumentProtocolError, match="localnode.model"):
            Keithley2600(t).connect()


def test_unsupported_model_refused():
    with ScriptedTransport([("*IDN?", "Keithley Instruments Inc., Model 2400, 1, 1")]) as t:
        with pytest.raises(InstrumentProtocolError, match="2400"):
            Keithley2600(t).connect()


def test_error_queue_entries_parsed_in_exponent_form():
    smu, t, _ = connected([
        ("print(errorqueue.next())", "-2.86000e+02\tTSP Runtime error at line 1\t2.00000e+01\t1.00000e+00"),
        ("print(errorqueue.next())", EMPTY),
    ])
    with pytest.raises(InstrumentReportedError) as info:
        smu.check_errors()
    assert info.value.entries == ((-286, "TSP Runtime error at line 1"),)


def test_drain_never_empty_is_protocol_error():
    smu, t, _ = connected([("print(errorqueue.next())", "-2.85000e+02\tx\t20\t1")] * 3)
    with pytest.raises(InstrumentProtocolError):
        smu.drain_errors(max_entries=3)


def test_state_query_timeout_resyncs_and_retries_once():
    idn = "Keithley Instruments Inc., Model 2602B, 1398765, 3.3.5"
    smu, t, _ = connected([
        ("print(smua.source.levelv)", None),  # a failed print() gives no reply at all
        ("*IDN?", idn), ("print(errorqueue.next())", EMPTY),
        ("print(smua.source.levelv)", "5.00000e-02"),
    ])
    assert smu.voltage_setpoint("a") == pytest.approx(0.05)
    assert t.discards == 1
    t.verify()


def test_state_query_gives_up_when_resync_fails():
    from hil.drivers.errors import InstrumentConnectionError
    smu, t, _ = connected([("print(smua.source.output)", None), ("*IDN?", None), ("*IDN?", None)])
    with pytest.raises(InstrumentConnectionError):
        smu.output_enabled("a")


def test_set_voltage_ramped_per_channel():
    smu, t, sleeps = connected([("smub.source.levelv = 0.05", None), ("smub.source.levelv = 0.1", None)])
    smu._output_on["b"] = True
    smu.set_voltage("b", 0.1)
    t.verify()
    assert sleeps == [0.005, 0.005]


def test_set_voltage_refused_before_io():
    smu, t, _ = connected([])
    with pytest.raises(LimitViolation):
        smu.set_voltage("a", -2)
    with pytest.raises(InstrumentConfigError):
        smu.set_voltage("c", 0.1)
    t.verify()


def test_voltage_setpoint_and_current_limit_and_compliance():
    smu, t, _ = connected([
        ("print(smua.source.levelv)", "1.00000e-01"),
        ("smua.source.limiti = 5e-05", None),
        ("print(smua.source.compliance)", "true"),
        ("print(smub.source.compliance)", "false"),
    ])
    assert smu.voltage_setpoint("a") == pytest.approx(0.1)
    smu.set_current_limit("a", 5e-5)
    assert smu.compliance_tripped("a") is True
    assert smu.compliance_tripped("b") is False
    t.verify()


def test_output_on_off_and_state():
    smu, t, _ = connected([
        ("smua.source.output = smua.OUTPUT_ON", None),
        ("print(smua.source.output)", "1.00000e+00"),
        ("smua.source.output = smua.OUTPUT_OFF", None),
    ])
    smu.output("a", True)
    assert smu.output_enabled("a") is True
    smu.output("a", False)
    t.verify()


def test_measure_current_one_round_trip():
    smu, t, _ = connected([
        ("print(smua.measure.i(), smua.source.levelv, smua.source.compliance)", "2.50000e-05\t1.00000e-01\tfalse"),
        ("print(smua.measure.i(), smua.source.levelv, smua.source.compliance)", "1.00000e-04\t1.00000e-01\ttrue"),
        ("print(smua.measure.i(), smua.source.levelv, smua.source.compliance)", "9.91000e+37\t1.00000e-01\tfalse"),
        ("print(smua.measure.i(), smua.source.levelv, smua.source.compliance)", "1.0e-5\tgarbage"),
    ])
    r = smu.measure_current("a")
    assert (r.value, r.source_value, r.compliance) == (2.5e-5, 0.1, False)
    assert smu.measure_current("a").compliance is True
    r = smu.measure_current("a")
    assert math.isnan(r.value) and r.compliance
    with pytest.raises(InstrumentProtocolError):
        smu.measure_current("a")


def sweep_lines(levels_a, levels_b=None):
    n = len(levels_a)
    lines = []
    vectors = [("a", levels_a)] + ([("b", levels_b)] if levels_b else [])
    for ch, levels in vectors:
        s = f"smu{ch}"
        stim = "0" if ch == "a" else "smua.trigger.SOURCE_COMPLETE_EVENT_ID"
        endpulse = "smub.trigger.MEASURE_COMPLETE_EVENT_ID" if (ch == "a" and levels_b) else "0"
        lines += [
            f"{s}.nvbuffer1.clear()", f"{s}.nvbuffer1.appendmode = 1", f"{s}.nvbuffer1.collectsourcevalues = 1",
            f"{s}.nvbuffer1.collecttimestamps = 1", f"{s}.measure.delay = 0.002",
            f"{s}.trigger.source.listv({{{', '.join(levels)}}})", f"{s}.trigger.source.action = {s}.ENABLE",
            f"{s}.trigger.source.stimulus = {stim}", f"{s}.trigger.measure.i({s}.nvbuffer1)",
            f"{s}.trigger.measure.action = {s}.ENABLE", f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD",
            f"{s}.trigger.endpulse.stimulus = {endpulse}", f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE", f"{s}.trigger.arm.count = 1",
            f"{s}.trigger.count = {n}",
        ]
    lines += (["smub.trigger.initiate()"] if levels_b else []) + ["smua.trigger.initiate()", "waitcomplete()"]
    lines += ["smua.measure.delay = 0"] + (["smub.measure.delay = 0"] if levels_b else [])
    return "\r\n".join(["loadandrunscript"] + lines + ["endscript"])


def test_two_channel_sweep_one_script_one_ascii_transfer():
    reply = ", ".join([
        "1.0e-02", "1.0e-06", "5.0e+00", "2.0e-02", "2.0e-06", "5.0e+00",
        "2.0e-02", "2.2e-06", "5.01e+00", "3.0e-02", "9.9e+37", "5.01e+00",
    ])
    smu, t, _ = connected([
        (sweep_lines(["0.01", "0.02"], ["0.02", "0.03"]), None),
        ("printbuffer(1, 2, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps, "
         "smub.nvbuffer1.sourcevalues, smub.nvbuffer1.readings, smub.nvbuffer1.timestamps)", reply),
        ("print(smua.source.levelv)", ZERO), ("print(smub.source.levelv)", ZERO),
        ("print(errorqueue.next())", EMPTY),
    ])
    smu._output_on.update(a=True, b=True)
    res = smu.list_sweep({"a": [0.01, 0.02], "b": [0.02, 0.03]}, settle_s=0.002)
    t.verify()
    assert res.channels == ("a", "b") and res.i_meas.shape == (2, 2)
    np.testing.assert_allclose(res.v_source, [[0.01, 0.02], [0.02, 0.03]])
    assert res.i_meas[0].tolist() == [1e-6, 2e-6] and math.isinf(res.i_meas[1, 1])
    assert res.compliance.tolist() == [[False, False], [False, True]]
    np.testing.assert_allclose(res.timestamps, [[0, 0], [0.01, 0.01]])


def test_binary_sweep_transfer_little_endian_real32():
    values = np.array([0.01, 1e-6, 0.0, 0.02, 9.91e37, 0.001], dtype="<f4")
    smu, t, _ = connected([
        (sweep_lines(["0.01", "0.02"]), None),
        ("format.data = format.REAL32", None),
        ("format.byteorder = format.LITTLEENDIAN", None),
        ("printbuffer(1, 2, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps)",
         encode_ieee_block(values, "<f4", indefinite=True) + b"\n"),
        ("format.data = format.ASCII", None),
        ("print(smua.source.levelv)", ZERO),
        ("print(errorqueue.next())", EMPTY),
    ], channels=("a",), binary=True)
    smu._output_on["a"] = True
    res = smu.list_sweep({"a": [0.01, 0.02]}, settle_s=0.002)
    t.verify()
    np.testing.assert_allclose(res.v_source[:, 0], [0.01, 0.02], rtol=1e-6)
    assert math.isnan(res.i_meas[1, 0]) and res.compliance[:, 0].tolist() == [False, True]


def test_binary_transfer_restores_ascii_after_bad_block():
    smu, t, _ = connected([
        (sweep_lines(["0.01"]), None),
        ("format.data = format.REAL32", None),
        ("format.byteorder = format.LITTLEENDIAN", None),
        ("printbuffer(1, 1, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps)",
         b"#0\x00\x01\n"),
        ("format.data = format.ASCII", None),
    ], channels=("a",), binary=True)
    smu._output_on["a"] = True
    with pytest.raises(InstrumentProtocolError):
        smu.list_sweep({"a": [0.01]}, settle_s=0.002)
    t.verify()


def test_sweep_refusals_write_nothing():
    smu, t, _ = connected([])
    smu._output_on.update(a=True, b=True)
    with pytest.raises(LimitViolation):
        smu.list_sweep({"a": [0.01, 0.02], "b": [0.01]}, settle_s=0.002)  # unequal lengths
    with pytest.raises(LimitViolation):
        smu.list_sweep({"a": [0.01, 0.1]}, settle_s=0.002)  # step
    with pytest.raises(LimitViolation):
        smu.list_sweep({}, settle_s=0.002)
    t.verify()


def test_reset_reapplies_configuration():
    smu, t, _ = connected(
        [("reset()", None), ("print(smua.source.levelv)", ZERO)] + config_script("a")
        + [("print(errorqueue.next())", EMPTY)], channels=("a",))
    smu.channels = ("a",)
    smu.reset()
    t.verify()


VERIFY = [("print(smua.source.output)", "0.00000e+00"), ("print(smua.source.levelv)", "0.00000e+00"),
          ("print(smub.source.output)", "0.00000e+00"), ("print(smub.source.levelv)", "0.00000e+00")]


def test_safe_shutdown_aborts_ramps_and_switches_off_both():
    smu, t, sleeps = connected([
        ("smua.abort()", None), ("smub.abort()", None),
        ("smua.source.levelv = 0.05", None), ("smua.source.levelv = 0", None),
        ("smua.source.output = smua.OUTPUT_OFF", None), ("smub.source.output = smub.OUTPUT_OFF", None),
        *VERIFY, ("print(errorqueue.next())", EMPTY),
    ])
    smu._output_on.update(a=True, b=False)
    smu._setpoint.update(a=0.1, b=0.0)
    assert smu.safe_shutdown().safe
    t.verify()
    assert sleeps == [0.005, 0.005]


def test_safe_shutdown_second_signal_skips_ramps_but_switches_off():
    class Interrupting(Sleeps):
        def __call__(self, seconds):
            super().__call__(seconds)
            raise KeyboardInterrupt

    smu, t, _ = connected([
        ("smua.abort()", None), ("smub.abort()", None),
        ("smua.source.levelv = 0.05", None),
        ("smua.source.output = smua.OUTPUT_OFF", None), ("smua.source.levelv = 0", None),
        ("smub.source.output = smub.OUTPUT_OFF", None),
        *VERIFY, ("print(errorqueue.next())", EMPTY),
    ])
    smu._sleep = Interrupting()
    smu._output_on.update(a=True, b=False)
    smu._setpoint.update(a=0.1, b=0.0)
    with pytest.raises(KeyboardInterrupt):
        smu.safe_shutdown()
    t.verify()


# -- review fixes: configure refused while sourcing, output off ramps first, connect ramp without limits --


def test_configure_refused_while_output_on_writes_nothing():
    smu, t, _ = connected([])
    smu._output_on["b"] = True
    smu._setpoint["b"] = 0.2
    with pytest.raises(LimitViolation, match="output off before configure"):
        smu.configure("b", SmuChannelConfig(limits=LIMITS, nplc=1, current_range_a=1e-3))
    t.verify()
    assert smu.config("b") is CFG


def test_configure_with_output_off_still_applies():
    smu, t, _ = connected(config_script("a") + [("print(errorqueue.next())", EMPTY)])
    smu._output_on["b"] = True  # another channel sourcing does not block channel a
    smu.configure("a", CFG)
    t.verify()


def test_output_off_ramps_to_zero_before_switching_off():
    smu, t, sleeps = connected([("smua.source.levelv = -0.05", None), ("smua.source.levelv = 0", None),
                                ("smua.source.output = smua.OUTPUT_OFF", None)])
    smu._output_on["a"] = True
    smu._setpoint["a"] = -0.1
    smu.output("a", False)
    t.verify()
    assert sleeps == [0.005, 0.005]
    assert smu._setpoint["a"] == 0.0


def test_connect_ramps_unconfigured_channel_found_on():
    script = connect_script(channels=())
    script += [("print(smua.source.output)", "1.00000e+00"), ("print(smua.source.levelv)", "1.50000e-01"),
               ("print(smub.source.output)", ZERO), ("print(smub.source.levelv)", ZERO),
               ("smua.source.levelv = 0.075", None), ("smua.source.levelv = 0", None),
               ("smua.source.output = smua.OUTPUT_OFF", None), ("print(errorqueue.next())", EMPTY)]
    sleeps = Sleeps()
    with ScriptedTransport(script, name="smu26") as t:
        smu = Keithley2600(t, sleep=sleeps)
        smu.connect()
        t.verify()
    assert sleeps == [0.1, 0.1]
    assert smu.snapshot()["outputs"]["a"]["at_connect"] == {"output_on": True, "source_level_v": 0.15}


def test_sweep_refused_when_channel_timing_differs():
    from hil.drivers.errors import InstrumentConfigError
    smu, t, _ = connected([])
    smu._configs["b"] = SmuChannelConfig(limits=LIMITS, nplc=1.0, current_range_a=1e-4, autozero="once",
                                         source_delay_s=0.001)
    smu._output_on.update(a=True, b=True)
    with pytest.raises(InstrumentConfigError, match="equal nplc"):
        smu.list_sweep({"a": [0.01], "b": [0.01]}, settle_s=0.0)
    t.verify()


def test_long_list_is_built_in_lines_of_100_values():
    smu, _, _ = connected([])
    lines = smu._sweep_script({"a": np.linspace(0, 0.1, 250)}, 0.0)
    assert lines[0].startswith("hil_list_a = {") and lines[0].count(",") == 99
    assert lines[1].startswith("for i, v in ipairs({") and lines[1].endswith("do hil_list_a[100 + i] = v end")
    assert lines[2].endswith("do hil_list_a[200 + i] = v end") and lines[2].count(",") == 1 + 49  # "i, v" + 49 separators
    assert "smua.trigger.source.listv(hil_list_a)" in lines
    assert all(len(line) < 2100 for line in lines)


def test_pulse_uses_kipulse_and_checks_limits_first():
    pulse_limits = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-4, max_step_v=1.0, max_slew_v_per_s=1e4)
    cfg = SmuChannelConfig(limits=pulse_limits, nplc=0.1, current_range_a=1e-4, autozero="once", source_delay_s=0.001)
    script = connect_script() + config_script("a", cfg) + [("print(errorqueue.next())", EMPTY)]
    script += [("smua.source.levelv = 0", None), ("smua.source.output = smua.OUTPUT_ON", None),
               ("print(ConfigPulseVMeasureI(smua, 0, 0.8, 0.0001, 0.0001, 0.0001, 2, nil, 1))", "true\tPulse train configured"),
               ("print(InitiatePulseTest(1))", "true\tPulse train initiated"),
               ("print(errorqueue.next())", EMPTY),
               ("print(ConfigPulseVMeasureI(smua, 0, -0.5, 0.0001, 1e-05, 1e-05, 1, nil, 1))", "false\tton too short")]
    t = ScriptedTransport(script, name="smu26")
    smu = Keithley2600(t, configs={"a": cfg}, sleep=Sleeps())
    smu.connect()
    smu.set_voltage("a", 0.0)
    smu.output("a", True)
    smu.pulse("a", 0.8, 1e-4, count=2)
    with pytest.raises(LimitViolation):
        smu.pulse("a", 1.2, 1e-4)  # beyond v_max: nothing sent
    with pytest.raises(InstrumentProtocolError, match="ton too short"):
        smu.pulse("a", -0.5, 1e-5)
    t.verify()


# -- triggered sweeps on the bench trigger line (TriggeredSweeps) ---------------------------------

def _channel_lines(s, values, stimulus):
    return [f"{s}.nvbuffer1.clear()", f"{s}.nvbuffer1.appendmode = 1", f"{s}.nvbuffer1.collectsourcevalues = 1",
            f"{s}.nvbuffer1.collecttimestamps = 1", f"{s}.measure.delay = 0",
            f"{s}.trigger.source.listv({{{', '.join(values)}}})", f"{s}.trigger.source.action = {s}.ENABLE",
            f"{s}.trigger.source.stimulus = {stimulus}", f"{s}.trigger.measure.i({s}.nvbuffer1)",
            f"{s}.trigger.measure.action = {s}.ENABLE", f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD",
            f"{s}.trigger.endpulse.stimulus = 0", f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE",
            f"{s}.trigger.arm.count = 1", f"{s}.trigger.count = {len(values)}"]


def _script(lines):
    return "\r\n".join(["loadandrunscript", *lines, "endscript"])


def test_triggered_lead_paces_with_timer_and_drives_the_line():
    from hil.drivers.parsing import format_number

    period = format_number(0.001 + 0.1 / 60 + 2e-4)
    arm = _script([f"trigger.timer[1].delay = {period}", "trigger.timer[1].count = 1",
                   "trigger.timer[1].passthrough = true", "trigger.timer[1].stimulus = smua.trigger.ARMED_EVENT_ID",
                   "digio.trigger[3].mode = digio.TRIG_FALLING", "digio.trigger[3].pulsewidth = 1e-05",
                   "digio.trigger[3].stimulus = trigger.timer[1].EVENT_ID",
                   *_channel_lines("smua", ["0.01", "0.02"], "trigger.timer[1].EVENT_ID")])
    restore = _script(["digio.trigger[3].stimulus = 0", "trigger.timer[1].stimulus = 0",
                       "smua.trigger.source.stimulus = 0", "smua.measure.delay = 0"])
    script = connect_script() + config_script("a") + config_script("b") + [("print(errorqueue.next())", EMPTY)] + [
        (arm, None), ("print(errorqueue.next())", EMPTY),
        (_script(["smua.trigger.initiate()"]), None),
        ("waitcomplete()", None),
        ("printbuffer(1, 2, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.readings)",
         "1.0e-02, 1.0e-06, 2.0e-02, 9.9e-05"),
        (restore, None), ("print(smua.source.levelv)", ZERO), ("print(errorqueue.next())", EMPTY),
    ]
    t = ScriptedTransport(script, name="smu26")
    smu = Keithley2600(t, configs={"a": CFG, "b": CFG}, sleep=Sleeps(), trigger_line=3)
    smu.connect()
    smu._output_on.update(a=True, b=True)
    assert smu.bench_trigger_wired
    smu.arm_sweep({"a": [0.01, 0.02]}, 0.0, lead=True)
    smu.start_sweep()
    res = smu.fetch_sweep()
    t.verify()
    np.testing.assert_allclose(res.i_meas[:, 0], [1e-6, 9.9e-5])
    assert res.compliance[:, 0].tolist() == [False, True]  # 9.9e-5 A >= 0.98 * 1e-4 A


def test_triggered_follower_waits_on_the_line():
    arm = _script(["digio.trigger[1].mode = digio.TRIG_FALLING", "digio.trigger[1].stimulus = 0",
                   "digio.trigger[1].clear()",
                   *_channel_lines("smub", ["0.01"], "digio.trigger[1].EVENT_ID"), "smub.trigger.initiate()"])
    smu, t, _ = connected([(arm, None), ("print(errorqueue.next())", EMPTY)])
    smu.trigger_line = 1
    smu._output_on.update(a=True, b=True)
    smu.arm_sweep({"b": [0.01]}, 0.0, lead=False)
    t.verify()


def test_triggered_sweep_refusals_write_nothing():
    smu, t, _ = connected([])
    smu._output_on.update(a=True, b=True)
    with pytest.raises(InstrumentConfigError, match="trigger_line"):
        smu.arm_sweep({"a": [0.01]}, 0.0, lead=True)   # not wired to the bench trigger
    smu.trigger_line = 1
    with pytest.raises(LimitViolation):
        smu.arm_sweep({"a": [0.01, 1.5]}, 0.0, lead=True)  # beyond v_max
    with pytest.raises(LimitViolation):
        smu.arm_sweep({"a": [0.04, 0.1]}, 0.0, lead=True)  # a step above max_step_v
    t.verify()
    with pytest.raises(InstrumentConfigError, match="digital I/O line"):
        Keithley2600(ScriptedTransport([]), trigger_line=15)
