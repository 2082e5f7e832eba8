"""A small interpreter for the Lua subset that Keithley TSP instruments accept (2600B, 707B).

TSP instruments run every received line as a Lua chunk; only ``print``/``printbuffer`` produce
output. This module tokenises and parses that Lua subset into a syntax tree and evaluates it
against *host objects* (``HostTable``) supplied by an instrument personality, so an emulator
answers from the statement's meaning, not from its spelling: ``smua.source.levelv=0.1``,
``smua.source.levelv = 1e-1`` and ``smua["source"].levelv = 0.1`` do the same thing.

Supported: statements separated by newlines or ``;``; assignments (also multiple targets and
``local``); calls with ``.`` or ``:``; ``if/elseif/else``, ``while``, numeric and ``ipairs``/
``pairs`` ``for`` loops, ``repeat ... until``, ``do ... end``, ``break``, ``return``, ``function``
definitions (global, local, dotted names); expressions with ``nil``, booleans, numbers (decimal,
exponent, hexadecimal), strings (single/double quotes with escapes, long brackets), table
constructors, arithmetic, comparison, ``..``, ``and``/``or``/``not``, ``#``; comments.

Errors are raised as ``TspError`` with the instrument's code: ``-285`` for a syntax error (the
chunk is not run at all) and ``-286`` for a runtime error (statements before it took effect, as on
the instrument). Host objects raise ``TspError`` with their own codes (e.g. ``-222`` for a value
out of range).

``ScriptCollector`` handles ``loadscript name``/``loadandrunscript [name]`` … ``endscript``
blocks, which arrive one line at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

__all__ = [
    "SYNTAX_ERROR",
    "RUNTIME_ERROR",
    "TspError",
    "LuaTable",
    "LuaFunction",
    "HostFunction",
    "HostTable",
    "TspInterpreter",
    "ScriptCollector",
    "format_number",
    "tostring",
    "to_number",
    "to_int",
    "to_bool",
    "table_numbers",
]

SYNTAX_ERROR = -285  #: "TSP Syntax error at line N: ..." (chunk rejected before running)
RUNTIME_ERROR = -286  #: "TSP Runtime error at line N: ..." (chunk stopped at the failing statement)

#: Deepest call/loop nesting and most loop iterations per chunk: runaway scripts become errors.
MAX_CALL_DEPTH = 100
MAX_LOOP_ITERATIONS = 10_000_000


class TspError(Exception):
    """An error the instrument would put in its error queue: ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = int(code)
        self.message = message


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


class LuaTable:
    """A Lua table: ``hash`` maps keys (floats for numeric keys, strings, objects) to values."""

    __slots__ = ("hash",)

    def __init__(self, items: Optional[Mapping[Any, Any]] = None) -> None:
        self.hash: dict[Any, Any] = {}
        for k, v in (items or {}).items():
            self.set(k, v)

    @staticmethod
    def _key(key: Any) -> Any:
        if isinstance(key, bool) or key is None:
            return key
        if isinstance(key, (int, float)):
            return float(key)
        return key

    def get(self, key: Any) -> Any:
        return self.hash.get(self._key(key))

    def set(self, key: Any, value: Any) -> None:
        k = self._key(key)
        if k is None:
            raise TspError(RUNTIME_ERROR, "table index is nil")
        if value is None:
            self.hash.pop(k, None)
        else:
            self.hash[k] = value

    def length(self) -> int:
        """The border ``#t``: largest n with t[1..n] all non-nil."""
        n = 0
        while (float(n + 1)) in self.hash:
            n += 1
        return n

    def sequence(self) -> list[Any]:
        """Values ``t[1] … t[#t]``."""
        return [self.hash[float(i)] for i in range(1, self.length() + 1)]

    @classmethod
    def from_sequence(cls, values: Iterable[Any]) -> "LuaTable":
        t = cls()
        for i, v in enumerate(values, start=1):
            t.set(i, v)
        return t


@dataclass
class LuaFunction:
    """A function defined in TSP code (closure over its defining scope)."""

    name: str
    params: list[str]
    vararg: bool
    body: list[Any]
    scope: "Scope"


class HostFunction:
    """A Python callable exposed to TSP code; called with the evaluated arguments.

    Returns ``None`` (no values), a single value, or a ``tuple`` of values.
    """

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    def __repr__(self) -> str:
        return f"HostFunction({self.name})"


