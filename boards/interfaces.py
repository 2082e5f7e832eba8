"""Running one job per instrument with instruments on different interfaces at the same time.

A bench's safe shutdown talks to every instrument; one instrument that stops answering waits
out a timeout on every exchange (seconds each), and run one after another it would hold back
every instrument after it, which stays live meanwhile.  :func:`run_per_interface` gives each
interface its own worker thread, so a frozen instrument delays only itself:

* every VISA resource is its own interface (a LAN socket, a USB device, a serial port), except
  GPIB: the instruments of one GPIB board (``GPIB0::…``, ``GPIB1::…``, or one bus of a LAN–GPIB
  gateway, ``TCPIP0::host::gpib0,N::INSTR``) share one bus and one worker, one after another in
  the order given;
* the calling thread waits for every worker.  A SIGINT or SIGTERM meanwhile calls
  ``on_interrupt`` at once (a shutdown uses it to make the running ramps stop) and waits for its
  handler until every job is done (:func:`hil.compile_signals.deferred_signals`): no job is ever abandoned half-way,
  and the signal is not lost (its handler's ``KeyboardInterrupt`` or ``SystemExit`` is raised
  then);
* with one interface, or when no thread can be started (at interpreter exit on some Python
  versions), the jobs run in the calling thread, one after another.

The jobs must not raise (each catches its own failures); an exception that escapes one is
logged and the others run on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from hil.compile_signals import deferred_signals

log = logging.getLogger("hil.boards.instrument")

#: how often (s) the waiting thread wakes up, so that a Ctrl-C reaches it while workers run
_WAKE_S = 0.1


def interface_key(instrument: Any) -> str:
    """Which interface ``instrument`` talks over: its VISA resource name, or for GPIB the board
    (``GPIB0``, or a LAN–GPIB gateway's ``TCPIP0::host::gpib0``), which every instrument on that
    bus shares; an instrument without a resource name is an interface of its own."""
    try:
        resource = getattr(getattr(instrument, "transport", None), "resource_name", None)
    except Exception:  # (a closed pyvisa session raises on every attribute)
        resource = None
    if not isinstance(resource, str) or not resource:
        return f"object-{id(instrument)}"
    parts = resource.split("::")
    head = parts[0].upper()
    if head.startswith("GPIB"):
        return head
    if head.startswith("TCPIP") and len(parts) > 2 and parts[2].lower().startswith("gpib"):
        # a LAN–GPIB gateway (TCPIP0::host::gpib0,5::INSTR): its instruments share the gateway's bus
        return "::".join((head, parts[1].lower(), parts[2].split(",")[0].lower()))
    return resource


def run_per_interface(names: Sequence[str], key: Callable[[str], str], job: Callable[[str], None],
                      on_interrupt: Callable[[], None]) -> None:
    """``job(name)`` for every name, names with different ``key`` in parallel threads, names with
    the same key one after another in one thread (in the order given); returns when all are done.
    In the main thread SIGINT and SIGTERM wait meanwhile (:func:`hil.compile_signals.deferred_signals`): one arriving
    calls ``on_interrupt`` at once, and goes to its handler once every job is done (what the
    handler raises, e.g. ``KeyboardInterrupt``, leaves this call then).  Anything else raised in
    the waiting thread calls ``on_interrupt`` too, and the wait goes on."""
    lanes: dict[str, list[str]] = {}
    for name in names:
        lanes.setdefault(key(name), []).append(name)
    with deferred_signals(lambda signum: _call_quietly(on_interrupt)):
        if len(lanes) <= 1:
            _run_lane(list(names), job)
            return
        workers: list[threading.Thread] = []
        left: list[list[str]] = []  # lanes no thread could be started for
        for lane_key, lane in lanes.items():
            worker = threading.Thread(target=_run_lane, args=(lane, job), name=f"hil-shutdown-{lane_key}",
                                      daemon=True)
            try:
                worker.start()
            except RuntimeError:  # no new threads (interpreter exit): the rest in this thread
                log.warning("safe state: no worker thread could be started; the instruments one after another")
                left = list(lanes.values())[len(workers):]
                break
            workers.append(worker)
        for lane in left:
            _run_lane(lane, job)
        for worker in workers:
            while worker.is_alive():
                try:
                    worker.join(_WAKE_S)
                except BaseException:  # (not a signal: those wait) e.g. _thread.interrupt_main elsewhere
                    _call_quietly(on_interrupt)


def _call_quietly(fn: Callable[[], None]) -> None:
    """``fn()``; whatever it raises (even a second Ctrl-C) is logged, not passed on."""
    try:
        fn()
    except BaseException as exc:
        log.error("safe state: %s while stopping the ramps", type(exc).__name__)


def _run_lane(lane: list[str], job: Callable[[str], None]) -> None:
    for name in lane:
        try:
            job(name)
        except Exception:  # (a job catches its own failures; this keeps the lane going if one did not)
            log.exception("safe state: %s: unexpected failure", name)
