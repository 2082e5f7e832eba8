"""Safety limits: validation, pre-I/O checks, ramp planning (instruments.md §5.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.drivers.errors import InstrumentConfigError, LimitViolation
from hil.drivers.limits import (
    SourceLimits,
    check_current_limit,
    check_level,
    check_vector,
    effective_bounds,
    plan_ramp,
)

L = SourceLimits(v_min=-1.0, v_max=2.0, i_compliance_a=1e-3, max_step_v=0.1, max_slew_v_per_s=20.0)


@pytest.mark.parametrize("kwargs", [
    dict(v_min=1, v_max=1), dict(v_min=2, v_max=1), dict(i_compliance_a=0), dict(max_step_v=-1),
    dict(max_slew_v_per_s=0), dict(max_power_w=0), dict(v_min=math.nan), dict(v_max="1"), dict(v_max=True),
])
def test_invalid_limits_rejected(kwargs):
    base = dict(v_min=-1.0, v_max=1.0, i_compliance_a=1e-3, max_step_v=0.1, max_slew_v_per_s=20.0)
    with pytest.raises(InstrumentConfigError):
        SourceLimits(**{**base, **kwargs})


def test_power_bound_narrows_both_sides():
    p = SourceLimits(v_min=-5, v_max=5, i_compliance_a=1e-3, max_step_v=0.1, max_slew_v_per_s=1, max_power_w=2e-3)
    assert effective_bounds(p) == (-2.0, 2.0)
    with pytest.raises(LimitViolation) as info:
        check_level(p, -2.5)
    assert info.value.bound == -2.0 and "max_power_w" in str(info.value)


def test_check_level():
    assert check_level(L, 2.0) == 2.0
    for bad in (2.01, -1.01, math.nan, math.inf):
        with pytest.raises(LimitViolation):
            check_level(L, bad)


def test_check_current_limit():
    assert check_current_limit(L, 5e-4) == 5e-4
    for bad in (0, -1e-4, 2e-3, math.nan):
        with pytest.raises(LimitViolation):
            check_current_limit(L, bad)


def test_check_vector_accepts_and_returns_array():
    v = check_vector(L, [0.1, 0.2, 0.1], start_v=0.0, end_v=0.0, point_duration_s=0.01)
    assert isinstance(v, np.ndarray) and v.tolist() == [0.1, 0.2, 0.1]


@pytest.mark.parametrize("levels,start,end,dur,name", [
    ([0.1, 0.3], 0.0, None, 0.01, "step[1]"),      # consecutive step
    ([0.2], 0.0, None, 0.01, "step[0]"),           # first point vs present level
    ([0.1, 0.2], 0.0, 0.0, 0.01, "step[2]"),       # last point vs level left behind
    ([0.1, 0.2], 0.0, None, 0.001, "slew[0]"),     # 100 V/s > 20 V/s
    ([0.1, 2.5], 0.0, None, 0.01, "point[1]"),     # bounds
    ([], 0.0, None, 0.01, "points"),
    ([0.1], 0.0, None, 0.0, "point_duration_s"),
])
def test_check_vector_refusals(levels, start, end, dur, name):
    with pytest.raises(LimitViolation) as info:
        check_vector(L, levels, start_v=start, end_v=end, point_duration_s=dur)
    assert info.value.name == name


def test_plan_ramp_steps_and_dwell():
    plan = plan_ramp(L, 0.0, 0.25)
    assert plan.levels == pytest.approx((0.25 / 3, 0.5 / 3, 0.25))
    assert plan.dwell_s == pytest.approx(0.1 / 20.0)
    assert plan_ramp(L, 0.3, 0.3).levels == (0.3,)
    assert len(plan_ramp(L, 0.0, 0.1).levels) == 1  # exactly one max step


def test_plan_ramp_refuses_bad_target_unless_shutdown():
    with pytest.raises(LimitViolation):
        plan_ramp(L, 0.0, 3.0)
    p = SourceLimits(v_min=0.5, v_max=1.0, i_compliance_a=1e-3, max_step_v=0.25, max_slew_v_per_s=1)
    assert plan_ramp(p, 1.0, 0.0, check_target=False).levels == (0.75, 0.5, 0.25, 0.0)
    with pytest.raises(LimitViolation):
        plan_ramp(L, math.nan, 0.0)


def test_plan_ramp_never_starts_outside_the_bounds_and_bounds_the_step_count():
    from hil.drivers.limits import MAX_RAMP_STEPS
    for start in (2.5, -3.0, 1e30, math.inf, -math.inf, math.nan):
        with pytest.raises(LimitViolation):
            plan_ramp(L, start, 0.0, check_target=False)
    with pytest.raises(LimitViolation):
        plan_ramp(L, 0.0, 5.0, check_target=False)  # only 0 V may lie outside the bounds
    tiny = SourceLimits(v_min=-1.0, v_max=1.0, i_compliance_a=1e-3, max_step_v=1e-5, max_slew_v_per_s=1)
    with pytest.raises(LimitViolation, match="ramp_steps"):
        plan_ramp(tiny, 1.0, -1.0)
    assert len(plan_ramp(tiny, 0.0, 1e-5 * MAX_RAMP_STEPS).levels) == MAX_RAMP_STEPS
