"""An in-process bench at the capability-protocol level: instruments as Python objects over one circuit.

``InProcessBench(circuit, wiring)`` builds SMU and scanner objects that satisfy the drivers'
capability protocols (``SourceMeter``, ``Scanner``, ``TriggeredSweeps``, ``TriggeredScans``,
``PulsedSource``) and answer from ONE ``hil.circuit`` equilibrium, so a board can be exercised
without sockets or command parsers.  It enforces the channel limits the real drivers enforce
(bounds, ``max_step_v`` between consecutive levels), counts every exchange a real instrument
would need (``exchanges``), keeps the output state per channel (``outputs``) and can add seeded
reading noise.  It is a test double for boards and benchmarks, not an instrument emulator: the
loopback emulators (``hil emulate``) test the drivers themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hil.circuit.model import Circuit
from hil.circuit.solve import EquilibriumSolver
from hil.drivers.errors import InstrumentError, LimitViolation
from hil.drivers.limits import AT_LIMIT_FRACTION, SourceLimits, check_level, check_vector
from hil.drivers.protocols import ErrorEntry, Reading, SmuChannelConfig, SweepResult

__all__ = ["InProcessBench", "FakeSmu", "FakeScanner", "FakeMatrix", "FakeProgrammingSmu"]


class _World:
    """Port levels of one circuit; every instrument reads from the same equilibrium."""

    def __init__(self, circuit: Circuit, seed: int = 0, current_noise_a: float = 0.0, voltage_noise_v: float = 0.0):
        self.circuit = circuit
        self.solver = EquilibriumSolver(circuit)
        self.level: dict[str, float] = {}  # node → level while its channel is on
        self.rng = np.random.default_rng(seed)
        self.current_noise_a = current_noise_a
        self.voltage_noise_v = voltage_noise_v
        self.armed_smus: list["FakeSmu"] = []
        self.armed_scans: list["FakeScanner"] = []
        self.exchanges = 0
        self.time_s = 0.0
        self.smus: list = []

    def program(self, g: np.ndarray) -> None:
        self.circuit = self.circuit.with_conductances(g)
        self.solver = EquilibriumSolver(self.circuit)

    set_conductances = program  # the emulated world's name, so RehearsalProgrammer works on both

    def solve_points(self, levels: Mapping[str, np.ndarray], n: int):
        """Solve n points; ``levels`` node → (n,) overrides the held levels. Returns node → V and node → A."""
        c = self.circuit
        u = np.zeros((n, c.n_sources))
        w = np.zeros((n, c.n_outputs))
        for j, name in enumerate(c.source_names):
            u[:, j] = levels.get(name, self.level.get(name, 0.0))
        for j, name in enumerate(c.output_names):
            w[:, j] = levels.get(name, self.level.get(name, 0.0))
        st = self.solver.solve(u, w)
        volts = {name: st.e[:, k] for k, name in enumerate(c.hidden_names)}
        amps = {name: st.i_src[:, k] for k, name in enumerate(c.source_names)}
        amps.update({name: -st.y[:, k] for k, name in enumerate(c.output_names)})  # SMU → network
        return volts, amps

    def noisy(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return x + sigma * self.rng.standard_normal(np.shape(x)) if sigma > 0 else x

    def run_armed(self, lead: "FakeSmu") -> None:
        """The lead's trigger run: every armed instrument steps through its list together."""
        n = lead._armed[0].shape[0]
        levels: dict[str, np.ndarray] = {}
        for smu in self.armed_smus:
            vec, _ = smu._armed
            if vec.shape[0] != n:
                raise InstrumentError("armed lists of different lengths", instrument=smu.name)
            for k, ch in enumerate(smu._armed_channels):
                levels[smu.nodes[ch]] = vec[:, k]
        volts, amps = self.solve_points(levels, n)
        for smu in self.armed_smus:
            vec, settle = smu._armed
            cur = np.stack([self.noisy(amps[smu.nodes[ch]], self.current_noise_a) for ch in smu._armed_channels], 1)
            smu._result = (vec, cur)
            for k, ch in enumerate(smu._armed_channels):
                smu._setpoint[ch] = float(vec[-1, k])
                self.level[smu.nodes[ch]] = float(vec[-1, k])
            smu._armed = None
        for scan in self.armed_scans:
            scan._result = np.stack([self.noisy(volts[scan.nodes[c]], self.voltage_noise_v) for c in scan.scan], 1)[:n]
        self.armed_smus, self.armed_scans = [], []


