"""What every emulated TSP instrument shares: line handling, output, error queue, ``format``, scripts.

A ``TspMachine`` receives program messages one line at a time (``handle_line``) and returns the
replies the instrument sends back. It runs each line through ``hil.emulate.tsp`` (the Lua-subset
interpreter) against a global table holding the common TSP objects:

* ``print(...)`` — TAB-joined, numbers in exponent form with ``format.asciiprecision``
  significant digits (0 = 6), booleans/nil as words; ``print`` is not affected by
  ``format.data``;
* ``printbuffer(start, end, t1, t2, …)`` — one message; values interleaved per index; ASCII
  ``", "``-separated, or with ``format.data = format.REAL32``/``REAL64`` a ``#0`` block in
  ``format.byteorder`` ending in a newline; indices clamped to ``1 … n`` as on the instrument;
* ``printnumber(…)``;
* ``errorqueue.count``, ``errorqueue.next()`` → ``code, message, severity, node``,
  ``errorqueue.clear()``;
* ``format.data``/``byteorder``/``asciiprecision`` with their constants;
* ``localnode.model``/``serialno``/``revision``/``linefreq``/``description``;
* ``waitcomplete()``, ``delay(s)`` (advances the bench clock), ``opc()``, ``timer``,
  ``reset()`` (delegated to the personality);
* ``loadscript name`` / ``loadandrunscript [name]`` … ``endscript``; a named script becomes a
  global with ``run()``, and ``name()`` runs it too;
* IEEE 488.2 common commands ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``*OPC``, ``*WAI``,
  ``*TRG``, ``*ESR?``, ``*STB?``.

A statement that fails puts an entry in the error queue and produces no output (a failing
``print`` therefore times out on the driver side, as on the instrument).

Numeric values of the format constants (``ASCII`` 1, ``REAL32``/``SREAL`` 2, ``REAL64``/``REAL``/
``DREAL`` 3; ``NORMAL``/``BIGENDIAN``/``NETWORK`` 0, ``SWAPPED``/``LITTLEENDIAN`` 1) follow the
2600B reference manual's tables; drivers use the names.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Optional, Protocol, Union

from hil.emulate.base import Emulator
from hil.emulate.world import EXACT_DIGITS
from hil.emulate.tsp import (
    RUNTIME_ERROR,
    CompletedScript,
    HostFunction,
    HostTable,
    LuaTable,
    ScriptCollector,
    TspError,
    TspInterpreter,
    format_number,
    parse,
    to_int,
    to_number,
    tostring,
)

__all__ = [
    "TspMachine",
    "ErrorQueueLike",
    "BufferColumn",
    "FORMAT_ASCII",
    "FORMAT_REAL32",
    "FORMAT_REAL64",
    "BYTEORDER_BIG",
    "BYTEORDER_LITTLE",
    "OUT_OF_RANGE",
    "SETTINGS_CONFLICT",
]

FORMAT_ASCII, FORMAT_REAL32, FORMAT_REAL64 = 1, 2, 3
BYTEORDER_BIG, BYTEORDER_LITTLE = 0, 1

OUT_OF_RANGE = -222  #: "Parameter data out of range" (setting left unchanged)
SETTINGS_CONFLICT = -221  #: "Settings conflict"
UNDEFINED_HEADER = -113  #: an unknown IEEE 488.2 common command

_SEVERITY_ERROR = 20.0
_SEVERITY_INFO = 0.0


class ErrorQueueLike(Protocol):
    """What ``TspMachine`` needs of an error queue (``hil.emulate.base.ErrorQueue`` fits)."""

    def pop(self) -> tuple[int, str]: ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


class BufferColumn(HostTable):
    """A reading-buffer subtable (``buf.readings``, ``buf.sourcevalues``, …), indexed ``col[i]`` from 1.

    Args:
        path: TSP name for messages.
        values: callable returning the current list of values (1-based in TSP).
    """

    def __init__(self, path: str, values: Callable[[], list[float]]) -> None:
        super().__init__(path)
        self._values = values

    def values(self) -> list[float]:
        return list(self._values())

    def index(self, key: Any) -> Any:
        if isinstance(key, (int, float)) and not isinstance(key, bool) and float(key).is_integer():
            vals = self._values()
            i = int(key)
            return vals[i - 1] if 1 <= i <= len(vals) else None
        return None


class TspMachine:
    """Line handling shared by the TSP personalities.

    Args:
        idn: the ``*IDN?`` reply.
        model: ``localnode.model``.
        serial, firmware: ``localnode.serialno`` / ``revision``.
        line_frequency_hz: ``localnode.linefreq``.
        advance: advances the bench clock by a modelled duration in s.
        now: the bench clock's time in s.
        on_error: called with every error entry pushed (transcript).
        reset: the personality's ``reset()`` (instrument defaults).
        errors: the instrument's error queue (``pop``/``clear``/``len``).
        push_error: appends ``(code, message)`` to that queue (and records it).
    """

    def __init__(
        self,
        *,
        idn: str,
        model: str,
        serial: str,
        firmware: str,
        line_frequency_hz: float,
        advance: Callable[[float], Any],
        now: Callable[[], float],
        reset: Callable[[], None],
        errors: ErrorQueueLike,
        push_error: Callable[[int, str], None],
    ) -> None:
        self.idn = idn
        self.model = model
        self.serial = serial
        self.firmware = firmware
        self.line_frequency_hz = float(line_frequency_hz)
        self._advance = advance
        self._now = now
        self._reset_hook = reset
        self.errors = errors
        self.push_error = push_error
        self.waitcomplete_hook: Optional[Callable[[], None]] = None
        self.data_format = FORMAT_ASCII
        self.byte_order = BYTEORDER_BIG
        self.ascii_precision = 0
        #: print numbers with EXACT_DIGITS significant digits (the world's ``exact`` reading mode)
        self.full_precision = False
        self.globals = LuaTable()
        self.interpreter = TspInterpreter(self.globals)
        self.collector = ScriptCollector()
        self._out: list[bytes] = []
        self._timer_zero = 0.0
        self._install_common()

    # -- setup -------------------------------------------------------------------------------

    def _install_common(self) -> None:
        g = self.globals
        g.set("print", HostFunction("print", self._print))
        g.set("printbuffer", HostFunction("printbuffer", self._printbuffer))
        g.set("printnumber", HostFunction("printnumber", self._printnumber))
        g.set("waitcomplete", HostFunction("waitcomplete", self._waitcomplete))
        g.set("delay", HostFunction("delay", self._delay))
        g.set("opc", HostFunction("opc", lambda: None))
        g.set("reset", HostFunction("reset", lambda *_: self._reset()))
        g.set("errorqueue", HostTable("errorqueue", members={
            "clear": lambda: self.errors.clear(),
            "next": self._next_error,
        }, attributes={"count": (lambda: float(len(self.errors)), None)}))
        fmt = HostTable("format", members={
            "ASCII": float(FORMAT_ASCII), "SREAL": float(FORMAT_REAL32), "REAL32": float(FORMAT_REAL32),
            "REAL": float(FORMAT_REAL64), "REAL64": float(FORMAT_REAL64), "DREAL": float(FORMAT_REAL64),
            "NORMAL": float(BYTEORDER_BIG), "BIGENDIAN": float(BYTEORDER_BIG), "NETWORK": float(BYTEORDER_BIG),
            "SWAPPED": float(BYTEORDER_LITTLE), "LITTLEENDIAN": float(BYTEORDER_LITTLE),
        })
        fmt.attribute("data", lambda: float(self.data_format), self._set_format)
        fmt.attribute("byteorder", lambda: float(self.byte_order), self._set_byteorder)
        fmt.attribute("asciiprecision", lambda: float(self.ascii_precision), self._set_precision)
        g.set("format", fmt)
        node = HostTable("localnode", attributes={
            "model": (lambda: self.model, None),
            "serialno": (lambda: self.serial, None),
            "revision": (lambda: self.firmware, None),
            "linefreq": (lambda: self.line_frequency_hz, self._set_linefreq),
            "description": (lambda: f"Keithley Instruments {self.model} - {self.serial}", None),
        })
        g.set("localnode", node)
        nodes = LuaTable()
        nodes.set(1, node)
        g.set("node", nodes)
        g.set("timer", HostTable("timer", members={
            "reset": lambda: setattr(self, "_timer_zero", self._now()),
            "measure": HostTable("timer.measure", members={"t": lambda: self._now() - self._timer_zero}),
        }))
        g.set("script", HostTable("script", members={"anonymous": None}))

    def define(self, name: str, value: Any) -> None:
        """Add a global (an instrument object such as ``smua`` or ``channel``)."""
        self.globals.set(name, value)

    # -- common functions ----------------------------------------------------------------------

    def _digits(self) -> int:
        return EXACT_DIGITS if self.full_precision else (self.ascii_precision or 6)

    def _text(self, value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return format_number(value, self._digits())
        return tostring(value)

    def _print(self, *values: Any) -> None:
        self._out.append(("\t".join(self._text(v) for v in values) + "\n").encode("latin-1", "replace"))

    def _next_error(self) -> tuple[Any, ...]:
        code, message = self.errors.pop()
        if code == 0:
            return (0.0, "Queue Is Empty", _SEVERITY_INFO, 1.0)
        return (float(code), message, _SEVERITY_ERROR, 1.0)

    def format_entry(self, code: int, message: str) -> str:
        """An error entry as ``print(errorqueue.next())`` shows it."""
        if code == 0:
            message, severity = "Queue Is Empty", _SEVERITY_INFO
        else:
            severity = _SEVERITY_ERROR
        return "\t".join((self._text(float(code)), message, self._text(severity), self._text(1.0)))

    def reset_format(self) -> None:
        """``reset()`` defaults of the ``format`` attributes."""
        self.data_format, self.byte_order, self.ascii_precision = FORMAT_ASCII, BYTEORDER_BIG, 0

    def _set_format(self, value: Any) -> None:
        v = to_int(value, "format.data")
        if v not in (FORMAT_ASCII, FORMAT_REAL32, FORMAT_REAL64):
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (format.data)")
        self.data_format = v

    def _set_byteorder(self, value: Any) -> None:
        v = to_int(value, "format.byteorder")
        if v not in (BYTEORDER_BIG, BYTEORDER_LITTLE):
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (format.byteorder)")
        self.byte_order = v

    def _set_precision(self, value: Any) -> None:
        v = to_int(value, "format.asciiprecision")
        if not 0 <= v <= 16:
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (format.asciiprecision)")
        self.ascii_precision = v

    def _set_linefreq(self, value: Any) -> None:
        v = to_number(value, "localnode.linefreq")
        if v not in (50.0, 60.0):
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (localnode.linefreq)")
        self.line_frequency_hz = v

    def _numbers_block(self, values: list[float]) -> bytes:
        if self.data_format == FORMAT_ASCII:
            return (", ".join(format_number(v, self._digits()) for v in values) + "\n").encode()
        code = "f" if self.data_format == FORMAT_REAL32 else "d"
        order = ">" if self.byte_order == BYTEORDER_BIG else "<"
        return b"#0" + struct.pack(f"{order}{len(values)}{code}", *values) + b"\n"

    def _printnumber(self, *values: Any) -> None:
        self._out.append(self._numbers_block([to_number(v, "printnumber") for v in values]))

    def _printbuffer(self, start: Any = None, end: Any = None, *tables: Any) -> None:
        if not tables:
            raise TspError(RUNTIME_ERROR, "bad argument to 'printbuffer' (buffer expected)")
        first = to_int(start, "printbuffer start index")
        last = to_int(end, "printbuffer end index")
        columns: list[list[Any]] = []
        for t in tables:
            columns.append(self._column_values(t))
        n = min(len(c) for c in columns)
        first = max(first, 1)
        last = min(last, n)
        values: list[float] = []
        for i in range(first - 1, last):
            for col in columns:
                values.append(to_number(col[i], "buffer value"))
        self._out.append(self._numbers_block(values))

    @staticmethod
    def _column_values(t: Any) -> list[Any]:
        if isinstance(t, BufferColumn):
            return t.values()
        if isinstance(t, LuaTable):
            return t.sequence()
        default = getattr(t, "default_column", None)
        if callable(default):
            return default().values()
        raise TspError(RUNTIME_ERROR, f"bad argument to 'printbuffer' (reading buffer or table expected, got {tostring(t)})")

    def _waitcomplete(self, *_: Any) -> None:
        if self.waitcomplete_hook is not None:
            self.waitcomplete_hook()

    def _delay(self, seconds: Any) -> None:
        s = to_number(seconds, "delay")
        if not s >= 0:
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (delay)")
        self._advance(s)

    def _reset(self) -> None:
        self._reset_hook()

    # -- line handling -------------------------------------------------------------------------

    def handle_line(self, line: str) -> list[Union[str, bytes]]:
        """Run one received program message; return the output messages without their ``\\n``
        (text as ``str``, ``#0`` binary blocks as ``bytes``)."""
        self._out = []
        collected = self.collector.feed(line)
        if collected is None:
            return []
        if isinstance(collected, CompletedScript):
            self._finish_script(collected)
        else:
            text = collected.strip()
            if text.startswith("*"):
                self._common_command(text)
            elif text:
                self._run(text)
        out, self._out = self._out, []
        return [o[:-1] if o.startswith(b"#0") else o[:-1].decode("ascii", "replace") for o in out]

    def _run(self, source: str, first_line: int = 1) -> None:
        try:
            self.interpreter.execute(source, first_line)
        except TspError as exc:
            self.push_error(exc.code, exc.message)
        except RecursionError:
            self.push_error(RUNTIME_ERROR, "TSP Runtime error: stack overflow")

    def _finish_script(self, script: CompletedScript) -> None:
        try:
            body = parse(script.source)
        except TspError as exc:
            self.push_error(exc.code, exc.message)
            return
        if script.name:
            self.globals.set(script.name, self._script_object(script.name, body))
        if script.run:
            try:
                self.interpreter.run(body)
            except TspError as exc:
                self.push_error(exc.code, exc.message)

    def _script_object(self, name: str, body: list[Any]) -> HostTable:
        def run() -> None:
            self.interpreter.run(body)

        obj = ScriptObject(f"script {name}", members={"run": run, "name": name})
        obj.tsp_call = lambda *_: run()
        return obj

    def _common_command(self, text: str) -> None:
        head = text.split()[0].upper()
        if head == "*IDN?":
            self._out.append((self.idn + "\n").encode())
        elif head == "*RST":
            self._reset()
        elif head == "*CLS":
            self.errors.clear()
        elif head == "*OPC?":
            self._waitcomplete()
            self._out.append(b"1\n")
        elif head in ("*OPC", "*WAI", "*TRG"):
            if head == "*WAI":
                self._waitcomplete()
        elif head in ("*ESR?", "*STB?"):
            self._out.append(b"0\n")
        else:
            self.push_error(UNDEFINED_HEADER, f"Undefined header {head}")


class ScriptObject(HostTable):
    """A named script: ``name.run()`` or ``name()``."""

    tsp_call: Callable[..., None]



class TspEmulator(Emulator):
    """An emulator whose command language is TSP: each line goes to ``self.machine``.

    Subclasses build ``self.machine`` (a :class:`TspMachine` bound to their host tables) in
    their constructor; errors are printed in the TSP form the machine uses.
    """

    machine: TspMachine

    def format_error(self, code: int, message: str) -> str:
        return self.machine.format_entry(code, message)

    def handle(self, line: str) -> list[Union[str, bytes]]:
        return self.machine.handle_line(line)
