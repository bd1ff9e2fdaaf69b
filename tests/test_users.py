"""Users, roles and PINs: core.auth, the user store on real SQLite files, and the users CLI."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from floorconsole.adapters.users import WRONG, UserError, UserStore
from floorconsole.cli import users as users_cli
from floorconsole.core import auth
from floorconsole.core.auth import (
    ACTIONS,
    LOCKOUT_S,
    MAX_FAILURES,
    Lockout,
    Role,
    allowed,
    check_pin_format,
    check_user_name,
    hash_pin,
    needs_fresh_pin,
    permitted,
    verify_pin,
)

REPO = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0
PIN = "73918462"  # distinctive enough to search the database bytes for
OTHER = "11112222"


def _hhmmss(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


@pytest.fixture
def store(tmp_path: Path):
    with UserStore.in_data_dir(tmp_path) as s:
        yield s


# -- core.auth: hashing ---------------------------------------------------------------------


def test_hash_format_and_verify_round_trip() -> None:
    stored = hash_pin(PIN)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert PIN not in stored
    assert verify_pin(PIN, stored)
    assert not verify_pin(OTHER, stored)
    assert hash_pin(PIN) != stored  # a fresh salt each time
    assert hash_pin(PIN, salt=b"s" * 16) == hash_pin(PIN, salt=b"s" * 16)


def _flip_last_hex(stored: str) -> str:
    return stored[:-1] + ("0" if stored[-1] != "0" else "1")


@pytest.mark.parametrize(
    "tamper",
    [
        _flip_last_hex,
        lambda s: s.replace("scrypt$", "bcrypt$"),
        lambda s: s.replace("$16384$", "$16383$"),  # not a power of two
        lambda s: s.replace("$16384$", "$1073741824$"),  # a cost that would take the box down
        lambda s: s.replace("$8$", "$x$"),
        lambda s: s.rsplit("$", 1)[0],  # a field missing
        lambda s: s + "$extra",
        lambda s: s[:-2] + "zz",  # not hex
        lambda s: s[:-40],  # a digest too short to mean anything
        lambda s: "",
        lambda s: "$$$$$",
    ],
)
def test_a_tampered_hash_fails_verify_without_raising(tamper) -> None:
    assert verify_pin(PIN, tamper(hash_pin(PIN))) is False


def test_verify_of_a_non_string_is_false() -> None:
    assert verify_pin(PIN, None) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pin, ok",
    [
        ("1234", True),
        ("000000000000", True),
        ("123", False),
        ("1234567890123", False),
        ("12a4", False),
        ("12 34", False),
        ("", False),
        ("١٢٣٤", False),  # Arabic-Indic digits
    ],
)
def test_pin_format(pin: str, ok: bool) -> None:
    problem = check_pin_format(pin)
    assert (problem is None) == ok
    if problem:
        assert "4 to 12 digits" in problem and (not pin or pin not in problem)


@pytest.mark.parametrize(
    "name, ok",
    [
        ("ana", True),
        ("j.smith_2-b", True),
        ("x" * 32, True),
        ("", False),
        ("x" * 33, False),
        ("ana smith", False),
        ("ana;drop", False),
        ("émile", False),
    ],
)
def test_user_names(name: str, ok: bool) -> None:
    assert (check_user_name(name) is None) == ok


# -- core.auth: roles and actions ---------------------------------------------------------------


def test_role_parse() -> None:
    assert Role.parse("operator") is Role.OPERATOR
    assert Role.parse(" ADMIN ") is Role.ADMIN
    assert Role.VIEWER < Role.OPERATOR < Role.ENGINEER < Role.ADMIN
    assert str(Role.ENGINEER) == "engineer"
    with pytest.raises(ValueError, match="viewer, operator, engineer, admin"):
        Role.parse("root")


def test_the_role_table() -> None:
    expected = {
        "alarm.ack": (Role.OPERATOR, False),
        "alarm.ack_all": (Role.OPERATOR, False),
        "alarm.unshelve": (Role.OPERATOR, False),
        "alarm.shelve": (Role.OPERATOR, True),
        "config.apply": (Role.ENGINEER, True),
        "snapshot.rollback": (Role.ENGINEER, True),
        "control.take": (Role.ENGINEER, False),
        "control.release": (Role.ENGINEER, False),
        "control.request": (Role.ENGINEER, False),
        "control.arm": (Role.ENGINEER, False),
        "control.write": (Role.ENGINEER, True),
        "rule.reset": (Role.ENGINEER, False),
        "model.import": (Role.ADMIN, True),
        "model.calibrate": (Role.ENGINEER, False),  # a candidate beside the live model
        "model.shadow": (Role.ENGINEER, False),  # no effect on rules
        "model.promote": (Role.ENGINEER, True),  # a snapshot like any change: PIN
        "fleet.accept": (Role.ENGINEER, True),  # a held remote change applied here: PIN
        "fleet.defer": (Role.ENGINEER, False),  # nothing changes on the machine
        "users.manage": (Role.ADMIN, True),
        "kiosk.leave": (Role.ADMIN, True),
        "audit.view": (Role.VIEWER, False),
        "demo.inject": (Role.OPERATOR, False),
        "demo.clear": (Role.OPERATOR, False),
        "demo.toggle": (Role.OPERATOR, False),
    }
    assert {n: (a.min_role, a.critical) for n, a in ACTIONS.items()} == expected
    for name, a in ACTIONS.items():
        assert a.name == name and isinstance(a.min_role, Role) and a.description
    assert allowed(Role.OPERATOR, "alarm.ack")
    assert not allowed(Role.VIEWER, "alarm.ack")
    assert not allowed(Role.OPERATOR, "control.write")
    assert allowed(Role.ENGINEER, "control.write")
    assert not allowed(Role.ENGINEER, "kiosk.leave")
    assert allowed(Role.ADMIN, "kiosk.leave")
    assert permitted(Role.VIEWER) == ["audit.view"]
    assert permitted(Role.ADMIN) == sorted(ACTIONS)
    for lower, higher in zip(list(Role), list(Role)[1:], strict=False):
        assert set(permitted(lower)) < set(permitted(higher))


def test_an_unknown_action_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="unknown action 'alarm.delete'.*alarm.ack"):
        allowed(Role.ADMIN, "alarm.delete")


def test_a_critical_action_needs_a_fresh_pin() -> None:
    assert not needs_fresh_pin("alarm.ack", None, 100.0)
    assert needs_fresh_pin("control.write", None, 100.0)
    assert not needs_fresh_pin("control.write", 100.0, 100.0 + auth.PIN_FRESH_S)
    assert needs_fresh_pin("control.write", 100.0, 100.0 + auth.PIN_FRESH_S + 0.1)


def test_lockout_rule() -> None:
    rec = Lockout()
    for i in range(1, MAX_FAILURES):
        rec = rec.after_failure(T0 + i)
        assert rec.failures == i and not rec.locked(T0 + i)
    rec = rec.after_failure(T0 + 10)
    assert rec.locked(T0 + 10) and rec.locked_until_wall == T0 + 10 + LOCKOUT_S
    assert not rec.locked(T0 + 10 + LOCKOUT_S)
    # after the lock runs out a wrong PIN starts a fresh count instead of locking at once
    again = rec.after_failure(T0 + 10 + LOCKOUT_S)
    assert again.failures == 1 and not again.locked(T0 + 10 + LOCKOUT_S)
    assert rec.after_success() == Lockout()


# -- the store ----------------------------------------------------------------------------------


def test_add_list_get_without_the_hash(store: UserStore) -> None:
    store.add("ana", "admin", PIN, now_wall=T0)
    store.add("bo", Role.OPERATOR, OTHER, now_wall=T0 + 1)
    assert store.count() == 2
    users = store.list()
    assert [u["name"] for u in users] == ["ana", "bo"]
    assert users[1] == {
        "name": "bo",
        "role": Role.OPERATOR,
        "created_wall": T0 + 1,
        "failures": 0,
        "locked_until_wall": None,
        "last_failure_wall": None,
    }
    assert all("pin_hash" not in u and "pin" not in u for u in users)
    assert store.get("ana")["role"] is Role.ADMIN  # type: ignore[index]
    assert store.get("nobody") is None
    store.set_role("bo", "engineer")
    assert store.get("bo")["role"] is Role.ENGINEER  # type: ignore[index]
    store.remove("bo")
    assert store.count() == 1


@pytest.mark.parametrize(
    "name, role, pin, match",
    [
        ("ana", "admin", OTHER, "already exists"),
        ("ana smith", "admin", OTHER, "letters, digits"),
        ("cy", "root", OTHER, "unknown role 'root'"),
        ("cy", "admin", "12a", "4 to 12 digits"),
    ],
)
def test_add_refuses(store: UserStore, name: str, role: str, pin: str, match: str) -> None:
    store.add("ana", "admin", PIN)
    with pytest.raises(UserError, match=match) as e:
        store.add(name, role, pin)
    assert pin not in str(e.value)
    assert store.count() == 1


def test_changes_to_an_unknown_user_are_refused(store: UserStore) -> None:
    for call in (
        lambda: store.remove("ghost"),
        lambda: store.reset_pin("ghost", PIN),
        lambda: store.set_role("ghost", "admin"),
    ):
        with pytest.raises(UserError, match="no user 'ghost'"):
            call()


def test_right_and_wrong_pin(store: UserStore) -> None:
    store.add("ana", "engineer", PIN)
    ok = store.authenticate("ana", PIN, T0)
    assert ok.ok and ok.role is Role.ENGINEER and ok.failures == 0
    wrong = store.authenticate("ana", OTHER, T0)
    unknown = store.authenticate("ghost", PIN, T0)
    assert not wrong.ok and not unknown.ok
    assert wrong.message == unknown.message == WRONG == "wrong user or PIN"
    assert wrong.role is None and wrong.failures == 1
    # a success clears the count
    assert store.authenticate("ana", PIN, T0 + 1).ok
    assert store.get("ana")["failures"] == 0  # type: ignore[index]


def test_brute_force_locks_the_user_and_the_lock_runs_out(store: UserStore) -> None:
    store.add("ana", "operator", PIN)
    for i in range(1, MAX_FAILURES):
        r = store.authenticate("ana", OTHER, T0 + i)
        assert (r.ok, r.failures, r.just_locked, r.message) == (False, i, False, WRONG)
    fifth = store.authenticate("ana", OTHER, T0 + 5)
    until = T0 + 5 + LOCKOUT_S
    assert not fifth.ok and fifth.just_locked and fifth.locked_until == until
    assert _hhmmss(until) in fifth.message

    sixth = store.authenticate("ana", PIN, T0 + 6)  # the right PIN, still locked
    assert not sixth.ok and not sixth.just_locked and sixth.role is None
    assert sixth.locked_until == until and f"until {_hhmmss(until)}" in sixth.message
    assert not store.authenticate("ana", PIN, until - 0.001).ok

    later = store.authenticate("ana", PIN, until)
    assert later.ok and later.role is Role.OPERATOR
    user = store.get("ana")
    assert user is not None and user["failures"] == 0 and user["locked_until_wall"] is None


def test_the_lock_survives_reopening_the_store(tmp_path: Path) -> None:
    with UserStore.in_data_dir(tmp_path) as s:
        s.add("ana", "operator", PIN)
        for i in range(MAX_FAILURES - 1):
            s.authenticate("ana", OTHER, T0 + i)
    with UserStore(tmp_path / "users.db") as s:  # a restart does not reset the count
        assert s.get("ana")["failures"] == MAX_FAILURES - 1  # type: ignore[index]
        assert s.authenticate("ana", OTHER, T0 + 10).just_locked
    with UserStore.in_data_dir(tmp_path) as s:
        r = s.authenticate("ana", PIN, T0 + 11)
        assert not r.ok and r.locked_until == T0 + 10 + LOCKOUT_S
        assert s.authenticate("ana", PIN, T0 + 10 + LOCKOUT_S).ok


def test_reset_pin_lifts_the_lock(store: UserStore) -> None:
    store.add("ana", "operator", PIN)
    for i in range(MAX_FAILURES):
        store.authenticate("ana", OTHER, T0 + i)
    store.reset_pin("ana", OTHER)
    r = store.authenticate("ana", OTHER, T0 + 10)
    assert r.ok
    assert not store.authenticate("ana", PIN, T0 + 11).ok


def test_wrong_pins_from_many_threads_are_all_counted(store: UserStore) -> None:
    store.add("ana", "operator", PIN)
    results = []
    lock = threading.Lock()

    def attempt() -> None:
        r = store.authenticate("ana", OTHER, T0)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=attempt) for _ in range(MAX_FAILURES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.failures for r in results) == list(range(1, MAX_FAILURES + 1))
    assert sum(r.just_locked for r in results) == 1


def test_the_pin_is_never_stored_logged_or_quoted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages = []
    store = UserStore.in_data_dir(tmp_path)
    try:
        store.add("ana", "admin", PIN)
        for bad in (PIN + "9999x", "12a"):  # a bad PIN that contains the real one, and another
            with pytest.raises(UserError) as e:
                store.add("bo", "admin", bad)
            messages.append(str(e.value))
            assert bad not in str(e.value)
        with pytest.raises(UserError) as e:
            store.add("ana", "admin", PIN)
        messages.append(str(e.value))
        for i in range(MAX_FAILURES + 1):
            messages.append(store.authenticate("ana", PIN[::-1], T0 + i).message)
        messages.append(store.authenticate("ana", PIN, T0 + 100).message)
        store.reset_pin("ana", PIN)
        messages.append(store.authenticate("ana", PIN, T0 + 101).message)
        messages.append(repr(store.list()))
        # while the store is open its latest writes sit in the -wal file
        files = [p for p in tmp_path.iterdir() if p.name.startswith("users.db")]
        assert any(p.name == "users.db-wal" for p in files)
        for p in files:
            assert PIN.encode() not in p.read_bytes(), p.name
    finally:
        store.close()
    for p in tmp_path.iterdir():
        assert PIN.encode() not in p.read_bytes(), p.name
    assert all(PIN not in m for m in messages), messages
    assert PIN not in caplog.text


# -- the CLI --------------------------------------------------------------------------------------


def _cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "floorconsole.cli.users", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_cli_round_trip_in_a_subprocess(tmp_path: Path) -> None:
    d = str(tmp_path / "var")
    r = _cli("users", "list", "--data-dir", d)
    assert r.returncode == 0 and "no users yet" in r.stdout
    assert not (tmp_path / "var" / "users.db").exists()  # listing does not create it

    r = _cli(
        "users", "add", "ana", "--role", "admin", "--pin-stdin", "--data-dir", d, stdin=PIN + "\n"
    )
    assert r.returncode == 0, r.stderr
    assert "added ana (admin)" in r.stdout and PIN not in r.stdout + r.stderr

    r = _cli(
        "users",
        "add",
        "ana",
        "--role",
        "operator",
        "--pin-stdin",
        "--data-dir",
        d,
        stdin=OTHER + "\n",
    )
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "already exists" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli(
        "users", "add", "bo", "--role", "operator", "--pin-stdin", "--data-dir", d, stdin="12x4\n"
    )
    assert r.returncode == 1 and "4 to 12 digits" in r.stderr and "12x4" not in r.stderr

    with UserStore.in_data_dir(d) as s:
        s.add("bo", "operator", OTHER)
        now = time.time()
        for _ in range(MAX_FAILURES):
            s.authenticate("bo", PIN, now)
        assert s.authenticate("ana", PIN).ok

    r = _cli("users", "list", "--data-dir", d)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ROLE", "CREATED"]
    assert lines[1].split()[:2] == ["ana", "admin"] and lines[1].rstrip().endswith("-")
    assert lines[2].split()[:2] == ["bo", "operator"]
    assert f"LOCKED until {_hhmmss(now + LOCKOUT_S)} local (5 wrong PINs)" in lines[2]

    r = _cli("users", "reset-pin", "bo", "--pin-stdin", "--data-dir", d, stdin="5555\n")
    assert r.returncode == 0 and "cleared" in r.stdout
    r = _cli("users", "remove", "bo", "--data-dir", d)
    assert r.returncode == 0
    r = _cli("users", "remove", "bo", "--data-dir", d)
    assert r.returncode == 1 and "no user 'bo'" in r.stderr

    with UserStore.in_data_dir(d) as s:
        assert [u["name"] for u in s.list()] == ["ana"]
        assert s.authenticate("ana", PIN).ok
    assert PIN.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "var").iterdir())


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="floorconsole")
    users_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_run_reports_changes_to_the_hook(tmp_path: Path) -> None:
    changes: list[tuple[str, str, dict]] = []

    def hook(kind: str, user: str, detail: dict) -> None:
        changes.append((kind, user, detail))

    out, err = io.StringIO(), io.StringIO()
    d = str(tmp_path)
    for argv, stdin in (
        (("add", "ana", "--role", "ENGINEER", "--pin-stdin"), PIN + "\n"),
        (("reset-pin", "ana", "--pin-stdin"), OTHER + "\n"),
        (("remove", "ana"), ""),
    ):
        rc = users_cli.run(
            _parse("users", *argv, "--data-dir", d),
            on_change=hook,
            stdin=io.StringIO(stdin),
            stdout=out,
            stderr=err,
        )
        assert rc == 0, err.getvalue()
    assert [(k, u) for k, u, _ in changes] == [
        ("user.add", "ana"),
        ("user.reset_pin", "ana"),
        ("user.remove", "ana"),
    ]
    assert changes[0][2]["role"] == "engineer" and "by" in changes[0][2]
    assert PIN not in repr(changes) and OTHER not in repr(changes)
    # a refused change reports nothing
    rc = users_cli.run(
        _parse("users", "remove", "ana", "--data-dir", d), on_change=hook, stdout=out, stderr=err
    )
    assert rc == 1 and len(changes) == 3


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_asks_twice_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([PIN, OTHER, PIN, PIN])
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda prompt="": next(answers))
    err = io.StringIO()
    args = _parse("users", "add", "ana", "--role", "viewer", "--data-dir", str(tmp_path))
    assert users_cli.run(args, stdin=_Tty(), stdout=io.StringIO(), stderr=err) == 1
    assert "differ" in err.getvalue() and PIN not in err.getvalue()
    assert users_cli.run(args, stdin=_Tty(), stdout=io.StringIO(), stderr=err) == 0
    with UserStore.in_data_dir(tmp_path) as s:
        assert s.authenticate("ana", PIN).role is Role.VIEWER


def test_cli_without_a_terminal_needs_pin_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no demo has run for this user
    err = io.StringIO()
    args = _parse("users", "add", "ana", "--role", "viewer", "--data-dir", str(tmp_path))
    assert users_cli.run(args, stdin=io.StringIO(PIN + "\n"), stderr=err) == 1
    assert "--pin-stdin" in err.getvalue()
    err = io.StringIO()
    assert users_cli.run(_parse("users", "list"), stderr=err) == 1
    assert "--data-dir" in err.getvalue()


def test_the_last_admin_cannot_be_removed_or_demoted(tmp_path: Path) -> None:
    with UserStore(tmp_path / "users.db") as store:
        store.add("ana", "admin", "246813")
        store.add("op", "operator", "135790")
        with pytest.raises(UserError, match="last admin"):
            store.remove("ana")
        with pytest.raises(UserError, match="last admin"):
            store.set_role("ana", "engineer")
        store.remove("op")  # others go freely
        store.add("bo", "admin", "975310")
        store.set_role("ana", "engineer")  # another admin is left
        with pytest.raises(UserError, match="last admin"):
            store.remove("bo")
        assert [u["name"] for u in store.list()] == ["ana", "bo"]
