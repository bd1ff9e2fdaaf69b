"""The user store: names, roles, scrypt PIN hashes and wrong-PIN lockouts in DATA_DIR/users.db.

Rare writes that must survive a power cut and a restart (a restart must not reset a lockout),
so WAL with synchronous=FULL, like the snapshot store. One connection behind a lock serves
every thread; a login is one BEGIN IMMEDIATE transaction (read the record, check the PIN,
write the new count), so two consoles or a console and the CLI never both count from the
same failure number.

A PIN never reaches this file, a log line or an exception text: only its scrypt hash is kept.
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from floorconsole.adapters.sqlite_file import Schema, SqliteFile, open_store
from floorconsole.core.auth import (
    Lockout,
    Role,
    check_pin_format,
    check_user_name,
    hash_pin,
    verify_pin,
)

SCHEMA_VERSION = 1
DB_NAME = "users.db"
_BUSY_TIMEOUT_S = 5.0

# The same text for an unknown user and a wrong PIN: a login screen must not tell a stranger
# which names exist.
WRONG = "wrong user or PIN"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name              TEXT PRIMARY KEY,
    role              TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'engineer', 'admin')),
    pin_hash          TEXT NOT NULL,
    created_wall      REAL NOT NULL,     -- UTC epoch seconds
    failures          INTEGER NOT NULL DEFAULT 0,
    locked_until_wall REAL,              -- UTC epoch seconds; NULL: never locked
    last_failure_wall REAL
)
"""
_SCHEMA = Schema("user database", SCHEMA_VERSION, SCHEMA)

_COLS = "name, role, created_wall, failures, locked_until_wall, last_failure_wall"

# Checked against for an unknown name, so that it costs the same scrypt time as a wrong PIN.
_DUMMY_HASH = hash_pin("0000", salt=b"floorconsole-dum")


class UserError(ValueError):
    """A request the store refuses; the message is one line a user can act on (never a PIN)."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of one login attempt."""

    ok: bool
    user: str
    role: Role | None  # set only when ok
    message: str
    locked_until: float | None = None  # wall time, while locked
    failures: int = 0  # wrong PINs in a row after this attempt (0 for an unknown user)
    just_locked: bool = False  # this attempt was the one that locked the user