class HostTable:
    """An instrument object exposed to TSP code (e.g. ``smua``, ``smua.source``, ``format``).

    Args:
        path: the object's name in TSP, used in error messages (``"smua.source"``).
        members: fixed members: constants (numbers, strings), sub-tables, ``HostFunction``s or
            plain Python callables (wrapped as functions).
        attributes: read/write attributes ``name -> (getter, setter)``; ``setter`` ``None`` makes
            the attribute read-only. Getters are called at every read, so values are live.

    Unknown names read as ``nil`` (as in Lua); assigning to an unknown or read-only name is a
    runtime error, since instrument tables do not accept new fields.
    """

    def __init__(
        self,
        path: str,
        members: Optional[Mapping[str, Any]] = None,
        attributes: Optional[Mapping[str, tuple[Callable[[], Any], Optional[Callable[[Any], None]]]]] = None,
    ) -> None:
        self.path = path
        self.members: dict[str, Any] = {}
        for name, value in (members or {}).items():
            self.add(name, value)
        self.attributes: dict[str, tuple[Callable[[], Any], Optional[Callable[[Any], None]]]] = dict(attributes or {})

    def add(self, name: str, value: Any) -> None:
        """Add a member (a callable that is not a host object becomes a ``HostFunction``)."""
        if callable(value) and not isinstance(value, (HostTable, HostFunction, LuaFunction)):
            value = HostFunction(f"{self.path}.{name}", value)
        self.members[name] = value

    def attribute(self, name: str, getter: Callable[[], Any], setter: Optional[Callable[[Any], None]] = None) -> None:
        """Add a live attribute."""
        self.attributes[name] = (getter, setter)

    def tsp_get(self, key: Any) -> Any:
        """Value of ``self[key]`` (``nil`` → ``None`` when unknown)."""
        if isinstance(key, str):
            if key in self.attributes:
                return self.attributes[key][0]()
            return self.members.get(key)
        return self.index(key)

    def index(self, key: Any) -> Any:
        """Non-string keys (``node[1]``, ``buf.readings[3]``); override in subclasses."""
        return None

    def tsp_set(self, key: Any, value: Any) -> None:
        """``self[key] = value``."""
        if isinstance(key, str) and key in self.attributes:
            setter = self.attributes[key][1]
            if setter is None:
                raise TspError(RUNTIME_ERROR, f"attempt to write read-only attribute `{self.path}.{key}'")
            setter(value)
            return
        raise TspError(RUNTIME_ERROR, f"attempt to set unknown field `{key}' of `{self.path}'")

    def __repr__(self) -> str:
        return f"HostTable({self.path})"


# ---------------------------------------------------------------------------------------------
# Conversions used by host objects
# ---------------------------------------------------------------------------------------------


def format_number(value: float, digits: int = 6) -> str:
    """TSP ``print`` form of a number: exponent notation with ``digits`` significant digits
    (``0.1`` → ``1.00000e-01``); ``nan``/``inf`` as Lua prints them."""
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{max(1, digits) - 1}e}"


def tostring(value: Any) -> str:
    """Lua ``tostring`` as a TSP instrument prints it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, LuaTable):
        return f"table: 0x{id(value) & 0xFFFFFFFF:08x}"
    if isinstance(value, (LuaFunction, HostFunction)):
        return f"function: 0x{id(value) & 0xFFFFFFFF:08x}"
    if isinstance(value, HostTable):
        return f"table: 0x{id(value) & 0xFFFFFFFF:08x}"
    return str(value)


_NUMBER_TEXT = re.compile(r"^\s*[+-]?(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)\s*$")


def _str_to_number(text: str) -> Optional[float]:
    if not _NUMBER_TEXT.match(text):
        return None
    t = text.strip()
    sign = -1.0 if t.startswith("-") else 1.0
    body = t.lstrip("+-")
    if body[:2].lower() == "0x":
        return sign * float(int(body, 16))
    return float(t)


def to_number(value: Any, what: str = "value") -> float:
    """Lua number coercion (numbers and numeric strings); else a runtime error."""
    if isinstance(value, bool) or value is None:
        raise TspError(RUNTIME_ERROR, f"bad argument ({what}): number expected, got {_type_name(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        number = _str_to_number(value)
        if number is not None:
            return number
    raise TspError(RUNTIME_ERROR, f"bad argument ({what}): number expected, got {_type_name(value)}")


def to_int(value: Any, what: str = "value") -> int:
    """An integral number (``1``, ``1.0``); else a runtime error."""
    v = to_number(value, what)
    if not math.isfinite(v) or v != int(v):
        raise TspError(RUNTIME_ERROR, f"bad argument ({what}): integer expected, got {tostring(v)}")
    return int(v)


def to_bool(value: Any) -> bool:
    """Lua truth: only ``nil`` and ``false`` are false."""
    return not (value is None or value is False)


def table_numbers(value: Any, what: str = "list") -> list[float]:
    """The numbers ``t[1] … t[#t]`` of a Lua table argument."""
    if not isinstance(value, LuaTable):
        raise TspError(RUNTIME_ERROR, f"bad argument ({what}): table expected, got {_type_name(value)}")
    return [to_number(v, what) for v in value.sequence()]


def _type_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (LuaFunction, HostFunction)):
        return "function"
    if isinstance(value, (LuaTable, HostTable)):
        return "table"
    return "userdata"


# ---------------------------------------------------------------------------------------------
# Lexer
# ---------------------------------------------------------------------------------------------

KEYWORDS = frozenset(
    "and break do else elseif end false for function if in local nil not or repeat return then true until while".split()
)
_SYMBOLS = ("...", "..", "==", "~=", "<=", ">=", "+", "-", "*", "/", "%", "^", "#", "<", ">", "=",
            "(", ")", "{", "}", "[", "]", ";", ":", ",", ".")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "\n": "\n"}
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LONG_BRACKET = re.compile(r"\[(=*)\[")


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "keyword", "number", "string", "symbol", "eof"
    value: Any
    line: int


