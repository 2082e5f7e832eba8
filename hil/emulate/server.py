"""Loopback line server: one ``ThreadingTCPServer`` on ``127.0.0.1`` per emulated instrument.

Bytes are split into lines at ``\\n`` (``\\r`` stripped, ASCII); each line goes to the emulator's
``handle(line) -> list[str | bytes]`` and each returned reply is sent followed by ``\\n`` (``str``
as ASCII, ``bytes`` verbatim, e.g. a definite-length binary block). All connections share the
one emulator object, so instrument state persists across connections. Link faults
(``no_reply``, ``late_reply``, ``drop_connection``, ``endless_reply``, ``garbage_reply``) are
applied here. Every socket operation is bounded in time: client sockets poll with a short
timeout so ``stop()`` always returns.

**Order across instruments.** A client that writes to one instrument and then queries another
expects the second to see the first's new state, as on a bench. Each server thread may be
scheduled late, so lines are executed in the order the kernel received them across every
instrument sharing a world (kernel receive timestamps, ``SO_TIMESTAMPNS``): before executing a
line, a connection waits (bounded by ``PEER_SYNC_TIMEOUT_S``) while another connection of the
group holds an older unexecuted line or unread bytes. Lines taken from the socket in one read
share that read's (latest) receive time.
"""

from __future__ import annotations

import select
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any, Optional

__all__ = ["LineServer", "resource_for_port", "PEER_SYNC_TIMEOUT_S"]

_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 22
#: longest wait for older lines of other instruments of the same world, s
PEER_SYNC_TIMEOUT_S = 0.5
# Python's socket module lacks the constant; Linux uses 35 (asm-generic, x86 and arm alike)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_CMSG_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0


def resource_for_port(port: int, host: str = "127.0.0.1") -> str:
    """VISA resource string of a raw socket on ``host:port``."""
    return f"TCPIP::{host}::{int(port)}::SOCKET"


class _Conn:
    """Bookkeeping of one client connection (guarded by the owner's lock)."""

    __slots__ = ("sock", "state", "line_ts", "partial_ts")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = "idle"            # idle | receiving | busy (executing) | waiting (ordering)
        self.line_ts = 0.0             # receive time of the line being executed/waited on
        self.partial_ts: Optional[float] = None   # receive time of an incomplete buffered line


def _quick_ack(sock: socket.socket) -> None:
    """Send any pending ACK now (Linux ``TCP_QUICKACK``; the kernel resets it, so set it after
    every receive). A client whose previous small write is not yet acknowledged holds its next
    write (Nagle) until the delayed ACK (~40 ms) -- a delay no real instrument imposes, and one
    that would let a later command to another instrument overtake it."""
    opt = getattr(socket, "TCP_QUICKACK", None)
    if opt is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
        except OSError:
            pass


def _recv(sock: socket.socket) -> tuple[bytes, float]:
    """Receive bytes and their kernel receive time (wall clock, s)."""
    if _SO_TIMESTAMPNS is not None and _CMSG_SPACE:
        data, ancillary, _flags, _addr = sock.recvmsg(65536, _CMSG_SPACE)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                return data, sec + nsec * 1e-9
        return data, time.time()
    return sock.recv(65536), time.time()


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(_POLL_S)
        for level, opt in ((socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.SOL_SOCKET, _SO_TIMESTAMPNS)):
            if opt is not None:
                try:
                    sock.setsockopt(level, opt, 1)
                except OSError:
                    pass
        _quick_ack(sock)
        conn = owner._register(sock)
        emulator = owner.emulator
        emulator.transcript.record("event", "connect", peer=str(self.client_address))
        buffer = b""
        try:
            while not owner.stopping.is_set():
                try:
                    readable, _, _ = select.select([sock], [], [], _POLL_S)
                except (OSError, ValueError):
                    break
                if not readable:
                    continue
                # mark before taking the bytes out of the socket: a peer checking the order sees
                # either unread bytes or this state, never neither
                owner._update(conn, state="receiving")
                try:
                    chunk, stamp = _recv(sock)
                except socket.timeout:
                    owner._update(conn, state="idle")
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                _quick_ack(sock)
                owner._update(conn, state="busy")
                first_ts = conn.partial_ts if conn.partial_ts is not None else stamp
                buffer += chunk
                if len(buffer) > _MAX_LINE_BYTES:
                    buffer = b""
                    emulator.input_overflow()
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    owner._update(conn, line_ts=first_ts, partial_ts=None)
                    first_ts = stamp
                    try:
                        keep = self._one_line(conn, raw)
                    except Exception as exc:  # never let an emulator bug kill the server thread silently
                        emulator.transcript.record("event", f"server error: {type(exc).__name__}: {exc}")
                        keep = True
                    if not keep:
                        return
                owner._update(conn, state="idle", partial_ts=first_ts if buffer else None)
        finally:
            owner._unregister(sock)
            emulator.transcript.record("event", "disconnect", peer=str(self.client_address))
            try:
                sock.close()
            except OSError:
                pass

    def _one_line(self, conn: _Conn, raw: bytes) -> bool:
        """Execute one line; False when the connection must end."""
        owner = self.server.owner
        emulator = owner.emulator
        sock = conn.sock
        try:
            line = raw.decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            line = raw.decode("ascii", errors="replace").rstrip("\r")
            emulator.transcript.record("rx", line, undecodable=True)
            emulator.undecodable_input(raw)
            return True
        owner.wait_for_older(conn)
        if emulator.faults.take("drop_connection", line) is not None:
            emulator.transcript.record("rx", line, dropped=True)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        replies = emulator.receive(line)
        if not replies:
            return True
        if emulator.faults.take("no_reply", line) is not None:
            return True
        late = emulator.faults.take("late_reply", line)
        if late is not None:
            owner._update(conn, state="idle")  # a late reply must not hold up the other instruments
            if owner.stopping.wait(float(late.get("delay_s", 1.0))):
                return False
        endless = emulator.faults.take("endless_reply", line)
        if endless is not None:
            owner._update(conn, state="idle")
            return self._stream(sock, endless)
        garbage = emulator.faults.take("garbage_reply", line)
        if garbage is not None:
            return self._send(sock, garbage["data"])
        payload = b"".join((r if isinstance(r, bytes) else r.encode("ascii", errors="replace")) + b"\n"
                           for r in replies)
        for r in replies:
            text = r if isinstance(r, str) else f"<{len(r)} bytes>"
            emulator.transcript.record("tx", text if len(text) <= 2000 else text[:2000] + "…")
        return self._send(sock, payload)

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        deadline = time.monotonic() + 10.0
        view = memoryview(data)
        while view:
            if self.server.owner.stopping.is_set() or time.monotonic() > deadline:
                return False
            try:
                sent = sock.send(view)
            except socket.timeout:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    def _stream(self, sock: socket.socket, params: dict[str, Any]) -> bool:
        chunk = params.get("chunk", b"1.0,")
        end = time.monotonic() + float(params.get("max_s", 10.0))
        while time.monotonic() < end and not self.server.owner.stopping.is_set():
            try:
                sock.send(chunk)
            except socket.timeout:
                continue
            except OSError:
                return False
            time.sleep(0.002)
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "LineServer"


