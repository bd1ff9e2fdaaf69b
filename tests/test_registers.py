"""Register codec and read planner (pure: no sockets)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from floorconsole.core.config import ModbusPoint
from floorconsole.core.registers import (
    MAX_BITS,
    MAX_REGISTERS,
    DecodeError,
    DecodeProblem,
    ReadBlock,
    decode_point,
    encode,
    exception_text,
    plan_reads,
    split_block,
)


def hr(
    address: int,
    type_: str = "uint16",
    word_order: str = "big",
    scale: float = 1.0,
    offset: float = 0.0,
    table: str = "hr",
) -> ModbusPoint:
    return ModbusPoint(
        device="d",
        table=table,
        address=address,
        type=type_,
        word_order=word_order,
        scale=scale,
        offset=offset,
    )


# (type, value, big-endian words): word_order little is the same words, reversed.
KNOWN = [
    ("int16", -2.0, [0xFFFE]),
    ("int16", 32767.0, [0x7FFF]),
    ("uint16", 65535.0, [0xFFFF]),
    ("int32", -2.0, [0xFFFF, 0xFFFE]),
    ("int32", 305419896.0, [0x1234, 0x5678]),
    ("uint32", 4294967295.0, [0xFFFF, 0xFFFF]),
    ("uint32", 305419896.0, [0x1234, 0x5678]),
    ("float32", 1.0, [0x3F80, 0x0000]),
    ("float32", -12.5, [0xC148, 0x0000]),
    ("float64", 1.0, [0x3FF0, 0, 0, 0]),
    ("float64", 1 / 3, list(struct.unpack(">4H", struct.pack(">d", 1 / 3)))),
]


@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize(("type_", "value", "big_words"), KNOWN)
def test_decode_and_encode_known_words(
    type_: str, value: float, big_words: list[int], word_order: str
) -> None:
    words = big_words if word_order == "big" or len(big_words) == 1 else big_words[::-1]
    p = hr(0, type_, word_order)
    got = decode_point(p, words)
    assert got == value and isinstance(got, float)
    assert encode(value, p) == words
    block = ReadBlock("hr", 0, len(words), [("s", p)])
    assert block.decode(words) == [value]


def test_little_word_order_puts_least_significant_word_first() -> None:
    assert decode_point(hr(0, "uint32", "little"), [0x0001, 0x0002]) == 0x0002_0001
    assert decode_point(hr(0, "uint32", "big"), [0x0001, 0x0002]) == 0x0001_0002
    # bytes inside each word stay big-endian
    assert decode_point(hr(0, "uint32", "little"), [0x1234, 0x0000]) == 0x1234


def test_bool_in_a_register_is_nonzero_and_bits_are_bits() -> None:
    assert decode_point(hr(0, "bool"), [0]) is False
    assert decode_point(hr(0, "bool"), [0x8000]) is True
    assert decode_point(hr(0, "bool", table="co"), [True]) is True
    assert decode_point(hr(0, "bool", table="di"), [False]) is False
    block = ReadBlock("hr", 0, 2, [("a", hr(0, "bool")), ("b", hr(1, "bool"))])
    assert block.decode([3, 0]) == [True, False]
    # bools are not scaled
    assert decode_point(hr(0, "bool", scale=10.0, offset=5.0), [1]) is True


def test_scale_and_offset() -> None:
    p = hr(0, "int16", scale=0.1, offset=-5.0)
    assert decode_point(p, [250]) == pytest.approx(20.0)
    assert decode_point(p, [0xFFF6]) == pytest.approx(-6.0)  # raw -10
    assert encode(20.0, p) == [250]
    assert encode(-6.0, p) == [0xFFF6]
    block = ReadBlock("hr", 0, 1, [("s", p)])
    assert block.decode([250]) == [pytest.approx(20.0)]
    f = hr(0, "float32", "little", scale=2.0, offset=1.0)
    assert decode_point(f, encode(7.0, f)) == 7.0
    assert decode_point(f, [0x0000, 0x4040]) == 7.0  # raw 3.0


@pytest.mark.parametrize("type_", ["float32", "float64"])
@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_decode_problems_not_crashes(type_: str, raw: float) -> None:
    fmt = ">f" if type_ == "float32" else ">d"
    words = list(struct.unpack(f">{struct.calcsize(fmt) // 2}H", struct.pack(fmt, raw)))
    p = hr(2, type_)
    with pytest.raises(DecodeError, match=rf"{type_} at hr:2 is"):
        decode_point(p, words)
    # in a block, only that point is lost
    n = len(words)
    block = ReadBlock(
        "hr", 0, 2 + n + 1, [("a", hr(0, "int16")), ("f", p), ("b", hr(2 + n, "uint16"))]
    )
    values = block.decode([7, 0, *words, 9])
    assert values[0] == 7.0 and values[2] == 9.0
    assert isinstance(values[1], DecodeProblem) and f"{type_} at hr:2 is" in values[1].message


def test_scaled_float_overflow_is_a_decode_problem() -> None:
    p = hr(0, "float64", scale=1e300)
    words = encode(1e300, hr(0, "float64"))
    with pytest.raises(DecodeError, match="not finite"):
        decode_point(p, words)
    assert isinstance(ReadBlock("hr", 0, 4, [("s", p)]).decode(words)[0], DecodeProblem)


def test_short_reply_is_a_decode_problem_for_every_point() -> None:
    block = ReadBlock("hr", 0, 4, [("a", hr(0)), ("b", hr(2, "int32"))])
    values = block.decode([1, 2])
    assert all(isinstance(v, DecodeProblem) for v in values)
    assert "short reply for hr:0-3: 2 of 4 registers" in values[0].message
    with pytest.raises(DecodeError, match="needs 2 registers, got 1"):
        decode_point(hr(0, "float32"), [1])


@pytest.mark.parametrize(
    ("type_", "bad", "range_text"),
    [
        ("int16", 32768, "-32768..32767"),
        ("int16", -32769, "-32768..32767"),
        ("uint16", -1, "0..65535"),
        ("uint16", 65536, "0..65535"),
        ("int32", 2**31, "-2147483648..2147483647"),
        ("uint32", 2**32, "0..4294967295"),
    ],
)
def test_encode_out_of_range_names_point_and_range(type_: str, bad: int, range_text: str) -> None:
    with pytest.raises(
        ValueError,
        match=rf"hr:7: {bad} is outside the {type_} range "
        rf"{range_text}",
    ):
        encode(bad, hr(7, type_))


def test_encode_rejects_what_the_type_cannot_hold() -> None:
    with pytest.raises(ValueError, match=r"with scale 0.1, offset 0: -3276.8..3276.7"):
        encode(4000.0, hr(0, "int16", scale=0.1))
    with pytest.raises(ValueError, match="outside the float32 range"):
        encode(1e39, hr(0, "float32"))
    with pytest.raises(ValueError, match="not a finite number"):
        encode(math.nan, hr(0, "float64"))
    with pytest.raises(ValueError, match="expected a number"):
        encode(True, hr(0, "int16"))
    with pytest.raises(ValueError, match="expected a number"):
        encode("12", hr(0, "int16"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bool point"):
        encode(2, hr(0, "bool", table="co"))
    assert encode(True, hr(0, "bool", table="co")) == [1]
    assert encode(0, hr(0, "bool")) == [0]
    # rounding to the nearest raw value, not truncation
    assert encode(0.26, hr(0, "int16", scale=0.1)) == [3]
    assert encode(-0.26, hr(0, "int16", scale=0.1)) == [0xFFFD]


INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@given(
    st.sampled_from(sorted(INT_RANGES)),
    st.sampled_from(["big", "little"]),
    st.data(),
    st.sampled_from([1.0, 0.1, 0.01, 0.5, 2.0, -1.0]),
    st.sampled_from([0.0, -40.0, 273.15, 1000.0]),
)
def test_integer_round_trip(
    type_: str, word_order: str, data: st.DataObject, scale: float, offset: float
) -> None:
    lo, hi = INT_RANGES[type_]
    raw = data.draw(st.integers(lo, hi))
    p = hr(10, type_, word_order, scale, offset)
    value = raw * scale + offset
    words = encode(value, p)
    assert all(0 <= w <= 0xFFFF for w in words) and len(words) == p.width
    assert decode_point(p, words) == pytest.approx(value, rel=1e-12, abs=1e-9)
    assert encode(decode_point(p, words), p) == words


@given(
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from(["big", "little"])
)
def test_float32_round_trip_is_exact(value: float, word_order: str) -> None:
    p = hr(0, "float32", word_order)
    assert decode_point(p, encode(value, p)) == value


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float64_round_trip_is_exact(value: float, word_order: str) -> None:
    p = hr(0, "float64", word_order)
    assert decode_point(p, encode(value, p)) == value


@given(
    st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
    st.sampled_from(["float32", "float64", "int32", "uint32"]),
    st.sampled_from(["big", "little"]),
)
def test_words_round_trip_through_value(words: list[int], type_: str, word_order: str) -> None:
    p = hr(0, type_, word_order)
    words = words[: p.width]
    try:
        value = decode_point(p, words)
    except DecodeError:
        assume(False)
        return
    # -0.0 * scale + offset comes back as +0.0: the only value that does not round-trip
    assert encode(value, p) == words or (value == 0.0 and type_.startswith("float"))


TYPES = ["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]


@st.composite
def register_layouts(draw: st.DrawFn) -> tuple[list[tuple[str, ModbusPoint]], list[int]]:
    """Non-overlapping points with random types, orders, scales and gaps, and register data."""
    entries = []
    address = draw(st.integers(0, 20))
    for i in range(draw(st.integers(1, 12))):
        type_ = draw(st.sampled_from(TYPES))
        p = hr(
            address,
            type_,
            draw(st.sampled_from(["big", "little"])),
            draw(st.sampled_from([1.0, 0.1, 3.0])),
            draw(st.sampled_from([0.0, -7.5])),
        )
        entries.append((f"s{i}", p))
        address += p.width + draw(st.integers(0, 3))
    data = draw(st.lists(st.integers(0, 0xFFFF), min_size=address, max_size=address))
    return entries, data


@given(register_layouts())
def test_block_decode_agrees_with_decode_point(
    layout: tuple[list[tuple[str, ModbusPoint]], list[int]],
) -> None:
    entries, data = layout
    for block in plan_reads(entries, max_gap=3):
        values = block.decode(data[block.start : block.end])
        assert len(values) == len(block.keys)
        for point, value in zip(block.points, values, strict=True):
            words = data[point.address : point.address + point.width]
            try:
                expected = decode_point(point, words)
            except DecodeError as e:
                assert value == DecodeProblem(str(e))
                continue
            assert type(value) is type(expected)
            assert value == expected or (math.isnan(expected) and math.isnan(value))


def test_bit_block_decodes_each_bit() -> None:
    entries = [(f"c{a}", hr(a, "bool", table="co")) for a in (0, 3, 9)]
    [block] = plan_reads(entries)
    assert (block.table, block.start, block.count) == ("co", 0, 10)
    bits = [False] * 16
    bits[3] = bits[9] = True
    assert block.decode(bits) == [False, True, True]
    assert all(isinstance(v, bool) for v in block.decode(bits))


# -- planner ---------------------------------------------------------------------------------


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(b.table, b.start, b.count) for b in blocks]


def test_planner_joins_small_gaps_and_splits_large_ones() -> None:
    entries = [("a", hr(0, "float32")), ("b", hr(10)), ("c", hr(20)), ("d", hr(40))]
    # gap a..b is 8 (2..9), b..c is 9, c..d is 19
    assert spans(plan_reads(entries)) == [("hr", 0, 11), ("hr", 20, 1), ("hr", 40, 1)]
    assert spans(plan_reads(entries, max_gap=9)) == [("hr", 0, 21), ("hr", 40, 1)]
    assert spans(plan_reads(entries, max_gap=0)) == [
        ("hr", 0, 2),
        ("hr", 10, 1),
        ("hr", 20, 1),
        ("hr", 40, 1),
    ]
    # adjacent points always share a block, even with max_gap 0
    assert spans(plan_reads([("a", hr(0, "int32")), ("b", hr(2))], max_gap=0)) == [("hr", 0, 3)]


def test_planner_keeps_to_the_register_limit() -> None:
    assert spans(plan_reads([("a", hr(0)), ("b", hr(124))], max_gap=200)) == [
        ("hr", 0, MAX_REGISTERS)
    ]
    assert spans(plan_reads([("a", hr(0)), ("b", hr(125))], max_gap=200)) == [
        ("hr", 0, 1),
        ("hr", 125, 1),
    ]
    # a float32 at 124 would make the request 126 long
    assert spans(plan_reads([("a", hr(0)), ("b", hr(124, "float32"))], max_gap=200)) == [
        ("hr", 0, 1),
        ("hr", 124, 2),
    ]
    many = [(f"s{i}", hr(i * 2, "float32")) for i in range(200)]  # 400 contiguous registers
    blocks = plan_reads(many)
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    assert sum(len(b.points) for b in blocks) == 200
    assert spans(blocks)[:2] == [("hr", 0, 124), ("hr", 124, 124)]
    assert spans(plan_reads(many, max_registers=10))[0] == ("hr", 0, 10)


def test_planner_keeps_to_the_bit_limit_and_tables_apart() -> None:
    entries = [
        ("c0", hr(0, "bool", table="co")),
        ("c1", hr(1999, "bool", table="co")),
        ("c2", hr(2000, "bool", table="co")),
        ("d0", hr(0, "bool", table="di")),
        ("i0", hr(0, table="ir")),
        ("h0", hr(0)),
    ]
    assert spans(plan_reads(entries, max_gap=5000)) == [
        ("hr", 0, 1),
        ("ir", 0, 1),
        ("co", 0, MAX_BITS),
        ("co", 2000, 1),
        ("di", 0, 1),
    ]


def test_planner_orders_points_and_keeps_keys_with_points() -> None:
    entries = [("z", hr(5, "int16")), ("y", hr(1, "float32")), ("x", hr(3))]
    [block] = plan_reads(entries)
    assert block.keys == ("y", "x", "z")
    assert [p.address for p in block.points] == [1, 3, 5]
    assert block.label == "hr:1-5"
    assert plan_reads([]) == []


def test_planner_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([], max_gap=-1)
    with pytest.raises(ValueError, match="max_registers must be 1..125"):
        plan_reads([], max_registers=126)
    with pytest.raises(ValueError, match="max_bits must be 1..2000"):
        plan_reads([], max_bits=2001)


def test_read_block_checks_its_points() -> None:
    with pytest.raises(ValueError, match=r"hr:9 \(float32\) is not inside hr:0-9"):
        ReadBlock("hr", 0, 10, [("a", hr(9, "float32"))])
    with pytest.raises(ValueError, match="more than one request may read"):
        ReadBlock("hr", 0, 126, [("a", hr(0))])
    with pytest.raises(ValueError, match="at least one point"):
        ReadBlock("hr", 0, 1, [])


def test_split_halves_down_to_single_points() -> None:
    entries = [(f"s{a}", hr(a)) for a in (0, 1, 2, 5, 6)]
    [block] = plan_reads(entries)
    left, right = split_block(block)
    assert spans([left, right]) == [("hr", 0, 2), ("hr", 2, 5)]
    assert left.keys == ("s0", "s1") and right.keys == ("s2", "s5", "s6")
    # recursive splitting ends in one block per point, each exactly as wide as its point
    work, singles = [block], []
    while work:
        b = work.pop()
        parts = split_block(b)
        if parts == [b]:
            assert not b.splittable
            singles.append(b)
        else:
            assert len(parts) == 2
            work.extend(parts)
    assert sorted(spans(singles)) == [("hr", a, 1) for a in (0, 1, 2, 5, 6)]
    wide = ReadBlock("hr", 10, 4, [("f", hr(10, "float64"))])
    assert split_block(wide) == [wide]


def test_split_blocks_decode_like_the_whole() -> None:
    entries = [("a", hr(0, "int32", "little")), ("b", hr(4, "float32")), ("c", hr(7, "int16"))]
    [block] = plan_reads(entries)
    data = encode(-5, entries[0][1]) + [0, 0] + encode(2.5, entries[1][1]) + [0] + [0xFFFF]
    whole = dict(zip(block.keys, block.decode(data), strict=True))
    parts = {}
    for b in split_block(block):
        parts.update(zip(b.keys, b.decode(data[b.start : b.end]), strict=True))
    assert whole == parts == {"a": -5.0, "b": 2.5, "c": -1.0}


def test_exception_text() -> None:
    assert exception_text(2) == "exception 2 ILLEGAL DATA ADDRESS"
    assert exception_text(6) == "exception 6 SERVER DEVICE BUSY"
    assert exception_text(99) == "exception 99 UNKNOWN"


def test_block_decode_of_words_out_of_range_names_the_point() -> None:
    block = ReadBlock("hr", 0, 3, [("a", hr(0)), ("b", hr(1, "int32"))])
    a, b = block.decode([5, 70000, 1])
    assert a == 5.0
    assert isinstance(b, DecodeProblem) and "int32 at hr:1" in b.message
