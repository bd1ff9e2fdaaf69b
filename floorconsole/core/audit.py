"""The audit trail's hash chain: canonical record form, record hashes, and chain verification.

Each record is hashed over its canonical form, the JSON object

    {"detail": {...}, "kind": K, "prev_hash": P, "seq": N, "target": T, "t_wall": W, "user": U}

with sorted keys and no insignificant whitespace, where P is the hash of the record before it
(GENESIS for the first). Changing any field of any record changes its hash, and so breaks the
link from the record after it. Checkpoints (head seq, count and head hash, written every so
often) catch what the chain alone cannot: records cut off the end.

A chain without a secret proves order and integrity against edits made with ordinary tools;
someone who rewrites every record from the edit onwards, checkpoints included, is caught only
by a copy of a head hash kept elsewhere (the uplink, a printout).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# What is recorded. The uplink carries these words as they are: add, never rename.
LOGIN = "login"
LOGIN_FAILED = "login_failed"
USER_LOCKED = "user_locked"
LOGOUT = "logout"
REFUSED = "refused"  # a command refused for role, PIN or interlock
ALARM_ACK = "alarm_ack"
ALARM_SHELVE = "alarm_shelve"
ALARM_UNSHELVE = "alarm_unshelve"
WRITE = "write"  # detail carries the value before and after
RULE_CHANGE = "rule_change"
RULE_RESET = "rule_reset"  # a latched rule (a trip) released by someone, with why
SNAPSHOT_APPLY = "snapshot_apply"
SNAPSHOT_ROLLBACK = "snapshot_rollback"
MODEL_CHANGE = "model_change"
USER_CHANGE = "user_change"
KIOSK = "kiosk"
SYSTEM = "system"
KINDS = (
    LOGIN,
    LOGIN_FAILED,
    USER_LOCKED,
    LOGOUT,
    REFUSED,
    ALARM_ACK,
    ALARM_SHELVE,
    ALARM_UNSHELVE,
    WRITE,
    RULE_CHANGE,
    RULE_RESET,
    SNAPSHOT_APPLY,
    SNAPSHOT_ROLLBACK,
    MODEL_CHANGE,
    USER_CHANGE,
    KIOSK,
    SYSTEM,
)

# Why verification failed, one word each; VerifyResult.message says it in a sentence.
EDITED = "edited"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
TRUNCATED = "truncated"
REWRITTEN = "rewritten"
BROKEN = "broken"

_RENUMBER_WINDOW = 5  # how far a renumbered record's original seq is looked for


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored record; detail_json is the canonical JSON text of its detail."""

    seq: int
    t_wall: float
    user: str
    kind: str
    target: str
    detail_json: str
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        value = json.loads(self.detail_json)
        return value if isinstance(value, dict) else {"value": value}

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON data (the uplink and `audit list --format json`)."""
        try:
            detail: Any = self.detail
        except ValueError:  # tampered text: show it as it is, verify names the record
            detail = self.detail_json
        return {
            "seq": self.seq,
            "t_wall": self.t_wall,
            "user": self.user,
            "kind": self.kind,
            "target": self.target,
            "detail": detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the chain as it was at one moment: its seq, the record count, its hash."""

    seq: int
    t_wall: float
    count: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a walk of the chain found. records counts every record read; on failure
    first_bad_seq names the first record that is wrong (or missing) and reason says how."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str | None
    message: str
    head_seq: int | None = None
    head_hash: str | None = None
    last_checkpoint_seq: int | None = None
    warnings: tuple[str, ...] = field(default=())


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity; a write of a NaN value must still be recorded.
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )


def canonical_detail(detail: Mapping[str, Any]) -> str:
    """The detail dict as canonical JSON text: what is stored, and what is hashed."""
    return _dumps(_json_safe(detail))


