"""cli.snapshot: the text of `floorconsole snapshot ...`, and the engine's start-up choice
(engine.bootstrap.plan_startup), on real SQLite files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from floorconsole.adapters.snapshot_store import SnapshotStore
from floorconsole.cli.snapshot import (
    SnapshotCommandError,
    parse_when,
    request_rollback,
    snapshot_at,
    snapshot_diff,
    snapshot_export,
    snapshot_import,
    snapshot_list,
    snapshot_show,
)
from floorconsole.core.clock import FakeClock
from floorconsole.engine.bootstrap import plan_startup
from tests.support.demo_plant import demo_plant_without_rules

REPO = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    return demo_plant_without_rules(tmp_path / "site")


@pytest.fixture
def box(tmp_path: Path, plant: Path):
    """A data directory where the engine started on the plant file, then an engineer lowered
    a rule's threshold from the console: (data_dir, first snapshot, second snapshot)."""
    data = tmp_path / "var"
    clock = FakeClock(wall=T0)
    with SnapshotStore.in_data_dir(data, clock=clock, boot="boot-1") as store:
        plan = plan_startup(store, plant, author="engine")
        assert plan.imported and plan.note is None
        first = plan.snapshot
        store.record_activation(first.id, "applied", by="engine start")
        clock.advance(600)
        cfg = first.plant_config()
        cfg["rules"] = [
            {
                "id": "trip-motor1",
                "signal": "motor1.anomaly_score",
                "op": ">",
                "threshold": 0.7,
                "on_delay": "3s",
                "actions": [{"alarm": "high"}],
            }
        ]
        second = store.put(cfg, author="eng1", message="trip motor 1 at 0.7", parent=first.id)
        store.record_activation(second.id, "applied", by="eng1")
        store.record_activation(second.id, "health-ok", by="engine")
    return data, first, second


def test_list_marks_the_active_snapshot(box) -> None:
    data, first, second = box
    text = snapshot_list(data).splitlines()
    assert text[0].split() == ["ID", "CREATED", "(UTC)", "AUTHOR", "MESSAGE"]
    assert text[1] == f"  {first.short}  2026-09-21 14:13:20  engine  plant file plant.toml"
    assert text[2] == f"* {second.short}  2026-09-21 14:23:20  eng1    trip motor 1 at 0.7"
    assert text[3] == (
        "* active since 2026-09-21 14:23:20 UTC (applied by eng1, boot boot-1; "
        "health-ok 2026-09-21 14:23:20 UTC)"
    )


def test_show_prints_the_configuration_as_a_plant_file(box) -> None:
    data, first, second = box
    text = snapshot_show(data, second.short[:6])
    head, _, body = text.partition("\n\n")
    assert f"snapshot {second.id}" in head and f"parent   {first.id}" in head
    assert "active   yes" in head
    ref = second.models["motor1_anomaly"]
    assert (
        f"model    motor1_anomaly: onnx {ref.onnx_sha[:12]}, sidecar {ref.json_sha[:12]} "
        "(motor_anomaly 1.0.0)"
    ) in head
    doc = tomllib.loads(body)
    assert doc == second.config
    assert body.startswith('[edge]\nid = "line2-press"')
    assert snapshot_show(data, "active") == text


def test_diff_in_plant_words(box) -> None:
    data, first, second = box
    assert snapshot_diff(data, first.short, second.short).splitlines() == [
        f"{first.short} (plant file plant.toml) → {second.short} (trip motor 1 at 0.7)",
        "rule trip-motor1 added (signal motor1.anomaly_score, op >, threshold 0.7, "
        "actions ×1, on_delay 3s)",
    ]


