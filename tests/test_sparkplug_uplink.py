"""The Sparkplug B uplink (the outbox sent as a Sparkplug edge node) in a process of its own
(tests/support/uplink_driver.py --sparkplug), against a real mosquitto and a host application
written here from the specification: it decodes with the generated protobuf classes only
(not with the project's session code) and checks the topic namespace, birth contents, alias
use, seq continuity per session, bdSeq matching each death to its birth across a broker
restart and a kill -9, a rebirth asked for on a seq gap, the primary host's STATE; and,
slow, a 60 s broker outage with a kill -9 in it at 1,000 samples/s: nothing missing.

FLOORCONSOLE_UPLINK_OUTAGE_S shortens the outage for quick local runs.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.cli import main as cli_main
from floorconsole.console import Frame, decode
from floorconsole.core.alarms import AlarmState
from floorconsole.core.points import ModbusPoint
from floorconsole.core.sparkplug import SparkplugSessionView
from floorconsole.core.uplink import UplinkStats
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.screens.uplink import uplink_text
from tests.support.history import stored_values
from tests.support.uplink_driver import SIGNALS
from tests.test_console_contract import RECORDINGS
from tests.test_uplink_kill import REPO
from tests.test_uplink_kill import Driver as JsonDriver

GROUP, EDGE, HOST_ID = "plant7", "edge-spb", "scada"
DEVICE = "line1"
TEMP = ModbusPoint("drive1", "hr", 0, "int16")
SPEED = ModbusPoint("drive1", "hr", 2, "int16")
OUTAGE_S = float(os.environ.get("FLOORCONSOLE_UPLINK_OUTAGE_S", "60"))


class Driver(JsonDriver):
    """The driver process speaking Sparkplug."""

    def __init__(self, data_dir: Path, broker: MosquittoBroker, rate: float = 1000.0) -> None:
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
                HOST_ID,
                "--sparkplug",
                GROUP,
                "--rate",
                str(rate),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@dataclass
class Msg:
    topic: str
    kind: str
    device: str | None
    payload: spb.Payload
    t: float  # when the host got it (monotonic)


class Host:
    """A Sparkplug 3.0 primary host application, from the specification: STATE retained with
    its will, subscribed to the group, alias maps from births, seq checked per session, a
    rebirth (NCMD Node Control/Rebirth) sent when a seq is missing."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.lock = threading.Lock()
        self.msgs: list[Msg] = []
        self.names: dict[int, str] = {}  # alias -> metric name, from the births
        self.samples: Counter[tuple[str, int, float]] = Counter()
        self.historical: Counter[tuple[str, int, float]] = Counter()
        self.live_order_errors = 0
        self.last_live_t: dict[str, int] = {}
        self.expected_seq: int | None = None
        self.gaps = 0
        self.rebirths_sent: list[float] = []
        self.births: list[float] = []
        self.ask_rebirth_on_gap = True
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{HOST_ID}")
        self.c.will_set(self.state_topic, b'{"online": false, "timestamp": 0}', 1, True)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect(broker.host, broker.port, keepalive=5)
        self.c.loop_start()

    state_topic = f"spBv1.0/STATE/{HOST_ID}"

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        # 3.0: subscribe first, then say online (retained).
        client.subscribe(f"spBv1.0/{GROUP}/#", qos=1)
        self.state(True)

    def state(self, online: bool) -> None:
        body = (
            f'{{"online": {"true" if online else "false"}, "timestamp": {int(time.time() * 1e3)}}}'
        )
        self.c.publish(self.state_topic, body.encode(), qos=1, retain=True)

    def rebirth(self) -> None:
        p = spb.Payload(timestamp=int(time.time() * 1000))
        m = p.metrics.add(name="Node Control/Rebirth", datatype=spb.Boolean)
        m.boolean_value = True
        self.rebirths_sent.append(time.monotonic())
        self.c.publish(f"spBv1.0/{GROUP}/NCMD/{EDGE}", p.SerializeToString(), qos=1)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        parts = msg.topic.split("/")
        p = spb.Payload()
        p.ParseFromString(msg.payload)
        kind = parts[2]
        with self.lock:
            self.msgs.append(
                Msg(msg.topic, kind, parts[4] if len(parts) > 4 else None, p, time.monotonic())
            )
            if kind in ("NCMD", "DCMD"):
                return
            if kind == "NDEATH":
                self.expected_seq = None
                return
            if kind == "NBIRTH":
                assert p.seq == 0
                self.expected_seq = 1
                self.births.append(time.monotonic())
            elif self.expected_seq is not None:
                if p.seq != self.expected_seq:
                    self.gaps += 1
                    if self.ask_rebirth_on_gap:
                        self.expected_seq = None
                        self.rebirth()
                        return
                self.expected_seq = (p.seq + 1) % 256
            for m in p.metrics:
                if kind.endswith("BIRTH"):
                    self.names[m.alias] = m.name
                    continue
                if kind.endswith("DATA"):
                    name = self.names.get(m.alias, f"?{m.alias}")
                    key = (name, m.timestamp, m.double_value)
                    self.samples[key] += 1
                    if m.is_historical:
                        self.historical[key] += 1
                    elif name != "Properties/Snapshot":
                        if m.timestamp < self.last_live_t.get(name, 0):
                            self.live_order_errors += 1
                        self.last_live_t[name] = m.timestamp

    def seen(self) -> list[Msg]:
        with self.lock:
            return list(self.msgs)

    def wait(self, cond: Callable[[list[Msg]], bool], timeout: float, what: str) -> list[Msg]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.seen()
            if cond(seen):
                return seen
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {timeout} s; seen {[m.kind for m in seen][-20:]}")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def host_time(host: Host, kind: str) -> float:
    return next(m.t for m in host.seen() if m.kind == kind)


