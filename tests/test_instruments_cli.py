"""Tests of ``hil instruments list`` / ``probe`` through an argparse root, as ``hil`` wires them."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from hil.drivers.registry import DRIVERS
from hil.instruments_cli import add_parser

SIM = Path(__file__).resolve().parent.parent / "drivers" / "sim"


def run(argv: list[str]) -> int:
    root = argparse.ArgumentParser(prog="hil")
    add_parser(root.add_subparsers(dest="command"))
    args = root.parse_args(argv)
    return args.func(args)


@pytest.fixture
def sim_library(tmp_path):
    def copy(name: str) -> str:
        shutil.copyfile(SIM / name, tmp_path / name)
        return f"{tmp_path / name}@sim"
    return copy


def test_list_shows_every_driver_with_models_and_description(capsys):
    assert run(["instruments", "list"]) == 0
    out = capsys.readouterr().out
    for info in DRIVERS.values():
        assert info.name in out and info.description in out and ", ".join(info.models) in out
    assert "keysight_b2900" in out and "daq970a" in out and "keithley707b" in out


def test_probe_b2900_on_sim_prints_identity_snapshot_and_empty_queue(capsys, sim_library):
    code = run(["instruments", "probe", "TCPIP::192.0.2.20::5025::SOCKET",
                "--visa-library", sim_library("keysight_b2900.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "driver:    keysight_b2900" in out
    assert "Keysight Technologies B2902A serial SIM0020" in out
    assert '"read_back": "ASCII"' in out and "error queue: empty" in out
    assert "errors found at connect (cleared): none" in out
    assert "  channel 1: output OFF, source level 0 V (at connect: output OFF, source level 0 V)" in out
    assert "  channel 2: output OFF, source level 0 V" in out


def test_probe_shows_errors_found_at_connect_and_ramps_a_live_output_down(capsys, sim_library):
    import pyvisa

    library = sim_library("keysight_b2900.yaml")
    address = "TCPIP::192.0.2.20::5025::SOCKET"
    # Leave the simulated instrument as a previous session might: an error queued, channel 1 on at 0.2 V.
    manager = pyvisa.ResourceManager(library)
    try:
        bench = manager.open_resource(address, read_termination="\n", write_termination="\n")
        bench.write(":NOT:A:COMMAND")
        bench.write(":SOUR1:VOLT 0.2")
        bench.write(":OUTP1 ON")
        assert bench.query(":OUTP1?") == "ON"
        bench.close()
    finally:
        manager.close()

    assert run(["instruments", "probe", address, "--visa-library", library]) == 0
    out = capsys.readouterr().out
    assert "errors found at connect (cleared): 1 entry\n  -113, Undefined header\n" in out
    assert "error queue: empty" in out
    assert ("  channel 1: output OFF, source level 0 V (at connect: output ON, source level 0.2 V; "
            "ramped to 0 V and switched off)") in out
    assert '"at_connect": {\n        "output_on": true,\n        "source_level_v": 0.2\n      }' in out


def test_probe_707b_with_explicit_driver_and_backend_alias(capsys, sim_library):
    code = run(["instruments", "probe", "TCPIP::192.0.2.40::5025::SOCKET", "--driver", "keithley707b",
                "--backend", sim_library("keithley707b.yaml")])
    out = capsys.readouterr().out
    assert code == 0 and "Model 707B serial SIM0040" in out and '"connect_rule": "BREAK_BEFORE_MAKE"' in out


def test_probe_daq_on_sim(capsys, sim_library):
    assert run(["instruments", "probe", "TCPIP::192.0.2.30::5025::SOCKET",
                "--visa-library", sim_library("daq970a.yaml")]) == 0
    assert "driver:    daq970a" in capsys.readouterr().out


def test_probe_wrong_driver_for_instrument_fails_with_one_line(capsys, sim_library):
    code = run(["instruments", "probe", "TCPIP::192.0.2.20::5025::SOCKET", "--driver", "daq970a",
                "--visa-library", sim_library("keysight_b2900.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "B2902A" in err and "Traceback" not in err


def test_probe_unknown_sim_address_fails_cleanly(capsys, sim_library):
    code = run(["instruments", "probe", "TCPIP::192.0.2.99::5025::SOCKET",
                "--visa-library", sim_library("keysight_b2900.yaml")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("hil instruments probe: ") and err.count("\n") == 1


def test_probe_bad_resource_name_is_a_configuration_error(capsys):
    assert run(["instruments", "probe", "NOT-A-RESOURCE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hil: invalid configuration: ") and err.count("\n") == 1


def test_probe_missing_sim_file_is_a_configuration_error(capsys, tmp_path):
    assert run(["instruments", "probe", "TCPIP::192.0.2.20::5025::SOCKET",
                "--visa-library", f"{tmp_path / 'missing.yaml'}@sim"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_probe_refused_tcp_connection(capsys):
    code = run(["instruments", "probe", "TCPIP::127.0.0.1::1::SOCKET", "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 1 and "InstrumentConnectionError" in err and err.count("\n") == 1


def test_probe_no_driver_for_model(capsys, tmp_path):
    text = (SIM / "daq970a.yaml").read_text().replace("Keysight Technologies,DAQ970A", "ACME,WIDGET9")
    (tmp_path / "acme.yaml").write_text(text)
    code = run(["instruments", "probe", "TCPIP::192.0.2.30::5025::SOCKET",
                "--visa-library", f"{tmp_path / 'acme.yaml'}@sim"])
    err = capsys.readouterr().err
    assert code == 2 and "no registered driver for ACME WIDGET9" in err


def test_probe_requires_positive_timeout(capsys):
    assert run(["instruments", "probe", "TCPIP::127.0.0.1::1::SOCKET", "--timeout", "0"]) == 2


def test_probe_with_a_dead_link_says_in_one_line_that_outputs_may_be_live(capsys):
    from hil.emulate.smu2450 import Smu2450Emulator

    emu = Smu2450Emulator("smu", "2450")
    emu.start()
    try:
        emu.receive(":SOUR:VOLT 0.5")
        emu.receive(":OUTP ON")
        # the link dies at the first ramp step, every time (also after the shutdown reopened it)
        emu.faults.drop_connection(match=r"^:SOUR:VOLT 0\.4", count=None)
        code = run(["instruments", "probe", emu.resource, "--timeout", "0.5"])
        captured = capsys.readouterr()
        assert code == 1
        assert captured.err.count("\n") == 1 and "MAY STILL BE LIVE" in captured.err
        assert "InstrumentConnectionError" in captured.err and "safe:" not in captured.out
        last = emu.output_history("")[-1]
        assert last["output_on"] is True  # the warning is true: the instrument is still live
    finally:
        emu.stop()


def test_probe_says_safe_only_after_reading_the_outputs_back(capsys):
    from hil.emulate.b2900 import SmuB2900Emulator

    emu = SmuB2900Emulator("smu", "B2902A")
    emu.start()
    try:
        assert run(["instruments", "probe", emu.resource, "--timeout", "1"]) == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith("safe: outputs verified off at 0 V: '1', '2'")
        received = emu.transcript.received()
        last_off = max(i for i, x in enumerate(received) if x == ":OUTP2 OFF")
        assert {":OUTP1?", ":OUTP2?", ":SOUR1:VOLT?", ":SOUR2:VOLT?"} <= set(received[last_off:])
    finally:
        emu.stop()
