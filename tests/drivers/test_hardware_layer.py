"""The hardware test layer itself (tests/conftest.py): option parsing, skips, teardown checks.

Runs pytest in a subprocess; the real ``test_hardware.py`` is pointed at the pyvisa-sim 2450
model through ``--visa-library <copy>.yaml@sim``, so the connect fixture and the teardown
assertions run end to end without an instrument.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_hardware_tests_skip_with_reason_then_run_against_sim(tmp_path):
    target = "tests/drivers/test_hardware.py::test_connect_snapshot_clean_queue"
    skipped = run_pytest(target)
    assert skipped.returncode == 0, skipped.stdout
    assert "give --resource smu2450=<VISA address>" in skipped.stdout

    yaml = tmp_path / "keithley2450.yaml"
    shutil.copyfile(ROOT / "drivers" / "sim" / "keithley2450.yaml", yaml)
    ran = run_pytest(f"{target}[2450]", "--resource", "smu2450=TCPIP::192.0.2.10::5025::SOCKET",
                     "--visa-library", f"{yaml}@sim")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


def test_teardown_fails_when_queue_not_empty(tmp_path):
    yaml = tmp_path / "keithley2450.yaml"
    text = (ROOT / "drivers" / "sim" / "keithley2450.yaml").read_text()
    yaml.write_text(text.replace('      - {q: ":ABOR"}\n', ""))  # shutdown's :ABOR now queues -113
    ran = run_pytest("tests/drivers/test_hardware.py::test_connect_snapshot_clean_queue[2450]",
                     "--resource", "smu2450=TCPIP::192.0.2.10::5025::SOCKET", "--visa-library", f"{yaml}@sim")
    assert ran.returncode == 1, ran.stdout
    assert "error queue not empty" in ran.stdout or "Undefined header" in ran.stdout


def test_malformed_resource_option_is_usage_error():
    ran = run_pytest("tests/drivers/test_hardware.py", "--resource", "smu2450")
    assert ran.returncode == 4
    assert "NAME=VISA_ADDRESS" in ran.stderr + ran.stdout