def bdseq_of(m: Msg) -> int:
    return next(x.long_value for x in m.payload.metrics if x.name == "bdSeq")


def kinds(seen: list[Msg], kind: str) -> list[Msg]:
    return [m for m in seen if m.kind == kind]


def count(kind: str, n: int) -> Callable[[list[Msg]], bool]:
    return lambda seen: len(kinds(seen, kind)) >= n


@pytest.fixture
def host(mosquitto: MosquittoBroker) -> Iterator[Host]:
    h = Host(mosquitto)
    yield h
    h.close()


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    made: list[Driver] = []
    yield made
    for d in made:
        d.stop()


def test_a_host_sees_a_sparkplug_session_from_birth_to_death(
    tmp_path: Path, mosquitto: MosquittoBroker, host: Host, drivers: list[Driver]
) -> None:
    d = Driver(tmp_path, mosquitto, rate=200.0)
    drivers.append(d)
    seen = host.wait(count("DBIRTH", 1), 20, "the births")
    nbirth, dbirth = kinds(seen, "NBIRTH")[0], kinds(seen, "DBIRTH")[0]
    assert nbirth.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}"
    assert dbirth.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/{DEVICE}"
    assert nbirth.payload.seq == 0 and dbirth.payload.seq == 1
    b0 = bdseq_of(nbirth)
    node = {m.name: m for m in nbirth.payload.metrics}
    assert node["Node Control/Rebirth"].datatype == spb.Boolean
    assert node["bdSeq"].datatype == spb.Int64
    assert node["Properties/Snapshot"].string_value == "driver"
    dev = {m.name: m for m in dbirth.payload.metrics}
    assert set(dev) == set(SIGNALS[:5]) and set(SIGNALS[5:]) <= set(node)
    for m in [*dev.values(), *(node[s] for s in SIGNALS[5:])]:
        assert m.datatype == spb.Double and m.HasField("alias"), m
        props = dict(zip(m.properties.keys, m.properties.values, strict=True))
        assert props["engUnit"].string_value == "mm/s"
        assert "Quality" in props
    aliases = [m.alias for m in [*dev.values(), *(node[s] for s in SIGNALS[5:])]]
    assert len(set(aliases)) == 10

    # Data: alias only, seq continuous through the wrap at 255.
    seen = host.wait(lambda s: len(s) > 300, 90, "300 messages")  # ~15 s quiet; CI is slower
    data = [m for m in seen if m.kind in ("NDATA", "DDATA")]
    assert data and all(not x.HasField("name") for m in data for x in m.payload.metrics)
    assert {m.device for m in kinds(seen, "DDATA")} == {DEVICE}
    assert host.gaps == 0
    assert len(kinds(seen, "NBIRTH")) == 1

    # Rebirth asked for: a new NBIRTH (seq 0, same bdSeq) within 1 s.
    asked = time.monotonic()
    host.rebirth()
    seen = host.wait(count("NBIRTH", 2), 5, "the rebirth")
    assert host.births[-1] - asked < 1.0
    assert bdseq_of(kinds(seen, "NBIRTH")[1]) == b0

    # A seq gap (the host misses a message): it asks for a rebirth and gets one within 1 s.
    with host.lock:
        host.expected_seq = (host.expected_seq or 0) + 7
    seen = host.wait(count("NBIRTH", 3), 5, "the rebirth after a gap")
    assert host.births[-1] - host.rebirths_sent[-1] < 1.0

    # The primary host goes offline: the edge ends its session (the NDEATH matches its birth)
    # and sends nothing; back online: a new birth with the next bdSeq.
    host.state(False)
    seen = host.wait(count("NDEATH", 1), 5, "the death when the host went offline")
    assert bdseq_of(kinds(seen, "NDEATH")[0]) == b0
    n = len(seen)
    time.sleep(1.5)
    assert [m.kind for m in host.seen()[n:]] == []
    host.state(True)
    seen = host.wait(count("NBIRTH", 4), 10, "the birth after the host came back")
    b1 = bdseq_of(kinds(seen, "NBIRTH")[3])
    assert b1 == (b0 + 1) % 256

    # Broker restart: the edge comes back with the next bdSeq.
    mosquitto.stop()
    mosquitto.start()
    seen = host.wait(count("NBIRTH", 5), 20, "the birth after a broker restart")
    b2 = bdseq_of(kinds(seen, "NBIRTH")[4])
    assert b2 > b1

    # kill -9: the broker sends the will, whose bdSeq is that of the last birth; the next run
    # carries on from it. (mosquitto also sends the wills of its clients when it stops, so
    # the host may have seen the NDEATH of b1 at the restart: deaths are counted from here.)
    deaths = len(kinds(host.seen(), "NDEATH"))
    d.kill9()
    seen = host.wait(count("NDEATH", deaths + 1), 30, "the will after kill -9")
    assert [bdseq_of(m) for m in kinds(seen, "NDEATH")[deaths:]] == [b2]
    again = Driver(tmp_path, mosquitto, rate=200.0)
    drivers.append(again)
    seen = host.wait(count("NBIRTH", 6), 20, "the birth of the next run")
    assert bdseq_of(kinds(seen, "NBIRTH")[5]) == (b2 + 1) % 256
    again.terminate()
    seen = host.wait(count("NDEATH", deaths + 2), 10, "the death of a clean stop")
    assert bdseq_of(kinds(seen, "NDEATH")[-1]) == (b2 + 1) % 256
    assert again.lines[-1] == "drained", again.lines[-3:]


