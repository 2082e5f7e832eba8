"""Resistive devices in the emulated world: pulse physics (hil.devices.pulses), selection through the
707B, and the write-verify programmer through real pyvisa-py sockets (2601B KIPulse pulses)."""

from __future__ import annotations

import numpy as np
import pytest

from hil.bench.instruments import make_driver
from hil.boards.programmers import WriteVerifyProgrammer, WriteVerifySettings
from hil.circuit.build import build_circuit
from hil.config import ConfigError, load_yaml
from hil.devices.faults import HEALTHY
from hil.devices.pulses import PulseResponse, parse_pulsed_devices
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench
from hil.emulate.world import DeviceWiring, World, WorldSolveError

G_MIN, G_MAX = 1e-8, 1e-4


def _array(circuit, devices=None):
    c = circuit
    return parse_pulsed_devices(devices, c.conductance_vector().size, c.n_hidden, c.n_sources, c.n_outputs,
                                G_MIN, G_MAX, c.conductance_vector())


@pytest.fixture(scope="module")
def circuit():
    return build_circuit(load_yaml("sim-xor")["board"]["circuit"])


# ---- the pulse law -----------------------------------------------------------------------------------

def test_pulse_response_is_thresholded_asymmetric_nonlinear_and_bounded():
    r = PulseResponse()
    lo, hi = 0.5e-8, 1.3e-4
    assert r.step(5e-5, 0.5, 1e-4, lo, hi) == 0.0 and r.step(5e-5, -0.4, 1e-4, lo, hi) == 0.0
    up, down = r.step(5e-5, 1.0, 1e-4, lo, hi), r.step(5e-5, -1.0, 1e-4, lo, hi)
    assert up > 0 > down and abs(down) != up  # asymmetric
    assert r.step(1.2e-4, 1.0, 1e-4, lo, hi) < 0.2 * up  # the step shrinks towards the upper bound
    assert r.step(1e-8, -1.0, 1e-4, lo, hi) > 0.1 * down  # ... and towards the lower one
    assert r.step(5e-5, 1.2, 1e-4, lo, hi) > up and r.step(5e-5, 1.0, 2e-4, lo, hi) == pytest.approx(2 * up)
    g = 5e-5
    for _ in range(2000):  # bounded: never leaves the window
        g = min(max(g + r.step(g, 1.5, 1e-3, lo, hi), lo), hi)
    assert lo <= g <= hi and g > 0.99 * hi


def test_families_act_on_pulses(circuit):
    plain = _array(circuit)
    noisy = _array(circuit, {"prog_noise": {"prog_noise_model": "proportional", "prog_noise_scale": 0.2},
                             "seed": 3})
    k = int(np.argmin(np.abs(plain.g - 3e-5)))
    g0 = float(plain.g[k])
    steps = [plain.pulse(k, 1.0, 1e-4) - g0]
    plain.g[k] = g0
    assert steps[0] > 0
    jumps = []
    for _ in range(200):  # cycle-to-cycle noise: the same pulse from the same state lands differently
        noisy.g[k] = g0
        jumps.append(noisy.pulse(k, 1.0, 1e-4) - g0)
    assert np.std(jumps) / np.mean(jumps) == pytest.approx(0.2, rel=0.25)
    assert np.mean(jumps) == pytest.approx(steps[0], rel=0.1)
    levels = _array(circuit, {"levels": {"n_levels": 33}})
    d = (levels.g_hi - levels.g_lo) / 32
    levels.pulse(k, 1.2, 1e-4)
    assert np.allclose((levels.g - levels.g_lo) / d, np.round((levels.g - levels.g_lo) / d), atol=1e-9)
    faulty = _array(circuit, {"faults": {"p_stuck_on": 0.3, "p_stuck_off": 0.3}, "seed": 1})
    bad = np.flatnonzero(faulty.faults != HEALTHY)
    assert bad.size > 0 and faulty.stuck[bad].all()
    before = faulty.g.copy()
    for j in bad[:5]:
        faulty.pulse(int(j), 1.5, 1e-3)
        faulty.pulse(int(j), -1.5, 1e-3)
    np.testing.assert_array_equal(faulty.g, before)
    with pytest.raises(ConfigError, match="board.devices.pulse.width_ref_s"):
        _array(circuit, {"pulse": {"width_ref_s": 0.0}})


# ---- the world -----------------------------------------------------------------------------------------

