"""Roles and permissions through the engine's own API: the whole role × action matrix on a
running demo engine (real Modbus device, broker, ONNX model, SQLite), every refusal audited,
critical actions behind a fresh PIN, idle sessions locked."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floorconsole.adapters.users import UserStore
from floorconsole.cli.snapshot import snapshot_export
from floorconsole.core.auth import ACTIONS, PIN_FRESH_S, Role
from floorconsole.core.clock import FakeClock
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DemoPlant
from floorconsole.engine.runtime import Engine
from floorconsole.engine.sessions import Sessions

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"
MODEL = DEMO.parents[1] / "models" / "motor_anomaly"
PINS = {"view1": "4444", "op1": "1111", "eng1": "2222", "admin": "9999"}
ROLE_OF = {
    None: Role.VIEWER,
    "view1": Role.VIEWER,
    "op1": Role.OPERATOR,
    "eng1": Role.ENGINEER,
    "admin": Role.ADMIN,
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with DemoPlant(DEMO) as d:
        raw = copy.deepcopy(d.plant.raw)
        raw["models"][0]["settle"] = "1s"
        e = open_engine(
            data_dir=tmp_path / "data",
            base_dir=DEMO.parent,
            user="test",
            plant_raw=raw,
            source="demo plant",
            demo=d.sim,
            health_window_s=4.0,
        )
        e.users().add("view1", "viewer", PINS["view1"])
        e.start_background()
        try:
            deadline = time.monotonic() + 20
            while len(e.snapshots.store.activations()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            yield e
        finally:
            e.stop()


def _model_copy(folder: Path, version: str) -> str:
    """The demo model package under another version: the same network, a new package."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL.with_suffix(".onnx"), folder / "motor_anomaly.onnx")
    side = json.loads(MODEL.with_suffix(".json").read_text())
    side["version"] = version
    (folder / "motor_anomaly.json").write_text(json.dumps(side))
    return str(folder / "motor_anomaly")


class Cases:
    """For each action: the arguments of one attempt that succeeds when the role allows it
    (setting up what it needs first, e.g. an alarm to acknowledge), and a check after."""

    def __init__(self, e: Engine, tmp: Path) -> None:
        self.e = e
        self.tmp = tmp
        self.n = 0
        self.threshold = 0.8

    def alarm(self, shelved: bool = False) -> str:
        self.n += 1
        source = f"matrix{self.n}"
        entry = self.e.alarms.raise_system("write_failed", source, "matrix test")
        assert entry is not None
        if shelved:
            self.e.alarms.shelve(entry.alarm_id, 600, "setup")
        return entry.alarm_id

    def args(self, action: str, session: str | None) -> dict[str, Any]:
        self.n += 1
        if action in ("alarm.ack", "alarm.shelve"):
            shelve = {"duration_s": 600, "reason": "matrix test"}
            return {"alarm": self.alarm()} | (shelve if "shelve" in action else {})
        if action == "alarm.ack_all":
            return {"alarms": [self.alarm(), self.alarm()]}
        if action == "alarm.unshelve":
            return {"alarm": self.alarm(shelved=True)}
        if action == "demo.inject":
            return {"fault": "bearing", "severity": 0.2}
        if action in ("demo.clear", "demo.toggle"):
            return {"fault": "bearing"}
        if action == "control.arm":
            return {"device": "drive1", "address": "co:11", "value": self.n % 2 == 0}
        if action == "control.write":
            # armed by the same session when it may arm; else by an engineer (refused anyway)
            may_arm = "control.arm" in self.e.api.session(session)["permitted"]
            arm = self.e.api.command(
                "control.arm",
                session=session if may_arm else self.eng,
                device="drive1",
                address="co:11",
                value=True,
            )
            assert arm["ok"], arm
            return {"arm": arm["arm"]}
        if action == "config.apply":
            cfg = copy.deepcopy(self.e.api.active_config())
            self.threshold = round(self.threshold - 0.01, 2)
            cfg["rules"][0]["threshold"] = self.threshold
            return {"config": cfg, "message": f"matrix {self.n}"}
        if action == "snapshot.rollback":
            snaps = [s for s in self.e.api.snapshots() if not s["active"]]
            if not snaps:  # one earlier snapshot to go back to, made by an engineer
                r = self.e.api.command(
                    "config.apply", session=self.eng, **self.args("config.apply", self.eng)
                )
                assert r["ok"], r
                snaps = [s for s in self.e.api.snapshots() if not s["active"]]
            return {"snapshot": snaps[0]["id"]}
        if action == "model.import":
            return {
                "model": "motor1_anomaly",
                "message": f"matrix model {self.n}",
                "package": _model_copy(self.tmp / f"pkg{self.n}", f"1.0.{self.n}"),
            }
        if action == "model.calibrate":
            since, until = self.healthy_window()
            return {"model": "motor1_anomaly", "since": since, "until": until}
        if action == "model.shadow":
            return {
                "model": "motor1_anomaly",
                "op": "start",
                "candidate": _model_copy(self.tmp / f"pkg{self.n}", f"1.0.{self.n}"),
            }
        if action == "model.promote":
            r = self.e.api.command(
                "model.shadow", session=self.eng, **self.args("model.shadow", self.eng)
            )
            assert r["ok"], r
            return {"model": "motor1_anomaly", "message": f"matrix promote {self.n}"}
        if action == "users.manage":
            return {"op": "add", "name": f"tmp{self.n}", "role": "operator", "pin": "5678"}
        if action == "rule.reset":
            self.trip()
            return {"rule": "trip-motor1", "reason": f"matrix {self.n}"}
        if action in ("fleet.accept", "fleet.defer"):
            from tests.support.fleet import hold_change

            return {"rollout": hold_change(self.e, f"matrix-{self.n}")}
        if action in ("kiosk.leave", "control.take", "control.release", "control.request"):
            return {}
        raise AssertionError(f"no case for {action}: add one")

    eng: str | None = None
    _window: tuple[float, float] | None = None

    def healthy_window(self) -> tuple[float, float]:
        """Five and a half minutes of healthy running recorded (accelerated) an hour ago."""
        if self._window is None:
            from floorconsole.core.plantsim import MotorSim
            from tests.support.recorded_motor import record_motor

            since = time.time() - 3600.0
            until = record_motor(self.e.historian, MotorSim(3), since=since, seconds=330.0)
            self._window = (since, until)
        return self._window

    def trip(self) -> None:
        """The demo's latched trip as if it had tripped and its condition had cleared."""

        async def tripped() -> None:
            ev = self.e.active.control.evaluators["trip-motor1"]
            ev.restore(True, self.e.clock.mono(), "matrix trip")
            ev.restored = ev.demand = False

        assert self.e.loop is not None
        asyncio.run_coroutine_threadsafe(tripped(), self.e.loop).result(5)


