"""Plumbing shared by every driver: connect sequence, error queue, resync, snapshot, shutdown.

A concrete driver subclasses ``ScpiDriver`` (SCPI instruments) or ``TspDriver`` (Keithley TSP:
2600B, 707B, 3706A) and fills in a few hooks:

=============================  ==============================================================
``SUPPORTED_MODELS``           model tokens matched in the ``*IDN?`` model field (ci, whole word)
``DESCRIPTION``                one line for ``hil instruments list``
``_check_command_set()``       e.g. 2450 ``*LANG?`` must be ``SCPI``; 2600B ``localnode.model``
``_apply_initial_state()``     explicit state at connect (output off, configured channels)
``_settings_snapshot()``       every configured setting as a JSON-able dict
``_shutdown_steps()``          ordered ``(description, callable)`` pairs for ``safe_shutdown``
=============================  ==============================================================

``ScpiDriver`` also has ``ERROR_QUERY`` (``:SYST:ERR?``) and ``LINE_FREQUENCY_QUERY``
(``:SYST:LFR?``; ``None`` if the model has none). Helpers: ``_write``, ``_query(cmd, retry=...)``
(``retry=True`` only for side-effect-free queries: timeout → ``resync()`` → one retry),
``_query_float``, ``_parse`` (names instrument and command in protocol errors); TSP adds
``_print``/``_print_float`` and ``run_script``. SourceMeters subclass ``hil.drivers.smu.SourceMeterDriver``
as well, which supplies ``_apply_initial_state``/``_settings_snapshot``/``_shutdown_steps``.

Time goes through ``self._sleep`` / ``self._clock`` (injectable), so tests never sleep.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np
from numpy.typing import DTypeLike

from hil.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    OutputMayBeLiveError,
    add_note,
)
from hil.drivers.parsing import Identity, model_matches, parse_idn, parse_number, parse_scpi_error, parse_tsp_error
from hil.drivers.protocols import ErrorEntry
from hil.drivers.transport import Transport, instrument_logger

__all__ = ["DriverBase", "ScpiDriver", "TspDriver", "ShutdownStep", "ShutdownReport"]

ShutdownStep = tuple[str, Callable[[], None]]


@dataclass
class ShutdownReport:
    """What ``safe_shutdown()`` achieved, as read back from the instrument.

    Attributes:
        instrument: instrument name.
        verified: per output (SMU channel, or a matrix slot) ``True`` when read back off at 0 V
            (relays open) after the shutdown; empty for instruments without outputs.
        failures: ``"step: error"`` for every shutdown step that failed.
        verification_error: why the read-back failed (e.g. dead link), else ``None``.
    """

    instrument: str
    verified: dict[str, bool] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    verification_error: Optional[str] = None

    @property
    def maybe_live(self) -> tuple[str, ...]:
        """Outputs not verified off at 0 V."""
        return tuple(name for name, ok in self.verified.items() if not ok)

    @property
    def safe(self) -> bool:
        """``True`` only when every output was read back off at 0 V."""
        return self.verification_error is None and not self.maybe_live

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.safe:
            what = ", ".join(repr(n) for n in self.verified) or "no outputs"
            return f"{self.instrument}: safe (verified off at 0 V: {what})"
        cause = self.verification_error or "; ".join(self.failures[:2]) or "not read back off"
        names = ", ".join(repr(n) for n in self.maybe_live) or "all outputs"
        return f"{self.instrument}: output(s) {names} MAY STILL BE LIVE ({cause})"

MAX_ERROR_ENTRIES = 64


class DriverBase(abc.ABC):
    """Common driver behaviour; see the module docstring for the hooks.

    Args:
        transport: an open ``Transport`` (owned by the driver from now on; ``close()`` closes it).
        name: instrument name for logs and exceptions (default: the transport's name).
        allowed_errors: error codes that ``check_errors`` tolerates (config whitelist).
        sleep: ``sleep(seconds)``; default ``time.sleep``.
        clock: monotonic clock in s; default ``time.monotonic``.
        shutdown_timeout_s: I/O timeout used during ``safe_shutdown`` in s.
        model: the model the bench file names (one of ``SUPPORTED_MODELS``), or ``None``. A driver
            may use it before ``connect()`` (e.g. to know its channels for a shutdown), and
            ``identify()`` refuses an instrument that reports another model.
    """

    SUPPORTED_MODELS: ClassVar[tuple[str, ...]] = ()
    DESCRIPTION: ClassVar[str] = ""
    ERROR_CODE_EMPTY: ClassVar[int] = 0

    def __init__(
        self,
        transport: Transport,
        *,
        name: Optional[str] = None,
        allowed_errors: Iterable[int] = (),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        shutdown_timeout_s: float = 2.0,
        model: Optional[str] = None,
    ) -> None:
        self.transport = transport
        self.expected_model: Optional[str] = None if model is None else str(model)
        self.name = name or transport.name
        self.log: logging.Logger = instrument_logger(self.name)
        self.allowed_errors = frozenset(int(c) for c in allowed_errors)
        self._sleep = sleep
        self._clock = clock
        self.shutdown_timeout_s = float(shutdown_timeout_s)
        self.identity: Optional[Identity] = None
        self.matched_model: Optional[str] = None
        self.line_frequency_hz: Optional[float] = None
        self._connected = False
        self._shutting_down = False
        self._abort_ramps = False
        #: a read timed out: resync (discard, ``*IDN?``, drain) before the next exchange
        self._resync_pending = False
        self._in_resync = False
        #: the link could not be confirmed during shutdown: levels are unknown, ramps skipped
        self._link_suspect = False
        #: a shutdown is reopening a lost link (never twice in a row)
        self._reopening = False
        #: identity confirmed by the running/last ``connect()``
        self._identified = False
        #: why the last ``connect()`` found another instrument at this address (its identity refused),
        #: else None: nothing but ``*IDN?`` was sent to it, and the shutdown sends it nothing either
        self.wrong_instrument: Optional[str] = None
        #: report of the last ``safe_shutdown()``
        self.last_shutdown: Optional[ShutdownReport] = None
        #: entries drained by the last ``safe_shutdown()`` (for teardown checks)
        self.shutdown_errors: list[ErrorEntry] = []
        #: stale entries found (and cleared) in the error queue by the last ``connect()``, i.e.
        #: errors the instrument held before this driver touched it
        self.stale_errors: list[ErrorEntry] = []

    # -- hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _read_error_entry(self) -> ErrorEntry:
        """Read one entry from the instrument's error queue (code 0 when empty)."""

    @abc.abstractmethod
    def _clear_status(self) -> None:
        """Clear the error queue and event registers (``*CLS`` / ``errorqueue.clear()``)."""

    @abc.abstractmethod
    def _read_line_frequency(self) -> Optional[float]:
        """Mains frequency in Hz, or ``None`` if the instrument cannot report it."""

    def _check_command_set(self) -> None:
        """Raise ``InstrumentProtocolError`` if the instrument is in the wrong command set."""

    def _apply_initial_state(self) -> None:
        """Bring the instrument to the explicit state the driver assumes (e.g. outputs off)."""

    def _settings_snapshot(self) -> dict[str, Any]:
        """Configured settings for ``snapshot()``."""
        return {}

    @abc.abstractmethod
    def _shutdown_steps(self) -> list[ShutdownStep]:
        """Ordered shutdown actions: stop, ramp to 0 V, output off, open relays."""

    def _output_names(self) -> list[str]:
        """Names of the outputs ``_verify_safe`` reports on (SMU channels, matrix slots)."""
        return []

    def _verify_safe(self) -> dict[str, bool]:
        """Read back every output: ``{output: off at 0 V}``; ``{}`` if the instrument has none."""
        return {}

    def _shutdown_needed_after_failed_connect(self) -> bool:
        """Whether a ``connect()`` that failed after identification must run ``safe_shutdown``."""
        return True

    # -- plain I/O helpers ---------------------------------------------------------------

    def _before_exchange(self) -> None:
        """Resync first if an earlier read timed out, so a late reply is never taken as the
        answer to this exchange (§1.4)."""
        if self._resync_pending and not self._in_resync:
            if not self._shutting_down:
                self.resync()
                return
            try:
                self.resync()
            except InstrumentError as exc:
                # During a shutdown the output-off commands must still go out: continue without
                # trusting any reply (no ramps from read-backs, no verification).
                self.log.error("shutdown: link not confirmed (%s); outputs off without ramps", exc)
                self._link_suspect = True
                self._resync_pending = False

    def _before_query(self) -> None:
        """:meth:`_before_exchange` for a query: during a shutdown whose link is not confirmed, the
        query is not sent (its reply could not be trusted, and waiting out another timeout, and the
        resync after it, would only hold the shutdown up): InstrumentConnectionError at once."""
        self._before_exchange()
        if self._shutting_down and self._link_suspect:
            raise InstrumentConnectionError("link not confirmed after a timeout; query not sent",
                                            instrument=self.name)

    def _write(self, command: str) -> None:
        self._before_exchange()
        self.transport.write(command)

    def _query(self, command: str, *, retry: bool = False) -> str:
        """Query and strip. Every timeout marks the link for a resync before the next exchange.
        ``retry=True`` (side-effect-free queries only): resync at once and ask once more."""
        if retry:
            return self._query_idempotent(command)
        self._before_query()
        try:
            return self.transport.query(command).strip()
        except (InstrumentTimeout, KeyboardInterrupt, SystemExit):
            self._resync_pending = True  # the reply may still arrive: never take it for the next one
            self._forget_cached_state()  # a command of this exchange may be lost
            raise

    def _query_binary(self, command: str, dtype: DTypeLike, count: Optional[int] = None) -> np.ndarray:
        """``transport.query_binary`` with the same resync rule as ``_query``."""
        self._before_query()
        try:
            return self.transport.query_binary(command, dtype, count)
        except (InstrumentTimeout, KeyboardInterrupt, SystemExit):
            self._resync_pending = True
            self._forget_cached_state()  # a command of this exchange may be lost
            raise

    def _query_float(self, command: str, *, retry: bool = False) -> float:
        return self._parse(parse_number, self._query(command, retry=retry), command)

    def _parse(self, parser: Callable[[str], Any], reply: str, command: str) -> Any:
        """Run ``parser(reply)``, naming instrument and command in a protocol error."""
        try:
            return parser(reply)
        except InstrumentProtocolError as exc:
            raise InstrumentProtocolError(exc.detail, instrument=self.name, command=command) from exc
        except (ValueError, TypeError, OverflowError, IndexError) as exc:  # defence in depth
            raise InstrumentProtocolError(f"unparsable reply {reply[:80]!r}: {exc}", instrument=self.name,
                                          command=command) from exc

    # -- identity and connect ------------------------------------------------------------

    def identify(self) -> Identity:
        """Query ``*IDN?`` and check the model against ``SUPPORTED_MODELS``.

        Raises:
            InstrumentProtocolError: empty/short reply or unsupported model.
        """
        reply = self._query("*IDN?")
        identity = self._parse(parse_idn, reply, "*IDN?")
        token = model_matches(identity, self.SUPPORTED_MODELS)
        if token is None:
            raise InstrumentProtocolError(
                f"unexpected instrument {identity.model!r} ({identity.vendor}); "
                f"driver {type(self).__name__} supports {', '.join(self.SUPPORTED_MODELS)}",
                instrument=self.name,
                command="*IDN?",
            )
        if self.expected_model is not None and token.upper() != self.expected_model.upper():
            raise InstrumentProtocolError(
                f"the bench names a {self.expected_model}, but the instrument identifies as {identity.model!r} "
                f"({identity.vendor}); check the resource or the model in the bench file",
                instrument=self.name, command="*IDN?")
        self.identity, self.matched_model = identity, token
        return identity

    def connect(self) -> None:
        """Identify, check the command set, drain and log stale errors (kept in ``stale_errors``),
        clear status, read the line frequency, apply the initial state, then require an empty
        error queue.

        Raises:
            InstrumentProtocolError: wrong identity or command set.
            InstrumentReportedError: errors produced by the initial configuration.
            InstrumentConnectionError / InstrumentTimeout: link problems.
        """
        self._identified = False
        self.wrong_instrument = None
        try:
            self._connect_sequence()
        except BaseException as exc:
            if not self._identified and isinstance(exc, InstrumentProtocolError) and exc.command == "*IDN?":
                self.wrong_instrument = str(exc)  # not ours: its outputs are not this driver's to switch
            if self._identified and self._shutdown_needed_after_failed_connect():
                self.log.error("connect failed part-way (%s: %s); running the safe shutdown",
                               type(exc).__name__, exc)
                report = self.safe_shutdown()
                if isinstance(exc, InstrumentError):
                    exc.shutdown_report = report  # type: ignore[attr-defined]
                if not report.safe:
                    add_note(exc, report.summary())
            raise

    def _connect_sequence(self) -> None:
        self.stale_errors = []
        self._resync_pending = False
        identity = self.identify()
        self._identified = True
        self._check_command_set()
        stale = self.drain_errors()
        self.stale_errors = list(stale)
        for entry in stale:
            self.log.warning("error queue held %d %r at connect (cleared)", entry.code, entry.message)
        self._clear_status()
        self.line_frequency_hz = self._read_line_frequency()
        self._apply_initial_state()
        self.check_errors()
        self._connected = True
        self.log.info("connected: %s %s serial %s fw %s via %s", identity.vendor, identity.model,
                      identity.serial, identity.firmware, self.transport.resource_name)

    # -- error queue ---------------------------------------------------------------------

    def drain_errors(self, max_entries: int = MAX_ERROR_ENTRIES) -> list[ErrorEntry]:
        """Read entries until the empty code; at most ``max_entries`` (then protocol error)."""
        entries: list[ErrorEntry] = []
        for _ in range(max_entries):
            entry = self._read_error_entry()
            if entry.code == self.ERROR_CODE_EMPTY:
                return entries
            entries.append(entry)
        raise InstrumentProtocolError(
            f"error queue not empty after {max_entries} reads: {entries[:4]} ...", instrument=self.name
        )

    def check_errors(self, allowed: Optional[Iterable[int]] = None) -> list[ErrorEntry]:
        """Drain; log every entry; raise ``InstrumentReportedError`` for codes outside ``allowed``.

        ``allowed`` defaults to the ``allowed_errors`` given at construction. Returns the
        drained (all allowed) entries.
        """
        ok = self.allowed_errors if allowed is None else frozenset(int(c) for c in allowed)
        entries = self.drain_errors()
        bad = [e for e in entries if e.code not in ok]
        for e in entries:
            (self.log.error if e in bad else self.log.info)("instrument error %d: %s", e.code, e.message)
        if bad:
            self._forget_cached_state()  # a command may not have taken effect: read back before trusting
            raise InstrumentReportedError(bad[0].code, bad[0].message, entries, instrument=self.name)
        return entries

    def _forget_cached_state(self) -> None:
        """After an instrument error outside the whitelist or a resync, forget the source levels
        the driver believes the instrument holds (a refused or lost command may not have taken
        effect), so that the next ramp or shutdown reads them back first.  Nothing by default."""

    # -- resync --------------------------------------------------------------------------

    def resync(self) -> list[ErrorEntry]:
        """Recover after a timeout: discard input, confirm identity, drain and log errors.

        Two attempts (discard → ``*IDN?`` compared with the connect identity). Returns the
        drained entries.

        Raises:
            InstrumentConnectionError: identity not confirmed after two attempts.
        """
        expected = self.identity.raw if self.identity else None
        self._resync_pending = True
        self._in_resync = True
        try:
            for attempt in (1, 2):
                self.transport.discard_input()
                try:
                    reply = self.transport.query("*IDN?").strip()
                except InstrumentTimeout:
                    self.log.warning("resync attempt %d: *IDN? timed out", attempt)
                    continue
                if expected is None or reply == expected:
                    self._forget_cached_state()  # a command of the timed-out exchange may be lost
                    entries = self.drain_errors()
                    for e in entries:
                        self.log.warning("after resync: error %d %r", e.code, e.message)
                    self.log.warning("resync succeeded (attempt %d)", attempt)
                    self._resync_pending = False
                    return entries
                self.log.warning("resync attempt %d: identity %r != %r", attempt, reply, expected)
        finally:
            self._in_resync = False
        if self._shutting_down:  # no reply can be trusted: the rest of the shutdown asks nothing more
            self._link_suspect = True
            self._resync_pending = False
        raise InstrumentConnectionError("resync failed: instrument did not confirm its identity",
                                        instrument=self.name, command="*IDN?")

    def _query_idempotent(self, command: str) -> str:
        """Query; after a timeout resync and retry once (only for queries without side effects)."""
        self._before_query()
        try:
            return self.transport.query(command).strip()
        except InstrumentTimeout:
            self._resync_pending = True
            self._forget_cached_state()
            self.log.warning("timeout on %r; resyncing and retrying once", command)
            self.resync()
            return self._query(command)

    # -- snapshot, shutdown, close -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Identity, resource, line frequency and configured settings (JSON-serialisable)."""
        return {
            "name": self.name,
            "driver": type(self).__name__,
            "resource": self.transport.resource_name,
            "identity": self.identity.as_dict() if self.identity else None,
            "model": self.matched_model,
            "line_frequency_hz": self.line_frequency_hz,
            "allowed_errors": sorted(self.allowed_errors),
            "settings": self._settings_snapshot(),
        }

    def abort_ramps(self) -> None:
        """Make a shutdown running in another thread skip its remaining ramp steps (its outputs are
        still switched off and read back), as a Ctrl-C in its own thread would; a no-op when no
        shutdown runs."""
        if self._shutting_down:
            self._abort_ramps = True

    def safe_shutdown(self, *, verify: bool = True) -> ShutdownReport:
        """Run the shutdown steps, read every output back, then drain and log the error queue.

        Idempotent; never raises ``Exception`` (each failure is logged and the next step runs).
        Uses ``shutdown_timeout_s`` for every I/O. If a timeout left the link unconfirmed and the
        resync fails, source levels are treated as unknown: ramps are skipped and outputs are
        switched off directly. A ``KeyboardInterrupt`` during a step (second signal) skips the
        remaining ramps, still runs the output-off steps, and is re-raised at the end. When the
        outputs could not be verified because the link was lost (connection closed, or the
        identity not confirmed after a timeout), the transport is reopened once, the identity
        checked against the one of ``connect()``, and the shutdown run again from levels read back
        (see ``_shutdown_on_new_link``).

        Returns:
            ``ShutdownReport`` (also kept in ``last_shutdown``): ``safe`` only when every output
            was read back off at 0 V (``verify=False`` skips the read-back and reports unverified).
        """
        report = ShutdownReport(self.name)
        if self.wrong_instrument is not None:  # another instrument answers at this address: send it nothing
            report.verification_error = ("not connected: another instrument answers at its address, nothing but "
                                         "*IDN? was sent to it")
            self.last_shutdown = report
            return report
        if self._shutting_down:  # re-entered (e.g. from a signal handler): the running one reports
            report.verification_error = "a shutdown is already running"
            return report
        self._shutting_down = True
        interrupted: Optional[BaseException] = None
        link_lost = False
        try:
            with ExitStack() as stack:
                try:
                    stack.enter_context(self.transport.temporary_timeout(self.shutdown_timeout_s))
                except Exception:
                    self.log.warning("shutdown: could not shorten the timeout", exc_info=True)
                try:
                    self._before_exchange()  # resync now if a timeout is pending; never raises here
                except KeyboardInterrupt as exc:
                    interrupted = exc
                    self._abort_ramps = True
                except Exception as exc:
                    report.failures.append(f"resync: {exc}")
                    self._link_suspect = True
                    self._resync_pending = False
                    link_lost = True
                try:
                    steps = self._shutdown_steps()
                except Exception as exc:
                    self.log.error("shutdown: could not build the step list", exc_info=True)
                    report.failures.append(f"step list: {exc}")
                    steps = []
                if verify:
                    steps.append(("verify outputs off", lambda: self._record_verification(report)))
                steps.append(("drain error queue", self._log_drained_errors))
                for description, step in steps:
                    try:
                        step()
                        self.log.debug("shutdown: %s done", description)
                    except KeyboardInterrupt as exc:
                        interrupted = exc
                        self._abort_ramps = True
                        report.failures.append(f"{description}: interrupted")
                        self.log.error("shutdown: interrupted during %s; skipping ramps", description)
                    except Exception as exc:
                        link_lost = link_lost or isinstance(exc, InstrumentConnectionError)
                        report.failures.append(f"{description}: {exc}")
                        if description == "verify outputs off":
                            report.verification_error = str(exc)
                            report.verified = {n: False for n in self._output_names()}
                        self.log.error("shutdown: %s failed: %s", description, exc)
            if report.verification_error is None and not report.verified and self._output_names():
                report.verification_error = "not verified" if not verify else "verification did not run"
                report.verified = {n: False for n in self._output_names()}
            (self.log.info if report.safe else self.log.error)("shutdown complete: %s", report.summary())
        finally:
            self._shutting_down = False
            self._abort_ramps = False
            self._link_suspect = False
            self.last_shutdown = report
        if interrupted is not None:
            raise interrupted
        if link_lost and verify and not report.safe and not self._reopening:
            report = self._shutdown_on_new_link(report)
        return report

    def _shutdown_on_new_link(self, failed: ShutdownReport) -> ShutdownReport:
        """Second chance for a shutdown that lost its link: reopen the transport, confirm the
        instrument's identity (same ``*IDN?`` as at ``connect()``), read every output state and
        level back instead of trusting the cache, and run ``safe_shutdown()`` again (ramping from
        the levels read). Returns the new report (earlier failures prefixed), or ``failed`` with the
        reason when the link cannot be reopened or another instrument answers."""
        reopen = getattr(self.transport, "reopen", None)
        if reopen is None or self.identity is None:
            return failed
        previous = self.identity
        self._reopening = True
        try:
            self.log.warning("shutdown: link lost; reopening %s to make the outputs safe", self.transport.resource_name)
            try:
                reopen()
                self._resync_pending = False
                with self.transport.temporary_timeout(self.shutdown_timeout_s):
                    identity = self.identify()
                if identity.raw != previous.raw:
                    raise InstrumentConnectionError(f"after reopening, {identity.raw!r} answers instead of "
                                                    f"{previous.raw!r}", instrument=self.name, command="*IDN?")
            except Exception as exc:
                self.identity = previous
                self.log.error("shutdown: reopening failed: %s", exc)
                failed.failures.append(f"reopen: {exc}")
                self.last_shutdown = failed
                return failed
            self._refresh_output_state()
            report = self.safe_shutdown()
            report.failures[:0] = [f"before reopening: {f}" for f in failed.failures]
            return report
        finally:
            self._reopening = False

    def _refresh_output_state(self) -> None:
        """Replace cached output states and levels by read-backs (after the link was reopened)."""

    def _record_verification(self, report: ShutdownReport) -> None:
        if self._link_suspect:  # replies cannot be trusted: nothing is verified
            raise InstrumentConnectionError("link not confirmed after a timeout; outputs not verified",
                                            instrument=self.name)
        report.verified = dict(self._verify_safe())

    def _log_drained_errors(self) -> None:
        if self._link_suspect:
            self.log.error("error queue not drained: link not confirmed")
            return
        self.shutdown_errors = self.drain_errors()
        for e in self.shutdown_errors:
            self.log.error("instrument error at shutdown %d: %s", e.code, e.message)

    def close(self) -> None:
        """Close the transport (never the resource manager)."""
        self._connected = False
        self.transport.close()

    def __enter__(self) -> "DriverBase":
        """``connect()``; a failed connect has already run the safe shutdown (if it found
        anything to make safe) and the transport is closed before the error propagates."""
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        """``safe_shutdown()`` then ``close()``.

        Raises:
            OutputMayBeLiveError: the shutdown could not verify every output off at 0 V and no
                other exception is propagating (otherwise the report is added to it as a note).
        """
        try:
            report = self.safe_shutdown()
        finally:
            self.close()
        if not report.safe:
            if exc is None:
                raise OutputMayBeLiveError(report.maybe_live or ("?",), report, instrument=self.name)
            add_note(exc, report.summary())


class ScpiDriver(DriverBase):
    """Base for SCPI instruments: ``:SYST:ERR?`` queue, ``*CLS``, optional line-frequency query."""

    ERROR_QUERY: ClassVar[str] = ":SYST:ERR?"
    LINE_FREQUENCY_QUERY: ClassVar[Optional[str]] = ":SYST:LFR?"

    def _read_error_entry(self) -> ErrorEntry:
        return self._parse(parse_scpi_error, self._query(self.ERROR_QUERY), self.ERROR_QUERY)

    def _clear_status(self) -> None:
        self._write("*CLS")

    def _read_line_frequency(self) -> Optional[float]:
        if self.LINE_FREQUENCY_QUERY is None:
            return None
        return self._query_float(self.LINE_FREQUENCY_QUERY)


class TspDriver(DriverBase):
    """Base for Keithley TSP instruments: every query is ``print(...)``.

    The error queue is drained with ``print(errorqueue.next())`` until code 0 ("Queue Is Empty").
    """

    def _print(self, expression: str, *, retry: bool = False) -> str:
        """Query ``print(expression)`` and return the stripped reply (``retry``: see ``_query``)."""
        return self._query(f"print({expression})", retry=retry)

    def _print_float(self, expression: str, *, retry: bool = False) -> float:
        command = f"print({expression})"
        return self._parse(parse_number, self._query(command, retry=retry), command)

    def _read_error_entry(self) -> ErrorEntry:
        command = "print(errorqueue.next())"
        return self._parse(parse_tsp_error, self._query(command), command)

    def _clear_status(self) -> None:
        self._write("errorqueue.clear()")

    def _read_line_frequency(self) -> Optional[float]:
        return self._print_float("localnode.linefreq")

    def run_script(self, lines: Iterable[str]) -> None:
        """Send an anonymous script in one write: ``loadandrunscript`` … ``endscript``, ``\\r\\n``-joined."""
        self._write("\r\n".join(["loadandrunscript", *lines, "endscript"]))
