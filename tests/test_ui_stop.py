"""Stopping the engine from its own console: q asks first, says how many other consoles are
attached, and the audit trail names who stopped it; an attached console only leaves."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from floorconsole.adapters.audit_log import AuditLog
from floorconsole.engine.attach import socket_path
from floorconsole.engine.remote import RemoteAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.screens.overview import OverviewScreen
from floorconsole.ui.screens.stop_engine import StopEngineDialog
from tests.test_ui_login import log_in, settle

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "plants" / "demo.toml"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    from floorconsole.engine.bootstrap import open_engine
    from floorconsole.engine.demo import DemoPlant

    with DemoPlant(DEMO) as d:
        e = open_engine(
            data_dir=tmp_path / "data",
            base_dir=DEMO.parent,
            user="test",
            plant_raw=copy.deepcopy(d.plant.raw),
            source="demo plant",
            demo=d.sim,
        )
        e.start_background()
        try:
            yield e
        finally:
            e.stop()


def stop_records(data_dir: Path) -> list[dict[str, Any]]:
    """engine.stop commands and the engine's last record, oldest first, from the trail on disk."""
    log = AuditLog.in_data_dir(data_dir)
    try:
        rows = log.query(limit=500)
    finally:
        log.close()
    out = []
    for r in reversed(rows):
        d = r.get("detail") or {}
        r = {**r, "detail": json.loads(d) if isinstance(d, str) else d}
        if r["target"] == "engine stopped" or r["detail"].get("command") == "engine.stop":
            out.append(r)
    return out


async def wait_for(pilot: Any, cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    assert cond()


@pytest.mark.slow
async def test_q_asks_names_the_other_consoles_and_audits_who_stopped(engine: Any) -> None:
    other = RemoteAPI(socket_path(engine.data_dir), refresh_hz=4.0).connect(timeout=10.0)
    try:
        app = make_app(engine.api, owns_engine=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await wait_for(pilot, lambda: engine.api.frame().consoles == 1)
            await log_in(pilot, "op1", "1111")
            await pilot.press("q")
            await settle(pilot)
            assert isinstance(app.screen, StopEngineDialog)
            question = str(app.screen.query_one("#question", Static).render())
            assert "1 other console is attached" in question, question
            assert "op1 stopped it" in question, question
            # No is the default and leaves everything running.
            await pilot.press("enter")  # the focused button is Stay
            await settle(pilot)
            assert isinstance(app.screen, OverviewScreen) and app.is_running
            assert not stop_records(engine.data_dir)
            # An attached console cannot stop the engine: it leaves instead.
            refused = other.command("engine.stop")
            assert not refused["ok"] and "leaves" in refused["message"], refused
            await pilot.press("f10")
            await settle(pilot)
            assert isinstance(app.screen, StopEngineDialog)
            await pilot.press("y")
            await wait_for(pilot, lambda: app.return_code is not None)
        assert app.return_code == 0
    finally:
        other.close()
    engine.stop()  # what the CLI does once the console has left
    records = stop_records(engine.data_dir)
    asked = [r for r in records if r["detail"].get("command") == "engine.stop"]
    assert [r["user"] for r in asked] == ["op1", "op1"], records  # request and result
    assert asked[-1]["detail"]["by"] == "op1" and asked[-1]["detail"]["others"] == 1
    last = records[-1]
    assert (last["target"], last["user"]) == ("engine stopped", "op1"), records


@pytest.mark.slow
async def test_an_admin_leaving_kiosk_is_told_and_named(engine: Any) -> None:
    """In `run`/`demo --kiosk` the leave dialog says that leaving stops the engine and how many
    consoles are attached; the admin's PIN confirms, and the trail names the admin."""
    from floorconsole.ui.screens.login import LoginDialog

    app = make_app(engine.api, owns_engine=True, kiosk=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")  # a kiosk ignores it
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("f11")
        await settle(pilot)
        assert isinstance(app.screen, LoginDialog)
        note = str(app.screen.query_one("#note", Static).render())
        assert "Leaving stops the engine" in note and "No other console is attached" in note
        await pilot.press(*"admin", "enter", *"9999", "enter")
        await wait_for(pilot, lambda: app.return_code is not None)
    engine.stop()
    records = stop_records(engine.data_dir)
    assert [(r["target"], r["user"]) for r in records] == [
        ("engine", "admin"),
        ("engine", "admin"),
        ("engine stopped", "admin"),
    ], records
    assert engine.api.session(None)["user"] == ""


async def test_an_attached_console_leaves_without_asking() -> None:
    from floorconsole.engine.replay import RecordedAPI

    app = make_app(RecordedAPI.load(REPO / "fixtures" / "recordings" / "overview.json"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0
