"""History stored packed (schema 2): chunks a commit, blocks a signal after compaction, and
the rows of a version 1 file read beside them — every reader sees the same samples."""

from __future__ import annotations

import io
import logging
import random
import sqlite3
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from floorconsole.adapters.historian import (
    HISTORY_NEWEST,
    HISTORY_TOTAL,
    INSERT_SAMPLE,
    INSERT_SIGNAL,
    MAX_BLOCK_SPAN_S,
    Historian,
    HistoryReader,
    Record,
)
from floorconsole.core.clock import FakeClock
from floorconsole.core.config import DeviceConfig, PlantConfig, load_plant
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.sample_pack import (
    ROW_DTYPE,
    PackError,
    group_rows,
    pack,
    pack_parts,
    regroup,
    unpack,
)
from floorconsole.engine.bootstrap import commit_interval_s, part_samples

T0 = 1_700_000_000.0


def good(signal: str, value: object, t: float) -> Sample:
    return Sample(signal, value, Quality.GOOD, Reason.NONE, t, t - T0)


def make(path: Path, **kwargs) -> Historian:
    kwargs.setdefault("clock", FakeClock(wall=T0 + 100))
    kwargs.setdefault("flush_interval_s", 3600.0)
    return Historian(path, **kwargs)


def table_count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def random_samples(n: int, signals: int, seed: int) -> list[Sample]:
    """Times mostly rising with some out of order and some repeated; None, bools, numbers."""
    rnd = random.Random(seed)
    out = []
    t = T0
    for i in range(n):
        t += rnd.choice((0.0, 0.01, 0.05))
        when = t - rnd.choice((0.0, 0.0, 0.0, 3.0, 200.0))  # some arrive late
        kind = rnd.random()
        value: object = (
            None if kind < 0.05 else (kind < 0.15) if kind < 0.3 else rnd.uniform(-1e6, 1e6)
        )
        quality = Quality.BAD if value is None else Quality.GOOD
        reason = Reason.NO_COMM if value is None else Reason.NONE
        out.append(Sample(f"s{rnd.randrange(signals)}", value, quality, reason, when, float(i)))
    return out


def expected(samples: list[Sample], signal: str, since=None, until=None) -> list[Record]:
    """What a query must return: the signal's samples in range, by time, ties in order."""
    rows = [
        Record(s.t_source, s.value, s.quality, s.reason)
        for s in samples
        if s.signal == signal
        and (since is None or s.t_source >= since)
        and (until is None or s.t_source < until)
    ]
    return sorted(rows, key=lambda r: r.t)


def test_a_packed_blob_reads_back_and_names_what_is_wrong() -> None:
    rows = np.array(
        [(3, 1.0, 5.0, 1), (1, 2.0, np.nan, 2), (3, 0.5, 6.0, 3), (2, 4.0, 1.0, 65536)],
        dtype=ROW_DTYPE,
    )
    p = unpack(pack(group_rows(rows)))
    assert p.ids.tolist() == [1, 2, 3]
    t, v, q = p.of(3)
    assert (t.tolist(), v.tolist(), q.tolist()) == ([1.0, 0.5], [5.0, 6.0], [1, 3])  # order kept
    assert np.isnan(p.of(1)[1][0]) and len(p.of(7)[0]) == 0
    data = pack(group_rows(rows))
    with pytest.raises(PackError, match="version 9"):
        unpack(b"\x09" + data[1:])
    with pytest.raises(PackError, match="bytes where 4 samples"):
        unpack(data[:-1])
    with pytest.raises(PackError, match="shorter than the 16-byte head"):
        unpack(b"\x01")


def test_packing_several_ranges_at_once_gives_each_range_s_own_blob() -> None:
    """pack_parts (the commit's eight chunks in one go) writes what pack writes for each
    range, also where one signal's run crosses a cut and where a range is empty."""
    rng = np.random.default_rng(7)
    rows = np.zeros(60, dtype=ROW_DTYPE)
    rows["s"] = np.sort(rng.integers(0, 9, 60))
    rows["t"] = rng.random(60) * 100
    rows["v"] = rng.random(60)
    rows["v"][5] = np.nan
    rows["q"] = rng.integers(0, 1 << 17, 60)
    cuts = [0, 0, 13, 14, 40, 40, 60]
    blobs = pack_parts(rows["s"], rows["t"], rows["v"], rows["q"], cuts)
    for blob, lo, hi in zip(blobs, cuts[:-1], cuts[1:], strict=True):
        assert blob == (pack(rows[lo:hi]) if hi > lo else b"")
    assert unpack(blobs[3]).ids.tolist() == sorted(set(rows["s"][14:40].tolist()))


