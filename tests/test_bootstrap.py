"""The composition root on a real engine (a pymodbus device, a mosquitto broker, SQLite files):
listeners of the engine's life registered once however many configurations it builds, and one
snapshot id for the running configuration wherever it is shown."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from floorconsole.adapters.audit_log import AuditLog
from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.cli import main as cli_main
from floorconsole.core.alarms import AlarmState
from floorconsole.core.config import ModbusPoint
from floorconsole.core.uplink import topic
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.runtime import Engine
from floorconsole.engine.snapshots import ApplyResult

RULE = "hot-motor"
ALARM = f"rule:{RULE}"
TEMP = ModbusPoint("drive1", "hr", 0, "int16")
TIMEOUT_S = 30.0


def plant_raw(data_dir: Path, device: ModbusDeviceServer, broker: MosquittoBroker) -> dict:
    """A drive with one temperature, one rule that raises an alarm past 80 °C, and an uplink
    to the broker (whose retained status names the running snapshot)."""
    return {
        "edge": {"id": "bench-1", "site": "Bootstrap bench", "data_dir": str(data_dir)},
        "brokers": [{"id": "plant", "host": "127.0.0.1", "port": broker.port}],
        "uplink": {"broker": "plant", "topic_prefix": "fc-test"},
        "devices": [
            {
                "id": "drive1",
                "protocol": "modbus-tcp",
                "host": "127.0.0.1",
                "port": device.port,
                "poll": "50ms",
                "timeout": "500ms",
            }
        ],
        "signals": [
            {"id": "motor1.temp", "device": "drive1", "address": "hr:0", "type": "int16"},
        ],
        "rules": [
            {
                "id": RULE,
                "signal": "motor1.temp",
                "op": ">",
                "threshold": 80.0,
                "actions": [{"alarm": "high", "message": "Motor 1 hot"}],
            }
        ],
    }


def wait_for(cond: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def engine(
    modbus_server: ModbusDeviceServer,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Engine]:
    caplog.set_level(logging.INFO, logger="floorconsole.engine")
    modbus_server.set_value(TEMP, 40)
    data_dir = tmp_path / "data"
    e = open_engine(
        data_dir=data_dir,
        base_dir=tmp_path,
        user="test",
        plant_raw=plant_raw(data_dir, modbus_server, mosquitto),
        source="bootstrap bench",
        health_window_s=10.0,
    )
    e.start_background()
    try:
        # The start-up check is done (applied, then health-ok): an apply would wait for it.
        wait_for(lambda: len(e.snapshots.store.activations()) >= 2, "the start-up check")
        yield e
    finally:
        e.stop()


def on_loop(e: Engine, coro: Any) -> ApplyResult:
    assert e.loop is not None
    result: ApplyResult = asyncio.run_coroutine_threadsafe(coro, e.loop).result(TIMEOUT_S)
    return result


def apply_threshold(e: Engine, threshold: float) -> ApplyResult:
    cfg = copy.deepcopy(e.snapshots.active.plant_config())
    cfg["rules"][0]["threshold"] = threshold
    return on_loop(e, e.snapshots.apply(cfg, user="eng1", message=f"threshold {threshold}"))


def test_an_alarm_transition_is_journaled_once_after_20_applies_and_rollbacks(
    engine: Engine, modbus_server: ModbusDeviceServer
) -> None:
    first = engine.snapshots.active.short
    for i in range(20):
        applied = apply_threshold(engine, 90.0 + i)
        assert applied.ok, applied
        back = on_loop(engine, engine.snapshots.rollback(first, user="eng1"))
        assert back.ok and back.snapshot[:12] == first, back
    assert engine.snapshot_id == first

    modbus_server.set_value(TEMP, 95)  # past 80: the rule raises its alarm, UNACK
    wait_for(lambda: engine.alarms.get(ALARM).state is AlarmState.UNACK, "the alarm")
    time.sleep(0.3)  # a transition journaled more than once would land in this time too
    assert engine.journal.flush()
    rows = engine.journal.query(alarm_id=ALARM)
    assert [(r.from_state, r.to_state) for r in rows] == [(AlarmState.NORMAL, AlarmState.UNACK)]


def status_snapshot(broker: MosquittoBroker) -> Callable[[], str]:
    """The snapshot named by the edge's last retained uplink status (polled)."""
    seen: list[str] = []
    got = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        if doc.get("state") == "online":
            seen.append(str(doc.get("snapshot")))
            got.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-status")
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic("fc-test", "bench-1", "status"), qos=1)
    client.loop_start()

    def last() -> str:
        return seen[-1] if seen else ""

    last.client = client  # type: ignore[attr-defined]
    return last


def test_one_id_for_the_running_configuration_everywhere(
    engine: Engine,
    mosquitto: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = status_snapshot(mosquitto)
    try:
        start = engine.snapshot_id
        applied = apply_threshold(engine, 85.0)
        assert applied.ok, applied
        sid = engine.snapshots.active.short
        assert sid != start and len(sid) == 12 and applied.snapshot.startswith(sid)

        # The frame header.
        frame = engine.api.frame()
        assert frame.snapshot == frame.config_id == sid

        # The audit record of its activation.
        with AuditLog.in_data_dir(engine.data_dir, readonly=True) as audit:
            records = audit.query(kind="snapshot_apply")
        activated = [r for r in records if r["detail"].get("phase") == "activated"]
        assert [r["target"] for r in activated] == [sid]
        assert activated[0]["detail"]["to"] == sid and activated[0]["detail"]["from"] == start

        # The engine's log lines, at its start and at the swap.
        records = caplog.get_records("setup") + caplog.get_records("call")
        lines = [r.getMessage() for r in records if r.name.startswith("floorconsole")]
        assert any(ln.startswith(f"engine started: snapshot {start}, ") for ln in lines)
        assert f"snapshot {sid} replaced {start}" in lines
        assert f"snapshot {sid} applied by eng1: healthy" in lines

        # The uplink's retained status.
        wait_for(lambda: status() == sid, f"uplink status naming {sid}")

        # `floorconsole snapshot list`: the active one, marked.
        capsys.readouterr()
        assert cli_main(["snapshot", "list", "--data-dir", str(engine.data_dir)]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert [ln.split()[1] for ln in listed if ln.startswith("* ") and "active" not in ln] == [
            sid
        ]
    finally:
        status.client.loop_stop()  # type: ignore[attr-defined]
        status.client.disconnect()  # type: ignore[attr-defined]

    # And the start: its audit record names the same short id as the snapshot store.
    engine.stop()
    with AuditLog.in_data_dir(engine.data_dir, readonly=True) as audit:
        started = [r for r in audit.query(kind="system") if r["target"] == "engine started"]
    assert [r["detail"]["snapshot"] for r in started] == [start]