def tokenize(source: str, first_line: int = 1) -> list[Token]:
    """Split ``source`` into tokens; ``TspError(-285)`` on anything that is not Lua."""
    tokens: list[Token] = []
    i, n, line = 0, len(source), first_line

    def fail(msg: str) -> TspError:
        return TspError(SYNTAX_ERROR, f"TSP Syntax error at line {line}: {msg}")

    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if source.startswith("--", i):
            m = _LONG_BRACKET.match(source, i + 2)
            if m:
                close = "]" + m.group(1) + "]"
                end = source.find(close, m.end())
                if end < 0:
                    raise fail("unfinished long comment")
                line += source.count("\n", i, end)
                i = end + len(close)
            else:
                end = source.find("\n", i)
                i = n if end < 0 else end
            continue
        if c.isdigit() or (c == "." and i + 1 < n and source[i + 1].isdigit()):
            m = _NUMBER.match(source, i)
            assert m is not None
            text = m.group(0)
            j = m.end()
            if j < n and (source[j].isalnum() or source[j] in "_."):
                raise fail(f"malformed number near `{source[i:j + 1]}'")
            value = float(int(text, 16)) if text[:2].lower() == "0x" else float(text)
            tokens.append(Token("number", value, line))
            i = j
            continue
        if c.isalpha() or c == "_":
            m = _NAME.match(source, i)
            assert m is not None
            word = m.group(0)
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, line))
            i = m.end()
            continue
        if c in "\"'":
            j = i + 1
            out: list[str] = []
            while True:
                if j >= n or source[j] == "\n":
                    raise fail(f"unfinished string near `{source[i:j]}'")
                ch = source[j]
                if ch == c:
                    break
                if ch == "\\":
                    j += 1
                    if j >= n:
                        raise fail("unfinished string")
                    e = source[j]
                    if e in _ESCAPES:
                        out.append(_ESCAPES[e])
                        j += 1
                    elif e.isdigit():
                        m = re.match(r"\d{1,3}", source[j:])
                        assert m is not None
                        code = int(m.group(0))
                        if code > 255:
                            raise fail("escape sequence too large")
                        out.append(chr(code))
                        j += len(m.group(0))
                    else:
                        raise fail(f"invalid escape sequence `\\{e}'")
                    continue
                out.append(ch)
                j += 1
            tokens.append(Token("string", "".join(out), line))
            i = j + 1
            continue
        if c == "[":
            m = _LONG_BRACKET.match(source, i)
            if m:
                close = "]" + m.group(1) + "]"
                end = source.find(close, m.end())
                if end < 0:
                    raise fail("unfinished long string")
                text = source[m.end():end]
                if text.startswith("\n"):
                    text = text[1:]
                tokens.append(Token("string", text, line))
                line += source.count("\n", i, end)
                i = end + len(close)
                continue
        for sym in _SYMBOLS:
            if source.startswith(sym, i):
                tokens.append(Token("symbol", sym, line))
                i += len(sym)
                break
        else:
            raise fail(f"unexpected symbol near `{c}'")
    tokens.append(Token("eof", "<eof>", line))
    return tokens


# ---------------------------------------------------------------------------------------------
# Parser → syntax tree (tuples: (tag, line, ...))
# ---------------------------------------------------------------------------------------------

_BINARY_PRIORITY = {
    "or": (1, 1), "and": (2, 2),
    "<": (3, 3), ">": (3, 3), "<=": (3, 3), ">=": (3, 3), "~=": (3, 3), "==": (3, 3),
    "..": (5, 4),  # right associative
    "+": (6, 6), "-": (6, 6),
    "*": (7, 7), "/": (7, 7), "%": (7, 7),
    "^": (10, 9),  # right associative
}
_UNARY_PRIORITY = 8


