"""Plant file validation: every problem reported with its key path, in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floorconsole.core.config import (
    ModbusPoint,
    MqttPoint,
    PlantError,
    load_plant,
    parse_json_path,
    parse_plant,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plants"

MINIMAL = """
[edge]
id = "e1"
[[devices]]
id = "d1"
protocol = "modbus-tcp"
host = "127.0.0.1"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PlantError) as exc:
        parse_plant(text)
    return [str(p) for p in exc.value.problems]


def test_demo_plant_loads() -> None:
    plant = load_plant(FIXTURES / "demo.toml")
    assert plant.edge.id == "line2-press"
    assert {d.id for d in plant.devices} == {"drive1"}
    cur = plant.signal("motor1.current")
    assert isinstance(cur.source, ModbusPoint)
    assert (cur.source.table, cur.source.address, cur.source.type) == ("hr", 0, "float32")
    vib = plant.signal("motor1.vibration.x")
    assert isinstance(vib.source, MqttPoint) and vib.source.json_path == ("x",)
    assert plant.signal("motor1.temp").source.scale == pytest.approx(0.1)  # type: ignore[union-attr]
    assert plant.edge.data_dir == (FIXTURES / "var" / "demo")


def test_ten_mistakes_all_reported() -> None:
    with pytest.raises(PlantError) as exc:
        load_plant(FIXTURES / "ten_mistakes.toml")
    found = {p.path: p.message for p in exc.value.problems}
    expected = {
        "edge.id": "not a valid id",
        "edge.colour": "unknown key",
        "brokers[0].port": "out of range",
        "devices[0].protocol": "'modbus-rtu' is not one of modbus-tcp",
        "devices[0].poll": "not a duration",
        "signals[0].type": "'flaot32' is not one of bool, int16",
        "signals[1].device": "'drive9' is not a device in this file (drive1)",
        "signals[2].address": 'is not an address like "hr:0"',
        "signals[3].topic": "no wildcards",
        "signals[4].id": "'motor1.current' is already used by signals[0]",
    }
    for path, fragment in expected.items():
        assert path in found, f"{path} not reported; got {sorted(found)}"
        assert fragment in found[path], f"{path}: {found[path]!r} lacks {fragment!r}"
    assert len(exc.value.problems) == 10


def test_check_command_reports_all_and_exits_1() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "floorconsole.cli", "check", str(FIXTURES / "ten_mistakes.toml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 10
    assert all(ln.startswith(str(FIXTURES / "ten_mistakes.toml")) for ln in lines)
    assert "Traceback" not in r.stderr and "10 problem(s)" in r.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "floorconsole.cli", "check", str(FIXTURES / "demo.toml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "ok" in ok.stdout


def test_unknown_keys_everywhere_are_errors() -> None:
    errs = problems(
        MINIMAL + 'pol = "1s"\n[[signals]]\nid = "s"\ndevice = "d1"\n'
        'address = "hr:0"\ntype = "int16"\nscael = 2\n[extra]\n'
    )
    assert any(e.startswith("devices[0].pol: unknown key") for e in errs)
    assert any(e.startswith("signals[0].scael: unknown key") for e in errs)
    assert any(e.startswith("extra: unknown section") for e in errs)


def test_uplink_must_name_a_broker() -> None:
    errs = problems(MINIMAL + "[uplink]\nbroker = 'b'\n")
    assert any(e.startswith("uplink.broker") and "'b'" in e for e in errs), errs


@pytest.mark.parametrize(
    ("snippet", "path", "fragment"),
    [
        ('address = "co:3"\ntype = "float32"', "signals[0].type", "single bits"),
        (
            'address = "hr:65535"\ntype = "float32"',
            "signals[0].address",
            "runs past register 65535",
        ),
        (
            'address = "hr:0"\ntype = "int16"\nword_order = "little"',
            "signals[0].word_order",
            "only to 32- and 64-bit",
        ),
        ('address = "hr:0"\ntype = "int16"\nscale = 0', "signals[0].scale", "must not be 0"),
        ('address = "hr:0"\ntype = "int16"\nrange = [5, 1]', "signals[0].range", "must be below"),
        ('address = "hr:0"', "signals[0].type", "missing"),
    ],
)
def test_modbus_signal_mistakes(snippet: str, path: str, fragment: str) -> None:
    errs = problems(MINIMAL + f'[[signals]]\nid = "s"\ndevice = "d1"\n{snippet}\n')
    assert any(e.startswith(path) and fragment in e for e in errs), errs


def test_overlapping_registers_rejected() -> None:
    errs = problems(
        MINIMAL + '[[signals]]\nid = "a"\ndevice = "d1"\naddress = "hr:0"\n'
        'type = "float32"\n[[signals]]\nid = "b"\ndevice = "d1"\naddress = "hr:1"\n'
        'type = "uint16"\n'
    )
    assert any("hr:1 on d1 is already read by 'a'" in e for e in errs)


def test_not_toml_and_missing_edge() -> None:
    assert problems("[edge\n")[0].startswith("not valid TOML")
    assert problems('[[devices]]\nid = "x"\n')[0].startswith("edge: missing")


def test_json_paths() -> None:
    assert parse_json_path("x") == ("x",)
    assert parse_json_path("data.axes[2].rms") == ("data", "axes", 2, "rms")
    assert parse_json_path("[0]") == (0,)
    for bad in ("", "a..b", "a[x]", "a]"):
        with pytest.raises(ValueError):
            parse_json_path(bad)
