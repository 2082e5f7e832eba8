"""Keysight DAQ970A and 34970A/34972A scanning DMM (data acquisition / switch unit).

Channels are integers ``scc`` (slot 1–3, two-digit channel): ``101`` … ``320``. Lists are always
sent explicitly, e.g. ``(@101,102,105)``: a range such as ``(@101:120)`` would silently skip
invalid channels inside it, so the driver validates every channel against the configured modules
itself.

Commands, checked against the Keysight DAQ970A/DAQ973A Programming Guide (``*IDN?`` reply
``Keysight Technologies,DAQ970A,<serial>,<revision>``; ``ROUTe:CHANnel:DELay <s>, (@list)``,
0–60 s with 1 ms resolution) and the Agilent 34970A User's Guide (``CONF:VOLT:DC <range>,
<resolution>, (@list)`` — also defines the scan list and resets the channel delay to automatic;
``VOLT:DC:NPLC 0.02|0.2|1|2|10|20|100|200, (@list)``; ``ZERO:AUTO OFF|ONCE|ON, (@list)``;
``ROUT:SCAN (@list)``; ``READ?``/``INIT``+``FETC?``; ``ABOR`` stops a scan; overload
``+9.90000000E+37``):

* configuration order: ``CONF`` first, then NPLC, autozero, input impedance and channel delay
  (``CONF`` would reset them), then the scan list, ``TRIG:SOUR IMM`` and ``TRIG:COUN 1``;
* ``INP:IMP:AUTO ON, (@list)`` (34970A/34972A Command Reference, ``INPut:IMPedance:AUTO``): input
  resistance > 10 GOhm on the 100 mV, 1 V and 10 V ranges instead of the fixed 10 MOhm of
  ``AUTO OFF`` (the ``*RST`` and ``CONFigure`` default); the array nodes the DMM senses are high
  impedance, so 10 MOhm would load them. Ranges above 10 V stay at 10 MOhm. The bench option
  ``input_impedance: 10M`` sends ``AUTO OFF`` instead (10 MOhm on every range);
* ``FORM:READ:CHAN OFF`` / ``FORM:READ:TIME OFF`` so ``READ?`` returns bare readings;
* the instrument scans in ascending channel order, so the driver requires an ascending list and
  returns readings in that order.

No line-frequency query is used (none verified); integration-time estimates assume 50 Hz (the
longer period, for timeouts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from hil.drivers.base import ScpiDriver, ShutdownStep
from hil.drivers.errors import InstrumentConfigError
from hil.drivers.parsing import format_number, parse_numbers

__all__ = ["Daq970a", "ScanConfig", "channel_list", "NPLC_VALUES", "RANGES_V", "MAX_DELAY_S", "INPUT_IMPEDANCES"]

NPLC_VALUES = (0.02, 0.2, 1.0, 2.0, 10.0, 20.0, 100.0, 200.0)
RANGES_V = (0.1, 1.0, 10.0, 100.0, 300.0)
#: ``input_impedance`` options: ``high`` = INP:IMP:AUTO ON (> 10 GΩ up to 10 V), ``10M`` = OFF
INPUT_IMPEDANCES = ("high", "10M")
_AUTOZERO = {"off": "OFF", "once": "ONCE", "on": "ON"}
MAX_DELAY_S = 60.0
_MAX_SCAN_CHANNELS = 120
_SLOW_LINE_HZ = 50.0


def channel_list(channels: Sequence[int]) -> str:
    """SCPI channel list ``(@101,102,…)`` in the given order."""
    return "(@" + ",".join(str(int(c)) for c in channels) + ")"


class ScanConfig:
    """Validated scan settings (SI units).

    Attributes:
        channels: ascending ``scc`` channel numbers.
        nplc: integration time in power-line cycles (one of ``NPLC_VALUES``).
        range_v: fixed DC range in V (one of ``RANGES_V``; never autorange).
        autozero: ``"off"``, ``"once"`` or ``"on"``.
        delay_s: channel delay in s (0–60, 1 ms resolution), set explicitly.
    """

    def __init__(self, channels: Sequence[int], nplc: float, range_v: float, autozero: str, delay_s: float,
                 *, slots: Optional[Mapping[int, int]] = None) -> None:
        problems: list[str] = []
        chans = tuple(int(c) for c in channels)
        if not chans:
            problems.append("channels: at least one channel required")
        if len(chans) > _MAX_SCAN_CHANNELS:
            problems.append(f"channels: at most {_MAX_SCAN_CHANNELS} per scan, got {len(chans)}")
        for c in chans:
            problem = _channel_problem(c, slots)
            if problem:
                problems.append(problem)
        if any(b <= a for a, b in zip(chans, chans[1:])):
            problems.append(f"channels must be strictly ascending (the instrument scans in that order): {chans}")
        if not any(abs(nplc - v) < 1e-9 for v in NPLC_VALUES):
            problems.append(f"nplc {nplc!r}: one of {NPLC_VALUES}")
        if not any(abs(range_v - v) < 1e-12 for v in RANGES_V):
            problems.append(f"range_v {range_v!r}: one of {RANGES_V} V")
        if autozero not in _AUTOZERO:
            problems.append(f"autozero {autozero!r}: one of {tuple(_AUTOZERO)}")
        if not (isinstance(delay_s, (int, float)) and 0 <= delay_s <= MAX_DELAY_S):
            problems.append(f"delay_s {delay_s!r}: 0..{MAX_DELAY_S} s")
        if problems:
            raise InstrumentConfigError("; ".join(problems))
        self.channels = chans
        self.nplc = float(nplc)
        self.range_v = float(range_v)
        self.autozero = autozero
        self.delay_s = round(float(delay_s), 3)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able settings for snapshots."""
        return {"channels": list(self.channels), "nplc": self.nplc, "range_v": self.range_v,
                "autozero": self.autozero, "delay_s": self.delay_s,
                "input_impedance": ">10 GOhm" if self.range_v <= 10 else "10 MOhm"}

    def scan_time_s(self) -> float:
        """Rough upper estimate of one scan in s (50 Hz, autozero on doubles, 20 ms relay time)."""
        per = self.delay_s + (2 if self.autozero == "on" else 1) * self.nplc / _SLOW_LINE_HZ + 0.02
        return len(self.channels) * per


