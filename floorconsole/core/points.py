"""Modbus points: where a value lives in a device, and the one check of a point, shared by the
plant file's signals, the rules' write actions and writes by hand."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from floorconsole.core.validate import Problems, join

REGISTER_TYPES = ("bool", "int16", "uint16", "int32", "uint32", "float32", "float64")
TABLES = ("hr", "ir", "co", "di")
BIT_TABLES = ("co", "di")
WRITABLE_TABLES = ("co", "hr")
WORD_ORDERS = ("big", "little")
_TABLE_NAMES = {
    "hr": "holding registers",
    "ir": "input registers",
    "co": "coils",
    "di": "discrete inputs",
}
_ADDRESS = re.compile(r"^(hr|ir|co|di):(\d+)$")


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    device: str
    table: str  # hr | ir | co | di
    address: int
    type: str
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        """Registers (or bits, for co/di) this point occupies."""
        return register_width(self.type) if self.table in ("hr", "ir") else 1


REGISTER_WIDTH = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}


def register_width(type_name: str) -> int:
    """Registers a value of this type occupies."""
    return REGISTER_WIDTH[type_name]


def parse_address(text: str) -> tuple[str, int]:
    """'hr:0' -> ('hr', 0). Raises ValueError naming the accepted form."""
    m = _ADDRESS.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(
            f'{text!r} is not an address like "hr:0" (hr | ir | co | di, then the 0-based address)'
        )
    addr = int(m.group(2))
    if addr > 65535:
        raise ValueError(f"{text!r}: address {addr} is past 65535")
    return m.group(1), addr


def read_point(
    c: Problems, t: Mapping[str, Any], path: str, device: str | None, *, writable: bool
) -> ModbusPoint | None:
    """The point described by t's address, type, word_order, scale and offset, or None after
    recording every problem under `path`.

    writable: the point is written (a rule's write action, a write by hand): only co and hr,
    and a register defaults to uint16. Otherwise it is read (a signal): every table, and a
    register names its type. device None (already found wrong by the caller) still checks the
    rest, so one run reports everything.
    """
    table = addr = None
    if "address" not in t:
        example = '"co:10" or "hr:5"' if writable else '"hr:0"'
        c.add(join(path, "address"), f"missing; it is required (e.g. {example})")
    else:
        try:
            table, addr = parse_address(t["address"])
        except ValueError as e:
            c.add(join(path, "address"), str(e))
        if writable and table is not None and table not in WRITABLE_TABLES:
            c.add(
                join(path, "address"),
                f"{table} ({_TABLE_NAMES[table]}) is read-only; a write goes to co "
                "(coils) or hr (holding registers)",
            )
            table = None
    bits = table in BIT_TABLES
    default_type = "bool" if bits else ("uint16" if writable else None)
    typ = c.string(
        t,
        "type",
        path,
        required=default_type is None and not writable,
        default=default_type,
        choices=REGISTER_TYPES,
    )
    if bits and typ not in (None, "bool"):
        c.add(join(path, "type"), f"{table} holds single bits; type must be bool, not {typ!r}")
        typ = None
    word_order = c.string(t, "word_order", path, default="big", choices=WORD_ORDERS) or "big"
    # Signals only: write actions always accepted a word order on a 16-bit type, and stored
    # snapshots with one must still load.
    if not writable and "word_order" in t and typ is not None and register_width(typ) == 1:
        c.add(join(path, "word_order"), f"applies only to 32- and 64-bit types, not {typ}")
    scale = c.number(t, "scale", path, default=1.0, nonzero=True)
    offset = c.number(t, "offset", path, default=0.0)
    if bits and ("scale" in t or "offset" in t):
        c.add(path, f"scale and offset do not apply to {table} bits")
    if typ is not None and addr is not None and table in ("hr", "ir"):
        if addr + register_width(typ) - 1 > 65535:
            c.add(join(path, "address"), f"a {typ} at {addr} runs past register 65535")
            typ = None
    if device is None or table is None or addr is None or typ is None:
        return None
    return ModbusPoint(
        device=device,
        table=table,
        address=addr,
        type=typ,
        word_order=word_order,
        scale=scale if scale is not None else 1.0,
        offset=offset if offset is not None else 0.0,
    )
