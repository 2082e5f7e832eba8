"""Registry of node elements (one module per element kind).

``ELEMENTS`` maps a config ``model`` name to its :class:`~hil.circuit.laws.base.NodeElement`
subclass.  Adding an element = one new module here that defines a subclass decorated with
:func:`register`, plus its import below.
"""

from __future__ import annotations

from hil.circuit.laws.base import CLAMP_HI, CLAMP_LO, NodeElement, PiecewiseLaw

ELEMENTS: dict[str, type[NodeElement]] = {}


def register(cls: type[NodeElement]) -> type[NodeElement]:
    """Class decorator: make an element available under ``cls.name``."""
    if not cls.name or cls.name in ELEMENTS:
        raise ValueError(f"element name {cls.name!r} empty or already registered")
    ELEMENTS[cls.name] = cls
    return cls


def element_for_bank(bank) -> NodeElement:
    """The element object of a :class:`~hil.circuit.elements.DiodeBank` (built-in kinds map to their class)."""
    if getattr(bank, "element", None) is not None:
        return bank.element
    cache = bank.__dict__.setdefault("_element_cache", {})
    if "el" not in cache:
        if bank.kind == "ideal":
            cache["el"] = ELEMENTS["ideal"](bank.orientation, bank.v_ref)
        elif bank.kind == "shockley":
            cache["el"] = ELEMENTS["shockley"](bank)
        else:
            cache["el"] = ELEMENTS["none"](bank.count)
    return cache["el"]


def element_bank(config: dict, n: int, path: str = "element"):
    """The diode bank (with its element) that ``hidden.element`` mapping ``config`` describes, for n nodes.

    Raises :class:`hil.config.ConfigError` listing every problem with its dotted path.
    """
    from hil.circuit.build import _diodes
    from hil.config import ConfigError, Section

    problems: list[str] = []
    bank = _diodes(Section(dict(config), path, problems), n)
    if problems:
        raise ConfigError(problems)
    return bank


def with_element(circuit, config: dict):
    """A copy of ``circuit`` whose hidden nodes carry the element ``config`` describes."""
    from dataclasses import replace

    return replace(circuit, diodes=element_bank(config, circuit.n_hidden), _cache={})


from hil.circuit.laws import antiparallel_shockley, clip, ideal_diode, leaky, linear, shockley  # noqa: E402,F401

__all__ = ["ELEMENTS", "register", "element_for_bank", "element_bank", "with_element", "NodeElement", "PiecewiseLaw", "CLAMP_LO", "CLAMP_HI"]
