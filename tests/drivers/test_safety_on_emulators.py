"""Driver safety under faults, proven through real sockets on the loopback emulators.

Every assertion about safety is made from what the emulated instrument received and its own
state (``emulator.transcript``, channel state), never from what the driver believes. Timeouts
are short (0.3 s) and every emulator runs on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from hil.drivers.errors import (
    ImplausibleReadbackError,
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitViolation,
    OutputMayBeLiveError,
    OutputTrippedError,
)
from hil.drivers.keithley2450 import Keithley2450
from hil.drivers.keithley2600 import Keithley2600
from hil.drivers.keithley707b import Keithley707B
from hil.drivers.keysight_b2900 import KeysightB2900
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.transport import ResourceManagers, VisaTransport
from hil.emulate.b2900 import SmuB2900Emulator
from hil.emulate.keithley2600 import Smu2600Emulator
from hil.emulate.keithley707b import Matrix707Emulator
from hil.emulate.smu2450 import Smu2450Emulator

TIMEOUT_S = 0.3
LIMITS = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-3, max_step_v=0.25, max_slew_v_per_s=1000.0)


def cfg(**kw: Any) -> SmuChannelConfig:
    return SmuChannelConfig(limits=LIMITS, nplc=1.0, current_range_a=1e-3, voltage_range_v=2.0, autozero="off",
                            **kw)


@pytest.fixture(scope="module")
def rm() -> Iterator[Any]:
    with ResourceManagers() as managers:
        yield managers.get("@py")


@pytest.fixture
def start() -> Iterator[Any]:
    """``start(emulator)`` → the started emulator; stopped at teardown."""
    started: list[Any] = []

    def run(emulator: Any) -> Any:
        emulator.start()
        started.append(emulator)
        return emulator

    yield run
    for e in started:
        e.stop()


FAMILIES = {
    # family: (emulator factory, driver class, channel, level query regex, level write regex)
    "2450": (lambda: Smu2450Emulator("smu", "2450"), Keithley2450, "",
             r"^:SOUR:VOLT (\S+)$"),
    "b2900": (lambda: SmuB2900Emulator("smu", "B2902A"), KeysightB2900, "1", r"^:SOUR1:VOLT (\S+)$"),
    "2600b": (lambda: Smu2600Emulator("smu", "2602B"), Keithley2600, "a", r"^smua\.source\.levelv = (\S+)$"),
}


def driver_for(rm: Any, emulator: Any, cls: type, ch: str, *, configs: Any = True, timeout_s: float = TIMEOUT_S,
               **kw: Any) -> Any:
    transport = VisaTransport(rm, emulator.resource, name="dut", timeout_s=timeout_s, open_timeout_s=1.0)
    return cls(transport, configs={ch: cfg()} if configs is True else (configs or {}), sleep=lambda s: None,
               shutdown_timeout_s=TIMEOUT_S, **kw)


def leave_output_on(rm: Any, emulator: Any, cls: type, ch: str, level: float) -> None:
    """A previous session that crashed: output on at ``level`` V, nothing switched off."""
    drv = driver_for(rm, emulator, cls, ch)
    drv.connect()
    drv.output(ch, True)
    drv.set_voltage(ch, level)
    assert drv.voltage_setpoint(ch) == pytest.approx(level)  # a query: every write was executed
    drv.close()  # no shutdown: the process "died"


def live_driver(rm: Any, start: Any, family: str, level: float) -> tuple[Any, Any, str, str]:
    """(emulator, connected driver, channel, level-write regex) of ``family``, the channel's output
    on at ``level`` V."""
    make, cls, ch, write_re = FAMILIES[family]
    emu = start(make())
    drv = driver_for(rm, emu, cls, ch)
    drv.connect()
    drv.output(ch, True)
    drv.set_voltage(ch, level)
    return emu, drv, ch, write_re


def largest_step(levels: list[float]) -> float:
    """The largest change between consecutive levels, V."""
    return max(abs(b - a) for a, b in zip(levels, levels[1:]))


def written_levels(emulator: Any, pattern: str) -> list[float]:
    """Every source level the emulator received, in V."""
    out = []
    for line in emulator.transcript.received():
        m = re.match(pattern, line.strip())
        if m:
            out.append(float(m.group(1)))
    return out


def channel_state(emulator: Any, ch: str) -> tuple[bool, float]:
    """(output on, programmed level in V) from the emulator's last recorded output state."""
    last = emulator.output_history(ch)[-1]
    return bool(last["output_on"]), float(last["level_v"])


