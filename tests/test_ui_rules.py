"""The rules screen from a recorded frame (no sockets, frozen clock): a rule held by its change
cap says HELD in words, never normal, and why; its alarm is raised."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.text import Text

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.screens.rules import ResetDialog, RulesScreen, rule_cells

RECORDING = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "rule_held.json"


@pytest.fixture(autouse=True)
def utc() -> None:
    os.environ["TZ"] = "UTC"  # the screen shows local times: the same image on any machine
    time.tzset()


async def open_held_rule(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await pilot.press("f3")
    await pilot.pause()
    await pilot.press("down")  # the held rule: its note shows below the table
    await pilot.pause(0.6)  # the next frame (4 Hz) fills the panel for the selected row
    await pilot.pause()


def test_the_recording_has_a_held_rule_and_its_alarm() -> None:
    frame = RecordedAPI.load(RECORDING).frame()
    held = next(r for r in frame.rules if r.id == "current-high")
    assert held.state == "HELD" and "held" in held.note and "cap of 2" in held.note
    [state] = [c for c in rule_cells(held, {}) if isinstance(c, Text) and "HELD" in c.plain]
    assert state.plain == "◆ HELD"
    assert any(a.id == "rule_held:current-high" and a.state == "UNACK" for a in frame.alarms)


def test_snapshot_rules_screen_with_a_held_rule(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app = make_app(RecordedAPI.load(RECORDING), theme="isa101")
    assert snap_compare(app, terminal_size=(100, 30), run_before=open_held_rule)


async def test_the_held_rule_is_shown_held_on_the_screen() -> None:
    app = make_app(RecordedAPI.load(RECORDING), theme="isa101")
    async with app.run_test(size=(100, 30)) as pilot:
        await open_held_rule(pilot)
        assert isinstance(app.screen, RulesScreen)
        shown = str(app.screen.query_one("#actions").render())
        assert "current-high" in shown and "activation held" in shown


async def test_f3_resets_a_latched_rule_with_a_reason() -> None:
    api = RecordedAPI.load(RECORDING)
    frame = api.frame()
    tripped = tuple(
        replace(r, latch=True, active=True, state="LATCHED", note="latched: the condition has")
        if r.id == "trip-motor1"
        else r
        for r in frame.rules
    )
    api.set_frame(replace(frame, rules=tripped))
    app = make_app(api, theme="isa101")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("f3")  # the rules screen
        await pilot.pause(0.6)
        await pilot.press("f3")  # reset the selected (latched) rule
        await pilot.pause()
        assert isinstance(app.screen, ResetDialog)
        await pilot.press("enter")  # no reason: refused here, nothing sent
        await pilot.pause()
        assert isinstance(app.screen, ResetDialog) and not api.commands
        await pilot.press(*"bearing replaced", "enter")
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        assert [(n, a["rule"], a["reason"]) for n, a in api.commands] == [
            ("rule.reset", "trip-motor1", "bearing replaced")
        ]
        await pilot.press("down", "f3")  # a rule that does not latch: nothing to reset
        await pilot.pause()
        assert isinstance(app.screen, RulesScreen)
