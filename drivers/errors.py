"""Typed exceptions raised by transports and instrument drivers.

Hierarchy (instruments.md §1.4)::

    InstrumentError                 .instrument (name), .command (last sent)
    ├── InstrumentConnectionError   cannot open, refused, lost, closed handle
    ├── InstrumentTimeout           no complete reply within the timeout
    ├── InstrumentProtocolError     unparsable reply, bad block, wrong identity or command set
    ├── InstrumentReportedError     .code, .message, .entries (everything drained)
    ├── ComplianceError             .channel, .limit, .value
    ├── LimitViolation              .name, .value, .bound; raised before any I/O
    └── InterlockError              interlock open when an output was about to be enabled

``InstrumentConfigError`` is separate: a bad resource name, VISA library or driver setting found
while loading configuration, before any instrument is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

__all__ = [
    "InstrumentError",
    "InstrumentConnectionError",
    "InstrumentTimeout",
    "InstrumentProtocolError",
    "InstrumentReportedError",
    "ComplianceError",
    "LimitViolation",
    "InterlockError",
    "InstrumentConfigError",
]


class InstrumentError(Exception):
    """Base class of every runtime instrument failure.

    Attributes:
        instrument: instrument name (the ``hil.instr.<name>`` logger suffix), or ``None``.
        command: the command last sent when the failure happened, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        instrument: Optional[str] = None,
        command: Optional[str] = None,
    ) -> None:
        self.instrument = instrument
        self.command = command
        self.detail = message
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.instrument:
            where.append(f"instrument {self.instrument!r}")
        if self.command is not None:
            where.append(f"command {self.command!r}")
        return f"{self.detail} ({', '.join(where)})" if where else self.detail


class InstrumentConnectionError(InstrumentError):
    """The resource cannot be opened, the peer refused or dropped the link, or the handle is closed.

    Attributes:
        status: the VISA status code when the cause was a ``VisaIOError``, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        instrument: Optional[str] = None,
        command: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message, instrument=instrument, command=command)
        self.status = status


class InstrumentTimeout(InstrumentError):
    """No complete reply arrived within the transport timeout."""


class InstrumentProtocolError(InstrumentError):
    """Reply could not be parsed, a binary block was malformed, or the identity/command set is wrong."""


class InstrumentReportedError(InstrumentError):
    """The instrument's error queue held entries outside the allowed set.

    Attributes:
        code: code of the first offending entry.
        message: message of the first offending entry.
        entries: every entry drained in the same pass, as ``(code, message)`` tuples.
    """

    def __init__(
        self,
        code: int,
        message: str,
        entries: Sequence[tuple[int, str]] = (),
        *,
        instrument: Optional[str] = None,
        command: Optional[str] = None,
    ) -> None:
        self.code = int(code)
        self.message = message
        self.entries = tuple(entries) if entries else ((self.code, message),)
        text = f"instrument reported error {self.code}: {message}"
        if len(self.entries) > 1:
            text += f" (+{len(self.entries) - 1} more: {list(self.entries[1:])})"
        super().__init__(text, instrument=instrument, command=command)


class ComplianceError(InstrumentError):
    """A source channel reached its current limit.

    Attributes:
        channel: channel name (``""`` for single-channel instruments).
        limit: the programmed current limit in A.
        value: the measured current in A (may be ``nan`` if only a flag is known).
    """

    def __init__(
        self,
        channel: str,
        limit: float,
        value: float,
        *,
        instrument: Optional[str] = None,
        command: Optional[str] = None,
    ) -> None:
        self.channel = channel
        self.limit = float(limit)
        self.value = float(value)
        super().__init__(
            f"channel {channel!r} in compliance: |I|={abs(self.value):.6g} A, limit {self.limit:.6g} A",
            instrument=instrument,
            command=command,
        )


class LimitViolation(InstrumentError):
    """A requested setting breaks a configured safety limit; raised before any I/O.

    Attributes:
        name: what was checked (e.g. ``"level"``, ``"v_max"``, ``"max_step_v"``, ``"point[3]"``).
        value: the offending value (SI units).
        bound: the limit it broke (SI units).
    """

    def __init__(
        self,
        name: str,
        value: float,
        bound: float,
        *,
        instrument: Optional[str] = None,
        command: Optional[str] = None,
        reason: str = "",
    ) -> None:
        self.name = name
        self.value = float(value)
        self.bound = float(bound)
        text = f"limit violation: {name}={self.value:.6g} breaks bound {self.bound:.6g}"
        if reason:
            text += f" ({reason})"
        super().__init__(text, instrument=instrument, command=command)


class InterlockError(InstrumentError):
    """An interlock (hardware or software) was open when an output was about to be enabled."""


class InstrumentConfigError(ValueError):
    """Invalid instrument configuration: resource name, VISA library/backend, driver name, setting.

    Raised at configuration time, never after I/O started. ``instrument`` names the instrument
    when known.
    """

    def __init__(self, message: str, *, instrument: Optional[str] = None) -> None:
        self.instrument = instrument
        super().__init__(f"{instrument}: {message}" if instrument else message)