class Parser:
    """Recursive-descent parser for the supported Lua subset."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    # -- token helpers ---------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def check(self, kind: str, value: Any = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def check_symbol(self, *values: str) -> bool:
        return self.tok.kind == "symbol" and self.tok.value in values

    def accept(self, kind: str, value: Any = None) -> Optional[Token]:
        if self.check(kind, value):
            return self.next()
        return None

    def expect(self, kind: str, value: Any = None, what: Optional[str] = None) -> Token:
        if self.check(kind, value):
            return self.next()
        expected = what or (f"`{value}'" if value is not None else kind)
        raise self.error(f"{expected} expected")

    def error(self, msg: str) -> TspError:
        t = self.tok
        near = "<eof>" if t.kind == "eof" else (t.value if t.kind != "number" else tostring(t.value))
        return TspError(SYNTAX_ERROR, f"TSP Syntax error at line {t.line}: {msg} near `{near}'")

    # -- chunks and blocks -----------------------------------------------------------------

    def chunk(self) -> list[Any]:
        body = self.block()
        if not self.check("eof"):
            raise self.error("'<eof>' expected")
        return body

    def block(self) -> list[Any]:
        stmts: list[Any] = []
        while not self._block_end():
            if self.accept("symbol", ";"):
                continue
            if self.check("keyword", "return"):
                line = self.next().line
                values = [] if self._block_end() or self.check_symbol(";") else self.exprlist()
                self.accept("symbol", ";")
                stmts.append(("return", line, values))
                if not self._block_end():
                    raise self.error("'end' expected")
                break
            stmts.append(self.statement())
        return stmts

    def _block_end(self) -> bool:
        t = self.tok
        return t.kind == "eof" or (t.kind == "keyword" and t.value in ("end", "else", "elseif", "until"))

    def statement(self) -> Any:
        t = self.tok
        line = t.line
        if t.kind == "keyword":
            kw = t.value
            if kw == "if":
                return self.if_statement()
            if kw == "while":
                self.next()
                cond = self.expr()
                self.expect("keyword", "do")
                body = self.block()
                self.expect("keyword", "end")
                return ("while", line, cond, body)
            if kw == "do":
                self.next()
                body = self.block()
                self.expect("keyword", "end")
                return ("do", line, body)
            if kw == "for":
                return self.for_statement()
            if kw == "repeat":
                self.next()
                body = self.block()
                self.expect("keyword", "until")
                return ("repeat", line, body, self.expr())
            if kw == "function":
                self.next()
                name_expr, method = self.funcname()
                func = self.funcbody(method)
                return ("assign", line, [name_expr], [func])
            if kw == "local":
                self.next()
                if self.accept("keyword", "function"):
                    name = self.expect("name", what="<name>").value
                    return ("localfunction", line, name, self.funcbody(False))
                names = [self.expect("name", what="<name>").value]
                while self.accept("symbol", ","):
                    names.append(self.expect("name", what="<name>").value)
                values = self.exprlist() if self.accept("symbol", "=") else []
                return ("local", line, names, values)
            if kw == "break":
                self.next()
                return ("break", line)
        target = self.suffixedexp()
        if self.check_symbol("=", ","):
            targets = [target]
            while self.accept("symbol", ","):
                targets.append(self.suffixedexp())
            self.expect("symbol", "=")
            values = self.exprlist()
            for tg in targets:
                if tg[0] not in ("name", "index"):
                    raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line {line}: cannot assign to this expression")
            return ("assign", line, targets, values)
        if target[0] not in ("call", "method"):
            raise self.error("syntax error")
        return ("callstat", line, target)

    def if_statement(self) -> Any:
        line = self.next().line
        clauses = []
        cond = self.expr()
        self.expect("keyword", "then")
        clauses.append((cond, self.block()))
        orelse: list[Any] = []
        while True:
            if self.accept("keyword", "elseif"):
                cond = self.expr()
                self.expect("keyword", "then")
                clauses.append((cond, self.block()))
                continue
            if self.accept("keyword", "else"):
                orelse = self.block()
            self.expect("keyword", "end")
            break
        return ("if", line, clauses, orelse)

    def for_statement(self) -> Any:
        line = self.next().line
        first = self.expect("name", what="<name>").value
        if self.accept("symbol", "="):
            start = self.expr()
            self.expect("symbol", ",")
            stop = self.expr()
            step = self.expr() if self.accept("symbol", ",") else ("const", line, 1.0)
            self.expect("keyword", "do")
            body = self.block()
            self.expect("keyword", "end")
            return ("fornum", line, first, start, stop, step, body)
        names = [first]
        while self.accept("symbol", ","):
            names.append(self.expect("name", what="<name>").value)
        self.expect("keyword", "in")
        exprs = self.exprlist()
        self.expect("keyword", "do")
        body = self.block()
        self.expect("keyword", "end")
        return ("forin", line, names, exprs, body)

    def funcname(self) -> tuple[Any, bool]:
        t = self.expect("name", what="<name>")
        expr: Any = ("name", t.line, t.value)
        method = False
        while self.check_symbol(".", ":"):
            sep = self.next().value
            key = self.expect("name", what="<name>")
            expr = ("index", key.line, expr, ("const", key.line, key.value))
            if sep == ":":
                method = True
                break
        return expr, method

    def funcbody(self, method: bool) -> Any:
        line = self.tok.line
        self.expect("symbol", "(")
        params = ["self"] if method else []
        vararg = False
        if not self.check_symbol(")"):
            while True:
                if self.accept("symbol", "..."):
                    vararg = True
                    break
                params.append(self.expect("name", what="<name>").value)
                if not self.accept("symbol", ","):
                    break
        self.expect("symbol", ")")
        body = self.block()
        self.expect("keyword", "end")
        return ("function", line, params, vararg, body)

    # -- expressions -----------------------------------------------------------------------

    def exprlist(self) -> list[Any]:
        exprs = [self.expr()]
        while self.accept("symbol", ","):
            exprs.append(self.expr())
        return exprs

    def expr(self, limit: int = 0) -> Any:
        t = self.tok
        if (t.kind == "keyword" and t.value == "not") or (t.kind == "symbol" and t.value in ("-", "#")):
            self.next()
            operand = self.expr(_UNARY_PRIORITY)
            left: Any = ("unop", t.line, t.value, operand)
        else:
            left = self.simpleexp()
        while True:
            op_tok = self.tok
            op = op_tok.value if op_tok.kind in ("symbol", "keyword") else None
            if op not in _BINARY_PRIORITY or _BINARY_PRIORITY[op][0] <= limit:
                return left
            self.next()
            right = self.expr(_BINARY_PRIORITY[op][1])
            left = ("binop", op_tok.line, op, left, right)

    def simpleexp(self) -> Any:
        t = self.tok
        if t.kind == "number" or t.kind == "string":
            self.next()
            return ("const", t.line, t.value)
        if t.kind == "keyword":
            if t.value == "nil":
                self.next()
                return ("const", t.line, None)
            if t.value in ("true", "false"):
                self.next()
                return ("const", t.line, t.value == "true")
            if t.value == "function":
                self.next()
                return self.funcbody(False)
        if t.kind == "symbol":
            if t.value == "...":
                self.next()
                return ("vararg", t.line)
            if t.value == "{":
                return self.table()
        return self.suffixedexp()

    def primaryexp(self) -> Any:
        t = self.tok
        if t.kind == "name":
            self.next()
            return ("name", t.line, t.value)
        if self.accept("symbol", "("):
            inner = self.expr()
            self.expect("symbol", ")")
            return ("paren", t.line, inner)
        raise self.error("unexpected symbol")

    def suffixedexp(self) -> Any:
        expr = self.primaryexp()
        while True:
            t = self.tok
            if t.kind == "symbol" and t.value == ".":
                self.next()
                key = self.expect("name", what="<name>")
                expr = ("index", key.line, expr, ("const", key.line, key.value))
            elif t.kind == "symbol" and t.value == "[":
                self.next()
                key_expr = self.expr()
                self.expect("symbol", "]")
                expr = ("index", t.line, expr, key_expr)
            elif t.kind == "symbol" and t.value == ":":
                self.next()
                name = self.expect("name", what="<name>").value
                expr = ("method", t.line, expr, name, self.callargs())
            elif (t.kind == "symbol" and t.value in ("(", "{")) or t.kind == "string":
                expr = ("call", t.line, expr, self.callargs())
            else:
                return expr

    def callargs(self) -> list[Any]:
        t = self.tok
        if t.kind == "string":
            self.next()
            return [("const", t.line, t.value)]
        if t.kind == "symbol" and t.value == "{":
            return [self.table()]
        self.expect("symbol", "(", what="function arguments")
        if self.accept("symbol", ")"):
            return []
        args = self.exprlist()
        self.expect("symbol", ")")
        return args

    def table(self) -> Any:
        line = self.expect("symbol", "{").line
        items: list[tuple[Optional[Any], Any]] = []
        while not self.check_symbol("}"):
            if self.check_symbol("["):
                self.next()
                key = self.expr()
                self.expect("symbol", "]")
                self.expect("symbol", "=")
                items.append((key, self.expr()))
            elif self.check("name") and self.tokens[self.pos + 1].kind == "symbol" and self.tokens[self.pos + 1].value == "=":
                key_tok = self.next()
                self.next()
                items.append((("const", key_tok.line, key_tok.value), self.expr()))
            else:
                items.append((None, self.expr()))
            if not (self.accept("symbol", ",") or self.accept("symbol", ";")):
                break
        self.expect("symbol", "}")
        return ("table", line, items)


def parse(source: str, first_line: int = 1) -> list[Any]:
    """Parse a chunk into a statement list; ``TspError(-285)`` on a syntax error."""
    try:
        return Parser(tokenize(source, first_line)).chunk()
    except RecursionError:
        raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line {first_line}: chunk has too many syntax levels") from None


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Iteration:
    """What ``ipairs``/``pairs`` return: the (key, value) pairs to loop over."""

    items: list[tuple[Any, Any]]


class _Break(Exception):
    pass


class _Return(Exception):
    def __init__(self, values: tuple[Any, ...]) -> None:
        super().__init__()
        self.values = values


@dataclass
class Scope:
    """A local-variable scope; ``parent`` None means the chunk's top level."""

    variables: dict[str, Any] = field(default_factory=dict)
    parent: Optional["Scope"] = None
    varargs: tuple[Any, ...] = ()

    def find(self, name: str) -> Optional["Scope"]:
        s: Optional[Scope] = self
        while s is not None:
            if name in s.variables:
                return s
            s = s.parent
        return None


