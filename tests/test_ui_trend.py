"""Pinned signals in one trend: the renderer, the screen on recorded data (pin, open, move the
cursor, export), and snapshot images at 80x24 and 120x40."""

from __future__ import annotations

import csv
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from floorconsole.engine.frames import History, HistoryPoint
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.screens.trend import TrendScreen
from floorconsole.ui.widgets.chart import plain
from floorconsole.ui.widgets.signal_table import SignalTable
from floorconsole.ui.widgets.trend_chart import (
    TrendChart,
    TrendSeries,
    csv_rows,
    reading,
    render_trends,
    value_at,
)

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
T0 = 1_790_000_000.0


@pytest.fixture(autouse=True)
def utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def ramp(
    signal: str, unit: str, lo: float, hi: float, *, bad_after: float | None = None
) -> History:
    pts = []
    for i in range(61):
        t = T0 + i * 5
        q = "BAD" if bad_after is not None and t >= T0 + bad_after else "GOOD"
        pts.append(HistoryPoint(t, None if q == "BAD" else lo + (hi - lo) * i / 60, q))
    return History(signal, unit, T0, T0 + 300, tuple(pts), ())


def test_each_strip_has_its_own_scale_and_unit_and_the_cursor_reads_every_value() -> None:
    series = [
        TrendSeries("motor1.current", "A", ramp("motor1.current", "A", 10, 20)),
        TrendSeries("motor1.temp", "°C", ramp("motor1.temp", "°C", 600, 900, bad_after=200)),
    ]
    lines = plain(render_trends(series, T0, T0 + 300, 80, 20, cursor=T0 + 150))
    assert len(lines) == 20 and all(len(line) == 80 for line in lines)
    assert lines[0].startswith(" 1 motor1.current [A]  15 A ●")
    second = next(i for i, line in enumerate(lines) if line.startswith(" 2 motor1.temp"))
    assert "[°C]  750 °C ●" in lines[second]
    # its own scale: the current strip is labelled 10-20, the temperature strip 600-900
    assert lines[1].strip().startswith("20.0") and lines[second - 1].strip().startswith("10.0")
    assert lines[second + 1].strip().startswith("795")  # the last value before it went BAD
    # one cursor column through both strips, at the middle of the plot
    cols = {line.index("│", 6) for line in lines[1:second] if "│" in line[6:]}
    assert len(cols) == 1
    assert lines[-1].strip()  # the time axis
    # at a time when the temperature was BAD, the cursor says so instead of a number
    late = plain(render_trends(series, T0, T0 + 300, 80, 20, cursor=T0 + 250))
    assert "✕ BAD" in next(line for line in late if line.startswith(" 2 motor1.temp"))


def test_value_at_and_reading() -> None:
    h = ramp("s", "bar", 0, 60)
    assert value_at(h, T0 - 1) is None and reading(None, "bar") == "—"
    p = value_at(h, T0 + 7)
    assert p is not None and p.t == T0 + 5 and reading(p, "bar") == "1 bar ●"


def test_csv_has_every_point_of_every_signal_with_offsets() -> None:
    series = [
        TrendSeries("a", "A", ramp("a", "A", 0, 1)),
        TrendSeries("b", "", ramp("b", "", 0, 1, bad_after=290)),
    ]
    rows = csv_rows(series)
    assert rows[0] == ("time", "signal", "value", "unit", "quality")
    assert len(rows) == 1 + 2 * 61
    assert rows[1][0] == "2026-09-21T14:13:20.000+00:00" and rows[1][1:3] == ("a", "0.0")
    assert all(datetime.fromisoformat(r[0]).utcoffset() is not None for r in rows[1:])
    assert rows[-1][1:] == ("b", "", "", "BAD")


def app_from(name: str, size_note: str = "") -> FloorApp:
    return make_app(RecordedAPI.load(RECORDINGS / name), theme="isa101")


