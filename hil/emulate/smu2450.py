"""Keithley 2450 SourceMeter personality (SCPI command set), one channel named ``""``.

Implements what ``hil.drivers.keithley2450`` sends and the other legal spellings of the same
commands (long forms, optional nodes, ``;``-joined messages, function-specific ``SMODe``, named
buffers, ``:TRACe:ACTual:END?``, ``:SOUR:SWE:VOLT:LIN``, ``:TRIG:LOAD "SimpleLoop"``).

Instrument behaviour emulated: ``*LANG?`` (a ``language`` option other than ``SCPI`` makes every
other command fail with −113, as in the wrong command set); ``*RST`` defaults (output off, 0 V,
105 µA limit, NPLC 1, autozero and autorange on, off-mode NORMAL, buffers empty); output
off-modes (HIMP opens the port, ZERO/NORMAL hold 0 V, GUARD 0 A); the current limit clamps in the
world and latches ``:SOUR:VOLT:ILIM:TRIP?``; list and linear sweeps run at ``:INIT`` into the
named buffer (source value, reading, status), ``failAbort ON`` stopping at the first limit hit;
the sweep switches the output on if it was off (as the trigger model does). Reading status word
(``STAT`` element): bit 3 (value 8) = source limit reached (an emulator convention; the manual's
bit layout is not modelled).

Trigger models built from blocks (``:TRIG:LOAD "Empty"``, ``:TRIG:BLOC:WAIT``/``CONF:NEXT``/``MEAS``/
``BRAN:COUN``, see :mod:`hil.emulate.trigger_blocks`) run at ``:INIT``; ``:SOUR:LIST:VOLT`` is the
source configuration list ``VoltCustomSweepList``. The six digital I/O lines take
``:DIG:LINE<n>:MODE`` and ``:TRIG:DIG<n>:IN:EDGE``; a line in trigger-input mode is wired to the
bench trigger line of the emulated bench: each pulse of the driving instrument is the event
``DIG<n>`` (its source step releases a waiting run up to its measure block, its measure step takes
the reading with every other meter on the line). ``*WAI``/``*OPC?`` wait (bounded) for a run paced
by the line; ``:ABOR`` stops it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

from hil.emulate.scpi import Command, ScpiEmulator, ScpiError, format_nr3, scpi
from hil.emulate.smu_common import SmuChannel, apply_output, integration_s, pick_range, spot_reading
from hil.emulate.trigger_blocks import Block, BlockModelError, BlockRun

__all__ = ["Smu2450Emulator"]

V_RANGES = (0.02, 0.2, 2.0, 20.0, 200.0)
I_RANGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_STATUS_LIMIT = 8
_BUFFER_CAPACITY = 100_000
_ELEMENTS = ("READing", "SOURce", "RELative", "STATus", "SOURSTATus", "UNIT", "SEConds", "TSTamp", "DATE", "TIME")
_CH = ""
_DIGIO_LINES = 6
#: the source configuration list ``:SOUR:LIST:VOLT`` creates
_SWEEP_LIST = "VoltCustomSweepList"


@dataclass
class _Entry:
    source: float
    reading: float
    status: int
    t_s: float


class Smu2450Emulator(ScpiEmulator):
    """Emulated Keithley 2450 (see the module docstring). Options: ``language`` (default ``SCPI``)."""

    FAMILY = "keithley2450"
    MODELS = ("2450",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.language = str(self.options.get("language", "SCPI")).upper()
        self.reset()

    # -- identity, reset -------------------------------------------------------------------------

    def idn(self) -> str:
        return f"KEITHLEY INSTRUMENTS,MODEL {self.model},{self.serial},1.7.12b"

    def reset(self) -> None:
        self.ch = SmuChannel(func="VOLT", level_v=0.0, v_range=20.0, v_autorange=True, i_limit_a=1.05e-4,
                             i_range_a=1e-4, i_autorange=True, output_on=False, off_mode="NORM", nplc=1.0,
                             autozero=True, source_delay_s=0.0, source_delay_auto=True)
        self.sense_func = "CURR"
        self.sense_count = 1
        self.buffers: dict[str, list[_Entry]] = {"defbuffer1": [], "defbuffer2": []}
        self.sweep: Optional[dict[str, Any]] = None
        self.data_format = "ASC"
        self.t0 = self.clock.now_s
        #: trigger model built from blocks (``None``: a template or sweep command owns the model)
        self.blocks: Optional[dict[int, Block]] = None
        #: digital I/O lines: ``{line: {"type": DIGital|TRIGger|SYNChronous, "direction": IN|OUT|..., "edge": ...}}``
        self.dig_lines = {n: {"type": "DIGital", "direction": "IN", "edge": "FALLing"} for n in range(1, _DIGIO_LINES + 1)}
        self._abort_run()
        apply_output(self, _CH, self.ch)

    def handle(self, line: str) -> list:
        if self.language != "SCPI":
            stripped = line.strip().upper()
            if stripped.startswith("*LANG") or stripped.startswith("*IDN"):
                return super().handle(line)
            self.push_error(-113)
            return []
        return super().handle(line)

    def common_extra(self, word: str, cmd: Command) -> Any:
        if word == "LANG":
            if cmd.query:
                return self.language
            cmd.count(1)
            self.options["language_after_power_cycle"] = cmd.choice(0, ("SCPI", "TSP", "SCPI2400"))
            return None
        if word == "TRG":
            return None
        return False

    # -- helpers ---------------------------------------------------------------------------------

    def _apply(self) -> None:
        apply_output(self, _CH, self.ch)

    def _buffer(self, cmd: Command, index: int) -> list[_Entry]:
        name = cmd.string(index) if cmd.has(index) else "defbuffer1"
        if name not in self.buffers:
            raise ScpiError(-222, f"buffer {name!r} does not exist")
        return self.buffers[name]

    def _store(self, buf: list[_Entry], entry: _Entry) -> None:
        buf.append(entry)
        if len(buf) > _BUFFER_CAPACITY:
            del buf[0]

    def _measure_entry(self, line: Optional[str]) -> _Entry:
        r = spot_reading(self, _CH, self.ch, line)
        self.advance(0.2e-3)
        source = r.voltage_v if self.ch.readback else self.ch.level_v
        return _Entry(source, r.current_a, _STATUS_LIMIT if r.in_limit else 0, self.clock.now_s - self.t0)

    def _elements(self, entry: _Entry, elements: list[str]) -> list[str]:
        out = []
        for el in elements:
            if el == "READing":
                out.append(format_nr3(entry.reading, self.reply_decimals(6), plus=False))
            elif el == "SOURce":
                out.append(format_nr3(entry.source, self.reply_decimals(6), plus=False))
            elif el in ("RELative", "SEConds"):
                out.append(format_nr3(entry.t_s, plus=False))
            elif el in ("STATus", "SOURSTATus"):
                out.append(str(entry.status))
            elif el == "UNIT":
                out.append("Amp DC")
            else:
                out.append("0")
        return out

    def _element_list(self, cmd: Command, start: int) -> list[str]:
        els = [cmd.choice(k, _ELEMENTS) for k in range(start, len(cmd.params))]
        return els or ["READing"]

    # -- source ----------------------------------------------------------------------------------

    @scpi("[:SOURce[1]]:FUNCtion[:MODE]")
    def _src_func(self, cmd: Command) -> None:
        cmd.count(1)
        func = cmd.choice(0, ("VOLTage", "CURRent"))
        new = "VOLT" if func == "VOLTage" else "CURR"
        if new != self.ch.func:
            if self.ch.output_on:
                self.ch.output_on = False
            self.ch.func = new
            self.ch.level_v = 0.0
            self._apply()

    @scpi("[:SOURce[1]]:FUNCtion[:MODE]", query=True)
    def _src_func_q(self, cmd: Command) -> str:
        return self.ch.func

    @scpi("[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def _level(self, cmd: Command) -> None:
        cmd.count(1)
        top = self.ch.v_range * 1.05 if not self.ch.v_autorange else 210.0
        value = cmd.number(0, lo=-210.0, hi=210.0, default=0.0, minimum=-top, maximum=top)
        if abs(value) > top:
            raise ScpiError(-222, "level outside the present range")
        if self.ch.v_autorange:
            self.ch.v_range = pick_range(value, V_RANGES) or 200.0
        self.ch.level_v = value
        self._apply()

    @scpi("[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _level_q(self, cmd: Command) -> str:
        mis = self.faults.peek("misreport_level", cmd.text, _CH)
        if mis is not None:
            self.faults.take("misreport_level", cmd.text, _CH)
            return format_nr3(mis["level_v"], plus=False)
        return format_nr3(self.ch.level_v, plus=False)

    @scpi("[:SOURce[1]]:VOLTage:RANGe")
    def _vrange(self, cmd: Command) -> None:
        cmd.count(1)
        value = cmd.number(0, lo=-210.0, hi=210.0, default=20.0, minimum=0.02, maximum=200.0)
        rng = pick_range(value, V_RANGES)
        if rng is None:
            raise ScpiError(-222)
        if abs(self.ch.level_v) > rng * 1.05:
            raise ScpiError(-221, "level does not fit the range")
        self.ch.v_range, self.ch.v_autorange = rng, False

    @scpi("[:SOURce[1]]:VOLTage:RANGe", query=True)
    def _vrange_q(self, cmd: Command) -> str:
        return format_nr3(self.ch.v_range, plus=False)

    @scpi("[:SOURce[1]]:VOLTage:RANGe:AUTO")
    def _vrange_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.v_autorange = cmd.boolean(0)

    @scpi("[:SOURce[1]]:VOLTage:RANGe:AUTO", query=True)
    def _vrange_auto_q(self, cmd: Command) -> str:
        return "1" if self.ch.v_autorange else "0"

    @scpi("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]")
    def _ilim(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.i_limit_a = cmd.number(0, lo=1e-9, hi=1.05, default=1.05e-4)
        self.ch.tripped = False
        self._apply()

    @scpi("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]", query=True)
    def _ilim_q(self, cmd: Command) -> str:
        return format_nr3(self.ch.i_limit_a, plus=False)

    @scpi("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]:TRIPped", query=True)
    def _trip_q(self, cmd: Command) -> str:
        if self.ch.output_on and self.port(_CH) is not None and self.world.clamped(self.port(_CH)):
            self.ch.tripped = True
        tripped = self.ch.tripped and self.ch.output_on
        return "1" if tripped else "0"

    @scpi("[:SOURce[1]]:VOLTage:DELay")
    def _delay(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.source_delay_s = cmd.number(0, lo=0.0, hi=10_000.0, default=0.0)
        self.ch.source_delay_auto = False

    @scpi("[:SOURce[1]]:VOLTage:DELay", query=True)
    def _delay_q(self, cmd: Command) -> str:
        return format_nr3(self.ch.source_delay_s, plus=False)

    @scpi("[:SOURce[1]]:VOLTage:DELay:AUTO")
    def _delay_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.source_delay_auto = cmd.boolean(0)

    @scpi("[:SOURce[1]]:VOLTage:DELay:AUTO", query=True)
    def _delay_auto_q(self, cmd: Command) -> str:
        return "1" if self.ch.source_delay_auto else "0"

    @scpi("[:SOURce[1]]:VOLTage:READ:BACK")
    def _readback(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.readback = cmd.boolean(0)

    @scpi("[:SOURce[1]]:VOLTage:READ:BACK", query=True)
    def _readback_q(self, cmd: Command) -> str:
        return "1" if self.ch.readback else "0"

    # -- sense -----------------------------------------------------------------------------------

    @scpi("[:SENSe[1]]:FUNCtion[:ON]")
    def _sense_func(self, cmd: Command) -> None:
        cmd.count(1)
        func = cmd.choice(0, ("CURRent", "VOLTage", "RESistance"))
        self.sense_func = func[:4].upper()

    @scpi("[:SENSe[1]]:FUNCtion[:ON]", query=True)
    def _sense_func_q(self, cmd: Command) -> str:
        return f'"{self.sense_func}:DC"'

    @scpi("[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]")
    def _irange(self, cmd: Command) -> None:
        cmd.count(1)
        value = cmd.number(0, lo=-1.05, hi=1.05, default=1e-4, minimum=1e-8, maximum=1.0)
        rng = pick_range(value, I_RANGES)
        if rng is None:
            raise ScpiError(-222)
        self.ch.i_range_a, self.ch.i_autorange = rng, False
        if not self.ch.output_on:
            self._apply()

    @scpi("[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]", query=True)
    def _irange_q(self, cmd: Command) -> str:
        return format_nr3(self.ch.i_range_a, plus=False)

    @scpi("[:SENSe[1]]:CURRent[:DC]:RANGe:AUTO")
    def _irange_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.i_autorange = cmd.boolean(0)

    @scpi("[:SENSe[1]]:CURRent[:DC]:RANGe:AUTO", query=True)
    def _irange_auto_q(self, cmd: Command) -> str:
        return "1" if self.ch.i_autorange else "0"

    @scpi("[:SENSe[1]]:CURRent[:DC]:NPLCycles")
    def _nplc(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.nplc = cmd.number(0, lo=0.01, hi=10.0, default=1.0)

    @scpi("[:SENSe[1]]:CURRent[:DC]:NPLCycles", query=True)
    def _nplc_q(self, cmd: Command) -> str:
        return format_nr3(self.ch.nplc, plus=False)

    @scpi("[:SENSe[1]]:CURRent[:DC]:AZERo[:STATe]")
    def _azer(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.autozero = cmd.boolean(0)

    @scpi("[:SENSe[1]]:CURRent[:DC]:AZERo[:STATe]", query=True)
    def _azer_q(self, cmd: Command) -> str:
        return "1" if self.ch.autozero else "0"

    @scpi("[:SENSe[1]]:AZERo:ONCE")
    def _azer_once(self, cmd: Command) -> None:
        cmd.count(0)
        self.advance(integration_s(self, self.ch))

    @scpi("[:SENSe[1]]:CURRent[:DC]:RSENse")
    def _rsen(self, cmd: Command) -> None:
        cmd.count(1)
        self.ch.four_wire = cmd.boolean(0)

    @scpi("[:SENSe[1]]:CURRent[:DC]:RSENse", query=True)
    def _rsen_q(self, cmd: Command) -> str:
        return "1" if self.ch.four_wire else "0"

    @scpi("[:SENSe[1]]:COUNt")
    def _count(self, cmd: Command) -> None:
        cmd.count(1)
        self.sense_count = cmd.integer(0, lo=1, hi=300_000, default=1)

    @scpi("[:SENSe[1]]:COUNt", query=True)
    def _count_q(self, cmd: Command) -> str:
        return str(self.sense_count)

    # -- output ----------------------------------------------------------------------------------

    @scpi(":OUTPut[1][:STATe]")
    def _output(self, cmd: Command) -> None:
        cmd.count(1)
        on = cmd.boolean(0)
        if on and self.interlock_is_open():
            raise ScpiError(-200, "interlock open")
        if on != self.ch.output_on:
            self.ch.output_on = on
            if on:
                self.ch.tripped = False
            self._apply()

    @scpi(":OUTPut[1][:STATe]", query=True)
    def _output_q(self, cmd: Command) -> str:
        return "1" if self.ch.output_on else "0"

    @scpi(":OUTPut[1][:VOLTage]:SMODe")
    @scpi(":OUTPut[1]:CURRent:SMODe")
    def _smod(self, cmd: Command) -> None:
        cmd.count(1)
        mode = cmd.choice(0, ("HIMPedance", "NORMal", "ZERO", "GUARd"))
        self.ch.off_mode = {"HIMPedance": "HIMP", "NORMal": "NORM", "ZERO": "ZERO", "GUARd": "GUAR"}[mode]
        if not self.ch.output_on:
            self._apply()

    @scpi(":OUTPut[1][:VOLTage]:SMODe", query=True)
    @scpi(":OUTPut[1]:CURRent:SMODe", query=True)
    def _smod_q(self, cmd: Command) -> str:
        return self.ch.off_mode

    @scpi(":OUTPut[1]:INTerlock:TRIPped", query=True)
    def _interlock_q(self, cmd: Command) -> str:
        return "0" if self.interlock_is_open() else "1"

    @scpi(":ROUTe:TERMinals")
    def _terminals(self, cmd: Command) -> None:
        cmd.count(1)
        cmd.choice(0, ("FRONt", "REAR"))

    # -- readings --------------------------------------------------------------------------------

    @scpi(":READ", query=True)
    @scpi(":MEASure[:CURRent][:DC]", query=True)
    def _read(self, cmd: Command) -> str:
        buf = self._buffer(cmd, 0) if cmd.has(0) else self.buffers["defbuffer1"]
        elements = self._element_list(cmd, 1) if cmd.has(0) else ["READing"]
        if not self.ch.output_on:
            # the 2450 measures with the output off as well (off-state source)
            pass
        out: list[str] = []
        for _ in range(self.sense_count):
            entry = self._measure_entry(cmd.text)
            self._store(buf, entry)
            out.extend(self._elements(entry, elements))
        return ",".join(out)

    @scpi(":FETCh", query=True)
    def _fetch(self, cmd: Command) -> str:
        buf = self._buffer(cmd, 0) if cmd.has(0) else self.buffers["defbuffer1"]
        if not buf:
            raise ScpiError(-230, "no data")
        return ",".join(self._elements(buf[-1], self._element_list(cmd, 1) if cmd.has(0) else ["READing"]))

    # -- buffers ---------------------------------------------------------------------------------

    @scpi(":TRACe:MAKE")
    def _trace_make(self, cmd: Command) -> None:
        cmd.count(2, 3)
        name = cmd.string(0)
        cmd.integer(1, lo=1, hi=_BUFFER_CAPACITY)
        if name in self.buffers:
            raise ScpiError(-222, "buffer exists")
        self.buffers[name] = []

    @scpi(":TRACe:CLEar")
    def _trace_clear(self, cmd: Command) -> None:
        cmd.count(0, 1)
        self._buffer(cmd, 0).clear()

    @scpi(":TRACe:ACTual", query=True)
    def _trace_actual(self, cmd: Command) -> str:
        cmd.count(0, 1)
        return str(len(self._buffer(cmd, 0)))

    @scpi(":TRACe:ACTual:END", query=True)
    def _trace_end(self, cmd: Command) -> str:
        cmd.count(0, 1)
        return str(len(self._buffer(cmd, 0)))

    @scpi(":TRACe:ACTual:STARt", query=True)
    def _trace_start(self, cmd: Command) -> str:
        cmd.count(0, 1)
        return "1" if self._buffer(cmd, 0) else "0"

    @scpi(":TRACe:POINts")
    def _trace_points(self, cmd: Command) -> None:
        cmd.count(1, 2)
        cmd.integer(0, lo=1, hi=_BUFFER_CAPACITY)
        self._buffer(cmd, 1)

    @scpi(":TRACe:POINts", query=True)
    def _trace_points_q(self, cmd: Command) -> str:
        return str(_BUFFER_CAPACITY)

    @scpi(":TRACe:DATA", query=True)
    def _trace_data(self, cmd: Command) -> str:
        if len(cmd.params) < 2:
            raise ScpiError(-109)
        start = cmd.integer(0, lo=1, hi=_BUFFER_CAPACITY)
        end = cmd.integer(1, lo=1, hi=_BUFFER_CAPACITY)
        buf = self._buffer(cmd, 2) if cmd.has(2) else self.buffers["defbuffer1"]
        if end < start or end > len(buf):
            raise ScpiError(-222, f"indices {start}..{end}, buffer holds {len(buf)}")
        elements = self._element_list(cmd, 3) if len(cmd.params) > 3 else ["READing"]
        out: list[str] = []
        for entry in buf[start - 1:end]:
            out.extend(self._elements(entry, elements))
        return ",".join(out)

    @scpi(":FORMat[:DATA]")
    def _format(self, cmd: Command) -> None:
        cmd.count(1)
        fmt = cmd.choice(0, ("ASCii", "REAL", "SREal"))
        self.data_format = fmt.upper()[:4]
        if self.data_format != "ASCI":
            self.data_format = "ASCI"
            raise ScpiError(-224, "binary read-back not emulated")

    # -- sweeps ----------------------------------------------------------------------------------

    @scpi("[:SOURce[1]]:LIST:VOLTage[:LIST]")
    def _list(self, cmd: Command) -> None:
        if not cmd.params:
            raise ScpiError(-109)
        if len(cmd.params) > 100:
            raise ScpiError(-108, "at most 100 values per message")
        self.ch.list_v = [cmd.number(k, lo=-210.0, hi=210.0) for k in range(len(cmd.params))]

    @scpi("[:SOURce[1]]:LIST:VOLTage:APPend")
    def _list_append(self, cmd: Command) -> None:
        if not cmd.params:
            raise ScpiError(-109)
        if len(cmd.params) > 100:
            raise ScpiError(-108, "at most 100 values per message")
        self.ch.list_v.extend(cmd.number(k, lo=-210.0, hi=210.0) for k in range(len(cmd.params)))

    @scpi("[:SOURce[1]]:LIST:VOLTage[:LIST]", query=True)
    def _list_q(self, cmd: Command) -> str:
        return ",".join(format_nr3(v, plus=False) for v in self.ch.list_v)

    @scpi("[:SOURce[1]]:LIST:VOLTage:POINts", query=True)
    def _list_points_q(self, cmd: Command) -> str:
        return str(len(self.ch.list_v))

    def _sweep_common(self, cmd: Command, delay_index: int, rest: int) -> dict[str, Any]:
        delay = cmd.number(delay_index, lo=-1.0, hi=10_000.0, default=0.0)
        if 0 < delay < 50e-6:
            raise ScpiError(-222, "delay is 0 or 50 us .. 10 ks")
        count = cmd.integer(rest, lo=0, hi=1_000_000, default=1) if cmd.has(rest) else 1
        fail_abort = cmd.boolean(rest + 1) if cmd.has(rest + 1) else False
        return {"delay_s": max(delay, 0.0), "count": max(count, 1), "fail_abort": fail_abort}

    @scpi("[:SOURce[1]]:SWEep:VOLTage:LIST")
    def _sweep_list(self, cmd: Command) -> None:
        cmd.count(2, 5)
        start = cmd.integer(0, lo=1, hi=_BUFFER_CAPACITY)
        spec = self._sweep_common(cmd, 1, 2)
        buf_name = cmd.string(4) if cmd.has(4) else "defbuffer1"
        if buf_name not in self.buffers:
            raise ScpiError(-222, "no such buffer")
        if not self.ch.list_v:
            raise ScpiError(-221, "source list is empty")
        if start > len(self.ch.list_v):
            raise ScpiError(-222, "start index beyond the list")
        self.sweep = dict(spec, levels=list(self.ch.list_v[start - 1:]), buffer=buf_name)
        self.blocks = None

    @scpi("[:SOURce[1]]:SWEep:VOLTage:LINear")
    def _sweep_lin(self, cmd: Command) -> None:
        cmd.count(3, 9)
        start = cmd.number(0, lo=-210.0, hi=210.0)
        stop = cmd.number(1, lo=-210.0, hi=210.0)
        points = cmd.integer(2, lo=2, hi=1_000_000)
        spec = self._sweep_common(cmd, 3, 4) if cmd.has(3) else {"delay_s": 0.0, "count": 1, "fail_abort": False}
        if cmd.has(6):
            spec["fail_abort"] = cmd.boolean(6)
        buf_name = cmd.string(8) if cmd.has(8) else "defbuffer1"
        if buf_name not in self.buffers:
            raise ScpiError(-222, "no such buffer")
        levels = [start + (stop - start) * k / (points - 1) for k in range(points)]
        self.sweep = dict(spec, levels=levels, buffer=buf_name)
        self.blocks = None

    @scpi(":TRIGger:LOAD")
    def _trig_load(self, cmd: Command) -> None:
        if not cmd.params:
            raise ScpiError(-109)
        name = cmd.string(0)
        if self._run is not None and not self._run.done:
            raise ScpiError(-200, "trigger model running; :ABORt first")
        if name.upper() == "EMPTY":
            cmd.count(1)
            self.sweep, self.blocks = None, {}
            return
        if name.upper() != "SIMPLELOOP":
            raise ScpiError(-224, f"trigger template {name!r} not emulated")
        self.blocks = None
        count = cmd.integer(1, lo=1, hi=1_000_000) if cmd.has(1) else 1
        delay = cmd.number(2, lo=0.0, hi=10_000.0) if cmd.has(2) else 0.0
        buf_name = cmd.string(3) if cmd.has(3) else "defbuffer1"
        self.sweep = {"levels": [None] * count, "delay_s": delay, "count": 1, "fail_abort": False, "buffer": buf_name}

    @scpi(":INITiate[:IMMediate]")
    @scpi(":TRACe:TRIGger")
    def _init(self, cmd: Command) -> None:
        if self.blocks is not None and cmd.header.upper().lstrip(":").startswith("INIT"):
            self._start_blocks(cmd.text)
            return
        if self.sweep is None:
            for _ in range(self.sense_count):
                self._store(self.buffers["defbuffer1"], self._measure_entry(cmd.text))
            return
        spec = self.sweep
        buf = self.buffers[spec["buffer"]]
        if not self.ch.output_on:
            if self.interlock_is_open():
                raise ScpiError(-200, "interlock open")
            self.ch.output_on = True
        for _ in range(spec["count"]):
            for level in spec["levels"]:
                if level is not None:
                    self.ch.level_v = float(level)
                self._apply()
                self.advance(spec["delay_s"] if not self.ch.source_delay_auto else spec["delay_s"] + 1e-3)
                entry = self._measure_entry(cmd.text)
                self._store(buf, entry)
                self.advance(50e-6)
                if spec["fail_abort"] and entry.status & _STATUS_LIMIT:
                    return

    @scpi(":ABORt")
    def _abort(self, cmd: Command) -> None:
        cmd.count(0)
        self._abort_run()

    # -- digital I/O lines and the block trigger model ------------------------------------------

    def _line(self, cmd: Command) -> dict[str, str]:
        n = cmd.suffix
        if not 1 <= n <= _DIGIO_LINES:
            raise ScpiError(-114, f"digital I/O line {n} (1..{_DIGIO_LINES})")
        return self.dig_lines[n]

    @scpi(":DIGital:LINE#:MODE")
    def _dig_mode(self, cmd: Command) -> None:
        cmd.count(2)
        line = self._line(cmd)
        kind = cmd.choice(0, ("DIGital", "TRIGger", "SYNChronous"))
        direction = cmd.choice(1, ("IN", "OUT", "OPENdrain", "MASTer", "ACCeptor"))
        if (kind == "SYNChronous") != (direction in ("MASTer", "ACCeptor")):
            raise ScpiError(-224, f"{kind}, {direction} is not a valid line mode")
        line["type"], line["direction"] = kind, direction

    @scpi(":DIGital:LINE#:MODE", query=True)
    def _dig_mode_q(self, cmd: Command) -> str:
        line = self._line(cmd)
        return f"{line['type'][:4].upper()},{line['direction'][:3].upper() if line['direction'] != 'IN' else 'IN'}"

    @scpi(":TRIGger:DIGital#:IN:EDGE")
    def _dig_edge(self, cmd: Command) -> None:
        cmd.count(1)
        self._line(cmd)["edge"] = cmd.choice(0, ("FALLing", "RISing", "EITHer"))

    @scpi(":TRIGger:DIGital#:IN:EDGE", query=True)
    def _dig_edge_q(self, cmd: Command) -> str:
        return self._line(cmd)["edge"][:4].upper()

    def _set_block(self, cmd: Command, block: Block) -> None:
        number = cmd.integer(0, lo=1, hi=255)
        if self._run is not None and not self._run.done:
            raise ScpiError(-200, "trigger model running; :ABORt first")
        self.sweep = None
        if self.blocks is None:
            self.blocks = {}
        self.blocks[number] = block

    @scpi(":TRIGger:BLOCk:WAIT")
    def _blk_wait(self, cmd: Command) -> None:
        cmd.count(2, 3)
        event = cmd.raw(1).strip().upper()
        digits = event.lstrip("DIGIO") if event.startswith("DIG") else ""
        if not (digits.isdigit() and 1 <= int(digits) <= _DIGIO_LINES):
            raise ScpiError(-224, f"wait event {event!r} not emulated (DIGio<n> only)")
        clear = cmd.choice(2, ("ENTer", "NEVer")) == "ENTer" if cmd.has(2) else False
        self._set_block(cmd, Block("wait", event=f"DIG{int(digits)}", clear_on_entry=clear))

    @scpi(":TRIGger:BLOCk:CONFig:NEXT")
    def _blk_conf_next(self, cmd: Command) -> None:
        cmd.count(2)
        name = cmd.string(1)
        if name != _SWEEP_LIST or not self.ch.list_v:
            raise ScpiError(-222, f"configuration list {name!r} does not exist")
        self._set_block(cmd, Block("config_next", name=name))

    @scpi(":TRIGger:BLOCk:MEASure")
    def _blk_measure(self, cmd: Command) -> None:
        cmd.count(1, 2)
        name = cmd.string(1) if cmd.has(1) else "defbuffer1"
        if name not in self.buffers:
            raise ScpiError(-222, f"buffer {name!r} does not exist")
        self._set_block(cmd, Block("measure", name=name))

    @scpi(":TRIGger:BLOCk:BRANch:COUNter")
    def _blk_branch_counter(self, cmd: Command) -> None:
        cmd.count(3)
        self._set_block(cmd, Block("branch_counter", count=cmd.integer(1, lo=1, hi=268_435_455),
                                   to=cmd.integer(2, lo=1, hi=255)))

    def _start_blocks(self, line: str) -> None:
        """``:INIT`` of a block model: run it at once, or arm it on the bench trigger line."""
        if not self.blocks:
            raise ScpiError(-200, "trigger model is empty")
        if self._run is not None and not self._run.done:
            raise ScpiError(-200, "trigger model already running")
        self._run_line = line
        self._run = BlockRun(dict(self.blocks), config_next=self._recall, list_length=self._list_length,
                             measure=self._block_measure)
        self._run_done.clear()
        paced = self.world is not None and any(b.kind == "wait" and self._line_listens(b.event)
                                               for b in self.blocks.values())
        try:
            self._run.advance(stop_at_measure=paced)
        except BlockModelError as exc:
            self._abort_run()
            raise ScpiError(-200, str(exc)) from None
        if self._run.done:
            self._finish_run()
        elif paced:
            self.world.trigger.arm(self._on_bench_trigger)

    def _line_listens(self, event: str) -> bool:
        """A ``DIG<n>`` event can come from the bench trigger line: line n is a trigger input."""
        line = self.dig_lines.get(int(event[3:])) if event.startswith("DIG") else None
        return line is not None and line["type"] == "TRIGger" and line["direction"] in ("IN", "OPENdrain")

    def _list_length(self, name: str) -> int:
        return len(self.ch.list_v) if name == _SWEEP_LIST else 0

    def _recall(self, name: str, index: int) -> None:
        self.ch.level_v = float(self.ch.list_v[index - 1])
        self._apply()

    def _block_measure(self, buffer: str) -> None:
        self._store(self.buffers[buffer], self._measure_entry(self._run_line))

    def _on_bench_trigger(self, step: str, point: int) -> None:
        """One step of a bench trigger pulse (called by the driving instrument, world lock held)."""
        run = self._run
        if run is None or run.done:
            return
        try:
            if step == "source":
                for n in range(1, _DIGIO_LINES + 1):
                    if self._line_listens(f"DIG{n}"):
                        run.signal(f"DIG{n}")
                if run.state == "waiting":
                    run.advance(stop_at_measure=True)
            elif run.state == "measure":
                run.measure_now()
                run.advance(stop_at_measure=True)
        except BlockModelError as exc:
            self.push_error(-200, str(exc))
            self._abort_run()
            return
        if run.done:
            self._finish_run()

    def _finish_run(self) -> None:
        if getattr(self, "world", None) is not None:
            self.world.trigger.disarm(self._on_bench_trigger)
        self._run_done.set()

    def _abort_run(self) -> None:
        """Stop the block model run (if any) and stop listening to the bench trigger line."""
        if getattr(self, "world", None) is not None:
            self.world.trigger.disarm(self._on_bench_trigger)
        self._run: Optional[BlockRun] = None
        self._run_line = ""
        if not hasattr(self, "_run_done"):
            self._run_done = threading.Event()
        self._run_done.set()

    def wait_complete(self) -> None:
        """``*WAI``/``*OPC?``: a run paced by the bench trigger line waits for its points (bounded)."""
        run = self._run
        if run is None or run.done:
            return
        if self.world is None or not self.world.trigger.wait(self._run_done):
            raise ScpiError(-230, "trigger model still waiting for bench triggers")

    @scpi(":TRIGger:STATe", query=True)
    def _trig_state(self, cmd: Command) -> str:
        run = self._run
        if run is None or run.done:
            return f"IDLE;IDLE;{0 if run is None else run.pc - 1}"
        return f"{'WAITING' if run.state == 'waiting' else 'RUNNING'};RUNNING;{run.pc}"

    # -- system ----------------------------------------------------------------------------------

    @scpi(":SYSTem:ERRor[:NEXT]", query=True)
    def _err(self, cmd: Command) -> str:
        return self.next_error()

    @scpi(":SYSTem:ERRor:COUNt", query=True)
    def _err_count(self, cmd: Command) -> str:
        return str(len(self.errors))

    @scpi(":SYSTem:CLEar")
    def _sys_clear(self, cmd: Command) -> None:
        self.errors.clear()

    @scpi(":SYSTem:LFRequency", query=True)
    def _lfr(self, cmd: Command) -> str:
        return str(int(self.world.line_frequency_hz if self.world is not None else 50))

    @scpi(":STATus:PRESet")
    def _stat_pres(self, cmd: Command) -> None:
        cmd.count(0)

    @scpi(":STATus:CLEar")
    def _stat_clear(self, cmd: Command) -> None:
        cmd.count(0)
