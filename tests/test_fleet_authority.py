"""Local authority over remote changes, on a real mosquitto with a real engine: with [fleet]
remote_apply = "confirm" a verified rollout is held; the console shows it (the console
contract: the frame); an engineer defers it (the fleet tool hears who and why, the rollout
reads pending, not failed); it survives a restart; a newer one supersedes it; accepted, it
goes through the health-checked apply and is reported. The restart's gap is what `fleet at`
answers for that moment. The tool's own trail records each step."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.fleet_trail import FleetTrail
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.cli.fleet import rollout
from floorconsole.console import Frame, decode
from floorconsole.core.fleet import EdgeStatus, EngineRun, offline_at
from tests.support.fleet import Edge, bundle, edge_plant, keys, settled, tool, wait
from tests.test_fleet import fleet_cli, poll_at, quiet
from tests.test_ui_manual_write import plant  # noqa: F401 - the fixture: a demo engine

PIN = "2468"


def result_is(edge: str, rid: str, state: str) -> Callable[[Any], bool]:
    return lambda s: (
        edge in s.results and s.results[edge].rollout == rid and s.results[edge].state == state
    )


def test_confirm_holds_a_rollout_for_an_engineer(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    modbus_server_factory: Callable[..., ModbusDeviceServer],
) -> None:
    private, trusted = keys(tmp_path / "keys")
    dev = modbus_server_factory()
    raw = edge_plant(
        "edge-k", dev.port, mosquitto.port, trusted, site="h", tags=[], remote_apply="confirm"
    )
    edge = Edge(tmp_path / "e", raw, dev)
    e = edge.start()
    client = tool(mosquitto.port)
    records = FleetTrail.in_dir(tmp_path / "tool")
    try:
        e.users().add("eng1", "engineer", PIN)
        e.users().add("op1", "operator", "1357")
        settled()(edge)
        wait(client, lambda s: "edge-k" in s.status, "edge-k online")
        before = edge.snapshot

        # 1. verified, then held: a wave reads it pending, not failed
        g1, _ = bundle(tmp_path / "g1", raw, private, message="poll 250", change=poll_at(250))
        r1 = rollout(client, g1, canary=[], waves=["1"], soak_s=0, say=quiet, records=records)
        assert r1.ok and not r1.failed and r1.pending == ["edge-k"], r1
        assert r1.held["edge-k"].startswith("pending"), r1.held
        assert edge.snapshot == before and e.plant.devices[0].poll_s == 0.2
        # the console sees it through the contract: the frame (as a socket console decodes it)
        frame = e.api.frame()
        assert frame.fleet_pending is not None and frame.fleet_pending.rollout == r1.rollout
        assert any(c.source == "fleet" and r1.rollout in c.text for c in frame.conditions)
        assert decode(Frame, _as_json(frame)).fleet_pending == frame.fleet_pending

        # 2. an operator may not accept it; an engineer defers it, and the tool hears why
        op = e.api.login("op1", "1357")["session"]
        refused = e.api.command("fleet.accept", session=op, rollout=r1.rollout)
        assert not refused["ok"] and refused["refused"] == "role", refused
        eng = e.api.login("eng1", PIN)["session"]
        d = e.api.command("fleet.defer", session=eng, rollout=r1.rollout, reason="batch running")
        assert d["ok"], d
        wait(client, result_is("edge-k", r1.rollout, "deferred"), "the deferral reported")
        with client.lock:
            said = client.state.results["edge-k"].message
        assert "eng1" in said and "batch running" in said, said

        # 3. a newer rollout supersedes the held one (audited); held at its canary, the rollout
        # waits for the engineer there, who defers it: stopped, nothing else sent, not failed
        g2, g2_id = bundle(tmp_path / "g2", raw, private, message="poll 300", change=poll_at(300))
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                rollout,
                client,
                g2,
                canary=["edge-k"],
                waves=[],
                soak_s=0,
                timeout_s=60,
                say=quiet,
                records=records,
            )
            end = time.monotonic() + 30
            while time.monotonic() < end and not (
                e.fleet is not None
                and e.fleet.pending is not None
                and e.fleet.pending.rollout != r1.rollout
            ):
                time.sleep(0.05)
            assert e.fleet is not None and e.fleet.pending is not None
            r2_id = e.fleet.pending.rollout
            assert not running.done()  # waiting for the canary's engineer
            d = e.api.command("fleet.defer", session=eng, rollout=r2_id, reason="not today")
            assert d["ok"], d
            r2 = running.result(30)
        assert not r2.ok and not r2.failed and "canary edge-k not applied" in r2.stopped, r2
        assert r2.held["edge-k"].startswith("deferred") and r2.rollout == r2_id
        superseded = [
            a
            for a in e.api.audit(kind="snapshot_apply", limit=200)
            if a["detail"].get("phase") == "superseded"
        ]
        assert superseded and superseded[0]["detail"]["rollout"] == r1.rollout

        # 4. it survives a restart; the restart is a gap `fleet at` answers for
        edge.stop()
        t_stop = time.time()
        wait(client, lambda s: s.status["edge-k"].state == "offline", "edge-k said offline")
        probe = math.ceil(t_stop + 0.2)
        while time.time() < probe + 1.2:
            time.sleep(0.1)
        e = edge.start()
        settled()(edge)
        frame = e.api.frame()
        assert frame.fleet_pending is not None and frame.fleet_pending.rollout == r2.rollout
        wait(
            client,
            lambda s: any(r.start <= t_stop <= r.end + 1 for r in s.runs.get("edge-k", ())),
            "the run before the restart published",
        )
        out = fleet_cli(
            mosquitto.port, "at", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(probe))
        )
        line = next(ln for ln in out.splitlines() if ln.strip().startswith("edge-k"))
        assert "OFFLINE since" in line and "stopped" in line and "back" in line, out

        # 5. accepted: the same health-checked apply, reported, audited in the engineer's name
        eng = e.api.login("eng1", PIN)["session"]
        a = e.api.command("fleet.accept", session=eng, rollout=r2.rollout)
        assert a["ok"], a
        assert e.plant.devices[0].poll_s == 0.3 and e.api.frame().fleet_pending is None
        wait(client, result_is("edge-k", r2.rollout, "applied"), "the accepted change reported")
        with client.lock:
            assert client.state.results["edge-k"].fleet_snapshot == g2_id
        phases = [
            (x["user"], x["detail"].get("phase"))
            for x in e.api.audit(kind="snapshot_apply", limit=200)
        ]
        assert ("eng1", "accepted") in phases and ("eng1", "applied") in phases, phases
        assert any(x["by"] == "eng1" for x in e.api.activations(5))
        # the tool's own trail has every step of both rollouts
        steps = [(st["rollout"], st["step"]) for st in records.steps()]
        for rid, end in ((r1.rollout, "done"), (r2.rollout, "stopped")):
            assert (rid, "start") in steps and (rid, end) in steps, steps
    finally:
        records.close()
        client.close()
        edge.stop()


def _as_json(frame: Frame) -> Any:
    import dataclasses
    import json

    return json.loads(json.dumps(dataclasses.asdict(frame)))


def test_offline_at_from_runs_and_the_last_will() -> None:
    runs = (EngineRun("b1", 100.0, 200.0, "stopped"), EngineRun("b2", 300.0, 400.0, "lost"))
    online = EdgeStatus(edge="x", state="online", t=1000.0, boot=500.0)
    assert offline_at(runs, online, None, 150.0) is None  # ran
    gap = offline_at(runs, online, None, 250.0)
    assert gap is not None and (gap.since, gap.until, gap.how) == (200.0, 300.0, "stopped")
    gap = offline_at(runs, online, None, 450.0)
    assert gap is not None and (gap.since, gap.until, gap.how) == (400.0, 500.0, "lost")
    assert offline_at(runs, online, None, 50.0) is None  # before its record
    assert offline_at(runs, online, None, 900.0) is None  # runs now
    # gone without a goodbye: offline since it was last heard (its `alive`), not back yet
    will = EdgeStatus(edge="x", state="offline", t=500.0, boot=500.0, will=True)
    gap = offline_at(runs, will, 640.0, 700.0)
    assert gap is not None and (gap.since, gap.until, gap.how) == (640.0, None, "last will")
    assert offline_at(runs, will, 640.0, 600.0) is None


async def test_the_snapshots_screen_defers_and_accepts_a_held_change(
    plant: tuple[Any, Any],  # noqa: F811 - the fixture imported above
) -> None:
    """The console's own path: the held change on the snapshots screen, x defers it with a
    reason, a accepts it after a confirmation; the engine's commands, in the engineer's name."""
    from floorconsole.ui.app import make_app
    from floorconsole.ui.screens.reason import ReasonDialog
    from floorconsole.ui.screens.snapshots import ConfirmDialog, SnapshotScreen
    from tests.support.fleet import hold_change
    from tests.test_ui_login import log_in, settle
    from tests.test_ui_manual_write import wait_for

    e, _sim = plant
    app = make_app(e.api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "eng1", "2222")
        hold_change(e, "r-ui")
        await wait_for(
            pilot,
            lambda: (
                app.last_frame is not None
                and any(c.source == "fleet" for c in app.last_frame.conditions)
            ),
        )
        await app.push_screen(SnapshotScreen())
        screen = app.screen
        below = screen.query_one("#below")
        await wait_for(pilot, lambda: "Remote change r-ui" in str(below.render()))
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ReasonDialog)
        await pilot.press(*"batch on", "enter")
        await wait_for(pilot, lambda: e.fleet.pending.deferred_by == "eng1")
        assert e.fleet.pending.deferred_why == "batch on"
        await wait_for(pilot, lambda: "deferred by eng1: batch on" in str(below.render()))
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_for(pilot, lambda: e.fleet.pending is None)
    done = [
        r["detail"].get("command")
        for r in e.api.audit(kind="snapshot_apply", limit=50)
        if r["user"] == "eng1" and r["detail"].get("phase") == "result"
    ]
    assert "fleet.accept" in done and "fleet.defer" in done, done