def _device_world(circuit, devices=None):
    m = circuit.conductance_vector().size
    conn = {f"s.{n}": n for n in circuit.source_names}
    conn.update({f"o.{n}": n for n in circuit.output_names})
    conn["prog.a"] = "bus"
    conn.update({f"dmm.{h}": h for h in circuit.hidden_names})
    select = [[f"mx.{k}"] for k in range(m)]
    return World(circuit, conn, devices=DeviceWiring(_array(circuit, devices), select, "bus"))


def test_selected_device_leaves_the_array_and_only_it_is_pulsed(circuit):
    world = _device_world(circuit)
    for n in circuit.source_names:
        world.set_source(f"s.{n}", "voltage", 0.0, 1e-3)
    g = world.device_conductances()
    world.set_relay("mx.3", True)
    assert world.selected_devices() == [3]
    assert world.circuit.conductance_vector()[3] == 0.0  # out of the array while selected
    world.set_source("prog.a", "voltage", 0.1, 1e-3)
    assert world.port_current("prog.a") == pytest.approx(0.1 * g[3], rel=1e-12)
    world.set_source("prog.a", "voltage", 0.0, 1e-3)
    assert world.pulse("prog.a", 1.2, 1e-4) == 1
    after = world.device_conductances()
    assert after[3] > g[3] and np.array_equal(np.delete(after, 3), np.delete(g, 3))
    world.set_relay("mx.3", False)
    assert world.pulse("prog.a", 1.2, 1e-4) == 0  # nothing selected: the pulse meets an open line
    np.testing.assert_array_equal(world.circuit.conductance_vector(), after)  # back in the array, new value


def test_loaded_dmm_reading_is_exact(circuit):
    """The fixed-point path for a DMM input load equals a full re-solve with the load applied."""
    world = _device_world(circuit)
    u = [0.4, -0.3, -0.4, 0.3, 1.0, -1.0]
    for n, v in zip(circuit.source_names, u):
        world.set_source(f"s.{n}", "voltage", v, 1e-3)
    for n in circuit.output_names:
        world.set_source(f"o.{n}", "voltage", 0.0, 1e-3)
    live = [h for h in circuit.hidden_names if abs(world.line_voltage(h)) > 0.05]
    assert live
    for h in circuit.hidden_names:
        for load in (1e-10, 1e-7, 1e-5):
            fast = world.port_voltage_loaded(f"dmm.{h}", load)
            world.set_load(f"dmm.{h}", load)
            full = world.line_voltage(h)
            world.set_load(f"dmm.{h}", 0.0)
            assert fast == pytest.approx(full, abs=1e-12), (h, load)
    assert abs(world.port_voltage_loaded(f"dmm.{live[0]}", 1e-5)) < abs(world.line_voltage(live[0]))


# ---- write-verify through sockets ------------------------------------------------------------------------

def _bench(devices_cfg=None):
    raw = load_yaml("configs/benches/xor-bench.yaml")
    raw["instruments"]["prog"] = {
        "driver": "keithley2600", "model": "2601B", "resource": "TCPIP::192.0.2.31::5025::SOCKET",
        "channels": {"a": {"v_min": -1.6, "v_max": 1.6, "i_compliance_a": 1e-4, "current_range_a": 1e-4,
                           "max_step_v": 1.6, "max_slew_v_per_s": 1e5, "max_power_w": 1.6e-4}}}
    prog = load_yaml("configs/bench-xor.yaml")["board"]["programming"]
    programming = {"smu": "prog.a", "matrix": "matrix", "devices": prog["devices"]}
    return EmulatedBench(raw, time_mode="virtual", programming=programming, devices=devices_cfg,
                         g_bounds=(G_MIN, G_MAX)), prog


def _programmer(eb, prog, rms, **overrides):
    bench = eb.loopback_bench
    smu, mx = make_driver(bench.instruments["prog"], rms), make_driver(bench.instruments["matrix"], rms)
    smu.connect()
    mx.connect()
    names = list(eb.world._template.topology().edge_names)
    settings = WriteVerifySettings(**{**dict(v_read=0.1, set_v=1.0, reset_v=-1.0, v_step=0.05, v_max=1.5,
                                               width_s=1e-4, rel_tol=0.02, abs_tol_s=2e-8, max_pulses=60),
                                      **overrides})
    return WriteVerifyProgrammer(smu, "a", mx, [prog["devices"][n] for n in names], settings, (G_MIN, G_MAX)), smu, mx


