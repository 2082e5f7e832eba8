"""Keysight B2900 SMU personality (B2901A/B2902A and the B/BL variants, SCPI); channels ``"1"``/``"2"``.

Implements what ``hil.drivers.keysight_b2900`` sends and other legal spellings (long forms,
lower case, omitted optional nodes such as ``:LEVel:IMMediate:AMPLitude``, ``:FUNCtion[:ON]``,
``:TRIGger#[:ALL|:ACQuire|:TRANsient]``, ``:INITiate[:IMMediate][:ALL]``, ``:ABORt[:ALL]``,
``:FETCh:ARRay[:CURRent]?``, ``:MEASure[:CURRent]?``), including those of PyMeasure's B2900
driver (``:outp1 1``, ``:sour1:volt 0.1``, ``:sens1:curr:prot 1e-3``, ``:meas:curr? (@1)``).

Channel addressing: numeric suffix on ``SOUR``/``SENS``/``OUTP``/``TRIG`` (omitted = 1, suffix 2 on a
one-channel model → −114) and channel lists ``(@1,2)`` on ``MEAS``/``READ``/``FETC``/``INIT``/``ABOR``.

Behaviour: ``*RST`` (outputs off, 0 V, 100 µA limit, NPLC 1, autorange on, off-mode NORMAL, lists
empty, trigger count 1); the current limit clamps in the world; ``:OUTP#:PROT ON`` switches a
channel off (0 V, relay open) when it reaches compliance: at once when its own level or limit
puts it there, otherwise at its next measurement (spot or sweep) or output-state query;
list sweeps step every initiated channel together (one world solve per point, acquire delay, then
integration), fill the buffer, and ``:FETC:ARR?`` interleaves channels per point
(``CURR,STAT,SOUR`` by ``:FORM:ELEM:SENS``), unfilled points reading ``+9.910000E+37``; binary
read-back (``:FORM:DATA REAL,64``, ``:FORM:BORD NORM|SWAP``) as an IEEE 488.2 definite block.
A list point lasts the larger transient + acquire delay of the initiated channels, their longest
integration and a fixed 50 µs of trigger handling; while it lasts, its level acts on the resistive
devices selected onto the channel's port through the same pulse physics as the 2600B's KIPulse
pulses (``World.pulse``; levels at or below the devices' threshold change nothing), recorded as a
``pulse`` event. That is how the driver's list-based ``pulse()`` programs emulated devices. Fixed
levels and points stepped by the bench trigger line (followers) do not act on devices.
Status word: bit 1 (value 2) = current compliance, bit 3 (value 8) = output protection tripped
(an emulator convention matching the driver's compliance mask).
"""

from __future__ import annotations

import math
import threading
import struct
from typing import Any, Optional

from hil.emulate.scpi import Command, ScpiEmulator, ScpiError, format_nr3, scpi
from hil.emulate.smu_common import SmuChannel, apply_output, integration_s, pick_range, spot_reading
from hil.emulate.world import MISSING_SENTINEL

__all__ = ["SmuB2900Emulator"]

V_RANGES = (0.2, 2.0, 20.0, 200.0)
I_RANGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.5, 3.0)
_ELEMENT_NAMES = ("VOLTage", "CURRent", "RESistance", "TIME", "STATus", "SOURce")
_STAT_COMPLIANCE = 2
_STAT_PROTECTION = 8
_MAX_LIST = 2500
#: per list point, on top of the delays and the integration (trigger handling), s
_POINT_OVERHEAD_S = 50e-6


def _fmt(value: float) -> str:
    return format_nr3(value, 6)


