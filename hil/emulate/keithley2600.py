"""Emulated Keithley 2600B System SourceMeter (2601B–2636B), channels ``smua``/``smub``.

Every received line runs through the TSP interpreter (``hil.emulate.tsp``) against the
instrument's object tree, so any legal spelling works: ``smua.source.levelv = 0.1``,
``smua.source.levelv=0.100000`` (PyMeasure), ``smua.source.output = 1`` or
``smua.source.output = smua.OUTPUT_ON``. Both channels act on the bench's one ``World``:

* output on, voltage function: the port is a voltage source ``levelv`` with current limit
  ``limiti`` (the world clamps it to a current source at the limit: compliance); current
  function: a current source ``leveli``;
* output off: ``smuX.source.offmode`` — ``OUTPUT_NORMAL``: 0 V with ``offlimiti``,
  ``OUTPUT_ZERO``: 0 V with ``limiti``, ``OUTPUT_HIGH_Z``: open;
* readings (``measure.i/v/iv/r/p``, also into reading buffers) come from the world with noise
  ∝ range/√NPLC, quantised to the range; fixed ranges and autorange as programmed; over range
  ``+9.9E37``; each takes ``NPLC/f_line`` (×2 with ``AUTOZERO_AUTO``) plus the measure delay
  of bench time;
* the remote trigger model (``smuX.trigger.*``: list/linear sweeps, arm/source/measure/end-pulse
  stimuli and actions, ``count``, blenders, timers, ``initiate``, ``abort``) is simulated event
  by event (``hil.emulate.trigger_model``), so a list sweep on one or both channels fills one
  buffer per channel with readings, source values, timestamps and statuses taken at the
  simulated instant, and channels that are not gated on each other drift apart as on the
  instrument;
* ``smuX.source.compliance``, ``status.measurement.instrument.smuX.condition`` (1 = voltage
  limit, 2 = current limit) and buffer ``statuses`` (0x40 = compliance) report the limit;
* ``digio.trigger[N]`` (not on the 2604B/2614B/2634B) joins the bench trigger line of the world:
  a line out of bypass mode pulses it when its ``stimulus`` event fires (every armed instrument
  steps its source; when this instrument next starts a measurement they read the same point, and
  their bench time counts as parallel work), and a trigger model waiting for a line's
  ``EVENT_ID`` registers on it at ``initiate()`` and runs one point per pulse.

Values that are errors on the instrument (a level above the fixed range, NPLC outside
0.001–25, a range the model does not have) queue ``-222`` and leave the setting unchanged;
Lua syntax errors queue ``-285`` and runtime errors ``-286``; neither produces a reply.

Constant values follow the reference manual's tables where drivers may send numbers:
``OUTPUT_OFF/ON/HIGH_Z`` 0/1/2, ``OUTPUT_DCAMPS/DCVOLTS`` 0/1, ``AUTOZERO_OFF/ONCE/AUTO``
0/1/2, ``AUTORANGE_OFF/ON`` 0/1, ``DISABLE/ENABLE`` 0/1, ``SOURCE_IDLE/HOLD`` 0/1,
``SENSE_LOCAL/REMOTE`` 0/1, ``DELAY_OFF/AUTO`` 0/−1. Off-mode values (``OUTPUT_NORMAL`` 0,
``OUTPUT_ZERO`` 1, ``OUTPUT_HIGH_Z`` 2) and trigger event IDs are emulator choices (unverified);
drivers use the names.

Faults (``faults``): ``force_compliance(channel)``, ``sentinel(kind, channel=…)``,
``misreport_level(level_v, channel)`` (``print(smuX.source.levelv)`` answers the given value),
``interlock_open()`` (the high-voltage ranges, above 20 V, refuse to switch on: error 802).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Optional, Union

from hil.emulate.trigger_model import Blender, Delay, Detector, Timer, TriggerScheduler, Wait
from hil.emulate.tsp import HostTable, LuaTable, TspError, to_bool, to_int, to_number, table_numbers
from hil.emulate.tsp_machine import OUT_OF_RANGE, SETTINGS_CONFLICT, BufferColumn, TspEmulator, TspMachine
from hil.emulate.world import OVERFLOW_SENTINEL

__all__ = ["Smu2600Emulator", "ModelSpec", "MODEL_SPECS", "ReadingBuffer", "SmuChannel"]

INTERLOCK_ERROR = 802  #: "OUTPUT blocked by interlock" (high-voltage range with the interlock open)
HIGH_VOLTAGE_RANGE_V = 20.0
STATUS_COMPLIANCE = 0x40  #: buffer status bit for a reading taken at a limit (verify)
DELAY_AUTO = -1.0
#: auto source/measure delay in s used for ``DELAY_AUTO`` (range dependent on the instrument)
AUTO_DELAY_S = 1e-3
#: overhead of one trigger-model step and of one remote spot command, s (instruments.md §6)
SWEEP_STEP_OVERHEAD_S = 50e-6
SPOT_OVERHEAD_S = 0.3e-3

OUTPUT_OFF, OUTPUT_ON, OUTPUT_HIGH_Z = 0, 1, 2
OFFMODE_NORMAL, OFFMODE_ZERO, OFFMODE_HIGH_Z = 0, 1, 2
FUNC_DCAMPS, FUNC_DCVOLTS = 0, 1
AUTOZERO_OFF, AUTOZERO_ONCE, AUTOZERO_AUTO = 0, 1, 2
SOURCE_IDLE, SOURCE_HOLD = 0, 1

#: digital I/O trigger lines, their trigger modes (numeric values as in the reference manual) and
#: the models without a digital I/O port
DIGIO_LINES = 14
DIGIO_MODES = ("TRIG_BYPASS", "TRIG_FALLING", "TRIG_RISING", "TRIG_EITHER", "TRIG_SYNCHRONOUSA",
               "TRIG_SYNCHRONOUS", "TRIG_SYNCHRONOUSM", "TRIG_RISINGA", "TRIG_RISINGM")
NO_DIGIO_MODELS = ("2604B", "2614B", "2634B")
DIGIO_EVENT_BASE = 3000  #: emulator choice (drivers use the EVENT_ID names)

_EVENT_NAMES = ("SWEEPING", "ARMED", "SOURCE_COMPLETE", "MEASURE_COMPLETE", "PULSE_COMPLETE",
                "SWEEP_COMPLETE", "IDLE")


@dataclass(frozen=True)
class ModelSpec:
    """Ranges of one 2600B model: channels, voltage ranges (V), current ranges (A)."""

    channels: tuple[str, ...]
    v_ranges: tuple[float, ...]
    i_ranges: tuple[float, ...]


_V_LOW = (0.1, 1.0, 6.0, 40.0)
_V_HIGH = (0.2, 2.0, 20.0, 200.0)
_I_260X = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0)
_I_261X = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 1.5)
_I_263X = (1e-9, 1e-8) + _I_261X
MODEL_SPECS: dict[str, ModelSpec] = {
    "2601B": ModelSpec(("a",), _V_LOW, _I_260X),
    "2602B": ModelSpec(("a", "b"), _V_LOW, _I_260X),
    "2604B": ModelSpec(("a", "b"), _V_LOW, _I_260X),
    "2611B": ModelSpec(("a",), _V_HIGH, _I_261X),
    "2612B": ModelSpec(("a", "b"), _V_HIGH, _I_261X),
    "2614B": ModelSpec(("a", "b"), _V_HIGH, _I_261X),
    "2634B": ModelSpec(("a", "b"), _V_HIGH, _I_263X),
    "2635B": ModelSpec(("a",), _V_HIGH, _I_263X),
    "2636B": ModelSpec(("a", "b"), _V_HIGH, _I_263X),
}


def _fit_range(value: float, ranges: tuple[float, ...], what: str) -> float:
    """Smallest range ≥ |value| (the instrument rounds a requested range up)."""
    v = abs(float(value))
    for r in ranges:
        if v <= r * (1 + 1e-9):
            return r
    raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({what} {value:g})")


class ReadingBuffer(HostTable):
    """``smuX.nvbuffer1/2``: readings with source values, timestamps and statuses.

    ``clear()``, ``n``, ``appendmode``, ``collectsourcevalues``, ``collecttimestamps``,
    ``capacity``, ``basetimestamp``; subtables ``readings``, ``sourcevalues``, ``timestamps``,
    ``statuses``; ``buf[i]`` is reading ``i``.
    """

    CAPACITY = 60_000

    def __init__(self, path: str, now: Any) -> None:
        super().__init__(path)
        self._now = now
        self.readings: list[float] = []
        self.sourcevalues: list[float] = []
        self.timestamps: list[float] = []
        self.statuses: list[float] = []
        self.appendmode = 0
        self.collectsourcevalues = 0
        self.collecttimestamps = 0
        self.basetimestamp = 0.0
        self.add("clear", self.clear)
        self.add("clearcache", lambda: None)
        for name in ("readings", "sourcevalues", "timestamps", "statuses"):
            self.add(name, BufferColumn(f"{path}.{name}", lambda name=name: getattr(self, name)))
        self.attribute("n", lambda: float(len(self.readings)))
        self.attribute("capacity", lambda: float(self.CAPACITY))
        self.attribute("basetimestamp", lambda: self.basetimestamp)
        for flag in ("appendmode", "collectsourcevalues", "collecttimestamps"):
            self.attribute(flag, lambda flag=flag: float(getattr(self, flag)),
                           lambda v, flag=flag: setattr(self, flag, 1 if to_bool(v) and v != 0 else 0))

    def default_column(self) -> BufferColumn:
        return self.members["readings"]

    def index(self, key: Any) -> Any:
        return self.members["readings"].index(key)

    def clear(self) -> None:
        self.readings, self.sourcevalues, self.timestamps, self.statuses = [], [], [], []
        self.basetimestamp = float(self._now())

    def begin_series(self) -> None:
        """A new measurement command stores into this buffer: with ``appendmode`` 0 the new
        readings replace the old contents, with 1 they are appended."""
        if not self.appendmode:
            self.clear()

    def store(self, reading: float, source_value: float, time_s: float, status: int) -> None:
        if len(self.readings) >= self.CAPACITY:
            return
        self.readings.append(float(reading))
        self.sourcevalues.append(float(source_value) if self.collectsourcevalues else math.nan)
        self.timestamps.append(float(time_s - self.basetimestamp) if self.collecttimestamps else math.nan)
        self.statuses.append(float(status))


class SmuChannel:
    """State and TSP object tree of one SMU channel (``smua``/``smub``)."""

    def __init__(self, emu: "Smu2600Emulator", letter: str, event_base: int) -> None:
        self.emu = emu
        self.letter = letter
        self.name = f"smu{letter}"
        self.spec = emu.spec
        self.events = {name: event_base + k for k, name in enumerate(_EVENT_NAMES)}
        sched = emu.scheduler
        self.arm_detector = sched.add_detector(Detector(f"{self.name}.trigger.arm"))
        self.source_detector = sched.add_detector(Detector(f"{self.name}.trigger.source"))
        self.measure_detector = sched.add_detector(Detector(f"{self.name}.trigger.measure"))
        self.endpulse_detector = sched.add_detector(Detector(f"{self.name}.trigger.endpulse"))
        self.nvbuffer1 = ReadingBuffer(f"{self.name}.nvbuffer1", emu.clock_now)
        self.nvbuffer2 = ReadingBuffer(f"{self.name}.nvbuffer2", emu.clock_now)
        self.running = False
        self.active_level: Optional[float] = None  # trigger-model level while sweeping
        self.last_compliance = False
        self.forced_flag = False
        self.set_defaults()
        self.table = self._build_table()

    # -- defaults ------------------------------------------------------------------------------

    def set_defaults(self) -> None:
        """``smuX.reset()`` state."""
        self.func = FUNC_DCVOLTS
        self.levelv = 0.0
        self.leveli = 0.0
        self.limiti = 1e-4
        self.limitv = self.spec.v_ranges[-2]
        self.rangev = self.spec.v_ranges[0]
        self.rangei = self.spec.i_ranges[0]
        self.autorangev = 1
        self.autorangei = 1
        self.source_delay = DELAY_AUTO
        self.offmode = OFFMODE_NORMAL
        self.offlimiti = 1e-3
        self.output = OUTPUT_OFF
        self.sense = 0
        self.meas_rangei = self.spec.i_ranges[0]
        self.meas_rangev = self.spec.v_ranges[0]
        self.meas_autorangei = 1
        self.meas_autorangev = 1
        self.nplc = 1.0
        self.autozero = AUTOZERO_AUTO
        self.meas_delay = DELAY_AUTO
        self.meas_count = 1
        self.trig_count = 1
        self.arm_count = 1
        self.source_action = 0
        self.measure_action = 0
        self.endpulse_action = SOURCE_HOLD
        self.endsweep_action = SOURCE_IDLE
        self.sweep_list: list[float] = []
        self.sweep_kind = "v"
        self.measure_target: tuple[str, list[ReadingBuffer]] = ("i", [self.nvbuffer1])
        for det in (self.arm_detector, self.source_detector, self.measure_detector, self.endpulse_detector):
            det.stimulus, det.set, det.overruns = 0, False, 0
        self.nvbuffer1.clear()
        self.nvbuffer2.clear()
        self.active_level = None
        self.running = False
        self.last_compliance = False

    # -- TSP tree ------------------------------------------------------------------------------

    def _num_attr(self, table: HostTable, name: str, field: str, check: Any = None) -> None:
        def setter(value: Any) -> None:
            v = to_number(value, f"{table.path}.{name}")
            if check is not None:
                v = check(v)
            setattr(self, field, v)
            self.emu.apply(self.letter)

        table.attribute(name, lambda: float(getattr(self, field)), setter)

    def _choice_attr(self, table: HostTable, name: str, field: str, choices: tuple[int, ...]) -> None:
        def setter(value: Any) -> None:
            v = to_number(value, f"{table.path}.{name}")
            if v not in choices:
                raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({table.path}.{name} = {value})")
            setattr(self, field, int(v))
            self.emu.apply(self.letter)

        table.attribute(name, lambda: float(getattr(self, field)), setter)

    def _build_table(self) -> HostTable:
        s = self.name
        spec = self.spec
        smu = HostTable(s, members={
            "OUTPUT_OFF": 0.0, "OUTPUT_ON": 1.0, "OUTPUT_HIGH_Z": 2.0, "OUTPUT_NORMAL": 0.0, "OUTPUT_ZERO": 1.0,
            "OUTPUT_DCAMPS": 0.0, "OUTPUT_DCVOLTS": 1.0,
            "AUTOZERO_OFF": 0.0, "AUTOZERO_ONCE": 1.0, "AUTOZERO_AUTO": 2.0,
            "AUTORANGE_OFF": 0.0, "AUTORANGE_ON": 1.0, "AUTORANGE_FOLLOW_LIMIT": 2.0,
            "DISABLE": 0.0, "ENABLE": 1.0, "SOURCE_IDLE": 0.0, "SOURCE_HOLD": 1.0,
            "SENSE_LOCAL": 0.0, "SENSE_REMOTE": 1.0, "SENSE_CALA": 3.0,
            "DELAY_OFF": 0.0, "DELAY_AUTO": DELAY_AUTO, "LIMIT_AUTO": 0.0,
            "FILL_ONCE": 0.0, "FILL_WINDOW": 1.0,
            "nvbuffer1": self.nvbuffer1, "nvbuffer2": self.nvbuffer2,
            "reset": self.reset, "abort": self.abort,
            "makebuffer": lambda size=None: ReadingBuffer(f"{s}.buffer", self.emu.clock_now),
        })
        self._choice_attr(smu, "sense", "sense", (0, 1, 3))

        src = HostTable(f"{s}.source")
        self._choice_attr(src, "func", "func", (FUNC_DCAMPS, FUNC_DCVOLTS))
        src.attribute("levelv", self._get_levelv, self._set_levelv)
        src.attribute("leveli", lambda: float(self.leveli), self._set_leveli)
        self._num_attr(src, "limiti", "limiti", lambda v: self._check_limit(v, spec.i_ranges[-1], "limiti"))
        self._num_attr(src, "limitv", "limitv", lambda v: self._check_limit(v, spec.v_ranges[-1], "limitv"))
        self._num_attr(src, "offlimiti", "offlimiti", lambda v: self._check_limit(v, spec.i_ranges[-1], "offlimiti"))
        self._num_attr(src, "rangev", "rangev", lambda v: _fit_range(v, spec.v_ranges, "source.rangev"))
        self._num_attr(src, "rangei", "rangei", lambda v: _fit_range(v, spec.i_ranges, "source.rangei"))
        self._choice_attr(src, "autorangev", "autorangev", (0, 1))
        self._choice_attr(src, "autorangei", "autorangei", (0, 1))
        self._num_attr(src, "delay", "source_delay", self._check_delay)
        self._choice_attr(src, "offmode", "offmode", (OFFMODE_NORMAL, OFFMODE_ZERO, OFFMODE_HIGH_Z))
        src.attribute("output", lambda: float(self.output), self._set_output)
        src.attribute("compliance", self._compliance, None)
        smu.add("source", src)

        meas = HostTable(f"{s}.measure", members={
            "i": lambda buf=None: self.spot("i", buf),
            "v": lambda buf=None: self.spot("v", buf),
            "r": lambda buf=None: self.spot("r", buf),
            "p": lambda buf=None: self.spot("p", buf),
            "iv": lambda ibuf=None, vbuf=None: self.spot_iv(ibuf, vbuf),
        })
        self._num_attr(meas, "nplc", "nplc", self._check_nplc)
        self._num_attr(meas, "rangei", "meas_rangei", lambda v: _fit_range(v, spec.i_ranges, "measure.rangei"))
        self._num_attr(meas, "rangev", "meas_rangev", lambda v: _fit_range(v, spec.v_ranges, "measure.rangev"))
        self._choice_attr(meas, "autorangei", "meas_autorangei", (0, 1, 2))
        self._choice_attr(meas, "autorangev", "meas_autorangev", (0, 1))
        meas.attribute("autozero", lambda: float(self.autozero), self._set_autozero)
        self._num_attr(meas, "delay", "meas_delay", self._check_delay)
        self._num_attr(meas, "count", "meas_count", lambda v: float(self._check_count(v, "measure.count")))
        smu.add("measure", meas)

        trig = HostTable(f"{s}.trigger", members={
            **{f"{name}_EVENT_ID": float(eid) for name, eid in self.events.items()},
            "initiate": self.initiate,
        })
        self._num_attr(trig, "count", "trig_count", lambda v: float(self._check_count(v, "trigger.count")))
        arm = HostTable(f"{s}.trigger.arm")
        self._num_attr(arm, "count", "arm_count", lambda v: float(self._check_count(v, "trigger.arm.count")))
        self._stimulus(arm, self.arm_detector)
        trig.add("arm", arm)
        tsrc = HostTable(f"{s}.trigger.source", members={
            "listv": lambda t: self._set_list(table_numbers(t, "listv"), "v"),
            "listi": lambda t: self._set_list(table_numbers(t, "listi"), "i"),
            "linearv": lambda a, b, n: self._set_list(self._linear(a, b, n), "v"),
            "lineari": lambda a, b, n: self._set_list(self._linear(a, b, n), "i"),
        })
        self._choice_attr(tsrc, "action", "source_action", (0, 1))
        self._stimulus(tsrc, self.source_detector)
        tsrc.attribute("limiti", lambda: 0.0, lambda v: None)
        tsrc.attribute("limitv", lambda: 0.0, lambda v: None)
        trig.add("source", tsrc)
        tmeas = HostTable(f"{s}.trigger.measure", members={
            "i": lambda buf=None: self._set_measure_target("i", [buf]),
            "v": lambda buf=None: self._set_measure_target("v", [buf]),
            "r": lambda buf=None: self._set_measure_target("r", [buf]),
            "p": lambda buf=None: self._set_measure_target("p", [buf]),
            "iv": lambda ibuf=None, vbuf=None: self._set_measure_target("iv", [ibuf, vbuf]),
        })
        self._choice_attr(tmeas, "action", "measure_action", (0, 1))
        self._stimulus(tmeas, self.measure_detector)
        trig.add("measure", tmeas)
        endpulse = HostTable(f"{s}.trigger.endpulse")
        self._choice_attr(endpulse, "action", "endpulse_action", (SOURCE_IDLE, SOURCE_HOLD))
        self._stimulus(endpulse, self.endpulse_detector)
        trig.add("endpulse", endpulse)
        endsweep = HostTable(f"{s}.trigger.endsweep")
        self._choice_attr(endsweep, "action", "endsweep_action", (SOURCE_IDLE, SOURCE_HOLD))
        trig.add("endsweep", endsweep)
        trig.attribute("autoclear", lambda: 0.0, lambda v: None)
        smu.add("trigger", trig)
        return smu

    @staticmethod
    def _stimulus(table: HostTable, detector: Detector) -> None:
        table.attribute("stimulus", lambda: float(detector.stimulus),
                        lambda v: setattr(detector, "stimulus", to_int(v, f"{table.path}.stimulus")))
        table.add("set", lambda: setattr(detector, "set", True))

    # -- checks --------------------------------------------------------------------------------

    @staticmethod
    def _check_limit(v: float, maximum: float, what: str) -> float:
        if not (0 < abs(v) <= maximum * (1 + 1e-9)):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (source.{what} {v:g})")
        return abs(v)

    @staticmethod
    def _check_delay(v: float) -> float:
        if not (v == DELAY_AUTO or 0 <= v <= 1e4):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (delay {v:g})")
        return v

    @staticmethod
    def _check_nplc(v: float) -> float:
        if not 0.001 <= v <= 25:
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (measure.nplc {v:g})")
        return v

    @staticmethod
    def _check_count(v: float, what: str) -> int:
        if not (v == int(v) and 1 <= v <= 60_000):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({what} {v:g})")
        return int(v)

    def _source_range_v(self) -> float:
        if self.autorangev:
            return _fit_range(max(abs(self.levelv), self.spec.v_ranges[0]), self.spec.v_ranges, "source.levelv")
        return self.rangev

    def _check_level_v(self, v: float) -> float:
        limit = self.spec.v_ranges[-1] if self.autorangev else self.rangev
        if not (math.isfinite(v) and abs(v) <= limit * 1.01 + 1e-12):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (source.levelv {v:g} on the {limit:g} V range)")
        return v

    # -- attribute handlers ----------------------------------------------------------------------

    def _get_levelv(self) -> float:
        fault = self.emu.faults.take("misreport_level", None, self.letter)
        if fault is not None:
            return float(fault["level_v"])
        return float(self.levelv)

    def _set_autozero(self, value: Any) -> None:
        """``AUTOZERO_ONCE`` takes one reference measurement now and then reads back as ``OFF``."""
        v = to_number(value, f"{self.name}.measure.autozero")
        if v not in (AUTOZERO_OFF, AUTOZERO_ONCE, AUTOZERO_AUTO):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({self.name}.measure.autozero = {value})")
        if v == AUTOZERO_ONCE:
            self.emu.advance(self.nplc / self.emu.line_frequency_hz)
            v = AUTOZERO_OFF
        self.autozero = int(v)

    def _set_levelv(self, value: Any) -> None:
        self.levelv = self._check_level_v(to_number(value, f"{self.name}.source.levelv"))
        self.emu.apply(self.letter)

    def _set_leveli(self, value: Any) -> None:
        v = to_number(value, f"{self.name}.source.leveli")
        if not abs(v) <= self.spec.i_ranges[-1]:
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (source.leveli {v:g})")
        self.leveli = v
        self.emu.apply(self.letter)

    def _set_output(self, value: Any) -> None:
        v = to_number(value, f"{self.name}.source.output")
        if v not in (OUTPUT_OFF, OUTPUT_ON, OUTPUT_HIGH_Z):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({self.name}.source.output = {value})")
        if v != OUTPUT_OFF and self.emu.interlock_is_open() and self._source_range_v() > HIGH_VOLTAGE_RANGE_V:
            raise TspError(INTERLOCK_ERROR, "OUTPUT blocked by interlock (high-voltage range)")
        self.output = int(v)
        if self.output == OUTPUT_OFF:
            self.active_level = None
        self.emu.apply(self.letter)

    def _compliance(self) -> bool:
        forced_reading, self.forced_flag = self.forced_flag, False
        if forced_reading or self.emu.faults.take("force_compliance", None, self.letter) is not None:
            self.last_compliance = True
            return True
        state = self.emu.port_clamped(self.letter) if self.output != OUTPUT_OFF else False
        self.last_compliance = state
        return state

    def _set_list(self, values: list[float], kind: str) -> None:
        if not values:
            raise TspError(SETTINGS_CONFLICT, f"Settings conflict ({self.name}.trigger.source.list{kind}: empty list)")
        if kind == "v":
            for v in values:
                if not abs(v) <= self.spec.v_ranges[-1] * 1.01:
                    raise TspError(OUT_OF_RANGE, f"Parameter data out of range (list value {v:g})")
        self.sweep_list, self.sweep_kind = list(values), kind

    @staticmethod
    def _linear(a: Any, b: Any, n: Any) -> list[float]:
        start, stop, points = to_number(a), to_number(b), to_int(n)
        if points < 1:
            raise TspError(OUT_OF_RANGE, "Parameter data out of range (points)")
        if points == 1:
            return [start]
        return [start + (stop - start) * k / (points - 1) for k in range(points)]

    def _set_measure_target(self, what: str, buffers: list[Any]) -> None:
        bufs = [b for b in buffers if b is not None]
        for b in bufs:
            if not isinstance(b, ReadingBuffer):
                raise TspError(-286, f"TSP Runtime error: bad argument to {self.name}.trigger.measure.{what} (reading buffer expected)")
        self.measure_target = (what, bufs)

    # -- source state → world ----------------------------------------------------------------------

    def port_state(self) -> tuple[str, float, float]:
        """World port ``(mode, level, limit_a)`` for the present state."""
        if self.output == OUTPUT_OFF:
            if self.offmode == OFFMODE_HIGH_Z:
                return "open", 0.0, math.inf
            limit = self.limiti if self.offmode == OFFMODE_ZERO else self.offlimiti
            return "voltage", 0.0, limit
        if self.output == OUTPUT_HIGH_Z:
            return "open", 0.0, math.inf
        if self.func == FUNC_DCVOLTS:
            level = self.levelv if self.active_level is None else self.active_level
            return "voltage", level, self.limiti
        level = self.leveli if self.active_level is None else self.active_level
        return "current", level, math.inf

    # -- measurements ------------------------------------------------------------------------------

    def integration_s(self) -> float:
        factor = 2.0 if self.autozero == AUTOZERO_AUTO else 1.0
        return factor * self.nplc / self.emu.line_frequency_hz

    def _measure_delay_s(self) -> float:
        return AUTO_DELAY_S if self.meas_delay == DELAY_AUTO else self.meas_delay

    def _source_delay_s(self) -> float:
        return AUTO_DELAY_S if self.source_delay == DELAY_AUTO else self.source_delay

    def read(self, what: str) -> tuple[float, float, bool]:
        """One reading of ``what`` (``i``, ``v``, ``r``, ``p``) from the world now: ``(value, v_terminal, limit)``."""
        emu = self.emu
        forced = emu.faults.take("force_compliance", None, self.letter) is not None
        i_true, v_true, clamped = emu.port_reading(self.letter)
        mode, level, limit = self.port_state()
        if forced:
            i_true = math.copysign(self.limiti, level if level else 1.0)
            clamped = True
            self.forced_flag = True  # the next compliance query reports this reading's limit
        self.last_compliance = clamped
        i_range = (_fit_range(max(abs(i_true), self.spec.i_ranges[0]), self.spec.i_ranges, "measure.rangei")
                   if self.meas_autorangei and abs(i_true) <= self.spec.i_ranges[-1] else self.meas_rangei)
        v_range = (_fit_range(max(abs(v_true), self.spec.v_ranges[0]), self.spec.v_ranges, "measure.rangev")
                   if self.meas_autorangev and abs(v_true) <= self.spec.v_ranges[-1] else self.meas_rangev)
        world = emu.world
        if world is not None:
            i_meas = world.reading(i_true, i_range, self.nplc)
            v_meas = world.reading(v_true, v_range, self.nplc)
        else:
            i_meas, v_meas = i_true, v_true
        sentinel = emu.sentinel_value(self.letter)
        if what == "i":
            value = i_meas
        elif what == "v":
            value = v_meas
        elif what == "r":
            value = OVERFLOW_SENTINEL if i_meas == 0 or abs(i_meas) >= OVERFLOW_SENTINEL else v_meas / i_meas
        else:
            value = v_meas * i_meas if abs(i_meas) < OVERFLOW_SENTINEL else OVERFLOW_SENTINEL
        if sentinel is not None:
            value = sentinel
        return value, v_meas, clamped

    def spot(self, what: str, buf: Any = None) -> float:
        """``smuX.measure.<what>([buffer])``: one reading after the measure delay and integration."""
        self.emu.advance(self._measure_delay_s() + self.integration_s() * self.meas_count + SPOT_OVERHEAD_S)
        value, v_meas, clamped = self.read(what)
        if isinstance(buf, ReadingBuffer):
            buf.begin_series()
            buf.store(value, self._source_value(v_meas, clamped), self.emu.clock_now(),
                      STATUS_COMPLIANCE if clamped else 0)
        return value

    def spot_iv(self, ibuf: Any = None, vbuf: Any = None) -> tuple[float, float]:
        self.emu.advance(self._measure_delay_s() + self.integration_s() * self.meas_count + SPOT_OVERHEAD_S)
        i_value, v_meas, clamped = self.read("i")
        now = self.emu.clock_now()
        status = STATUS_COMPLIANCE if clamped else 0
        if isinstance(ibuf, ReadingBuffer):
            ibuf.begin_series()
            ibuf.store(i_value, self._source_value(v_meas, clamped), now, status)
        if isinstance(vbuf, ReadingBuffer):
            vbuf.begin_series()
            vbuf.store(v_meas, self._source_value(v_meas, clamped), now, status)
        return i_value, v_meas

    def _source_value(self, v_meas: float, clamped: bool) -> float:
        mode, level, _ = self.port_state()
        if mode == "voltage" and not clamped:
            return level
        return v_meas

    def condition_bits(self) -> float:
        """``status.measurement.instrument.smuX.condition``: 2 when the current limit is active."""
        return 2.0 if self._compliance() else 0.0

    # -- trigger model -------------------------------------------------------------------------------

    def reset(self) -> None:
        self.emu.scheduler.cancel(self.name)
        self.set_defaults()
        self.emu.apply(self.letter)

    def abort(self) -> None:
        """``smuX.abort()``: stop the trigger model; the source returns to its programmed level."""
        self.emu.scheduler.cancel(self.name)
        self.running = False
        self.active_level = None
        self.emu.apply(self.letter)
        self.emu.after_abort()

    def initiate(self) -> None:
        """``smuX.trigger.initiate()``: start the trigger model, then let simulated time run."""
        if self.running:
            raise TspError(-286, f"TSP Runtime error: {self.name} trigger model already running")
        if self.source_action and not self.sweep_list:
            raise TspError(SETTINGS_CONFLICT, f"Settings conflict ({self.name}: source action enabled with an empty list)")
        for det in (self.arm_detector, self.source_detector, self.measure_detector, self.endpulse_detector):
            det.set = False
        if self.measure_action:
            for buf in self.measure_target[1]:
                buf.begin_series()
        self.running = True
        self.emu.scheduler.start(self.name, self.process())
        self.emu.run_trigger_model()
        self.emu.arm_bench_trigger_if_waiting()

    def process(self) -> Generator[Union[Wait, Delay], None, None]:
        """The trigger model of this channel as a scheduler process."""
        emu, sched = self.emu, self.emu.scheduler
        try:
            sched.emit(self.events["SWEEPING"])
            for _arm in range(int(self.arm_count)):
                sched.emit(self.events["ARMED"])
                yield Wait(self.arm_detector)
                for k in range(int(self.trig_count)):
                    yield Wait(self.source_detector)
                    if self.source_action:
                        self.active_level = self.sweep_list[k % len(self.sweep_list)]
                        emu.apply(self.letter)
                    yield Delay(SWEEP_STEP_OVERHEAD_S + self._source_delay_s())
                    sched.emit(self.events["SOURCE_COMPLETE"])
                    yield Wait(self.measure_detector)
                    if self.measure_action:
                        yield Delay(self._measure_delay_s())
                        emu.bench_measure_step()  # instruments waiting on this one's trigger line measure now
                        for _ in range(int(self.meas_count)):
                            half = self.integration_s() / 2
                            yield Delay(half)
                            self._store_trigger_reading(sched.now_s)
                            yield Delay(half)
                    sched.emit(self.events["MEASURE_COMPLETE"])
                    yield Wait(self.endpulse_detector)
                    if self.endpulse_action == SOURCE_IDLE and self.source_action:
                        self.active_level = None
                        emu.apply(self.letter)
                    sched.emit(self.events["PULSE_COMPLETE"])
            if self.endsweep_action == SOURCE_HOLD and self.active_level is not None:
                if self.sweep_kind == "v":
                    self.levelv = self.active_level
                else:
                    self.leveli = self.active_level
            self.active_level = None
            emu.apply(self.letter)
            sched.emit(self.events["SWEEP_COMPLETE"])
        finally:
            self.running = False
        sched.emit(self.events["IDLE"])

    def _store_trigger_reading(self, at_s: float) -> None:
        what, buffers = self.measure_target
        if what == "iv":
            value, v_meas, clamped = self.read("i")
            values = [value, v_meas]
        else:
            value, v_meas, clamped = self.read(what)
            values = [value]
        status = STATUS_COMPLIANCE if clamped else 0
        source_value = self._source_value(v_meas, clamped)
        for buf, val in zip(buffers, values):
            buf.store(val, source_value, at_s, status)


class Smu2600Emulator(TspEmulator):
    """Emulated Keithley 2600B (see the module docstring).

    Args:
        name, model, world, clock, ports, serial, options: see ``hil.emulate.base.Emulator``;
            ``ports`` maps channel letters (``"a"``, ``"b"``) to world ports.
        options: ``firmware`` (``*IDN?`` firmware field, default ``"4.0.0"``).
    """

    FAMILY = "keithley2600"
    MODELS = tuple(MODEL_SPECS)

    def __init__(self, name: str, model: str = "2602B", **kwargs: Any) -> None:
        super().__init__(name, model, **kwargs)
        self.spec = MODEL_SPECS[model]
        unknown = [ch for ch in self.ports if ch not in self.spec.channels]
        if unknown:
            raise ValueError(f"{name}: model {model} has no channel(s) {unknown}; channels {self.spec.channels}")
        self.firmware = str(self.options.get("firmware", "4.0.0"))
        self.line_frequency_hz = float(self.world.line_frequency_hz if self.world is not None else
                                       self.options.get("line_frequency_hz", 50.0))
        self.scheduler = TriggerScheduler(self.clock.now_s, on_overrun=self._overrun)
        self.machine = TspMachine(
            idn=self.idn(), model=model, serial=self.serial, firmware=self.firmware,
            line_frequency_hz=self.line_frequency_hz, advance=self.advance, now=self.clock_now,
            reset=self.reset, errors=self.errors, push_error=self.push_error)
        self.machine.waitcomplete_hook = self.waitcomplete
        self.machine.full_precision = self.world is not None and self.world.exact
        self.channels: dict[str, SmuChannel] = {}
        for k, letter in enumerate(self.spec.channels):
            ch = SmuChannel(self, letter, event_base=100 * (k + 1))
            self.channels[letter] = ch
            self.machine.define(ch.name, ch.table)
        self._bench_done = threading.Event()
        self._bench_done.set()
        self._bench_armed = False
        self._bench_point = 0
        self._pending_measure: Optional[int] = None
        self._followers_s = 0.0
        self._install_status_and_trigger()
        from hil.emulate.kipulse import install_kipulse

        install_kipulse(self)  # ConfigPulseVMeasureI / InitiatePulseTest (programming pulses)
        self._install_digio()
        for letter in self.channels:
            self.apply(letter)

    # -- Emulator API ----------------------------------------------------------------------------

    def idn(self) -> str:
        return f"Keithley Instruments Inc., Model {self.model}, {self.serial}, {self.options.get('firmware', '4.0.0')}"

    def reset(self) -> None:
        """``reset()`` / ``*RST``: both channels to defaults (output off), format ASCII."""
        super().reset()
        if not hasattr(self, "channels"):
            return
        self.scheduler.cancel()
        self.scheduler.clear_pending()
        self._disarm_bench()
        for line in getattr(self, "digio_lines", {}).values():
            line.reset()
        for ch in self.channels.values():
            ch.set_defaults()
            self.apply(ch.letter)
        self.machine.reset_format()

    # -- helpers ---------------------------------------------------------------------------------

    def clock_now(self) -> float:
        return self.clock.now_s

    def apply(self, letter: str) -> None:
        """Push channel ``letter``'s output state to the world (and the transcript)."""
        ch = self.channels.get(letter) if hasattr(self, "channels") else None
        if ch is None:
            return
        mode, level, limit = ch.port_state()
        self.set_port_source(letter, output_on=ch.output != OUTPUT_OFF, mode=mode, level=level,
                             limit_a=limit, level_v=ch.levelv if ch.active_level is None else ch.active_level)

    def port_reading(self, letter: str) -> tuple[float, float, bool]:
        """True ``(current A, terminal voltage V, clamped)`` of a channel from the world."""
        ch = self.channels[letter]
        port = self.port(letter)
        mode, level, limit = ch.port_state()
        if port is None or self.world is None:
            # not wired: an open terminal
            if mode == "voltage":
                return 0.0, level, False
            return 0.0, 0.0, False
        with self.world.lock:
            return self.world.port_current(port), self.world.port_voltage(port), self.world.clamped(port)

    def port_clamped(self, letter: str) -> bool:
        return self.port_reading(letter)[2]

    def run_trigger_model(self) -> None:
        """Let the simulated trigger model run until it finishes or waits; advance the clock.

        Instruments triggered by this one's digital I/O line work in parallel with it: the bench
        time they took while measuring (advanced on the shared clock during the ``measure`` steps)
        counts against this run's own duration instead of adding to it.
        """
        start = max(self.scheduler.now_s, self.clock.now_s)
        self.scheduler.now_s = start
        self._followers_s = 0.0
        end = self.scheduler.run()
        elapsed = end - start
        if self._followers_s > elapsed * (1 + 1e-9) + 1e-12:
            self.transcript.record("event", f"instruments on the trigger line took {self._followers_s:.6g} s, "
                                   f"longer than the paced run ({elapsed:.6g} s): a real bench would miss "
                                   "trigger pulses")
        if elapsed > self._followers_s:
            self.advance(elapsed - self._followers_s)
        self._followers_s = 0.0

    def waitcomplete(self) -> None:
        """``waitcomplete()`` / ``*OPC?`` / ``*WAI``: run the trigger model; a channel still waiting for
        an event that nothing will produce would block the instrument — recorded as an event.
        A channel waiting for a digital I/O line first waits (bounded) for the bench trigger."""
        if self._bench_armed and self.world is not None and not self.world.trigger.wait(self._bench_done):
            self.transcript.record("event", "waitcomplete(): no pulse on the bench trigger line")
        self.run_trigger_model()
        waiting = self.scheduler.waiting()
        if waiting:
            self.transcript.record("event", f"waitcomplete(): trigger model waiting for an event that does "
                                   f"not come: {', '.join(waiting)}", waiting=waiting)

    # -- digital I/O trigger lines and the bench trigger -------------------------------------------

    def _install_digio(self) -> None:
        """``digio.trigger[1..14]`` (not on the 2604B/2614B/2634B, which have no digital I/O port)."""
        self.digio_lines: dict[int, DigioLine] = {}
        if self.model in NO_DIGIO_MODELS:
            return
        lines = LuaTable()
        for n in range(1, DIGIO_LINES + 1):
            line = DigioLine(n)
            self.digio_lines[n] = line
            table = HostTable(f"digio.trigger[{n}]", members={
                "EVENT_ID": float(line.event_id),
                "clear": lambda l=line: setattr(l, "overrun", False),
                "release": lambda: None,
                "assert": lambda l=line: self._drive_line(l),
                "reset": lambda l=line: l.reset(),
            })
            table.attribute("mode", lambda l=line: float(l.mode), lambda v, l=line: l.set_mode(v))
            table.attribute("stimulus", lambda l=line: float(l.stimulus),
                            lambda v, l=line: setattr(l, "stimulus", to_int(v, "digio.trigger.stimulus")))
            table.attribute("pulsewidth", lambda l=line: l.pulsewidth_s, lambda v, l=line: l.set_pulsewidth(v))
            table.attribute("overrun", lambda l=line: l.overrun)
            lines.set(n, table)
        constants = {name: float(k) for k, name in enumerate(DIGIO_MODES)}
        self.machine.define("digio", HostTable("digio", members={"trigger": lines, **constants}))
        self.scheduler.emit_hooks.append(self._on_event)

    def _on_event(self, event_id: int) -> None:
        for line in self.digio_lines.values():
            if line.mode != 0 and line.stimulus == event_id:
                self._drive_line(line)

    def _drive_line(self, line: "DigioLine") -> None:
        """An output trigger on ``line``: every instrument armed on the bench trigger steps its source."""
        line.pulses += 1
        if self.world is None:
            return
        k = self._bench_point
        self._bench_point += 1
        with self.world.lock:
            self.world.trigger.pulse("source", k)
        self._pending_measure = k

    def bench_measure_step(self) -> None:
        """Called when a channel of this instrument starts a measurement: the instruments armed on
        the trigger line this one drives take their reading of the same point (bench time they spend
        is accounted as parallel work in :meth:`run_trigger_model`)."""
        k, self._pending_measure = self._pending_measure, None
        if k is None or self.world is None:
            return
        t0 = self.clock.now_s
        with self.world.lock:
            self.world.trigger.pulse("measure", k)
            self.world.trigger.settle()  # the meters' parallel readings end here: count them as followers' time
        self._followers_s += self.clock.now_s - t0

    def arm_bench_trigger_if_waiting(self) -> None:
        """After ``initiate()``: a trigger model waiting for a digital I/O line's event listens to the
        bench trigger line (the cable joining the instruments' digital I/O pins)."""
        if self.world is None or not self.digio_lines:
            return
        ids = {line.event_id: line for line in self.digio_lines.values() if line.mode != 0}
        if any(det.stimulus in ids for det in self.scheduler.waiting_detectors()):
            self._bench_done.clear()
            self._bench_armed = True
            self.world.trigger.arm(self._on_bench_trigger)

    def _disarm_bench(self) -> None:
        if getattr(self, "world", None) is not None and hasattr(self, "_on_bench_trigger"):
            self.world.trigger.disarm(self._on_bench_trigger)
        self._bench_armed = False
        self._bench_done.set()

    def _on_bench_trigger(self, step: str, point: int) -> None:
        """A pulse on the bench trigger line: ``source`` = the falling edge every waiting detector
        latches (the source action runs at once); ``measure`` = let the delays and the measurement
        of this point run (in parallel with the driving instrument: the shared clock is not advanced)."""
        waiting = {det.stimulus for det in self.scheduler.waiting_detectors()}
        if step == "source":
            now = max(self.scheduler.now_s, self.clock.now_s)
            self.scheduler.now_s = now
            for line in self.digio_lines.values():
                if line.mode != 0 and line.event_id in waiting:
                    self.scheduler.emit(line.event_id)
            self.scheduler.run(until_s=now)
            return
        self.scheduler.run()
        if not any(ch.running for ch in self.channels.values()):
            self._disarm_bench()

    def after_abort(self) -> None:
        """``smuX.abort()``: once no channel runs, pending timer events and the bench trigger are dropped."""
        if not any(ch.running for ch in self.channels.values()):
            self.scheduler.clear_pending()
            self._disarm_bench()
            self._pending_measure = None

    def _overrun(self, detector: Detector) -> None:
        self.transcript.record("event", f"trigger overrun on {detector.name} (event lost)", detector=detector.name)

    def _install_status_and_trigger(self) -> None:
        instrument = HostTable("status.measurement.instrument")
        for letter, ch in self.channels.items():
            instrument.add(ch.name, HostTable(f"status.measurement.instrument.{ch.name}",
                                              attributes={"condition": (ch.condition_bits, None)}))
        measurement = HostTable("status.measurement", members={"instrument": instrument},
                                attributes={"condition": (lambda: 0.0, None)})
        self.machine.define("status", HostTable("status", members={"measurement": measurement, "reset": lambda: None},
                                                attributes={"condition": (lambda: 0.0, None)}))
        blenders = LuaTable()
        for k in range(1, 7):
            inputs = [self.scheduler.add_detector(Detector(f"trigger.blender[{k}].stimulus[{j}]")) for j in range(1, 5)]
            blender = Blender(event_id=1000 + k, inputs=inputs)
            self.scheduler.blenders.append(blender)
            table = HostTable(f"trigger.blender[{k}]", members={
                "EVENT_ID": float(blender.event_id),
                "clear": lambda b=blender: [setattr(d, "set", False) for d in b.inputs] and None,
                "reset": lambda b=blender: self._reset_blender(b),
            })
            table.attribute("orenable", lambda b=blender: b.orenable,
                            lambda v, b=blender: setattr(b, "orenable", to_bool(v) and v != 0))
            table.add("stimulus", _StimulusArray(f"trigger.blender[{k}].stimulus", inputs))
            blenders.set(k, table)
        timers = LuaTable()
        for k in range(1, 9):
            det = self.scheduler.add_detector(Detector(f"trigger.timer[{k}].stimulus"))
            timer = Timer(event_id=2000 + k, detector=det)
            self.scheduler.timers.append(timer)
            table = HostTable(f"trigger.timer[{k}]", members={"EVENT_ID": float(timer.event_id)})
            table.attribute("delay", lambda t=timer: t.delay_s,
                            lambda v, t=timer: setattr(t, "delay_s", max(to_number(v, "timer.delay"), 0.0)))
            table.attribute("count", lambda t=timer: float(t.count),
                            lambda v, t=timer: setattr(t, "count", to_int(v, "timer.count")))
            table.attribute("passthrough", lambda t=timer: t.passthrough,
                            lambda v, t=timer: setattr(t, "passthrough", to_bool(v) and v != 0))
            table.attribute("stimulus", lambda d=det: float(d.stimulus),
                            lambda v, d=det: setattr(d, "stimulus", to_int(v, "timer.stimulus")))
            timers.set(k, table)
        self.machine.define("trigger", HostTable("trigger", members={"blender": blenders, "timer": timers}))

    @staticmethod
    def _reset_blender(blender: Blender) -> None:
        blender.orenable = False
        for d in blender.inputs:
            d.stimulus, d.set = 0, False


