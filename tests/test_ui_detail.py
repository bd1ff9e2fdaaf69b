"""The signal detail screen, the help screen and the chart renderers, on recorded data; and the
ages of a stale frame (the engine gone), which go on growing on the detail and the overview."""

from __future__ import annotations

import csv
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from floorconsole.console import (
    DemoView,
    Frame,
    HistorianView,
    History,
    HistoryPoint,
    LinkView,
    QualityMark,
    SignalView,
    format_value,
)
from floorconsole.core.history_format import csv_value, iso_utc_ms
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app
from floorconsole.ui.format import frame_clock
from floorconsole.ui.keys import KEYS, keys_of
from floorconsole.ui.screens.detail import (
    PRESETS,
    RangeError,
    SignalDetailScreen,
    csv_rows,
    export_path,
    parse_range,
    range_stats,
)
from floorconsole.ui.screens.help import HelpScreen
from floorconsole.ui.screens.overview import OverviewScreen
from floorconsole.ui.screens.snapshots import SnapshotScreen
from floorconsole.ui.widgets.chart import (
    BrailleCanvas,
    TimeChart,
    WaveformChart,
    index_ticks,
    label_line,
    plain,
    quality_strip,
    render_time_chart,
    render_waveform,
    time_ticks,
    x_to_col,
)
from floorconsole.ui.widgets.signal_table import SignalTable
from tests.test_ui_attach_view import GONE, AttachedAPI, started
from tests.test_ui_login import settle

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC).timestamp()
CURRENT = "motor1.current"
VIB = "motor1.vibration"
WAVE = tuple(math.sin(i / 4) * (1 + i / 64) for i in range(128))


def _signal(sid: str, **kw: Any) -> SignalView:
    base = dict(
        id=sid,
        asset="motor1",
        kind="scalar",
        value=12.43,
        value_text="12.43",
        unit="A",
        quality="GOOD",
        reason="",
        detail="",
        age_s=0.4,
        source="drive1 hr:0 float32",
        range=(0.0, 50.0),
    )
    base.update(kw)
    return SignalView(**base)  # type: ignore[arg-type]


def _frame(signals: tuple[SignalView, ...]) -> Frame:
    return Frame(
        t_wall=NOW,
        t_mono=1000.0,
        edge_id="line2-press",
        site="Plant 3 / Line 2",
        config_id="7f3a21cafe",
        control_mode="read-only",
        signals=signals,
        links=(
            LinkView(
                id="drive1",
                kind="device",
                endpoint="127.0.0.1:5020",
                state="up",
                state_age_s=60.0,
                last_rtt_ms=3.0,
                requests=10,
                errors=0,
                reconnects=0,
                last_error="",
                messages=0,
                malformed=0,
            ),
        ),
        conditions=(),
        historian=HistorianView(
            rows_committed=1000, rows_pending=0, errors=0, last_error="", dropped=0, db_bytes=4096
        ),
        ingest_rate=10.0,
        demo=DemoView(faults=("bearing",), active=()),
    )


def _history() -> History:
    """26 hours of one point every 10 s: a slow sine, a BAD stretch with no points 20-10 min
    ago, a few UNCERTAIN points 4 min ago, one stored BAD point."""
    pts = []
    t = NOW - 26 * 3600
    while t <= NOW:
        age = NOW - t
        if not (600 < age < 1200):
            q = "UNCERTAIN" if 230 <= age <= 250 else "GOOD"
            pts.append(HistoryPoint(t=t, value=20 + 10 * math.sin(t / 900), quality=q))
        t += 10
    pts.append(HistoryPoint(t=NOW - 1205, value=None, quality="BAD"))
    pts.sort(key=lambda p: p.t)
    marks = (
        QualityMark(NOW - 1205, "BAD", "no communication", "timeout after 500 ms"),
        QualityMark(NOW - 600, "GOOD", "", ""),
        QualityMark(NOW - 250, "UNCERTAIN", "last usable", ""),
        QualityMark(NOW - 225, "GOOD", "", ""),
    )
    return History(
        signal=CURRENT,
        unit="A",
        since=pts[0].t,
        until=NOW,
        points=tuple(pts),
        quality_changes=marks,
    )