# -- read-back plausibility ------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("reported", [50.0, math.nan])
def test_implausible_readback_at_connect_switches_off_and_is_never_a_ramp_start(rm, start, family, reported):
    make, cls, ch, write_re = FAMILIES[family]
    emu = start(make())
    leave_output_on(rm, emu, cls, ch, 0.5)
    assert channel_state(emu, ch) == (True, 0.5)
    emu.transcript.clear()
    emu.faults.misreport_level(reported, count=1)
    drv = driver_for(rm, emu, cls, ch)
    with pytest.raises(ImplausibleReadbackError) as info:
        drv.connect()
    assert info.value.output_off_verified
    # from the instrument: off, at 0 V, and no level beyond the limits (in fact only 0 V) written
    assert channel_state(emu, ch) == (False, 0.0)
    levels = written_levels(emu, write_re)
    assert levels and all(abs(v) <= LIMITS.v_max for v in levels) and levels[-1] == 0.0
    drv.close()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_misreported_level_after_use_is_not_used_for_a_ramp(rm, start, family):
    emu, drv, ch, write_re = live_driver(rm, start, family, 0.5)
    emu.transcript.clear()
    emu.faults.misreport_level(-7.5, count=1)
    with pytest.raises(ImplausibleReadbackError):
        drv.voltage_setpoint(ch)
    assert channel_state(emu, ch) == (False, 0.0)
    assert all(abs(v) <= 1.0 for v in written_levels(emu, write_re))
    report = drv.safe_shutdown()
    assert report.safe and channel_state(emu, ch) == (False, 0.0)
    drv.close()


def test_unconfigured_probe_treats_absurd_level_as_unknown(rm, start):
    emu = start(Smu2450Emulator("smu", "2450"))
    leave_output_on(rm, emu, Keithley2450, "", 0.5)
    emu.transcript.clear()
    emu.faults.misreport_level(1e30, count=1)
    drv = driver_for(rm, emu, Keithley2450, "", configs=None)
    with pytest.raises(ImplausibleReadbackError, match="range"):
        drv.connect()
    assert channel_state(emu, "") == (False, 0.0)
    assert written_levels(emu, FAMILIES["2450"][3]) == [0.0]


# -- timeouts, late replies, resync ----------------------------------------------------------------


def test_late_reply_is_never_taken_as_the_next_answer(rm, start):
    emu = start(Smu2450Emulator("smu", "2450"))
    drv = driver_for(rm, emu, Keithley2450, "")
    drv.connect()
    drv.output("", True)
    drv.set_voltage("", 0.25)
    emu.faults.late_reply(0.45, match=r"^:SOUR:VOLT\?")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        drv.measure_current("")  # :READ? is answered normally ...
        drv._query(":SOUR:VOLT?")
    # the stale "+2.5E-01" arrives later; the next queries must get their own answers
    assert drv.output_enabled("") is True
    assert drv.compliance_tripped("") is False
    assert time.monotonic() - t0 < 3.0
    received = emu.transcript.received()
    late = max(i for i, line in enumerate(received) if line.startswith(":SOUR:VOLT?"))
    assert "*IDN?" in received[late + 1:]  # resync before the next exchange
    assert drv.safe_shutdown().safe
    assert channel_state(emu, "") == (False, 0.0)
    drv.close()


def test_endless_reply_cannot_block_past_the_timeout(rm, start):
    emu = start(Smu2450Emulator("smu", "2450"))
    transport = VisaTransport(rm, emu.resource, name="dut", timeout_s=TIMEOUT_S)
    emu.faults.endless_reply(match=r"^\*IDN\?", max_s=3.0)
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        transport.query("*IDN?")
    elapsed = time.monotonic() - t0
    assert elapsed < TIMEOUT_S + 0.25, elapsed
    transport.close()


