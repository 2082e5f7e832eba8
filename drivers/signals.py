"""Ctrl-C and SIGTERM as exceptions, so ``finally`` blocks (and ``safe_shutdown``) always run.

``termination_signals()`` installs, in the main thread only, handlers that raise
``KeyboardInterrupt`` for SIGINT and for SIGTERM alike (``safe_shutdown`` treats both the same:
the first stops the work and starts the shutdown; a second one during the shutdown skips the
remaining ramps but still switches outputs off). The previous handlers are restored on exit.
``Interrupts.signal_name`` tells which signal arrived first, for the exit code
(130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Optional

__all__ = ["Interrupts", "termination_signals", "exit_code_for"]

_SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


class Interrupts:
    """Signals received while ``termination_signals()`` was active.

    Attributes:
        received: names of the signals, in order (``"SIGINT"``, ``"SIGTERM"``).
    """

    def __init__(self) -> None:
        self.received: list[str] = []

    @property
    def signal_name(self) -> Optional[str]:
        """The first signal received, or ``None``."""
        return self.received[0] if self.received else None


def exit_code_for(signal_name: Optional[str]) -> int:
    """Conventional shell exit code after a signal: 130 (SIGINT), 143 (SIGTERM), else 1."""
    return {"SIGINT": 130, "SIGTERM": 143}.get(signal_name or "", 1)


@contextmanager
def termination_signals() -> Iterator[Interrupts]:
    """Raise ``KeyboardInterrupt`` on SIGINT and SIGTERM inside the block (main thread only;
    elsewhere the block runs with the process's handlers unchanged)."""
    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Optional[FrameType]) -> Any:
        state.received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {name: signal.getsignal(num) for name, num in _SIGNALS.items()}
    for num in _SIGNALS.values():
        signal.signal(num, handler)
    try:
        yield state
    finally:
        for name, num in _SIGNALS.items():
            signal.signal(num, previous[name])