class QueryLog(RecordedAPI):
    """A RecordedAPI that remembers every history query."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.queries: list[tuple[str, float, float, int]] = []

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        self.queries.append((signal, since, until, max_points))
        return super().history(signal, since, until, max_points)


def _api() -> QueryLog:
    signals = (
        _signal(CURRENT),
        _signal(
            VIB,
            kind="waveform",
            value=0.9,
            value_text="rms 0.90",
            unit="g",
            source="local factory/motor-01/vibration/raw x",
            range=None,
            waveform=WAVE,
        ),
    )
    return QueryLog(_frame(signals), {CURRENT: _history()})


def _app(api: RecordedAPI, tmp_path: Path | None = None) -> FloorApp:
    app = make_app(api, refresh_hz=4.0)  # type: ignore[arg-type]
    if tmp_path is not None:
        app.export_dir = tmp_path  # type: ignore[attr-defined]
    return app


async def _open(app: FloorApp, pilot: Any, signal: str = CURRENT) -> SignalDetailScreen:
    await pilot.pause()
    screen = SignalDetailScreen(signal)
    await app.push_screen(screen)
    await _settle(pilot, screen)
    return screen


async def _settle(pilot: Any, screen: SignalDetailScreen) -> None:
    await pilot.pause()
    await screen.workers.wait_for_complete()
    await pilot.pause()


def _in(points: tuple[HistoryPoint, ...], since: float, until: float) -> list[HistoryPoint]:
    return [p for p in points if since <= p.t <= until]


# -- the detail screen ----------------------------------------------------------------------


async def test_detail_shows_signal_and_stats_of_the_range() -> None:
    api = _api()
    app = _app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        title = screen.line_text("title")
        for part in (CURRENT, "drive1 hr:0 float32", "unit A", "range 0–50"):
            assert part in title
        now = screen.line_text("now")
        assert "12.43 A" in now and "● GOOD" in now and "age 0.4s" in now

        sig, since, until, _n = api.queries[-1]
        assert (sig, until - since, until) == (CURRENT, 300.0, NOW)
        pts = _in(_history().points, since, until)
        vals = [p.value for p in pts if p.quality != "BAD" and p.value is not None]
        stats = screen.stats
        assert stats is not None
        assert stats.points == len(pts) == 31
        assert stats.uncertain == 3 and stats.bad == 0
        assert stats.minimum == min(vals) and stats.maximum == max(vals)
        assert stats.mean == pytest.approx(sum(vals) / len(vals))
        line = screen.line_text("stats")
        for figure in (min(vals), max(vals), sum(vals) / len(vals)):
            assert format_value(figure) in line
        assert "31 points" in line and "3 ◆ UNCERT" in line


async def test_bad_value_is_shown_greyed_with_reason() -> None:
    api = _api()
    api.set_frame(
        _frame(
            (
                _signal(
                    CURRENT,
                    quality="BAD",
                    reason="no communication",
                    detail="timeout after 500 ms",
                    age_s=42.0,
                ),
            )
        )
    )
    app = _app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        now = screen.line_text("now")
        assert "✕ BAD no communication" in now and "age 42s" in now
        value_spans = [s for s in screen._texts["now"].spans if "strike" in str(s.style)]
        assert value_spans, "a BAD value must be struck through"


async def test_switching_ranges_changes_the_query() -> None:
    api = _api()
    app = _app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        for key, preset in (("o", "1h"), ("d", "24h"), ("m", "5m")):
            await pilot.press(key)
            await _settle(pilot, screen)
            sig, since, until, _n = api.queries[-1]
            assert (sig, until - since, until) == (CURRENT, PRESETS[preset][1], NOW)
            assert screen.range_key == preset
            assert f"[{PRESETS[preset][0]}]" in screen.line_text("range")
            assert screen.stats is not None
            assert screen.stats.points == len(_in(_history().points, since, until))
        await pilot.press("d")
        await _settle(pilot, screen)
        assert screen.stats is not None and screen.stats.bad == 1  # the stored BAD point


async def test_custom_range_duration_and_two_times() -> None:
    api = _api()
    app = _app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("c")
        assert isinstance(app.focused, Input)
        await pilot.press(*"90m", "enter")
        await _settle(pilot, screen)
        _sig, since, until, _n = api.queries[-1]
        assert (until - since, until) == (5400.0, NOW)
        assert screen.range_key == "custom" and not screen.has_class("-custom")

        await pilot.press("c")
        screen.query_one("#custom", Input).value = ""
        screen.query_one("#custom", Input).value = "2026-11-23T10:00Z 2026-11-23T11:30Z"
        await pilot.press("enter")
        await _settle(pilot, screen)
        _sig, since, until, _n = api.queries[-1]
        assert since == datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()
        assert until == datetime(2026, 11, 23, 11, 30, tzinfo=UTC).timestamp()
        assert screen.stats is not None
        assert screen.stats.points == len(_in(_history().points, since, until))


async def test_bad_custom_range_shows_a_message_and_keeps_the_range() -> None:
    api = _api()
    app = _app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot)
        asked = len(api.queries)
        await pilot.press("c")
        screen.query_one("#custom", Input).value = "yesterday-ish"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert "'yesterday-ish' is not a time" in screen.message
        assert screen.query_one("#message").display
        assert len(api.queries) == asked and screen.range_key == "5m"
        screen.query_one("#custom", Input).value = ""
        screen.query_one("#custom", Input).value = "2026-11-23T12:00Z 2026-11-23T10:00Z"
        await pilot.press("enter")
        await pilot.pause()
        assert "must come after the start" in screen.message
        await pilot.press("escape")  # closes the entry, not the screen
        await pilot.pause()
        assert app.screen is screen and not screen.has_class("-custom") and screen.message == ""


async def test_export_writes_the_shown_range_as_csv(tmp_path: Path) -> None:
    api = _api()
    app = _app(api, tmp_path / "exports")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("o")
        await _settle(pilot, screen)
        shown = screen.shown_history
        assert shown is not None
        await pilot.press("x")
        await _settle(pilot, screen)
        files = list((tmp_path / "exports").glob("*.csv"))
        assert len(files) == 1
        assert files[0].name.startswith("motor1.current_20261123T110000Z_20261123T120000Z")
        with files[0].open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["time", "signal", "value", "quality"]
        expected = _in(_history().points, NOW - 3600, NOW)
        assert len(rows) - 1 == len(expected) == len(shown.points)
        reasons = {NOW - 1205: "BAD no communication"}
        for row, p in zip(rows[1:], expected, strict=True):
            quality = reasons.get(
                p.t, "UNCERTAIN last usable" if p.quality == "UNCERTAIN" else p.quality
            )
            assert row == [iso_utc_ms(p.t), CURRENT, csv_value(p.value), quality]
        assert any(str(files[0]) in n.message for n in app._notifications)
        await pilot.press("f12")  # the function key does the same; a second file, not overwritten
        await _settle(pilot, screen)
        assert len(list((tmp_path / "exports").glob("*.csv"))) == 2


async def test_escape_and_backspace_go_back() -> None:
    app = _app(_api())
    async with app.run_test(size=(80, 24)) as pilot:
        base = app.screen
        screen = await _open(app, pilot)
        assert app.screen is screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is base
        await _open(app, pilot)
        await pilot.press("backspace")
        await pilot.pause()
        assert app.screen is base


async def test_live_range_reloads_on_its_own_but_not_every_tick(monkeypatch: Any) -> None:
    import floorconsole.ui.screens.detail as detail

    monkeypatch.setattr(detail, "LIVE_RELOAD_S", 0.3)
    api = _api()
    app = _app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot)
        before, frames = len(api.queries), app.frames_shown
        await pilot.pause(1.2)
        await _settle(pilot, screen)
        reloads = len(api.queries) - before
        assert reloads >= 2
        assert app.frames_shown - frames > 0
        screen.time_range = parse_range("2026-11-23T10:00Z 2026-11-23T11:00Z", NOW)
        await pilot.pause(0.1)
        fixed = len(api.queries)
        await pilot.pause(0.8)
        assert len(api.queries) == fixed  # a fixed window is read once


async def test_history_error_is_a_message_not_a_crash() -> None:
    class Broken(QueryLog):
        def history(
            self, signal: str, since: float, until: float, max_points: int = 5000
        ) -> History:
            raise RuntimeError("history cache is locked")

    app = _app(Broken(_frame((_signal(CURRENT),)), {}))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot)
        assert app.screen is screen
        assert "history could not be read: history cache is locked" in screen.message


async def test_help_opens_from_detail_and_lists_every_key() -> None:
    app = _app(_api())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        text = help_screen.text
        for group, entries in KEYS:
            assert group in text
            for entry in entries:
                assert entry.shown in text and entry.what.split(";")[0] in text
        for words in (
            "● GOOD",
            "◆ UNCERTAIN",
            "✕ BAD",
            "◐ degraded",
            "○ connecting",
            "✕ down",
            "▲ HIGH",
            "▼ MEDIUM",
            "○ LOW",
            "◆◆ CRITICAL",
            "✕━━ went BAD",
        ):
            assert words in text
        await pilot.press("pagedown")
        await pilot.pause()
        assert help_screen.query_one("#help-box").scroll_y > 0  # longer than 24 rows: it scrolls
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        for key in ("q", "f1"):
            await app.push_screen(HelpScreen())
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen


def _bound(cls: type) -> set[str]:
    return {k.strip() for b in cls.BINDINGS for k in b.key.split(",")}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "cls, groups",
    [
        (SignalDetailScreen, ("Signal detail",)),
        (HelpScreen, ("Everywhere",)),
        (FloorApp, ("Everywhere",)),
        (OverviewScreen, ("Overview", "Demo")),
        (SnapshotScreen, ("Snapshots", "Everywhere")),
    ],
)
def test_every_binding_is_in_the_key_table(cls: type, groups: tuple[str, ...]) -> None:
    """The help lists what is bound: a key added to a screen must be added to ui/keys.py."""
    listed = set().union(*(keys_of(g) for g in groups))
    missing = _bound(cls) - listed
    assert not missing, f"{cls.__name__} binds {sorted(missing)}, not listed in ui/keys.py"


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_detail_layout_fits(size: tuple[int, int]) -> None:
    app = _app(_api())
    async with app.run_test(size=size) as pilot:
        screen = await _open(app, pilot, VIB)
        assert screen.has_class("-waveform")
        screen = await _open(app, pilot, CURRENT)
        await pilot.press("escape")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SignalDetailScreen) and screen.signal_id == VIB
        await pilot.press("d", "c")
        await _settle(pilot, screen)
        widgets = [w for w in screen.query("*") if w.display and w.parent is screen]
        regions = [w.region for w in widgets]
        w, h = size
        for r in regions:
            assert r.x >= 0 and r.y >= 0 and r.right <= w and r.bottom <= h
        for i, a in enumerate(regions):
            for b in regions[i + 1 :]:
                assert not a.overlaps(b), f"{a} overlaps {b}"
        chart = screen.query_one(TimeChart)
        wave = screen.query_one(WaveformChart)
        assert chart.size.height >= 4 and wave.size.height >= 3
        for widget in (chart, wave):
            lines = widget.rendered_lines()
            assert len(lines) == widget.size.height
            assert all(len(line) == widget.size.width for line in lines)
        # The vibration signal has no history here: the chart says so instead of drawing noise.
        assert any("no data in this range" in line for line in chart.rendered_lines())
        assert any(any(0x2800 < ord(c) <= 0x28FF for c in line) for line in wave.rendered_lines())


# -- parsing, figures, CSV ------------------------------------------------------------------


def test_parse_range_forms() -> None:
    r = parse_range("90m", NOW)
    assert r.window(NOW) == (NOW - 5400, NOW) and r.live
    assert parse_range(" 2h ", NOW).window(NOW) == (NOW - 7200, NOW)
    r = parse_range("2026-11-23T10:00Z 2026-11-23T11:00Z", NOW)
    assert r.window(NOW) == (NOW - 7200, NOW - 3600) and not r.live
    r = parse_range("2026-11-23T10:00+00:00 to 2026-11-23T11:00+00:00", NOW)
    assert r.window(NOW) == (NOW - 7200, NOW - 3600)
    local = parse_range("2026-11-23 10:00 2026-11-23 11:00", NOW)
    start = datetime(2026, 11, 23, 10, 0).timestamp()  # naive: local time
    assert local.window(NOW) == (start, start + 3600)
    r = parse_range("2026-11-23T11:00Z", NOW)
    assert r.window(NOW) == (NOW - 3600, NOW) and r.live


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("banana", "is not a time"),
        ("0m", "no time at all"),
        ("9999d", "longer than"),
        ("2026-11-23T12:00Z 2026-11-23T10:00Z", "must come after the start"),
        ("2030-01-01T00:00Z", "not in the past"),
        ("a b c", "3 parts"),
    ],
)
def test_parse_range_rejects_with_a_message(text: str, words: str) -> None:
    with pytest.raises(RangeError, match=words):
        parse_range(text, NOW)


def test_range_stats_leave_bad_out() -> None:
    pts = (
        HistoryPoint(0, 1.0, "GOOD"),
        HistoryPoint(1, 3.0, "UNCERTAIN"),
        HistoryPoint(2, 100.0, "BAD"),
        HistoryPoint(3, None, "BAD"),
        HistoryPoint(4, float("nan"), "GOOD"),
    )
    s = range_stats(pts)
    assert (s.points, s.usable, s.uncertain, s.bad) == (5, 2, 1, 2)
    assert (s.minimum, s.maximum, s.mean) == (1.0, 3.0, 2.0)
    assert range_stats(()).mean is None


def test_csv_rows_carry_the_reason_of_the_change() -> None:
    h = History(
        "s",
        "",
        0,
        10,
        (
            HistoryPoint(1, 1.0, "GOOD"),
            HistoryPoint(3, 2.0, "UNCERTAIN"),
            HistoryPoint(5, None, "BAD"),
            HistoryPoint(7, 4.0, "GOOD"),
        ),
        (
            QualityMark(2, "UNCERTAIN", "substitute", ""),
            QualityMark(4, "BAD", "device failure", ""),
            QualityMark(6, "GOOD", "", ""),
        ),
    )
    assert [r[3] for r in csv_rows(h)] == [
        "GOOD",
        "UNCERTAIN substitute",
        "BAD device failure",
        "GOOD",
    ]
    assert csv_rows(h)[2][2] == "" and csv_rows(h)[0][0] == "1970-01-01T00:00:01.000Z"


def test_export_path_never_overwrites(tmp_path: Path) -> None:
    p = export_path(tmp_path, "line/speed ok", 0, 60)
    assert p.name == "line_speed_ok_19700101T000000Z_19700101T000100Z.csv"
    p.write_text("x")
    assert export_path(tmp_path, "line/speed ok", 0, 60).name.endswith("-1.csv")


# -- chart rendering ------------------------------------------------------------------------


def _dots(lines: list[str], rows: int, gutter: int) -> list[tuple[int, int]]:
    """(x, y) of every braille dot in the first `rows` lines, past the gutter."""
    bits = (
        (0x01, 0, 0),
        (0x02, 0, 1),
        (0x04, 0, 2),
        (0x40, 0, 3),
        (0x08, 1, 0),
        (0x10, 1, 1),
        (0x20, 1, 2),
        (0x80, 1, 3),
    )
    out = []
    for r, line in enumerate(lines[:rows]):
        for c, ch in enumerate(line[gutter:]):
            code = ord(ch) - 0x2800
            if 0 < code <= 0xFF:
                out.extend((c * 2 + dx, r * 4 + dy) for b, dx, dy in bits if code & b)
    return out


def _gutter_width(lines: list[str]) -> int:
    return lines[0].index("┤") + 1


def test_ramp_draws_rising_dots() -> None:
    pts = tuple(HistoryPoint(t=float(i), value=float(i), quality="GOOD") for i in range(101))
    lines = plain(render_time_chart(History("r", "", 0, 100, pts, ()), 40, 10))
    assert len(lines) == 10 and all(len(line) == 40 for line in lines)
    g = _gutter_width(lines)
    assert lines[0][:g].strip() == "100┤" and lines[7][:g].strip() == "0┤"
    dots = _dots(lines, 8, g)
    top_by_x: dict[int, int] = {}
    for x, y in dots:
        top_by_x[x] = min(y, top_by_x.get(x, y))
    xs = sorted(top_by_x)
    assert xs == list(range(xs[0], xs[-1] + 1)), "a connected line has a dot in every column"
    heights = [top_by_x[x] for x in xs]
    assert heights == sorted(heights, reverse=True), "y falls (the line rises) left to right"
    assert heights[0] == 31 and heights[-1] == 0  # from the bottom dot row to the top one


def test_gaps_stay_empty() -> None:
    pts = tuple(
        HistoryPoint(t=float(t), value=5.0 + (t % 2), quality="GOOD")
        for t in range(0, 101)
        if not 40 <= t <= 60
    )
    width = 50
    lines = plain(render_time_chart(History("g", "", 0, 100, pts, ()), width, 8))
    g = _gutter_width(lines)
    plot_w = width - g
    lo, hi = x_to_col(40, 0, 100, plot_w), x_to_col(60, 0, 100, plot_w)
    for line in lines[:6]:
        assert line[g + lo + 1 : g + hi].strip() == "", "nothing drawn where there is no data"
    assert _dots(lines, 6, g)


def test_bad_points_and_bad_spans_are_not_drawn_or_bridged() -> None:
    pts = tuple(
        HistoryPoint(
            t=float(t), value=1.0 if t < 50 else 2.0, quality="BAD" if 45 <= t < 50 else "GOOD"
        )
        for t in range(100)
    )
    marks = (QualityMark(45, "BAD", "no communication", ""), QualityMark(50, "GOOD", "", ""))
    lines = plain(render_time_chart(History("b", "", 0, 99, pts, marks), 60, 8))
    g = _gutter_width(lines)
    plot_w = 60 - g
    c45, c50 = x_to_col(45, 0, 99, plot_w), x_to_col(50, 0, 99, plot_w)
    for line in lines[:6]:
        assert line[g + c45 + 1 : g + c50].strip() == ""
    strip = lines[6][g:]
    assert strip[c45] == "✕" and strip[c50] == "●"
    assert set(strip[c45 + 1 : c50]) == {"━"}


def test_quality_markers_land_at_their_columns() -> None:
    marks = (
        QualityMark(10, "UNCERTAIN", "last usable", ""),
        QualityMark(30, "GOOD", "", ""),
        QualityMark(60, "BAD", "no communication", ""),
        QualityMark(90, "GOOD", "", ""),
    )
    cells = quality_strip(marks, 0, 100, 50)
    text = "".join(t for t, _r in cells)
    assert len(text) == 50
    assert (text[5], text[15], text[30], text[45]) == ("◆", "●", "✕", "●")
    assert set(text[6:15]) == {"┄"} and set(text[31:45]) == {"━"}
    assert text[:5].strip() == "" and text[46:].strip() == ""
    roles = [r for t, r in cells for _ch in t]
    assert roles[30] == "quality-bad" and roles[5] == "quality-uncertain" and roles[0] == ""
    # Several changes in one column: the worst one shows, a flicker to BAD is never hidden.
    flicker = (QualityMark(50.0, "BAD", "", ""), QualityMark(50.1, "GOOD", "", ""))
    assert "".join(t for t, _r in quality_strip(flicker, 0, 100, 20))[10] == "✕"
    # A range that starts BAD is filled from the left edge.
    starts_bad = "".join(
        t for t, _r in quality_strip((QualityMark(50, "GOOD", "", ""),), 0, 100, 20, "BAD")
    )
    assert starts_bad[:10] == "━" * 10 and starts_bad[10] == "●"


def test_markers_from_points_when_the_history_has_no_changes() -> None:
    pts = tuple(
        HistoryPoint(t=float(t), value=1.0, quality="UNCERTAIN" if 20 <= t < 40 else "GOOD")
        for t in range(100)
    )
    lines = plain(render_time_chart(History("p", "", 0, 99, pts, ()), 60, 6))
    g = _gutter_width(lines)
    strip = lines[4][g:]
    assert strip[x_to_col(20, 0, 99, 60 - g)] == "◆" and strip[x_to_col(40, 0, 99, 60 - g)] == "●"


def test_time_labels_follow_the_span() -> None:
    t0 = datetime(2026, 11, 23, 10, 0).timestamp()
    five_min = time_ticks(t0, t0 + 300, 120)
    assert all(len(label) == 8 for _c, label in five_min)  # HH:MM:SS
    assert five_min[0] == (0, "10:00:00")
    hour = time_ticks(t0, t0 + 3600, 70)
    assert all(len(label) == 5 for _c, label in hour) and hour[0] == (0, "10:00")
    assert hour[-1] == (69, "11:00")
    line = label_line(hour, 70)
    assert line.startswith("10:00") and line.endswith("11:00") and len(line) == 70
    day = time_ticks(t0, t0 + 86400, 34)
    assert 2 <= len(day) <= 6 and all(":" in label for _c, label in day if label != "11-24")
    assert "11-24" in [label for _c, label in day]  # midnight says which day it is
    assert label_line([(0, "10:00"), (2, "10:01")], 20).strip() == "10:00"  # no overlap


def test_chart_renders_from_40x8_to_160x40() -> None:
    h = _history()
    for width, height in ((40, 8), (80, 24), (160, 40)):
        for since in (NOW - 300, NOW - 3600, NOW - 86400):
            pts = _in(h.points, since, NOW)
            marks = tuple(m for m in h.quality_changes if since <= m.t <= NOW)
            lines = plain(
                render_time_chart(
                    History(CURRENT, "A", since, NOW, tuple(pts), marks), width, height
                )
            )
            assert len(lines) == height and all(len(line) == width for line in lines)
            assert _dots(lines, height - 2, _gutter_width(lines))
            assert lines[-1].strip(), "time labels are shown"
    tiny = plain(render_time_chart(h, 8, 2))
    assert len(tiny) == 2 and "too small"[:8] in "".join(tiny)


def test_empty_history_says_so() -> None:
    lines = plain(render_time_chart(History("e", "", 0, 300, (), ()), 50, 8))
    assert any("no data in this range" in line for line in lines)
    assert not _dots(lines, 6, 5)


def test_fixed_y_range_is_used_and_widened_for_the_data() -> None:
    pts = tuple(HistoryPoint(float(t), 20.0, "GOOD") for t in range(10))
    lines = plain(render_time_chart(History("y", "", 0, 9, pts, ()), 40, 10, y_range=(0, 50)))
    assert lines[0].startswith("50.0") and lines[7].lstrip().startswith("0.0")
    wide = plain(
        render_time_chart(
            History("y", "", 0, 10, pts + (HistoryPoint(9.5, 80.0, "GOOD"),), ()),
            40,
            10,
            y_range=(0, 50),
        )
    )
    assert wide[0].lstrip().startswith("80.0")


def test_waveform_view() -> None:
    lines = plain(render_waveform(WAVE, 60, 8))
    assert len(lines) == 8 and all(len(line) == 60 for line in lines)
    g = _gutter_width(lines)
    assert lines[0][: g - 1].strip() == format(max(WAVE), ".2f")
    assert lines[-1].split()[0] == "0" and lines[-1].split()[-1] == "127"
    dots = _dots(lines, 7, g)
    xs = {x for x, _y in dots}
    assert min(xs) == 0 and max(xs) == (60 - g) * 2 - 1  # from the first sample to the last
    assert plain(render_waveform((), 40, 6))[2].strip().endswith("no waveform block yet")
    assert index_ticks(128, 10)[0] == (0, "0") and index_ticks(128, 10)[-1][1] == "127"


def test_canvas_bits() -> None:
    c = BrailleCanvas(2, 1)
    c.dot(0, 0)
    c.dot(3, 3, level=2)
    assert c.rows() == ["⠁⢀"]
    assert c.cell_level(0, 0) == 0 and c.cell_level(1, 0) == 2
    c.line(0, 0, 3, 3)
    assert c.rows()[0][0] != "⠁"  # the line added dots
    assert BrailleCanvas(3, 1).rows() == ["   "]


def test_time_ticks_at_local_round_times() -> None:
    t0 = datetime(2026, 11, 23, 10, 7, 13).timestamp()
    for _c, label in time_ticks(t0, t0 + 3600, 80):
        assert time.strptime(label, "%H:%M").tm_min % 5 == 0


async def test_ages_keep_growing_while_the_engine_is_gone() -> None:
    api = AttachedAPI()
    app = make_app(api, refresh_hz=0.2)  # the test ticks by hand
    async with app.run_test(size=(100, 30)) as pilot:
        await started(api, pilot)
        table = app.screen.query_one(SignalTable)
        first = table.rows[0]
        assert table.extra_age_s == 0.0
        # The frame came 30 s ago (as this console counts), and then the engine went.
        frame_clock(app).seen -= 30.4
        api.stale = GONE
        app.tick()
        await pilot.pause()
        # Whole seconds since the frame came: 30, or a little more on a busy machine
        # (the console's own clock runs on between the line above and the tick).
        assert table.extra_age_s in (30.0, 31.0, 32.0)
        cells = dict(zip([c.key for c in table.cols], table._cells[first.id], strict=False))
        assert cells["age"][0] == f"{first.age_s + table.extra_age_s:.0f}s"
        await app.push_screen(SignalDetailScreen(first.id))
        await settle(pilot)
        app.tick()
        await pilot.pause()
        shown = re.search(r"age (\d+)s", app.screen.line_text("now"))
        assert shown and 30 <= int(shown[1]) <= 33, app.screen.line_text("now")
        # Back: live frames again, and the ages are the engine's own.
        api.stale = ""
        app.tick()
        await pilot.pause()
        assert f"age {first.age_s:.1f}s" in app.screen.line_text("now")
