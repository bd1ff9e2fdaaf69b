"""The Sparkplug uplink in this process against a real mosquitto and the host application of
test_sparkplug_uplink.py (written from the specification): backlog rows encoded when they
were recorded (adapters/sparkplug/rows.py) reach the host as every stored sample, by alias,
historical, with the quality rules of the general path; a primary host STATE older than the
last one seen is ignored (3.0)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.historian import Historian
from floorconsole.adapters.outbox import Outbox
from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.uplink import SignalMetric, SparkplugUplink
from floorconsole.core.config import BrokerConfig
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import DataType, SparkplugConfig
from floorconsole.core.uplink import UplinkConfig
from tests.test_sparkplug_uplink import EDGE, GROUP, HOST_ID, Host, count, kinds

SIGNALS = [f"line.s{i}" for i in range(6)]  # s0-s2 of device "line1", the rest of the node


def _uplink(
    tmp_path: Path, broker: MosquittoBroker, *, host: str | None = None
) -> tuple[Historian, SparkplugUplink]:
    config = UplinkConfig(
        broker="plant",
        topic_prefix="t",
        batch=50,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        format="sparkplug",
        sparkplug=SparkplugConfig(GROUP, EDGE, host),
    )
    outbox = Outbox(config)
    metrics = [
        SignalMetric(s, "line1" if i < 3 else None, DataType.Double, "bar")
        for i, s in enumerate(SIGNALS)
    ]
    uplink = SparkplugUplink(
        config,
        BrokerConfig("plant", broker.host, broker.port, keepalive_s=5.0),
        outbox,
        edge_id=EDGE,
        data_dir=tmp_path,
        metrics=metrics,
        snapshot_id="rows",
    )
    historian = Historian(tmp_path / "history.db", commit_hook=outbox, flush_interval_s=0.05)
    historian.start()
    return historian, uplink


@pytest.fixture
def host(mosquitto: MosquittoBroker) -> Iterator[Host]:
    h = Host(mosquitto)
    yield h
    h.close()


def test_a_backlog_encoded_when_recorded_reaches_the_host_whole(
    tmp_path: Path, mosquitto: MosquittoBroker, host: Host
) -> None:
    historian, uplink = _uplink(tmp_path, mosquitto)
    t0 = time.time() - 100
    samples = [
        Sample(SIGNALS[i % 6], float(i), Quality.GOOD, Reason.NONE, t0 + i / 100, 0.0)
        for i in range(3000)
    ]
    # One bad value of the node's s4 in the middle: its row goes the general path, and the
    # next GOOD of s4 carries its quality again (192), as the general path sends it.
    bad_at = 1504
    samples[bad_at] = samples[bad_at]._replace(
        value=None, quality=Quality.BAD, reason=Reason.NO_COMM
    )
    try:
        for k in range(0, len(samples), 500):
            historian.append(samples[k : k + 500])
            historian.flush()
        with sqlite3.connect(tmp_path / "history.db") as conn:
            made, rows = conn.execute("SELECT count(spb), count(*) FROM outbox").fetchone()
        assert rows == 60 and made == 59, (made, rows)  # all but the row with the bad value

        uplink.start()
        want = {
            (s.signal, round(s.t_source * 1000), s.value)
            for s in samples
            if s.quality is Quality.GOOD
        }
        deadline = time.monotonic() + 15
        while not want <= set(host.samples):
            assert time.monotonic() < deadline, f"{len(want - set(host.samples))} missing"
            time.sleep(0.05)
        assert uplink.drain(10)
    finally:
        uplink.close()
        historian.close()
    assert host.gaps == 0
    null = ("line.s4", round(samples[bad_at].t_source * 1000), 0.0)  # the host's key for it
    assert set(host.samples) == want | {null} and set(host.historical) == set(host.samples)
    assert all(n == 1 for n in host.samples.values())
    # Several rows to a message (per owner), each message a whole Payload with seq and time.
    data = [m for m in host.seen() if m.kind in ("NDATA", "DDATA")]
    assert max(len(m.payload.metrics) for m in data) > 50
    assert all(m.payload.HasField("seq") and m.payload.timestamp > 0 for m in data)
    assert {m.device for m in kinds(host.seen(), "DDATA")} == {"line1"}
    names = host.names
    s4 = [
        x
        for m in data
        for x in m.payload.metrics
        if names.get(x.alias) == "line.s4" and x.timestamp >= round(samples[bad_at].t_source * 1e3)
    ]
    bad, after = s4[0], s4[1]
    assert bad.is_null and bad.is_historical

    def quality(x: spb.Payload.Metric) -> int | None:
        props = dict(zip(x.properties.keys, x.properties.values, strict=True))
        return props["Quality"].int_value if "Quality" in props else None

    assert quality(bad) == 0 and quality(after) == 192 and after.double_value == bad_at + 6
    assert all(
        x.is_historical and not x.HasField("datatype") for m in data for x in m.payload.metrics
    )


def test_a_primary_host_state_older_than_the_last_one_is_ignored(
    tmp_path: Path, mosquitto: MosquittoBroker, host: Host
) -> None:
    historian, uplink = _uplink(tmp_path, mosquitto, host=HOST_ID)
    topic = f"spBv1.0/STATE/{HOST_ID}"
    now = int(time.time() * 1000)

    def state(online: bool, ts: int) -> None:
        body = f'{{"online": {"true" if online else "false"}, "timestamp": {ts}}}'
        host.c.publish(topic, body.encode(), qos=1, retain=True).wait_for_publish(5)

    deadline = time.monotonic() + 10
    while not host.c.is_connected():  # its own STATE (online, now) goes first
        assert time.monotonic() < deadline, "the host did not connect"
        time.sleep(0.02)
    time.sleep(0.3)
    try:
        state(True, now + 10_000)  # the host's newest word: online
        uplink.start()
        host.wait(count("NBIRTH", 1), 10, "the birth with the host online")
        state(False, now + 5_000)  # an older STATE (a late retained copy): ignored
        deadline = time.monotonic() + 10
        while uplink._stale_states < 1:
            assert time.monotonic() < deadline, "the old STATE never reached the edge"
            time.sleep(0.02)
        time.sleep(0.3)
        assert not kinds(host.seen(), "NDEATH")
        assert uplink.session().host_online is True
        state(False, now + 20_000)  # newer: the host really went offline
        host.wait(count("NDEATH", 1), 10, "the death when the host went offline")
        assert uplink.session().host_online is False
    finally:
        uplink.close()
        historian.close()