def test_regroup_makes_a_block_a_signal_by_time_within_the_span() -> None:
    a = np.array([(1, 10.0, 1.0, 0), (2, 5.0, 2.0, 0), (1, 10.0, 3.0, 0)], dtype=ROW_DTYPE)
    b = np.array(
        [(1, 9.0, 4.0, 0), (1, 10.0 + MAX_BLOCK_SPAN_S + 1, 5.0, 0), (1, 10.0, 6.0, 0)],
        dtype=ROW_DTYPE,
    )
    blocks = regroup([unpack(pack(group_rows(a))), unpack(pack(group_rows(b)))], MAX_BLOCK_SPAN_S)
    assert [(s, t0, t1, n) for s, t0, t1, n, _ in blocks] == [
        (1, 9.0, 10.0, 4),
        (1, 11.0 + MAX_BLOCK_SPAN_S, 11.0 + MAX_BLOCK_SPAN_S, 1),
        (2, 5.0, 5.0, 1),
    ]
    # By time; equal times (10.0) in the order they came: 1.0, 3.0 from a, then 6.0 from b.
    assert unpack(blocks[0][4]).of(1)[1].tolist() == [4.0, 1.0, 3.0, 6.0]


def test_queries_read_the_same_samples_before_and_after_compaction(tmp_path: Path) -> None:
    samples = random_samples(6000, 7, seed=1)
    with make(tmp_path / "h.db") as h:
        for i in range(0, len(samples), 500):  # twelve commits, a chunk a part each
            h.append(samples[i : i + 500])
            h.flush()
        assert table_count(h.path, "sample_chunks") == 12 * 7  # seven signals, seven parts
        assert table_count(h.path, "sample_blocks") == 0
        windows = [(None, None), (T0 + 20, T0 + 60), (T0 - 150, T0 + 1), (T0 + 60, None)]
        before = {(s, w): h.query(s, *w) for s in ("s0", "s3") for w in windows}
        for (s, w), got in before.items():
            assert got == expected(samples, s, *w), (s, w)
        assert h.compact() == 6000
        assert table_count(h.path, "sample_chunks") == 0
        assert table_count(h.path, "sample_blocks") >= 7
        for (s, w), got in before.items():
            assert h.query(s, *w) == got, (s, w)
        assert h.query("s0", None, None, limit=10) == before[("s0", (None, None))][:10]
        assert h.rows_total() == 6000
        # Some compacted, some not: still one story.
        more = random_samples(300, 7, seed=2)
        h.append(more)
        h.flush()
        assert h.query("s5", None, None) == expected(samples + more, "s5")
    with HistoryReader(tmp_path / "h.db") as reader:
        assert reader.rows_total() == 6300
        out = io.StringIO()
        assert reader.export(["s1", "s2"], None, None, "csv", out) == len(
            expected(samples + more, "s1")
        ) + len(expected(samples + more, "s2"))
        times = [line.split(",")[0] for line in out.getvalue().splitlines()[1:]]
        assert times == sorted(times)


def test_a_version_1_file_keeps_its_rows_readable_beside_new_samples(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        "CREATE TABLE signals (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
        "CREATE TABLE samples (signal INTEGER NOT NULL, t REAL NOT NULL, v REAL,"
        " q INTEGER NOT NULL);"
        "CREATE INDEX samples_signal_t ON samples (signal, t);"
        "CREATE TABLE waveforms (signal INTEGER NOT NULL, t REAL NOT NULL, q INTEGER NOT NULL,"
        " n INTEGER NOT NULL, data BLOB NOT NULL);"
        "PRAGMA user_version=1;"
    )
    conn.execute(INSERT_SIGNAL, (1, "level"))
    good_q = int(Quality.GOOD) << 8
    conn.executemany(INSERT_SAMPLE, [(1, T0 + i, float(i), good_q) for i in range(0, 10, 2)])
    conn.close()
    with HistoryReader(db) as old:  # read as it is, before this floorconsole opens it
        assert [r.value for r in old.query("level", None, None)] == [0.0, 2.0, 4.0, 6.0, 8.0]
    with make(db) as h:
        assert h.rows_total() == 5
        h.append([good("level", float(i), T0 + i) for i in range(1, 10, 2)])
        h.flush()
        assert [r.value for r in h.query("level", None, None)] == [float(i) for i in range(10)]
        h.compact()
        assert [r.value for r in h.query("level", T0 + 3, T0 + 7)] == [3.0, 4.0, 5.0, 6.0]
        assert h.rows_total() == 10
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_retention_cuts_whole_blocks_and_counts_samples(tmp_path: Path) -> None:
    day = 86400.0
    clock = FakeClock(wall=T0)
    with make(tmp_path / "h.db", retention_s=day, clock=clock) as h:
        h.append([good("a", float(i), T0 - 2 * day + i) for i in range(100)])
        h.append([good("a", float(i), T0 - 100 + i) for i in range(50)])
        h.flush()
        assert h.prune() == 100  # compacted first: chunks hold every signal
        assert h.rows_total() == 50
        assert [r.value for r in h.query("a", None, None)] == [float(i) for i in range(50)]


