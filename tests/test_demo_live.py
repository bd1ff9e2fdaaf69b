"""The demo, live: simulator + broker + engine + model, with no console. What the README's
first command runs, minus the screen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from floorconsole.console import Frame, ModelView
from floorconsole.engine.demo import DemoPlant
from floorconsole.engine.runtime import Engine
from tests.support.demo_engine import demo_engine_in
from tests.support.sessions import session_of

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoPlant, Engine]]:
    with demo_engine_in(tmp_path) as (d, e):
        yield d, e


def model(frame: Frame) -> ModelView:
    return frame.models[0]


def wait(e: Engine, cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond(e.api.frame()):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s; last {e.api.frame().models}")


def test_every_signal_updates_and_the_model_scores(demo: tuple[DemoPlant, Engine]) -> None:
    _, e = demo
    wait(
        e,
        lambda f: all(
            s.quality == "GOOD" for s in f.signals if not s.id.startswith("motor1_anomaly.drift")
        ),
        15,
        "every plant signal and model output GOOD",
    )
    f1 = e.api.frame()
    time.sleep(1.5)
    f2 = e.api.frame()
    ages1 = {s.id: s.age_s for s in f1.signals}
    fresh = [
        s.id for s in f2.signals if s.age_s < 1.5 and not s.id.startswith("motor1_anomaly.drift")
    ]
    assert {"motor1.current", "motor1.vibration.x", "motor1.anomaly_score"} <= set(fresh), ages1
    m = model(f2)
    assert m.running and m.quality == "GOOD" and m.state == "normal"
    assert m.smoothed is not None and m.warning is not None and m.smoothed < m.warning


def test_bearing_fault_moves_the_score_and_back(demo: tuple[DemoPlant, Engine]) -> None:
    d, e = demo
    wait(e, lambda f: model(f).smoothed is not None, 15, "first score")
    d.sim.inject("bearing")
    up = wait(e, lambda f: model(f).state != "normal", 10, "score past warning after the fault")
    d.sim.clear("bearing")
    down = wait(e, lambda f: model(f).state == "normal", 10, "score back to normal")
    assert up < 10 and down < 10


def sig_value(f: Frame, sid: str) -> object:
    return next(s for s in f.signals if s.id == sid).value


def test_bearing_fault_trips_the_motor_through_the_rule(demo: tuple[DemoPlant, Engine]) -> None:
    """The sentence the product exists for, on the demo: score above 0.8 for 5 s writes the
    trip coil (read back), raises a HIGH alarm; the trip latches, so the motor stays stopped
    after the fault is cleared until an engineer resets it, and then everything comes back
    to normal."""
    d, e = demo
    wait(
        e, lambda f: model(f).state == "normal" and model(f).quality == "GOOD", 20, "model scoring"
    )
    d.sim.inject("bearing")
    wait(e, lambda f: sig_value(f, "motor1.trip") is True, 20, "trip coil written")
    rule = next(r for r in e.api.frame().rules if r.id == "trip-motor1")
    write = next(a for a in rule.actions if a.kind == "write")
    assert rule.active and write.last_ok and "read back" in write.last_result
    assert rule.latch and rule.state == "LATCHED", rule
    f = e.api.frame()
    top = f.alarms[0]
    assert (top.id, top.state, top.priority) == ("rule:trip-motor1", "UNACK", "high")
    assert e.api.command("alarm.ack", alarm=top.id, session=session_of(e, "op1"))["ok"]
    d.sim.clear("bearing")
    # The machine stopped, its model is out of service: that releases nothing. The trip
    # holds past min_on (20 s) and its off-delay.
    time.sleep(25)
    f = e.api.frame()
    assert sig_value(f, "motor1.trip") is True and sig_value(f, "motor1.running") is False
    rule = next(r for r in f.rules if r.id == "trip-motor1")
    assert rule.active and rule.state == "LATCHED" and "reset" in rule.note, rule
    # An operator may not reset a trip; an engineer holding control may, with a reason.
    refused = e.api.command(
        "rule.reset", rule="trip-motor1", reason="bearing replaced", session=session_of(e, "op1")
    )
    assert not refused["ok"] and refused.get("refused") == "role", refused
    eng = session_of(e, "eng1")
    assert e.api.command("control.take", session=eng)["ok"]
    no_reason = e.api.command("rule.reset", rule="trip-motor1", session=eng)
    assert not no_reason["ok"] and "reason" in no_reason["message"], no_reason
    r = e.api.command("rule.reset", rule="trip-motor1", reason="bearing replaced", session=eng)
    assert r["ok"], r
    wait(
        e,
        lambda f: sig_value(f, "motor1.trip") is False and sig_value(f, "motor1.running") is True,
        20,
        "trip reset and motor running again",
    )
    wait(e, lambda f: f.alarms[0].state == "NORMAL" if f.alarms else True, 5, "alarm normal")
    wait(
        e,
        lambda f: model(f).quality == "GOOD" and model(f).state == "normal",
        30,
        "model scoring normal again",
    )
    rule = next(r for r in e.api.frame().rules if r.id == "trip-motor1")
    assert not rule.active and rule.state == "NORMAL"
    journal = e.api.alarm_journal()
    states = [j["to"] for j in reversed(journal) if j["alarm"] == "rule:trip-motor1"]
    assert states[:3] == ["UNACK", "ACKED", "NORMAL"], states
    [reset] = [
        a
        for a in e.api.audit(kind="rule_reset")
        if a["detail"]["phase"] == "request" and a["detail"].get("reason")
    ]
    assert (reset["user"], reset["target"], reset["detail"]["reason"]) == (
        "eng1",
        "trip-motor1",
        "bearing replaced",
    ), reset


def test_uplink_forwards_in_order(demo: tuple[DemoPlant, Engine]) -> None:
    """Samples reach the (demo's own) plant broker through the outbox, seq rising by one."""
    import json as _json

    import paho.mqtt.client as mqtt

    d, e = demo
    got: list[dict] = []  # type: ignore[type-arg]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-uplink-receiver")
    c.on_message = lambda cl, ud, msg: got.append(_json.loads(msg.payload))
    c.connect(d.broker.host, d.broker.port)
    c.subscribe("floorconsole/line2-press/data", qos=1)
    c.loop_start()
    try:
        wait(e, lambda f: f.uplink is not None and f.uplink.state == "up", 15, "uplink up")
        deadline = time.monotonic() + 15
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        c.loop_stop()
        c.disconnect()
    assert len(got) >= 10
    live = [m for m in got if not m["historical"]]
    seqs = [m["seq"] for m in live]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    names = {s["s"] for m in got for s in m["samples"]}
    assert "motor1.current" in names and got[0]["edge"] == "line2-press"
    assert e.api.frame().uplink.published > 0  # type: ignore[union-attr]
