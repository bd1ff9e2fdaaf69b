"""What the box's small SQLite stores share: one connection used from several threads behind a
lock, a context manager, and write transactions that take the write lock up front."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self


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
