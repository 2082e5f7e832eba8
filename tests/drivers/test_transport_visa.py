"""VisaTransport through real pyvisa-py / pyvisa-sim: error mapping, terminations, blocks, logging.

Only 127.0.0.1 is used; servers are function-scoped threads.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Optional

import numpy as np
import pytest

from hil.drivers.blocks import encode_ieee_block
from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentTimeout,
)
from hil.drivers.transport import (
    ResourceManagers,
    Transport,
    VisaTransport,
    parse_resource_name,
    validate_visa_library,
)

Responder = Callable[[bytes], Optional[bytes]]


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        if server.close_at_once:  # type: ignore[attr-defined]
            return
        for line in self.rfile:
            reply = server.responder(line.rstrip(b"\r\n"))  # type: ignore[attr-defined]
            if reply is not None:
                self.wfile.write(reply)
                self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(responder, close_at_once=False)`` → resource string of a loopback server."""
    servers: list[_Server] = []

    def start(responder: Responder, close_at_once: bool = False) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.responder = responder  # type: ignore[attr-defined]
        server.close_at_once = close_at_once  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"TCPIP::127.0.0.1::{server.server_address[1]}::SOCKET"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def replies(table: dict[bytes, bytes]) -> Responder:
    return lambda line: table.get(line)


def open_transport(managers: ResourceManagers, resource: str, timeout_s: float = 0.3) -> VisaTransport:
    return VisaTransport(managers.get("@py"), resource, name="loop", timeout_s=timeout_s, open_timeout_s=1.0)


pytestmark = pytest.mark.filterwarnings("error")


def test_visa_transport_satisfies_protocol(serve, visa_managers):
    t = open_transport(visa_managers, serve(replies({})))
    try:
        assert isinstance(t, Transport)
        assert t.resource_name.startswith("TCPIP0::127.0.0.1::")
    finally:
        t.close()


def test_query_write_read_and_debug_log(serve, visa_managers, caplog):
    t = open_transport(visa_managers, serve(replies({b"*IDN?": b"ACME,X1,1,1\n", b"HELLO": b"+1.5E-03\n"})))
    try:
        with caplog.at_level(logging.DEBUG, logger="hil.instr.loop"):
            assert t.query("*IDN?") == "ACME,X1,1,1"
            t.write("HELLO")
            assert t.read() == "+1.5E-03"
        assert any("query '*IDN?' -> 'ACME,X1,1,1'" in r.getMessage() and "ms" in r.getMessage()
                   for r in caplog.records if r.name == "hil.instr.loop")
    finally:
        t.close()


def test_closed_port_is_connection_error(visa_managers):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InstrumentConnectionError) as info:
        t = open_transport(visa_managers, f"TCPIP::127.0.0.1::{port}::SOCKET")
        try:
            t.query("*IDN?")
        finally:
            t.close()
    assert info.value.instrument == "loop"
    assert info.value.__cause__ is not None  # chained original


def test_silent_server_is_timeout_and_discard_is_bounded(serve, visa_managers):
    t = open_transport(visa_managers, serve(lambda line: None), timeout_s=0.2)
    try:
        with pytest.raises(InstrumentTimeout) as info:
            t.query("*IDN?")
        assert info.value.command == "*IDN?"
        assert t.discard_input() == 0
        assert t.timeout_s == pytest.approx(0.2)
    finally:
        t.close()


def test_discard_input_drops_late_reply(serve, visa_managers):
    t = open_transport(visa_managers, serve(replies({b"A?": b"stale\nstale2\n", b"B?": b"fresh\n"})))
    try:
        t.write("A?")
        assert t.query("B?") == "stale"  # the hazard discard_input exists for
        t.write("A?")
        import time
        time.sleep(0.05)
        assert t.discard_input() > 0
        assert t.query("B?") == "fresh"
    finally:
        t.close()


def test_peer_closed_maps_to_typed_error(serve, visa_managers):
    t = open_transport(visa_managers, serve(lambda line: None, close_at_once=True), timeout_s=0.2)
    try:
        with pytest.raises((InstrumentTimeout, InstrumentConnectionError)):
            t.query("*IDN?")
    finally:
        t.close()


def test_temporary_timeout_restores(serve, visa_managers):
    t = open_transport(visa_managers, serve(replies({})), timeout_s=0.3)
    try:
        with t.temporary_timeout(2.5):
            assert t.timeout_s == pytest.approx(2.5)
        assert t.timeout_s == pytest.approx(0.3)
        with pytest.raises(InstrumentConfigError):
            t.timeout_s = 0
    finally:
        t.close()


def test_query_binary_definite_and_indefinite_blocks(serve, visa_managers):
    values = np.array([1.0, 10.0, -2.5e-6, 9.91e37], dtype="<f4")  # 10.0 as float32 holds no 0x0A byte
    tricky = np.array([np.frombuffer(b"\x0a\x0a\x0a\x0a", "<f4")[0], 1.0], dtype="<f4")  # bytes equal to LF
    t = open_transport(visa_managers, serve(replies({
        b"DEF?": encode_ieee_block(values, "<f4") + b"\n",
        b"BIG?": encode_ieee_block(values.astype(">f8"), ">f8") + b"\n",
        b"IND?": encode_ieee_block(tricky, "<f4", indefinite=True) + b"\n",
    })))
    try:
        np.testing.assert_array_equal(t.query_binary("DEF?", "<f4"), values)
        np.testing.assert_array_equal(t.query_binary("BIG?", ">f8"), values.astype(float))
        np.testing.assert_array_equal(t.query_binary("IND?", "<f4", count=2), tricky)
    finally:
        t.close()


