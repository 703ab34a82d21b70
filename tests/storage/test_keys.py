"""Property tests of the order-preserving key encoding."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskservice.storage.keys import decode_key, encode_key, last_str, prefix_end

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def examples(count: int) -> settings:
    """Deterministic hypothesis settings (same examples every run) with `count` examples."""
    return settings(max_examples=count, deadline=None, derandomize=True, database=None)


# Characters and bytes that stress the escaping: the escape byte, the byte
# right after it, 0xFF (the escape marker), plus ordinary and multi-byte ones.
TRICKY_CHARS = ["\x00", "\x01", "\xff", "\x7f", "a", "b", "\u0100", "\uffff", "\U0010ffff"]
TRICKY_BYTES = [0x00, 0x01, 0x02, 0x7F, 0xFE, 0xFF]

texts = st.text() | st.text(alphabet=st.sampled_from(TRICKY_CHARS))
binaries = st.binary() | st.lists(st.sampled_from(TRICKY_BYTES)).map(bytes)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(
    [-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 1, 2**63, 2**64 - 1]
)
floats = st.floats(allow_nan=False) | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 1.0, -1.0]
)
datetimes = st.datetimes(
    min_value=dt.datetime(2, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.timezones() | st.just(dt.UTC),
)
nones = st.none()


def norm(part: Any) -> Any:
    """A value that orders (and compares equal) exactly as the key encoding promises.

    Floats: -0.0 sorts just below 0.0 (both round trip, so they encode
    differently). Datetimes: by instant (Python's `==` between zones is
    False around DST folds, whatever the instants).
    """
    if isinstance(part, float):
        return (part, math.copysign(1.0, part))
    if isinstance(part, dt.datetime):
        return part - EPOCH
    return part


def normed(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(norm(part) for part in parts)


def compare(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


SCHEMAS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "str": st.tuples(texts),
    "bytes": st.tuples(binaries),
    "int": st.tuples(ints),
    "float": st.tuples(floats),
    "datetime": st.tuples(datetimes),
    "none": st.tuples(nones),
    "str_str_int_str": st.tuples(texts, texts, ints, texts),
    "str_bytes_float_datetime_int": st.tuples(texts, binaries, floats, datetimes, ints),
    "int_str_int": st.tuples(ints, texts, ints),
    "str_list": st.lists(texts, max_size=4).map(tuple),
    "bytes_list": st.lists(binaries, max_size=4).map(tuple),
}

any_part = texts | binaries | ints | floats | datetimes | nones


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
@examples(100)
@given(data=st.data())
def test_round_trip(schema: str, data: st.DataObject) -> None:
    parts = data.draw(SCHEMAS[schema])
    decoded = decode_key(encode_key(parts))
    assert normed(decoded) == normed(parts)
    assert [type(part) for part in decoded] == [
        dt.datetime if isinstance(part, dt.datetime) else type(part) for part in parts
    ]
    # The decoded tuple encodes to the same bytes again.
    assert encode_key(decoded) == encode_key(parts)


@given(parts=st.lists(any_part, max_size=6).map(tuple))
@examples(200)
def test_round_trip_any_mix(parts: tuple[Any, ...]) -> None:
    assert normed(decode_key(encode_key(parts))) == normed(parts)


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
@examples(200)
@given(data=st.data())
def test_byte_order_is_tuple_order(schema: str, data: st.DataObject) -> None:
    a = data.draw(SCHEMAS[schema])
    b = data.draw(SCHEMAS[schema])
    assert compare(encode_key(a), encode_key(b)) == compare(normed(a), normed(b))


@pytest.mark.parametrize("schema", ["str", "bytes", "str_str_int_str", "str_list"])
@examples(100)
@given(data=st.data())
def test_order_of_a_sorted_list(schema: str, data: st.DataObject) -> None:
    values = data.draw(st.lists(SCHEMAS[schema], min_size=2, max_size=20))
    by_bytes = sorted(values, key=encode_key)
    assert [normed(v) for v in by_bytes] == sorted(normed(v) for v in values)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        (("a",), ("a\x00",)),
        (("a\x00",), ("a\x00\x00",)),
        (("a\x00",), ("a\x01",)),
        (("a\x00z",), ("a\x01",)),
        (("a",), ("a", "")),
        (("a", "z"), ("a\x00",)),
        (("a\xff",), ("a\u0100",)),
        (("\uffff",), ("\U0010ffff",)),
        ((b"a",), (b"a\x00",)),
        ((b"a\x00\xff",), (b"a\x01",)),
        ((b"a\xff",), (b"a\xff\x00",)),
        ((b"\x00",), (b"\x00\x00",)),
        ((-(2**63),), (-1,)),
        ((-1,), (0,)),
        ((2**63 - 1,), (2**63,)),
        ((2**64 - 2,), (2**64 - 1,)),
        ((-math.inf,), (-1e308,)),
        ((-0.0,), (0.0,)),
        ((5e-324,), (1.0,)),
        ((1e308,), (math.inf,)),
        ((dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),), (EPOCH,)),
    ],
)
def test_edge_orders(smaller: tuple[Any, ...], larger: tuple[Any, ...]) -> None:
    assert encode_key(smaller) < encode_key(larger)
    assert normed(decode_key(encode_key(smaller))) == normed(smaller)
    assert normed(decode_key(encode_key(larger))) == normed(larger)


def test_types_sort_none_numbers_datetimes_str_bytes() -> None:
    ordered = [
        (None,),
        (-(2**63),),
        (2**64 - 1,),
        (-math.inf,),
        (math.inf,),
        (dt.datetime(1, 1, 1, tzinfo=dt.UTC),),
        ("",),
        ("\U0010ffff" * 3,),
        (b"",),
        (b"\xff" * 3,),
    ]
    keys = [encode_key(parts) for parts in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_same_instant_in_other_zones_is_the_same_key() -> None:
    utc = dt.datetime(2024, 3, 10, 12, 0, tzinfo=dt.UTC)
    plus2 = utc.astimezone(dt.timezone(dt.timedelta(hours=2)))
    minus5 = utc.astimezone(dt.timezone(dt.timedelta(hours=-5, minutes=-30)))
    assert encode_key((utc,)) == encode_key((plus2,)) == encode_key((minus5,))
    assert decode_key(encode_key((plus2,))) == (utc,)


@examples(200)
@given(
    cause_type=texts,
    cause=texts,
    rest=st.lists(texts | ints | binaries, max_size=3).map(tuple),
    suffix=texts.filter(bool),
)
@example(cause_type="upload", cause="u1", rest=("x",), suffix="x")
@example(cause_type="upload", cause="u1", rest=(), suffix="\x00")
@example(cause_type="upload", cause="u1", rest=("id",), suffix="\x00\x00")
@example(cause_type="upload", cause="u1\x00", rest=(), suffix="\xff")
@example(cause_type="", cause="", rest=(), suffix="\x01")
def test_prefix_scans_do_not_bleed(
    cause_type: str, cause: str, rest: tuple[Any, ...], suffix: str
) -> None:
    prefix = encode_key((cause_type, cause))
    end = prefix_end(prefix)
    assert end is not None
    inside = encode_key((cause_type, cause, *rest))
    assert inside.startswith(prefix)
    assert prefix <= inside < end
    other = encode_key((cause_type, cause + suffix, *rest))
    assert not other.startswith(prefix)
    assert not prefix <= other < end


@given(prefix=st.binary(max_size=8), tail=st.binary(max_size=8))
@examples(100)
def test_prefix_end_bounds_every_extension(prefix: bytes, tail: bytes) -> None:
    end = prefix_end(prefix)
    if end is None:
        assert prefix.strip(b"\xff") == b""
    else:
        assert prefix + tail < end
        assert not end.startswith(prefix)


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [
        ((math.nan,), ValueError, "NaN"),
        (("a", -math.nan), ValueError, "NaN"),
        ((True,), TypeError, "bool"),
        ((False,), TypeError, "bool"),
        ((dt.datetime(2024, 1, 1),), ValueError, "naive"),
        ((dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),), ValueError, "range"),
        (
            (dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-2))),),
            ValueError,
            "range",
        ),
        ((2**64,), ValueError, "range"),
        ((-(2**63) - 1,), ValueError, "range"),
        ((10**30,), ValueError, "range"),
        (([1],), TypeError, "list"),
        (({"a": 1},), TypeError, "dict"),
        (((1, 2),), TypeError, "tuple"),
        (({1},), TypeError, "set"),
        ((object(),), TypeError, "object"),
        ((decimal.Decimal(1),), TypeError, "Decimal"),
        ((dt.date(2024, 1, 1),), TypeError, "date"),
        ((dt.timedelta(1),), TypeError, "timedelta"),
        ((1j,), TypeError, "complex"),
    ],
)
def test_unencodable_parts_raise(
    parts: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        encode_key(parts)


class _NoOffset(dt.tzinfo):
    """A tzinfo that does not know its offset: such a datetime is naive."""

    def utcoffset(self, value: dt.datetime | None) -> None:
        return None

    def dst(self, value: dt.datetime | None) -> None:
        return None

    def tzname(self, value: dt.datetime | None) -> str:
        return "unknown"


def test_tzinfo_without_offset_counts_as_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        encode_key((dt.datetime(2024, 1, 1, tzinfo=_NoOffset()),))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x99",  # unknown tag
        b"\x00",  # unknown tag
        b"\x11\x00\x00",  # truncated int
        b"\x10" + b"\x80" + b"\x00" * 7,  # non-negative int under the negative tag
        b"\x12\x00\x00",  # truncated float
        b"\x12" + b"\x00" * 8,  # NaN bit pattern
        b"\x20\x00",  # truncated datetime
        b"\x20" + b"\xff" * 8,  # datetime after year 9999
        b"\x20" + b"\x00" * 8,  # datetime before year 1
        b"\x30abc",  # unterminated string
        b"\x30abc\x00",  # half a terminator
        b"\x30a\x00\x05",  # bad escape
        b"\x30\xff\xfe\x00\x00",  # not UTF-8
        b"\x30\xed\xa0\x80\x00\x00",  # UTF-8 of a surrogate
        b"\x31ab\x00\x01",  # bad escape in bytes
        b"\x30a\x00\x00\x77",  # trailing unknown tag
    ],
)
def test_decode_garbage_raises_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        decode_key(garbage)


@examples(600)
@given(
    data=st.binary(max_size=40)
    | st.lists(
        st.sampled_from([b"\x05", b"\x10", b"\x11", b"\x12", b"\x20", b"\x30", b"\x31"])
        | st.binary(min_size=1, max_size=9)
        | st.sampled_from([b"\x00\x00", b"\x00\xff", b"\x00"]),
        max_size=8,
    ).map(b"".join)
)
def test_decode_is_strict_inverse_of_encode(data: bytes) -> None:
    """Any bytes either fail with ValueError or are exactly the encoding of what they decode to."""
    try:
        parts = decode_key(data)
    except ValueError:
        return
    assert encode_key(parts) == data


@pytest.mark.parametrize(
    "parts",
    [
        ("upload", "u1", "01a24d"),
        ("upload", 5, "id"),
        ("s", "w\x00z", 2**40, "i\x00d"),
        ("a", b"b\x00\x00", "q"),
        ("a", 1.5, "é"),
        ("a", -3, ""),
    ],
)
def test_last_str_reads_the_last_part_without_decoding_the_others(parts: tuple[Any, ...]) -> None:
    assert last_str(encode_key(parts)) == parts[-1].encode()
    assert decode_key(encode_key(parts))[-1] == parts[-1]


def test_last_str_of_a_key_not_ending_with_a_str_is_none() -> None:
    assert last_str(encode_key(("a", 3))) is None
    assert last_str(encode_key(("a", b"x"))) is None
    assert last_str(b"\x30abc") is None  # no terminator
    assert last_str(b"\x99") is None  # unknown tag
