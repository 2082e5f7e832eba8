"""Keysight (Agilent) B2900 precision SMUs: B2901A/B, B2902A/B, B2911A/B, B2912A/B, B2901BL, B2910BL.

Channels are named ``"1"`` and ``"2"`` (two-channel models: the fourth digit of the model is
``2``, e.g. B2902A, B2912B) and are addressed with a numeric suffix on every subsystem
(``:SOUR2:VOLT``, ``:SENS2:CURR:NPLC``, ``:OUTP2``, ``:TRIG2:COUN``); the suffix is always sent,
although an omitted suffix means channel 1.

Commands, checked against the Agilent B2900 SCPI Command Reference (B2910-90030, Ed. 2) and, for
pages not found there, the same command in the Keysight B2961A/B2962A SCPI Command Reference
(B2961-90030, Ed. 6) of the same command tree:

* numeric suffix ``c`` = channel, ``TRIG`` = ``TRIG1``; channel lists ``(@1)``, ``(@2)``, ``(@1,2)``;
* ``:SOUR{c}:FUNC:MODE VOLT``, ``:SOUR{c}:VOLT <v>``, ``:SOUR{c}:VOLT:RANG[:AUTO]``,
  ``:SOUR{c}:LIST:VOLT[:APP]`` (≤ 2500 points on the B2900A), ``:SOUR{c}:VOLT:MODE LIST|FIX``;
* ``:SENS{c}:CURR:NPLC`` (4E-4..100 at 50 Hz, 4.8E-4..120 at 60 Hz), ``:SENS{c}:CURR:RANG``,
  ``:SENS{c}:CURR:RANG:AUTO OFF``, ``:SENS{c}:CURR:PROT <i>``, ``:SENS{c}:CURR:PROT:TRIP?`` (1/0);
* ``:OUTP{c} ON|OFF``, ``:OUTP{c}:OFF:MODE ZERO|HIZ|NORM``, ``:OUTP{c}:ON:AUTO``,
  ``:OUTP{c}:PROT ON`` (at compliance: 0 V and output relay off);
* ``:TRIG{c}:SOUR AINT`` and the ``:TRIG{c}<:ACQ|:TRAN|:ALL>:…`` node for count and delay;
* ``:FORM:ELEM:SENS CURR,STAT,SOUR`` — element order is fixed by the instrument (voltage,
  current, resistance, time, status, source), so each point reads ``current, status, source``;
* ``:FETC:ARR? (@1,2)``: channel-1 elements then channel-2 elements per point, missing data
  ``+9.910000E+37`` (ASCII) or NaN (binary); ``:FORM:DATA ASC|REAL,64``, ``:FORM:BORD NORM``
  (SCPI "normal" = most significant byte first, decoded as big-endian);
* status word bits 1–2 (values 2, 4, 6) = compliance, used as the per-reading flag.

* ``:ABOR (@1,2)`` (ABORt subsystem, ``[:ALL]`` = acquire and transient actions) stops a running
  list: sent first by ``safe_shutdown`` and, after a sweep that timed out, before anything else
  (before the resync and before list mode is left).

With ``:OUTP{c}:PROT ON`` the instrument switches an output off by itself when it reaches
compliance. The driver therefore reads ``:OUTP{c}?`` back after every spot measurement and
every sweep; an output found off that the driver had switched on raises ``OutputTrippedError``
(the cache is updated, so no later ramp assumes a live level).

Pulsed sourcing (``PulsedSource``, :meth:`KeysightB2900.pulse`) runs through the list and trigger
commands above, not through the instrument's pulse function. A pulse of amplitude V and width t,
repeated ``count`` times, is the list ``V,0,V,0,…`` run by the trigger model with the acquire delay
set so that each point lasts t (acquire delay = t − integration time at the smallest NPLC), then
the channel is returned to fixed mode at 0 V. Pages this relies on:

* B2900 SCPI Command Reference (B2910-90030) Ed. 2, p. 4-104/4-105: ``[:SOURce[c]]:LIST:VOLTage``
  and ``:APPend`` (at most 2500 values, NRf list);
* same reference, p. 4-93: the immediate level ``[:SOURce[c]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]``
  (the level fixed mode returns to; it stays at 0 V during the pulse);
* the trigger node ``:TRIGger[c]<:ACQuire|:TRANsient|[:ALL]>`` (named with its ``:SOURce[:SIGNal]``
  on p. 4-93) with ``:COUNt`` and ``:ACQuire:DELay``, ``:INITiate (@c)``, ``*OPC?``, ``:ABORt (@c)``
  and ``[:SOURce[c]]:VOLTage:MODE LIST|FIXed``: the commands ``list_sweep`` already sends (listed
  above); ``:SENSe[c]:CURRent:NPLCycles`` at 4.8E-4, the smallest value valid at 50 and 60 Hz
  (range above), restored to the configured NPLC afterwards;
* B2900 User's Guide Ed. 5, p. 6-7 (Pulse Output): pulse widths from 50 µs to 100000 s; Ed. 2,
  p. 2-20: smallest programmable pulse width 50 µs, 1 µs resolution. ``pulse`` accepts that range;
* B2900 User's Guide Ed. 2/Ed. 5, p. 6-27 (Trigger System): the transient (source) and acquire
  (measure) device actions run per trigger, AINT picks the trigger automatically;
* B2900A data sheet, p. 17: trigger delay 0 to 100000 s, shortest trigger interval 20 µs
  (B2901A/B2902A) or 10 µs (B2911A/B2912A).

Not used, because their pages could not be found in the reference copies available (only public
drivers spell them): ``[:SOURce]:FUNCtion[:SHAPe] PULSe``, ``[:SOURce]:PULSe:WIDTh``,
``[:SOURce]:PULSe:DELay`` and the trigger timer ``:TRIGger:TIMer``. Consequences: a pulse lasts the
acquire delay plus the integration time plus the instrument's per-point trigger overhead (not
published), so it is slightly longer than ``width_s``; each point is also measured (the readings
are not read back; output protection still acts on them).

Left out because they could not be verified: ``:SYST:LFR?`` (60 Hz is assumed for timing),
``:SYST:INT:TRIP?`` (no hardware interlock check), the questionable-status register bits, and
any autozero command (only ``autozero: off`` is accepted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from hil.drivers.base import ScpiDriver
from hil.drivers.errors import (
    InstrumentConfigError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    LimitViolation,
    OutputTrippedError,
)
from hil.drivers.parsing import (
    MISSING_SENTINEL,
    OVERFLOW_SENTINEL,
    Identity,
    format_number,
    parse_bool,
    parse_numbers,
)
from hil.drivers.limits import check_level, check_vector
from hil.drivers.protocols import Reading, SmuChannelConfig, SweepResult
from hil.drivers.smu import FALLBACK_LINE_FREQUENCY_HZ, SourceMeterDriver, at_limit

__all__ = ["KeysightB2900", "status_in_compliance", "map_sentinels"]

_OFF_MODES = {"zero": "ZERO", "himp": "HIZ", "normal": "NORM"}
_LIST_CHUNK = 100          # values per :LIST:VOLT / :LIST:VOLT:APP message
_MAX_LIST_POINTS = 2500    # B2900A list length
_MAX_CURRENT_RANGE_A = 3.0
_MAX_VOLTAGE_RANGE_V = 210.0
_ELEMENTS = 3              # current, status, source per channel and point
_COMPLIANCE_BITS = 0b110   # status bits 1 and 2


def status_in_compliance(status: ArrayLike) -> np.ndarray:
    """Per-reading compliance from B2900 status words (bits 1–2 set); NaN status → ``False``."""
    s = np.asarray(status, dtype=float)
    words = np.where(np.isfinite(s), s, 0.0).astype(np.int64)
    return (words & _COMPLIANCE_BITS) != 0


def map_sentinels(values: ArrayLike) -> np.ndarray:
    """Map ``+9.91E37`` → ``nan`` and ``±9.9E37`` → ``±inf`` (relative tolerance 1e-3/1e-4)."""
    v = np.array(values, dtype=float)
    mag = np.abs(v)
    missing = np.isclose(mag, MISSING_SENTINEL, rtol=1e-4, atol=0.0)
    overflow = ~missing & np.isclose(mag, OVERFLOW_SENTINEL, rtol=1e-3, atol=0.0)
    v[missing] = np.nan
    v[overflow] = np.copysign(np.inf, v[overflow])
    return v


class KeysightB2900(SourceMeterDriver, ScpiDriver):
    """Keysight B2900-series SMU; channels ``"1"`` (and ``"2"`` on two-channel models).

    Args:
        transport, name, allowed_errors, sleep, clock, shutdown_timeout_s, configs,
            require_interlock: see ``SourceMeterDriver`` / ``DriverBase``.
        binary: read sweep data back as IEEE-754 float64 blocks (``:FORM:DATA REAL,64``) instead
            of ASCII; the format is switched only around the read-back.
    """

    SUPPORTED_MODELS = ("B2901A", "B2902A", "B2911A", "B2912A", "B2901B", "B2902B", "B2911B", "B2912B",
                        "B2901BL", "B2910BL")
    DESCRIPTION = "Keysight B2900 SMU (B2901/B2902/B2911/B2912), SCPI, channels 1/2"
    CHANNELS = ("1", "2")
    NPLC_RANGE = (4.8e-4, 100.0)
    MAX_SOURCE_A = 3.03  # 3 A DC range with 1 % over-range (10.5 A only in pulse mode)
    LINE_FREQUENCY_QUERY = None

    def __init__(self, transport: Any, *, binary: bool = False, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self.binary = bool(binary)
        self._list_active: set[str] = set()
        self._last_flags: Optional[np.ndarray] = None

    # -- identity and channels -----------------------------------------------------------------

    def identify(self) -> Identity:
        """``*IDN?`` with model check; sets ``channels`` to ``("1",)`` or ``("1", "2")``."""
        identity = super().identify()
        token = self.matched_model or ""
        self.channels = ("1", "2") if token[4:5] == "2" else ("1",)
        extra = [ch for ch in self._initial_configs if ch not in self.channels]
        if extra:
            raise InstrumentConfigError(f"{token} has channels {self.channels}; configured {extra}",
                                        instrument=self.name)
        return identity

    def _validate_config(self, channel: str, config: SmuChannelConfig) -> None:
        super()._validate_config(channel, config)
        problems = []
        if config.autozero != "off":
            problems.append(f"autozero {config.autozero!r}: no verified B2900 autozero command; use 'off'")
        if config.current_range_a > _MAX_CURRENT_RANGE_A:
            problems.append(f"current_range_a {config.current_range_a} A above {_MAX_CURRENT_RANGE_A} A")
        if config.source_range_v > _MAX_VOLTAGE_RANGE_V:
            problems.append(f"voltage range {config.source_range_v} V above {_MAX_VOLTAGE_RANGE_V} V")
        if problems:
            raise InstrumentConfigError(f"channel {channel!r}: " + "; ".join(problems), instrument=self.name)

    def _apply_initial_state(self) -> None:
        """Fixed reply format, no automatic output on/off, then the shared initial state."""
        self._write(":FORM:ELEM:SENS CURR,STAT,SOUR")
        self._write(":FORM:BORD NORM")
        self._write(":FORM:DATA ASC")
        for ch in self.channels:
            self._write(f":OUTP{ch}:ON:AUTO OFF")
            self._write(f":OUTP{ch}:OFF:AUTO OFF")
        super()._apply_initial_state()

    # -- per-channel hooks -----------------------------------------------------------------------

    def _apply_config(self, channel: str, config: SmuChannelConfig) -> None:
        # configure() refuses while the output is on (SourceMeterDriver.configure), so these
        # range/limit writes never happen while sourcing.
        c, w = channel, self._write
        w(f":SOUR{c}:FUNC:MODE VOLT")
        w(f":SOUR{c}:VOLT:MODE FIX")
        w(f":SOUR{c}:VOLT:RANG:AUTO OFF")
        w(f":SOUR{c}:VOLT:RANG {format_number(config.source_range_v)}")
        w(f':SENS{c}:FUNC "CURR"')
        w(f":SENS{c}:CURR:RANG:AUTO OFF")
        w(f":SENS{c}:CURR:RANG {format_number(config.current_range_a)}")
        w(f":SENS{c}:CURR:NPLC {format_number(config.nplc)}")
        w(f":SENS{c}:CURR:PROT {format_number(config.limits.i_compliance_a)}")
        w(f":SENS{c}:REM {'ON' if config.four_wire else 'OFF'}")
        w(f":OUTP{c}:OFF:MODE {_OFF_MODES[config.off_mode]}")
        w(f":OUTP{c}:PROT ON")
        w(f":TRIG{c}:SOUR AINT")
        w(f":TRIG{c}:COUN 1")
        w(f":TRIG{c}:TRAN:DEL 0")
        w(f":TRIG{c}:ACQ:DEL {format_number(config.source_delay_s)}")

    def _write_level(self, channel: str, level_v: float) -> None:
        self._write(f":SOUR{channel}:VOLT {format_number(level_v)}")

    def _read_level(self, channel: str) -> float:
        return self._query_float(f":SOUR{channel}:VOLT?")

    def _write_current_limit(self, channel: str, limit_a: float) -> None:
        self._write(f":SENS{channel}:CURR:PROT {format_number(limit_a)}")

    def _read_compliance(self, channel: str) -> bool:
        command = f":SENS{channel}:CURR:PROT:TRIP?"
        return self._parse(parse_bool, self._query(command), command)

    def _write_output(self, channel: str, on: bool) -> None:
        self._write(f":OUTP{channel} {'ON' if on else 'OFF'}")

    def _read_output(self, channel: str) -> bool:
        command = f":OUTP{channel}?"
        return self._parse(parse_bool, self._query(command), command)

    def _read_spot(self, channel: str) -> tuple[float, float, bool]:
        if not self._output_on.get(channel, False):
            # :MEAS? may switch the output on by itself (§2.3): only with the output already on.
            raise InstrumentError(f"channel {channel!r}: output is off; switch it on before measuring",
                                  instrument=self.name)
        command = f":MEAS? (@{channel})"
        current, status, source = self._parse(lambda r: parse_numbers(r, count=_ELEMENTS),
                                              self._query(command), command)
        return float(current), float(source), bool(status_in_compliance(status))

    def _chanlist(self, channels: Any = None) -> str:
        chans = sorted(channels if channels is not None else self.channels, key=int)
        return f"(@{','.join(chans)})"

    def _abort(self) -> None:
        """``:ABOR`` on every channel, then return channels left in list mode to fixed mode."""
        self._write(f":ABOR {self._chanlist()}")
        for ch in sorted(self._list_active):
            self._write(f":SOUR{ch}:VOLT:MODE FIX")
            self._list_active.discard(ch)

    def _check_outputs_still_on(self, channels: Any, last_current_a: float = float("nan")) -> None:
        """Read ``:OUTP{c}?`` for channels believed on; raise ``OutputTrippedError`` for the first one
        the instrument switched off (output protection at compliance)."""
        tripped = []
        for ch in channels:
            if self._output_on.get(ch) is True and not self._read_output(ch):
                self._output_on[ch] = False
                tripped.append(ch)
        if tripped:
            ch = tripped[0]
            self.log.error("channel(s) %s switched off by output protection (compliance)", tripped)
            raise OutputTrippedError(ch, self.config(ch).limits.i_compliance_a, last_current_a,
                                     instrument=self.name)

    def measure_current(self, channel: str) -> Reading:
        """Spot reading, then ``:OUTP{c}?``: ``OutputTrippedError`` if protection switched it off."""
        reading = super().measure_current(channel)
        self._check_outputs_still_on([channel], reading.value)
        return reading

    # -- list sweep ------------------------------------------------------------------------------

    def list_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float) -> SweepResult:
        """Synchronised list sweep (both channels of a B29x2 start with one ``:INIT (@1,2)``).

        Limits, step and slew are checked before any I/O (see ``SourceMeterDriver.list_sweep``);
        the per-point compliance combines the instrument's status bits 1–2 with the software
        at-limit rule.

        Args:
            levels_v: ``{channel: levels in V}``, equal lengths, at most 2500 points.
            settle_s: settling time per point in s, added to the channel's ``source_delay_s``.
        """
        for ch, levels in levels_v.items():
            n = np.size(levels)
            if n > _MAX_LIST_POINTS:
                raise LimitViolation("points", float(n), float(_MAX_LIST_POINTS), instrument=self.name,
                                     reason=f"channel {ch!r}: B2900 lists hold at most {_MAX_LIST_POINTS} points")
        self._last_flags = None
        try:
            result = super().list_sweep(levels_v, settle_s)
        except (InstrumentProtocolError, InstrumentReportedError):
            self._check_outputs_still_on(list(levels_v))
            raise
        self._check_outputs_still_on(list(levels_v))
        flags = self._last_flags
        if flags is None or flags.shape != result.compliance.shape:
            raise InstrumentProtocolError("sweep status words missing", instrument=self.name)
        return dataclasses.replace(result, compliance=result.compliance | flags)

    def _load_list(self, ch: str, levels: Sequence[float], acquire_delay_s: float,
                   nplc: Optional[float] = None) -> None:
        """Channel ``ch`` ready to run ``levels`` (V) by the trigger model: the list (in chunks), one
        trigger per point, the acquire delay (s) per point, optionally the NPLC, then list mode."""
        n = len(levels)
        for k in range(0, n, _LIST_CHUNK):
            head = f":SOUR{ch}:LIST:VOLT " if k == 0 else f":SOUR{ch}:LIST:VOLT:APP "
            self._write(head + ",".join(format_number(v) for v in levels[k:k + _LIST_CHUNK]))
        self._write(f":TRIG{ch}:COUN {n}")
        self._write(f":TRIG{ch}:ACQ:DEL {format_number(acquire_delay_s)}")
        if nplc is not None:
            self._write(f":SENS{ch}:CURR:NPLC {format_number(nplc)}")
        self._write(f":SOUR{ch}:VOLT:MODE LIST")
        self._list_active.add(ch)

    def _run_sweep(
        self, vectors: Mapping[str, np.ndarray], settle_s: float, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        order = list(vectors)
        chans = sorted(order, key=int)
        n = next(iter(vectors.values())).size
        chanlist = f"(@{','.join(chans)})"
        for ch in order:
            self._load_list(ch, vectors[ch], settle_s + self.config(ch).source_delay_s)
        try:
            self._write(f":INIT {chanlist}")
            with self.transport.temporary_timeout(timeout_s):
                done = self._query("*OPC?")
            if done != "1":
                raise InstrumentProtocolError(f"*OPC? returned {done!r}", instrument=self.name, command="*OPC?")
            data = self._fetch(chanlist, n * len(chans) * _ELEMENTS, timeout_s)
        except BaseException as exc:
            if isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)):
                # The list may still be running: stop it first, before the resync and the restore.
                try:
                    self.transport.write(f":ABOR {chanlist}")
                except Exception as abort_exc:
                    self.log.error("could not abort the sweep: %s", abort_exc)
            self._restore_after_sweep(order)
            raise
        self._restore_after_sweep(order)
        per_point = data.reshape(n, len(chans), _ELEMENTS)
        cols = [chans.index(ch) for ch in order]
        i_meas = per_point[:, cols, 0]
        flags = status_in_compliance(per_point[:, cols, 1])
        v_src = per_point[:, cols, 2]
        self._last_flags = flags
        return v_src, i_meas, None

    # -- triggered sweeps across instruments (TriggeredSweeps) -------------------------------------

    def arm_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float, lead: bool) -> None:
        """Upload one list per channel and arm the trigger model for a sweep stepped by the bench
        trigger line (digital I/O pin ``EXT1`` of every instrument on one cable).

        A follower (``lead=False``) waits for the line once per point (``:TRIG{c}:SOUR EXT1``,
        ``:INIT``); the lead (``lead=True``) paces the points and drives the line at each source
        step (``:TRIG{c}:TRAN:TOUT:SIGN EXT1``, ``:TRIG{c}:TRAN:TOUT ON``) once :meth:`start_sweep`
        initiates it. Limits are checked exactly as in :meth:`list_sweep` before anything is sent;
        the arm ends with an error-queue query, so a follower is known to wait before the lead starts.

        Args:
            levels_v: ``{channel: levels in V}``, equal lengths, at most 2500 points.
            settle_s: settling time per point in s, added to the channel's ``source_delay_s``.
            lead: this instrument drives the trigger line.
        """
        vectors, timeout_s = self._checked_vectors(levels_v, float(settle_s))
        order = list(vectors)
        chans = sorted(order, key=int)
        n = next(iter(vectors.values())).size
        chanlist = f"(@{','.join(chans)})"
        self._armed_sweep = {"order": order, "chans": chans, "n": n, "chanlist": chanlist,
                             "timeout_s": timeout_s, "lead": bool(lead)}
        for ch in order:  # the list owns the level until fetch_sweep reads it back (a shutdown reads it first)
            self._setpoint[ch] = math.nan
        try:
            for ch in order:
                self._load_list(ch, vectors[ch], float(settle_s) + self.config(ch).source_delay_s)
            if lead:
                self._write(f":TRIG{chans[0]}:TRAN:TOUT:SIGN EXT1")
                self._write(f":TRIG{chans[0]}:TRAN:TOUT ON")
            else:
                for ch in chans:
                    self._write(f":TRIG{ch}:SOUR EXT1")
                self._write(f":INIT {chanlist}")
            # a query answered only after everything above ran: the follower is waiting for the
            # line before the lead can be started (and any rejected command is reported now)
            self.check_errors()
        except BaseException:
            self._restore_after_triggered(order)
            self._armed_sweep = None
            raise

    def start_sweep(self) -> None:
        """Initiate the armed sweep of the lead (it drives the bench trigger line)."""
        armed = self._require_armed()
        self._write(f":INIT {armed['chanlist']}")

    def fetch_sweep(self) -> SweepResult:
        """Wait for the armed sweep (``*OPC?``), read every channel back in one ``:FETC:ARR?`` and
        restore fixed mode; per-point compliance = status bits 1–2 or the software at-limit rule.

        Raises:
            OutputTrippedError: output protection switched a swept channel off (compliance).
        """
        armed = self._require_armed()
        order, chans, n = armed["order"], armed["chans"], armed["n"]
        try:
            with self.transport.temporary_timeout(armed["timeout_s"]):
                done = self._query("*OPC?")
            if done != "1":
                raise InstrumentProtocolError(f"*OPC? returned {done!r}", instrument=self.name, command="*OPC?")
            data = self._fetch(armed["chanlist"], n * len(chans) * _ELEMENTS, armed["timeout_s"])
        except BaseException as exc:
            if isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)):
                try:  # the list may still be running or waiting for the line: stop it first
                    self.transport.write(f":ABOR {armed['chanlist']}")
                except Exception as abort_exc:
                    self.log.error("could not abort the triggered sweep: %s", abort_exc)
            raise
        finally:
            self._restore_after_triggered(order, lead=armed["lead"])
            self._armed_sweep = None
        per_point = data.reshape(n, len(chans), _ELEMENTS)
        cols = [chans.index(ch) for ch in order]
        i_meas, v_src = per_point[:, cols, 0], per_point[:, cols, 2]
        self._check_outputs_still_on(order)  # output protection may have switched one off mid-list
        limits = np.array([self.config(ch).limits.i_compliance_a for ch in order])
        compliance = at_limit(i_meas / limits, 1.0) | status_in_compliance(per_point[:, cols, 1])
        for ch in order:
            self.voltage_setpoint(ch)
        self._check_sweep_power(order, v_src, i_meas)
        self.check_errors()
        return SweepResult(v_source=v_src, i_meas=i_meas, compliance=compliance, channels=tuple(order))

    def _checked_vectors(self, levels_v: Mapping[str, ArrayLike], settle_s: float) -> tuple[dict[str, np.ndarray], float]:
        """The checks of ``list_sweep`` (points, bounds, step and slew from and back to the present
        level, outputs on); returns the vectors and a timeout for the whole sweep, s."""
        if not levels_v:
            raise LimitViolation("channels", 0.0, 1.0, reason="no channel given", instrument=self.name)
        self._check_sweep_settle(settle_s)
        vectors: dict[str, np.ndarray] = {}
        for ch, levels in levels_v.items():
            if np.size(levels) > _MAX_LIST_POINTS:
                raise LimitViolation("points", float(np.size(levels)), float(_MAX_LIST_POINTS), instrument=self.name,
                                     reason=f"channel {ch!r}: B2900 lists hold at most {_MAX_LIST_POINTS} points")
            vectors[ch] = check_vector(self.config(ch).limits, levels, start_v=self._setpoint.get(ch, math.nan),
                                       end_v=self._setpoint.get(ch, math.nan),
                                       point_duration_s=self._point_duration_s(ch, settle_s))
        lengths = {v.size for v in vectors.values()}
        if len(lengths) != 1:
            raise LimitViolation("points", float(max(lengths)), float(min(lengths)),
                                 reason="all channels need the same number of points", instrument=self.name)
        off = [ch for ch in vectors if not self._output_on.get(ch, False)]
        if off:
            raise InstrumentError(f"outputs off on channels {off}; switch them on before a sweep", instrument=self.name)
        n = lengths.pop()
        worst = max(self._point_duration_s(ch, settle_s) for ch in vectors)
        nplc = max(self.config(ch).nplc for ch in vectors)
        f_line = self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ
        return vectors, 2 * n * nplc / f_line + n * worst + 5.0

    def _require_armed(self) -> dict[str, Any]:
        armed = getattr(self, "_armed_sweep", None)
        if armed is None:
            raise InstrumentError("no sweep armed; call arm_sweep() first", instrument=self.name)
        return armed

    def _restore_after_triggered(self, channels: list[str], lead: bool = False) -> None:
        """Fixed mode, count 1, configured delay, trigger source back to automatic, trigger output off."""
        self._restore_after_sweep(channels)
        for ch in channels:
            try:
                self._write(f":TRIG{ch}:SOUR AINT")
                if lead:
                    self._write(f":TRIG{ch}:TRAN:TOUT OFF")
            except Exception:
                self.log.error("could not restore the trigger of channel %r", ch, exc_info=True)

    def _fetch(self, chanlist: str, count: int, timeout_s: float) -> np.ndarray:
        command = f":FETC:ARR? {chanlist}"
        with self.transport.temporary_timeout(timeout_s):
            if not self.binary:
                return self._parse(lambda r: parse_numbers(r, count=count), self._query(command), command)
            self._write(":FORM:DATA REAL,64")
            try:
                raw = self._query_binary(command, ">f8", None)
            finally:
                self._write(":FORM:DATA ASC")
        if raw.size != count:
            raise InstrumentProtocolError(f"binary block holds {raw.size} values, expected {count}",
                                          instrument=self.name, command=command)
        return map_sentinels(raw)

    def _restore_after_sweep(self, channels: list[str]) -> None:
        """Back to fixed mode, trigger count 1 and the configured acquire delay (best effort)."""
        for ch in channels:
            try:
                self._write(f":SOUR{ch}:VOLT:MODE FIX")
                self._list_active.discard(ch)
                self._write(f":TRIG{ch}:COUN 1")
                self._write(f":TRIG{ch}:ACQ:DEL {format_number(self.config(ch).source_delay_s)}")
            except Exception:
                self.log.error("could not restore channel %r after the sweep", ch, exc_info=True)

    # -- pulsed sourcing (PulsedSource capability) ----------------------------------------------

    #: pulse widths the instrument produces, s (User's Guide Ed. 5 p. 6-7; Ed. 2 p. 2-20)
    PULSE_WIDTH_RANGE_S = (5e-5, 1e5)

    def pulse(self, channel: str, amplitude_v: float, width_s: float, count: int = 1) -> None:
        """``count`` voltage pulses of ``amplitude_v`` (V) and ``width_s`` (s) from 0 V, each followed by
        ``width_s`` at 0 V, as a list ``V,0,V,0,…`` run by the trigger model (see the module notes).

        Per point the acquire delay is ``width_s`` minus the integration time at the smallest NPLC,
        so a point (one pulse, or the gap after it) lasts ``width_s`` plus the instrument's per-point
        trigger overhead. The list, count, delay and NPLC are restored afterwards (fixed mode at 0 V,
        count 1, the configured acquire delay and NPLC), also after a failure; a run that times out
        or is interrupted is stopped with ``:ABOR`` first. Output protection switching the channel off
        during the pulse (compliance) raises ``OutputTrippedError``.

        Refused before any I/O (``LimitViolation`` / ``InstrumentError``, one line each): an
        amplitude outside the channel's bounds, an edge larger than ``max_step_v`` (the edge is a
        step), ``|V|/width_s`` above ``max_slew_v_per_s`` (the rule every list sweep obeys, with the
        width as the point duration), a width outside ``PULSE_WIDTH_RANGE_S``, ``count`` < 1 or a list longer than 2500
        points, an output that is off, a present level other than 0 V.
        """
        limits = self.config(channel).limits
        amp = check_level(limits, amplitude_v, name="pulse amplitude")
        lo, hi = self.PULSE_WIDTH_RANGE_S
        width = float(width_s)
        if not (math.isfinite(width) and lo <= width <= hi):
            raise LimitViolation("pulse width", width, lo if not width > lo else hi, instrument=self.name,
                                 reason=f"the B2900 produces pulses from {lo:g} s to {hi:g} s")
        if isinstance(count, bool) or int(count) != count or count < 1 or 2 * int(count) > _MAX_LIST_POINTS:
            raise LimitViolation("pulse count", float(count), 1.0 if not count >= 1 else _MAX_LIST_POINTS // 2,
                                 instrument=self.name,
                                 reason=f"1 to {_MAX_LIST_POINTS // 2} pulses per call (one list of "
                                        f"{_MAX_LIST_POINTS} points)")
        if abs(amp) > limits.max_step_v * (1 + 1e-9):
            raise LimitViolation("pulse edge", abs(amp), limits.max_step_v, instrument=self.name,
                                 reason="a pulse edge is a step; it must not exceed max_step_v")
        if abs(amp) / width > limits.max_slew_v_per_s * (1 + 1e-9):
            raise LimitViolation("pulse slew", abs(amp) / width, limits.max_slew_v_per_s, instrument=self.name,
                                 reason="the list steps by the amplitude once per width_s, as a list sweep "
                                        "it must keep |V|/width_s within max_slew_v_per_s")
        if self._output_on.get(channel) is not True:
            raise InstrumentError(f"output {channel!r} is off; switch it on at 0 V before pulsing", instrument=self.name)
        if self._setpoint.get(channel) != 0.0:
            raise LimitViolation("pulse base", float(self._setpoint.get(channel, math.nan)), 0.0, instrument=self.name,
                                 reason="pulses start from 0 V; ramp the channel to 0 V first")
        n = 2 * int(count)
        nplc = self.NPLC_RANGE[0]
        aperture = nplc / (self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ)
        delay = max(width - aperture, 0.0)
        c, chanlist = channel, f"(@{channel})"
        config = self.config(channel)
        levels = [amp, 0.0] * int(count)
        # unknown until read back at the end: an interrupt anywhere in between leaves shutdown a
        # level to read back rather than a cached 0 V to trust
        self._setpoint[c] = math.nan
        try:
            self._load_list(c, levels, delay, nplc=nplc)
            self._write(f":INIT {chanlist}")
            with self.transport.temporary_timeout(self.transport.timeout_s + 2 * n * width + 1.0):
                done = self._query("*OPC?")
            if done != "1":
                raise InstrumentProtocolError(f"*OPC? returned {done!r}", instrument=self.name, command="*OPC?")
        except BaseException as exc:
            if isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)):
                try:  # the list may still be running: stop it before the resync and the restore
                    self.transport.write(f":ABOR {chanlist}")
                except Exception as abort_exc:
                    self.log.error("could not abort the pulse: %s", abort_exc)
            self._restore_after_pulse(c, config)
            raise
        self._restore_after_pulse(c, config)
        self._check_outputs_still_on([c])
        if self.voltage_setpoint(c) != 0.0:
            raise InstrumentProtocolError(f"channel {c!r} reads {self._setpoint[c]:g} V after the pulse, not 0 V",
                                          instrument=self.name, command=f":SOUR{c}:VOLT?")
        self.check_errors()

    def _restore_after_pulse(self, channel: str, config: SmuChannelConfig) -> None:
        """Fixed mode, count 1, the configured acquire delay and NPLC (best effort)."""
        self._restore_after_sweep([channel])
        try:
            self._write(f":SENS{channel}:CURR:NPLC {format_number(config.nplc)}")
        except Exception:
            self.log.error("could not restore the NPLC of channel %r after the pulse", channel, exc_info=True)

    # -- snapshot --------------------------------------------------------------------------------

    def _settings_snapshot(self) -> dict[str, Any]:
        out = super()._settings_snapshot()
        out["channels"] = list(self.channels)
        out["read_back"] = "REAL,64" if self.binary else "ASCII"
        out["elements"] = "CURR,STAT,SOUR"
        out["output_protection"] = "ON"
        out["pulses"] = {"method": "two-point list per pulse, acquire delay = width - integration at NPLC "
                                   f"{format_number(self.NPLC_RANGE[0])}",
                         "width_range_s": list(self.PULSE_WIDTH_RANGE_S)}
        return out
