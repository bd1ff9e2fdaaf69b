"""Writing by hand from the signal detail (w): arm, then confirm, against a real demo engine
(its Modbus device, audit trail and roles); refusals in the engine's words; an expired arm;
all through the console's own command path (PIN prompt, control refusals)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.keys import keys_of
from floorconsole.ui.screens.detail import SignalDetailScreen
from floorconsole.ui.screens.manual_write import (
    ManualWriteDialog,
    WriteTarget,
    parse_value,
    target_of,
)
from tests.test_ui_attach_view import AttachedAPI, started
from tests.test_ui_login import log_in, settle

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A running demo engine and its simulated plant (to read the device's coils)."""
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
            yield e, d.sim
        finally:
            e.stop()


async def wait_for(pilot: Any, done: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    assert done()


async def open_write(app: FloorApp, pilot: Any, signal: str) -> ManualWriteDialog:
    await wait_for(
        pilot,
        lambda: app.last_frame is not None and any(s.id == signal for s in app.last_frame.signals),
    )
    await app.push_screen(SignalDetailScreen(signal))
    await settle(pilot)
    await pilot.press("w")
    await settle(pilot)
    dialog = app.screen
    assert isinstance(dialog, ManualWriteDialog)
    return dialog


async def retype(pilot: Any, dialog: ManualWriteDialog, field: str, text: str) -> None:
    from textual.widgets import Input

    box = dialog.query_one(f"#{field}", Input)
    box.value = ""
    box.focus()
    await pilot.press(*text)


# -- the parts --------------------------------------------------------------------------------


def test_the_target_comes_from_the_signal_source() -> None:
    from tests.test_ui_detail import _signal

    assert target_of(_signal("a", source="drive1 co:10 bool")) == WriteTarget("drive1", "co:10")
    assert target_of(_signal("a", source="drive1 hr:0 float32")) == WriteTarget(
        "drive1", "hr:0", "float32"
    )
    assert target_of(_signal("a", source="drive1 ir:3 uint16")) == WriteTarget("drive1")
    assert target_of(_signal("a", source="local factory/motor-01/vibration/raw x")) == WriteTarget()
    assert target_of(None) == WriteTarget()


def test_values_are_read_as_the_table_takes_them() -> None:
    assert parse_value("True", "co") is True and parse_value("off", "co") is False
    assert parse_value("12", "hr") == 12 and parse_value("-1.5", "hr") == -1.5
    for text, table in (("2", "co"), ("", "co"), ("abc", "hr"), ("nan", "hr")):
        with pytest.raises(ValueError):
            parse_value(text, table)


def test_dialog_keys_are_in_the_key_table() -> None:
    bound = {k.strip() for b in ManualWriteDialog.BINDINGS for k in b.key.split(",")}
    assert bound <= keys_of("Write by hand")
    assert "w" in keys_of("Signal detail")


# -- a real engine ----------------------------------------------------------------------------


async def test_an_engineer_arms_and_confirms_a_coil_write(plant: tuple[Any, Any]) -> None:
    e, sim = plant
    app = make_app(e.api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "eng1", "2222")
        dialog = await open_write(app, pilot, "motor1.trip")
        assert dialog.target == WriteTarget("drive1", "co:10")
        assert "value now: OFF (motor1.trip" in str(dialog.query_one("#now").render())
        # co:11 is driven by no rule and no signal: typed by hand.
        await retype(pilot, dialog, "address", "co:11")
        await retype(pilot, dialog, "value", "true")
        before = sim._server.get("co", 11)[0]
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.phase == "armed")
        assert "ARMED — write true to drive1 co:11" in dialog.state_text
        assert "armed: write true to drive1 co:11" in dialog.state_text  # the engine's words
        assert "confirm within 10 s: y / Enter, Esc cancels" in dialog.state_text
        assert dialog.query_one("#state").has_class("-armed")
        await pilot.press("y")
        await wait_for(pilot, lambda: dialog.phase == "done")
        assert dialog.result["ok"], dialog.result
        assert f"WRITTEN drive1 co:11: {str(before).lower()} → true" in dialog.state_text
        assert sim._server.get("co", 11) == [True]  # the device's coil changed
        records = [r for r in reversed(e.api.audit(kind="write", limit=20)) if r["user"] == "eng1"]
        phases = [(r["detail"].get("command", ""), r["detail"]["phase"]) for r in records]
        assert phases == [
            ("control.arm", "request"),
            ("control.arm", "result"),
            ("control.write", "request"),
            ("", "writing"),
            ("control.write", "result"),
        ], phases
        assert records[3]["target"] == "drive1 co:11" and records[3]["detail"]["before"] is before
        done = records[4]["detail"]
        assert done["ok"] and done["before"] is before and done["after"] is True
        # An arm left unconfirmed past the engine's time is refused when confirmed late.
        await retype(pilot, dialog, "value", "false")
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.phase == "armed")
        armed = e.api._manual._armed[dialog.token]
        e.api._manual._armed[dialog.token] = replace(armed, expires_mono=e.clock.mono() - 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.phase == "done")
        assert "NOT WRITTEN: the armed write expired (10 s): arm it again" in dialog.state_text
        assert sim._server.get("co", 11) == [True]
        # Esc cancels an arm (nothing sent), then closes.
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.phase == "armed")
        await pilot.press("escape")
        assert dialog.phase == "edit" and "cancelled: nothing was written" in dialog.state_text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SignalDetailScreen)
        assert sim._server.get("co", 11) == [True]


async def test_an_operator_sees_the_key_and_the_engine_refuses(plant: tuple[Any, Any]) -> None:
    e, sim = plant
    app = make_app(e.api)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await log_in(pilot, "op1", "1111")
        dialog = await open_write(app, pilot, "motor1.trip")
        await retype(pilot, dialog, "value", "true")
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.phase == "edit" and "refused" in dialog.state_text)
        assert "refused:" in dialog.state_text and "operator" in dialog.state_text, (
            dialog.state_text
        )
        assert sim._server.get("co", 10) == [False]


async def test_a_countdown_that_runs_out_says_so_and_forgets_the_arm() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(api, pilot)
        dialog = ManualWriteDialog(WriteTarget("drive1", "co:11"))
        await app.push_screen(dialog)
        await settle(pilot)
        dialog.armed = {"device": "drive1", "address": "co:11", "value": True}
        dialog._armed_answer(
            {
                "ok": True,
                "arm": "abc",
                "expires_s": 0.3,
                "message": "armed: write true to drive1 co:11",
            }
        )
        await wait_for(pilot, lambda: dialog.phase == "edit", 3)
        assert "the arm expired unconfirmed: nothing was written" in dialog.state_text
        await pilot.press("y")
        assert "control.write" not in [n for n, _ in api.commands]
