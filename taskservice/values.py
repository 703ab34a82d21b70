"""The value gate: what may enter the store, checked where it enters, with the store's codec.

Props, clients, results and progress extras are stored with msgspec's
msgpack encoder and hashed as canonical JSON. A value passes the gate when
both can encode it the same way every time:

- the walk refuses what msgspec would encode but not faithfully: sets (no
  order, so no stable hash), NaN and infinity (JSON has neither), non-str
  keys, nesting deeper than `MAX_DEPTH`;
- the store's own msgpack encoder then encodes it, which refuses ints
  outside [-2**63, 2**64), strings with lone surrogates and objects msgspec
  does not know; the error names the offending field;
- `freeze` hands back the value as the store will give it back (decoded
  from those bytes): a deep copy in stored types, so what was hashed is what
  is stored, is what every caller and every attempt sees. Tuples become
  lists, Structs and dataclasses dicts, datetimes and UUIDs strings.

Text the service itself stores (error messages, stacks) comes from task code
too: `describe_error` never raises, and `storable_text` makes any str
storable (lone surrogates escaped, length capped).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

__all__ = [
    "MAX_DEPTH",
    "MAX_ERROR_CHARS",
    "MAX_STACK_CHARS",
    "PropsError",
    "canonical_json",
    "check_encodable",
    "check_text",
    "describe_error",
    "error_text",
    "freeze",
    "storable_text",
    "thaw",
]

MAX_DEPTH: Final = 200
"""How deeply a stored value may nest."""

MAX_ERROR_CHARS: Final = 16_384
"""Longest error text stored on a task (a longer one is cut, saying so)."""

MAX_STACK_CHARS: Final = 262_144
"""Longest stack text stored with a failed attempt."""

_INT_MIN: Final = -(1 << 63)
_INT_END: Final = 1 << 64


class PropsError(TypeError):
    """Props (or a result) that cannot be stored: names the offending field."""


_json_encoder = msgspec.json.Encoder(order="sorted")
_store_encoder = msgspec.msgpack.Encoder()
_store_decoder = msgspec.msgpack.Decoder()

_PLAIN: Final = frozenset({str, int, bool, type(None), bytes})
"""Types the quick walk passes as they are (the store's encoder checks ints and strs)."""


def _short_path(path: str) -> str:
    """A path of at most ~200 characters: its head and its tail."""
    if len(path) <= 200:
        return path
    return f"{path[:80]}…({len(path) - 160} characters)…{path[-80:]}"


def _find_bad_value(value: Any, path: str, depth: int = 0, strict: bool = False) -> str | None:
    """A description of the first part of `value` that cannot be stored, or None.

    The quick walk (`strict=False`) leaves ints and strs to the store's
    encoder; the strict walk, run once that encoder refused a value, checks
    their range and encoding too, to name the field.
    """
    kind = type(value)
    if kind in _PLAIN:
        return _bad_plain(value, path) if strict else None
    if kind is dict and depth < MAX_DEPTH and not strict:
        # The usual props: a flat dict of plain values, checked without recursion.
        for key, item in value.items():
            if type(key) is not str or type(item) not in _PLAIN:
                break
        else:
            return None
    if depth >= MAX_DEPTH:
        return f"{_short_path(path)}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{_short_path(path)}: non-finite float {value!r} (JSON has no NaN or infinity)"
        return None
    if value is None or isinstance(value, str | int | bool | bytes):
        return _bad_plain(value, path) if strict else None
    if isinstance(value, set | frozenset):
        return f"{_short_path(path)}: {type(value).__name__} has no order; use a sorted list"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                shown = _safe_repr(key)
                return (
                    f"{_short_path(path)}: key {shown} is a {type(key).__name__}, keys must be str"
                )
            if strict:
                found = _bad_plain(key, f"{path} key {_safe_repr(key)}")
                if found:
                    return found
            found = _find_bad_value(item, f"{path}[{_safe_repr(key)}]", depth + 1, strict)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_bad_value(item, f"{path}[{index}]", depth + 1, strict)
            if found:
                return found
        return None
    if isinstance(value, msgspec.Struct):
        return _find_bad_value(msgspec.structs.asdict(value), path, depth + 1, strict)
    try:
        _store_encoder.encode(value)
        _json_encoder.encode(value)
    except Exception:
        return f"{_short_path(path)}: {type(value).__name__} cannot be encoded by msgspec"
    return None


def _bad_plain(value: Any, path: str) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not _INT_MIN <= value < _INT_END:
            return f"{_short_path(path)}: int out of the storable range [-2**63, 2**64)"
        return None
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{_short_path(path)}: str is not valid UTF-8 (it holds a lone surrogate)"
    return None


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:57]}..."


