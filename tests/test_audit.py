"""The audit trail: hash chain, append-only file, tamper detection on 10,000 records, CLI."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from floorconsole.adapters.audit_log import FILE_NAME, TRIGGERS, AuditError, AuditLog
from floorconsole.cli import audit as audit_cli
from floorconsole.core import audit
from floorconsole.core.audit import GENESIS, Checkpoint, record_hash, verify_chain

N = 10_000
T0 = 1_780_000_000.0
KINDS_CYCLE = ("login", "write", "alarm_ack", "alarm_shelve", "rule_change", "system")


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed audit.db of 10,000 real chain records (one transaction, for speed)."""
    d = tmp_path_factory.mktemp("audit")
    with AuditLog.in_data_dir(d) as log:
        log.append_many(
            (
                KINDS_CYCLE[i % len(KINDS_CYCLE)],
                f"user{i % 7}",
                f"drive{i % 3}.speed",
                {"before": float(i), "after": i + 0.5, "note": f"step {i}"},
                T0 + i,
            )
            for i in range(1, N + 1)
        )
    assert not (d / f"{FILE_NAME}-wal").exists()
    return d / FILE_NAME


def tampered(trail: Path, tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    """A copy of the trail opened as an attacker would: raw sqlite3, triggers dropped."""
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(trail, d / FILE_NAME)
    conn = sqlite3.connect(d / FILE_NAME, isolation_level=None)
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER {t}")
    return d, conn


def verify(d: Path) -> audit.VerifyResult:
    with AuditLog.in_data_dir(d, readonly=True) as log:
        return log.verify()


def row(conn: sqlite3.Connection, seq: int) -> tuple[object, ...]:
    r = conn.execute(
        "SELECT seq, t_wall, user, kind, target, detail, prev_hash, hash "
        "FROM audit_records WHERE seq = ?",
        (seq,),
    ).fetchone()
    assert r is not None
    return tuple(r)


def test_untouched_trail_verifies(trail: Path) -> None:
    r = verify(trail.parent)
    assert r.ok, r.message
    assert (r.records, r.head_seq, r.last_checkpoint_seq) == (N, N, N)
    assert r.first_bad_seq is None and r.warnings == ()


def test_triggers_refuse_update_and_delete(trail: Path, tmp_path: Path) -> None:
    shutil.copy(trail, tmp_path / FILE_NAME)
    conn = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_records SET user = 'mallory' WHERE seq = 10")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_records WHERE seq > 9000")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_checkpoints")
    conn.close()
    assert verify(tmp_path).ok


def test_edit_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    conn.execute(
        'UPDATE audit_records SET detail = \'{"after":999.0,"before":5000.0,'
        '"note":"step 5000"}\' WHERE seq = 5000'
    )
    conn.close()
    r = verify(d)
    assert not r.ok
    assert (r.first_bad_seq, r.reason) == (5000, audit.EDITED)
    assert "record 5000" in r.message
    assert any("trigger" in w for w in r.warnings)


def test_edit_with_hash_recomputed_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    seq, t, user, kind, target, detail, prev, _ = row(conn, 4321)
    forged = record_hash(
        str(prev),
        {
            "seq": seq,
            "t_wall": t,
            "user": "mallory",
            "kind": kind,
            "target": target,
            "detail": detail,
        },
    )
    conn.execute("UPDATE audit_records SET user = 'mallory', hash = ? WHERE seq = 4321", (forged,))
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 4321, audit.REWRITTEN)


