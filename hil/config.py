"""Configuration reading: YAML (safe_load only) → validated values, errors with dotted paths.

All problems found in a file are reported together, each with its dotted path
(``circuit.hidden.element.i_s: must be > 0``); unknown keys are errors and get a
"did you mean" suggestion, so a typo never becomes a traceback or a silent default.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

REQUIRED = object()


class ConfigError(ValueError):
    """One or more configuration problems, each ``path: message``."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        head = f"invalid configuration{f' in {source}' if source else ''}:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))


class Section:
    """A mapping being read; records problems instead of raising at the first one."""

    def __init__(self, data: Any, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(f"{path or '<top>'}: expected a mapping, got {type(data).__name__}")
            data = {}
        self.data = data
        self.used: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.problems.append(f"{self._p(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def get(self, key: str, kind: type | tuple = object, default: Any = REQUIRED, *,
            choices: tuple | None = None, check: Callable[[Any], str | None] | None = None) -> Any:
        """Read ``key`` as ``kind`` (int accepted for float); ``check`` returns a message or None."""
        self.used.add(key)
        if key not in self.data or self.data[key] is None and default is not REQUIRED:
            if default is REQUIRED:
                self.error(key, "required")
                return None
            return default
        val = self.data[key]
        if kind is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if kind is float and isinstance(val, str):
            try:
                val = float(val)
            except ValueError:
                pass
        if kind is not object and not isinstance(val, kind) or (kind in (int, float) and isinstance(val, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.error(key, f"expected {names}, got {val!r}")
            return default if default is not REQUIRED else None
        if choices is not None and val not in choices:
            self.error(key, f"must be one of {', '.join(map(str, choices))}; got {val!r}")
            return default if default is not REQUIRED else None
        if check is not None:
            msg = check(val)
            if msg:
                self.error(key, msg)
        return val

    def section(self, key: str, required: bool = False) -> "Section":
        self.used.add(key)
        if required and key not in self.data:
            self.error(key, "required")
        return Section(self.data.get(key), self._p(key), self.problems)

    def finish(self) -> None:
        """Report keys that were never read (unknown keys), with a suggestion."""
        for key in self.data:
            if key not in self.used:
                close = difflib.get_close_matches(str(key), [k for k in self.used], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(str(key), f"unknown key{hint}")


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def load_yaml(path: str | Path) -> dict:
    """Read a YAML file with ``yaml.safe_load``; problems become :class:`ConfigError`."""
    p = Path(path)
    if not p.exists():
        embedded = embedded_config_path(str(path))
        if embedded is None:
            raise ConfigError([f"file not found: {path} (embedded configs: {', '.join(embedded_config_names())})"])
        p = embedded
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must contain a mapping at the top level"], str(p))
    return data


def _config_root():
    """The shipped ``configs/`` folder: package data when installed, the checkout's folder otherwise."""
    try:
        return resources.files("hil.configs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "configs"


def embedded_config_names() -> list[str]:
    """Names of the configs shipped inside the package (``configs/*.yaml``)."""
    return sorted(f.name[:-5] for f in _config_root().iterdir() if f.name.endswith(".yaml"))


def embedded_config_path(name: str) -> Path | None:
    """Path of a shipped config by name (``sim-digits`` or ``sim-digits.yaml``), or None."""
    stem = Path(name).name
    stem = stem[:-5] if stem.endswith(".yaml") else stem
    cand = _config_root() / f"{stem}.yaml"
    return Path(str(cand)) if cand.is_file() else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` overrides (value parsed as YAML) to a nested mapping."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected key.path=value")
            continue
        key, val = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                problems.append(f"override {key}: {part} is not a mapping")
                break
            node = nxt
        else:
            try:
                node[parts[-1]] = yaml.safe_load(val)
            except yaml.YAMLError:
                problems.append(f"override {item!r}: the value is not valid YAML")
    if problems:
        raise ConfigError(problems)
    return data
