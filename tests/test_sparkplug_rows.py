"""The Sparkplug uplink in this process against a real mosquitto and the host application of
test_sparkplug_uplink.py (written from the specification): backlog rows encoded when they
were recorded (adapters/sparkplug/rows.py) reach the host as every stored sample, by alias,
historical, with the quality rules of the general path; a primary host STATE older than the
last one seen is ignored (3.0); a host's DCMD writes a metric only when the plant file lists
it, through the console's write path (role, audit, read-back)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.historian import Historian
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.adapters.outbox import Outbox, OutboxStats
from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.uplink import BothUplinks, SignalMetric, SparkplugUplink
from floorconsole.cli import main as cli_main
from floorconsole.core.config import BrokerConfig
from floorconsole.core.points import ModbusPoint
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import DataType, SparkplugConfig
from floorconsole.core.uplink import UplinkConfig
from floorconsole.engine.bootstrap import open_engine
from tests.test_sparkplug_uplink import EDGE, GROUP, HOST_ID, PLANT, Host, count, kinds

SIGNALS = [f"line.s{i}" for i in range(6)]  # s0-s2 of device "line1", the rest of the node


def _uplink(
    tmp_path: Path,
    broker: MosquittoBroker,
    *,
    host: str | None = None,
    metrics: list[SignalMetric] | None = None,
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
    metrics = metrics or [
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


def _until_host_has(host: Host, want: set[tuple[str, int, float]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not want <= set(host.samples):
        assert time.monotonic() < deadline, f"{len(want - set(host.samples))} missing"
        time.sleep(0.05)


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
        _until_host_has(host, want)
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


def _record(historian: Historian, samples: list[Sample]) -> None:
    for k in range(0, len(samples), 500):
        historian.append(samples[k : k + 500])
        historian.flush()


def _json_bodies(db: Path) -> tuple[list[list[dict[str, Any]]], OutboxStats]:
    """Every waiting message's body as a JSON uplink on the same file reads it, and the
    outbox's figures."""
    outbox = Outbox(UplinkConfig(broker="plant", batch=50))
    historian = Historian(db, commit_hook=outbox, flush_interval_s=0.05)
    historian.start()
    try:
        outbox.open_reader()
        msgs, _last = outbox.read_backlog(-1, 1 << 60, 100)
        return [json.loads(outbox.body_of(m)) for m in msgs], outbox.stats()
    finally:
        outbox.close_reader()
        historian.close()


