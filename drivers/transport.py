"""Transports: the only place that talks to pyvisa (instruments.md §1.1, §1.4, §3).

* ``Transport`` — the structural protocol every driver is written against.
* ``VisaTransport`` — one pyvisa resource opened from a ``ResourceManager`` it is *given*.
* ``ResourceManagers`` — application-owned cache of one manager per VISA library (``@py``,
  ``@ivi``, ``<file>.yaml@sim``); closed last, after every ``safe_shutdown()`` (§3.2).
* ``ScriptedTransport`` — scripted ``(sent, reply)`` exchanges for protocol tests, no I/O.
* ``parse_resource_name`` / ``validate_visa_library`` — configuration-time validation.

Nothing else in the code base imports pyvisa.
"""

from __future__ import annotations

import logging
import math
import os
import select
import socket
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np
import pyvisa
import pyvisa.errors as visa_errors
from numpy.typing import DTypeLike
from pyvisa import rname
from pyvisa.constants import StatusCode

from hil.drivers.blocks import block_end, decode_ieee_block
from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)

__all__ = [
    "Transport",
    "VisaTransport",
    "ResourceManagers",
    "ScriptedTransport",
    "ScriptMismatch",
    "Reply",
    "instrument_logger",
    "parse_resource_name",
    "validate_visa_library",
    "map_visa_exception",
]

_TERMINATION_WARNING = "read string doesn't end with termination characters"
_DISCARD_TIMEOUT_S = 0.05
_DISCARD_MAX_READS = 8
#: Largest reply accepted on a raw socket, in bytes; more is a protocol error (a runaway stream).
MAX_REPLY_BYTES = 64 * 1024 * 1024
_RECV_CHUNK = 65536
#: ``send`` on a blocking socket waits until it queued everything it was given; MSG_DONTWAIT
#: (Linux, macOS) makes it return what fits, elsewhere small chunks keep each wait short.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_SAFE_SEND_CHUNK = 1024


def instrument_logger(name: str) -> logging.Logger:
    """Return the per-instrument logger ``hil.instr.<name>`` (§7.4)."""
    return logging.getLogger(f"hil.instr.{name}")


@runtime_checkable
class Transport(Protocol):
    """Line-oriented message transport to one instrument (§1.1).

    Commands and replies are given without terminations. Every failure is raised as an
    ``InstrumentError`` subclass naming the instrument and the command.
    """

    name: str

    @property
    def resource_name(self) -> str:
        """Normalised resource name (``TCPIP0::h::p::SOCKET``)."""
        ...

    @property
    def timeout_s(self) -> float:
        """I/O timeout in seconds."""
        ...

    @timeout_s.setter
    def timeout_s(self, value: float) -> None: ...

    def temporary_timeout(self, timeout_s: float) -> Any:
        """Context manager: use ``timeout_s`` (s) inside the block, restore the old value after."""
        ...

    def write(self, command: str) -> None:
        """Send one program message."""
        ...

    def read(self) -> str:
        """Read one reply line (termination stripped)."""
        ...

    def query(self, command: str) -> str:
        """``write(command)`` then ``read()``."""
        ...

    def query_binary(self, command: str, dtype: DTypeLike, count: Optional[int] = None) -> np.ndarray:
        """Send ``command`` and parse an IEEE 488.2 block of ``dtype`` (``count`` needed for ``#0``)."""
        ...

    def read_raw(self) -> bytes:
        """Read one unframed message as bytes (termination kept)."""
        ...

    def discard_input(self) -> int:
        """Drop anything already received (bounded drain); return the number of bytes dropped."""
        ...

    def close(self) -> None:
        """Close this resource only (never the resource manager)."""
        ...


# --------------------------------------------------------------------------------------------
# configuration-time validation


