"""Shared helpers of the non-ideality families: the family base class and its config reader."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from hil.config import Section


@dataclass(frozen=True)
class Family:
    """A switchable group of parameters (subclasses add their fields, SI units)."""

    enabled: bool = False

    #: config key of the family (``board.devices.<key>``)
    key = ""

    def check(self) -> list[tuple[str, str]]:
        """(field, message) for each invalid value; empty when valid."""
        return []

    @classmethod
    def from_config(cls, sec: Section, base: dict[str, Any]) -> "Family":
        """Read the family from a config section over ``base`` values (a preset); problems go to ``sec``."""
        vals = dict(base)
        for f in fields(cls):
            default = vals.get(f.name, f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc]
            kind = _kind(default)
            got = sec.get(f.name, kind, default)
            vals[f.name] = tuple(got) if isinstance(got, list) else got
        if sec.data and "enabled" not in sec.data:
            vals["enabled"] = True  # giving parameters switches the family on
        sec.finish()
        fam = cls(**{f.name: vals[f.name] for f in fields(cls)})
        for name, msg in fam.check():
            sec.error(name, msg)
        return fam


def _kind(default: Any):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float if isinstance(default, float) else int
    if isinstance(default, str):
        return str
    if isinstance(default, (tuple, list)):
        return list
    return object


def non_neg(**vals: float) -> list[tuple[str, str]]:
    return [(k, "must be >= 0") for k, v in vals.items() if not v >= 0]
