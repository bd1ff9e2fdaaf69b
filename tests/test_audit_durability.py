"""The engine's audit trail (synchronous=NORMAL): a record committed before the action it
records survives the process being killed; sync() puts it on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from floorconsole.adapters.audit_log import AuditLog

WRITER = """
import sys
from floorconsole.adapters.audit_log import AuditLog
log = AuditLog.in_data_dir(sys.argv[1], synchronous="NORMAL")
i = 0
while True:
    i += 1
    seq = log.append("write", "rule trip", "drive1 co:10", {"phase": "request", "n": i})
    print(seq, flush=True)  # the action would run now: its record is committed
"""


def test_records_committed_before_a_kill_9_are_all_there(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 500 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert seen >= 500, "the writer was too slow"
    with AuditLog.in_data_dir(tmp_path, readonly=True) as log:
        result = log.verify()
        assert result.ok, result.message
        assert log.head()[0] >= seen  # every record reported committed is there


def test_sync_checkpoints_only_when_something_was_appended(tmp_path: Path) -> None:
    with AuditLog.in_data_dir(tmp_path, synchronous="NORMAL") as log:
        assert log.sync() is False
        log.append("system", "engine", "engine started", {})
        assert log.sync() is True
        assert log.sync() is False
    with AuditLog.in_data_dir(tmp_path, readonly=True) as log:
        assert log.head()[0] == 1 and log.verify().ok


def test_try_append_never_waits_for_a_busy_trail(tmp_path: Path) -> None:
    import sqlite3

    with AuditLog.in_data_dir(tmp_path, synchronous="NORMAL") as log:
        assert log.try_append("system", "engine", "x", {}) == 1
        other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        t0 = time.perf_counter()
        assert log.try_append("write", "rule r", "drive1 co:10", {"phase": "request"}) is None
        assert time.perf_counter() - t0 < 0.5  # at once, not after the 10 s busy timeout
        other.execute("ROLLBACK")
        other.close()
        assert log.try_append("write", "rule r", "drive1 co:10", {"phase": "request"}) == 2
        assert log.verify().ok
