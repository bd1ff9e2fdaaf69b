"""The fleet tool's own records (SQLite, in its data directory): every step of every rollout it
ran and every decommission, in order, and the edges it decommissioned (a later rollout leaves
them out)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from floorconsole.adapters.sqlite_file import Schema, SqliteFile, open_store

TRAIL_FILE = "fleet-trail.db"

_SCHEMA = Schema(
    what="fleet trail",
    version=1,
    script="""
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    rollout TEXT NOT NULL,
    by TEXT NOT NULL,
    step TEXT NOT NULL,
    edge TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS steps_rollout ON steps (rollout, seq);
CREATE TABLE IF NOT EXISTS decommissioned (
    edge TEXT PRIMARY KEY,
    t REAL NOT NULL,
    by TEXT NOT NULL,
    why TEXT NOT NULL,
    client TEXT NOT NULL
);
""",
)


class FleetTrailError(OSError):
    """The trail cannot be opened or written; the text names the file."""


class FleetTrail(SqliteFile):
    """One SQLite file; a step is committed (synchronous FULL) before the tool goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, error=FleetTrailError, timeout_s=10.0)

    @classmethod
    def in_dir(cls, folder: Path) -> FleetTrail:
        return cls(Path(folder) / TRAIL_FILE)

    def _error(self, e: sqlite3.Error) -> Exception | None:
        return FleetTrailError(f"{self.path}: the fleet trail could not be written: {e}")

    def record(
        self, step: str, *, rollout: str = "", by: str = "", edge: str = "", **detail: Any
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO steps (t, rollout, by, step, edge, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), rollout, by, step, edge, json.dumps(detail, default=str)),
            )

    def steps(self, *, rollout: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The steps, oldest first (the last `limit`)."""
        sql = "SELECT seq, t, rollout, by, step, edge, detail FROM steps"
        args: tuple[Any, ...] = ()
        if rollout:
            sql += " WHERE rollout = ?"
            args = (rollout,)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, int(limit))).fetchall()
        return [
            {
                "seq": r[0],
                "t": r[1],
                "rollout": r[2],
                "by": r[3],
                "step": r[4],
                "edge": r[5],
                "detail": json.loads(r[6]),
            }
            for r in reversed(rows)
        ]

    def decommission(self, edge: str, *, by: str, why: str, client: str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO decommissioned (edge, t, by, why, client) "
                "VALUES (?, ?, ?, ?, ?)",
                (edge, time.time(), by, why, client),
            )
            c.execute(
                "INSERT INTO steps (t, rollout, by, step, edge, detail) VALUES (?, '', ?, ?, ?, ?)",
                (time.time(), by, "decommission", edge, json.dumps({"why": why, "client": client})),
            )

    def decommissioned(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT edge, t, by, why, client FROM decommissioned ORDER BY edge"
            ).fetchall()
        return {r[0]: {"t": r[1], "by": r[2], "why": r[3], "client": r[4]} for r in rows}
