"""Keithley 2600B emulator through real pyvisa-py sockets, with the real driver and raw TSP."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pyvisa.errors import VisaIOError

from tsp_bench_helpers import G_LEAK_S, G_S, LINE_HZ, h0_voltage, smu_config
from hil.drivers.errors import InstrumentReportedError

#: noise σ of a 1 mA-range reading at 1 NPLC is 2e-9 A, the quantum 1e-9 A
I_TOL_A = 2e-8


def sync(driver) -> None:
    """One query round trip: every earlier write has been executed by the emulator."""
    driver.output_enabled(driver.channels[0])


def i_x0(x0: float, x1: float) -> float:
    """Current sourced into x0, A."""
    return G_S * (x0 - h0_voltage(x0, x1))


def test_level_reaches_the_world_and_another_smu_reads_it(tsp_bench):
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config(), "b": smu_config()})
    out = tsp_bench.k2600(tsp_bench.out, {"a": smu_config()})
    smu.connect()
    out.connect()
    out.output("a", True)
    for ch in ("a", "b"):
        smu.output(ch, True)
    smu.set_voltage("a", 0.9)
    smu.set_voltage("b", -0.4)
    sync(smu)  # writes are not confirmed: without a round trip the other instrument may read first
    reading = out.measure_current("a")
    # the output SMU holds y0 at 0 V and sinks what flows from h0
    assert reading.value == pytest.approx(-G_S * h0_voltage(0.9, -0.4), abs=I_TOL_A)
    spot = smu.measure_current("a")
    assert spot.value == pytest.approx(i_x0(0.9, -0.4), abs=I_TOL_A)
    assert spot.source_value == pytest.approx(0.9)
    # the ramp reached the instrument as steps of at most max_step_v, from 0 V
    levels = [float(line.split("=")[1]) for line in tsp_bench.smu.transcript.received()
              if line.startswith("smua.source.levelv")]
    steps = np.diff([0.0] + levels)
    assert levels[-1] == pytest.approx(0.9) and np.all(np.abs(steps) <= 0.25 + 1e-12)
    smu.safe_shutdown()
    out.safe_shutdown()
    sync(smu)
    for ch in ("a", "b"):
        last = tsp_bench.smu.output_history(ch)[-1]
        assert last["output_on"] is False and last["level_v"] == 0.0
    assert tsp_bench.world.line_voltage("x0") == 0.0


def test_two_channel_list_sweep_fills_one_buffer_per_channel(tsp_bench):
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config(), "b": smu_config()})
    smu.connect()
    smu.output("a", True)
    smu.output("b", True)
    va = np.array([0.1, 0.3, 0.5, 0.7, 0.5, 0.3, 0.1])
    vb = np.array([0.0, -0.2, -0.4, -0.2, 0.0, 0.2, 0.0])
    t0 = tsp_bench.clock.now_s
    result = smu.list_sweep({"a": va, "b": vb}, settle_s=2e-3)
    np.testing.assert_allclose(result.v_source[:, 0], va)
    np.testing.assert_allclose(result.v_source[:, 1], vb)
    expected_a = [i_x0(a, b) for a, b in zip(va, vb)]
    expected_b = [G_S * (b - h0_voltage(a, b)) for a, b in zip(va, vb)]
    np.testing.assert_allclose(result.i_meas[:, 0], expected_a, atol=I_TOL_A)
    np.testing.assert_allclose(result.i_meas[:, 1], expected_b, atol=I_TOL_A)
    assert not result.compliance.any()
    # one point takes at least source delay 1 ms + step overhead + settle 2 ms + 1 NPLC at 50 Hz
    # (autozero once); gating one channel on the other may add the other's source delay
    point_s = 1e-3 + 50e-6 + 2e-3 + 1.0 / LINE_HZ
    spacing = np.diff(result.timestamps[:, 0])
    assert np.ptp(spacing) < 1e-9 and point_s - 1e-9 <= spacing[0] <= point_s + 2e-3
    assert tsp_bench.clock.now_s - t0 >= len(va) * point_s
    for letter in ("a", "b"):
        buf = tsp_bench.smu.channels[letter].nvbuffer1
        assert len(buf.readings) == len(va)
    # after the sweep the source is back at its programmed level (SOURCE_IDLE)
    assert tsp_bench.world.line_voltage("x0") == pytest.approx(0.0)


def test_printbuffer_ascii_and_real32_give_the_same_sweep(tsp_bench):
    levels = np.array([0.2, 0.4, 0.6, 0.4, 0.2])
    results = []
    for binary in (False, True):
        smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()}, binary_transfer=binary)
        smu.connect()
        smu.output("a", True)
        results.append(smu.list_sweep({"a": levels}, settle_s=1e-3))
        smu.safe_shutdown()
        smu.close()
    ascii_, binary_ = results
    np.testing.assert_allclose(binary_.v_source, ascii_.v_source, rtol=1e-6)
    np.testing.assert_allclose(binary_.i_meas, ascii_.i_meas, atol=I_TOL_A)
    sent = tsp_bench.smu.transcript.received()
    assert "format.data = format.REAL32" in sent and sent[-1] != "format.data = format.REAL32"

    raw = tsp_bench.raw(tsp_bench.smu)
    raw.write("format.data = format.REAL32")
    raw.write("format.byteorder = format.LITTLEENDIAN")
    raw.write("t = {1.5, -2.25, 3e-9}")
    raw.write("printbuffer(1, 3, t)")
    block = raw.read_raw()
    assert block[:2] == b"#0" and block[-1:] == b"\n" and len(block) == 2 + 12 + 1
    assert struct.unpack("<3f", block[2:14]) == pytest.approx((1.5, -2.25, 3e-9), rel=1e-6)
    raw.write("format.byteorder = format.BIGENDIAN")
    raw.write("printbuffer(1, 3, t)")
    assert struct.unpack(">3f", raw.read_raw()[2:14]) == pytest.approx((1.5, -2.25, 3e-9), rel=1e-6)
    raw.write("format.data = format.ASCII")
    # print() ignores format.data; printbuffer clamps the end index to the table length
    assert raw.query("printbuffer(1, 10, t)") == "1.50000e+00, -2.25000e+00, 3.00000e-09"
    assert raw.query("print(t[2], #t, true, nil)") == "-2.25000e+00\t3.00000e+00\ttrue\tnil"


def test_error_queue_codes_and_silent_failures(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.smu, timeout_s=0.3)
    raw.write("smua.source.levelv = ")            # Lua syntax error
    raw.write("smuc.source.levelv = 1")          # runtime error: no such channel
    raw.write("smua.measure.nplc = 100")         # out of range: setting unchanged
    raw.write("*XYZ")
    assert raw.query("print(errorqueue.count)") == "4.00000e+00"
    codes = [int(float(raw.query("print(errorqueue.next())").split("\t")[0])) for _ in range(5)]
    assert codes == [-285, -286, -222, -113, 0]
    assert raw.query("print(smua.measure.nplc)") == "1.00000e+00"
    with pytest.raises(VisaIOError):              # a failing print sends nothing
        raw.query("print(smua.source.nosuchthing.x)")
    entry = raw.query("print(errorqueue.next())").split("\t")
    assert int(float(entry[0])) == -286 and "nosuchthing" in entry[1] and len(entry) == 4
    raw.write("errorqueue.clear()")
    assert raw.query("print(errorqueue.count)") == "0.00000e+00"
    # the real driver turns a queued error into a typed exception
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()})
    smu.connect()
    tsp_bench.smu.push_error(-222, "Parameter data out of range")
    with pytest.raises(InstrumentReportedError) as info:
        smu.check_errors()
    assert info.value.code == -222


def test_state_persists_across_connections(tsp_bench):
    first = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()})
    first.connect()
    first.output("a", True)
    first.set_voltage("a", 0.5)
    sync(first)
    first.close()                              # no shutdown: the output stays on, as on an instrument
    assert tsp_bench.world.line_voltage("x0") == pytest.approx(0.5)
    second = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()})
    second.connect()                           # finds it on and ramps it down
    assert second.state_at_connect["a"] == {"output_on": True, "source_level_v": pytest.approx(0.5)}
    sync(second)
    assert tsp_bench.smu.output_history("a")[-1]["output_on"] is False
    assert tsp_bench.world.line_voltage("x0") == 0.0


def test_compliance_clamps_in_the_world(tsp_bench):
    limit = 2e-5
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config(i_limit_a=limit)})
    out = tsp_bench.k2600(tsp_bench.out, {"a": smu_config()})
    smu.connect()
    out.connect()
    out.output("a", True)
    smu.output("a", True)
    smu.set_voltage("a", 0.75)                 # unclamped it would source 50 µA
    sync(smu)
    reading = smu.measure_current("a")
    unclamped = i_x0(0.75, 0.0)
    assert unclamped > limit
    assert reading.compliance and reading.value == pytest.approx(limit, abs=I_TOL_A)
    assert smu.compliance_tripped("a")
    # the port became a 20 µA current source: x0 sits below the programmed 0.75 V
    assert tsp_bench.world.line_voltage("x0") < 0.75
    raw = tsp_bench.raw(tsp_bench.smu)
    assert raw.query("print(status.measurement.instrument.smua.condition)") == "2.00000e+00"
    # what the other SMU reads is the clamped physics
    assert out.measure_current("a").value == pytest.approx(-limit * G_S / (2 * G_S + G_LEAK_S), abs=I_TOL_A)


def test_off_modes_act_on_the_world(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.smu)
    raw.write("smua.source.offmode = smua.OUTPUT_HIGH_Z")
    raw.write("smua.source.output = smua.OUTPUT_OFF")
    raw.query("print(1)")
    assert tsp_bench.world.source("smu.a").mode == "open"
    raw.write("smua.source.offmode = smua.OUTPUT_ZERO; smua.source.limiti = 1e-5")
    raw.query("print(1)")
    src = tsp_bench.world.source("smu.a")
    assert (src.mode, src.level, src.limit_a) == ("voltage", 0.0, 1e-5)
    raw.write("smua.source.levelv = 0.3 smua.source.output = smua.OUTPUT_ON")
    raw.query("print(1)")
    assert tsp_bench.world.source("smu.a").level == 0.3
    raw.write("reset()")
    assert raw.query("print(smua.source.output, smua.source.levelv)") == "0.00000e+00\t0.00000e+00"


def test_pymeasure_spelling_behaves_identically(tsp_bench):
    """PyMeasure's Keithley2600 writes ``smua.source.levelv=%f`` with numeric enums; the
    emulator must end in the same state and answer the same as for the canonical spelling."""
    canonical = [
        "smua.source.func = smua.OUTPUT_DCVOLTS",
        "smua.source.limiti = 1e-4",
        "smua.measure.nplc = 1",
        "smua.source.levelv = 0.5",
        "smua.source.output = smua.OUTPUT_ON",
    ]
    pymeasure = [
        "smua.source.func=%d" % 1,
        "smua.source.limiti=%f" % 1e-4,
        "smua.measure.nplc=%f" % 1,
        "smua.source.levelv=%f" % 0.5,
        "smua.source.output=%d" % 1,
    ]
    queries = ["print(smua.source.levelv)", "print(smua.source.output)", "print(smua.source.func)",
               "print(smua.source.limiti)", "print(smua.measure.i())", "print(smua.source.compliance)"]
    answers, states = [], []
    for script in (canonical, pymeasure):
        raw = tsp_bench.raw(tsp_bench.smu)
        raw.write("reset()")
        for line in script:
            raw.write(line)
        answers.append([raw.query(q) for q in queries])
        states.append(tsp_bench.world.source("smu.a"))
        raw.write("smua.source.levelv = 0")
        raw.write("smua.source.output = 0")
        assert raw.query("print(errorqueue.count)") == "0.00000e+00"
    assert states[0] == states[1] and states[0].level == 0.5 and states[0].limit_a == 1e-4
    # measure.i() is noisy: compare within the noise; everything else exactly
    assert answers[0][:4] + answers[0][5:] == answers[1][:4] + answers[1][5:]
    assert float(answers[0][4]) == pytest.approx(float(answers[1][4]), abs=I_TOL_A)
    assert float(answers[0][4]) == pytest.approx(i_x0(0.5, 0.0), abs=I_TOL_A)


@pytest.mark.parametrize("gated", [False, True])
def test_follower_slower_than_lead(tsp_bench, gated):
    """Follower at 10 NPLC, lead at 1 NPLC. Ungated, the follower misses trigger events as on the
    instrument; gating the lead's end pulse on both measurements (AND blender) keeps them in step."""
    raw = tsp_bench.raw(tsp_bench.smu)
    script = ["loadandrunscript"]
    for s, stim, nplc in (("smua", "0", 1), ("smub", "smua.trigger.SOURCE_COMPLETE_EVENT_ID", 10)):
        script += [f"{s}.nvbuffer1.clear()", f"{s}.measure.nplc = {nplc}",
                   f"{s}.trigger.source.listv({{0.1, 0.2, 0.3, 0.4}})", f"{s}.trigger.source.action = {s}.ENABLE",
                   f"{s}.trigger.source.stimulus = {stim}", f"{s}.trigger.measure.i({s}.nvbuffer1)",
                   f"{s}.trigger.measure.action = {s}.ENABLE", f"{s}.trigger.count = 4",
                   f"{s}.source.output = {s}.OUTPUT_ON"]
    if gated:
        script += ["trigger.blender[1].orenable = false",
                   "trigger.blender[1].stimulus[1] = smua.trigger.MEASURE_COMPLETE_EVENT_ID",
                   "trigger.blender[1].stimulus[2] = smub.trigger.MEASURE_COMPLETE_EVENT_ID",
                   "smua.trigger.endpulse.stimulus = trigger.blender[1].EVENT_ID"]
    script += ["smub.trigger.initiate()", "smua.trigger.initiate()", "waitcomplete()", "endscript"]
    raw.write("\r\n".join(script))
    counts = raw.query("print(smua.nvbuffer1.n, smub.nvbuffer1.n)")
    events = [e.text for e in tsp_bench.smu.transcript.entries("event")]
    if gated:
        assert counts == "4.00000e+00\t4.00000e+00"
        assert not any("overrun" in t or "waiting" in t for t in events)
        # each follower reading saw the lead's level of the same point
        currents = [float(x) for x in raw.query("printbuffer(1, 4, smub.nvbuffer1.readings)").split(",")]
        expected = [G_S * (v - h0_voltage(v, v)) for v in (0.1, 0.2, 0.3, 0.4)]
        np.testing.assert_allclose(currents, expected, atol=I_TOL_A)
    else:
        assert counts == "4.00000e+00\t2.00000e+00"
        assert any("overrun" in t for t in events) and any("waiting" in t for t in events)
    raw.write("smub.abort() smua.source.output = 0 smub.source.output = 0")
    assert raw.query("print(errorqueue.count)") == "0.00000e+00"