async def open_trend(pilot) -> None:  # type: ignore[no-untyped-def]
    """Pin the first, second and fourth signals of the overview, then T."""
    await pilot.pause()
    await pilot.pause()
    for keys in (["p"], ["down", "p"], ["down", "down", "p"]):
        await pilot.press(*keys)
    await pilot.press("T")
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def test_pin_open_move_cursor_and_export(tmp_path: Path) -> None:
    app = app_from("overview.json")
    app.export_dir = tmp_path
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(SignalTable)
        first = table.selected_signal
        await open_trend(pilot)
        screen = app.screen
        assert isinstance(screen, TrendScreen)
        assert len(screen.signals) == 3 and screen.signals[0] == first
        text = "\n".join(screen.query_one(TrendChart).rendered_lines())
        for i, sig in enumerate(screen.signals, 1):
            assert f" {i} {sig}" in text
        before = screen.cursor_line()
        assert "(newest)" in before
        await pilot.press("left", "left")
        await pilot.pause()
        assert screen.cursor_line() != before and "←→ moves" in screen.cursor_line()
        await pilot.press("x")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        files = list(tmp_path.glob("trend_*.csv"))
        assert len(files) == 1
        rows = list(csv.reader(files[0].open(encoding="utf-8")))
        assert rows[0] == ["time", "signal", "value", "unit", "quality"]
        assert {r[1] for r in rows[1:]} == set(screen.signals)
        assert all(r[0].endswith("+00:00") for r in rows[1:])
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TrendScreen)


async def test_a_fifth_pin_is_refused_and_p_again_unpins() -> None:
    app = app_from("overview.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for _ in range(5):
            await pilot.press("p", "down")
        await pilot.pause()
        assert len(app.pinned) == 4
        await pilot.press("up", "up", "p")  # the fourth pinned one, again
        await pilot.pause()
        assert len(app.pinned) == 3


async def trend_of_the_recording(pilot) -> None:  # type: ignore[no-untyped-def]
    """The trend over the recording's last 25 s, the cursor 8 columns back, no toasts."""
    await open_trend(pilot)
    await pilot.press("c", *"25s", "enter")
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press(*["left"] * 8)
    pilot.app.clear_notifications()
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_trend_snapshot(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app_from("overview.json"), terminal_size=size, run_before=trend_of_the_recording
    )


def test_the_one_minute_trend_shows_a_slow_change_and_keeps_noise_flat() -> None:
    from floorconsole.ui.format import BARS, resample, sparkline, trend_scale

    eng = (0.0, 50.0)
    drift = [20.0 + 0.5 * i / 59 for i in range(60)]  # 1 % of the range in a minute
    lo, hi = trend_scale(drift, eng)
    line = sparkline(resample(drift, 20), 20, lo, hi)
    assert len(line) == 20  # the whole minute in 20 cells
    assert BARS.index(line[-1]) - BARS.index(line[0]) >= 3  # half the cell: the floor is 2 %
    faster = [20.0 + 1.5 * i / 59 for i in range(60)]  # 3 % in a minute: the whole cell
    line = sparkline(resample(faster, 20), 20, *trend_scale(faster, eng))
    assert (line[0], line[-1]) == (BARS[0], BARS[-1])
    assert len(set(sparkline(resample(drift, 20), 20, *eng))) == 1  # engineering range: flat
    noise = [20.0 + (0.02 if i % 2 else -0.02) for i in range(60)]  # 0.08 % of the range
    line = sparkline(resample(noise, 20), 20, *trend_scale(noise, eng))
    assert max(BARS.index(c) for c in line) - min(BARS.index(c) for c in line) <= 1
    assert trend_scale([], eng) == (None, None)
    assert trend_scale([1.0, 3.0], None) == (1.0, 3.0)  # no range: its own
    assert resample([1.0, 3.0, 5.0, 7.0], 2) == [2.0, 6.0] and resample([1.0], 5) == [1.0]
