"""The alarm journal: every alarm transition and every rule action result, append-only, in SQLite.

Its own file, `alarms.db` in the data directory, not the historian's `history.db`:
- the historian deletes old rows for retention, in large transactions from its own writer
  thread; the journal is never trimmed (tens of rows an hour, not thousands a second), and
  triggers make it append-only, which must not constrain the historian's schema;
- each commit is fsync'd (the WAL, right after the commit, by the writer thread), so a power
  cut does not lose the record of an alarm an operator acknowledged; the historian runs
  NORMAL for throughput. A record someone waits on (a rule's write goes out after its
  record, see flush()) is released once in the WAL (it survives the process), before its
  fsync, so control does not wait on the disk;
- a history file that is damaged or full does not take the alarm record with it, and the
  journal can be copied alone for an incident review.

Writes are handed to one writer thread through a queue, so the engine's loop never waits for
the disk; `flush()` waits until everything handed over is committed. The one exception is a
rule's change that a write waits on (`record_rule_now`): when nothing is queued and the file is
free, the engine's loop commits it itself on a connection of its own (a tenth of a
millisecond, into the WAL, no fsync: it survives the process dying), and the writer thread
fsyncs the WAL right after, as for a flushed record. A rule's write then waits for no other
thread (issue 19, "control first").
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from floorconsole.adapters.sqlite_file import Schema, open_store
from floorconsole.core.alarms import AlarmHistory, AlarmState, JournalEntry
from floorconsole.core.rules import ActionRecord, RuleEvent

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
FILE_NAME = "alarms.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_journal (
    seq        INTEGER PRIMARY KEY,
    t          REAL NOT NULL,     -- wall-clock UTC epoch seconds
    alarm      TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    by         TEXT NOT NULL,
    text       TEXT NOT NULL,
    priority   TEXT NOT NULL,
    shelved_until REAL,           -- a shelve's expiry (wall clock), on SHELVED rows
    reason     TEXT NOT NULL DEFAULT ''  -- a shelve's reason
);
CREATE INDEX IF NOT EXISTS alarm_journal_t ON alarm_journal (t);
CREATE INDEX IF NOT EXISTS alarm_journal_alarm_t ON alarm_journal (alarm, t);
CREATE TABLE IF NOT EXISTS action_results (
    seq         INTEGER PRIMARY KEY,
    t           REAL NOT NULL,
    rule        TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    transition  TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    text        TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    attempts    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS action_results_rule_t ON action_results (rule, t);
CREATE TABLE IF NOT EXISTS rule_events (
    seq    INTEGER PRIMARY KEY,
    t      REAL NOT NULL,
    rule   TEXT NOT NULL,
    event  TEXT NOT NULL,     -- activate | release | reset
    active INTEGER NOT NULL,  -- the rule's output after the event
    by     TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rule_events_rule ON rule_events (rule, seq);
CREATE TABLE IF NOT EXISTS engine_events (
    seq   INTEGER PRIMARY KEY,
    t     REAL NOT NULL,
    event TEXT NOT NULL,      -- "engine started"
    text  TEXT NOT NULL
);
"""
# Version 1 files gain the shelve's expiry and reason (NULL / '' on their old rows).
_MIGRATE_V2 = (
    "ALTER TABLE alarm_journal ADD COLUMN shelved_until REAL",
    "ALTER TABLE alarm_journal ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
)
_TABLES = ("alarm_journal", "action_results", "rule_events", "engine_events")

_APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
"""

_SCHEMA = Schema(
    "alarm journal",
    SCHEMA_VERSION,
    SCHEMA + "".join(_APPEND_ONLY.format(table=t) for t in _TABLES),
    migrations={1: _MIGRATE_V2},
)

_INSERT_ENTRY = (
    "INSERT INTO alarm_journal (t, alarm, from_state, to_state, by, text, priority, "
    "shelved_until, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RULE = (
    "INSERT INTO rule_events (t, rule, event, active, by, text) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = "INSERT INTO engine_events (t, event, text) VALUES (?, ?, ?)"
_ENTRY_COLUMNS = "t, alarm, from_state, to_state, by, text, priority, shelved_until, reason"
_INSERT_ACTION = (
    "INSERT INTO action_results (t, rule, action, target, transition, ok, text, "
    "duration_ms, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class JournalError(Exception):
    """A journal file that cannot be used at all."""


class _Notify(threading.Event):
    """A flush waiter that calls back instead of (only) waking a waiting thread."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self._fn = fn

    def set(self) -> None:
        super().set()
        try:
            self._fn()
        except Exception:  # a waiter's bug must not end the writer thread
            log.exception("alarm journal: flush callback failed")


