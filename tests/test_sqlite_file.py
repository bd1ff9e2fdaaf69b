"""The small stores' one opener: schema version, migrations, refusal of a newer file, and data
directories written before it still open with their rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from floorconsole.adapters import alarm_journal, audit_log, snapshot_store, users
from floorconsole.adapters.sqlite_file import Schema, open_store, statements


class StoreError(Exception):
    pass


V1 = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"
V3 = Schema(
    "note store",
    3,
    V1.replace("text TEXT NOT NULL", "text TEXT NOT NULL, author TEXT NOT NULL DEFAULT '', n INT"),
    migrations={
        1: ("ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT ''",),
        2: ("ALTER TABLE notes ADD COLUMN n INT",),
    },
)


def columns(conn: sqlite3.Connection) -> list[str]:
    return [r[1] for r in conn.execute("PRAGMA table_info(notes)")]


def test_a_version_1_file_is_migrated_step_by_step_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as old:
        old.execute(V1)
        old.execute("INSERT INTO notes (text) VALUES ('kept')")
        old.execute("PRAGMA user_version=1")
    conn = open_store(path, V3, error=StoreError, timeout_s=1.0)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert columns(conn) == ["id", "text", "author", "n"]
    assert conn.execute("SELECT text, author FROM notes").fetchall() == [("kept", "")]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    again = open_store(path, V3, error=StoreError, timeout_s=1.0)  # nothing left to migrate
    assert columns(again) == ["id", "text", "author", "n"]
    again.close()


def test_a_new_file_gets_the_current_schema_without_migrating(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sub" / "notes.db", V3, error=StoreError, timeout_s=1.0)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert columns(conn) == ["id", "text", "author", "n"]
    conn.close()


def test_a_newer_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as newer:
        newer.execute("PRAGMA user_version=4")
    with pytest.raises(StoreError, match=r"notes.db: note store schema version 4; .* up to 3"):
        open_store(path, V3, error=StoreError, timeout_s=1.0)
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 4
        assert check.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as old:
        old.execute(V1)
        old.execute("PRAGMA user_version=1")
    broken = Schema("note store", 2, V1, migrations={1: ("ALTER TABLE nowhere ADD COLUMN x",)})
    with pytest.raises(StoreError, match="cannot open the note store: no such table: nowhere"):
        open_store(path, broken, error=StoreError, timeout_s=1.0)
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 1


def test_readonly_needs_the_file_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with pytest.raises(StoreError, match="no note store at"):
        open_store(path, V3, error=StoreError, timeout_s=1.0, readonly=True)
    open_store(path, V3, error=StoreError, timeout_s=1.0).close()
    ro = open_store(path, V3, error=StoreError, timeout_s=1.0, readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("INSERT INTO notes (text) VALUES ('x')")
    ro.close()


def test_statements_keep_trigger_bodies_whole() -> None:
    script = (
        "CREATE TABLE t (x);\nCREATE TRIGGER t_no BEFORE DELETE ON t\n"
        "BEGIN SELECT RAISE(ABORT, 'no'); END;\nCREATE INDEX i ON t (x)"
    )
    assert len(statements(script)) == 3


# The alarm journal's schema version 1, before shelves kept their expiry and reason.
ALARM_JOURNAL_V1 = """
CREATE TABLE alarm_journal (
    seq INTEGER PRIMARY KEY, t REAL NOT NULL, alarm TEXT NOT NULL, from_state TEXT NOT NULL,
    to_state TEXT NOT NULL, by TEXT NOT NULL, text TEXT NOT NULL, priority TEXT NOT NULL
);
CREATE TABLE action_results (
    seq INTEGER PRIMARY KEY, t REAL NOT NULL, rule TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, transition TEXT NOT NULL, ok INTEGER NOT NULL, text TEXT NOT NULL,
    duration_ms REAL NOT NULL, attempts INTEGER NOT NULL
);
"""


def _write_as_before(path: Path, script: str, version: int, *rows: str) -> None:
    """A store file as the code before the shared opener left it: the schema, its version,
    and some rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(script)
        for sql in rows:
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version={version}")
    conn.close()


def test_stores_written_before_open_with_their_rows(tmp_path: Path) -> None:
    data = tmp_path / "var"
    _write_as_before(
        data / users.DB_NAME,
        users.SCHEMA,
        1,
        "INSERT INTO users (name, role, pin_hash, created_wall) VALUES ('ann', 'admin', 'x', 1)",
    )
    with users.UserStore.in_data_dir(data) as store:
        assert [u["name"] for u in store.list()] == ["ann"]

    _write_as_before(
        data / snapshot_store.DB_NAME,
        snapshot_store.SCHEMA,
        1,
        "INSERT INTO snapshots VALUES ('abc', NULL, 'ann', 'first', 1.0, '{}')",
    )
    with snapshot_store.SnapshotStore.in_data_dir(data):
        pass
    with sqlite3.connect(data / snapshot_store.DB_NAME) as check:
        assert check.execute("SELECT id, author FROM snapshots").fetchall() == [("abc", "ann")]
        assert check.execute("PRAGMA user_version").fetchone()[0] == 1
    check.close()

    _write_as_before(
        data / alarm_journal.FILE_NAME,
        ALARM_JOURNAL_V1,
        1,
        "INSERT INTO alarm_journal (t, alarm, from_state, to_state, by, text, priority) "
        "VALUES (1.0, 'rule:trip', 'NORMAL', 'UNACK', 'engine', 'trip', 'high')",
    )
    journal = alarm_journal.AlarmJournal(data / alarm_journal.FILE_NAME)
    (entry,) = journal.query()
    assert (entry.alarm_id, entry.reason, entry.shelved_until) == ("rule:trip", "", None)
    journal.close()

    _write_as_before(data / audit_log.FILE_NAME, audit_log._SCHEMA.script, 1)
    log = audit_log.AuditLog.in_data_dir(data)
    log.append("login", "ann", "console", {})
    log.close()
    again = audit_log.AuditLog.in_data_dir(data, readonly=True)
    assert again.verify().ok
    again.close()
