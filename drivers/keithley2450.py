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

Triggered sweeps across instruments (``TriggeredSweeps``, follower only; only with
``trigger_line`` set, i.e. a digital I/O line of the rear-panel D-sub cabled to the bench trigger).
Per batch the driver clears the buffer, uploads the list (``:SOUR:LIST:VOLT``, which creates the
source configuration list ``VoltCustomSweepList``), replaces the trigger model with::

    :TRIG:LOAD "Empty"
    :DIG:LINE<n>:MODE TRIG, IN          line n is a trigger input
    :TRIG:DIG<n>:IN:EDGE FALL           a falling edge is the event DIG<n>
    :TRIG:BLOC:WAIT 1, DIG<n>           wait for the bench trigger line
    :TRIG:BLOC:CONF:NEXT 2, "VoltCustomSweepList"   step to the next list point
    :TRIG:BLOC:MEAS 3, "defbuffer1"     measure (after the configured source delay)
    :TRIG:BLOC:BRAN:COUN 4, <points>, 1 loop once per point

then ``:INIT`` and an error-queue query (answered while the trigger model waits on the line). The
read-back is ``*WAI``, ``:TRAC:ACT?`` and one ``:TRAC:DATA? 1, <points>, "defbuffer1", SOUR, READ``;
afterwards the line goes back to its reset mode (``:DIG:LINE<n>:MODE DIG, IN``) and the trigger
model is emptied. The source value stored with every reading must equal the uploaded level of its
point (points at the current limit excepted), so a trigger model that stepped differently than
programmed raises instead of shifting the batch. Checked against the Model 2450 Reference Manual (2450-901-01 Rev. B, September
2013): ``:DIGital:LINE<n>:MODE`` (p. 6-19: ``TRIGger``/``DIGital``/``SYNChronous`` with
``IN``/``OUT``/``OPENdrain``, lines 1–6, default ``DIG, IN``), ``:TRIGger:DIGital<n>:IN:EDGE``
(p. 6-150: ``FALLing``/``RISing``/``EITHer``), ``:TRIGger:BLOCk:WAIT`` (p. 6-148; the event of a
digital input line is ``DIGio<n>``, named so in the event table of the same firmware family,
2461-901-01 p. 6-190, and an event seen before the wait block is reached is kept by default),
``:TRIGger:BLOCk:CONFig:NEXT`` (p. 6-137; the first encounter recalls index 1, 2461-901-01
p. 8-283), ``:TRIGger:BLOCk:MEASure <block>, <buffer>`` (p. 6-144),
``:TRIGger:BLOCk:BRANch:COUNter <block>, <count>, <branchTo>`` (pp. 6-128/6-129: the counter counts
the arrivals, so ``count`` passes make ``count`` readings), ``:SOURce[1]:LIST:VOLTage`` (p. 6-78:
up to 100 values, creates ``VoltCustomSweepList``; ``:APPend`` p. 6-79), ``:INITiate`` (p. 6-124),
``*WAI`` and ``:TRACe:DATA? <start>, <end>, "defbuffer1", SOUR, READ`` (the example on p. 6-78),
and ``:TRIGger:LOAD "Empty"`` (p. 3-104: the Empty template clears the trigger model; the SCPI
spelling opens the examples of pp. 6-129 and 6-144, whose mirrored copy keeps only its comment
"Reset trigger model settings"; printed in full in 2461-901-01 p. 6-187 and 2470-901-01 p. 12-147). The
source delay is a setting of the source configuration list, applied by the instrument whenever the
source level changes (2450 p. 2-111; 2461-901-01 p. 6-89), so no delay block is needed; a constant
delay block was not found on a 2450 page, so a triggered sweep with ``settle_s`` > 0 is refused
(put the settling time into the channel's ``source_delay_s``).

The 2450 does not lead a triggered sweep: leading needs the trigger-output pulse width
(``:TRIGger:DIGital<n>:OUT:PULSewidth``), whose SCPI page was not found (only the TSP attribute
``trigger.digout[N].pulsewidth``, p. 8-174), so a bench with 2450s needs a B2900 or a 2600B with
``trigger_line`` as the lead (the board picks the first SMU that can lead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
    LimitViolation,
)
from hil.drivers.parsing import format_number, parse_bool, parse_numbers
from hil.drivers.protocols import SmuChannelConfig, SweepResult
from hil.drivers.base import ScpiDriver
from hil.drivers.smu import DigitalTriggerLine, SourceMeterDriver, at_limit

__all__ = ["Keithley2450"]

_OFF_MODES = {"zero": "ZERO", "himp": "HIMP", "normal": "NORM"}
_BUFFER = '"defbuffer1"'
_LIST_CHUNK = 100
_MIN_SWEEP_DELAY_S = 50e-6
#: digital I/O lines of the rear-panel D-sub (2450-901-01 p. 6-19)
DIGIO_LINES = 6
#: the source configuration list ``:SOUR:LIST:VOLT`` creates (2450-901-01 p. 6-78)
SWEEP_LIST = '"VoltCustomSweepList"'
#: a triggered point's stored source value must match its uploaded level within this plus
#: ``READBACK_MATCH_REL`` of the level (source read-back is on; the 2450 sources to ±(0.02 % + 600 µV)
#: on its 2 V range, so 1 mV + 0.1 % leaves margin and still tells list neighbours apart)
READBACK_MATCH_V = 1e-3
READBACK_MATCH_REL = 1e-3


class Keithley2450(DigitalTriggerLine, SourceMeterDriver, ScpiDriver):
    """Keithley 2450 in the SCPI command set; one channel named ``""``.

    See ``SourceMeterDriver`` for the constructor arguments.
    """

    DIGIO_LINES = DIGIO_LINES

    SUPPORTED_MODELS = ("2450",)
    DESCRIPTION = "Keithley 2450 SourceMeter, SCPI command set, one channel"
    CHANNELS = ("",)
    NPLC_RANGE = (0.01, 10.0)
    #: the 2450 follows the bench trigger line but does not drive it (see the module notes)
    leads_bench_trigger = False

    def __init__(self, transport: Any, *, trigger_line: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self._set_trigger_line(trigger_line)
        self._armed_sweep: Optional[dict[str, Any]] = None

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

    def _settings_snapshot(self) -> dict[str, Any]:
        out = super()._settings_snapshot()
        out["trigger_line"] = self.trigger_line
        return out

    # -- triggered sweeps across instruments (TriggeredSweeps, follower) -------------------------

    def arm_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float, lead: bool) -> None:
        """Upload the list and arm a trigger model that steps once per falling edge of the bench
        trigger line (digital I/O line ``trigger_line``), measuring each point into ``defbuffer1``.

        Limits are checked exactly as in :meth:`list_sweep` before anything is sent (bounds, step
        and slew from and back to the present level, output on). The arm ends with an error-queue
        query, answered once the trigger model waits on the line, so the lead may start.

        Raises:
            InstrumentConfigError: no ``trigger_line``, ``lead=True`` (the 2450 only follows), or
                ``settle_s`` > 0 (no verified delay block; use the channel's ``source_delay_s``).
            LimitViolation: a vector breaks a limit (nothing sent).
        """
        if self.trigger_line is None:
            raise InstrumentConfigError("no trigger_line configured: this 2450 is not wired to the bench trigger",
                                        instrument=self.name)
        if lead:
            raise InstrumentConfigError("the 2450 follows the bench trigger line but does not lead it; make a "
                                        "B2900 or a 2600B with trigger_line the first SMU", instrument=self.name)
        if float(settle_s) != 0.0:
            raise InstrumentConfigError(f"settle_s {settle_s!r}: a triggered 2450 sweep settles only by the "
                                        "channel's source_delay_s (set settle_s to 0)", instrument=self.name)
        vectors, timeout_s = self._checked_sweep_vectors(levels_v, 0.0)
        levels = vectors[""]
        n = levels.size
        line = self.trigger_line
        self._armed_sweep = {"n": n, "timeout_s": timeout_s, "levels": levels}
        try:
            self._write(f":TRAC:CLE {_BUFFER}")
            for k in range(0, n, _LIST_CHUNK):
                head = ":SOUR:LIST:VOLT " if k == 0 else ":SOUR:LIST:VOLT:APP "
                self._write(head + ",".join(format_number(v) for v in levels[k:k + _LIST_CHUNK]))
            self._write(':TRIG:LOAD "Empty"')
            self._write(f":DIG:LINE{line}:MODE TRIG, IN")
            self._write(f":TRIG:DIG{line}:IN:EDGE FALL")
            self._write(f":TRIG:BLOC:WAIT 1, DIG{line}")
            self._write(f":TRIG:BLOC:CONF:NEXT 2, {SWEEP_LIST}")
            self._write(f":TRIG:BLOC:MEAS 3, {_BUFFER}")
            self._write(f":TRIG:BLOC:BRAN:COUN 4, {n}, 1")
            self._setpoint[""] = math.nan  # the trigger model now owns the level: read back later
            self._write(":INIT")
            self.check_errors()
        except BaseException as exc:
            self._abort_armed(raw=isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)))
            raise

    def start_sweep(self) -> None:
        """Not available: the 2450 never leads a triggered sweep."""
        raise InstrumentConfigError("the 2450 does not lead triggered sweeps", instrument=self.name)

    def fetch_sweep(self) -> SweepResult:
        """Wait for the armed sweep (``*WAI``, ``:TRAC:ACT?``), read source values and readings back
        in one ``:TRAC:DATA?`` and restore the line and trigger model; per-point compliance = the
        software at-limit rule, plus ``max_power_w`` per reading.

        On a timeout, Ctrl-C or SIGTERM the trigger model is aborted (``:ABOR``, straight to the
        transport) before anything else; fewer readings than points (missed triggers) raise
        ``InstrumentProtocolError`` after the abort.
        """
        armed = self._armed_sweep
        if armed is None:
            raise InstrumentError("no sweep armed; call arm_sweep() first", instrument=self.name)
        n, timeout_s = armed["n"], armed["timeout_s"]
        try:
            self._write("*WAI")
            with self.transport.temporary_timeout(timeout_s):
                stored = int(self._query_float(f":TRAC:ACT? {_BUFFER}"))
            if stored != n:
                raise InstrumentProtocolError(f"buffer holds {stored} readings after a {n}-point triggered sweep "
                                              "(trigger pulses missed or the sweep was stopped)", instrument=self.name)
            command = f":TRAC:DATA? 1, {n}, {_BUFFER}, SOUR, READ"
            with self.transport.temporary_timeout(timeout_s):
                data = self._parse(lambda r: parse_numbers(r, count=2 * n), self._query(command), command)
        except BaseException as exc:
            self._abort_armed(raw=isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)))
            raise
        self._armed_sweep = None
        self._restore_trigger()
        v_src = np.asarray(data[0::2], float).reshape(n, 1)
        i_meas = np.asarray(data[1::2], float).reshape(n, 1)
        compliance = at_limit(i_meas / self.config("").limits.i_compliance_a, 1.0)
        self.voltage_setpoint("")
        self._check_sweep_power([""], v_src, i_meas)
        self.check_errors()
        self._check_stepped_as_uploaded(armed["levels"], v_src[:, 0], compliance[:, 0])
        if compliance.any():
            self.log.error("triggered sweep: %d point(s) at the current limit", int(compliance.sum()))
        return SweepResult(v_source=v_src, i_meas=i_meas, compliance=compliance, channels=("",))

    def _check_stepped_as_uploaded(self, levels: np.ndarray, v_src: np.ndarray, compliance: np.ndarray) -> None:
        """The source value stored with each reading must be the uploaded level of that point (within
        ``READBACK_MATCH_V`` + ``READBACK_MATCH_REL``·|level|; points at the current limit excepted): a
        trigger model that stepped otherwise than programmed (a missed or extra list step) is an
        ``InstrumentProtocolError``, never a silently shifted batch."""
        off = ~compliance & ~(np.abs(v_src - levels) <= READBACK_MATCH_V + READBACK_MATCH_REL * np.abs(levels))
        if off.any():
            k = int(np.flatnonzero(off)[0])
            raise InstrumentProtocolError(
                f"triggered sweep: source read back {v_src[k]!r} V at point {k} where {levels[k]!r} V was uploaded "
                f"({int(off.sum())} point(s) off): the trigger model did not step as programmed", instrument=self.name)

    def _restore_trigger(self) -> None:
        """Line back to its reset mode (digital input), trigger model emptied (best effort)."""
        try:
            self._write(f":DIG:LINE{self.trigger_line}:MODE DIG, IN")
            self._write(':TRIG:LOAD "Empty"')
        except Exception:
            self.log.error("could not restore the digital line after the triggered sweep", exc_info=True)

    def _abort_armed(self, raw: bool = False) -> None:
        """Abort the armed trigger model (``raw``: straight to the transport, before any resync, and no
        restore), else restore the line; the level is left unknown (read back before the next ramp)."""
        self._armed_sweep = None
        self._setpoint[""] = math.nan
        try:
            (self.transport.write if raw else self._write)(":ABOR")
        except Exception as exc:
            self.log.error("could not abort the triggered sweep: %s", exc)
        if not raw:  # after a timeout or an interrupt the link is resynchronised by the shutdown first
            self._restore_trigger()