def canonical_record(fields: Mapping[str, Any]) -> str:
    """The canonical text of a record: seq, t_wall, user, kind, target, detail, prev_hash."""
    detail = fields["detail"]
    if isinstance(detail, str):  # canonical text as stored
        detail = json.loads(detail)
    return _dumps(
        {
            "seq": int(fields["seq"]),
            "t_wall": float(fields["t_wall"]),
            "user": str(fields["user"]),
            "kind": str(fields["kind"]),
            "target": str(fields["target"]),
            "detail": _json_safe(detail),
            "prev_hash": str(fields["prev_hash"]),
        }
    )


def record_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical record: fields (seq, t_wall, user, kind, target, detail)
    chained to prev_hash."""
    text = canonical_record({**fields, "prev_hash": prev_hash})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_record(
    seq: int,
    t_wall: float,
    user: str,
    kind: str,
    target: str,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> AuditRecord:
    """A new record, chained to prev_hash. Raises ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of {', '.join(KINDS)}")
    detail_json = canonical_detail(detail)
    fields = {
        "seq": seq,
        "t_wall": float(t_wall),
        "user": user,
        "kind": kind,
        "target": target,
        "detail": detail_json,
    }
    return AuditRecord(
        seq,
        float(t_wall),
        user,
        kind,
        target,
        detail_json,
        prev_hash,
        record_hash(prev_hash, fields),
    )


def _content_hash(r: AuditRecord, seq: int | None = None) -> str | None:
    """The hash r's contents call for (with another seq, if given); None if unreadable."""
    try:
        return record_hash(
            r.prev_hash,
            {
                "seq": r.seq if seq is None else seq,
                "t_wall": r.t_wall,
                "user": r.user,
                "kind": r.kind,
                "target": r.target,
                "detail": r.detail_json,
            },
        )
    except (ValueError, TypeError):
        return None


def _bad(records: int, seq: int, reason: str, message: str) -> VerifyResult:
    return VerifyResult(False, records, seq, reason, message)


def _check_chain(rows: Sequence[AuditRecord]) -> VerifyResult | None:
    """The first record that breaks the chain, or None."""
    n = len(rows)
    by_hash = {r.hash: r.seq for r in rows}
    prev: AuditRecord | None = None
    for i, r in enumerate(rows):
        expected = 1 if prev is None else prev.seq + 1
        if prev is not None and r.seq == prev.seq:
            return _bad(
                n,
                r.seq,
                INSERTED,
                f"record {r.seq} appears twice: a record was inserted with the seq of another",
            )
        if r.seq < expected:
            return _bad(
                n,
                r.seq,
                REORDERED,
                f"record {r.seq} comes after record {prev.seq if prev else '(none)'}: out of order",
            )
        if r.seq > expected:
            missing = (
                f"record {expected} is"
                if r.seq == expected + 1
                else f"records {expected} to {r.seq - 1} are"
            )
            where = "at the start" if prev is None else f"after record {prev.seq}"
            return _bad(
                n,
                expected,
                DELETED,
                f"{missing} missing (deleted) {where}: the next record is {r.seq}",
            )
        want_prev = GENESIS if prev is None else prev.hash
        content_ok = _content_hash(r) == r.hash
        link_ok = r.prev_hash == want_prev
        if content_ok and link_ok:
            prev = r
            continue
        if not link_ok and i >= 2 and r.prev_hash == rows[i - 2].hash and prev is not None:
            return _bad(
                n,
                prev.seq,
                INSERTED,
                f"record {prev.seq} was inserted: record {r.seq} chains to record "
                f"{rows[i - 2].seq}, not to {prev.seq}",
            )
        if not link_ok and r.prev_hash in by_hash and by_hash[r.prev_hash] != r.seq - 1:
            return _bad(
                n,
                r.seq,
                REORDERED,
                f"record {r.seq} is out of place (reordered): it holds the record that "
                f"followed record {by_hash[r.prev_hash]}",
            )
        if not content_ok:
            moved = _renumbered_from(r)
            if moved is not None:
                how = "deleted before it" if moved > r.seq else "inserted before it"
                return _bad(
                    n,
                    r.seq,
                    DELETED if moved > r.seq else INSERTED,
                    f"record {r.seq} was record {moved}: records were {how} and the "
                    "rest renumbered",
                )
            if link_ok:
                return _bad(
                    n,
                    r.seq,
                    EDITED,
                    f"record {r.seq} was edited: its contents do not match its hash",
                )
            return _bad(
                n,
                r.seq,
                EDITED,
                f"record {r.seq} was edited or forged: neither its "
                "contents nor its link to the record before match",
            )
        if prev is None:
            return _bad(
                n,
                r.seq,
                BROKEN,
                f"record {r.seq} does not start the chain: its "
                "prev_hash is not the genesis hash (records before it "
                "removed, or it was forged)",
            )
        return _bad(
            n,
            prev.seq,
            REWRITTEN,
            f"record {prev.seq} was rewritten (its hash recomputed): record {r.seq} "
            f"chains to a different record {prev.seq}",
        )
    return None


