"""The emulated world against the circuit engine it wraps (oracle: EquilibriumSolver)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.circuit.build import build_circuit
from hil.circuit.solve import EquilibriumSolver
from hil.config import load_yaml
from hil.emulate.world import GMIN_S, OVERFLOW_SENTINEL, World, WorldError


@pytest.fixture(scope="module")
def circuit():
    return build_circuit(load_yaml("sim-xor")["board"]["circuit"])


def _all_ports(circuit):
    conn = {f"s.{n}": n for n in circuit.source_names}
    conn.update({f"o.{n}": n for n in circuit.output_names})
    return conn


def _drive(world, circuit, u, w, limit=1.0):
    for n, v in zip(circuit.source_names, u):
        world.set_source(f"s.{n}", "voltage", v, limit)
    for n, v in zip(circuit.output_names, w):
        world.set_source(f"o.{n}", "voltage", v, limit)


def test_voltage_driven_world_matches_engine(circuit):
    world = World(circuit, _all_ports(circuit))
    u = np.array([0.4, -0.3, -0.4, 0.3, 1.0, -1.0])
    w = np.zeros(4)
    _drive(world, circuit, u, w)
    state = EquilibriumSolver(circuit).solve(u[None, :], w[None, :])
    for k, h in enumerate(circuit.hidden_names):
        assert world.line_voltage(h) == pytest.approx(state.e[0, k], abs=1e-12)
    for k, n in enumerate(circuit.source_names):
        assert world.port_current(f"s.{n}") == pytest.approx(state.i_src[0, k], rel=1e-9, abs=1e-15)
    for k, n in enumerate(circuit.output_names):
        assert world.port_current(f"o.{n}") == pytest.approx(-state.y[0, k], rel=1e-9, abs=1e-15)


def test_open_port_floats_to_zero_current(circuit):
    world = World(circuit, _all_ports(circuit))
    u = np.array([0.4, -0.3, -0.4, 0.3, 1.0, -1.0])
    _drive(world, circuit, u, np.zeros(4))
    world.set_source("o.y1", "open")
    v_y1 = world.line_voltage("y1")
    w = np.zeros(4)
    w[1] = v_y1
    state = EquilibriumSolver(circuit).solve(u[None, :], w[None, :])
    # the network delivers no current into the floating port (up to GMIN to ground)
    assert abs(state.y[0, 1] + GMIN_S * v_y1) < 1e-12
    assert world.port_current("o.y1") == 0.0
    assert abs(v_y1) > 1e-3


def test_compliance_clamps_to_a_current_source(circuit):
    world = World(circuit, _all_ports(circuit))
    u = np.array([0.4, -0.3, -0.4, 0.3, 1.0, -1.0])
    _drive(world, circuit, u, np.zeros(4))
    free = world.port_current("s.vb_p")
    limit = abs(free) / 4
    world.set_source("s.vb_p", "voltage", 1.0, limit)
    assert world.clamped("s.vb_p")
    assert world.port_current("s.vb_p") == pytest.approx(math.copysign(limit, free), rel=1e-12)
    v = world.line_voltage("vb_p")
    assert 0 < v < 1.0
    # the clamped terminal voltage is consistent: the engine at that voltage draws exactly the limit
    u2 = u.copy()
    u2[4] = v
    state = EquilibriumSolver(circuit).solve(u2[None, :], np.zeros((1, 4)))
    assert state.i_src[0, 4] == pytest.approx(limit, rel=1e-6)
    others = [p for p in world.ports() if p != "s.vb_p"]
    assert not any(world.clamped(p) for p in others)


def test_crosspoint_joins_a_bus_to_a_hidden_node(circuit):
    conn = _all_ports(circuit)
    conn.update({"bus_smu": "bus", "dmm.1": "h3"})
    world = World(circuit, conn, crosspoints={"m.1A01": ("bus", "h0")})
    _drive(world, circuit, np.zeros(6), np.zeros(4))
    world.set_source("o.y0", "open")  # y0 floats: its voltage follows every hidden node
    world.set_source("bus_smu", "voltage", 0.3, 1.0)
    before = world.line_voltage("y0")
    assert world.line_voltage("bus") == pytest.approx(0.3)
    world.set_relay("m.1A01", True)
    assert world.line_voltage("h0") == pytest.approx(0.3, abs=1e-12)
    assert world.line_voltage("y0") > before + 1e-3
    assert world.port_current("bus_smu") > 0
    assert world.hot_lines("m.1A01") == ["bus", "h0"]
    world.set_relay("m.1A01", False)
    assert world.line_voltage("y0") == pytest.approx(before, abs=1e-12)


def test_crosspoint_shorting_two_circuit_nodes_is_refused(circuit):
    world = World(circuit, _all_ports(circuit), crosspoints={"m.1A01": ("h0", "h1")})
    world.set_relay("m.1A01", True)
    with pytest.raises(WorldError, match="h0, h1"):
        world.solve()


def test_fighting_voltage_sources_sit_at_their_limits(circuit):
    conn = _all_ports(circuit)
    conn["other"] = "x0"
    world = World(circuit, conn)
    _drive(world, circuit, np.zeros(6), np.zeros(4))
    world.set_source("other", "voltage", 0.5, 1e-3)
    assert world.clamped("other")
    assert world.port_current("other") == pytest.approx(1e-3)


def test_solution_cache_is_invalidated_by_changes_only(circuit):
    world = World(circuit, _all_ports(circuit))
    _drive(world, circuit, np.full(6, 0.1), np.zeros(4))
    world.line_voltage("h0")
    n = world.solve_count
    world.line_voltage("h1")
    world.port_current("s.x0")
    assert world.solve_count == n
    world.set_source("s.x0", "voltage", 0.2, 1.0)
    world.line_voltage("h0")
    assert world.solve_count == n + 1


def test_readings_noise_scales_with_nplc_and_is_seeded(circuit):
    a = World(circuit, {}, seed=3)
    b = World(circuit, {}, seed=3)
    r1 = np.array([a.reading(0.5, 1.0, 1.0, noise_fraction=1e-4, resolution_fraction=1e-9) for _ in range(3000)])
    r100 = np.array([a.reading(0.5, 1.0, 100.0, noise_fraction=1e-4, resolution_fraction=1e-9) for _ in range(3000)])
    assert np.std(r1) / np.std(r100) == pytest.approx(10.0, rel=0.1)
    assert np.mean(r1) == pytest.approx(0.5, abs=1e-5)
    again = np.array([b.reading(0.5, 1.0, 1.0, noise_fraction=1e-4, resolution_fraction=1e-9) for _ in range(3000)])
    assert np.array_equal(r1, again)


def test_readings_are_quantised_and_overflow_gives_the_sentinel(circuit):
    world = World(circuit, {}, seed=0)
    values = [world.reading(0.123456789, 1.0, 1.0, noise_fraction=0.0, resolution_fraction=1e-4)]
    assert values[0] == pytest.approx(0.1235, abs=1e-12)
    assert world.reading(1.3, 1.0, 1.0) == OVERFLOW_SENTINEL
    assert world.reading(-1.3, 1.0, 1.0) == -OVERFLOW_SENTINEL
    assert world.reading(math.inf, 1.0, 1.0) == OVERFLOW_SENTINEL


def test_unknown_port_and_bad_source_are_typed_errors(circuit):
    world = World(circuit, {"s.x0": "x0"})
    with pytest.raises(WorldError, match="unknown port"):
        world.set_source("nope", "voltage", 1.0)
    with pytest.raises(WorldError, match="not finite"):
        world.set_source("s.x0", "voltage", math.nan)
    with pytest.raises(WorldError, match="mode"):
        world.set_source("s.x0", "pulse", 1.0)
