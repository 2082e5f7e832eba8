"""Ctrl-C and SIGTERM wait while numba compiles a kernel or loads one from its disk cache.

Numba builds or loads each compiled kernel on its first call with a new kind of argument. That can
happen at any point of a run, for example the first sample that flips a diode in both phases, or
the first evaluation at another batch size. A ``KeyboardInterrupt`` raised inside that work can
leave llvmlite objects half made, which prints a traceback at exit. It can also abort the whole
process (status −6) before the board's safe shutdown runs. So while numba holds its compiler lock
in the main thread, :func:`signals_wait_for_compiles` keeps a SIGINT or SIGTERM pending. It raises
the signal again as soon as the lock is released, and the handler that was installed before then
handles it. Such work takes milliseconds, or a few seconds for a kernel that is not cached yet.

:func:`deferred_signals` holds both signals for a whole block (the end-of-epoch writes, a bench's
safe shutdown) and hands the first to its handler when the block ends.

Numba's compiler lock announces itself through numba's event API. A listener counts how deep the
main thread is inside it. That listener is registered once, when this module is first imported.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

from numba.core import event

#: the signals that wait for a compile to finish
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state = {"depth": 0, "pending": None}  # main-thread nesting of numba's compiler lock; a held signal


class _CompilerLockListener(event.Listener):
    """Counts the main thread's holds of numba's compiler lock; re-delivers a held signal when the
    outermost hold ends (numba ends the event after releasing the lock)."""

    def on_start(self, ev: event.Event) -> None:
        if threading.current_thread() is threading.main_thread():
            _state["depth"] += 1

    def on_end(self, ev: event.Event) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        _state["depth"] = max(_state["depth"] - 1, 0)
        signum = _state["pending"]
        if _state["depth"] == 0 and signum is not None:
            _state["pending"] = None
            # raised again rather than handled here: the handler runs at the interpreter's next check,
            # moments later and with the lock already released
            signal.raise_signal(signum)


event.register("numba:compiler_lock", _CompilerLockListener())


def compiling() -> bool:
    """Whether the main thread is inside numba's compiler lock now."""
    return _state["depth"] > 0


@contextlib.contextmanager
def handling_signals(make_handler: Callable[[dict], Callable]) -> Iterator[dict]:
    """Within the block, SIGINT and SIGTERM go to the handler ``make_handler(previous)`` returns,
    ``previous`` being the handlers installed before (by signal), which come back when the block
    ends; yields ``previous``.  Call it in the main thread (only there can handlers be set)."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    handler = make_handler(previous)
    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield previous
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def handle_as(handler, signum: int, frame=None) -> None:
    """Do with ``signum`` what ``handler`` (as :func:`signal.getsignal` returns it) would: call it;
    for the default action, raise the signal again under it; an ignored signal is dropped."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


@contextlib.contextmanager
def deferred_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then hand the first held one to the handler
    installed before (:func:`handle_as`: what a Python handler raises leaves the block; the default
    action is taken; an ignored signal is dropped).  ``on_signal(signum)``, when given, is called
    at once for every signal that arrives (a shutdown uses it to stop its ramps).  Outside the main
    thread, or when a handler was not set from Python (it could not be put back), nothing changes."""
    if threading.current_thread() is not threading.main_thread() or \
            any(signal.getsignal(sig) is None for sig in SIGNALS):
        yield
        return
    pending: list = []
    old: dict = {}

    def hold(previous: dict) -> Callable:  # every signal of the block waits in ``pending``
        def held(signum, frame):
            pending.append((signum, frame))
            if on_signal is not None:
                on_signal(signum)

        return held

    try:
        with handling_signals(hold) as old:
            yield
    finally:  # (the handlers of before are back): the first held signal, as they would have taken it
        for signum, frame in pending[:1]:
            handle_as(old[signum], signum, frame)


@contextlib.contextmanager
def signals_wait_for_compiles() -> Iterator[None]:
    """Within the block, a SIGINT or SIGTERM that arrives while numba compiles or loads a kernel (in
    the main thread) is held until that is done, then handled by the handler that was installed
    when the block began; at any other moment it is handled at once.  Outside the main thread
    (where signals cannot be handled) the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def waiting_for_compiles(previous: dict) -> Callable:
        def wait_for_compile(signum, frame):
            if compiling():
                if _state["pending"] is None:  # (a second signal during the same compile adds nothing)
                    _state["pending"] = signum
                return
            handle_as(previous[signum], signum, frame)

        return wait_for_compile

    with handling_signals(waiting_for_compiles):
        yield
