"""Capability protocols and the value types they exchange (instruments.md §1.2).

Structural ``typing.Protocol`` classes: a driver satisfies them by having the members, without
inheriting. The board layer depends only on these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from hil.drivers.errors import InstrumentConfigError
from hil.drivers.limits import SourceLimits

__all__ = [
    "ErrorEntry",
    "Reading",
    "SweepResult",
    "SmuChannelConfig",
    "AUTOZERO_MODES",
    "OFF_MODES",
    "ErrorQueue",
    "Instrument",
    "SourceMeter",
    "Scanner",
    "SwitchMatrix",
    "Crosspoint",
    "TriggeredSweeps",
    "TriggeredScans",
    "PulsedSource",
]


class ErrorEntry(NamedTuple):
    """One error-queue entry: ``(code, message)``; code 0 means "no error"."""

    code: int
    message: str


@dataclass(frozen=True)
class Reading:
    """One spot measurement of a source channel.

    Attributes:
        value: measured current in A (``nan`` = missing-data sentinel, ``±inf`` = overflow).
        source_value: source level in V at the time of the reading (programmed or read back).
        compliance: ``True`` if the instrument flagged the current limit for this reading, or
            ``|value| >= 0.98 * limit`` (software rule §5.4).
    """

    value: float
    source_value: float
    compliance: bool


@dataclass(frozen=True)
class SweepResult:
    """Result of a synchronised list sweep over one or more channels.

    Arrays have shape ``(points, channels)``; column ``k`` belongs to ``channels[k]``.

    Attributes:
        v_source: source level per point in V (read back from the instrument's buffer).
        i_meas: measured current per point in A (``nan``/``inf`` for sentinels).
        compliance: per-point compliance flag (instrument flag or software at-limit rule).
        timestamps: seconds since the sweep start per point, or ``None`` if not collected.
        channels: channel names in column order.
    """

    v_source: np.ndarray
    i_meas: np.ndarray
    compliance: np.ndarray
    timestamps: Optional[np.ndarray] = None
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = np.shape(self.v_source)
        if len(shape) != 2:
            raise ValueError(f"v_source must be 2-D (points, channels), got shape {shape}")
        for key in ("i_meas", "compliance") + (("timestamps",) if self.timestamps is not None else ()):
            if np.shape(getattr(self, key)) != shape:
                raise ValueError(f"{key} shape {np.shape(getattr(self, key))} != v_source shape {shape}")
        if self.channels and len(self.channels) != shape[1]:
            raise ValueError(f"{len(self.channels)} channel names for {shape[1]} columns")

    @property
    def any_compliance(self) -> bool:
        """True if any point of any channel was flagged."""
        return bool(np.any(self.compliance))


AUTOZERO_MODES = ("off", "once", "on")
OFF_MODES = ("zero", "himp", "normal")


@dataclass(frozen=True)
class SmuChannelConfig:
    """Explicit measurement/source state of one SMU channel (never autorange in training).

    Attributes:
        limits: mandatory safety limits; ``limits.i_compliance_a`` is programmed as the current limit.
        nplc: integration time in power-line cycles.
        current_range_a: fixed current measurement range in A (must be >= ``i_compliance_a``).
        voltage_range_v: fixed voltage source range in V; ``None`` = smallest range covering
            ``max(|v_min|, |v_max|)`` (still set explicitly, never autoranged).
        autozero: ``"off"``, ``"once"`` (one refresh at configure time) or ``"on"``.
        source_delay_s: settling delay between source change and measurement in s (>= 0).
        off_mode: output-off state, ``"zero"`` (0 V source), ``"himp"`` (relay open) or ``"normal"``.
        four_wire: remote sense.
    """

    limits: SourceLimits
    nplc: float
    current_range_a: float
    voltage_range_v: Optional[float] = None
    autozero: str = "once"
    source_delay_s: float = 1e-3
    off_mode: str = "zero"
    four_wire: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.limits, SourceLimits):
            problems.append("limits: SourceLimits required")
        if not (isinstance(self.nplc, (int, float)) and math.isfinite(self.nplc) and self.nplc > 0):
            problems.append(f"nplc: positive number required, got {self.nplc!r}")
        if not (isinstance(self.current_range_a, (int, float)) and self.current_range_a > 0):
            problems.append(f"current_range_a: positive number required, got {self.current_range_a!r}")
        elif isinstance(self.limits, SourceLimits) and self.current_range_a < self.limits.i_compliance_a:
            problems.append(
                f"current_range_a ({self.current_range_a}) below i_compliance_a ({self.limits.i_compliance_a})"
            )
        if self.voltage_range_v is not None and not self.voltage_range_v > 0:
            problems.append(f"voltage_range_v: positive number or None required, got {self.voltage_range_v!r}")
        if self.autozero not in AUTOZERO_MODES:
            problems.append(f"autozero: one of {AUTOZERO_MODES}, got {self.autozero!r}")
        if not (isinstance(self.source_delay_s, (int, float)) and self.source_delay_s >= 0):
            problems.append(f"source_delay_s: number >= 0 required, got {self.source_delay_s!r}")
        if self.off_mode not in OFF_MODES:
            problems.append(f"off_mode: one of {OFF_MODES}, got {self.off_mode!r}")
        if problems:
            raise InstrumentConfigError("; ".join(problems))

    @property
    def source_range_v(self) -> float:
        """Voltage source range to program, in V."""
        if self.voltage_range_v is not None:
            return float(self.voltage_range_v)
        return max(abs(self.limits.v_min), abs(self.limits.v_max))


#: Matrix crosspoint ``(row, column)``: row label as printed on the card (``"A"`` or ``"1"``), 1-based column.
Crosspoint = tuple[str, int]


@runtime_checkable
class ErrorQueue(Protocol):
    """Instrument error queue."""

    def drain_errors(self, max_entries: int = 64) -> list[ErrorEntry]:
        """Read and remove every queued entry (at most ``max_entries``); empty list if none."""
        ...

    def check_errors(self, allowed: Iterable[int] = frozenset()) -> list[ErrorEntry]:
        """Drain; raise ``InstrumentReportedError`` if an entry's code is not in ``allowed``."""
        ...


@runtime_checkable
class Instrument(Protocol):
    """Members every driver has."""

    name: str

    def connect(self) -> None:
        """Identify, check the command set, drain errors, apply configured state."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Identity and every configured setting, JSON-serialisable."""
        ...

    def safe_shutdown(self) -> None:
        """Stop, ramp to 0 V, outputs off, relays open, drain errors; idempotent, never raises."""
        ...

    def close(self) -> None:
        """Release the transport (not the resource manager)."""
        ...


@runtime_checkable
class SourceMeter(Instrument, ErrorQueue, Protocol):
    """Voltage-source / current-measure unit with one or more channels."""

    channels: tuple[str, ...]

    def configure(self, channel: str, config: SmuChannelConfig) -> None:
        """Apply ranges, NPLC, autozero, source delay, off-mode and current limit."""
        ...

    def set_voltage(self, channel: str, level_v: float) -> None:
        """Ramp the source to ``level_v`` (V) within the limits; refused before any I/O if out of limits."""
        ...

    def voltage_setpoint(self, channel: str) -> float:
        """Programmed source level in V."""
        ...

    def set_current_limit(self, channel: str, limit_a: float) -> None:
        """Program the current limit in A (<= configured ``i_compliance_a``)."""
        ...

    def compliance_tripped(self, channel: str) -> bool:
        """True if the channel is in current compliance."""
        ...

    def output(self, channel: str, on: bool) -> None:
        """Switch the output on (after interlock checks) or off."""
        ...

    def output_enabled(self, channel: str) -> bool:
        """Output state as reported by the instrument."""
        ...

    def measure_current(self, channel: str) -> Reading:
        """One spot current reading."""
        ...

    def list_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float) -> SweepResult:
        """Upload one voltage list per channel, run the trigger model once, read back in one transfer."""
        ...


