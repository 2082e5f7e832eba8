"""Emulator base class: one object per emulated instrument, shared by all its connections.

A personality (one instrument family) subclasses :class:`Emulator` (or
``hil.emulate.scpi.ScpiEmulator`` for SCPI instruments) and implements

``handle(line) -> list[str | bytes]``
    execute ONE received program message (a line without terminator) and return the replies
    to send, each followed by ``\\n`` (``[]`` for none; ``bytes`` are sent verbatim, e.g. binary
    blocks). Called with ``self.lock`` held, so state changes are atomic
    with respect to other connections. Errors go to ``self.errors`` (``push_error``), never raise.
``reset()``
    ``*RST`` / ``reset()`` defaults (outputs off, lists empty, ...); the base implementation
    clears nothing (the error queue survives ``*RST`` on real instruments).
``format_error(code, message)``
    one error-queue entry as the instrument prints it (SCPI ``-113,"Undefined header"``; TSP
    ``code\\tmessage\\tseverity\\tnode``).

Helpers for personalities: ``port(channel)`` (the world port wired to a channel, or ``None``),
``set_port_source(...)`` (applies an output state to the world and records a ``state`` entry in
the transcript), ``measure(...)`` (world reading with noise, sentinel faults applied),
``advance(duration_s)`` (virtual clock), ``faults`` (armed faults), ``transcript``.

The server side (``start``/``stop``/``resource``/``refuse_connections``) is identical for every
personality.
"""

from __future__ import annotations

import abc
import collections
import math
import threading
from collections.abc import Mapping
from typing import Any, Optional, Union

from hil.emulate.clock import BenchClock
from hil.emulate.faults import FaultInjector
from hil.emulate.server import LineServer
from hil.emulate.transcript import Transcript
from hil.emulate.world import MISSING_SENTINEL, OVERFLOW_SENTINEL, World

__all__ = ["Emulator", "ErrorQueue", "SCPI_ERROR_MESSAGES"]

SCPI_ERROR_MESSAGES = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -225: "Out of memory",
    -285: "Program syntax error",
    -286: "Program runtime error",
    -300: "Device-specific error",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}


