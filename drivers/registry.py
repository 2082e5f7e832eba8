"""Driver registry: config name → driver class, imported lazily (``driver: keithley2450``).

To add a driver, add ONE entry to ``DRIVERS`` below (keep it sorted by name). The class named by
``target`` must define ``SUPPORTED_MODELS`` equal to ``models`` here and ``DESCRIPTION`` equal to
``description``; ``tests/drivers/test_registry.py`` checks every entry, so a typo fails CI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hil.drivers.errors import InstrumentConfigError

__all__ = ["DriverInfo", "DRIVERS", "driver_names", "driver_info", "load_driver"]


@dataclass(frozen=True)
class DriverInfo:
    """One registry entry.

    Attributes:
        name: config name (``driver:`` key).
        target: ``"module:Class"`` imported on first use.
        models: model tokens accepted in ``*IDN?``.
        description: one line for ``hil instruments list``.
    """

    name: str
    target: str
    models: tuple[str, ...]
    description: str


def _entry(name: str, target: str, models: tuple[str, ...], description: str) -> tuple[str, DriverInfo]:
    return name, DriverInfo(name, target, models, description)


# ---- the registry: one line per driver ------------------------------------------------------
DRIVERS: dict[str, DriverInfo] = dict(
    [
        _entry("daq970a", "hil.drivers.daq970a:Daq970a", ("DAQ970A", "34970A", "34972A"),
               "Keysight DAQ970A / 34970A / 34972A scanning DMM, DC volts"),
        _entry("keithley2450", "hil.drivers.keithley2450:Keithley2450", ("2450",),
               "Keithley 2450 SourceMeter, SCPI command set, one channel"),
        _entry("keithley2600", "hil.drivers.keithley2600:Keithley2600",
               ("2601B", "2602B", "2604B", "2611B", "2612B", "2614B", "2634B", "2635B", "2636B"),
               "Keithley 2600B System SourceMeter (TSP), channels smua/smub"),
        _entry("keithley707b", "hil.drivers.keithley707b:Keithley707B", ("707B", "708B"),
               "Keithley 707B/708B switching matrix (TSP), one card slot, crosspoints like 1A01"),
        _entry("keysight_b2900", "hil.drivers.keysight_b2900:KeysightB2900",
               ("B2901A", "B2902A", "B2911A", "B2912A", "B2901B", "B2902B", "B2911B", "B2912B",
                "B2901BL", "B2910BL"),
               "Keysight B2900 SMU (B2901/B2902/B2911/B2912), SCPI, channels 1/2"),
    ]
)
# ---------------------------------------------------------------------------------------------


def driver_names() -> list[str]:
    """Registered driver names, sorted."""
    return sorted(DRIVERS)


def driver_info(name: str) -> DriverInfo:
    """Registry entry for ``name``; ``InstrumentConfigError`` if unknown."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise InstrumentConfigError(f"unknown driver {name!r}; known: {', '.join(driver_names())}") from None


def load_driver(name: str) -> type:
    """Import and return the driver class registered as ``name``.

    Raises:
        InstrumentConfigError: unknown name, or the module/class cannot be imported.
    """
    info = driver_info(name)
    module_name, _, class_name = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise InstrumentConfigError(f"driver {name!r} ({info.target}) cannot be loaded: {exc}") from exc