@runtime_checkable
class Scanner(Instrument, ErrorQueue, Protocol):
    """Multiplexed voltmeter."""

    def configure_scan(
        self, channels: Sequence[int], nplc: float, range_v: float, autozero: str, delay_s: float
    ) -> None:
        """Set scan list, integration, fixed range, autozero and channel delay (s)."""
        ...

    def read_scan(self) -> np.ndarray:
        """One scan in scan-list order, volts; overflow → ``inf``, missing → ``nan``."""
        ...

    def measure_voltage(self, channel: int) -> float:
        """One reading of one channel in V."""
        ...


@runtime_checkable
class SwitchMatrix(Instrument, ErrorQueue, Protocol):
    """Relay matrix addressed by ``(row, col)`` crosspoints."""

    def connect(  # type: ignore[override]
        self, crosspoints: Optional[Iterable[Crosspoint]] = None, exclusive: bool = False
    ) -> None:
        """Close ``crosspoints`` (``exclusive`` opens all others first).

        ``Instrument.connect()`` and §1.2's ``connect(crosspoints)`` share the name: called with
        ``crosspoints=None`` this is the instrument connect (identify, drain, open all).
        """
        ...

    def disconnect(self, crosspoints: Iterable[Crosspoint]) -> None:
        """Open crosspoints."""
        ...

    def open_all(self) -> None:
        """Open every relay."""
        ...

    def closed(self) -> frozenset[Crosspoint]:
        """Crosspoints reported closed by the instrument."""
        ...

    def interlock_ok(self) -> bool:
        """True if the hardware interlock allows switching."""
        ...



@runtime_checkable
class TriggeredSweeps(Protocol):
    """Optional SourceMeter capability: list sweeps of several instruments stepped together.

    The board arms every follower (each waits for the bench trigger line once per point), then
    the lead (which paces the points and drives the trigger line), starts the lead, and fetches
    every instrument's buffer once. Limits are checked in ``arm_sweep`` exactly as in
    ``list_sweep`` (nothing is sent for a refused vector).

    A driver whose trigger wiring is configured per bench may also expose ``bench_trigger_wired``
    (``False``: not cabled to the trigger line; the board then measures stepwise).
    """

    def arm_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float, lead: bool) -> None:
        """Upload one list per channel and arm the trigger model (nothing is sourced yet)."""
        ...

    def start_sweep(self) -> None:
        """Start the armed sweep (lead only)."""
        ...

    def fetch_sweep(self) -> SweepResult:
        """Wait for the armed sweep to finish and read every buffer back in one transfer."""
        ...


@runtime_checkable
class TriggeredScans(Protocol):
    """Optional Scanner capability: one scan of the scan list per bench trigger, read back at once."""

    def arm_scan(self, points: int) -> None:
        """Arm ``points`` scans, each started by the bench trigger line."""
        ...

    def fetch_scan(self) -> np.ndarray:
        """All armed scans as ``(points, channels)`` volts (sentinels mapped as in ``read_scan``)."""
        ...


@runtime_checkable
class PulsedSource(Protocol):
    """Optional SourceMeter capability: voltage pulses for programming resistive devices."""

    def pulse(self, channel: str, amplitude_v: float, width_s: float, count: int = 1) -> None:
        """Apply ``count`` pulses of ``amplitude_v`` (V) for ``width_s`` (s) from the present level.

        The output must be on at 0 V; the amplitude is checked against the channel's limits
        (bounds and ``max_step_v`` from the 0 V base) before any I/O; the level returns to 0 V.
        """
        ...
