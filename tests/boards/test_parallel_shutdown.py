"""The bench's safe state with instruments on separate interfaces shut down at the same time: a frozen
instrument no longer keeps the others live, relays still open only after every source is off, and
a Ctrl-C meanwhile still ends with every output off (all checked from what the emulated
instruments received and hold)."""

import _thread
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hil.boards.interfaces import interface_key, run_per_interface
from hil.emulate.bench import EmulatedBench
from tests.boards.test_emulated_bench import XOR, open_board

SOURCES = ("smu_xn", "smu_rail", "smu_y01", "smu_y2", "smu_y3")  # every SMU of scpi-xor but smu_x


def _off_at_zero(eb, names) -> bool:
    states = eb.output_states()
    mine = [s for port, s in states.items() if port.split(".")[0] in names]
    return bool(mine) and all(not s["output_on"] and abs(s["level_v"]) <= 1e-9 for s in mine)


def test_a_frozen_instrument_does_not_keep_the_others_live():
    """smu_x (first in the shutdown order) stops answering; while its shutdown still waits, every
    other SMU has already been ramped to 0 V and switched off."""
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, rehearsal=False)
        board.measure(XOR)
        eb.emulators["smu_x"].faults.no_reply(count=None)
        frozen = board.instruments["smu_x"]
        real = frozen.safe_shutdown
        seen = {}

        def shutdown_while_watching(**kw):
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and not _off_at_zero(eb, SOURCES):
                time.sleep(0.02)
            seen["others_off"] = _off_at_zero(eb, SOURCES)
            return real(**kw)

        frozen.safe_shutdown = shutdown_while_watching
        board.close()
        assert seen["others_off"]
        assert eb.all_outputs_safe()  # (the emulator still executes what smu_x is sent; it only never replies)


def test_verify_safe_does_not_ask_a_dead_instrument_channel_after_channel():
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, timeout_s=0.5, rehearsal=False)
        board.measure(XOR)
        board.safe_state()
        emu = eb.emulators["smu_x"]
        emu.faults.no_reply(count=None)
        emu.transcript.clear()
        problems = board.verify_safe()
        asked = [line for line in emu.transcript.received() if line.upper().startswith(":OUTP")]
        board.close()
    mine = [p for p in problems if p.startswith("smu_x.")]
    assert mine == ["smu_x.1: not verified (InstrumentTimeout)",
                    "smu_x.2: not verified (InstrumentTimeout; not asked again)"]
    assert asked and all("OUTP1" in line for line in asked)  # channel 2 was never asked
    assert not [p for p in problems if not p.startswith("smu_x.")]  # the others answered: off at 0 V


def test_ctrl_c_during_a_parallel_shutdown_still_ends_with_every_output_off(caplog):
    """A Ctrl-C lands while the shutdowns run in their workers: the ramps still running are told to
    stop at once, the outputs are still switched off, and the KeyboardInterrupt is raised only
    when every instrument is done."""
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, rehearsal=False)
        board.measure(XOR)
        for port in board.wiring.smu_ports():  # live levels to ramp down from
            board.instruments[port.instrument].set_voltage(port.channel, 0.4)
        smu = board.instruments["smu_y2"]
        real = smu.safe_shutdown

        def interrupted(**kw):
            _thread.interrupt_main()  # as a Ctrl-C would, in the main (waiting) thread
            time.sleep(0.3)
            return real(**kw)

        smu.safe_shutdown = interrupted
        with caplog.at_level(logging.ERROR, logger="hil.boards.instrument"):
            with pytest.raises(KeyboardInterrupt):  # handled once every instrument is done, not lost
                board.safe_state()
        assert "a signal arrived during the safe shutdown" in caplog.text
        assert not [t for t in threading.enumerate() if t.name.startswith("hil-shutdown-")]
        assert eb.all_outputs_safe()
        smu.safe_shutdown = real
        board.close()


def test_relays_open_only_after_every_source_is_off():
    """demo-xor: the programming SMU holds its bus at 0.3 V through a closed crosspoint when the safe
    state starts; the matrix opens it only after the sources are off, so no relay switches a live
    line."""
    with EmulatedBench("demo-xor", time_mode="virtual") as eb:
        board = open_board(eb, rehearsal=False)
        board.measure(XOR)
        prog, matrix = board.instruments["smu_prog"], board.instruments["matrix"]
        channel = prog.channels[0]
        prog.set_voltage(channel, 0.0)
        prog.output(channel, True)
        matrix.connect(["1A01"])  # (at 0 V: no hot switching)
        prog.set_voltage(channel, 0.3)
        board.safe_state()
        events = eb.emulators["matrix"].hot_switch_events
        assert not events, events
        assert not matrix.closed() and eb.all_outputs_safe()
        board.close()


class _Inst:
    def __init__(self, resource):
        self.transport = type("T", (), {"resource_name": resource})()


