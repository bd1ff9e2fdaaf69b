"""Grace under overload: a historian that is behind holds polls back (bounded memory, the
link and the signals say so), a failing disk does not, and control runs before the store."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from floorconsole.adapters.alarm_journal import AlarmJournal
from floorconsole.adapters.historian import Historian
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.core.clock import SystemClock
from floorconsole.core.config import EdgeConfig, PlantConfig
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.rules import RuleEvent
from floorconsole.core.sample import Sample
from floorconsole.engine.hub import Hub
from tests.test_modbus_source import CollectingSink, device, poller, signal, wait_until


class BehindSink(CollectingSink):
    """A sink whose store says it is behind while `behind` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.behind = False

    def backlogged(self) -> bool:
        return self.behind


async def test_polls_are_held_back_while_the_store_is_behind(
    modbus_server: ModbusDeviceServer,
) -> None:
    modbus_server.set("hr", 0, 7)
    sink = BehindSink()
    p, sink, stats = poller(device(modbus_server, poll_s=0.05), [signal("a", "hr:0")], sink)
    task = asyncio.create_task(p.run())
    try:
        await wait_until(lambda: p.polls >= 2, 10, "two polls")
        sink.behind = True
        await wait_until(lambda: stats.polls_held_back >= 3, 10, "polls held back")
        held_at = p.polls
        # No poll while behind: whatever was in flight when it turned is the last one.
        await wait_until(lambda: stats.polls_held_back >= 8, 10, "more polls held back")
        assert p.polls <= held_at + 1
        # Past its stale time the signal says why it is old: overload, not the device.
        await wait_until(
            lambda: sink.latest["a"].reason is Reason.NO_COMM, 10, "the signal goes stale"
        )
        assert "overload" in sink.latest["a"].detail
        sink.behind = False
        polls = p.polls
        await wait_until(lambda: p.polls >= polls + 3, 10, "polling again")
        await wait_until(lambda: sink.latest["a"].quality is Quality.GOOD, 10, "GOOD again")
        assert stats.polls_skipped >= stats.polls_held_back
    finally:
        await p.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _sample(i: int, t: float) -> Sample:
    return Sample("x", float(i), Quality.GOOD, Reason.NONE, t, t)


def test_historian_is_backlogged_past_its_bound_and_not_while_failing(tmp_path: Path) -> None:
    h = Historian(tmp_path / "history.db", flush_interval_s=3600, max_backlog_rows=100)
    with h:
        t = time.time()
        h.append([_sample(i, t) for i in range(100)])
        assert h.backlog == 100 and not h.backlogged()
        h.append([_sample(100, t)])
        assert h.backlogged()
        assert h.flush() == 101
        assert h.backlog == 0 and not h.backlogged()
        # A disk that refuses writes: rows wait (bounded by max_pending_rows), but polling
        # must go on, so control keeps its inputs: not "behind".
        h.set_max_db_bytes(1)
        h.append([_sample(i, t) for i in range(5000)])
        h.flush()
        assert h.stats.errors >= 1
        assert h.backlog == 5000 and not h.backlogged()


def test_control_listens_before_the_store_and_other_listeners() -> None:
    order: list[str] = []

    class Store:
        def append(self, samples: Sequence[Sample]) -> None:
            order.append("store")

        def append_quality(self, sample: Sample) -> None:
            pass

    plant = PlantConfig(edge=EdgeConfig(id="t"), signals=())
    hub = Hub(plant, SystemClock(), Store())  # type: ignore[arg-type]
    hub.add_signals([signal("x", "hr:0")])
    hub.add_listener(lambda b: order.append("model"))
    hub.add_listener(lambda b: order.append("control"), first=True)
    hub.ingest([_sample(1, time.time())])
    assert order == ["control", "store", "model"]


def test_journal_calls_back_once_a_rules_record_is_committed(tmp_path: Path) -> None:
    """A rule's write waits for its record through flush_later: by the callback the record
    is in the file for any other connection (a kill -9 now would not lose it)."""
    journal = AlarmJournal(tmp_path / "alarms.db")
    seen: list[int] = []
    called = threading.Event()

    def done() -> None:
        with sqlite3.connect(tmp_path / "alarms.db") as other:
            seen.append(other.execute("SELECT count(*) FROM rule_events").fetchone()[0])
        called.set()

    try:
        for i in range(3):
            journal.record_rule(RuleEvent(time.time(), f"r{i}", "activate", True, "rule", "x"))
        journal.flush_later(done)
        assert called.wait(10), "no callback"
        assert seen == [3]
    finally:
        journal.close()