def test_named_script_loops_and_faults(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.smu)
    raw.write("\r\n".join(["loadscript ramp", "for k = 0, 3 do smua.source.levelv = k / 10 end",
                           "print(smua.source.levelv)", "endscript"]))
    assert tsp_bench.smu.channels["a"].levelv == 0.0       # loading does not run it
    assert raw.query("ramp.run()") == "3.00000e-01"
    assert raw.query("ramp()") == "3.00000e-01"
    tsp_bench.smu.faults.misreport_level(7.5, channel="a", count=1)
    assert raw.query("print(smua.source.levelv)") == "7.50000e+00"
    assert raw.query("print(smua.source.levelv)") == "3.00000e-01"
    tsp_bench.smu.faults.sentinel("overflow", channel="a")
    assert raw.query("print(smua.measure.i())") == "9.90000e+37"
    assert raw.query("print(localnode.model, localnode.linefreq)") == "2602B\t5.00000e+01"


def test_buffer_append_mode_and_spot_readings_into_buffers(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.smu)
    raw.write("smua.source.levelv = 0.2 smua.source.output = smua.OUTPUT_ON")
    raw.write("smua.nvbuffer1.clear() smua.nvbuffer1.appendmode = 0")
    raw.write("smua.measure.i(smua.nvbuffer1) smua.measure.i(smua.nvbuffer1)")
    assert raw.query("print(smua.nvbuffer1.n)") == "1.00000e+00"          # overwritten
    raw.write("smua.nvbuffer1.appendmode = 1 smua.nvbuffer1.collectsourcevalues = 1")
    raw.write("i, v = smua.measure.iv(smua.nvbuffer1, smua.nvbuffer2)")
    assert raw.query("print(smua.nvbuffer1.n)") == "2.00000e+00"          # appended
    i, v = (float(x) for x in raw.query("print(i, v)").split("\t"))
    assert i == pytest.approx(i_x0(0.2, 0.0), abs=I_TOL_A) and v == pytest.approx(0.2, abs=1e-5)
    assert raw.query("print(smua.nvbuffer1.sourcevalues[2], smua.nvbuffer1[2] == i)") == "2.00000e-01\ttrue"
    raw.write("smua.source.levelv = 0 smua.source.output = smua.OUTPUT_OFF")
    assert raw.query("print(errorqueue.count)") == "0.00000e+00"


