"""Apply and rollback in a running engine on the demo plant: validated before the swap,
health-checked after it, and back by itself when the check fails."""

from __future__ import annotations

import asyncio
import copy
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DemoPlant
from floorconsole.engine.runtime import Engine
from tests.support.sessions import session_of

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[DemoPlant, Engine]]:
    with DemoPlant(DEMO) as d:
        raw = copy.deepcopy(d.plant.raw)
        raw["models"][0]["settle"] = "1s"  # the demo's 8 s start-up settling, shortened
        e = open_engine(
            data_dir=tmp_path / "data",
            base_dir=DEMO.parent,
            user="test",
            plant_raw=raw,
            source="demo plant",
            demo=d.sim,
            health_window_s=4.0,
        )
        e.start_background()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the start-up check is done
                if len(e.snapshots.store.activations()) >= 2:
                    break
                time.sleep(0.1)
            yield d, e
        finally:
            e.stop()


def edited(e: Engine, **rule_changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(e.api.active_config())
    cfg["rules"][0].update(rule_changes)
    return cfg


def test_apply_an_edited_threshold(engine: tuple[DemoPlant, Engine]) -> None:
    _, e = engine
    first = e.snapshots.active.id  # type: ignore[union-attr]
    r = e.api.command(
        "config.apply", config=edited(e, threshold=0.7), message="lower trip", session=session_of(e)
    )
    assert r["ok"], r
    assert r["snapshot"] != first and r["health"] == "ok"
    assert e.plant.rules[0].threshold == 0.7
    assert e.api.frame().snapshot == r["snapshot"][:12]
    diff = e.api.snapshot_diff(first, r["snapshot"])
    assert any("rule trip-motor1: threshold 0.8 → 0.7" in line for line in diff), diff
    outcomes = [a["outcome"] for a in e.api.activations()]
    assert outcomes[:2] == ["health-ok", "applied"]


def test_refused_before_the_swap(engine: tuple[DemoPlant, Engine], tmp_path: Path) -> None:
    _, e = engine
    before = e.snapshots.active.id  # type: ignore[union-attr]
    cfg = edited(e)
    cfg["rules"][0]["actions"][0]["write"] = "drive9"
    r = e.api.command("config.apply", config=cfg, message="typo", session=session_of(e))
    assert not r["ok"] and "refused, nothing changed" in r["message"] and "drive9" in r["message"]
    # a model package whose ONNX file is garbage
    bad = tmp_path / "badpkg"
    bad.mkdir()
    shutil.copy(DEMO.parent.parent / "models" / "motor_anomaly.json", bad / "motor_anomaly.json")
    (bad / "motor_anomaly.onnx").write_bytes(b"not an onnx file")
    cfg = copy.deepcopy(e.api.active_config())
    cfg["models"][0]["package"] = str(bad / "motor_anomaly")
    r = e.api.command("config.apply", config=cfg, message="new model", session=session_of(e))
    assert not r["ok"] and "refused" in r["message"], r
    assert e.snapshots.active.id == before  # type: ignore[union-attr]
    assert e.models["motor1_anomaly"].model is not None  # the previous model runs on


def test_failed_health_check_comes_back_by_itself(engine: tuple[DemoPlant, Engine]) -> None:
    _, e = engine
    before = e.snapshots.active.id  # type: ignore[union-attr]
    cfg = copy.deepcopy(e.api.active_config())
    cfg["devices"][0]["port"] = 1  # nothing listens there: the drive never connects
    t0 = time.monotonic()
    r = e.api.command("config.apply", config=cfg, message="wrong port", session=session_of(e))
    assert not r["ok"] and "failed its health check" in r["message"], r
    assert "device drive1" in r["health"]
    assert time.monotonic() - t0 < 4.0 + 3.0
    assert e.snapshots.active.id == before  # type: ignore[union-attr]
    assert e.plant.devices[0].port != 1
    outcomes = [a["outcome"] for a in e.api.activations()[:3]]
    assert outcomes[:2] == ["rolled-back", "health-failed-rolled-back"]
    assert any(
        a.id.startswith("system:config_rolled_back") or "config_rolled_back" in a.id
        for a in e.api.frame().alarms
        if a.state == "UNACK"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if next(ln for ln in e.api.frame().links if ln.id == "drive1").state == "up":
            break
        time.sleep(0.1)
    assert next(ln for ln in e.api.frame().links if ln.id == "drive1").state == "up"


def test_rollback_restores_rules_and_model(engine: tuple[DemoPlant, Engine]) -> None:
    _, e = engine
    first = e.snapshots.active.id  # type: ignore[union-attr]
    assert e.api.command(
        "config.apply", config=edited(e, threshold=0.6), message="a", session=session_of(e)
    )["ok"]
    r = e.api.command("snapshot.rollback", snapshot=first[:8], session=session_of(e))
    assert r["ok"], r
    assert e.plant.rules[0].threshold == 0.8
    assert e.models["motor1_anomaly"].model is not None
    assert e.snapshots.active.id == first  # type: ignore[union-attr]


def test_snapshot_at_answers_across_a_restart(tmp_path: Path) -> None:
    from floorconsole.cli.snapshot import snapshot_at

    with DemoPlant(DEMO) as d:
        for message in ("first boot", "second boot"):
            raw = copy.deepcopy(d.plant.raw)
            raw["edge"]["site"] = message
            e = open_engine(
                data_dir=tmp_path / "data",
                base_dir=DEMO.parent,
                user="t",
                plant_raw=raw,
                source=message,
                demo=d.sim,
            )
            e.start_background()
            time.sleep(1.0)
            e.stop()
            time.sleep(1.0)
    from datetime import UTC, datetime

    from floorconsole.adapters.snapshot_store import SnapshotStore

    with SnapshotStore.in_data_dir(tmp_path / "data") as store:  # reopened: a new process
        starts = [a.activated_at for a in store.activations() if str(a.outcome) == "applied"]
    assert len(starts) == 2

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()

    assert "first boot" in snapshot_at(tmp_path / "data", iso(starts[1] - 0.3))
    assert "second boot" in snapshot_at(tmp_path / "data", iso(starts[1] + 0.3))
    assert (
        "nothing" in snapshot_at(tmp_path / "data", iso(starts[0] - 60)).lower()
        or "no snapshot" in snapshot_at(tmp_path / "data", iso(starts[0] - 60)).lower()
    )


def test_apply_needs_a_message(engine: tuple[DemoPlant, Engine]) -> None:
    _, e = engine
    r = e.api.command(
        "config.apply", config=edited(e, threshold=0.5), message="  ", session=session_of(e)
    )
    assert not r["ok"] and "message" in r["message"]


_ = asyncio
