"""The box's small SQLite stores (users, audit trail, snapshots, alarm journal): one way to open
a file (pragmas, schema version, migrations), and what the ones shared between threads share.

Not the historian's: its hot path keeps its own connection set-up and batching."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self


@dataclass(frozen=True, slots=True)
class Schema:
    """A store's tables at `version` (PRAGMA user_version).

    `script` creates the current schema with CREATE ... IF NOT EXISTS and runs on every writable
    open, so a new file (version 0) gets everything at once. `migrations[n]` are the statements
    that bring an existing file from version n to n + 1 (n >= 1); they run, in order, before the
    script. A file newer than `version` is refused: a newer floorconsole wrote it.
    """

    what: str  # "user database": how messages name the store
    version: int
    script: str
    migrations: Mapping[int, Sequence[str]] = field(default_factory=dict)


def statements(script: str) -> list[str]:
    """Split a schema script into statements (a trigger body holds a ';' of its own)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    out.append(buf.strip())  # the last statement may go without its ';'
    return [s for s in out if s]


def open_store(
    path: Path,
    schema: Schema,
    *,
    error: type[Exception],
    timeout_s: float,
    synchronous: str = "FULL",
    foreign_keys: bool = False,
    autocheckpoint: bool = True,
    readonly: bool = False,
) -> sqlite3.Connection:
    """One connection to a store, its schema brought up to date in one write transaction.

    WAL (readers never wait for the writer), synchronous FULL unless told (a committed record
    survives a power cut), autocommit mode (isolation_level None: transactions are explicit),
    usable from any thread (the caller serialises). readonly opens an existing file without
    writing to it. Raises `error` naming the file for anything that keeps it from opening.
    """
    if readonly and not path.exists():
        raise error(f"no {schema.what} at {path}")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=timeout_s,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=timeout_s
            )
    except sqlite3.Error as e:
        raise error(f"{path}: cannot open the {schema.what}: {e}") from None
    try:
        if readonly:
            _check_version(conn, path, schema, error)
            return conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # the store checkpoints itself; a commit never does
            conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _check_version(conn, path, schema, error)
            if version >= 1:
                for n in range(version, schema.version):
                    for sql in schema.migrations.get(n, ()):
                        conn.execute(sql)
            for sql in statements(schema.script):
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version={schema.version}")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        conn.close()
        raise error(f"{path}: cannot open the {schema.what}: {e}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(
    conn: sqlite3.Connection, path: Path, schema: Schema, error: type[Exception]
) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema.version:
        raise error(
            f"{path}: {schema.what} schema version {version}; this floorconsole reads up to "
            f"{schema.version} (a newer floorconsole wrote it)"
        )
    return version


class SqliteFile:
    """Subclasses set `_conn` and `_lock` in __init__; `_error` may turn a SQLite error of a
    transaction into the store's own error type (the default lets it through)."""

    _conn: sqlite3.Connection
    _lock: threading.Lock | threading.RLock

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, e: sqlite3.Error) -> Exception | None:
        return None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock before the first read,
        so two processes never both read, then both write."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:  # busy past the timeout, disk full, damaged file
                mapped = self._error(e)
                if mapped is None:
                    raise
                raise mapped from None