class _Base:
    def __init__(self, world: _World, name: str):
        self.world, self.name = world, name
        self.errors: list[ErrorEntry] = []
        self.connected = False

    def _x(self, n: int = 1) -> None:
        self.world.exchanges += n

    def connect(self) -> None:
        self._x(3)
        self.connected = True

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "driver": type(self).__name__, "resource": "inprocess"}

    def drain_errors(self, max_entries: int = 64) -> list[ErrorEntry]:
        self._x()
        out, self.errors = self.errors[:max_entries], self.errors[max_entries:]
        return out

    def check_errors(self, allowed=frozenset()) -> list[ErrorEntry]:
        entries = self.drain_errors()
        bad = [e for e in entries if e.code not in set(allowed)]
        if bad:
            from hil.drivers.errors import InstrumentReportedError

            raise InstrumentReportedError(bad[0].code, bad[0].message, entries, instrument=self.name)
        return entries

    def close(self) -> None:
        self.connected = False


class FakeSmu(_Base):
    """A multi-channel SMU: ``nodes`` maps channel → circuit node it holds."""

    def __init__(self, world: _World, name: str, nodes: Mapping[str, str], limits: Mapping[str, SourceLimits]):
        super().__init__(world, name)
        self.nodes = dict(nodes)
        self.channels = tuple(self.nodes)
        self.limits = dict(limits)
        self._setpoint = {ch: 0.0 for ch in self.channels}
        self._on = {ch: False for ch in self.channels}
        self._armed = None
        self._armed_channels: list[str] = []
        self._result = None
        self.pulses: list[tuple[str, float, float]] = []
        self.max_level_seen = {ch: 0.0 for ch in self.channels}

    def configure(self, channel: str, config: SmuChannelConfig) -> None:
        self._x()
        self.limits[channel] = config.limits

    def config(self, channel: str) -> SmuChannelConfig:
        """The channel's configuration as a driver reports it (its limits; fixed 1 mA range)."""
        lim = self.limits[channel]
        return SmuChannelConfig(limits=lim, nplc=1.0, current_range_a=max(lim.i_compliance_a, 1e-3))

    def _apply(self, ch: str, v: float) -> None:
        self._setpoint[ch] = v
        self.max_level_seen[ch] = max(self.max_level_seen[ch], abs(v))
        if self._on[ch]:
            self.world.level[self.nodes[ch]] = v

    def set_voltage(self, channel: str, level_v: float) -> None:
        lim = self.limits[channel]
        target = check_level(lim, level_v)
        start = self._setpoint[channel]
        n = max(1, math.ceil(abs(target - start) / lim.max_step_v - 1e-9)) if self._on[channel] else 1
        for k in range(1, n + 1):
            self._x()
            self._apply(channel, start + (target - start) * k / n)

    def voltage_setpoint(self, channel: str) -> float:
        self._x()
        return self._setpoint[channel]

    def set_current_limit(self, channel: str, limit_a: float) -> None:
        self._x()

    def compliance_tripped(self, channel: str) -> bool:
        self._x()
        return False

    def output(self, channel: str, on: bool) -> None:
        if not on:
            self.set_voltage(channel, 0.0)
        self._x()
        self._on[channel] = bool(on)
        self.world.level[self.nodes[channel]] = self._setpoint[channel] if on else 0.0

    def output_enabled(self, channel: str) -> bool:
        self._x()
        return self._on[channel]

    def measure_current(self, channel: str) -> Reading:
        self._x()
        _, amps = self.world.solve_points({}, 1)
        i = float(self.world.noisy(amps[self.nodes[channel]], self.world.current_noise_a)[0])
        return Reading(i, self._setpoint[channel], abs(i) >= AT_LIMIT_FRACTION * self.limits[channel].i_compliance_a)

    def _check(self, levels_v: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for ch, lv in levels_v.items():
            if not self._on[ch]:
                raise InstrumentError(f"output {ch} off", instrument=self.name)
            start = self._setpoint[ch]
            out[ch] = check_vector(self.limits[ch], lv, start_v=start, end_v=start, point_duration_s=1.0)
        return out

    def list_sweep(self, levels_v: Mapping[str, Any], settle_s: float) -> SweepResult:
        self.arm_sweep(levels_v, settle_s, lead=True)
        self.start_sweep()
        return self.fetch_sweep()

    # TriggeredSweeps
    def arm_sweep(self, levels_v: Mapping[str, Any], settle_s: float, lead: bool) -> None:
        vec = self._check(levels_v)
        self._x(len(vec) * 2)  # one list upload + trigger set-up per channel (writes)
        self._armed_channels = list(vec)
        self._armed = (np.stack([vec[ch] for ch in self._armed_channels], 1), float(settle_s))
        for arr in vec.values():
            for ch in vec:
                self.max_level_seen[ch] = max(self.max_level_seen[ch], float(np.max(np.abs(vec[ch]))))
        self.world.armed_smus.append(self)

    def start_sweep(self) -> None:
        self._x()
        self.world.run_armed(self)

    def fetch_sweep(self) -> SweepResult:
        self._x()
        vec, cur = self._result
        lim = np.array([self.limits[ch].i_compliance_a for ch in self._armed_channels])
        comp = np.abs(cur) >= AT_LIMIT_FRACTION * lim
        return SweepResult(v_source=vec, i_meas=cur, compliance=comp, channels=tuple(self._armed_channels))

    # PulsedSource
    def pulse(self, channel: str, amplitude_v: float, width_s: float, count: int = 1) -> None:
        lim = self.limits[channel]
        check_level(lim, amplitude_v)
        if abs(amplitude_v - self._setpoint[channel]) > lim.max_step_v * (1 + 1e-9):
            raise LimitViolation("pulse", abs(amplitude_v), lim.max_step_v, reason="pulse edge above max_step_v")
        self._x()
        self.pulses.append((channel, float(amplitude_v), float(width_s)))
        self.max_level_seen[channel] = max(self.max_level_seen[channel], abs(amplitude_v))
        hook = getattr(self.world, "on_pulse", None)
        if hook is not None:
            for _ in range(count):
                hook(self, channel, amplitude_v, width_s)

    def safe_shutdown(self) -> None:
        for ch in self.channels:
            self._setpoint[ch] = 0.0
            self._on[ch] = False
            self.world.level[self.nodes[ch]] = 0.0
        self._x(len(self.channels) * 2)

    @property
    def outputs(self) -> dict[str, tuple[bool, float]]:
        return {ch: (self._on[ch], self._setpoint[ch]) for ch in self.channels}


class FakeScanner(_Base):
    """A scanning voltmeter: ``nodes`` maps channel number → hidden node."""

    def __init__(self, world: _World, name: str, nodes: Mapping[int, str]):
        super().__init__(world, name)
        self.nodes = {int(k): v for k, v in nodes.items()}
        self.scan: tuple[int, ...] = ()
        self._result = None

    def configure_scan(self, channels: Sequence[int], nplc: float, range_v: float, autozero: str, delay_s: float) -> None:
        self._x()
        self.scan = tuple(int(c) for c in channels)

    def read_scan(self) -> np.ndarray:
        self._x()
        volts, _ = self.world.solve_points({}, 1)
        return np.array([self.world.noisy(volts[self.nodes[c]], self.world.voltage_noise_v)[0] for c in self.scan])

    def measure_voltage(self, channel: int) -> float:
        self._x()
        volts, _ = self.world.solve_points({}, 1)
        return float(volts[self.nodes[int(channel)]][0])

    def arm_scan(self, points: int) -> None:
        self._x(2)
        self.world.armed_scans.append(self)

    def fetch_scan(self) -> np.ndarray:
        self._x()
        return self._result

    def safe_shutdown(self) -> None:
        self._x()


class FakeMatrix(_Base):
    """A switch matrix whose crosspoint sets select devices; records hot switching."""

    def __init__(self, world: _World, name: str):
        super().__init__(world, name)
        self._closed: set = set()
        self.hot_switches: list[dict] = []
        self.changes = 0

    def _check_hot(self) -> None:
        live = {f"{i.name}.{ch}": lvl for i in self.world.smus for ch, (on, lvl) in i.outputs.items()
                if on and abs(lvl) > 1e-3}
        if live:
            self.hot_switches.append(live)
        self.changes += 1

    def connect(self, crosspoints=None, exclusive: bool = False) -> None:  # type: ignore[override]
        if crosspoints is None:
            super().connect()
            return
        self._x(2)
        self._check_hot()
        if exclusive:
            self._closed = set()
        self._closed |= {tuple(c) if isinstance(c, list) else c for c in crosspoints}

    def disconnect(self, crosspoints) -> None:
        self._x(2)
        self._check_hot()
        self._closed -= set(crosspoints)

    def open_all(self) -> None:
        self._x(2)
        if self._closed:
            self._check_hot()
        self._closed = set()

    def closed(self) -> frozenset:
        self._x()
        return frozenset(self._closed)

    def interlock_ok(self) -> bool:
        return True

    def safe_shutdown(self) -> None:
        self._x()
        self._closed = set()


class FakeProgrammingSmu(FakeSmu):
    """The programming SMU: reads and pulses the one device the matrix selects."""

    def __init__(self, world: _World, name: str, channel: str, limits: SourceLimits, matrix: FakeMatrix,
                 devices: list, model: Any, read_noise_rel: float = 0.0):
        super().__init__(world, name, {channel: f"{name}.{channel}"}, {channel: limits})
        self.matrix, self.devices, self.model = matrix, [frozenset(d) for d in devices], model
        self.read_noise_rel = read_noise_rel

    def selected(self) -> int | None:
        closed = frozenset(self.matrix._closed)
        hits = [k for k, d in enumerate(self.devices) if d == closed]
        return hits[0] if hits else None

    def measure_current(self, channel: str) -> Reading:
        self._x()
        k = self.selected()
        v = self._setpoint[channel]
        if k is None or not self._on[channel]:
            return Reading(0.0, v, False)
        g = self.world.circuit.conductance_vector()[k]
        i = g * v * (1.0 + self.read_noise_rel * self.world.rng.standard_normal())
        return Reading(float(i), v, False)

    def _apply(self, ch: str, v: float) -> None:
        self._setpoint[ch] = v
        self.max_level_seen[ch] = max(self.max_level_seen[ch], abs(v))

    def pulse(self, channel: str, amplitude_v: float, width_s: float, count: int = 1) -> None:
        super().pulse(channel, amplitude_v, width_s, count)
        k = self.selected()
        if k is None:
            return
        g = self.world.circuit.conductance_vector().copy()
        for _ in range(count):
            g[k] = self.model.pulse(g[k], k, amplitude_v, width_s)
        self.world.program(g)

    def safe_shutdown(self) -> None:
        for ch in self.channels:
            self._setpoint[ch] = 0.0
            self._on[ch] = False
        self._x(2)


class InProcessBench:
    """Fake instruments for a circuit, wired like ``wiring`` (node → ``(instrument, channel)``).

    Args:
        circuit: the physical array.
        wiring: ``{"sources": {node: (inst, ch)}, "outputs": {...}, "hidden": {node: (inst, ch)}}``.
        limits: ``{inst: SourceLimits}`` applied to every channel of that SMU.
        seed, current_noise_a, voltage_noise_v: seeded Gaussian reading noise (0: exact).
    """

    def __init__(self, circuit: Circuit, wiring: Mapping[str, Mapping[str, tuple[str, str]]],
                 limits: Mapping[str, SourceLimits], seed: int = 0, current_noise_a: float = 0.0,
                 voltage_noise_v: float = 0.0):
        self.world = _World(circuit, seed, current_noise_a, voltage_noise_v)
        smu_nodes: dict[str, dict[str, str]] = {}
        scan_nodes: dict[str, dict[int, str]] = {}
        for kind in ("sources", "outputs"):
            for node, (inst, ch) in wiring[kind].items():
                smu_nodes.setdefault(inst, {})[str(ch)] = node
        for node, (inst, ch) in wiring["hidden"].items():
            scan_nodes.setdefault(inst, {})[int(ch)] = node
        self.instruments: dict[str, Any] = {}
        for inst, nodes in smu_nodes.items():
            self.instruments[inst] = FakeSmu(self.world, inst, nodes, {ch: limits[inst] for ch in nodes})
        for inst, nodes in scan_nodes.items():
            self.instruments[inst] = FakeScanner(self.world, inst, nodes)
        self.world.smus = [i for i in self.instruments.values() if isinstance(i, FakeSmu)]

    def add_programming(self, devices: list, model: Any, limits: SourceLimits, read_noise_rel: float = 0.0,
                        smu: str = "prog", channel: str = "a", matrix: str = "matrix") -> None:
        """Add a switch matrix and a programming SMU that pulse and read devices (``devices[k]``:
        the crosspoints selecting conductance k; ``model``: a pulse-response model)."""
        mx = FakeMatrix(self.world, matrix)
        ps = FakeProgrammingSmu(self.world, smu, channel, limits, mx, devices, model, read_noise_rel)
        self.instruments[matrix] = mx
        self.instruments[smu] = ps
        self.world.smus.append(ps)

    @property
    def exchanges(self) -> int:
        """Instrument exchanges so far (each query, upload or trigger counted once)."""
        return self.world.exchanges

    def all_outputs_off_at_zero(self) -> bool:
        return all(not on and lvl == 0.0 for inst in self.instruments.values() if isinstance(inst, FakeSmu)
                   for on, lvl in inst.outputs.values())