def parse_resource_name(resource: str, *, instrument: Optional[str] = None) -> str:
    """Validate a VISA resource string with pyvisa's parser and return its normalised form.

    ``TCPIP::h::p::SOCKET`` becomes ``TCPIP0::h::p::SOCKET``. A SOCKET port must be an integer
    in 1..65535 (pyvisa-py otherwise fails at open with a bare ``Exception``).

    Raises:
        InstrumentConfigError: unparsable resource name or bad SOCKET port.
    """
    if not isinstance(resource, str) or not resource.strip():
        raise InstrumentConfigError(f"empty resource name {resource!r}", instrument=instrument)
    try:
        parsed = rname.parse_resource_name(resource.strip())
    except (rname.InvalidResourceName, ValueError) as exc:
        raise InstrumentConfigError(f"invalid resource name {resource!r}: {exc}", instrument=instrument) from exc
    port = getattr(parsed, "port", None)
    if isinstance(parsed, rname.TCPIPSocket):
        if not str(port).isdigit() or not 1 <= int(port) <= 65535:
            raise InstrumentConfigError(
                f"invalid SOCKET port {port!r} in {resource!r} (integer 1..65535 required)",
                instrument=instrument,
            )
    return str(parsed)


def validate_visa_library(library: str, *, instrument: Optional[str] = None) -> str:
    """Check a VISA library spec: ``@py``, ``@ivi``, ``@sim``, ``<file>.yaml@sim`` or a library path.

    Raises:
        InstrumentConfigError: unknown backend, or a named YAML/library file that does not exist.
    """
    if not isinstance(library, str) or not library:
        raise InstrumentConfigError(f"empty VISA library {library!r}", instrument=instrument)
    if library in ("@py", "@ivi", "@sim"):
        return library
    if library.endswith("@sim"):
        path = library[: -len("@sim")]
        if not path.endswith((".yaml", ".yml")):
            raise InstrumentConfigError(f"pyvisa-sim library must be '<file>.yaml@sim', got {library!r}", instrument=instrument)
        if not os.path.isfile(path):
            raise InstrumentConfigError(f"pyvisa-sim YAML not found: {path!r}", instrument=instrument)
        return library
    if library.startswith("@"):
        raise InstrumentConfigError(f"unknown VISA backend {library!r} (use @py, @ivi or <file>.yaml@sim)", instrument=instrument)
    if not os.path.isfile(library):
        raise InstrumentConfigError(f"VISA library file not found: {library!r}", instrument=instrument)
    return library


# --------------------------------------------------------------------------------------------
# pyvisa exception mapping


def _describe_connect_failure(message: str) -> str:
    """pyvisa-py reports a failed TCP connect as a bare VISA status number; name it for a person."""
    head, _, tail = message.rpartition(":")
    try:
        status = StatusCode(int(tail.strip()))
    except ValueError:
        return message
    if status == StatusCode.error_timeout:
        reason = "no answer from the host within the open timeout (is the address right and the instrument on the network?)"
    elif status == StatusCode.error_resource_not_found:
        reason = "the resource was not found"
    else:
        reason = status.name
    return f"{head.strip() or 'could not connect'}: {reason} (VISA status {status.name})"


def map_visa_exception(exc: BaseException, *, instrument: Optional[str], command: Optional[str]) -> BaseException:
    """Translate an exception raised by pyvisa/pyvisa-py into the §1.4 hierarchy.

    Returns the exception to raise (chained by the caller). Exceptions that are not I/O
    failures (programming errors) are returned unchanged.
    """
    kw = {"instrument": instrument, "command": command}
    if isinstance(exc, (InstrumentError, InstrumentConfigError)):
        return exc
    if isinstance(exc, visa_errors.InvalidSession):
        return InstrumentConnectionError(f"resource or resource manager closed: {exc}", **kw)
    if isinstance(exc, visa_errors.VisaIOError):
        if exc.error_code == StatusCode.error_timeout:
            return InstrumentTimeout(f"no complete reply within timeout ({exc.abbreviation})", **kw)
        return InstrumentConnectionError(f"VISA I/O error {exc.abbreviation}: {exc.description}", status=exc.error_code, **kw)
    if isinstance(exc, visa_errors.LibraryError):
        return InstrumentConfigError(f"VISA library error: {exc}", instrument=instrument)
    if isinstance(exc, (visa_errors.InvalidBinaryFormat, UnicodeDecodeError)):
        return InstrumentProtocolError(f"malformed reply: {exc}", **kw)
    if isinstance(exc, OSError):  # ConnectionRefused/Reset, BrokenPipe, other socket errors
        return InstrumentConnectionError(f"{type(exc).__name__}: {exc}", **kw)
    if isinstance(exc, ValueError):  # block parsing inside pyvisa.util
        return InstrumentProtocolError(f"malformed reply: {exc}", **kw)
    if type(exc) is Exception:  # pyvisa-py "could not connect: <VISA status>" (unreachable or malformed address)
        return InstrumentConnectionError(_describe_connect_failure(str(exc)), **kw)
    return exc