def test_insert_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    # Make room at 5000 (two steps: seq is the primary key), then forge a record that chains
    # correctly to 4999, as someone who knows the algorithm would.
    conn.execute("BEGIN")
    conn.execute("UPDATE audit_records SET seq = -seq WHERE seq >= 5000")
    conn.execute("UPDATE audit_records SET seq = 1 - seq WHERE seq < 0")
    prev = str(row(conn, 4999)[7])
    detail = {"before": 1.0, "after": 3000.0}
    fields = {
        "seq": 5000,
        "t_wall": T0 + 4999.5,
        "user": "mallory",
        "kind": "write",
        "target": "drive1.speed",
        "detail": detail,
    }
    forged = audit.make_record(5000, T0 + 4999.5, "mallory", "write", "drive1.speed", detail, prev)
    assert forged.hash == record_hash(prev, fields)
    conn.execute(
        "INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            forged.seq,
            forged.t_wall,
            forged.user,
            forged.kind,
            forged.target,
            forged.detail_json,
            forged.prev_hash,
            forged.hash,
        ),
    )
    conn.execute("COMMIT")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 5000, audit.INSERTED)
    assert "record 5000 was inserted" in r.message


def test_delete_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    conn.execute("DELETE FROM audit_records WHERE seq = 7777")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 7777, audit.DELETED)
    assert "record 7777 is missing" in r.message and "after record 7776" in r.message


def test_delete_and_renumber_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    conn.execute("BEGIN")
    conn.execute("DELETE FROM audit_records WHERE seq = 7777")
    conn.execute("UPDATE audit_records SET seq = -seq WHERE seq > 7777")
    conn.execute("UPDATE audit_records SET seq = -seq - 1 WHERE seq < 0")
    conn.execute("COMMIT")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 7777, audit.DELETED)
    assert "renumbered" in r.message


def test_reorder_is_found(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    a, b = row(conn, 3000), row(conn, 3001)
    conn.execute("BEGIN")
    for seq, other in ((3000, b), (3001, a)):
        conn.execute(
            "UPDATE audit_records SET t_wall = ?, user = ?, kind = ?, target = ?, "
            "detail = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (*other[1:], seq),
        )
    conn.execute("COMMIT")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 3000, audit.REORDERED)


def test_truncation_is_found_by_the_checkpoint(trail: Path, tmp_path: Path) -> None:
    d, conn = tampered(trail, tmp_path)
    conn.execute("DELETE FROM audit_records WHERE seq > 9950")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 9951, audit.TRUNCATED)
    assert "truncated" in r.message and "10000 records" in r.message
    assert "50 record(s) missing" in r.message


def test_rewritten_tail_is_found_by_the_checkpoint(trail: Path, tmp_path: Path) -> None:
    # Rewriting every record from 9901 on, hashes and links recomputed: only a checkpoint
    # taken before shows it.
    d, conn = tampered(trail, tmp_path)
    conn.execute("BEGIN")
    prev = str(row(conn, 9900)[7])
    for seq in range(9901, N + 1):
        _, t, user, kind, target, detail, _, _ = row(conn, seq)
        user = "mallory" if seq == 9950 else user
        h = record_hash(
            prev,
            {
                "seq": seq,
                "t_wall": t,
                "user": user,
                "kind": kind,
                "target": target,
                "detail": detail,
            },
        )
        conn.execute(
            "UPDATE audit_records SET user = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (user, prev, h, seq),
        )
        prev = h
    conn.execute("COMMIT")
    conn.close()
    r = verify(d)
    assert (r.ok, r.first_bad_seq, r.reason) == (False, N, audit.REWRITTEN)
    assert "after 9900" in r.message


