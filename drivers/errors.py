"""Typed exceptions raised by transports and instrument drivers.

Hierarchy (instruments.md §1.4)::

    InstrumentError                 .instrument (name), .command (last sent)
    ├── InstrumentConnectionError   cannot open, refused, lost, closed handle
    ├── InstrumentTimeout           no complete reply within the timeout
    │   └── OutputMayBeLiveError    shutdown could not verify outputs off (.channels, .report)
    ├── InstrumentProtocolError     unparsable reply, bad block, wrong identity or command set
    │   └── ImplausibleReadbackError  read-back level outside limits / non-finite (.channel, .value)
    ├── InstrumentReportedError     .code, .message, .entries (everything drained)
    ├── ComplianceError             .channel, .limit, .value
    │   ├── PowerLimitError         measured |V·I| above max_power_w (.limit/.value in W)
    │   └── OutputTrippedError      output switched off by the instrument's protection
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
    "PowerLimitError",
    "LimitViolation",
    "InterlockError",
    "InstrumentConfigError",
    "ImplausibleReadbackError",
    "OutputMayBeLiveError",
    "OutputTrippedError",
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


class PowerLimitError(ComplianceError):
    """A reading's measured dissipation ``|V·I|`` exceeded the channel's ``max_power_w`` (§5.1).

    Raised after the reading, once the driver has ramped the affected channel(s) to 0 V and
    switched them off (``safe_state_failures`` lists what could not be done).

    Attributes:
        channel: channel of the first offending reading.
        limit: ``max_power_w`` in W.
        value: the measured power ``|V·I|`` in W.
        voltage_v, current_a: the offending reading.
        point: index of the offending point in a list sweep, ``None`` for a spot reading.
        channels_made_safe: channels ramped to 0 V and switched off.
        safe_state_failures: ``(channel, description)`` of every safe-state step that failed.
    """

    def __init__(
        self,
        channel: str,
        limit: float,
        voltage_v: float,
        current_a: float,
        *,
        point: Optional[int] = None,
        channels_made_safe: Sequence[str] = (),
        safe_state_failures: Sequence[tuple[str, str]] = (),
        instrument: Optional[str] = None,
        command: Optional[str] = None,
    ) -> None:
        self.voltage_v = float(voltage_v)
        self.current_a = float(current_a)
        self.point = point
        self.channels_made_safe = tuple(channels_made_safe)
        self.safe_state_failures = tuple(safe_state_failures)
        power = abs(self.voltage_v * self.current_a)
        super().__init__(channel, limit, power, instrument=instrument, command=command)
        where = f" at point {point}" if point is not None else ""
        text = (f"channel {channel!r} over the power limit{where}: |V*I|={power:.6g} W "
                f"(V={self.voltage_v:.6g} V, I={self.current_a:.6g} A) > max_power_w {self.limit:.6g} W; "
                f"ramped to 0 V and switched off: {list(self.channels_made_safe)}")
        if self.safe_state_failures:
            text += f"; safe-state failures: {list(self.safe_state_failures)}"
        self.detail = text
        self.args = (text,)


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


class ImplausibleReadbackError(InstrumentProtocolError):
    """A read-back source level was outside the configured limits, not finite, or absurd.

    The driver never uses such a level as a ramp start: it treats the level as unknown, switches
    the output off by the safest sequence the instrument allows (output off, then the programmed
    level to 0 V) and raises this error.

    Attributes:
        channel: the channel whose level was implausible.
        value: the level read back in V.
        output_off_verified: ``True`` if the output was read back off afterwards.
    """

    def __init__(self, channel: str, value: float, *, reason: str, output_off_verified: bool,
                 instrument: Optional[str] = None, command: Optional[str] = None) -> None:
        self.channel = channel
        self.value = float(value)
        self.output_off_verified = bool(output_off_verified)
        state = "output switched off (verified)" if output_off_verified else "output off NOT verified"
        super().__init__(f"channel {channel!r}: implausible source level read back ({value!r} V: {reason}); "
                         f"treated as unknown, {state}", instrument=instrument, command=command)


class OutputMayBeLiveError(InstrumentConnectionError):
    """The safe shutdown could not verify that every output is off at 0 V (e.g. the link is dead).

    Attributes:
        channels: channels (or relay groups) that may still be live.
        report: the ``ShutdownReport`` of the shutdown.
    """

    def __init__(self, channels: Sequence[str], report: object, *, instrument: Optional[str] = None) -> None:
        self.channels = tuple(channels)
        self.report = report
        names = ", ".join(repr(c) for c in self.channels) or "unknown"
        super().__init__(f"output(s) {names} may still be live: shutdown not verified", instrument=instrument)


class OutputTrippedError(ComplianceError):
    """The instrument switched an output off by itself (B2900 output protection at compliance).

    Attributes:
        channel, limit, value: see ``ComplianceError`` (``value`` = the last current read, A).
    """

    def __init__(self, channel: str, limit: float, value: float, *, instrument: Optional[str] = None,
                 command: Optional[str] = None) -> None:
        super().__init__(channel, limit, value, instrument=instrument, command=command)
        self.detail = (f"channel {channel!r}: output switched off by the instrument's output protection "
                       f"(current limit {self.limit:.6g} A reached); the output is off")
        self.args = (self.detail,)


def add_note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)`` (Python 3.11+), or the same ``__notes__`` list on Python 3.10."""
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]
