"""`floorconsole users add|list|remove|reset-pin`: the parser and the commands; no Textual.

A PIN is read with getpass (twice, they must match) from a terminal, or as one line from
stdin with --pin-stdin (scripts, tests). It is never echoed, logged or put in a message.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from floorconsole.adapters.users import DB_NAME, UserError, UserStore
from floorconsole.cli.args import CommandParser, add_data_dir_options, data_dir_of
from floorconsole.core.auth import Role, check_pin_format
from floorconsole.core.config import PlantError

# Called after a change is committed: (kind, user name, detail). Kinds: "user.add"
# (detail: role, by), "user.remove" (by), "user.reset_pin" (by). Never carries a PIN.
ChangeHook = Callable[[str, str, dict[str, Any]], None]


class UsersCommandError(ValueError):
    """A users command that cannot be done; the message is one line for the user."""


def add_parser(subparsers: Any, *, on_change: ChangeHook | None = None) -> argparse.ArgumentParser:
    """Register `users` and its actions on the subparsers of the floorconsole parser."""
    roles = ", ".join(str(r) for r in Role)
    u = subparsers.add_parser(
        "users",
        help="users, roles and PINs: add, list, remove, reset-pin",
        description="Who may sign in to the console and with which role "
        f"({roles}). Kept in users.db in the data directory.",
    )
    u.set_defaults(func=functools.partial(run, on_change=on_change), users_action=None)
    usub = u.add_subparsers(metavar="ACTION")
    for name, helptext in (
        ("add", "a new user with a role and a PIN (4 to 12 digits)"),
        ("list", "every user: role, created, wrong PINs and lock"),
        ("remove", "remove a user"),
        ("reset-pin", "a new PIN for a user; also lifts a lock"),
    ):
        sp = usub.add_parser(name, help=helptext, description=helptext)
        if name != "list":
            sp.add_argument("name", metavar="NAME")
        if name == "add":
            sp.add_argument("--role", required=True, metavar="ROLE", help=f"one of {roles}")
        if name in ("add", "reset-pin"):
            sp.add_argument(
                "--pin-stdin",
                action="store_true",
                help="read the PIN as one line from stdin instead of asking twice on the terminal",
            )
        add_data_dir_options(sp)
        sp.set_defaults(users_action=name)
    return u


def run(
    args: argparse.Namespace,
    *,
    on_change: ChangeHook | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Do one users action: 0 done, 1 a user error (one line on stderr), 2 no action given."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    action = getattr(args, "users_action", None)
    if action is None:
        print(
            "floorconsole users: give an action: add, list, remove or reset-pin (see --help)",
            file=stderr,
        )
        return 2
    try:
        data_dir = _data_dir(args)
        if action == "list":
            out = users_list(data_dir)
        elif action == "add":
            out = users_add(
                data_dir,
                args.name,
                args.role,
                _read_pin(args, stdin, args.name),
                on_change=on_change,
            )
        elif action == "remove":
            out = users_remove(data_dir, args.name, on_change=on_change)
        elif action == "reset-pin":
            with open_store(data_dir) as store:  # refuse an unknown name before asking
                if store.get(args.name) is None:
                    raise UsersCommandError(
                        f"no user {args.name!r}; `floorconsole users list` shows who there is"
                    )
            out = users_reset_pin(
                data_dir, args.name, _read_pin(args, stdin, args.name), on_change=on_change
            )
        else:
            raise UsersCommandError(f"unknown users action {action!r}")
    except (UsersCommandError, UserError) as e:
        print(f"floorconsole: {e}", file=stderr)
        return 1
    except PlantError as e:
        for p in e.problems:
            print(f"{e.source}: {p}", file=stderr)
        return 1
    print(out, file=stdout)
    return 0


# -- the commands, as functions returning text ----------------------------------------------


def open_store(data_dir: str | Path, *, create: bool = False) -> UserStore:
    """The user store of a data directory. Without create, a missing one is an error (a typo
    in --data-dir must not leave an empty database behind)."""
    path = Path(data_dir) / DB_NAME
    if not create and not path.exists():
        raise UsersCommandError(
            f"no user database at {path}: `floorconsole users add NAME "
            "--role admin --data-dir ...` creates it"
        )
    try:
        return UserStore(path)
    except OSError as e:
        raise UsersCommandError(f"cannot open {path}: {e.strerror}") from None


def users_add(
    data_dir: str | Path, name: str, role: str, pin: str, *, on_change: ChangeHook | None = None
) -> str:
    with open_store(data_dir, create=True) as store:
        store.add(name, role, pin)
        user = store.get(name)
    assert user is not None
    _changed(on_change, "user.add", name, {"role": str(user["role"])})
    return f"added {name} ({user['role']}) to {Path(data_dir) / DB_NAME}"


def users_remove(data_dir: str | Path, name: str, *, on_change: ChangeHook | None = None) -> str:
    with open_store(data_dir) as store:
        store.remove(name)
    _changed(on_change, "user.remove", name, {})
    return f"removed {name}"


def users_reset_pin(
    data_dir: str | Path, name: str, pin: str, *, on_change: ChangeHook | None = None
) -> str:
    with open_store(data_dir) as store:
        before = store.get(name)
        store.reset_pin(name, pin)
    lifted = before is not None and before["failures"] > 0
    _changed(on_change, "user.reset_pin", name, {"cleared_failures": lifted})
    return f"new PIN set for {name}" + ("; wrong-PIN count and lock cleared" if lifted else "")


def users_list(data_dir: str | Path, *, now_wall: float | None = None) -> str:
    """name, role, created (UTC), wrong PINs / lock; one line each."""
    path = Path(data_dir) / DB_NAME
    if not path.exists():
        return f"no users yet ({path} does not exist)"
    now = time.time() if now_wall is None else now_wall
    with open_store(data_dir) as store:
        users = store.list()
    if not users:
        return f"no users yet in {path}"
    name_w = max(len("NAME"), *(len(u["name"]) for u in users))
    lines = [f"{'NAME':<{name_w}}  {'ROLE':<8}  {'CREATED (UTC)':<19}  FAILURES / LOCK"]
    for u in users:
        lines.append(
            f"{u['name']:<{name_w}}  {str(u['role']):<8}  "
            f"{_utc(u['created_wall'])}  {_lock_text(u, now)}"
        )
    return "\n".join(lines)


def _lock_text(user: dict[str, Any], now: float) -> str:
    until = user["locked_until_wall"]
    if until is not None and now < until:
        local = datetime.fromtimestamp(until).strftime("%H:%M:%S")
        return f"LOCKED until {local} local ({user['failures']} wrong PINs)"
    if until is not None:
        return "-  (lock ran out)"  # the count starts again at the next wrong PIN
    if user["failures"]:
        return f"{user['failures']} wrong PIN(s) in a row"
    return "-"


def _changed(hook: ChangeHook | None, kind: str, name: str, detail: dict[str, Any]) -> None:
    if hook is not None:
        hook(kind, name, {**detail, "by": _os_user()})


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: the audit still gets a record
        return "unknown"


def _read_pin(args: argparse.Namespace, stdin: TextIO, name: str) -> str:
    if args.pin_stdin:
        line = stdin.readline()
        if not line:
            raise UsersCommandError("--pin-stdin: stdin was empty; give the PIN as one line")
        return _checked(line.rstrip("\r\n"))
    if not stdin.isatty():
        raise UsersCommandError("stdin is not a terminal: give --pin-stdin to read the PIN from it")
    pin = _checked(getpass.getpass(f"new PIN for {name}: "))  # before asking a second time
    if getpass.getpass("same PIN again: ") != pin:
        raise UsersCommandError("the two PINs differ; nothing changed")
    return pin


def _checked(pin: str) -> str:
    problem = check_pin_format(pin)
    if problem:
        raise UsersCommandError(f"{problem}; nothing changed")
    return pin


def _data_dir(args: argparse.Namespace) -> Path:
    # Only `users list` may read the demo's directory unasked; a change names its directory.
    return data_dir_of(
        args, UsersCommandError, demo_fallback=getattr(args, "users_action", None) == "list"
    )


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m floorconsole.cli.users users ...`, the same as `floorconsole users`."""
    parser = CommandParser(prog="floorconsole")
    add_parser(parser.add_subparsers(metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
