"""ISA-18.2 alarms: every transition, chattering, KPIs and banner order; the journal in SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from floorconsole.adapters.alarm_journal import FILE_NAME, AlarmJournal
from floorconsole.core.alarms import (
    MAX_SHELVE_S,
    AlarmError,
    AlarmState,
    AlarmTable,
    JournalEntry,
)
from floorconsole.core.clock import FakeClock
from floorconsole.core.rules import ActionRecord

S = AlarmState


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[AlarmJournal]:
    j = AlarmJournal(tmp_path / FILE_NAME)
    try:
        yield j
    finally:
        j.close()


def table_with_journal(journal: AlarmJournal) -> tuple[AlarmTable, FakeClock, list[JournalEntry]]:
    clock = FakeClock()
    table = AlarmTable(clock)
    seen: list[JournalEntry] = []
    table.on_entry(seen.append)
    table.on_entry(journal.append)
    return table, clock, seen


def moves(entries: list[JournalEntry]) -> list[tuple[AlarmState, AlarmState]]:
    return [(e.from_state, e.to_state) for e in entries]


def test_every_transition_is_walked_and_journaled(journal: AlarmJournal) -> None:
    table, clock, seen = table_with_journal(journal)
    table.define("trip", "high", "Motor 1 anomaly")
    a = table.get("trip")

    table.activate("trip", "score 0.91 > 0.8 for 5 s")  # NORMAL -> UNACK
    assert a.state is S.UNACK and a.unacknowledged and a.active
    assert table.activate("trip") is None  # already active: no transition
    clock.advance(1)
    table.acknowledge("trip", "op1")  # UNACK -> ACKED
    assert (a.state, a.acked_by) == (S.ACKED, "op1")
    clock.advance(1)
    table.clear("trip", "score back below 0.75")  # ACKED -> NORMAL
    clock.advance(1)
    table.activate("trip")  # NORMAL -> UNACK
    clock.advance(1)
    table.clear("trip")  # UNACK -> RTN_UNACK: returned to normal while unacknowledged
    assert a.state is S.RTN_UNACK and not a.active and a.unacknowledged
    clock.advance(1)
    table.activate("trip")  # RTN_UNACK -> UNACK (again before anyone acknowledged)
    clock.advance(1)
    table.clear("trip")  # -> RTN_UNACK
    clock.advance(1)
    table.acknowledge("trip", "op2")  # RTN_UNACK -> NORMAL
    assert a.state is S.NORMAL

    clock.advance(100)  # out of the chattering window
    table.activate("trip")  # -> UNACK
    table.shelve("trip", 600, "op1")  # UNACK -> SHELVED
    assert a.state is S.SHELVED and a.shelved_by == "op1"
    table.clear("trip")  # the condition goes away while shelved: no transition
    table.activate("trip")  # ...and back: not annunciated
    clock.advance(599)
    assert table.tick() == []
    clock.advance(1)
    [expiry] = table.tick()  # shelve expiry with the condition active: SHELVED -> UNACK
    assert (expiry.to_state, expiry.by) == (S.UNACK, "shelve expiry")
    assert "condition still active" in expiry.text
    table.acknowledge("trip", "op1")  # -> ACKED
    table.shelve("trip", 60, "op1")  # ACKED -> SHELVED
    table.clear("trip")
    clock.advance(61)
    [expiry] = table.tick()  # expiry with the condition gone: SHELVED -> NORMAL
    assert expiry.to_state is S.NORMAL
    table.shelve("trip", 3600, "op1")  # NORMAL -> SHELVED
    table.unshelve("trip", "op1")  # SHELVED -> NORMAL, before its expiry

    table.suppress("trip", "logic", "line stopped")  # NORMAL -> SUPPRESSED
    table.activate("trip")  # not annunciated while suppressed
    table.unsuppress("trip", "logic")  # SUPPRESSED -> UNACK (the condition is active)
    table.remove_from_service("trip", "eng1", "sensor replaced")  # UNACK -> OUT_OF_SERVICE
    table.clear("trip")
    table.return_to_service("trip", "eng1")  # OUT_OF_SERVICE -> NORMAL

    expected = [
        (S.NORMAL, S.UNACK),
        (S.UNACK, S.ACKED),
        (S.ACKED, S.NORMAL),
        (S.NORMAL, S.UNACK),
        (S.UNACK, S.RTN_UNACK),
        (S.RTN_UNACK, S.UNACK),
        (S.UNACK, S.RTN_UNACK),
        (S.RTN_UNACK, S.NORMAL),
        (S.NORMAL, S.UNACK),
        (S.UNACK, S.SHELVED),
        (S.SHELVED, S.UNACK),
        (S.UNACK, S.ACKED),
        (S.ACKED, S.SHELVED),
        (S.SHELVED, S.NORMAL),
        (S.NORMAL, S.SHELVED),
        (S.SHELVED, S.NORMAL),
        (S.NORMAL, S.SUPPRESSED),
        (S.SUPPRESSED, S.UNACK),
        (S.UNACK, S.OUT_OF_SERVICE),
        (S.OUT_OF_SERVICE, S.NORMAL),
    ]
    assert moves(seen) == expected
    assert journal.flush()
    stored = journal.query()
    assert stored == seen  # every transition, in order, with time, who and text
    assert stored[0].text == "score 0.91 > 0.8 for 5 s" and stored[0].priority == "high"
    assert stored[1].by == "op1" and stored[1].t_wall == seen[1].t_wall
    assert {e.by for e in stored} >= {"op1", "op2", "shelve expiry", "logic", "eng1", "system"}


def test_operations_the_state_does_not_allow_are_refused() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    table.define("a", "medium", "A")
    with pytest.raises(AlarmError, match="nothing to acknowledge"):
        table.acknowledge("a", "op1")
    with pytest.raises(AlarmError, match="at most 8 h"):
        table.shelve("a", MAX_SHELVE_S + 1, "op1")
    with pytest.raises(AlarmError, match="at most 8 h"):
        table.shelve("a", 0, "op1")
    table.shelve("a", MAX_SHELVE_S, "op1")  # exactly 8 h is allowed
    with pytest.raises(AlarmError, match="cannot be shelved"):
        table.shelve("a", 60, "op1")
    with pytest.raises(AlarmError, match="not suppressed"):
        table.unsuppress("a", "logic")
    with pytest.raises(AlarmError, match="not out of service"):
        table.return_to_service("a", "eng1")
    with pytest.raises(AlarmError, match="no alarm 'nope'"):
        table.activate("nope")
    with pytest.raises(AlarmError, match="priority 'urgent'"):
        table.define("b", "urgent", "B")


def test_shelve_expires_at_eight_hours_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    table.define("a", "low", "A")
    table.activate("a")
    table.shelve("a", MAX_SHELVE_S, "op1")
    view = table.get("a").as_dict(clock.mono(), clock.wall())
    assert view["shelved_until"] == clock.wall() + MAX_SHELVE_S
    clock.advance(MAX_SHELVE_S - 0.1)
    assert table.tick() == [] and table.get("a").state is S.SHELVED
    clock.advance(0.1)
    assert [e.to_state for e in table.tick()] == [S.UNACK]


def test_three_activations_in_sixty_seconds_flag_chattering() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    a = table.define("a", "medium", "A")
    b = table.define("b", "medium", "B")
    entries = []
    for i in range(3):
        if i:
            clock.advance(29)  # a: 0, 29, 58 s -> within 60 s
        entries.append(table.activate("a"))
        table.clear("a")
        table.acknowledge("a", "op1")
        table.activate("b")
        table.clear("b")
        table.acknowledge("b", "op1")
    last, second = entries[-1], entries[1]
    assert last is not None and second is not None
    assert a.chattering() and "chattering: 3 in 60 s" in last.text
    assert "chattering" not in second.text
    clock.advance(10)
    assert not a.chattering()  # the first activation has left the window
    c = table.define("c", "low", "C")
    for i in range(3):
        if i:
            clock.advance(31)  # 0, 31, 62 s: never 3 within 60 s
        table.activate("c")
        table.clear("c")
        table.acknowledge("c", "op1")
        assert not c.chattering()
    kpis = table.kpis()
    assert [t["id"] for t in kpis["top_chattering"]] == ["a", "b", "c"]
    assert all(t["activations_10min"] == 3 for t in kpis["top_chattering"])
    assert b.as_dict(clock.mono(), clock.wall())["activations_total"] == 3


def test_kpis_count_alarms_per_ten_minutes_and_floods() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    for i in range(10):
        table.define(f"a{i}", "low", f"A{i}")
        table.activate(f"a{i}")
        clock.advance(30)
    kpis = table.kpis()
    assert (kpis["alarms_10min"], kpis["flood"], kpis["floods"]) == (10, False, 0)
    table.define("a10", "low", "A10")
    table.activate("a10")  # the 11th in 10 minutes: a flood
    kpis = table.kpis()
    assert (kpis["alarms_10min"], kpis["flood"], kpis["floods"]) == (11, True, 1)
    clock.advance(600 - 10 * 30 + 1)  # the first ones leave the window
    kpis = table.kpis()
    assert kpis["flood"] is False and kpis["floods"] == 1 and kpis["alarms_10min"] < 11
    assert kpis["top_chattering"] == []


def test_banner_puts_the_highest_priority_unacknowledged_first() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    for aid, prio in (
        ("low1", "low"),
        ("high1", "high"),
        ("crit1", "critical"),
        ("high2", "high"),
        ("med1", "medium"),
        ("quiet", "critical"),
    ):
        table.define(aid, prio, aid)
    for aid in ("low1", "high1", "crit1", "high2", "med1"):
        table.activate(aid)
        clock.advance(1)
    table.acknowledge("crit1", "op1")  # acknowledged: after every unacknowledged one
    table.clear("high1")  # returned, unacknowledged: after high2 (still active)
    assert [a.id for a in table.banner()] == ["high2", "high1", "med1", "low1", "crit1"]
    counts = table.counts()
    assert (counts["active"], counts["unack"], counts["rtn_unack"], counts["acked"]) == (4, 4, 1, 1)
    acked = table.acknowledge_all("op1", ["high2", "low1"])  # only those shown
    assert {e.alarm_id for e in acked} == {"high2", "low1"}
    assert [e.alarm_id for e in table.acknowledge_all("op2")] == ["high1", "med1"]
    assert table.counts()["unack"] == 0


def test_system_alarms() -> None:
    clock = FakeClock()
    table = AlarmTable(clock)
    e = table.raise_system("device_down", "drive1", "127.0.0.1:5020: cannot connect")
    assert e is not None and e.alarm_id == "device_down:drive1" and e.priority == "high"
    alarm = table.get("device_down:drive1")
    assert alarm.message == "Device drive1 down" and alarm.source == "system"
    assert table.raise_system("device_down", "drive1") is None
    rtn = table.clear_system("device_down", "drive1", "up")
    assert rtn is not None and rtn.to_state is S.RTN_UNACK
    assert table.clear_system("broker_lost", "local") is None  # never raised: nothing to do


def test_journal_is_append_only_survives_reopen_and_queries(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    journal = AlarmJournal(path)
    clock = FakeClock(wall=1000.0)
    table = AlarmTable(clock)
    table.on_entry(journal.append)
    table.define("a", "high", "A")
    table.define("b", "low", "B")
    table.activate("a")
    clock.advance(10)
    table.activate("b")
    clock.advance(10)
    table.acknowledge("a", "op1")
    journal.record_action(
        ActionRecord(
            1020.0, "trip", "write", "drive1 co:10", "activate", True, "ok: read back true", 0.4, 1
        )
    )
    journal.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM alarm_journal")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE alarm_journal SET by = 'nobody'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM action_results")

    reopened = AlarmJournal(path)
    try:
        assert [(e.alarm_id, e.to_state) for e in reopened.query()] == [
            ("a", S.UNACK),
            ("b", S.UNACK),
            ("a", S.ACKED),
        ]
        assert [e.to_state for e in reopened.query(alarm_id="a")] == [S.UNACK, S.ACKED]
        assert [e.alarm_id for e in reopened.query(state="UNACK")] == ["a", "b"]
        assert [e.alarm_id for e in reopened.query(since=1005.0, until=1020.0)] == ["b"]
        assert [e.alarm_id for e in reopened.query(limit=1)] == ["a"]  # the newest one
        [rec] = reopened.actions(rule="trip")
        assert (rec.ok, rec.text, rec.attempts) == (True, "ok: read back true", 1)
        assert reopened.actions(rule="other") == []
    finally:
        reopened.close()
