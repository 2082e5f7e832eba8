"""``--emulate`` for the commands that open a board (``hil train``, ``hil calibrate``): start the
emulators of an instrument bench on 127.0.0.1 for the length of the command."""
from __future__ import annotations

import contextlib
from typing import Any

from hil import api
from hil.config import ConfigError


#: the emulated benches of the running command, and the failures of those already stopped
_ACTIVE: list = []
_FAILURES: list[str] = []


def _retire(bench: Any) -> None:
    """The bench stops: keep its emulators' own failures for the command's error line."""
    _FAILURES.extend(bench.internal_errors())
    _ACTIVE.remove(bench)


def emulator_failure() -> str:
    """The first failure of the command's emulators themselves (``""`` if none): a reply they could
    not compute is never sent, so the drivers report a timeout whose cause this names."""
    for bench in _ACTIVE:
        _FAILURES.extend(e for e in bench.internal_errors() if e not in _FAILURES)
    return _FAILURES[0] if _FAILURES else ""


def device_model(settings: Any) -> dict:
    """The :class:`~hil.emulate.bench.EmulatedBench` options that model the array's resistive devices
    of an instrument-bench config's settings: its ``board.programming``, ``board.devices`` and the
    board's conductance range (S)."""
    return {"programming": settings.instrument_board.programming, "devices": settings.devices,
            "g_bounds": (settings.g_min, settings.g_max)}


def emulated_board_options(args: Any, stack: contextlib.ExitStack, config: dict, source: str,
                           command: str = "hil train") -> dict:
    """The board options that point the drivers at an emulated bench, or ``{}`` without ``--emulate``.

    The emulators (same bench description, loopback resources, virtual clock) are entered on
    ``stack`` and stop when it closes. Raises :class:`ConfigError` for a board that is not an
    instrument bench.
    """
    if not getattr(args, "emulate", False):
        return {}
    settings = api.parse_config(config, source)
    if settings.backend != "instruments":
        raise ConfigError(["--emulate: only for board.backend: instruments"], source)
    from hil.emulate.bench import EmulatedBench

    bench = stack.enter_context(EmulatedBench(settings.instrument_board.bench, time_mode="virtual",
                                              round_trips=True, **device_model(settings)))
    if not _ACTIVE:
        _FAILURES.clear()  # a new command: an earlier one's failures (same process) are not its own
    _ACTIVE.append(bench)
    stack.callback(_retire, bench)
    print(f"{command}: emulating bench {bench.bench.name} on 127.0.0.1 ({len(bench.resources)} instruments); "
          "the emulated devices are programmed by the write-verify pulses through the sockets", flush=True)
    return {"resources": bench.resources, "clock": lambda: bench.clock.now_s}
