"""``EmulatedBench``: every instrument of a bench file on loopback, answering from ONE world.

    with EmulatedBench("configs/benches/scpi-xor.yaml") as bench:
        print(bench.resources)              # {"smu_x": "TCPIP::127.0.0.1::40123::SOCKET", ...}
        bench.emulators["smu_x"].faults.no_reply()
        bench.world.line_voltage("h0")      # the physics behind every reading
        bench.clock.now_s                   # modelled bench time

Each instrument gets the personality registered for its ``driver`` (``hil.emulate.registry``),
its ``model``, and the world ports of its wired channels (``"instrument.channel"``). A matrix
personality finds its crosspoints in ``options["crosspoints"]`` as ``{"1A01": world name}``.
``bench.loopback_bench`` is the same :class:`~hil.bench.schema.Bench` with every resource
replaced by its loopback one (``visa_library`` ``@py``), ready for the real drivers.

With ``programming`` (the ``board.programming`` section of a training config: programming SMU
channel, matrix, device → crosspoints) the world models the array's devices: each conductance is
a resistive device (``hil.devices.pulses``, families and presets from ``devices`` — the
``board.devices`` mapping) on a changeover relay; closing its crosspoints takes it out of the array
and puts it between the programming SMU's line and the return, where the SMU reads it and its
voltage pulses program it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

from hil.bench.schema import Bench, load_bench, port_name
from hil.emulate.base import Emulator
from hil.emulate.clock import BenchClock
from hil.emulate.registry import personality_class
from hil.emulate.world import World

__all__ = ["EmulatedBench", "EmulationError"]


class EmulationError(RuntimeError):
    """The bench cannot be emulated (e.g. no personality for a driver)."""


class EmulatedBench:
    """Start/stop every instrument of a bench on ``127.0.0.1`` (context manager).

    Args:
        bench: a :class:`Bench`, a bench file path, a shipped bench name or a mapping.
        time_mode: ``"instant"`` (default), ``"virtual"`` or ``"realtime"``.
        time_scale: wall seconds per modelled second in ``realtime`` mode.
        seed: noise seed (default: the bench file's ``seed``).
        programming, devices, g_bounds: model the array's devices (see the module docstring):
            the ``board.programming`` and ``board.devices`` sections and the board's range (S).
        round_trips: charge every reply one host round trip of bench time (the instrument
            family's figure in ``hil.bench.timing.FIGURES``), as a remote-controlled bench spends it.
        readings: ``"noisy"`` (default: realistic noise, quantisation and reply formats),
            ``"quantised"`` (noise off) or ``"exact"`` (ideal instruments, 17-digit replies); see
            :class:`~hil.emulate.world.World`.
    """

    def __init__(self, bench: Union[Bench, str, Path, Mapping[str, Any]], *, time_mode: str = "instant",
                 time_scale: float = 1.0, seed: Optional[int] = None, readings: str = "noisy",
                 programming: Optional[Mapping[str, Any]] = None, devices: Optional[Mapping[str, Any]] = None,
                 g_bounds: tuple[float, float] = (1e-8, 1e-4), round_trips: bool = False) -> None:
        self.bench: Bench = bench if isinstance(bench, Bench) else load_bench(bench)
        self.clock = BenchClock(time_mode, time_scale)
        crosspoints = {f"{inst}.{spec}": pair for (inst, spec), pair in self.bench.wiring.crosspoints.items()}
        connections = self.bench.wiring.connections()
        wiring = None
        if programming is not None and programming.get("scheme", "write_verify") != "none":
            wiring = self._device_wiring(programming, devices, g_bounds, connections)
        self.world = World(self.bench.circuit, connections, crosspoints=crosspoints,
                           seed=self.bench.seed if seed is None else int(seed),
                           line_frequency_hz=self.bench.line_frequency_hz, readings=readings, devices=wiring)
        self.world.trigger.clock = self.clock
        self.emulators: dict[str, Emulator] = {}
        for name, spec in self.bench.instruments.items():
            try:
                cls = personality_class(spec.driver)
            except (KeyError, ImportError) as exc:
                raise EmulationError(f"instrument {name}: {exc.args[0] if exc.args else exc}") from None
            ports = {ch: port_name(name, ch) for ch in spec.channels if port_name(name, ch) in connections}
            options = dict(spec.options)
            options["channels"] = {ch: dict(c.settings) for ch, c in spec.channels.items()}
            if spec.kind == "matrix":
                options["crosspoints"] = {cp: f"{inst}.{cp}" for (inst, cp) in self.bench.wiring.crosspoints
                                          if inst == name}
            serial = str(options.pop("serial", f"EMU{len(self.emulators) + 1:04d}"))
            try:
                self.emulators[name] = cls(name, spec.model, world=self.world, clock=self.clock, ports=ports,
                                           serial=serial, options=options)
            except ValueError as exc:
                raise EmulationError(f"instrument {name}: {exc}") from None
            if round_trips:
                from hil.bench.timing import FIGURES, InstrumentFigures

                self.emulators[name].reply_latency_s = FIGURES.get(spec.driver, InstrumentFigures()).round_trip_s
        self._started = False

    def _device_wiring(self, programming: Mapping[str, Any], devices: Optional[Mapping[str, Any]],
                       g_bounds: tuple[float, float], connections: dict[str, str]) -> Any:
        """The devices of the array and how they are selected (adds the programming SMU's line to
        ``connections`` when the bench does not wire it)."""
        from hil.devices.pulses import parse_pulsed_devices
        from hil.emulate.world import DeviceWiring

        inst, _, ch = str(programming["smu"]).partition(".")
        port = port_name(inst, ch)
        bus = connections.setdefault(port, f"{inst}_program_bus")
        circuit = self.bench.circuit
        topo = circuit.topology()
        names = list(topo.edge_names)
        matrix = str(programming["matrix"])
        select = [[f"{matrix}.{str(cp).upper()}" for cp in programming["devices"][n]] for n in names]
        array = parse_pulsed_devices(dict(devices or {}), len(names), circuit.n_hidden, circuit.n_sources,
                                     circuit.n_outputs, float(g_bounds[0]), float(g_bounds[1]),
                                     circuit.conductance_vector())
        return DeviceWiring(array, select, bus)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "EmulatedBench":
        """Start every server (ephemeral ports); returns ``self``."""
        if not self._started:
            try:
                for emu in self.emulators.values():
                    emu.start()
            except BaseException:
                self.stop()
                raise
            self._started = True
        return self

    def stop(self) -> None:
        """Stop every server and close every connection (idempotent; servers stop in parallel)."""
        import threading

        def stop_one(emu: Emulator) -> None:
            try:
                emu.stop()
            except Exception:
                pass

        threads = [threading.Thread(target=stop_one, args=(emu,), daemon=True) for emu in self.emulators.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10.0)
        self._started = False

    def __enter__(self) -> "EmulatedBench":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- views -----------------------------------------------------------------------------------

    def _require_started(self) -> None:
        """A RuntimeError that says how to start the bench (the servers have no port before)."""
        if not self._started:
            raise RuntimeError(f"EmulatedBench {self.bench.name!r} is not started (its instruments have no "
                               "address yet): use `with EmulatedBench(...) as bench:` or call bench.start()")

    @property
    def resources(self) -> dict[str, str]:
        """``{instrument: "TCPIP::127.0.0.1::PORT::SOCKET"}`` (once started)."""
        self._require_started()
        return {name: emu.resource for name, emu in self.emulators.items()}

    @property
    def loopback_bench(self) -> Bench:
        """The bench with loopback resources and the ``@py`` VISA library (once started)."""
        self._require_started()
        instruments = {name: dataclasses.replace(spec, resource=self.emulators[name].resource, visa_library="@py")
                       for name, spec in self.bench.instruments.items()}
        return dataclasses.replace(self.bench, instruments=instruments)

    def loopback_mapping(self, source: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a raw bench mapping with every ``resource`` replaced by its loopback one (once started)."""
        import copy

        self._require_started()

        data = copy.deepcopy(dict(source))
        root = data["bench"] if set(data) == {"bench"} else data
        for name, inst in root.get("instruments", {}).items():
            if name in self.emulators:
                inst["resource"] = self.emulators[name].resource
                inst["visa_library"] = "@py"
        return data

    def settle(self, timeout_s: float = 2.0) -> bool:
        """Wait until every emulator has executed everything its clients sent (see
        ``Emulator.settle``); returns False on timeout."""
        return all(emu.settle(timeout_s) for emu in self.emulators.values())

    def output_states(self) -> dict[str, dict[str, Any]]:
        """Last recorded output state per ``instrument.channel`` (``output_on``, ``level_v``, ...),
        after ``settle()``."""
        self.settle()
        out: dict[str, dict[str, Any]] = {}
        for name, emu in self.emulators.items():
            for entry in emu.transcript.states():
                out[port_name(name, str(entry.get("channel")))] = entry
        return out

    def internal_errors(self) -> list[str]:
        """``"instrument: Error: message"`` for every failure of the emulators themselves (an
        emulator bug or a world it cannot solve, not modelled instrument behaviour), in order. Such a
        line gets no reply, so the client meets a timeout whose cause only this list names."""
        found = []
        for name, emu in self.emulators.items():
            for entry in emu.transcript.entries("event"):
                text = str(entry.text)
                for tag in ("internal error: ", "server error: "):
                    if text.startswith(tag):
                        found.append((entry.wall_s, f"{name}: {text[len(tag):]}"))
        return [text for _, text in sorted(found)]

    def all_outputs_safe(self, tolerance_v: float = 1e-9) -> bool:
        """True if every source output is off and programmed to 0 V (from the emulators' state)."""
        return all(not s["output_on"] and abs(s["level_v"]) <= tolerance_v for s in self.output_states().values())
