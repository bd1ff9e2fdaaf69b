"""kill -9 of the engine while it records 5,000 samples/s: nothing committed is lost, the
database passes integrity_check, and the next start carries on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from floorconsole.adapters.modbus_server import ModbusDeviceServer
from tests.support.history import stored_count

SIGNALS = 50
POLL_MS = 10  # 50 signals every 10 ms: 5,000 samples/s


def plant(tmp: Path, port: int) -> Path:
    lines = [
        f'[edge]\nid = "kill-test"\ndata_dir = "{tmp / "data"}"\n',
        f'[[devices]]\nid = "dev"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
        f'port = {port}\npoll = "{POLL_MS}ms"\ntimeout = "500ms"\n',
    ]
    lines += [
        f'[[signals]]\nid = "a.s{k}"\ndevice = "dev"\naddress = "hr:{k}"\ntype = "uint16"\n'
        for k in range(SIGNALS)
    ]
    path = tmp / "plant.toml"
    path.write_text("\n".join(lines))
    return path


def committed_rows(db: Path) -> int:
    return stored_count(db)


def start_engine(plant_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant_file), "--headless"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_rows(db: Path, at_least: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        if db.exists():
            try:
                n = committed_rows(db)
            except sqlite3.OperationalError:
                n = 0
            if n >= at_least:
                return n
        time.sleep(0.1)
    raise AssertionError(f"only {n} rows after {timeout} s, wanted {at_least}")


def test_kill_9_loses_nothing_committed(modbus_server: ModbusDeviceServer, tmp_path: Path) -> None:
    modbus_server.set("hr", 0, list(range(SIGNALS)))
    plant_file = plant(tmp_path, modbus_server.port)
    db = tmp_path / "data" / "history.db"
    proc = start_engine(plant_file)
    try:
        wait_rows(db, 5_000)
        t0, n0 = time.monotonic(), committed_rows(db)
        time.sleep(2.0)
        rate = (committed_rows(db) - n0) / (time.monotonic() - t0)
        assert rate > 3_500, f"engine recorded only {rate:.0f} samples/s"
        seen = committed_rows(db)  # committed, as any reader can see
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = committed_rows(db)
    assert after >= seen, f"{seen - after} committed samples lost"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    proc = start_engine(plant_file)  # the lock died with the process: the next start runs
    try:
        wait_rows(db, after + 2_000)
    finally:
        proc.terminate()
        proc.wait(10)
    final = committed_rows(db)
    assert final >= after + 2_000
