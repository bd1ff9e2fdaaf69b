"""The Sparkplug B edge node against a real mosquitto and a host application written here from
the specification (it decodes with the generated classes alone, not with our session code):
topic namespace, birth contents, aliases in data, seq continuity, bdSeq matching each death to
its birth across a kill -9, rebirth on request, the primary host's STATE, DBIRTH/DDEATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.edge import MetricDef, SparkplugEdge
from floorconsole.core.quality import Quality
from floorconsole.core.sparkplug import DataType

ROOT = Path(__file__).resolve().parents[1]
GROUP, EDGE = "plant3", "line2"


@dataclass
class Seen:
    topic: str
    kind: str
    payload: spb.Payload
    t: float

    def metric(self, name: str) -> spb.Payload.Metric:
        return next(m for m in self.payload.metrics if m.name == name)


class Host:
    """A Sparkplug host application: subscribes to the group, keeps every message."""

    def __init__(self, broker: MosquittoBroker, host_id: str = "scada") -> None:
        self._broker = broker
        self.host_id = host_id
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{host_id}")
        self.c.will_set(f"spBv1.0/STATE/{host_id}", b'{"online": false, "timestamp": 0}', 1, True)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(f"spBv1.0/{GROUP}/#", qos=1)
        self.c.loop_start()
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        p = spb.Payload()
        p.ParseFromString(msg.payload)
        with self.lock:
            self.seen.append(Seen(msg.topic, msg.topic.split("/")[2], p, time.monotonic()))

    def state(self, online: bool) -> None:
        body = (
            f'{{"online": {"true" if online else "false"}, "timestamp": {int(time.time() * 1000)}}}'
        )
        self.c.publish(f"spBv1.0/STATE/{self.host_id}", body.encode(), qos=1, retain=True)

    def rebirth(self) -> None:
        p = spb.Payload(timestamp=int(time.time() * 1000))
        m = p.metrics.add(name="Node Control/Rebirth", datatype=spb.Boolean)
        m.boolean_value = True
        self.c.publish(f"spBv1.0/{GROUP}/NCMD/{EDGE}", p.SerializeToString(), qos=1)

    def wait(self, cond: Callable[[list[Seen]], bool], timeout: float, what: str) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = list(self.seen)
            if cond(seen):
                return seen
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {timeout} s; seen {[s.topic for s in seen]}")

    def kinds(self) -> list[str]:
        with self.lock:
            return [s.kind for s in self.seen]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


NODE = [MetricDef("edge/snapshot", DataType.String), MetricDef("model/score", DataType.Double)]
DEVICES = {
    "drive1": [MetricDef("current", DataType.Float, "A"), MetricDef("running", DataType.Boolean)]
}


@pytest.fixture
def host(mosquitto: MosquittoBroker) -> Iterator[Host]:
    h = Host(mosquitto)
    yield h
    h.close()


def edge_on(broker: MosquittoBroker, data_dir: Path, **kw: object) -> SparkplugEdge:
    e = SparkplugEdge(
        group=GROUP,
        edge=EDGE,
        host=broker.host,
        port=broker.port,
        data_dir=data_dir,
        node_metrics=NODE,
        devices=DEVICES,
        **kw,  # type: ignore[arg-type]
    )
    e.update("edge/snapshot", "7f3a21", Quality.GOOD)
    return e


def check_seq_continuity(seen: list[Seen]) -> None:
    """Within each session (from an NBIRTH) seq rises by one mod 256; deaths carry none."""
    expected: int | None = None
    for s in seen:
        if s.kind in ("NCMD", "DCMD"):
            continue  # the host's own
        if s.kind == "NDEATH":
            assert not s.payload.HasField("seq"), "an NDEATH carries no seq"
            expected = None
            continue
        if s.kind == "NBIRTH":
            assert s.payload.seq == 0
            expected = 1
            continue
        if expected is not None:
            assert s.payload.seq == expected, f"seq gap at {s.topic}: {s.payload.seq} != {expected}"
            expected = (expected + 1) % 256


def test_birth_aliases_data_by_exception_rebirth_and_device_death(
    host: Host, tmp_path: Path
) -> None:
    edge = edge_on(host_broker(host), tmp_path)
    edge.start()
    try:
        seen = host.wait(lambda s: any(x.kind == "NBIRTH" for x in s), 5, "NBIRTH")
        birth = next(x for x in seen if x.kind == "NBIRTH")
        assert birth.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}"
        assert birth.metric("bdSeq").long_value == 0 and birth.metric("bdSeq").datatype == spb.Int64
        assert birth.metric("Node Control/Rebirth").boolean_value is False
        snap = birth.metric("edge/snapshot")
        assert snap.string_value == "7f3a21" and snap.HasField("alias")
        # the device comes up: DBIRTH with every metric, its alias, type and unit
        edge.update("current", 12.5, Quality.GOOD, device="drive1")
        edge.device_state("drive1", True)
        seen = host.wait(lambda s: any(x.kind == "DBIRTH" for x in s), 5, "DBIRTH")
        dbirth = next(x for x in seen if x.kind == "DBIRTH")
        assert dbirth.topic == f"spBv1.0/{GROUP}/DBIRTH/{EDGE}/drive1"
        cur = dbirth.metric("drive1/current")
        assert cur.datatype == spb.Float and cur.float_value == 12.5
        props = dict(zip(cur.properties.keys, cur.properties.values, strict=True))
        assert props["engUnit"].string_value == "A" and props["Quality"].int_value == 192
        aliases = {m.name: m.alias for m in dbirth.payload.metrics}
        # data by exception, aliases only; a steady value is not sent again, its quality is
        n0 = len(host.seen)
        edge.update("current", 13.0, Quality.GOOD, device="drive1")
        edge.update("current", 13.0, Quality.GOOD, device="drive1")
        seen = host.wait(lambda s: any(x.kind == "DDATA" for x in s[n0:]), 5, "DDATA")
        ddata = [x for x in seen[n0:] if x.kind == "DDATA"]
        assert len(ddata) == 1 and len(ddata[0].payload.metrics) == 1
        m = ddata[0].payload.metrics[0]
        assert (
            not m.HasField("name")
            and m.alias == aliases["drive1/current"]
            and m.float_value == 13.0
        )
        edge.update("current", 13.0, Quality.BAD, "no communication", device="drive1")
        seen = host.wait(lambda s: sum(x.kind == "DDATA" for x in s) >= 2, 5, "quality change")
        bad = [x for x in seen if x.kind == "DDATA"][-1].payload.metrics[0]
        q = dict(zip(bad.properties.keys, bad.properties.values, strict=True))
        assert (
            q["Quality"].int_value == 0 and q["quality_reason"].string_value == "no communication"
        )
        # a rebirth request is answered within 1 s: NBIRTH (seq 0, same bdSeq) and DBIRTH
        n1 = len(host.seen)
        t_ask = time.monotonic()
        host.rebirth()

        def answered(s: list[Seen]) -> bool:
            return [x.kind for x in s[n1:] if x.kind != "NCMD"][:2] == ["NBIRTH", "DBIRTH"]

        seen = host.wait(answered, 5, "rebirth")
        reborn = next(x for x in seen[n1:] if x.kind == "NBIRTH")
        assert reborn.t - t_ask < 1.0
        assert reborn.metric("bdSeq").long_value == 0
        assert edge.stats().rebirth_requests == 1
        # the device goes down: DDEATH, and nothing of it until it is born again
        edge.device_state("drive1", False)
        edge.update("current", 1.0, Quality.GOOD, device="drive1")
        seen = host.wait(lambda s: any(x.kind == "DDEATH" for x in s), 5, "DDEATH")
        time.sleep(0.5)
        assert host.kinds()[-1] == "DDEATH"
        check_seq_continuity(host.seen)
    finally:
        edge.stop()
    seen = host.wait(lambda s: s[-1].kind == "NDEATH", 5, "NDEATH on stop")
    assert seen[-1].metric("bdSeq").long_value == 0


def host_broker(host: Host) -> MosquittoBroker:
    return host._broker  # type: ignore[attr-defined,no-any-return]


DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from floorconsole.adapters.sparkplug.edge import SparkplugEdge, MetricDef
    from floorconsole.core.quality import Quality
    from floorconsole.core.sparkplug import DataType
    e = SparkplugEdge(group="plant3", edge="line2", host="127.0.0.1", port=int(sys.argv[1]),
                      data_dir=Path(sys.argv[2]), keepalive=2,
                      node_metrics=[MetricDef("model/score", DataType.Double)], devices={})
    e.update("model/score", 0.1, Quality.GOOD)
    e.start()
    while True:
        time.sleep(1)
    """
)


