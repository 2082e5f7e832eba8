"""Keithley 2450 SourceMeter, SCPI command set (instruments.md §2.1).

Commands checked against the Model 2450 Reference Manual (2450-901-01) and, where the 2450 page
was not available, the same command in the 2461/2470 manuals of the same firmware family:
``*LANG?``, ``:OUTP:SMOD``, ``:OUTP:INT:TRIP?`` (the interlock query; ``:OUTP:INT:STAT?`` from
older notes does not exist on the 2450), ``:SOUR:VOLT:ILIM[:LEV]:TRIP?``, ``:SENS:CURR:NPLC``
(0.01–10), ``:SENS:CURR:AZER``, ``:SOUR:LIST:VOLT[:APP]`` (≤100 values per message),
``:SOUR:SWE:VOLT:LIST <start>, <delay>, <count>, <failAbort>, "<buffer>"`` (delay 0 or
50 µs–10 ks), ``:TRAC:ACT?``, ``:TRAC:CLE``, ``:TRAC:DATA? ..., SOUR, READ``.

Read-back is ASCII: the binary header/byte order of ``:FORM:DATA SREAL`` is not verified.
``:FORM:DATA ASC`` (``:FORMat[:DATA] ASCii``) is pinned at connect, so an instrument left in a
binary format by another program still answers in ASCII.
Per-point compliance in sweeps uses the software rule (the STAT bits are not verified);
``failAbort ON`` stops a sweep at the first limit hit and missing points are flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np

from hil.drivers.errors import InstrumentProtocolError, LimitViolation
from hil.drivers.parsing import format_number, parse_bool, parse_numbers
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.base import ScpiDriver
from hil.drivers.smu import SourceMeterDriver

__all__ = ["Keithley2450"]

_OFF_MODES = {"zero": "ZERO", "himp": "HIMP", "normal": "NORM"}
_BUFFER = '"defbuffer1"'
_LIST_CHUNK = 100
_MIN_SWEEP_DELAY_S = 50e-6


class Keithley2450(SourceMeterDriver, ScpiDriver):
    """Keithley 2450 in the SCPI command set; one channel named ``""``.

    See ``SourceMeterDriver`` for the constructor arguments.
    """

    SUPPORTED_MODELS = ("2450",)
    DESCRIPTION = "Keithley 2450 SourceMeter, SCPI command set, one channel"
    CHANNELS = ("",)
    NPLC_RANGE = (0.01, 10.0)

    # -- connect -----------------------------------------------------------------------------

    def _apply_initial_state(self) -> None:
        """Pin the reply format (ASCII), then the shared initial state."""
        self._write(":FORM:DATA ASC")
        super()._apply_initial_state()

    def _check_command_set(self) -> None:
        language = self._query("*LANG?").strip().upper()
        if language != "SCPI":
            raise InstrumentProtocolError(
                f"2450 is in the {language or '?'} command set; send '*LANG SCPI' and power-cycle the "
                "instrument (the driver never changes the command set itself)",
                instrument=self.name, command="*LANG?")

    def reset(self) -> None:
        """``*RST`` (outputs off, defaults), then re-apply every configured channel."""
        self._write("*RST")
        self._output_on[""] = False
        self._read_level_checked("")
        for ch, cfg in list(self._configs.items()):
            self.configure(ch, cfg)

    # -- hooks -------------------------------------------------------------------------------

    def _apply_config(self, channel: str, config: SmuChannelConfig) -> None:
        w = self._write
        w(":SOUR:FUNC VOLT")
        w(f":SOUR:VOLT:RANG {format_number(config.source_range_v)}")
        w(f":SOUR:VOLT:ILIM {format_number(config.limits.i_compliance_a)}")
        w(f":SOUR:VOLT:DEL {format_number(config.source_delay_s)}")
        w(":SOUR:VOLT:READ:BACK ON")
        w(':SENS:FUNC "CURR"')
        w(":SENS:CURR:RANG:AUTO OFF")
        w(f":SENS:CURR:RANG {format_number(config.current_range_a)}")
        w(f":SENS:CURR:NPLC {format_number(config.nplc)}")
        w(f":SENS:CURR:AZER {'ON' if config.autozero == 'on' else 'OFF'}")
        if config.autozero == "once":
            w(":SENS:AZER:ONCE")
        w(f":SENS:CURR:RSEN {'ON' if config.four_wire else 'OFF'}")
        w(":SENS:COUN 1")
        w(f":OUTP:SMOD {_OFF_MODES[config.off_mode]}")

    def _write_level(self, channel: str, level_v: float) -> None:
        self._write(f":SOUR:VOLT {format_number(level_v)}")

    def _read_level(self, channel: str) -> float:
        return self._query_float(":SOUR:VOLT?", retry=True)

    def _write_current_limit(self, channel: str, limit_a: float) -> None:
        self._write(f":SOUR:VOLT:ILIM {format_number(limit_a)}")

    def _read_compliance(self, channel: str) -> bool:
        return self._parse(parse_bool, self._query(":SOUR:VOLT:ILIM:TRIP?", retry=True), ":SOUR:VOLT:ILIM:TRIP?")

    def _write_output(self, channel: str, on: bool) -> None:
        self._write(f":OUTP {'ON' if on else 'OFF'}")

    def _read_output(self, channel: str) -> bool:
        return self._parse(parse_bool, self._query(":OUTP?", retry=True), ":OUTP?")

    def _interlock_closed(self) -> Optional[bool]:
        """``:OUTP:INT:TRIP?``: 1 = interlock asserted (all ranges), 0 = not asserted."""
        return self._parse(parse_bool, self._query(":OUTP:INT:TRIP?", retry=True), ":OUTP:INT:TRIP?")

    def _read_spot(self, channel: str) -> tuple[float, float, bool]:
        command = f":READ? {_BUFFER}, SOUR, READ"
        source_v, current = self._parse(lambda r: parse_numbers(r, count=2), self._query(command), command)
        return float(current), float(source_v), self._read_compliance(channel)

    def _abort(self) -> None:
        self._write(":ABOR")

    def _check_sweep_settle(self, settle_s: float) -> None:
        super()._check_sweep_settle(settle_s)
        if 0 < settle_s < _MIN_SWEEP_DELAY_S or settle_s > 10_000:
            raise LimitViolation("settle_s", settle_s, _MIN_SWEEP_DELAY_S, instrument=self.name,
                                 reason="2450 sweep delay is 0 or 50 us .. 10 ks")

    def _run_sweep(
        self, vectors: Mapping[str, np.ndarray], settle_s: float, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        levels = vectors[""]
        n = levels.size
        self._write(f":TRAC:CLE {_BUFFER}")
        for k in range(0, n, _LIST_CHUNK):
            head = ":SOUR:LIST:VOLT " if k == 0 else ":SOUR:LIST:VOLT:APP "
            self._write(head + ",".join(format_number(v) for v in levels[k:k + _LIST_CHUNK]))
        self._write(f":SOUR:SWE:VOLT:LIST 1, {format_number(settle_s)}, 1, ON, {_BUFFER}")
        self._write(":INIT")
        self._write("*WAI")
        with self.transport.temporary_timeout(timeout_s):
            stored = int(self._query_float(f":TRAC:ACT? {_BUFFER}"))
        v_src = np.full((n, 1), np.nan)
        i_meas = np.full((n, 1), np.nan)
        if stored > n or stored < 0:
            raise InstrumentProtocolError(f"buffer holds {stored} readings for a {n}-point sweep",
                                          instrument=self.name)
        if stored < n:
            self.log.error("sweep stopped after %d of %d points (failAbort: current limit reached)", stored, n)
        if stored:
            command = f":TRAC:DATA? 1, {stored}, {_BUFFER}, SOUR, READ"
            with self.transport.temporary_timeout(timeout_s):
                data = self._parse(lambda r: parse_numbers(r, count=2 * stored), self._query(command), command)
            v_src[:stored, 0] = data[0::2]
            i_meas[:stored, 0] = data[1::2]
        return v_src, i_meas, None
