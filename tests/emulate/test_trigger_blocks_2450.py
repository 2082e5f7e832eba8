"""The emulated 2450's trigger model built from blocks (no sockets, no world): block order,
configuration-list stepping, the counter branch, refusals, and the run/overrun bookkeeping."""

import pytest

from hil.emulate.smu2450 import Smu2450Emulator
from hil.emulate.trigger_blocks import Block, BlockRun


def send(emu, *lines):
    out = []
    for line in lines:
        out += emu.handle(line)
    return out


def errors(emu):
    found = []
    while True:
        entry = emu.handle(":SYST:ERR?")[0]
        if entry.startswith("0,") or entry.startswith("+0,"):
            return found
        found.append(int(entry.split(",")[0]))


def test_counter_loop_steps_the_list_from_index_one_and_wraps():
    """CONF:NEXT recalls index 1 first and wraps after the last; BRAN:COUN n loops n times."""
    emu = Smu2450Emulator("smu", "2450")
    send(emu, ":SOUR:VOLT:RANG 2", ":OUTP ON", ':TRAC:CLE "defbuffer1"', ":SOUR:LIST:VOLT 0.1, 0.2, 0.3",
         ':TRIG:LOAD "Empty"', ':TRIG:BLOC:CONF:NEXT 1, "VoltCustomSweepList"', ':TRIG:BLOC:MEAS 2, "defbuffer1"',
         ":TRIG:BLOC:BRAN:COUN 3, 4, 1", ":INIT")
    assert errors(emu) == []
    assert send(emu, ':TRAC:ACT? "defbuffer1"') == ["4"]
    sources = [float(v) for v in send(emu, ':TRAC:DATA? 1, 4, "defbuffer1", SOUR')[0].split(",")]
    assert sources == [0.1, 0.2, 0.3, 0.1]
    assert emu.ch.level_v == 0.1  # the level stays at the last recalled index
    assert send(emu, ":TRIG:STAT?")[0].startswith("IDLE")


def test_blocks_refused_as_on_the_instrument():
    """A block naming a missing configuration list or an event that is not a digital line, a wrong
    line mode and an empty model are errors; nothing runs."""
    emu = Smu2450Emulator("smu", "2450")
    send(emu, ':TRIG:LOAD "Empty"', ':TRIG:BLOC:CONF:NEXT 1, "VoltCustomSweepList"',  # no list yet: -222
         ":TRIG:BLOC:WAIT 1, TIM1",                                                     # not emulated: -224
         ":DIG:LINE7:MODE TRIG, IN",                                                    # line 7: -114
         ":DIG:LINE1:MODE TRIG, MAST",                                                  # invalid pair: -224
         ":INIT")                                                                       # empty model: -200
    assert errors(emu) == [-222, -224, -114, -224, -200]
    assert send(emu, ':TRAC:ACT? "defbuffer1"') == ["0"]


def test_a_run_waiting_on_a_line_without_a_bench_reports_and_aborts():
    """Without a bench nothing drives the line: *WAI reports -230; :ABOR stops the run."""
    emu = Smu2450Emulator("smu", "2450")
    send(emu, ":SOUR:LIST:VOLT 0, 0.01", ':TRIG:LOAD "Empty"', ":DIG:LINE2:MODE TRIG, IN",
         ":TRIG:BLOC:WAIT 1, DIG2", ':TRIG:BLOC:CONF:NEXT 2, "VoltCustomSweepList"', ":TRIG:BLOC:MEAS 3",
         ":TRIG:BLOC:BRAN:COUN 4, 2, 1", ":INIT")
    assert send(emu, ":DIG:LINE2:MODE?") == ["TRIG,IN"]
    assert send(emu, ":TRIG:STAT?")[0].startswith("WAITING")
    send(emu, "*WAI")
    assert errors(emu) == [-230]
    send(emu, ":ABOR")
    assert send(emu, ":TRIG:STAT?")[0].startswith("IDLE")
    assert send(emu, ':TRAC:ACT? "defbuffer1"') == ["0"]


def test_block_run_latches_events_and_counts_overruns():
    """An event seen before the wait block is used; a second one before it is consumed is lost."""
    levels, readings = [], []
    run = BlockRun({1: Block("wait", event="DIG1"), 2: Block("config_next", name="L"), 3: Block("measure", name="b"),
                    4: Block("branch_counter", count=2, to=1)},
                   config_next=lambda name, k: levels.append(k), list_length=lambda name: 3,
                   measure=readings.append)
    run.advance(stop_at_measure=True)
    assert run.waiting_on() == "DIG1"
    run.signal("DIG1")
    run.advance(stop_at_measure=True)
    assert run.state == "measure" and levels == [1]
    run.signal("DIG1")      # the next pulse arrives while the point is still being measured: latched
    run.signal("DIG1")      # ... and one more: lost
    assert run.overruns == 1
    run.measure_now()
    run.advance(stop_at_measure=True)
    assert run.state == "measure" and levels == [1, 2]  # the latched event released point 2 at once
    run.measure_now()
    run.advance(stop_at_measure=True)
    assert run.done and readings == ["b", "b"]


@pytest.mark.parametrize("line", [0, 7, True])
def test_driver_refuses_a_trigger_line_outside_the_port(line):
    from hil.drivers.errors import InstrumentConfigError
    from hil.drivers.keithley2450 import Keithley2450

    with pytest.raises(InstrumentConfigError):
        Keithley2450(object(), name="smu", trigger_line=line)
