"""Mandatory per-channel source limits, checked before any I/O, and ramp planning (§5.1).

Everything here is pure computation: a driver calls these functions first and only then builds
command strings, so a refused request writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from hil.drivers.errors import InstrumentConfigError, LimitViolation

__all__ = [
    "SourceLimits",
    "RampPlan",
    "effective_bounds",
    "check_level",
    "check_current_limit",
    "check_vector",
    "plan_ramp",
    "AT_LIMIT_FRACTION",
    "MAX_RAMP_STEPS",
]

#: Software rule (§5.4): ``|I| >= AT_LIMIT_FRACTION * i_compliance_a`` counts as "at limit".
AT_LIMIT_FRACTION = 0.98

_ABS_TOL_V = 1e-12  # float slack when comparing levels to bounds

#: Most steps a single ramp may take; a longer plan is refused before any write (it would mean a
#: start level far outside anything the configuration allows, or absurd step limits).
MAX_RAMP_STEPS = 10_000


@dataclass(frozen=True)
class SourceLimits:
    """Safety limits of one source channel (SI units).

    Attributes:
        v_min, v_max: allowed source levels in V (``v_min < v_max``).
        i_compliance_a: current limit in A programmed into the instrument (> 0).
        max_step_v: largest change between consecutive levels in V (> 0).
        max_slew_v_per_s: largest rate of change in V/s (> 0).
        max_power_w: worst-case dissipation in W; narrows the voltage bounds to
            ``max_power_w / i_compliance_a``. ``None`` = no power bound.

    Raises:
        InstrumentConfigError: a value is missing, not finite, or inconsistent.
    """

    v_min: float
    v_max: float
    i_compliance_a: float
    max_step_v: float
    max_slew_v_per_s: float
    max_power_w: Optional[float] = None

    def __post_init__(self) -> None:
        problems = []
        for key in ("v_min", "v_max", "i_compliance_a", "max_step_v", "max_slew_v_per_s", "max_power_w"):
            value = getattr(self, key)
            if value is None and key == "max_power_w":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{key}: finite number required, got {value!r}")
        if problems:
            raise InstrumentConfigError("; ".join(problems))
        if not self.v_min < self.v_max:
            problems.append(f"v_min ({self.v_min}) must be < v_max ({self.v_max})")
        for key in ("i_compliance_a", "max_step_v", "max_slew_v_per_s"):
            if not getattr(self, key) > 0:
                problems.append(f"{key}: must be > 0, got {getattr(self, key)}")
        if self.max_power_w is not None and not self.max_power_w > 0:
            problems.append(f"max_power_w: must be > 0, got {self.max_power_w}")
        if problems:
            raise InstrumentConfigError("; ".join(problems))

    @property
    def step_dwell_s(self) -> float:
        """Dwell per ramp step in s: ``max_step_v / max_slew_v_per_s``."""
        return self.max_step_v / self.max_slew_v_per_s


@dataclass(frozen=True)
class RampPlan:
    """Levels to apply in order (the last one is the target) and the dwell after each, in s."""

    levels: tuple[float, ...]
    dwell_s: float


def effective_bounds(limits: SourceLimits) -> tuple[float, float]:
    """Return ``(lo, hi)`` in V after applying the power bound ``max_power_w / i_compliance_a``."""
    lo, hi = limits.v_min, limits.v_max
    if limits.max_power_w is not None:
        v_pow = limits.max_power_w / limits.i_compliance_a
        lo, hi = max(lo, -v_pow), min(hi, v_pow)
    return lo, hi


def check_level(limits: SourceLimits, level_v: float, *, name: str = "level") -> float:
    """Return ``level_v`` as float if inside the effective bounds, else raise ``LimitViolation``."""
    v = float(level_v)
    if not math.isfinite(v):
        raise LimitViolation(name, v, float("nan"), reason="level must be finite")
    lo, hi = effective_bounds(limits)
    if v > hi + _ABS_TOL_V:
        bound_name = "max_power_w" if hi < limits.v_max else "v_max"
        raise LimitViolation(name, v, hi, reason=f"above {bound_name}")
    if v < lo - _ABS_TOL_V:
        bound_name = "max_power_w" if lo > limits.v_min else "v_min"
        raise LimitViolation(name, v, lo, reason=f"below {bound_name}")
    return v


def check_current_limit(limits: SourceLimits, limit_a: float) -> float:
    """Return ``limit_a`` if ``0 < limit_a <= i_compliance_a``, else raise ``LimitViolation``."""
    i = float(limit_a)
    if not (math.isfinite(i) and i > 0):
        raise LimitViolation("current_limit", i, 0.0, reason="must be > 0")
    if i > limits.i_compliance_a * (1 + 1e-9):
        raise LimitViolation("current_limit", i, limits.i_compliance_a, reason="above i_compliance_a")
    return i


def _check_step(limits: SourceLimits, v_from: float, v_to: float, name: str) -> None:
    if not (math.isfinite(v_from) and math.isfinite(v_to)):  # (a NaN compares False with any bound)
        raise LimitViolation(name, float("nan"), limits.max_step_v,
                             reason=f"step {v_from:.6g} V -> {v_to:.6g} V: a level is unknown")
    step = abs(v_to - v_from)
    if step > limits.max_step_v * (1 + 1e-9) + _ABS_TOL_V:
        raise LimitViolation(name, step, limits.max_step_v, reason=f"step {v_from:.6g} V -> {v_to:.6g} V exceeds max_step_v")


def check_vector(
    limits: SourceLimits,
    levels_v: ArrayLike,
    *,
    start_v: float,
    end_v: Optional[float] = None,
    point_duration_s: float,
) -> np.ndarray:
    """Validate a list-sweep vector; return it as a float64 array.

    Checks every point against the effective bounds, every consecutive step (including
    ``start_v`` → first point and last point → ``end_v``, the level left behind) against
    ``max_step_v``, and ``step / point_duration_s`` against ``max_slew_v_per_s``.

    Args:
        limits: the channel's limits.
        levels_v: 1-D sequence of levels in V (at least one point).
        start_v: present source level in V.
        end_v: level the instrument returns to after the sweep in V (``None`` = not checked).
        point_duration_s: time each point is held in s (source delay + integration, > 0).

    Raises:
        LimitViolation: first offending point or step; nothing has been sent yet.
    """
    v = np.asarray(levels_v, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise LimitViolation("points", float(v.size), 1.0, reason="a non-empty 1-D vector is required")
    if not point_duration_s > 0:
        raise LimitViolation("point_duration_s", float(point_duration_s), 0.0, reason="must be > 0")
    for k, level in enumerate(v):
        check_level(limits, level, name=f"point[{k}]")
    path = np.concatenate(([float(start_v)], v, [] if end_v is None else [float(end_v)]))
    steps = np.abs(np.diff(path))
    for k, step in enumerate(steps):
        _check_step(limits, path[k], path[k + 1], name=f"step[{k}]")
        rate = step / point_duration_s
        if rate > limits.max_slew_v_per_s * (1 + 1e-9):
            raise LimitViolation(f"slew[{k}]", rate, limits.max_slew_v_per_s, reason="step / point duration exceeds max_slew_v_per_s")
    return v


def plan_ramp(limits: SourceLimits, from_v: float, to_v: float, *, check_target: bool = True) -> RampPlan:
    """Plan a ramp from ``from_v`` to ``to_v`` in equal steps of at most ``max_step_v``.

    ``n = max(1, ceil(|to - from| / max_step_v))`` steps, each followed by a dwell of
    ``max_step_v / max_slew_v_per_s`` s. Intermediate levels lie between start and target, so
    with both inside the (convex) bounds they are inside too.

    Args:
        limits: the channel's limits.
        from_v: present level in V (the cached setpoint).
        to_v: target level in V.
        check_target: validate the target against the bounds (``False`` only for the shutdown
            ramp to 0 V, which must never be refused).

    Raises:
        LimitViolation: target outside the effective bounds; a start level that is not finite
            or outside ``[v_min, v_max]`` (never used as a ramp start); with
            ``check_target=False`` a target other than 0 V (the off state, always reachable)
            outside ``[v_min, v_max]``; more than ``MAX_RAMP_STEPS`` steps. Nothing has been
            written.
    """
    target = check_level(limits, to_v, name="target") if check_target else float(to_v)
    start = float(from_v)
    if not math.isfinite(start):
        raise LimitViolation("present_level", start, float("nan"), reason="present level unknown")
    checks = [("present_level", start)] + ([] if (not check_target and target == 0.0) else [("target", target)])
    for name, value in checks:
        if value > limits.v_max + _ABS_TOL_V:
            raise LimitViolation(name, value, limits.v_max, reason="above v_max: never ramped from or to")
        if value < limits.v_min - _ABS_TOL_V:
            raise LimitViolation(name, value, limits.v_min, reason="below v_min: never ramped from or to")
    n = max(1, math.ceil(abs(target - start) / limits.max_step_v - 1e-9))
    if n > MAX_RAMP_STEPS:
        raise LimitViolation("ramp_steps", float(n), float(MAX_RAMP_STEPS), reason="ramp would take too many steps")
    levels = tuple(start + (target - start) * k / n for k in range(1, n))
    return RampPlan(levels=levels + (target,), dwell_s=limits.step_dwell_s)