def test_export_then_import_elsewhere(box, tmp_path: Path) -> None:
    data, _first, second = box
    out = tmp_path / "exported"
    said = snapshot_export(data, second.short, out)
    assert said.startswith(f"exported snapshot {second.short} to {out / 'plant.toml'}")
    assert tomllib.loads((out / "plant.toml").read_text())["rules"][0]["threshold"] == 0.7
    other = tmp_path / "other-box"
    assert snapshot_import(other, out).startswith(f"imported snapshot {second.short} from ")
    assert snapshot_import(other, out).startswith(f"snapshot {second.short} is already stored")
    assert snapshot_list(other).splitlines()[1].startswith(f"  {second.short}")
    (out / "plant.toml").write_text("# edited\n" + (out / "plant.toml").read_text())
    with pytest.raises(SnapshotCommandError, match=r"plant.toml: sha256 .* changed after export"):
        snapshot_import(tmp_path / "third", out)
    with pytest.raises(SnapshotCommandError, match="not an empty folder"):
        snapshot_export(data, second.short, out)


def test_at_answers_which_snapshot_ran(box) -> None:
    data, first, second = box
    now = T0 + 3600
    assert snapshot_at(data, "55m", now=now).startswith(
        f"at 2026-09-21 14:18:20 UTC snapshot {first.short} ran (engine: plant file plant.toml), "
        "active since 2026-09-21 14:13:20 UTC (applied by engine start, boot boot-1)"
    )
    assert snapshot_at(data, "2026-09-21T14:30:00Z", now=now).startswith(
        f"at 2026-09-21 14:30:00 UTC snapshot {second.short} ran"
    )
    assert snapshot_at(data, "2026-09-21T16:20:00+02:00", now=now).startswith(
        f"at 2026-09-21 14:20:00 UTC snapshot {first.short} ran"
    )
    assert snapshot_at(data, "2d", now=now) == (
        "nothing ran at 2026-09-19 15:13:20 UTC: the first activation was at "
        "2026-09-21 14:13:20 UTC"
    )
    with pytest.raises(SnapshotCommandError, match="in the future"):
        snapshot_at(data, "2027-01-01T00:00:00", now=now)
    with pytest.raises(SnapshotCommandError, match="neither a duration back from now"):
        snapshot_at(data, "yesterday", now=now)
    assert parse_when("10m", 1000.0) == 400.0


def test_request_rollback_checks_the_target(box) -> None:
    data, first, second = box
    assert request_rollback(data, first.short) == first
    with pytest.raises(
        SnapshotCommandError, match=f"snapshot {second.short} is already the active one"
    ):
        request_rollback(data, second.id)
    with pytest.raises(SnapshotCommandError, match="no snapshot beef in"):
        request_rollback(data, "beef")


def test_errors_are_one_line_value_errors(tmp_path: Path, box) -> None:
    data, first, _ = box
    for call in (
        lambda: snapshot_list(tmp_path / "nowhere"),
        lambda: snapshot_show(data, "xyz"),
        lambda: snapshot_diff(data, first.short, "12"),
        lambda: snapshot_import(tmp_path / "b", tmp_path / "no-bundle"),
    ):
        with pytest.raises(ValueError) as e:
            call()
        assert isinstance(e.value, SnapshotCommandError)
        assert str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "nowhere").exists()  # a typo in --data-dir creates nothing


def test_startup_keeps_console_changes_over_an_older_plant_file(
    box, plant: Path, tmp_path: Path
) -> None:
    data, first, second = box
    with SnapshotStore.in_data_dir(data, boot="boot-2") as store:
        plan = plan_startup(store, plant, author="engine")
        assert plan.snapshot == second and not plan.imported
        assert plan.note.startswith(
            f"{plant} holds snapshot {first.short} (2026-09-21 14:13:20 "
            f"UTC), not the active snapshot {second.short} (eng1: trip "
            f"motor 1 at 0.7); running {second.short}."
        )
        assert f"snapshot export {second.short} DIR" in plan.note
        # the exported file is the active snapshot: start-up runs it without a note
        snapshot_export(data, "active", tmp_path / "current")
        again = plan_startup(store, tmp_path / "current" / "plant.toml", author="engine")
        assert (again.snapshot, again.imported, again.note) == (second, False, None)
        # a plant file edited by hand is new content: it is imported and runs
        plant.write_text(plant.read_text().replace('poll = "200ms"', 'poll = "100ms"'))
        edited = plan_startup(store, plant, author="engine")
        assert edited.imported and edited.note is None
        assert edited.snapshot.parent == second.id
