"""Pulsed sourcing on the Keysight B2900 (``KeysightB2900.pulse``), proven from what the emulated
instrument received: the command strings, limits refused before any I/O, the output back at 0 V
after a pulse and after a fault during one, and write-verify programming through real pyvisa-py
sockets with a B2900 as the programming SMU."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from hil.config import ConfigError, load_yaml
from hil.drivers.errors import InstrumentError, InstrumentTimeout, LimitViolation, OutputTrippedError
from hil.drivers.keysight_b2900 import KeysightB2900
from hil.drivers.limits import SourceLimits
from hil.drivers.protocols import PulsedSource, SmuChannelConfig
from hil.drivers.transport import ResourceManagers, VisaTransport
from hil.emulate.b2900 import SmuB2900Emulator
from hil.emulate.bench import EmulatedBench

TIMEOUT_S = 0.3
LIMITS = SourceLimits(v_min=-1.5, v_max=1.5, i_compliance_a=1e-3, max_step_v=1.2, max_slew_v_per_s=2e4)
CFG = SmuChannelConfig(limits=LIMITS, nplc=1.0, current_range_a=1e-3, voltage_range_v=2.0, autozero="off",
                       source_delay_s=1e-3)
G_MIN, G_MAX = 1e-8, 1e-4


@pytest.fixture(scope="module")
def rm() -> Iterator[Any]:
    with ResourceManagers() as managers:
        yield managers.get("@py")


@pytest.fixture
def smu(rm) -> Iterator[tuple[KeysightB2900, SmuB2900Emulator]]:
    """A connected driver on a standalone B2901A emulator, channel 1 on at 0 V."""
    emu = SmuB2900Emulator("smu", "B2901A")
    emu.start()
    transport = VisaTransport(rm, emu.resource, name="dut", timeout_s=TIMEOUT_S, open_timeout_s=1.0)
    drv = KeysightB2900(transport, configs={"1": CFG}, sleep=lambda s: None, shutdown_timeout_s=TIMEOUT_S)
    drv.connect()
    drv.output("1", True)
    assert drv.output_enabled("1")  # a query: every write before it was executed
    emu.transcript.clear()
    try:
        yield drv, emu
    finally:
        drv.close()
        emu.stop()


def last_state(emu: SmuB2900Emulator) -> tuple[bool, float]:
    """(output on, level in V) from the emulator's last recorded output state of channel 1."""
    s = emu.output_history("1")[-1]
    return bool(s["output_on"]), float(s["level_v"])


def test_pulse_sends_the_list_and_trigger_commands_and_ends_in_fixed_mode_at_zero(smu):
    drv, emu = smu
    assert isinstance(drv, PulsedSource)
    drv.pulse("1", 1.2, 1e-4, count=2)
    rx = emu.transcript.received()
    # acquire delay = width − integration at NPLC 4.8e-4 (the driver assumes 60 Hz: 8 µs)
    assert rx[:7] == [":SOUR1:LIST:VOLT 1.2,0,1.2,0", ":TRIG1:COUN 4", ":TRIG1:ACQ:DEL 9.2e-05",
                      ":SENS1:CURR:NPLC 0.00048", ":SOUR1:VOLT:MODE LIST", ":INIT (@1)", "*OPC?"]
    # restored: fixed mode, count 1, the configured acquire delay and NPLC; then verified at 0 V
    assert rx[7:] == [":SOUR1:VOLT:MODE FIX", ":TRIG1:COUN 1", ":TRIG1:ACQ:DEL 0.001", ":SENS1:CURR:NPLC 1",
                      ":OUTP1?", ":SOUR1:VOLT?", ":SYST:ERR?"]
    levels = [s["level_v"] for s in emu.output_history("1")[-4:]]
    assert levels == [1.2, 0.0, 1.2, 0.0]  # what the output did: two pulses, each back to 0 V
    assert last_state(emu) == (True, 0.0) and emu.chans["1"].voltage_mode == "FIX"
    assert drv.voltage_setpoint("1") == 0.0
    assert drv.snapshot()["settings"]["pulses"]["width_range_s"] == [5e-5, 1e5]  # in the run metadata