def test_bdseq_matches_each_death_to_its_birth_across_kill_9(host: Host, tmp_path: Path) -> None:
    broker = host_broker(host)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(broker.port), str(tmp_path)], cwd=ROOT, env=env
        )

    births: list[int] = []
    for round_ in range(2):
        p = run()
        n = round_
        try:
            seen = host.wait(lambda s, n=n: sum(x.kind == "NBIRTH" for x in s) > n, 10, "NBIRTH")
            births.append([x for x in seen if x.kind == "NBIRTH"][-1].metric("bdSeq").long_value)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        # keepalive 2 s: the broker gives up on the dead client within 1.5 x keepalive
        seen = host.wait(lambda s, n=n: sum(x.kind == "NDEATH" for x in s) > n, 10, "NDEATH will")
        death = [x for x in seen if x.kind == "NDEATH"][-1]
        assert death.metric("bdSeq").long_value == births[-1]
    assert births == [0, 1]  # persisted across kill -9: the next session is a new one
    assert (tmp_path / "sparkplug_bdseq").read_text().strip() == "1"


def test_no_birth_or_data_while_the_primary_host_is_offline(host: Host, tmp_path: Path) -> None:
    host.state(False)
    edge = edge_on(host_broker(host), tmp_path, primary_host="scada")
    edge.start()
    try:
        time.sleep(1.5)
        edge.update("model/score", 0.5, Quality.GOOD)
        time.sleep(0.5)
        assert host.kinds() == [], "published while the primary host was offline"
        assert edge.stats().host_online is False
        host.state(True)
        seen = host.wait(lambda s: any(x.kind == "NBIRTH" for x in s), 5, "NBIRTH after STATE")
        first_bdseq = next(x for x in seen if x.kind == "NBIRTH").metric("bdSeq").long_value
        host.state(False)  # the host goes: the session ends with an NDEATH, then silence
        host.wait(lambda s: s[-1].kind == "NDEATH", 5, "NDEATH when the host went offline")
        n = len(host.seen)
        edge.update("model/score", 0.7, Quality.GOOD)
        time.sleep(1.0)
        assert host.kinds()[n:] == []
        host.state(True)
        seen = host.wait(lambda s: any(x.kind == "NBIRTH" for x in s[n:]), 5, "NBIRTH again")
        again = next(x for x in seen[n:] if x.kind == "NBIRTH")
        assert again.metric("bdSeq").long_value == first_bdseq + 1
        assert again.metric("model/score").double_value == 0.7  # the latest value, in the birth
        check_seq_continuity(host.seen)
    finally:
        edge.stop()
