"""Register codec: decode and encode Modbus points, and the planner that groups them into reads."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter

from floorconsole.core.points import BIT_TABLES, REGISTER_WIDTH, TABLES, ModbusPoint
from floorconsole.core.validate import value_kind

REGISTER_TABLES = ("hr", "ir")
# Modbus application protocol v1.1b3: FC 3/4 read at most 125 registers, FC 1/2 at most 2000 bits.
MAX_REGISTERS = 125
MAX_BITS = 2000
DEFAULT_MAX_GAP = 8

# Modbus exception codes, worded as the specification words them.
EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    7: "NEGATIVE ACKNOWLEDGE",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}

# Registers are always big-endian within a word; word_order only says which word comes first.
_STRUCT_CHAR = {
    "bool": "H",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "float64": "d",
}

_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_FLOAT_TYPES = ("float32", "float64")


class DecodeError(ValueError):
    """The device sent something that is not a usable value (NaN, ±inf, a short reply)."""


class DecodeProblem:
    """Stands in place of a value in a decoded block when that one point could not be decoded.

    A marker rather than an exception, so one bad float does not cost its neighbours their
    values; the caller turns it into BAD DECODE_ERROR with `message` as the detail.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"DecodeProblem({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DecodeProblem) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)


def exception_text(code: int) -> str:
    """'exception 2 ILLEGAL DATA ADDRESS' for a Modbus exception code."""
    return f"exception {code} {EXCEPTION_NAMES.get(code, 'UNKNOWN')}"


def value_text(v: float | bool | None) -> str:
    """A value written to (or read back from) a point, as the plant file writes it: true/false,
    or the number."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return "none" if v is None else f"{v:.6g}"


def point_label(point: ModbusPoint) -> str:
    """'hr:100' — how the plant file writes the address."""
    return f"{point.table}:{point.address}"


def _word_indices(point: ModbusPoint) -> list[int]:
    """Offsets of the point's words, most significant first."""
    width = REGISTER_WIDTH[point.type]
    if point.word_order == "little":
        return list(range(width - 1, -1, -1))
    return list(range(width))


def decode_point(point: ModbusPoint, data: Sequence[int] | Sequence[bool]) -> float | bool:
    """The engineering value of one point from its registers (or its bit), data[0] first.

    hr/ir registers are raw 16-bit words (0..65535). Raises DecodeError for a short reply, a
    word outside 0..65535, or a float that is NaN or infinite (the caller makes it BAD).
    """
    if point.table in BIT_TABLES:
        if len(data) < 1:
            raise DecodeError(f"no bit for {point_label(point)}")
        return bool(data[0])
    width = REGISTER_WIDTH[point.type]
    if len(data) < width:
        raise DecodeError(
            f"{point.type} at {point_label(point)} needs {width} registers, got {len(data)}"
        )
    if point.type == "bool":
        return data[0] != 0
    words = [data[i] for i in _word_indices(point)]
    try:
        raw = struct.unpack(">" + _STRUCT_CHAR[point.type], struct.pack(f">{width}H", *words))[0]
    except struct.error as e:
        raise DecodeError(
            f"{point.type} at {point_label(point)}: registers {list(words)} are not 16-bit words"
        ) from e
    value = raw * point.scale + point.offset
    if not math.isfinite(value):
        raise DecodeError(_non_finite(point, raw))
    return float(value)


def _non_finite(point: ModbusPoint, raw: float) -> str:
    return (
        f"{point.type} at {point_label(point)} is {raw!r}"
        if not math.isfinite(raw)
        else (
            f"{point.type} at {point_label(point)}: {raw!r} * {point.scale:g} + {point.offset:g} "
            f"is not finite"
        )
    )


def encode(value: float | bool | int, point: ModbusPoint) -> list[int]:
    """Registers (or one bit as 0/1) that decode_point turns back into `value`.

    The inverse of scale/offset is applied and integers are rounded to the nearest raw value.
    Raises ValueError, naming the point and the range, for a value the type cannot hold.
    """
    label = point_label(point)
    if point.table in BIT_TABLES or point.type == "bool":
        if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
            return [1 if value else 0]
        raise ValueError(f"{label} is a bool point; expected true/false (or 1/0), got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{label} is {point.type}; expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{label}: {value!r} is not a finite number")
    raw: float | int = (value - point.offset) / point.scale
    if point.type in _INT_RANGE:
        lo, hi = _INT_RANGE[point.type]
        if not math.isfinite(raw) or not lo - 0.5 <= raw < hi + 0.5:
            raise ValueError(_range_message(value, point, lo, hi))
        raw = min(hi, max(lo, round(raw)))
    elif point.type == "float32":
        if not math.isfinite(raw) or abs(raw) > 3.4028234663852886e38:
            raise ValueError(
                f"{label}: {value!r} is outside the float32 range (±3.4e38{_scaled_note(point)})"
            )
    elif not math.isfinite(raw):
        raise ValueError(f"{label}: {value!r} is outside the float64 range{_scaled_note(point)}")
    width = REGISTER_WIDTH[point.type]
    words = struct.unpack(f">{width}H", struct.pack(">" + _STRUCT_CHAR[point.type], raw))
    out = [0] * width
    for i, w in zip(_word_indices(point), words, strict=True):
        out[i] = w
    return out


