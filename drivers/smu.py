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
* ``safe_shutdown`` aborts, ramps every channel to 0 V, switches outputs off.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from drivers.base import DriverBase, ShutdownStep
from drivers.errors import InstrumentConfigError, InstrumentError, InterlockError, LimitViolation
from drivers.limits import AT_LIMIT_FRACTION, check_current_limit, check_level, check_vector, plan_ramp
from drivers.protocols import Reading, SmuChannelConfig, SweepResult

__all__ = ["SourceMeterDriver", "at_limit"]

#: Mains frequency assumed for timing estimates before it was read (the shorter period, 60 Hz,
#: gives the shorter point duration and therefore the stricter slew check).
FALLBACK_LINE_FREQUENCY_HZ = 60.0


def at_limit(current_a: ArrayLike, limit_a: float) -> np.ndarray:
    """Software compliance rule (§5.4): ``|I| >= 0.98 * limit`` or non-finite (overflow/missing)."""
    i = np.asarray(current_a, dtype=float)
    return ~np.isfinite(i) | (np.abs(i) >= AT_LIMIT_FRACTION * limit_a)


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
        self._output_on: dict[str, bool] = {}

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

    def _validate_config(self, channel: str, config: SmuChannelConfig) -> None:
        self._check_channel(channel)
        if not isinstance(config, SmuChannelConfig):
            raise InstrumentConfigError(f"channel {channel!r}: SmuChannelConfig required", instrument=self.name)
        lo, hi = self.NPLC_RANGE
        if not lo <= config.nplc <= hi:
            raise InstrumentConfigError(f"channel {channel!r}: nplc {config.nplc} outside {lo}..{hi}",
                                        instrument=self.name)

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

    # -- connect -----------------------------------------------------------------------------

    def _apply_initial_state(self) -> None:
        """Read output states and levels; bring enabled outputs down to 0 V and off; apply configs."""
        for ch in self.channels:
            self._output_on[ch] = self._read_output(ch)
            self._setpoint[ch] = self._read_level(ch)
        for ch, cfg in self._initial_configs.items():
            self._configs[ch] = cfg  # limits known before any ramp
        for ch in self.channels:
            if self._output_on[ch]:
                self.log.warning("channel %r output was on at connect (%.6g V); switching off", ch, self._setpoint[ch])
                if ch in self._configs:
                    self._ramp(ch, 0.0, check_target=False)
                self._write_output(ch, False)
                self._output_on[ch] = False
        for ch, cfg in self._initial_configs.items():
            self._apply_config(ch, cfg)

    # -- SourceMeter protocol ----------------------------------------------------------------

    def configure(self, channel: str, config: SmuChannelConfig) -> None:
        """Apply ``config`` (fixed ranges, NPLC, autozero, source delay, off-mode, current limit).

        Validated before any I/O; then the error queue must stay clean.
        """
        self._validate_config(channel, config)
        self._apply_config(channel, config)
        self._configs[channel] = config
        self.check_errors()

    def _ramp(self, channel: str, target_v: float, *, check_target: bool = True) -> None:
        limits = self.config(channel).limits
        start = self._setpoint.get(channel, math.nan)
        plan = plan_ramp(limits, start, target_v, check_target=check_target)
        for level in plan.levels:
            if self._abort_ramps:
                self.log.warning("ramp on %r skipped (abort)", channel)
                return
            self._write_level(channel, level)
            self._setpoint[channel] = level
            self._sleep(plan.dwell_s)

    def set_voltage(self, channel: str, level_v: float) -> None:
        """Set the source level in V: bounds checked before I/O; ramped while the output is on."""
        limits = self.config(channel).limits
        target = check_level(limits, level_v, name=f"{channel or 'level'}")
        if self._output_on.get(channel, False):
            self._ramp(channel, target)
        else:
            self._write_level(channel, target)
            self._setpoint[channel] = target

    def voltage_setpoint(self, channel: str) -> float:
        """Programmed source level in V, read from the instrument (the cache is refreshed)."""
        self._check_channel(channel)
        level = self._read_level(channel)
        self._setpoint[channel] = level
        return level

    def set_current_limit(self, channel: str, limit_a: float) -> None:
        """Program the current limit in A; must satisfy ``0 < limit_a <= i_compliance_a``."""
        limit = check_current_limit(self.config(channel).limits, limit_a)
        self._write_current_limit(channel, limit)

    def compliance_tripped(self, channel: str) -> bool:
        """Instrument's limit-tripped flag for ``channel``."""
        self._check_channel(channel)
        return self._read_compliance(channel)

    def output(self, channel: str, on: bool) -> None:
        """Switch the output. On: interlock must be closed and ``|setpoint| <= max_step_v``."""
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
        self._write_output(channel, bool(on))
        self._output_on[channel] = bool(on)

    def output_enabled(self, channel: str) -> bool:
        """Output state read from the instrument (the cache is refreshed)."""
        self._check_channel(channel)
        state = self._read_output(channel)
        self._output_on[channel] = state
        return state

    def measure_current(self, channel: str) -> Reading:
        """One spot reading; compliance = instrument flag or ``|I| >= 0.98 * i_compliance_a``."""
        limit = self.config(channel).limits.i_compliance_a
        current, source_v, flag = self._read_spot(channel)
        soft = bool(at_limit(current, limit))
        if flag or soft:
            self.log.warning("channel %r at limit: I=%.6g A (limit %.6g A, flag %s)", channel, current, limit, flag)
        return Reading(value=current, source_value=source_v, compliance=bool(flag or soft))

    def list_sweep(self, levels_v: Mapping[str, ArrayLike], settle_s: float) -> SweepResult:
        """Run one synchronised list sweep over the named channels.

        Every vector is checked first (bounds, step from and back to the present level, slew
        over the point duration ``settle_s + source_delay_s + nplc/f_line``); outputs must be on.
        Per-point compliance uses the software rule (instrument per-point status bits are not
        used; see the driver notes).

        Args:
            levels_v: ``{channel: 1-D levels in V}``, all of equal length.
            settle_s: extra settling time per point in s.
        """
        if not levels_v:
            raise LimitViolation("channels", 0.0, 1.0, reason="no channel given", instrument=self.name)
        self._check_sweep_settle(float(settle_s))
        vectors: dict[str, np.ndarray] = {}
        for ch, levels in levels_v.items():
            cfg = self.config(ch)
            start = self._setpoint.get(ch, math.nan)
            vectors[ch] = check_vector(cfg.limits, levels, start_v=start, end_v=start,
                                       point_duration_s=self._point_duration_s(ch, float(settle_s)))
        lengths = {v.size for v in vectors.values()}
        if len(lengths) != 1:
            raise LimitViolation("points", float(max(lengths)), float(min(lengths)),
                                 reason="all channels need the same number of points", instrument=self.name)
        off = [ch for ch in vectors if not self._output_on.get(ch, False)]
        if off:
            raise InstrumentError(f"outputs off on channels {off}; switch them on before a sweep", instrument=self.name)
        n = lengths.pop()
        f_line = self.line_frequency_hz or FALLBACK_LINE_FREQUENCY_HZ
        worst = max(self._point_duration_s(ch, float(settle_s)) for ch in vectors)
        nplc = max(self.config(ch).nplc for ch in vectors)
        timeout_s = 2 * n * nplc / f_line + n * worst + 5.0
        v_src, i_meas, stamps = self._run_sweep(vectors, float(settle_s), timeout_s)
        limits = np.array([self.config(ch).limits.i_compliance_a for ch in vectors])
        compliance = at_limit(i_meas / limits, 1.0)
        for ch in vectors:
            self.voltage_setpoint(ch)
        self.check_errors()
        if compliance.any():
            self.log.error("sweep: %d point(s) at the current limit", int(compliance.sum()))
        return SweepResult(v_source=v_src, i_meas=i_meas, compliance=compliance, timestamps=stamps,
                           channels=tuple(vectors))

    # -- snapshot and shutdown ---------------------------------------------------------------

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
            if ch in self._configs and self._output_on.get(ch, True):
                steps.append((f"ramp {ch!r} to 0 V", lambda ch=ch: self._shutdown_ramp(ch)))
        for ch in self.channels:
            steps.append((f"output {ch!r} off", lambda ch=ch: self._output_off(ch)))
        return steps

    def _shutdown_ramp(self, channel: str) -> None:
        if not math.isfinite(self._setpoint.get(channel, math.nan)):
            self._setpoint[channel] = self._read_level(channel)
        self._ramp(channel, 0.0, check_target=False)

    def _output_off(self, channel: str) -> None:
        self._write_output(channel, False)
        self._output_on[channel] = False