def test_dropped_link_that_cannot_be_reopened_reports_outputs_may_be_live(rm, start):
    emu = start(Smu2450Emulator("smu", "2450"))
    drv = driver_for(rm, emu, Keithley2450, "")
    with pytest.raises(OutputMayBeLiveError) as info:
        with drv:
            drv.output("", True)
            drv.set_voltage("", 0.25)
            emu.faults.drop_connection(match=r"^:SOUR:VOLT 0\.5")
            emu.refuse_connections(True)  # and the shutdown's reconnect is refused
            drv.set_voltage("", 0.75)
    # the emulator (its state, not the driver) shows the output is still live: the report was right
    assert channel_state(emu, "")[0] is True
    assert info.value.channels == ("",)
    assert info.value.__context__ is None or isinstance(info.value.__context__, InstrumentConnectionError)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dropped_link_mid_ramp_is_reopened_and_the_output_made_safe(rm, start, family):
    """The instrument closed the connection (a LAN glitch, a socket timeout on its side) while the
    output was live: the shutdown reopens the link, confirms the identity, ramps the level it reads
    back to 0 V within the step limit and switches the output off, all verified by read-back."""
    make, cls, ch, write_re = FAMILIES[family]
    emu = start(make())
    drv = driver_for(rm, emu, cls, ch)
    with drv:  # a write into a closed socket may pass unnoticed: what matters is the shutdown
        drv.output(ch, True)
        drv.set_voltage(ch, 0.5)
        emu.faults.drop_connection(match=write_re.replace(r"(\S+)", r"0\.75"))
        with contextlib.suppress(InstrumentConnectionError):
            drv.set_voltage(ch, 1.0)  # ramps 0.5 -> 0.75 -> 1.0: the link dies at 0.75 V
            drv.measure_current(ch)
    report = drv.last_shutdown
    assert report.safe, report.summary()
    assert channel_state(emu, ch) == (False, 0.0)  # from the instrument
    assert [e for e in emu.transcript.entries("event") if "connect" in e.text][-2:]  # a second session
    on_levels = [s["level_v"] for s in emu.output_history(ch) if s["output_on"]]
    assert max(abs(v) for v in on_levels) <= 0.75
    steps = np.abs(np.diff([0.0, *on_levels, 0.0]))
    assert steps.max() <= LIMITS.max_step_v + 1e-12, on_levels


def test_failed_connect_runs_the_safe_shutdown_for_what_it_found_on(rm, start):
    emu = start(SmuB2900Emulator("smu", "B2902A"))
    leave_output_on(rm, emu, KeysightB2900, "1", 0.75)
    emu.push_error(-222, "Data out of range")  # stale error: fine, cleared at connect
    emu.faults.no_reply(match=r"^:OUTP2\?")  # connect dies part-way, after finding channel 1 on
    drv = driver_for(rm, emu, KeysightB2900, "1")
    with pytest.raises((InstrumentTimeout, InstrumentConnectionError)) as info:
        with drv:
            pass
    report = info.value.shutdown_report
    assert report.safe, report.summary()
    assert channel_state(emu, "1") == (False, 0.0)
    assert all(abs(v) <= 1.0 for v in written_levels(emu, r"^:SOUR1:VOLT (\S+)$"))
    assert drv.transport is not None and drv.transport._socket_session() is None  # closed by __enter__


def test_another_instrument_at_the_address_is_sent_nothing_but_idn(rm, start):
    """A bench file whose SMU resource points at another instrument (here a 2450 at a B2900's
    address, that B2900's output live): connect refuses the identity, and neither the driver's
    safe shutdown nor a second one sends that instrument anything but ``*IDN?``: its output is not
    this driver's to switch (before, the shutdown sent it 2450 commands and timed out)."""
    emu = start(SmuB2900Emulator("smu", "B2902A"))
    leave_output_on(rm, emu, KeysightB2900, "1", 0.5)
    before = len(emu.transcript.received())
    drv = driver_for(rm, emu, Keithley2450, "")
    with pytest.raises(InstrumentProtocolError, match="unexpected instrument"):
        drv.connect()
    report = drv.safe_shutdown()
    assert not report.safe and "another instrument answers at its address" in report.summary()
    drv.safe_shutdown()
    drv.close()
    assert [line.strip() for line in emu.transcript.received()[before:]] == ["*IDN?"]
    assert channel_state(emu, "1") == (True, 0.5)  # left as the other session left it


