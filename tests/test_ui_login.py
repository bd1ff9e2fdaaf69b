"""Sessions in the console: the header's role, the F9 login dialog, the PIN prompt and its one
retry, the locked console, and kiosk mode's keys; against a recording (view-only), a small
scripted engine, and a real demo engine."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Static

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import KIOSK_STAYS, FloorApp, make_app
from floorconsole.ui.keys import keys_of
from floorconsole.ui.screens.login import AccountDialog, LoginDialog, PinDialog
from floorconsole.ui.screens.overview import OverviewScreen
from floorconsole.ui.session import who_words
from floorconsole.ui.widgets.status_bars import HeaderBar

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "fixtures" / "recordings"
DEMO = REPO / "fixtures" / "plants" / "demo.toml"
CRITICAL = {"alarm.shelve", "config.apply", "snapshot.rollback", "control.write", "kiosk.leave"}
NEEDS = {"kiosk.leave": "admin", "config.apply": "engineer", "snapshot.rollback": "engineer"}
RANK = {"viewer": 0, "operator": 1, "engineer": 2, "admin": 3}


class ScriptedAPI(RecordedAPI):
    """A recording with users: the same answers as the engine's contract, with a switch to
    make a PIN stale or a session idle-locked, so a test drives each refusal."""

    USERS = {"op1": ("1111", "operator"), "eng1": ("2222", "engineer"), "admin": ("9999", "admin")}

    def __init__(self) -> None:
        base = RecordedAPI.load(RECORDINGS / "overview.json")
        super().__init__(base.frame(), {})
        self.sessions: dict[str, dict[str, Any]] = {}
        self.touches = 0
        self.unlocks: list[str] = []
        self.logins = 0

    def login(self, user: str, pin: str) -> dict[str, Any]:
        known = self.USERS.get(user)
        if known is None or known[0] != pin:
            return {
                "ok": False,
                "message": "wrong user name or PIN (4 tries left)",
                "session": None,
                "user": user,
                "role": "viewer",
            }
        self.logins += 1
        token = f"t{self.logins}"
        self.sessions[token] = {"user": user, "role": known[1], "locked": False, "fresh": True}
        return {
            "ok": True,
            "message": f"welcome {user}",
            "session": token,
            "user": user,
            "role": known[1],
        }

    def logout(self, session: str) -> None:
        self.sessions.pop(session, None)

    def unlock(self, session: str, pin: str) -> dict[str, Any]:
        s = self.sessions.get(session)
        self.unlocks.append(pin)
        if s is None or self.USERS[s["user"]][0] != pin:
            return {"ok": False, "message": "wrong PIN (4 tries left)"}
        s["locked"], s["fresh"] = False, True
        return {"ok": True, "message": "PIN accepted"}

    def session(self, session: str | None) -> dict[str, Any]:
        s = self.sessions.get(session or "")
        if s is None:
            return super().session(None)
        return {
            "user": s["user"],
            "role": s["role"],
            "locked": s["locked"],
            "pin_fresh": s["fresh"],
            "idle_lock_s": 300.0,
            "permitted": [],
        }

    def touch(self, session: str) -> None:
        self.touches += 1

    def demo_users(self) -> list[dict[str, str]]:
        return [{"name": n, "pin": p, "role": r} for n, (p, r) in self.USERS.items()]

    def command(self, name: str, session: str | None = None, **args: Any) -> dict[str, Any]:
        self.commands.append((name, {**args, "session": session}))
        s = self.sessions.get(session or "")
        if s is None:
            return {"ok": False, "refused": "login", "message": f"{name}: nobody is logged in"}
        if s["locked"]:
            return {"ok": False, "refused": "locked", "message": "the session locked"}
        if RANK[s["role"]] < RANK[NEEDS.get(name, "operator")]:
            return {
                "ok": False,
                "refused": "role",
                "message": f"{name} needs {NEEDS.get(name)}; {s['user']} is {s['role']}",
            }
        if name in CRITICAL and not s["fresh"]:
            return {"ok": False, "refused": "pin", "message": "PIN entered more than 60 s ago"}
        return {"ok": True, "message": f"{name} done by {s['user']}"}


async def settle(pilot: Any) -> None:
    for _ in range(2):
        await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def header(app: FloorApp) -> str:
    """The overview's header line; under another screen, the words it will show."""
    app.tick()
    if not isinstance(app.screen, OverviewScreen):
        return who_words(app.session_info)
    return str(app.screen.query_one(HeaderBar)._last)


