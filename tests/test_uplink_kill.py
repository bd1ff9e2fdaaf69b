"""kill -9 of the engine side (historian + outbox + uplink in tests/support/uplink_driver.py)
during a broker outage, and a start again: every message still reaches the broker.

FLOORCONSOLE_UPLINK_OUTAGE_S shortens the 60 s outage for quick local runs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.uplink_receiver import Receiver
from floorconsole.adapters.broker import MosquittoBroker
from tests.test_uplink import caught_up, received_samples, stored_samples, until

REPO = Path(__file__).resolve().parents[1]
OUTAGE_S = float(os.environ.get("FLOORCONSOLE_UPLINK_OUTAGE_S", "60"))
EDGE = "edge-kill"
HOST = "plant-historian"
INFLIGHT = 20


class Driver:
    """The driver process and what it last printed."""

    def __init__(self, data_dir: Path, broker: MosquittoBroker) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.uplink_driver",
                str(data_dir),
                "--port",
                str(broker.port),
                "--edge",
                EDGE,
                "--host-id",
                HOST,
                "--inflight",
                str(INFLIGHT),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def last(self, tag: str = "stats") -> dict[str, Any]:
        for line in reversed(self.lines):
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1 :])
        return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL

    def terminate(self, timeout: float = 60.0) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and not self.alive() else ""


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    made: list[Driver] = []
    yield made
    for d in made:
        d.stop()


def _outbox_left(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        left = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        next_seq = conn.execute("SELECT value FROM outbox_meta WHERE key = 'next_seq'").fetchone()[
            0
        ]
    return left, next_seq


@pytest.mark.slow
@pytest.mark.waits
def test_kill_9_during_the_outage_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker, drivers: list[Driver]
) -> None:
    receiver = Receiver(mosquitto.host, mosquitto.port, host_id=HOST, keep=True).start()
    try:
        first = Driver(tmp_path, mosquitto)
        drivers.append(first)
        until(lambda: receiver.received(EDGE) >= 10, timeout=20, what="live data")
        mosquitto.stop()
        time.sleep(OUTAGE_S / 2)
        held = first.last()
        assert held["state"] == "down" and held["backlog_rows"] > 0, held
        first.kill9()

        second = Driver(tmp_path, mosquitto)
        drivers.append(second)
        until(lambda: bool(second.last()), timeout=20, what="the second run")
        assert second.last()["boot"] != held["boot"]
        # What the killed run had committed is still there, and seq goes on after it.
        assert second.last()["next_seq"] >= held["next_seq"]
        time.sleep(OUTAGE_S / 2)
        assert second.last()["backlog_rows"] > held["backlog_rows"]
        mosquitto.start()
        until(
            lambda: (
                second.last().get("backlog_rows", 1e9) < 2000 and second.last()["state"] == "up"
            ),
            timeout=30,
            what="backlog drained",
        )
        time.sleep(1.0)
        second.terminate()
        assert second.lines[-1] == "drained", second.lines[-3:]
        db = tmp_path / "history.db"
        left, next_seq = _outbox_left(db)
        caught_up(receiver, EDGE, next_seq)
    finally:
        receiver.stop()

    assert left == 0
    rep = receiver.report(EDGE, 0, next_seq - 1)
    assert rep.missing == 0, rep
    assert rep.out_of_order == 0, rep
    assert rep.duplicated <= INFLIGHT, rep
    assert len(receiver.counts[EDGE].boots) == 2
    assert received_samples(receiver, EDGE) == stored_samples(db)


def test_last_will_says_offline_when_the_engine_is_killed(
    tmp_path: Path, mosquitto: MosquittoBroker, drivers: list[Driver]
) -> None:
    receiver = Receiver(mosquitto.host, mosquitto.port, host_id=HOST).start()
    try:
        d = Driver(tmp_path, mosquitto)
        drivers.append(d)
        until(
            lambda: receiver.status.get(EDGE, {}).get("state") == "online",
            timeout=20,
            what="online status",
        )
        boot = receiver.status[EDGE]["boot"]
        d.kill9()
        until(lambda: receiver.status[EDGE]["state"] == "offline", timeout=10, what="the last will")
        assert receiver.status[EDGE]["boot"] == boot
        assert receiver.status[EDGE]["backlog_rows"] is None  # unknown when the broker sends it
    finally:
        receiver.stop()
    # Retained: a subscriber that comes later reads the same.
    later = Receiver(mosquitto.host, mosquitto.port).start()
    try:
        until(
            lambda: later.status.get(EDGE, {}).get("state") == "offline",
            timeout=5,
            what="retained status",
        )
    finally:
        later.stop()
