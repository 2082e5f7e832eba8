"""Keithley 707B / 708B switching matrix mainframe (TSP), e.g. with a 7174A 8×12 matrix card.

A driver instance controls one card slot. Crosspoints are ``(row, column)`` pairs such as
``("A", 1)`` (``Crosspoint``) or channel specifiers such as ``"1A01"`` (slot digit, row letter,
two-digit column).

Statements, checked against the Models 707B and 708B Switching Matrix Reference Manual
(707B-901-01 Rev. A/B):

* ``channel.close("1A01,1B02")`` appends closures and errors on ``slotX``/``allslots`` or on a
  forbidden channel (then nothing is closed); ``channel.open("slot1")`` opens every relay of one
  slot (``"allslots"`` would open the other slots too);
* ``channel.exclusiveclose("…")`` opens every other channel *in every slot*, so the driver never
  sends it: an instance acts only on the slot it owns. An exclusive connect is done as "open the
  closed crosspoints of this slot that are not wanted, verify, then close the missing ones"
  (break before make within the slot);
* ``print(channel.getclose("slot1"))`` → ``1A01;1B02`` (sorted; lists may be separated by ``,`` or
  ``;``) or ``nil``;
* ``channel.connectrule = channel.BREAK_BEFORE_MAKE`` (all opens before any close; also the
  default) and ``channel.connectsequential = channel.ON`` (one relay after another);
* ``channel.setforbidden("…")`` — forbidden channels cannot be closed by the instrument either;
* ``errorqueue.count`` / ``errorqueue.next()`` → ``code<TAB>message<TAB>severity<TAB>node``,
  ``errorqueue.clear()``.

Left out because they could not be verified for the 707B: a hardware-interlock query (so
``interlock_ok()`` evaluates the software interlocks given in the configuration; ``connect()``
with crosspoints calls it before closing anything and raises ``InterlockError`` when it is
false) and ``localnode.linefreq`` (no line frequency is read).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Optional, Union

from hil.drivers.base import ShutdownStep, TspDriver
from hil.drivers.errors import InstrumentConfigError, InstrumentProtocolError, InterlockError, LimitViolation
from hil.drivers.protocols import Crosspoint

__all__ = ["Keithley707B", "parse_closed"]

_SPEC = re.compile(r"^([1-6])([A-Z])(\d{2})$")
CrosspointLike = Union[str, Crosspoint]


def parse_closed(reply: str) -> list[str]:
    """Channel specifiers from ``print(channel.getclose(...))``; ``nil`` or empty → ``[]``."""
    text = reply.strip()
    if text in ("", "nil"):
        return []
    return [t.strip() for t in re.split(r"[;,]", text) if t.strip()]


class Keithley707B(TspDriver):
    """Keithley 707B/708B matrix, one card slot, as a ``SwitchMatrix``.

    Args:
        transport, name, allowed_errors, sleep, clock, shutdown_timeout_s: see ``DriverBase``.
        slot: card slot controlled by this instance (1–6 on the 707B, 1 on the 708B).
        rows: row letters of the card (7174A: ``"ABCDEFGH"``).
        columns: number of columns of the card (7174A: 12).
        forbidden: crosspoints that must never close; refused before any I/O and also loaded
            into the instrument with ``channel.setforbidden``.
        settle_s: extra wait after every switching command in s (the instrument already waits
            for the relay settling time before completing a command).
        interlocks: software interlocks, each a callable returning ``True`` when switching is
            allowed (e.g. fixture closed).
    """

    SUPPORTED_MODELS = ("707B", "708B")
    DESCRIPTION = "Keithley 707B/708B switching matrix (TSP), one card slot, crosspoints like 1A01"

    def __init__(
        self,
        transport: Any,
        *,
        slot: int = 1,
        rows: str = "ABCDEFGH",
        columns: int = 12,
        forbidden: Iterable[CrosspointLike] = (),
        settle_s: float = 0.0,
        interlocks: Iterable[Callable[[], bool]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(transport, **kwargs)
        if not 1 <= int(slot) <= 6:
            raise InstrumentConfigError(f"slot {slot!r}: 1..6", instrument=self.name)
        if not rows or not all("A" <= r <= "Z" for r in rows) or len(set(rows)) != len(rows):
            raise InstrumentConfigError(f"rows {rows!r}: distinct letters A-Z", instrument=self.name)
        if not 1 <= int(columns) <= 99:
            raise InstrumentConfigError(f"columns {columns!r}: 1..99", instrument=self.name)
        if not settle_s >= 0:
            raise InstrumentConfigError(f"settle_s {settle_s!r}: >= 0", instrument=self.name)
        self.slot = int(slot)
        self.rows = rows
        self.columns = int(columns)
        self.settle_s = float(settle_s)
        self.interlocks = tuple(interlocks)
        self.forbidden: frozenset[Crosspoint] = frozenset(self.to_crosspoint(c) for c in forbidden)

    @property
    def _slot_spec(self) -> str:
        """Channel specifier of every relay in the owned slot, e.g. ``slot1``."""
        return f"slot{self.slot}"

    # -- crosspoint helpers ----------------------------------------------------------------------

    def to_crosspoint(self, item: CrosspointLike) -> Crosspoint:
        """Normalise ``"1A01"`` or ``("A", 1)`` to a validated ``(row, column)`` of this slot."""
        if isinstance(item, str):
            match = _SPEC.match(item.strip().upper())
            if not match:
                raise InstrumentConfigError(f"crosspoint {item!r}: expected slot+row+2-digit column, e.g. '1A01'",
                                            instrument=self.name)
            if int(match.group(1)) != self.slot:
                raise InstrumentConfigError(f"crosspoint {item!r} is not in slot {self.slot}", instrument=self.name)
            row, col = match.group(2), int(match.group(3))
        else:
            try:
                row, col = str(item[0]).upper(), int(item[1])
            except (TypeError, ValueError, IndexError):
                raise InstrumentConfigError(f"crosspoint {item!r}: expected (row, column)", instrument=self.name) from None
        if row not in self.rows or not 1 <= col <= self.columns:
            raise InstrumentConfigError(
                f"crosspoint {item!r}: rows {self.rows}, columns 1..{self.columns}", instrument=self.name)
        return row, col

    def specifier(self, crosspoint: Crosspoint) -> str:
        """Channel specifier of a crosspoint, e.g. ``("A", 1)`` → ``"1A01"``."""
        row, col = crosspoint
        return f"{self.slot}{row}{col:02d}"

    def _spec_list(self, crosspoints: Iterable[Crosspoint]) -> str:
        return ",".join(self.specifier(c) for c in sorted(crosspoints))

    def _normalise(self, crosspoints: Iterable[CrosspointLike]) -> frozenset[Crosspoint]:
        single = isinstance(crosspoints, str) or (
            isinstance(crosspoints, tuple) and len(crosspoints) == 2 and isinstance(crosspoints[1], int))
        items = [crosspoints] if single else list(crosspoints)
        return frozenset(self.to_crosspoint(c) for c in items)

    # -- connect ---------------------------------------------------------------------------------

    def _read_line_frequency(self) -> Optional[float]:
        return None

    def _apply_initial_state(self) -> None:
        self._write("channel.connectrule = channel.BREAK_BEFORE_MAKE")
        self._write("channel.connectsequential = channel.ON")
        self._write(f'channel.open("{self._slot_spec}")')
        if self.forbidden:
            self._write(f'channel.setforbidden("{self._spec_list(self.forbidden)}")')
        left = self.closed()
        if left:
            raise InstrumentProtocolError(f"relays still closed after opening all: {sorted(left)}",
                                          instrument=self.name)

    def connect(  # type: ignore[override]
        self, crosspoints: Optional[Iterable[CrosspointLike]] = None, exclusive: bool = False
    ) -> None:
        """Without arguments: instrument connect (identify, drain, open all, load forbidden list).

        With ``crosspoints``: refuse forbidden crosspoints, require ``interlock_ok()``, then close
        them (``exclusive``: the other closed crosspoints of this slot open first and are
        verified open, break before make; other slots are never touched), wait ``settle_s``,
        check the error queue and verify the closed set. An empty set with ``exclusive=True``
        means "nothing closed in this slot" and is carried out as ``open_all()`` (opening needs
        no interlock); an empty set without ``exclusive`` sends nothing.

        Raises:
            LimitViolation: a forbidden crosspoint was requested (nothing sent).
            InterlockError: a software interlock is open (nothing sent).
            InstrumentReportedError / InstrumentProtocolError: rejected or not verified.
        """
        if crosspoints is None:
            super().connect()
            return
        wanted = self._normalise(crosspoints)
        if not wanted:
            if exclusive:
                self.log.info("exclusive connect of an empty set: opening all relays")
                self.open_all()
            return
        self._refuse_forbidden(wanted)
        if not self.interlock_ok():
            raise InterlockError(f"interlock open; not closing {self._spec_list(wanted)}", instrument=self.name)
        if exclusive:
            extra_now = self.closed() - wanted
            if extra_now:
                self.disconnect(extra_now)  # break before make, verified open
        self._write(f'channel.close("{self._spec_list(wanted)}")')
        self._after_switch()
        now = self.closed()
        missing = wanted - now
        extra = now - wanted if exclusive else frozenset()
        if missing or extra:
            raise InstrumentProtocolError(
                f"switch verification failed: not closed {sorted(missing)}, unexpectedly closed {sorted(extra)}",
                instrument=self.name)

    def _refuse_forbidden(self, wanted: frozenset[Crosspoint]) -> None:
        bad = sorted(wanted & self.forbidden)
        if bad:
            raise LimitViolation(f"crosspoint {self.specifier(bad[0])}", float("nan"), float("nan"),
                                 instrument=self.name,
                                 reason=f"forbidden by configuration: {[self.specifier(b) for b in bad]}")

    def _after_switch(self) -> None:
        if self.settle_s:
            self._sleep(self.settle_s)
        self.check_errors()

    # -- SwitchMatrix protocol ---------------------------------------------------------------------

    def disconnect(self, crosspoints: Iterable[CrosspointLike]) -> None:
        """Open ``crosspoints`` and verify they are open."""
        wanted = self._normalise(crosspoints)
        if not wanted:
            return
        self._write(f'channel.open("{self._spec_list(wanted)}")')
        self._after_switch()
        still = wanted & self.closed()
        if still:
            raise InstrumentProtocolError(f"still closed after open: {sorted(still)}", instrument=self.name)

    def open_all(self) -> None:
        """Open every relay of the owned slot (other slots untouched) and verify nothing is closed."""
        self._write(f'channel.open("{self._slot_spec}")')
        self._after_switch()
        still = self.closed()
        if still:
            raise InstrumentProtocolError(f"still closed after opening all: {sorted(still)}", instrument=self.name)

    def closed(self) -> frozenset[Crosspoint]:
        """Crosspoints of this slot reported closed by ``channel.getclose``."""
        command = f'print(channel.getclose("slot{self.slot}"))'
        specs = parse_closed(self._query(command))
        try:
            return frozenset(self.to_crosspoint(s) for s in specs)
        except InstrumentConfigError as exc:
            raise InstrumentProtocolError(f"unexpected channel in getclose reply: {exc}", instrument=self.name,
                                          command=command) from exc

    def interlock_ok(self) -> bool:
        """``True`` if every configured software interlock allows switching (no hardware query)."""
        for check in self.interlocks:
            try:
                if not check():
                    return False
            except Exception:
                self.log.error("software interlock %r raised; treating as open", check, exc_info=True)
                return False
        return True

    # -- snapshot and shutdown ---------------------------------------------------------------------

    def _settings_snapshot(self) -> dict[str, Any]:
        return {"slot": self.slot, "rows": self.rows, "columns": self.columns,
                "connect_rule": "BREAK_BEFORE_MAKE", "connect_sequential": "ON",
                "forbidden": sorted(self.specifier(c) for c in self.forbidden), "settle_s": self.settle_s,
                "software_interlocks": len(self.interlocks)}

    def _shutdown_steps(self) -> list[ShutdownStep]:
        return [(f"open all relays of {self._slot_spec}", lambda: self._write(f'channel.open("{self._slot_spec}")'))]

    def _output_names(self) -> list[str]:
        return [self._slot_spec]

    def _verify_safe(self) -> dict[str, bool]:
        """``{slotN: no relay of the slot reported closed}``."""
        left = self.closed()
        if left:
            self.log.error("relays still closed after shutdown: %s", sorted(left))
        return {self._slot_spec: not left}
