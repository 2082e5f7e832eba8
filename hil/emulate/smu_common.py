"""State and physics glue shared by the SMU personalities (2450, B2900; usable by the 2600B).

An :class:`SmuChannel` holds what the instrument would hold for one channel (function, level,
ranges, limit, output and off-mode, NPLC, autozero, delay, list, trip flag). ``apply_output``
turns it into a world port source; ``spot_reading`` measures through the world, applying the
``force_compliance``/``sentinel`` faults, and advances the bench clock by the integration time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hil.emulate.world import OVERFLOW_SENTINEL

__all__ = ["SmuChannel", "SmuReading", "apply_output", "spot_reading", "integration_s", "pick_range",
           "NORMAL_OFF_FRACTION"]

#: ``NORM`` off-state: 0 V source, current limit = this fraction of the present current range
NORMAL_OFF_FRACTION = 0.005
#: autozero on: each reading also measures the reference and zero (≈ 2× the integration time)
AUTOZERO_FACTOR = 2.0


def pick_range(value: float, ranges: tuple[float, ...]) -> Optional[float]:
    """Smallest range ≥ ``|value|`` (with 1e-9 relative slack), or ``None``."""
    v = abs(float(value))
    for r in ranges:
        if v <= r * (1 + 1e-9):
            return r
    return None


@dataclass
class SmuChannel:
    """Instrument-side state of one SMU channel (SI units)."""

    func: str = "VOLT"
    level_v: float = 0.0
    v_range: float = 20.0
    v_autorange: bool = True
    i_limit_a: float = 1.05e-4
    i_range_a: float = 1e-4
    i_autorange: bool = True
    output_on: bool = False
    off_mode: str = "NORM"
    nplc: float = 1.0
    autozero: bool = True
    source_delay_s: float = 0.0
    source_delay_auto: bool = True
    readback: bool = True
    four_wire: bool = False
    protection: bool = False
    tripped: bool = False
    voltage_mode: str = "FIX"
    list_v: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmuReading:
    """One measurement: current (A, or a sentinel), terminal voltage (V), at-limit flag, true current."""

    current_a: float
    voltage_v: float
    in_limit: bool
    true_current_a: float


def apply_output(emu: Any, channel: str, state: SmuChannel) -> None:
    """Apply the output state of ``channel`` to the world (and the transcript)."""
    if state.output_on:
        if state.func == "VOLT":
            emu.set_port_source(channel, output_on=True, mode="voltage", level=state.level_v, limit_a=state.i_limit_a)
        else:
            emu.set_port_source(channel, output_on=True, mode="current", level=state.level_v)
        return
    mode = state.off_mode.upper()
    if mode in ("HIMP", "HIZ"):
        emu.set_port_source(channel, output_on=False, mode="open", level_v=state.level_v)
    elif mode == "ZERO":
        limit = max(state.i_limit_a, NORMAL_OFF_FRACTION * state.i_range_a)
        emu.set_port_source(channel, output_on=False, mode="voltage", level=0.0, limit_a=limit, level_v=state.level_v)
    elif mode == "GUAR":
        emu.set_port_source(channel, output_on=False, mode="current", level=0.0, level_v=state.level_v)
    else:  # NORM
        emu.set_port_source(channel, output_on=False, mode="voltage", level=0.0,
                            limit_a=NORMAL_OFF_FRACTION * state.i_range_a, level_v=state.level_v)


def integration_s(emu: Any, state: SmuChannel) -> float:
    """Modelled duration of one reading, s."""
    f_line = emu.world.line_frequency_hz if emu.world is not None else 50.0
    return (AUTOZERO_FACTOR if state.autozero else 1.0) * state.nplc / f_line


def spot_reading(emu: Any, channel: str, state: SmuChannel, line: Optional[str] = None, *,
                 advance_clock: bool = True) -> SmuReading:
    """Measure the current of ``channel`` through the world, with noise, range and faults.

    Advances the bench clock by the integration time unless ``advance_clock`` is false (channels
    of one instrument integrating at the same time: the caller advances once). ``tripped`` is
    set when the channel sits at its limit (or a ``force_compliance`` fault fired).
    """
    port = emu.port(channel)
    if port is not None:
        with emu.world.lock:
            true_i = emu.world.port_current(port)
            volt = emu.world.port_voltage(port)
            clamped = emu.world.clamped(port) and state.output_on
    else:
        true_i = 0.0
        volt = state.level_v if state.output_on and state.func == "VOLT" else 0.0
        clamped = False
    forced = emu.faults.take("force_compliance", line, channel) is not None
    if forced and state.output_on:
        true_i = math.copysign(state.i_limit_a, true_i if true_i != 0 else (state.level_v or 1.0))
        clamped = True
    in_limit = bool(clamped or forced)
    if in_limit:
        state.tripped = True
    if advance_clock:
        emu.advance(integration_s(emu, state))
    rng = state.i_range_a if not state.i_autorange else (pick_range(true_i, (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3,
                                                                              1e-2, 1e-1, 1.0)) or 1.0)
    value = emu.world.reading(true_i, rng, state.nplc) if emu.world is not None else true_i
    sentinel = emu.sentinel_value(channel, line)
    if sentinel is not None:
        value = sentinel
    elif abs(value) >= OVERFLOW_SENTINEL * 0.999:
        in_limit = True
    return SmuReading(value, volt, in_limit, true_i)
