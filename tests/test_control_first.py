"""Control first (issue 19): a crossing's records are committed in the callback of the poll that
saw it, on the engine's loop, and its write waits for no other thread; the journal's commit on
the loop never overtakes a record still queued for its writer thread.

Real parts: a pymodbus server, a DevicePoller, real SQLite files for the journal and the audit
trail, read back over connections of their own (what a restart after kill -9 would read).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from floorconsole.adapters.alarm_journal import FILE_NAME, AlarmJournal
from floorconsole.adapters.audit_log import AuditLog
from floorconsole.adapters.modbus import DevicePoller
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.core.alarms import AlarmTable
from floorconsole.core.clock import SystemClock
from floorconsole.core.config import (
    DeviceConfig,
    EdgeConfig,
    ModbusPoint,
    PlantConfig,
    SignalConfig,
)
from floorconsole.core.links import LinkStats
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.rules import ControlConfig, RuleEvent, parse_rules
from floorconsole.core.sample import Sample
from floorconsole.engine.control import Control
from floorconsole.engine.hub import Hub
from floorconsole.engine.runtime import _control_phases

INPUT = ModbusPoint("drive1", "hr", 0, "uint16")


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read over a connection of its own: what another process (a restart) would see."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_a_crossing_is_journaled_and_audited_before_its_callback_returns(
    modbus_server: ModbusDeviceServer, tmp_path: Path
) -> None:
    clock = SystemClock()
    device = DeviceConfig(
        id="drive1",
        protocol="modbus-tcp",
        host="127.0.0.1",
        port=modbus_server.port,
        poll_s=0.1,
        timeout_s=2.0,
        retries=0,
    )
    signal = SignalConfig(id="motor1.current", source=INPUT, range=(0.0, 100.0))
    plant = PlantConfig(edge=EdgeConfig(id="t"), devices=(device,), signals=(signal,))
    hub = Hub(plant, clock)
    poller = DevicePoller(device, [signal], hub, clock, LinkStats("drive1", "device", "x"))
    rules, problems = parse_rules(
        [
            {
                "id": "trip",
                "signal": "motor1.current",
                "op": ">",
                "threshold": 50,
                "actions": [{"write": "drive1", "address": "co:10", "on": True, "off": False}],
            }
        ],
        signals={"motor1.current": (0.0, 100.0)},
        devices={"drive1"},
        brokers=set(),
    )
    assert problems == []
    journal = AlarmJournal(tmp_path / FILE_NAME)
    audit = AuditLog.in_data_dir(tmp_path, synchronous="NORMAL")  # as the engine opens it
    control = Control(
        rules,
        ControlConfig(enabled=True),
        hub.latest.get,
        {"drive1": poller.write},
        None,
        AlarmTable(clock),
        journal,
        clock,
        audit=audit.append,
        audit_now=lambda *a: audit.try_append(*a) is not None,
    )
    hub.add_listener(control.on_samples, first=True)
    try:
        await poller.poll_once()  # connected, the input read once
        wall, mono = clock.wall(), clock.mono()
        hub.ingest([Sample("motor1.current", 70.0, Quality.GOOD, Reason.NONE, wall, mono)])
        # No await since the crossing: whatever is committed now was committed in its callback.
        assert rows(tmp_path / FILE_NAME, "SELECT rule, event, active FROM rule_events") == [
            ("trip", "activate", 1)
        ]
        audited = rows(
            tmp_path / "audit.db", "SELECT kind, user, target, detail FROM audit_records"
        )
        assert [(k, u, t) for k, u, t, _ in audited] == [("write", "rule trip", "drive1 co:10")]
        assert '"phase":"request"' in str(audited[0][3]).replace(" ", "")
        assert not modbus_server.get("co", 10)[0]  # the write itself goes out after the records
        await until(lambda: bool(modbus_server.get("co", 10)[0]), what="coil written")
        await control.idle()
        rec = control.last_results[("trip", 0)]
        assert rec.ok, rec
    finally:
        await control.close()
        await poller.close()
        journal.close()
        audit.close()
    # The result follows its request in the chain, and the chain verifies.
    with AuditLog.in_data_dir(tmp_path) as again:
        phases = [r["detail"]["phase"] for r in reversed(again.query(kind="write"))]
        assert phases == ["request", "result"]
        assert again.verify().ok


def test_a_commit_on_the_loop_never_overtakes_a_queued_record(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    journal = AlarmJournal(path)
    holder = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    writer_free = threading.Event()
    try:

        def event(what: str, active: bool) -> RuleEvent:
            return RuleEvent(time.time(), "trip", what, active, "rule", what)

        # Someone else holds the file: nothing is written, and nothing waits for it.
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert journal.record_rule_now(event("activate", True)) is False
        assert time.monotonic() - started < 1.0  # returned at once, never waited on the file
        holder.execute("COMMIT")
        # The writer thread busy (a flush callback that has not returned), a record queued
        # behind it: the file is free, but the commit on the loop must not go first.
        journal.flush_later(lambda: writer_free.wait(10.0))
        journal.record_rule(event("activate", True))
        assert journal.record_rule_now(event("release", False)) is False
        writer_free.set()
        assert journal.flush(10.0)
        assert journal.rule_states()["trip"].event == "activate"
        # Nothing queued, the file free: committed here and now, readable by anyone.
        assert journal.record_rule_now(event("release", False)) is True
        assert rows(path, "SELECT event FROM rule_events ORDER BY seq") == [
            ("activate",),
            ("release",),
        ]
        assert journal.rule_states()["trip"].active is False
    finally:
        writer_free.set()
        holder.close()
        journal.close()


def test_devices_a_rule_reads_are_polled_apart_from_the_rest() -> None:
    devices = tuple(
        DeviceConfig(
            id=f"d{i}", protocol="modbus-tcp", host="127.0.0.1", port=1, poll_s=0.1, retries=0
        )
        for i in range(4)
    )
    signals = tuple(
        SignalConfig(id=f"d{i}.x", source=ModbusPoint(f"d{i}", "hr", 0, "uint16")) for i in range(4)
    )
    raw = [
        {"id": f"r{i}", "signal": f"d{i}.x", "op": ">", "threshold": 1, "actions": []}
        for i in (1, 3)
    ]
    rules, problems = parse_rules(
        raw, signals={s.id: None for s in signals}, devices={d.id for d in devices}, brokers=set()
    )
    assert problems == []
    plant = PlantConfig(edge=EdgeConfig(id="t"), devices=devices, signals=signals, rules=rules)
    phases = _control_phases(plant, [(d, plant.signals_of_device(d.id)) for d in devices])
    # The two devices rules read, a third and two thirds of the period after the others.
    assert phases == pytest.approx({"d1": 0.1 / 3, "d3": 0.2 / 3})