def _stored(db: Path) -> Counter[tuple[str, int, float]]:
    return stored_values(db)


@pytest.mark.slow
@pytest.mark.waits
def test_a_broker_outage_with_a_kill_9_in_it_loses_no_sample(
    tmp_path: Path, mosquitto: MosquittoBroker, host: Host, drivers: list[Driver]
) -> None:
    host.ask_rebirth_on_gap = False
    first = Driver(tmp_path, mosquitto)
    drivers.append(first)
    host.wait(count("DDATA", 10), 20, "live data")
    mosquitto.stop()
    time.sleep(OUTAGE_S / 2)
    held = first.last()
    assert held["state"] == "down" and held["backlog_rows"] > 0, held
    first.kill9()
    second = Driver(tmp_path, mosquitto)
    drivers.append(second)
    time.sleep(OUTAGE_S / 2)
    assert second.last()["backlog_rows"] > held["backlog_rows"]
    mosquitto.start()
    deadline = time.monotonic() + 60
    while second.last().get("backlog_rows", 1e9) > 2000 or second.last().get("state") != "up":
        assert time.monotonic() < deadline, second.last()
        time.sleep(0.1)
    time.sleep(1.0)
    second.terminate()
    assert second.lines[-1] == "drained", second.lines[-3:]
    stored = _stored(tmp_path / "history.db")
    deadline = time.monotonic() + 10
    while set(stored) - set(host.samples) and time.monotonic() < deadline:
        time.sleep(0.1)
    missing = set(stored) - set(host.samples)
    assert not missing, f"{len(missing)} of {len(stored)} samples missing"
    assert set(host.samples) - set(stored) == set()
    # What was recorded during the outage came as history; live data came in order.
    assert sum(host.historical.values()) >= 0.5 * OUTAGE_S * 1000, sum(host.historical.values())
    assert host.live_order_errors == 0
    assert host.gaps == 0