class UserStore(SqliteFile):
    """One SQLite file; safe to share between threads. Several processes (the engine and the
    `users` CLI) may open it at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = open_store(self.path, _SCHEMA, error=UserError, timeout_s=_BUSY_TIMEOUT_S)

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> UserStore:
        return cls(Path(data_dir) / DB_NAME)

    def _error(self, e: sqlite3.Error) -> Exception:
        return UserError(f"{self.path}: {e}")  # busy past the timeout, disk full, damaged file

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> builtins.list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise UserError(f"{self.path}: {e}") from None

    # -- managing users --------------------------------------------------------------------

    def add(self, name: str, role: Role | str, pin: str, *, now_wall: float | None = None) -> None:
        """A new user; refuses a bad name, a bad PIN format and a name already taken."""
        _check_name(name)
        role = _role(role)
        pin_hash = _pin_hash(pin)
        created = _now() if now_wall is None else now_wall
        with self._tx() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(
                    f"user {name!r} already exists; `users reset-pin {name}` gives them a new PIN"
                )
            c.execute(
                "INSERT INTO users (name, role, pin_hash, created_wall) VALUES (?, ?, ?, ?)",
                (name, str(role), pin_hash, created),
            )

    def remove(self, name: str) -> None:
        """Remove a user; refuses to remove the last admin (nobody could manage users or
        leave the kiosk any more)."""
        with self._tx() as c:
            _keep_an_admin(c, name, "remove")
            if c.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise _unknown(name)

    def reset_pin(self, name: str, pin: str) -> None:
        """A new PIN; also clears the wrong-PIN count and any lock."""
        pin_hash = _pin_hash(pin)
        with self._tx() as c:
            cur = c.execute(
                "UPDATE users SET pin_hash = ?, failures = 0, locked_until_wall = NULL, "
                "last_failure_wall = NULL WHERE name = ?",
                (pin_hash, name),
            )
            if cur.rowcount == 0:
                raise _unknown(name)

    def set_role(self, name: str, role: Role | str) -> None:
        role = _role(role)
        with self._tx() as c:
            if role is not Role.ADMIN:
                _keep_an_admin(c, name, f"make {role}")
            if (
                c.execute("UPDATE users SET role = ? WHERE name = ?", (str(role), name)).rowcount
                == 0
            ):
                raise _unknown(name)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every user by name, without the PIN hash: name, role (Role), created_wall, failures,
        locked_until_wall, last_failure_wall."""
        return [_user(r) for r in self._read(f"SELECT {_COLS} FROM users ORDER BY name")]

    def get(self, name: str) -> dict[str, Any] | None:
        """One user as in list(), or None."""
        rows = self._read(f"SELECT {_COLS} FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM users")[0][0])

    # -- logging in ------------------------------------------------------------------------

    def authenticate(self, name: str, pin: str, now_wall: float | None = None) -> AuthResult:
        """Check a PIN. A wrong one counts towards a lock (kept on disk); while locked even
        the right PIN is refused; a right one clears the count."""
        now = _now() if now_wall is None else now_wall
        with self._tx() as c:
            row = c.execute(
                "SELECT role, pin_hash, failures, last_failure_wall, "
                "locked_until_wall FROM users WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                verify_pin(pin, _DUMMY_HASH)
                return AuthResult(False, name, None, WRONG)
            role_text, pin_hash, failures, last_failure, locked_until = row
            record = Lockout(int(failures), last_failure, locked_until)
            if record.locked(now):
                return AuthResult(
                    False,
                    name,
                    None,
                    _locked_message(name, record),
                    locked_until=record.locked_until_wall,
                    failures=record.failures,
                )
            if verify_pin(pin, pin_hash):
                if record != Lockout():
                    c.execute(
                        "UPDATE users SET failures = 0, locked_until_wall = NULL, "
                        "last_failure_wall = NULL WHERE name = ?",
                        (name,),
                    )
                return AuthResult(True, name, Role.parse(role_text), f"signed in as {name}")
            record = record.after_failure(now)
            c.execute(
                "UPDATE users SET failures = ?, last_failure_wall = ?, "
                "locked_until_wall = ? WHERE name = ?",
                (record.failures, record.last_failure_wall, record.locked_until_wall, name),
            )
        if record.locked(now):
            return AuthResult(
                False,
                name,
                None,
                _locked_message(name, record),
                locked_until=record.locked_until_wall,
                failures=record.failures,
                just_locked=True,
            )
        return AuthResult(False, name, None, WRONG, failures=record.failures)


def _check_name(name: str) -> None:
    problem = check_user_name(name)
    if problem:
        raise UserError(problem)


def _role(role: Role | str) -> Role:
    if isinstance(role, Role):
        return role
    try:
        return Role.parse(role)
    except ValueError as e:
        raise UserError(str(e)) from None


def _pin_hash(pin: str) -> str:
    problem = check_pin_format(pin)
    if problem:
        raise UserError(problem)
    return hash_pin(pin)


def _unknown(name: str) -> UserError:
    return UserError(f"no user {name!r}; `users list` shows who there is")


def _user(row: tuple[Any, ...]) -> dict[str, Any]:
    name, role, created, failures, locked_until, last_failure = row
    return {
        "name": name,
        "role": Role.parse(role),
        "created_wall": created,
        "failures": int(failures),
        "locked_until_wall": locked_until,
        "last_failure_wall": last_failure,
    }


def _locked_message(name: str, record: Lockout) -> str:
    until = record.locked_until_wall or 0.0
    return (
        f"{name} is locked after {record.failures} wrong PINs until "
        f"{datetime.fromtimestamp(until).strftime('%H:%M:%S')}; an admin can lift it with "
        f"`floorconsole users reset-pin {name}`"
    )


def _now() -> float:
    return time.time()


def _keep_an_admin(c: sqlite3.Connection, name: str, what: str) -> None:
    """Refuse a change that would leave users but no admin (run inside the transaction)."""
    row = c.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
    if row is None or row[0] != str(Role.ADMIN):
        return
    admins = c.execute("SELECT COUNT(*) FROM users WHERE role = ?", (str(Role.ADMIN),)).fetchone()[
        0
    ]
    if admins <= 1:
        raise UserError(
            f"cannot {what} {name}: the last admin (nobody could manage users or "
            f"leave kiosk mode); add another admin first"
        )
