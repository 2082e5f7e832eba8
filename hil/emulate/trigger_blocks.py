"""Trigger models built from numbered blocks (Keithley 2450 family), as far as the drivers use them.

A model is a table ``{block number: Block}`` run from block 1: each block does its action and the
run goes on with the next number, until a number without a block ends it. The kinds modelled:

* ``wait`` (``:TRIG:BLOC:WAIT n, <event>[, ENTer|NEVer]``): go on once ``event`` was detected;
  an event detected before the block is reached is used (``NEVer``, the default) unless the block
  clears on entry (``ENTer``). An event arriving while one is already latched is lost (an overrun);
* ``config_next`` (``:TRIG:BLOC:CONF:NEXT n, "<list>"``): recall the next index of a source
  configuration list (index 1 on the first encounter of a run, wrapping after the last);
* ``measure`` (``:TRIG:BLOC:MEAS n[, "<buffer>"]``): one reading into the buffer;
* ``branch_counter`` (``:TRIG:BLOC:BRAN:COUN n, <count>, <to>``): the block counts its arrivals
  and branches to ``to`` while the count is below ``count``, so a loop over it runs ``count`` times.

:class:`BlockRun` executes one run (from ``:INIT`` to its end or ``:ABORt``) against the
instrument's actions. A run paced by the bench trigger line stops at a measure block
(``stop_at_measure``) until the bench's measure step, so every meter on the line reads at the same
instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Block", "BlockRun", "BlockModelError"]

#: blocks a run may execute without waiting before it is taken for an endless loop
MAX_STEPS_WITHOUT_WAIT = 10_000_000


class BlockModelError(RuntimeError):
    """A run could not go on (endless loop, missing configuration list, ...)."""


@dataclass(frozen=True)
class Block:
    """One trigger-model block: ``kind`` and its arguments (see the module docstring)."""

    kind: str
    event: str = ""
    clear_on_entry: bool = False
    name: str = ""
    count: int = 0
    to: int = 0


@dataclass
class BlockRun:
    """One run of a block model.

    Args:
        blocks: the model, ``{number: Block}``.
        config_next: called with a configuration-list name and the 1-based index to recall.
        list_length: number of indexes of a configuration list (``0``: no such list).
        measure: called with a buffer name to make and store one reading.
    """

    blocks: dict[int, Block]
    config_next: Callable[[str, int], None]
    list_length: Callable[[str], int]
    measure: Callable[[str], None]
    pc: int = 1
    #: ``"running"``, ``"waiting"`` (for ``waiting_for``), ``"measure"`` (for the bench's measure
    #: step) or ``"done"``
    state: str = "running"
    waiting_for: str = ""
    counters: dict[int, int] = field(default_factory=dict)
    indexes: dict[str, int] = field(default_factory=dict)
    latched: set[str] = field(default_factory=set)
    overruns: int = 0
    readings: int = 0

    def signal(self, event: str) -> None:
        """An event happened: latch it (an overrun if it is already latched)."""
        if event in self.latched:
            self.overruns += 1
        self.latched.add(event)

    def advance(self, stop_at_measure: bool = False) -> None:
        """Execute blocks until the run waits for an event, stops before a measure block
        (``stop_at_measure``) or ends."""
        if self.state == "done":
            return
        self.state = "running"
        for _ in range(MAX_STEPS_WITHOUT_WAIT):
            block = self.blocks.get(self.pc)
            if block is None:
                self.state = "done"
                return
            if block.kind == "wait":
                if self.waiting_for != block.event and block.clear_on_entry:
                    self.latched.discard(block.event)
                if block.event not in self.latched:
                    self.state, self.waiting_for = "waiting", block.event
                    return
                self.latched.discard(block.event)
                self.waiting_for = ""
                self.pc += 1
            elif block.kind == "config_next":
                n = self.list_length(block.name)
                if n <= 0:
                    raise BlockModelError(f"configuration list {block.name!r} is empty or missing")
                index = self.indexes.get(block.name, 0) % n + 1
                self.indexes[block.name] = index
                self.config_next(block.name, index)
                self.pc += 1
            elif block.kind == "measure":
                if stop_at_measure:
                    self.state = "measure"
                    return
                self.measure_now()
            elif block.kind == "branch_counter":
                self.counters[self.pc] = self.counters.get(self.pc, 0) + 1
                self.pc = block.to if self.counters[self.pc] < block.count else self.pc + 1
            else:
                raise BlockModelError(f"block kind {block.kind!r} is not modelled")
        raise BlockModelError("trigger model loops without waiting")

    def measure_now(self) -> None:
        """Execute the measure block the run stands at and move on to the next block."""
        block = self.blocks[self.pc]
        self.measure(block.name)
        self.readings += 1
        self.pc += 1
        self.state = "running"

    @property
    def done(self) -> bool:
        return self.state == "done"

    def waiting_on(self) -> Optional[str]:
        """The event the run waits for, or ``None``."""
        return self.waiting_for if self.state == "waiting" else None