def test_a_long_pulse_train_is_uploaded_in_chunks_and_every_pulse_returns_to_zero(smu):
    drv, emu = smu
    drv.pulse("1", -0.8, 5e-5, count=60)
    rx = emu.transcript.received()
    assert rx[0] == ":SOUR1:LIST:VOLT " + ",".join(["-0.8,0"] * 50) and rx[1] == ":SOUR1:LIST:VOLT:APP " + ",".join(
        ["-0.8,0"] * 10)
    assert rx[2:4] == [":TRIG1:COUN 120", ":TRIG1:ACQ:DEL 4.2e-05"]
    levels = [s["level_v"] for s in emu.output_history("1")[-120:]]
    assert levels == [-0.8, 0.0] * 60 and last_state(emu) == (True, 0.0)


def test_limits_are_refused_before_any_io(smu):
    drv, emu = smu
    bad = [dict(amplitude_v=1.6, width_s=1e-4),          # above v_max
           dict(amplitude_v=-1.3, width_s=1e-4),         # edge above max_step_v
           dict(amplitude_v=1.0, width_s=4e-5),          # shorter than the B2900's 50 µs
           dict(amplitude_v=1.0, width_s=2e5),           # longer than 100000 s
           dict(amplitude_v=1.0, width_s=1e-4, count=0),
           dict(amplitude_v=1.0, width_s=1e-4, count=1251),  # 2502 list points
           dict(amplitude_v=1.2, width_s=5e-5)]              # 1.2 V per 50 µs point: 2.4e4 V/s
    names = []
    for kw in bad:
        with pytest.raises(LimitViolation) as info:
            drv.pulse("1", **kw)
        assert "\n" not in str(info.value)
        names.append(info.value.name)
    assert names == ["pulse amplitude", "pulse edge", "pulse width", "pulse width", "pulse count", "pulse count",
                     "pulse slew"]
    assert emu.settle() and emu.transcript.received() == []
    with pytest.raises(LimitViolation, match="50 µs|5e-05 s to 100000 s"):
        drv.pulse("1", 1.0, 1e-5)
    drv.set_voltage("1", 0.1)
    emu.transcript.clear()
    with pytest.raises(LimitViolation, match="pulses start from 0 V"):
        drv.pulse("1", 1.0, 1e-4)
    assert emu.transcript.received() == []
    drv.set_voltage("1", 0.0)
    drv.output("1", False)
    emu.transcript.clear()
    with pytest.raises(InstrumentError, match="switch it on at 0 V"):
        drv.pulse("1", 1.0, 1e-4)
    assert emu.transcript.received() == []


def test_compliance_during_the_pulse_switches_the_output_off_at_zero_and_raises(smu):
    drv, emu = smu
    emu.faults.force_compliance("1", count=1)  # the first reading of the list sits at the limit
    with pytest.raises(OutputTrippedError):
        drv.pulse("1", 1.0, 1e-4)
    assert last_state(emu) == (False, 0.0)  # output protection: 0 V, output off
    rx = emu.transcript.received()
    assert rx[rx.index("*OPC?") + 1:rx.index("*OPC?") + 5] == [
        ":SOUR1:VOLT:MODE FIX", ":TRIG1:COUN 1", ":TRIG1:ACQ:DEL 0.001", ":SENS1:CURR:NPLC 1"]
    assert drv.safe_shutdown().safe and last_state(emu) == (False, 0.0)


def test_timeout_during_the_pulse_aborts_first_restores_and_shuts_down_at_zero(smu):
    drv, emu = smu
    emu.faults.no_reply(match=r"^\*OPC\?")
    with pytest.raises(InstrumentTimeout):
        drv.pulse("1", 1.0, 1e-4)
    assert emu.settle()
    rx = emu.transcript.received()
    after = rx[rx.index("*OPC?") + 1:]
    assert after[0] == ":ABOR (@1)"  # the list is stopped before the resync and the restore
    assert after[-4:] == [":SOUR1:VOLT:MODE FIX", ":TRIG1:COUN 1", ":TRIG1:ACQ:DEL 0.001", ":SENS1:CURR:NPLC 1"]
    assert emu.chans["1"].voltage_mode == "FIX"
    assert drv.safe_shutdown().safe
    assert last_state(emu) == (False, 0.0)
    assert all(abs(float(m.group(1))) <= LIMITS.v_max
               for m in (re.match(r"^:SOUR1:VOLT (\S+)$", line) for line in rx) if m)