# --------------------------------------------------------------------------------------------
# VISA transport


class ResourceManagers:
    """One pyvisa ``ResourceManager`` per VISA library, owned by the application or a test fixture.

    All managers of one backend share one VISA handle, so closing any manager invalidates every
    resource of that backend (§3.2). Drivers and transports never close managers; call
    ``close_all()`` once, after every instrument's ``safe_shutdown()``.
    """

    def __init__(self) -> None:
        self._managers: dict[str, Any] = {}

    def get(self, library: str = "@py") -> Any:
        """Return the cached manager for ``library``, creating it on first use.

        Raises:
            InstrumentConfigError: invalid library spec or VISA library that cannot be loaded.
        """
        library = validate_visa_library(library)
        if library not in self._managers:
            try:
                self._managers[library] = pyvisa.ResourceManager(library)
            except (visa_errors.LibraryError, ValueError, OSError) as exc:
                raise InstrumentConfigError(f"cannot load VISA library {library!r}: {exc}") from exc
        return self._managers[library]

    def close_all(self) -> None:
        """Close every manager created here (invalidates all their resources)."""
        while self._managers:
            _, manager = self._managers.popitem()
            try:
                manager.close()
            except Exception:  # closing is best effort at application exit
                logging.getLogger("hil.instr").warning("closing a ResourceManager failed", exc_info=True)

    def __enter__(self) -> "ResourceManagers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


