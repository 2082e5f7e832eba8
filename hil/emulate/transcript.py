"""Timestamped record of what an emulated instrument received, sent and did.

Tests assert on the transcript -- what reached the instrument -- rather than on what a driver
believes it sent. Kinds of entry:

* ``"rx"``    -- one received program message (a whole line, as sent);
* ``"tx"``    -- one reply line sent (without terminator);
* ``"state"`` -- an output-state change: ``detail`` holds ``channel``, ``output_on``,
  ``level_v``, ``mode`` (e.g. ``"voltage"``, ``"open"``), ``limit_a``;
* ``"relay"`` -- a crosspoint closed/opened (``detail``: ``crosspoint``, ``closed``);
* ``"fault"`` -- an injected fault fired (``detail``: ``fault``, the kind);
* ``"error"`` -- an error pushed onto the instrument's error queue (``detail``: ``code``, ``message``);
* ``"event"`` -- anything else worth recording (connections, hot switching, ...).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

__all__ = ["TranscriptEntry", "Transcript"]


@dataclass(frozen=True)
class TranscriptEntry:
    """One record: wall time (s since the transcript started), virtual bench time (s), kind, text."""

    wall_s: float
    virtual_s: float
    instrument: str
    kind: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


class Transcript:
    """Thread-safe append-only list of :class:`TranscriptEntry` for one instrument.

    Args:
        instrument: instrument name written into every entry.
        clock: object with ``now_s`` (virtual time); ``None`` records 0.
        limit: keep at most this many entries (oldest dropped) so long runs stay bounded.
    """

    def __init__(self, instrument: str, clock: Any = None, limit: int = 200_000) -> None:
        self.instrument = instrument
        self._clock = clock
        self._limit = int(limit)
        self._entries: list[TranscriptEntry] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def record(self, kind: str, text: str, /, **detail: Any) -> TranscriptEntry:
        """Append an entry and return it."""
        entry = TranscriptEntry(time.monotonic() - self._t0,
                                float(self._clock.now_s) if self._clock is not None else 0.0,
                                self.instrument, kind, text, dict(detail))
        with self._lock:
            self._entries.append(entry)
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]
        return entry

    def entries(self, kind: Optional[str] = None) -> list[TranscriptEntry]:
        """A copy of all entries, or of those of one kind."""
        with self._lock:
            items = list(self._entries)
        return items if kind is None else [e for e in items if e.kind == kind]

    def received(self) -> list[str]:
        """Every received program message, in order."""
        return [e.text for e in self.entries("rx")]

    def states(self, channel: Optional[str] = None) -> list[dict[str, Any]]:
        """Output-state changes (``detail`` dicts), optionally of one channel."""
        return [e.detail for e in self.entries("state") if channel is None or e.detail.get("channel") == channel]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __iter__(self) -> Iterator[TranscriptEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def dump(self) -> str:
        """Human-readable text, one entry per line (for failing-test output)."""
        return "\n".join(f"{e.wall_s:10.6f} {e.virtual_s:12.6f} {e.instrument:>10} {e.kind:5} {e.text}"
                         for e in self.entries())
