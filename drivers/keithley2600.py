"""Keithley 2600B System SourceMeter (TSP), channels ``"a"``/``"b"`` (instruments.md §2.2).

Every query is ``print(...)``; numbers print in exponent form. Checked against the Series 2600B
Reference Manual (2600BS-901-01): ``errorqueue.count``/``next()``/``clear()`` (``next()`` gives
code, message, severity, node; code 0 when empty), ``smuX.source.offmode`` =
``OUTPUT_NORMAL|OUTPUT_HIGH_Z|OUTPUT_ZERO``, ``smuX.source.delay`` (s, ``DELAY_OFF`` = 0),
``smuX.measure.autozero`` = ``AUTOZERO_OFF|ONCE|AUTO``, ``smuX.source.compliance`` (true/false),
``smuX.trigger.source.listv``, ``smuX.trigger.endsweep.action`` (``SOURCE_IDLE`` returns to the
programmed level), ``smuX.trigger.SOURCE_COMPLETE_EVENT_ID``, ``format.data = format.REAL32`` and
``format.byteorder = format.LITTLEENDIAN`` (affect only ``printnumber``/``printbuffer``, not
``print``), and ``printbuffer`` producing one response message.

Left out because not verified: the status-model condition bits per reading, buffer
``statuses``, and an interlock query; per-point compliance uses the software rule and
``smuX.source.compliance`` is read with each spot reading.

Two channels in one sweep: the follower's source action waits for the lead's source-complete
event, and the lead's end-pulse action waits for the follower's measure-complete event
(``smuX.trigger.endpulse.stimulus``), so the lead cannot step to point k+1 before BOTH channels
have measured point k. Both channels must have equal NPLC, autozero and source delay (checked
before any I/O); both use the same measure delay.

Lists of more than ``LIST_CHUNK`` (100) points are not sent as one Lua table literal: the script
builds the table in lines of at most 100 values (a few kB per line) before passing it to
``listv``::

    hil_list_a = {v1, ..., v100}
    for i, v in ipairs({v101, ..., v200}) do hil_list_a[100 + i] = v end
    smua.trigger.source.listv(hil_list_a)

``format.data = format.ASCII`` is pinned at connect, so an instrument left in REAL32 by another
program still answers ``printbuffer`` in ASCII.

Triggered sweeps across instruments (``TriggeredSweeps``; only with ``trigger_line`` set, i.e. a
digital I/O line cabled to the bench trigger): a follower waits on the line
(``digio.trigger[N].mode = digio.TRIG_FALLING``, ``smuX.trigger.source.stimulus =
digio.trigger[N].EVENT_ID``); the lead paces the points with ``trigger.timer[1]`` (``delay``,
``count`` = points − 1 — never 0, which means endless —, ``passthrough = true``, ``stimulus =
smuX.trigger.ARMED_EVENT_ID``) and drives the line from the timer (``digio.trigger[N].stimulus =
trigger.timer[1].EVENT_ID``, ``pulsewidth``); read-back after ``waitcomplete()`` with one
``printbuffer``; afterwards ``digio.trigger[N].stimulus = 0``, ``trigger.timer[1].stimulus = 0``,
``smuX.trigger.source.stimulus = 0``. Checked against the Series 2600B Reference Manual:
``digio.trigger[N].EVENT_ID``/``mode`` (2600BS-901-01 Rev. B p. 7-52; ``TRIG_FALLING`` = 1 detects
falling edges and asserts a TTL-low output pulse; no digital I/O on the 2604B/2614B/2634B),
``smuX.trigger.ARMED_EVENT_ID`` (Rev. F p. 9-256, with the example ``trigger.timer[1].stimulus =
smua.trigger.ARMED_EVENT_ID``), ``trigger.timer[N].count``/``delay``/``passthrough``/``EVENT_ID``
(Rev. B section 3 "Timers" and p. 7-346), and, where the 2600B page was not found, the same TSP
command in the Series 2600A Reference Manual (2600AS-901-01 Rev. B pp. 19-34/19-35:
``digio.trigger[N].pulsewidth``, ``stimulus``, ``clear()``; 19-208 to 19-210: timer ``count``,
``delay``, ``passthrough``, ``stimulus``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from hil.drivers.base import TspDriver
from hil.drivers.errors import InstrumentConfigError, InstrumentError, InstrumentProtocolError, InstrumentTimeout
from hil.drivers.parsing import format_number, map_sentinels, parse_bool, parse_number, parse_numbers
from hil.drivers.protocols import SmuChannelConfig, SweepResult
from hil.drivers.smu import FALLBACK_LINE_FREQUENCY_HZ, DigitalTriggerLine, SourceMeterDriver, at_limit

__all__ = ["Keithley2600"]

_SINGLE_CHANNEL = ("2601B", "2611B", "2635B")
_NO_DIGIO = ("2604B", "2614B", "2634B")
#: digital I/O trigger lines of the rear-panel port
DIGIO_LINES = 14
#: trigger timer used by a lead to pace a triggered sweep
TRIGGER_TIMER = 1
#: output trigger pulse width on the bench trigger line, s
LINE_PULSE_WIDTH_S = 10e-6
#: margin per point added to the lead's timer period for the trigger model's own overhead, s
POINT_MARGIN_S = 2e-4
_OFF_MODES = {"zero": "OUTPUT_ZERO", "himp": "OUTPUT_HIGH_Z", "normal": "OUTPUT_NORMAL"}
_AUTOZERO = {"off": "AUTOZERO_OFF", "once": "AUTOZERO_ONCE", "on": "AUTOZERO_AUTO"}
#: Values per script line when a sweep list is built in chunks.
LIST_CHUNK = 100


class Keithley2600(DigitalTriggerLine, SourceMeterDriver, TspDriver):
    """Keithley 2600B (2601B–2636B) over TSP.

    Args:
        binary_transfer: read sweep buffers as one REAL32 little-endian ``#0`` block instead of
            ASCII (``format.data`` is restored to ASCII afterwards).
        Others: see ``SourceMeterDriver``.
    """

    DIGIO_LINES = DIGIO_LINES

    SUPPORTED_MODELS = ("2601B", "2602B", "2604B", "2611B", "2612B", "2614B", "2634B", "2635B", "2636B")
    DESCRIPTION = "Keithley 2600B System SourceMeter (TSP), channels smua/smub"
    CHANNELS = ("a", "b")
    NPLC_RANGE = (0.001, 25.0)
    MAX_SOURCE_V = 202.0  # 200 V range (2611B-2636B) with 1 % over-range
    MODEL_MAX_SOURCE_V = {"2601B": 40.4, "2602B": 40.4, "2604B": 40.4}  # 40 V range with 1 % over-range
    MAX_SOURCE_A = 3.03  # 3 A range (2601B-2604B) with 1 % over-range (10 A only in pulse mode)
    MODEL_MAX_SOURCE_A = {m: 1.515 for m in ("2611B", "2612B", "2614B", "2634B", "2635B", "2636B")}  # 1.5 A range

    def _apply_initial_state(self) -> None:
        """Pin the reply format (ASCII), then the shared initial state."""
        self._write("format.data = format.ASCII")
        super()._apply_initial_state()

    def list_sweep(self, levels_v: Mapping[str, Any], settle_s: float) -> Any:
        """Synchronised list sweep; channels swept together must have equal timing settings.

        Raises:
            InstrumentConfigError: two channels with different NPLC, autozero or source delay
                (nothing sent).
            See ``SourceMeterDriver.list_sweep`` for the rest.
        """
        timing = {ch: (self.config(ch).nplc, self.config(ch).autozero, self.config(ch).source_delay_s)
                  for ch in levels_v}
        if len(set(timing.values())) > 1:
            raise InstrumentConfigError(f"channels swept together need equal nplc, autozero and source_delay_s; "
                                        f"got {timing}", instrument=self.name)
        return super().list_sweep(levels_v, settle_s)

    def __init__(self, transport: Any, *, binary_transfer: bool = False, trigger_line: Optional[int] = None,
                 **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        if (self.expected_model or "").upper() in _SINGLE_CHANNEL:
            self.channels = ("a",)  # known before connect(): a shutdown never addresses a missing smub
            unknown = [ch for ch in self._initial_configs if ch not in self.channels]
            if unknown:  # (refused when the bench file is read, not at connect)
                raise InstrumentConfigError(f"model {self.expected_model} has no channel(s) {unknown} (only a)",
                                            instrument=self.name)
        self.binary_transfer = binary_transfer
        self._set_trigger_line(trigger_line)
        self._armed_sweep: Optional[dict[str, Any]] = None

    # -- connect -----------------------------------------------------------------------------

    def _check_command_set(self) -> None:
        """``localnode.model`` must answer and agree with ``*IDN?``; narrow channels to the model."""
        model = self._print("localnode.model").strip()
        if model.upper() != (self.matched_model or "").upper():
            raise InstrumentProtocolError(
                f"localnode.model {model!r} does not match *IDN? model {self.matched_model!r}",
                instrument=self.name, command="print(localnode.model)")
        if model.upper() in _SINGLE_CHANNEL:
            self.channels = ("a",)
        if self.trigger_line is not None and model.upper() in _NO_DIGIO:
            raise InstrumentConfigError(f"model {model} has no digital I/O port; trigger_line must be null",
                                        instrument=self.name)
        unknown = [ch for ch in self._initial_configs if ch not in self.channels]
        if unknown:
            raise InstrumentConfigError(f"model {model} has no channel(s) {unknown}", instrument=self.name)

    def reset(self) -> None:
        """``reset()`` (all channels off, defaults), then re-apply every configured channel."""
        self._write("reset()")
        for ch in self.channels:
            self._output_on[ch] = False
            self._read_level_checked(ch)
        for ch, cfg in list(self._configs.items()):
            self.configure(ch, cfg)

    # -- hooks -------------------------------------------------------------------------------

    @staticmethod
    def _smu(channel: str) -> str:
        return f"smu{channel}"

    def _apply_config(self, channel: str, config: SmuChannelConfig) -> None:
        s = self._smu(channel)
        for line in (
            f"{s}.source.func = {s}.OUTPUT_DCVOLTS",
            f"{s}.source.autorangev = {s}.AUTORANGE_OFF",
            f"{s}.source.rangev = {format_number(config.source_range_v)}",
            f"{s}.source.limiti = {format_number(config.limits.i_compliance_a)}",
            f"{s}.source.delay = {format_number(config.source_delay_s)}",
            f"{s}.measure.autorangei = {s}.AUTORANGE_OFF",
            f"{s}.measure.rangei = {format_number(config.current_range_a)}",
            f"{s}.measure.nplc = {format_number(config.nplc)}",
            f"{s}.measure.autozero = {s}.{_AUTOZERO[config.autozero]}",
            f"{s}.measure.delay = 0",
            f"{s}.measure.count = 1",
            f"{s}.sense = {s}.{'SENSE_REMOTE' if config.four_wire else 'SENSE_LOCAL'}",
            f"{s}.source.offmode = {s}.{_OFF_MODES[config.off_mode]}",
        ):
            self._write(line)

    def _write_level(self, channel: str, level_v: float) -> None:
        self._write(f"{self._smu(channel)}.source.levelv = {format_number(level_v)}")

    def _read_level(self, channel: str) -> float:
        return self._print_float(f"{self._smu(channel)}.source.levelv", retry=True)

    def _write_current_limit(self, channel: str, limit_a: float) -> None:
        self._write(f"{self._smu(channel)}.source.limiti = {format_number(limit_a)}")

    def _read_compliance(self, channel: str) -> bool:
        expr = f"{self._smu(channel)}.source.compliance"
        return self._parse(parse_bool, self._print(expr, retry=True), f"print({expr})")

    def _write_output(self, channel: str, on: bool) -> None:
        s = self._smu(channel)
        self._write(f"{s}.source.output = {s}.{'OUTPUT_ON' if on else 'OUTPUT_OFF'}")

    def _read_output(self, channel: str) -> bool:
        expr = f"{self._smu(channel)}.source.output"
        return self._parse(parse_bool, self._print(expr, retry=True), f"print({expr})")

    def _read_spot(self, channel: str) -> tuple[float, float, bool]:
        s = self._smu(channel)
        expr = f"{s}.measure.i(), {s}.source.levelv, {s}.source.compliance"
        reply = self._print(expr)

        def parse(text: str) -> tuple[float, float, bool]:
            fields = text.split("\t")
            if len(fields) != 3:
                raise InstrumentProtocolError(f"expected 3 TAB-separated fields, got {text!r}")
            return parse_number(fields[0]), parse_number(fields[1]), parse_bool(fields[2])

        return self._parse(parse, reply, f"print({expr})")

    def _abort(self) -> None:
        for ch in self.channels:
            self._write(f"{self._smu(ch)}.abort()")

    @staticmethod
    def _list_lines(s: str, levels: np.ndarray) -> tuple[list[str], str]:
        """Lines that build the level table and the ``listv`` argument (one literal up to
        ``LIST_CHUNK`` values, else a table built in chunks)."""
        if levels.size <= LIST_CHUNK:
            return [], "{" + ", ".join(format_number(v) for v in levels) + "}"
        name = f"hil_list_{s[-1]}"
        chunks = [", ".join(format_number(v) for v in levels[k:k + LIST_CHUNK])
                  for k in range(0, levels.size, LIST_CHUNK)]
        lines = [f"{name} = {{{chunks[0]}}}"]
        lines += [f"for i, v in ipairs({{{c}}}) do {name}[{k * LIST_CHUNK} + i] = v end"
                  for k, c in enumerate(chunks[1:], start=1)]
        return lines, name

    def _channel_sweep_lines(self, s: str, levels: np.ndarray, settle_s: float, source_stimulus: str,
                             endpulse_stimulus: str) -> list[str]:
        """Buffer, list, actions, stimuli and count of one channel's trigger model (not initiated)."""
        table_lines, table = self._list_lines(s, levels)
        return table_lines + [
            f"{s}.nvbuffer1.clear()",
            f"{s}.nvbuffer1.appendmode = 1",
            f"{s}.nvbuffer1.collectsourcevalues = 1",
            f"{s}.nvbuffer1.collecttimestamps = 1",
            f"{s}.measure.delay = {format_number(settle_s)}",
            f"{s}.trigger.source.listv({table})",
            f"{s}.trigger.source.action = {s}.ENABLE",
            f"{s}.trigger.source.stimulus = {source_stimulus}",
            f"{s}.trigger.measure.i({s}.nvbuffer1)",
            f"{s}.trigger.measure.action = {s}.ENABLE",
            f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD",
            f"{s}.trigger.endpulse.stimulus = {endpulse_stimulus}",
            f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE",
            f"{s}.trigger.arm.count = 1",
            f"{s}.trigger.count = {levels.size}",
        ]

    def _sweep_script(self, vectors: Mapping[str, np.ndarray], settle_s: float) -> list[str]:
        lines: list[str] = []
        lead = self._smu(next(iter(vectors)))
        followers = [self._smu(ch) for ch in vectors if self._smu(ch) != lead]
        for ch, levels in vectors.items():
            s = self._smu(ch)
            stimulus = "0" if s == lead else f"{lead}.trigger.SOURCE_COMPLETE_EVENT_ID"
            # the lead steps on only after the follower has measured the present point
            endpulse = f"{followers[0]}.trigger.MEASURE_COMPLETE_EVENT_ID" if (s == lead and followers) else "0"
            lines += self._channel_sweep_lines(s, levels, settle_s, stimulus, endpulse)
        lines += [f"{s}.trigger.initiate()" for s in followers + [lead]]
        lines.append("waitcomplete()")
        lines += [f"{self._smu(ch)}.measure.delay = 0" for ch in vectors]
        return lines

    def _run_sweep(
        self, vectors: Mapping[str, np.ndarray], settle_s: float, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        n = next(iter(vectors.values())).size
        m = len(vectors)
        self.run_script(self._sweep_script(vectors, settle_s))
        subtables = []
        for ch in vectors:
            buf = f"{self._smu(ch)}.nvbuffer1"
            subtables += [f"{buf}.sourcevalues", f"{buf}.readings", f"{buf}.timestamps"]
        command = f"printbuffer(1, {n}, {', '.join(subtables)})"
        try:
            with self.transport.temporary_timeout(timeout_s):
                if self.binary_transfer:
                    self._write("format.data = format.REAL32")
                    self._write("format.byteorder = format.LITTLEENDIAN")
                    try:
                        flat = map_sentinels(self._query_binary(command, "<f4", 3 * m * n))
                    finally:
                        self._write("format.data = format.ASCII")
                else:
                    flat = self._parse(lambda r: parse_numbers(r, count=3 * m * n), self._query(command), command)
        except (InstrumentTimeout, KeyboardInterrupt, SystemExit):
            # the trigger model may still run: stop it before anything else (resync comes later)
            for ch in vectors:
                try:
                    self.transport.write(f"{self._smu(ch)}.abort()")
                except Exception as exc:
                    self.log.error("could not abort the sweep on %r: %s", ch, exc)
            raise
        table = flat.reshape(n, m, 3)
        stamps = table[:, :, 2] - table[0, :, 2]
        return table[:, :, 0], table[:, :, 1], stamps

    # -- triggered sweeps across instruments (TriggeredSweeps) -----------------------------------

    def _equal_timing(self, channels: Any) -> None:
        timing = {ch: (self.config(ch).nplc, self.config(ch).autozero, self.config(ch).source_delay_s)
                  for ch in channels}
        if len(set(timing.values())) > 1:
            raise InstrumentConfigError(f"channels swept together need equal nplc, autozero and source_delay_s; "
                                        f"got {timing}", instrument=self.name)

    def trigger_period_s(self, channel: str, settle_s: float) -> float:
        """Point period the lead's trigger timer paces a triggered sweep with, s: settling, source
        delay and integration (doubled with autozero on) plus ``POINT_MARGIN_S`` for the trigger
        model's own overhead."""
        cfg = self.config(channel)
        f_line = self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ
        az = 2.0 if cfg.autozero == "on" else 1.0
        return float(settle_s) + cfg.source_delay_s + az * cfg.nplc / f_line + POINT_MARGIN_S

    def arm_sweep(self, levels_v: Mapping[str, Any], settle_s: float, lead: bool) -> None:
        """Upload one list per channel and arm the trigger model for a sweep stepped by the bench
        trigger line (digital I/O line ``trigger_line`` of every instrument on one cable).

        A follower (``lead=False``) sets the line to falling-edge trigger mode and makes every
        swept channel's source action wait for the line's event, then initiates (the channels wait).
        The lead (``lead=True``) paces the points with trigger timer 1 (started by its first
        channel's ``ARMED_EVENT_ID``; pass-through on, ``count = points - 1``, ``delay`` =
        :meth:`trigger_period_s`); every timer event steps its own channels and drives the line
        (``digio.trigger[N].stimulus = trigger.timer[1].EVENT_ID``), so every instrument steps at
        the same instant. Nothing is sourced before :meth:`start_sweep`. Limits are checked exactly
        as in :meth:`list_sweep` before anything is sent; the arm ends with an error-queue query,
        so a follower is known to wait before the lead starts.

        Raises:
            InstrumentConfigError: no ``trigger_line`` configured, or channels with different timing.
            LimitViolation: a vector breaks a limit (nothing sent).
        """
        if self.trigger_line is None:
            raise InstrumentConfigError("no trigger_line configured: this 2600B is not wired to the bench trigger",
                                        instrument=self.name)
        self._equal_timing(list(levels_v))
        vectors, timeout_s = self._checked_sweep_vectors(levels_v, float(settle_s))
        order = list(vectors)
        n = next(iter(vectors.values())).size
        line = f"digio.trigger[{self.trigger_line}]"
        timer = f"trigger.timer[{TRIGGER_TIMER}]"
        smus = [self._smu(ch) for ch in order]
        if lead:
            period = self.trigger_period_s(order[0], float(settle_s))
            stimulus = f"{timer}.EVENT_ID"
            head = [
                f"{timer}.delay = {format_number(period)}",
                f"{timer}.count = {max(n - 1, 1)}",
                f"{timer}.passthrough = {'true' if n > 1 else 'false'}",
                f"{timer}.stimulus = {smus[0]}.trigger.ARMED_EVENT_ID",
                f"{line}.mode = digio.TRIG_FALLING",
                f"{line}.pulsewidth = {format_number(LINE_PULSE_WIDTH_S)}",
                f"{line}.stimulus = {timer}.EVENT_ID",
            ]
            timeout_s += n * period
        else:
            stimulus = f"{line}.EVENT_ID"
            head = [f"{line}.mode = digio.TRIG_FALLING", f"{line}.stimulus = 0", f"{line}.clear()"]
        script = list(head)
        for ch in order:
            script += self._channel_sweep_lines(self._smu(ch), vectors[ch], float(settle_s), stimulus, "0")
        if not lead:  # the lead's first channel starts the timer, so it is initiated last, in start_sweep
            script += [f"{s}.trigger.initiate()" for s in smus]
        self._armed_sweep = {"order": order, "n": n, "timeout_s": timeout_s, "lead": bool(lead)}
        try:
            self.run_script(script)
            self.check_errors()  # answered once armed: a follower waits before the lead starts
        except BaseException:
            self._abort_armed()
            raise

    def start_sweep(self) -> None:
        """Initiate the armed lead (its timer then paces every instrument on the trigger line)."""
        armed = self._require_armed()
        smus = [self._smu(ch) for ch in armed["order"]]
        self.run_script([f"{s}.trigger.initiate()" for s in reversed(smus)])

    def fetch_sweep(self) -> SweepResult:
        """Wait for the armed sweep (``waitcomplete()``), read every channel back in one
        ``printbuffer`` and restore the trigger settings; per-point compliance = the software
        at-limit rule (the buffer status bits are not verified), plus ``max_power_w`` per reading.

        On a timeout, Ctrl-C or SIGTERM the trigger models are aborted before anything else.
        """
        armed = self._require_armed()
        order, n = armed["order"], armed["n"]
        m = len(order)
        subtables = []
        for ch in order:
            buf = f"{self._smu(ch)}.nvbuffer1"
            subtables += [f"{buf}.sourcevalues", f"{buf}.readings"]
        command = f"printbuffer(1, {n}, {', '.join(subtables)})"
        try:
            with self.transport.temporary_timeout(armed["timeout_s"]):
                self._write("waitcomplete()")
                flat = self._parse(lambda r: parse_numbers(r, count=2 * m * n), self._query(command), command)
        except BaseException as exc:
            if isinstance(exc, (InstrumentTimeout, KeyboardInterrupt, SystemExit)):
                self._abort_armed(raw=True)
            else:
                self._restore_trigger(armed)
            self._armed_sweep = None
            raise
        self._restore_trigger(armed)
        self._armed_sweep = None
        table = flat.reshape(n, m, 2)
        v_src, i_meas = table[:, :, 0], table[:, :, 1]
        limits = np.array([self.config(ch).limits.i_compliance_a for ch in order])
        compliance = at_limit(i_meas / limits, 1.0)
        for ch in order:
            self.voltage_setpoint(ch)
        self._check_sweep_power(order, v_src, i_meas)
        self.check_errors()
        if compliance.any():
            self.log.error("triggered sweep: %d point(s) at the current limit", int(compliance.sum()))
        return SweepResult(v_source=v_src, i_meas=i_meas, compliance=compliance, channels=tuple(order))

    def _require_armed(self) -> dict[str, Any]:
        if self._armed_sweep is None:
            raise InstrumentError("no sweep armed; call arm_sweep() first", instrument=self.name)
        return self._armed_sweep

    def _restore_lines(self, armed: dict[str, Any]) -> list[str]:
        lines = [f"digio.trigger[{self.trigger_line}].stimulus = 0"]
        if armed["lead"]:
            lines.append(f"trigger.timer[{TRIGGER_TIMER}].stimulus = 0")
        for ch in armed["order"]:
            s = self._smu(ch)
            lines += [f"{s}.trigger.source.stimulus = 0", f"{s}.measure.delay = 0"]
        return lines

    def _restore_trigger(self, armed: dict[str, Any]) -> None:
        """Line no longer driven, timer stopped, stimuli cleared, measure delay 0 (best effort)."""
        try:
            self.run_script(self._restore_lines(armed))
        except Exception:
            self.log.error("could not restore the trigger settings after the triggered sweep", exc_info=True)

    def _abort_armed(self, raw: bool = False) -> None:
        """Abort the armed channels (``raw``: straight to the transport, before any resync), then restore."""
        armed = self._armed_sweep
        self._armed_sweep = None
        if armed is None:
            return
        for ch in armed["order"]:
            self._setpoint[ch] = math.nan  # a list level may be left behind: read back later
            try:
                (self.transport.write if raw else self._write)(f"{self._smu(ch)}.abort()")
            except Exception as exc:
                self.log.error("could not abort the triggered sweep on %r: %s", ch, exc)
        if not raw:
            self._restore_trigger(armed)

    # -- pulsed sourcing (PulsedSource capability) ----------------------------------------------

    #: pulse train tag used with the KIPulse factory script
    PULSE_TAG = 1

    def pulse(self, channel: str, amplitude_v: float, width_s: float, count: int = 1) -> None:
        """Voltage pulses from 0 V for programming devices (KIPulse factory script, no measurement).

        ``ConfigPulseVMeasureI(smuX, 0, amplitude, limit, ton, toff, count, nil, tag)`` checks that
        the pulse train can be produced and assigns it a tag (it returns ``true``/``false`` and a
        message); ``InitiatePulseTest(tag)`` runs it. The bias is 0 V, so the output returns to
        0 V after every pulse; ``toff`` equals ``ton``. Checked against the 2600B Reference Manual
        (KIPulse factory script functions, 2600BS-901-01).

        Refused before any I/O: output off, present level not 0 V, amplitude outside the channel's
        bounds, an edge larger than ``max_step_v`` (the pulse edge is a step), ``width_s <= 0`` or
        ``count < 1``.
        """
        from hil.drivers.errors import InstrumentError, LimitViolation
        from hil.drivers.limits import check_level

        limits = self.config(channel).limits
        amp = check_level(limits, amplitude_v, name="pulse amplitude")
        if not self._output_on.get(channel, False):
            raise InstrumentError(f"output {channel!r} is off; switch it on at 0 V before pulsing", instrument=self.name)
        if self._setpoint.get(channel) != 0.0:
            raise LimitViolation("pulse base", float(self._setpoint.get(channel, float("nan"))), 0.0,
                                 instrument=self.name, reason="pulses start from 0 V; ramp the channel to 0 V first")
        if abs(amp) > limits.max_step_v * (1 + 1e-9):
            raise LimitViolation("pulse edge", abs(amp), limits.max_step_v, instrument=self.name,
                                 reason="a pulse edge is a step; it must not exceed max_step_v")
        if not (width_s > 0 and int(count) >= 1):
            raise LimitViolation("pulse", float(width_s), 0.0, instrument=self.name,
                                 reason="width_s must be > 0 and count >= 1")
        s = self._smu(channel)
        config = (f"ConfigPulseVMeasureI({s}, 0, {format_number(amp)}, {format_number(limits.i_compliance_a)}, "
                  f"{format_number(width_s)}, {format_number(width_s)}, {int(count)}, nil, {self.PULSE_TAG})")
        for expr in (config, f"InitiatePulseTest({self.PULSE_TAG})"):
            with self.transport.temporary_timeout(self.transport.timeout_s + 2 * int(count) * width_s):
                reply = self._print(expr)
            ok, _, msg = reply.partition("\t")
            if ok.strip().lower() != "true":
                raise InstrumentProtocolError(f"{expr.split('(')[0]} failed: {msg.strip() or reply!r}",
                                              instrument=self.name, command=f"print({expr})")
        self._setpoint[channel] = 0.0
        self.check_errors()
