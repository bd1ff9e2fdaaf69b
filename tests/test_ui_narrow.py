"""An 80x24 terminal keeps what matters: why a value is bad (for the selected row), the demo's
fault keys, the footer's way to alarms, rules, model, help, login and out, the header's snapshot
id, role and time zone; notifications never cover the Value and Quality columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets._toast import Toast

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.signal_table import SignalTable, columns_for
from floorconsole.ui.widgets.status_bars import Bar, HeaderBar

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


def screen_text(app) -> list[str]:  # type: ignore[no-untyped-def]
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_reason_of_the_selected_row_at_any_width(size: tuple[int, int]) -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "device_down.json"))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.tick()
        await pilot.pause()
        line = app.screen.query_one("#row-detail", Bar)._last.plain
        assert "motor1.current" in line and "BAD no communication" in line, line
        await pilot.press("down", "down", "down", "down", "down", "down", "down")
        await pilot.pause()
        table = app.screen.query_one(SignalTable)
        line = app.screen.query_one("#row-detail", Bar)._last.plain
        assert table.selected_signal == "motor1.vibration.x" and "GOOD" in line, line
        text = "\n".join(screen_text(app))
        assert "faults 1:imbal 2:bear 3:misal 4:drift 5:stuck 6:drop" in text  # all six keys
        header = screen_text(app)[0]
        assert "config ac8696" in header and "VIEWER" in header and "UTC" in header, header
        footer = screen_text(app)[-1]
        for word in ("Alarms", "Rules", "Model", "Help", "Login", "Quit"):
            assert word in footer, footer
        assert app.screen.query_one(ConsoleFooter).compact == (size[0] < 100)


def test_a_detail_column_where_there_is_room() -> None:
    assert "detail" not in [c.key for c in columns_for(80, 26)]
    cols = columns_for(100, 26)
    detail = next(c for c in cols if c.key == "detail")
    assert sum(c.width + 1 for c in cols) + 1 <= 100 and detail.width >= 12


async def test_toasts_stay_right_of_the_value_and_quality_columns() -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "device_down.json"))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        app.tick()
        for i in range(3):
            app.notify(f"a long notification number {i} that wraps over several lines " * 2)
        await pilot.pause(0.3)
        await pilot.pause()
        table = app.screen.query_one(SignalTable)
        quality_end = table.region.x + 1
        for c in table.cols:
            quality_end += c.width + 1
            if c.key == "quality":
                break
        toasts = list(app.screen.query(Toast))
        assert len(toasts) == 3
        for t in toasts:
            assert t.region.x >= quality_end, (t.region, quality_end)


async def test_the_header_cuts_the_site_never_the_snapshot_or_the_role() -> None:
    api = RecordedAPI.load(RECORDINGS / "overview.json")
    app = make_app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.tick()
        bar = app.screen.query_one(HeaderBar)
        from dataclasses import replace

        long_site = replace(api.frame(), site="Plant 3 / Line 2 / the long press hall north")
        bar.show(long_site, 80, "ENGINEER eng1")
        text = bar._last.plain
        assert "line2-press · config ac8696" in text and "ENGINEER eng1" in text, text
        assert text.rstrip().endswith("UTC") and len(text) <= 80, text
