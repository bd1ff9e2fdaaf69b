"""The overhaul story end to end in a running demo engine: after an overhaul the motor runs
healthy but differently and today's model warns; an engineer recalibrates from a healthy
window of history, shadows the candidate (its outputs recorded, never reaching a rule),
promotes it as a snapshot, and rolls back to the previous package byte for byte."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from floorconsole.adapters.historian import HistoryReader
from floorconsole.adapters.onnx_model import sha256_file
from floorconsole.core.plantsim import MotorSim
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DemoPlant
from floorconsole.engine.runtime import Engine
from tests.support.recorded_motor import PACKAGE, record_motor
from tests.support.sessions import session_of

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"
OVERHAUL = {"broadband_gain": 1.5}
MODEL = "motor1_anomaly"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[DemoPlant, Engine]]:
    with DemoPlant(DEMO) as d:
        raw = copy.deepcopy(d.plant.raw)
        raw["models"][0]["settle"] = "1s"
        # today's model warns on the overhauled motor; its trip rule must not stop the motor
        # while the story is told (the dry run still replays the rule)
        raw["rules"][0]["threshold"] = 4.0
        e = open_engine(
            data_dir=tmp_path / "data",
            base_dir=DEMO.parent,
            user="test",
            plant_raw=raw,
            source="demo plant",
            demo=d.sim,
            health_window_s=6.0,
        )
        e.start_background()
        try:
            deadline = time.monotonic() + 30
            while len(e.snapshots.store.activations()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            yield d, e
        finally:
            e.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def states_since(e: Engine, since: float) -> list[int]:
    e.historian.flush()
    with HistoryReader(e.historian.path) as r:
        return [int(x.value) for x in r.query(f"{MODEL}.state", since, None) if x.value is not None]


@pytest.mark.slow
def test_overhaul_recalibrate_shadow_promote_and_roll_back(
    engine: tuple[DemoPlant, Engine],
) -> None:
    d, e = engine
    eng = session_of(e, "eng1")
    parent_sha = e.models[MODEL].model.sha256  # type: ignore[union-attr]
    first = e.snapshots.active.id  # type: ignore[union-attr]
    d.sim.overhaul(**OVERHAUL)
    # the quarter hour after the overhaul, healthy, recorded (accelerated) an hour ago
    sim = MotorSim(5)
    sim.overhaul(**OVERHAUL)
    since = time.time() - 3600.0
    until = record_motor(e.historian, sim, since=since, seconds=900.0)
    r = e.api.command(
        "model.calibrate",
        session=eng,
        model=MODEL,
        since=since,
        until=until,
        train_weights=True,
        seed=3,
    )
    assert r["ok"], r
    cand = r["candidate"]
    assert cand["parent_sha256"] == parent_sha and cand["window"]["windows"] >= 1700

    r = e.api.command("model.shadow", session=eng, model=MODEL, op="start")
    assert r["ok"], r
    cmp = wait_for(
        "40 shadowed windows",
        lambda: (c := e.api.model_comparison(MODEL))["windows"] >= 40 and c,
    )
    assert cmp["running"] and cmp["candidate"]["sha256"] == cand["package_sha256"]
    windows = cmp["windows"]
    assert cmp["live"]["warning_windows"] > 0.5 * windows  # today's model cries wolf
    assert cmp["shadow"]["warning_windows"] < 0.2 * windows
    assert cmp["agreement"] < 0.8
    [dry] = cmp["dry_run"]
    assert dry["rule"] == "trip-motor1" and dry["shadow_signal"] == f"{MODEL}.shadow.score"
    assert dry["shadow"]["samples"] > 0 and dry["live"]["samples"] > 0
    assert len(cmp["series"]["t"]) == len(cmp["series"]["shadow"]) > 0
    # the shadow's outputs are recorded, and are no signal of the hub (no rule can see them)
    e.historian.flush()
    with HistoryReader(e.historian.path) as reader:
        assert reader.query(f"{MODEL}.shadow.score", cmp["since"], None)
        assert reader.query(f"{MODEL}.shadow.drift.psi_max", cmp["since"], None)
    assert not [s for s in e.hub.latest if ".shadow." in s]

    r = e.api.command("model.promote", session=eng, model=MODEL, message="after the overhaul")
    assert r["ok"] and r["health"] == "ok", r
    assert e.models[MODEL].model.sha256 == cand["package_sha256"]  # type: ignore[union-attr]
    after = e.api.model_comparison(MODEL)  # the swap ended the shadow; the candidate is live
    assert not after["running"]
    assert after["live_sha256"] == after["last_candidate"]["package_sha256"]
    promoted_at = time.time()
    wait_for("30 windows of the promoted model", lambda: len(states_since(e, promoted_at)) >= 30)
    states = states_since(e, promoted_at)
    assert sum(s >= 1 for s in states) <= 0.2 * len(states), states
    # a fault is still seen by the promoted model
    d.sim.inject("bearing", 1.0)
    wait_for("the bearing fault", lambda: e.models[MODEL].last_state >= 1, timeout=30)
    d.sim.clear("bearing")

    r = e.api.command("snapshot.rollback", session=eng, snapshot=first[:12])
    assert r["ok"], r
    back = e.models[MODEL].model
    assert back is not None and back.sha256 == parent_sha
    # byte for byte: the files the engine loaded are the fixture package's
    assert back.onnx_sha256 == sha256_file(PACKAGE.with_suffix(".onnx"))
    assert back.sidecar_sha256 == sha256_file(PACKAGE.with_suffix(".json"))
    assert hashlib.sha256(back.package.onnx_path.read_bytes()).hexdigest() == back.onnx_sha256