class _Runtime(Exception):
    """Internal: a runtime error before the line number is attached."""


class TspInterpreter:
    """Evaluates TSP chunks against a global environment.

    Args:
        globals_: the global table (``smua``, ``channel``, ``errorqueue``, …), a ``LuaTable``
            so scripts can also define their own globals.

    ``execute(source)`` parses the whole chunk first (a syntax error runs nothing) and then runs
    the statements in order; a runtime error stops the chunk and is raised as
    ``TspError(-286, "TSP Runtime error at line N: ...")``. Host functions and attribute setters
    may raise ``TspError`` with their own code, which propagates unchanged.
    """

    def __init__(self, globals_: Optional[LuaTable] = None) -> None:
        self.globals = globals_ if globals_ is not None else LuaTable()
        self._depth = 0
        self._iterations = 0
        self._install_builtins()

    def _install_builtins(self) -> None:
        g = self.globals
        for name, fn in {
            "type": lambda v=None: _type_name(v),
            "tostring": lambda v=None: tostring(v),
            "tonumber": self._tonumber,
            "ipairs": self._ipairs,
            "pairs": self._pairs,
            "select": self._select,
            "unpack": lambda t, *rest: tuple(t.sequence()) if isinstance(t, LuaTable) else (),
            "error": self._error,
        }.items():
            if g.get(name) is None:
                g.set(name, HostFunction(name, fn))
        if g.get("string") is None:
            g.set("string", HostTable("string", members={
                "format": _string_format,
                "len": lambda text: float(len(_as_str(text))),
                "sub": _string_sub,
                "upper": lambda text: _as_str(text).upper(),
                "lower": lambda text: _as_str(text).lower(),
                "rep": lambda text, n: _as_str(text) * max(0, to_int(n, "string.rep count")),
            }))
        if g.get("math") is None:
            g.set("math", HostTable("math", members={
                "abs": lambda x: abs(to_number(x)),
                "floor": lambda x: float(math.floor(to_number(x))),
                "ceil": lambda x: float(math.ceil(to_number(x))),
                "sqrt": lambda x: math.sqrt(to_number(x)),
                "min": lambda *xs: min(to_number(x) for x in xs),
                "max": lambda *xs: max(to_number(x) for x in xs),
                "pi": math.pi, "huge": math.inf,
            }))

    @staticmethod
    def _tonumber(value: Any = None, base: Any = None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            if base is not None:
                try:
                    return float(int(value.strip(), int(to_number(base))))
                except ValueError:
                    return None
            return _str_to_number(value)
        return None

    @staticmethod
    def _ipairs(t: Any) -> Any:
        if not isinstance(t, LuaTable):
            raise TspError(RUNTIME_ERROR, f"bad argument #1 to 'ipairs' (table expected, got {_type_name(t)})")
        return _Iteration([(float(i), v) for i, v in enumerate(t.sequence(), start=1)])

    @staticmethod
    def _pairs(t: Any) -> Any:
        if not isinstance(t, LuaTable):
            raise TspError(RUNTIME_ERROR, f"bad argument #1 to 'pairs' (table expected, got {_type_name(t)})")
        return _Iteration(list(t.hash.items()))

    @staticmethod
    def _select(n: Any, *args: Any) -> Any:
        if n == "#":
            return float(len(args))
        return tuple(args[to_int(n) - 1:])

    @staticmethod
    def _error(message: Any = None, level: Any = None) -> None:
        raise _Runtime(tostring(message))

    # -- public ----------------------------------------------------------------------------

    def execute(self, source: str, first_line: int = 1) -> None:
        """Parse and run one chunk."""
        body = parse(source, first_line)
        self.run(body)

    def run(self, body: list[Any]) -> None:
        """Run a parsed chunk (e.g. a stored script)."""
        self._iterations = 0
        self._depth = 0
        try:
            self._block(body, Scope())
        except _Return:
            pass
        except _Break:
            raise TspError(RUNTIME_ERROR, "TSP Runtime error: no loop to break") from None
        except RecursionError:
            raise TspError(RUNTIME_ERROR, "TSP Runtime error: stack overflow") from None

    def call(self, fn: Any, args: Iterable[Any] = ()) -> tuple[Any, ...]:
        """Call a TSP function value from Python (e.g. a stored script's ``run``)."""
        return self._call(fn, list(args), 0, "function")

    # -- statements ------------------------------------------------------------------------

    def _block(self, stmts: list[Any], scope: Scope) -> None:
        for stmt in stmts:
            self._statement(stmt, scope)

    def _statement(self, stmt: Any, scope: Scope) -> None:
        tag, line = stmt[0], stmt[1]
        try:
            if tag == "assign":
                self._assign(stmt[2], stmt[3], scope)
            elif tag == "callstat":
                self._eval_multi(stmt[2], scope)
            elif tag == "local":
                values = self._eval_list(stmt[3], scope)
                for i, name in enumerate(stmt[2]):
                    scope.variables[name] = values[i] if i < len(values) else None
            elif tag == "localfunction":
                scope.variables[stmt[2]] = None
                scope.variables[stmt[2]] = self._make_function(stmt[3], scope, stmt[2])
            elif tag == "if":
                for cond, body in stmt[2]:
                    if to_bool(self._eval(cond, scope)):
                        self._block(body, Scope(parent=scope, varargs=scope.varargs))
                        break
                else:
                    self._block(stmt[3], Scope(parent=scope, varargs=scope.varargs))
            elif tag == "while":
                try:
                    while to_bool(self._eval(stmt[2], scope)):
                        self._tick(line)
                        self._block(stmt[3], Scope(parent=scope, varargs=scope.varargs))
                except _Break:
                    pass
            elif tag == "repeat":
                try:
                    while True:
                        self._tick(line)
                        inner = Scope(parent=scope, varargs=scope.varargs)
                        self._block(stmt[2], inner)
                        if to_bool(self._eval(stmt[3], inner)):
                            break
                except _Break:
                    pass
            elif tag == "do":
                self._block(stmt[2], Scope(parent=scope, varargs=scope.varargs))
            elif tag == "fornum":
                self._fornum(stmt, scope)
            elif tag == "forin":
                self._forin(stmt, scope)
            elif tag == "break":
                raise _Break()
            elif tag == "return":
                raise _Return(tuple(self._eval_list(stmt[2], scope)))
            else:  # pragma: no cover - parser produces no other tags
                raise _Runtime(f"unknown statement {tag}")
        except _Runtime as exc:
            raise TspError(RUNTIME_ERROR, f"TSP Runtime error at line {line}: {exc}") from None
        except TspError as exc:
            if exc.code == RUNTIME_ERROR and not exc.message.startswith("TSP"):
                raise TspError(RUNTIME_ERROR, f"TSP Runtime error at line {line}: {exc.message}") from None
            raise

    def _tick(self, line: int) -> None:
        self._iterations += 1
        if self._iterations > MAX_LOOP_ITERATIONS:
            raise _Runtime("too many loop iterations")

    def _fornum(self, stmt: Any, scope: Scope) -> None:
        _, line, name, start_e, stop_e, step_e, body = stmt
        start = self._num(self._eval(start_e, scope), "'for' initial value must be a number")
        stop = self._num(self._eval(stop_e, scope), "'for' limit must be a number")
        step = self._num(self._eval(step_e, scope), "'for' step must be a number")
        if step == 0:
            raise _Runtime("'for' step is zero")
        i = start
        try:
            while (step > 0 and i <= stop) or (step < 0 and i >= stop):
                self._tick(line)
                self._block(body, Scope({name: i}, parent=scope, varargs=scope.varargs))
                i += step
        except _Break:
            pass

    def _forin(self, stmt: Any, scope: Scope) -> None:
        _, line, names, exprs, body = stmt
        values = self._eval_list(exprs, scope)
        it = values[0] if values else None
        if not isinstance(it, _Iteration):
            raise _Runtime("generic 'for' supports ipairs() and pairs() only")
        try:
            for k, v in it.items:
                self._tick(line)
                vals = {names[0]: k}
                if len(names) > 1:
                    vals[names[1]] = v
                for extra in names[2:]:
                    vals[extra] = None
                self._block(body, Scope(vals, parent=scope, varargs=scope.varargs))
        except _Break:
            pass

    @staticmethod
    def _num(value: Any, msg: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _Runtime(msg)
        if isinstance(value, str):
            n = _str_to_number(value)
            if n is None:
                raise _Runtime(msg)
            return n
        return float(value)

    def _assign(self, targets: list[Any], exprs: list[Any], scope: Scope) -> None:
        # Evaluate table/key of each target and all values before assigning (Lua order).
        resolved = []
        for t in targets:
            if t[0] == "name":
                resolved.append(("name", t[2], None))
            else:
                obj = self._eval(t[2], scope)
                key = self._eval(t[3], scope)
                resolved.append(("index", obj, key, t))
        values = self._eval_list(exprs, scope)
        for i, r in enumerate(resolved):
            value = values[i] if i < len(values) else None
            if r[0] == "name":
                owner = scope.find(r[1])
                if owner is not None:
                    owner.variables[r[1]] = value
                else:
                    self.globals.set(r[1], value)
            else:
                self._setindex(r[1], r[2], value, r[3])

    def _setindex(self, obj: Any, key: Any, value: Any, node: Any) -> None:
        if isinstance(obj, LuaTable):
            obj.set(key, value)
        elif isinstance(obj, HostTable):
            obj.tsp_set(key, value)
        else:
            raise _Runtime(f"attempt to index {self._describe(node[2])} (a {_type_name(obj)} value)")

    # -- expressions -----------------------------------------------------------------------

    def _eval_list(self, exprs: list[Any], scope: Scope) -> list[Any]:
        """Evaluate an expression list; the last call or ``...`` expands to all its values."""
        out: list[Any] = []
        for i, e in enumerate(exprs):
            if i == len(exprs) - 1 and e[0] in ("call", "method", "vararg"):
                out.extend(self._eval_multi(e, scope))
            else:
                out.append(self._eval(e, scope))
        return out

    def _eval_multi(self, e: Any, scope: Scope) -> tuple[Any, ...]:
        tag = e[0]
        if tag == "call":
            fn = self._eval(e[2], scope)
            args = self._eval_list(e[3], scope)
            return self._call(fn, args, e[1], self._describe(e[2]))
        if tag == "method":
            obj = self._eval(e[2], scope)
            fn = self._index(obj, e[3], e[2])
            args = [obj] + self._eval_list(e[4], scope)
            return self._call(fn, args, e[1], f"method `{e[3]}'")
        if tag == "vararg":
            return scope.varargs
        return (self._eval(e, scope),)

    def _eval(self, e: Any, scope: Scope) -> Any:
        tag = e[0]
        if tag == "const":
            return e[2]
        if tag == "name":
            owner = scope.find(e[2])
            if owner is not None:
                return owner.variables[e[2]]
            return self.globals.get(e[2])
        if tag == "index":
            obj = self._eval(e[2], scope)
            key = self._eval(e[3], scope)
            return self._index(obj, key, e[2])
        if tag in ("call", "method", "vararg"):
            values = self._eval_multi(e, scope)
            return values[0] if values else None
        if tag == "paren":
            return self._eval(e[2], scope)
        if tag == "binop":
            return self._binop(e[2], e[3], e[4], scope)
        if tag == "unop":
            v = self._eval(e[3], scope)
            op = e[2]
            if op == "not":
                return not to_bool(v)
            if op == "-":
                return -self._arith_operand(v)
            if isinstance(v, LuaTable):
                return float(v.length())
            if isinstance(v, str):
                return float(len(v))
            raise _Runtime(f"attempt to get length of a {_type_name(v)} value")
        if tag == "table":
            t = LuaTable()
            n = 0
            items = e[2]
            for idx, (key_e, val_e) in enumerate(items):
                if key_e is None:
                    if idx == len(items) - 1 and val_e[0] in ("call", "method", "vararg"):
                        for v in self._eval_multi(val_e, scope):
                            n += 1
                            t.set(n, v)
                    else:
                        n += 1
                        t.set(n, self._eval(val_e, scope))
                else:
                    key = self._eval(key_e, scope)
                    if key is None:
                        raise _Runtime("table index is nil")
                    t.set(key, self._eval(val_e, scope))
            return t
        if tag == "function":
            return self._make_function(e, scope, "anonymous")
        raise _Runtime(f"cannot evaluate {tag}")  # pragma: no cover

    def _make_function(self, e: Any, scope: Scope, name: str) -> LuaFunction:
        return LuaFunction(name, list(e[2]), bool(e[3]), e[4], scope)

    def _index(self, obj: Any, key: Any, node: Any) -> Any:
        if isinstance(obj, LuaTable):
            return obj.get(key)
        if isinstance(obj, HostTable):
            return obj.tsp_get(key)
        if isinstance(obj, str) and key == "len":
            return HostFunction("string.len", lambda s: float(len(s)))
        raise _Runtime(f"attempt to index {self._describe(node)} (a {_type_name(obj)} value)")

    @staticmethod
    def _describe(node: Any) -> str:
        if node[0] == "name":
            return f"global `{node[2]}'"
        if node[0] == "index" and node[3][0] == "const" and isinstance(node[3][2], str):
            return f"field `{node[3][2]}'"
        return "a value"

    def _call(self, fn: Any, args: list[Any], line: int, what: str) -> tuple[Any, ...]:
        if isinstance(fn, HostFunction):
            try:
                result = fn.fn(*args)
            except TypeError as exc:
                raise _Runtime(f"bad arguments to `{fn.name}': {exc}") from None
            if result is None:
                return ()
            return result if isinstance(result, tuple) else (result,)
        if isinstance(fn, LuaFunction):
            self._depth += 1
            if self._depth > MAX_CALL_DEPTH:
                self._depth = 0
                raise _Runtime("stack overflow")
            try:
                variables = {p: (args[i] if i < len(args) else None) for i, p in enumerate(fn.params)}
                extra = tuple(args[len(fn.params):]) if fn.vararg else ()
                try:
                    self._block(fn.body, Scope(variables, parent=fn.scope, varargs=extra))
                except _Return as ret:
                    return ret.values
                return ()
            finally:
                self._depth -= 1
        call = getattr(fn, "tsp_call", None)
        if isinstance(fn, HostTable) and call is not None:
            result = call(*args)
            if result is None:
                return ()
            return result if isinstance(result, tuple) else (result,)
        raise _Runtime(f"attempt to call {what} (a {_type_name(fn)} value)")

    def _arith_operand(self, v: Any) -> float:
        if isinstance(v, bool) or v is None or not isinstance(v, (int, float, str)):
            raise _Runtime(f"attempt to perform arithmetic on a {_type_name(v)} value")
        if isinstance(v, str):
            n = _str_to_number(v)
            if n is None:
                raise _Runtime("attempt to perform arithmetic on a string value")
            return n
        return float(v)

    def _binop(self, op: str, left_e: Any, right_e: Any, scope: Scope) -> Any:
        if op == "and":
            left = self._eval(left_e, scope)
            return self._eval(right_e, scope) if to_bool(left) else left
        if op == "or":
            left = self._eval(left_e, scope)
            return left if to_bool(left) else self._eval(right_e, scope)
        a = self._eval(left_e, scope)
        b = self._eval(right_e, scope)
        if op == "==":
            return _lua_equal(a, b)
        if op == "~=":
            return not _lua_equal(a, b)
        if op in ("<", "<=", ">", ">="):
            both_num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
            both_str = isinstance(a, str) and isinstance(b, str)
            if not (both_num or both_str):
                raise _Runtime(f"attempt to compare {_type_name(a)} with {_type_name(b)}")
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if op == "..":
            for v in (a, b):
                if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                    raise _Runtime(f"attempt to concatenate a {_type_name(v)} value")
            return _concat_str(a) + _concat_str(b)
        x, y = self._arith_operand(a), self._arith_operand(b)
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            if y == 0:
                return math.nan if x == 0 or math.isnan(x) else math.copysign(math.inf, x) * math.copysign(1.0, y)
            return x / y
        if op == "%":
            if y == 0:
                return math.nan
            return x - math.floor(x / y) * y
        if op == "^":
            try:
                return math.pow(x, y)
            except (OverflowError, ValueError):
                return math.nan
        raise _Runtime(f"unknown operator {op}")  # pragma: no cover


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _concat_str(value)
    raise TspError(RUNTIME_ERROR, f"bad argument: string expected, got {_type_name(value)}")


def _string_sub(text: Any, i: Any = 1.0, j: Any = -1.0) -> str:
    """Lua ``string.sub`` (1-based, negative indices from the end, inclusive)."""
    t = _as_str(text)
    n = len(t)
    a, b = to_int(i, "string.sub start"), to_int(j, "string.sub end")
    a = n + a + 1 if a < 0 else a
    b = n + b + 1 if b < 0 else b
    return t[max(a, 1) - 1:min(b, n)]


_FORMAT_SPEC = re.compile(r"%([-+ #0]*\d*(?:\.\d+)?)([diouxXeEfgGcqs%])")


def _string_format(fmt: Any, *args: Any) -> str:
    """Lua ``string.format`` for the C conversions ``d i o u x X e E f g G c s q %``."""
    template = _as_str(fmt)
    values = list(args)
    out: list[str] = []
    pos = 0
    for m in _FORMAT_SPEC.finditer(template):
        out.append(template[pos:m.start()])
        pos = m.end()
        flags, conv = m.group(1), m.group(2)
        if conv == "%":
            out.append("%")
            continue
        if not values:
            raise TspError(RUNTIME_ERROR, "bad argument to 'format' (no value)")
        v = values.pop(0)
        if conv in "diouxXc":
            number = to_number(v, "string.format")
            out.append(("%" + flags + ("d" if conv in "iu" else conv)) % int(number))
        elif conv in "eEfgG":
            out.append(("%" + flags + conv) % to_number(v, "string.format"))
        elif conv == "q":
            out.append('"' + _as_str(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(("%" + flags + "s") % tostring(v))
    out.append(template[pos:])
    return "".join(out)


def _concat_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def _lua_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is b


# ---------------------------------------------------------------------------------------------
# Script collection
# ---------------------------------------------------------------------------------------------


@dataclass
class ScriptCollector:
    """Collects ``loadscript``/``loadandrunscript`` … ``endscript`` bodies line by line.

    ``feed(line)`` returns ``None`` while the line was consumed by a script in progress or opened
    one, else the line unchanged (a normal chunk for the caller). When ``endscript`` arrives it
    returns a ``CompletedScript``.
    """

    name: Optional[str] = None
    run_after_load: bool = False
    lines: list[str] = field(default_factory=list)
    active: bool = False

    _OPEN = re.compile(r"^\s*(loadscript|loadandrunscript)(?:\s+([A-Za-z_][A-Za-z0-9_]*))?\s*$")
    _END = re.compile(r"^\s*endscript\s*$")

    def feed(self, line: str) -> Union[None, str, "CompletedScript"]:
        if self.active:
            if self._END.match(line):
                done = CompletedScript(self.name, self.run_after_load, "\n".join(self.lines))
                self.active, self.name, self.lines = False, None, []
                return done
            self.lines.append(line)
            return None
        m = self._OPEN.match(line)
        if m:
            self.active = True
            self.run_after_load = m.group(1) == "loadandrunscript"
            self.name = m.group(2)
            self.lines = []
            return None
        return line


@dataclass(frozen=True)
class CompletedScript:
    """A collected script: ``name`` (``None`` = anonymous), whether to run it now, its source."""

    name: Optional[str]
    run: bool
    source: str

