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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from hil.drivers.base import TspDriver
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InstrumentTimeout
from hil.drivers.parsing import format_number, map_sentinels, parse_bool, parse_number, parse_numbers
from hil.drivers.protocols import SmuChannelConfig
from hil.drivers.smu import SourceMeterDriver

__all__ = ["Keithley2600"]

_SINGLE_CHANNEL = ("2601B", "2611B", "2635B")
_OFF_MODES = {"zero": "OUTPUT_ZERO", "himp": "OUTPUT_HIGH_Z", "normal": "OUTPUT_NORMAL"}
_AUTOZERO = {"off": "AUTOZERO_OFF", "once": "AUTOZERO_ONCE", "on": "AUTOZERO_AUTO"}
#: Values per script line when a sweep list is built in chunks.
LIST_CHUNK = 100


class Keithley2600(SourceMeterDriver, TspDriver):
    """Keithley 2600B (2601B–2636B) over TSP.

    Args:
        binary_transfer: read sweep buffers as one REAL32 little-endian ``#0`` block instead of
            ASCII (``format.data`` is restored to ASCII afterwards).
        Others: see ``SourceMeterDriver``.
    """

    SUPPORTED_MODELS = ("2601B", "2602B", "2604B", "2611B", "2612B", "2614B", "2634B", "2635B", "2636B")
    DESCRIPTION = "Keithley 2600B System SourceMeter (TSP), channels smua/smub"
    CHANNELS = ("a", "b")
    NPLC_RANGE = (0.001, 25.0)
    MAX_SOURCE_V = 202.0  # 200 V range (2611B-2636B) with over-range

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

    def __init__(self, transport: Any, *, binary_transfer: bool = False, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self.binary_transfer = binary_transfer

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

    def _sweep_script(self, vectors: Mapping[str, np.ndarray], settle_s: float) -> list[str]:
        n = next(iter(vectors.values())).size
        lines: list[str] = []
        lead = self._smu(next(iter(vectors)))
        followers = [self._smu(ch) for ch in vectors if self._smu(ch) != lead]
        for ch, levels in vectors.items():
            s = self._smu(ch)
            stimulus = "0" if s == lead else f"{lead}.trigger.SOURCE_COMPLETE_EVENT_ID"
            # the lead steps on only after the follower has measured the present point
            endpulse = f"{followers[0]}.trigger.MEASURE_COMPLETE_EVENT_ID" if (s == lead and followers) else "0"
            table_lines, table = self._list_lines(s, levels)
            lines += table_lines
            lines += [
                f"{s}.nvbuffer1.clear()",
                f"{s}.nvbuffer1.appendmode = 1",
                f"{s}.nvbuffer1.collectsourcevalues = 1",
                f"{s}.nvbuffer1.collecttimestamps = 1",
                f"{s}.measure.delay = {format_number(settle_s)}",
                f"{s}.trigger.source.listv({table})",
                f"{s}.trigger.source.action = {s}.ENABLE",
                f"{s}.trigger.source.stimulus = {stimulus}",
                f"{s}.trigger.measure.i({s}.nvbuffer1)",
                f"{s}.trigger.measure.action = {s}.ENABLE",
                f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD",
                f"{s}.trigger.endpulse.stimulus = {endpulse}",
                f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE",
                f"{s}.trigger.arm.count = 1",
                f"{s}.trigger.count = {n}",
            ]
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