def test_a_modbus_device_that_dies_is_a_ddeath_and_a_dbirth_when_it_returns(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    host: Host,
    modbus_server: ModbusDeviceServer,
) -> None:
    poll_s, timeout_s = 0.2, 0.5
    modbus_server.set_value(TEMP, 40)
    data_dir = tmp_path / "data"
    raw = {
        "edge": {"id": EDGE, "data_dir": str(data_dir)},
        "brokers": [{"id": "plant", "host": mosquitto.host, "port": mosquitto.port}],
        "uplink": {
            "broker": "plant",
            "format": "sparkplug",
            "sparkplug": {"group": GROUP, "primary_host": HOST_ID},
        },
        "devices": [
            {
                "id": "drive1",
                "protocol": "modbus-tcp",
                "host": "127.0.0.1",
                "port": modbus_server.port,
                "poll": f"{poll_s}s",
                "timeout": f"{timeout_s}s",
                # No retry: the link is down once one poll timed out (with a retry, after two).
                "retries": 0,
            }
        ],
        "signals": [
            {"id": "motor1.temp", "device": "drive1", "address": "hr:0", "type": "int16"},
            {"id": "motor1.unit", "device": "drive1", "address": "hr:1", "type": "int16",
             "unit": "degC"},
        ],
        "rules": [
            {"id": "hot", "signal": "motor1.temp", "op": ">", "threshold": 80.0,
             "actions": [{"alarm": "high", "message": "Motor 1 hot"}]},
        ],
    }  # fmt: skip
    e = open_engine(
        data_dir=data_dir, base_dir=tmp_path, user="test", plant_raw=raw, source="spb bench"
    )
    e.start_background()
    try:
        seen = host.wait(count("DBIRTH", 1), 30, "the device's birth")
        dbirth = kinds(seen, "DBIRTH")[0]
        assert dbirth.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/drive1"
        metrics = {m.name: m for m in dbirth.payload.metrics}
        assert set(metrics) == {"motor1.temp", "motor1.unit"}
        units = dict(zip(metrics["motor1.unit"].properties.keys,
                         metrics["motor1.unit"].properties.values, strict=True))  # fmt: skip
        assert units["engUnit"].string_value == "degC"
        host.wait(
            lambda s: (
                any(x.double_value == 40.0 for m in kinds(s, "DDATA") for x in m.payload.metrics)
                or any(
                    x.double_value == 40.0 for m in kinds(s, "DBIRTH") for x in m.payload.metrics
                )
            ),
            30,
            "the temperature",
        )
        # A rule's alarm is a node metric: String, the state its last transition went to.
        nbirth = kinds(seen, "NBIRTH")[-1]
        alarm = next(m for m in nbirth.payload.metrics if m.name == "Alarms/rule:hot")
        assert alarm.datatype == spb.String
        modbus_server.set_value(TEMP, 95)
        seen = host.wait(
            lambda s: any(
                x.alias == alarm.alias and x.string_value == AlarmState.UNACK.value
                for m in kinds(s, "NDATA")
                for x in m.payload.metrics
            ),
            30,
            "the alarm's transition",
        )
        modbus_server.set_value(TEMP, 40)
        died = time.monotonic()
        modbus_server.silent = True
        seen = host.wait(count("DDEATH", 1), 10, "the device's death")
        took = host_time(host, "DDEATH") - died
        # Two polls plus its timeout, and 1 s for a loaded machine (measured 0.6-0.7 s).
        assert took < 2 * poll_s + timeout_s + 1.0, took
        ddeath = kinds(seen, "DDEATH")[0]
        assert ddeath.topic == f"spBv1.0/{GROUP}/DDEATH/{EDGE}/drive1"
        n = len(seen)
        time.sleep(1.0)
        assert not [m for m in host.seen()[n:] if m.device == "drive1"]
        assert e.uplink is not None
        sp = e.uplink.stats().sparkplug
        assert sp is not None and sp.devices_dead == ("drive1",) and sp.host_online, sp
        assert sp.bdseq == bdseq_of(kinds(seen, "NBIRTH")[-1])
        modbus_server.silent = False
        modbus_server.set_value(TEMP, 41)
        host.wait(count("DBIRTH", 2), 15, "the device's birth when it is back")
        assert host.gaps == 0

        # A host's write is refused (none is allowed) and the refusal is audited.
        p = spb.Payload(timestamp=int(time.time() * 1000))
        w = p.metrics.add(name="motor1.temp", datatype=spb.Double)
        w.double_value = 99.0
        host.c.publish(f"spBv1.0/{GROUP}/DCMD/{EDGE}/drive1", p.SerializeToString(), qos=1)

        def refused() -> list[dict[str, Any]]:
            return e.audit_log().query(kind="refused")

        deadline = time.monotonic() + 10
        while not refused():
            assert time.monotonic() < deadline, "no audit record of the refused write"
            time.sleep(0.05)
        (record,) = refused()
        assert record["target"] == f"spBv1.0/{GROUP}/DCMD/{EDGE}/drive1", record
        assert "motor1.temp" in record["detail"]["why"], record
        assert modbus_server.get_value(TEMP) == 41

        # A configuration applied with one more signal: a rebirth names it; its data follows.
        deadline = time.monotonic() + 30
        while len(e.snapshots.store.activations()) < 2:  # the start-up check is done
            assert time.monotonic() < deadline, "no start-up check"
            time.sleep(0.05)
        modbus_server.set_value(SPEED, 1234)
        cfg = copy.deepcopy(e.snapshots.active.plant_config())
        cfg["signals"].append(
            {"id": "motor1.speed", "device": "drive1", "address": "hr:2", "type": "int16"}
        )
        births = len(kinds(host.seen(), "DBIRTH"))
        assert e.loop is not None
        asyncio.run_coroutine_threadsafe(
            e.snapshots.apply(cfg, user="eng1", message="motor1.speed"), e.loop
        ).result(30)
        seen = host.wait(count("DBIRTH", births + 1), 30, "the rebirth with the new signal")
        speed = next(
            m for m in kinds(seen, "DBIRTH")[-1].payload.metrics if m.name == "motor1.speed"
        )
        assert speed.alias not in (alarm.alias, *(m.alias for m in dbirth.payload.metrics))
        host.wait(
            lambda s: any(
                x.alias == speed.alias and x.double_value == 1234.0
                for m in kinds(s, "DDATA")
                for x in m.payload.metrics
            ),
            30,
            "the new signal's data",
        )
        assert host.gaps == 0
    finally:
        e.stop()