# -- instrument-specific ---------------------------------------------------------------------------


def test_b2900_output_protection_trip_is_reported(rm, start):
    emu = start(SmuB2900Emulator("smu", "B2902A"))
    drv = driver_for(rm, emu, KeysightB2900, "1")
    drv.connect()
    drv.output("1", True)
    drv.set_voltage("1", 0.5)
    emu.faults.force_compliance("1", count=1)
    with pytest.raises(OutputTrippedError):
        drv.measure_current("1")
    assert channel_state(emu, "1")[0] is False
    assert drv._output_on["1"] is False
    assert drv.safe_shutdown().safe
    drv.close()


def test_b2900_timed_out_sweep_is_aborted_before_anything_else(rm, start):
    emu = start(SmuB2900Emulator("smu", "B2902A"))
    drv = driver_for(rm, emu, KeysightB2900, "1")
    drv.connect()
    drv.output("1", True)
    drv.sweep_timeout_margin_s = TIMEOUT_S
    emu.transcript.clear()
    emu.faults.no_reply(match=r"^\*OPC\?")
    with pytest.raises(InstrumentTimeout):
        drv.list_sweep({"1": [0.1, 0.2, 0.1]}, settle_s=0.0)
    assert drv.output_enabled("1") is True  # a query: everything sent before was executed
    received = emu.transcript.received()
    opc = received.index("*OPC?")
    assert received[opc + 1] == ":ABOR (@1)"
    assert received.index(":SOUR1:VOLT:MODE FIX", opc) > opc + 1
    assert drv.safe_shutdown().safe
    assert channel_state(emu, "1") == (False, 0.0)
    drv.close()


def test_2600b_long_list_and_two_channel_gating(rm, start):
    emu = start(Smu2600Emulator("smu", "2602B"))
    drv = driver_for(rm, emu, Keithley2600, "a", configs={"a": cfg(), "b": cfg()}, timeout_s=5.0)
    drv.connect()
    drv.output("a", True)
    drv.output("b", True)
    n = 250
    va = 0.1 * np.sin(np.linspace(0, 6, n))
    vb = -va
    res = drv.list_sweep({"a": va, "b": vb}, settle_s=1e-3)
    np.testing.assert_allclose(res.v_source, np.column_stack([va, vb]), atol=1e-6)  # 6 printed digits
    received = emu.transcript.received()
    begin = received.index("loadandrunscript")
    script = received[begin:received.index("endscript", begin) + 1]
    assert len(script) > 10 and max(len(line) for line in script) < 2100  # 100 values per line at most
    script = "\n".join(script)
    assert "smua.trigger.endpulse.stimulus = smub.trigger.MEASURE_COMPLETE_EVENT_ID" in script
    assert drv.safe_shutdown().safe
    drv.close()


def test_2600b_format_pinned_at_connect(rm, start):
    emu = start(Smu2600Emulator("smu", "2601B"))
    raw = rm.open_resource(emu.resource, read_termination="\n", write_termination="\n", timeout=1000)
    raw.write("format.data = format.REAL32")  # another program left it in binary
    raw.close()
    drv = driver_for(rm, emu, Keithley2600, "a", timeout_s=2.0)
    drv.connect()
    drv.output("a", True)
    res = drv.list_sweep({"a": [0.1, 0.2]}, settle_s=0.0)
    assert res.v_source[:, 0].tolist() == pytest.approx([0.1, 0.2])
    assert drv.safe_shutdown().safe
    drv.close()


def test_707b_acts_only_on_its_own_slot(rm, start):
    emu = start(Matrix707Emulator("mx", "707B", options={"slots": {1: {}, 2: {}}}))
    other = Keithley707B(VisaTransport(rm, emu.resource, name="other", timeout_s=1.0), slot=2)
    other.connect()
    other.connect(["2A01"])
    mine = Keithley707B(VisaTransport(rm, emu.resource, name="mine", timeout_s=1.0), slot=1)
    mine.connect()
    mine.connect(["1B02"])
    mine.connect(["1C03"], exclusive=True)
    mine.open_all()
    assert mine.safe_shutdown().safe
    assert emu.closed == {"2A01"}
    assert not any("allslots" in line or "exclusiveclose" in line for line in emu.transcript.received())
    other.close()
    mine.close()


