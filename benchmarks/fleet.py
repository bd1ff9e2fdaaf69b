"""A fleet of 1,000 simulated edges plus one real engine on one mosquitto: the fleet view's
frame build time, and a staged rollout to all of them.

    .venv/bin/python benchmarks/fleet.py [--edges 1000] [--waves 10,25%,50%]

Each simulated edge is an asyncio task with its own MQTT connection (a minimal MQTT 3.1.1
client on asyncio streams, written here: a thousand paho clients would be a thousand threads)
speaking the fleet protocol of core/fleet.py: a retained status with a last will, its
activation log, rollout commands in, results out (an apply takes 0.2-1 s; it does not verify
signatures: the real engine does, and it is the canary). The real engine runs on a simulated
Modbus device with [fleet] on the same broker.

Figures: edges; frame_ms_median / frame_ms_max, building the fleet view's list (the text of
every row, ui/fleet.fleet_frame) over all edges, 50 times; rollout_minutes, from the first
command to the last result, canary first, then --waves, soak 1 s; messages_per_s, messages
published to the broker (edges' statuses, logs and results, the tool's commands) per second
during the rollout, and status_messages_per_s while idle. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from floorconsole.adapters.broker import MosquittoBroker  # noqa: E402
from floorconsole.adapters.modbus_server import ModbusDeviceServer  # noqa: E402
from floorconsole.cli.fleet import rollout  # noqa: E402
from floorconsole.core.fleet import parse_command  # noqa: E402
from floorconsole.ui.fleet import fleet_frame  # noqa: E402
from tests.support.fleet import Edge, bundle, edge_plant, keys, settled, tool  # noqa: E402

PREFIX = "floorconsole/fleet"
STATUS_INTERVAL_S = 10.0


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([kind])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


class SimEdge:
    """One edge: MQTT over asyncio streams, the fleet protocol, nothing else."""

    published = 0

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port
        self.snapshot = hashlib.sha256(name.encode()).hexdigest()
        self.fleet_snapshot = ""
        self.activations: list[dict[str, Any]] = []
        self.boot = time.time()
        self.pid = 0
        self.writer: asyncio.StreamWriter | None = None
        self.handled: set[str] = set()

    def topic(self, kind: str) -> str:
        return f"{PREFIX}/{self.name}/{kind}"

    def status(self, state: str = "online") -> bytes:
        return json.dumps(
            {
                "edge": self.name,
                "site": f"site{int(self.name[-4:]) % 10}",
                "tags": ["sim"],
                "state": state,
                "t": time.time(),
                "boot": self.boot,
                "version": "sim",
                "snapshot": self.snapshot,
                "fleet_snapshot": self.fleet_snapshot,
                "backlog_rows": 0,
                "alarms": {"high": random.randint(0, 2)},
                "models": {"m": "NORMAL"},
            }
        ).encode()

    def publish(self, topic_name: str, payload: bytes, retain: bool = True) -> None:
        assert self.writer is not None
        self.pid = self.pid % 65535 + 1
        body = _s(topic_name) + struct.pack("!H", self.pid) + payload
        self.writer.write(_packet(0x32 | (1 if retain else 0), body))
        SimEdge.published += 1

    def record(self, outcome: str) -> None:
        self.activations.append(
            {
                "seq": len(self.activations) + 1,
                "snapshot": self.snapshot,
                "fleet_snapshot": self.fleet_snapshot,
                "at": time.time(),
                "outcome": outcome,
                "by": "sim",
            }
        )
        self.activations = self.activations[-200:]
        self.publish(
            self.topic("activations"),
            json.dumps({"edge": self.name, "activations": self.activations}).encode(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer = writer
        will = self.status("offline")
        flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retained
        body = _s("MQTT") + bytes([4, flags]) + struct.pack("!H", 120)
        body += _s(f"sim-{self.name}") + _s(self.topic("status")) + struct.pack("!H", len(will))
        writer.write(_packet(0x10, body + will))
        await reader.readexactly(4)  # CONNACK
        writer.write(_packet(0x82, struct.pack("!H", 1) + _s(self.topic("rollout")) + b"\x01"))
        self.publish(self.topic("status"), self.status())
        self.record("applied")
        reading = asyncio.create_task(self._read(reader))
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), STATUS_INTERVAL_S + random.random())
                except TimeoutError:
                    self.publish(self.topic("status"), self.status())
                    writer.write(b"\xc0\x00")  # PINGREQ
        finally:
            reading.cancel()
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            head = (await reader.readexactly(1))[0]
            n, mult = 0, 1
            while True:
                b = (await reader.readexactly(1))[0]
                n += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            body = await reader.readexactly(n)
            if head >> 4 == 3:  # PUBLISH
                tlen = struct.unpack("!H", body[:2])[0]
                off = 2 + tlen
                if (head >> 1) & 3:
                    assert self.writer is not None
                    self.writer.write(_packet(0x40, body[off : off + 2]))
                    off += 2
                asyncio.create_task(self._command(body[off:]))

    async def _command(self, payload: bytes) -> None:
        cmd = parse_command(self.name, payload)
        if cmd.rollout in self.handled:
            return
        self.handled.add(cmd.rollout)
        self._result(cmd.rollout, "received", True)
        await asyncio.sleep(0.2 + 0.8 * random.random())  # the apply and its health check
        if cmd.action == "apply":
            self.fleet_snapshot = hashlib.sha256(cmd.files["manifest.json"].encode()).hexdigest()
            self.snapshot = hashlib.sha256((self.fleet_snapshot + self.name).encode()).hexdigest()
        else:
            self.snapshot, self.fleet_snapshot = cmd.snapshot, ""
        self.record("applied")
        self.publish(self.topic("status"), self.status())
        self._result(cmd.rollout, "applied", True)

    def _result(self, rid: str, state: str, ok: bool) -> None:
        doc = {
            "rollout": rid,
            "edge": self.name,
            "state": state,
            "ok": ok,
            "snapshot": self.snapshot,
            "fleet_snapshot": self.fleet_snapshot,
            "message": "simulated",
            "t": time.time(),
        }
        self.publish(self.topic("rollout/result"), json.dumps(doc).encode())


def run_sims(n: int, port: int, stop_flag: threading.Event, ready: threading.Event) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        edges = [SimEdge(f"sim{i:04d}", port) for i in range(n)]
        tasks = []
        for e in edges:
            tasks.append(asyncio.create_task(e.run(stop)))
            await asyncio.sleep(0.002)
        while sum(1 for e in edges if e.writer is not None) < len(edges):
            await asyncio.sleep(0.1)
        ready.set()
        while not stop_flag.is_set():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=1000)
    ap.add_argument("--waves", default="10,25%,50%")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = MosquittoBroker().start()
    device = ModbusDeviceServer(name="bench-device")
    device.start()
    private, trusted = keys(work / "keys")
    raw = edge_plant("real-edge", device.port, broker.port, trusted, site="hall1", tags=["real"])
    real = Edge(work / "real", raw, device)
    stop_flag, ready = threading.Event(), threading.Event()
    sims = threading.Thread(
        target=run_sims, args=(args.edges, broker.port, stop_flag, ready), daemon=True
    )
    client = None
    try:
        real.start()
        settled()(real)
        client = tool(broker.port)
        sims.start()
        ready.wait(120)
        total = args.edges + 1
        if not client.wait_for(lambda s: len(s.status) >= total, 120):
            raise SystemExit(f"only {len(client.state.status)} of {total} edges seen")
        client.settle(1.0, 30)
        p0, t0 = SimEdge.published, time.monotonic()
        time.sleep(STATUS_INTERVAL_S * 2)
        idle_rate = (SimEdge.published - p0) / (time.monotonic() - t0)

        frames = []
        for _ in range(50):
            t = time.perf_counter()
            with client.lock:
                _summary, lines = fleet_frame(client.state, time.time())
            frames.append((time.perf_counter() - t) * 1000)
        assert len(lines) == total

        g1, _ = bundle(work / "g1", raw, private, message="poll 250", change=_poll)
        p0, m0, t0 = SimEdge.published, client.messages, time.monotonic()
        report = rollout(
            client,
            g1,
            canary=["real-edge"],
            waves=args.waves.split(","),
            soak_s=1.0,
            timeout_s=300,
            say=lambda line: print(line[:160], flush=True) if not line.startswith("  ") else None,
        )
        took = time.monotonic() - t0
        sent = SimEdge.published - p0 + total  # the edges' messages and the tool's commands
        figures = {
            "edges": total,
            "frame_ms_median": round(statistics.median(frames), 2),
            "frame_ms_max": round(max(frames), 2),
            "rollout_ok": report.ok,
            "rollout_updated": len(report.updated),
            "rollout_waves": [len(w) for w in report.waves],
            "rollout_minutes": round(took / 60, 2),
            "messages_per_s": round(sent / took, 1),
            "tool_received_per_s": round((client.messages - m0) / took, 1),
            "status_messages_per_s": round(idle_rate, 1),
        }
        print(json.dumps(figures))
    finally:
        stop_flag.set()
        if client is not None:
            client.close()
        real.stop()
        sims.join(30)
        device.stop()
        broker.close()
        shutil.rmtree(work, ignore_errors=True)


def _poll(cfg: dict[str, Any]) -> None:
    cfg["devices"][0]["poll"] = "250ms"


if __name__ == "__main__":
    main()
