"""The historian against real SQLite files: round trips, retention, errors, readers, export."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from floorconsole.adapters.historian import (
    Historian,
    HistoryReader,
    QualityChange,
    Record,
    UnknownSignalError,
)
from floorconsole.core.clock import FakeClock
from floorconsole.core.history_format import csv_value, iso_utc_ms, json_value, quality_text
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, waveform

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def good(signal: str, value: object, t: float) -> Sample:
    return Sample(signal, value, Quality.GOOD, Reason.NONE, t, t - T0)


def bad(
    signal: str, value: object, t: float, reason: Reason = Reason.NO_COMM, detail: str = ""
) -> Sample:
    return Sample(signal, value, reason.quality, reason, t, t - T0, detail)


def make(path: Path, **kwargs) -> Historian:
    """A historian whose wall clock stands just after T0, so retention leaves the test rows be."""
    kwargs.setdefault("clock", FakeClock(wall=T0 + 100))
    return Historian(path, **kwargs)


@pytest.fixture
def historian(tmp_path: Path):
    h = make(tmp_path / "history.db")
    h.start()
    yield h
    h.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------- round trips


def test_floats_bools_and_none_round_trip(historian: Historian) -> None:
    historian.append(
        [
            bad("motor1.current", None, T0, Reason.INITIAL),
            good("motor1.current", 12.4, T0 + 1),
            good("drive1.run", True, T0 + 1.5),
            good("motor1.current", -0.0001, T0 + 2),
            bad("motor1.current", 12.4, T0 + 3, Reason.LAST_USABLE),
            good("drive1.run", False, T0 + 4),
            bad("drive1.run", None, T0 + 5, Reason.DEVICE_FAILURE),
        ]
    )
    assert historian.flush() == 7

    current = historian.query("motor1.current", None, None)
    assert current == [
        Record(T0, None, Quality.UNCERTAIN, Reason.INITIAL),
        Record(T0 + 1, 12.4, Quality.GOOD, Reason.NONE),
        Record(T0 + 2, -0.0001, Quality.GOOD, Reason.NONE),
        Record(T0 + 3, 12.4, Quality.UNCERTAIN, Reason.LAST_USABLE),
    ]
    run = historian.query("drive1.run", None, None)
    assert [r.value for r in run] == [True, False, None]
    # Booleans come back as bool, not as 1.0 / 0.0.
    assert [type(r.value) for r in run[:2]] == [bool, bool]
    assert run[2].quality is Quality.BAD and run[2].reason is Reason.DEVICE_FAILURE
    assert historian.rows_total() == 7


def test_query_range_is_half_open_and_limited(historian: Historian) -> None:
    historian.append([good("s", float(i), T0 + i) for i in range(10)])
    historian.flush()
    assert [r.value for r in historian.query("s", T0 + 2, T0 + 5)] == [2.0, 3.0, 4.0]
    assert [r.value for r in historian.query("s", T0 + 7, None)] == [7.0, 8.0, 9.0]
    assert [r.value for r in historian.query("s", None, T0 + 2)] == [0.0, 1.0]
    assert [r.value for r in historian.query("s", None, None, limit=3)] == [0.0, 1.0, 2.0]
    assert historian.query("never.seen", None, None) == []


def test_waveforms_round_trip_exactly(historian: Historian) -> None:
    rng = np.random.default_rng(7)
    blocks = [rng.normal(size=256) for _ in range(3)]
    historian.append(
        [good("motor1.vibration.x", waveform(b), T0 + i) for i, b in enumerate(blocks)]
    )
    historian.append([bad("motor1.vibration.x", waveform([]), T0 + 3, Reason.DECODE_ERROR)])
    assert historian.flush() == 4

    got = historian.query_waveforms("motor1.vibration.x", None, None)
    assert [w.t for w in got] == [T0, T0 + 1, T0 + 2, T0 + 3]
    for w, b in zip(got, blocks, strict=False):
        assert w.value.dtype == np.float64
        np.testing.assert_array_equal(w.value, b)
        assert not w.value.flags.writeable
        assert w.quality is Quality.GOOD
    assert got[3].value.size == 0 and got[3].reason is Reason.DECODE_ERROR
    # Waveforms live in their own table, not among the scalars.
    assert historian.query("motor1.vibration.x", None, None) == []


def test_float32_waveforms_halve_the_blob(tmp_path: Path) -> None:
    block = np.linspace(0.0, 1.0, 1000)
    with make(tmp_path / "h.db", waveform_dtype="float32") as h:
        h.append([good("w", waveform(block), T0)])
        h.flush()
        [w] = h.query_waveforms("w", None, None)
        np.testing.assert_allclose(w.value, block, rtol=1e-7)
        assert w.value.dtype == np.float64
    with sqlite3.connect(tmp_path / "h.db") as conn:
        assert conn.execute("SELECT n, length(data) FROM waveforms").fetchone() == (1000, 4000)


def test_mixed_batch_with_odd_value_types(historian: Historian) -> None:
    # A waveform, a numpy scalar and an int in one batch take the careful path, in order.
    historian.append(
        [
            good("a", 1.0, T0),
            good("a", np.float32(2.5), T0 + 1),
            good("w", waveform([1.0, 2.0]), T0 + 1),
            good("a", 3, T0 + 2),
            good("b", np.bool_(True), T0 + 2),
            good("a", 4.0, T0 + 3),
        ]
    )
    assert historian.flush() == 6
    assert [r.value for r in historian.query("a", None, None)] == [1.0, 2.5, 3.0, 4.0]
    assert historian.query("b", None, None)[0].value is True
    assert historian.stats.dropped == 0


def test_quality_changes(historian: Historian) -> None:
    historian.append_quality(bad("line.speed", None, T0, Reason.NO_COMM, "timeout after 500 ms"))
    historian.append_quality(good("line.speed", 41.0, T0 + 12))
    historian.append_quality(bad("motor1.temp", 61.2, T0 + 13, Reason.OUT_OF_RANGE))
    assert historian.flush() == 3
    assert historian.quality_changes("line.speed", None, None) == [
        QualityChange(T0, Quality.BAD, Reason.NO_COMM, "timeout after 500 ms"),
        QualityChange(T0 + 12, Quality.GOOD, Reason.NONE, ""),
    ]
    assert historian.quality_changes("line.speed", T0 + 1, None) == [
        QualityChange(T0 + 12, Quality.GOOD, Reason.NONE, ""),
    ]
    assert historian.quality_changes("motor1.temp", None, None)[0].reason is Reason.OUT_OF_RANGE


def test_writer_thread_commits_without_flush(tmp_path: Path) -> None:
    with make(tmp_path / "h.db", flush_interval_s=0.02) as h:
        h.append([good("s", float(i), T0 + i) for i in range(100)])
        assert wait_for(lambda: h.stats.rows_committed == 100)
        assert h.stats.rows_pending == 0
        assert h.stats.commits >= 1
        assert h.stats.last_commit_ms > 0
        assert h.stats.db_bytes > 0
        assert len(h.query("s", None, None)) == 100


def test_restart_keeps_signal_ids_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with make(path) as h:
        h.append([good("a", 1.0, T0), good("b", 2.0, T0)])
    with make(path) as h:
        assert h.rows_total() == 2
        h.append([good("b", 3.0, T0 + 1), good("c", 4.0, T0 + 1)])
        h.flush()
        assert [r.value for r in h.query("b", None, None)] == [2.0, 3.0]
        assert h.rows_total() == 4
    with HistoryReader(path) as reader:
        assert reader.signals() == ["a", "b", "c"]
        assert reader.rows_total() == 4


def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = make(path, flush_interval_s=60)
    h.start()
    h.append([good("s", float(i), T0 + i) for i in range(50)])
    h.close()
    h.close()
    with HistoryReader(path) as reader:
        assert len(reader.query("s", None, None)) == 50
    h.append([good("s", 99.0, T0 + 99)])
    assert h.stats.dropped == 1
    assert "after close" in h.stats.last_error


# ---------------------------------------------------------------------- retention


def test_retention_deletes_only_old_rows(tmp_path: Path) -> None:
    clock = FakeClock(wall=T0)
    day = 86400.0
    with make(tmp_path / "h.db", retention_s=7 * day, clock=clock, flush_interval_s=60) as h:
        old = [good("s", float(i), T0 - 10 * day + i) for i in range(12_000)]  # > 2 chunks
        recent = [good("s", float(i), T0 - day + i) for i in range(100)]
        h.append(
            old
            + recent
            + [good("w", waveform([1.0]), T0 - 8 * day), good("w", waveform([2.0]), T0 - 6 * day)]
        )
        h.append_quality(bad("s", None, T0 - 9 * day))
        h.append_quality(good("s", 1.0, T0 - 2 * day))
        h.flush()
        assert h.rows_total() == 12_102

        assert h.prune() == 12_000 + 1 + 1
        assert [r.t for r in h.query("s", None, None)] == [r.t_source for r in recent]
        assert [w.t for w in h.query_waveforms("w", None, None)] == [T0 - 6 * day]
        assert [c.t for c in h.quality_changes("s", None, None)] == [T0 - 2 * day]
        assert h.rows_total() == 101

        # 6.5 days later the cut-off is half a day before T0: everything left ages out, and a
        # sample taken then stays.
        clock.advance(6.5 * day)
        h.append([good("s", 5.0, T0 + 6 * day)])
        h.flush()
        assert h.prune() == 100 + 1 + 1
        assert [r.value for r in h.query("s", None, None)] == [5.0]
        assert h.query_waveforms("w", None, None) == []
        assert h.quality_changes("s", None, None) == []
        assert h.rows_total() == 1


def test_writer_thread_runs_retention_by_itself(tmp_path: Path) -> None:
    clock = FakeClock(wall=T0)
    with make(tmp_path / "h.db", retention_s=3600, clock=clock, flush_interval_s=0.02) as h:
        h.append([good("s", 1.0, T0 - 7200), good("s", 2.0, T0 - 60)])
        h.flush()
        # A pass runs at start-up (maybe before these rows landed) and then once a minute.
        clock.advance(61)
        assert wait_for(lambda: len(h.query("s", None, None)) == 1)
        assert h.query("s", None, None)[0].value == 2.0
        clock.advance(3600)
        assert wait_for(lambda: h.query("s", None, None) == [])


# ---------------------------------------------------------------------- readers


def test_reader_sees_rows_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    stop = threading.Event()
    with make(path, flush_interval_s=0.01) as h:

        def produce() -> None:
            i = 0
            while not stop.is_set():
                h.append([good("s", float(i + k), T0 + (i + k) * 0.001) for k in range(50)])
                i += 50
                time.sleep(0.005)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            with HistoryReader(path) as reader:
                seen = []
                deadline = time.monotonic() + 5
                while len(set(seen)) < 5 and time.monotonic() < deadline:
                    seen.append(len(reader.query("s", None, None)))
                    time.sleep(0.03)
                rows = reader.query("s", None, None)
        finally:
            stop.set()
            producer.join()
    assert seen == sorted(seen) and len(set(seen)) >= 5, seen
    # Whatever a reader sees is a committed prefix: 0, 1, 2, ... with no gap.
    assert [r.value for r in rows] == [float(i) for i in range(len(rows))]


def test_reader_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no history database"):
        HistoryReader(tmp_path / "nope.db")


# ---------------------------------------------------------------------- failures


def test_disk_full_keeps_rows_pending_until_there_is_room(tmp_path: Path) -> None:
    with make(tmp_path / "h.db", flush_interval_s=60, max_db_bytes=64 * 1024) as h:
        n = 20_000
        h.append([good("s", float(i), T0 + i) for i in range(n)])
        assert h.flush() == 0  # no exception: the failure is a figure
        stats = h.stats
        assert stats.errors >= 1
        assert "SQLITE_FULL" in stats.last_error
        assert stats.rows_pending == n
        assert stats.dropped == 0
        assert h.query("s", None, None) == []  # the failed batch was rolled back whole

        h.append([good("s", float(i), T0 + i) for i in range(n, n + 10)])
        assert h.flush() == 0
        assert h.stats.rows_pending == n + 10

        h.set_max_db_bytes(None)
        assert h.flush() == n + 10
        assert h.stats.rows_pending == 0
        values = [r.value for r in h.query("s", None, None)]
        assert values == [float(i) for i in range(n + 10)]  # none lost, none doubled
    with sqlite3.connect(tmp_path / "h.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_pending_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    with make(
        tmp_path / "h.db", flush_interval_s=60, max_db_bytes=64 * 1024, max_pending_rows=5_000
    ) as h:
        h.append([good("s", float(i), T0 + i) for i in range(20_000)])
        assert h.flush() == 0
        assert h.stats.dropped == 15_000
        assert h.stats.rows_pending == 5_000
        h.set_max_db_bytes(None)
        assert h.flush() == 5_000
        assert [r.value for r in h.query("s", None, None)] == [
            float(i) for i in range(15_000, 20_000)
        ]


def test_a_row_sqlite_refuses_is_dropped_not_retried_forever(historian: Historian) -> None:
    historian.append([good("s", 1.0, T0), good("s", 2.0, math.nan), good("s", 3.0, T0 + 2)])
    assert historian.flush() == 2
    assert [r.value for r in historian.query("s", None, None)] == [1.0, 3.0]
    assert historian.stats.dropped == 1
    assert historian.stats.errors == 1
    assert historian.stats.rows_pending == 0


def test_a_value_that_cannot_be_stored_is_counted(historian: Historian) -> None:
    historian.append([good("s", 1.0, T0), good("s", "twelve", T0 + 1)])
    assert historian.flush() == 1
    assert historian.stats.dropped == 1
    assert "'s'" in historian.stats.last_error


def test_locked_database_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with make(path, flush_interval_s=60) as h:
        h.append([good("s", 1.0, T0)])
        h.flush()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            h.append([good("s", 2.0, T0 + 1)])
            assert h.flush() == 0
            assert "SQLITE_BUSY" in h.stats.last_error
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert h.flush() == 1
        assert [r.value for r in h.query("s", None, None)] == [1.0, 2.0]


# ---------------------------------------------------------------------- export


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "h.db"
    with make(path) as h:
        h.append(
            [
                good("motor1.current", 12.4, T0 + 0.0004),
                good("drive1.run", True, T0 + 0.5),
                bad("motor1.current", None, T0 + 1, Reason.NO_COMM),
                good("motor1.vibration", waveform([0.5, -1.25, 3.0]), T0 + 1.5),
                bad("motor1.current", 11.0, T0 + 2, Reason.LAST_USABLE),
                good("drive1.run", False, T0 + 3),
                good("motor1.current", 99.0, T0 + 10),
            ]
        )
    return path


def test_export_csv_row_by_row(filled: Path) -> None:
    out = io.StringIO()
    with HistoryReader(filled) as reader:
        n = reader.export(
            ["motor1.current", "drive1.run", "motor1.vibration"], T0, T0 + 5, "csv", out
        )
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert n == 6
    assert rows == [
        ["time", "signal", "value", "quality"],
        ["2023-11-14T22:13:20.000Z", "motor1.current", "12.4", "GOOD"],
        ["2023-11-14T22:13:20.500Z", "drive1.run", "true", "GOOD"],
        ["2023-11-14T22:13:21.000Z", "motor1.current", "", "BAD no communication"],
        ["2023-11-14T22:13:21.500Z", "motor1.vibration", "[0.5,-1.25,3.0]", "GOOD"],
        ["2023-11-14T22:13:22.000Z", "motor1.current", "11", "UNCERTAIN last usable"],
        ["2023-11-14T22:13:23.000Z", "drive1.run", "false", "GOOD"],
    ]


def test_export_json_row_by_row(filled: Path) -> None:
    out = io.StringIO()
    with HistoryReader(filled) as reader:
        n = reader.export(["motor1.vibration", "motor1.current"], None, None, "json", out)
    assert n == 5
    assert json.loads(out.getvalue()) == [
        {
            "time": "2023-11-14T22:13:20.000Z",
            "signal": "motor1.current",
            "value": 12.4,
            "quality": "GOOD",
        },
        {
            "time": "2023-11-14T22:13:21.000Z",
            "signal": "motor1.current",
            "value": None,
            "quality": "BAD no communication",
        },
        {
            "time": "2023-11-14T22:13:21.500Z",
            "signal": "motor1.vibration",
            "value": [0.5, -1.25, 3.0],
            "quality": "GOOD",
        },
        {
            "time": "2023-11-14T22:13:22.000Z",
            "signal": "motor1.current",
            "value": 11.0,
            "quality": "UNCERTAIN last usable",
        },
        {
            "time": "2023-11-14T22:13:30.000Z",
            "signal": "motor1.current",
            "value": 99.0,
            "quality": "GOOD",
        },
    ]


def test_export_of_nothing_is_still_valid(filled: Path) -> None:
    out = io.StringIO()
    with HistoryReader(filled) as reader:
        assert reader.export(["drive1.run"], T0 + 100, None, "json", out) == 0
    assert json.loads(out.getvalue()) == []


def test_export_names_an_unknown_signal_before_writing(filled: Path) -> None:
    out = io.StringIO()
    with HistoryReader(filled) as reader:
        with pytest.raises(
            UnknownSignalError, match=r"'motor1\.curent'.*did you mean 'motor1\.current'"
        ):
            reader.export(["drive1.run", "motor1.curent"], None, None, "csv", out)
        with pytest.raises(ValueError, match="not one of csv, json"):
            reader.export(["drive1.run"], None, None, "xml", out)  # type: ignore[arg-type]
    assert out.getvalue() == ""


# ---------------------------------------------------------------------- pure formatting


def test_iso_time_rounds_to_the_millisecond() -> None:
    assert iso_utc_ms(T0) == "2023-11-14T22:13:20.000Z"
    assert iso_utc_ms(T0 + 0.1234) == "2023-11-14T22:13:20.123Z"
    assert iso_utc_ms(T0 + 0.9996) == "2023-11-14T22:13:21.000Z"
    assert iso_utc_ms(0.0) == "1970-01-01T00:00:00.000Z"


def test_quality_and_value_text() -> None:
    assert quality_text(Quality.GOOD, Reason.NONE) == "GOOD"
    assert quality_text(Quality.BAD, Reason.NO_COMM) == "BAD no communication"
    assert quality_text(Quality.UNCERTAIN, Reason.NONE) == "UNCERTAIN"
    assert csv_value(None) == "" and csv_value(True) == "true" and csv_value(0.1) == "0.1"
    assert json_value(math.inf) is None
    assert json_value(waveform([1.0, math.nan])) == [1.0, None]