def write_value(value: object, point: ModbusPoint) -> float | bool:
    """A value a write may send to point: true/false, or a number its type holds (as a float).

    Raises ValueError saying why not; the one check of a rule's on/off and a write by hand."""
    if not isinstance(value, (bool, int, float)):
        raise ValueError(f"expected true/false or a number, got {value_kind(value)}")
    encode(value, point)
    return value if isinstance(value, bool) else float(value)


def _scaled_note(point: ModbusPoint) -> str:
    return (
        f" after scale {point.scale:g}, offset {point.offset:g}"
        if (point.scale != 1.0 or point.offset != 0.0)
        else ""
    )


def _range_message(value: float, point: ModbusPoint, lo: int, hi: int) -> str:
    if point.scale == 1.0 and point.offset == 0.0:
        return f"{point_label(point)}: {value!r} is outside the {point.type} range {lo}..{hi}"
    return (
        f"{point_label(point)}: {value!r} is outside what {point.type} holds with scale "
        f"{point.scale:g}, offset {point.offset:g}: "
        f"{_fmt(lo * point.scale + point.offset)}..{_fmt(hi * point.scale + point.offset)}"
    )


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _tuple_getter(indices: list[int]) -> Callable[[Sequence[object]], tuple[object, ...]]:
    """itemgetter that returns a tuple even for one index."""
    if len(indices) == 1:
        i = indices[0]
        return lambda data: (data[i],)
    return itemgetter(*indices)


class ReadBlock:
    """One read request (table, start, count) and how to decode every point it covers.

    All decoding work that does not depend on the data is done here once: which registers
    each point uses in which order, one struct format for the whole block, and which points
    need scaling, a bool test or a finiteness check. decode() is then one pack, one unpack
    and one pass over the values.
    """

    __slots__ = (
        "table",
        "start",
        "count",
        "keys",
        "points",
        "_get",
        "_pack",
        "_unpack",
        "_scales",
        "_offsets",
        "_bool_idx",
        "_float_idx",
        "_plain",
        "_is_bits",
    )

    def __init__(
        self, table: str, start: int, count: int, entries: Sequence[tuple[str, ModbusPoint]]
    ) -> None:
        if table not in TABLES:
            raise ValueError(f"table {table!r} is not one of {', '.join(TABLES)}")
        if not entries:
            raise ValueError("a read block needs at least one point")
        self.table = table
        self.start = start
        self.count = count
        self.keys: tuple[str, ...] = tuple(k for k, _ in entries)
        self.points: tuple[ModbusPoint, ...] = tuple(p for _, p in entries)
        self._is_bits = table in BIT_TABLES
        limit = MAX_BITS if self._is_bits else MAX_REGISTERS
        for p in self.points:
            if p.table != table or p.address < start or p.address + p.width > start + count:
                raise ValueError(f"{point_label(p)} ({p.type}) is not inside {self.label}")
        if not 1 <= count <= limit:
            raise ValueError(f"{self.label}: {count} is more than one request may read ({limit})")
        if self._is_bits:
            self._get = _tuple_getter([p.address - start for p in self.points])
            return
        order: list[int] = []
        chars = []
        for p in self.points:
            base = p.address - start
            order.extend(base + i for i in _word_indices(p))
            chars.append(_STRUCT_CHAR[p.type])
        self._get = _tuple_getter(order)
        self._pack = struct.Struct(f">{len(order)}H").pack
        self._unpack = struct.Struct(">" + "".join(chars)).unpack
        self._scales = tuple(1.0 if p.type == "bool" else p.scale for p in self.points)
        self._offsets = tuple(0.0 if p.type == "bool" else p.offset for p in self.points)
        self._bool_idx = tuple(i for i, p in enumerate(self.points) if p.type == "bool")
        self._float_idx = tuple(i for i, p in enumerate(self.points) if p.type in _FLOAT_TYPES)
        # Whole numbers as read (no scale, no offset, no float points): float() of each, in
        # C, gives what r * 1.0 + 0.0 gives, at a third of the cost.
        self._plain = not self._float_idx and all(
            s == 1.0 and o == 0.0 for s, o in zip(self._scales, self._offsets, strict=True)
        )

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.start + self.count

    @property
    def label(self) -> str:
        """'hr:0-9', or 'hr:100' for a one-address block."""
        if self.count == 1:
            return f"{self.table}:{self.start}"
        return f"{self.table}:{self.start}-{self.end - 1}"

    @property
    def splittable(self) -> bool:
        return len(self.points) > 1

    def __repr__(self) -> str:
        return f"ReadBlock({self.label}, {len(self.points)} point(s))"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ReadBlock)
            and other.table == self.table
            and other.start == self.start
            and other.count == self.count
            and other.keys == self.keys
            and other.points == self.points
        )

    def __hash__(self) -> int:
        return hash((self.table, self.start, self.count, self.keys))

    def decode(self, data: Sequence[int] | Sequence[bool]) -> list[float | bool | DecodeProblem]:
        """Values of the block's points, in the order of `keys`, from the data of one read.

        A point that cannot be decoded gets a DecodeProblem in its place; its neighbours keep
        their values. A reply shorter than the request makes every point a DecodeProblem.
        """
        if len(data) < self.count:
            problem = DecodeProblem(
                f"short reply for {self.label}: {len(data)} of "
                f"{self.count} {'bits' if self._is_bits else 'registers'}"
            )
            return [problem] * len(self.points)
        if self._is_bits:
            return list(map(bool, self._get(data)))
        try:
            raw = self._unpack(self._pack(*self._get(data)))
        except struct.error:
            return self._decode_slowly(data)
        values: list[float | bool | DecodeProblem]
        if self._plain:
            values = list(map(float, raw))
        else:
            values = [r * s + o for r, s, o in zip(raw, self._scales, self._offsets, strict=True)]
        for i in self._bool_idx:
            values[i] = raw[i] != 0
        for i in self._float_idx:
            v = raw[i] * self._scales[i] + self._offsets[i]
            if v - v != 0.0:  # NaN or ±inf: both give NaN here, and NaN != 0
                values[i] = DecodeProblem(_non_finite(self.points[i], raw[i]))
        return values

    def _decode_slowly(
        self, data: Sequence[int] | Sequence[bool]
    ) -> list[float | bool | DecodeProblem]:
        """Point by point, for data the fast path refused (a word outside 0..65535)."""
        out: list[float | bool | DecodeProblem] = []
        for p in self.points:
            base = p.address - self.start
            try:
                out.append(decode_point(p, data[base : base + p.width]))
            except DecodeError as e:
                out.append(DecodeProblem(str(e)))
        return out