def test_timer_paced_pulsed_sweep(tsp_bench):
    """Timer-paced source points with end pulse SOURCE_IDLE (pulsed sourcing): 20 ms period."""
    raw = tsp_bench.raw(tsp_bench.smu)
    raw.write("\r\n".join([
        "loadandrunscript",
        "smua.measure.nplc = 0.1 smua.measure.autozero = smua.AUTOZERO_OFF smua.measure.delay = 0",
        "smua.source.delay = 0 smua.nvbuffer1.clear() smua.nvbuffer1.collecttimestamps = 1",
        "trigger.timer[1].delay = 0.02 trigger.timer[1].count = 2 trigger.timer[1].passthrough = true",
        "trigger.timer[1].stimulus = smua.trigger.ARMED_EVENT_ID",
        "smua.trigger.source.stimulus = trigger.timer[1].EVENT_ID",
        "smua.trigger.source.listv({0.3, 0.4, 0.5}) smua.trigger.source.action = smua.ENABLE",
        "smua.trigger.measure.i(smua.nvbuffer1) smua.trigger.measure.action = smua.ENABLE",
        "smua.trigger.endpulse.action = smua.SOURCE_IDLE smua.trigger.count = 3",
        "smua.source.output = smua.OUTPUT_ON smua.trigger.initiate() waitcomplete()",
        "endscript"]))
    stamps = [float(x) for x in raw.query("printbuffer(1, 3, smua.nvbuffer1.timestamps)").split(",")]
    np.testing.assert_allclose(np.diff(stamps), 0.02, rtol=1e-4)
    currents = [float(x) for x in raw.query("printbuffer(1, 3, smua.nvbuffer1)").split(",")]
    np.testing.assert_allclose(currents, [i_x0(v, 0.0) for v in (0.3, 0.4, 0.5)], atol=2e-7)
    levels = [s["level_v"] for s in tsp_bench.smu.output_history("a")]
    assert levels[-6:] == [0.3, 0.0, 0.4, 0.0, 0.5, 0.0]   # each pulse returns to the idle level
    raw.write("smua.source.output = smua.OUTPUT_OFF")
    assert raw.query("print(errorqueue.count)") == "0.00000e+00"