def test_cli_verify_names_the_record(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, conn = tampered(trail, tmp_path)
    conn.execute("UPDATE audit_records SET target = 'drive9.speed' WHERE seq = 5000")
    conn.close()
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["audit", "verify", "--data-dir", str(d)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("audit FAILED at record 5000: record 5000 was edited")

    args = parser.parse_args(["audit", "verify", "--data-dir", str(trail.parent)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"audit ok: {N} records, head ")
    assert out.rstrip().endswith(f"last checkpoint seq {N}")


def test_cli_list_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditLog.in_data_dir(tmp_path) as log:
        log.append("login", "ann", "console", {"role": "engineer"}, t_wall=1000.0)
        log.append("write", "ann", "drive1.speed", {"before": 10.0, "after": 12.5}, 2000.0)
        log.append("alarm_ack", "bob", "motor1.overtemp", {}, 3000.0)
    out = audit_cli.audit_list(tmp_path, user="ann", now=2500.0, since="1000s")
    assert "drive1.speed" in out and "console" not in out and "bob" not in out
    assert audit_cli.audit_list(tmp_path, kind="alarm_ack").count("\n") == 1
    with AuditLog.in_data_dir(tmp_path, readonly=True) as log:
        assert [r["seq"] for r in log.query()] == [3, 2, 1]
        assert [r["seq"] for r in log.query(text="OVERTEMP")] == [3]
        assert [r["seq"] for r in log.query(until=2000.0)] == [1]
        assert log.query(kind="write")[0]["detail"] == {"before": 10.0, "after": 12.5}
    with pytest.raises(audit_cli.AuditCommandError, match="no audit trail"):
        audit_cli.audit_list(tmp_path / "nope")
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["audit", "list", "--data-dir", str(tmp_path), "--since", "soon"])
    assert args.func(args) == 1
    assert "neither a duration" in capsys.readouterr().err


def test_two_writers_keep_one_chain(tmp_path: Path) -> None:
    a, b = AuditLog.in_data_dir(tmp_path), AuditLog.in_data_dir(tmp_path)
    seqs: list[int] = []

    def write(log: AuditLog, who: str) -> None:
        for i in range(150):
            seqs.append(log.append("write", who, "drive1.speed", {"i": i}))

    threads = [
        threading.Thread(target=write, args=(log, who))
        for log, who in ((a, "engine"), (b, "users-cli"))
    ]
    for t in threads:
        t.start()
    # A third writer in another process, at the same time.
    code = (
        "import sys; from floorconsole.adapters.audit_log import AuditLog\n"
        "log = AuditLog.in_data_dir(sys.argv[1])\n"
        "[log.append('user_change', 'admin', 'ann', {'i': i}) for i in range(100)]\n"
        "log.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    for t in threads:
        t.join()
    a.close()
    b.close()
    assert sorted(seqs) == sorted(set(seqs))
    r = verify(tmp_path)
    assert r.ok, r.message
    assert r.records == 400 and r.last_checkpoint_seq == 400


def test_append_refuses_unknown_kind_and_closed_log(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    with pytest.raises(ValueError, match="not one of"):
        log.append("coffee", "ann", "kitchen", {})
    assert log.append("system", "floorconsole", "engine", {"event": "start"}) == 1
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append("system", "floorconsole", "engine", {"event": "late"})
    with (
        AuditLog.in_data_dir(tmp_path, readonly=True) as ro,
        pytest.raises(AuditError, match="read-only"),
    ):
        ro.append("system", "floorconsole", "engine", {})


def test_canonical_form() -> None:
    r = audit.make_record(
        1, 1700000000, "ann", "write", "drive1.speed", {"z": float("nan"), "a": (1, 2)}, GENESIS
    )
    assert audit.canonical_record(
        {
            "seq": 1,
            "t_wall": 1700000000.0,
            "user": "ann",
            "kind": "write",
            "target": "drive1.speed",
            "detail": r.detail_json,
            "prev_hash": GENESIS,
        }
    ) == (
        '{"detail":{"a":[1,2],"z":"nan"},"kind":"write","prev_hash":"'
        + GENESIS
        + '","seq":1,"t_wall":1700000000.0,"target":"drive1.speed","user":"ann"}'
    )
    assert verify_chain([r], []).ok


def test_empty_trail_with_a_checkpoint_is_truncated() -> None:
    r = verify_chain([], [Checkpoint(100, T0, 100, "ab" * 32)])
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 1, audit.TRUNCATED)
    assert verify_chain([], []).ok