class LineServer:
    """Serves one emulator on ``127.0.0.1`` (ephemeral port unless given).

    Args:
        emulator: object with ``receive(line) -> list``, ``faults``, ``transcript``,
            ``undecodable_input(raw)`` and ``input_overflow()`` (see ``hil.emulate.base.Emulator``).
        host: bind address (loopback only by default).
    """

    def __init__(self, emulator: Any, host: str = "127.0.0.1") -> None:
        self.emulator = emulator
        self.host = host
        self.port: Optional[int] = None
        self.stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: dict[socket.socket, _Conn] = {}
        self._lock = threading.Lock()
        #: servers whose instruments share one world (lines are ordered across them); has ``self``
        self.group: set["LineServer"] = {self}

    @property
    def resource(self) -> str:
        """``TCPIP::127.0.0.1::PORT::SOCKET`` (after ``start``)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return resource_for_port(self.port, self.host)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, port: int = 0) -> str:
        """Bind and serve in a daemon thread; returns the resource string."""
        if self._server is not None:
            return self.resource
        self.stopping.clear()
        server = _Server((self.host, int(port)), _Handler)
        server.owner = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": _POLL_S},
                                        name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        return self.resource

    def stop(self, *, keep_clients: bool = False) -> None:
        """Stop accepting; close every client connection (unless ``keep_clients``); join."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if not keep_clients:
            self.stopping.set()
            with self._lock:
                socks = list(self._conns)
            for sock in socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def refuse(self, refuse: bool = True) -> None:
        """Close the listening socket (new connections are refused) or re-open it on the same port."""
        if refuse:
            self.stop(keep_clients=True)
        elif self._server is None:
            self.start(self.port or 0)

    # -- connection bookkeeping and ordering ---------------------------------------------------------

    def _register(self, sock: socket.socket) -> _Conn:
        conn = _Conn(sock)
        with self._lock:
            self._conns[sock] = conn
        return conn

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(sock, None)

    def _update(self, conn: _Conn, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(conn, key, value)

    def _blocking(self, me: _Conn, before: float) -> bool:
        """True if a connection here (other than ``me``) holds input received before ``before``
        or unread bytes."""
        with self._lock:
            conns = [c for c in self._conns.values() if c is not me]
            states = [(c, c.state, c.line_ts, c.partial_ts) for c in conns]
        idle = []
        for c, state, line_ts, partial_ts in states:
            if state == "receiving":
                return True
            if state in ("busy", "waiting") and line_ts < before:
                return True
            if state == "idle":
                if partial_ts is not None and partial_ts < before:
                    return True
                idle.append(c.sock)
        if idle:
            try:
                readable, _, _ = select.select(idle, [], [], 0)
            except (OSError, ValueError):
                readable = []
            if readable:
                return True
        return False

    def idle(self) -> bool:
        """True when every connection waits for input and holds no unread or partial line."""
        with self._lock:
            conns = list(self._conns.values())
            if any(c.state != "idle" or c.partial_ts is not None for c in conns):
                return False
        socks = [c.sock for c in conns]
        if not socks:
            return True
        try:
            readable, _, _ = select.select(socks, [], [], 0)
        except (OSError, ValueError):
            return True
        return not readable

    def wait_for_older(self, conn: _Conn) -> None:
        """Wait until no connection of the group holds older input (see the module docstring)."""
        group = list(self.group)
        if len(group) < 2 and len(self._conns) < 2:
            return
        self._update(conn, state="waiting")
        try:
            deadline = time.monotonic() + PEER_SYNC_TIMEOUT_S
            while time.monotonic() < deadline:
                if not any(server._blocking(conn, conn.line_ts) for server in group):
                    return
                time.sleep(0.0001)
        finally:
            self._update(conn, state="busy")