def test_the_whole_role_action_matrix(engine: Engine, tmp_path: Path) -> None:
    e = engine
    cases = Cases(e, tmp_path)
    commands = [a for a in ACTIONS if a != "audit.view"]  # audit.view is api.audit()
    refused_expected = 0
    for who in (None, "view1", "op1", "eng1", "admin"):
        session: str | None = None
        if who is not None:
            r = e.api.login(who, PINS[who])
            assert r["ok"] and r["role"] == str(ROLE_OF[who]), r
            session = r["session"]
        if cases.eng is not None:
            e.api.logout(cases.eng)  # the setup session of the last row lets go of control
        cases.eng = e.api.login("eng1", PINS["eng1"])["session"]
        info = e.api.session(session)
        assert info["role"] == str(ROLE_OF[who])
        for action in commands:
            allowed = ROLE_OF[who] >= ACTIONS[action].min_role
            args = cases.args(action, session)
            r = e.api.command(action, session=session, **args)
            label = f"{who or 'no session'} {action}"
            if allowed:
                assert r["ok"], (label, r)
                assert action in info["permitted"], label
            else:
                refused_expected += 1
                assert not r["ok"] and r["refused"] == ("login" if who is None else "role"), (
                    label,
                    r,
                )
                assert action not in info["permitted"], label
                # the refusal is in the audit trail, with who and what
                [rec] = e.api.audit(kind="refused", limit=1)
                assert rec["target"] == action and rec["user"] == (who or "(nobody)"), rec
            if action == "demo.inject" and allowed:
                e.api.command("demo.clear", session=session, fault="bearing")
        if session is not None:
            e.api.logout(session)  # and its control with it
    refused = e.api.audit(kind="refused", limit=10_000)
    assert len(refused) == refused_expected
    # what happened is in the trail too, in order, and the chain verifies
    writes = e.api.audit(kind="write", limit=10_000)
    assert any(w["detail"].get("phase") == "writing" and "before" in w["detail"] for w in writes)
    assert any(w["detail"].get("phase") == "result" and "after" in w["detail"] for w in writes)
    assert e.api.audit(kind="model_change", limit=10)
    assert e.api.audit(kind="user_change", limit=10)
    assert e.api.audit_verify()["ok"]
    # nothing in the trail carries a PIN
    for rec in e.api.audit(limit=10_000):
        assert "pin" not in rec["detail"] and "5678" not in json.dumps(rec["detail"])


