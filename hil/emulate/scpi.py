"""A real SCPI parser for emulated instruments, and the ``ScpiEmulator`` base class.

Headers are declared in SCPI notation, e.g. ``[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]``:
the upper-case part of a node is its short form, the whole node its long form, ``[...]`` marks an
optional node, ``#`` a numeric suffix (default 1; its values are passed to the handler) and ``[1]``
an optional suffix that may only be 1 (single-channel instruments). A received header matches when every token
is the short or the long form of a node (case-insensitive), optional nodes may be left out, and
a suffix appears only where ``#`` allows it. Program messages are split on ``;`` outside quotes;
each command is an absolute header (the "continue previous path" rule is not emulated).
Parameters are split on ``,`` outside quotes and parentheses; :class:`Command` offers typed
accessors (numbers with ``MIN``/``MAX``/``DEF``, booleans, enumerations, strings, channel lists)
that raise :class:`ScpiError` with the instrument's error code. Replies to several queries in one
message are joined with ``;``.

Declare handlers with the :func:`scpi` decorator on methods of a ``ScpiEmulator`` subclass::

    @scpi("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def _set_level(self, cmd): ...
    @scpi("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _get_level(self, cmd) -> str: ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from hil.emulate.base import Emulator

__all__ = ["ScpiError", "Command", "HeaderPattern", "ScpiEmulator", "scpi", "split_messages",
           "split_parameters", "expand_channel_list", "format_nr3"]


class ScpiError(Exception):
    """A command failed; ``code`` goes to the error queue (``message`` optional detail)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{code} {detail}")
        self.code = int(code)
        self.detail = detail


