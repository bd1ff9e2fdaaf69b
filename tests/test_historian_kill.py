"""kill -9 of a process writing to the historian loses nothing it reported as committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from floorconsole.adapters.historian import Historian, HistoryReader
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

REPO = Path(__file__).resolve().parents[1]
RATE = 5000
RUN_S = 3.0


def _committed_values(path: Path) -> list[float]:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with HistoryReader(path) as reader:
        return [r.value for r in reader.query("seq", None, None)]


@pytest.mark.slow
@pytest.mark.parametrize("compact_every", [None, 0.1], ids=["as-configured", "compacting"])
def test_kill_9_while_writing_loses_nothing_committed(
    tmp_path: Path, compact_every: float | None
) -> None:
    """Killed while committing chunks (and, the second time, while regrouping them into
    blocks every 0.1 s): everything reported committed is there, once, in order."""
    db = tmp_path / "history.db"
    extra = [] if compact_every is None else ["--compact-every", str(compact_every)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.historian_writer",
            str(db),
            "--rate",
            str(RATE),
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while not any(line.startswith("committed") for line in lines):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "writer reported no commit"
            time.sleep(0.05)
        time.sleep(RUN_S)  # writing at full rate when the kill lands
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert proc.returncode == -signal.SIGKILL

    reported = [int(line.split()[1]) for line in lines if line.startswith("committed ")]
    last_reported = reported[-1]
    assert last_reported >= RATE * RUN_S * 0.5, "the writer fell far behind its rate"

    values = _committed_values(db)
    # Everything reported is there, in order, once; past it at most a few batches more
    # that committed before the kill but were not yet reported, still with no gap.
    assert len(values) >= last_reported + 1
    assert values == [float(i) for i in range(len(values))]
    if compact_every is not None:
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM sample_blocks").fetchone()[0] > 10

    # A second start on the killed file carries on.
    with Historian(db) as historian:
        assert historian.rows_total() == len(values)
        now = time.time()
        more = [
            Sample("seq", float(i), Quality.GOOD, Reason.NONE, now, 0.0)
            for i in range(len(values), len(values) + 1000)
        ]
        historian.append(more)
        assert historian.flush() == 1000
        assert len(historian.query("seq", None, None)) == len(values) + 1000
    assert _committed_values(db) == [float(i) for i in range(len(values) + 1000)]
