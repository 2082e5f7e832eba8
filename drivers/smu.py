"""Instrument-independent half of every SourceMeter driver: limits, ramps, caches, sweeps, shutdown.

``SourceMeterDriver`` implements the ``SourceMeter`` protocol on top of a few per-model hooks
(``_write_level``, ``_read_level``, ``_write_output``, ...). Everything safety-relevant happens
here, *before* a hook is called, so every model refuses the same requests the same way:

* no level is written unless the channel has been configured (limits known);
* a level outside the bounds, or a list breaking step/slew rules, raises ``LimitViolation``
  with nothing written;
* with the output on, level changes are ramped (``plan_ramp``) with injectable sleeps;
* the output is only switched on when the interlock is closed and the programmed level is within
  one ``max_step_v`` of 0 V (the off state), otherwise ``InterlockError`` / ``LimitViolation``;
* the output is only switched off after the level was ramped to 0 V (``output(ch, False)``,
  connect, ``safe_shutdown``); a channel without configured limits (e.g. ``hil instruments
  probe``) is ramped with the conservative built-in ``UNCONFIGURED_RAMP_STEP_V`` /
  ``UNCONFIGURED_RAMP_DWELL_S``;
* ``configure()`` is refused (``LimitViolation``, nothing written) while the output is on;
* with ``max_power_w`` configured, every spot and sweep reading with ``|V·I| > max_power_w``
  brings the channel(s) to 0 V and off, then raises ``PowerLimitError`` (a ``ComplianceError``);
* a level read back from the instrument is used only if plausible (finite, within the model's
  range and the channel's ``[v_min, v_max]``); otherwise the output is switched off directly and
  ``ImplausibleReadbackError`` raised — ramps never start from such a level;
* ``safe_shutdown`` aborts, ramps every channel to 0 V, switches outputs off, programs 0 V where
  a ramp was skipped, and reads every output back (``ShutdownReport``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from hil.drivers.base import DriverBase, ShutdownStep
from hil.drivers.errors import (
    ImplausibleReadbackError,
    InstrumentConfigError,
    InstrumentError,
    InstrumentProtocolError,
    InterlockError,
    LimitViolation,
    PowerLimitError,
)
from hil.drivers.limits import (
    AT_LIMIT_FRACTION,
    SourceLimits,
    check_current_limit,
    check_level,
    check_vector,
    plan_ramp,
)
from hil.drivers.protocols import Reading, SmuChannelConfig, SweepResult

__all__ = [
    "SourceMeterDriver",
    "at_limit",
    "over_power",
    "UNCONFIGURED_RAMP_STEP_V",
    "UNCONFIGURED_RAMP_DWELL_S",
]

#: Mains frequency assumed for timing estimates before it was read (the shorter period, 60 Hz,
#: gives the shorter point duration and therefore the stricter slew check).
FALLBACK_LINE_FREQUENCY_HZ = 60.0

#: Ramp step in V used to bring an output found on to 0 V when the channel has no configured
#: limits (``hil instruments probe``, or a channel the configuration does not name).
UNCONFIGURED_RAMP_STEP_V = 0.1
#: Dwell after each such step in s: 0.1 V / 0.1 s = 1 V/s, a deliberately slow, conservative rate.
UNCONFIGURED_RAMP_DWELL_S = 0.1
#: A read-back level may exceed a configured bound by this fraction of the larger bound magnitude
#: (at least ``READBACK_TOLERANCE_MIN_V``) and still be taken as the bound itself (read-back
#: rounding); anything further out is implausible.
READBACK_TOLERANCE = 1e-4
READBACK_TOLERANCE_MIN_V = 1e-6
#: A finite current reading beyond this multiple of the channel's fixed measurement range is no
#: measurement (an instrument reports over range as the +9.9E37 sentinel, read as inf): the reply
#: is refused and the channel made safe.
IMPLAUSIBLE_CURRENT_FACTOR = 2.0
#: A level read back off by more than this after the shutdown does not count as 0 V.
ZERO_TOLERANCE_V = 1e-6


def at_limit(current_a: ArrayLike, limit_a: float) -> np.ndarray:
    """Software compliance rule (§5.4): ``|I| >= 0.98 * limit`` or non-finite (overflow/missing)."""
    i = np.asarray(current_a, dtype=float)
    return ~np.isfinite(i) | (np.abs(i) >= AT_LIMIT_FRACTION * limit_a)


def over_power(voltage_v: ArrayLike, current_a: ArrayLike, max_power_w: Optional[float]) -> np.ndarray:
    """Per-reading power rule (§5.1): ``|V·I| > max_power_w``.

    A missing reading (``nan``) is not flagged here (the at-limit rule already flags it); an
    overflowed current (``±inf``) at a non-zero level is. ``max_power_w=None`` flags nothing.
    """
    v = np.asarray(voltage_v, dtype=float)
    i = np.asarray(current_a, dtype=float)
    if max_power_w is None:
        return np.zeros(np.broadcast(v, i).shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        power = np.abs(v * i)
    return ~np.isnan(power) & (power > max_power_w * (1 + 1e-9))



class DigitalTriggerLine:
    """For SMUs that join the bench trigger through one of their digital I/O lines: the line
    cabled to it (``trigger_line``, 1..``DIGIO_LINES``, or ``None`` when not wired)."""

    #: digital I/O lines of the model
    DIGIO_LINES = 0

    def _set_trigger_line(self, line: Optional[int]) -> None:
        if line is not None and (isinstance(line, bool) or not isinstance(line, int)
                                 or not 1 <= line <= self.DIGIO_LINES):
            raise InstrumentConfigError(f"trigger_line {line!r}: digital I/O line 1..{self.DIGIO_LINES} or None",
                                        instrument=self.name)
        self.trigger_line = line

    @property
    def bench_trigger_wired(self) -> bool:
        """True when a digital I/O line is cabled to the bench trigger (``trigger_line``): only then
        does this instrument take part in triggered sweeps (``arm_sweep``)."""
        return self.trigger_line is not None


class SourceMeterDriver(DriverBase):
    """Shared SourceMeter logic. Subclasses set ``CHANNELS``, ``NPLC_RANGE`` and the hooks.

    Args:
        transport, name, allowed_errors, sleep, clock, shutdown_timeout_s: see ``DriverBase``.
        configs: ``{channel: SmuChannelConfig}`` applied at ``connect()``.
        require_interlock: refuse ``output(ch, True)`` unless the hardware interlock reports
            closed (models without a verified interlock query ignore this).
    """

    CHANNELS: tuple[str, ...] = ("",)
    NPLC_RANGE: tuple[float, float] = (0.01, 10.0)
    #: Added to the modelled sweep duration for the read-back timeout, in s.
    sweep_timeout_margin_s: float = 5.0
    #: Largest source level in V the family's models can produce; a read-back beyond it is absurd.
    MAX_SOURCE_V: float = 210.0
    #: Largest source level in V of the models of the family that stay below ``MAX_SOURCE_V``
    #: (upper-case model token → V); the other models reach ``MAX_SOURCE_V``.
    MODEL_MAX_SOURCE_V: Mapping[str, float] = {}
    #: Largest DC current in A the family's models can source (their top current range with its
    #: over-range); a compliance or current range beyond it is a typo, not a limit.
    MAX_SOURCE_A: float = 1.05
    #: The same per model where it is below ``MAX_SOURCE_A`` (upper-case model token → A).
    MODEL_MAX_SOURCE_A: Mapping[str, float] = {}

    def __init__(
        self,
        transport: Any,
        *,
        configs: Optional[Mapping[str, SmuChannelConfig]] = None,
        require_interlock: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(transport, **kwargs)
        self.channels: tuple[str, ...] = tuple(self.CHANNELS)
        self.require_interlock = require_interlock
        self._initial_configs = dict(configs or {})
        for ch, cfg in self._initial_configs.items():
            self._validate_config(ch, cfg)
        self._configs: dict[str, SmuChannelConfig] = {}
        self._setpoint: dict[str, float] = {}
        #: cached output state per channel: ``True``/``False``, ``None`` = unknown (being read)
        self._output_on: dict[str, Optional[bool]] = {}
        #: implausible read-backs met so far (also raised as ``ImplausibleReadbackError``)
        self.implausible_readbacks: list[ImplausibleReadbackError] = []
        #: ``{channel: {"output_on", "source_level_v"}}`` as read at the last ``connect()``,
        #: before outputs found on were ramped down and switched off
        self.state_at_connect: dict[str, dict[str, Any]] = {}

    # -- hooks -------------------------------------------------------------------------------

    @abc.abstractmethod
    def _apply_config(self, channel: str, config: SmuChannelConfig) -> None:
        """Send the configuration commands (already validated)."""

    @abc.abstractmethod
    def _write_level(self, channel: str, level_v: float) -> None:
        """Program the source level in V."""

    @abc.abstractmethod
    def _read_level(self, channel: str) -> float:
        """Read the programmed source level in V."""

    @abc.abstractmethod
    def _write_current_limit(self, channel: str, limit_a: float) -> None:
        """Program the current limit in A."""

    @abc.abstractmethod
    def _read_compliance(self, channel: str) -> bool:
        """Instrument's compliance (limit tripped) flag."""

    @abc.abstractmethod
    def _write_output(self, channel: str, on: bool) -> None:
        """Switch the output relay/state."""

    @abc.abstractmethod
    def _read_output(self, channel: str) -> bool:
        """Output state reported by the instrument."""

    @abc.abstractmethod
    def _read_spot(self, channel: str) -> tuple[float, float, bool]:
        """One reading: ``(current_a, source_v, instrument_compliance_flag)``."""

    @abc.abstractmethod
    def _run_sweep(
        self, vectors: Mapping[str, np.ndarray], settle_s: float, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Upload, run and read back; return ``(v_source, i_meas, timestamps)``, each ``(points, channels)``."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Stop any running sweep / trigger model."""

    def _interlock_closed(self) -> Optional[bool]:
        """Hardware interlock state; ``None`` when the model has no (verified) query."""
        return None

    def _check_sweep_settle(self, settle_s: float) -> None:
        """Raise ``LimitViolation`` if ``settle_s`` is not accepted by the instrument."""
        if not (math.isfinite(settle_s) and settle_s >= 0):
            raise LimitViolation("settle_s", settle_s, 0.0, reason="must be >= 0", instrument=self.name)

    # -- validation helpers ------------------------------------------------------------------

    def _check_channel(self, channel: str) -> str:
        if channel not in self.channels:
            raise InstrumentConfigError(f"unknown channel {channel!r}; this instrument has {self.channels}",
                                        instrument=self.name)
        return channel

    @classmethod
    def max_source_v_of(cls, model: Optional[str]) -> float:
        """Largest source level in V of ``model`` (the family's largest when ``model`` is None or
        reaches it)."""
        return cls.MODEL_MAX_SOURCE_V.get((model or "").upper(), cls.MAX_SOURCE_V)

    @classmethod
    def max_source_a_of(cls, model: Optional[str]) -> float:
        """Largest DC source current in A of ``model`` (the family's largest when ``model`` is None or
        reaches it)."""
        return cls.MODEL_MAX_SOURCE_A.get((model or "").upper(), cls.MAX_SOURCE_A)

    @property
    def max_source_v(self) -> float:
        """Largest source level in V of this instrument: of the model it identified as, before
        ``identify()`` of the model the bench names, else the family's largest."""
        return self.max_source_v_of(self.matched_model or self.expected_model)

    def _validate_config(self, channel: str, config: SmuChannelConfig) -> None:
        self._check_channel(channel)
        if not isinstance(config, SmuChannelConfig):
            raise InstrumentConfigError(f"channel {channel!r}: SmuChannelConfig required", instrument=self.name)
        lo, hi = self.NPLC_RANGE
        if not lo <= config.nplc <= hi:
            raise InstrumentConfigError(f"channel {channel!r}: nplc {config.nplc} outside {lo}..{hi}",
                                        instrument=self.name)
        top = self.max_source_v
        model = self.matched_model or self.expected_model or type(self).__name__
        for what, v in (("v_min", config.limits.v_min), ("v_max", config.limits.v_max),
                        ("voltage_range_v", config.source_range_v)):
            if abs(v) > top:
                raise InstrumentConfigError(f"channel {channel!r}: {what} {v:g} V is beyond the {model}'s "
                                            f"{top:g} V source range", instrument=self.name)
        top_a = self.max_source_a_of(self.matched_model or self.expected_model)
        for what, i in (("i_compliance_a", config.limits.i_compliance_a), ("current_range_a", config.current_range_a)):
            if i is not None and abs(i) > top_a:
                raise InstrumentConfigError(f"channel {channel!r}: {what} {i:g} A is beyond the {model}'s "
                                            f"{top_a:g} A source range", instrument=self.name)

    def config(self, channel: str) -> SmuChannelConfig:
        """The applied configuration of ``channel``; ``InstrumentConfigError`` if not configured."""
        self._check_channel(channel)
        try:
            return self._configs[channel]
        except KeyError:
            raise InstrumentConfigError(f"channel {channel!r} is not configured (limits unknown)",
                                        instrument=self.name) from None

    def _point_duration_s(self, channel: str, settle_s: float) -> float:
        cfg = self.config(channel)
        f_line = self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ
        return settle_s + cfg.source_delay_s + cfg.nplc / f_line

    def _maybe_on(self, channel: str) -> bool:
        """``True`` unless the output is known to be off."""
        return self._output_on.get(channel) is not False

    def _unconfigured_limits(self) -> SourceLimits:
        """Ramp limits for a channel without configuration: the model's full source range,
        ``UNCONFIGURED_RAMP_STEP_V`` steps, ``UNCONFIGURED_RAMP_DWELL_S`` dwell."""
        top = self.max_source_v
        return SourceLimits(v_min=-top, v_max=top, i_compliance_a=1.0,
                            max_step_v=UNCONFIGURED_RAMP_STEP_V,
                            max_slew_v_per_s=UNCONFIGURED_RAMP_STEP_V / UNCONFIGURED_RAMP_DWELL_S)

    def _ramp_limits(self, channel: str) -> SourceLimits:
        cfg = self._configs.get(channel)
        return cfg.limits if cfg is not None else self._unconfigured_limits()

    def _plausible_level(self, channel: str, level_v: float) -> tuple[Optional[float], str]:
        """Check a read-back level: ``(level, "")`` if usable (rounding beyond a bound clamped to
        it), ``(None, reason)`` if it is not finite, beyond the model's range, or outside the
        channel's configured ``[v_min, v_max]``."""
        v = float(level_v)
        if not math.isfinite(v):
            return None, "not finite"
        if abs(v) > self.max_source_v:
            return None, f"beyond the instrument's {self.max_source_v:g} V range"
        cfg = self._configs.get(channel)
        if cfg is None:
            return v, ""
        lo, hi = cfg.limits.v_min, cfg.limits.v_max
        tol = max(READBACK_TOLERANCE * max(abs(lo), abs(hi)), READBACK_TOLERANCE_MIN_V)
        if v > hi + tol or v < lo - tol:
            return None, f"outside the configured [{lo:g}, {hi:g}] V"
        return min(max(v, lo), hi), ""

    def _switch_off_unknown(self, channel: str) -> bool:
        """Safest sequence for an output at an unknown level: output off at once (the instrument's
        own off-mode, no level step), then program 0 V with the output off, then read the output
        state back. Returns ``True`` if the output was read back off. Never raises ``Exception``."""
        self._setpoint[channel] = math.nan
        try:
            self._write_output(channel, False)
            self._output_on[channel] = False
        except Exception as exc:
            self.log.error("channel %r: output off failed: %s", channel, exc)
        try:
            self._write_level(channel, 0.0)
            self._setpoint[channel] = 0.0
        except Exception as exc:
            self.log.error("channel %r: programming 0 V failed: %s", channel, exc)
        try:
            off = not self._read_output(channel)
            self._output_on[channel] = not off
            return off
        except Exception as exc:
            self.log.error("channel %r: output state not read back: %s", channel, exc)
            return False

    def _implausible(self, channel: str, value: float, reason: str) -> ImplausibleReadbackError:
        """Treat the level of ``channel`` as unknown: switch off if it may be on; build the error."""
        self.log.error("channel %r: implausible source level read back (%r V: %s); treating it as unknown",
                       channel, value, reason)
        if self._maybe_on(channel):
            verified = self._switch_off_unknown(channel)
        else:
            self._setpoint[channel] = math.nan
            verified = True
            try:
                self._write_level(channel, 0.0)
                self._setpoint[channel] = 0.0
            except Exception as exc:
                self.log.error("channel %r: programming 0 V failed: %s", channel, exc)
        error = ImplausibleReadbackError(channel, value, reason=reason, output_off_verified=verified,
                                         instrument=self.name)
        self.implausible_readbacks.append(error)
        return error

    def _read_level_checked(self, channel: str) -> float:
        """Read the programmed level; raise ``ImplausibleReadbackError`` (after switching the
        output off) if it is implausible. The cache holds the (clamped) level afterwards."""
        raw = self._read_level(channel)
        level, reason = self._plausible_level(channel, raw)
        if level is None:
            raise self._implausible(channel, raw, reason)
        self._setpoint[channel] = level
        return level

    # -- connect -----------------------------------------------------------------------------

    def _shutdown_needed_after_failed_connect(self) -> bool:
        return any(state is not False for state in self._output_on.values())

    def _apply_initial_state(self) -> None:
        """Read output states and levels; bring enabled outputs down to 0 V and off; apply configs.

        A channel found on is ramped from the level read back to 0 V before its output is
        switched off: within its configured limits if it has a configuration, otherwise with
        ``UNCONFIGURED_RAMP_STEP_V`` steps and ``UNCONFIGURED_RAMP_DWELL_S`` dwell. What was found
        is kept in ``state_at_connect``. Every level is checked before any ramp starts: an
        implausible one (see ``_plausible_level``) is never ramped from; that output is switched
        off directly, 0 V programmed, and ``ImplausibleReadbackError`` raised if it was on.
        """
        self._output_on = {ch: None for ch in self.channels}  # unknown until read
        self._setpoint = {ch: math.nan for ch in self.channels}
        raw: dict[str, float] = {}
        for ch in self.channels:
            self._output_on[ch] = self._read_output(ch)
            raw[ch] = self._read_level(ch)
        self.state_at_connect = {ch: {"output_on": self._output_on[ch], "source_level_v": raw[ch]}
                                 for ch in self.channels}
        for ch, cfg in self._initial_configs.items():
            self._configs[ch] = cfg  # limits known before any ramp
        problems = []
        for ch in self.channels:  # every level checked before any ramp starts
            level, reason = self._plausible_level(ch, raw[ch])
            if level is None:
                self.state_at_connect[ch]["implausible"] = reason
                problems.append(self._implausible(ch, raw[ch], reason))
            else:
                self._setpoint[ch] = level
        live = [p for p in problems if self.state_at_connect[p.channel]["output_on"]]
        if live:  # switched off already; connect() fails and its shutdown handles the other channels
            raise live[0]
        for ch in self.channels:
            if self._output_on[ch]:
                self.log.warning("channel %r output was on at connect (%.6g V); ramping to 0 V and switching off",
                                 ch, self._setpoint[ch])
                self._ramp_to_zero(ch)
                self._write_output(ch, False)
                self._output_on[ch] = False
        for ch, cfg in self._initial_configs.items():
            self._apply_config(ch, cfg)

    # -- SourceMeter protocol ----------------------------------------------------------------

    def configure(self, channel: str, config: SmuChannelConfig) -> None:
        """Apply ``config`` (fixed ranges, NPLC, autozero, source delay, off-mode, current limit).

        Validated before any I/O; then the error queue must stay clean.

        Raises:
            LimitViolation: the output of ``channel`` is on (nothing written). Ranges and the
                current limit are never rewritten while sourcing: switch the output off first
                (``output(ch, False)`` ramps to 0 V), configure, then switch on again.
        """
        self._validate_config(channel, config)
        if self._output_on.get(channel) is not False and channel in self._output_on:
            raise LimitViolation("output_on", 1.0, 0.0, instrument=self.name,
                                 reason=f"channel {channel!r}: switch the output off before configure()")
        self._apply_config(channel, config)
        self._configs[channel] = config
        self.check_errors()

    def _program_level(self, channel: str, level_v: float) -> None:
        """Write a source level (V) and cache it. The cache says "unknown" while the write is in
        flight, so an interrupt (Ctrl-C, SIGTERM) landing between the write and the cache update
        leaves a level that shutdown reads back instead of a stale one it would trust (a stale 0 V
        would skip the ramp and the final 0 V write and leave the new level programmed)."""
        self._setpoint[channel] = math.nan
        self._write_level(channel, level_v)
        self._setpoint[channel] = level_v

    def _ramp(self, channel: str, target_v: float, *, check_target: bool = True) -> None:
        limits = self.config(channel).limits
        self._run_ramp(channel, limits, target_v, check_target=check_target)

    def _run_ramp(self, channel: str, limits: SourceLimits, target_v: float, *, check_target: bool) -> None:
        """Ramp from the cached level (read back and checked first when unknown, e.g. after an
        instrument error or a resync); the plan is computed and checked (start and every level
        within ``[v_min, v_max]``, bounded step count) before the first write."""
        start = self._known_level(channel)
        plan = plan_ramp(limits, start, target_v, check_target=check_target)
        for level in plan.levels:
            if self._abort_ramps:
                self.log.warning("ramp on %r skipped (abort)", channel)
                return
            self._program_level(channel, level)
            self._sleep(plan.dwell_s)

    def _ramp_to_zero(self, channel: str) -> None:
        """Ramp ``channel`` from its present level to 0 V; nothing is written if already at 0 V.

        Uses the configured step/slew limits, or ``UNCONFIGURED_RAMP_STEP_V`` /
        ``UNCONFIGURED_RAMP_DWELL_S`` within the model's range when the channel has no
        configuration. An unknown cached level is read back first and checked
        (``ImplausibleReadbackError`` after switching the output off if implausible). When the
        link could not be confirmed during a shutdown the ramp is skipped (level unknown).
        """
        if self._link_suspect:
            self.log.error("channel %r: link unconfirmed, level unknown; no ramp", channel)
            return
        level = self._setpoint.get(channel, math.nan)
        if not math.isfinite(level):
            level = self._read_level_checked(channel)
        if level == 0.0:
            return
        if channel not in self._configs:
            self.log.warning("channel %r has no configured limits; ramping %.6g V -> 0 V in %g V steps, %g s dwell",
                             channel, level, UNCONFIGURED_RAMP_STEP_V, UNCONFIGURED_RAMP_DWELL_S)
        self._run_ramp(channel, self._ramp_limits(channel), 0.0, check_target=False)

    def set_voltage(self, channel: str, level_v: float) -> None:
        """Set the source level in V: bounds checked before I/O; ramped while the output is on."""
        limits = self.config(channel).limits
        target = check_level(limits, level_v, name=f"{channel or 'level'}")
        if self._maybe_on(channel):
            self._ramp(channel, target)
        else:
            self._program_level(channel, target)

    def voltage_setpoint(self, channel: str) -> float:
        """Programmed source level in V, read from the instrument (the cache is refreshed)."""
        self._check_channel(channel)
        return self._read_level_checked(channel)

    def set_current_limit(self, channel: str, limit_a: float) -> None:
        """Program the current limit in A; must satisfy ``0 < limit_a <= i_compliance_a``."""
        limit = check_current_limit(self.config(channel).limits, limit_a)
        self._write_current_limit(channel, limit)

    def compliance_tripped(self, channel: str) -> bool:
        """Instrument's limit-tripped flag for ``channel``."""
        self._check_channel(channel)
        return self._read_compliance(channel)

    def output(self, channel: str, on: bool) -> None:
        """Switch the output.

        On: interlock must be closed and ``|setpoint| <= max_step_v``. Off: if the output is (or
        may be) on and the level is not 0 V, the level is first ramped to 0 V within
        ``max_step_v``/``max_slew_v_per_s`` (built-in conservative step for unconfigured
        channels), then the output is switched off; the setpoint stays 0 V. If the ramp fails
        (e.g. the level cannot be read), the output is still switched off and the error re-raised.
        """
        if not isinstance(on, (bool, np.bool_)) and not (isinstance(on, int) and on in (0, 1)):
            # a string such as "off" is true in Python: it would switch the output on
            raise TypeError(f"{self.name}: output state of channel {channel!r}: expected True or False, got "
                            f"{type(on).__name__} {on!r}")
        cfg = self.config(channel) if on else None
        if on:
            assert cfg is not None
            level = self._setpoint.get(channel, math.nan)
            if not (math.isfinite(level) and abs(level) <= cfg.limits.max_step_v):
                raise LimitViolation("output_on_level", level, cfg.limits.max_step_v, instrument=self.name,
                                     reason="switching on would step from 0 V; set a level within max_step_v first")
            closed = self._interlock_closed()
            if closed is False and self.require_interlock:
                raise InterlockError("hardware interlock open; output not enabled", instrument=self.name)
        else:
            self._check_channel(channel)
            if self._maybe_on(channel):
                try:
                    self._ramp_to_zero(channel)
                except Exception:
                    # An output left live at an unknown level is worse than an unramped off.
                    self.log.error("channel %r: ramp to 0 V failed; switching the output off anyway", channel)
                    self._write_output(channel, False)
                    self._output_on[channel] = False
                    raise
        self._output_on[channel] = None  # unknown while the write is in flight (see _program_level)
        self._write_output(channel, bool(on))
        self._output_on[channel] = bool(on)

    def output_enabled(self, channel: str) -> bool:
        """Output state read from the instrument (the cache is refreshed)."""
        self._check_channel(channel)
        state = self._read_output(channel)
        self._output_on[channel] = state
        return state

    def measure_current(self, channel: str) -> Reading:
        """One spot reading; compliance = instrument flag or ``|I| >= 0.98 * i_compliance_a``.

        Raises:
            PowerLimitError: ``max_power_w`` is configured and ``|V·I|`` of the reading exceeds
                it; the channel has been ramped to 0 V and switched off before the raise.
            ImplausibleReadbackError: the reading's source level is implausible (see
                ``_plausible_level``); the output has been switched off before the raise.
            InstrumentProtocolError: the current is finite but far beyond the measurement range
                (see ``_check_currents``); the channel has been ramped to 0 V and switched off.
        """
        limits = self.config(channel).limits
        limit = limits.i_compliance_a
        current, source_v, flag = self._read_spot(channel)
        usable, reason = self._plausible_level(channel, source_v)
        if usable is None:  # never used, not even for the power check
            raise self._implausible(channel, source_v, reason)
        self._check_currents([channel], np.array([[current]]), point=None)
        soft = bool(at_limit(current, limit))
        if flag or soft:
            self.log.warning("channel %r at limit: I=%.6g A (limit %.6g A, flag %s)", channel, current, limit, flag)
        if bool(over_power(source_v, current, limits.max_power_w)):
            self._raise_power_error([channel], channel, source_v, current, point=None)
        return Reading(value=current, source_value=source_v, compliance=bool(flag or soft))

    def _make_safe(self, channels: list[str]) -> list[tuple[str, str]]:
        """Ramp each channel to 0 V and switch it off; never raises ``Exception``.

        Returns ``(channel, description)`` for every step that failed (each failure is logged
        and the next step still runs: an output is switched off even if its ramp failed).
        """
        failures: list[tuple[str, str]] = []
        for ch in channels:
            for what, step in (("ramp to 0 V", self._ramp_to_zero), ("output off", self._output_off)):
                try:
                    step(ch)
                except Exception as exc:
                    self.log.error("channel %r: %s failed while making safe: %s", ch, what, exc)
                    failures.append((ch, f"{what}: {exc}"))
        return failures

    def _raise_power_error(self, channels: list[str], channel: str, voltage_v: float, current_a: float,
                           *, point: Optional[int]) -> None:
        max_power = self.config(channel).limits.max_power_w
        assert max_power is not None
        self.log.error("channel %r: |V*I| = |%.6g V * %.6g A| above max_power_w %.6g W%s; ramping %s to 0 V, "
                       "outputs off", channel, voltage_v, current_a, max_power,
                       "" if point is None else f" at point {point}", channels)
        failures = self._make_safe(channels)
        raise PowerLimitError(channel, max_power, voltage_v, current_a, point=point,
                              channels_made_safe=[ch for ch in channels if ch not in {f[0] for f in failures}],
                              safe_state_failures=failures, instrument=self.name)

    def list_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float) -> SweepResult:
        """Run one synchronised list sweep over the named channels.

        Every vector is checked first (bounds, step from and back to the present level, slew
        over the point duration ``settle_s + source_delay_s + nplc/f_line``); outputs must be on.
        Per-point compliance uses the software rule (instrument per-point status bits are not
        used; see the driver notes).

        Raises:
            LimitViolation: a vector breaks a limit (nothing sent).
            PowerLimitError: a channel with ``max_power_w`` has a point with ``|V·I|`` above it
                (read-back source level times measured current); every swept channel has been
                ramped to 0 V and switched off before the raise, and the batch is invalid.

        Args:
            levels_v: ``{channel: 1-D levels in V}``, all of equal length.
            settle_s: extra settling time per point in s.
        """
        vectors, timeout_s = self._checked_sweep_vectors(levels_v, settle_s)
        try:
            v_src, i_meas, stamps = self._run_sweep(vectors, float(settle_s), timeout_s)
        except BaseException:
            for ch in vectors:  # the sweep may have left any list level behind: read it back later
                self._setpoint[ch] = math.nan
            raise
        limits = np.array([self.config(ch).limits.i_compliance_a for ch in vectors])
        compliance = at_limit(i_meas / limits, 1.0)
        for ch in vectors:
            self.voltage_setpoint(ch)
        self._check_sweep_power(list(vectors), v_src, i_meas)
        self.check_errors()
        if compliance.any():
            self.log.error("sweep: %d point(s) at the current limit", int(compliance.sum()))
        return SweepResult(v_source=v_src, i_meas=i_meas, compliance=compliance, timestamps=stamps,
                           channels=tuple(vectors))

    def _checked_sweep_vectors(self, levels_v: Mapping[str, ArrayLike],
                               settle_s: float) -> tuple[dict[str, np.ndarray], float]:
        """The checks of :meth:`list_sweep`, before any I/O: settle time, every vector's bounds, step
        from and back to the present level and slew over the point duration, equal lengths, outputs
        on. Returns the vectors and a timeout for the whole run, s."""
        if not levels_v:
            raise LimitViolation("channels", 0.0, 1.0, reason="no channel given", instrument=self.name)
        self._check_sweep_settle(float(settle_s))
        vectors: dict[str, np.ndarray] = {}
        for ch, levels in levels_v.items():
            start = self._known_level(ch)
            vectors[ch] = check_vector(self.config(ch).limits, levels, start_v=start, end_v=start,
                                       point_duration_s=self._point_duration_s(ch, float(settle_s)))
        lengths = {v.size for v in vectors.values()}
        if len(lengths) != 1:
            raise LimitViolation("points", float(max(lengths)), float(min(lengths)),
                                 reason="all channels need the same number of points", instrument=self.name)
        off = [ch for ch in vectors if self._output_on.get(ch) is not True]
        if off:
            raise InstrumentError(f"outputs off on channels {off}; switch them on before a sweep", instrument=self.name)
        n = lengths.pop()
        f_line = self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ
        worst = max(self._point_duration_s(ch, float(settle_s)) for ch in vectors)
        nplc = max(self.config(ch).nplc for ch in vectors)
        return vectors, 2 * n * nplc / f_line + n * worst + self.sweep_timeout_margin_s

    def _check_currents(self, channels: list[str], i_meas: np.ndarray, *, point: Optional[int] = 0) -> None:
        """Refuse finite current readings (points, channels) A beyond ``IMPLAUSIBLE_CURRENT_FACTOR``
        times each channel's measurement range: every listed channel is ramped to 0 V and switched
        off, then ``InstrumentProtocolError`` is raised (``point=None``: a spot reading)."""
        for k, ch in enumerate(channels):
            rng = self.config(ch).current_range_a
            col = np.asarray(i_meas, float)[:, k]
            bad = np.flatnonzero(np.isfinite(col) & (np.abs(col) > IMPLAUSIBLE_CURRENT_FACTOR * rng))
            if bad.size:
                at = "" if point is None else f" at point {int(bad[0])}"
                self.log.error("channel %r: implausible current reading %.6g A%s (range %g A); making %s safe",
                               ch, col[bad[0]], at, rng, channels)
                failures = self._make_safe(channels)
                safe = [c for c in channels if c not in {f[0] for f in failures}]
                raise InstrumentProtocolError(
                    f"channel {ch!r}: implausible current reading {col[bad[0]]:.6g} A{at} (measurement range "
                    f"{rng:g} A), not used; ramped to 0 V and switched off: {safe}", instrument=self.name)

    def _check_sweep_power(self, channels: list[str], v_src: np.ndarray, i_meas: np.ndarray) -> None:
        """Per-reading power rule over a sweep (after refusing implausible currents, see
        ``_check_currents``) and finite but implausible source values (see ``_plausible_level``:
        that channel is switched off at once, the others ramped down, and
        ``ImplausibleReadbackError`` raised; a missing point's sentinel is left to the caller's
        masking); on a violation make every swept channel safe and raise."""
        self._check_currents(channels, i_meas)
        for k, ch in enumerate(channels):
            for v in np.asarray(v_src, float)[:, k]:
                if not np.isfinite(v):
                    continue
                usable, reason = self._plausible_level(ch, float(v))
                if usable is None:
                    error = self._implausible(ch, float(v), f"sweep source value, {reason}")
                    self._make_safe([c for c in channels if c != ch])
                    raise error
        for k, ch in enumerate(channels):
            bad = np.flatnonzero(over_power(v_src[:, k], i_meas[:, k], self.config(ch).limits.max_power_w))
            if bad.size:
                point = int(bad[0])
                self.log.error("sweep: %d point(s) of channel %r above max_power_w", bad.size, ch)
                self._raise_power_error(channels, ch, float(v_src[point, k]), float(i_meas[point, k]), point=point)

    # -- snapshot and shutdown ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """``DriverBase.snapshot()`` plus ``outputs``: per channel the cached output state and
        source level (``voltage_setpoint``/``output_enabled`` refresh them) and what
        ``connect()`` found before switching outputs off (``at_connect``)."""
        snap = super().snapshot()
        snap["outputs"] = {
            ch or "_": {"output_on": self._output_on.get(ch), "source_level_v": self._setpoint.get(ch),
                        "at_connect": self.state_at_connect.get(ch)}
            for ch in self.channels
        }
        return snap

    def _settings_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ch, cfg in self._configs.items():
            lim = cfg.limits
            out[ch or "_"] = {
                "nplc": cfg.nplc, "current_range_a": cfg.current_range_a, "voltage_range_v": cfg.source_range_v,
                "autozero": cfg.autozero, "source_delay_s": cfg.source_delay_s, "off_mode": cfg.off_mode,
                "four_wire": cfg.four_wire,
                "limits": {"v_min": lim.v_min, "v_max": lim.v_max, "i_compliance_a": lim.i_compliance_a,
                           "max_step_v": lim.max_step_v, "max_slew_v_per_s": lim.max_slew_v_per_s,
                           "max_power_w": lim.max_power_w},
            }
        return out

    def _shutdown_steps(self) -> list[ShutdownStep]:
        steps: list[ShutdownStep] = [("abort", self._abort)]
        for ch in self.channels:
            if self._maybe_on(ch) and (ch in self._configs or self._output_on.get(ch) is True):
                # configured channels on or unknown; unconfigured ones found on (e.g. by a
                # connect() that failed before switching them off)
                steps.append((f"ramp {ch!r} to 0 V", lambda ch=ch: self._ramp_to_zero(ch)))
        for ch in self.channels:
            steps.append((f"output {ch!r} off", lambda ch=ch: self._output_off(ch)))
        return steps

    def _known_level(self, channel: str) -> float:
        """The channel's present level in V: the cached one, or (unknown, e.g. after an instrument
        error, or a timeout whose resync is pending and runs first) read back and checked."""
        self._before_exchange()  # a pending resync forgets the levels before the cache is read
        level = self._setpoint.get(channel, math.nan)
        return level if math.isfinite(level) else self._read_level_checked(channel)

    def _forget_cached_state(self) -> None:
        """Every channel's level unknown: the next ramp (``set_voltage`` on an output that may be on,
        or the shutdown's ramp to 0 V) reads it back and checks it instead of trusting the cache.
        (Output states stay: one believed on or unknown is ramped down and switched off at
        shutdown anyway, and every output is sent its off command whatever the cache says.)"""
        for ch in self.channels:
            self._setpoint[ch] = math.nan

    def _refresh_output_state(self) -> None:
        """Forget every cached output state and level, then read them back (levels checked; an
        implausible one switches its output off); what cannot be read stays unknown."""
        for ch in self.channels:
            self._output_on[ch] = None
            self._setpoint[ch] = math.nan
        for ch in self.channels:
            try:
                self._output_on[ch] = self._read_output(ch)
                self._read_level_checked(ch)
            except Exception as exc:
                self.log.error("channel %r: state not read back after reopening: %s", ch, exc)

    def _output_off(self, channel: str) -> None:
        """Output off; then program 0 V if the level is not known to be 0 V (ramp skipped)."""
        self._write_output(channel, False)
        self._output_on[channel] = False
        if self._setpoint.get(channel, math.nan) != 0.0:
            self._program_level(channel, 0.0)

    def _output_names(self) -> list[str]:
        return list(self.channels)

    def _verify_safe(self) -> dict[str, bool]:
        """Per channel: output read back off and programmed level read back within 1 µV of 0 V."""
        result: dict[str, bool] = {}
        for ch in self.channels:
            on = self._read_output(ch)
            level = self._read_level(ch)
            self._output_on[ch] = on
            result[ch] = (not on) and math.isfinite(level) and abs(level) <= ZERO_TOLERANCE_V
            if not result[ch]:
                self.log.error("channel %r not safe after shutdown: output %s, level %r V", ch,
                               "ON" if on else "off", level)
        return result
