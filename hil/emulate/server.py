"""Loopback line server: one ``ThreadingTCPServer`` on ``127.0.0.1`` per emulated instrument.

Bytes are split into lines at ``\\n`` (``\\r`` stripped, ASCII); each line goes to the emulator's
``handle(line) -> list[str | bytes]`` and each returned reply is sent followed by ``\\n`` (``str`` as
ASCII, ``bytes`` verbatim, e.g. a definite-length binary block). All connections
share the one emulator object, so instrument state persists across connections. Link faults
(``no_reply``, ``late_reply``, ``drop_connection``, ``endless_reply``, ``garbage_reply``) are
applied here. Every socket operation is bounded in time: client sockets poll with a short timeout
so ``stop()`` always returns.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any, Optional

__all__ = ["LineServer", "resource_for_port"]

_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 22


def resource_for_port(port: int, host: str = "127.0.0.1") -> str:
    """VISA resource string of a raw socket on ``host:port``."""
    return f"TCPIP::{host}::{int(port)}::SOCKET"


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(_POLL_S)
        owner._register(sock)
        emulator = owner.emulator
        emulator.transcript.record("event", "connect", peer=str(self.client_address))
        buffer = b""
        try:
            while not owner.stopping.is_set():
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > _MAX_LINE_BYTES:
                    buffer = b""
                    emulator.input_overflow()
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    try:
                        keep = self._one_line(sock, raw)
                    except Exception as exc:  # never let an emulator bug kill the server thread silently
                        emulator.transcript.record("event", f"server error: {type(exc).__name__}: {exc}")
                        keep = True
                    if not keep:
                        return
        finally:
            owner._unregister(sock)
            emulator.transcript.record("event", "disconnect", peer=str(self.client_address))
            try:
                sock.close()
            except OSError:
                pass

    def _one_line(self, sock: socket.socket, raw: bytes) -> bool:
        """Execute one line; False when the connection must end."""
        emulator = self.server.owner.emulator
        try:
            line = raw.decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            line = raw.decode("ascii", errors="replace").rstrip("\r")
            emulator.transcript.record("rx", line, undecodable=True)
            emulator.undecodable_input(raw)
            return True
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
            if self.server.owner.stopping.wait(float(late.get("delay_s", 1.0))):
                return False
        endless = emulator.faults.take("endless_reply", line)
        if endless is not None:
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
        emulator: object with ``receive(line) -> list[str]``, ``faults``, ``transcript``,
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
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

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
            with self._clients_lock:
                clients = list(self._clients)
            for sock in clients:
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

    def _register(self, sock: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(sock)

    def _unregister(self, sock: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(sock)
