"""Fault injection for emulated instruments (armed from Python; the instrument surface is unchanged).

Each fault fires once unless armed with another ``count`` (``count=None``: until cleared). An
optional ``match`` regular expression restricts a fault to received lines that contain a match
(``re.search``, case-insensitive), e.g. ``faults.no_reply(match=r"READ\\?")``.

Link faults (handled by the line server, for the next received line that produces a reply unless
stated otherwise):

=====================  ==========================================================================
``no_reply``           the query is executed, its reply is never sent
``late_reply``         the reply is sent ``delay_s`` later (after the client's timeout)
``drop_connection``    the client socket is closed on the next received line (not executed)
``endless_reply``      bytes without a terminator are streamed instead of the reply, until the
                       client disconnects or ``max_s`` passes
``garbage_reply``      ``data`` (default: malformed non-ASCII bytes + LF) replaces the reply
=====================  ==========================================================================

Instrument faults (consulted by the personality):

=====================  ==========================================================================
``force_compliance``   next readings of ``channel`` clamp at the current limit, trip flags set
``sentinel``           next reading is ``+9.9E37`` (``kind="overflow"``) or ``+9.91E37``
                       (``kind="missing"``)
``interlock_open``     interlock queries report open; enabling an output queues an error
``misreport_level``    source-level queries of ``channel`` answer ``level_v`` instead of the truth
=====================  ==========================================================================

``push_error`` and ``refuse_connections`` live on the emulator (they act at once).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["FaultInjector", "ArmedFault", "LINK_FAULTS", "INSTRUMENT_FAULTS"]

LINK_FAULTS = ("no_reply", "late_reply", "drop_connection", "endless_reply", "garbage_reply")
INSTRUMENT_FAULTS = ("force_compliance", "sentinel", "interlock_open", "misreport_level")
DEFAULT_GARBAGE = b"\x8f\xfe#@!\xe9garbage\x00\n"


@dataclass
class ArmedFault:
    """One armed fault: ``kind``, remaining ``count`` (``None`` = until cleared), parameters."""

    kind: str
    count: Optional[int]
    params: dict[str, Any] = field(default_factory=dict)
    match: Optional[re.Pattern] = None

    def applies(self, line: Optional[str], channel: Optional[str]) -> bool:
        if self.match is not None and (line is None or not self.match.search(line)):
            return False
        want = self.params.get("channel")
        return want is None or channel is None or str(want) == str(channel)


class FaultInjector:
    """Armed faults of one emulator. Thread-safe.

    Args:
        transcript: where fired faults are recorded (``kind="fault"``); may be ``None``.
    """

    def __init__(self, transcript: Any = None) -> None:
        self._armed: list[ArmedFault] = []
        self._lock = threading.Lock()
        self._transcript = transcript

    # -- generic API ---------------------------------------------------------------------------

    def arm(self, kind: str, count: Optional[int] = 1, /, *, match: Optional[str] = None, **params: Any) -> ArmedFault:
        """Arm ``kind`` for ``count`` firings (``None``: until ``clear``); returns the armed fault."""
        if kind not in LINK_FAULTS + INSTRUMENT_FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(LINK_FAULTS + INSTRUMENT_FAULTS)}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        fault = ArmedFault(kind, count, dict(params), re.compile(match, re.IGNORECASE) if match else None)
        with self._lock:
            self._armed.append(fault)
        return fault

    def take(self, kind: str, line: Optional[str] = None, channel: Optional[str] = None) -> Optional[dict[str, Any]]:
        """Consume one firing of the first armed ``kind`` that applies; its params, else ``None``."""
        with self._lock:
            for fault in self._armed:
                if fault.kind == kind and fault.applies(line, channel):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._armed.remove(fault)
                    params = dict(fault.params)
                    break
            else:
                return None
        if self._transcript is not None:
            self._transcript.record("fault", kind, fault=kind, line=line, **{k: v for k, v in params.items() if not isinstance(v, bytes)})
        return params

    def peek(self, kind: str, line: Optional[str] = None, channel: Optional[str] = None) -> Optional[dict[str, Any]]:
        """Params of the first armed ``kind`` that applies, without consuming it."""
        with self._lock:
            for fault in self._armed:
                if fault.kind == kind and fault.applies(line, channel):
                    return dict(fault.params)
        return None

    def armed(self) -> list[ArmedFault]:
        """A copy of the armed faults."""
        with self._lock:
            return list(self._armed)

    def clear(self, kind: Optional[str] = None) -> None:
        """Disarm every fault, or every fault of one kind."""
        with self._lock:
            self._armed = [f for f in self._armed if kind is not None and f.kind != kind]

    # -- named helpers ---------------------------------------------------------------------------

    def no_reply(self, count: Optional[int] = 1, *, match: Optional[str] = None) -> ArmedFault:
        """Execute the next query but never send its reply."""
        return self.arm("no_reply", count, match=match)

    def late_reply(self, delay_s: float, count: Optional[int] = 1, *, match: Optional[str] = None) -> ArmedFault:
        """Send the next reply ``delay_s`` seconds late (wall time)."""
        return self.arm("late_reply", count, match=match, delay_s=float(delay_s))

    def drop_connection(self, count: Optional[int] = 1, *, match: Optional[str] = None) -> ArmedFault:
        """Close the client socket when the next (matching) line arrives; the line is not executed."""
        return self.arm("drop_connection", count, match=match)

    def endless_reply(self, count: Optional[int] = 1, *, match: Optional[str] = None, max_s: float = 10.0,
                      chunk: bytes = b"1.234567E-03,") -> ArmedFault:
        """Stream ``chunk`` repeatedly without a terminator instead of the next reply (≤ ``max_s``)."""
        return self.arm("endless_reply", count, match=match, max_s=float(max_s), chunk=bytes(chunk))

    def garbage_reply(self, count: Optional[int] = 1, *, match: Optional[str] = None,
                      data: bytes = DEFAULT_GARBAGE) -> ArmedFault:
        """Send ``data`` instead of the next reply."""
        return self.arm("garbage_reply", count, match=match, data=bytes(data))

    def force_compliance(self, channel: Optional[str] = None, count: Optional[int] = 1) -> ArmedFault:
        """Next ``count`` readings of ``channel`` (any channel if ``None``) sit at the current limit."""
        return self.arm("force_compliance", count, channel=channel)

    def sentinel(self, kind: str = "overflow", count: Optional[int] = 1, *, channel: Optional[str] = None) -> ArmedFault:
        """Next ``count`` readings are ``+9.9E37`` (``"overflow"``) or ``+9.91E37`` (``"missing"``)."""
        if kind not in ("overflow", "missing"):
            raise ValueError("sentinel kind: 'overflow' or 'missing'")
        return self.arm("sentinel", count, sentinel=kind, channel=channel)

    def interlock_open(self, count: Optional[int] = None) -> ArmedFault:
        """Interlock reports open (until cleared by default)."""
        return self.arm("interlock_open", count)

    def misreport_level(self, level_v: float, channel: Optional[str] = None, count: Optional[int] = None) -> ArmedFault:
        """Source-level queries answer ``level_v`` (until cleared by default)."""
        return self.arm("misreport_level", count, channel=channel, level_v=float(level_v))