class ErrorQueue:
    """FIFO error queue of fixed depth; on overflow the last entry becomes ``-350``.

    Args:
        depth: number of entries (``>= 2``).
    """

    def __init__(self, depth: int = 10) -> None:
        self.depth = max(2, int(depth))
        self._items: collections.deque[tuple[int, str]] = collections.deque()
        self._lock = threading.Lock()

    def push(self, code: int, message: Optional[str] = None) -> None:
        text = message if message is not None else SCPI_ERROR_MESSAGES.get(int(code), "Error")
        with self._lock:
            if len(self._items) >= self.depth:
                self._items[-1] = (-350, SCPI_ERROR_MESSAGES[-350])
            else:
                self._items.append((int(code), text))

    def pop(self) -> tuple[int, str]:
        """Oldest entry, or ``(0, "No error")``."""
        with self._lock:
            return self._items.popleft() if self._items else (0, SCPI_ERROR_MESSAGES[0])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def entries(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Emulator(abc.ABC):
    """One emulated instrument (state, error queue, transcript, faults, server).

    Args:
        name: instrument name (as in the bench file).
        model: model token answered in ``*IDN?`` (e.g. ``"2450"``, ``"B2902A"``, ``"DAQ970A"``).
        world: the shared :class:`World` (``None``: an instrument wired to nothing).
        clock: the bench clock (default: a private ``instant`` clock).
        ports: ``{channel: world port}`` for wired channels (e.g. ``{"1": "smu.1"}``).
        serial: serial number in ``*IDN?``.
        options: personality-specific settings from the bench file (e.g. ``slot``, ``slots``).
    """

    #: registry family name (the ``hil.drivers.registry`` driver name it impersonates)
    FAMILY: str = ""
    #: models this personality accepts
    MODELS: tuple[str, ...] = ()
    #: error-queue depth
    ERROR_QUEUE_DEPTH: int = 10

    def __init__(self, name: str, model: str, *, world: Optional[World] = None,
                 clock: Optional[BenchClock] = None, ports: Optional[Mapping[str, str]] = None,
                 serial: str = "EMU0001", options: Optional[Mapping[str, Any]] = None) -> None:
        if self.MODELS and model not in self.MODELS:
            raise ValueError(f"{type(self).__name__}: model {model!r} not one of {', '.join(self.MODELS)}")
        self.name = name
        self.model = model
        self.world = world
        self.clock = clock or BenchClock("instant")
        self.ports: dict[str, str] = {str(k): str(v) for k, v in (ports or {}).items()}
        if world is not None:
            for ch, port in self.ports.items():
                world.line_of(port)
        self.serial = serial
        self.options: dict[str, Any] = dict(options or {})
        self.lock = threading.RLock()
        self.transcript = Transcript(name, self.clock)
        self.faults = FaultInjector(self.transcript)
        self.errors = ErrorQueue(self.ERROR_QUEUE_DEPTH)
        self._server = LineServer(self)
        if world is not None:
            world.servers.add(self._server)
            self._server.group = world.servers
        self._port_state: dict[str, tuple] = {}

    # -- personality API -------------------------------------------------------------------------

    @abc.abstractmethod
    def handle(self, line: str) -> list[Union[str, bytes]]:
        """Execute one program message; return the replies (``str`` or ``bytes``; ``[]`` for none)."""

    def reset(self) -> None:
        """``*RST`` defaults; personalities override (and call ``super().reset()``)."""

    @abc.abstractmethod
    def idn(self) -> str:
        """The ``*IDN?`` reply."""

    def format_error(self, code: int, message: str) -> str:
        """One error-queue entry as the instrument prints it (SCPI form by default)."""
        return f'{int(code):+d},"{message}"'

    # -- entry point used by the server ------------------------------------------------------------

    #: bench time one reply costs the host (a LAN/GPIB round trip), s; 0 unless the bench sets it
    reply_latency_s: float = 0.0

    def receive(self, line: str) -> list[Union[str, bytes]]:
        """Record ``line`` in the transcript and execute it (lock held); returns the reply lines."""
        self.transcript.record("rx", line)
        with self.lock:
            try:
                replies = list(self.handle(line))
                if replies and self.reply_latency_s > 0:
                    self.advance(self.reply_latency_s)  # the host waits one round trip for a reply
                return replies
            except Exception as exc:  # an emulator bug must not kill the connection silently
                self.transcript.record("event", f"internal error: {type(exc).__name__}: {exc}")
                self.push_error(-300, f"Device-specific error; emulator: {type(exc).__name__}: {exc}"[:200])
                return []

    def undecodable_input(self, raw: bytes) -> None:
        """A line with non-ASCII bytes arrived."""
        self.push_error(-102, "Syntax error; non-ASCII input")

    def input_overflow(self) -> None:
        """More than the input buffer without a terminator arrived."""
        self.push_error(-363, "Input buffer overrun")

    # -- errors ----------------------------------------------------------------------------------

    def push_error(self, code: int, message: Optional[str] = None) -> None:
        """Append an error to the queue (also the ``push_error`` fault of instruments.md §4.6)."""
        text = message if message is not None else SCPI_ERROR_MESSAGES.get(int(code), "Error")
        self.errors.push(code, text)
        self.transcript.record("error", f"{code} {text}", code=int(code), message=text)

    def next_error(self) -> str:
        """Pop the oldest error, formatted (the empty entry when the queue is empty)."""
        code, message = self.errors.pop()
        return self.format_error(code, message)

    # -- world helpers ---------------------------------------------------------------------------

    def port(self, channel: str) -> Optional[str]:
        """World port wired to ``channel``, or ``None``."""
        return self.ports.get(str(channel)) if self.world is not None else None

    def set_port_source(self, channel: str, *, output_on: bool, mode: str, level: float = 0.0,
                        limit_a: float = math.inf, level_v: Optional[float] = None) -> None:
        """Apply an output state of ``channel`` to the world and record it when it changed.

        Args:
            output_on: the instrument's output state (for the transcript).
            mode: world port mode ``"voltage"`` / ``"current"`` / ``"open"``.
            level: V or A for the world port.
            limit_a: current limit of a voltage source, A.
            level_v: programmed source level for the transcript (default ``level``).
        """
        shown = float(level if level_v is None else level_v)
        state = (bool(output_on), mode, float(level), float(limit_a), shown)
        if self._port_state.get(channel) != state:
            self._port_state[channel] = state
            self.transcript.record("state", f"{channel or '-'} {'ON' if output_on else 'OFF'} {mode} {level:g}",
                                   channel=channel, output_on=bool(output_on), mode=mode,
                                   level_v=shown, limit_a=float(limit_a))
        port = self.port(channel)
        if port is not None:
            self.world.set_source(port, mode, level, limit_a)

    def output_history(self, channel: str) -> list[dict[str, Any]]:
        """Every recorded output state of ``channel`` (oldest first)."""
        return self.transcript.states(channel)

    def reply_decimals(self, decimals: int) -> int:
        """Digits after the point of a reading in exponent form: the instrument's ``decimals``, or
        16 (17 significant digits, float64 round-trips) when the world is in ``exact`` mode."""
        return self.world.reply_digits(decimals + 1) - 1 if self.world is not None else int(decimals)

    def sentinel_value(self, channel: Optional[str] = None, line: Optional[str] = None) -> Optional[float]:
        """If a ``sentinel`` fault applies, consume it and return ``+9.9E37`` / ``+9.91E37``."""
        params = self.faults.take("sentinel", line, channel)
        if params is None:
            return None
        return MISSING_SENTINEL if params.get("sentinel") == "missing" else OVERFLOW_SENTINEL

    def interlock_is_open(self) -> bool:
        """True while an ``interlock_open`` fault is armed."""
        return self.faults.peek("interlock_open") is not None

    def advance(self, duration_s: float) -> None:
        """Advance the bench clock by a modelled duration in s."""
        self.clock.advance(duration_s)

    # -- server ----------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on ``127.0.0.1`` (ephemeral port by default); returns the VISA resource."""
        return self._server.start(port)

    def stop(self) -> None:
        """Stop serving and close every connection."""
        self._server.stop()

    @property
    def resource(self) -> str:
        """``TCPIP::127.0.0.1::PORT::SOCKET``."""
        return self._server.resource

    @property
    def address(self) -> tuple[str, int]:
        return self._server.host, int(self._server.port or 0)

    def settle(self, timeout_s: float = 2.0) -> bool:
        """Wait until everything clients sent has been executed (for inspecting state from a test);
        returns False if still busy after ``timeout_s``."""
        import time

        deadline = time.monotonic() + timeout_s
        stable = 0
        while time.monotonic() < deadline:
            stable = stable + 1 if self._server.idle() else 0
            if stable >= 2:
                return True
            time.sleep(0.001)
        return False

    def refuse_connections(self, refuse: bool = True) -> None:
        """Fault ``refuse``: close the listening socket (connects fail) or open it again."""
        self.transcript.record("fault", "refuse" if refuse else "accept", fault="refuse", refuse=refuse)
        self._server.refuse(refuse)

    def drop_clients(self) -> None:
        """Close every open client connection now (the server keeps listening)."""
        self._server.stop(keep_clients=False)
        self._server.start(self._server.port or 0)

    def __enter__(self) -> "Emulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