def test_query_binary_malformed_block_is_protocol_error(serve, visa_managers):
    t = open_transport(visa_managers, serve(replies({b"BAD?": b"#9xyz\n", b"*IDN?": b"ok\n"})))
    try:
        with pytest.raises(InstrumentProtocolError):
            t.query_binary("BAD?", "<f4")
    finally:
        t.close()


def test_undecodable_reply_is_protocol_error(serve, visa_managers):
    t = open_transport(visa_managers, serve(replies({b"X?": b"\xff\xfe\n"})))
    try:
        with pytest.raises(InstrumentProtocolError):
            t.query("X?")
    finally:
        t.close()


SIM_YAML = """
spec: "1.1"
devices:
  dev:
    eom: {TCPIP SOCKET: {q: "\\n", r: "\\n"}}
    dialogues:
      - {q: "*IDN?", r: "ACME,SIM,1,1"}
resources:
  TCPIP::192.0.2.1::5025::SOCKET: {device: dev}
"""


def test_unknown_sim_address_termination_warning_is_protocol_error(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(SIM_YAML)
    with ResourceManagers() as managers:
        t = VisaTransport(managers.get(f"{path}@sim"), "TCPIP::192.0.2.99::5025::SOCKET", name="ghost", timeout_s=0.2)
        with pytest.raises(InstrumentProtocolError, match="termination"):
            t.query("*IDN?")
        t.close()


def test_closed_manager_is_connection_error(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(SIM_YAML)
    managers = ResourceManagers()
    t = VisaTransport(managers.get(f"{path}@sim"), "TCPIP::192.0.2.1::5025::SOCKET", name="sim", timeout_s=0.2)
    assert t.query("*IDN?") == "ACME,SIM,1,1"
    managers.close_all()
    with pytest.raises(InstrumentConnectionError):
        t.query("*IDN?")


@pytest.mark.parametrize("name,normalised", [
    ("TCPIP::10.0.0.5::5025::SOCKET", "TCPIP0::10.0.0.5::5025::SOCKET"),
    ("GPIB::24::INSTR", "GPIB0::24::INSTR"),
    ("TCPIP::10.0.0.5::inst0::INSTR", "TCPIP0::10.0.0.5::inst0::INSTR"),
])
def test_parse_resource_name_normalises(name, normalised):
    assert parse_resource_name(name) == normalised


@pytest.mark.parametrize("name", ["", "FOO::1", "TCPIP::h::abc::SOCKET", "TCPIP::h::70000::SOCKET"])
def test_parse_resource_name_rejects(name):
    with pytest.raises(InstrumentConfigError):
        parse_resource_name(name)


def test_validate_visa_library(tmp_path):
    assert validate_visa_library("@py") == "@py"
    yaml = tmp_path / "x.yaml"
    yaml.write_text(SIM_YAML)
    assert validate_visa_library(f"{yaml}@sim") == f"{yaml}@sim"
    for bad in ["@nope", f"{tmp_path}/missing.yaml@sim", f"{tmp_path}/x.txt@sim", "/no/such/libvisa.so", ""]:
        with pytest.raises(InstrumentConfigError):
            validate_visa_library(bad)


def test_bad_resource_name_refused_before_open(visa_managers):
    with pytest.raises(InstrumentConfigError):
        VisaTransport(visa_managers.get("@py"), "TCPIP::h::x::SOCKET", name="bad")


def test_write_to_an_instrument_that_stops_reading_is_bounded_by_the_timeout(visa_managers):
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    t = open_transport(visa_managers, f"TCPIP::127.0.0.1::{listener.getsockname()[1]}::SOCKET", timeout_s=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(InstrumentTimeout):
            t.write("X" * 64_000_000)  # far more than the socket buffers hold; the peer never reads
        assert time.monotonic() - t0 < 2.0
    finally:
        t.close()
        thread.join(1.0)
        for s in accepted + [listener]:
            s.close()


def test_stream_without_terminator_is_bounded_by_one_deadline(visa_managers):
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(100)
            while not stop.is_set():  # one byte every 5 ms, never a terminator
                try:
                    conn.send(b"7")
                except OSError:
                    return
                time.sleep(0.005)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    t = open_transport(visa_managers, f"TCPIP::127.0.0.1::{listener.getsockname()[1]}::SOCKET", timeout_s=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(InstrumentTimeout, match="without terminator"):
            t.query("*IDN?")
        assert time.monotonic() - t0 < 0.6
    finally:
        stop.set()
        t.close()
        thread.join(1.0)
        listener.close()


def test_connect_failure_status_number_is_named():
    from hil.drivers.errors import InstrumentConnectionError
    from hil.drivers.transport import map_visa_exception

    mapped = map_visa_exception(Exception("could not connect: -1073807339"), instrument="smu", command=None)
    assert isinstance(mapped, InstrumentConnectionError)
    assert "error_timeout" in str(mapped) and "-1073807339" not in str(mapped)
    plain = map_visa_exception(Exception("could not connect: host down"), instrument="smu", command=None)
    assert "host down" in str(plain)