def _channel_problem(channel: int, slots: Optional[Mapping[int, int]]) -> Optional[str]:
    slot, number = divmod(channel, 100)
    if slots is None:
        if not (1 <= slot <= 3 and 1 <= number <= 99):
            return f"channel {channel}: expected scc with slot 1-3 and channel 01-99"
        return None
    if slot not in slots:
        return f"channel {channel}: no module configured in slot {slot} (slots {sorted(slots)})"
    if not 1 <= number <= slots[slot]:
        return f"channel {channel}: slot {slot} has voltage channels 01-{slots[slot]:02d}"
    return None


_MAX_TRIGGERED_SCANS = 50_000   # TRIG:COUN upper bound (34970A; the DAQ970A accepts more)
_READING_MEMORY = 50_000        # readings held in memory (34970A; DAQ970A: 100 000)


class Daq970a(ScpiDriver):
    """Keysight DAQ970A / 34970A / 34972A as a ``Scanner`` (DC volts).

    Args:
        transport, name, allowed_errors, sleep, clock, shutdown_timeout_s: see ``DriverBase``.
        slots: ``{slot: number of voltage channels}`` of the installed modules, e.g. ``{1: 20}``
            for a DAQM901A; ``None`` only checks the ``scc`` form.
        scan: ``ScanConfig`` (or its keyword dict) applied at ``connect()``.
        input_impedance: ``"high"`` (default: ``INP:IMP:AUTO ON``, > 10 GΩ on the 0.1–10 V ranges,
            so the DMM does not load high-impedance nodes) or ``"10M"`` (``INP:IMP:AUTO OFF``,
            10 MΩ on every range), sent with every scan configuration.
    """

    SUPPORTED_MODELS = ("DAQ970A", "34970A", "34972A")
    DESCRIPTION = "Keysight DAQ970A / 34970A / 34972A scanning DMM, DC volts"
    ERROR_QUERY = "SYST:ERR?"
    LINE_FREQUENCY_QUERY = None

    def __init__(self, transport: Any, *, slots: Optional[Mapping[int, int]] = None,
                 scan: Optional[Any] = None, input_impedance: str = "high", **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        if input_impedance not in INPUT_IMPEDANCES:
            raise InstrumentConfigError(f"input_impedance {input_impedance!r}: one of {INPUT_IMPEDANCES}",
                                        instrument=self.name)
        self.input_impedance = input_impedance
        self.slots = dict(slots) if slots is not None else None
        if isinstance(scan, Mapping):
            scan = ScanConfig(**scan, slots=self.slots)
        self._initial_scan: Optional[ScanConfig] = scan
        self.scan: Optional[ScanConfig] = None

    # -- connect -----------------------------------------------------------------------------

    def _apply_initial_state(self) -> None:
        self._write("FORM:READ:CHAN OFF")
        self._write("FORM:READ:TIME OFF")
        self._write("TRIG:SOUR IMM")
        self._write("TRIG:COUN 1")
        if self._initial_scan is not None:
            self._send_scan(self._initial_scan)

    # -- Scanner protocol ----------------------------------------------------------------------

    def configure_scan(self, channels: Sequence[int], nplc: float, range_v: float, autozero: str,
                       delay_s: float) -> None:
        """Configure DC-volt channels and the scan list; everything validated before any I/O.

        Args:
            channels: ascending ``scc`` channel numbers (e.g. ``[101, 102, 110]``).
            nplc: integration time in power-line cycles (``NPLC_VALUES``).
            range_v: fixed range in V (``RANGES_V``).
            autozero: ``"off"``, ``"once"`` or ``"on"``.
            delay_s: channel delay in s (0–60).

        Raises:
            InstrumentConfigError: invalid argument (nothing sent).
            InstrumentReportedError: the instrument rejected a command.
        """
        config = ScanConfig(channels, nplc, range_v, autozero, delay_s, slots=self.slots)
        self._send_scan(config)
        self.check_errors()

    def _send_scan(self, config: ScanConfig) -> None:
        chans = channel_list(config.channels)
        w = self._write
        w(f"CONF:VOLT:DC {format_number(config.range_v)},DEF,{chans}")
        w(f"VOLT:DC:NPLC {format_number(config.nplc)},{chans}")
        w(f"ZERO:AUTO {_AUTOZERO[config.autozero]},{chans}")
        w(f"INP:IMP:AUTO {'ON' if self.input_impedance == 'high' else 'OFF'},{chans}")
        w(f"ROUT:CHAN:DEL {format_number(config.delay_s)},{chans}")
        w(f"ROUT:SCAN {chans}")
        w("TRIG:SOUR IMM")
        w("TRIG:COUN 1")
        self.scan = config

    def _require_scan(self) -> ScanConfig:
        if self.scan is None:
            raise InstrumentConfigError("no scan configured; call configure_scan() first", instrument=self.name)
        return self.scan

    def read_scan(self) -> np.ndarray:
        """Run one scan (``READ?``); readings in V in scan-list order, overload → ``±inf``, missing → ``nan``."""
        config = self._require_scan()
        timeout = self.transport.timeout_s + config.scan_time_s()
        with self.transport.temporary_timeout(timeout):
            reply = self._query("READ?")
        return self._parse(lambda r: parse_numbers(r, count=len(config.channels)), reply, "READ?")

    def measure_voltage(self, channel: int) -> float:
        """One reading of a configured channel in V, with its configured range/NPLC/autozero/delay.

        The scan list is narrowed to ``channel`` for the reading and restored afterwards.
        """
        config = self._require_scan()
        ch = int(channel)
        if ch not in config.channels:
            raise InstrumentConfigError(f"channel {ch} is not configured (scan list {config.channels})",
                                        instrument=self.name)
        single = ScanConfig([ch], config.nplc, config.range_v, config.autozero, config.delay_s,
                            slots=self.slots)
        self._write(f"ROUT:SCAN {channel_list([ch])}")
        try:
            with self.transport.temporary_timeout(self.transport.timeout_s + single.scan_time_s()):
                reply = self._query("READ?")
        finally:
            self._write(f"ROUT:SCAN {channel_list(config.channels)}")
        return float(self._parse(lambda r: parse_numbers(r, count=1), reply, "READ?")[0])

    # -- triggered scans (TriggeredScans) ---------------------------------------------------------

    def arm_scan(self, points: int) -> None:
        """Arm ``points`` sweeps of the scan list, one per pulse on the rear-panel Ext Trig input
        (``TRIG:SOUR EXT``, ``TRIG:COUN points``, ``INIT``: wait-for-trigger state)."""
        config = self._require_scan()
        n = int(points)
        if not 1 <= n <= _MAX_TRIGGERED_SCANS:
            raise InstrumentConfigError(f"points {points}: 1..{_MAX_TRIGGERED_SCANS} scans per arm "
                                        f"({len(config.channels)} channels each)", instrument=self.name)
        if n * len(config.channels) > _READING_MEMORY:
            raise InstrumentConfigError(f"{n} scans of {len(config.channels)} channels exceed the "
                                        f"{_READING_MEMORY}-reading memory", instrument=self.name)
        self._write("TRIG:SOUR EXT")
        self._write(f"TRIG:COUN {n}")
        self._write("INIT")
        self._armed_scans = n
        self.check_errors()  # answered once armed: the scanner waits before the SMUs start

    def fetch_scan(self) -> np.ndarray:
        """Every armed scan in one ``FETC?`` as ``(points, channels)`` V (overload → ``±inf``,
        missing → ``nan``); the trigger goes back to immediate, count 1."""
        config = self._require_scan()
        n = getattr(self, "_armed_scans", None)
        if n is None:
            raise InstrumentConfigError("no scan armed; call arm_scan() first", instrument=self.name)
        m = len(config.channels)
        try:
            with self.transport.temporary_timeout(self.transport.timeout_s + n * config.scan_time_s()):
                reply = self._query("FETC?")
            values = self._parse(lambda r: parse_numbers(r, count=n * m), reply, "FETC?")
        finally:
            self._armed_scans = None
            self._write("TRIG:SOUR IMM")
            self._write("TRIG:COUN 1")
        return values.reshape(n, m)

    # -- snapshot and shutdown -----------------------------------------------------------------

    def _settings_snapshot(self) -> dict[str, Any]:
        return {"slots": {str(k): v for k, v in (self.slots or {}).items()} or None,
                "scan": None if self.scan is None else {**self.scan.as_dict(), "input_impedance": (
                    ">10 GOhm" if self.input_impedance == "high" and self.scan.range_v <= 10 else "10 MOhm")},
                "reading_format": {"channel": "OFF", "time": "OFF"}, "trigger": {"source": "IMM", "count": 1}}

    def _shutdown_steps(self) -> list[ShutdownStep]:
        return [("abort scan", lambda: self._write("ABOR"))]

