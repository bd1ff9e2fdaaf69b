"""The historian: every sample lands first in a local SQLite file, written by one thread."""

from __future__ import annotations

import csv
import difflib
import heapq
import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, TextIO

import numpy as np

from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.history_format import csv_value, iso_ms, quality_text, readable_value
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, Value
from floorconsole.core.sample_pack import (
    Packed,
    PackError,
    pack_parts,
    regroup,
    unpack,
)

log = logging.getLogger(__name__)

# 2: scalar samples packed (sample_chunks, then sample_blocks; issue 19). A version 1 file
# opens as version 2: its rows in `samples` stay and are read beside the packed ones.
SCHEMA_VERSION = 2

# q packs quality and reason as (quality << 8) | reason. Bit 16 marks a boolean value: the v
# column is REAL, so True comes back as 1.0 and only this bit tells a coil from a number.
_BOOL_FLAG = 1 << 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS samples (
    signal INTEGER NOT NULL,
    t      REAL NOT NULL,      -- source time, wall-clock UTC epoch seconds
    v      REAL,               -- NULL: no value yet (BAD before the first reading)
    q      INTEGER NOT NULL    -- (quality << 8) | reason, | 1 << 16 for a boolean
);
CREATE INDEX IF NOT EXISTS samples_signal_t ON samples (signal, t);
CREATE TABLE IF NOT EXISTS sample_chunks (
    id     INTEGER PRIMARY KEY,
    part   INTEGER NOT NULL,   -- signal id % CHUNK_PARTS: the signals in it
    t0     REAL NOT NULL,      -- the earliest and latest source time in it
    t1     REAL NOT NULL,
    n      INTEGER NOT NULL,   -- samples in it
    data   BLOB NOT NULL       -- a commit's samples of one part, packed (core/sample_pack.py)
);
CREATE TABLE IF NOT EXISTS sample_blocks (
    signal INTEGER NOT NULL,
    t0     REAL NOT NULL,      -- its samples' earliest and latest time, t1 - t0 <= 60 s
    t1     REAL NOT NULL,
    n      INTEGER NOT NULL,
    data   BLOB NOT NULL       -- one signal's samples of some seconds, packed, by time
);
CREATE INDEX IF NOT EXISTS sample_blocks_signal_t0 ON sample_blocks (signal, t0);
CREATE TABLE IF NOT EXISTS waveforms (
    signal INTEGER NOT NULL,
    t      REAL NOT NULL,
    q      INTEGER NOT NULL,
    n      INTEGER NOT NULL,   -- number of points; len(data) / n gives 4 or 8 bytes a point
    data   BLOB NOT NULL       -- little-endian float32 or float64
);
CREATE INDEX IF NOT EXISTS waveforms_signal_t ON waveforms (signal, t);
CREATE TABLE IF NOT EXISTS quality_changes (
    signal INTEGER NOT NULL,
    t      REAL NOT NULL,
    q      INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quality_changes_signal_t ON quality_changes (signal, t);
CREATE TABLE IF NOT EXISTS input_counts (
    link   TEXT NOT NULL,      -- broker (or device) id
    signal TEXT NOT NULL,      -- '' for counts of payloads
    reason TEXT NOT NULL,      -- '' with signal '' for bad payloads in all
    count  INTEGER NOT NULL,
    PRIMARY KEY (link, signal, reason)
);
"""

# The row form of version 1 (still read; the ingest benchmark's raw baseline writes it).
INSERT_SAMPLE = "INSERT INTO samples (signal, t, v, q) VALUES (?, ?, ?, ?)"
INSERT_CHUNK = "INSERT INTO sample_chunks (part, t0, t1, n, data) VALUES (?, ?, ?, ?, ?)"
INSERT_BLOCK = "INSERT INTO sample_blocks (signal, t0, t1, n, data) VALUES (?, ?, ?, ?, ?)"
INSERT_WAVEFORM = "INSERT INTO waveforms (signal, t, q, n, data) VALUES (?, ?, ?, ?, ?)"
INSERT_QUALITY = "INSERT INTO quality_changes (signal, t, q, detail) VALUES (?, ?, ?, ?)"
INSERT_SIGNAL = "INSERT INTO signals (id, name) VALUES (?, ?)"
UPSERT_COUNT = (
    "INSERT OR REPLACE INTO input_counts (link, signal, reason, count) VALUES (?, ?, ?, ?)"
)

# Value classes the fast path stores as they are, with the flag they add to q. Anything
# else (a waveform, a numpy scalar, an int) takes the careful path in _convert_slow.
_SCALAR_FLAG: dict[type, int] = {float: 0, bool: _BOOL_FLAG, type(None): 0}

_UNPACK: dict[int, tuple[Quality, Reason, bool]] = {
    (quality << 8) | reason | flag: (quality, reason, bool(flag))
    for quality in Quality
    for reason in Reason
    for flag in (0, _BOOL_FLAG)
}

_WAVEFORM_DTYPES: dict[str, np.dtype] = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4")}
_RETENTION_CHUNK_ROWS = 5000
# Blocks hold tens to hundreds of samples: fewer a transaction, so a retention step holds the
# file about as long as one of rows did.
_RETENTION_CHUNK_BLOCKS = 200
_RETENTION_EVERY_S = 60.0
# What retention cuts, by the time column each table's (signal, time) index starts with.
_RETENTION_TABLES = (
    ("sample_blocks", "t0"),
    ("samples", "t"),
    ("waveforms", "t"),
    ("quality_changes", "t"),
)
_BUSY_TIMEOUT_S = 1.0
# Samples waiting (not yet committed) above which the engine is behind: pollers stretch
# their polls (DevicePoller) instead of piling up memory. About half a second of the
# largest plants this box polls; a failing disk is not "behind" (see backlogged()).
MAX_BACKLOG_ROWS = 40_000
# Each commit stores its scalar samples as packed chunks, one for each part of the signals
# (signal id % CHUNK_PARTS): a few rows, whatever the plant's size. A part's chunks are
# regrouped into one block a signal once PART_SAMPLES wait in them, and at least every
# COMPACT_EVERY_S, so a query reads a signal's blocks through the (signal, t0) index and only
# the last moments' chunks of its part. A signal's index page is touched once a compaction,
# not once a commit. A compaction's write (the blocks in, the chunks out) grows with the
# samples it moves and holds the file meanwhile: a whole plant's 5 s at 75,000 samples/s took
# 20 to 30 ms, fresh commits waiting; a part's 12,000 samples take a few.
CHUNK_PARTS = 8
PART_SAMPLES = 12_000  # the default; an engine sets its own from its polls (part_samples)
# Slow plants: a part's samples of 15 s in one go (each compaction costs per block and per
# chunk as much as per sample; at 15,000 samples/s every 5 s took 1.1 us a sample, measured).
COMPACT_EVERY_S = 15.0
# A block never spans more than this (samples arriving with old source times make blocks of
# their own): a query for times from `since` reads blocks from t0 >= since - MAX_BLOCK_SPAN_S.
MAX_BLOCK_SPAN_S = 60.0


# Samples in the file, every form: kept as a count by the historian, read once at start.
HISTORY_TOTAL = _ROWS_TOTAL_SQL = (
    "SELECT (SELECT count(*) FROM samples) + (SELECT coalesce(sum(n), 0) FROM sample_blocks)"
    " + (SELECT coalesce(sum(n), 0) FROM sample_chunks) + (SELECT count(*) FROM waveforms)"
)

# The source time of the newest scalar sample committed (chunks hold the last seconds').
HISTORY_NEWEST = (
    "SELECT max(t) FROM (SELECT max(t1) AS t FROM sample_chunks"
    " UNION ALL SELECT max(t1) FROM sample_blocks UNION ALL SELECT max(t) FROM samples)"
)


def apply_pragmas(conn: sqlite3.Connection) -> None:
    """WAL with synchronous=NORMAL, shared with the benchmark's baseline so both run alike.

    In WAL mode, NORMAL syncs only at checkpoints: a commit is in the WAL (the OS page cache)
    when COMMIT returns, so a killed process loses nothing it committed. Only a power cut or an
    OS crash can lose the last transactions, and even then the file stays consistent.
    """
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


def create_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistorianError(
            f"history database has schema version {version}; this floorconsole reads up to "
            f"{SCHEMA_VERSION} (a newer floorconsole wrote it)"
        )
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class CommitHook(Protocol):
    """Rows another table adds to the historian's own transactions (the uplink outbox).

    Called on the writer thread, under its lock: open() once at start; stage() with each
    batch of samples after they were converted; dropped_pending() when the pending bound gave
    up the oldest rows and blocks; write() inside the transaction, before COMMIT; then either
    committed() (the connection back in autocommit) or rolled_back(). `pending` makes a commit
    happen when only the hook has something to write.
    """

    def open(self, conn: sqlite3.Connection, path: Path) -> None: ...

    def stage(self, samples: Sequence[Sample]) -> None: ...

    def dropped_pending(self, rows: int, waveforms: int) -> None: ...

    @property
    def pending(self) -> bool: ...

    def write(self, conn: sqlite3.Connection) -> None: ...

    def committed(self, conn: sqlite3.Connection) -> None: ...

    def rolled_back(self, exc: BaseException) -> None: ...


class HistorianError(Exception):
    """A history database that cannot be used at all (not a write that failed: those are counted)."""


class UnknownSignalError(ValueError):
    """A signal asked for by name that the history has never seen."""


class Record(NamedTuple):
    """One stored scalar sample."""

    t: float
    value: float | bool | None
    quality: Quality
    reason: Reason


class WaveformRecord(NamedTuple):
    """One stored waveform block; value is a read-only float64 array."""

    t: float
    value: np.ndarray
    quality: Quality
    reason: Reason


class QualityChange(NamedTuple):
    t: float
    quality: Quality
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class HistorianStats:
    """What the status bar and the health check show about the historian.

    rows_committed counts samples, waveforms and quality changes committed since start();
    last_commit_ms is how long the last successful transaction took; dropped counts rows given
    up (the pending bound was reached, or a value that cannot be stored), never silently.
    """

    rows_committed: int
    rows_pending: int
    commits: int
    last_commit_ms: float
    errors: int
    last_error: str
    dropped: int
    db_bytes: int


_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    OverflowError,
    TypeError,
    ValueError,
)


def _chunk_rows(rows: list[tuple]) -> list[tuple[int, float, float, int, bytes]]:
    """(part, t0, t1, n, data) of the chunks holding these (signal, t, v, q) rows.

    ValueError for a time that is not a finite number (the rows are then sifted and the
    bad ones counted, as SQLite's refusals were)."""
    n = len(rows)
    if not n:
        return []
    # Flat float64 (signal ids and quality words are exact in it; None becomes NaN, "no
    # value"): a third quicker than filling a structured array row by row.
    a = np.fromiter(chain.from_iterable(rows), np.float64, count=4 * n).reshape(n, 4)
    t = a[:, 1]
    if not np.isfinite(t).all():
        raise ValueError("a sample's time is not a finite number")
    # Grouped by part, then by signal (each signal's samples in their order): one sort.
    s = a[:, 0].astype(np.int64)
    order = np.argsort((s % CHUNK_PARTS) << 32 | s, kind="stable")
    s, t, v, q = s[order], t[order], a[order, 2], a[order, 3].astype("<i4")
    cuts = np.searchsorted(s % CHUNK_PARTS, np.arange(CHUNK_PARTS + 1)).tolist()
    nonempty = [p for p in range(CHUNK_PARTS) if cuts[p + 1] > cuts[p]]
    firsts = [cuts[p] for p in nonempty]
    t0s = np.minimum.reduceat(t, firsts).tolist()
    t1s = np.maximum.reduceat(t, firsts).tolist()
    blobs = pack_parts(s, t, v, q, cuts)
    return [
        (p, t0, t1, cuts[p + 1] - cuts[p], blobs[p])
        for p, t0, t1 in zip(nonempty, t0s, t1s, strict=True)
    ]


def _good_time(t: object) -> bool:
    return type(t) in (float, int) and math.isfinite(t)  # type: ignore[arg-type]


def _good_value(v: object) -> bool:
    return v is None or type(v) in (float, bool)


def _db_bytes(path: Path) -> int:
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


class Historian:
    """Appends samples from the engine thread; one writer thread commits them in batches.

    append() and append_quality() only extend a list under a lock. The writer thread swaps that
    list out every flush_interval_s, turns samples into rows and commits them in one
    transaction. A failed commit (disk full, I/O error, locked) is rolled back, counted and
    retried with the next batch; the rows wait in memory up to max_pending_rows (and
    max_pending_waveforms), beyond which the oldest are dropped and counted.

    A commit_hook (the uplink outbox) writes its rows in the same transactions, so a batch of
    samples and what is made of it elsewhere are committed together or not at all.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_s: float | None = 30 * 86400,
        clock: Clock | None = None,
        flush_interval_s: float = 0.1,
        max_pending_rows: int = 2_000_000,
        max_pending_waveforms: int = 20_000,
        waveform_dtype: Literal["float64", "float32"] = "float64",
        max_db_bytes: int | None = None,
        commit_hook: CommitHook | None = None,
        max_backlog_rows: int = MAX_BACKLOG_ROWS,
        part_samples: int = PART_SAMPLES,
    ) -> None:
        self.path = Path(path)
        self._max_backlog_rows = max_backlog_rows
        self._hook = commit_hook
        self.retention_s = retention_s
        self._clock = clock if clock is not None else SystemClock()
        self._flush_interval_s = flush_interval_s
        self._part_samples = part_samples
        self._max_pending_rows = max_pending_rows
        self._max_pending_waveforms = max_pending_waveforms
        self._wave_dtype = _WAVEFORM_DTYPES[waveform_dtype]
        self._max_db_bytes = max_db_bytes

        # Filled by the engine thread; swapped out whole by the writer.
        self._buf_lock = threading.Lock()
        self._pending: list[Sample] = []
        self._pending_quality: list[Sample] = []
        # Bad-input counters to keep across restarts: the latest totals, written with the
        # next batch (a counter lost to a kill -9 is at most one flush interval behind).
        self._pending_counts: dict[tuple[str, str, str], int] = {}

        # Owned by whoever holds _write_lock: converted rows waiting for a successful commit.
        self._write_lock = threading.Lock()
        self._rows: list[tuple] = []
        self._waves: list[tuple] = []
        self._quals: list[tuple] = []
        self._counts: dict[tuple[str, str, str], int] = {}
        self._ids: dict[str, int] = {}
        self._unsaved_signals: list[tuple[int, str]] = []
        self._next_id = 1

        self._conn: sqlite3.Connection | None = None
        self._reader: HistoryReader | None = None
        self._thread: threading.Thread | None = None
        self._upkeep: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

        self._rows_committed = 0
        self._rows_total = 0
        self._commits = 0
        self._last_commit_ms = 0.0
        self._errors = 0
        self._last_error = ""
        self._dropped = 0
        self._failing = False
        self._warned_drop = False

        self._chunk_samples = [0] * CHUNK_PARTS  # samples waiting in chunks, a part each
        self._chunk_count = [0] * CHUNK_PARTS  # and the chunks
        self._next_compact_mono = float("inf")
        self._bad_chunks: set[int] = set()
        self._compact_lock = threading.Lock()
        self._next_part = 0

        self._retention_queue: deque[tuple[str, int]] = deque()
        self._retention_cutoff = 0.0
        self._next_retention_mono = float("-inf")

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Open (or create) the database and start the writer thread."""
        if self._conn is not None:
            raise RuntimeError("historian already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
        )
        try:
            apply_pragmas(conn)
            create_schema(conn)
            if self._hook is not None:
                self._hook.open(conn, self.path)
            self._ids = dict(conn.execute("SELECT name, id FROM signals"))
            self._next_id = max(self._ids.values(), default=0) + 1
            self._rows_total = conn.execute(_ROWS_TOTAL_SQL).fetchone()[0]
            for part, count, n in conn.execute(
                "SELECT part, count(*), sum(n) FROM sample_chunks GROUP BY part"
            ):
                self._chunk_count[part % CHUNK_PARTS] += count
                self._chunk_samples[part % CHUNK_PARTS] += n
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if self._max_db_bytes is not None:
            self.set_max_db_bytes(self._max_db_bytes)
        self._reader = HistoryReader(self.path)
        self._thread = threading.Thread(target=self._run, name="historian-writer", daemon=True)
        self._thread.start()
        self._upkeep = threading.Thread(
            target=self._run_upkeep, name="historian-upkeep", daemon=True
        )
        self._upkeep.start()

    def close(self) -> None:
        """Stop the writer, commit what is pending, close the files. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in (self._thread, self._upkeep):
            if thread is not None:
                thread.join()
        if self._conn is not None:
            self.flush()
            lost = self.rows_pending
            if lost:
                self._dropped += lost
                log.error("historian closed with %d rows not committed: %s", lost, self._last_error)
            with self._write_lock:
                self._conn.close()
                self._conn = None
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Historian:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_max_db_bytes(self, max_bytes: int | None) -> None:
        """Cap the database file (PRAGMA max_page_count); past it, writes fail as disk full."""
        conn = self._require_conn()
        with self._write_lock:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = 2**32 - 2 if max_bytes is None else max(1, max_bytes // page_size)
            conn.execute(f"PRAGMA max_page_count={int(pages)}")
            self._max_db_bytes = max_bytes

    # ------------------------------------------------------------------ engine side

    def append(self, samples: Sequence[Sample]) -> None:
        """Queue samples for the next commit. Cheap: one list extend under a lock."""
        if self._closed:
            self._dropped += len(samples)
            self._last_error = "append after close: samples not stored"
            return
        with self._buf_lock:
            self._pending.extend(samples)

    @property
    def backlog(self) -> int:
        """Samples and rows waiting for a commit (read without locks: a gauge)."""
        return len(self._pending) + len(self._rows) + len(self._waves)

    def backlogged(self) -> bool:
        """True while more is waiting than the writer can commit in about half a second:
        the sources should slow down (stretch their polls) rather than queue more. Not while
        commits fail (disk full, I/O error): rows then wait up to max_pending_rows and the
        oldest are dropped, counted, and polling goes on so control keeps its inputs."""
        return not self._failing and self.backlog > self._max_backlog_rows

    def set_input_counts(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Totals of bad input, (link, signal, reason) -> count, to write with the next batch."""
        with self._buf_lock:
            self._pending_counts.update(counts)

    def input_counts(self) -> dict[tuple[str, str, str], int]:
        """The bad-input totals kept in the file (from earlier runs, and this one's so far)."""
        conn = self._require_conn()
        with self._write_lock:
            rows = conn.execute("SELECT link, signal, reason, count FROM input_counts").fetchall()
        return {(link, sig, reason): n for link, sig, reason, n in rows}

    def append_quality(self, sample: Sample) -> None:
        """Record that a signal's quality or reason changed (with the sample's detail text)."""
        with self._buf_lock:
            self._pending_quality.append(sample)

    # ------------------------------------------------------------------ writer side

    def flush(self) -> int:
        """Commit everything pending now, on the calling thread. Returns the rows committed."""
        self._require_conn()
        with self._write_lock:
            return self._write_pending()

    def _run(self) -> None:
        """The writer thread: commits, nothing else, so fresh samples never wait behind
        compaction's regrouping or retention's deletes (only behind their short writes)."""
        while not self._stop.wait(self._flush_interval_s):
            try:
                with self._write_lock:
                    self._write_pending()
            except Exception as exc:  # a bug must not end the thread and the history with it
                log.exception("historian writer")
                self._record_error(exc)

    def _run_upkeep(self) -> None:
        """The upkeep thread: compaction, a part at a time, and retention, a slice at a time."""
        every = self._flush_interval_s  # the writer's cadence, as when it did this work
        self._next_compact_mono = self._clock.mono() + COMPACT_EVERY_S / CHUNK_PARTS
        while not self._stop.wait(every):
            try:
                part = self._compact_due()
                if part is not None:
                    self._compact_part(part)
                self._run_retention(budget_s=every / 2)
            except Exception as exc:  # a bug must not end the thread and the history with it
                log.exception("historian upkeep")
                self._record_error(exc)

    def _write_pending(self) -> int:
        with self._buf_lock:
            samples, self._pending = self._pending, []
            quality, self._pending_quality = self._pending_quality, []
            if self._pending_counts:
                self._counts.update(self._pending_counts)
                self._pending_counts = {}
        hook = self._hook
        if samples:
            self._convert(samples)
            if hook is not None:
                hook.stage(samples)
        if quality:
            self._convert_quality(quality)
        self._bound_pending()
        if not (
            self._rows
            or self._waves
            or self._quals
            or self._counts
            or (hook is not None and hook.pending)
        ):
            return 0
        return self._commit()

    def _convert(self, samples: list[Sample]) -> None:
        ids = self._ids
        flag = _SCALAR_FLAG
        try:
            # The hot loop: about a quarter of a microsecond a sample, against a couple of
            # microseconds for SQLite to insert the row.
            rows = [
                (
                    ids[s.signal],
                    s.t_source,
                    (v := s.value),
                    s.quality * 256 + s.reason + flag[v.__class__],
                )
                for s in samples
            ]
        except (KeyError, TypeError, AttributeError):
            self._convert_slow(samples)
            return
        self._rows.extend(rows)

    def _convert_slow(self, samples: list[Sample]) -> None:
        """New signals, waveforms and odd value types, one sample at a time."""
        rows, waves = self._rows, self._waves
        for s in samples:
            try:
                sid = self._signal_id(s.signal)
                q = (int(s.quality) << 8) | int(s.reason)
                v = s.value
                if v is None:
                    rows.append((sid, s.t_source, None, q))
                elif isinstance(v, bool | np.bool_):
                    rows.append((sid, s.t_source, bool(v), q | _BOOL_FLAG))
                elif isinstance(v, np.ndarray):
                    data = np.ascontiguousarray(v, dtype=self._wave_dtype).ravel()
                    waves.append((sid, s.t_source, q, data.size, data.tobytes()))
                else:
                    rows.append((sid, s.t_source, float(v), q))
            except Exception as exc:
                self._dropped += 1
                self._record_error(
                    ValueError(f"{getattr(s, 'signal', s)!r}: cannot store value: {exc}")
                )

    def _convert_quality(self, samples: list[Sample]) -> None:
        for s in samples:
            try:
                q = (int(s.quality) << 8) | int(s.reason)
                self._quals.append((self._signal_id(s.signal), s.t_source, q, s.detail or ""))
            except Exception as exc:
                self._dropped += 1
                self._record_error(ValueError(f"cannot store quality change {s!r}: {exc}"))

    def _signal_id(self, name: str) -> int:
        sid = self._ids.get(name)
        if sid is None:
            if not isinstance(name, str):
                raise TypeError(f"signal name must be a string, not {type(name).__name__}")
            # Ids are handed out here, not by SQLite, so converting never waits on the disk;
            # the signals row goes into the same transaction as the first rows that use it.
            sid = self._next_id
            self._next_id += 1
            self._ids[name] = sid
            self._unsaved_signals.append((sid, name))
        return sid

    def _bound_pending(self) -> None:
        given_up = []
        for rows, bound in (
            (self._rows, self._max_pending_rows),
            (self._waves, self._max_pending_waveforms),
            (self._quals, self._max_pending_rows),
        ):
            excess = len(rows) - bound
            given_up.append(max(0, excess))
            if excess > 0:
                del rows[:excess]
                self._dropped += excess
                if not self._warned_drop:
                    self._warned_drop = True
                    log.warning("historian backlog over %d rows: dropping the oldest", bound)
        if self._hook is not None and (given_up[0] or given_up[1]):
            self._hook.dropped_pending(given_up[0], given_up[1])

    def _commit(self) -> int:
        try:
            return self._try_commit()
        except _DATA_ERRORS as exc:
            # A row SQLite refuses (a NaN or missing time, a value it cannot bind) would fail
            # every retry and block all history behind it: drop such rows, count them, go on.
            self._record_error(exc)
            if self._drop_bad_rows() == 0:
                return 0
            try:
                return self._try_commit()
            except _DATA_ERRORS as again:
                self._record_error(again)
                return 0
        except sqlite3.Error as exc:
            # Disk full, I/O error, locked: the rows stay pending for the next cycle.
            self._record_error(exc)
            return 0

    def _try_commit(self) -> int:
        conn = self._require_conn()
        n = len(self._rows) + len(self._waves) + len(self._quals)
        started = time.perf_counter()
        # Pending rows stay in arrival order (the pending bound drops the oldest after a
        # failure, as the outbox's dropped_pending() expects); the chunk groups a copy.
        chunks = _chunk_rows(self._rows) if self._rows else []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._unsaved_signals:
                conn.executemany(INSERT_SIGNAL, self._unsaved_signals)
            if chunks:
                conn.executemany(INSERT_CHUNK, chunks)
            if self._waves:
                conn.executemany(INSERT_WAVEFORM, self._waves)
            if self._quals:
                conn.executemany(INSERT_QUALITY, self._quals)
            if self._counts:
                conn.executemany(UPSERT_COUNT, [(*k, n) for k, n in self._counts.items()])
            if self._hook is not None:
                self._hook.write(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls some failures (SQLITE_FULL among them) back by itself.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("historian rollback")
            if self._hook is not None:
                self._hook.rolled_back(exc)
            raise
        self._last_commit_ms = (time.perf_counter() - started) * 1000.0
        self._rows_total += len(self._rows) + len(self._waves)
        for part, _, _, size, _ in chunks:
            self._chunk_samples[part] += size
            self._chunk_count[part] += 1
        self._rows_committed += n
        self._commits += 1
        self._unsaved_signals = []
        self._rows, self._waves, self._quals = [], [], []
        self._counts = {}
        self._warned_drop = False
        if self._hook is not None:
            self._hook.committed(conn)
        if self._failing:
            self._failing = False
            log.warning("historian writes recovered: %d rows committed", n)
        return n

    def _drop_bad_rows(self) -> int:
        before = len(self._rows) + len(self._waves) + len(self._quals)
        self._rows = [r for r in self._rows if _good_time(r[1]) and _good_value(r[2])]
        self._waves = [r for r in self._waves if _good_time(r[1])]
        self._quals = [r for r in self._quals if _good_time(r[1])]
        bad = before - len(self._rows) - len(self._waves) - len(self._quals)
        self._dropped += bad
        return bad

    def _record_error(self, exc: BaseException) -> None:
        self._errors += 1
        name = getattr(exc, "sqlite_errorname", None)
        self._last_error = f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"
        if not self._failing:
            # Logged once; the count and last_error carry the rest until it recovers.
            self._failing = True
            log.error("historian write failed (kept pending, retrying): %s", self._last_error)

    # ------------------------------------------------------------------ compaction

    def _compact_due(self) -> int | None:
        """The next part (in turn) with enough waiting, or with any waiting once the time
        has come; None when no compaction is due."""
        timely = self._clock.mono() >= self._next_compact_mono
        for _ in range(CHUNK_PARTS):
            part = self._next_part
            self._next_part = (part + 1) % CHUNK_PARTS
            if self._chunk_samples[part] >= self._part_samples:
                return part
            if timely and self._chunk_count[part]:
                return part
        return None

    def compact(self) -> int:
        """Regroup every committed chunk into blocks now. Returns the samples moved."""
        self._require_conn()
        total = 0
        for part in range(CHUNK_PARTS):
            while moved := self._compact_part(part):
                total += moved
        return total

    def _compact_part(self, part: int) -> int:
        """Regroup one part's oldest chunks (about part_samples samples)
        into one block a signal, in one transaction: a kill leaves either the chunks or the
        blocks. Returns the samples moved."""
        conn = self._require_conn()
        with self._compact_lock:
            self._next_compact_mono = self._clock.mono() + COMPACT_EVERY_S / CHUNK_PARTS
            with self._write_lock:
                ids, parts = self._chunks_to_compact(conn, part)
                if not ids:  # nothing, or only chunks that do not read: not due for them
                    self._chunk_count[part] = self._chunk_samples[part] = 0
                    return 0
            # The regrouping outside the write lock: commits go on meanwhile, and only a
            # compaction deletes chunks.
            blocks = regroup(parts, MAX_BLOCK_SPAN_S)
            total = sum(n for _, _, _, n, _ in blocks)
            with self._write_lock:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(INSERT_BLOCK, blocks)
                    conn.executemany("DELETE FROM sample_chunks WHERE id = ?", ids)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._record_error(exc)
                    return 0
                self._chunk_samples[part] = max(0, self._chunk_samples[part] - total)
                self._chunk_count[part] = max(0, self._chunk_count[part] - len(ids))
            return total

    def _chunks_to_compact(
        self, conn: sqlite3.Connection, part: int
    ) -> tuple[list[tuple[int]], list[Packed]]:
        """A part's oldest chunks, up to part_samples samples (at least one chunk), as (ids,
        their arrays)."""
        ids: list[tuple[int]] = []
        parts: list[Packed] = []
        total = 0
        cur = conn.execute("SELECT id, data FROM sample_chunks WHERE part = ? ORDER BY id", (part,))
        try:
            for cid, data in cur:
                if cid in self._bad_chunks:
                    continue
                try:
                    chunk = unpack(data)
                except PackError as exc:
                    # Left in the file for whoever looks; readers skip it too. Counted once,
                    # not as a failing writer (commits go on).
                    self._bad_chunks.add(cid)
                    self._errors += 1
                    self._last_error = f"history chunk {cid} does not read: {exc}"
                    log.error("%s: %s; left in the file", self.path, self._last_error)
                    continue
                ids.append((cid,))
                parts.append(chunk)
                total += len(chunk.t)
                if total >= self._part_samples:
                    break
        finally:
            cur.close()
        return ids, parts

    # ------------------------------------------------------------------ retention

    def prune(self) -> int:
        """Delete everything older than retention_s now, in small transactions. Returns rows."""
        self._require_conn()
        if self.retention_s is None:
            return 0
        cutoff, queue = self._retention_plan()  # compacts first where chunks are that old
        deleted = 0
        while queue:
            deleted += self._retention_step(queue, cutoff)
        return deleted

    def _retention_plan(self) -> tuple[float, deque[tuple[str, int]]]:
        """The cutoff, and the (table, signal) pairs holding anything older: found through
        each table's (signal, time) index, a seek a signal. A box younger than its retention
        then does no work at all (it ran a DELETE for every table and signal, 6,000 a minute
        at 1,500 signals, each taking the file's write lock)."""
        assert self.retention_s is not None
        cutoff = self._clock.wall() - self.retention_s
        conn = self._require_conn()
        with self._write_lock:
            stale_chunks = conn.execute(
                "SELECT 1 FROM sample_chunks WHERE t0 < ? LIMIT 1", (cutoff,)
            ).fetchone()
        if stale_chunks:
            self.compact()  # a part at a time: blocks are what retention cuts
        queue: deque[tuple[str, int]] = deque()
        for table, column in _RETENTION_TABLES:
            with self._write_lock:  # the connection is the writer's: one statement at a time
                rows = conn.execute(
                    f"SELECT id FROM signals WHERE "
                    f"(SELECT min({column}) FROM {table} WHERE signal = signals.id) < ? "
                    "ORDER BY id",
                    (cutoff,),
                ).fetchall()
            queue.extend((table, sid) for (sid,) in rows)
        return cutoff, queue

    def _run_retention(self, budget_s: float) -> None:
        """On the upkeep thread: a slice of retention work per cycle, so commits keep pace."""
        if self.retention_s is None:
            return
        if not self._retention_queue and self._clock.mono() >= self._next_retention_mono:
            self._retention_cutoff, self._retention_queue = self._retention_plan()
            self._next_retention_mono = self._clock.mono() + _RETENTION_EVERY_S
        deadline = time.perf_counter() + budget_s
        while self._retention_queue and time.perf_counter() < deadline:
            self._retention_step(self._retention_queue, self._retention_cutoff)

    def _retention_step(self, queue: deque[tuple[str, int]], cutoff: float) -> int:
        table, sid = queue[0]
        conn = self._require_conn()
        with self._write_lock:
            try:
                # Through the (signal, t) index, one short transaction per chunk.
                if table == "sample_blocks":
                    # Whole blocks, each wholly older than the cutoff (a block straddling
                    # it keeps its older samples, at most MAX_BLOCK_SPAN_S of them).
                    sizes = conn.execute(
                        "DELETE FROM sample_blocks WHERE rowid IN (SELECT rowid FROM "
                        "sample_blocks WHERE signal = ? AND t0 < ? AND t1 < ? LIMIT ?) "
                        "RETURNING n",
                        (sid, cutoff, cutoff, _RETENTION_CHUNK_BLOCKS),
                    ).fetchall()
                    deleted = len(sizes)
                    samples = sum(n for (n,) in sizes)
                    self._rows_total -= samples
                else:
                    samples = deleted = conn.execute(
                        f"DELETE FROM {table} WHERE rowid IN "
                        f"(SELECT rowid FROM {table} WHERE signal = ? AND t < ? LIMIT ?)",
                        (sid, cutoff, _RETENTION_CHUNK_ROWS),
                    ).rowcount
                    if table != "quality_changes":
                        self._rows_total -= deleted
            except sqlite3.Error as exc:
                self._record_error(exc)
                queue.clear()
                return 0
        limit = _RETENTION_CHUNK_BLOCKS if table == "sample_blocks" else _RETENTION_CHUNK_ROWS
        if deleted < limit:
            queue.popleft()
        return samples

    # ------------------------------------------------------------------ figures and queries

    @property
    def rows_pending(self) -> int:
        return (
            len(self._pending)
            + len(self._pending_quality)
            + len(self._rows)
            + len(self._waves)
            + len(self._quals)
        )

    @property
    def stats(self) -> HistorianStats:
        return HistorianStats(
            rows_committed=self._rows_committed,
            rows_pending=self.rows_pending,
            commits=self._commits,
            last_commit_ms=self._last_commit_ms,
            errors=self._errors,
            last_error=self._last_error,
            dropped=self._dropped,
            db_bytes=_db_bytes(self.path),
        )

    def rows_total(self) -> int:
        """Samples and waveform blocks in the database (kept as a count, no table scan)."""
        return self._rows_total

    def query(
        self, signal: str, since: float | None, until: float | None, limit: int | None = None
    ) -> list[Record]:
        """Committed scalar samples with since <= t < until, oldest first."""
        return self._require_reader().query(signal, since, until, limit)

    def query_waveforms(
        self, signal: str, since: float | None, until: float | None, limit: int | None = None
    ) -> list[WaveformRecord]:
        return self._require_reader().query_waveforms(signal, since, until, limit)

    def quality_changes(
        self, signal: str, since: float | None, until: float | None
    ) -> list[QualityChange]:
        return self._require_reader().quality_changes(signal, since, until)

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("historian not started: call start() first")
        return self._conn

    def _require_reader(self) -> HistoryReader:
        if self._reader is None:
            raise RuntimeError("historian not started: call start() first")
        return self._reader


def _range_sql(since: float | None, until: float | None) -> tuple[str, list[float]]:
    sql, args = "", []
    if since is not None:
        sql += " AND t >= ?"
        args.append(since)
    if until is not None:
        sql += " AND t < ?"
        args.append(until)
    return sql, args


_Cols = tuple[np.ndarray, np.ndarray, np.ndarray]  # a signal's (t, v, q)
_EMPTY = np.empty(0, "<f8")
_EMPTY_Q = np.empty(0, "<i4")


def _joined(have: _Cols, more: _Cols, lo: float, hi: float) -> _Cols:
    """have + the samples of more with lo <= t < hi."""
    t, v, q = more
    keep = (t >= lo) & (t < hi)
    if not keep.all():
        t, v, q = t[keep], v[keep], q[keep]
    if not len(t):
        return have
    return (
        np.concatenate((have[0], t)),
        np.concatenate((have[1], v)),
        np.concatenate((have[2], q)),
    )


def _split(arrays: _Cols, before: float) -> tuple[_Cols, _Cols]:
    """(the samples earlier than `before`, the rest), each in the order they were."""
    t, v, q = arrays
    early = t < before
    late = ~early
    return (t[early], v[early], q[early]), (t[late], v[late], q[late])


def _by_time(arrays: _Cols) -> _Cols:
    t, v, q = arrays
    order = np.argsort(t, kind="stable")
    return t[order], v[order], q[order]


def _record(t: float, v: float | None, q: int) -> Record:
    quality, reason, is_bool = _UNPACK[q]
    return Record(t, bool(v) if is_bool and v is not None else v, quality, reason)


def _waveform_record(t: float, q: int, n: int, data: bytes) -> WaveformRecord:
    quality, reason, _ = _UNPACK[q]
    width = len(data) // n if n else 8
    arr = np.frombuffer(data, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
    arr.setflags(write=False)
    return WaveformRecord(t, arr, quality, reason)


class HistoryReader:
    """Read-only access to a history file; works beside a running engine (WAL readers don't block)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise HistorianError(f"no history database at {self.path}")
        self._conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
        )
        self._lock = threading.Lock()
        # A version 1 file (an older floorconsole's, not opened by this one since) has rows only.
        self._packed = (
            self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample_blocks'"
            ).fetchone()
            is not None
        )
        self._warned_unreadable = False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def signals(self) -> list[str]:
        """Every signal the history has seen, by name."""
        with self._lock:
            return [
                name for (name,) in self._conn.execute("SELECT name FROM signals ORDER BY name")
            ]

    def rows_total(self) -> int:
        with self._lock:
            if not self._packed:
                return self._conn.execute(
                    "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM waveforms)"
                ).fetchone()[0]
            return self._conn.execute(_ROWS_TOTAL_SQL).fetchone()[0]

    def _signal_id(self, signal: str) -> int | None:
        row = self._conn.execute("SELECT id FROM signals WHERE name = ?", (signal,)).fetchone()
        return None if row is None else row[0]

    def _select(
        self, sql: str, signal: str, since: float | None, until: float | None, limit: int | None
    ) -> list[tuple]:
        sid = self._signal_id(signal)
        if sid is None:
            return []
        where, args = _range_sql(since, until)
        sql = f"{sql} WHERE signal = ?{where} ORDER BY t"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._conn.execute(sql, [sid, *args]).fetchall()

    def query(
        self, signal: str, since: float | None, until: float | None, limit: int | None = None
    ) -> list[Record]:
        """Scalar samples with since <= t < until (None: open), oldest first."""
        with self._snapshot():
            sid = self._signal_id(signal)
            if sid is None:
                return []
            return list(islice(self._scalars(sid, since, until), limit))

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """The lock, and one read transaction for everything read under it: a compaction
        committing between the chunks' read and the blocks' would otherwise hand the same
        samples back twice (from the chunks, then from the blocks made of them)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")

    def query_waveforms(
        self, signal: str, since: float | None, until: float | None, limit: int | None = None
    ) -> list[WaveformRecord]:
        with self._lock:
            rows = self._select("SELECT t, q, n, data FROM waveforms", signal, since, until, limit)
        return [_waveform_record(*row) for row in rows]

    def quality_changes(
        self, signal: str, since: float | None, until: float | None
    ) -> list[QualityChange]:
        with self._lock:
            rows = self._select(
                "SELECT t, q, detail FROM quality_changes", signal, since, until, None
            )
        return [QualityChange(t, *_UNPACK[q][:2], detail) for t, q, detail in rows]

    # ------------------------------------------------------------------ export

    def _stream(
        self, signal: str, since: float | None, until: float | None
    ) -> Iterator[tuple[float, str, Value, Quality, Reason]]:
        """One signal's scalars and waveforms merged by time, read lazily from the file."""
        sid = self._signal_id(signal)
        if sid is None:
            raise UnknownSignalError(self._unknown_message(signal))
        where, args = _range_sql(since, until)
        scalars = ((r.t, signal, *r[1:]) for r in self._scalars(sid, since, until))
        waves = (
            (t, signal, *_waveform_record(t, q, n, data)[1:])
            for t, q, n, data in self._conn.execute(
                f"SELECT t, q, n, data FROM waveforms WHERE signal = ?{where} ORDER BY t",
                [sid, *args],
            )
        )
        return heapq.merge(scalars, waves, key=lambda row: row[0])

    def _scalars(self, sid: int, since: float | None, until: float | None) -> Iterator[Record]:
        """One signal's scalar samples with since <= t < until, by time, read lazily: the
        rows of a version 1 file merged with the packed blocks and chunks."""
        where, args = _range_sql(since, until)
        rows = (
            _record(t, v, q)
            for t, v, q in self._conn.execute(
                f"SELECT t, v, q FROM samples WHERE signal = ?{where} ORDER BY t", [sid, *args]
            )
        )
        if not self._packed:
            return rows
        packed = (
            _record(t, None if v != v else v, q)  # NaN: no value
            for part in self._packed_parts(sid, since, until)
            for t, v, q in zip(part[0].tolist(), part[1].tolist(), part[2].tolist(), strict=True)
        )
        return heapq.merge(rows, packed, key=itemgetter(0))

    def _packed_parts(
        self, sid: int, since: float | None, until: float | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(t, v, q) arrays in time order, one after another: the last seconds' chunks are
        read whole, then the signal's blocks by t0; everything earlier than the next block's
        t0 is final (no later block holds an earlier time), so it goes out before that block
        is read and memory holds about one block's overlap."""
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        # Chunks are newer than every block (compaction takes the oldest first): on equal
        # times they go after, so samples keep the order they were committed in.
        chunks = _EMPTY, _EMPTY, _EMPTY_Q
        for (data,) in self._conn.execute(
            "SELECT data FROM sample_chunks WHERE part = ? AND t1 >= ? AND t0 < ? ORDER BY id",
            (sid % CHUNK_PARTS, lo, hi),
        ).fetchall():
            part = self._unpack(data)
            if part is not None:
                chunks = _joined(chunks, part.of(sid), lo, hi)
        held = _EMPTY, _EMPTY, _EMPTY_Q
        for t0, data in self._conn.execute(
            "SELECT t0, data FROM sample_blocks WHERE signal = ? AND t0 >= ? AND t0 < ? "
            "ORDER BY t0",
            # A second of margin: t0 + span and t - span round differently in floats.
            (sid, lo - MAX_BLOCK_SPAN_S - 1.0, hi),
        ):
            part = self._unpack(data)
            if part is None:
                continue
            (final, held), (final_c, chunks) = _split(held, t0), _split(chunks, t0)
            if len(final[0]) or len(final_c[0]):
                yield _by_time(_joined(final, final_c, lo, hi))
            held = _joined(held, part.of(sid), lo, hi)
        yield _by_time(_joined(held, chunks, lo, hi))

    def _unpack(self, data: bytes) -> Packed | None:
        try:
            return unpack(data)
        except PackError as exc:
            if not self._warned_unreadable:
                self._warned_unreadable = True
                log.warning("%s: skipping packed samples that do not read: %s", self.path, exc)
            return None

    def _unknown_message(self, signal: str) -> str:
        known = [name for (name,) in self._conn.execute("SELECT name FROM signals")]
        close = difflib.get_close_matches(signal, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown signal {signal!r} in {self.path}{hint}"

    def export(
        self,
        signals: Iterable[str],
        since: float | None,
        until: float | None,
        fmt: Literal["csv", "json"],
        out: TextIO,
        timezone: str = "UTC",
    ) -> int:
        """Write the signals' samples, merged by time, as CSV or JSON. Returns rows written.

        CSV columns: time (ISO 8601 in `timezone` with its offset, ms; Z for UTC), signal,
        value, quality; a waveform's value is a JSON
        array. JSON: a list of objects with the same keys. Unknown signals raise
        UnknownSignalError before anything is written.
        """
        if fmt not in ("csv", "json"):
            raise ValueError(f"format {fmt!r} is not one of csv, json")
        with self._snapshot():
            streams = [self._stream(s, since, until) for s in dict.fromkeys(signals)]
            merged = heapq.merge(*streams, key=lambda row: row[0])
            if fmt == "csv":
                return _write_csv(merged, out, timezone)
            return _write_json(merged, out, timezone)

    def export_quality(
        self,
        signals: Iterable[str],
        since: float | None,
        until: float | None,
        fmt: Literal["csv", "json"],
        out: TextIO,
        timezone: str = "UTC",
    ) -> int:
        """Write the signals' quality changes, merged by time (times in `timezone`, with
        their offset): when each turned GOOD,
        UNCERTAIN or BAD and why (the reason and the detail the source gave, e.g.
        "not_json: Expecting value: line 1 column 1"). CSV columns: time, signal, quality,
        detail; JSON: objects with the same keys. Returns rows written."""
        if fmt not in ("csv", "json"):
            raise ValueError(f"format {fmt!r} is not one of csv, json")
        with self._lock:
            streams = []
            for signal in dict.fromkeys(signals):
                sid = self._signal_id(signal)
                if sid is None:
                    raise UnknownSignalError(self._unknown_message(signal))
                where, args = _range_sql(since, until)
                streams.append(
                    (t, signal, *_UNPACK[q][:2], detail)
                    for t, q, detail in self._conn.execute(
                        "SELECT t, q, detail FROM quality_changes "
                        f"WHERE signal = ?{where} ORDER BY t",
                        [sid, *args],
                    )
                )
            rows = heapq.merge(*streams, key=lambda row: row[0])
            count = 0
            if fmt == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(("time", "signal", "quality", "detail"))
                for t, signal, quality, reason, detail in rows:
                    writer.writerow(
                        (iso_ms(t, timezone), signal, quality_text(quality, reason), detail)
                    )
                    count += 1
                return count
            out.write("[")
            for t, signal, quality, reason, detail in rows:
                obj = {
                    "time": iso_ms(t, timezone),
                    "signal": signal,
                    "quality": quality_text(quality, reason),
                    "detail": detail,
                }
                out.write(",\n" if count else "\n")
                out.write(json.dumps(obj))
                count += 1
            out.write("\n]\n" if count else "]\n")
            return count


def _write_csv(
    rows: Iterable[tuple[float, str, Value, Quality, Reason]], out: TextIO, zone: str = "UTC"
) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("time", "signal", "value", "quality"))
    count = 0
    for t, signal, value, quality, reason in rows:
        writer.writerow((iso_ms(t, zone), signal, csv_value(value), quality_text(quality, reason)))
        count += 1
    return count


def _write_json(
    rows: Iterable[tuple[float, str, Value, Quality, Reason]], out: TextIO, zone: str = "UTC"
) -> int:
    count = 0
    out.write("[")
    for t, signal, value, quality, reason in rows:
        obj = {
            "time": iso_ms(t, zone),
            "signal": signal,
            "value": readable_value(value),
            "quality": quality_text(quality, reason),
        }
        out.write(",\n" if count else "\n")
        out.write(json.dumps(obj, allow_nan=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