def plan_reads(
    entries: Iterable[tuple[str, ModbusPoint]],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> list[ReadBlock]:
    """Group one device's points into as few reads as the limits allow.

    Points of one table whose addresses are at most `max_gap` unused addresses apart share a
    request, as long as the request stays within max_registers (hr, ir) or max_bits (co, di).
    Blocks come back by table (hr, ir, co, di), then by address.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, got {max_gap}")
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, got {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_BITS}, got {max_bits}")
    by_table: dict[str, list[tuple[str, ModbusPoint]]] = {t: [] for t in TABLES}
    for key, point in entries:
        by_table[point.table].append((key, point))
    blocks: list[ReadBlock] = []
    for table in ("hr", "ir", "co", "di"):
        items = sorted(by_table[table], key=lambda e: (e[1].address, e[1].width))
        limit = max_bits if table in BIT_TABLES else max_registers
        group: list[tuple[str, ModbusPoint]] = []
        start = end = 0
        for key, point in items:
            p_end = point.address + point.width
            if group and point.address - end <= max_gap and max(end, p_end) - start <= limit:
                group.append((key, point))
                end = max(end, p_end)
                continue
            if group:
                blocks.append(ReadBlock(table, start, end - start, group))
            group, start, end = [(key, point)], point.address, p_end
        if group:
            blocks.append(ReadBlock(table, start, end - start, group))
    return blocks


def split_block(block: ReadBlock) -> list[ReadBlock]:
    """Two blocks, each with half of the points and tight bounds; a one-point block as is.

    For a block that got an exception response: reading the halves (and their halves) finds
    the address the device refuses without taking its neighbours down with it.
    """
    if not block.splittable:
        return [block]
    entries = sorted(zip(block.keys, block.points, strict=True), key=lambda e: e[1].address)
    half = len(entries) // 2
    return [_tight(block.table, entries[:half]), _tight(block.table, entries[half:])]


def _tight(table: str, entries: list[tuple[str, ModbusPoint]]) -> ReadBlock:
    start = min(p.address for _, p in entries)
    end = max(p.address + p.width for _, p in entries)
    return ReadBlock(table, start, end - start, entries)
