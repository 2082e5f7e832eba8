"""``hil instruments probe`` interrupted by SIGTERM / Ctrl-C in the middle of its ramp-down.

A real ``python -m hil`` process probes an emulated 2450 (127.0.0.1) whose output a previous
session left on at 2 V; the probe ramps it down in 0.1 V steps every 0.1 s. The signal arrives
mid-ramp. What the instrument received and its final state decide the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.emulate.smu2450 import Smu2450Emulator

ROOT = Path(__file__).resolve().parent.parent
LEVEL = re.compile(r"^:SOUR:VOLT (\S+)$")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def levels(emu: Smu2450Emulator) -> list[float]:
    return [float(m.group(1)) for m in (LEVEL.match(x) for x in emu.transcript.received()) if m]


def wait_for(predicate, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def live_2450():
    emu = Smu2450Emulator("smu", "2450")
    emu.start()
    emu.receive(":SOUR:VOLT 2")
    emu.receive(":OUTP ON")
    assert emu.output_history("")[-1]["output_on"] is True
    emu.transcript.clear()
    yield emu
    emu.stop()


def start_probe(emu: Smu2450Emulator) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "hil", "instruments", "probe", emu.resource, "--timeout", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signals,code,ramp_completed", [
    ((signal.SIGTERM,), 143, True),                  # one signal: the shutdown finishes the ramp
    ((signal.SIGINT, signal.SIGINT), 130, False),    # second signal: ramp skipped, output off at once
])
def test_signal_mid_ramp_ends_off_at_zero_and_says_safe_only_when_verified(live_2450, signals, code,
                                                                           ramp_completed):
    emu = live_2450
    proc = start_probe(emu)
    try:
        wait_for(lambda: len(levels(emu)) >= 3, 20.0)
        proc.send_signal(signals[0])
        if len(signals) > 1:
            n = len(levels(emu))
            wait_for(lambda: len(levels(emu)) >= n + 2, 5.0)  # the shutdown is ramping
            proc.send_signal(signals[1])
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, (out, err)
    last = emu.output_history("")[-1]
    assert (last["output_on"], last["level_v"]) == (False, 0.0)
    written = levels(emu)
    path = [2.0] + written
    assert all(abs(v) <= 2.0 for v in written)
    steps = [abs(b - a) for a, b in zip(path, path[1:])]
    if ramp_completed:
        assert max(steps) <= 0.1 + 1e-9 and written[-1] == 0.0
        assert emu.transcript.received().index(":OUTP OFF") > len(emu.transcript.received()) - 10
    else:
        # ramp skipped after the 2nd signal: output off FIRST, then the level programmed to 0 V
        received = emu.transcript.received()
        assert received.index(":OUTP OFF") < max(i for i, x in enumerate(received) if x == ":SOUR:VOLT 0")
    assert "safe: " in out and "verified off at 0 V" in out
    assert "Traceback" not in err and "interrupted" in err