def said(app: FloorApp) -> list[str]:
    return [n.message for n in app._notifications]


async def log_in(pilot: Any, user: str, pin: str) -> None:
    await pilot.press("f9")
    await settle(pilot)
    assert isinstance(pilot.app.screen, LoginDialog)
    await pilot.press(*user, "enter", *pin, "enter")
    await settle(pilot)


# -- a recording: nobody can log in ----------------------------------------------------------


async def test_a_recording_is_view_only() -> None:
    api = RecordedAPI.load(RECORDINGS / "overview.json")
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "VIEWER" in header(app)
        await log_in(pilot, "eng1", "2222")
        dialog = app.screen
        assert isinstance(dialog, LoginDialog)  # refused: the dialog stays, with the reason
        error = str(dialog.query_one("#error", Static).render())
        assert "view-only" in error
        assert dialog.query_one("#pin", Input).value == ""  # cleared for another try
        assert not dialog.query("#demo-users")  # a recording has no demo users to offer
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen) and app.session is None
        assert "VIEWER" in header(app)


# -- a scripted engine: login, header, PIN prompt, lock ---------------------------------------


async def test_login_shows_the_role_and_the_demo_users() -> None:
    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        hint = str(app.screen.query_one("#demo-users", Static).render())
        assert "op1 1111 operator" in hint and "admin 9999 admin" in hint
        pin = app.screen.query_one("#pin", Input)
        assert pin.password  # masked
        await pilot.press(*"eng1", "enter", *"0000", "enter")
        await settle(pilot)
        assert "wrong user name or PIN" in str(app.screen.query_one("#error", Static).render())
        await pilot.press(*"2222", "enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert app.session == "t1"
        assert "ENGINEER eng1" in header(app)
        # Keys reach the engine as activity (throttled: one touch for a burst of keys).
        app._last_touch -= 2.0  # the login itself was the last activity; 2 s later
        await pilot.press("down", "down", "up")
        await pilot.pause()
        assert api.touches == 1
        # F9 again: log out.
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, AccountDialog)
        await pilot.press("l")
        await settle(pilot)
        assert app.session is None and "VIEWER" in header(app) and api.sessions == {}


async def test_switch_user_from_f9() -> None:
    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "op1", "1111")
        assert "OPERATOR op1" in header(app)
        await pilot.press("f9", "s")
        await settle(pilot)
        assert isinstance(app.screen, LoginDialog)
        await pilot.press(*"admin", "enter", *"9999", "enter")
        await settle(pilot)
        assert "ADMIN admin" in header(app) and list(api.sessions) == ["t2"]


async def test_a_stale_pin_is_asked_for_and_the_command_runs_once_more() -> None:
    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "eng1", "2222")
        api.sessions["t1"]["fresh"] = False  # a minute went by
        app.send_command("snapshot.rollback", snapshot="7f3a21")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, PinDialog)
        assert "60 s" in str(app.screen.query_one("#reason", Static).render())
        assert app.screen.query_one("#pin", Input).password
        await pilot.press(*"1234", "enter")  # wrong: the dialog says so and stays
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, PinDialog)
        assert "wrong PIN" in str(app.screen.query_one("#error", Static).render())
        await pilot.press(*"2222", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, PinDialog)
        assert [c[0] for c in api.commands] == ["snapshot.rollback", "snapshot.rollback"]
        assert all(c[1]["session"] == "t1" and "user" not in c[1] for c in api.commands)
        assert any("snapshot.rollback done by eng1" in m for m in said(app))


async def test_esc_at_the_pin_prompt_does_nothing() -> None:
    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "eng1", "2222")
        api.sessions["t1"]["fresh"] = False
        app.send_command("config.apply", config={}, message="x")
        await pilot.pause()
        await pilot.pause()
        await pilot.press("escape")
        await settle(pilot)
        assert [c[0] for c in api.commands] == ["config.apply"]  # not sent again
        assert any("no PIN entered" in m for m in said(app))


