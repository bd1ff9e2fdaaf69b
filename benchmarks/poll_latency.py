"""Poll latency: our DevicePoller's poll against a bare pymodbus read of the same block.

    .venv/bin/python benchmarks/poll_latency.py [--registers 32] [--reads 3000]

The device is a ModbusDeviceServer in another process (so its work does not share our GIL).
(a) is AsyncModbusTcpClient.read_holding_registers of the block; (b) is DevicePoller.poll_once
on the same block: the read under our lock and timeout, decode of every point (float32) and
Samples delivered to a sink. The two alternate read by read, so whatever else the machine
does hits both alike. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floorconsole.core.config import DeviceConfig, ModbusPoint, SignalConfig  # noqa: E402
from floorconsole.core.sample import Sample  # noqa: E402


def serve(conn: Connection, registers: int) -> None:
    """The device, in its own process: report the port, serve until told to stop."""
    from floorconsole.adapters.modbus_server import ModbusDeviceServer

    server = ModbusDeviceServer(name="bench-device")
    for i in range(registers // 2):
        server.set_value(ModbusPoint("bench", "hr", 2 * i, "float32"), 1.5 * i)
    conn.send(server.start())
    conn.recv()
    server.stop()


class CountingSink:
    def __init__(self) -> None:
        self.samples = 0

    def ingest(self, samples: Sequence[Sample]) -> None:
        self.samples += len(samples)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def timed_pairs(
    a_fn: Callable[[], Awaitable[object]],
    b_fn: Callable[[], Awaitable[object]],
    n: int,
    a: list[float],
    b: list[float],
) -> None:
    """a, b, a, b, ...: whatever else the machine does hits both alike."""
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await a_fn()
        t1 = clock()
        await b_fn()
        t2 = clock()
        a.append(t1 - t0)
        b.append(t2 - t1)


def decode_rate(registers: int) -> float:
    """Samples/s through block decode + Sample construction alone (no I/O)."""
    from floorconsole.core.clock import SystemClock
    from floorconsole.core.quality import Quality, Reason
    from floorconsole.core.registers import plan_reads

    entries = [
        (f"s{i}", ModbusPoint("bench", "hr", 2 * i, "float32", scale=0.1))
        for i in range(registers // 2)
    ]
    [block] = plan_reads(entries)
    data = [0x4120, 0] * (registers // 2)
    clock = SystemClock()
    good, none = Quality.GOOD, Reason.NONE
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(100):
            wall, mono = clock.wall(), clock.mono()
            samples = list(
                map(
                    Sample,
                    block.keys,
                    block.decode(data),
                    repeat(good),
                    repeat(none),
                    repeat(wall),
                    repeat(mono),
                )
            )
            n += len(samples)
    return n / (time.perf_counter() - t0)


async def measure(port: int, registers: int, reads: int) -> dict[str, float]:
    from pymodbus.client import AsyncModbusTcpClient

    from floorconsole.adapters.modbus import DevicePoller
    from floorconsole.core.clock import SystemClock
    from floorconsole.core.links import LinkStats

    bare = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await bare.connect(), "bare client cannot connect"
    dev = DeviceConfig(
        id="bench",
        protocol="modbus-tcp",
        host="127.0.0.1",
        port=port,
        poll_s=1.0,
        timeout_s=2.0,
        retries=0,
    )
    signals = [
        SignalConfig(
            id=f"bench.s{i}", source=ModbusPoint("bench", "hr", 2 * i, "float32", scale=0.1)
        )
        for i in range(registers // 2)
    ]
    sink = CountingSink()
    poller = DevicePoller(
        dev, signals, sink, SystemClock(), LinkStats("bench", "device", f"127.0.0.1:{port}")
    )
    assert len(poller.plan) == 1 and poller.plan[0].count == registers

    async def bare_read() -> None:
        r = await bare.read_holding_registers(0, count=registers, device_id=1)
        assert not r.isError() and len(r.registers) == registers

    async def our_poll() -> None:
        samples = await poller.poll_once()
        assert len(samples) == registers // 2

    await timed_pairs(bare_read, our_poll, 300, [], [])  # warm-up
    a: list[float] = []
    b: list[float] = []
    await timed_pairs(bare_read, our_poll, reads, a, b)
    bare.close()
    await poller.close()
    return {
        "bare_median_ms": statistics.median(a) * 1000,
        "bare_p99_ms": percentile(a, 0.99) * 1000,
        "ours_median_ms": statistics.median(b) * 1000,
        "ours_p99_ms": percentile(b, 0.99) * 1000,
        "n": float(len(a)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--registers",
        type=int,
        default=32,
        help="block size in registers, float32 points (default 32 = 16 points)",
    )
    ap.add_argument("--reads", type=int, default=3000, help="timed reads of each kind")
    args = ap.parse_args(argv)
    if not 2 <= args.registers <= 124 or args.registers % 2:
        ap.error("--registers must be even, 2..124")

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.registers), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            print("poll_latency: the server process did not start", file=sys.stderr)
            return 1
        port = parent.recv()
        r = asyncio.run(measure(port, args.registers, args.reads))
    finally:
        parent.send("stop")
        proc.join(10)
    rate = decode_rate(args.registers)
    points = args.registers // 2
    print(
        f"block: hr:0-{args.registers - 1}, {points} float32 points; server in another "
        f"process; {int(r['n'])} reads of each kind, alternating one by one"
    )
    print(
        f"(a) bare pymodbus read     median {r['bare_median_ms']:.3f} ms   "
        f"p99 {r['bare_p99_ms']:.3f} ms"
    )
    print(
        f"(b) DevicePoller.poll_once median {r['ours_median_ms']:.3f} ms   "
        f"p99 {r['ours_p99_ms']:.3f} ms   (read + decode + {points} Samples + ingest)"
    )
    print(f"decode + Sample construction alone: {rate:,.0f} samples/s on one core")
    result = {
        "poll_median_ratio": round(r["ours_median_ms"] / r["bare_median_ms"], 3),
        "poll_p99_ratio": round(r["ours_p99_ms"] / r["bare_p99_ms"], 3),
        "bare_median_ms": round(r["bare_median_ms"], 4),
        "ours_median_ms": round(r["ours_median_ms"], 4),
        "bare_p99_ms": round(r["bare_p99_ms"], 4),
        "ours_p99_ms": round(r["ours_p99_ms"], 4),
        "registers": args.registers,
        "decode_samples_per_s": round(rate),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
