"""Alarm KPIs after ISA-18.2 from a real journal file built for the test: each figure checked
against what the journal holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from floorconsole.adapters.alarm_journal import AlarmJournal
from floorconsole.core.alarm_kpis import PERIOD_S, alarm_kpis
from floorconsole.core.alarms import AlarmState, JournalEntry

N, U, A, R = AlarmState.NORMAL, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTN_UNACK
T0 = 1_790_000_000.0  # window start
HOUR = 3600.0


def entry(t: float, alarm: str, a: AlarmState, b: AlarmState, prio: str = "high") -> JournalEntry:
    return JournalEntry(T0 + t, alarm, a, b, "engine", f"{alarm} {b.value}", prio)


@pytest.fixture
def journal(tmp_path: Path) -> AlarmJournal:
    j = AlarmJournal(tmp_path / "alarms.db")
    rows = [
        # before the window: S activated 25 h before its start and acknowledged, still active;
        # G came and went
        entry(-25 * HOUR, "S", N, U, "medium"),
        entry(-24 * HOUR, "S", U, A, "medium"),
        entry(-2 * HOUR, "G", N, U),
        entry(-2 * HOUR + 60, "G", U, A),
        entry(-2 * HOUR + 120, "G", A, N),
        # period 0: A chatters, 3 annunciations in 45 s, then acknowledged and cleared
        entry(10, "A", N, U),
        entry(20, "A", U, R),
        entry(30, "A", R, U),
        entry(40, "A", U, R),
        entry(55, "A", R, U),
        entry(100, "A", U, A),
        entry(200, "A", A, N),
        # period 1: a flood, 12 alarms in 2 minutes, all acknowledged and cleared later
        *[entry(600 + 10 * i, f"F{i}", N, U, "low") for i in range(12)],
        *[entry(900 + i, f"F{i}", U, A, "low") for i in range(12)],
        *[entry(1000 + i, f"F{i}", A, N, "low") for i in range(12)],
        # period 3: B comes and stays (acknowledged): standing, not stale
        entry(1900, "B", N, U),
        entry(1950, "B", U, A),
        # after the window: not counted
        entry(HOUR + 5, "A", N, U),
    ]
    for r in rows:
        j.append(r)
    assert j.flush()
    yield j
    j.close()


def test_each_kpi_against_the_journal(journal: AlarmJournal) -> None:
    entries, before = journal.kpi_inputs(T0, T0 + HOUR)
    assert before["S"] == (A, T0 - 25 * HOUR, "medium")
    assert before["G"] == (N, None, "high")
    k = alarm_kpis(entries, since=T0, until=T0 + HOUR, before=before)

    assert k.periods == 6 and k.annunciations == 3 + 12 + 1
    assert k.avg_per_10min == pytest.approx(16 / 6)
    assert k.peak_per_10min == 12 and k.peak_period_start == T0 + PERIOD_S
    assert (k.flood_periods, k.flood_share) == (1, pytest.approx(1 / 6))
    assert [(c.alarm_id, c.count) for c in k.top][:3] == [("A", 3), ("B", 1), ("F0", 1)]
    assert len(k.top) == 10 and k.top[0].share == pytest.approx(3 / 16)
    assert [c.alarm_id for c in k.chattering] == ["A"]
    assert [(s.alarm_id, s.state, s.since, s.stale) for s in k.standing] == [
        ("B", "ACKED", T0 + 1900, False),
        ("S", "ACKED", T0 - 25 * HOUR, True),
    ]
    assert [s.alarm_id for s in k.stale] == ["S"]
    assert k.by_priority == {"high": 4, "low": 12}

    verdicts = {name: ok for name, _value, _target, ok in k.verdicts()}
    assert verdicts == {
        "average per 10 min": False,  # 2.67 > 2 (manageable)
        "peak in 10 min": False,  # 12 > 10
        "periods in flood": False,  # 17 % > 1 %
        "chattering alarms": False,
        "stale alarms": True,  # 1 < 5
        "standing alarms": True,
    }


def test_a_quiet_window_is_within_every_target(journal: AlarmJournal) -> None:
    since, until = T0 + 2 * HOUR, T0 + 10 * HOUR  # nothing happens here; A, B and S stand
    entries, before = journal.kpi_inputs(since, until)
    assert entries == [] and before["A"] == (U, T0 + HOUR + 5, "high")
    k = alarm_kpis(entries, since=since, until=until, before=before)
    assert (k.annunciations, k.peak_per_10min, k.flood_periods) == (0, 0, 0)
    assert k.periods == 48 and k.chattering == () and k.peak_period_start is None
    assert [(s.alarm_id, s.state) for s in k.standing] == [
        ("A", "UNACK"),
        ("B", "ACKED"),
        ("S", "ACKED"),
    ]
    assert [s.alarm_id for s in k.stale] == ["S"]
    assert all(ok for *_rest, ok in k.verdicts())


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        alarm_kpis([], since=T0, until=T0)


async def test_the_kpi_screen_reads_the_journal_through_the_console_api(
    journal: AlarmJournal,
) -> None:
    """k on the alarm screen: the figures of a real journal, each with its target and a
    shape, through ConsoleAPI.alarm_kpis; 1-4 choose the window."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from floorconsole.engine.replay import RecordedAPI
    from floorconsole.ui.app import make_app
    from floorconsole.ui.screens.alarms import AlarmScreen, KpiScreen

    rec = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "overview.json"

    class JournalAPI(RecordedAPI):
        asked: list[tuple[float, float]] = []

        def alarm_kpis(self, since: float, until: float) -> dict:  # type: ignore[override,type-arg]
            self.asked.append((since, until))
            entries, before = journal.kpi_inputs(since, until)
            k = alarm_kpis(entries, since=since, until=until, before=before)
            return {**asdict(k), "verdicts": [list(v) for v in k.verdicts()]}

    base = RecordedAPI.load(rec)
    api = JournalAPI(replace(base.frame(), t_wall=T0 + HOUR), {})
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, AlarmScreen)
        await pilot.press("k")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, KpiScreen)
        assert api.asked[-1] == (T0 + HOUR - 86400, T0 + HOUR)  # 24 h by default
        await pilot.press("1")  # the last hour: the window of the test's journal
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert api.asked[-1] == (T0, T0 + HOUR)
        text = screen.text
        assert "16 annunciated" in text
        assert "✕ average per 10 min   2.67 " in text
        assert "✕ peak in 10 min       12 " in text
        assert "✓ stale alarms" in text and "✕ chattering alarms" in text
        assert "◆ ACKED  since" in text and "  S\n" in text  # S is stale and standing
        lines = text.splitlines()
        top = lines.index(" Most frequent") + 1
        assert lines[top].split()[:2] == ["3", "18.8%"] and lines[top].endswith(" A")


async def test_a_recording_has_no_journal_to_read() -> None:
    from pathlib import Path

    from floorconsole.console import Unavailable
    from floorconsole.engine.replay import RecordedAPI

    rec = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "overview.json"
    with pytest.raises(Unavailable, match="no alarm journal"):
        RecordedAPI.load(rec).alarm_kpis(T0, T0 + HOUR)
