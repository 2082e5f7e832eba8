"""SCPI parser and error queue of the emulator framework (no sockets)."""

from __future__ import annotations

import pytest

from hil.emulate.base import ErrorQueue
from hil.emulate.scpi import (
    HeaderPattern,
    ScpiEmulator,
    ScpiError,
    expand_channel_list,
    scpi,
    split_messages,
    split_parameters,
)


def _tokens(header: str):
    import re

    return [re.match(r"([A-Za-z]+)(\d*)", t).groups() for t in header.lstrip(":").split(":")]


@pytest.mark.parametrize("header, suffixes", [
    ("SOUR:VOLT", [1]), (":SOURCE2:VOLTAGE:LEVEL", [2]), ("volt", [1]), ("sour:volt:lev:imm:ampl", [1]),
    ("SOUR:VOLT:IMM", [1]), ("Source3:Volt", [3]),
])
def test_header_pattern_matches_short_long_optional_and_suffix(header, suffixes):
    pattern = HeaderPattern("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    assert pattern.match(_tokens(header)) == suffixes


@pytest.mark.parametrize("header", ["SOUR:VOLTA", "SOU:VOLT", "SOUR:VOLT:LEV:FOO", "SOUR:LEV", "SOURCES:VOLT"])
def test_header_pattern_rejects_partial_and_unknown_forms(header):
    pattern = HeaderPattern("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    assert pattern.match(_tokens(header)) is None


def test_suffix_one_only_node():
    pattern = HeaderPattern(":OUTPut[1][:STATe]")
    assert pattern.match(_tokens("OUTP1")) == []
    assert pattern.match(_tokens("OUTPUT:STAT")) == []
    assert pattern.match(_tokens("OUTP2")) is None


def test_message_and_parameter_splitting():
    assert split_messages(':SENS:FUNC "A;B";:SOUR:VOLT 1;') == [':SENS:FUNC "A;B"', ":SOUR:VOLT 1"]
    assert split_parameters('1, "a,b", (@101:103,110), MAX') == ["1", '"a,b"', "(@101:103,110)", "MAX"]
    assert expand_channel_list("(@101:103,110)") == [101, 102, 103, 110]
    assert expand_channel_list("(@1,2)") == [1, 2]
    with pytest.raises(ScpiError) as info:
        expand_channel_list("(@1a)")
    assert info.value.code == -104


class _Box(ScpiEmulator):
    MODELS = ("BOX",)

    def idn(self) -> str:
        return "ACME,BOX,1,1.0"

    def reset(self) -> None:
        self.level = 0.0

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.reset()

    @scpi("[:SOURce#]:VOLTage[:LEVel]")
    def _set(self, cmd):
        cmd.count(1)
        self.level = cmd.number(0, lo=-10.0, hi=10.0, default=0.5)

    @scpi("[:SOURce#]:VOLTage[:LEVel]", query=True)
    def _get(self, cmd):
        return f"{self.level:g}"

    @scpi(":SYSTem:ERRor[:NEXT]", query=True)
    def _err(self, cmd):
        return self.next_error()


def _errors(box):
    out = []
    while True:
        e = box.handle(":SYST:ERR?")[0]
        out.append(e)
        if e.startswith("+0"):
            return out


def test_queries_joined_and_min_max_def():
    box = _Box("box", "BOX")
    assert box.handle("sour:volt MAX;:SOUR:VOLT?;*IDN?") == ["10;ACME,BOX,1,1.0"]
    box.handle("VOLT MIN")
    assert box.handle("VOLT?") == ["-10"]
    box.handle("VOLT DEF")
    assert box.handle("VOLT?") == ["0.5"]
    assert box.handle("*OPC?") == ["1"]


def test_error_codes_and_unchanged_setting():
    box = _Box("box", "BOX")
    box.handle("VOLT 1")
    for line in ("VOLT 20", "FOO:BAR", "VOLT abc", "VOLT", "VOLT 1,2", "VOLT 1e", "*FOO"):
        assert box.handle(line) == []
    assert box.handle("VOLT?") == ["1"]
    codes = [int(e.split(",")[0]) for e in _errors(box)]
    assert codes == [-222, -113, -104, -109, -108, -104, -113, 0]


def test_error_queue_overflow_and_cls_but_not_rst():
    box = _Box("box", "BOX")
    for _ in range(15):
        box.handle("NOPE")
    entries = box.errors.entries()
    assert len(entries) == box.ERROR_QUEUE_DEPTH
    assert entries[-1][0] == -350
    box.handle("*RST")
    assert len(box.errors) == box.ERROR_QUEUE_DEPTH
    box.handle("*CLS")
    assert box.handle("SYST:ERR?") == ['+0,"No error"']


def test_error_queue_depth_is_enforced():
    q = ErrorQueue(3)
    for code in (-100, -101, -102, -103):
        q.push(code, "x")
    assert [c for c, _ in q.entries()] == [-100, -101, -350]


def test_leading_colon_common_command_and_trailing_semicolon():
    box = _Box("box", "BOX")
    box.handle("NOPE")
    assert box.handle("*RST;:*CLS;") == []
    assert box.handle("SYST:ERR?") == ['+0,"No error"']
