"""``--emulate`` for the commands that open a board (``hil train``, ``hil calibrate``): start the
emulators of an instrument bench on 127.0.0.1 for the length of the command."""
from __future__ import annotations

import contextlib
from typing import Any

from hil import api
from hil.config import ConfigError


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

    spec = settings.instrument_board
    bench = stack.enter_context(EmulatedBench(spec.bench, time_mode="virtual", programming=spec.programming,
                                              devices=settings.devices, g_bounds=(settings.g_min, settings.g_max),
                                              round_trips=True))
    print(f"{command}: emulating bench {bench.bench.name} on 127.0.0.1 ({len(bench.resources)} instruments); "
          "the emulated devices are programmed by the write-verify pulses through the sockets", flush=True)
    return {"resources": bench.resources, "clock": lambda: bench.clock.now_s}
