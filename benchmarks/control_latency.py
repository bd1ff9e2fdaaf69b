"""Control latency: a crossing sample entering the engine to the Modbus write read back, against
a bare pymodbus write + read-back of the same coil.

    .venv/bin/python benchmarks/control_latency.py [--writes 5000] [--poll 200ms]

The device is a ModbusDeviceServer in another process. (a) is AsyncModbusTcpClient.write_coil
then read_coils on a connection of its own. (b) is Hub.ingest of one sample that crosses the
rule's threshold (on_delay 0) -> Control.on_samples -> RuleEvaluator -> action task ->
audit record committed (hash chain; WAL, fsync'd once a second beside) -> DevicePoller.write (under the poller's lock,
write_coil, read_coils, compare) -> result recorded, audited and journaled, timed until
Control.idle() returns. Read-back is included in both.
The poller keeps polling its input register meanwhile, as in the engine, so a write may wait
for a poll in flight. The two alternate one by one. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floorconsole.core.units import parse_duration  # noqa: E402

COIL_ADDRESS = 10


def serve(conn: Connection) -> None:
    """The device, in its own process: report the port, serve until told to stop."""
    from floorconsole.adapters.modbus_server import ModbusDeviceServer

    server = ModbusDeviceServer(name="bench-device")
    conn.send(server.start())
    conn.recv()
    server.stop()


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def measure(port: int, writes: int, poll_s: float, data_dir: Path) -> dict[str, float]:
    from pymodbus.client import AsyncModbusTcpClient

    from floorconsole.adapters.alarm_journal import AlarmJournal
    from floorconsole.adapters.audit_log import AuditLog
    from floorconsole.adapters.modbus import DevicePoller
    from floorconsole.core.alarms import AlarmTable
    from floorconsole.core.clock import SystemClock
    from floorconsole.core.config import (
        DeviceConfig,
        EdgeConfig,
        ModbusPoint,
        MqttPoint,
        PlantConfig,
        SignalConfig,
    )
    from floorconsole.core.links import LinkStats
    from floorconsole.core.quality import Quality, Reason
    from floorconsole.core.rules import ControlConfig, parse_rules
    from floorconsole.core.sample import Sample
    from floorconsole.engine.control import Control
    from floorconsole.engine.hub import Hub

    clock = SystemClock()
    dev = DeviceConfig(
        id="bench",
        protocol="modbus-tcp",
        host="127.0.0.1",
        port=port,
        poll_s=poll_s,
        timeout_s=2.0,
        retries=0,
    )
    polled = SignalConfig(id="bench.input", source=ModbusPoint("bench", "hr", 0, "uint16"))
    # The rule's input arrives by MQTT (nothing polls it), like a model score would.
    score = SignalConfig(id="bench.score", source=MqttPoint("local", "bench/score", ()))
    plant = PlantConfig(edge=EdgeConfig(id="bench"), devices=(dev,), signals=(polled, score))
    hub = Hub(plant, clock)
    stats = LinkStats("bench", "device", f"127.0.0.1:{port}")
    poller = DevicePoller(dev, [polled], hub, clock, stats)
    rules, problems = parse_rules(
        [
            {
                "id": "trip",
                "signal": "bench.score",
                "op": ">",
                "threshold": 50,
                "actions": [
                    {"write": "bench", "address": f"co:{COIL_ADDRESS}", "on": True, "off": False}
                ],
            }
        ],
        signals={"bench.score": None},
        devices={"bench"},
        brokers=set(),
    )
    assert not problems, problems
    journal = AlarmJournal(data_dir / "alarms.db")
    alarms = AlarmTable(clock)
    alarms.on_entry(journal.append)  # as in the engine: once per alarm table
    # As in the engine: no write without its record committed first (WAL, synchronous
    # NORMAL), and the records put on disk once a second by a sync beside it.
    audit = AuditLog.in_data_dir(data_dir, synchronous="NORMAL")
    control = Control(
        rules,
        ControlConfig(enabled=True),
        hub.latest.get,
        {"bench": poller.write},
        None,
        alarms,
        journal,
        clock,
        audit=audit.append,
        audit_now=lambda *a: audit.try_append(*a) is not None,
    )

    async def sync_every_second() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            await loop.run_in_executor(None, audit.sync)

    syncing = asyncio.create_task(sync_every_second())
    hub.add_listener(control.on_samples)
    await poller.poll_once()
    polling = asyncio.create_task(poller.run())

    bare = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await bare.connect(), "bare client cannot connect"

    bare_on = {"v": False}
    rule_on = {"v": False}

    async def bare_write() -> None:
        value = bare_on["v"] = not bare_on["v"]
        r = await bare.write_coil(COIL_ADDRESS, value, device_id=1)
        rb = await bare.read_coils(COIL_ADDRESS, count=1, device_id=1)
        assert not r.isError() and rb.bits[0] == value

    async def ours() -> None:
        value = rule_on["v"] = not rule_on["v"]
        hub.ingest(
            [
                Sample(
                    "bench.score",
                    70.0 if value else 30.0,
                    Quality.GOOD,
                    Reason.NONE,
                    clock.wall(),
                    clock.mono(),
                )
            ]
        )
        await control.idle()
        rec = control.last_results[("trip", 0)]
        assert rec.ok and rec.transition == ("activate" if value else "release"), rec

    a: list[float] = []
    b: list[float] = []
    t = time.perf_counter
    for i in range(200 + writes):  # the first 200 pairs warm up
        t0 = t()
        await bare_write()
        t1 = t()
        await ours()
        t2 = t()
        if i >= 200:
            a.append(t1 - t0)
            b.append(t2 - t1)
    polling.cancel()
    syncing.cancel()
    await asyncio.gather(polling, syncing, return_exceptions=True)
    await poller.close()
    bare.close()
    journal.close()
    audit.close()
    ms = 1000.0
    return {
        "bare_p50_ms": statistics.median(a) * ms,
        "bare_p99_ms": percentile(a, 0.99) * ms,
        "ours_p50_ms": statistics.median(b) * ms,
        "ours_p99_ms": percentile(b, 0.99) * ms,
        "n": float(len(a)),
        "polls": float(poller.polls),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=5000, help="timed writes of each kind")
    ap.add_argument("--poll", default="200ms", help="the device's poll period meanwhile")
    args = ap.parse_args(argv)
    poll_s = parse_duration(args.poll)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            print("control_latency: the server process did not start", file=sys.stderr)
            return 1
        port = parent.recv()
        with tempfile.TemporaryDirectory(prefix="floorconsole-bench-") as tmp:
            r = asyncio.run(measure(port, args.writes, poll_s, Path(tmp)))
    finally:
        parent.send("stop")
        proc.join(10)
    print(
        f"coil co:{COIL_ADDRESS}; server in another process; {int(r['n'])} writes of each "
        f"kind, alternating one by one; the poller polled {int(r['polls'])} times meanwhile "
        f"(every {args.poll})"
    )
    print(
        f"(a) bare write_coil + read_coils          p50 {r['bare_p50_ms']:.3f} ms   "
        f"p99 {r['bare_p99_ms']:.3f} ms"
    )
    print(
        f"(b) sample -> rule -> write + read-back   p50 {r['ours_p50_ms']:.3f} ms   "
        f"p99 {r['ours_p99_ms']:.3f} ms"
    )
    result = {
        "added_p99_ms": round(r["ours_p99_ms"] - r["bare_p99_ms"], 4),
        "added_p50_ms": round(r["ours_p50_ms"] - r["bare_p50_ms"], 4),
        "ours_p50_ms": round(r["ours_p50_ms"], 4),
        "ours_p99_ms": round(r["ours_p99_ms"], 4),
        "bare_p50_ms": round(r["bare_p50_ms"], 4),
        "bare_p99_ms": round(r["bare_p99_ms"], 4),
        "read_back_included": True,
        "writes": int(r["n"]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
