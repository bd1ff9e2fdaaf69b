"""Pilot tests of the overview: filter, search, grouping, themes, narrow terminals, demo keys."""

from __future__ import annotations

import shutil
from pathlib import Path

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.format import age_cell_text
from floorconsole.ui.themes import THEMES_DIR
from floorconsole.ui.widgets.signal_table import SignalTable

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


def table_rows(app) -> list[str]:  # type: ignore[no-untyped-def]
    return app.screen.query_one(SignalTable).row_labels()


async def test_filter_search_and_group() -> None:
    api = RecordedAPI.load(RECORDINGS / "device_down.json")
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        all_rows = table_rows(app)
        listed = [s.id for s in api.frame().signals if ".drift.psi." not in s.id]
        assert all_rows == listed and len(listed) >= 10
        await pilot.press("b")  # only what is not GOOD
        await pilot.pause()
        bad = table_rows(app)
        not_good = [
            s for s in listed if next(x for x in api.frame().signals if x.id == s).quality != "GOOD"
        ]
        assert bad == not_good and 0 < len(bad) < len(listed)
        await pilot.press("b", "slash", "v", "i", "b", "enter")
        await pilot.pause()
        assert table_rows(app) == [f"motor1.vibration.{a}" for a in "xyz"]
        await pilot.press("escape")
        await pilot.pause()
        assert table_rows(app) == listed
        await pilot.press("g")
        await pilot.pause()
        rows = table_rows(app)
        assets = sorted({s.split(".")[0] for s in listed})
        assert rows[0] == "▸ motor1" and len(rows) == len(listed) + len(assets)
        assert [r for r in rows if r.startswith("▸ ")] == [f"▸ {a}" for a in assets]


async def test_hidden_search_box_does_not_take_keys() -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "overview.json"))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("g")  # must group, not type a "g" into a hidden box
        await pilot.pause()
        assert table_rows(app)[0] == "▸ motor1"


async def test_theme_cycle_changes_colours() -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "overview.json"))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "isa101"
        bad_isa = app.theme_variables["quality-bad"]
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "dark"
        assert app.theme_variables["quality-bad"] != bad_isa
        await pilot.press("t", "t")
        await pilot.pause()
        assert app.theme == "isa101"


async def test_broken_theme_falls_back_with_a_message(tmp_path: Path) -> None:
    for f in THEMES_DIR.glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "dark.toml").write_text('name = "dark"\n[colors]\nprimary = "not a colour"\n')
    app = make_app(
        RecordedAPI.load(RECORDINGS / "overview.json"), theme="dark", themes_dir=tmp_path
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "isa101"
        messages = [n.message for n in app._notifications]
        assert any("dark.toml" in m and "not a colour" in m for m in messages), messages
        assert any("no theme 'dark'" in m for m in messages), messages


async def test_narrow_terminal_keeps_value_and_quality() -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "device_down.json"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = app.screen.query_one(SignalTable)
        keys = [c.key for c in t.cols]
        assert keys[:3] == ["signal", "value", "quality"]
        assert "source" not in keys
        assert 1 + sum(c.width + 1 for c in t.cols) <= 80
        assert not app.screen.query_one("#side").display


async def test_fault_keys_send_commands_in_demo() -> None:
    api = RecordedAPI.load(RECORDINGS / "overview.json")
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        while app.screen.query_one(SignalTable).row_count == 0:  # the first frame is shown
            await pilot.pause(0.05)
        await pilot.press("2")
        await app.workers.wait_for_complete()
        await pilot.pause()
        said = [n.message for n in app._notifications]
    # Nobody is logged in: the command goes with no session, and a recording refuses it.
    assert api.commands == [("demo.toggle", {"fault": "bearing", "session": None})]
    assert any("view-only" in m and "log in with F9" in m for m in said), said


async def test_click_selects_and_a_second_click_opens_the_detail() -> None:
    from floorconsole.ui.screens.detail import SignalDetailScreen

    app = make_app(RecordedAPI.load(RECORDINGS / "overview.json"))
    async with app.run_test(size=(100, 30)) as pilot:
        while app.screen.query_one(SignalTable).row_count == 0:
            await pilot.pause(0.05)
        table = app.screen.query_one(SignalTable)
        await pilot.click(SignalTable, offset=(3, 3))  # header is line 0: the third signal
        await pilot.pause()
        assert table.selected_signal == "motor1.temp"
        assert not isinstance(app.screen, SignalDetailScreen)
        await pilot.click(SignalTable, offset=(3, 3))  # a tap on the chosen row opens it
        await pilot.pause()
        assert isinstance(app.screen, SignalDetailScreen)
        assert app.screen.signal_id == "motor1.temp"


def test_the_age_column_changes_once_a_second_at_most() -> None:
    """Whole seconds (issue 19): tenths made every row repaint every frame, over SSH too."""
    ages = (0.0, 0.4, 0.99, 1.0, 1.7, 9.99, 10.2, 75.0, 300.0)
    shown = ["<1s", "<1s", "<1s", "1s", "1s", "9s", "10s", "75s", "5m"]
    assert [age_cell_text(a) for a in ages] == shown
