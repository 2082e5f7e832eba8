"""Conductance programmers: how a bench writes and reads its conductances.

A programmer is chosen in the bench config (``programming.scheme``) and used by the
instrument board, which brings every source to 0 V before calling it.  The protocol is two
methods::

    class ConductanceProgrammer(Protocol):
        def program(self, target: np.ndarray, rel_tol: float | None) -> ProgramResult: ...
        def read(self) -> np.ndarray: ...

Built in: :class:`WriteVerifyProgrammer` for resistive memory devices (each device selected
through a switch matrix, SMU voltage pulses of configurable amplitude and width, read at a
non-disturbing voltage, write-verify to a relative tolerance within a pulse budget).

Adding a programmer for other hardware (e.g. voltage-controlled conductances set by a DAC
channel each) is a class with these two methods plus an entry in ``PROGRAMMERS``; see
docs/bench.md for a worked example.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from hil.board import ProgramResult

log = logging.getLogger("hil.boards.programmers")

__all__ = ["ConductanceProgrammer", "WriteVerifySettings", "WriteVerifyProgrammer", "RehearsalProgrammer",
           "PROGRAMMERS"]


@runtime_checkable
class ConductanceProgrammer(Protocol):
    """Writes and reads the conductances (m,) of a bench, in siemens."""

    def program(self, target: np.ndarray, rel_tol: Optional[float]) -> ProgramResult:
        """Bring every device to ``target`` within ``rel_tol`` (None: the configured tolerance)."""
        ...

    def read(self) -> np.ndarray:
        """Read every device, S."""
        ...


@dataclass(frozen=True)
class WriteVerifySettings:
    """Write-verify parameters (SI units).

    Attributes:
        v_read: read voltage, V (small enough not to disturb the device).
        reads: readings averaged per verify.
        set_v: first amplitude of a conductance-increasing pulse, V (> 0).
        reset_v: first amplitude of a conductance-decreasing pulse, V (< 0).
        v_step: amplitude increase after each pulse of the same polarity, V.
        v_max: largest pulse magnitude, V.
        width_s: pulse width, s.
        rel_tol: relative tolerance |g − g*| ≤ rel_tol·g* + abs_tol_s.
        abs_tol_s: absolute floor of the tolerance, S (the device's resolution near g_min,
            where a relative tolerance alone asks for steps finer than one pulse can make).
        max_pulses: pulse budget per device and call.
        max_reversals: polarity reversals before giving up (oscillation).
        shrink: factor applied to the pulse width at every polarity reversal (finer steps
            near the target; 1 = fixed width).
        min_width_s: the width never shrinks below this, s.
        stuck_pulses: pulses without a change beyond ``stuck_rel`` after which a device counts as stuck.
        stuck_rel: relative change below which a pulse "did nothing".
        stuck_abs_s: absolute change below which a pulse "did nothing", S (set it a few reading-noise
            σ above 0 so that a stuck device reads as stuck near g_min, where noise dominates).
        skip_rel: devices already within this relative distance of their target (by the last
            reading) are not touched; defaults to ``rel_tol``.
    """

    v_read: float = 0.1
    reads: int = 1
    set_v: float = 1.0
    reset_v: float = -1.0
    v_step: float = 0.05
    v_max: float = 1.5
    width_s: float = 1e-4
    rel_tol: float = 0.02
    abs_tol_s: float = 0.0
    max_pulses: int = 50
    max_reversals: int = 12
    shrink: float = 0.5
    min_width_s: float = 1e-7
    stuck_pulses: int = 8
    stuck_rel: float = 1e-3
    stuck_abs_s: float = 0.0
    skip_rel: Optional[float] = None

    def __post_init__(self) -> None:
        problems = []
        if not self.v_read > 0:
            problems.append("v_read: must be > 0")
        if not (self.set_v > 0 and self.reset_v < 0):
            problems.append("set_v must be > 0 and reset_v < 0")
        if not self.v_max >= max(self.set_v, -self.reset_v):
            problems.append("v_max: must be at least |set_v| and |reset_v|")
        if self.v_read >= min(self.set_v, -self.reset_v):
            problems.append("v_read: must be below the pulse amplitudes (a read must not program)")
        for key in ("width_s", "rel_tol"):
            if not getattr(self, key) > 0:
                problems.append(f"{key}: must be > 0")
        for key in ("reads", "max_pulses", "max_reversals", "stuck_pulses"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 1):
                problems.append(f"{key}: must be an integer >= 1")
        if not 0 < self.shrink <= 1:
            problems.append("shrink: must be in (0, 1]")
        if not 0 < self.min_width_s <= self.width_s:
            problems.append("min_width_s: must be in (0, width_s]")
        if self.abs_tol_s < 0:
            problems.append("abs_tol_s: must be >= 0")
        if self.stuck_abs_s < 0:
            problems.append("stuck_abs_s: must be >= 0")
        if self.v_step < 0:
            problems.append("v_step: must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))


class WriteVerifyProgrammer:
    """Write-verify through a switch matrix and one SMU channel (physics.md §7.2 program-and-verify).

    For each device whose last reading is off target: source at 0 V → select the device
    (exclusive close of its crosspoints; the matrix opens everything else first) → repeat
    {average ``reads`` readings at ``v_read`` → stop within tolerance → one pulse of polarity
    sign(g* − g), growing by ``v_step`` while the polarity repeats, reset on a reversal, the
    width shrinking by ``shrink`` at every reversal} up to
    the pulse budget → source at 0 V → open all relays.  Every relay change happens with the
    source at 0 V.

    Args:
        smu: a ``SourceMeter`` with the ``PulsedSource`` capability.
        channel: its programming channel.
        matrix: a ``SwitchMatrix``.
        devices: per conductance, the crosspoints that put it between the SMU and the return.
        settings: :class:`WriteVerifySettings`.
        g_bounds: the programmable range, S (targets are clipped to it).
        event: ``event(kind, **data)`` callback (``write_verify`` records).
    """

    def __init__(self, smu: Any, channel: str, matrix: Any, devices: Sequence[Sequence[Any]],
                 settings: WriteVerifySettings, g_bounds: tuple[float, float],
                 event: Optional[Callable[..., None]] = None) -> None:
        self.smu, self.channel, self.matrix = smu, channel, matrix
        self.devices = [list(d) for d in devices]
        self.s = settings
        self.g_bounds = g_bounds
        self._event = event or (lambda kind, **data: None)
        self._known: Optional[np.ndarray] = None
        self._on = False

    # ---- device access ------------------------------------------------------------------
    def _select(self, k: int) -> None:
        self.smu.set_voltage(self.channel, 0.0)
        if not self._on:
            self.smu.output(self.channel, True)
            self._on = True
        self.matrix.connect(self.devices[k], exclusive=True)

    def _release(self) -> None:
        self.smu.set_voltage(self.channel, 0.0)
        self.matrix.open_all()

    def forget(self) -> None:
        """Drop the cached readings and output state (after a safe state or reconnect)."""
        self._known, self._on = None, False

    def _read_selected(self) -> float:
        s = self.s
        self.smu.set_voltage(self.channel, s.v_read)
        total = 0.0
        for _ in range(s.reads):
            total += self.smu.measure_current(self.channel).value
        self.smu.set_voltage(self.channel, 0.0)
        return total / s.reads / s.v_read

    def read(self) -> np.ndarray:
        """Read every device at ``v_read``, S."""
        g = np.empty(len(self.devices))
        try:
            for k in range(len(self.devices)):
                self._select(k)
                g[k] = self._read_selected()
        finally:
            self._release()
        self._known = g.copy()
        return g

    # ---- write-verify ------------------------------------------------------------------------
    def program(self, target: np.ndarray, rel_tol: Optional[float] = None) -> ProgramResult:
        s = self.s
        tol = s.rel_tol if rel_tol is None else float(rel_tol)
        skip = tol if s.skip_rel is None else s.skip_rel
        target = np.clip(np.asarray(target, float), *self.g_bounds)
        m = target.size
        if self._known is None:
            self.read()
        achieved = self._known.copy()
        pulses = np.zeros(m, int)
        converged = np.abs(achieved - target) <= skip * np.abs(target) + s.abs_tol_s
        stuck = np.zeros(m, bool)
        try:
            for k in np.flatnonzero(~converged):
                self._select(int(k))
                achieved[k], pulses[k], converged[k], stuck[k] = self._write_verify(int(k), float(target[k]), tol)
                self._event("write_verify", device=int(k), target=float(target[k]), result=float(achieved[k]),
                            pulses=int(pulses[k]), converged=bool(converged[k]), stuck=bool(stuck[k]))
        finally:
            self._release()
            self._known = achieved.copy()
        return ProgramResult(target, achieved, pulses, converged, stuck, tol)

    def _write_verify(self, k: int, target: float, tol: float) -> tuple[float, int, bool, bool]:
        s = self.s
        g = self._read_selected()
        used, reversals, last_sign, amp, still = 0, 0, 0.0, 0.0, 0
        width = s.width_s
        while abs(g - target) > tol * abs(target) + s.abs_tol_s:
            if used >= s.max_pulses or reversals >= s.max_reversals:
                return g, used, False, False
            sign = 1.0 if target > g else -1.0
            if sign != last_sign:
                if last_sign != 0.0:
                    reversals += 1
                    width = max(width * s.shrink, s.min_width_s)
                amp = s.set_v if sign > 0 else s.reset_v
            else:
                amp = float(np.clip(amp + sign * s.v_step, -s.v_max, s.v_max))
            last_sign = sign
            self.smu.pulse(self.channel, amp, width, 1)
            used += 1
            g_new = self._read_selected()
            # a pulse "did nothing" when the reading moved less than the relative threshold or the
            # reading-noise floor (near g_min the noise alone exceeds any relative threshold)
            still = still + 1 if abs(g_new - g) <= max(s.stuck_rel * abs(g), s.stuck_abs_s, 1e-30) else 0
            g = g_new
            if still >= s.stuck_pulses:
                return g, used, False, True
        return g, used, True, False


class RehearsalProgrammer:
    """Sets the conductances of an in-process or emulated world directly (no pulses).

    For benchmarks and tests that exercise the measurement path alone (e.g.
    ``benchmarks/bench_iris.py`` on the in-process bench); ``hil train --emulate`` programs the
    emulated devices with :class:`WriteVerifyProgrammer` through the sockets instead. Never
    available on real instruments: it needs the world object. Every call is reported as
    converged with zero pulses.
    """

    def __init__(self, world: Any, g_bounds: tuple[float, float]) -> None:
        self.world = world
        self.g_bounds = g_bounds

    def read(self) -> np.ndarray:
        return np.asarray(self.world.circuit.conductance_vector(), float).copy()

    def program(self, target: np.ndarray, rel_tol: Optional[float] = None) -> ProgramResult:
        target = np.clip(np.asarray(target, float), *self.g_bounds)
        self.world.set_conductances(target)
        return ProgramResult.exact(target, self.read(), 0.0 if rel_tol is None else rel_tol)


PROGRAMMERS: Mapping[str, type] = {"write_verify": WriteVerifyProgrammer}
