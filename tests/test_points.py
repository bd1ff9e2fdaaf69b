"""The one check of a Modbus point: the same words for a signal, a rule's write action and a
write by hand."""

from __future__ import annotations

from typing import Any

import pytest

from floorconsole.core.points import ModbusPoint, read_point
from floorconsole.core.registers import write_value
from floorconsole.core.rules import parse_rules
from floorconsole.core.validate import Problem, Problems


def check(t: dict[str, Any], *, writable: bool) -> tuple[ModbusPoint | None, list[Problem]]:
    c = Problems()
    return read_point(c, t, "p", "drive1", writable=writable), c.problems


def test_a_read_point_names_its_type_and_a_written_one_defaults_to_uint16() -> None:
    assert check({"address": "hr:4"}, writable=False) == (
        None,
        [("p.type", "missing; it is required")],
    )
    point, problems = check({"address": "hr:4"}, writable=True)
    assert problems == [] and point == ModbusPoint("drive1", "hr", 4, "uint16")
    point, _ = check({"address": "co:1"}, writable=False)
    assert point == ModbusPoint("drive1", "co", 1, "bool")


@pytest.mark.parametrize(
    ("t", "writable", "path", "message"),
    [
        ({"type": "int16"}, False, "p.address", 'missing; it is required (e.g. "hr:0")'),
        ({}, True, "p.address", 'missing; it is required (e.g. "co:10" or "hr:5")'),
        (
            {"address": "ir:2"},
            True,
            "p.address",
            "ir (input registers) is read-only; a write "
            "goes to co (coils) or hr (holding registers)",
        ),
        (
            {"address": "co:3", "type": "float32"},
            True,
            "p.type",
            "co holds single bits; type must be bool, not 'float32'",
        ),
        (
            {"address": "di:3", "type": "int16"},
            False,
            "p.type",
            "di holds single bits; type must be bool, not 'int16'",
        ),
        (
            {"address": "hr:65535", "type": "float32"},
            True,
            "p.address",
            "a float32 at 65535 runs past register 65535",
        ),
        ({"address": "co:3", "scale": 2}, True, "p", "scale and offset do not apply to co bits"),
        (
            {"address": "hr:1", "type": "int16", "word_order": "little"},
            False,
            "p.word_order",
            "applies only to 32- and 64-bit types, not int16",
        ),
    ],
)
def test_each_mistake_is_named_once(
    t: dict[str, Any], writable: bool, path: str, message: str
) -> None:
    _point, problems = check(t, writable=writable)
    assert problems == [(path, message)]


def test_a_rule_and_a_hand_write_get_the_same_words() -> None:
    raw = [
        {
            "id": "r",
            "signal": "s",
            "op": ">",
            "threshold": 1,
            "actions": [{"write": "drive1", "address": "ir:2", "on": 1}],
        }
    ]
    _, rule_problems = parse_rules(raw, signals={"s": None}, devices={"drive1"}, brokers=set())
    _, hand = check({"address": "ir:2"}, writable=True)
    assert [p.message for p in rule_problems] == [p.message for p in hand]


def test_write_values() -> None:
    bit = ModbusPoint("d", "co", 1, "bool")
    assert write_value(True, bit) is True
    assert write_value(7, ModbusPoint("d", "hr", 1, "uint16")) == 7.0
    with pytest.raises(ValueError, match=r"expected true/false or a number, got a string \('x'\)"):
        write_value("x", bit)
    with pytest.raises(ValueError, match="bool point"):
        write_value(5, bit)
