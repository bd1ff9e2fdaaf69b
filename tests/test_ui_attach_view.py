"""An attached console's view of control and of its engine: who holds control in the header,
the c key taking, asking for and releasing it, a "held" refusal offering to ask; and an engine
gone (the last frame greyed, the ENGINE GONE line, nothing sent) and back (log in again).
Frames come from a recording with the control and stale fields set (dataclasses.replace)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest

from floorconsole.console import Frame
from floorconsole.ui.app import LOG_IN_AGAIN, RECONNECTED_NOTE_S, FloorApp, make_app
from floorconsole.ui.screens.alarms import AlarmScreen
from floorconsole.ui.screens.snapshots import ConfirmDialog
from floorconsole.ui.widgets.signal_table import SignalTable
from floorconsole.ui.widgets.status_bars import EngineLine
from tests.test_ui_login import ScriptedAPI, engine, header, log_in, said, settle

__all__ = ["engine"]  # the real demo engine fixture of the login tests

GONE = "engine gone 3 s: reconnecting to /var/lib/floorconsole/engine.sock"
CONTROL_COMMANDS = ("control.take", "control.release", "control.request")


class AttachedAPI(ScriptedAPI):
    """The scripted engine of the login tests, seen the way a socket console sees it: one
    console holds control (others are refused "held"), and the engine can go and come back."""

    def __init__(self) -> None:
        super().__init__()
        self.holder = ""
        self.asker = ""
        self.stale = ""

    def frame(self) -> Frame:
        return replace(
            super().frame(),
            control_holder=self.holder,
            control_requested_by=self.asker,
            stale=self.stale,
        )

    def command(self, name: str, session: str | None = None, **args: Any) -> dict[str, Any]:
        s = self.sessions.get(session or "")
        if s is None or name not in CONTROL_COMMANDS and not self.holder:
            return super().command(name, session, **args)
        user = s["user"]
        if name == "control.take" and self.holder in ("", user):
            self.holder, self.asker = user, ""
        elif name == "control.release" and self.holder == user:
            self.holder = ""
        elif name == "control.request" and self.holder not in ("", user):
            self.asker = user
        elif self.holder != user:
            self.commands.append((name, {**args, "session": session}))
            return {
                "ok": False,
                "refused": "held",
                "message": f"control is held by {self.holder} on another console; ask for it",
            }
        else:
            return super().command(name, session, **args)
        self.commands.append((name, {**args, "session": session}))
        return {"ok": True, "message": f"{name} by {user}"}


def sent(api: AttachedAPI) -> list[str]:
    return [name for name, _ in api.commands]


def engine_line(app: FloorApp) -> EngineLine:
    return app.screen.query_one(EngineLine)


def tinted(widget: Any) -> bool:
    return widget.styles.tint.a > 0


async def frame_marked(pilot: Any, api: AttachedAPI, stale: str) -> None:
    """The engine goes (stale text) or comes back (""): one tick shows it."""
    api.stale = stale
    pilot.app.tick()
    await pilot.pause()


async def started(api: AttachedAPI, pilot: Any) -> None:
    await settle(pilot)
    while pilot.app.screen.query_one(SignalTable).row_count == 0:
        await pilot.pause(0.05)


# -- the engine gone and back ----------------------------------------------------------------


async def test_engine_gone_greys_everything_within_one_tick_and_sends_nothing() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)  # slow ticks: the test ticks by hand
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        assert not app.has_class("-stale") and not app.screen.query(EngineLine)
        table = app.screen.query_one(SignalTable)
        assert not tinted(table)
        await log_in(pilot, "eng1", "2222")
        await frame_marked(pilot, api, GONE)
        assert app.has_class("-stale")
        line = engine_line(app)
        assert line.display and line.region.y == 0  # the top line, above the header
        assert f"ENGINE GONE — {GONE}" in str(line._last)
        assert "✕" in str(line._last)  # a shape and words, not colour alone
        assert tinted(table) and not tinted(line)
        # The header still shows who is at the console: a gone engine cannot say otherwise.
        assert "ENGINEER eng1" in header(app) and app.session == "t1"
        before = len(api.commands)
        app.send_command("alarm.ack", alarm="motor1.anomaly")
        await settle(pilot)
        assert len(api.commands) == before  # refused here, never sent
        assert any(f"alarm.ack: not sent: ENGINE GONE — {GONE}" in m for m in said(app))


async def test_engine_back_returns_to_normal_and_says_so_for_a_few_seconds() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        await frame_marked(pilot, api, GONE)
        await frame_marked(pilot, api, "")
        line = engine_line(app)
        assert not app.has_class("-stale") and app.has_class("-reconnected")
        assert "ENGINE BACK" in str(line._last) and line.display
        assert not tinted(app.screen.query_one(SignalTable))
        assert app.session == "t1"  # the same engine came back: the session holds
        app._back_t -= RECONNECTED_NOTE_S + 1
        app.tick()
        await pilot.pause()
        assert not app.has_class("-reconnected") and not line.display
        app.send_command("alarm.ack", alarm="motor1.anomaly")
        await settle(pilot)
        assert sent(api)[-1] == "alarm.ack"


async def test_a_restarted_engine_forgot_the_session_log_in_again() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        await frame_marked(pilot, api, GONE)
        api.sessions.clear()  # the engine restarted
        await frame_marked(pilot, api, "")
        assert app.session is None and "VIEWER" in header(app)
        assert LOG_IN_AGAIN in said(app)
        assert not any("the session ended" in m for m in said(app))
        assert "log in again (F9)" in str(engine_line(app)._last)


async def test_a_reconnect_between_two_ticks_is_a_return_too() -> None:
    api = AttachedAPI()
    api.reconnected = 0  # type: ignore[attr-defined]
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        api.sessions.clear()  # gone and back within a quarter second: never seen stale
        api.reconnected = 1  # type: ignore[attr-defined]
        app.tick()
        await pilot.pause()
        assert app.session is None and LOG_IN_AGAIN in said(app)
        assert "ENGINE BACK" in str(engine_line(app)._last)


async def test_a_frame_that_cannot_be_had_is_the_last_one_stale() -> None:
    class Gone(AttachedAPI):
        def __init__(self) -> None:
            super().__init__()
            self.gone = False

        def frame(self) -> Frame:
            if self.gone:
                raise ConnectionError("engine not reachable: connection refused")
            return super().frame()

    api = Gone()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        api.gone = True
        app.tick()
        await pilot.pause()
        assert app.has_class("-stale") and app.is_running
        assert "ENGINE GONE — engine not reachable: connection refused" in str(
            engine_line(app)._last
        )


async def test_engine_gone_shows_on_any_screen() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(api, pilot)
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        await frame_marked(pilot, api, GONE)
        line = engine_line(app)
        assert line.display and line.region.y == 0 and "ENGINE GONE" in str(line._last)
        await pilot.press("escape")  # the overview mounts its own line on the next tick
        await pilot.pause()
        app.tick()
        await pilot.pause()
        assert "ENGINE GONE" in str(engine_line(app)._last)


# -- control -----------------------------------------------------------------------------------


async def test_header_shows_who_holds_control_and_who_asks() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        assert "CONTROL" not in header(app)  # free: nothing to say
        api.holder = "eng2"
        assert "VIEWER · CONTROL eng2" in header(app)
        await log_in(pilot, "eng1", "2222")
        api.holder = "eng1"
        assert "CONTROL you" in header(app)
        api.asker = "eng2"
        shown = header(app)
        assert "CONTROL you" in shown and "eng2 asks for control: c releases" in shown
        assert "ENGINEER eng1" in shown
        await pilot.pause()
        assert sum("eng2 asks for control" in m for m in said(app)) == 1  # told once
        header(app)
        await pilot.pause()
        assert sum("eng2 asks for control" in m for m in said(app)) == 1
        api.holder, api.asker = "eng2", "eng1"
        assert "CONTROL eng2 · you asked" in header(app)
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        api.holder, api.asker = "eng1", "eng2"
        shown = header(app)
        assert "ENGINEER eng1" in shown and "eng2 asks: c releases" in shown


async def test_the_control_key_takes_asks_and_releases() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await pilot.press("c")  # a viewer: nothing is sent
        await settle(pilot)
        assert sent(api) == []
        await log_in(pilot, "eng1", "2222")
        await pilot.press("c")
        await settle(pilot)
        assert sent(api) == ["control.take"] and api.holder == "eng1"
        assert "CONTROL you" in header(app)
        await pilot.press("c")
        await settle(pilot)
        assert sent(api)[-1] == "control.release" and api.holder == ""
        api.holder = "eng2"
        app.tick()
        await pilot.press("c")
        await settle(pilot)
        assert sent(api)[-1] == "control.request" and api.asker == "eng1"
        assert all(args == {"session": "t1"} for _, args in api.commands)
        await pilot.press("c")  # asked already: says so, sends nothing more
        await settle(pilot)
        assert sent(api).count("control.request") == 1
        assert any("asked eng2 for control already" in m for m in said(app))


async def test_a_held_refusal_offers_to_ask_for_control() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        api.holder = "eng2"
        app.send_command("snapshot.rollback", snapshot="7f3a21")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert "held by eng2" in app.screen.question and "Ask for control?" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert sent(api) == ["snapshot.rollback", "control.request"] and api.asker == "eng1"
        # No: nothing more is sent.
        app.send_command("snapshot.rollback", snapshot="7f3a21")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert sent(api) == ["snapshot.rollback", "control.request", "snapshot.rollback"]


async def test_f9_offers_control_too() -> None:
    from floorconsole.ui.screens.login import AccountDialog

    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        for holder, label, command in (
            ("", "Take control (c)", "control.take"),
            ("eng1", "Release control (c)", "control.release"),
            ("eng2", "Ask for control (c)", "control.request"),
        ):
            api.holder = holder
            app.tick()
            await pilot.press("f9")
            await settle(pilot)
            assert isinstance(app.screen, AccountDialog)
            assert str(app.screen.query_one("#control").label) == label
            await pilot.press("c")
            await settle(pilot)
            assert sent(api)[-1] == command


async def test_the_engine_says_which_console_holds_control() -> None:
    """eng1 logged in at two consoles: the one the engine says holds control shows it."""

    class PerSession(AttachedAPI):
        def session(self, session: str | None) -> dict[str, Any]:
            return {**super().session(session), "holds_control": False}

    api = PerSession()
    api.holder, api.asker = "eng1", "eng2"
    app = make_app(api, refresh_hz=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        await log_in(pilot, "eng1", "2222")
        shown = header(app)
        assert "CONTROL eng1 · eng2 asks" in shown and "CONTROL you" not in shown
        await pilot.press("c")
        await settle(pilot)
        assert sent(api)[-1] == "control.request"


async def test_control_against_a_real_engine(engine: Any) -> None:
    api = engine.api
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "eng1", "2222")
        await pilot.press("c")
        await settle(pilot)
        assert api.frame().control_holder == "eng1" and "CONTROL you" in header(app)
        other = api.login("admin", "9999")["session"]  # a second console
        assert api.command("control.request", session=other)["ok"]
        assert "admin asks for control: c releases" in header(app)
        await pilot.pause()
        assert any("admin asks for control" in m for m in said(app))
        await pilot.press("c")
        await settle(pilot)
        assert api.frame().control_holder == "" and "CONTROL" not in header(app)
        assert api.command("control.take", session=other)["ok"]
        assert "CONTROL admin" in header(app)
        app.send_command("snapshot.rollback", snapshot="nope")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog) and "held by admin" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert api.frame().control_requested_by == "eng1"
        assert "CONTROL admin · you asked" in header(app)


# -- the image ---------------------------------------------------------------------------------


@pytest.fixture
def utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def test_stale_overview_image(snap_compare, utc: None) -> None:  # type: ignore[no-untyped-def]
    api = AttachedAPI()
    api.holder, api.stale = "eng2", GONE

    async def shown(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await settle(pilot)

    assert snap_compare(make_app(api, refresh_hz=0.2), terminal_size=(100, 30), run_before=shown)