def _relays_at_zero_volts(eb) -> bool:
    """From the transcripts: at every relay change of the matrix every SMU channel of the bench
    (programming SMU and array SMUs) was off or at 0 V."""
    mx = eb.emulators["matrix"].transcript
    states: dict[tuple[str, str], list] = {}
    for name, emu in eb.emulators.items():
        t = emu.transcript
        for e in t.entries("state"):
            states.setdefault((name, str(e.detail.get("channel"))), []).append(
                (e.wall_s + t._t0, e.detail["level_v"], e.detail["output_on"]))
    for e in mx.entries("relay"):
        at = e.wall_s + mx._t0
        for history in states.values():
            before = [s for s in history if s[0] <= at]
            if before and before[-1][2] and abs(before[-1][1]) > 0:
                return False
    return len(mx.entries("relay")) > 0


def test_write_verify_converges_through_sockets_with_sources_at_zero_before_relays():
    eb, prog = _bench({"prog_noise": {"prog_noise_model": "proportional", "prog_noise_scale": 0.1}})
    with eb, ResourceManagers() as rms:
        wv, smu, mx = _programmer(eb, prog, rms)
        g0 = wv.read()
        np.testing.assert_allclose(g0, eb.world.device_conductances(), rtol=0.01, atol=5e-9)
        target = g0.copy()
        pick = np.flatnonzero((g0 > 5e-6) & (g0 < 6e-5))[:8]
        target[pick] *= np.array([1.3, 0.7] * 4)[:pick.size]
        res = wv.program(target)
        truth = eb.world.device_conductances()
        assert res.converged.all() and not res.stuck.any()
        assert res.pulses[pick].min() >= 1 and res.pulses.sum() == res.pulses[pick].sum()
        tol = 0.02 * target[pick] + 2e-8 + 3 * 2e-10 / 0.1  # + three σ of one 100 µA-range reading at 0.1 V
        assert np.all(np.abs(truth[pick] - target[pick]) <= tol)
        smu.safe_shutdown()
        mx.safe_shutdown()
        assert _relays_at_zero_volts(eb)
        assert not any(e.detail.get("hot_switch") for e in eb.emulators["matrix"].transcript.entries("event"))
        assert eb.emulators["prog"].transcript.entries("event")  # the pulses are in the transcript
        assert eb.all_outputs_safe()


def test_pulse_budget_and_stuck_devices_are_reported():
    eb, prog = _bench({"faults": {"p_stuck_on": 0.05, "p_stuck_off": 0.05}, "seed": 2})
    with eb, ResourceManagers() as rms:
        faults = eb.world.devices.array.faults
        wv, smu, mx = _programmer(eb, prog, rms, max_pulses=3)
        g0 = wv.read()
        target = g0.copy()
        stuck = np.flatnonzero(faults != HEALTHY)[:2]
        healthy = np.flatnonzero((faults == HEALTHY) & (g0 > 5e-6) & (g0 < 3e-5))[:2]
        target[stuck] = np.where(g0[stuck] > 5e-5, 2e-5, 8e-5)
        target[healthy] = g0[healthy] * 3  # far beyond three pulses
        wv.s = WriteVerifySettings(**{**wv.s.__dict__, "max_pulses": 3})
        res = wv.program(target)
        assert not res.converged[healthy].any() and (res.pulses[healthy] == 3).all() and not res.stuck[healthy].any()
        wv.s = WriteVerifySettings(**{**wv.s.__dict__, "max_pulses": 40, "stuck_pulses": 4,
                                          "stuck_abs_s": 1e-8})
        res = wv.program(target)
        assert res.stuck[stuck].all() and not res.converged[stuck].any()
        assert set(faults[stuck]) <= {1, 2}  # stuck-on (g_max) and stuck-off (g_min) devices
        np.testing.assert_array_equal(eb.world.device_conductances()[stuck],
                                      np.where(faults[stuck] == 1, G_MAX, G_MIN))
        smu.safe_shutdown()
        mx.safe_shutdown()
        assert eb.all_outputs_safe()


