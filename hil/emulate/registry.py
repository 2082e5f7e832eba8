"""Personality registry: bench ``driver:`` name → emulator class, imported lazily.

To add a personality, add ONE line to ``PERSONALITIES`` (``"driver name": "module:Class"``), or
call :func:`register_personality` at import time of a plug-in module. The class must subclass
``hil.emulate.base.Emulator`` and accept ``(name, model, *, world, clock, ports, serial, options)``;
``MODELS`` lists the models it impersonates. Channel names are those of the driver (``""`` for
the 2450, ``"1"``/``"2"`` for the B2900, ``"a"``/``"b"`` for the 2600B, ``"101"`` … for scanners).
"""

from __future__ import annotations

import importlib
from typing import Union

__all__ = ["PERSONALITIES", "register_personality", "personality_class", "personality_names"]

# ---- one line per personality ------------------------------------------------------------------
PERSONALITIES: dict[str, Union[str, type]] = {
    "daq970a": "hil.emulate.daq970:Daq970Emulator",
    "keithley2450": "hil.emulate.smu2450:Smu2450Emulator",
    "keithley2600": "hil.emulate.keithley2600:Smu2600Emulator",
    "keithley707b": "hil.emulate.keithley707b:Matrix707Emulator",
    "keysight_b2900": "hil.emulate.b2900:SmuB2900Emulator",
}
# ---------------------------------------------------------------------------------------------------


def register_personality(driver: str, target: Union[str, type]) -> None:
    """Register (or replace) the emulator class for a driver name (``"module:Class"`` or a class)."""
    PERSONALITIES[str(driver)] = target


def personality_names() -> list[str]:
    """Driver names that have an emulator, sorted."""
    return sorted(PERSONALITIES)


def personality_class(driver: str) -> type:
    """The emulator class for ``driver``.

    Raises:
        KeyError: no personality for that driver (message lists the known ones).
        ImportError: the registered module/class cannot be imported.
    """
    try:
        target = PERSONALITIES[driver]
    except KeyError:
        raise KeyError(f"no emulator for driver {driver!r}; emulated: {', '.join(personality_names())}") from None
    if isinstance(target, type):
        return target
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    PERSONALITIES[driver] = cls
    return cls
