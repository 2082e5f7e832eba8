"""ScriptedTransport: the protocol-test double must fail loudly and exactly."""

from __future__ import annotations

import numpy as np
import pytest

from hil.drivers.blocks import encode_ieee_block
from hil.drivers.errors import InstrumentConnectionError, InstrumentProtocolError, InstrumentTimeout
from hil.drivers.transport import ScriptedTransport, ScriptMismatch, Transport


def test_satisfies_transport_protocol():
    assert isinstance(ScriptedTransport([]), Transport)


def test_query_write_read_sequence():
    with ScriptedTransport([("*IDN?", "A,B,C,D"), (":OUTP ON", None), ("X?", "1")]) as t:
        assert t.query("*IDN?") == "A,B,C,D"
        t.write(":OUTP ON")
        t.write("X?")
        assert t.read() == "1"
    assert t.sent == ["*IDN?", ":OUTP ON", "X?"]


def test_mismatch_raises_immediately_and_again_on_verify():
    t = ScriptedTransport([("A", None)])
    with pytest.raises(ScriptMismatch, match="expected 'A'"):
        t.write("B")
    with pytest.raises(ScriptMismatch, match="failures"):
        t.verify()


def test_swallowed_mismatch_still_fails_on_exit():
    with pytest.raises(ScriptMismatch):
        with ScriptedTransport([("A", None)]) as t:
            try:
                t.write("B")
            except Exception:  # a driver's safe_shutdown swallows everything
                pass


def test_unconsumed_exchanges_fail_on_exit():
    with pytest.raises(ScriptMismatch, match="not consumed"):
        with ScriptedTransport([("A", None), ("B", None)]) as t:
            t.write("A")


def test_extra_command_fails():
    with pytest.raises(ScriptMismatch, match="exhausted"):
        ScriptedTransport([]).write("A")


def test_unread_reply_then_write_fails():
    t = ScriptedTransport([("A?", "1"), ("B", None)])
    t.write("A?")
    with pytest.raises(ScriptMismatch, match="unread"):
        t.write("B")


def test_none_reply_on_query_is_timeout_and_discard_clears_pending():
    t = ScriptedTransport([("A?", None), ("B?", "late")])
    with pytest.raises(InstrumentTimeout) as info:
        t.query("A?")
    assert info.value.command == "A?" and info.value.instrument == "scripted"
    t.write("B?")
    assert t.discard_input() == 4
    t.verify()


def test_exception_reply_is_raised():
    t = ScriptedTransport([("A", InstrumentConnectionError("lost"))])
    with pytest.raises(InstrumentConnectionError):
        t.write("A")


def test_binary_replies():
    values = np.array([1.5, -2.0, 3.25], dtype="<f4")
    with ScriptedTransport([
        ("D?", encode_ieee_block(values, "<f4") + b"\n"),
        ("I?", encode_ieee_block(values, ">f4", indefinite=True) + b"\n"),
        ("BAD?", b"#3abc"),
        ("RAW?", b"\x01\x02\n"),
        ("S?", b"text\n"),
        ("T?", b"truncated"),
    ]) as t:
        np.testing.assert_array_equal(t.query_binary("D?", "<f4"), values)
        np.testing.assert_array_equal(t.query_binary("I?", ">f4", count=3), values)
        with pytest.raises(InstrumentProtocolError):
            t.query_binary("BAD?", "<f4")
        t.write("RAW?")
        assert t.read_raw() == b"\x01\x02\n"
        assert t.query("S?") == "text"
        with pytest.raises(InstrumentProtocolError):
            t.query("T?")


def test_timeouts_are_recorded_and_restored():
    t = ScriptedTransport([], timeout_s=5.0)
    with t.temporary_timeout(1.0):
        assert t.timeout_s == 1.0
    assert t.timeout_s == 5.0 and t.timeouts == [1.0, 5.0]


def test_closed_transport_refuses_io():
    t = ScriptedTransport([("A", None)])
    t.close()
    with pytest.raises(InstrumentConnectionError):
        t.write("A")


def test_bad_exchange_shape_rejected():
    with pytest.raises(TypeError):
        ScriptedTransport([("A",)])  # type: ignore[list-item]