@dataclass
class DigioLine:
    """``digio.trigger[N]``: mode (0 = bypass, 1 = falling edge, ...), output stimulus, pulse width."""

    number: int
    mode: int = 0
    stimulus: int = 0
    pulsewidth_s: float = 10e-6
    overrun: bool = False
    pulses: int = 0

    @property
    def event_id(self) -> int:
        return DIGIO_EVENT_BASE + self.number

    def reset(self) -> None:
        self.mode, self.stimulus, self.pulsewidth_s, self.overrun = 0, 0, 10e-6, False

    def set_mode(self, value: Any) -> None:
        mode = to_int(value, "digio.trigger.mode")
        if not 0 <= mode < len(DIGIO_MODES):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (digio.trigger[{self.number}].mode {mode})")
        self.mode = mode

    def set_pulsewidth(self, value: Any) -> None:
        width = to_number(value, "digio.trigger.pulsewidth")
        if width < 0:
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (digio.trigger[{self.number}].pulsewidth)")
        self.pulsewidth_s = width


class _StimulusArray(HostTable):
    """``trigger.blender[N].stimulus[M]`` (read/write by index)."""

    def __init__(self, path: str, detectors: list[Detector]) -> None:
        super().__init__(path)
        self.detectors = detectors

    def index(self, key: Any) -> Any:
        k = int(to_number(key))
        return float(self.detectors[k - 1].stimulus) if 1 <= k <= len(self.detectors) else None

    def tsp_set(self, key: Any, value: Any) -> None:
        k = int(to_number(key, f"{self.path} index"))
        if not 1 <= k <= len(self.detectors):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({self.path}[{k}])")
        self.detectors[k - 1].stimulus = to_int(value, self.path)
