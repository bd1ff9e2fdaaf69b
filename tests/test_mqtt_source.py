"""adapters.mqtt BrokerClient against a real mosquitto on loopback (and amqtt, the demo fallback)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from floorconsole.adapters.broker import ListenerTLS, MosquittoBroker, start_demo_broker
from floorconsole.adapters.mqtt import BrokerClient
from floorconsole.core.clock import SystemClock
from floorconsole.core.config import (
    BrokerConfig,
    MqttPoint,
    SignalConfig,
    TLSConfig,
    parse_json_path,
)
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

BROKER_ID = "local"


class CollectingSink:
    """Records every batch, and checks it is called on the loop's own thread."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.loop_thread = threading.get_ident()
        self.wrong_thread = 0

    def ingest(self, samples: Sequence[Sample]) -> None:
        if threading.get_ident() != self.loop_thread:
            self.wrong_thread += 1
        self.batches.append(list(samples))

    @property
    def samples(self) -> list[Sample]:
        return [s for b in self.batches for s in b]

    def of(self, signal: str) -> list[Sample]:
        return [s for s in self.samples if s.signal == signal]


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def signal(
    sid: str,
    topic: str,
    path: str,
    *,
    ts: str | None = None,
    kind: str | None = None,
    max_payload: int = 256 * 1024,
) -> SignalConfig:
    return SignalConfig(
        id=sid,
        source=MqttPoint(
            broker=BROKER_ID,
            topic=topic,
            json_path=parse_json_path(path) if path else (),
            time_path=parse_json_path(ts) if ts else None,
            kind=kind,
            max_payload=max_payload,
        ),
    )


