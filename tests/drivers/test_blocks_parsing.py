"""IEEE blocks and reply parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.blocks import decode_ieee_block, encode_ieee_block
from hil.drivers.errors import InstrumentProtocolError
from hil.drivers.parsing import (
    format_number,
    map_sentinels,
    model_matches,
    parse_bool,
    parse_idn,
    parse_number,
    parse_numbers,
    parse_scpi_error,
    parse_tsp_error,
)


def test_block_round_trip_definite_and_indefinite():
    v = np.arange(5, dtype=">f8")
    assert encode_ieee_block(v, ">f8")[:4] == b"#240"
    np.testing.assert_array_equal(decode_ieee_block(encode_ieee_block(v, ">f8") + b"\n", ">f8"), v)
    np.testing.assert_array_equal(decode_ieee_block(encode_ieee_block(v, "<f4", indefinite=True), "<f4", 5), v)


@pytest.mark.parametrize("data,count", [
    (b"1,2,3", None), (b"#", None), (b"#0abcd", None), (b"#2", None), (b"#212abc", None),
    (b"#13abc", None), (b"#14abcdXX", None), (b"#14abcd", 2), (b"junk#14abcd", None),
])
def test_block_errors(data, count):
    with pytest.raises(ValueError):
        decode_ieee_block(data, "<f4", count)


@pytest.mark.parametrize("token,expected", [
    ("+1.5E-03", 1.5e-3), ("  -2 ", -2.0), ("+9.9E37", math.inf), ("-9.9E37", -math.inf),
    ("9.90000000E+37", math.inf), ("+9.910000E+37", math.nan), ("9.91e37", math.nan),
])
def test_parse_number_sentinels(token, expected):
    value = parse_number(token)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_parse_number_rejects_garbage_and_numbers_checks_count():
    with pytest.raises(InstrumentProtocolError):
        parse_number("ON")
    np.testing.assert_array_equal(parse_numbers("1, 2,3"), [1, 2, 3])
    assert parse_numbers("").size == 0
    with pytest.raises(InstrumentProtocolError):
        parse_numbers("1,2", count=3)


def test_map_sentinels_vectorised():
    out = map_sentinels(np.array([9.9e37, -9.9e37, 9.91e37, 0.5], dtype="<f4"))
    assert out[0] == math.inf and out[1] == -math.inf and math.isnan(out[2]) and out[3] == 0.5


@pytest.mark.parametrize("token,expected", [("1", True), ("0", False), ("ON", True), ("off", False),
                                            ("true", True), ("false", False), ("1.00000e+00", True),
                                            ("0.00000e+00", False)])
def test_parse_bool(token, expected):
    assert parse_bool(token) is expected


@pytest.mark.parametrize("token", ["2", "yes", "", "nil"])
def test_parse_bool_rejects(token):
    with pytest.raises(InstrumentProtocolError):
        parse_bool(token)


def test_scpi_and_tsp_error_entries():
    assert parse_scpi_error('+0,"No error"') == (0, "No error")
    assert parse_scpi_error('-113,"Undefined header;1;2024/01/01"') == (-113, "Undefined header")
    assert parse_tsp_error("-2.86000e+02\tTSP Runtime error\t2.00000e+01\t1.00000e+00") == (-286, "TSP Runtime error")
    with pytest.raises(InstrumentProtocolError):
        parse_scpi_error("garbage")
    with pytest.raises(InstrumentProtocolError):
        parse_tsp_error("x\ty")


def test_idn_and_model_tokens():
    idn = parse_idn("Keithley Instruments Inc., Model 2636B, 123, 3.3.5")
    assert (idn.vendor, idn.model, idn.serial, idn.firmware) == ("Keithley Instruments Inc.", "Model 2636B", "123", "3.3.5")
    assert model_matches(idn, ("2636b",)) == "2636b"
    assert model_matches(idn, ("2636",)) is None  # whole token only
    for bad in ["", "A,B", ",B,C,D"]:
        with pytest.raises(InstrumentProtocolError):
            parse_idn(bad)


def test_format_number():
    assert [format_number(x) for x in (0.12 / 3, 1e-5, 1.0, -0.0, -2.5)] == ["0.04", "1e-05", "1", "0", "-2.5"]
    with pytest.raises(ValueError):
        format_number(math.nan)


# -- hostile replies: only typed errors, never ValueError/OverflowError ---------------------------

from hil.drivers.blocks import block_end  # noqa: E402
from hil.drivers.errors import InstrumentProtocolError as _ProtocolError  # noqa: E402


@pytest.mark.parametrize("reply", [
    "inf\tQueue Is Empty\t0\t0", "nan\tx", "1e999\tx", "1" * 5000 + "\tx", "\u0661\u0662\tx", "2.5e+00\tx", "",
])
def test_tsp_error_code_hostile_forms_are_protocol_errors(reply):
    with pytest.raises(_ProtocolError):
        parse_tsp_error(reply)


@pytest.mark.parametrize("reply", ['1' * 5000 + ',"x"', '\u0661\u0662,"x"', 'inf,"x"', '+99999999999,"x"'])
def test_scpi_error_code_hostile_forms_are_protocol_errors(reply):
    with pytest.raises(_ProtocolError):
        parse_scpi_error(reply)


@pytest.mark.parametrize("token", ["1" * 5000, "\u0661.5", "1_000", "1e999", "0x10", " ", "1e", "--1", "\uff11"])
def test_numbers_accept_only_ascii_nr_forms(token):
    with pytest.raises(_ProtocolError):
        parse_number(token)
    with pytest.raises(_ProtocolError):
        parse_numbers(f"1.0,{token}")


def test_numbers_and_booleans_standard_forms():
    assert parse_number("+1.5E-03") == 1.5e-3 and parse_number(".5") == 0.5 and parse_number("7.") == 7.0
    assert math.isnan(parse_number("nan")) and parse_number("-inf") == -math.inf
    assert parse_bool("1.00000e+00") is True
    for bad in ("\u0661", "2", "1" * 5000):
        with pytest.raises(_ProtocolError):
            parse_bool(bad)
    assert parse_tsp_error("-2.86000e+02\tTSP Runtime error\t2.00000e+01\t0.00000e+00") == (-286, "TSP Runtime error")


def test_block_followed_by_crlf_is_accepted():
    values = np.array([1.0, -2.0], dtype="<f4")
    for term in (b"\n", b"\r\n"):
        msg = encode_ieee_block(values, "<f4") + term
        np.testing.assert_array_equal(decode_ieee_block(msg, "<f4"), values)
        assert block_end(msg, 4) == len(msg)
        assert block_end(msg + b"next\n", 4) == len(msg)
        ind = encode_ieee_block(values, "<f4", indefinite=True) + term
        assert block_end(ind, 4, 2) == len(ind)
    assert block_end(encode_ieee_block(values, "<f4") + b"\r", 4) is None  # CR alone: wait for LF
    with pytest.raises(ValueError):
        block_end(encode_ieee_block(values, "<f4") + b"X\n", 4)
