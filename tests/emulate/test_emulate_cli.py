"""``hil emulate``: prints resources, serves real pyvisa-py clients, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.bench.schema import load_bench
from hil.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_emulate_prints_every_resource_and_writes_a_loopback_bench(tmp_path, capsys):
    out = tmp_path / "loopback.yaml"
    assert main(["emulate", "scpi-xor", "--duration", "0.05", "--write-bench", str(out)]) == 0
    text = capsys.readouterr().out
    resources = re.findall(r"TCPIP::127\.0\.0\.1::\d+::SOCKET", text)
    assert len(resources) == 7
    assert "stopped" in text
    bench = load_bench(out)
    assert sorted(spec.resource for spec in bench.instruments.values()) == sorted(resources)


def test_emulate_bad_bench_is_a_one_line_config_error(capsys):
    assert main(["emulate", "no-such-bench"]) == 2
    err = capsys.readouterr().err
    assert "bench file not found: no-such-bench" in err and "Traceback" not in err


def test_a_shipped_bench_in_the_checkouts_spelling_works_from_any_folder(tmp_path, monkeypatch, capsys):
    """README's example, hil emulate configs/benches/scpi-xor.yaml, worked only from the repository root."""
    monkeypatch.chdir(tmp_path)
    assert main(["emulate", "configs/benches/scpi-xor.yaml", "--duration", "0.05"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["emulate", "mybenches/scpi-xor.yaml", "--duration", "0.05"]) == 2  # a file of one's own: not replaced
    assert "bench file not found: mybenches/scpi-xor.yaml" in capsys.readouterr().err


def test_emulate_without_a_personality_exits_2(monkeypatch, capsys):
    from hil.emulate import registry

    monkeypatch.delitem(registry.PERSONALITIES, "keithley2450")
    assert main(["emulate", "scpi-xor", "--duration", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no emulator for driver 'keithley2450'" in err[0]


def test_emulate_serves_clients_and_stops_on_ctrl_c():
    import pyvisa

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hil", "emulate", "scpi-xor"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving"):
                break
        daq = next(re.search(r"TCPIP::\S+", l).group(0) for l in lines if l.strip().startswith("daq"))
        rm = pyvisa.ResourceManager("@py")
        try:
            res = rm.open_resource(daq, read_termination="\n", write_termination="\n", timeout=3000)
            assert res.query("*IDN?").startswith("Keysight Technologies,DAQ970A")
            res.close()
        finally:
            rm.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped; 1 commands received" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["--duration", "-5"], "--duration -5.0: must be a finite number of seconds >= 0"),
    (["--time-scale", "inf"], "--time-scale inf: must be a finite number of wall seconds per modelled second > 0"),
    (["--duration", "1", "--write-bench", "/no/such/folder/x.yaml"], "the folder /no/such/folder does not exist"),
])
def test_emulate_bad_options_exit_2_before_serving(argv, fragment, capsys):
    assert main(["emulate", "scpi-xor", *argv]) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err and len(captured.err.strip().splitlines()) == 1  # one problem, one line
    assert "TCPIP::" not in captured.out  # nothing was started


def test_emulate_warns_about_levels_left_programmed_and_relays_left_closed():
    """What a client left behind is named when the emulators stop: not only outputs left on, but an
    output off with a non-zero programmed level (the next output-on applies it at once) and closed
    matrix relays."""
    import argparse
    import io
    import threading

    import pyvisa

    from hil.emulate.cli import cmd_emulate

    out, stop = io.StringIO(), threading.Event()
    args = argparse.Namespace(bench="demo-xor", time_mode="instant", time_scale=1.0, seed=None, readings="noisy",
                              write_bench=None, duration=None)
    server = threading.Thread(target=cmd_emulate, args=(args,), kwargs={"out": out, "stop_event": stop}, daemon=True)
    server.start()
    deadline = time.monotonic() + 20
    while "serving" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    resource = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+)\s.*?(TCPIP::\S+)", out.getvalue(), re.M)}
    rm = pyvisa.ResourceManager("@py")
    try:
        smu = rm.open_resource(resource["smu_y2"], read_termination="\n", write_termination="\n", timeout=3000)
        smu.write(":SOUR:VOLT 0.3")  # output stays off
        assert float(smu.query(":SOUR:VOLT?")) == pytest.approx(0.3)
        matrix = rm.open_resource(resource["matrix"], read_termination="\n", write_termination="\n", timeout=3000)
        matrix.write('channel.close("1A01")')
        assert matrix.query('print(channel.getclose("slot1"))').strip() == "1A01"
        smu.close()
        matrix.close()
    finally:
        rm.close()
        stop.set()
        server.join(timeout=20)
    text = out.getvalue()
    assert "warning: smu_y2 is off but its level is programmed to 0.3 V" in text, text
    assert "warning: matrix left relays closed: 1A01" in text, text


def test_emulate_with_a_duration_beyond_any_timer_serves_until_stopped():
    """--duration 1e300 is finite, so accepted: it used to end in an internal error (OverflowError of
    the wait) instead of serving."""
    import argparse
    import io
    import threading

    from hil.emulate.cli import cmd_emulate

    out, stop, result = io.StringIO(), threading.Event(), []
    args = argparse.Namespace(bench="scpi-xor", time_mode="instant", time_scale=1.0, seed=None, readings="noisy",
                              write_bench=None, duration=1e300)
    server = threading.Thread(target=lambda: result.append(cmd_emulate(args, out=out, stop_event=stop)), daemon=True)
    server.start()
    deadline = time.monotonic() + 20
    while "serving" not in out.getvalue() and server.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert server.is_alive(), out.getvalue()  # still serving, not failed
    stop.set()
    server.join(20)
    assert result == [0] and "stopped" in out.getvalue()