class Publisher:
    """A plain paho client standing in for a sensor."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sensor-{port}")
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: MosquittoBroker) -> Iterator[Publisher]:
    p = Publisher(mosquitto.host, mosquitto.port)
    yield p
    p.close()


class Source:
    """A started BrokerClient with its sink and stats; stopped at the end of the test."""

    def __init__(self, host: str, port: int, signals: list[SignalConfig], **broker: object) -> None:
        self.sink = CollectingSink()
        self.stats = LinkStats(BROKER_ID, "broker", f"{host}:{port}")
        cfg = BrokerConfig(id=BROKER_ID, host=host, port=port, keepalive_s=5, **broker)  # type: ignore[arg-type]
        self.client = BrokerClient(
            cfg,
            signals,
            self.sink,
            asyncio.get_running_loop(),
            SystemClock(),
            self.stats,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        )

    async def up(self) -> Source:
        assert self.client.start()
        await until(lambda: self.stats.state is LinkState.UP, what="subscribed")
        return self


@pytest.fixture
async def sources() -> Iterator[list[Source]]:
    made: list[Source] = []
    yield made
    for s in made:
        s.client.stop()


async def start_source(
    sources: list[Source],
    broker: MosquittoBroker | object,
    signals: list[SignalConfig],
    **cfg: object,
) -> Source:
    s = Source(broker.host, broker.port, signals, **cfg)  # type: ignore[attr-defined]
    sources.append(s)
    return await s.up()


# --- values ------------------------------------------------------------------------------------


async def test_json_paths_one_batch_per_message(
    mosquitto: MosquittoBroker, publisher: Publisher, sources: list[Source]
) -> None:
    topic = "plant3/line2/env"
    src = await start_source(
        sources,
        mosquitto,
        [
            signal("room.temp", topic, "data.temp", ts="meta.ts"),
            signal("room.rms1", topic, "data.axes[1].rms", ts="meta.ts"),
            signal("room.door", topic, "door"),
        ],
    )
    payload = {
        "meta": {"ts": 1_700_000_000_250},
        "door": True,
        "data": {"temp": 21.5, "axes": [{"rms": 0.1}, {"rms": 0.75}]},
    }
    publisher.send(topic, json.dumps(payload)).wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1)

    (batch,) = src.sink.batches
    by_id = {s.signal: s for s in batch}
    assert by_id["room.temp"].value == 21.5
    assert by_id["room.rms1"].value == 0.75
    assert by_id["room.door"].value is True
    assert by_id["room.temp"].t_source == pytest.approx(1_700_000_000.25)
    assert by_id["room.rms1"].t_source == pytest.approx(1_700_000_000.25)
    assert abs(by_id["room.door"].t_source - time.time()) < 5  # no ts: receive time
    assert all(s.quality is Quality.GOOD and s.reason is Reason.NONE for s in batch)
    assert src.stats.messages == 1 and src.stats.malformed_total == 0
    assert src.sink.wrong_thread == 0


async def test_simulator_waveforms(
    mosquitto: MosquittoBroker, publisher: Publisher, sources: list[Source]
) -> None:
    topic = "factory/motor-01/vibration/raw"
    src = await start_source(
        sources,
        mosquitto,
        [signal(f"motor1.vibration.{a}", topic, a, ts="ts", kind="waveform") for a in "xyz"],
    )
    rng = np.random.default_rng(7)
    sent = []
    for i in range(20):
        block = {a: rng.normal(0.0, 0.2, 256) for a in "xyz"}
        sent.append(block)
        msg = {
            "motor_id": "motor-01",
            "ts": 1_700_000_000.0 + i * 0.1,
            **{a: block[a].tolist() for a in "xyz"},
        }
        publisher.send(topic, json.dumps(msg))
    await until(lambda: len(src.sink.batches) == 20)

    for i, (batch, block) in enumerate(zip(src.sink.batches, sent, strict=True)):
        assert [s.signal for s in batch] == [f"motor1.vibration.{a}" for a in "xyz"]
        for s, a in zip(batch, "xyz", strict=True):
            assert s.is_waveform and s.value.shape == (256,)
            np.testing.assert_array_equal(s.value, block[a])  # JSON round-trips float64 exactly
            assert s.t_source == pytest.approx(1_700_000_000.0 + i * 0.1)
            assert not s.value.flags.writeable


# --- malformed ---------------------------------------------------------------------------------


def _malformed_burst() -> list[tuple[str, bytes]]:
    """200 payloads of each reason, interleaved; each fails both signals for the same reason."""
    big = json.dumps({"v": 1.0, "w": [0.0] * 400}).encode()  # valid, but over 2,000 bytes
    kinds = {
        "not_json": [b"{not json", b"\xff\xfe\x00", b"", b'{"v": 1', b"{'v': 1}"],
        "missing_key": [b'{"other": 1}', b'{"V": 1, "W": [1]}', b"[]", b"{}", b"42"],
        "wrong_type": [
            b'{"v": "1.5", "w": "x"}',
            b'{"v": null, "w": null}',
            b'{"v": [1, 2], "w": 3}',
            b'{"v": {}, "w": [1, "2"]}',
            b'{"v": [], "w": []}',
        ],
        "not_finite": [
            b'{"v": NaN, "w": [1, NaN]}',
            b'{"v": Infinity, "w": [Infinity]}',
            b'{"v": -Infinity, "w": [0, -Infinity]}',
            b'{"v": 1e999, "w": [1e999]}',
            b'{"v": NaN, "w": [NaN, NaN]}',
        ],
        "oversized": [big, big + b" ", b"x" * 3000, b"[" * 2001, b" " * 5000],
    }
    out = []
    for i in range(200):
        for reason, payloads in kinds.items():
            out.append((reason, payloads[i % len(payloads)]))
    return out


async def test_thousand_malformed_counted_exactly(
    mosquitto: MosquittoBroker, publisher: Publisher, sources: list[Source]
) -> None:
    topic = "plant3/line2/press"
    src = await start_source(
        sources,
        mosquitto,
        [
            signal("press.v", topic, "v", kind="scalar", max_payload=2000),
            signal("press.w", topic, "w", kind="waveform", max_payload=2000),
        ],
    )
    burst = _malformed_burst()
    assert len(burst) == 1000
    infos = [publisher.send(topic, raw) for _reason, raw in burst]
    # QoS 1 from one publisher on one topic arrives in order: the good one comes last.
    infos.append(publisher.send(topic, b'{"v": 3.5, "w": [1, 2, 3]}'))
    for info in infos:
        info.wait_for_publish(5)
    await until(lambda: len(src.sink.batches) >= 1001, timeout=10, what="the good message")

    per_reason = Counter(reason for reason, _ in burst)
    expected = Counter(
        {(sid, reason): n for reason, n in per_reason.items() for sid in ("press.v", "press.w")}
    )
    assert src.stats.malformed == expected
    assert src.stats.malformed_total == 2000
    assert src.stats.messages == 1001
    assert src.stats.errors == 0
    # each unusable message shows as BAD decoding error, naming why, on both signals
    *bad, batch = src.sink.batches
    assert len(bad) == 1000
    for (reason, _raw), b in zip(burst, bad, strict=True):
        assert [(s.signal, s.quality, s.reason) for s in b] == [
            ("press.v", Quality.BAD, Reason.DECODE_ERROR),
            ("press.w", Quality.BAD, Reason.DECODE_ERROR),
        ]
        assert all(s.detail.startswith(f"{reason}: ") for s in b)
    assert [(s.signal, s.quality) for s in batch] == [
        ("press.v", Quality.GOOD),
        ("press.w", Quality.GOOD),
    ]
    assert batch[0].value == 3.5

    # and it keeps going
    publisher.send(topic, b'{"v": 4.5, "w": [4]}').wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1002)
    assert src.sink.batches[1001][0].value == 4.5
    assert src.stats.state is LinkState.UP


async def test_bad_time_keeps_the_value_and_is_counted(
    mosquitto: MosquittoBroker, publisher: Publisher, sources: list[Source]
) -> None:
    topic = "plant3/line2/flow"
    src = await start_source(sources, mosquitto, [signal("flow", topic, "v", ts="ts")])
    publisher.send(topic, b'{"v": 12.0, "ts": "not a time"}').wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1)
    (s,) = src.sink.batches[0]
    assert (s.value, s.quality) == (12.0, Quality.GOOD)
    assert abs(s.t_source - time.time()) < 5
    assert src.stats.malformed == Counter({("flow", "bad_time"): 1})


# --- connection --------------------------------------------------------------------------------


async def test_broker_restart_degrades_then_recovers(
    mosquitto: MosquittoBroker, sources: list[Source]
) -> None:
    topic = "plant3/line2/speed"
    src = await start_source(
        sources,
        mosquitto,
        [signal("line.speed", topic, "v"), signal("line.silent", "plant3/other", "v")],
    )
    pub = Publisher(mosquitto.host, mosquitto.port)
    pub.send(topic, b'{"v": 41.0}').wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1)
    good = src.sink.batches[0][0]

    port = mosquitto.port
    mosquitto.stop()
    await until(lambda: src.stats.state is LinkState.DOWN, what="state down")
    await until(lambda: len(src.sink.batches) == 2, what="degraded last values")
    (degraded,) = src.sink.batches[1]  # only signals that had a value
    assert degraded.signal == "line.speed" and degraded.value == 41.0
    assert (degraded.quality, degraded.reason) == (Quality.UNCERTAIN, Reason.LAST_USABLE)
    assert degraded.t_mono == good.t_mono  # age keeps counting from the last real value
    assert "connection lost" in src.stats.last_error

    # Published while down: paho answers NO_CONN but keeps the QoS 1 message queued.
    queued = src.client.publish(topic, b'{"v": 43.0}', qos=1)
    assert queued.rc == mqtt.MQTT_ERR_NO_CONN

    mosquitto.start()
    assert mosquitto.port == port
    await until(lambda: src.stats.state is LinkState.UP, timeout=10, what="reconnect")
    assert src.stats.reconnects == 1
    pub.close()
    pub = Publisher(mosquitto.host, mosquitto.port)  # a fresh sensor: the broker forgot all
    pub.send(topic, b'{"v": 42.0}').wait_for_publish(2)
    await until(
        lambda: 42.0 in [s.value for s in src.sink.of("line.speed")],
        what="values after the restart",
    )
    pub.close()
    await asyncio.sleep(0.2)
    after = [s.value for s in src.sink.samples[1:] if s.quality is Quality.GOOD]
    # the queued message went out once after the reconnect (ours arrives first: it was resent
    # right after our SUBSCRIBE, before the fresh sensor had connected)
    assert after == [43.0, 42.0]


def test_a_stopped_broker_keeps_its_port_and_a_restart_waits_for_a_brief_holder(
    mosquitto: MosquittoBroker,
) -> None:
    """The port stays the broker's while it is down (clients are refused, as by a broker that
    is gone), and a restart waits out someone else holding the port for a moment instead of
    failing (CI once lost a 60 s outage test to that)."""
    import socket

    port = mosquitto.port
    mosquitto.stop()
    probe = socket.socket()
    with pytest.raises(ConnectionRefusedError):
        probe.connect((mosquitto.host, port))
    probe.close()
    other = socket.socket()  # not SO_REUSEADDR: bind fails while the broker keeps the port
    with pytest.raises(OSError):
        other.bind((mosquitto.host, port))
    other.close()

    mosquitto._release_port()  # as if an outgoing connection had been given the port
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((mosquitto.host, port))
    squatter.listen()
    threading.Timer(1.0, squatter.close).start()
    t0 = time.monotonic()
    mosquitto.start()
    assert mosquitto.running and mosquitto.port == port
    assert time.monotonic() - t0 >= 0.9  # it waited for the port, not for nothing


async def test_publish_loops_back_through_the_broker(
    mosquitto: MosquittoBroker, sources: list[Source]
) -> None:
    topic = "plant3/line2/alarms"
    src = await start_source(sources, mosquitto, [signal("alarm.level", topic, "level")])
    info = src.client.publish(topic, json.dumps({"level": 2}), qos=1)
    assert info.rc == mqtt.MQTT_ERR_SUCCESS
    info.wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1)
    assert src.sink.samples[0].value == 2.0


@pytest.fixture
def secured_broker() -> Iterator[MosquittoBroker]:
    """mosquitto with a password file: user edge, password s3cret; anonymous refused."""
    with MosquittoBroker(users={"edge": "s3cret"}) as broker:
        yield broker


async def test_username_and_password_from_the_environment(
    secured_broker: MosquittoBroker, sources: list[Source], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOORCONSOLE_TEST_MQTT_PW", "s3cret")
    src = await start_source(
        sources,
        secured_broker,
        [signal("a", "t/a", "v")],
        username="edge",
        password_env="FLOORCONSOLE_TEST_MQTT_PW",
    )
    assert src.stats.state is LinkState.UP
    assert "u'edge'" in secured_broker.log_tail(50)


async def test_wrong_password_is_refused_and_retried(
    secured_broker: MosquittoBroker, sources: list[Source], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOORCONSOLE_TEST_MQTT_PW", "wrong")
    src = Source(
        secured_broker.host,
        secured_broker.port,
        [signal("a", "t/a", "v")],
        username="edge",
        password_env="FLOORCONSOLE_TEST_MQTT_PW",
    )
    sources.append(src)
    assert src.client.start()
    await until(lambda: src.stats.errors >= 2, what="refusals, retried")
    assert src.stats.state is LinkState.DOWN
    assert "not authori" in src.stats.last_error.lower()


async def test_missing_password_variable_is_a_clear_error(
    mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOORCONSOLE_TEST_UNSET", raising=False)
    src = Source(
        mosquitto.host,
        mosquitto.port,
        [signal("a", "t/a", "v")],
        username="edge",
        password_env="FLOORCONSOLE_TEST_UNSET",
    )
    assert src.client.start() is False
    assert src.stats.state is LinkState.DOWN
    assert "FLOORCONSOLE_TEST_UNSET is not set" in src.stats.last_error
    assert src.stats.errors == 1
    src.client.stop()  # harmless when it never started


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (EC P-256)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found: apt-get install -y openssl", pytrace=False)
    d = tmp_path_factory.mktemp("certs")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=floorconsole test CA",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn, ext in (("server", "127.0.0.1", ["-extfile", "san.ext"]), ("client", "edge", [])):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *ext,
        )
    return d


@pytest.fixture
def tls_broker(certs: Path) -> Iterator[MosquittoBroker]:
    """mosquitto on a TLS listener that requires a client certificate from our CA."""
    tls = ListenerTLS(
        certs / "ca.pem",
        certs / "server.pem",
        certs / "server.key",
        require_certificate=True,
        client_cert=certs / "client.pem",
        client_key=certs / "client.key",
    )
    with MosquittoBroker(tls=tls) as broker:
        yield broker


async def test_tls_with_client_certificate(
    tls_broker: MosquittoBroker, certs: Path, sources: list[Source]
) -> None:
    tls = TLSConfig(ca=certs / "ca.pem", cert=certs / "client.pem", key=certs / "client.key")
    src = await start_source(sources, tls_broker, [signal("secure.v", "secure/v", "v")], tls=tls)
    info = src.client.publish("secure/v", b'{"v": 9.5}', qos=1)
    info.wait_for_publish(2)
    await until(lambda: len(src.sink.batches) == 1)
    assert src.sink.samples[0].value == 9.5


async def test_tls_without_client_certificate_is_refused(
    tls_broker: MosquittoBroker, certs: Path, sources: list[Source]
) -> None:
    src = Source(
        tls_broker.host,
        tls_broker.port,
        [signal("secure.v", "secure/v", "v")],
        tls=TLSConfig(ca=certs / "ca.pem", cert=None, key=None),
    )
    sources.append(src)
    assert src.client.start()
    await until(lambda: src.stats.errors >= 2, what="handshakes refused, retried")
    assert src.stats.state is LinkState.DOWN
    # TLS 1.3 rejects the missing certificate after our side of the handshake is done.
    err = src.stats.last_error
    assert "before it was accepted" in err or "cannot connect" in err, err


async def test_missing_tls_file_is_a_clear_error(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tls = TLSConfig(ca=tmp_path / "nope-ca.pem", cert=None, key=None)
    src = Source(mosquitto.host, mosquitto.port, [signal("a", "t/a", "v")], tls=tls)
    assert src.client.start() is False
    assert src.stats.last_error == f"tls.ca {tmp_path / 'nope-ca.pem'} is not a readable file"


async def test_unreachable_broker_is_down_not_an_exception(sources: list[Source]) -> None:
    from floorconsole.adapters.broker import free_port

    src = Source("127.0.0.1", free_port(), [signal("a", "t/a", "v")])
    sources.append(src)
    assert src.client.start()
    await until(lambda: src.stats.state is LinkState.DOWN, what="down")
    await until(lambda: src.stats.errors >= 2, what="retries with backoff")
    assert "cannot connect" in src.stats.last_error


def test_signals_of_another_broker_are_refused() -> None:
    other = SignalConfig(id="x", source=MqttPoint("plant", "t", ("v",)))
    with pytest.raises(ValueError, match="not read from broker"):
        BrokerClient(
            BrokerConfig(id=BROKER_ID, host="127.0.0.1"),
            [other],
            CollectingSink(),
            asyncio.new_event_loop(),
            SystemClock(),
            LinkStats("x", "broker", ""),
        )


# --- the demo without mosquitto ----------------------------------------------------------------


async def test_amqtt_fallback_carries_values(sources: list[Source]) -> None:
    broker = await asyncio.to_thread(start_demo_broker, prefer_mosquitto=False)
    try:
        assert type(broker).__name__ == "AmqttBroker"
        src = await start_source(sources, broker, [signal("demo.v", "demo/v", "v")])
        pub = Publisher(broker.host, broker.port)
        pub.send("demo/v", b'{"v": 1.25}').wait_for_publish(5)
        await until(lambda: len(src.sink.batches) == 1)
        assert src.sink.samples[0].value == 1.25
        pub.close()
        src.client.stop()
    finally:
        await asyncio.to_thread(broker.stop)