def test_a_row_with_its_sparkplug_form_is_stored_without_json_and_read_back_by_its_plan(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Recording makes one form per row, not two; any reader gets the entries back: a JSON
    uplink after the format went back to json, by the plan stored with the rows; a row whose
    plan is gone is counted as unreadable, not sent and not a crash."""
    historian, uplink = _uplink(tmp_path, mosquitto)
    t0 = time.time() - 100
    samples = [
        Sample(SIGNALS[i % 6], float(i), Quality.GOOD, Reason.NONE, t0 + i / 100, 0.0)
        for i in range(300)
    ]
    samples[120] = samples[120]._replace(value=None, quality=Quality.BAD, reason=Reason.NO_COMM)
    try:
        _record(historian, samples)
    finally:
        uplink.close()
        historian.close()
    db = tmp_path / "history.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT n, length(body), length(spb) FROM outbox ORDER BY seq"
        ).fetchall()
        plans = conn.execute("SELECT count(*) FROM outbox_plans").fetchone()[0]
    assert len(rows) == 6 and plans == 1
    assert [r for r in rows if r[2] is None] == [(50, rows[2][1], None)]  # the bad value's row
    assert all(r[1] == 0 and r[2] > 0 for i, r in enumerate(rows) if i != 2)
    assert rows[2][1] > 0

    # The same file, the uplink now JSON: every body made again from its stored form.
    bodies, stats = _json_bodies(db)
    got = [e for b in bodies for e in b]
    assert stats.rows == 300 and stats.bytes == sum(r[1] or r[2] for r in rows)
    want = [
        {"s": x.signal, "v": x.value, "q": "GOOD", "t": round(x.t_source * 1000)}
        for x in samples
        if x.quality is Quality.GOOD
    ]
    good = [e for e in got if e["q"] == "GOOD"]
    assert sorted(good, key=lambda e: e["t"]) == want
    assert [e["s"] for e in got if e["q"] != "GOOD"] == [SIGNALS[0]]

    # The plan lost (a hand-edited file): those rows are counted, the others still read.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM outbox_plans")
    bodies, stats = _json_bodies(db)
    assert [len(b) for b in bodies] == [0, 0, 50, 0, 0, 0]
    assert dict(stats.dropped)["unreadable"] == 250
    assert "alias plan" in stats.last_error and "not in outbox_plans" in stats.last_error


def test_a_backlog_of_an_earlier_metric_set_reaches_the_host_by_name(
    tmp_path: Path, mosquitto: MosquittoBroker, host: Host
) -> None:
    """Rows recorded under one metric set (aliases) and sent after a restart with another
    (the plant file changed): the host gets every sample under its own name."""
    historian, first = _uplink(tmp_path, mosquitto)
    t0 = time.time() - 50
    samples = [
        Sample(SIGNALS[i % 6], float(i), Quality.GOOD, Reason.NONE, t0 + i / 100, 0.0)
        for i in range(600)
    ]
    try:
        _record(historian, samples)
    finally:
        first.close()
        historian.close()
    # Another order, one more signal: every alias moves.
    metrics = [SignalMetric("line.new", None, DataType.Double, "bar")] + [
        SignalMetric(s, "line1" if i < 3 else None, DataType.Double, "bar")
        for i, s in reversed(list(enumerate(SIGNALS)))
    ]
    historian, second = _uplink(tmp_path, mosquitto, metrics=metrics)
    try:
        second.start()
        want = {(s.signal, round(s.t_source * 1000), s.value) for s in samples}
        _until_host_has(host, want)
        assert second.drain(10)
    finally:
        second.close()
        historian.close()
    assert set(host.samples) == want and set(host.historical) == want
    assert host.gaps == 0


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


SETPOINT = ModbusPoint("drive1", "hr", 3, "int16")
TEMP = ModbusPoint("drive1", "hr", 0, "int16")


def _plant(data_dir: Path, broker: MosquittoBroker, modbus_port: int) -> dict[str, Any]:
    return {
        "edge": {"id": EDGE, "data_dir": str(data_dir)},
        "brokers": [{"id": "plant", "host": broker.host, "port": broker.port}],
        "control": {"enabled": True},
        "uplink": {
            "broker": "plant",
            "format": "sparkplug",
            "sparkplug": {"group": GROUP, "primary_host": HOST_ID, "writable": ["press1.sp"]},
        },
        "devices": [
            {"id": "drive1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": modbus_port,
             "poll": "0.2s", "timeout": "0.5s"},
        ],
        "signals": [
            {"id": "motor1.temp", "device": "drive1", "address": "hr:0", "type": "int16"},
            {"id": "press1.sp", "device": "drive1", "address": "hr:3", "type": "int16"},
        ],
    }  # fmt: skip


def _dcmd(host: Host, alias: int, datatype: int, **value: Any) -> None:
    p = spb.Payload(timestamp=int(time.time() * 1000))
    p.metrics.add(alias=alias, datatype=datatype, **value)
    host.c.publish(f"spBv1.0/{GROUP}/DCMD/{EDGE}/drive1", p.SerializeToString(), qos=1)


def test_a_host_writes_only_the_metrics_the_plant_file_allows_as_a_console_would(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    host: Host,
    modbus_server: ModbusDeviceServer,
) -> None:
    modbus_server.set_value(TEMP, 40)
    modbus_server.set_value(SETPOINT, 10)
    data_dir = tmp_path / "data"
    e = open_engine(
        data_dir=data_dir,
        base_dir=tmp_path,
        user="test",
        plant_raw=_plant(data_dir, mosquitto, modbus_server.port),
        source="spb writes",
    )
    e.start_background()

    def records(kind: str) -> list[dict[str, Any]]:
        return e.audit_log().query(kind=kind, user=f"sparkplug host {HOST_ID}")

    def wait_for(cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    try:
        seen = host.wait(count("DBIRTH", 1), 20, "the device's birth")
        alias = {m.name: m.alias for m in kinds(seen, "DBIRTH")[0].payload.metrics}

        # Allowed: written, read back, audited (request, the write itself, its result).
        _dcmd(host, alias["press1.sp"], spb.Double, double_value=123.0)
        wait_for(lambda: modbus_server.get_value(SETPOINT) == 123, "the allowed write")
        wait_for(lambda: any(r["detail"].get("phase") == "result" for r in records("write")),
                 "the write's result record")  # fmt: skip
        phases = {r["detail"].get("phase"): r for r in records("write")}
        assert set(phases) == {"request", "writing", "result"}, phases
        assert phases["result"]["target"] == "drive1 hr:3"
        assert phases["result"]["detail"]["ok"] is True
        assert phases["result"]["detail"]["after"] == 123
        assert phases["request"]["detail"]["topic"] == f"spBv1.0/{GROUP}/DCMD/{EDGE}/drive1"

        # Not in the plant file's list: refused, counted, audited; the register untouched.
        _dcmd(host, alias["motor1.temp"], spb.Double, double_value=99.0)
        wait_for(lambda: len(e.audit_log().query(kind="refused")) >= 1, "the refusal's record")
        (refused,) = e.audit_log().query(kind="refused")
        assert "motor1.temp" in refused["detail"]["why"] and "writable" in refused["detail"]["why"]
        assert modbus_server.get_value(TEMP) == 40

        # Allowed, but of another type: refused with the reason (one record a second at most).
        time.sleep(1.1)
        _dcmd(host, alias["press1.sp"], spb.String, string_value="7")
        wait_for(lambda: len(e.audit_log().query(kind="refused")) >= 2, "the second refusal")
        why = e.audit_log().query(kind="refused")[0]["detail"]["why"]
        assert "datatype String, but the metric is Double" in why, why
        assert modbus_server.get_value(SETPOINT) == 123
        assert e.uplink is not None
        sp = e.uplink.stats().sparkplug
        assert sp is not None and sp.refused_commands == 2, sp
    finally:
        e.stop()


@pytest.mark.parametrize(
    ("writable", "line"),
    [
        ('["nope"]', "uplink.sparkplug.writable[0]: no signal 'nope' in [[signals]]"),
        ('["t.ir"]', "uplink.sparkplug.writable[0]: 't.ir' is at ir:0, which is read-only"),
        ('["t.hr", "t.hr"]', "uplink.sparkplug.writable[1]: 't.hr' is listed twice"),
        ('"t.hr"', "uplink.sparkplug.writable: expected a list of signal ids"),
        ('["t.scaled"]', "uplink.sparkplug.writable[0]: 't.scaled' is scaled"),
    ],
)
def test_check_names_each_metric_a_host_may_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], writable: str, line: str
) -> None:
    plant = tmp_path / "plant.toml"
    plant.write_text(
        PLANT
        + f'format = "sparkplug"\n[uplink.sparkplug]\ngroup = "g"\nwritable = {writable}\n'
        + '[[devices]]\nid = "d1"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
        + '[[signals]]\nid = "t.hr"\ndevice = "d1"\naddress = "hr:0"\ntype = "int16"\n'
        + '[[signals]]\nid = "t.ir"\ndevice = "d1"\naddress = "ir:0"\ntype = "int16"\n'
        + '[[signals]]\nid = "t.scaled"\ndevice = "d1"\naddress = "hr:1"\ntype = "int16"\n'
        + "scale = 0.1\n"
    )
    assert cli_main(["check", str(plant)]) == 1
    out = capsys.readouterr().out
    assert f"{plant}: {line}" in out, out


def test_both_uplinks_side_by_side_each_with_its_own_outbox(
    tmp_path: Path, mosquitto: MosquittoBroker, modbus_server: ModbusDeviceServer
) -> None:
    """format = "both": JSON and Sparkplug on one broker. The Sparkplug host is not there at
    first (no STATE: the Sparkplug uplink holds its data) while the JSON uplink delivers; when
    the host comes, it gets what the JSON side had already delivered, as history."""
    modbus_server.set_value(TEMP, 40)
    data_dir = tmp_path / "data"
    raw = _plant(data_dir, mosquitto, modbus_server.port)
    raw["uplink"]["format"] = "both"
    json_samples: list[tuple[str, int, float]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="json-consumer")
    sub.on_connect = lambda c, *_: c.subscribe(f"floorconsole/{EDGE}/data", qos=1)
    sub.on_message = lambda _c, _u, m: json_samples.extend(
        (e["s"], e["t"], e["v"]) for e in json.loads(m.payload)["samples"]
    )
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    e = open_engine(
        data_dir=data_dir, base_dir=tmp_path, user="test", plant_raw=raw, source="spb both"
    )
    e.start_background()
    host: Host | None = None
    try:
        deadline = time.monotonic() + 15
        while len(json_samples) < 10:
            assert time.monotonic() < deadline, "no JSON data"
            time.sleep(0.05)
        both = e.uplink
        assert isinstance(both, BothUplinks)
        deadline = time.monotonic() + 10
        while both.sparkplug.outbox.rows == 0:  # held for its host, in its own outbox
            assert time.monotonic() < deadline, "the Sparkplug outbox stayed empty"
            time.sleep(0.05)
        early = {(s, t, float(v)) for s, t, v in json_samples[:10]}
        host = Host(mosquitto)
        host.wait(count("DBIRTH", 1), 15, "the births once the host is online")
        deadline = time.monotonic() + 15
        while not early <= set(host.historical):
            assert time.monotonic() < deadline, f"not as history: {early - set(host.historical)}"
            time.sleep(0.05)
        host.wait(
            lambda s: any(
                not x.is_historical for m in kinds(s, "DDATA") for x in m.payload.metrics
            ),
            15,
            "live Sparkplug data",
        )
        assert host.gaps == 0
        assert both.stats().sparkplug is not None
    finally:
        e.stop()
        sub.loop_stop()
        sub.disconnect()
        if host is not None:
            host.close()


def test_an_outbox_an_earlier_floorconsole_made_gets_the_new_column(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, boot TEXT NOT "
            "NULL, t REAL NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL);"
            "CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        )
        body = b'[{"s":"a","v":1.0,"q":"GOOD","t":1000}]'
        conn.execute("INSERT INTO outbox VALUES (0, 'data', 'old', 1.0, 1, ?)", (body,))
    outbox = Outbox(UplinkConfig(broker="plant"))
    historian = Historian(db, commit_hook=outbox)
    historian.start()
    try:
        outbox.open_reader()
        msgs, _last = outbox.read_backlog(-1, 10, 10)
        assert [(m.seq, m.body, m.spb) for m in msgs] == [(0, body, None)]
        assert outbox.stats().next_seq == 1
        outbox.close_reader()
    finally:
        historian.close()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_host_below_engineer_may_not_write_even_a_writable_metric(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    host: Host,
    modbus_server: ModbusDeviceServer,
    role: str,
) -> None:
    """host_role below a console write's (engineer): refused at once, counted with the
    uplink's other refusals, audited with the reason; the register untouched, no write
    record."""
    modbus_server.set_value(SETPOINT, 10)
    data_dir = tmp_path / "data"
    raw = _plant(data_dir, mosquitto, modbus_server.port)
    raw["uplink"]["sparkplug"]["host_role"] = role
    e = open_engine(
        data_dir=data_dir, base_dir=tmp_path, user="test", plant_raw=raw, source="spb roles"
    )
    e.start_background()
    try:
        seen = host.wait(count("DBIRTH", 1), 20, "the device's birth")
        alias = {m.name: m.alias for m in kinds(seen, "DBIRTH")[0].payload.metrics}
        _dcmd(host, alias["press1.sp"], spb.Double, double_value=123.0)
        deadline = time.monotonic() + 10
        while not e.audit_log().query(kind="refused"):
            assert time.monotonic() < deadline, "the refusal's record"
            time.sleep(0.05)
        (refused,) = e.audit_log().query(kind="refused")
        why = refused["detail"]["why"]
        assert f"sparkplug host {HOST_ID} ({role}) may not" in why, why
        assert "engineer or above ([uplink.sparkplug] host_role)" in why, why
        assert e.uplink is not None
        sp = e.uplink.stats().sparkplug
        assert sp is not None and sp.refused_commands == 1, sp
        assert e.audit_log().query(kind="write") == []
        assert modbus_server.get_value(SETPOINT) == 10
    finally:
        e.stop()


def test_a_row_encoded_whole_is_the_bytes_protobuf_makes_of_it() -> None:
    """rows.py encodes a common row with numpy; every row must come out as the one-metric-at-
    a-time protobuf encoding gives it (aliases of one and two bytes, three owners, ints,
    extremes), and a row it cannot take (a bool, a time before 1971) goes that way."""
    import random

    from floorconsole.adapters.sparkplug.rows import SparkplugRows, _encode_fast, row_plan

    rnd = random.Random(16)
    fast = {
        f"s{i}": (i * 37 % 300 + 1, (None, "d1", "d2")[i % 3], DataType.Double) for i in range(250)
    }
    rows = SparkplugRows()
    rows.plan = row_plan(fast)
    assert rows._current is not None
    plan, tables = rows._current
    names = list(fast)
    t0 = time.time()
    for _ in range(200):
        samples = [
            Sample(
                rnd.choice(names),
                rnd.choice([rnd.uniform(-1e9, 1e9), rnd.randint(-5, 70000), -0.0, 1e300]),
                Quality.GOOD,
                Reason.NONE,
                t0 + rnd.uniform(-1e6, 1e6),
                0.0,
            )
            for _ in range(rnd.randint(1, 250))
        ]
        whole = _encode_fast(plan, tables, samples)
        assert whole is not None and whole == rows._encode_slow(plan, samples)
        assert rows.encode_row(samples) == whole
    odd = [Sample("s1", True, Quality.GOOD, Reason.NONE, t0, 0.0)]
    assert _encode_fast(plan, tables, odd) is None and rows.encode_row(odd) is None
    early = [Sample("s1", 1.5, Quality.GOOD, Reason.NONE, 1000.0, 0.0)]
    assert _encode_fast(plan, tables, early) is None
    assert rows.encode_row(early) == rows._encode_slow(plan, early) is not None


def _committed_outbox(db: Path, config: UplinkConfig, fast: dict[str, Any]) -> Outbox:
    """An outbox on db with a Sparkplug row encoder of this metric set, no broker."""
    from floorconsole.adapters.sparkplug.rows import SparkplugRows, row_plan

    outbox = Outbox(config)
    rows = SparkplugRows()
    rows.plan = row_plan(fast)
    outbox.row_encoder = rows
    outbox.open(sqlite3.connect(db, isolation_level=None, check_same_thread=False), db)
    return outbox


def _commit(outbox: Outbox, samples: list[Sample], *, failures: int = 0) -> None:
    assert outbox.path is not None
    conn = sqlite3.connect(outbox.path, isolation_level=None)
    try:
        outbox.stage(samples)
        for _ in range(failures):
            conn.execute("BEGIN")
            outbox.write(conn)
            conn.execute("ROLLBACK")
            outbox.rolled_back(sqlite3.OperationalError("disk I/O error"))
        conn.execute("BEGIN")
        outbox.write(conn)
        conn.execute("COMMIT")
        outbox.committed(conn)
    finally:
        conn.close()


def _good(signal: str, value: object, t: float = 1.7e9) -> Sample:
    return Sample(signal, value, Quality.GOOD, Reason.NONE, t, 0.0)  # type: ignore[arg-type]


def test_a_signal_that_changed_type_gives_another_plan_and_both_runs_rows_read_back(
    tmp_path: Path,
) -> None:
    """A register turned into a coil (Double to Boolean) between two runs: the plans differ,
    so each run's rows are read with their own (they were read with the other, and lost)."""
    db = tmp_path / "h.db"
    config = UplinkConfig(broker="plant", topic_prefix="t", batch=50)
    first = {"x": (1, "d0", DataType.Double), "y": (2, "d1", DataType.Double)}
    _commit(_committed_outbox(db, config, first), [_good("x", 1.0), _good("y", 2.0)])
    second = {"x": (1, "d0", DataType.Boolean), "y": (2, "d1", DataType.Double)}
    outbox = _committed_outbox(db, config, second)
    _commit(outbox, [_good("y", 3.0)])
    outbox.open_reader()
    msgs, _last = outbox.read_backlog(-1, 1 << 60, 10)
    assert [m.body for m in msgs] == [b"", b""]  # both stored in their Sparkplug form
    got = [[(e["s"], e["v"]) for e in outbox.entries_of(m)] for m in msgs]
    assert got == [[("x", 1.0), ("y", 2.0)], [("y", 3.0)]]
    assert dict(outbox.stats().dropped)["unreadable"] == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM outbox_plans").fetchone()[0] == 2


def test_an_unencodable_sample_is_counted_once_however_often_its_commit_fails(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    config = UplinkConfig(broker="plant", topic_prefix="t", batch=50)
    fast = {"x": (1, None, DataType.Double), "y": (2, None, DataType.Double)}
    outbox = _committed_outbox(db, config, fast)
    _commit(outbox, [_good("x", "abc"), _good("y", 1.0)], failures=3)
    assert dict(outbox.stats().dropped)["unencodable"] == 1
    outbox.open_reader()
    msgs, _last = outbox.read_backlog(-1, 1 << 60, 10)
    assert [json.loads(outbox.body_of(m)) for m in msgs] == [
        [{"s": "y", "v": 1.0, "q": "GOOD", "t": 1_700_000_000_000}]
    ]


def test_a_row_kept_in_its_sparkplug_form_alone_fits_a_message_as_json_too(
    tmp_path: Path,
) -> None:
    """max_message_bytes holds for the body a JSON uplink makes again from the form: a row
    whose JSON would not fit is stored as JSON, chunked to fit."""
    db = tmp_path / "h.db"
    config = UplinkConfig(broker="plant", topic_prefix="t", batch=40, max_message_bytes=1024)
    names = [f"plant.area.line1.temperature_{i}" for i in range(40)]
    outbox = _committed_outbox(
        db, config, {s: (i + 1, None, DataType.Double) for i, s in enumerate(names)}
    )
    samples = [_good(s, 123.456789 + i, 1.7e9 + i / 1000) for i, s in enumerate(names)]
    _commit(outbox, samples)
    _commit(outbox, samples[:4])  # small enough: kept in its form alone
    outbox.open_reader()
    msgs, _last = outbox.read_backlog(-1, 1 << 60, 20)
    bodies = [outbox.body_of(m) for m in msgs]
    assert all(len(b) <= 1024 for b in bodies), [len(b) for b in bodies]
    assert sum(len(json.loads(b)) for b in bodies) == 44
    assert msgs[-1].body == b"" and msgs[-1].spb and all(m.spb is None for m in msgs[:-1])