def test_long_list_sweep_through_the_driver(tsp_bench):
    """250 points (more than one script line of values for drivers that chunk their lists)."""
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config(nplc=0.01)})
    smu.connect()
    smu.output("a", True)
    levels = 0.2 * np.sin(np.linspace(0.0, 2 * np.pi, 250))
    result = smu.list_sweep({"a": levels}, settle_s=0.0)
    np.testing.assert_allclose(result.v_source[:, 0], levels, atol=1e-6)
    np.testing.assert_allclose(result.i_meas[:, 0], [i_x0(v, 0.0) for v in levels], atol=1e-7)
    assert len(tsp_bench.smu.channels["a"].nvbuffer1.readings) == 250
    smu.safe_shutdown()


def test_faults_seen_through_the_driver(tsp_bench):
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()}, timeout_s=0.3)
    smu.connect()
    smu.output("a", True)
    smu.set_voltage("a", 0.2)
    emu = tsp_bench.smu
    emu.faults.force_compliance("a")
    forced = smu.measure_current("a")
    assert forced.compliance and forced.value == pytest.approx(1e-3, abs=I_TOL_A)
    raw = tsp_bench.raw(emu)
    emu.faults.force_compliance("a")     # the instrument flag of a forced reading is set as well
    assert raw.query("print(smua.measure.i(), smua.source.compliance)").split("\t")[1] == "true"
    assert raw.query("print(smua.source.compliance)") == "false"
    emu.faults.sentinel("overflow", channel="a")
    over = smu.measure_current("a")
    assert over.value == float("inf") and over.compliance
    emu.faults.misreport_level(0.123, channel="a", count=1)
    assert smu.voltage_setpoint("a") == pytest.approx(0.123)
    assert smu.voltage_setpoint("a") == pytest.approx(0.2)
    # a withheld reply: the driver times out, resynchronises with *IDN? and asks again
    emu.faults.no_reply(match=r"source\.levelv\)")
    assert smu.voltage_setpoint("a") == pytest.approx(0.2)
    kinds = [e.detail.get("fault", e.text) for e in emu.transcript.entries("fault")]
    assert kinds == ["force_compliance", "force_compliance", "sentinel", "misreport_level", "no_reply"]
    rx = emu.transcript.received()
    assert rx[-4:] == ["print(smua.source.levelv)", "*IDN?", "print(errorqueue.next())", "print(smua.source.levelv)"]
    smu.safe_shutdown()
    assert emu.output_history("a")[-1]["output_on"] is False
