"""The one physical world behind every emulated instrument of a bench.

A :class:`World` holds a ``hil.circuit`` circuit (the same engine, element laws and solvers as the
simulated board), the bench wiring (which instrument port sits on which line), crosspoints that
join lines, and one re-entrant lock. Emulators never compute physics: they set port sources and
ask the world for voltages and currents, so a level set on one SMU changes what the DAQ and every
other SMU read next.

Lines are the circuit's nodes (sources ``x0…``, rails, hidden ``h0…``, outputs ``y0…``, ground
``"0"``) plus any extra line named by the wiring (e.g. a programming bus). A closed crosspoint
joins two lines into one net.

Ports (``"instrument.channel"``) carry a :class:`PortSource`:

* ``voltage`` -- a voltage source ``level`` (V) with a current limit ``limit_a`` (A);
* ``current`` -- a current source ``level`` (A) into the line;
* ``open``    -- nothing (a high-impedance off state, or a voltmeter input);

plus an optional ``load_s`` conductance to ground (S), e.g. a DMM's 10 MΩ input.

**Solve.** Nets held by exactly one voltage source are fixed; other nets are unknowns of an outer
Newton iteration (finite-difference Jacobian, evaluated in one batched call of the circuit
engine): the voltage of a net holding a circuit source/output node, or the current injected into
a hidden node. Nets of extra lines only are solved in closed form. Every net has ``GMIN_S`` to
ground (as SPICE), so a floating net is defined.

**Compliance clamping.** After a solve, every voltage source whose current exceeds its limit becomes
a current source at ``sign(I)·limit`` and the world is solved again; at most one pass per port.
Clamped ports are reported by :meth:`World.clamped`.

**Readings.** :meth:`World.reading` adds seeded Gaussian noise (σ ∝ range/√NPLC), quantises to the
range resolution and returns the overflow sentinel ``+9.9E37`` beyond the over-range limit.
The world's ``readings`` mode (:data:`READING_MODES`) idealises them for verification:

* ``noisy`` (default) -- noise, quantisation and the instruments' reply formats, as above;
* ``quantised``       -- no noise; quantised to the range resolution, real reply formats;
* ``exact``           -- ideal instruments: no noise, no quantisation, no voltmeter input loading
  (:meth:`set_load` records 0 S) and replies with 17 significant digits (float64 round-trips), so
  what a driver reads is the circuit's own solution.

Solutions are cached and invalidated by every source, load or relay change.

**Devices** (optional :class:`DeviceWiring`): every conductance is a resistive device
(``hil.devices.pulses.PulsedArray``) on a changeover relay. With all its crosspoints closed a
device leaves the array (0 S there) and sits between the programming line and ground, where
:meth:`World.pulse` programs it and the programming SMU reads it. The array solver is
reprogrammed in place (same structure) after every pulse or selection change.

**Cheap but exact.** A compliance check that a bound certifies (:meth:`World.clamped`) needs no
solve; a DMM input load is solved as a fixed point from the held solution, for every hidden node
in one batched solve, and certified (:meth:`World.port_voltage_loaded`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Optional

import numpy as np

from hil.circuit.model import GROUND, Circuit
from hil.circuit.solve import EquilibriumSolver

__all__ = [
    "World", "DeviceWiring", "BenchTrigger", "PortSource", "WorldSolution", "WorldError", "WorldSolveError",
    "OVERFLOW_SENTINEL", "MISSING_SENTINEL", "GMIN_S", "HOT_SWITCH_V", "READING_MODES", "EXACT_DIGITS",
]

OVERFLOW_SENTINEL = 9.9e37
MISSING_SENTINEL = 9.91e37
#: conductance from every net to ground, S (defines floating nets, as SPICE's gmin)
GMIN_S = 1e-12
#: a relay change on a line above this many volts is a hot-switch event
HOT_SWITCH_V = 1e-3
#: reading modes of a world (see the module docstring)
READING_MODES = ("noisy", "quantised", "exact")
#: significant digits of every number an emulator replies in ``exact`` mode (float64 round-trips)
EXACT_DIGITS = 17

_MODES = ("voltage", "current", "open")


class WorldError(ValueError):
    """Invalid wiring or request (unknown port/line, crosspoint shorting two circuit nodes, ...)."""


class WorldSolveError(RuntimeError):
    """The outer iteration did not converge; ``report`` has the iteration history."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class PortSource:
    """What an instrument port applies to its line.

    Attributes:
        mode: ``"voltage"``, ``"current"`` or ``"open"``.
        level: V (voltage mode) or A into the line (current mode); ignored when open.
        limit_a: current limit of a voltage source, A (``inf``: none).
        load_s: conductance from the line to ground inside the instrument, S.
    """

    mode: str = "open"
    level: float = 0.0
    limit_a: float = math.inf
    load_s: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise WorldError(f"port mode {self.mode!r}: one of {_MODES}")
        if not math.isfinite(self.level):
            raise WorldError(f"port level {self.level!r} is not finite")
        if not (self.limit_a > 0):
            raise WorldError(f"current limit {self.limit_a!r} A must be > 0")
        if not (self.load_s >= 0 and math.isfinite(self.load_s)):
            raise WorldError(f"load {self.load_s!r} S must be finite and >= 0")


