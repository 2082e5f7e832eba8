"""Keithley 707B emulator through real pyvisa-py sockets, with the real driver and raw TSP."""

from __future__ import annotations

import pytest

from tsp_bench_helpers import G_S, h0_voltage, smu_config
from hil.drivers.errors import InstrumentReportedError
from hil.emulate.keithley707b import HOT_SWITCH_ERROR, parse_channel_list
from hil.emulate.tsp import TspError

I_TOL_A = 2e-8


def test_crosspoint_changes_the_circuit(tsp_bench):
    """Closing 1A01 joins the probe SMU's line to h0: the probe (holding 0 V) now sinks h0's current."""
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config(), "b": smu_config()})
    probe = tsp_bench.k2600(tsp_bench.probe, {"a": smu_config()})
    out = tsp_bench.k2600(tsp_bench.out, {"a": smu_config()})
    matrix = tsp_bench.k707b()
    for d in (smu, probe, out, matrix):
        d.connect()
    probe.output("a", True)
    out.output("a", True)
    matrix.connect(["1A01"])                       # every source is at 0 V: no hot switching
    assert matrix.closed() == {("A", 1)}
    for ch in ("a", "b"):
        smu.output(ch, True)
    smu.set_voltage("a", 0.5)
    smu.set_voltage("b", 0.25)
    smu.voltage_setpoint("a")                      # round trip: the levels are applied
    # h0 is held at 0 V by the probe: it sinks g·(x0 + x1), the output SMU reads nothing
    assert probe.measure_current("a").value == pytest.approx(-G_S * 0.75, abs=I_TOL_A)
    assert out.measure_current("a").value == pytest.approx(0.0, abs=I_TOL_A)
    for ch in ("a", "b"):
        smu.set_voltage(ch, 0.0)
    smu.voltage_setpoint("a")
    matrix.disconnect(["1A01"])
    smu.set_voltage("a", 0.5)
    smu.voltage_setpoint("a")
    assert probe.measure_current("a").value == pytest.approx(0.0, abs=I_TOL_A)
    assert out.measure_current("a").value == pytest.approx(-G_S * h0_voltage(0.5, 0.0), abs=I_TOL_A)
    assert tsp_bench.mx.hot_switch_events == []
    for d in (smu, probe, out, matrix):
        d.safe_shutdown()
    assert tsp_bench.mx.closed_crosspoints() == []


def test_hot_switching_is_recorded_and_queued(tsp_bench):
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()})
    matrix = tsp_bench.k707b()
    smu.connect()
    matrix.connect()
    smu.output("a", True)
    smu.set_voltage("a", 0.3)
    smu.voltage_setpoint("a")
    with pytest.raises(InstrumentReportedError) as info:
        matrix.connect(["1A01"])
    assert info.value.code == HOT_SWITCH_ERROR
    (event,) = tsp_bench.mx.hot_switch_events
    assert event["crosspoint"] == "1A01" and event["closing"] is True
    assert event["lines"]["h0"] == pytest.approx(h0_voltage(0.3, 0.0), rel=1e-6)
    assert any(e.detail.get("hot_switch") for e in tsp_bench.mx.transcript.entries("event"))


def test_channel_lists_getclose_forbidden_and_errors(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.mx)
    raw.write('channel.close("1A01:1B02,1H12")')
    assert raw.query('print(channel.getclose("slot1"))') == "1A01;1A02;1B01;1B02;1H12"
    raw.write('channel.exclusiveclose("1C03")')
    assert raw.query('print(channel.getclose("allslots"))') == "1C03"
    raw.write('channel.open("allslots")')
    assert raw.query('print(channel.getclose("allslots"))') == "nil"
    raw.write('channel.setforbidden("1D04")')
    raw.write('channel.close("1A01,1D04")')        # refused as a whole: nothing closes
    raw.write('channel.close("slot1")')            # groups cannot be closed
    raw.write('channel.close("1J01")')             # no row J on an 8x12 card
    raw.write('channel.close("2A01")')             # empty slot
    assert raw.query('print(channel.getclose("allslots"))') == "nil"
    codes = [int(float(raw.query("print(errorqueue.next())").split("\t")[0])) for _ in range(5)]
    assert codes == [-221, -222, -222, -222, 0]
    assert raw.query('print(channel.getforbidden("slot1"))') == "1D04"
    assert raw.query("print(channel.connectrule, channel.BREAK_BEFORE_MAKE)") == "1.00000e+00\t1.00000e+00"
    assert raw.query("print(slot[1].idn)").startswith("7174A")
    assert raw.query("print(slot[2].idn)") == "Empty Slot"


