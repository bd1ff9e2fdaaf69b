"""The audit trail: hash-chained, append-only records and head checkpoints in `audit.db`.

Unlike the alarm journal, nothing is queued: `append` commits before it returns, because a
control action waits on its record and must not run if the record cannot be written. By
default each commit is fsync'd (synchronous=FULL). The engine opens it with
synchronous=NORMAL instead, so a rule's write waits for the commit (in the WAL: it survives
the process being killed) but not for the disk, and calls `sync()` about once a second, which
checkpoints the WAL with fsync: a power cut loses at most the last second of records. Each append is one BEGIN IMMEDIATE transaction that reads the head and chains to it,
so the engine and a CLI (`floorconsole users ...`) appending to the same file keep one chain.

Triggers refuse UPDATE and DELETE on both tables. Someone with the file can drop them; the
chain and the checkpoints are what show that they did (`floorconsole audit verify`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from floorconsole.adapters.sqlite_file import Schema, open_store
from floorconsole.core.audit import (
    GENESIS,
    AuditRecord,
    Checkpoint,
    VerifyResult,
    make_record,
    verify_chain,
)
from floorconsole.core.clock import Clock, SystemClock

SCHEMA_VERSION = 1
FILE_NAME = "audit.db"
CHECKPOINT_EVERY = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq       INTEGER PRIMARY KEY,
    t_wall    REAL NOT NULL,      -- wall-clock UTC epoch seconds
    user      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL,      -- canonical JSON
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_t ON audit_records (t_wall);
CREATE INDEX IF NOT EXISTS audit_records_user ON audit_records (user, seq);
CREATE INDEX IF NOT EXISTS audit_records_kind ON audit_records (kind, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq       INTEGER PRIMARY KEY,   -- the head record's seq when it was taken
    t_wall    REAL NOT NULL,
    count     INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
"""

TRIGGERS = (
    "audit_records_no_update",
    "audit_records_no_delete",
    "audit_checkpoints_no_update",
    "audit_checkpoints_no_delete",
)

_APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

_SCHEMA = Schema(
    "audit trail",
    SCHEMA_VERSION,
    SCHEMA
    + _APPEND_ONLY.format(table="audit_records")
    + _APPEND_ONLY.format(table="audit_checkpoints"),
)

_COLUMNS = "seq, t_wall, user, kind, target, detail, prev_hash, hash"
_INSERT = f"INSERT INTO audit_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_CHECKPOINT = (
    "INSERT OR IGNORE INTO audit_checkpoints (seq, t_wall, count, head_hash) VALUES (?, ?, ?, ?)"
)


class AuditError(Exception):
    """The audit trail cannot be opened or written; whatever was to be recorded must not run."""


class AuditBusy(AuditError):
    """The write lock is held elsewhere right now (try_append does not wait for it)."""


BUSY_TIMEOUT_MS = 10_000