@dataclass
class WorldSolution:
    """One operating point of the world.

    Attributes:
        line_v: voltage of every line, V.
        port_i: current each port delivers into its line, A (positive = sourcing).
        clamped: ports whose voltage source was turned into a current source at its limit.
        report: solve details (passes, Newton iterations, residuals, circuit solve reports).
    """

    line_v: dict[str, float]
    port_i: dict[str, float]
    clamped: frozenset[str]
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceWiring:
    """The programmable devices of a world.

    Attributes:
        array: the devices' state and physics (:class:`hil.devices.pulses.PulsedArray`), one
            device per conductance in ``Circuit.topology()`` order.
        select: per device, the crosspoints (world names, e.g. ``"matrix.1A01"``) that, all
            closed, take it out of the array (a changeover relay) and put it between ``bus`` and
            the return (ground).
        bus: the programming line (the programming SMU's line).
    """

    array: Any
    select: list
    bus: str


class _InjectingSolver(EquilibriumSolver):
    """The circuit engine with extra currents injected into hidden nodes (A, shape (B, n))."""

    injection: Optional[np.ndarray] = None

    def _prepare(self, u, w, warm=None):
        u, w, b, b_src = super()._prepare(u, w, warm)
        if self.injection is not None:
            b = b + self.injection
        return u, w, b, b_src


class _Uf:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {x: x for x in items}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class BenchTrigger:
    """One trigger line wired to every instrument of the bench (e.g. the SMUs' digital I/O pin 1
    and the DAQ's Ext Trig input on one cable).

    Instruments waiting for it register with :meth:`arm`; the instrument that drives it calls
    :meth:`pulse` once per point, in two steps as a bench settles: ``"source"`` (every armed
    source steps to its next level) and, after the lead's delay, ``"measure"`` (every armed meter
    takes its reading). With the bench ``clock`` set, the meters of a measure step read at the
    same time as each other and as the driving instrument: the step lasts as long as the slowest
    of them (the clock reaches that instant at the next source step or arm). A participant is a callable ``(step, point)``; :meth:`disarm` removes it.
    The caller holds the world lock, so a pulse is one consistent change of the world.
    """

    def __init__(self) -> None:
        self._armed: list[Any] = []
        self.pulses = 0
        #: the bench clock (set by the emulated bench): with it the participants of a measure step
        #: take their readings simultaneously with each other and with the driving instrument
        self.clock: Any = None
        self._pending: Optional[float] = None  # bench time at which the last measure step's meters finish

    def arm(self, participant: Any) -> None:
        """Wait for pulses (idempotent)."""
        self.settle()
        if participant not in self._armed:
            self._armed.append(participant)

    def settle(self) -> None:
        """Let the bench clock reach the end of the last measure step's slowest reading."""
        if self._pending is not None and self.clock is not None:
            self.clock.advance(self._pending - self.clock.now_s)
        self._pending = None

    def disarm(self, participant: Any) -> None:
        """Stop waiting for pulses (idempotent)."""
        if participant in self._armed:
            self._armed.remove(participant)

    @property
    def armed(self) -> int:
        """Number of participants waiting for pulses."""
        return len(self._armed)

    def wait(self, done: Any, idle_s: float = 10.0) -> bool:
        """Wait until the event ``done`` is set while pulses keep coming; False once no pulse has
        arrived for ``idle_s`` seconds (nothing drives the line)."""
        last, since = self.pulses, time.monotonic()
        while not done.wait(0.2):
            if self.pulses != last:
                last, since = self.pulses, time.monotonic()
            elif time.monotonic() - since > idle_s:
                return False
        return True

    def pulse(self, step: str, point: int) -> None:
        """Deliver one ``step`` (``"source"`` or ``"measure"``) of pulse ``point`` to every armed
        participant; a participant whose count is complete disarms itself."""
        if step == "source":
            self.pulses += 1
            self.settle()
        parallel = step == "measure" and self.clock is not None and self.clock.mode != "realtime"
        t0 = self.clock.now_s if parallel else 0.0
        end = t0
        for participant in list(self._armed):
            participant(step, point)
            if parallel:  # meters integrate at the same time: account for the slowest only
                end = max(end, self.clock.now_s)
                self.clock.rewind_to(t0)
        if parallel and end > t0:
            self._pending = end