def _renumbered_from(r: AuditRecord) -> int | None:
    for d in range(1, _RENUMBER_WINDOW + 1):
        for seq in (r.seq + d, r.seq - d):
            if seq > 0 and _content_hash(r, seq) == r.hash:
                return seq
    return None


def _check_checkpoints(
    rows: Sequence[AuditRecord], checkpoints: Sequence[Checkpoint]
) -> VerifyResult | None:
    """The first checkpoint the records do not bear out, or None."""
    n = len(rows)
    hashes = {r.seq: r.hash for r in rows}
    last_seq = rows[-1].seq if rows else 0
    good = 0
    for cp in checkpoints:
        if cp.seq > last_seq:
            final = max(checkpoints, key=lambda c: c.seq)
            ends = f"ends at record {last_seq}" if rows else "is empty"
            return _bad(
                n,
                last_seq + 1,
                TRUNCATED,
                f"the log was truncated: it {ends}, but the checkpoint of "
                f"{_when(final.t_wall)} UTC counts {final.count} records (head "
                f"{final.head_hash[:12]}): {final.seq - last_seq} record(s) missing "
                "from the end",
            )
        have = hashes.get(cp.seq)
        if have is None:
            continue  # a gap: the chain walk names it
        if have != cp.head_hash:
            return _bad(
                n,
                cp.seq,
                REWRITTEN,
                f"record {cp.seq} is not the one the checkpoint of {_when(cp.t_wall)} UTC "
                f"recorded (head {cp.head_hash[:12]}): records after {good} were "
                "rewritten",
            )
        good = cp.seq
    return None


def verify_chain(rows: Iterable[AuditRecord], checkpoints: Iterable[Checkpoint]) -> VerifyResult:
    """Walk the records in seq order and report the first bad one: edited (contents differ from
    the hash), deleted (a seq missing), inserted or reordered (a seq out of order or a link to
    the wrong record), or truncated (a checkpoint counts more records than there are)."""
    rows = list(rows)
    cps = sorted(checkpoints, key=lambda c: c.seq)
    chain = _check_chain(rows)
    marks = _check_checkpoints(rows, cps)
    head = rows[-1] if rows else None
    last_cp = cps[-1].seq if cps else None
    found = [x for x in (chain, marks) if x is not None]
    if found:
        first = min(found, key=lambda x: x.first_bad_seq or 0)
        return VerifyResult(
            False,
            len(rows),
            first.first_bad_seq,
            first.reason,
            first.message,
            head.seq if head else None,
            head.hash if head else None,
            last_cp,
        )
    return VerifyResult(
        True,
        len(rows),
        None,
        None,
        f"{len(rows)} records, head {head.hash[:12] if head else GENESIS[:12]}",
        head.seq if head else None,
        head.hash if head else GENESIS,
        last_cp,
    )


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
