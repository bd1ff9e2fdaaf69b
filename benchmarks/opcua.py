"""OPC UA figures: data-change notifications per second into the historian, against a bare
asyncua subscription handler receiving the same notifications in the same run; and the
latency a server write takes to become a sample in the engine, against the bare handler.

    .venv/bin/python benchmarks/opcua.py [--nodes 200] [--seconds 4] [--rounds 2]

A server (asyncua, a process of its own) changes --nodes Double variables as fast as it can.
In turn (bare, ours, bare, ours ...; --rounds each) one client subscribes to all of them with
the same publishing and sampling intervals and queue size:
- bare: asyncua's Client with a handler that counts datachange_notification calls;
- ours: the engine's path, OpcUaSource (engine_source) -> Hub.ingest -> Historian, counted
  as rows the historian has committed (flushed at the end of the window).
opcua_ratio = ours / bare notifications per second (target >= 0.8).

Latency: the benchmark writes a probe variable through a client of its own, --probes times;
the time from the write's return to the value reaching (bare) the handler, (ours) the hub's
listener, with the flood paused. added_latency_ms = ours - bare, medians.

Prints readable figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Client, Server, ua  # noqa: E402

from floorconsole.adapters.historian import Historian, HistoryReader  # noqa: E402
from floorconsole.adapters.opcua import engine_source  # noqa: E402
from floorconsole.core.clock import SystemClock  # noqa: E402
from floorconsole.core.config import parse_plant  # noqa: E402
from floorconsole.core.links import LinkStats  # noqa: E402
from floorconsole.engine.hub import Hub  # noqa: E402

PUBLISH_MS = 50
SAMPLING_MS = 0  # every change the server makes is a notification (its fastest rate)
QUEUE = 100


# ---------------------------------------------------------------------- the server


async def serve(port: int, n: int) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:floorconsole:bench")
    obj = await server.nodes.objects.add_object(f"ns={idx};s=Bench", "Bench")
    nodes = [
        await obj.add_variable(
            f"ns={idx};s=Bench.V{i}", f"V{i}", 0.0, varianttype=ua.VariantType.Double
        )
        for i in range(n)
    ]
    probe = await obj.add_variable(
        f"ns={idx};s=Bench.Probe", "Probe", 0.0, varianttype=ua.VariantType.Double
    )
    await probe.set_writable()
    flood = asyncio.Event()
    flood.set()

    async def commands() -> None:  # "quiet" / "flood" on stdin: the latency runs on a quiet server
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            flood.set() if line.strip() == b"flood" else flood.clear()
            print("ok", flush=True)

    async with server:
        listen = asyncio.create_task(commands())
        print("ready", flush=True)
        k = 0
        while not listen.done():
            await flood.wait()
            k += 1
            for v in nodes:
                await v.write_value(ua.DataValue(ua.Variant(float(k), ua.VariantType.Double)))
            await asyncio.sleep(0)


# ---------------------------------------------------------------------- the clients


def plant_for(port: int, n: int, data: Path) -> Any:
    lines = [
        f'[edge]\nid = "bench"\ndata_dir = "{data}"\n',
        f'[[devices]]\nid = "bench"\nprotocol = "opc-ua"\nendpoint = "opc.tcp://127.0.0.1:{port}/"\n'
        f'publishing_interval = "{PUBLISH_MS}ms"\ntimeout = "5s"\n',
    ]
    for i in [*range(n), "probe"]:
        node = f"ns=2;s=Bench.{'Probe' if i == 'probe' else f'V{i}'}"
        lines.append(
            f'[[signals]]\nid = "bench.v{i}"\ndevice = "bench"\nnode = "{node}"\n'
            f'sampling_interval = "{SAMPLING_MS}ms"\nqueue_size = {QUEUE}\n'
        )
    return parse_plant("\n".join(lines))


class Bare:
    def __init__(self) -> None:
        self.count = 0
        self.probe: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
        self.probe_id = ""

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.count += 1
        if node.nodeid.to_string() == self.probe_id:
            self.probe.put_nowait((val, time.perf_counter()))


SERVER: subprocess.Popen[str] | None = None


def tell(cmd: str) -> None:
    assert SERVER is not None and SERVER.stdin is not None and SERVER.stdout is not None
    SERVER.stdin.write(cmd + "\n")
    SERVER.stdin.flush()
    assert SERVER.stdout.readline().strip() == "ok"


async def bare_round(ep: str, n: int, seconds: float, probes: int) -> tuple[float, list[float]]:
    h = Bare()
    async with Client(ep) as c:
        sub = await c.create_subscription(PUBLISH_MS, h)
        nodes = [c.get_node(f"ns=2;s=Bench.V{i}") for i in range(n)]
        probe = c.get_node("ns=2;s=Bench.Probe")
        h.probe_id = probe.nodeid.to_string()
        await sub.subscribe_data_change(
            [*nodes, probe], queuesize=QUEUE, sampling_interval=SAMPLING_MS
        )
        await asyncio.sleep(1.0)  # the initial values
        c0, t0 = h.count, time.perf_counter()
        await asyncio.sleep(seconds)
        rate = (h.count - c0) / (time.perf_counter() - t0)
        lat = await probe_latency(ep, h.probe, probes)
    return rate, lat


async def ours_round(
    ep: str, port: int, n: int, seconds: float, probes: int
) -> tuple[float, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="fc-bench-ua-"))
    plant = plant_for(port, n, folder)
    clock = SystemClock()
    hist = Historian(folder / "history.db", flush_interval_s=0.1)
    hist.start()
    hub = Hub(plant, clock, hist)
    probe_q: asyncio.Queue[tuple[float, float]] = asyncio.Queue()

    def listen(batch: Any) -> None:
        for s in batch:
            if s.signal == "bench.vprobe":
                probe_q.put_nowait((s.value, time.perf_counter()))

    hub.add_listener(listen)
    (dev,) = plant.opcua_devices
    src = engine_source(
        dev, plant.signals_of_opcua("bench"), hub.ingest, clock, LinkStats("bench", "device", ep)
    )
    task = asyncio.create_task(src.run())
    try:
        while hub.latest["bench.v0"].value is None:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        hist.flush()
        rows0 = _rows(folder / "history.db")
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0  # the flush blocks the loop: nothing more comes in
        hist.flush()
        rate = (_rows(folder / "history.db") - rows0) / elapsed
        try:
            lat = await probe_latency(ep, probe_q, probes)
        except TimeoutError:
            print("probe:", hub.latest["bench.vprobe"], src.last_error, src.notifications)
            raise
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        hist.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rate, lat


def _rows(db: Path) -> int:
    with HistoryReader(db) as reader:
        return reader.rows_total()


async def probe_latency(ep: str, q: asyncio.Queue[tuple[float, float]], probes: int) -> list[float]:
    out = []
    tell("quiet")
    await asyncio.sleep(1.0)  # what the flood queued has been delivered
    async with Client(ep) as w:
        node = w.get_node("ns=2;s=Bench.Probe")
        base = time.time() % 1e6
        for i in range(probes):
            value = base + i
            await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Double)))
            t_write = time.perf_counter()
            while True:
                got, t = await asyncio.wait_for(q.get(), 10)
                if got == value:
                    out.append((t - t_write) * 1000.0)
                    break
            await asyncio.sleep(0.05)
    tell("flood")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    port = free_port()
    global SERVER
    server = SERVER = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--nodes", str(args.nodes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        ep = f"opc.tcp://127.0.0.1:{port}/"
        bare, ours, lat_bare, lat_ours = [], [], [], []
        for _ in range(args.rounds):
            r, lat = await bare_round(ep, args.nodes, args.seconds, args.probes)
            bare.append(r)
            lat_bare += lat
            r, lat = await ours_round(ep, port, args.nodes, args.seconds, args.probes)
            ours.append(r)
            lat_ours += lat
    finally:
        server.kill()
        server.wait()
    b, o = statistics.mean(bare), statistics.mean(ours)
    lb, lo = statistics.median(lat_bare), statistics.median(lat_ours)
    print(f"bare asyncua handler: {b:,.0f} notifications/s (rounds {[round(x) for x in bare]})")
    print(f"into the historian:   {o:,.0f} notifications/s (rounds {[round(x) for x in ours]})")
    print(f"opcua_ratio {o / b:.2f} (target >= 0.8)")
    print(
        f"write -> handler {lb:.1f} ms, write -> engine sample {lo:.1f} ms (medians of {len(lat_ours)})"
    )
    print(f"added latency {lo - lb:.1f} ms")
    return {
        "opcua_ratio": round(o / b, 3),
        "bare_notifications_per_s": round(b),
        "historian_notifications_per_s": round(o),
        "nodes": args.nodes,
        "publishing_ms": PUBLISH_MS,
        "write_to_handler_ms_median": round(lb, 2),
        "write_to_engine_ms_median": round(lo, 2),
        "added_latency_ms_median": round(lo - lb, 2),
        "write_to_engine_ms_p95": round(sorted(lat_ours)[int(0.95 * (len(lat_ours) - 1))], 2),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        asyncio.run(serve(a.serve, a.nodes))
    else:
        print(json.dumps(asyncio.run(main(a))))
