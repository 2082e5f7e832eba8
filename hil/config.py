"""Configuration reading: YAML (safe_load only) → validated values, errors with dotted paths.

All problems found in a file are reported together, each with its dotted path
(``circuit.hidden.element.i_s: must be > 0``); unknown keys are errors and get a
"did you mean" suggestion, so a typo never becomes a traceback or a silent default.
"""

from __future__ import annotations

import difflib
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

REQUIRED = object()

#: Largest voltage magnitude any config may ask for (V): far beyond any bench, small enough
#: that squares and products of voltages and conductances stay finite.
MAX_ABS_VOLTAGE_V = 1.0e4
#: Largest conductance a config may set (S).
MAX_CONDUCTANCE_S = 1.0e3
#: Longest name (run, circuit, node) accepted.
MAX_NAME_LENGTH = 128


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that names the same key twice (YAML would silently keep the last value)."""


class NumberLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-8``, ``1E5``, ``.5e3`` as numbers, and refuses a key
    written twice in one mapping.

    YAML 1.1 (PyYAML's default) only recognises floats with a dot and a signed exponent
    (``1.0e-8``), so ``1e-8`` would silently become the string ``"1e-8"``.  This loader uses
    the YAML 1.2 core-schema float pattern instead.
    """

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen is not None:
                raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first on line {seen + 1})",
                                        key_node.start_mark)
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


NumberLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first, _resolvers in NumberLoader.yaml_implicit_resolvers.items():
    _resolvers[:] = [(tag, rx) for tag, rx in _resolvers if tag != "tag:yaml.org,2002:float"]
NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


class NumberSafeDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings :class:`NumberLoader` would read back as numbers
    (``"1E01"``, a crosspoint name, must not come back as 10.0)."""


def _represent_str(dumper: yaml.SafeDumper, value: str):
    node = dumper.represent_scalar("tag:yaml.org,2002:str", value)
    if value and value.strip() == value and "\n" not in value:
        try:
            reads_as_float = isinstance(parse_yaml(value), float)
        except yaml.YAMLError:
            reads_as_float = False
        if reads_as_float:
            node.style = "'"
    return node


NumberSafeDumper.add_representer(str, _represent_str)


def dump_yaml(data) -> str:
    """YAML text that :func:`parse_yaml` reads back unchanged (see :class:`NumberSafeDumper`)."""
    return yaml.dump(data, Dumper=NumberSafeDumper, sort_keys=False)


def parse_yaml(text: str):
    """Parse YAML text safely, numbers like ``1e-8`` included (see :class:`NumberLoader`)."""
    return yaml.load(text, Loader=NumberLoader)  # noqa: S506 - NumberLoader is a SafeLoader


def show_path(path) -> str:
    """A path for a one-line message: as is when printable, else its repr (NUL, newlines)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def plain_name(v: str) -> str | None:
    """Check for names used in paths and netlists: printable, no whitespace or '/', not too long."""
    if not v:
        return "must not be empty"
    if len(v) > MAX_NAME_LENGTH:
        return f"too long ({len(v)} characters, at most {MAX_NAME_LENGTH})"
    if any(c in v for c in "/\\") or v in (".", ".."):
        return "must be a plain name (no '/' or '\\')"
    if not v.isprintable() or any(c.isspace() for c in v):
        return "must be printable characters without spaces, newlines or NUL"
    return None