class _SyncWal:
    """Queued after a commit made on the loop (record_rule_now): the writer fsyncs the WAL."""


_SYNC_WAL = _SyncWal()


class AlarmJournal:
    """Append alarm transitions and action results; query them by time, alarm, state, rule."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # NORMAL, and the writer fsyncs the WAL after each commit (see _run).
        conn = open_store(
            self.path, _SCHEMA, error=JournalError, timeout_s=5.0, synchronous="NORMAL"
        )
        self._writer_conn = conn
        # The loop's own connection for record_rule_now: never waits for the file (busy
        # timeout 0), never fsyncs (NORMAL) and never checkpoints (the writer's commits do).
        now_conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        now_conn.execute("PRAGMA busy_timeout=0")
        now_conn.execute("PRAGMA synchronous=NORMAL")
        now_conn.execute("PRAGMA wal_autocheckpoint=0")
        self._now_conn: sqlite3.Connection | None = now_conn
        self._now_lock = threading.Lock()
        # Records handed to the writer and not yet written (a commit on the loop must not
        # overtake one: rule_states() takes a rule's last event by seq).
        self._count_lock = threading.Lock()
        self._queued = 0
        self._done = 0
        self._reader_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[
            tuple[str, tuple[object, ...]] | threading.Event | _SyncWal | None
        ]
        self._queue = queue.SimpleQueue()
        self.written = 0
        self.errors = 0
        self.last_error = ""
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="alarm-journal", daemon=True)
        self._thread.start()

    # -- writing (any thread) --------------------------------------------------------------

    def append(self, entry: JournalEntry) -> None:
        """Queue one alarm transition; returns at once."""
        self._put(
            (
                _INSERT_ENTRY,
                (
                    entry.t_wall,
                    entry.alarm_id,
                    entry.from_state.value,
                    entry.to_state.value,
                    entry.by,
                    entry.text,
                    entry.priority,
                    entry.shelved_until,
                    entry.reason,
                ),
            )
        )

    def record_rule(self, event: RuleEvent) -> None:
        """Queue one change of a rule's output (activate, release, reset); returns at once.
        Control flushes before a write goes out, so the record precedes the output."""
        self._put(
            (
                _INSERT_RULE,
                (event.t_wall, event.rule, event.event, int(event.active), event.by, event.text),
            )
        )

    def record_event(self, t_wall: float, event: str, text: str) -> None:
        """Queue one event of the engine itself ("engine started")."""
        self._put((_INSERT_EVENT, (t_wall, event, text)))

    def record_action(self, record: ActionRecord) -> None:
        """Queue one action result; returns at once."""
        self._put(
            (
                _INSERT_ACTION,
                (
                    record.t_wall,
                    record.rule,
                    record.action,
                    record.target,
                    record.transition,
                    int(record.ok),
                    record.text,
                    record.duration_ms,
                    record.attempts,
                ),
            )
        )

    def record_rule_now(self, event: RuleEvent) -> bool:
        """Commit one change of a rule's output now, on the calling thread (the engine's loop),
        when that needs no waiting: nothing handed to the writer is still unwritten, and no
        other connection holds the file. True once committed (in the WAL; the writer thread
        fsyncs it right after); False at once otherwise, nothing written: the caller then
        uses record_rule() and flush_later()."""
        if self._closed or not self._now_lock.acquire(blocking=False):
            return False
        try:
            conn = self._now_conn
            with self._count_lock:
                if conn is None or self._queued != self._done:
                    return False
            params = (
                event.t_wall,
                event.rule,
                event.event,
                int(event.active),
                event.by,
                event.text,
            )
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return False  # busy: the writer is committing
            try:
                conn.execute(_INSERT_RULE, params)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                log.warning(
                    "alarm journal %s: rule event not committed on the loop: %s", self.path, e
                )
                return False
            self.written += 1
            self._queue.put(_SYNC_WAL)
            return True
        finally:
            self._now_lock.release()

    def _put(self, item: tuple[str, tuple[object, ...]]) -> None:
        if self._closed:
            self.errors += 1
            self.last_error = "journal closed; record dropped"
            return
        with self._count_lock:
            self._queued += 1
        self._queue.put(item)

    def flush_later(self, done: Callable[[], None]) -> None:
        """Call done() (on the writer thread) once everything queued so far is committed,
        as flush() would return: for an event loop that must not block a thread on it."""
        self._queue.put(_Notify(done))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed (in the WAL: it survives the
        process; the fsync follows at once); False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._writer_conn.close()
        with self._now_lock:
            if self._now_conn is not None:
                self._now_conn.close()
                self._now_conn = None
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[tuple[str, tuple[object, ...]]] = []
            waiters: list[threading.Event] = []
            stop = sync = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _SyncWal):
                    sync = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            # Committed into the WAL (synchronous=NORMAL: it survives the process dying), the
            # waiters released (a rule's write goes out after its record), then the WAL put
            # on disk at once, outside the file's write lock: an fsync on a busy disk can
            # take 100 ms and more, and neither a waiting write nor a commit on the loop
            # (record_rule_now) waits for it. A power cut has milliseconds, not a second, to
            # lose a record in.
            if batch:
                self._write(batch)
            for w in waiters:
                w.set()
            if batch or sync:  # sync: a record committed on the loop (record_rule_now)
                self._sync_wal()
            if stop:
                return

    def _sync_wal(self) -> None:
        """The WAL on disk (what a synchronous=FULL commit would have done before returning)."""
        try:
            fd = os.open(self.path.with_name(self.path.name + "-wal"), os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed and truncated: nothing left to sync
        except OSError as e:
            log.error("alarm journal %s: WAL not synced: %s", self.path, e)
            return
        try:
            os.fsync(fd)
        except OSError as e:
            log.error("alarm journal %s: WAL not synced: %s", self.path, e)
        finally:
            os.close(fd)

    def _write(self, batch: list[tuple[str, tuple[object, ...]]]) -> None:
        conn = self._writer_conn
        try:
            conn.execute("BEGIN")
            for sql, params in batch:
                conn.execute(sql, params)
            conn.execute("COMMIT")
            self.written += len(batch)
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.errors += len(batch)
            if str(e) != self.last_error:
                log.error(
                    "alarm journal %s: %d record(s) not written: %s", self.path, len(batch), e
                )
            self.last_error = str(e)
        finally:
            with self._count_lock:  # before any waiter is released: nothing left unwritten
                self._done += len(batch)

    # -- reading (any thread) --------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            return self._reader.execute(sql, params).fetchall()

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        alarm_id: str | None = None,
        state: str | AlarmState | None = None,
        limit: int = 1000,
    ) -> list[JournalEntry]:
        """Transitions, oldest first: since <= t < until, of one alarm, into one state."""
        where, params = _time_filter(since, until)
        if alarm_id is not None:
            where.append("alarm = ?")
            params.append(alarm_id)
        if state is not None:
            where.append("to_state = ?")
            params.append(AlarmState(state).value)
        sql = f"SELECT {_ENTRY_COLUMNS} FROM alarm_journal{_where(where)} ORDER BY seq DESC LIMIT ?"
        rows = self._read(sql, [*params, limit])
        return [_entry(r) for r in reversed(rows)]

    # -- restart -----------------------------------------------------------------------------

    def alarm_histories(self) -> list[AlarmHistory]:
        """Per alarm, what a start needs to restore it: the latest transition, the latest
        annunciation (into UNACK), the latest acknowledgement, the latest shelve, and the
        number of annunciations. One pass per question, each on an index."""

        def latest(where: str = "") -> dict[str, JournalEntry]:
            sql = (
                f"SELECT {_ENTRY_COLUMNS} FROM alarm_journal WHERE seq IN "
                f"(SELECT max(seq) FROM alarm_journal {where} GROUP BY alarm)"
            )
            return {e.alarm_id: e for e in map(_entry, self._read(sql, []))}

        last = latest()
        annunciated = latest("WHERE to_state = 'UNACK'")
        acked = latest(
            "WHERE to_state = 'ACKED' OR (from_state = 'RTN_UNACK' AND to_state = 'NORMAL')"
        )
        shelved = latest("WHERE to_state = 'SHELVED'")
        counts = dict(
            self._read(
                "SELECT alarm, count(*) FROM alarm_journal WHERE to_state = 'UNACK' GROUP BY alarm",
                [],
            )
        )
        return [
            AlarmHistory(
                last=e,
                annunciated=annunciated.get(aid),
                acknowledged=acked.get(aid),
                shelved=shelved.get(aid),
                activations=int(counts.get(aid, 0)),
            )
            for aid, e in last.items()
        ]

    def rule_states(self) -> dict[str, RuleEvent]:
        """The latest output change of every rule."""
        rows = self._read(
            "SELECT t, rule, event, active, by, text FROM rule_events WHERE seq IN "
            "(SELECT max(seq) FROM rule_events GROUP BY rule)",
            [],
        )
        return {r: RuleEvent(t, r, ev, bool(a), b, x) for t, r, ev, a, b, x in rows}

    def last_actions(self) -> dict[tuple[str, str, str], ActionRecord]:
        """The latest result of every (rule, action kind, target)."""
        rows = self._read(
            "SELECT t, rule, action, target, transition, ok, text, duration_ms, attempts "
            "FROM action_results WHERE seq IN (SELECT max(seq) FROM action_results "
            "GROUP BY rule, action, target)",
            [],
        )
        return {
            (r, a, tg): ActionRecord(t, r, a, tg, tr, bool(ok), x, d, n)
            for t, r, a, tg, tr, ok, x, d, n in rows
        }

    def events(self, limit: int = 100) -> list[tuple[float, str, str]]:
        """The engine's own events (t, event, text), oldest first."""
        rows = self._read(
            "SELECT t, event, text FROM engine_events ORDER BY seq DESC LIMIT ?", [limit]
        )
        return [(t, ev, x) for t, ev, x in reversed(rows)]

    def kpi_inputs(
        self, since: float, until: float, *, limit: int = 500_000
    ) -> tuple[list[JournalEntry], dict[str, tuple[AlarmState, float | None, str]]]:
        """What core.alarm_kpis needs for since <= t < until: the transitions in the window
        (oldest first, at most `limit`: a flood of floods is still bounded), and for each
        alarm its state at `since` with the time it was last activated and its priority."""
        entries = self.query(since=since, until=until, limit=limit)
        last = self._read(
            "SELECT j.alarm, j.to_state, j.priority, "
            "(SELECT MAX(a.t) FROM alarm_journal a WHERE a.alarm = j.alarm AND a.t < ? "
            " AND a.to_state = 'UNACK' AND a.from_state NOT IN ('UNACK', 'ACKED')) "
            "FROM alarm_journal j WHERE j.seq IN "
            "(SELECT MAX(seq) FROM alarm_journal WHERE t < ? GROUP BY alarm)",
            [since, since],
        )
        before: dict[str, tuple[AlarmState, float | None, str]] = {}
        for alarm, to_state, priority, activated in last:
            st = AlarmState(to_state)
            active = st in (AlarmState.UNACK, AlarmState.ACKED)
            before[alarm] = (st, activated if active else None, priority)
        return entries, before

    def actions(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        rule: str | None = None,
        limit: int = 1000,
    ) -> list[ActionRecord]:
        """Action results, oldest first."""
        where, params = _time_filter(since, until)
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        sql = (
            "SELECT t, rule, action, target, transition, ok, text, duration_ms, attempts "
            f"FROM action_results{_where(where)} ORDER BY seq DESC LIMIT ?"
        )
        rows = self._read(sql, [*params, limit])
        return [
            ActionRecord(t, r, a, tg, tr, bool(ok), x, d, n)
            for t, r, a, tg, tr, ok, x, d, n in reversed(rows)
        ]


def _entry(row: Sequence[Any]) -> JournalEntry:
    t, a, f, to, b, x, p, until, reason = row
    return JournalEntry(t, a, AlarmState(f), AlarmState(to), b, x, p, until, reason or "")


def _time_filter(since: float | None, until: float | None) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append("t >= ?")
        params.append(since)
    if until is not None:
        where.append("t < ?")
        params.append(until)
    return where, params


def _where(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""