def test_garbage_reply_is_a_typed_error_and_shutdown_still_verifies(rm, start):
    emu = start(Smu2450Emulator("smu", "2450"))
    drv = driver_for(rm, emu, Keithley2450, "")
    drv.connect()
    drv.output("", True)
    drv.set_voltage("", 0.5)
    emu.faults.garbage_reply(match=r"^:OUTP\?")
    with pytest.raises(InstrumentProtocolError):
        drv.output_enabled("")
    assert drv.safe_shutdown().safe
    assert channel_state(emu, "") == (False, 0.0)
    drv.close()


def test_daq970a_high_input_impedance_on_every_scanned_channel(rm, start):
    from hil.drivers.daq970a import Daq970a
    from hil.emulate.daq970 import Daq970Emulator

    emu = start(Daq970Emulator("daq", "DAQ970A"))
    drv = Daq970a(VisaTransport(rm, emu.resource, name="daq", timeout_s=1.0))
    drv.connect()
    drv.configure_scan([101, 102, 105], nplc=1, range_v=10, autozero="off", delay_s=0.001)
    raw = rm.open_resource(emu.resource, read_termination="\n", write_termination="\n", timeout=1000)
    assert raw.query("INP:IMP:AUTO? (@101,102,105)") == "1,1,1"
    raw.close()
    drv.close()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ctrl_c_mid_ramp_in_a_with_block_ends_off_at_zero(rm, start, family):
    make, cls, ch, write_re = FAMILIES[family]
    emu = start(make())
    calls = []

    def sleep(seconds: float) -> None:  # the 3rd ramp dwell is interrupted, as by Ctrl-C
        calls.append(seconds)
        if len(calls) == 3:
            raise KeyboardInterrupt

    transport = VisaTransport(rm, emu.resource, name="dut", timeout_s=TIMEOUT_S)
    limits = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-3, max_step_v=0.1, max_slew_v_per_s=1000.0)
    config = SmuChannelConfig(limits=limits, nplc=1.0, current_range_a=1e-3, voltage_range_v=2.0, autozero="off")
    drv = cls(transport, configs={ch: config}, sleep=sleep, shutdown_timeout_s=TIMEOUT_S)
    with pytest.raises(KeyboardInterrupt):
        with drv:
            drv.output(ch, True)
            drv.set_voltage(ch, 0.8)
    assert drv.last_shutdown is not None and drv.last_shutdown.safe
    assert channel_state(emu, ch) == (False, 0.0)
    path = [0.0] + written_levels(emu, write_re)
    assert largest_step(path) <= 0.1 + 1e-9  # ramped both ways
    assert max(path) < 0.8  # interrupted on the way up


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_interrupt_right_after_a_level_write_is_not_trusted_as_zero(rm, start, family):
    """Ctrl-C/SIGTERM landing after a level command reached the instrument but before the driver
    noted it: shutdown must not trust its stale 0 V and leave the new level programmed."""
    make, cls, ch, _ = FAMILIES[family]
    emu = start(make())
    drv = driver_for(rm, emu, cls, ch)
    write_level = drv._write_level

    def write_then_interrupt(channel: str, level_v: float) -> None:
        write_level(channel, level_v)
        if level_v != 0.0:
            raise KeyboardInterrupt

    drv._write_level = write_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        with drv:
            drv.output(ch, True)
            drv.set_voltage(ch, -0.2)  # one step within max_step_v: the first write is the last
    assert drv.last_shutdown is not None and drv.last_shutdown.safe
    assert channel_state(emu, ch) == (False, 0.0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_interrupt_after_a_ramp_step_ramps_down_from_the_read_back_level(rm, start, family):
    """Ctrl-C/SIGTERM landing after a ramp step reached the instrument but before the driver noted it:
    the shutdown must not trust the old cached level (it reads the level back, ramps down, 0 V)."""
    make, cls, ch, write_re = FAMILIES[family]
    emu = start(make())
    drv = driver_for(rm, emu, cls, ch, configs={ch: cfg()})
    write_level, fired = drv._write_level, []

    def write_then_interrupt(channel: str, level_v: float) -> None:
        write_level(channel, level_v)
        if level_v == 0.5 and not fired:
            fired.append(level_v)
            raise KeyboardInterrupt

    drv._write_level = write_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        with drv:
            drv.output(ch, True)
            drv.set_voltage(ch, 1.0)
    assert fired and drv.last_shutdown is not None and drv.last_shutdown.safe
    assert channel_state(emu, ch) == (False, 0.0)
    path = [0.0] + written_levels(emu, write_re)
    assert largest_step(path) <= LIMITS.max_step_v + 1e-9  # ramped down from 0.5 V


# -- an instrument error makes the driver forget what it believes the outputs hold -----------------

RAW_LEVEL = {"2450": ":SOUR:VOLT {v}", "b2900": ":SOUR1:VOLT {v}", "2600b": "smua.source.levelv = {v}"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_after_an_instrument_error_the_shutdown_ramps_from_the_level_read_back(rm, start, family):
    """A level write the instrument did not apply (here: it holds 0.8 V while the driver believes
    0.2 V) and an error queued: once ``check_errors`` has seen the error, the shutdown reads the
    level back and ramps from 0.8 V in steps of at most ``max_step_v``, instead of stepping from
    0.8 V straight to 0.2 − 0.25 V."""
    emu, drv, ch, write_re = live_driver(rm, start, family, 0.2)
    drv.transport.write(RAW_LEVEL[family].format(v=0.8))  # behind the driver's back: the cache says 0.2 V
    emu.push_error(-222)
    with pytest.raises(InstrumentReportedError):
        drv.check_errors()
    emu.transcript.clear()
    assert drv.safe_shutdown().safe
    levels = [0.8] + written_levels(emu, write_re)
    assert levels[-1] == 0.0 and len(levels) >= 4
    assert largest_step(levels) <= LIMITS.max_step_v + 1e-9
    assert channel_state(emu, ch) == (False, 0.0)
    drv.close()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_list_sweep_after_an_instrument_error_checks_its_first_step_from_the_level_read_back(rm, start, family):
    """The level forgotten after an error is read back for the sweep's step check: a first point
    0.7 V from the present 0.2 V is refused (max_step_v 0.25), and nothing is swept."""
    emu, drv, ch, write_re = live_driver(rm, start, family, 0.2)
    emu.push_error(-222)
    with pytest.raises(InstrumentReportedError):
        drv.check_errors()
    before = len(written_levels(emu, write_re))
    with pytest.raises(LimitViolation, match="exceeds max_step_v"):
        drv.list_sweep({ch: [0.9]}, 0.0)
    assert drv.voltage_setpoint(ch) == pytest.approx(0.2)  # (a query: every write before it was executed)
    assert len(written_levels(emu, write_re)) == before and channel_state(emu, ch) == (True, 0.2)
    assert drv.safe_shutdown().safe
    drv.close()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_set_voltage_after_a_timeout_ramps_from_the_level_read_back(rm, start, family):
    """The instrument holds 0.8 V while the driver believes 0.2 V; a timeout (its resync succeeds)
    makes the next set_voltage read the level back first, so it ramps 0.8 → 0.3 V in steps of at
    most max_step_v instead of one 0.5 V step."""
    emu, drv, ch, write_re = live_driver(rm, start, family, 0.2)
    drv.transport.write(RAW_LEVEL[family].format(v=0.8))
    emu.faults.no_reply(count=1)
    with pytest.raises(InstrumentTimeout):
        drv.measure_current(ch)
    emu.transcript.clear()
    drv.set_voltage(ch, 0.3)
    assert drv.voltage_setpoint(ch) == pytest.approx(0.3)  # (a query: every write before it was executed)
    levels = [0.8] + written_levels(emu, write_re)
    assert levels[-1] == 0.3 and largest_step(levels) <= LIMITS.max_step_v + 1e-9
    assert drv.safe_shutdown().safe
    drv.close()
