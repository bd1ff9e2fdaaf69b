"""One time zone for the console, the CLI and exports: [edge] timezone (UTC by default), shown
beside the clock; every exported time carries its offset."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from floorconsole.adapters.historian import Historian, HistoryReader
from floorconsole.core.clock import FakeClock
from floorconsole.core.config import PlantError, parse_plant
from floorconsole.core.history_format import iso_ms
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.engine.frames import History, HistoryPoint
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.format import set_console_zone
from floorconsole.ui.screens.detail import csv_rows
from floorconsole.ui.widgets.status_bars import HeaderBar

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "fixtures" / "recordings"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: 23:13:20 in Berlin (CET, +01:00)
JULY = 1_720_000_000.0  # 2024-07-03 09:46:40 UTC: summer time in Berlin (CEST, +02:00)
PLANT = """
[edge]
id = "line2-press"
data_dir = "var"
{zone}
"""


@pytest.fixture(autouse=True)
def machine_zone_elsewhere() -> Iterator[None]:
    """The machine's own zone is neither UTC nor the plant's: nothing may follow it."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Chicago"
    time.tzset()
    yield
    set_console_zone("UTC")
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_the_plant_file_names_a_zone_or_gets_utc(tmp_path: Path) -> None:
    assert parse_plant(PLANT.format(zone=""), base_dir=tmp_path).edge.timezone == "UTC"
    berlin = parse_plant(PLANT.format(zone='timezone = "Europe/Berlin"'), base_dir=tmp_path)
    assert berlin.edge.timezone == "Europe/Berlin"
    with pytest.raises(PlantError) as e:
        parse_plant(PLANT.format(zone='timezone = "Europe/Atlantis"'), base_dir=tmp_path)
    assert "edge.timezone" in str(e.value) and "Europe/Atlantis" in str(e.value)


def test_exported_times_carry_their_offset() -> None:
    assert iso_ms(T0) == "2023-11-14T22:13:20.000Z"
    assert iso_ms(T0 + 0.25, "Europe/Berlin") == "2023-11-14T23:13:20.250+01:00"
    assert iso_ms(JULY, "Europe/Berlin") == "2024-07-03T11:46:40.000+02:00"
    h = History(
        "motor1.current", "A", T0, T0 + 2, (HistoryPoint(T0, 1.5, "GOOD"),), quality_changes=()
    )
    set_console_zone("Europe/Berlin")
    assert csv_rows(h)[0][0] == "2023-11-14T23:13:20.000+01:00"
    set_console_zone("UTC")
    assert csv_rows(h)[0][0] == "2023-11-14T22:13:20.000Z"


async def test_the_header_shows_the_zone_beside_the_clock() -> None:
    api = RecordedAPI.load(RECORDINGS / "overview.json")
    api.set_frame(replace(api.frame(), t_wall=T0))
    app = make_app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.tick()
        header = app.screen.query_one(HeaderBar)._last.plain
        assert header.rstrip().endswith("22:13:20 UTC"), header
        api.set_frame(replace(api.frame(), timezone="Europe/Berlin"))
        app.tick()
        header = app.screen.query_one(HeaderBar)._last.plain
        assert header.rstrip().endswith("23:13:20 CET"), header


def fill(data_dir: Path) -> None:
    h = Historian(data_dir / "history.db", clock=FakeClock(wall=T0 + 100))
    h.start()
    h.append([Sample("motor1.current", 12.4, Quality.GOOD, Reason.NONE, T0, 0.0)])
    h.append([Sample("motor1.current", None, Quality.BAD, Reason.NO_COMM, JULY - 1e7, 1.0)])
    h.flush()
    h.close()


def test_history_csv_and_json_in_the_plant_zone(tmp_path: Path) -> None:
    fill(tmp_path)
    out = io.StringIO()
    with HistoryReader(tmp_path / "history.db") as reader:
        reader.export(["motor1.current"], T0 - 1, T0 + 1, "csv", out, timezone="Europe/Berlin")
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1][0] == "2023-11-14T23:13:20.000+01:00"
    # The CLI: the plant file's zone, or --timezone; a zone it does not know is refused.
    plant = tmp_path / "plant.toml"
    plant.write_text(
        PLANT.format(zone='timezone = "Europe/Berlin"').replace('"var"', f'"{tmp_path}"')
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "floorconsole.cli", "history", "motor1.current"]
    since = ["--since", "2023-11-14T00:00:00Z", "--until", "2023-11-15T00:00:00Z"]
    r = subprocess.run([*base, "-c", str(plant), *since], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "2023-11-14T23:13:20.000+01:00,motor1.current,12.4,GOOD" in r.stdout
    r = subprocess.run(
        [*base, "--data-dir", str(tmp_path), *since, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert json.loads(r.stdout)[0]["time"] == "2023-11-14T22:13:20.000Z"  # UTC by default
    r = subprocess.run(
        [*base, "--data-dir", str(tmp_path), *since, "--timezone", "Mars/Base"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode != 0 and "Mars/Base" in r.stderr and "Traceback" not in r.stderr


def test_audit_list_speaks_the_plant_zone(tmp_path: Path) -> None:
    from floorconsole.adapters.audit_log import AuditLog
    from floorconsole.cli.audit import audit_list

    log = AuditLog.in_data_dir(tmp_path)
    log.append_record("system", "engine", "engine started", {}, T0)
    log.close()
    utc = audit_list(tmp_path, since="2023-11-14T00:00Z", now=T0 + 60)
    berlin = audit_list(tmp_path, since="2023-11-14T00:00Z", now=T0 + 60, zone="Europe/Berlin")
    assert "TIME (UTC)" in utc and "2023-11-14 22:13:20" in utc
    assert "TIME (Europe/Berlin)" in berlin and "2023-11-14 23:13:20" in berlin