def test_interfaces_share_a_worker_only_on_one_gpib_bus():
    assert interface_key(_Inst("GPIB0::5::INSTR")) == interface_key(_Inst("gpib0::7::INSTR")) == "GPIB0"
    assert interface_key(_Inst("GPIB1::5::INSTR")) == "GPIB1"
    gateway = interface_key(_Inst("TCPIP0::gw.lab::gpib0,5::INSTR"))
    assert gateway == interface_key(_Inst("TCPIP0::GW.lab::gpib0,9::INSTR")) != interface_key(
        _Inst("TCPIP0::gw.lab::gpib1,5::INSTR"))
    tcp = "TCPIP0::127.0.0.1::5025::SOCKET"
    assert interface_key(_Inst(tcp)) == tcp != interface_key(_Inst("TCPIP0::127.0.0.1::5026::SOCKET"))
    assert interface_key(object()) != interface_key(object())  # no resource: a lane of its own

    insts = {"a": _Inst("GPIB0::1::INSTR"), "b": _Inst("GPIB0::2::INSTR"), "c": _Inst("USB0::1::2::3::INSTR")}
    threads, order = {}, []

    def job(name):
        threads[name] = threading.current_thread()  # (idents can be reused once a worker ends; objects not)
        order.append(name)

    run_per_interface(list(insts), lambda n: interface_key(insts[n]), job, lambda: None)
    assert threads["a"] is threads["b"] is not threads["c"]  # one GPIB bus: one worker, in order
    assert threading.main_thread() not in threads.values()
    assert order.index("a") < order.index("b")


def test_jobs_run_in_the_calling_thread_when_no_thread_can_start(monkeypatch, caplog):
    """At interpreter exit some Python versions start no new threads: every job still runs."""
    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran = []
    with caplog.at_level(logging.WARNING, logger="hil.boards.instrument"):
        run_per_interface(["a", "b", "c"], lambda n: n, lambda n: ran.append((n, threading.get_ident())), lambda: None)
    assert sorted(n for n, _ in ran) == ["a", "b", "c"]
    assert {t for _, t in ran} == {threading.get_ident()}
    assert "one after another" in caplog.text


def test_a_job_that_raises_does_not_stop_its_lane(caplog):
    ran = []

    def job(name):
        ran.append(name)
        if name == "a":
            raise ValueError("broken")

    with caplog.at_level(logging.ERROR, logger="hil.boards.instrument"):
        run_per_interface(["a", "b", "x"], lambda n: "bus" if n in "ab" else n, job, lambda: None)
    assert sorted(ran) == ["a", "b", "x"] and "a: unexpected failure" in caplog.text


@pytest.mark.parametrize("names", [[], ["only"]])
def test_one_interface_runs_in_the_calling_thread(names):
    ran = []
    run_per_interface(names, lambda n: "one", lambda n: ran.append(threading.get_ident()), lambda: None)
    assert ran == [threading.get_ident()] * len(names)


def test_a_shutdown_sends_no_query_once_its_link_is_not_confirmed():
    """A frozen SMU: the read-back times out, the resync finds no identity; from then on the
    shutdown asks nothing more (each query would wait out a timeout and trigger another resync),
    while the output-off commands were still sent."""
    with EmulatedBench("scpi-xor", time_mode="virtual") as eb:
        board = open_board(eb, rehearsal=False)
        board.measure(XOR)
        emu = eb.emulators["smu_x"]
        emu.faults.no_reply(count=None)
        emu.transcript.clear()
        report = board.instruments["smu_x"].safe_shutdown()
        received = [line.upper() for line in emu.transcript.received()]
        board.close()
    assert not report.safe
    assert any(line.startswith(":OUTP1 OFF") for line in received)
    assert not any("SYST:ERR?" in line for line in received)  # the error queue was not asked


def test_a_sigterm_handler_that_exits_cannot_cut_the_safe_state_short():
    """A service wrapper's SIGTERM handler calls sys.exit while a frozen source holds its stage up
    and the programming bus is live through a closed crosspoint: the signal waits until every
    instrument is done (the ramps told to stop), then its handler runs and its SystemExit leaves;
    no worker is left running, and no relay opened on a live line."""
    with EmulatedBench("demo-xor", time_mode="virtual") as eb:
        board = open_board(eb, timeout_s=0.5, rehearsal=False)
        board.measure(XOR)
        prog, matrix = board.instruments["smu_prog"], board.instruments["matrix"]
        channel = prog.channels[0]
        prog.set_voltage(channel, 0.0)
        prog.output(channel, True)
        matrix.connect(["1A01"])
        prog.set_voltage(channel, 0.3)
        eb.emulators["smu_y2"].faults.no_reply(count=None)
        calls = []
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: (calls.append(signum), sys.exit(143)))
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            with pytest.raises(SystemExit):
                board.safe_state()
        finally:
            signal.signal(signal.SIGTERM, previous)
        running = [t.name for t in threading.enumerate() if t.name.startswith("hil-shutdown-")]
        eb.emulators["smu_y2"].faults.clear()
        assert calls == [signal.SIGTERM] and running == []
        assert not eb.emulators["matrix"].hot_switch_events and not matrix.closed()
        board.close()
        assert eb.all_outputs_safe()


def test_a_default_sigterm_while_workers_start_ends_the_process_only_after_every_job():
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        from hil.boards.interfaces import run_per_interface
        start, sent = threading.Thread.start, []
        def start_and_kill(self):
            if not sent:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` while the workers start
            start(self)
        threading.Thread.start = start_and_kill
        def job(name):
            time.sleep(0.3)  # (each job still running when the workers have all started)
            sys.stdout.write(f"job {name}\\n")  # (one write: print's pieces interleave between threads)
            sys.stdout.flush()
        run_per_interface(["a", "b", "c"], lambda n: n, job, lambda: None)
        print("survived", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert sorted(re.findall(r"job (\w)", done.stdout)) == ["a", "b", "c"] and "survived" not in done.stdout