_NODE_RE = re.compile(r"(\[)?:?([A-Za-z*][A-Za-z]*)(#|\[1\])?(\])?")
_TOKEN_RE = re.compile(r"^([A-Za-z]+)(\d*)$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class _Node:
    optional: bool
    short: str
    long: str
    suffix: bool
    only_one: bool = False


class HeaderPattern:
    """A compiled SCPI header pattern (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text
        nodes = []
        pos = 0
        body = text.strip()
        while pos < len(body):
            m = _NODE_RE.match(body, pos)
            if not m or m.end() == pos:
                raise ValueError(f"bad SCPI pattern {text!r} at {pos}")
            word = m.group(2)
            short = re.match(r"[A-Z*]*", word).group(0) or word.upper()
            one = m.group(3) == "[1]"
            nodes.append(_Node(bool(m.group(1)), short.upper(), word.upper(), m.group(3) == "#", one))
            pos = m.end()
        self.nodes = tuple(nodes)

    def match(self, tokens: Sequence[tuple[str, str]]) -> Optional[list[int]]:
        """Suffix values (one per ``#`` node, default 1) if ``tokens`` match, else ``None``."""
        return self._match(0, 0, tokens, [])

    def _match(self, i: int, j: int, tokens, suffixes: list[int]) -> Optional[list[int]]:
        if i == len(self.nodes):
            return suffixes if j == len(tokens) else None
        node = self.nodes[i]
        if j < len(tokens):
            word, digits = tokens[j]
            w = word.upper()
            if w == node.short or w == node.long:
                if digits and not node.suffix and not (node.only_one and int(digits) == 1):
                    pass
                else:
                    got = self._match(i + 1, j + 1, tokens,
                                      suffixes + ([int(digits) if digits else 1] if node.suffix else []))
                    if got is not None:
                        return got
        if node.optional:
            return self._match(i + 1, j, tokens, suffixes + ([1] if node.suffix else []))
        return None


def split_messages(line: str) -> list[str]:
    """Split a program message on ``;`` outside quotes; empty parts dropped."""
    out, cur, quote = [], [], None
    for ch in line:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def split_parameters(text: str) -> list[str]:
    """Split a parameter string on ``,`` outside quotes and parentheses."""
    text = text.strip()
    if not text:
        return []
    out, cur, quote, depth = [], [], None, 0
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def expand_channel_list(text: str) -> list[int]:
    """``(@101:103,110)`` → ``[101, 102, 103, 110]``; ``(@1,2)`` → ``[1, 2]``; ``ScpiError(-104)``
    if malformed. A range counts up or down within a slot."""
    t = text.strip()
    if not (t.startswith("(@") and t.endswith(")")):
        raise ScpiError(-104, f"channel list expected, got {text!r}")
    body = t[2:-1].strip()
    if not body:
        raise ScpiError(-104, "empty channel list")
    out: list[int] = []
    for part in body.split(","):
        part = part.strip()
        if ":" in part:
            a, _, b = part.partition(":")
            if not (a.strip().isdigit() and b.strip().isdigit()):
                raise ScpiError(-104, f"bad channel range {part!r}")
            lo, hi = int(a), int(b)
            step = 1 if hi >= lo else -1
            out.extend(range(lo, hi + step, step))
        else:
            if not part.isdigit():
                raise ScpiError(-104, f"bad channel {part!r}")
            out.append(int(part))
    return out


def format_nr3(value: float, digits: int = 6, plus: bool = True) -> str:
    """``+1.234560E-03`` (``plus=False``: no leading ``+``)."""
    text = f"{float(value):+.{digits}E}" if plus else f"{float(value):.{digits}E}"
    return text


def _char_matches(word: str, spelled: str) -> bool:
    """True if ``word`` is the short or long form of ``spelled`` (SCPI mnemonic notation)."""
    short = re.match(r"[A-Z]*", spelled).group(0) or spelled.upper()
    return word.upper() in (short.upper(), spelled.upper())


class Command:
    """One parsed command: ``header``, ``query``, ``suffixes`` and ``params`` (raw strings)."""

    def __init__(self, header: str, query: bool, suffixes: list[int], params: list[str], text: str) -> None:
        self.header = header
        self.query = query
        self.suffixes = suffixes
        self.params = params
        self.text = text

    @property
    def suffix(self) -> int:
        """The first numeric suffix (channel), 1 when omitted."""
        return self.suffixes[0] if self.suffixes else 1

    def count(self, minimum: int, maximum: Optional[int] = None) -> None:
        """−109 if fewer than ``minimum`` parameters, −108 if more than ``maximum``."""
        maximum = minimum if maximum is None else maximum
        if len(self.params) < minimum:
            raise ScpiError(-109)
        if len(self.params) > maximum:
            raise ScpiError(-108)

    def has(self, index: int) -> bool:
        return index < len(self.params) and self.params[index] != ""

    def raw(self, index: int) -> str:
        if not self.has(index):
            raise ScpiError(-109)
        return self.params[index]

    def number(self, index: int, *, lo: float = -math.inf, hi: float = math.inf,
               default: Optional[float] = None, minimum: Optional[float] = None,
               maximum: Optional[float] = None) -> float:
        """Numeric parameter: NR1/NR2/NR3 or ``MIN``/``MAX``/``DEF``; −104 if not a number,
        −222 outside ``[lo, hi]``."""
        text = self.raw(index).strip()
        word = text.upper()
        if _char_matches(word, "MINimum"):
            return lo if minimum is None else minimum
        if _char_matches(word, "MAXimum"):
            return hi if maximum is None else maximum
        if _char_matches(word, "DEFault"):
            if default is None:
                raise ScpiError(-224, "no default")
            return default
        if not _NUMBER_RE.match(text):
            raise ScpiError(-104, f"not a number: {text!r}")
        value = float(text)
        if not (lo - 1e-12 * max(1.0, abs(lo)) <= value <= hi + 1e-12 * max(1.0, abs(hi))):
            raise ScpiError(-222, f"{value} outside {lo}..{hi}")
        return value

    def integer(self, index: int, *, lo: int = -(1 << 31), hi: int = (1 << 31) - 1,
                default: Optional[int] = None) -> int:
        value = self.number(index, lo=lo, hi=hi, default=default, minimum=lo, maximum=hi)
        if value != int(value):
            raise ScpiError(-104, f"integer expected: {value}")
        return int(value)

    def boolean(self, index: int) -> bool:
        """``ON``/``OFF``/``1``/``0`` (−224 otherwise)."""
        word = self.raw(index).strip().upper()
        if word in ("ON", "1", "+1"):
            return True
        if word in ("OFF", "0", "+0"):
            return False
        if _NUMBER_RE.match(word):
            return round(float(word)) != 0
        raise ScpiError(-224, f"boolean expected: {word!r}")

    def choice(self, index: int, options: Sequence[str]) -> str:
        """Enumeration in SCPI mnemonic notation (e.g. ``("VOLTage", "CURRent")``); returns the
        matching option as spelled in ``options``; quotes around the value are accepted."""
        word = self.raw(index).strip().strip("\"'")
        for opt in options:
            if _char_matches(word, opt):
                return opt
        raise ScpiError(-224, f"{word!r} not one of {', '.join(options)}")

    def string(self, index: int) -> str:
        """Quoted (or bare) string parameter without quotes."""
        text = self.raw(index).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1]
        return text

    def channels(self, index: int) -> list[int]:
        """Channel-list parameter, expanded."""
        return expand_channel_list(self.raw(index))

    def is_channel_list(self, index: int) -> bool:
        return self.has(index) and self.params[index].strip().startswith("(@")


Handler = Callable[[Any, Command], Optional[str]]


def scpi(pattern: str, *, query: bool = False) -> Callable[[Handler], Handler]:
    """Mark a ``ScpiEmulator`` method as the set (or query, ``query=True``) handler of ``pattern``."""

    def mark(fn: Handler) -> Handler:
        marks = list(getattr(fn, "_scpi_marks", ()))
        marks.append((pattern, query))
        fn._scpi_marks = marks  # type: ignore[attr-defined]
        return fn

    return mark


class ScpiEmulator(Emulator):
    """SCPI personality base: parser, common commands, error queue, ``;`` replies.

    Subclasses declare handlers with :func:`scpi`, implement ``idn()`` and ``reset()``, and may
    set ``NUMBER_FORMAT`` (a callable float → str).
    """

    _table: list[tuple[HeaderPattern, bool, str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: list[tuple[HeaderPattern, bool, str]] = []
        seen: set[tuple[str, bool]] = set()
        for klass in cls.__mro__:
            for attr, fn in vars(klass).items():
                for pattern, query in getattr(fn, "_scpi_marks", ()):
                    if (pattern, query) not in seen:
                        seen.add((pattern, query))
                        table.append((HeaderPattern(pattern), query, attr))
        cls._table = table

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.operation_complete = True
        self.event_status = 0

    # -- dispatch --------------------------------------------------------------------------------

    def handle(self, line: str) -> list[str]:
        replies: list[str] = []
        for message in split_messages(line):
            try:
                reply = self.execute(message)
            except ScpiError as exc:
                self.push_error(exc.code, self._error_text(exc))
                continue
            if reply is not None:
                replies.append(reply)
        if not replies:
            return []
        if all(isinstance(r, str) for r in replies):
            return [";".join(replies)]
        return replies

    def _error_text(self, exc: ScpiError) -> str:
        from hil.emulate.base import SCPI_ERROR_MESSAGES

        return SCPI_ERROR_MESSAGES.get(exc.code, "Error")

    def parse(self, message: str) -> tuple[str, bool, list[tuple[str, str]], list[str]]:
        """Split one command into header text, query flag, header tokens and parameters."""
        m = re.match(r"^\s*([^\s]+)\s*(.*)$", message, re.S)
        if not m:
            raise ScpiError(-102)
        header, rest = m.group(1), m.group(2)
        query = header.endswith("?")
        body = header[:-1] if query else header
        tokens: list[tuple[str, str]] = []
        for part in body.lstrip(":").split(":"):
            tm = _TOKEN_RE.match(part)
            if not tm:
                raise ScpiError(-102 if not part.startswith("*") else -113)
            tokens.append((tm.group(1), tm.group(2)))
        return header, query, tokens, split_parameters(rest)

    def execute(self, message: str) -> Optional[str]:
        """Execute one command; returns its reply for a query."""
        if message.startswith("*") or message.startswith(":*"):
            return self.common(message.lstrip(":"))
        header, query, tokens, params = self.parse(message)
        for pattern, is_query, attr in self._table:
            if is_query != query:
                continue
            suffixes = pattern.match(tokens)
            if suffixes is not None:
                cmd = Command(header, query, suffixes, params, message)
                return getattr(self, attr)(cmd)
        raise ScpiError(-113)

    # -- common commands ---------------------------------------------------------------------------

    def common(self, message: str) -> Optional[str]:
        m = re.match(r"^\*([A-Za-z]+)(\?)?\s*(.*)$", message)
        if not m:
            raise ScpiError(-102)
        word, query, rest = m.group(1).upper(), bool(m.group(2)), m.group(3)
        params = split_parameters(rest)
        cmd = Command("*" + word + ("?" if query else ""), query, [], params, message)
        custom = self.common_extra(word, cmd)
        if custom is not False:
            return custom  # type: ignore[return-value]
        if word == "IDN" and query:
            cmd.count(0)
            return self.idn()
        if word == "RST" and not query:
            cmd.count(0)
            self.reset()
            return None
        if word == "CLS" and not query:
            cmd.count(0)
            self.errors.clear()
            self.event_status = 0
            return None
        if word == "OPC":
            cmd.count(0)
            self.wait_complete()
            return "1" if query else None
        if word == "WAI" and not query:
            cmd.count(0)
            self.wait_complete()
            return None
        if word == "ESR" and query:
            value, self.event_status = self.event_status, 0
            return str(value)
        if word == "STB" and query:
            return str(4 if len(self.errors) else 0)
        if word in ("ESE", "SRE") and not query:
            return None
        raise ScpiError(-113)

    def common_extra(self, word: str, cmd: Command) -> Any:
        """Model-specific common commands (e.g. ``*LANG?``); return ``False`` when not handled."""
        return False

    def wait_complete(self) -> None:
        """Finish pending operations (``*OPC?``, ``*WAI``); personalities with triggered sweeps
        run them here if they were not run at ``:INIT``."""

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def format_number(value: float) -> str:
        return format_nr3(value)