def _refuse(value: Any, what: str, error: BaseException | None) -> PropsError:
    found = _find_bad_value(value, what, strict=True)
    if found is None:
        found = f"{what}: {storable_text(describe_error(error), 500)}" if error else what
    return PropsError(found)


def _walked_bytes(value: Any, what: str) -> bytes:
    """The store's encoding of `value`, or `PropsError` naming what cannot be stored."""
    found = _find_bad_value(value, what)
    if found:
        raise PropsError(found)
    try:
        return _store_encoder.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as error:
        raise _refuse(value, what, error) from None


_SCALARS: Final = frozenset({str, int, bool, type(None), bytes, float})


def _flat(value: Any) -> bool:
    """Whether `value` is a dict of str keys and scalar values (the usual props):
    a shallow copy of it is a deep one, and only its floats need the walk's check."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or kind not in _SCALARS:
            return False
        if kind is float and not math.isfinite(item):
            return False
    return True


def freeze(value: Any, what: str = "props") -> Any:
    """`value` as the store will hand it back: a deep copy in stored types.

    Raises `PropsError` naming the offending field when it cannot be stored.
    """
    if _flat(value):
        try:
            _store_encoder.encode(value)  # ints in range, strs valid UTF-8
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as error:
            raise _refuse(value, what, error) from None
        return dict(value)  # the stored types already: decoding gives an equal dict
    return _store_decoder.decode(_walked_bytes(value, what))


def thaw(value: Any) -> Any:
    """A fresh deep copy of a frozen (already checked) value, for one attempt to change."""
    if type(value) is dict and _flat(value):
        return dict(value)
    return _store_decoder.decode(_store_encoder.encode(value))


def canonical_json(value: Any, what: str = "props") -> bytes:
    """Encode `value` as canonical JSON (sorted keys, no whitespace).

    Raises `PropsError` naming the offending field when the value cannot be
    stored (see the module's docstring).
    """
    _walked_bytes(value, what)
    return canonical_json_of_frozen(value)


def canonical_json_of_frozen(value: Any) -> bytes:
    """Canonical JSON of a value that passed the gate (no checks again)."""
    return _json_encoder.encode(value)


def check_encodable(value: Any, what: str = "result") -> None:
    """Raise `PropsError` if `value` cannot be stored (see `freeze`)."""
    _walked_bytes(value, what)


def check_text(value: Any, what: str, expected: str = "a str") -> None:
    """Raise `TypeError` unless `value` is a str, `ValueError` unless it is valid UTF-8."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be {expected}, not {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid UTF-8 (it holds a lone surrogate)") from None


def storable_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` made storable: lone surrogates escaped, cut to about `limit` characters."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}… [{cut} more characters cut]"
    return text


def describe_error(error: BaseException | None) -> str:
    """`Type: message` of an exception; never raises, whatever `str()` of it does.

    An exception from a worker process carries its own description.
    """
    if error is None:
        return "unknown error"
    try:
        remote = getattr(error, "description", None)
    except Exception:
        remote = None
    if isinstance(remote, str):
        return storable_text(remote)
    name = _type_name(error)
    text = error_text(error)
    return storable_text(f"{name}: {text}" if text else name)


def error_text(error: BaseException) -> str:
    """`str(error)`, storable; never raises (a failing `__str__` gives a placeholder)."""
    try:
        text = str(error)
        if not isinstance(text, str):
            raise TypeError("__str__ returned a non-str")
    except Exception:
        try:
            text = f"<str() failed; repr: {error!r}>"
        except Exception:
            text = "<str() and repr() failed>"
    return storable_text(text)


def _type_name(error: BaseException) -> str:
    try:
        name = type(error).__name__
        return name if isinstance(name, str) else "Exception"
    except Exception:
        return "Exception"