class World:
    """One simulated bench: circuit + wiring + crosspoints + one lock.

    Args:
        circuit: the ``hil.circuit`` circuit (its conductances are the array under test).
        connections: ``{port: line}``; port names ``"instrument.channel"``; lines are circuit
            node names or new line names.
        crosspoints: ``{crosspoint: (line_a, line_b)}``; crosspoint names as the matrix emulator
            uses them (``"matrix.1A01"``); all start open.
        seed: seed of the reading-noise generator.
        line_frequency_hz: mains frequency in Hz (integration times ``NPLC / f``).
        readings: ``"noisy"`` (default), ``"quantised"`` or ``"exact"`` (:data:`READING_MODES`).
        devices: the programmable devices (:class:`DeviceWiring`): their pulse physics and the
            crosspoints that select each one onto the programming line. Without it the
            conductances only change through :meth:`set_conductances`.
    """

    def __init__(self, circuit: Circuit, connections: Mapping[str, str], *,
                 crosspoints: Optional[Mapping[str, tuple[str, str]]] = None, seed: int = 0,
                 line_frequency_hz: float = 50.0, readings: str = "noisy",
                 devices: Optional["DeviceWiring"] = None) -> None:
        if readings not in READING_MODES:
            raise WorldError(f"readings {readings!r}: one of {', '.join(READING_MODES)}")
        self.readings = readings
        self.lock = threading.RLock()
        self._template = circuit
        self.line_frequency_hz = float(line_frequency_hz)
        self._source_index = {s: k for k, s in enumerate(circuit.source_names)}
        self._output_index = {o: k for k, o in enumerate(circuit.output_names)}
        self._hidden_index = {h: k for k, h in enumerate(circuit.hidden_names)}
        self.connections: dict[str, str] = {str(p): str(l) for p, l in connections.items()}
        self.crosspoints: dict[str, tuple[str, str]] = {str(k): (str(a), str(b))
                                                        for k, (a, b) in (crosspoints or {}).items()}
        self.devices = devices
        self._selectors: dict[str, list[int]] = {}
        self._selected: frozenset[int] = frozenset()
        if devices is not None:
            self._wire_devices(devices)
        lines = list(circuit.node_names)
        for line in list(self.connections.values()) + [x for ab in self.crosspoints.values() for x in ab]:
            if line not in lines:
                lines.append(line)
        self.lines: tuple[str, ...] = tuple(lines)
        self._sources: dict[str, PortSource] = {p: PortSource() for p in self.connections}
        self._closed: set[str] = set()
        self._solver = _InjectingSolver(circuit)
        self._g_array: Optional[np.ndarray] = None  # conductances the array solver holds, S
        if devices is not None:
            self._program_array()
        self._rng = np.random.default_rng(seed)
        self._solution: Optional[WorldSolution] = None
        self._g_scale = float(max(circuit.laplacian_sparse().diagonal().max(initial=0.0), 1e-9))
        self.solve_count = 0
        #: use the certified shortcuts (no-solve compliance check, fixed-point DMM loading); False
        #: re-solves the world for each, as a reference (benchmarks/emulated_iris_step.py)
        self.fast_paths = True
        #: line servers of the emulators sharing this world (commands are ordered across them)
        self.servers: set[Any] = set()
        #: the bench trigger line shared by every instrument of this world
        self.trigger = BenchTrigger()

    # -- wiring and state ----------------------------------------------------------------------

    def ports(self) -> list[str]:
        """Every port name."""
        return list(self.connections)

    def line_of(self, port: str) -> str:
        """The line a port is wired to."""
        try:
            return self.connections[port]
        except KeyError:
            raise WorldError(f"unknown port {port!r}; wired ports: {', '.join(sorted(self.connections)) or 'none'}") from None

    def has_port(self, port: str) -> bool:
        return port in self.connections

    def source(self, port: str) -> PortSource:
        """What the port applies now."""
        self.line_of(port)
        with self.lock:
            return self._sources[port]

    def set_source(self, port: str, mode: str, level: float = 0.0, limit_a: float = math.inf) -> None:
        """Set a port to a voltage source (V, limit A), current source (A) or open; keeps its load."""
        self.line_of(port)
        with self.lock:
            new = PortSource(mode, float(level), float(limit_a), self._sources[port].load_s)
            if new != self._sources[port]:
                self._sources[port] = new
                self._solution = None

    def set_load(self, port: str, conductance_s: float) -> None:
        """Conductance from the port's line to ground inside the instrument, S (DMM input); 0 S
        whatever is asked in ``exact`` mode (ideal voltmeters)."""
        self.line_of(port)
        with self.lock:
            new = replace(self._sources[port], load_s=0.0 if self.readings == "exact" else float(conductance_s))
            if new != self._sources[port]:
                self._sources[port] = new
                self._solution = None

    def set_relay(self, crosspoint: str, closed: bool) -> None:
        """Close or open a crosspoint (joins/separates its two lines)."""
        if crosspoint not in self.crosspoints:
            raise WorldError(f"unknown crosspoint {crosspoint!r}; wired: {', '.join(sorted(self.crosspoints)) or 'none'}")
        with self.lock:
            before = crosspoint in self._closed
            if closed and not before:
                self._closed.add(crosspoint)
                self._solution = None
            elif not closed and before:
                self._closed.discard(crosspoint)
                self._solution = None
            if crosspoint in self._selectors and closed != before:
                select = self.devices.select
                selected = frozenset(k for k in range(len(select)) if all(cp in self._closed for cp in select[k]))
                if selected != self._selected:
                    self._selected = selected
                    self._program_array()

    def relay_closed(self, crosspoint: str) -> bool:
        with self.lock:
            return crosspoint in self._closed

    def closed_crosspoints(self) -> list[str]:
        with self.lock:
            return sorted(self._closed)

    def hot_lines(self, crosspoint: str, threshold_v: float = HOT_SWITCH_V) -> list[str]:
        """Lines of ``crosspoint`` whose present voltage exceeds ``threshold_v`` (hot switching)."""
        a, b = self.crosspoints[crosspoint]
        lines = [a, b]
        for k in self._selectors.get(crosspoint, ()):  # a device's changeover: its array terminals too
            topo = self._template.topology()
            lines += [topo.node_names[int(i)] for i in topo.edges[k]]
        with self.lock:
            sol = self.solve()
            return [x for x in dict.fromkeys(lines) if abs(sol.line_v.get(x, 0.0)) > threshold_v]

    @property
    def circuit(self) -> Circuit:
        """The circuit with the conductances the array holds now."""
        with self.lock:
            return self._solver.circuit

    def set_conductances(self, g: np.ndarray) -> None:
        """Set the array's conductances (S, flat ``Circuit.topology()`` order) in place (the
        solver keeps its structure); with modelled devices this sets their state directly."""
        with self.lock:
            g = np.asarray(g, float)
            if self.devices is not None:
                self.devices.array.g[:] = g
                self._program_array()
            elif self._solver.program(g):
                self._solution = None

    # -- programmable devices ----------------------------------------------------------------------

    def _wire_devices(self, devices: "DeviceWiring") -> None:
        m = self._template.conductance_vector().size
        if devices.array.m != m or len(devices.select) != m:
            raise WorldError(f"devices: {devices.array.m} devices and {len(devices.select)} selectors for "
                             f"{m} conductances")
        for k, cps in enumerate(devices.select):
            if not cps:
                raise WorldError(f"device {k}: no selecting crosspoint")
            for cp in cps:
                if cp in self.crosspoints:
                    raise WorldError(f"crosspoint {cp!r} selects a device and is also wired to lines "
                                     f"{self.crosspoints[cp]}")
                self.crosspoints[cp] = (devices.bus, f"{devices.bus}:dev{k}")
                self._selectors.setdefault(cp, []).append(k)

    def _device_line(self, k: int) -> str:
        return f"{self.devices.bus}:dev{k}"

    def selected_devices(self) -> list[int]:
        """Devices now taken out of the array onto the programming line (all their crosspoints closed)."""
        with self.lock:
            return sorted(self._selected)

    def _program_array(self) -> None:
        """Program the array solver with the devices' conductances as a read sees them (selected
        devices are out of the array: 0 S); invalidates the solution."""
        g = self.devices.array.seen()
        self._g_seen = g
        g_array = g.copy()
        if self._selected:
            g_array[list(self._selected)] = 0.0
        self._solver.program(g_array)
        self._g_array = g_array
        self._solution = None

    def device_conductances(self) -> np.ndarray:
        """True conductance of every device, S (the emulator's hidden truth, for tests)."""
        with self.lock:
            if self.devices is None:
                return self._solver.nodal.g.copy()
            return self.devices.array.g.copy()

    def pulse(self, port: str, amplitude_v: float, width_s: float, count: int = 1) -> int:
        """``count`` voltage pulses of ``amplitude_v`` (V) and ``width_s`` (s) from 0 V applied by
        ``port`` (a voltage source with its present current limit): every device selected onto
        the port's net sees them (device to the return); a device whose current would exceed the
        limit sees ``limit / g`` instead. Returns the number of devices pulsed."""
        line = self.line_of(port)
        with self.lock:
            if self.devices is None or not self._selected or count < 1:
                return 0
            _, net_of = self._nets()
            net = net_of[line]
            limit = self._sources[port].limit_a
            hit = [k for k in sorted(self._selected) if net_of[self._device_line(k)] == net]
            array = self.devices.array
            for k in hit:
                for _ in range(int(count)):
                    g = float(array.g[k])
                    v = amplitude_v
                    if math.isfinite(limit) and g * abs(v) > limit:
                        v = math.copysign(limit / g, v)
                    array.pulse(k, v, width_s)
            if hit:
                self._program_array()
            return len(hit)

    # -- queries -------------------------------------------------------------------------------

    def line_voltage(self, line: str) -> float:
        """Voltage of a line, V."""
        with self.lock:
            sol = self.solve()
            if line not in sol.line_v:
                raise WorldError(f"unknown line {line!r}")
            return sol.line_v[line]

    def port_voltage(self, port: str) -> float:
        """Voltage at a port's terminal, V."""
        return self.line_voltage(self.line_of(port))

    def port_voltage_loaded(self, port: str, load_s: float) -> float:
        """Voltage at a port's terminal while the port loads its line with ``load_s`` (S) to
        ground and everything else stays as it is (a scanning DMM's input while its channel relay
        is closed), V; the world's state and its cached solution are left unchanged.

        Exact: when the present solution has no outer unknowns and the port's net is a hidden
        node held by no voltage source, the loaded voltage is the fixed point of
        ``v = e_h(injection −load_s·v)``, found from the cached solution and one circuit solve
        (exact where the diode states do not change, e.g. any ideal diode network away from a
        kink) and certified by one more solve (|residual| ≤ 1e-13 V + 1e-12·|v|); iterated further
        if needed, otherwise the whole world is re-solved with the load applied.
        """
        line = self.line_of(port)
        with self.lock:
            if self.readings == "exact":
                load_s = 0.0
            load_s = float(load_s)
            current = self._sources[port].load_s
            sol = self.solve()
            if load_s == current:
                return sol.line_v[line]
            v = self._loaded_fast(port, line, load_s - current, sol) if self.fast_paths else None
            if v is not None:
                return v
            self.set_load(port, load_s)
            try:
                return self.line_voltage(line)
            finally:
                self.set_load(port, current)
                self._solution = sol  # the same state as before: its solution still holds

    def _loaded_fast(self, port: str, line: str, extra_s: float, sol: WorldSolution) -> Optional[float]:
        """The fixed-point path of :meth:`port_voltage_loaded`; None when it does not apply.

        Solved for every eligible hidden node at once (one batched circuit solve per iteration,
        each row loading one node) and cached with the solution, so a scanner reading its
        channels one after another costs two batched solves per operating point."""
        if sol.report.get("unknowns", 1) != 0 or extra_s < 0 or self._solver.injection is not None:
            return None
        cache = sol.report.setdefault("loaded", {})
        if extra_s not in cache:
            cache[extra_s] = self._loaded_all(extra_s, sol)
        return cache[extra_s].get(line)

    def _loaded_all(self, extra_s: float, sol: WorldSolution) -> dict[str, float]:
        """{line: loaded voltage} for every line on a hidden node that only open ports share (see
        :meth:`_loaded_fast`); lines whose iteration does not certify are left out."""
        nets, net_of = self._nets()
        busy = {net_of[self.connections[p]] for p, src in self._sources.items() if src.mode != "open"}
        busy |= {net_of[self._device_line(k)] for k in self._selected}
        rows: list[tuple[int, list[str]]] = []
        for root, members in nets.items():
            nodes = [x for x in members if x in self._hidden_index]
            if len(nodes) == 1 and root not in busy:
                rows.append((self._hidden_index[nodes[0]], members))
        if not rows:
            return {}
        idx = np.array([h for h, _ in rows])
        B = len(rows)
        u0 = np.repeat(sol.report["u0"][None, :], B, axis=0)
        w0 = np.repeat(sol.report["w0"][None, :], B, axis=0)
        inj = np.zeros((B, self._template.n_hidden))
        sel = np.arange(B)

        def f(v: np.ndarray) -> np.ndarray:
            inj[sel, idx] = -extra_s * v
            self._solver.injection = inj
            try:
                return self._solver.solve(u0, w0).e[sel, idx]
            finally:
                self._solver.injection = None

        v0 = np.array([sol.line_v[members[0]] for _, members in rows])
        v1 = f(v0)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(v0 != 0.0, (v1 - v0) / v0, 0.0)  # f is affine in v while the diodes hold
        v = np.where(slope < 1.0, v0 / (1.0 - slope), v1)
        done = np.zeros(B, bool)
        out = np.empty(B)
        for _ in range(20):
            fv = f(v)
            ok = ~done & (np.abs(fv - v) <= 1e-13 + 1e-12 * np.abs(v))
            out[ok], done[ok] = fv[ok], True
            if done.all():
                break
            v = np.where(done, v, fv)
        result: dict[str, float] = {}
        for k, (_, members) in enumerate(rows):
            if done[k]:
                for x in members:
                    result[x] = float(out[k])
        return result

    def port_current(self, port: str) -> float:
        """Current the port delivers into its line, A (positive = sourcing)."""
        self.line_of(port)
        with self.lock:
            return self.solve().port_i[port]

    def clamped(self, port: str) -> bool:
        """True if the port's voltage source sits at its current limit."""
        self.line_of(port)
        with self.lock:
            if self.fast_paths and self._solution is None and self._surely_within_limit(port):
                return False
            return port in self.solve().clamped

    def _surely_within_limit(self, port: str) -> bool:
        """A certificate that ``port`` cannot be at its limit, without solving: its net is one
        source/output node held by this voltage source alone, and the current it can deliver,
        |I| ≤ G_node·(|V| + V_max) + G_load·|V|, stays below the limit. V_max bounds every node
        voltage (the largest source level or diode reference in magnitude: a network of
        resistors and diodes obeys the maximum principle). False when it does not apply."""
        src = self._sources[port]
        if src.mode != "voltage" or not math.isfinite(src.limit_a) or self._selected:
            return False
        diodes = self._template.diodes
        if diodes.element is not None:
            return False
        volts = []
        for p, other in self._sources.items():
            if other.mode == "current":
                return False
            if other.mode == "voltage":
                volts.append(abs(other.level))
        nets, net_of = self._nets()
        root = net_of[self.connections[port]]
        nodes = [x for x in nets[root] if x in self._source_index or x in self._output_index
                 or x in self._hidden_index or x == GROUND]
        if len(nodes) != 1 or nodes[0] in self._hidden_index or nodes[0] == GROUND:
            return False
        held = [p for p in self._sources if self._sources[p].mode == "voltage" and net_of[self.connections[p]] == root]
        if held != [port]:
            return False
        nd = self._solver.nodal
        node = nodes[0]
        g_node = (float(nd.in_col_sum[self._source_index[node]]) if node in self._source_index
                  else float(nd.out_row_sum[self._output_index[node]]))
        g_load = sum(self._sources[p].load_s for p in self._sources if net_of[self.connections[p]] == root)
        v_max = max(max(volts, default=0.0), float(np.max(np.abs(diodes.v_ref), initial=0.0)))
        v = abs(src.level)
        return g_node * (v + v_max) + (g_load + GMIN_S) * v < 0.98 * src.limit_a

    # -- solve -----------------------------------------------------------------------------------

    def solve(self) -> WorldSolution:
        """Operating point of the present state (cached until the next change)."""
        with self.lock:
            if self._solution is None:
                if self.devices is not None and self.devices.array.dynamic_reads:
                    self._program_array()  # read noise: every operating point sees a fresh draw
                self._solution = self._solve()
                self.solve_count += 1
            return self._solution

    def _nets(self) -> tuple[dict[str, list[str]], dict[str, str]]:
        """(root → member lines, line → root) of the present relay state (cached per relay state)."""
        key = frozenset(self._closed)
        cached = getattr(self, "_nets_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        nets_of = self._build_nets()
        self._nets_cache = (key, nets_of)
        return nets_of

    def _build_nets(self) -> tuple[dict[str, list[str]], dict[str, str]]:
        uf = _Uf(self.lines)
        for cp in self._closed:
            a, b = self.crosspoints[cp]
            uf.union(a, b)
        nets: dict[str, list[str]] = {}
        for line in self.lines:
            nets.setdefault(uf.find(line), []).append(line)
        return nets, {line: uf.find(line) for line in self.lines}

    def _solve(self) -> WorldSolution:
        nets, net_of = self._nets()
        circuit_nodes = set(self._template.node_names)
        node_in_net: dict[str, Optional[str]] = {}
        for root, members in nets.items():
            nodes = [m for m in members if m in circuit_nodes]
            if len(nodes) > 1:
                raise WorldError(f"closed crosspoints join circuit nodes {', '.join(nodes)}: "
                                 "shorting two nodes of the array is not modelled")
            node_in_net[root] = nodes[0] if nodes else None
        ports_in_net: dict[str, list[str]] = {root: [] for root in nets}
        for port in sorted(self._sources):
            ports_in_net[net_of[self.connections[port]]].append(port)
        sources = dict(self._sources)
        clamped: set[str] = set()
        # sources fighting on one net: the first keeps the net, the others sit at their limits
        for root, ports in ports_in_net.items():
            vs = [p for p in ports if sources[p].mode == "voltage"]
            if node_in_net[root] == GROUND:
                vs_fixed = []
            else:
                vs_fixed = vs[:1]
            for p in vs:
                if p in vs_fixed:
                    continue
                ref = 0.0 if not vs_fixed else sources[vs_fixed[0]].level
                if node_in_net[root] == GROUND or abs(sources[p].level - ref) > 1e-12:
                    sign = 1.0 if sources[p].level > ref else -1.0
                    sources[p] = replace(sources[p], mode="current", level=sign * sources[p].limit_a)
                    clamped.add(p)
        report: dict[str, Any] = {"passes": 0, "newton_iterations": []}
        for _ in range(len(sources) + 1):
            report["passes"] += 1
            line_v, port_i = self._solve_fixed_modes(nets, node_in_net, ports_in_net, sources, report)
            newly = []
            for p, src in sources.items():
                if src.mode == "voltage" and abs(port_i[p]) > src.limit_a * (1 + 1e-9):
                    newly.append(p)
            if not newly:
                return WorldSolution(line_v, port_i, frozenset(clamped), report)
            for p in newly:
                sign = 1.0 if port_i[p] > 0 else -1.0
                sources[p] = replace(sources[p], mode="current", level=sign * sources[p].limit_a)
                clamped.add(p)
        raise WorldSolveError("compliance clamping did not settle", report)

    def _solve_fixed_modes(self, nets, node_in_net, ports_in_net, sources, report):
        c = self._template
        p_n, q_n, n_n = c.n_sources, c.n_outputs, c.n_hidden
        device_g: dict[str, float] = {}  # selected devices: conductance from their net to ground, S
        if self._selected:
            _, net_of = self._nets()
            for k in self._selected:
                root = net_of[self._device_line(k)]
                device_g[root] = device_g.get(root, 0.0) + float(self._g_seen[k])
        fixed_v: dict[str, float] = {}
        for root, ports in ports_in_net.items():
            if node_in_net[root] == GROUND:
                fixed_v[root] = 0.0
                continue
            vs = [p for p in ports if sources[p].mode == "voltage"]
            if vs:
                fixed_v[root] = sources[vs[0]].level

        def norton(root: str) -> tuple[float, float]:
            """(injected current A, conductance to ground S) of the non-voltage ports of a net;
            ``GMIN_S`` is added except on hidden nodes (the circuit anchors those itself)."""
            j = g = 0.0
            for p in ports_in_net[root]:
                s = sources[p]
                g += s.load_s
                if s.mode == "current":
                    j += s.level
            return j, g + device_g.get(root, 0.0) + (0.0 if node_in_net[root] in self._hidden_index else GMIN_S)

        def acts(root: str) -> bool:
            """True if an instrument on the net injects current or loads it."""
            return device_g.get(root, 0.0) > 0 or any(sources[p].mode != "open" or sources[p].load_s > 0
                                                      for p in ports_in_net[root])

        # unknowns: ("v", root) for free nets on a circuit port node, ("i", root) for hidden nodes
        unknowns: list[tuple[str, str]] = []
        for root in nets:
            node = node_in_net[root]
            if node in self._hidden_index:
                if root in fixed_v or acts(root):
                    unknowns.append(("i", root))
            elif node is not None and node != GROUND and root not in fixed_v:
                unknowns.append(("v", root))
        u0 = np.zeros(p_n)
        w0 = np.zeros(q_n)
        for root, node in node_in_net.items():
            if node is None or root not in fixed_v:
                continue
            if node in self._source_index:
                u0[self._source_index[node]] = fixed_v[root]
            elif node in self._output_index:
                w0[self._output_index[node]] = fixed_v[root]

        def evaluate(xs: np.ndarray):
            """Batched engine solve for unknown vectors ``xs`` (B, m); residuals (B, m) and state."""
            B = xs.shape[0]
            u = np.tile(u0, (B, 1))
            w = np.tile(w0, (B, 1))
            inj = np.zeros((B, n_n))
            for k, (kind, root) in enumerate(unknowns):
                node = node_in_net[root]
                if kind == "v":
                    if node in self._source_index:
                        u[:, self._source_index[node]] = xs[:, k]
                    else:
                        w[:, self._output_index[node]] = xs[:, k]
                else:
                    inj[:, self._hidden_index[node]] = xs[:, k]
            self._solver.injection = inj if unknowns else None
            try:
                state = self._solver.solve(u, w)
            finally:
                self._solver.injection = None
            res = np.zeros((B, len(unknowns)))
            for k, (kind, root) in enumerate(unknowns):
                node = node_in_net[root]
                j, g = norton(root)
                if kind == "v":
                    into = (state.i_src[:, self._source_index[node]] if node in self._source_index
                            else -state.y[:, self._output_index[node]])
                    res[:, k] = (j - g * xs[:, k] - into) / self._g_scale
                else:
                    e = state.e[:, self._hidden_index[node]]
                    if root in fixed_v:
                        res[:, k] = e - fixed_v[root]
                    else:
                        res[:, k] = (xs[:, k] - (j - g * e)) / self._g_scale
            return res, state

        m = len(unknowns)
        x = np.zeros(m)
        for k, (kind, root) in enumerate(unknowns):
            if kind == "i" and root in fixed_v:
                x[k] = 0.0
        iters = 0
        if m:
            h = 1e-5
            steps = np.array([h if kind == "v" else h * self._g_scale for kind, _ in unknowns])
            res, state = evaluate(x[None, :])
            r = res[0]
            tol = 1e-12
            while True:
                if float(np.max(np.abs(r))) <= tol:
                    break
                if iters >= 60:
                    raise WorldSolveError(f"world solve: residual {float(np.max(np.abs(r))):.3g} after {iters} Newton "
                                          "iterations", {"unknowns": unknowns, "residual": r.tolist()})
                iters += 1
                xs = np.vstack([x] + [x + steps[k] * np.eye(m)[k] for k in range(m)])
                res_fd, _ = evaluate(xs)
                jac = (res_fd[1:] - res_fd[0]).T / steps
                try:
                    dx = np.linalg.solve(jac, -r)
                except np.linalg.LinAlgError:
                    dx = np.linalg.lstsq(jac, -r, rcond=None)[0]
                norm0 = float(np.max(np.abs(r)))
                t = 1.0
                for _ in range(30):
                    trial = x + t * dx
                    res_t, state_t = evaluate(trial[None, :])
                    if float(np.max(np.abs(res_t[0]))) < norm0 or t < 1e-6:
                        break
                    t *= 0.5
                x, r, state = trial, res_t[0], state_t
                if t < 1e-6 and float(np.max(np.abs(r))) >= norm0:
                    raise WorldSolveError("world solve: line search failed", {"unknowns": unknowns, "residual": r.tolist()})
        else:
            self._solver.injection = None
            state = self._solver.solve(u0[None, :], w0[None, :])
        report["newton_iterations"].append(iters)
        report["circuit"] = state.report  # SolveReport (``to_dict()`` for JSON)
        report["unknowns"] = m
        report["u0"], report["w0"] = u0, w0

        # line voltages
        net_v: dict[str, float] = {}
        for root, members in nets.items():
            node = node_in_net[root]
            if node == GROUND:
                net_v[root] = 0.0
            elif node in self._source_index:
                net_v[root] = float(state.u[0, self._source_index[node]])
            elif node in self._output_index:
                net_v[root] = float(state.w[0, self._output_index[node]])
            elif node in self._hidden_index:
                net_v[root] = float(state.e[0, self._hidden_index[node]])
            elif root in fixed_v:
                net_v[root] = fixed_v[root]
            else:
                j, g = norton(root)
                net_v[root] = j / g
        line_v = {}
        for root, members in nets.items():
            for line in members:
                line_v[line] = net_v[root]
        # port currents
        port_i: dict[str, float] = {}
        for root, ports in ports_in_net.items():
            v = net_v[root]
            node = node_in_net[root]
            vs = [p for p in ports if sources[p].mode == "voltage"]
            other = 0.0
            for p in ports:
                s = sources[p]
                if s.mode == "current":
                    port_i[p] = s.level - s.load_s * v
                elif s.mode == "open":
                    port_i[p] = -s.load_s * v
                if p not in vs:
                    other += port_i[p]
            if not vs:
                continue
            if node in self._source_index:
                into = float(state.i_src[0, self._source_index[node]])
            elif node in self._output_index:
                into = float(-state.y[0, self._output_index[node]])
            elif node in self._hidden_index:
                ks = [i for i, (kind, r_) in enumerate(unknowns) if r_ == root]
                into = float(x[ks[0]]) if ks else 0.0
            else:
                into = 0.0
            need = into + device_g.get(root, 0.0) * v - other  # GMIN only defines floating nets; a held net needs none
            if node == GROUND:
                need = 0.0
            for p in vs:
                port_i[p] = need / len(vs)
        return line_v, port_i

    # -- readings --------------------------------------------------------------------------------

    @property
    def exact(self) -> bool:
        """True in ``exact`` reading mode: emulators reply with :data:`EXACT_DIGITS` digits."""
        return self.readings == "exact"

    def reply_digits(self, digits: int) -> int:
        """Significant digits of a number in a reply: the instrument's ``digits``, or
        :data:`EXACT_DIGITS` in ``exact`` mode."""
        return EXACT_DIGITS if self.exact else int(digits)

    def reading(self, true_value: float, range_: float, nplc: float, *, noise_fraction: float = 2e-6,
                resolution_fraction: float = 1e-6, over_range: float = 1.2) -> float:
        """A measured value: ``true + N(0, σ)`` with ``σ = noise_fraction·range/√NPLC``, quantised
        to ``resolution_fraction·range``; ``±9.9E37`` if ``|true| > over_range·range`` or not finite.
        No noise in ``quantised`` mode; neither noise nor quantisation in ``exact`` mode.

        Args:
            true_value: the physical value (V or A).
            range_: the measurement range (same unit), > 0.
            nplc: integration time in power-line cycles, > 0.
        """
        if not math.isfinite(true_value):
            return OVERFLOW_SENTINEL if not true_value < 0 else -OVERFLOW_SENTINEL
        r = abs(float(range_)) if range_ and math.isfinite(range_) else max(abs(true_value), 1e-12)
        if abs(true_value) > over_range * r:
            return math.copysign(OVERFLOW_SENTINEL, true_value)
        if self.readings != "noisy":
            noise_fraction = 0.0
        if self.readings == "exact":
            resolution_fraction = 0.0
        sigma = noise_fraction * r / math.sqrt(max(float(nplc), 1e-6))
        with self.lock:
            noisy = true_value + float(self._rng.normal(0.0, sigma)) if sigma > 0 else true_value
        res = resolution_fraction * r
        if res > 0:
            noisy = round(noisy / res) * res
            noisy = float(f"{noisy:.12g}")  # a multiple of the resolution, without binary round-off
        return float(noisy)

    def integration_time_s(self, nplc: float) -> float:
        """Duration of one integration of ``nplc`` power-line cycles, s."""
        return float(nplc) / self.line_frequency_hz