# ---- the B2900 as the programming SMU of a bench -----------------------------------------------------

def _b2900_bench(raw: dict) -> dict:
    bench = load_yaml("configs/benches/xor-bench.yaml")
    bench["instruments"]["prog"] = {
        "driver": "keysight_b2900", "model": "B2901A", "resource": "TCPIP::192.0.2.31::5025::SOCKET",
        # output protection switches a B2900 channel off at its limit: size the limit above the
        # largest pulse current (1.5 V across the device window's 1.3e-4 S)
        "channels": {"1": {"v_min": -1.6, "v_max": 1.6, "i_compliance_a": 1e-3, "current_range_a": 1e-3,
                           "max_step_v": 1.6, "max_slew_v_per_s": 1e5, "max_power_w": 1.6e-3, "autozero": "off"}}}
    out = copy.deepcopy(raw)
    out["board"]["bench"] = bench
    out["board"]["programming"].update(smu="prog.1", min_width_s=5e-5)
    return out


def test_programming_widths_are_checked_against_the_b2900_range():
    from hil.train.settings import parse_settings

    raw = _b2900_bench(load_yaml("configs/bench-xor.yaml"))
    raw["board"]["programming"]["min_width_s"] = 1e-7
    with pytest.raises(ConfigError) as exc:
        parse_settings(raw, "x")
    assert exc.value.problems == ["board.programming.min_width_s: 1e-07 s is outside the 5e-05..100000 s pulse "
                                  "widths of prog (keysight_b2900)"]


def test_instrument_board_programs_devices_with_b2900_pulses_through_sockets():
    """bench-xor with a B2901A programming SMU: the board's write-verify programmer pulses through
    the B2900 (list-based pulses), the emulated devices move through the pulse physics and end
    where the programmer says; every relay change happens with every source at 0 V."""
    from hil.boards.bench_factory import make_instrument_board
    from hil.train.settings import parse_settings

    s = parse_settings(_b2900_bench(load_yaml("configs/bench-xor.yaml")), "bench-xor-b2900")
    spec = s.instrument_board
    with EmulatedBench(spec.bench, time_mode="virtual", programming=spec.programming, devices=s.devices,
                       g_bounds=(s.g_min, s.g_max), readings="exact") as eb:
        board = make_instrument_board(spec, (s.g_min, s.g_max), resources=eb.resources, clock=lambda: eb.clock.now_s)
        with board:
            g0 = board.read_conductances()
            target = g0.copy()
            pick = np.flatnonzero((g0 > 1e-5) & (g0 < 6e-5))[:4]
            target[pick] *= np.array([1.25, 0.8, 1.25, 0.8])[:pick.size]
            res = board.program(target, rel_tol=0.02)
            truth = eb.world.device_conductances()
        assert eb.all_outputs_safe()
        prog = eb.emulators["prog"]
        pulses = [e for e in prog.transcript.entries("event") if " pulse " in e.text]
        relays = eb.emulators["matrix"].transcript.entries("relay")
        rx = prog.transcript.received()
    assert pick.size == 4 and res.converged[pick].all() and (res.pulses[pick] > 0).all()
    assert res.pulses.sum() == res.pulses[pick].sum()
    np.testing.assert_allclose(truth[pick], target[pick], rtol=0.021)
    # one device pulsed per pulse event, at the programmer's amplitudes, for width + trigger overhead
    assert len(pulses) == res.pulses.sum() and all(e.detail["devices"] == 1 for e in pulses)
    assert {round(abs(e.detail["pulse_v"]), 6) for e in pulses} <= {round(1.0 + 0.05 * k, 6) for k in range(11)}
    assert all(5e-5 <= e.detail["width_s"] <= 1e-4 + 2e-4 for e in pulses)
    assert sum(line.startswith(":SOUR1:LIST:VOLT ") for line in rx) == res.pulses.sum()
    # the programming channel sat at 0 V (or off) at every relay change
    states = [(e.virtual_s, e.detail["level_v"], e.detail["output_on"]) for e in prog.transcript.entries("state")]
    for r in relays:
        before = [st for st in states if st[0] <= r.virtual_s]
        assert not before or not before[-1][2] or before[-1][1] == 0.0
