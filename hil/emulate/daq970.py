"""Keysight DAQ970A / 34970A / 34972A scanning DMM personality (DC volts).

Implements what ``hil.drivers.daq970a`` sends and other legal spellings: long forms, the optional
``[:SENSe]`` and ``[:DC]`` nodes, ``CONF:VOLT:DC AUTO|DEF|MIN|MAX``, ranges in channel lists
(``(@101:105)``), ``MEAS:VOLT:DC?``, ``INIT`` + ``FETC?``, ``DATA:POIN?``/``DATA:REM?``,
``ROUT:SCAN?``/``ROUT:SCAN:SIZE?``, ``FORM:READ:CHAN|TIME``, ``INP:IMP:AUTO`` (input impedance),
and PyMeasure's 34970A spellings (``ROUT:SCAN (@101:110)``, ``MEAS:VOLT:DC? (@105)``).

Physics: each channel is read at its own instant, in ascending channel order: its relay closes,
the DMM input loads the node (10 MΩ, or > 10 GΩ with ``INP:IMP:AUTO ON`` on ranges ≤ 10 V,
as the 34970A/34980A command references state for ``INPut:IMPedance:AUTO``; modelled as 10 GΩ),
the loaded node voltage is solved exactly (``World.port_voltage_loaded``), and the node voltage is integrated (NPLC) with noise
and quantised to the range resolution (6½ digits at NPLC ≥ 1, 5½ at 0.2, 4½ at 0.02). Over
120 % of range: ``+9.90000000E+37``. Bench time per channel: relay settle (option ``relay_s``,
default the figure ``hil estimate`` uses, ``hil.bench.timing.FIGURES``: 2.2 ms, the DAQM900A
solid-state multiplexer's 450 channels/s) + channel delay (automatic: 2 ms) + integration (×2
with autozero on).
Options: ``slots`` (``{slot: channels}``, default 20 channels in slots 1–3), ``relay_s``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

from hil.bench.timing import instrument_figures
from hil.emulate.scpi import Command, ScpiEmulator, ScpiError, scpi

__all__ = ["Daq970Emulator"]

RANGES_V = (0.1, 1.0, 10.0, 100.0, 300.0)
NPLC_VALUES = (0.02, 0.2, 1.0, 2.0, 10.0, 20.0, 100.0, 200.0)
LOAD_10M_S = 1e-7
LOAD_HIGH_S = 1e-10
AUTO_DELAY_S = 2e-3
_MAX_SCAN = 120
_MEMORY = 50_000


def _fmt(value: float) -> str:
    return f"{float(value):+.8E}"


def _resolution_fraction(nplc: float) -> float:
    if nplc >= 1.0:
        return 3e-7
    if nplc >= 0.2:
        return 3e-6
    return 3e-5


@dataclass
class _Chan:
    range_v: Optional[float] = None     # None: autorange
    nplc: float = 1.0
    autozero: str = "ON"
    delay_s: Optional[float] = None     # None: automatic
    impedance_auto: bool = False


class Daq970Emulator(ScpiEmulator):
    """Emulated DAQ970A / 34970A / 34972A (see the module docstring)."""

    FAMILY = "daq970a"
    MODELS = ("DAQ970A", "34970A", "34972A")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        slots = self.options.get("slots") or {1: 20, 2: 20, 3: 20}
        self.slots = {int(k): int(v) for k, v in dict(slots).items()}
        self.relay_s = instrument_figures(self.FAMILY, self.options).channel_s
        self.reset()

    def idn(self) -> str:
        vendor = "Keysight Technologies" if self.model != "34970A" else "Agilent Technologies"
        return f"{vendor},{self.model},{self.serial},A.03.02-02.40-03.02-00.52-04-01"

    def reset(self) -> None:
        if getattr(self, "world", None) is not None and hasattr(self, "_on_bench_trigger"):
            self.world.trigger.disarm(self._on_bench_trigger)
        self._ext_remaining = 0
        self._ext_done = threading.Event()
        self._ext_done.set()
        self._ext_line: Optional[str] = None
        self.chans: dict[int, _Chan] = {}
        self.scan_list: list[int] = []
        self.trig_source = "IMM"
        self.trig_count = 1
        self.memory: list[tuple[float, int, float]] = []
        self.format_channel = False
        self.format_time = False
        self.t0 = self.clock.now_s
        if self.world is not None:
            for ch, port in self.ports.items():
                self.world.set_source(port, "open")
                self.world.set_load(port, 0.0)

    # -- helpers ---------------------------------------------------------------------------------

    def _valid(self, ch: int) -> None:
        slot, num = divmod(ch, 100)
        if slot not in self.slots or not 1 <= num <= self.slots[slot]:
            raise ScpiError(-222, f"invalid channel {ch}")

    def _list_param(self, cmd: Command, required: bool = True) -> list[int]:
        if not cmd.params or not cmd.is_channel_list(len(cmd.params) - 1):
            if required:
                raise ScpiError(-109, "channel list required")
            return []
        chans = cmd.channels(len(cmd.params) - 1)
        for ch in chans:
            self._valid(ch)
        return chans

    def _chan(self, ch: int) -> _Chan:
        return self.chans.setdefault(ch, _Chan())

    def _values(self, cmd: Command) -> list[str]:
        """Parameters before the channel list."""
        n = len(cmd.params) - (1 if cmd.params and cmd.is_channel_list(len(cmd.params) - 1) else 0)
        return cmd.params[:n]

    def _read_channel(self, ch: int, line: Optional[str]) -> float:
        state = self._chan(ch)
        key = str(ch)
        port = self.port(key)
        rng = state.range_v
        f_line = self.world.line_frequency_hz if self.world is not None else 50.0
        self.advance(self.relay_s + (state.delay_s if state.delay_s is not None else AUTO_DELAY_S))
        if port is not None:
            load = LOAD_HIGH_S if state.impedance_auto and (rng or 10.0) <= 10.0 else LOAD_10M_S
            true_v = self.world.port_voltage_loaded(port, load)
        else:
            true_v = 0.0
        self.advance((2.0 if state.autozero == "ON" else 1.0) * state.nplc / f_line)
        if rng is None:
            rng = next((r for r in RANGES_V if abs(true_v) <= r * 1.2), RANGES_V[-1])
        if self.world is not None:
            value = self.world.reading(true_v, rng, state.nplc, noise_fraction=3e-7,
                                       resolution_fraction=_resolution_fraction(state.nplc))
        else:
            value = true_v
        sentinel = self.sentinel_value(key, line)
        return sentinel if sentinel is not None else value

    def _scan(self, line: Optional[str]) -> list[tuple[float, int, float]]:
        if not self.scan_list:
            raise ScpiError(-221, "scan list is empty")
        out = []
        for _ in range(self.trig_count):
            for ch in sorted(self.scan_list):
                value = self._read_channel(ch, line)
                out.append((value, ch, self.clock.now_s - self.t0))
        return out

    def _format(self, readings: list[tuple[float, int, float]]) -> str:
        parts: list[str] = []
        decimals = self.reply_decimals(8)
        for value, ch, t in readings:
            parts.append(f"{float(value):+.{decimals}E}")
            if self.format_time:
                parts.append(f"{t:+.3E}")
            if self.format_channel:
                parts.append(str(ch))
        return ",".join(parts)

    # -- configuration ----------------------------------------------------------------------------

    @scpi(":CONFigure:VOLTage[:DC]")
    def _conf(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        values = self._values(cmd)
        if len(values) > 2:
            raise ScpiError(-108)
        rng = self._range_value(cmd, 0) if values else None
        if len(values) > 1 and values[1].strip().upper() not in ("DEF", "DEFAULT", "MIN", "MINIMUM", "MAX", "MAXIMUM"):
            cmd.number(1, lo=0.0, hi=1.0)
        for ch in chans:
            self.chans[ch] = _Chan(range_v=rng)
        self.scan_list = list(chans)
        if len(self.scan_list) > _MAX_SCAN:
            raise ScpiError(-221, "scan list too long")

    def _range_value(self, cmd: Command, index: int) -> Optional[float]:
        word = cmd.params[index].strip().upper()
        if word in ("AUTO", "DEF", "DEFAULT"):
            return None
        value = cmd.number(index, lo=0.0, hi=300.0, minimum=0.1, maximum=300.0)
        for r in RANGES_V:
            if value <= r * (1 + 1e-9):
                return r
        raise ScpiError(-222)

    @scpi("[:SENSe]:VOLTage[:DC]:RANGe[:UPPer]")
    def _range(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        if len(self._values(cmd)) != 1:
            raise ScpiError(-109)
        rng = self._range_value(cmd, 0)
        for ch in chans:
            self._chan(ch).range_v = rng

    @scpi("[:SENSe]:VOLTage[:DC]:RANGe[:UPPer]", query=True)
    def _range_q(self, cmd: Command) -> str:
        return ",".join(_fmt(self._chan(ch).range_v or 10.0) for ch in self._list_param(cmd))

    @scpi("[:SENSe]:VOLTage[:DC]:RANGe:AUTO")
    def _range_auto(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        auto = cmd.boolean(0)
        for ch in chans:
            state = self._chan(ch)
            state.range_v = None if auto else (state.range_v or 10.0)

    @scpi("[:SENSe]:VOLTage[:DC]:NPLCycles")
    def _nplc(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        if len(self._values(cmd)) != 1:
            raise ScpiError(-109)
        value = cmd.number(0, lo=0.02, hi=200.0, minimum=0.02, maximum=200.0, default=1.0)
        nplc = next((v for v in NPLC_VALUES if value <= v * (1 + 1e-9)), 200.0)
        for ch in chans:
            self._chan(ch).nplc = nplc

    @scpi("[:SENSe]:VOLTage[:DC]:NPLCycles", query=True)
    def _nplc_q(self, cmd: Command) -> str:
        return ",".join(_fmt(self._chan(ch).nplc) for ch in self._list_param(cmd))

    @scpi("[:SENSe]:VOLTage[:DC]:APERture")
    def _aper(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        f = self.world.line_frequency_hz if self.world is not None else 50.0
        nplc = cmd.number(0, lo=3.3e-4, hi=4.0) * f
        for ch in chans:
            self._chan(ch).nplc = nplc

    @scpi("[:SENSe]:ZERO:AUTO")
    @scpi("[:SENSe]:VOLTage[:DC]:ZERO:AUTO")
    def _zero(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        mode = cmd.choice(0, ("OFF", "ONCE", "ON", "0", "1"))
        mode = {"0": "OFF", "1": "ON"}.get(mode, mode)
        for ch in chans:
            self._chan(ch).autozero = mode if mode != "ONCE" else "OFF"
        if mode == "ONCE":
            f = self.world.line_frequency_hz if self.world is not None else 50.0
            self.advance(sum(self._chan(ch).nplc for ch in chans) / f)

    @scpi("[:SENSe]:ZERO:AUTO", query=True)
    def _zero_q(self, cmd: Command) -> str:
        return ",".join("1" if self._chan(ch).autozero == "ON" else "0" for ch in self._list_param(cmd))

    @scpi(":INPut:IMPedance:AUTO")
    @scpi("[:SENSe]:VOLTage[:DC]:IMPedance:AUTO")
    def _impedance(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        on = cmd.boolean(0)
        for ch in chans:
            self._chan(ch).impedance_auto = on

    @scpi(":INPut:IMPedance:AUTO", query=True)
    @scpi("[:SENSe]:VOLTage[:DC]:IMPedance:AUTO", query=True)
    def _impedance_q(self, cmd: Command) -> str:
        return ",".join("1" if self._chan(ch).impedance_auto else "0" for ch in self._list_param(cmd))

    @scpi(":ROUTe:CHANnel:DELay")
    def _delay(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        delay = cmd.number(0, lo=0.0, hi=60.0, default=0.0)
        for ch in chans:
            self._chan(ch).delay_s = round(delay, 3)

    @scpi(":ROUTe:CHANnel:DELay", query=True)
    def _delay_q(self, cmd: Command) -> str:
        return ",".join(_fmt(self._chan(ch).delay_s if self._chan(ch).delay_s is not None else AUTO_DELAY_S)
                        for ch in self._list_param(cmd))

    @scpi(":ROUTe:CHANnel:DELay:AUTO")
    def _delay_auto(self, cmd: Command) -> None:
        chans = self._list_param(cmd)
        if cmd.boolean(0):
            for ch in chans:
                self._chan(ch).delay_s = None

    @scpi(":ROUTe:SCAN")
    def _scan_set(self, cmd: Command) -> None:
        cmd.count(1)
        chans = self._list_param(cmd)
        if len(chans) > _MAX_SCAN:
            raise ScpiError(-221, "scan list too long")
        for ch in chans:
            self._chan(ch)
        self.scan_list = chans

    @scpi(":ROUTe:SCAN", query=True)
    def _scan_q(self, cmd: Command) -> str:
        return "(@" + ",".join(str(c) for c in self.scan_list) + ")"

    @scpi(":ROUTe:SCAN:SIZE", query=True)
    def _scan_size(self, cmd: Command) -> str:
        return str(len(self.scan_list))

    @scpi(":TRIGger:SOURce")
    def _trig_source(self, cmd: Command) -> None:
        cmd.count(1)
        self.trig_source = cmd.choice(0, ("IMMediate", "BUS", "EXTernal", "TIMer", "ALARm1"))

    @scpi(":TRIGger:COUNt")
    def _trig_count(self, cmd: Command) -> None:
        cmd.count(1)
        self.trig_count = cmd.integer(0, lo=1, hi=50_000, default=1)

    @scpi(":TRIGger:COUNt", query=True)
    def _trig_count_q(self, cmd: Command) -> str:
        return _fmt(self.trig_count)

    @scpi(":TRIGger:TIMer")
    def _trig_timer(self, cmd: Command) -> None:
        cmd.count(1)
        cmd.number(0, lo=0.0, hi=359_999.0)

    @scpi(":FORMat:READing:CHANnel")
    def _fmt_chan(self, cmd: Command) -> None:
        cmd.count(1)
        self.format_channel = cmd.boolean(0)

    @scpi(":FORMat:READing:TIME")
    def _fmt_time(self, cmd: Command) -> None:
        cmd.count(1)
        self.format_time = cmd.boolean(0)

    @scpi(":FORMat:READing:UNIT")
    @scpi(":FORMat:READing:ALARm")
    def _fmt_other(self, cmd: Command) -> None:
        cmd.count(1)
        cmd.boolean(0)

    # -- readings --------------------------------------------------------------------------------

    @scpi(":READ", query=True)
    def _read(self, cmd: Command) -> str:
        cmd.count(0)
        return self._format(self._scan(cmd.text))

    @scpi(":INITiate[:IMMediate]")
    def _init(self, cmd: Command) -> None:
        cmd.count(0)
        if self.trig_source != "EXTernal" or self.world is None:
            self.memory = (self.memory + self._scan(cmd.text))[-_MEMORY:]
            return
        # wait-for-trigger: one sweep of the scan list per pulse of the bench trigger line
        if not self.scan_list:
            raise ScpiError(-221, "scan list is empty")
        self.memory = []
        self._ext_remaining, self._ext_line = self.trig_count, cmd.text
        self._ext_done.clear()
        self.world.trigger.arm(self._on_bench_trigger)

    def _on_bench_trigger(self, step: str, point: int) -> None:
        """One scan per ``measure`` step of a bench-trigger pulse (called by the driving instrument)."""
        if step != "measure" or self._ext_remaining <= 0:
            return
        for ch in sorted(self.scan_list):
            self.memory.append((self._read_channel(ch, self._ext_line), ch, self.clock.now_s - self.t0))
        self._ext_remaining -= 1
        if self._ext_remaining == 0:
            self.world.trigger.disarm(self._on_bench_trigger)
            self._ext_done.set()

    @scpi(":FETCh", query=True)
    def _fetch(self, cmd: Command) -> str:
        cmd.count(0)
        if self.world is not None and not self.world.trigger.wait(self._ext_done):  # FETC? waits for the scans
            raise ScpiError(-230, f"{self._ext_remaining} triggered scan(s) still pending")
        if self.world is not None:
            with self.world.lock:  # the reply comes once the last triggered scan has ended
                self.world.trigger.settle()
        if not self.memory:
            return ""
        return self._format(self.memory)

    @scpi(":DATA:POINts", query=True)
    def _points(self, cmd: Command) -> str:
        return str(len(self.memory))

    @scpi(":DATA:REMove", query=True)
    def _remove(self, cmd: Command) -> str:
        cmd.count(1)
        n = cmd.integer(0, lo=1, hi=_MEMORY)
        if n > len(self.memory):
            raise ScpiError(-222, "not that many readings stored")
        taken, self.memory = self.memory[:n], self.memory[n:]
        return self._format(taken)

    @scpi(":MEASure:VOLTage[:DC]", query=True)
    def _measure(self, cmd: Command) -> str:
        self._conf(cmd)
        return self._format(self._scan(cmd.text))

    @scpi(":ABORt")
    def _abort(self, cmd: Command) -> None:
        cmd.count(0)
        if self.world is not None:
            self.world.trigger.disarm(self._on_bench_trigger)
        self._ext_remaining = 0
        self._ext_done.set()

    # -- system ----------------------------------------------------------------------------------

    @scpi(":SYSTem:ERRor[:NEXT]", query=True)
    def _err(self, cmd: Command) -> str:
        return self.next_error()

    @scpi(":SYSTem:CTYPe", query=True)
    def _ctype(self, cmd: Command) -> str:
        cmd.count(1)
        slot = cmd.integer(0, lo=1, hi=3)
        if slot not in self.slots:
            return "Keysight Technologies,0,0,0"
        return "Keysight Technologies,DAQM901A,0,1.0"