def test_write_bench_onto_the_bench_file_itself_is_refused(tmp_path, monkeypatch, capsys):
    """--write-bench naming the bench file itself replaced its real resources by loopback addresses
    (and dropped its comments): the user's bench description was lost."""
    mine = tmp_path / "mine.yaml"
    original = (ROOT / "configs" / "benches" / "scpi-xor.yaml").read_text()
    mine.write_text(original)
    monkeypatch.chdir(tmp_path)
    assert main(["emulate", str(mine), "--write-bench", "./mine.yaml", "--duration", "0"]) == 2
    captured = capsys.readouterr()
    assert "--write-bench ./mine.yaml: that is the bench file itself" in captured.err and "TCPIP::" not in captured.out
    assert mine.read_text() == original


def _serve_in_subprocess(argv: list[str]) -> tuple[subprocess.Popen, str]:
    """``hil emulate`` ARGV in another process, returned once it serves (loopback only), with what it
    printed until then."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hil", "emulate", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        head.append(line)
        if not line or line.startswith("serving"):
            break
    return proc, "".join(head)


@pytest.mark.parametrize("with_config", [True, False])
def test_a_run_in_another_process_programs_the_devices_when_emulate_has_the_config(tmp_path, capsys, with_config):
    """``hil emulate --config CONFIG --write-bench B``, then ``hil train`` of that config pointed at B in
    another process: the write-verify pulses program the emulated devices (none stuck).  Without
    ``--config`` the devices are not modelled: every pulsed device stays where it was (stuck), as
    the emulator's start-up line says."""
    bench = tmp_path / "loopback.yaml"
    argv = (["--config", "bench-xor"] if with_config else ["xor-bench"]) + ["--write-bench", str(bench)]
    proc, head = _serve_in_subprocess(argv)
    try:
        assert bench.is_file(), proc.stderr.read() if proc.poll() is not None else "no loopback bench written"
        text = (ROOT / "configs" / "bench-xor.yaml").read_text()
        assert "bench: xor-bench\n" in text
        cfg = tmp_path / "bx.yaml"
        cfg.write_text(text.replace("bench: xor-bench\n", f"bench: {bench}\n"))
        assert main(["train", str(cfg), "--set", "train.epochs=1", "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ("resistive devices modelled from bench-xor" in head) == with_config
    assert ("resistive devices not modelled" in head) != with_config
    import csv

    (metrics,) = (tmp_path / "runs").glob("*/metrics.csv")
    row = next(csv.DictReader(metrics.open()))
    assert int(row["program_pulses"]) > 0
    if with_config:
        assert int(row["program_stuck"]) == 0 and int(row["program_unconverged"]) == 0
    else:
        assert int(row["program_stuck"]) == int(row["program_pulsed"]) > 0


def test_emulate_config_options_are_checked(capsys):
    assert main(["emulate", "--config", "sim-xor", "--duration", "0"]) == 2
    assert "not a bench config" in capsys.readouterr().err
    assert main(["emulate", "scpi-xor", "--config", "bench-xor", "--duration", "0"]) == 2
    assert "its bench is 'xor-bench', not 'scpi-xor'" in capsys.readouterr().err
    assert main(["emulate", "--duration", "0"]) == 2
    assert "give a bench file" in capsys.readouterr().err


def test_emulate_config_without_programming_says_the_devices_are_not_modelled(tmp_path, capsys):
    text = (ROOT / "configs" / "bench-xor.yaml").read_text()
    start, end = text.index("  programming:"), text.index("data:")
    cfg = tmp_path / "no-programming.yaml"
    cfg.write_text(text[:start] + "  programming: {scheme: none}\n" + text[end:])
    assert main(["emulate", "--config", str(cfg), "--duration", "0"]) == 0
    out = capsys.readouterr().out
    assert f"resistive devices not modelled: {cfg} programs none" in out and "modelled from" not in out


def test_a_resource_that_reaches_another_instrument_is_named_and_sent_nothing(tmp_path, capsys):
    """The programming SMU's resource pointed at another instrument (a reachable, wrong address: here
    a 2450 where the bench names a 2601B): the run stops with exit 1 naming that entry as not
    connected, and nothing but ``*IDN?`` reaches the other instrument (the shutdown sent it SMU
    queries before, timed out, and reported the channel as possibly live)."""
    import yaml

    from hil.emulate.smu2450 import Smu2450Emulator

    bench = tmp_path / "loopback.yaml"
    other = Smu2450Emulator("other", "2450")
    other.start()
    proc, _ = _serve_in_subprocess(["--config", "bench-xor", "--write-bench", str(bench)])
    try:
        raw = yaml.safe_load(bench.read_text())
        instruments = raw["instruments"] if "instruments" in raw else raw["bench"]["instruments"]
        instruments["prog"]["resource"] = other.resource
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(yaml.safe_dump(raw))
        text = (ROOT / "configs" / "bench-xor.yaml").read_text()
        cfg = tmp_path / "bx.yaml"
        cfg.write_text(text.replace("bench: xor-bench\n", f"bench: {wrong}\n"))
        code = main(["train", str(cfg), "--set", "train.epochs=1", "--runs-dir", str(tmp_path / "runs"), "-q"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        other.stop()
    err = capsys.readouterr().err
    assert code == 1, err
    assert "unexpected instrument" in err and "prog: not connected, another instrument answers" in err, err
    assert "prog.a: not verified" not in err
    assert [line.strip() for line in other.transcript.received()] == ["*IDN?"]