def test_programming_time_model_agrees_with_virtual_clock():
    """hil estimate's programming model, given the pulses and devices a write-verify call really
    used, against the virtual clock of that call (bench-xor through the sockets, host round trips
    charged as the estimate charges them)."""
    from hil.boards.bench_factory import make_instrument_board
    from hil.estimate_cli import estimate_run
    from hil.train.settings import parse_settings

    s = parse_settings(load_yaml("configs/bench-xor.yaml"), "bench-xor")
    spec = s.instrument_board
    with EmulatedBench(spec.bench, time_mode="virtual", programming=spec.programming, devices=s.devices,
                       g_bounds=(s.g_min, s.g_max), round_trips=True) as eb:
        board = make_instrument_board(spec, (s.g_min, s.g_max), resources=eb.resources, clock=lambda: eb.clock.now_s)
        with board:
            g0 = board.read_conductances()
            target = np.clip(g0 + np.random.default_rng(0).uniform(-2e-6, 2e-6, g0.size), G_MIN, G_MAX)
            t0 = eb.clock.now_s
            res = board.program(target, rel_tol=0.02)
            took = eb.clock.now_s - t0
        assert eb.all_outputs_safe()
    touched = int((res.pulses > 0).sum())
    trainable = estimate_run(s)["assumptions"]["trainable_devices"]
    predicted = estimate_run(s, pulses_per_device=res.pulses.sum() / touched, touched=touched / trainable)
    print(f"programming {touched} devices, {res.pulses.sum()} pulses: virtual clock {took:.3f} s, "
          f"model {predicted['program_step_s']:.3f} s")
    assert abs(predicted["program_step_s"] - took) <= 0.10 * took


def test_board_programs_between_measurements_with_every_source_at_zero():
    """The instrument board on the emulated xor bench: measure, program by pulses, measure again;
    the transcripts show every SMU at 0 V (or off) at every relay change, and the second
    measurement sees the conductances the programmer reported."""
    from hil.boards.bench_factory import make_instrument_board
    from hil.boards.simulated import SimulatedBoard
    from hil.train.settings import parse_settings

    s = parse_settings(load_yaml("configs/bench-xor.yaml"), "bench-xor")
    spec = s.instrument_board
    x = np.array([[0.0, 1.0], [1.0, 1.0]])
    with EmulatedBench(spec.bench, time_mode="virtual", programming=spec.programming, devices=s.devices,
                       g_bounds=(s.g_min, s.g_max), readings="exact") as eb:
        board = make_instrument_board(spec, (s.g_min, s.g_max), resources=eb.resources, clock=lambda: eb.clock.now_s)
        with board:
            board.measure(x)
            g0 = board.read_conductances()
            target = g0.copy()
            pick = np.flatnonzero((g0 > 1e-5) & (g0 < 6e-5))[:4]
            target[pick] *= 1.25
            res = board.program(target, rel_tol=0.02)
            assert res.converged[pick].all() and (res.pulses[pick] > 0).all()
            after = board.measure(x)
            truth = eb.world.device_conductances()
        assert eb.all_outputs_safe()
        assert _relays_at_zero_volts(eb)
        assert not any(e.detail.get("hot_switch") for e in eb.emulators["matrix"].transcript.entries("event"))
    sim = SimulatedBoard(spec.bench.circuit, s.g_min, s.g_max)
    sim.program(truth)
    np.testing.assert_allclose(after.e, sim.measure(x).e, atol=1e-12)  # the array holds the programmed devices


def test_compliance_shortcut_agrees_with_solving(circuit):
    """The no-solve compliance certificate never hides a clamped port (random levels and limits)."""
    rng = np.random.default_rng(5)
    fast, slow = _device_world(circuit), _device_world(circuit)
    slow.fast_paths = False
    ports = [f"s.{n}" for n in circuit.source_names] + [f"o.{n}" for n in circuit.output_names]
    skipped = clamped = 0
    for _ in range(40):
        levels = rng.uniform(-1.0, 1.0, len(ports))
        limits = 10.0 ** rng.uniform(-4.5, -2.5, len(ports))
        for world in (fast, slow):
            for p, v, lim in zip(ports, levels, limits):
                world.set_source(p, "voltage", float(v), float(lim))
        try:
            slow.solve()
        except WorldSolveError:  # the world's clamping iteration gives up on this draw: skip it
            continue
        for p in ports:
            fast._solution = None  # as after a source step: the shortcut is tried before any solve
            before = fast.solve_count
            expected = slow.clamped(p)
            assert fast.clamped(p) == expected, p
            skipped += fast.solve_count == before
            clamped += expected
    assert skipped > 0 and clamped > 0  # both cases occurred; the certificate did save solves
