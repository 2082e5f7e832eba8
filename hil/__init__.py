"""hil: train resistor-diode (ReLU MON) analog networks inside their own hardware.

The installed package is one namespace: ``hil`` (core), ``hil.drivers`` (VISA instrument
drivers), ``hil.boards`` (board backends) and ``hil.configs`` (shipped configs). In the source
checkout those three live in the top-level folders ``drivers/``, ``boards/`` and ``configs/``;
they are mapped into ``hil`` here so that the checkout and the installed package import alike.
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"


def _map_checkout_folders() -> None:
    """In a source checkout, make ``drivers/``, ``boards/``, ``configs/`` importable as ``hil.*``."""
    root = _Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        return  # installed: the subpackages sit inside hil/ already
    if all((root / name / "__init__.py").is_file() for name in ("drivers", "boards", "configs")):
        if str(root) not in __path__:
            __path__.append(str(root))


_map_checkout_folders()
