"""Emulated bench: physics-coupled instrument emulators over real loopback sockets.

Pieces (one module each):

==========================  ===================================================================
``world.World``             ONE simulated circuit (``hil.circuit``) + wiring + crosspoints + lock;
                            ports are voltage sources with a current limit, current sources or
                            open; compliance clamping; seeded, quantised readings; sentinels
``clock.BenchClock``        bench time: ``instant`` / ``virtual`` / ``realtime(scale)``
``server.LineServer``       ``ThreadingTCPServer`` on ``127.0.0.1:0``; resource
                            ``TCPIP::127.0.0.1::PORT::SOCKET``; link faults applied here
``transcript.Transcript``   timestamped record of received lines, replies, output states, faults
``faults.FaultInjector``    armed faults (no/late reply, dropped connection, endless reply,
                            garbage, forced compliance, sentinels, interlock open, misreported level)
``base.Emulator``           one instrument: ``handle(line) -> list[str]``, error queue, helpers
``scpi.ScpiEmulator``       SCPI parser (header tables in SCPI notation) + common commands
``registry``                bench ``driver:`` name → personality class (lazy, extensible)
``bench.EmulatedBench``     every instrument of a bench file on loopback, answering from one world
``pytest_plugin``           fixtures for a user's own CI
==========================  ===================================================================

How a personality plugs in
--------------------------
1. Subclass ``hil.emulate.base.Emulator`` (TSP and other line protocols) or
   ``hil.emulate.scpi.ScpiEmulator`` (SCPI). Set ``FAMILY`` (the driver registry name) and
   ``MODELS``; implement ``idn()``, ``reset()`` and -- for non-SCPI -- ``handle(line) -> list[str]``
   (one received line in, reply lines out; called with ``self.lock`` held; errors go to
   ``self.push_error(code, message)``; override ``format_error`` for the instrument's queue format).
2. Act on the world only through ``self.set_port_source(channel, output_on=..., mode=..., level=...,
   limit_a=...)`` (records the output state in the transcript), ``self.world.port_current(port)``,
   ``self.world.port_voltage(port)``, ``self.world.clamped(port)``, ``self.world.set_relay(cp, closed)``,
   ``self.world.hot_lines(cp)``; readings through ``self.world.reading(true, range, nplc)``.
   ``self.port(channel)`` gives the world port of a channel (``None`` when unwired). Take
   ``self.world.lock`` around a set-then-read sequence that must be atomic across instruments.
3. Advance bench time with ``self.advance(seconds)`` for every modelled duration.
4. Consult instrument faults: ``self.faults.take("force_compliance", line, channel)``,
   ``self.sentinel_value(channel, line)``, ``self.interlock_is_open()``,
   ``self.faults.peek("misreport_level", line, channel)``. Link faults need nothing.
5. Register it: one line in ``hil.emulate.registry.PERSONALITIES``.
"""

from hil.emulate.base import Emulator, ErrorQueue
from hil.emulate.clock import BenchClock
from hil.emulate.faults import FaultInjector
from hil.emulate.registry import personality_class, personality_names, register_personality
from hil.emulate.transcript import Transcript, TranscriptEntry
from hil.emulate.world import MISSING_SENTINEL, OVERFLOW_SENTINEL, PortSource, World, WorldError

__all__ = [
    "Emulator", "ErrorQueue", "BenchClock", "FaultInjector", "Transcript", "TranscriptEntry",
    "World", "WorldError", "PortSource", "OVERFLOW_SENTINEL", "MISSING_SENTINEL",
    "personality_class", "personality_names", "register_personality",
]
