"""The audit screen against a recording that also carries a fixed audit trail."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.screens.audit import NO_TRAIL, AuditRecordDialog, AuditScreen, summarize
from floorconsole.ui.widgets.status_bars import Bar

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
SECRETS = ("4711", "pbkdf2$SECRETHASH", "pin_hash", '"pin"')


class RecordedAuditAPI(RecordedAPI):
    """A recording plus a fixed audit trail, filtered as EngineAPI.audit() filters: a closed
    time range, exact user and kind, text anywhere in user, kind, target or detail (any
    case), newest first, at most `limit`."""

    def __init__(
        self,
        base: RecordedAPI,
        records: list[dict[str, Any]],
        verdict: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(base.frame(), base._histories)
        self.records = records
        self.verdict = verdict or {"ok": True, "message": f"{len(records)} records, intact"}
        self.asks: list[dict[str, Any]] = []

    def audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        self.asks.append(
            {
                "since": since,
                "until": until,
                "user": user,
                "kind": kind,
                "text": text,
                "limit": limit,
            }
        )
        needle = (text or "").lower()
        out = []
        for r in sorted(self.records, key=lambda r: r["seq"], reverse=True):
            if since is not None and r["t_wall"] < since:
                continue
            if until is not None and r["t_wall"] > until:
                continue
            if user is not None and r["user"] != user:
                continue
            if kind is not None and r["kind"] != kind:
                continue
            hay = " ".join((r["user"], r["kind"], r["target"], json.dumps(r["detail"])))
            if needle and needle not in hay.lower():
                continue
            out.append(r)
        return out[:limit]

    def audit_verify(self) -> dict[str, Any]:
        return self.verdict


def trail(now: float) -> list[dict[str, Any]]:
    rows = [
        (
            3 * 86400,
            "admin",
            "user_change",
            "op2",
            {"change": "reset-pin", "role": "operator", "pin_hash": "pbkdf2$SECRETHASH"},
        ),
        (20 * 3600, "eng1", "login", "console", {"role": "engineer"}),
        (3000, "op1", "login_failed", "console", {"reason": "wrong PIN", "pin": "4711"}),
        (2500, "op1", "user_locked", "op1", {"reason": "5 wrong PINs in a row", "for_s": 300}),
        (
            1800,
            "eng1",
            "write",
            "drive1 co:10",
            {"before": False, "after": True, "read_back": True},
        ),
        (
            1200,
            "eng1",
            "rule_change",
            "trip-motor1",
            {
                "message": "raise threshold after the bearing swap",
                "before": {"threshold": 0.8},
                "after": {"threshold": 0.85},
            },
        ),
        (600, "op1", "alarm_ack", "motor1.anomaly", {"text": "checked the bearing"}),
        (
            300,
            "op1",
            "alarm_shelve",
            "line.speed.stale",
            {"duration_s": 3600, "reason": "sensor being swapped"},
        ),
        (
            120,
            "eng1",
            "snapshot_rollback",
            "7f3a21",
            {"message": "health check failed: drive1 down", "from": "9c1e44"},
        ),
        (30, "system", "system", "engine", {"message": "engine started", "version": "0.1"}),
    ]
    return [
        {
            "seq": i + 1,
            "t_wall": now - ago,
            "user": user,
            "kind": kind,
            "target": target,
            "detail": detail,
        }
        for i, (ago, user, kind, target, detail) in enumerate(rows)
    ]


@pytest.fixture(autouse=True)
def utc() -> None:
    # Times are shown in local time: pin the zone so tests and images match on any machine.
    os.environ["TZ"] = "UTC"
    time.tzset()


def recorded() -> RecordedAPI:
    return RecordedAPI.load(RECORDINGS / "overview.json")


def audit_api() -> RecordedAuditAPI:
    base = recorded()
    return RecordedAuditAPI(base, trail(base.frame().t_wall))


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_audit(pilot) -> AuditScreen:  # type: ignore[no-untyped-def]
    await pilot.pause()
    screen = AuditScreen()
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


async def press(pilot, *keys: str) -> None:  # type: ignore[no-untyped-def]
    for k in keys:
        await pilot.press(k)
        await settle(pilot)


def rows(screen: AuditScreen) -> list[list[str]]:
    t = screen.query_one(DataTable)
    return [[str(c) for c in t.get_row_at(i)] for i in range(t.row_count)]


def column(screen: AuditScreen, index: int) -> list[str]:
    return [r[index] for r in rows(screen)]


def screen_text(app: FloorApp) -> str:
    return app.export_screenshot()


async def test_default_window_is_a_day_newest_first() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        kinds = column(screen, 2)
        assert len(kinds) == 9  # the 3-day-old record is outside 24 h
        assert kinds[0] == "system" and kinds[-1] == "login"
        what = column(screen, 4)
        assert "False → True" in what[kinds.index("write")]
        assert what[kinds.index("login_failed")] == "wrong PIN"
        assert what[kinds.index("rule_change")].startswith("raise threshold after the bearing")
        assert summarize("rule_change", trail(0)[5]["detail"]) == (
            "raise threshold after the bearing swap threshold 0.8 → 0.85"
        )
        assert "for 1 h" in what[kinds.index("alarm_shelve")]
        # The record from yesterday carries its date; today's do not.
        times = column(screen, 0)
        assert times[-1] == "11-22 16:35:17" and times[0] == "12:34:47"


async def test_kind_filter_cycles_through_the_kinds_present() -> None:
    api = audit_api()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "k")
        assert screen.kind == "login" and column(screen, 2) == ["login"]
        assert api.asks[-1]["kind"] == "login"
        await press(pilot, "k")
        assert screen.kind == "login_failed" and column(screen, 2) == ["login_failed"]
        while screen.kind != "write":
            await press(pilot, "k")
        assert column(screen, 2) == ["write"]
        assert "kind write" in str(screen.query_one("#filters", Bar).render())
        for _ in range(20):  # back round to all
            if screen.kind is None:
                break
            await press(pilot, "k")
        assert screen.kind is None and len(rows(screen)) == 9


async def test_user_filter_and_window() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "u")
        assert screen.user == "eng1"
        assert set(column(screen, 1)) == {"eng1"} and len(rows(screen)) == 4
        await press(pilot, "u", "u")
        assert screen.user == "system" and len(rows(screen)) == 1
        await press(pilot, "u")
        assert screen.user is None
        await press(pilot, "w")  # 7 d takes in the user change of three days ago
        assert len(rows(screen)) == 10 and column(screen, 2)[-1] == "user_change"
        await press(pilot, "w")  # all
        assert len(rows(screen)) == 10
        await press(pilot, "w")  # 1 h
        assert len(rows(screen)) == 8


async def test_text_filter_enter_keeps_escape_clears() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "slash", *"BEARING")
        assert sorted(column(screen, 2)) == ["alarm_ack", "rule_change"]
        await press(pilot, "enter")
        assert screen.text == "BEARING" and len(rows(screen)) == 2
        assert isinstance(app.focused, DataTable)
        await press(pilot, "escape")  # clears the text, stays on the screen
        assert app.screen is screen and screen.text == "" and len(rows(screen)) == 9
        await press(pilot, "slash", *"swap", "escape")  # Esc while typing clears too
        assert screen.text == "" and len(rows(screen)) == 9
        assert screen.query_one("#search").disabled
        await press(pilot, "escape")
        assert app.screen is not screen


async def test_text_and_kind_that_match_nothing_say_so() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "slash", *"no such thing", "enter")
        assert rows(screen) == []
        assert "no audit records match" in str(screen.query_one("#note", Static).render())


async def test_pin_is_never_shown_in_the_table_or_the_record() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "w", "w")  # all time
        table_text = json.dumps(rows(screen)) + screen_text(app)
        for secret in SECRETS:
            assert secret not in table_text
        kinds = column(screen, 2)
        for kind in ("user_change", "login_failed"):
            table = screen.query_one(DataTable)
            table.move_cursor(row=kinds.index(kind))
            await press(pilot, "enter")
            dialog = app.screen
            assert isinstance(dialog, AuditRecordDialog)
            body = str(dialog.query_one("#body", Static).render())
            assert f'"kind": "{kind}"' in body
            for secret in SECRETS:
                assert secret not in body and secret not in screen_text(app)
            await press(pilot, "escape")
            assert app.screen is screen
    assert "reset-pin" in summarize("user_change", {"change": "reset-pin", "pin": "1"})
    assert "9" not in summarize("x", {"nested": {"new_pin": "9999", "PIN": "9"}})


async def test_without_an_audit_trail_the_screen_says_so() -> None:
    app = make_app(recorded())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        assert rows(screen) == []
        assert NO_TRAIL in str(screen.query_one("#note", Static).render())
        await press(pilot, "k", "u", "w", "r", "v")  # nothing to filter or check: no crash
        assert app.screen is screen and NO_TRAIL in str(screen.query_one("#note", Static).render())
        await press(pilot, "f6")
        assert app.screen is not screen


async def test_verify_shows_the_engine_verdict() -> None:
    api = audit_api()
    api.verdict = {"ok": False, "message": "record 7 does not follow record 6"}
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_audit(pilot)
        await press(pilot, "v")
        summary = str(screen.query_one("#summary", Bar).render())
        assert "✕ BROKEN record 7 does not follow record 6" in summary


async def test_refreshes_on_its_own_but_not_every_frame() -> None:
    api = audit_api()
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_audit(pilot)
        asked = len(api.asks)
        await pilot.pause(1.0)  # four frames
        assert len(api.asks) == asked
        await pilot.pause(1.5)
        await settle(pilot)
        assert len(api.asks) >= asked + 1


async def test_renders_at_80x24() -> None:
    app = make_app(audit_api())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        table = screen.query_one(DataTable)
        assert [c.label.plain for c in table.columns.values()] == [
            "Time",
            "User",
            "Kind",
            "Target · what",
        ]
        assert table.virtual_size.width <= table.size.width
        assert "drive1 co:10 · False → True" in column(screen, 3)
        await press(pilot, "w", "w")
        assert table.virtual_size.width <= table.size.width  # dates in: still no sideways scroll
        await press(pilot, "enter")
        assert isinstance(app.screen, AuditRecordDialog)


def test_snapshot_audit(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_audit(pilot)
        await press(pilot, "w")  # 7 d: dates appear for older rows

    assert snap_compare(make_app(audit_api()), terminal_size=(100, 30), run_before=run_before)
