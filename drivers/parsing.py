"""Reply parsing shared by all drivers: numbers with sentinels, booleans, identity, error entries.

Every parser raises ``InstrumentProtocolError`` (instrument/command filled in by the caller via
``protocol_error``) on anything it does not recognise; nothing is silently coerced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from hil.drivers.errors import InstrumentProtocolError
from hil.drivers.protocols import ErrorEntry

__all__ = [
    "OVERFLOW_SENTINEL",
    "MISSING_SENTINEL",
    "Identity",
    "parse_idn",
    "parse_number",
    "parse_numbers",
    "map_sentinels",
    "parse_bool",
    "parse_scpi_error",
    "parse_tsp_error",
    "format_number",
    "model_matches",
]

OVERFLOW_SENTINEL = 9.9e37  #: ``+9.9E37`` → ``+inf`` (sign kept)
MISSING_SENTINEL = 9.91e37  #: ``+9.91E37`` → ``nan``
_SENTINEL_RTOL = 1e-3

_SCPI_ERROR = re.compile(r'^\s*([+-]?[0-9]{1,10})\s*,\s*"(.*)"\s*$', re.S | re.ASCII)
#: NR1/NR2/NR3 in ASCII only (``float()`` would also take other scripts' digits and ``_``).
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?$", re.ASCII)
#: Non-finite forms some instruments print (TSP/Lua: ``nan``, ``inf``, ``-inf``).
_NON_FINITE = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf, "+inf": math.inf,
               "-inf": -math.inf}
#: Longest numeric token accepted: IEEE doubles need at most 17 significant digits, instruments
#: print far fewer; a longer token is a corrupt reply, not a number.
MAX_NUMBER_CHARS = 40


@dataclass(frozen=True)
class Identity:
    """``*IDN?`` fields. ``raw`` is the stripped reply, used to recognise the instrument on resync."""

    vendor: str
    model: str
    serial: str
    firmware: str
    raw: str

    def as_dict(self) -> dict[str, str]:
        """Fields for snapshots."""
        return {"vendor": self.vendor, "model": self.model, "serial": self.serial, "firmware": self.firmware}


def parse_idn(reply: str) -> Identity:
    """Parse ``vendor,model,serial,firmware``; raise ``InstrumentProtocolError`` if empty or short."""
    raw = reply.strip()
    fields = [f.strip() for f in raw.split(",")]
    if not raw or len(fields) < 4 or not fields[0] or not fields[1]:
        raise InstrumentProtocolError(f"unexpected *IDN? reply {reply!r} (need vendor,model,serial,firmware)")
    return Identity(fields[0], fields[1], fields[2], ",".join(fields[3:]), raw)


def model_matches(identity: Identity, tokens: Sequence[str]) -> Optional[str]:
    """Return the first of ``tokens`` found as a whole word in the model field (case-insensitive)."""
    for token in tokens:
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(token)}(?![0-9A-Za-z])", identity.model, re.I):
            return token
    return None


def parse_number(token: str) -> float:
    """Parse one numeric token; ``±9.9E37`` → ``±inf``, ``9.91E37`` → ``nan`` (rel. tol. 1e-3).

    Accepts ASCII NR1/NR2/NR3 (leading ``+`` allowed) of at most ``MAX_NUMBER_CHARS`` characters
    and the words ``nan``/``inf``/``-inf``. Anything else (other scripts' digits, ``1_0``, a
    5000-digit token, ``1e999`` overflowing to infinity) raises ``InstrumentProtocolError``.
    """
    text = token.strip()
    if len(text) > MAX_NUMBER_CHARS:
        raise InstrumentProtocolError(f"not a number: token of {len(text)} characters ({text[:20]!r}...)")
    lowered = text.lower()
    if lowered in _NON_FINITE:
        return _NON_FINITE[lowered]
    if not _NUMBER.match(text):
        raise InstrumentProtocolError(f"not a number: {token!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InstrumentProtocolError(f"number out of range: {token!r}")
    magnitude = abs(value)
    if math.isclose(magnitude, MISSING_SENTINEL, rel_tol=_SENTINEL_RTOL / 10):
        return math.nan
    if math.isclose(magnitude, OVERFLOW_SENTINEL, rel_tol=_SENTINEL_RTOL):
        return math.copysign(math.inf, value)
    return value


def map_sentinels(values: np.ndarray) -> np.ndarray:
    """Vectorised sentinel mapping for binary data: ``±9.9E37`` → ``±inf``, ``9.91E37`` → ``nan``."""
    v = np.asarray(values, dtype=float).copy()
    mag = np.abs(v)
    missing = np.isclose(mag, MISSING_SENTINEL, rtol=_SENTINEL_RTOL / 10, atol=0)
    overflow = np.isclose(mag, OVERFLOW_SENTINEL, rtol=_SENTINEL_RTOL, atol=0) & ~missing
    v[overflow] = np.copysign(np.inf, v[overflow])
    v[missing] = np.nan
    return v


def parse_numbers(reply: str, *, sep: str = ",", count: Optional[int] = None) -> np.ndarray:
    """Parse a separated list of numbers (sentinels mapped) into a float64 array.

    Raises:
        InstrumentProtocolError: a token is not a number, or ``count`` is given and differs.
    """
    text = reply.strip()
    tokens = [t for t in re.split(rf"\s*{re.escape(sep)}\s*", text)] if text else []
    if count is not None and len(tokens) != count:
        raise InstrumentProtocolError(f"expected {count} values, got {len(tokens)} in {reply[:80]!r}")
    values = np.array([parse_number(t) for t in tokens], dtype=float)
    if count is not None and values.size != count:
        raise InstrumentProtocolError(f"expected {count} values, got {values.size} in {reply[:80]!r}")
    return values


def parse_bool(token: str) -> bool:
    """``1``/``0``, ``ON``/``OFF``, ``true``/``false`` (TSP), and numeric ``1.00000e+00`` forms."""
    text = token.strip().lower()
    if text in ("1", "on", "true"):
        return True
    if text in ("0", "off", "false"):
        return False
    try:
        value = parse_number(text)
    except InstrumentProtocolError:
        raise InstrumentProtocolError(f"not a boolean: {token!r}") from None
    if value in (0.0, 1.0):
        return bool(value)
    raise InstrumentProtocolError(f"not a boolean: {token!r}")


def parse_scpi_error(reply: str) -> ErrorEntry:
    """Parse ``<code>,"<message>"``; the message is cut at the first ``;`` (model-specific suffixes)."""
    match = _SCPI_ERROR.match(reply)
    if not match:
        raise InstrumentProtocolError(f"unparsable error-queue entry {reply!r}")
    return ErrorEntry(int(match.group(1)), match.group(2).split(";")[0].strip())


def parse_tsp_error(reply: str) -> ErrorEntry:
    """Parse ``print(errorqueue.next())`` output: ``code<TAB>message<TAB>severity<TAB>node``.

    Numbers may print in exponent form (``-2.86000e+02``); ``int(float(code))`` is used.
    """
    fields = reply.strip("\r\n").split("\t")
    try:
        value = parse_number(fields[0])
    except InstrumentProtocolError:
        raise InstrumentProtocolError(f"unparsable TSP error entry {reply!r}") from None
    if not (math.isfinite(value) and value == int(value) and abs(value) < 1e9):
        raise InstrumentProtocolError(f"TSP error code is not an integer: {reply!r}")
    code = int(value)
    message = fields[1].strip() if len(fields) > 1 else ""
    return ErrorEntry(code, message)


def format_number(value: float) -> str:
    """Format a float for a command with 12 significant digits (``0.04``, ``1e-05``, ``-2.5``, ``1``).

    Twelve digits hide binary rounding noise of computed ramp levels (``0.12 / 3``) while staying
    far below any instrument's programming resolution.
    """
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"cannot send non-finite number {value!r}")
    text = f"{v:.12g}"
    return "0" if text == "-0" else text