async def test_a_locked_console_still_shows_every_screen_and_unlocks_with_the_pin() -> None:
    from floorconsole.ui.screens.alarms import AlarmScreen

    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, "op1", "1111")
        api.sessions["t1"]["locked"] = True  # idle too long
        assert "LOCKED op1" in header(app)
        await pilot.press("f2")  # the alarms, view only
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        app.send_command("alarm.ack", alarm="motor1.anomaly")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, PinDialog)
        assert "locked" in str(app.screen.query_one("#reason", Static).render())
        await pilot.press(*"1111", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        assert [c[0] for c in api.commands] == ["alarm.ack", "alarm.ack"]
        assert "OPERATOR op1" in header(app)


async def test_refusals_for_login_and_role_say_what_to_do() -> None:
    api = ScriptedAPI()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.send_command("alarm.ack", alarm="a")
        await settle(pilot)
        assert any("log in with F9" in m for m in said(app))
        await log_in(pilot, "op1", "1111")
        app.send_command("config.apply", config={}, message="x")
        await settle(pilot)
        assert any("needs engineer; op1 is operator" in m for m in said(app))
        assert not isinstance(app.screen, PinDialog)  # a role refusal asks for no PIN


# -- kiosk mode ------------------------------------------------------------------------------


ESCAPES = ("q", "f10", "ctrl+q", "ctrl+c", "ctrl+z", "ctrl+backslash", "ctrl+p")


async def test_kiosk_keys_do_not_leave_and_an_admin_pin_does() -> None:
    api = ScriptedAPI()
    app = make_app(api, kiosk=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.has_class("kiosk") and app.session is None
        for key in ESCAPES:
            await pilot.press(key)
            await settle(pilot)
            assert app.return_code is None and app.is_running, key
            assert isinstance(app.screen, OverviewScreen), key
        assert said(app).count(KIOSK_STAYS) == 1  # said once, not stacked per key
        # An operator cannot leave; the engine says why and the kiosk stays.
        await pilot.press("f11")
        await settle(pilot)
        assert isinstance(app.screen, LoginDialog) and app.screen.leave_kiosk
        await pilot.press(*"op1", "enter", *"1111", "enter")
        await settle(pilot)
        assert "needs admin" in str(app.screen.query_one("#error", Static).render())
        assert app.return_code is None and api.sessions == {}  # its session was closed
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("f11", *"admin", "enter", *"9999", "enter")
        await settle(pilot)
        assert app.return_code == 0
    assert ("kiosk.leave", {"session": "t2"}) in api.commands


async def test_outside_kiosk_q_quits() -> None:
    app = make_app(ScriptedAPI())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0


@pytest.mark.parametrize("cls", [LoginDialog, PinDialog, AccountDialog])
def test_dialog_keys_are_in_the_key_table(cls: type) -> None:
    listed = keys_of("Login and PIN") | keys_of("Everywhere")
    bound = {k.strip() for b in cls.BINDINGS for k in b.key.split(",")}  # type: ignore[attr-defined]
    assert bound <= listed, f"{cls.__name__} binds {sorted(bound - listed)}"


# -- a real engine ---------------------------------------------------------------------------


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


async def test_login_pin_and_lock_against_a_real_engine(engine: Any) -> None:
    app = make_app(engine.api)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "VIEWER" in header(app)
        await log_in(pilot, "eng1", "2222")
        assert "ENGINEER eng1" in header(app), said(app)
        # The PIN goes stale: a critical command asks for it, then runs once more (here the
        # engine then answers that there is no such alarm: the refusal was lifted).
        sessions = engine.api._sessions._sessions
        sessions[app.session].pin_mono -= 120
        app.send_command("alarm.shelve", alarm="no-such-alarm", duration_s=900)
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, PinDialog) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, PinDialog)
        await pilot.press(*"2222", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, PinDialog)
        assert not any("PIN" in m and "ago" in m for m in said(app)[-1:]), said(app)
        # Idle too long: the header says LOCKED; the PIN unlocks from F9.
        sessions[app.session].active_mono -= engine.api._sessions.idle_lock_s + 5
        assert "LOCKED eng1" in header(app)
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, AccountDialog)
        await pilot.press("u")
        await pilot.pause()  # not settle: the unlock worker waits for the PIN dialog
        await pilot.pause()
        assert isinstance(app.screen, PinDialog)
        await pilot.press(*"2222", "enter")
        await settle(pilot)
        assert "ENGINEER eng1" in header(app)
        await pilot.press("f9", "l")
        await settle(pilot)
        assert "VIEWER" in header(app) and app.session is None
