"""`floorconsole audit list|verify`: read the audit trail of a data directory, read-only (works
while an engine runs: no data-directory lock is taken)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from floorconsole.adapters.audit_log import FILE_NAME, AuditError, AuditLog
from floorconsole.cli.args import add_data_dir_options, data_dir_of, zone_of
from floorconsole.cli.snapshot import SnapshotCommandError, parse_when
from floorconsole.core.audit import KINDS
from floorconsole.core.history_format import zone


class AuditCommandError(ValueError):
    """An audit command that cannot be done; the message is one line for the user."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `audit list|verify` on the CLI's subparsers."""
    a = subparsers.add_parser(
        "audit",
        help="the audit trail: list records, verify the chain",
        description="Who did what, when: logins, acknowledgements, "
        "writes, rule and snapshot changes, in a hash chain.",
    )
    asub = a.add_subparsers(metavar="ACTION")
    ls = asub.add_parser(
        "list",
        help="records, newest first, with filters",
        description="Audit records, newest first.",
    )
    ls.add_argument("--user", help="only this user's records")
    ls.add_argument(
        "--kind", choices=KINDS, metavar="KIND", help=f"only this kind: {', '.join(KINDS)}"
    )
    ls.add_argument("--since", help="from: a duration back from now (10m, 2h, 1d) or an ISO time")
    ls.add_argument("--until", help="to: a duration back from now or an ISO time")
    ls.add_argument("--text", help="only records with this text in user, target or detail")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    v = asub.add_parser(
        "verify",
        help="check the hash chain; name the first bad record",
        description="Walk the whole chain and its checkpoints. Exit status 1 "
        "and the first edited, inserted, deleted, reordered or "
        "missing record if it is not intact.",
    )
    for sp, action in ((ls, "list"), (v, "verify")):
        add_data_dir_options(sp)
        sp.set_defaults(func=run, audit_action=action)
    a.set_defaults(func=lambda args: (a.print_help(), 2)[1])
    return a


def run(args: argparse.Namespace) -> int:
    """Do `audit list` or `audit verify`; a user error is one line on stderr and status 1."""
    try:
        data_dir = _data_dir(args)
        if args.audit_action == "verify":
            ok, text = audit_verify(data_dir)
            print(text, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        print(
            audit_list(
                data_dir,
                user=args.user,
                kind=args.kind,
                since=args.since,
                until=args.until,
                text=args.text,
                limit=args.limit,
                fmt=args.format,
                zone=zone_of(args),
            )
        )
        return 0
    except AuditCommandError as e:
        print(f"floorconsole: {e}", file=sys.stderr)
        return 1


def open_log(data_dir: str | Path) -> AuditLog:
    path = Path(data_dir) / FILE_NAME
    if not path.exists():
        raise AuditCommandError(
            f"no audit trail at {path}: has an engine run with this data directory?"
        )
    try:
        return AuditLog(path, readonly=True)
    except AuditError as e:
        raise AuditCommandError(str(e)) from None


def audit_verify(data_dir: str | Path) -> tuple[bool, str]:
    """(intact, one line, plus any warnings): 'audit ok: ...' or 'audit FAILED at record ...'."""
    with open_log(data_dir) as log:
        r = log.verify()
    if r.ok:
        head = (r.head_hash or "")[:12]
        cp = r.last_checkpoint_seq if r.last_checkpoint_seq is not None else "none"
        lines = [f"audit ok: {r.records} records, head {head}, last checkpoint seq {cp}"]
    else:
        lines = [f"audit FAILED at record {r.first_bad_seq}: {r.message}"]
    lines += [f"warning: {w}" for w in r.warnings]
    return r.ok, "\n".join(lines)


def audit_list(
    data_dir: str | Path,
    *,
    user: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    text: str | None = None,
    limit: int = 100,
    fmt: str = "text",
    now: float | None = None,
    zone: str = "UTC",
) -> str:
    """Records newest first, as aligned text lines or a JSON array."""
    now = time.time() if now is None else now
    try:
        t0 = parse_when(since, now) if since else None
        t1 = parse_when(until, now) if until else None
    except SnapshotCommandError as e:
        raise AuditCommandError(str(e)) from None
    if limit < 1:
        raise AuditCommandError(f"--limit must be at least 1, not {limit}")
    with open_log(data_dir) as log:
        rows = log.query(since=t0, until=t1, user=user, kind=kind, text=text, limit=limit)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1)
    if not rows:
        return "no audit records match"
    user_w = min(max(len("USER"), *(len(r["user"]) for r in rows)), 16)
    head = f"TIME ({zone})"
    lines = [f"{'SEQ':>7}  {head:<19}  {'USER':<{user_w}}  {'KIND':<17}  TARGET  DETAIL"]
    for r in rows:
        detail = (
            r["detail"]
            if isinstance(r["detail"], str)
            else json.dumps(r["detail"], ensure_ascii=False, separators=(", ", ": "))
        )
        lines.append(
            f"{r['seq']:>7}  {_when(r['t_wall'], zone)}  {r['user'][:user_w]:<{user_w}}  "
            f"{r['kind']:<17}  {r['target']}  {detail}"
        )
    return "\n".join(lines)


def _data_dir(args: argparse.Namespace) -> Path:
    return data_dir_of(args, AuditCommandError, demo_fallback=True)  # read-only


def _when(t: float, zone_name: str = "UTC") -> str:
    return datetime.fromtimestamp(t, zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S")