class SmuB2900Emulator(ScpiEmulator):
    """Emulated Keysight B2901A/B2902A (see the module docstring)."""

    FAMILY = "keysight_b2900"
    MODELS = ("B2901A", "B2902A", "B2911A", "B2912A", "B2901B", "B2902B", "B2911B", "B2912B", "B2901BL", "B2910BL")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_names = ("1", "2") if self.model[4:5] == "2" else ("1",)
        self.reset()

    def idn(self) -> str:
        return f"Keysight Technologies,{self.model},{self.serial},3.4.2011.5100"

    def reset(self) -> None:
        self._disarm_bench_trigger()
        self.chans: dict[str, SmuChannel] = {}
        for ch in self.channel_names:
            state = SmuChannel(func="VOLT", level_v=0.0, v_range=2.0, v_autorange=True, i_limit_a=1e-4,
                               i_range_a=1e-4, i_autorange=True, output_on=False, off_mode="NORM", nplc=1.0,
                               autozero=False, source_delay_s=0.0)
            state.extra.update(trig_count=1, acq_delay=0.0, tran_delay=0.0, trig_source="AINT",
                               on_auto=False, off_auto=False, buffer=[], points=0, tout=False, tout_signal="EXT1")
            self.chans[ch] = state
        self.elements = ["VOLTage", "CURRent", "RESistance", "TIME", "STATus", "SOURce"]
        self.data_format = "ASC"
        self.byte_order = "NORM"
        self.t0 = self.clock.now_s
        for ch in self.channel_names:
            apply_output(self, ch, self.chans[ch])

    # -- helpers ---------------------------------------------------------------------------------

    def _ch(self, cmd: Command) -> tuple[str, SmuChannel]:
        n = cmd.suffix
        name = str(n)
        if name not in self.chans:
            raise ScpiError(-114, f"channel {n} on a {self.model}")
        return name, self.chans[name]

    def _chanlist(self, cmd: Command, index: int) -> list[str]:
        if not cmd.has(index):
            return ["1"]
        chans = [str(c) for c in cmd.channels(index)]
        for c in chans:
            if c not in self.chans:
                raise ScpiError(-114, f"channel {c} on a {self.model}")
        return chans

    def _apply(self, ch: str) -> None:
        """Apply the output state to the world; with output protection on, a channel that lands at
        its limit is switched off at once (0 V, relay open), as the instrument does."""
        state = self.chans[ch]
        apply_output(self, ch, state)
        port = self.port(ch)
        if state.output_on and state.protection and port is not None and self.world.clamped(port):
            self._trip_protection(ch)

    def _trip_protection(self, ch: str) -> None:
        state = self.chans[ch]
        state.tripped = True
        state.output_on = False
        state.level_v = 0.0
        state.extra["protection_tripped"] = True
        self.transcript.record("event", f"output protection: channel {ch} switched off at compliance")
        self.set_port_source(ch, output_on=False, mode="open", level_v=0.0)

    def _measure_point(self, ch: str, line: Optional[str]) -> dict[str, float]:
        """One reading of ``ch``; the caller advances the clock (channels integrate in parallel)."""
        state = self.chans[ch]
        r = spot_reading(self, ch, state, line, advance_clock=False)
        status = _STAT_COMPLIANCE if r.in_limit else 0
        if r.in_limit and state.protection and state.output_on:
            self._trip_protection(ch)
        if state.extra.get("protection_tripped"):
            status |= _STAT_PROTECTION
        return {"VOLTage": r.voltage_v, "CURRent": r.current_a, "RESistance": MISSING_SENTINEL,
                "TIME": self.clock.now_s - self.t0, "STATus": float(status),
                "SOURce": state.level_v if state.output_on or not state.extra.get("protection_tripped") else 0.0}

    def _format_values(self, values: list[float]) -> Any:
        if self.data_format == "ASC":
            decimals = self.reply_decimals(6)
            return ",".join(format_nr3(v if not math.isnan(v) else MISSING_SENTINEL, decimals) for v in values)
        kind = "d" if self.data_format == "REAL64" else "f"
        order = ">" if self.byte_order == "NORM" else "<"
        body = struct.pack(f"{order}{len(values)}{kind}", *values)
        size = str(len(body))
        return b"#" + str(len(size)).encode() + size.encode() + body

    # -- source ----------------------------------------------------------------------------------

    @scpi("[:SOURce#]:FUNCtion:MODE")
    def _func(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        func = "VOLT" if cmd.choice(0, ("VOLTage", "CURRent")) == "VOLTage" else "CURR"
        if func != st.func:
            st.output_on = False
            st.func, st.level_v = func, 0.0
            self._apply(ch)

    @scpi("[:SOURce#]:FUNCtion:MODE", query=True)
    def _func_q(self, cmd: Command) -> str:
        return self._ch(cmd)[1].func

    @scpi("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def _level(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        top = 210.0 if st.v_autorange else st.v_range * 1.05
        value = cmd.number(0, lo=-210.0, hi=210.0, default=0.0, minimum=-top, maximum=top)
        if abs(value) > top:
            raise ScpiError(-222, "level outside the present range")
        if st.v_autorange:
            st.v_range = pick_range(value, V_RANGES) or 200.0
        st.level_v = value
        self._apply(ch)

    @scpi("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _level_q(self, cmd: Command) -> str:
        ch, st = self._ch(cmd)
        mis = self.faults.take("misreport_level", cmd.text, ch)
        return _fmt(mis["level_v"] if mis is not None else st.level_v)

    @scpi("[:SOURce#]:VOLTage[:LEVel]:TRIGgered[:AMPLitude]")
    def _level_trig(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        st.extra["triggered_level"] = cmd.number(0, lo=-210.0, hi=210.0)

    @scpi("[:SOURce#]:VOLTage:MODE")
    def _vmode(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        st.voltage_mode = {"FIXed": "FIX", "LIST": "LIST", "SWEep": "SWE"}[cmd.choice(0, ("FIXed", "LIST", "SWEep"))]

    @scpi("[:SOURce#]:VOLTage:MODE", query=True)
    def _vmode_q(self, cmd: Command) -> str:
        return self._ch(cmd)[1].voltage_mode

    @scpi("[:SOURce#]:VOLTage:RANGe")
    def _vrange(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        rng = pick_range(cmd.number(0, lo=-210.0, hi=210.0, default=2.0, minimum=0.2, maximum=200.0), V_RANGES)
        if rng is None:
            raise ScpiError(-222)
        st.v_range, st.v_autorange = rng, False

    @scpi("[:SOURce#]:VOLTage:RANGe", query=True)
    def _vrange_q(self, cmd: Command) -> str:
        return _fmt(self._ch(cmd)[1].v_range)

    @scpi("[:SOURce#]:VOLTage:RANGe:AUTO")
    def _vrange_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].v_autorange = cmd.boolean(0)

    @scpi("[:SOURce#]:LIST:VOLTage")
    def _list(self, cmd: Command) -> None:
        ch, st = self._ch(cmd)
        if not cmd.params:
            raise ScpiError(-109)
        values = [cmd.number(k, lo=-210.0, hi=210.0) for k in range(len(cmd.params))]
        if len(values) > _MAX_LIST:
            raise ScpiError(-225, "list too long")
        st.list_v = values

    @scpi("[:SOURce#]:LIST:VOLTage:APPend")
    def _list_append(self, cmd: Command) -> None:
        ch, st = self._ch(cmd)
        if not cmd.params:
            raise ScpiError(-109)
        values = [cmd.number(k, lo=-210.0, hi=210.0) for k in range(len(cmd.params))]
        if len(st.list_v) + len(values) > _MAX_LIST:
            raise ScpiError(-225, "list too long")
        st.list_v.extend(values)

    @scpi("[:SOURce#]:LIST:VOLTage", query=True)
    def _list_q(self, cmd: Command) -> str:
        return ",".join(_fmt(v) for v in self._ch(cmd)[1].list_v)

    @scpi("[:SOURce#]:LIST:VOLTage:POINts", query=True)
    def _list_points_q(self, cmd: Command) -> str:
        return str(len(self._ch(cmd)[1].list_v))

    # -- sense -----------------------------------------------------------------------------------

    @scpi("[:SENSe#]:FUNCtion[:ON]")
    def _sense_func(self, cmd: Command) -> None:
        if not cmd.params:
            raise ScpiError(-109)
        for k in range(len(cmd.params)):
            cmd.choice(k, ("CURRent", "VOLTage", "RESistance"))

    @scpi("[:SENSe#]:FUNCtion:OFF")
    def _sense_func_off(self, cmd: Command) -> None:
        for k in range(len(cmd.params)):
            cmd.choice(k, ("CURRent", "VOLTage", "RESistance"))

    @scpi("[:SENSe#]:CURRent[:DC]:RANGe[:UPPer]")
    def _irange(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        rng = pick_range(cmd.number(0, lo=-3.03, hi=3.03, default=1e-4, minimum=1e-8, maximum=3.0), I_RANGES)
        if rng is None:
            raise ScpiError(-222)
        st.i_range_a, st.i_autorange = rng, False
        if not st.output_on:
            self._apply(ch)

    @scpi("[:SENSe#]:CURRent[:DC]:RANGe[:UPPer]", query=True)
    def _irange_q(self, cmd: Command) -> str:
        return _fmt(self._ch(cmd)[1].i_range_a)

    @scpi("[:SENSe#]:CURRent[:DC]:RANGe:AUTO")
    def _irange_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].i_autorange = cmd.boolean(0)

    @scpi("[:SENSe#]:CURRent[:DC]:RANGe:AUTO", query=True)
    def _irange_auto_q(self, cmd: Command) -> str:
        return "1" if self._ch(cmd)[1].i_autorange else "0"

    @scpi("[:SENSe#]:CURRent[:DC]:NPLCycles")
    def _nplc(self, cmd: Command) -> None:
        cmd.count(1)
        f = self.world.line_frequency_hz if self.world is not None else 50.0
        hi = 100.0 if f == 50.0 else 120.0
        self._ch(cmd)[1].nplc = cmd.number(0, lo=4e-4 if f == 50.0 else 4.8e-4, hi=hi, default=1.0)

    @scpi("[:SENSe#]:CURRent[:DC]:NPLCycles", query=True)
    def _nplc_q(self, cmd: Command) -> str:
        return _fmt(self._ch(cmd)[1].nplc)

    @scpi("[:SENSe#]:CURRent[:DC]:APERture")
    def _aper(self, cmd: Command) -> None:
        cmd.count(1)
        f = self.world.line_frequency_hz if self.world is not None else 50.0
        self._ch(cmd)[1].nplc = cmd.number(0, lo=8e-6, hi=2.0, default=0.1 / f) * f

    @scpi("[:SENSe#]:CURRent[:DC]:APERture", query=True)
    def _aper_q(self, cmd: Command) -> str:
        f = self.world.line_frequency_hz if self.world is not None else 50.0
        return _fmt(self._ch(cmd)[1].nplc / f)

    @scpi("[:SENSe#]:CURRent[:DC]:PROTection[:LEVel]")
    @scpi("[:SENSe#]:CURRent[:DC]:PROTection[:LEVel]:BOTH")
    def _prot(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        st.i_limit_a = cmd.number(0, lo=1e-9, hi=3.03, default=1e-4, minimum=1e-9, maximum=3.03)
        st.tripped = False
        self._apply(ch)

    @scpi("[:SENSe#]:CURRent[:DC]:PROTection[:LEVel]", query=True)
    def _prot_q(self, cmd: Command) -> str:
        return _fmt(self._ch(cmd)[1].i_limit_a)

    @scpi("[:SENSe#]:CURRent[:DC]:PROTection:TRIPped", query=True)
    def _trip_q(self, cmd: Command) -> str:
        ch, st = self._ch(cmd)
        port = self.port(ch)
        if st.output_on and port is not None and self.world.clamped(port):
            st.tripped = True
        return "1" if st.tripped else "0"

    @scpi("[:SENSe#]:REMote")
    def _remote(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].four_wire = cmd.boolean(0)

    # -- output ----------------------------------------------------------------------------------

    @scpi(":OUTPut#[:STATe]")
    def _output(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        on = cmd.boolean(0)
        if on and self.interlock_is_open():
            raise ScpiError(-200, "interlock open")
        if on != st.output_on:
            st.output_on = on
            if on:
                st.tripped = False
                st.extra["protection_tripped"] = False
            self._apply(ch)

    @scpi(":OUTPut#[:STATe]", query=True)
    def _output_q(self, cmd: Command) -> str:
        ch, st = self._ch(cmd)
        port = self.port(ch)
        if st.output_on and st.protection and port is not None and self.world.clamped(port):
            self._trip_protection(ch)   # another instrument pushed this channel to its limit
        return "1" if st.output_on else "0"

    @scpi(":OUTPut#:OFF:MODE")
    def _off_mode(self, cmd: Command) -> None:
        cmd.count(1)
        ch, st = self._ch(cmd)
        st.off_mode = {"ZERO": "ZERO", "HIZ": "HIZ", "NORMal": "NORM"}[cmd.choice(0, ("ZERO", "HIZ", "NORMal"))]
        if not st.output_on:
            self._apply(ch)

    @scpi(":OUTPut#:OFF:MODE", query=True)
    def _off_mode_q(self, cmd: Command) -> str:
        return self._ch(cmd)[1].off_mode

    @scpi(":OUTPut#:ON:AUTO")
    def _on_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["on_auto"] = cmd.boolean(0)

    @scpi(":OUTPut#:OFF:AUTO")
    def _off_auto(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["off_auto"] = cmd.boolean(0)

    @scpi(":OUTPut#:PROTection[:STATe]")
    def _protection(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].protection = cmd.boolean(0)

    @scpi(":OUTPut#:PROTection[:STATe]", query=True)
    def _protection_q(self, cmd: Command) -> str:
        return "1" if self._ch(cmd)[1].protection else "0"

    # -- trigger ---------------------------------------------------------------------------------

    @scpi(":TRIGger#[:ALL]:SOURce[:SIGNal]")
    @scpi(":TRIGger#:ACQuire:SOURce[:SIGNal]")
    @scpi(":TRIGger#:TRANsient:SOURce[:SIGNal]")
    def _trig_source(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["trig_source"] = cmd.choice(0, ("AINT", "BUS", "TIMer", "INT1", "INT2", "LAN", "EXT1"))

    @scpi(":TRIGger#[:ALL]:COUNt")
    @scpi(":TRIGger#:ACQuire:COUNt")
    @scpi(":TRIGger#:TRANsient:COUNt")
    def _trig_count(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["trig_count"] = cmd.integer(0, lo=1, hi=100_000, default=1)

    @scpi(":TRIGger#[:ALL]:COUNt", query=True)
    @scpi(":TRIGger#:ACQuire:COUNt", query=True)
    def _trig_count_q(self, cmd: Command) -> str:
        return str(self._ch(cmd)[1].extra["trig_count"])

    @scpi(":TRIGger#[:ALL]:DELay")
    def _trig_delay_all(self, cmd: Command) -> None:
        cmd.count(1)
        st = self._ch(cmd)[1]
        st.extra["acq_delay"] = st.extra["tran_delay"] = cmd.number(0, lo=0.0, hi=100_000.0, default=0.0)

    @scpi(":TRIGger#:ACQuire:DELay")
    def _trig_delay_acq(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["acq_delay"] = cmd.number(0, lo=0.0, hi=100_000.0, default=0.0)

    @scpi(":TRIGger#:ACQuire:DELay", query=True)
    def _trig_delay_acq_q(self, cmd: Command) -> str:
        return _fmt(self._ch(cmd)[1].extra["acq_delay"])

    @scpi(":TRIGger#:TRANsient:DELay")
    def _trig_delay_tran(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["tran_delay"] = cmd.number(0, lo=0.0, hi=100_000.0, default=0.0)

    @scpi(":TRIGger#[:ALL]:TIMer")
    @scpi(":TRIGger#:ACQuire:TIMer")
    @scpi(":TRIGger#:TRANsient:TIMer")
    def _trig_timer(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["timer"] = cmd.number(0, lo=1e-5, hi=1e5, default=1e-5)

    @scpi(":TRIGger#[:ALL]:TOUTput[:STATe]")
    @scpi(":TRIGger#:ACQuire:TOUTput[:STATe]")
    @scpi(":TRIGger#:TRANsient:TOUTput[:STATe]")
    def _trig_tout(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["tout"] = cmd.boolean(0)

    @scpi(":TRIGger#[:ALL]:TOUTput:SIGNal")
    @scpi(":TRIGger#:ACQuire:TOUTput:SIGNal")
    @scpi(":TRIGger#:TRANsient:TOUTput:SIGNal")
    def _trig_tout_signal(self, cmd: Command) -> None:
        cmd.count(1)
        self._ch(cmd)[1].extra["tout_signal"] = cmd.choice(0, ("EXT1", "INT1", "INT2", "LAN"))

    @scpi(":INITiate[:IMMediate][:ALL]")
    @scpi(":INITiate[:IMMediate]:ACQuire")
    @scpi(":INITiate[:IMMediate]:TRANsient")
    def _init(self, cmd: Command) -> None:
        cmd.count(0, 1)
        chans = self._chanlist(cmd, 0)
        for ch in chans:
            st = self.chans[ch]
            if st.voltage_mode == "LIST" and not st.list_v:
                raise ScpiError(-221, f"channel {ch}: list sweep with an empty list")
        n = max(self.chans[ch].extra["trig_count"] for ch in chans)
        for ch in chans:
            st = self.chans[ch]
            st.extra["buffer"] = []
            st.extra["points"] = self.chans[ch].extra["trig_count"]
            if not st.output_on and st.extra.get("on_auto"):
                st.output_on = True
        if self.world is not None and all(self.chans[ch].extra["trig_source"] == "EXT1" for ch in chans):
            self._arm_bench_trigger(chans, cmd.text)  # wait for the trigger line on digital I/O pin 1
            return
        drives = self.world is not None and any(self.chans[ch].extra["tout"] and
                                                self.chans[ch].extra["tout_signal"] == "EXT1" for ch in chans)
        bench = self.world.trigger if drives else None
        wait_s = max(self.chans[ch].extra["tran_delay"] + self.chans[ch].extra["acq_delay"] for ch in chans)
        point_s = wait_s + max(integration_s(self, self.chans[ch]) for ch in chans) + _POINT_OVERHEAD_S
        # while driving the bench trigger line the world is held for the whole sweep (the armed
        # instruments step with this one)
        with (self.world.lock if drives else _null()):
            for k in range(n):
                # every initiated channel steps together (one world change per point) ...
                with (self.world.lock if self.world is not None else _null()):
                    for ch in chans:
                        st = self.chans[ch]
                        if k < st.extra["trig_count"] and st.voltage_mode == "LIST" and st.output_on:
                            st.level_v = st.list_v[k % len(st.list_v)]
                            self._apply(ch)
                            self._stress(ch, point_s)
                    if bench is not None:
                        bench.pulse("source", k)  # the trigger output pulse at the source step
                # ... then waits its delays (without a bench trigger other instruments keep working) ...
                self.advance(wait_s)
                if bench is not None:
                    bench.pulse("measure", k)
                # ... then measures every channel at once (separate SMUs integrate in parallel)
                for ch in chans:
                    st = self.chans[ch]
                    if k >= st.extra["trig_count"] or st.extra.get("protection_tripped"):
                        continue  # past this channel's count, or switched off by output protection
                    st.extra["buffer"].append(self._measure_point(ch, cmd.text))
                self.advance(point_s - wait_s)

    def _stress(self, ch: str, hold_s: float) -> None:
        """The list level of ``ch`` held for ``hold_s`` acts on the resistive devices selected onto its
        port through the pulse physics (``World.pulse``: nothing at or below the devices' threshold,
        current limited by the channel's limit); recorded as a ``pulse`` event when devices were hit."""
        st = self.chans[ch]
        port = self.port(ch)
        if self.world is None or port is None or not st.output_on or st.level_v == 0.0:
            return
        hit = self.world.pulse(port, st.level_v, hold_s, 1)
        if hit:
            self.transcript.record("event", f"channel {ch} pulse {st.level_v:g} V x 1 ({hold_s:g} s)", channel=ch,
                                   pulse_v=float(st.level_v), width_s=float(hold_s), count=1, devices=hit,
                                   level_v=float(st.level_v))

    # -- the bench trigger line (followers) --------------------------------------------------------

    def _arm_bench_trigger(self, chans: list[str], line: str) -> None:
        self._disarm_bench_trigger()
        self._armed = {"chans": chans, "line": line, "done": 0,
                       "count": max(self.chans[ch].extra["trig_count"] for ch in chans)}
        self._armed_done.clear()
        self.world.trigger.arm(self._on_bench_trigger)

    def _disarm_bench_trigger(self) -> None:
        if getattr(self, "world", None) is not None:
            self.world.trigger.disarm(self._on_bench_trigger)
        self._armed: Optional[dict[str, Any]] = None
        if not hasattr(self, "_armed_done"):
            self._armed_done = threading.Event()
        self._armed_done.set()

    def _on_bench_trigger(self, step: str, point: int) -> None:
        """One list point per pulse of the bench trigger line (called by the driving instrument)."""
        armed = self._armed
        if armed is None:
            return
        k = armed["done"]
        chans = [ch for ch in armed["chans"] if k < self.chans[ch].extra["trig_count"]]
        if step == "source":
            for ch in chans:
                st = self.chans[ch]
                if st.voltage_mode == "LIST" and st.output_on:
                    st.level_v = st.list_v[k % len(st.list_v)]
                    self._apply(ch)
            return
        for ch in chans:
            st = self.chans[ch]
            if not st.extra.get("protection_tripped"):
                st.extra["buffer"].append(self._measure_point(ch, armed["line"]))
        armed["done"] = k + 1
        if armed["done"] >= armed["count"]:
            self._disarm_bench_trigger()

    def wait_complete(self) -> None:
        """``*OPC?``/``*WAI``/fetch: an armed follower waits for its points (bounded)."""
        if self.world is not None and not self.world.trigger.wait(self._armed_done):
            raise ScpiError(-230, "triggered sweep still waiting for bench triggers")

    @scpi(":ABORt[:ALL]")
    @scpi(":ABORt:ACQuire")
    @scpi(":ABORt:TRANsient")
    def _abort(self, cmd: Command) -> None:
        cmd.count(0, 1)
        self._chanlist(cmd, 0)
        self._disarm_bench_trigger()

    @scpi(":IDLE#[:ALL]", query=True)
    def _idle_q(self, cmd: Command) -> str:
        self._ch(cmd)
        return "1"

    # -- readings --------------------------------------------------------------------------------

    def _values(self, points: list[dict[str, float]], elements: list[str]) -> list[float]:
        return [p[e] for p in points for e in elements]

    @scpi(":MEASure[:CURRent][:DC]", query=True)
    @scpi(":MEASure:VOLTage[:DC]", query=True)
    @scpi(":READ[:SCALar][:CURRent][:DC]", query=True)
    @scpi(":READ:ARRay[:CURRent][:DC]", query=True)
    def _measure(self, cmd: Command) -> Any:
        cmd.count(0, 1)
        chans = self._chanlist(cmd, 0)
        head = cmd.header.upper().lstrip(":")
        only = None
        if head.startswith("MEAS:") or head.startswith("MEASURE:"):
            only = "VOLTage" if ":VOLT" in head else "CURRent"
        out: list[float] = []
        for ch in chans:
            st = self.chans[ch]
            if not st.output_on and st.extra.get("on_auto"):
                st.output_on = True
                self._apply(ch)
        self.advance(max(self.chans[ch].extra["acq_delay"] for ch in chans))
        for ch in chans:
            st = self.chans[ch]
            point = self._measure_point(ch, cmd.text)
            st.extra["buffer"] = [point]
            st.extra["points"] = 1
            out.extend([point[only]] if only else [point[e] for e in self.elements])
        self.advance(max(integration_s(self, self.chans[ch]) for ch in chans))
        return self._format_values(out)

    @scpi(":FETCh:ARRay[:ALL]", query=True)
    @scpi(":FETCh:ARRay:CURRent", query=True)
    @scpi(":FETCh:ARRay:VOLTage", query=True)
    @scpi(":FETCh:ARRay:SOURce", query=True)
    @scpi(":FETCh:ARRay:STATus", query=True)
    @scpi(":FETCh[:SCALar][:ALL]", query=True)
    def _fetch(self, cmd: Command) -> Any:
        cmd.count(0, 1)
        chans = self._chanlist(cmd, 0)
        self.wait_complete()
        head = cmd.header.upper()
        elements = list(self.elements)
        for word, el in (("CURR", "CURRent"), ("VOLT", "VOLTage"), ("SOUR", "SOURce"), ("STAT", "STATus")):
            if head.rstrip("?").endswith(":" + word) or head.rstrip("?").endswith(":" + el.upper()):
                elements = [el]
        scalar = "ARR" not in head
        points = max(self.chans[ch].extra["points"] for ch in chans) if chans else 0
        missing = {e: MISSING_SENTINEL for e in _ELEMENT_NAMES}
        out: list[float] = []
        rows = range(points - 1, points) if scalar and points else range(points)
        for k in rows:
            for ch in chans:
                buf = self.chans[ch].extra["buffer"]
                p = buf[k] if k < len(buf) else missing
                out.extend(p[e] for e in elements)
        if not out:
            out = [MISSING_SENTINEL] * len(elements) * len(chans)
        return self._format_values(out)

    @scpi(":FORMat:ELEMents:SENSe[1]")
    def _elements_set(self, cmd: Command) -> None:
        if not cmd.params:
            raise ScpiError(-109)
        chosen = {cmd.choice(k, _ELEMENT_NAMES) for k in range(len(cmd.params))}
        # the instrument returns the chosen elements in its fixed order
        self.elements = [e for e in _ELEMENT_NAMES if e in chosen]

    @scpi(":FORMat:ELEMents:SENSe[1]", query=True)
    def _elements_q(self, cmd: Command) -> str:
        return ",".join(e[:4].upper() for e in self.elements)

    @scpi(":FORMat[:DATA]")
    def _format(self, cmd: Command) -> None:
        cmd.count(1, 2)
        kind = cmd.choice(0, ("ASCii", "REAL"))
        if kind == "ASCii":
            self.data_format = "ASC"
            return
        bits = cmd.integer(1, lo=32, hi=64) if cmd.has(1) else 64
        if bits not in (32, 64):
            raise ScpiError(-224, "REAL,32 or REAL,64")
        self.data_format = "REAL64" if bits == 64 else "REAL32"

    @scpi(":FORMat[:DATA]", query=True)
    def _format_q(self, cmd: Command) -> str:
        return {"ASC": "ASC", "REAL64": "REAL,64", "REAL32": "REAL,32"}[self.data_format]

    @scpi(":FORMat:BORDer")
    def _border(self, cmd: Command) -> None:
        cmd.count(1)
        self.byte_order = "NORM" if cmd.choice(0, ("NORMal", "SWAPped")) == "NORMal" else "SWAP"

    # -- system ----------------------------------------------------------------------------------

    @scpi(":SYSTem:ERRor[:NEXT]", query=True)
    def _err(self, cmd: Command) -> str:
        return self.next_error()

    @scpi(":SYSTem:ERRor:ALL", query=True)
    def _err_all(self, cmd: Command) -> str:
        items = []
        while len(self.errors):
            items.append(self.next_error())
        return ",".join(items) if items else self.format_error(0, "No error")

    @scpi(":SYSTem:ERRor:COUNt", query=True)
    def _err_count(self, cmd: Command) -> str:
        return str(len(self.errors))

    @scpi(":SYSTem:LFRequency", query=True)
    def _lfr(self, cmd: Command) -> str:
        return str(int(self.world.line_frequency_hz if self.world is not None else 50))

    @scpi(":SYSTem:INTerlock:TRIPped", query=True)
    def _interlock_q(self, cmd: Command) -> str:
        return "1" if self.interlock_is_open() else "0"

    def format_error(self, code: int, message: str) -> str:
        return f'{int(code):+d},"{message}"'


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
