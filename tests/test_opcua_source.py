"""OPC UA sources against an asyncua server in another process: every built-in scalar type and
an array, Good / Uncertain / Bad status codes as our quality with source timestamps, the
server killed and restarted, a server that stops answering, a queue overflow, writes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from floorconsole.adapters.opcua import OpcUaEndpoint, OpcUaError, OpcUaPoint, OpcUaSource
from floorconsole.core.links import LinkState
from floorconsole.core.opcua import REASONS, parse_node_id, status_quality
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

ROOT = Path(__file__).resolve().parents[1]
TYPES = (
    "Boolean SByte Byte Int16 UInt16 Int32 UInt32 Int64 UInt64 Float Double String DateTime "
    "ByteString"
).split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProc:
    def __init__(self, port: int) -> None:
        self.port = port
        self.p: subprocess.Popen[str] | None = None

    def start(self) -> ServerProc:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "tests.support.opcua_server", str(self.port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.p.stdout is not None
        assert self.p.stdout.readline().strip() == "ready"
        return self

    def send(self, **cmd: object) -> None:
        assert self.p is not None and self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "ok"

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def server() -> ServerProc:
    s = ServerProc(free_port()).start()
    yield s
    if s.p is not None:
        try:
            os.kill(s.p.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    s.kill()


class Got:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(self, samples: list[Sample]) -> None:
        self.samples.extend(samples)

    def latest(self, signal: str) -> Sample | None:
        return next((s for s in reversed(self.samples) if s.signal == signal), None)

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout} s; last {self.samples[-3:]}")


def source(server: ServerProc, names: list[str], got: Got, **kw: object) -> OpcUaSource:
    ep = OpcUaEndpoint(
        "press2", f"opc.tcp://127.0.0.1:{server.port}/", publishing_ms=100, timeout_s=2.0
    )
    points = [OpcUaPoint(f"press2.{n}", f"ns=2;s=Plant.{n}", sampling_ms=50, **kw) for n in names]  # type: ignore[arg-type]
    return OpcUaSource(ep, points, got)


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_status_codes_by_name_are_the_specifications() -> None:
    from asyncua import ua

    names = {getattr(ua.StatusCodes, n): n for n in dir(ua.StatusCodes) if not n.startswith("_")}
    for code, reason in REASONS.items():
        name = names[code]
        assert name.startswith(reason.quality.name.capitalize()), (name, reason)
    assert status_quality(ua.StatusCodes.Good).quality is Quality.GOOD
    bad = status_quality(ua.StatusCodes.BadSensorFailure, "BadSensorFailure")
    assert (bad.quality, bad.reason, bad.detail) == (
        Quality.BAD,
        Reason.DEVICE_FAILURE,
        "BadSensorFailure",
    )
    odd = status_quality(ua.StatusCodes.BadUserAccessDenied, "BadUserAccessDenied")
    assert odd.quality is Quality.BAD and odd.detail == "BadUserAccessDenied"
    over = status_quality(ua.StatusCodes.Good | 0x400 | 0x80)
    assert over.overflow and over.quality is Quality.UNCERTAIN


def test_node_ids_parse_or_say_what_was_expected() -> None:
    assert str(parse_node_id("ns=2;s=Line2.Press.Pressure")) == "ns=2;s=Line2.Press.Pressure"
    assert parse_node_id("i=2258").namespace == 0
    for bad, words in (
        ("ns=2;x=1", "is not a NodeId"),
        ("ns=2;i=abc", "numeric identifier"),
        ("nsu=urn:x;s=a", "not supported"),
        ("ns=70000;s=a", "above 65535"),
        ("g=123", "GUID"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_node_id(bad)


async def test_every_scalar_type_and_an_array(server: ServerProc, running: list) -> None:  # type: ignore[type-arg]
    got = Got()
    src = source(server, [*TYPES, "Waveform"], got)
    running.append(asyncio.create_task(src.run()))
    await got.until(
        lambda: all(got.latest(f"press2.{n}") for n in [*TYPES, "Waveform"]), 10, "values"
    )
    v = {n: got.latest(f"press2.{n}") for n in [*TYPES, "Waveform"]}
    assert all(s is not None and s.quality is Quality.GOOD for s in v.values()), v
    expect = {
        "Boolean": True,
        "SByte": -5,
        "Byte": 200,
        "Int16": -1234,
        "UInt16": 60000,
        "Int32": -123456,
        "UInt32": 4000000000,
        "Int64": -9000000000,
        "UInt64": 18000000000000000000,
        "Float": 1.5,
        "Double": 2.25,
        "String": "running",
        "ByteString": "0102",
    }
    for name, value in expect.items():
        assert v[name].value == value, (name, v[name])  # type: ignore[union-attr]
    assert v["DateTime"].value == pytest.approx(1796299200.0)  # type: ignore[union-attr]
    assert v["Waveform"].value == (0.0, 1.0, 0.0, -1.0)  # type: ignore[union-attr]
    assert src.link.state is LinkState.UP


async def test_status_codes_and_source_timestamps(server: ServerProc, running: list) -> None:  # type: ignore[type-arg]
    got = Got()
    running.append(asyncio.create_task(source(server, ["Double"], got).run()))
    await got.until(lambda: got.latest("press2.Double") is not None, 10, "first value")
    for status, quality, reason in (
        ("UncertainLastUsableValue", Quality.UNCERTAIN, Reason.LAST_USABLE),
        ("BadSensorFailure", Quality.BAD, Reason.DEVICE_FAILURE),
        ("Good", Quality.GOOD, Reason.NONE),
    ):
        server.send(set="Double", value=5.5, status=status, source_ts=1_790_000_000.25)
        await got.until(
            lambda q=quality: (s := got.latest("press2.Double")) is not None and s.quality is q,
            5,
            status,
        )
        s = got.latest("press2.Double")
        assert s is not None and s.reason is reason and s.t_source == 1_790_000_000.25
        if quality is not Quality.GOOD:
            assert s.detail == status


async def test_server_killed_then_back_and_a_silent_server(
    server: ServerProc, running: list
) -> None:  # type: ignore[type-arg]
    got = Got()
    src = source(server, ["Double"], got)
    running.append(asyncio.create_task(src.run()))
    await got.until(lambda: got.latest("press2.Double") is not None, 10, "first value")
    t0 = time.monotonic()
    server.kill()
    await got.until(
        lambda: (s := got.latest("press2.Double")) is not None and s.reason is Reason.NO_COMM,
        2 * src.endpoint.timeout_s + 1,
        "BAD after the server died",
    )
    assert time.monotonic() - t0 <= 2 * src.endpoint.timeout_s + 1
    assert src.link.state is LinkState.DOWN
    server.start()  # the same port: values come back, the subscription is made again
    server.send(set="Double", value=9.0)
    await got.until(
        lambda: (s := got.latest("press2.Double")) is not None and s.quality is Quality.GOOD,
        15,
        "values back after the restart",
    )
    # a server that stops answering without closing its socket
    assert server.p is not None
    os.kill(server.p.pid, signal.SIGSTOP)
    t1 = time.monotonic()
    await got.until(
        lambda: (s := got.latest("press2.Double")) is not None and s.reason is Reason.NO_COMM,
        3 * src.endpoint.timeout_s + 1,
        "BAD when the server went silent",
    )
    assert time.monotonic() - t1 <= 3 * src.endpoint.timeout_s + 1
    os.kill(server.p.pid, signal.SIGCONT)
    await got.until(
        lambda: (s := got.latest("press2.Double")) is not None and s.quality is Quality.GOOD,
        20,
        "values back after the silence",
    )


async def test_a_queue_overflow_is_counted_and_uncertain(server: ServerProc, running: list) -> None:  # type: ignore[type-arg]
    got = Got()
    src = OpcUaSource(
        OpcUaEndpoint("press2", f"opc.tcp://127.0.0.1:{server.port}/", publishing_ms=1000),
        [OpcUaPoint("press2.Double", "ns=2;s=Plant.Double", sampling_ms=0, queue_size=2)],
        got,
    )
    running.append(asyncio.create_task(src.run()))
    await got.until(lambda: got.latest("press2.Double") is not None, 10, "first value")
    server.send(burst="Double", count=40)
    await got.until(lambda: src.overflows > 0, 5, "an overflow")
    assert any(
        s.quality is Quality.UNCERTAIN and "server queue full" in s.detail for s in got.samples
    )
    # a slow change that never fills the queue is never flagged
    n = src.overflows
    for i in range(3):
        server.send(set="Double", value=100.0 + i)
        await asyncio.sleep(1.2)
    last = got.latest("press2.Double")
    assert src.overflows == n and last is not None and last.quality is Quality.GOOD


async def test_writes_are_read_back_and_a_refusal_says_why(
    server: ServerProc, running: list
) -> None:  # type: ignore[type-arg]
    got = Got()
    src = source(server, ["Int16"], got)
    running.append(asyncio.create_task(src.run()))
    await got.until(lambda: src.link.state is LinkState.UP, 10, "connected")
    assert await src.write("ns=2;s=Plant.Int16", 321) == 321
    await got.until(
        lambda: (s := got.latest("press2.Int16")) is not None and s.value == 321, 5, "seen"
    )
    with pytest.raises(OpcUaError, match="refused the write"):
        await src.write("ns=2;s=Plant.ReadOnly", 1.0)
    server.kill()
    await got.until(lambda: src.link.state is LinkState.DOWN, 10, "down")
    with pytest.raises(OpcUaError, match="not connected: not applied"):
        await src.write("ns=2;s=Plant.Int16", 1)


async def test_browse_shows_the_tree_with_types_and_values_and_the_plant_lines(
    server: ServerProc,
) -> None:
    from floorconsole.adapters.opcua import browse
    from floorconsole.core.opcua import plant_lines, tree_lines, variables

    ep = OpcUaEndpoint("press2", f"opc.tcp://127.0.0.1:{server.port}/")
    root = await browse(ep)
    lines = tree_lines(root)
    text = "\n".join(lines)
    assert "Plant  ns=2;s=Plant" in text and "Server" not in text
    assert any("Double  ns=2;s=Plant.Double  Double  2.25" in line for line in lines), text
    assert any("Waveform" in line and "Double[]" in line for line in lines), text
    plant = await browse(ep, "ns=2;s=Plant")
    toml_text = plant_lines(
        "press2", [v for v in variables(plant) if v.name in ("Double", "Int16")]
    )
    import tomllib

    doc = tomllib.loads(toml_text)
    assert [(d["id"], d["node"]) for d in doc["signals"]] == [
        ("press2.int16", "ns=2;s=Plant.Int16"),
        ("press2.double", "ns=2;s=Plant.Double"),
    ]
    assert all(d["device"] == "press2" for d in doc["signals"])
    with pytest.raises(OpcUaError, match="BadNodeIdUnknown"):
        await browse(ep, "ns=2;s=Nowhere")
    with pytest.raises(OpcUaError, match="cannot connect"):
        await browse(OpcUaEndpoint("x", f"opc.tcp://127.0.0.1:{free_port()}/", timeout_s=1.0))


async def _certs(d: Path) -> None:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    (d / "trusted").mkdir(parents=True)
    await setup_self_signed_certificate(
        d / "server.pem",
        d / "server.der",
        "urn:floorconsole:test-server",
        "127.0.0.1",
        [ExtendedKeyUsageOID.SERVER_AUTH],
        {"commonName": "test server"},
    )
    for name in ("client", "stranger"):
        await setup_self_signed_certificate(
            d / f"{name}.pem",
            d / f"{name}.der",
            f"urn:floorconsole:{name}",
            "127.0.0.1",
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": name},
        )
    (d / "trusted" / "client.der").write_bytes((d / "client.der").read_bytes())


async def test_a_secured_endpoint_takes_our_certificate_and_refuses_a_stranger(
    tmp_path: Path,
    running: list,  # type: ignore[type-arg]
) -> None:
    pki = tmp_path / "pki"
    await _certs(pki)
    port = free_port()
    srv = ServerProc(port)
    srv.p = subprocess.Popen(
        [sys.executable, "-m", "tests.support.opcua_server", str(port), str(pki)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert srv.p.stdout is not None and srv.p.stdout.readline().strip() == "ready"

        def endpoint(who: str) -> OpcUaEndpoint:
            return OpcUaEndpoint(
                "press2",
                f"opc.tcp://127.0.0.1:{port}/",
                security="Basic256Sha256-SignAndEncrypt",
                certificate=pki / f"{who}.der",
                private_key=pki / f"{who}.pem",
                server_certificate=pki / "server.der",
                timeout_s=2.0,
            )

        got = Got()
        ours = OpcUaSource(endpoint("client"), [OpcUaPoint("press2.d", "ns=2;s=Plant.Double")], got)
        running.append(asyncio.create_task(ours.run()))
        await got.until(
            lambda: (s := got.latest("press2.d")) is not None and s.quality is Quality.GOOD,
            15,
            "a value over SignAndEncrypt",
        )
        theirs_got = Got()
        theirs = OpcUaSource(
            endpoint("stranger"), [OpcUaPoint("press2.x", "ns=2;s=Plant.Double")], theirs_got
        )
        running.append(asyncio.create_task(theirs.run()))
        await theirs_got.until(lambda: theirs.last_error != "", 15, "the stranger refused")
        assert theirs.link.state is LinkState.DOWN
        assert theirs.last_error == "the server answered BadCertificateUntrusted"
        s = theirs_got.latest("press2.x")
        assert s is not None and s.quality is Quality.BAD and s.detail == theirs.last_error
    finally:
        srv.kill()