def test_retention_plans_work_only_for_signals_holding_anything_older(tmp_path: Path) -> None:
    """A box younger than its retention plans nothing (no DELETE a table and signal each
    minute); once a signal holds older samples, its table and it alone are planned."""
    day = 86400.0
    clock = FakeClock(wall=T0)
    with make(tmp_path / "h.db", retention_s=day, clock=clock) as h:
        h.append([good("a", 1.0, T0 - 100), good("b", 2.0, T0 - 50)])
        h.append_quality(good("b", 2.0, T0 - 50))
        h.flush()
        assert h._retention_plan()[1] == deque()
        assert table_count(tmp_path / "h.db", "sample_chunks") == 2  # not compacted for it
        clock._wall += day - 75  # a's sample is now past the cutoff, b's not yet
        cutoff, queue = h._retention_plan()
        assert cutoff == T0 - 75
        assert list(queue) == [("sample_blocks", h._ids["a"])]  # its chunk compacted first
        assert h.prune() == 1
        assert [r.value for r in h.query("b", None, None)] == [2.0]
        assert h.query("a", None, None) == []


def test_a_compaction_that_fails_leaves_the_chunks_read(tmp_path: Path) -> None:
    with make(tmp_path / "h.db") as h:
        for j in range(40):
            h.append([good(f"x{i}", float(j), T0 + j) for i in range(200)])
            h.flush()
        h.set_max_db_bytes(h.stats.db_bytes // 2)  # the file cannot grow: blocks fail
        moved = h.compact()
        assert moved < 8000 and h.stats.errors >= 1 and "SQLITE_FULL" in h.stats.last_error
        assert table_count(h.path, "sample_chunks") > 0
        for name in ("x0", "x7", "x199"):  # every sample once, in blocks or still in chunks
            assert [r.value for r in h.query(name, None, None)] == [float(j) for j in range(40)]
        h.set_max_db_bytes(None)
        assert h.compact() == 8000 - moved
        assert table_count(h.path, "sample_chunks") == 0
        for name in ("x0", "x7", "x199"):
            assert [r.value for r in h.query(name, None, None)] == [float(j) for j in range(40)]


def test_an_unreadable_chunk_is_skipped_named_once_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make(tmp_path / "h.db") as h:
        h.append([good("a", 1.0, T0), good("b", 2.0, T0)])
        h.flush()
        h.append([good("a", 3.0, T0 + 1)])
        h.flush()
        with sqlite3.connect(h.path) as conn:  # the first commit's chunk of a's part
            conn.execute("UPDATE sample_chunks SET data = x'0102' WHERE id = 1")
        with caplog.at_level(logging.WARNING):
            assert [r.value for r in h.query("a", None, None)] == [3.0]
            assert [r.value for r in h.query("a", None, None)] == [3.0]
            assert [r.value for r in h.query("b", None, None)] == [2.0]  # another part
        assert sum("do not read" in r.getMessage() for r in caplog.records) == 1
        assert h.compact() == 2
        assert h.stats.errors == 1 and "history chunk 1" in h.stats.last_error
        assert h.compact() == 0 and h.stats.errors == 1  # counted once, left in the file
        assert table_count(h.path, "sample_chunks") == 1
        assert [r.value for r in h.query("a", None, None)] == [3.0]


def test_a_time_that_is_not_finite_is_dropped_and_counted(tmp_path: Path) -> None:
    with make(tmp_path / "h.db") as h:
        h.append([good("a", 1.0, T0), good("a", 2.0, float("nan")), good("a", 3.0, T0 + 1)])
        assert h.flush() == 2
        assert h.stats.dropped == 1
        assert [r.value for r in h.query("a", None, None)] == [1.0, 3.0]


def test_the_newest_committed_time_reads_from_whichever_form_holds_it(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with make(db) as h:
        h.append([good("a", 1.0, T0 + 5)])
        h.flush()
        with sqlite3.connect(db) as conn:  # chunks only; no blocks, no rows (NULLs)
            assert conn.execute(HISTORY_NEWEST).fetchone()[0] == T0 + 5
            assert conn.execute(HISTORY_TOTAL).fetchone()[0] == 1
        h.compact()
        h.append([good("a", 2.0, T0 + 3)])
        h.flush()
        with sqlite3.connect(db) as conn:
            assert conn.execute(HISTORY_NEWEST).fetchone()[0] == T0 + 5
            assert conn.execute(HISTORY_TOTAL).fetchone()[0] == 2


def polled_every(*polls: float) -> PlantConfig:
    """The demo plant with devices polled this often (none: no Modbus device)."""
    plant = load_plant(Path(__file__).parents[1] / "fixtures" / "plants" / "demo.toml")
    dev = DeviceConfig(id="d", protocol="modbus-tcp", host="127.0.0.1")
    return replace(plant, devices=tuple(replace(dev, poll_s=p) for p in polls))


def test_the_commit_interval_follows_the_fastest_poll() -> None:
    for polls, interval in (
        ((), 0.1),
        ((1.0,), 0.1),
        ((0.3, 1.0), 0.1),
        ((0.1,), 0.05),
        ((1.0, 0.06), 0.03),
        ((0.025,), 0.011),
        ((0.02,), 0.006),
        ((0.015,), 0.005),
        ((0.001,), 0.005),
    ):
        assert commit_interval_s(polled_every(*polls)) == pytest.approx(interval)


def test_a_part_is_compacted_at_a_size_that_follows_the_fastest_poll(tmp_path: Path) -> None:
    for polls, n in (
        ((), 36_000),
        ((0.005,), 12_000),
        ((0.02, 1.0), 12_000),
        ((0.04,), 24_000),
        ((1.0, 0.1), 36_000),
    ):
        assert part_samples(polled_every(*polls)) == n

    with make(tmp_path / "h.db", part_samples=50) as h:
        h.append([good("a", float(i), T0 + i) for i in range(49)])
        h.flush()
        assert h._compact_due() is None  # 49 of 50 waiting, and the timer not yet due
        h.append([good("a", 49.0, T0 + 49)])
        h.flush()
        part = h._compact_due()
        assert part is not None and h._compact_part(part) == 50
        assert table_count(tmp_path / "h.db", "sample_blocks") == 1


def test_the_engine_process_keeps_large_blocks_out_of_its_heap() -> None:
    from floorconsole.adapters.process_memory import pin_mmap_threshold

    # This box runs glibc (as the edge boxes do): the allocator must take the setting.
    assert pin_mmap_threshold() is True


def test_a_compaction_during_a_query_hands_no_sample_back_twice(tmp_path: Path) -> None:
    """The reader reads chunks, then blocks: a compaction committing in between moved the
    same samples from one to the other (found in review: every sample came back twice)."""
    with make(tmp_path / "h.db", retention_s=None) as h:
        h.append([good("a", float(i), T0 + i) for i in range(5)])
        h.flush()
        reader = h._reader
        assert reader is not None
        unpack_chunk = reader._unpack
        moved: list[int] = []

        def compact_meanwhile(data: bytes):  # type: ignore[no-untyped-def]
            if not moved:
                moved.append(h.compact())
            return unpack_chunk(data)

        reader._unpack = compact_meanwhile  # type: ignore[method-assign]
        assert [r.value for r in h.query("a", None, None)] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert moved == [5]
        reader._unpack = unpack_chunk  # type: ignore[method-assign]
        assert [r.value for r in h.query("a", None, None)] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_block_spanning_its_whole_limit_is_found_from_its_last_sample(tmp_path: Path) -> None:
    """t0 + 60 and t1 - 60 round differently in floats: 60.1 - 60 > 0.1 (found in review)."""
    with make(tmp_path / "h.db", retention_s=None) as h:
        h.append([good("b", 1.0, 0.1), good("b", 2.0, 60.1)])
        h.flush()
        assert [r.value for r in h.query("b", 60.1, None)] == [2.0]
        h.compact()
        assert [r.value for r in h.query("b", 60.1, None)] == [2.0]
