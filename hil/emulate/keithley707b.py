"""Emulated Keithley 707B / 708B switching matrix (TSP) with matrix cards such as the 7174A.

Crosspoints are channel specifiers ``<slot><row letter><2-digit column>`` (``"1A01"``). The
``channel`` functions accept lists (``"1A01,1B02"``), ranges (``"1A01:1B03"`` — every crosspoint
of the rectangle between the two corners of one slot), ``"slotN"`` and ``"allslots"``:

* ``channel.close(list)`` closes (refused with nothing closed for ``slotN``/``allslots``, a
  forbidden channel or an invalid specifier), ``channel.open(list)`` opens,
  ``channel.exclusiveclose(list)`` opens every other crosspoint of every slot first (break
  before make), ``channel.exclusiveslotclose(list)`` does so only in the slots of ``list``;
* ``channel.getclose(list)`` → ``"1A01;1B02"`` (sorted) or ``nil``;
* ``channel.setforbidden/getforbidden/clearforbidden``, ``channel.connectrule``
  (``OFF`` 0, ``BREAK_BEFORE_MAKE`` 1, ``MAKE_BEFORE_BREAK`` 2), ``channel.connectsequential``
  (``OFF`` 0, ``ON`` 1), ``channel.reset(list)``;
* ``slot[N].idn`` (card identity, ``"Empty Slot"`` for a slot without a card).

Crosspoints wired by the bench (``World.crosspoints`` entries named ``"<instrument>.<spec>"``)
join their two lines in the world the moment the relay changes, so the circuit's connections
change for every instrument. Relays take ``relay_time_s`` of bench time each with
``connectsequential = ON`` (one relay after another), otherwise once per open or close phase.

Safety model: a relay change while either line of a wired crosspoint is above 1 mV is *hot
switching* — recorded as a transcript ``event`` (``hot_switch``) and queued as error
``HOT_SWITCH_ERROR`` (an emulator-specific positive code, so integration tests fail on it).
With the ``interlock_open`` fault armed, closing is refused (``INTERLOCK_ERROR``) and nothing
closes; opening is always allowed.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from hil.bench.timing import instrument_figures
from hil.emulate.tsp import HostTable, LuaTable, TspError, to_int
from hil.emulate.tsp_machine import OUT_OF_RANGE, SETTINGS_CONFLICT, TspEmulator, TspMachine

__all__ = ["Matrix707Emulator", "HOT_SWITCH_ERROR", "INTERLOCK_ERROR", "parse_channel_list"]

HOT_SWITCH_ERROR = 5900  #: emulator-specific: a relay changed while a line was live
INTERLOCK_ERROR = -200  #: "Execution error": relays cannot close with the interlock open
CONNECT_OFF, BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK = 0, 1, 2

_SPEC = re.compile(r"^([1-6])([A-Z])(\d{2})$")
_SLOT = re.compile(r"^slot([1-6])$", re.I)


def parse_channel_list(text: str, slots: dict[int, tuple[str, int]], *, allow_groups: bool = True) -> list[str]:
    """Expand a 707B channel list into crosspoint specifiers (sorted, unique).

    Args:
        text: ``"1A01,1B02"``, ``"1A01:1B03"``, ``"slot1"``, ``"allslots"`` (comma separated).
        slots: ``{slot: (row letters, columns)}`` of the installed matrix cards.
        allow_groups: accept ``slotN``/``allslots`` (``channel.close`` does not).

    Raises:
        TspError: -222 for an unknown slot, row, column or malformed item.
    """
    out: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        low = item.lower()
        if low == "allslots" or _SLOT.match(item):
            if not allow_groups:
                raise TspError(OUT_OF_RANGE, f"Parameter data out of range ({item} not allowed here)")
            wanted = list(slots) if low == "allslots" else [int(_SLOT.match(item).group(1))]  # type: ignore[union-attr]
            for s in wanted:
                if s not in slots:
                    raise TspError(OUT_OF_RANGE, f"Parameter data out of range (slot {s} is empty)")
                rows, cols = slots[s]
                out.update(f"{s}{r}{c:02d}" for r in rows for c in range(1, cols + 1))
            continue
        if ":" in item:
            a, b = (p.strip().upper() for p in item.split(":", 1))
            ma, mb = _SPEC.match(a), _SPEC.match(b)
            if not (ma and mb) or ma.group(1) != mb.group(1):
                raise TspError(OUT_OF_RANGE, f"Parameter data out of range (channel range {item!r})")
            s = int(ma.group(1))
            _check(s, ma.group(2), int(ma.group(3)), slots, item)
            _check(s, mb.group(2), int(mb.group(3)), slots, item)
            rows = slots[s][0]
            r0, r1 = sorted((rows.index(ma.group(2)), rows.index(mb.group(2))))
            c0, c1 = sorted((int(ma.group(3)), int(mb.group(3))))
            out.update(f"{s}{rows[r]}{c:02d}" for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
            continue
        m = _SPEC.match(item.upper())
        if not m:
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (channel {item!r})")
        s, row, col = int(m.group(1)), m.group(2), int(m.group(3))
        _check(s, row, col, slots, item)
        out.add(f"{s}{row}{col:02d}")
    return sorted(out)


def _check(slot: int, row: str, col: int, slots: dict[int, tuple[str, int]], item: str) -> None:
    if slot not in slots:
        raise TspError(OUT_OF_RANGE, f"Parameter data out of range (slot {slot} is empty: {item!r})")
    rows, cols = slots[slot]
    if row not in rows or not 1 <= col <= cols:
        raise TspError(OUT_OF_RANGE, f"Parameter data out of range (channel {item!r}: rows {rows}, columns 1-{cols})")


class Matrix707Emulator(TspEmulator):
    """Emulated Keithley 707B/708B (see the module docstring).

    Args:
        name, model, world, clock, serial, options: see ``hil.emulate.base.Emulator``.
        options: ``slot``, ``rows``, ``columns`` — the card the bench uses (default a 7174A
            8×12 card in slot 1); ``slots`` — more cards ``{slot: {"rows": …, "columns": …}}``;
            ``relay_time_s`` (default 3 ms); ``firmware``.
    """

    FAMILY = "keithley707b"
    MODELS = ("707B", "708B")

    def __init__(self, name: str, model: str = "707B", **kwargs: Any) -> None:
        super().__init__(name, model, **kwargs)
        self.slots = self._slots_from_options()
        self.relay_time_s = instrument_figures(self.FAMILY, self.options).relay_s
        self.closed: set[str] = set()
        self.forbidden: set[str] = set()
        self.connect_rule = BREAK_BEFORE_MAKE
        self.connect_sequential = 0
        self.hot_switch_events: list[dict[str, Any]] = []
        self.machine = TspMachine(
            idn=self.idn(), model=model, serial=self.serial, firmware=str(self.options.get("firmware", "1.8.0")),
            line_frequency_hz=self.world.line_frequency_hz if self.world is not None else 50.0,
            advance=self.advance, now=lambda: self.clock.now_s, reset=self.reset,
            errors=self.errors, push_error=self.push_error)
        self.machine.define("channel", self._channel_table())
        slot_table = LuaTable()
        for s in range(1, 7 if model == "707B" else 2):
            card = self.slots.get(s)
            slot_table.set(s, HostTable(f"slot[{s}]", members={
                "idn": ("7174A,8x12 Low Current Matrix" if card and card == ("ABCDEFGH", 12)
                        else f"Matrix card {len(card[0])}x{card[1]}" if card else "Empty Slot"),
            }))
        self.machine.define("slot", slot_table)

    def _slots_from_options(self) -> dict[int, tuple[str, int]]:
        rows = str(self.options.get("rows", "ABCDEFGH")).upper()
        columns = int(self.options.get("columns", 12))
        out: dict[int, tuple[str, int]] = {int(self.options.get("slot", 1)): (rows, columns)}
        cards = self.options.get("slots")
        if isinstance(cards, dict):
            for slot, card in cards.items():
                card = dict(card) if isinstance(card, dict) else {}
                out[int(slot)] = (str(card.get("rows", rows)).upper(), int(card.get("columns", columns)))
        return out

    # -- Emulator API ----------------------------------------------------------------------------

    def idn(self) -> str:
        return f"Keithley Instruments Inc., Model {self.model}, {self.serial}, {self.options.get('firmware', '1.8.0')}"

    def reset(self) -> None:
        """``reset()``: open every relay, default connect rule, forbidden list cleared."""
        super().reset()
        if not hasattr(self, "machine"):
            return
        self._switch(opens=sorted(self.closed), closes=[])
        self.forbidden.clear()
        self.connect_rule = BREAK_BEFORE_MAKE
        self.connect_sequential = 0
        self.machine.reset_format()

    # -- channel table ---------------------------------------------------------------------------

    def _list(self, spec: Any, *, allow_groups: bool = True) -> list[str]:
        if not isinstance(spec, str):
            raise TspError(-286, "TSP Runtime error: bad argument (channel list string expected)")
        return parse_channel_list(spec, self.slots, allow_groups=allow_groups)

    def _channel_table(self) -> HostTable:
        t = HostTable("channel", members={
            "OFF": 0.0, "ON": 1.0,
            "BREAK_BEFORE_MAKE": float(BREAK_BEFORE_MAKE), "MAKE_BEFORE_BREAK": float(MAKE_BEFORE_BREAK),
            "close": self._close,
            "open": self._open,
            "exclusiveclose": lambda spec: self._exclusive(spec, all_slots=True),
            "exclusiveslotclose": lambda spec: self._exclusive(spec, all_slots=False),
            "getclose": self._getclose,
            "setforbidden": lambda spec: self.forbidden.update(self._list(spec)),
            "clearforbidden": lambda spec: self.forbidden.difference_update(self._list(spec)),
            "getforbidden": lambda spec: self._joined(set(self._list(spec)) & self.forbidden),
            "reset": lambda spec="allslots": self._open(spec),
            "createspecifier": lambda slot, row, col: self._specifier(slot, row, col),
        })
        t.attribute("connectrule", lambda: float(self.connect_rule), self._set_rule)
        t.attribute("connectsequential", lambda: float(self.connect_sequential), self._set_sequential)
        return t

    def _set_rule(self, value: Any) -> None:
        v = to_int(value, "channel.connectrule")
        if v not in (CONNECT_OFF, BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (channel.connectrule = {value})")
        self.connect_rule = v

    def _set_sequential(self, value: Any) -> None:
        v = to_int(value, "channel.connectsequential")
        if v not in (0, 1):
            raise TspError(OUT_OF_RANGE, f"Parameter data out of range (channel.connectsequential = {value})")
        self.connect_sequential = v

    def _specifier(self, slot: Any, row: Any, col: Any) -> str:
        s, c = to_int(slot, "slot"), to_int(col, "column")
        r = row if isinstance(row, str) else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[to_int(row, "row") - 1]
        spec = f"{s}{r.upper()}{c:02d}"
        return self._list(spec, allow_groups=False)[0]

    @staticmethod
    def _joined(items: set[str]) -> tuple[Optional[str]]:
        """One value: the ``;``-joined sorted list, or ``nil`` (a one-element tuple, so
        ``print(channel.getclose(...))`` prints ``nil`` as on the instrument)."""
        return (";".join(sorted(items)) if items else None,)

    def _getclose(self, spec: Any) -> tuple[Optional[str]]:
        return self._joined(set(self._list(spec)) & self.closed)

    def _refuse_forbidden(self, wanted: list[str]) -> None:
        bad = sorted(set(wanted) & self.forbidden)
        if bad:
            raise TspError(SETTINGS_CONFLICT, f"Settings conflict (forbidden channel {bad[0]})")

    def _refuse_interlock(self) -> None:
        if self.interlock_is_open():
            raise TspError(INTERLOCK_ERROR, "Execution error (interlock open: relays cannot close)")

    def _close(self, spec: Any) -> None:
        wanted = self._list(spec, allow_groups=False)
        self._refuse_forbidden(wanted)
        self._refuse_interlock()
        self._switch(opens=[], closes=[c for c in wanted if c not in self.closed])

    def _open(self, spec: Any) -> None:
        wanted = self._list(spec)
        self._switch(opens=[c for c in wanted if c in self.closed], closes=[])

    def _exclusive(self, spec: Any, *, all_slots: bool) -> None:
        wanted = self._list(spec, allow_groups=False) if str(spec).strip() else []
        self._refuse_forbidden(wanted)
        if wanted:
            self._refuse_interlock()
        slots = {int(c[0]) for c in wanted}
        others = [c for c in sorted(self.closed) if c not in wanted and (all_slots or int(c[0]) in slots)]
        self._switch(opens=others, closes=[c for c in wanted if c not in self.closed])

    # -- relays and the world ----------------------------------------------------------------------

    def _switch(self, *, opens: list[str], closes: list[str]) -> None:
        """Open then close (break before make; make before break closes first), with relay times."""
        phases = [(closes, True), (opens, False)] if self.connect_rule == MAKE_BEFORE_BREAK else \
            [(opens, False), (closes, True)]
        for relays, state in phases:
            if not relays:
                continue
            for spec in relays:
                self._set_relay(spec, state)
                if self.connect_sequential:
                    self.advance(self.relay_time_s)
            if not self.connect_sequential:
                self.advance(self.relay_time_s)

    def _set_relay(self, spec: str, closed: bool) -> None:
        crosspoint = f"{self.name}.{spec}"
        world = self.world
        wired = world is not None and crosspoint in world.crosspoints
        if wired:
            with world.lock:
                hot = world.hot_lines(crosspoint)
                if hot:
                    volts = {line: world.line_voltage(line) for line in hot}
                    event = {"crosspoint": spec, "closing": closed, "lines": volts}
                    self.hot_switch_events.append(event)
                    self.transcript.record("event", f"hot switch {spec} ({'close' if closed else 'open'}): "
                                           + ", ".join(f"{k} {v:.4g} V" for k, v in volts.items()),
                                           hot_switch=True, **event)
                    self.push_error(HOT_SWITCH_ERROR, f"Hot switching of {spec}: line(s) "
                                    + ", ".join(f"{k} at {v:.4g} V" for k, v in volts.items()))
                world.set_relay(crosspoint, closed)
        if closed:
            self.closed.add(spec)
        else:
            self.closed.discard(spec)
        self.transcript.record("relay", f"{spec} {'closed' if closed else 'open'}", crosspoint=spec,
                               closed=closed, wired=wired)

    def closed_crosspoints(self) -> list[str]:
        """Specifiers of the closed relays (sorted)."""
        with self.lock:
            return sorted(self.closed)