_STRUCT_CODES = {
    ("f", 4): "f", ("f", 8): "d",
    ("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H",
    ("i", 4): "i", ("u", 4): "I", ("i", 8): "q", ("u", 8): "Q",
}


def _struct_format(dtype: DTypeLike) -> tuple[str, bool]:
    """Map a numpy dtype to pyvisa's (struct character, is_big_endian)."""
    dt = np.dtype(dtype)
    code = _STRUCT_CODES.get((dt.kind, dt.itemsize))
    if code is None:
        raise InstrumentConfigError(f"unsupported binary dtype {dt!r}")
    big = dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")
    return code, big


class VisaTransport:
    """Transport over one pyvisa message-based resource.

    Args:
        resource_manager: an open pyvisa ``ResourceManager`` (from ``ResourceManagers.get``);
            never closed here.
        resource_name: VISA resource string, validated with ``parse_resource_name``.
        name: instrument name; logs go to ``hil.instr.<name>``.
        timeout_s: I/O timeout in s.
        open_timeout_s: timeout for opening the resource in s.
        read_termination, write_termination: set explicitly (``"\\n"``; SOCKET defaults are wrong).

    Raises:
        InstrumentConfigError: bad resource name.
        InstrumentConnectionError: the resource cannot be opened.
    """

    def __init__(
        self,
        resource_manager: Any,
        resource_name: str,
        *,
        name: str,
        timeout_s: float = 5.0,
        open_timeout_s: float = 2.0,
        read_termination: str = "\n",
        write_termination: str = "\n",
    ) -> None:
        self.name = name
        self.log = instrument_logger(name)
        self._requested = parse_resource_name(resource_name, instrument=name)
        self._read_termination = read_termination
        self._write_termination = write_termination
        self._term_bytes = read_termination.encode("ascii")
        self._last_command: Optional[str] = None
        self._rx = bytearray()  # bytes received past the last complete reply (raw-socket path)
        self._stale = False  # a read timed out: drop late bytes before the next exchange
        self._partial_write = False  # a write was interrupted part-way
        self._manager = resource_manager
        self._open_timeout_s = float(open_timeout_s)
        self._open(timeout_s)

    def _open(self, timeout_s: float) -> None:
        """Open the resource with the I/O timeout ``timeout_s`` (s); typed errors as in ``__init__``."""
        name = self.name
        try:
            self._resource = self._manager.open_resource(
                self._requested,
                read_termination=self._read_termination,
                write_termination=self._write_termination,
                timeout=int(round(timeout_s * 1000)),
                open_timeout=int(round(self._open_timeout_s * 1000)),
            )
        except (visa_errors.LibraryError, ValueError) as exc:  # bad name, "Wrapper not found"
            raise InstrumentConfigError(f"cannot open {self._requested}: {exc}", instrument=name) from exc
        except Exception as exc:
            mapped = map_visa_exception(exc, instrument=name, command=None)
            if mapped is exc:
                mapped = InstrumentConnectionError(f"cannot open {self._requested}: {exc}", instrument=name)
            raise mapped from exc
        self._fast = bool(self._term_bytes) and self._socket_session() is not None
        self._disable_nagle()
        self.log.debug("opened %s (timeout %.3f s)", self.resource_name, timeout_s)

    def reopen(self) -> None:
        """Close the resource and open a new session to the same address (after the link was
        lost), with the same I/O timeout; anything buffered from the old session is dropped.

        Raises:
            InstrumentConnectionError: the resource cannot be opened again.
        """
        timeout_s = self.timeout_s
        self.close()
        self._rx.clear()
        self._stale = False
        self._partial_write = False
        self._open(timeout_s if math.isfinite(timeout_s) else 5.0)

    def _disable_nagle(self) -> None:
        """Raw TCP sockets: send every message at once (``VI_ATTR_TCPIP_NODELAY``).

        VISA specifies this attribute as true by default, but pyvisa-py leaves Nagle's algorithm on
        (and, in 0.8.x, cannot set the attribute), so a write that follows an unacknowledged write
        waits for the delayed ACK (up to ~40 ms) and a command sent afterwards to another
        instrument can arrive first. Falls back to the pyvisa-py session's socket.
        """
        if not self.resource_name.upper().endswith("::SOCKET"):
            return
        try:
            from pyvisa import constants

            self._resource.set_visa_attribute(constants.ResourceAttribute.tcpip_nodelay, constants.VisaBoolean.true)
            return
        except Exception:
            pass
        try:
            import socket

            session = self._resource.visalib.sessions[self._resource.session]
            session.interface.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:  # another backend: keep its default
            self.log.debug("could not disable Nagle's algorithm", exc_info=True)

    # -- properties ------------------------------------------------------------------------

    @property
    def resource_name(self) -> str:
        """Normalised resource name."""
        return str(getattr(self._resource, "resource_name", self._requested))

    @property
    def timeout_s(self) -> float:
        """I/O timeout in s (``inf`` if pyvisa reports no timeout)."""
        ms = self._resource.timeout
        return float("inf") if ms is None else ms / 1000.0

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        if not value > 0:
            raise InstrumentConfigError(f"timeout must be > 0 s, got {value!r}", instrument=self.name)
        self._resource.timeout = int(round(value * 1000))

    @contextmanager
    def temporary_timeout(self, timeout_s: float) -> Iterator[None]:
        """Use ``timeout_s`` (s) inside the block; restore the previous timeout afterwards."""
        old = self.timeout_s
        self.timeout_s = timeout_s
        try:
            yield
        finally:
            try:
                self.timeout_s = old
            except Exception:  # resource already closed: nothing to restore
                self.log.debug("could not restore timeout", exc_info=True)

    # -- I/O -------------------------------------------------------------------------------

    @contextmanager
    def _io(self, command: Optional[str]) -> Iterator[None]:
        """Map pyvisa failures and the truncated-reply warning to typed exceptions."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except Exception as exc:
                mapped = map_visa_exception(exc, instrument=self.name, command=command)
                if mapped is exc:
                    raise
                self.log.debug("%r failed: %s", command, mapped)
                raise mapped from exc
        for w in caught:
            if _TERMINATION_WARNING in str(w.message):
                raise InstrumentProtocolError(
                    "reply does not end with the read termination (truncated reply or unknown resource)",
                    instrument=self.name,
                    command=command,
                )
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    # -- raw-socket reads with one deadline per reply -------------------------------------------

    def _socket_session(self) -> Optional[Any]:
        """The pyvisa-py SOCKET session behind the resource, or ``None`` for other backends.

        pyvisa-py restarts its timeout for every chunk it receives, so an instrument that keeps
        streaming bytes without a terminator would block a read forever. On pyvisa-py SOCKET
        resources this transport therefore reads the socket itself, with ONE deadline for the
        whole reply (writes still go through pyvisa).
        """
        try:
            session = self._resource.visalib.sessions[self._resource.session]
        except Exception:  # closed resource, or a backend without a session table
            return None
        sock = getattr(session, "interface", None)
        if isinstance(sock, socket.socket) and isinstance(getattr(session, "_pending_buffer", None), bytearray):
            return session
        return None

    def _receive(self, complete: Any, command: Optional[str]) -> bytes:
        """Read until ``complete(buffer)`` returns the message length; one deadline of ``timeout_s``.

        Raises:
            InstrumentTimeout: no complete message before the deadline (bytes received so far stay
                buffered until ``discard_input``).
            InstrumentConnectionError: the peer closed the connection or the socket failed.
            InstrumentProtocolError: the reply grew beyond ``MAX_REPLY_BYTES`` or is malformed.
        """
        try:
            return self._receive_until(complete, command)
        except BaseException as exc:
            if not isinstance(exc, InstrumentProtocolError):
                self._stale = True  # timeout, lost link or Ctrl-C mid-reply: the rest may come later
            raise

    def _receive_until(self, complete: Any, command: Optional[str]) -> bytes:
        session = self._socket_session()
        if session is None:
            raise InstrumentConnectionError("resource closed", instrument=self.name, command=command)
        sock: socket.socket = session.interface
        buf = self._rx
        if session._pending_buffer:  # bytes pyvisa-py read ahead earlier
            buf += session._pending_buffer
            session._pending_buffer.clear()
        timeout = self.timeout_s
        deadline = time.monotonic() + timeout
        while True:
            try:
                end = complete(buf)
            except ValueError as exc:
                self._rx.clear()
                raise InstrumentProtocolError(f"malformed reply: {exc}", instrument=self.name, command=command) from exc
            if end is not None:
                message = bytes(buf[:end])
                del buf[:end]
                return message
            if len(buf) > MAX_REPLY_BYTES:
                buf.clear()
                raise InstrumentProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes without an end",
                                              instrument=self.name, command=command)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stale = True
                raise InstrumentTimeout(
                    f"no complete reply within {timeout:.3g} s ({len(buf)} bytes without terminator)",
                    instrument=self.name, command=command)
            try:
                ready, _, _ = select.select([sock], [], [], remaining)
                data = sock.recv(_RECV_CHUNK) if ready else None
            except (OSError, ValueError) as exc:  # ValueError: socket already closed (fd -1)
                raise InstrumentConnectionError(f"{type(exc).__name__}: {exc}", instrument=self.name,
                                                command=command) from exc
            if data is None:
                continue
            if not data:
                raise InstrumentConnectionError("the instrument closed the connection", instrument=self.name,
                                                command=command)
            buf += data

    def _line_end(self, buf: bytearray) -> Optional[int]:
        index = buf.find(self._term_bytes)
        return None if index < 0 else index + len(self._term_bytes)

    def _decode_line(self, raw: bytes, command: Optional[str]) -> str:
        body = raw[: -len(self._term_bytes)] if self._term_bytes and raw.endswith(self._term_bytes) else raw
        try:
            return body.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InstrumentProtocolError(f"malformed reply: {exc}", instrument=self.name, command=command) from exc

    def _before_exchange(self) -> None:
        """After a timeout, drop whatever arrived late before the next exchange."""
        if self._stale:
            self.discard_input()

    # -- I/O -------------------------------------------------------------------------------

    def write(self, command: str) -> None:
        """Send ``command`` with the write termination (raw sockets: within one ``timeout_s``)."""
        self._before_exchange()
        self._last_command = command
        t0 = time.perf_counter()
        if self._fast:
            self._send(command)
        else:
            with self._io(command):
                self._resource.write(command)
        self.log.debug("write %r (%.3f ms)", command, (time.perf_counter() - t0) * 1e3)

    def _send(self, command: str) -> None:
        """Send on the raw socket with one deadline: an instrument that stops reading cannot
        block a write forever (pyvisa-py waits for the socket without a timeout)."""
        try:
            data = memoryview((command + self._write_termination).encode("ascii"))
        except UnicodeEncodeError as exc:
            raise InstrumentConfigError(f"command is not ASCII: {command!r}", instrument=self.name) from exc
        session = self._socket_session()
        if session is None:
            raise InstrumentConnectionError("resource closed", instrument=self.name, command=command)
        sock: socket.socket = session.interface
        if self._partial_write:  # an interrupted write left half a message: terminate it first
            data = memoryview(self._write_termination.encode("ascii") + bytes(data))
            self._partial_write = False
        timeout = self.timeout_s
        deadline = time.monotonic() + timeout
        size = len(data)
        try:
            while data:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InstrumentTimeout(f"instrument did not accept the command within {timeout:.3g} s",
                                            instrument=self.name, command=command)
                try:
                    _, ready, _ = select.select([], [sock], [], remaining)
                    sent = sock.send(data, _DONTWAIT) if ready and _DONTWAIT else (
                        sock.send(data[:_SAFE_SEND_CHUNK]) if ready else 0)
                except BlockingIOError:
                    sent = 0
                except (OSError, ValueError) as exc:
                    raise InstrumentConnectionError(f"{type(exc).__name__}: {exc}", instrument=self.name,
                                                    command=command) from exc
                data = data[sent:]
        except BaseException:
            # timeout, lost link or Ctrl-C after part of the message went out: the instrument holds
            # a partial line, which the next write terminates first
            self._partial_write = 0 < size - len(data) < size
            raise

    def _read_line(self, command: Optional[str]) -> str:
        if self._fast:
            return self._decode_line(self._receive(self._line_end, command), command)
        try:
            with self._io(command):
                return self._resource.read()
        except InstrumentTimeout:
            self._stale = True
            raise

    def read(self) -> str:
        """Read one line, termination stripped; the timeout bounds the whole reply."""
        t0 = time.perf_counter()
        reply = self._read_line(self._last_command)
        self.log.debug("read -> %r (%.3f ms)", reply, (time.perf_counter() - t0) * 1e3)
        return reply

    def query(self, command: str) -> str:
        """Send ``command`` and return the reply line (one deadline for the whole reply)."""
        t0 = time.perf_counter()
        self.write(command)
        reply = self._read_line(command)
        self.log.debug("query %r -> %r (%.3f ms)", command, reply, (time.perf_counter() - t0) * 1e3)
        return reply

    def query_binary(self, command: str, dtype: DTypeLike, count: Optional[int] = None) -> np.ndarray:
        """Send ``command`` and parse an IEEE 488.2 block (definite or ``#0`` with ``count``).

        The block may be followed by ``\n`` or ``\r\n``.
        """
        dt = np.dtype(dtype)
        t0 = time.perf_counter()
        if self._fast:
            self.write(command)
            raw = self._receive(lambda buf: block_end(buf, dt.itemsize, count), command)
            try:
                values = decode_ieee_block(raw, dt, count)
            except ValueError as exc:
                raise InstrumentProtocolError(f"malformed binary block: {exc}", instrument=self.name,
                                              command=command) from exc
            values = values.astype(dt.newbyteorder("="))
        else:
            char, big = _struct_format(dtype)
            self._before_exchange()
            self._last_command = command
            with self._io(command):
                values = self._resource.query_binary_values(
                    command, datatype=char, is_big_endian=big, container=np.array,
                    data_points=int(count) if count is not None else 0,
                    expect_termination=bool(self._read_termination))
            values = np.asarray(values, dtype=dt.newbyteorder("="))
        if count is not None and values.size != count:
            raise InstrumentProtocolError(f"binary block held {values.size} values, expected {count}", instrument=self.name, command=command)
        self.log.debug("query_binary %r -> %d values (%.3f ms)", command, values.size, (time.perf_counter() - t0) * 1e3)
        return values

    def read_raw(self) -> bytes:
        """Read one message as bytes, termination included."""
        t0 = time.perf_counter()
        if self._fast:
            data = self._receive(self._line_end, self._last_command)
        else:
            with self._io(self._last_command):
                data = self._resource.read_raw()
        self.log.debug("read_raw -> %d bytes (%.3f ms)", len(data), (time.perf_counter() - t0) * 1e3)
        return bytes(data)

    def discard_input(self) -> int:
        """Bounded drain: read with a 50 ms timeout until a read times out (at most 8 reads).

        Never uses pyvisa ``clear()``, which busy-loops forever on a closed pyvisa-py socket (§3.2).
        Returns the number of bytes dropped.
        """
        dropped = len(self._rx)
        self._rx.clear()
        self._stale = False
        session = self._socket_session() if self._fast else None
        if session is not None:
            dropped += len(session._pending_buffer)
            session._pending_buffer.clear()
            for _ in range(_DISCARD_MAX_READS):
                try:
                    ready, _, _ = select.select([session.interface], [], [], _DISCARD_TIMEOUT_S)
                    data = session.interface.recv(_RECV_CHUNK) if ready else b""
                except (OSError, ValueError):
                    break
                if not data:
                    break
                dropped += len(data)
                self.log.debug("discarded %r", data[:80])
        elif not self._fast:
            with self.temporary_timeout(_DISCARD_TIMEOUT_S):
                for _ in range(_DISCARD_MAX_READS):
                    try:
                        with self._io("<discard>"):
                            data = self._resource.read_raw()
                    except InstrumentTimeout:
                        break
                    dropped += len(data)
                    self.log.debug("discarded %r", bytes(data)[:80])
        if dropped:
            self.log.warning("discarded %d stale bytes", dropped)
        return dropped

    def close(self) -> None:
        """Close this resource (never the manager); safe to call twice."""
        try:
            self._resource.close()
        except Exception:
            self.log.debug("close failed (already closed?)", exc_info=True)
        else:
            self.log.debug("closed %s", self._requested)


# --------------------------------------------------------------------------------------------
# scripted transport for protocol tests

Reply = Union[str, bytes, BaseException, None]


class ScriptMismatch(AssertionError):
    """A driver sent something other than the scripted exchange, or left exchanges unused."""


class ScriptedTransport:
    """Transport that replays an expected conversation; no I/O.

    Args:
        exchanges: ``(sent, reply)`` pairs, terminations omitted. ``reply`` is

            * ``str`` — the reply line (for ``query``/``read``);
            * ``bytes`` — a raw reply (IEEE block for ``query_binary``, bytes for ``read_raw``);
            * ``None`` — a write with no reply; a ``query`` on it simulates a timeout;
            * an exception instance — raised when the command is sent (e.g. a lost link).
        name: instrument name used in exceptions and logs.

    A command that differs from the next pair raises ``ScriptMismatch`` at once; the mismatch is
    remembered so ``verify()`` (called on ``__exit__``) fails even if a driver swallowed it
    (e.g. inside ``safe_shutdown``). ``verify()`` also fails if pairs were not consumed.
    """

    def __init__(
        self,
        exchanges: Iterable[tuple[str, Reply]],
        *,
        name: str = "scripted",
        resource_name: str = "SCRIPTED::INSTR",
        timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self.log = instrument_logger(name)
        self._resource_name = resource_name
        self._script: deque[tuple[str, Reply]] = deque()
        for pair in exchanges:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError(f"exchange must be a (str, reply) pair, got {pair!r}")
            self._script.append(pair)
        self._timeout_s = float(timeout_s)
        self._pending: Optional[Union[str, bytes]] = None
        self._has_pending = False
        self._last_command: Optional[str] = None
        self.sent: list[str] = []
        self.timeouts: list[float] = []
        self.closed = False
        self.discards = 0
        self.failures: list[str] = []

    # -- script bookkeeping ----------------------------------------------------------------

    @property
    def remaining(self) -> list[tuple[str, Reply]]:
        """Exchanges not consumed yet."""
        return list(self._script)

    def _fail(self, text: str) -> None:
        self.failures.append(text)
        raise ScriptMismatch(f"[{self.name}] {text}; sent so far: {self.sent}")

    def _take(self, command: str) -> Reply:
        if self.closed:
            raise InstrumentConnectionError("transport closed", instrument=self.name, command=command)
        if self._has_pending:
            self._fail(f"sent {command!r} while the reply {self._pending!r} to {self._last_command!r} was unread")
        self.sent.append(command)
        self._last_command = command
        if not self._script:
            self._fail(f"unexpected command {command!r}: script exhausted")
        expected, reply = self._script[0]
        if command != expected:
            self._fail(f"expected {expected!r}, driver sent {command!r}")
        self._script.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def verify(self) -> None:
        """Raise ``ScriptMismatch`` if any mismatch occurred or exchanges remain unconsumed."""
        if self.failures:
            raise ScriptMismatch(f"[{self.name}] script failures: {self.failures}")
        if self._script:
            raise ScriptMismatch(f"[{self.name}] {len(self._script)} exchanges not consumed: {list(self._script)}")
        if self._has_pending:
            raise ScriptMismatch(f"[{self.name}] reply {self._pending!r} to {self._last_command!r} never read")

    def __enter__(self) -> "ScriptedTransport":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, ScriptMismatch):
            if exc_type is None:
                self.verify()

    # -- Transport protocol ----------------------------------------------------------------

    @property
    def resource_name(self) -> str:
        """The fixed name given at construction."""
        return self._resource_name

    @property
    def timeout_s(self) -> float:
        """Current (simulated) timeout in s; every change is appended to ``timeouts``."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        if not value > 0:
            raise InstrumentConfigError(f"timeout must be > 0 s, got {value!r}", instrument=self.name)
        self._timeout_s = float(value)
        self.timeouts.append(float(value))

    @contextmanager
    def temporary_timeout(self, timeout_s: float) -> Iterator[None]:
        """Set ``timeout_s`` inside the block and restore the previous value."""
        old = self._timeout_s
        self.timeout_s = timeout_s
        try:
            yield
        finally:
            self.timeout_s = old

    def write(self, command: str) -> None:
        """Consume the next pair; a non-``None`` reply becomes readable with ``read``."""
        reply = self._take(command)
        self.log.debug("write %r", command)
        if reply is not None:
            self._pending, self._has_pending = reply, True

    def _pop_pending(self) -> Union[str, bytes]:
        if not self._has_pending:
            raise InstrumentTimeout("no reply (scripted timeout)", instrument=self.name, command=self._last_command)
        reply, self._pending, self._has_pending = self._pending, None, False
        assert reply is not None
        return reply

    def read(self) -> str:
        """Return the pending reply line; ``InstrumentTimeout`` if none."""
        reply = self._pop_pending()
        if isinstance(reply, bytes):
            try:
                reply = reply.decode("ascii")
            except UnicodeDecodeError as exc:
                raise InstrumentProtocolError(f"malformed reply: {exc}", instrument=self.name, command=self._last_command) from exc
            if reply.endswith("\n"):
                reply = reply[:-1]
            else:
                raise InstrumentProtocolError("reply does not end with the read termination", instrument=self.name, command=self._last_command)
        self.log.debug("read -> %r", reply)
        return reply

    def query(self, command: str) -> str:
        """``write`` then ``read``; a ``None`` reply simulates a timeout."""
        self.write(command)
        return self.read()

    def query_binary(self, command: str, dtype: DTypeLike, count: Optional[int] = None) -> np.ndarray:
        """Parse the scripted ``bytes`` reply as an IEEE block of ``dtype``."""
        self.write(command)
        reply = self._pop_pending()
        if isinstance(reply, str):
            reply = reply.encode("latin-1")
        try:
            values = decode_ieee_block(reply, dtype, count)
        except ValueError as exc:
            raise InstrumentProtocolError(f"malformed binary block: {exc}", instrument=self.name, command=command) from exc
        return values.astype(np.dtype(dtype).newbyteorder("="))

    def read_raw(self) -> bytes:
        """Return the pending reply as bytes (a ``str`` reply gets ``\\n`` appended)."""
        reply = self._pop_pending()
        return reply if isinstance(reply, bytes) else (reply + "\n").encode("ascii")

    def discard_input(self) -> int:
        """Drop a pending reply; return its length in bytes."""
        self.discards += 1
        if not self._has_pending:
            return 0
        reply = self._pop_pending()
        return len(reply)

    def close(self) -> None:
        """Mark closed; later I/O raises ``InstrumentConnectionError``."""
        self.closed = True