class ConfigError(ValueError):
    """One or more configuration problems, each ``path: message``."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}:"
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{head} {problems[0]}")
        else:
            super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))


def file_kind(data: Any) -> str | None:
    """What a YAML mapping is, by its top-level keys: ``"training config"``, ``"sweep file"``,
    ``"bench file"``, or None when it looks like none of them (so that a file given to the wrong
    command gets one line saying so instead of a list of unknown keys)."""
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if keys & {"board", "train", "data"}:
        return "training config"
    if "grid" in keys or ("config" in keys and keys & {"seeds", "set", "seed_keys", "metric"}):
        return "sweep file"
    if keys & {"instruments", "wiring"} or "bench" in keys:
        return "bench file"
    return None


_KIND_WORDS = {dict: "a mapping", list: "a list", str: "text", int: "an integer", float: "a number",
               bool: "true or false"}  # YAML words for the Python types a key is read as


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
        if isinstance(val, float) and not math.isfinite(val):
            self.error(key, f"must be a finite number, got {val!r}")
            return default if default is not REQUIRED else None
        if kind is not object and not isinstance(val, kind) or (kind in (int, float) and isinstance(val, bool)):
            names = " or ".join(_KIND_WORDS.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))
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


def in_range(lo: float, hi: float, unit: str = "") -> Callable[[Any], str | None]:
    """A check for ``lo <= v <= hi`` (inclusive), with the unit in the message."""
    u = f" {unit}" if unit else ""
    return lambda v: None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}{u}, got {v:g}"


#: Largest config file read (bytes); a config is a few kB.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_text_file(path: str | Path, what: str = "file") -> str:
    """Read a UTF-8 text file; every way it can fail becomes a one-line :class:`ConfigError`."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError([f"{path}: is a directory, expected a {what}"])
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: too large for a {what} ({p.stat().st_size} bytes)"])
        data = p.read_bytes()
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    if b"\0" in data:
        raise ConfigError([f"{path}: binary file (contains NUL bytes), expected a {what}"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}), expected a {what}"]) from None


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file (numbers like ``1e-8`` included); problems become :class:`ConfigError`."""
    p = Path(path)
    if "\0" in str(path) or "\n" in str(path):
        raise ConfigError([f"{str(path)!r}: not a valid file name"])
    if not p.exists():
        embedded = embedded_config_path(str(path))
        if embedded is None:
            raise ConfigError([f"file not found: {path} ({_shipped_config_hint(str(path))})"])
        p = embedded
    if p.is_dir() and (p / "config.resolved.yaml").is_file():
        raise ConfigError([f"{path}: is a run directory, expected a YAML config "
                           f"(its config is {p / 'config.resolved.yaml'})"])
    text = read_text_file(p, "YAML config")
    try:
        data = parse_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError([f"line {exc.problem_mark.line + 1}: {exc.problem}"], str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {' '.join(str(exc).split())}"], str(p)) from None
    except RecursionError:
        raise ConfigError(["the YAML is nested too deeply"], str(p)) from None
    if data is None:
        raise ConfigError(["the file is empty (or only comments): expected a YAML mapping of keys"], str(p))
    if not isinstance(data, dict):
        raise ConfigError(["the file must contain a mapping at the top level"], str(p))
    return data


def _shipped_config_hint(name: str) -> str:
    """Where to look when ``name`` is neither a file nor a shipped config: the closest shipped name."""
    stem = Path(name).name
    stem = stem[:-5] if stem.endswith(".yaml") else stem
    close = difflib.get_close_matches(stem, embedded_config_names(), n=1)
    if close:
        return f"did you mean {close[0]!r}? 'hil configs' lists the shipped configs"
    return "not a shipped config name either; 'hil configs' lists them"


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
    """Path of a shipped config by name (``sim-digits``, ``sim-digits.yaml``, or the checkout's
    spelling ``configs/sim-digits.yaml``), or None.  A path into any other folder names a file of
    the user's own and is never replaced by the shipped config that shares its file name."""
    if "\0" in name or len(name) > 255:
        return None
    if str(Path(name).parent) not in (".", "configs"):
        return None
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
        if not all(parts):
            problems.append(f"override {item!r}: empty key name (expected key.path=value)")
            continue
        for part in parts[:-1]:
            if isinstance(node, list):  # a list entry by index, e.g. board.stages.1.buffer_gain
                nxt = node[int(part)] if part.isdigit() and int(part) < len(node) else None
                if nxt is None:
                    problems.append(f"override {key}: no list entry {part}")
                    break
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
            if not isinstance(nxt, (dict, list)):
                problems.append(f"override {key}: {part} is not a mapping")
                break
            node = nxt
        else:
            last = parts[-1]
            if isinstance(node, list) and not (last.isdigit() and int(last) < len(node)):
                problems.append(f"override {key}: no list entry {last}")
                continue
            try:
                node[int(last) if isinstance(node, list) else last] = parse_yaml(val)
            except (yaml.YAMLError, RecursionError):
                problems.append(f"override {item!r}: the value is not valid YAML")
    if problems:
        raise ConfigError(problems)
    return data