class AuditLog:
    """Append records to the chain; query them for the audit screen; verify the chain."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        readonly: bool = False,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous={synchronous!r}: expected FULL or NORMAL")
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self.readonly = readonly
        self._lock = threading.Lock()
        conn = open_store(
            self.path,
            _SCHEMA,
            error=AuditError,
            timeout_s=BUSY_TIMEOUT_MS / 1000,
            synchronous=synchronous,
            autocheckpoint=synchronous != "NORMAL",  # under NORMAL, sync() checkpoints
            readonly=readonly,
        )
        self._conn: sqlite3.Connection | None = conn
        self.appended = 0
        self._synced = 0
        # sync() checkpoints on a connection of its own, outside _lock: a checkpoint's fsyncs
        # (up to 100 ms on a busy disk) never hold back an append (a rule's write waits on
        # its record), and SQLite lets a PASSIVE checkpoint run beside a writer.
        self._sync_lock = threading.Lock()
        self._sync_conn: sqlite3.Connection | None = None

    @classmethod
    def in_data_dir(
        cls,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        readonly: bool = False,
        synchronous: str = "FULL",
    ) -> AuditLog:
        return cls(
            Path(data_dir) / FILE_NAME, clock=clock, readonly=readonly, synchronous=synchronous
        )

    def sync(self) -> bool:
        """Put what was appended since the last sync on disk (a WAL checkpoint, with fsync);
        False when there was nothing to do. For a log opened with synchronous=NORMAL."""
        with self._sync_lock:
            appended = self.appended
            if self.readonly or self._conn is None or appended == self._synced:
                return False
            try:
                if self._sync_conn is None:
                    self._sync_conn = sqlite3.connect(
                        self.path,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=BUSY_TIMEOUT_MS / 1000,
                    )
                    # NORMAL syncs the WAL before the checkpoint and the file after it.
                    self._sync_conn.execute("PRAGMA synchronous=NORMAL")
                self._sync_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                raise AuditError(f"{self.path}: cannot sync the audit trail: {e}") from e
            self._synced = appended
            return True

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (any thread, any process) -------------------------------------------------

    def append(
        self,
        kind: str,
        user: str,
        target: str,
        detail: Mapping[str, Any],
        t_wall: float | None = None,
    ) -> int:
        """Write one record and commit it durably; returns its seq. Raises AuditError if it
        could not be written (the caller must then not do what it was recording), ValueError
        for an unknown kind."""
        record = self.append_record(kind, user, target, detail, t_wall)
        assert record is not None  # only a record that need not wait can be None
        return record.seq

    def try_append(
        self,
        kind: str,
        user: str,
        target: str,
        detail: Mapping[str, Any],
        t_wall: float | None = None,
    ) -> int | None:
        """append() without waiting: None at once when this log is busy (a sync, another
        thread's append, another process holding the write lock) instead of blocking. For an
        event loop that must not stall: on None, append() from a worker thread."""
        record = self.append_record(kind, user, target, detail, t_wall, wait=False)
        return None if record is None else record.seq

    def append_record(
        self,
        kind: str,
        user: str,
        target: str,
        detail: Mapping[str, Any],
        t_wall: float | None = None,
        *,
        wait: bool = True,
    ) -> AuditRecord | None:
        """append() or, with wait=False, try_append(), giving the whole record written (its
        hash included); None only when not waiting and the log is busy."""
        entry = [(kind, user, target, detail, t_wall)]
        if wait:
            with self._lock:
                return self._append_locked(entry)[-1]
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._writer()
            conn.execute("PRAGMA busy_timeout=0")
            try:
                return self._append_locked(entry)[-1]
            except AuditBusy:
                return None
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            self._lock.release()

    def append_many(
        self, entries: Iterable[tuple[str, str, str, Mapping[str, Any], float | None]]
    ) -> list[int]:
        """Write (kind, user, target, detail, t_wall) records in one transaction; their seqs.
        For imports and bulk fixtures: the same chain as append, one fsync for all."""
        with self._lock:
            return [r.seq for r in self._append_locked(entries)]

    def _append_locked(
        self, entries: Iterable[tuple[str, str, str, Mapping[str, Any], float | None]]
    ) -> list[AuditRecord]:
        conn = self._writer()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise AuditBusy(f"{self.path}: busy: {e}") from e
            raise AuditError(f"{self.path}: cannot write the audit trail: {e}") from e
        except sqlite3.Error as e:
            raise AuditError(f"{self.path}: cannot write the audit trail: {e}") from e
        try:
            seq, head = _head(conn)
            records: list[AuditRecord] = []
            for kind, user, target, detail, t_wall in entries:
                seq += 1
                t = self.clock.wall() if t_wall is None else t_wall
                r = make_record(seq, t, user, kind, target, detail, head)
                conn.execute(
                    _INSERT,
                    (r.seq, r.t_wall, r.user, r.kind, r.target, r.detail_json, r.prev_hash, r.hash),
                )
                head = r.hash
                records.append(r)
                if seq % CHECKPOINT_EVERY == 0:
                    conn.execute(_CHECKPOINT, (seq, t, seq, head))
            conn.execute("COMMIT")
        except BaseException as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):
                raise AuditError(f"{self.path}: audit record not written: {e}") from e
            raise
        self.appended += len(records)
        return records

    def checkpoint(self) -> Checkpoint | None:
        """Record the current head (if not recorded yet); the checkpoint, or None if empty."""
        with self._lock:
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    seq, head = _head(conn)
                    cp = None
                    if seq:
                        cp = Checkpoint(seq, self.clock.wall(), seq, head)
                        conn.execute(_CHECKPOINT, (cp.seq, cp.t_wall, cp.count, cp.head_hash))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise AuditError(f"{self.path}: cannot write a checkpoint: {e}") from e
            return cp

    def close(self) -> None:
        """Checkpoint the head and close. Safe to call twice."""
        if self._conn is None:
            return
        if not self.readonly:
            try:
                self.checkpoint()
            except AuditError:
                pass  # the records are committed; verify still works from earlier checkpoints
        with self._sync_lock:
            if self._sync_conn is not None:
                self._sync_conn.close()
                self._sync_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _writer(self) -> sqlite3.Connection:
        if self.readonly:
            raise AuditError(f"{self.path}: opened read-only")
        return self._open()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AuditError(f"{self.path}: the audit trail is closed")
        return self._conn

    # -- reading (any thread) --------------------------------------------------------------

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Records newest first: since <= t_wall < until, by one user, of one kind, with text
        in the user, target or detail (case-insensitive)."""
        where: list[str] = []
        params: list[object] = []
        if since is not None:
            where.append("t_wall >= ?")
            params.append(since)
        if until is not None:
            where.append("t_wall < ?")
            params.append(until)
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(user LIKE ? ESCAPE '\\' OR target LIKE ? ESCAPE '\\' "
                "OR detail LIKE ? ESCAPE '\\')"
            )
            params += [like, like, like]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} FROM audit_records{clause} ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._open().execute(sql, [*params, limit]).fetchall()
        return [AuditRecord(*r).as_dict() for r in rows]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, GENESIS) when empty."""
        with self._lock:
            return _head(self._open())

    def verify(self) -> VerifyResult:
        """Walk the whole chain and the checkpoints; the first bad record, if any."""
        with self._lock:
            conn = self._open()
            # One read transaction: a concurrent append cannot slip between the two reads.
            conn.execute("BEGIN")
            try:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq").fetchall()
                cps = conn.execute(
                    "SELECT seq, t_wall, count, head_hash FROM audit_checkpoints ORDER BY seq"
                ).fetchall()
                triggers = {
                    r[0]
                    for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                }
            finally:
                conn.execute("COMMIT")
        result = verify_chain((AuditRecord(*r) for r in rows), (Checkpoint(*c) for c in cps))
        missing = [t for t in TRIGGERS if t not in triggers]
        if missing:
            warning = (
                f"append-only trigger(s) missing: {', '.join(missing)}; someone has dropped them"
            )
            result = replace(result, warnings=(*result.warnings, warning))
        return result


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the last record; (0, GENESIS) when empty."""
    row = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)