def test_a_manual_write_is_audited_before_it_reaches_the_device(engine: Engine) -> None:
    e = engine
    eng = e.api.login("eng1", PINS["eng1"])["session"]
    arm = e.api.command("control.arm", session=eng, device="drive1", address="co:11", value=True)
    assert arm["ok"] and arm["expires_s"] == 10, arm
    r = e.api.command("control.write", session=eng, arm=arm["arm"])
    assert r["ok"] and r["after"] is True, r
    again = e.api.command("control.write", session=eng, arm=arm["arm"])
    assert not again["ok"] and "used once" in again["message"]
    # another engineer cannot confirm someone else's arm
    e.users().add("eng2", "engineer", "3333")
    eng2 = e.api.login("eng2", "3333")["session"]
    arm = e.api.command("control.arm", session=eng, device="drive1", address="co:11", value=False)
    r = e.api.command("control.write", session=eng2, arm=arm["arm"])
    assert not r["ok"] and r["refused"] == "held", r  # eng1's console holds control
    assert e.api.frame().control_holder == "eng1"
    assert e.api.command("control.release", session=eng)["ok"]
    r = e.api.command("control.write", session=eng2, arm=arm["arm"])
    assert not r["ok"] and "armed by eng1" in r["message"], r
    assert e.api.frame().control_holder == "eng2"  # acting took the free control
    assert e.api.command("control.release", session=eng2)["ok"]
    bad = e.api.command("control.arm", session=eng, device="drive1", address="ir:0", value=1)
    assert not bad["ok"] and "read-only" in bad["message"]
    bad = e.api.command("control.arm", session=eng, device="drive9", address="co:1", value=1)
    assert not bad["ok"] and "drive9" in bad["message"]
    records = [x for x in reversed(e.api.audit(kind="write", limit=50)) if x["user"] == "eng1"]
    phases = [x["detail"]["phase"] for x in records]
    # arm: request + result; write: request, writing (before), result (after)
    assert phases[:5] == ["request", "result", "request", "writing", "result"], phases
    writing = records[3]["detail"]
    assert writing["before"] is not None and writing["value"] is True


def test_user_changes_and_logins_never_carry_the_pin(engine: Engine, tmp_path: Path) -> None:
    e = engine
    admin = e.api.login("admin", PINS["admin"])["session"]
    r = e.api.command(
        "users.manage", session=admin, op="add", name="nina", role="operator", pin="864209"
    )
    assert r["ok"], r
    assert e.api.login("nina", "864209")["ok"]
    assert not e.api.login("nina", "753186")["ok"]
    r = e.api.command("users.manage", session=admin, op="remove", name="admin")
    assert r["ok"] is False and "own account" in r["message"]
    # a configuration change after the user change: its snapshot, exported, carries no PIN
    cfg = copy.deepcopy(e.api.active_config())
    cfg["rules"][0]["threshold"] = 0.75
    eng = e.api.login("eng1", PINS["eng1"])["session"]
    assert e.api.command("config.apply", session=eng, config=cfg, message="after")["ok"]
    active = next(x["id"] for x in e.api.snapshots() if x["active"])
    snapshot_export(e.data_dir, active, tmp_path / "bundle")
    for folder in (e.data_dir, tmp_path / "bundle"):
        for f in folder.rglob("*"):
            if f.is_file():
                blob = f.read_bytes()
                assert b"864209" not in blob and b"753186" not in blob, f
    kinds = [x["kind"] for x in e.api.audit(limit=50)]
    assert "login_failed" in kinds and "login" in kinds and "user_change" in kinds


# -- sessions on a fake clock: PIN freshness and idle lock -----------------------------------


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[tuple[Sessions, FakeClock, list[tuple[str, ...]]]]:
    clock = FakeClock()
    store = UserStore(tmp_path / "users.db")
    store.add("eng1", "engineer", "2222", now_wall=clock.wall())
    audited: list[tuple[str, ...]] = []

    def audit(kind: str, user: str, target: str, detail: dict[str, Any]) -> None:
        audited.append((kind, user, target, detail.get("reason", "")))

    yield Sessions(lambda: store, audit, clock, idle_lock_s=120.0), clock, audited
    store.close()


def test_critical_actions_need_a_pin_from_the_last_minute(
    sessions: tuple[Sessions, FakeClock, list[tuple[str, ...]]],
) -> None:
    s, clock, audited = sessions
    token = s.login("eng1", "2222")["session"]
    assert s.check(token, "config.apply") == ("eng1", None)
    clock.advance(PIN_FRESH_S + 1)
    s.touch(token)
    user, refusal = s.check(token, "config.apply")
    assert refusal is not None and refusal.reason == "pin", refusal
    assert audited[-1] == ("refused", "eng1", "config.apply", "pin")
    assert s.check(token, "alarm.ack") == ("eng1", None)  # not critical: no PIN needed
    assert not s.unlock(token, "9999")["ok"]
    assert s.unlock(token, "2222")["ok"]
    assert s.check(token, "config.apply") == ("eng1", None)