PLANT = """
[edge]
id = "e1"
[[brokers]]
id = "plant"
host = "127.0.0.1"
[uplink]
broker = "plant"
"""


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ('format = "sparkplug"', 'uplink.sparkplug: missing; format = "sparkplug" needs'),
        ('format = "spb"', "uplink.format: 'spb' is not one of json, sparkplug"),
        ('[uplink.sparkplug]\ngroup = "g"', "uplink.sparkplug: given, but format is 'json'"),
        (
            'format = "sparkplug"\n[uplink.sparkplug]\ngroup = "a/b"',
            "uplink.sparkplug.group: a Sparkplug topic level cannot be empty or hold / + #",
        ),
        (
            'format = "sparkplug"\n[uplink.sparkplug]\ngroup = "g"\nedge_node = "e+1"',
            "uplink.sparkplug.edge_node: a Sparkplug topic level",
        ),
        (
            'format = "sparkplug"\n[uplink.sparkplug]\ngroup = "g"\nprimary = "h"',
            "uplink.sparkplug.primary: unknown key; expected one of group, edge_node, primary_host",
        ),
        ('format = "sparkplug"\n[uplink.sparkplug]\n', "uplink.sparkplug.group: missing"),
    ],
)
def test_check_names_the_key_of_every_sparkplug_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, line: str
) -> None:
    plant = tmp_path / "plant.toml"
    plant.write_text(PLANT + table + "\n")
    assert cli_main(["check", str(plant)]) == 1
    out = capsys.readouterr().out
    assert f"{plant}: {line}" in out, out


def test_check_accepts_a_sparkplug_uplink(tmp_path: Path) -> None:
    plant = tmp_path / "plant.toml"
    plant.write_text(
        PLANT + 'format = "sparkplug"\n[uplink.sparkplug]\ngroup = "plant3"\n'
        'edge_node = "line2"\nprimary_host = "ignition"\n'
    )
    assert cli_main(["check", str(plant)]) == 0


def test_the_console_shows_the_sparkplug_session_through_the_contract() -> None:
    recorded = RecordedAPI.load(RECORDINGS / "overview.json")
    session = SparkplugSessionView(
        "plant3", "line2", "scada", False, 7, 42, 3, 1_700_000_000_000, 2, 1,
        ("drive1",), ("mqtt1",), 5, 6, 0,
    )  # fmt: skip
    frame = replace(
        recorded.frame(),
        uplink=UplinkStats(
            *(["waiting for host", "plant", "x:1883", 1.5, "", 1234, 10, 2, False, 3.0, False]),
            *([0.0, None, None, 7, 7, 0, 1, 2, 0.2, 99, 0, 0, ""]),
            sparkplug=session,
        ),
    )
    back = decode(Frame, json.loads(json.dumps(asdict(frame))))
    assert back == frame and back.uplink is not None and back.uplink.sparkplug == session
    text = uplink_text(back, {}, 80).plain
    assert "spBv1.0/plant3/…/line2" in text
    assert "scada OFFLINE: holding data" in text
    assert "bdSeq        7  seq 42  births 3 (last 22:13:20 UTC)  rebirth requests 2" in text
    assert "dead (DDEATH): mqtt1" in text
    assert "1 refused" in text
    assert "backlog      1,234 samples" in text
