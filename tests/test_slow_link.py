"""The slow-link profile: a terminal that cannot take what the console writes gets one redraw a
second, no sparklines and no flashing, said once; the full profile returns once it keeps up."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app
from floorconsole.ui.slow_link import LEAVE_AFTER_S, SlowLink
from floorconsole.ui.terminal import _TerminalOut
from floorconsole.ui.widgets.signal_table import SignalTable, columns_for

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


def test_two_blocked_checks_in_a_row_start_it_and_a_quiet_minute_ends_it() -> None:
    s = SlowLink()
    assert s.feed(0.0, 0.0) is None  # the first reading only sets the mark
    assert s.feed(1.5, 2.0) is None and not s.slow  # one slow burst (75%) is not a slow link
    assert s.feed(1.6, 4.0) is None  # 5%: the count starts over
    assert s.feed(2.6, 6.0) is None  # 50%: one
    assert s.feed(4.0, 8.0) is True and s.slow  # 70%: two in a row
    assert s.last_busy_fraction == pytest.approx(0.7)
    t, busy = 8.0, 4.0
    for _ in range(10):  # keeping up easily for 20 s ...
        t += 2.0
        assert s.feed(busy, t) is None
    busy += 0.5  # ... then a 25% check: the minute starts again
    t += 2.0
    assert s.feed(busy, t) is None
    ended = None
    while ended is None and t < 200:
        t += 2.0
        ended = s.feed(busy, t)
    assert ended is False and not s.slow
    assert t - 30.0 >= LEAVE_AFTER_S  # a whole easy minute after the busy check at t=30


def test_the_writer_counts_the_time_a_full_terminal_holds_it() -> None:
    r, w = os.pipe()
    out = _TerminalOut(open(w, "w", buffering=1, closefd=True), lambda why: None)
    taken = bytearray()

    def slow_reader() -> None:  # a thin link: 64 kB a second
        with open(r, "rb", buffering=0, closefd=True) as f:
            while chunk := f.read(16384):
                taken.extend(chunk)
                time.sleep(0.25)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    t0 = time.monotonic()
    for _ in range(20):
        out.write("x" * 16384)
        out.flush()
    out._f.close()
    reader.join(10)
    assert len(taken) == 20 * 16384
    # the pipe holds 64 kB: the rest waited on the reader, about a second at the least
    assert out.busy_s >= 0.6, out.busy_s
    assert out.busy_s <= time.monotonic() - t0


def test_the_slow_profile_drops_the_trend_column_only() -> None:
    full = [c.key for c in columns_for(100)]
    slow = [c.key for c in columns_for(100, trend=False)]
    assert "trend" in full and "trend" not in slow
    assert [k for k in full if k != "trend"] == slow  # the rest as they were


async def test_a_console_whose_terminal_falls_behind_slows_down_and_says_so() -> None:
    app = make_app(RecordedAPI.load(RECORDINGS / "bearing_trip.json"), refresh_hz=4.0)
    clock = [1000.0]  # the check's clock, given to it (the loop keeps its own)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(SignalTable)
        assert any(c.key == "trend" for c in table.cols)
        driver = app._driver
        busy = 0.0
        driver.output_busy_s = busy  # type: ignore[union-attr]  # the pty driver's figure
        app._check_terminal_keeps_up(clock[0])
        for _ in range(2):  # two checks, 2 s each, 1.6 s of them blocked writing
            clock[0] += 2.0
            busy += 1.6
            driver.output_busy_s = busy  # type: ignore[union-attr]
            app._check_terminal_keeps_up(clock[0])
        assert app.slow_link
        assert app._tick_timer._interval == pytest.approx(1.0)
        app.tick()
        await pilot.pause()
        assert not any(c.key == "trend" for c in table.cols)
        notes = [n.message for n in app._notifications]
        assert any("slow terminal: 1 redraw a second" in m for m in notes), notes
        clock[0] += 2.0
        for _ in range(31):  # a minute of keeping up
            clock[0] += 2.0
            app._check_terminal_keeps_up(clock[0])
        assert not app.slow_link
        assert app._tick_timer._interval == pytest.approx(0.25)
        app.tick()
        await pilot.pause()
        assert any(c.key == "trend" for c in table.cols)
