"""Bench time for emulated instruments: ``instant``, ``virtual`` and ``realtime(scale)`` modes.

Every emulated operation that takes time on a real instrument (an integration of ``NPLC/f_line``
seconds, a source delay, a relay closure, a channel delay) calls ``clock.advance(duration_s)``.
The clock always adds the duration to ``now_s`` (the bench-wide virtual time in s, shared by all
emulators of a bench), so bench time can be read in every mode:

* ``instant``  -- nothing sleeps; replies come as fast as the parser runs (CI default);
* ``virtual``  -- same as ``instant``; the mode name documents that a test reads ``now_s``;
* ``realtime`` -- additionally sleeps ``scale * duration_s`` of wall time, so long sweeps really
  take long and driver timeouts can be exercised.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["BenchClock", "TIME_MODES"]

TIME_MODES = ("instant", "virtual", "realtime")


class BenchClock:
    """Shared virtual clock of one emulated bench.

    Args:
        mode: ``"instant"``, ``"virtual"`` or ``"realtime"``.
        scale: wall seconds slept per modelled second in ``realtime`` mode (ignored otherwise).
        sleep: injectable sleep function (s).
    """

    def __init__(self, mode: str = "instant", scale: float = 1.0, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if mode not in TIME_MODES:
            raise ValueError(f"time mode {mode!r}: one of {', '.join(TIME_MODES)}")
        if not (scale >= 0 and scale == scale):
            raise ValueError(f"time scale {scale!r}: must be >= 0")
        self.mode = mode
        self.scale = float(scale)
        self._sleep = sleep
        self._now_s = 0.0
        self._lock = threading.Lock()
        self._wall0 = time.monotonic()

    @classmethod
    def parse(cls, spec: str) -> "BenchClock":
        """``"instant"``, ``"virtual"``, ``"realtime"`` or ``"realtime(0.1)"`` → clock."""
        text = spec.strip().lower()
        if text.startswith("realtime(") and text.endswith(")"):
            return cls("realtime", float(text[len("realtime("):-1]))
        return cls(text)

    @property
    def now_s(self) -> float:
        """Virtual bench time in s since the clock was created (or last ``reset``)."""
        with self._lock:
            return self._now_s

    def wall_s(self) -> float:
        """Wall time in s since the clock was created."""
        return time.monotonic() - self._wall0

    def advance(self, duration_s: float) -> float:
        """Advance by a modelled duration in s (negative/NaN ignored); returns the new ``now_s``.

        In ``realtime`` mode the calling thread sleeps ``scale * duration_s`` (outside the lock).
        """
        d = float(duration_s)
        if not d > 0:
            return self.now_s
        with self._lock:
            self._now_s += d
            now = self._now_s
        if self.mode == "realtime" and self.scale > 0:
            self._sleep(self.scale * d)
        return now

    def rewind_to(self, t_s: float) -> bool:
        """Set ``now_s`` back to ``t_s`` (≤ now) so activities that ran one after another in
        this process can be accounted as simultaneous on the bench; not possible in
        ``realtime`` mode (the time was slept), where it returns False."""
        if self.mode == "realtime":
            return False
        with self._lock:
            self._now_s = min(self._now_s, float(t_s))
        return True

    def reset(self) -> None:
        """Set ``now_s`` back to 0."""
        with self._lock:
            self._now_s = 0.0

    def __repr__(self) -> str:
        scale = f"({self.scale:g})" if self.mode == "realtime" else ""
        return f"BenchClock({self.mode}{scale}, now_s={self.now_s:.6g})"
