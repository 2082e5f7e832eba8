"""Discrete-event simulation of the 2600B remote trigger model (channels, blenders, timers).

Each SMU channel's trigger model is a process (a Python generator) that waits for events and
delays exactly as the instrument's trigger model does::

    initiate → ARMED_EVENT → wait arm.stimulus
      repeat count times:
        wait source.stimulus → source action (list point) → source delay → SOURCE_COMPLETE_EVENT
        wait measure.stimulus → measure delay → integration(s) → MEASURE_COMPLETE_EVENT
        wait endpulse.stimulus → end-pulse action (idle or hold) → PULSE_COMPLETE_EVENT
      end-sweep action → SWEEP_COMPLETE_EVENT → IDLE_EVENT

A stimulus of 0 passes at once. Every stimulus input is an event *detector* that latches one
event; an event arriving while the detector is already set is lost (an *overrun*, recorded), so
a follower channel that is slower than its lead misses points exactly as on the instrument.
Blenders combine up to four events (AND or OR); timers emit their event ``delay`` after a
stimulus, ``count`` times.

``TriggerScheduler.run()`` advances simulated time from event to event until every process
is finished or waits for an event that nothing will produce; the caller advances the bench
clock by the elapsed time. The world is changed at the simulated instant of every source action
and read at the middle of every integration, so a channel reads what the other channels apply at
that moment.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Optional, Union

__all__ = ["Wait", "Delay", "TriggerScheduler", "Detector", "Blender", "Timer"]


@dataclass(frozen=True)
class Wait:
    """Yielded by a process: wait until ``detector`` is set (then it is cleared)."""

    detector: "Detector"


@dataclass(frozen=True)
class Delay:
    """Yielded by a process: let ``seconds`` of simulated time pass."""

    seconds: float


Process = Generator[Union[Wait, Delay], None, None]


@dataclass
class Detector:
    """One trigger input: ``stimulus`` event ID (0 = none, passes at once) and a latch."""

    name: str
    stimulus: int = 0
    set: bool = False
    overruns: int = 0


@dataclass
class Blender:
    """``trigger.blender[N]``: fires its event when all (AND) or any (OR) inputs have fired."""

    event_id: int
    inputs: list[Detector] = field(default_factory=list)
    orenable: bool = False


@dataclass
class Timer:
    """``trigger.timer[N]``: after a stimulus, emits its event ``count`` times, ``delay`` apart."""

    event_id: int
    detector: Detector
    delay_s: float = 10e-6
    count: int = 1
    passthrough: bool = False


class TriggerScheduler:
    """Runs trigger-model processes in simulated time.

    Args:
        start_s: simulated time at which ``run`` starts (the bench clock's ``now_s``).
        on_overrun: called with a detector that lost an event.
    """

    def __init__(self, start_s: float = 0.0, on_overrun: Optional[Callable[[Detector], None]] = None) -> None:
        self.now_s = float(start_s)
        self.detectors: list[Detector] = []
        self.blenders: list[Blender] = []
        self.timers: list[Timer] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._waiting: list[tuple[Detector, Process, str]] = []
        self._on_overrun = on_overrun
        self.finished: list[str] = []
        #: called with every event ID as it is emitted (e.g. digital I/O lines driving the bench)
        self.emit_hooks: list[Callable[[int], None]] = []

    # -- setup ----------------------------------------------------------------------------------

    def add_detector(self, detector: Detector) -> Detector:
        self.detectors.append(detector)
        return detector

    def start(self, name: str, process: Process) -> None:
        """Start ``process`` at the present simulated time."""
        self._schedule(self.now_s, lambda: self._step(name, process))

    # -- events ---------------------------------------------------------------------------------

    def emit(self, event_id: int) -> None:
        """An event happens now: set every detector listening to it, fire blenders and timers."""
        if not event_id:
            return
        for hook in list(self.emit_hooks):
            hook(event_id)
        for det in list(self.detectors):
            if det.stimulus == event_id:
                if det.set:
                    det.overruns += 1
                    if self._on_overrun is not None:
                        self._on_overrun(det)
                det.set = True
        for blender in self.blenders:
            inputs = [d for d in blender.inputs if d.stimulus]
            if not inputs:
                continue
            fire = any(d.set for d in inputs) if blender.orenable else all(d.set for d in inputs)
            if fire:
                for d in inputs:
                    d.set = False
                self._schedule(self.now_s, lambda b=blender: self.emit(b.event_id))
        for timer in self.timers:
            if timer.detector.set:
                timer.detector.set = False
                if timer.passthrough:
                    self._schedule(self.now_s, lambda t=timer: self.emit(t.event_id))
                for k in range(1, max(1, timer.count) + 1):
                    self._schedule(self.now_s + k * timer.delay_s, lambda t=timer: self.emit(t.event_id))
        self._wake()

    def _wake(self) -> None:
        still: list[tuple[Detector, Process, str]] = []
        ready: list[tuple[str, Process]] = []
        for det, proc, name in self._waiting:
            if det.set:
                det.set = False
                ready.append((name, proc))
            else:
                still.append((det, proc, name))
        self._waiting = still
        for name, proc in ready:
            self._schedule(self.now_s, lambda n=name, p=proc: self._step(n, p))

    # -- running ----------------------------------------------------------------------------------

    def _schedule(self, at_s: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at_s, next(self._seq), action))

    def _step(self, name: str, process: Process) -> None:
        while True:
            try:
                request = next(process)
            except StopIteration:
                self.finished.append(name)
                return
            if isinstance(request, Delay):
                if request.seconds > 0:
                    self._schedule(self.now_s + request.seconds, lambda: self._step(name, process))
                    return
                continue
            det = request.detector
            if det.stimulus == 0:
                continue
            if det.set:
                det.set = False
                continue
            self._waiting.append((det, process, name))
            return

    def run(self, max_events: int = 10_000_000, until_s: Optional[float] = None) -> float:
        """Process events in time order until nothing is scheduled (or, with ``until_s``, until the
        next event lies after that instant); returns the end time in s."""
        for _ in range(max_events):
            if not self._queue or (until_s is not None and self._queue[0][0] > until_s):
                break
            at_s, _, action = heapq.heappop(self._queue)
            self.now_s = max(self.now_s, at_s)
            action()
        return self.now_s

    def clear_pending(self) -> None:
        """Drop every scheduled action (e.g. timer events still due after an abort)."""
        self._queue.clear()

    def waiting_detectors(self) -> list[Detector]:
        """Detectors that blocked processes wait on."""
        return [det for det, _, _ in self._waiting]

    def waiting(self) -> list[str]:
        """Names of processes blocked on an event that has not come."""
        return [name for _, _, name in self._waiting]

    def cancel(self, name: Optional[str] = None) -> None:
        """Drop blocked processes (all, or those called ``name``), e.g. on ``abort()``."""
        keep, drop = [], []
        for w in self._waiting:
            (keep if name is not None and w[2] != name else drop).append(w)
        self._waiting = keep
        for _, proc, _ in drop:
            proc.close()

