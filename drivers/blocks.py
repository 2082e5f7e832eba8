"""IEEE 488.2 binary blocks: encoding and decoding without pyvisa.

Two forms (IEEE 488.2 §7.7.6 / §8.7.9):

* definite length ``#<n><length:n digits><data>``, e.g. ``#18`` + 8 bytes;
* indefinite length ``#0<data>`` terminated by the message terminator (the 2600B ``printbuffer``
  with ``format.REAL32``); the number of values must then be known by the caller, because a data
  byte may equal the terminator.

Used by ``ScriptedTransport`` and by tests that build replies; ``VisaTransport`` lets pyvisa parse
blocks arriving on a real resource.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["encode_ieee_block", "decode_ieee_block", "block_end"]

#: Message terminators accepted after a block (IEEE 488.2 allows CR LF as well as LF).
_TERMINATORS = (b"\n", b"\r\n")


def encode_ieee_block(values: ArrayLike, dtype: DTypeLike, *, indefinite: bool = False) -> bytes:
    """Return ``values`` as an IEEE 488.2 block of ``dtype`` (e.g. ``"<f4"``), without terminator."""
    payload = np.asarray(values, dtype=np.dtype(dtype)).tobytes()
    if indefinite:
        return b"#0" + payload
    length = str(len(payload)).encode("ascii")
    if len(length) > 9:
        raise ValueError("payload too long for a definite-length block")
    return b"#" + str(len(length)).encode("ascii") + length + payload


def decode_ieee_block(
    data: bytes,
    dtype: DTypeLike,
    count: Optional[int] = None,
    *,
    termination: bytes = b"\n",
) -> np.ndarray:
    """Parse one IEEE 488.2 block into a 1-D array of ``dtype``.

    Args:
        data: raw bytes as read, optionally followed by ``termination``.
        dtype: numpy dtype of one value, with explicit byte order (``"<f4"``, ``">f8"``).
        count: number of values; mandatory for ``#0`` blocks, checked for definite blocks.
        termination: terminator that may follow the block (``\n`` and ``\r\n`` are always
            accepted).

    Raises:
        ValueError: missing ``#``, bad header, length not a multiple of the item size, wrong
            count, or trailing bytes other than the terminator.
    """
    dt = np.dtype(dtype)
    start = data.find(b"#")
    if start < 0:
        raise ValueError("no '#' block header in reply")
    if data[:start].strip():
        raise ValueError(f"unexpected bytes before block header: {data[:start]!r}")
    if len(data) < start + 2 or not data[start + 1 : start + 2].isdigit():
        raise ValueError("truncated or malformed block header")
    ndigits = int(data[start + 1 : start + 2])
    if ndigits == 0:
        if count is None:
            raise ValueError("an indefinite-length (#0) block needs an explicit count")
        body_start = start + 2
        nbytes = count * dt.itemsize
    else:
        length_field = data[start + 2 : start + 2 + ndigits]
        if len(length_field) != ndigits or not length_field.isdigit():
            raise ValueError(f"malformed block length field {length_field!r}")
        body_start = start + 2 + ndigits
        nbytes = int(length_field)
    body = data[body_start : body_start + nbytes]
    if len(body) != nbytes:
        raise ValueError(f"block truncated: expected {nbytes} bytes, got {len(body)}")
    if nbytes % dt.itemsize:
        raise ValueError(f"block of {nbytes} bytes is not a multiple of item size {dt.itemsize}")
    rest = data[body_start + nbytes :]
    if rest not in (b"", termination) + _TERMINATORS:
        raise ValueError(f"unexpected bytes after block: {rest[:16]!r}")
    values = np.frombuffer(body, dtype=dt).copy()
    if count is not None and values.size != count:
        raise ValueError(f"block holds {values.size} values, expected {count}")
    return values


def block_end(buf: bytes | bytearray, itemsize: int, count: Optional[int] = None) -> Optional[int]:
    """Length of the first complete block message in ``buf`` (terminator included), or ``None``.

    Used while bytes are still arriving: returns ``None`` until the header, the body and the
    terminator (``\n`` or ``\r\n``) are all present.

    Raises:
        ValueError: bytes other than white space before ``#``, a malformed header, an ``#0``
            block without ``count``, or something other than a terminator after the body.
    """
    start = buf.find(b"#")
    if start < 0:
        if bytes(buf).strip():
            if b"\n" in buf:
                raise ValueError(f"no '#' block header in reply {bytes(buf[:40])!r}")
        return None
    if bytes(buf[:start]).strip():
        raise ValueError(f"unexpected bytes before block header: {bytes(buf[:start][:40])!r}")
    if len(buf) < start + 2:
        return None
    digit = buf[start + 1 : start + 2]
    if not digit.isdigit():
        raise ValueError("malformed block header")
    ndigits = int(digit)
    if ndigits == 0:
        if count is None:
            raise ValueError("an indefinite-length (#0) block needs an explicit count")
        body_end = start + 2 + count * itemsize
    else:
        field = bytes(buf[start + 2 : start + 2 + ndigits])
        if field and not field.isdigit():
            raise ValueError(f"malformed block length field {field!r}")
        if len(field) < ndigits:
            return None
        body_end = start + 2 + ndigits + int(field)
    tail = bytes(buf[body_end : body_end + 2])
    if not tail:
        return None
    if tail[:1] == b"\n":
        return body_end + 1
    if tail == b"\r\n":
        return body_end + 2
    if tail == b"\r":
        return None
    raise ValueError(f"unexpected bytes after block: {tail!r}")
