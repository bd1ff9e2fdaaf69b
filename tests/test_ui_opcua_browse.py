"""Browsing an OPC UA device from the console (links screen, b) and adding its variables as
signals through config.apply (a snapshot), against a real engine and an asyncua server in
another process; a write to an OPC UA node from the signal detail takes its NodeId."""

from __future__ import annotations

import time
from typing import Any

from floorconsole.engine.runtime import Engine
from floorconsole.ui.app import make_app
from floorconsole.ui.screens.links import LinksScreen
from floorconsole.ui.screens.manual_write import WriteTarget, parse_value, target_of
from floorconsole.ui.screens.opcua_browse import OpcUaBrowseScreen, new_signals
from tests.test_opcua_engine import engine, ua_server  # noqa: F401 - fixtures
from tests.test_ui_login import log_in, settle


async def until(pilot: Any, done: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        await pilot.pause(0.1)
    assert done()


async def test_browse_and_add_signals_through_a_snapshot(engine: Engine) -> None:  # noqa: F811
    engine.users().add("eng1", "engineer", "2222")
    before = {s["id"] for s in engine.api.active_config()["signals"]}
    app = make_app(engine.api)
    async with app.run_test(size=(100, 30)) as pilot:
        await log_in(pilot, "eng1", "2222")
        await app.push_screen(LinksScreen())
        await until(pilot, lambda: app.last_frame is not None)
        await pilot.pause(0.5)
        await pilot.press("b")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OpcUaBrowseScreen) and screen.device == "press2"
        await until(pilot, lambda: "Plant  ns=2;s=Plant" in screen.text)
        await pilot.press(*"ns=2;s=Plant", "enter")
        await until(pilot, lambda: "F8 adds those of the" in screen.text)
        assert 'node = "ns=2;s=Plant.ReadOnly"' in screen.text
        await pilot.press("f8")
        await until(
            pilot,
            lambda: "press2.readonly" in {s["id"] for s in engine.api.active_config()["signals"]},
        )
    after = engine.api.active_config()["signals"]
    added = [s for s in after if s["id"] not in before]
    # the variables the plant did not read yet; Double, Int16, ... were there already
    assert {s["node"] for s in added} >= {"ns=2;s=Plant.ReadOnly", "ns=2;s=Plant.Boolean"}
    assert "ns=2;s=Plant.Double" not in {s["node"] for s in added}
    snaps = engine.api.snapshots()
    assert any("from OPC UA device press2" in s["message"] for s in snaps), snaps


def test_new_signals_skip_what_the_plant_reads_and_keep_ids_unique() -> None:
    plant = {"signals": [{"id": "p.double", "device": "p", "node": "ns=2;s=A"}]}
    found = [
        {"id": "p.double", "device": "p", "node": "ns=2;s=A"},
        {"id": "p.double", "device": "p", "node": "ns=2;s=B"},
    ]
    assert new_signals(plant, "p", found) == [
        {"id": "p.double_2", "device": "p", "node": "ns=2;s=B"}
    ]


def test_a_write_to_an_opcua_signal_takes_its_node_id() -> None:
    from floorconsole.console.views import SignalView

    view = SignalView(
        "press2.rate", "press2", "scalar", 30.0, "30", "spm", "GOOD", "", "", 0.1,
        "press2 ns=2;s=Line2.Press.StrokeRate", None,
    )  # fmt: skip
    assert target_of(view) == WriteTarget("press2", "ns=2;s=Line2.Press.StrokeRate")
    assert parse_value("off", "ns=2;s=Line2.Press.Running") is False
    assert parse_value("45", "ns=2;s=Line2.Press.StrokeRate") == 45
