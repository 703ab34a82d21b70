"""Order-preserving encoding of tuples into LMDB keys.

`encode_key(a) < encode_key(b)` (as bytes) exactly when `a < b` (as tuples),
for tuples whose elements at each position have the same type. Elements of
different types sort by type: None < numbers < datetimes < str < bytes.

Strings and bytes are escaped (0x00 becomes 0x00 0xFF) and end with 0x00 0x00,
so any byte may appear in them, and the encoding of a tuple prefix is a byte
prefix of every longer tuple that starts with it — but `("upload", "u1")`
is not a byte prefix of `("upload", "u1x")`. Prefix scans of a cause never
bleed into another cause.
"""

from __future__ import annotations

import datetime as _dt
import struct
from typing import Any, Final

__all__ = [
    "KeyPart",
    "decode_key",
    "encode_key",
    "encode_str",
    "encode_uint",
    "last_str",
    "prefix_end",
]

KeyPart = None | int | float | str | bytes | _dt.datetime
"""A value that can be part of a key."""

_NONE: Final = 0x05
_INT_NEG: Final = 0x10  # negative ints: 8 bytes, two's complement offset
_INT_POS: Final = 0x11  # non-negative ints
_FLOAT: Final = 0x12
_DATETIME: Final = 0x20
_STR: Final = 0x30
_BYTES: Final = 0x31

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _escape(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def _encode_float(value: float) -> bytes:
    if value != value:
        raise ValueError("NaN cannot be part of a key: it has no order")
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits & (1 << 63) else bits | (1 << 63)
    return struct.pack(">Q", bits)


def _decode_float(data: bytes) -> float:
    (bits,) = struct.unpack(">Q", data)
    bits = bits ^ (1 << 63) if bits & (1 << 63) else bits ^ 0xFFFFFFFFFFFFFFFF
    (value,) = struct.unpack(">d", struct.pack(">Q", bits))
    return float(value)


def _encode_part(part: Any, out: bytearray) -> None:
    if part is None:
        out.append(_NONE)
    elif isinstance(part, str):
        out.append(_STR)
        out += _escape(part.encode("utf-8"))
    elif isinstance(part, bool):
        raise TypeError("bool cannot be part of a key; use int")
    elif isinstance(part, int):
        if not _INT_MIN <= part <= _INT_MAX:
            raise ValueError(f"int {part} is outside the key range [-2**63, 2**64)")
        if part < 0:
            out.append(_INT_NEG)
            out += (part - _INT_MIN).to_bytes(8, "big")
        else:
            out.append(_INT_POS)
            out += part.to_bytes(8, "big")
    elif isinstance(part, float):
        out.append(_FLOAT)
        out += _encode_float(part)
    elif isinstance(part, bytes | bytearray | memoryview):
        out.append(_BYTES)
        out += _escape(bytes(part))
    elif isinstance(part, _dt.datetime):
        if part.tzinfo is None or part.utcoffset() is None:
            raise ValueError("naive datetime cannot be part of a key; give it a tzinfo")
        try:
            part.astimezone(_dt.UTC)
        except OverflowError:
            raise ValueError(f"datetime {part!r} is outside the UTC range of datetime") from None
        delta = part - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        out.append(_DATETIME)
        out += (micros - _INT_MIN).to_bytes(8, "big")
    else:
        raise TypeError(f"{type(part).__name__} cannot be part of a key")


_UINT = struct.Struct(">BQ")


def encode_str(part: str) -> bytes:
    """The encoding of one str key part (a fast path of `encode_key`)."""
    return b"\x30" + part.encode("utf-8").replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def encode_uint(part: int) -> bytes:
    """The encoding of one int key part in [0, 2**64) (a fast path of `encode_key`)."""
    return _UINT.pack(_INT_POS, part)


def encode_key(parts: tuple[Any, ...]) -> bytes:
    """Encode a tuple of key parts into bytes that sort like the tuple."""
    chunks: list[bytes] = []
    for part in parts:
        kind = type(part)
        if kind is str:
            chunks.append(encode_str(part))
        elif kind is int and 0 <= part <= _INT_MAX:
            chunks.append(_UINT.pack(_INT_POS, part))
        else:
            out = bytearray()
            _encode_part(part, out)
            chunks.append(bytes(out))
    return b"".join(chunks)


def _read_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        end = data.index(b"\x00", pos)
        out += data[pos:end]
        marker = data[end + 1]
        if marker == 0x00:
            return bytes(out), end + 2
        if marker != 0xFF:
            raise ValueError(f"bad escape 0x00 0x{marker:02x} at byte {end}")
        out.append(0)
        pos = end + 2


def decode_key(data: bytes) -> tuple[Any, ...]:
    """Decode bytes written by `encode_key` back into the tuple."""
    parts: list[Any] = []
    pos = 0
    size = len(data)
    try:
        while pos < size:
            tag = data[pos]
            pos += 1
            if tag == _NONE:
                parts.append(None)
            elif tag == _STR:
                raw, pos = _read_escaped(data, pos)
                parts.append(raw.decode("utf-8"))
            elif tag == _BYTES:
                raw, pos = _read_escaped(data, pos)
                parts.append(raw)
            elif tag == _INT_POS:
                parts.append(int.from_bytes(data[pos : pos + 8], "big"))
                pos += 8
            elif tag == _INT_NEG:
                value = int.from_bytes(data[pos : pos + 8], "big") + _INT_MIN
                if value >= 0:
                    raise ValueError(f"non-negative int under the negative tag at byte {pos - 1}")
                parts.append(value)
                pos += 8
            elif tag == _FLOAT:
                number = _decode_float(data[pos : pos + 8])
                if number != number:
                    raise ValueError(f"NaN in key at byte {pos - 1}")
                parts.append(number)
                pos += 8
            elif tag == _DATETIME:
                micros = int.from_bytes(data[pos : pos + 8], "big") + _INT_MIN
                parts.append(_EPOCH + _dt.timedelta(microseconds=micros))
                pos += 8
            else:
                raise ValueError(f"unknown type tag 0x{tag:02x} at byte {pos - 1}")
    except (IndexError, struct.error) as error:
        raise ValueError(f"truncated key: {error}") from None
    except OverflowError as error:
        raise ValueError(f"datetime out of range in key: {error}") from None
    if pos != size:
        raise ValueError("truncated key")
    return tuple(parts)


_FIXED_WIDTH: Final = frozenset({_INT_POS, _INT_NEG, _FLOAT, _DATETIME})


def last_str(data: bytes) -> bytes | None:
    """The UTF-8 of a key's last part if it is a str (None otherwise, or if the key
    is malformed), without decoding the other parts.

    A str part ends at the first `0x00 0x00` after its tag: a NUL inside it is
    escaped as `0x00 0xFF`, so that pair never occurs within the part.
    """
    pos = 0
    size = len(data)
    start = end = -1
    while pos < size:
        tag = data[pos]
        pos += 1
        if tag in (_STR, _BYTES):
            stop = data.find(b"\x00\x00", pos)
            if stop < 0:
                return None
            start, end = (pos, stop) if tag == _STR else (-1, -1)
            pos = stop + 2
        elif tag in _FIXED_WIDTH:
            pos += 8
            start = end = -1
        elif tag == _NONE:
            start = end = -1
        else:
            return None
    if pos != size or start < 0:
        return None
    return data[start:end].replace(b"\x00\xff", b"\x00")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix`."""
    data = bytearray(prefix)
    while data:
        if data[-1] != 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return None