def test_an_idle_session_locks_and_still_views(
    sessions: tuple[Sessions, FakeClock, list[tuple[str, ...]]],
) -> None:
    s, clock, _ = sessions
    token = s.login("eng1", "2222")["session"]
    clock.advance(121)
    info = s.info(token)
    assert info["locked"] and info["user"] == "eng1"
    assert info["permitted"] == sorted(a for a, x in ACTIONS.items() if x.min_role == 0)
    _, refusal = s.check(token, "alarm.ack")
    assert refusal is not None and refusal.reason == "locked"
    s.touch(token)  # a key press does not unlock; the PIN does
    assert s.info(token)["locked"]
    assert s.unlock(token, "2222")["ok"] and not s.info(token)["locked"]


def test_five_wrong_pins_lock_and_the_lock_is_audited(
    sessions: tuple[Sessions, FakeClock, list[tuple[str, ...]]],
) -> None:
    s, clock, audited = sessions
    for _ in range(5):
        assert not s.login("eng1", "0000")["ok"]
    assert [a[0] for a in audited].count("login_failed") == 5
    assert ("user_locked", "eng1") == audited[-1][:2]
    r = s.login("eng1", "2222")
    assert not r["ok"] and "locked" in r["message"]
    clock.advance(301)
    assert s.login("eng1", "2222")["ok"]


def test_one_console_at_a_time_holds_control(
    sessions: tuple[Sessions, FakeClock, list[tuple[str, ...]]], tmp_path: Path
) -> None:
    s, clock, audited = sessions
    store = UserStore(tmp_path / "users.db")
    store.add("eng2", "engineer", "3333", now_wall=clock.wall())
    a = s.login("eng1", "2222")["session"]
    b = s.login("eng2", "3333")["session"]
    assert s.check(a, "config.apply") == ("eng1", None)  # free: the first to act takes it
    assert s.holder() == ("eng1", "")
    assert s.info(a)["holds_control"] and not s.info(b)["holds_control"]
    _, refusal = s.check(b, "snapshot.rollback")
    assert refusal is not None and refusal.reason == "held" and "eng1" in refusal.message
    assert audited[-1][:3] == ("refused", "eng2", "snapshot.rollback")
    assert s.check(b, "alarm.ack") == ("eng2", None)  # acknowledging needs no control
    assert s.request(b)["message"] == "asked eng1 for control"
    assert s.holder() == ("eng1", "eng2")
    assert s.release(a)["ok"] and s.holder() == ("", "")
    assert s.take(b)["ok"] and s.holder() == ("eng2", "")
    assert not s.take(a)["ok"]
    clock.advance(121)  # eng2 idles: the lock frees control
    s.touch(a)
    assert s.holder() == ("", "")
    assert s.unlock(a, "2222")["ok"] and s.take(a)["ok"]
    s.logout(a)
    assert s.holder() == ("", "")
    store.close()


def test_users_cli_changes_are_audited_and_verify(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "box"

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "floorconsole.cli", *args, "--data-dir", str(data)],
            input=stdin,
            text=True,
            capture_output=True,
            timeout=60,
        )

    r = cli("users", "add", "ana", "--role", "admin", "--pin-stdin", stdin="246813\n")
    assert r.returncode == 0, r.stderr
    r = cli("users", "reset-pin", "ana", "--pin-stdin", stdin="135792\n")
    assert r.returncode == 0, r.stderr
    r = cli("audit", "list", "--format", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)  # newest first: each change recorded before and after
    assert [(x["kind"], x["detail"]["phase"], x["detail"]["change"]) for x in records] == [
        ("user_change", "result", "user.reset_pin"),
        ("user_change", "request", "user.reset_pin"),
        ("user_change", "result", "user.add"),
        ("user_change", "request", "user.add"),
    ]
    assert {x["target"] for x in records} == {"ana"}
    assert "246813" not in r.stdout and "135792" not in r.stdout
    r = cli("audit", "verify")
    assert r.returncode == 0 and "audit ok: 4 records" in r.stdout, (r.stdout, r.stderr)
    r = cli("users", "add", "ana", "--role", "admin", "--pin-stdin", stdin="246813\n")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr  # one clear line


def test_the_idle_lock_is_set_in_the_plant_file() -> None:
    from floorconsole.core.config import PlantError, parse_plant

    base = '[edge]\nid = "box"\n'
    assert parse_plant(base, source="t").edge.idle_lock_s == 300.0
    assert parse_plant(base + 'idle_lock = "2m"\n', source="t").edge.idle_lock_s == 120.0
    with pytest.raises(PlantError) as err:
        parse_plant(base + 'idle_lock = "1s"\n', source="t")
    assert "edge.idle_lock" in str(err.value)