def test_relay_times_on_the_virtual_clock(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.mx)
    raw.write("channel.connectsequential = channel.ON")
    raw.query("print(1)")
    t0 = tsp_bench.clock.now_s
    raw.write('channel.close("1A02,1A03,1A04")')
    raw.query("print(1)")
    assert tsp_bench.clock.now_s - t0 == pytest.approx(3 * 3e-3)
    raw.write("channel.connectsequential = channel.OFF")
    t1 = tsp_bench.clock.now_s
    raw.write('channel.exclusiveclose("1B01")')     # one open phase, one close phase
    raw.query("print(1)")
    assert tsp_bench.clock.now_s - t1 == pytest.approx(2 * 3e-3)


def test_interlock_fault_blocks_closing_and_state_persists(tsp_bench):
    raw = tsp_bench.raw(tsp_bench.mx)
    raw.write('channel.close("1E05")')
    assert raw.query("*OPC?") == "1"                 # the close has been executed before we hang up
    raw.close()
    other = tsp_bench.raw(tsp_bench.mx)              # a new connection sees the same relays
    assert other.query('print(channel.getclose("slot1"))') == "1E05"
    tsp_bench.mx.faults.interlock_open()
    other.write('channel.close("1E06")')
    assert other.query('print(channel.getclose("slot1"))') == "1E05"
    assert int(float(other.query("print(errorqueue.next())").split("\t")[0])) == -200
    other.write('channel.open("1E05")')              # opening is always allowed
    assert other.query('print(channel.getclose("slot1"))') == "nil"


def test_parse_channel_list_ranges():
    slots = {1: ("ABCDEFGH", 12), 3: ("ABCD", 4)}
    assert parse_channel_list("3B04:3A03", slots) == ["3A03", "3A04", "3B03", "3B04"]
    assert len(parse_channel_list("allslots", slots)) == 8 * 12 + 4 * 4
    with pytest.raises(TspError):
        parse_channel_list("1A01:3A01", slots)
    with pytest.raises(TspError):
        parse_channel_list("slot1", slots, allow_groups=False)


def test_voltmeter_reads_a_hidden_node_through_the_matrix(tsp_bench):
    """A 2601B as a 0 A current source (a voltmeter) on the bus reads h0 only while 1A01 is closed."""
    probe = tsp_bench.raw(tsp_bench.probe)
    probe.write("smua.source.func = smua.OUTPUT_DCAMPS smua.source.leveli = 0 smua.source.output = smua.OUTPUT_ON")
    matrix = tsp_bench.k707b()
    smu = tsp_bench.k2600(tsp_bench.smu, {"a": smu_config()})
    matrix.connect()
    smu.connect()
    matrix.connect(["1A01"])
    smu.output("a", True)
    smu.set_voltage("a", 0.6)
    smu.voltage_setpoint("a")
    assert float(probe.query("print(smua.measure.v())")) == pytest.approx(h0_voltage(0.6, 0.0), abs=1e-5)
    smu.set_voltage("a", 0.0)
    smu.voltage_setpoint("a")
    matrix.disconnect(["1A01"])
    smu.set_voltage("a", 0.6)
    smu.voltage_setpoint("a")
    assert abs(float(probe.query("print(smua.measure.v())"))) < 1e-5      # the bus floats at 0 V
    smu.safe_shutdown()
    probe.write("smua.source.output = smua.OUTPUT_OFF")
    assert tsp_bench.mx.hot_switch_events == []
