"""Uplink drain rate after an outage, against bare paho QoS 1 publishing of the same payloads.

    python benchmarks/uplink.py [--samples 100000] [--batch 200] [--repeat 5]
                                [--lag-samples 1000000]

One real mosquitto (max_queued_messages 0); the receiver of benchmarks/uplink_receiver.py in
a process of its own (a plant's consumer never shares the edge's interpreter), counting every
message. Each run records a backlog of N samples in the outbox as if the broker had been
unreachable, with 1,000 samples/s flowing live through the historian while it drains:

- ours, unpaced: the Uplink drains it as fast as the broker acknowledges; timed from the
  moment data may flow to the PUBACK of the last backlog message.
- ours, paced: the receiver is the primary host and sends receipts; the backlog keeps at most
  host_window bytes ahead of it. Timed to the PUBACK, and to the receiver having it all.
- bare: a plain paho client (loop_start, the same in-flight window) publishes the very same
  payloads at QoS 1; timed to the last PUBACK, and to the receiver having them all.

drain_ratio = ours unpaced / bare, messages per second to the last PUBACK (the publisher's own
cost: SQLite reads, claims, deletes). delivered_ratio = ours paced / bare, messages per second
until the receiver has them all (what a plant sees). Medians of the runs, alternated.

Then one longer drain of --lag-samples, paced and unpaced: live_lag_p99_s is, at the
receiver, arrival minus the oldest sample time of each live message sampled during the paced
drain (live_lag_p99_unpaced_s the same without receipts: live messages queue at the broker
behind the backlog for as long as the consumer is slower than the drain).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.uplink_receiver import Receiver, Report  # noqa: E402
from floorconsole.adapters.broker import MosquittoBroker  # noqa: E402
from floorconsole.adapters.historian import Historian  # noqa: E402
from floorconsole.adapters.outbox import Outbox  # noqa: E402
from floorconsole.adapters.uplink import Uplink  # noqa: E402
from floorconsole.core.config import BrokerConfig  # noqa: E402
from floorconsole.core.quality import Quality, Reason  # noqa: E402
from floorconsole.core.sample import Sample  # noqa: E402
from floorconsole.core.uplink import UplinkConfig, message_payload, topic  # noqa: E402
from tests.support.uplink_driver import SyntheticSource  # noqa: E402

PREFIX = "bench"
HOST_ID = "bench-host"
INFLIGHT = 20
LIVE_RATE = 1000.0


class RemoteReceiver:
    """A Receiver (the primary host) in a child process, asked over a pipe."""

    def __init__(self, host: str, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_receiver_process, args=(host, port, child), daemon=True)
        self._proc.start()
        if self._conn.recv() != "ready":
            raise RuntimeError("receiver did not start")

    def report(self, edge: str, count: int, timeout: float = 60.0) -> Report:
        """Its counts once it has all `count` messages (a PUBACK comes from the broker, not
        from the subscriber, which may still be reading its queue)."""
        self._conn.send(("report", edge, count, timeout))
        return self._conn.recv()

    def lags(self) -> tuple[list[float], list[float]]:
        self._conn.send(("lags",))
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send(("stop",))
        self._conn.recv()
        self._proc.join(5)


def _receiver_process(host: str, port: int, conn: Connection) -> None:
    r = Receiver(host, port, prefix=PREFIX, host_id=HOST_ID).start()
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd[0] == "report":
            _tag, edge, count, timeout = cmd
            deadline = time.monotonic() + timeout
            while r.received(edge) < count and time.monotonic() < deadline:
                time.sleep(0.005)
            conn.send(r.report(edge, 0, count - 1))
        elif cmd[0] == "lags":
            conn.send((r.live_lags, r.live_arrivals))
        else:
            r.stop()
            conn.send("stopped")
            return


@dataclass(frozen=True)
class Drain:
    messages: int
    acked_per_s: float  # to the PUBACK of the last backlog message
    delivered_per_s: float  # until the receiver had every message
    window: tuple[float, float]  # wall time of the drain, first send to last PUBACK


def record_backlog(
    db: Path, config: UplinkConfig, n: int, outbox: Outbox | None = None
) -> tuple[Historian, Outbox]:
    """N samples of 20 signals spread over the last n/1000 seconds, committed 1,000 at a time
    (as the engine would have during the outage); the historian stays open for live data.
    outbox: one an uplink was already made for (the Sparkplug one encodes rows as recorded)."""
    outbox = outbox or Outbox(config)
    historian = Historian(db, commit_hook=outbox, flush_interval_s=0.1)
    historian.start()
    t0 = time.time() - n / LIVE_RATE
    good, none = Quality.GOOD, Reason.NONE
    for start in range(0, n, 1000):
        historian.append(
            [
                Sample(f"press.sig{i % 20}", float(i), good, none, t0 + i / LIVE_RATE, 0.0)
                for i in range(start, start + 1000)
            ]
        )
        historian.flush()
    return historian, outbox


def same_payloads(db: Path, edge: str, boot: str) -> list[tuple[str, bytes]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, kind, body FROM outbox ORDER BY seq").fetchall()
    return [
        (topic(PREFIX, edge, kind), message_payload(edge, boot, seq, True, kind, body))
        for seq, kind, body in rows
    ]


def drain_ours(
    broker: MosquittoBroker,
    db: Path,
    n: int,
    batch: int,
    edge: str,
    receiver: RemoteReceiver,
    *,
    paced: bool,
    after_s: float = 0.5,
) -> tuple[Drain, list[tuple[str, bytes]]]:
    """Our drain of an n-sample backlog, and the same payloads for the bare side."""
    config = UplinkConfig(
        broker="plant",
        topic_prefix=PREFIX,
        batch=batch,
        inflight=INFLIGHT,
        primary_host=HOST_ID if paced else None,
        reconnect_min_s=0.05,
    )
    historian, outbox = record_backlog(db, config, n)
    same = same_payloads(db, "bare-" + edge, outbox.boot)
    uplink = Uplink(config, BrokerConfig("plant", broker.host, broker.port), outbox, edge_id=edge)
    source = SyntheticSource(historian, LIVE_RATE).start()
    uplink.start()
    try:
        deadline = time.monotonic() + 120
        while uplink.last_drain is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no drain within 120 s: {uplink.stats()}")
            time.sleep(0.002)
        entries, messages, seconds = uplink.last_drain
        drained_wall = time.time()
        time.sleep(after_s)  # live data goes on after the drain; all of it must arrive
        source.stop()
        historian.flush()
        if not uplink.drain(60):
            raise RuntimeError(f"not drained: {uplink.stats()}")
    finally:
        uplink.close()
        historian.close()
    rep = receiver.report(edge, outbox.committed_next)
    if rep.missing or rep.out_of_order or entries < n:
        raise RuntimeError(f"drained {entries} of {n} entries; the receiver saw {rep}")
    started = drained_wall - seconds
    return Drain(
        messages,
        messages / seconds,
        messages / (rep.last_historical_at - started),
        (started, drained_wall),
    ), same


def drain_bare(
    broker: MosquittoBroker, messages: list[tuple[str, bytes]], receiver: RemoteReceiver, edge: str
) -> Drain:
    acked = 0
    done = threading.Event()
    connected = threading.Event()

    def on_publish(
        client: mqtt.Client, userdata: object, mid: int, rc: object, props: object
    ) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = on_publish
    client.on_connect = lambda *a: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("bare client did not connect")
        started_wall = time.time()
        started = time.perf_counter()
        for t, payload in messages:
            client.publish(t, payload, qos=1)
        if not done.wait(120):
            raise RuntimeError(f"bare: {acked} of {len(messages)} acknowledged")
        elapsed = time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()
    rep = receiver.report(edge, len(messages))
    if rep.missing:
        raise RuntimeError(f"bare run lost messages: {rep}")
    n = len(messages)
    return Drain(
        n,
        n / elapsed,
        n / (rep.last_historical_at - started_wall),
        (started_wall, started_wall + elapsed),
    )


def live_lags(receiver: RemoteReceiver, window: tuple[float, float]) -> list[float]:
    """Lags of the live messages whose oldest sample was taken during the drain."""
    lags, arrivals = receiver.lags()
    a, b = window
    return [lag for lag, at in zip(lags, arrivals, strict=True) if a <= at - lag <= b]


def p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99)) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lag-samples", type=int, default=1_000_000)
    args = parser.parse_args()
    unpaced, paced, bare = [], [], []
    with (
        tempfile.TemporaryDirectory(prefix="floorconsole-uplink-bench-") as d,
        MosquittoBroker() as broker,
    ):
        tmp = Path(d)
        receiver = RemoteReceiver(broker.host, broker.port)
        try:
            for run in range(args.repeat):
                u, same = drain_ours(
                    broker,
                    tmp / f"u{run}.db",
                    args.samples,
                    args.batch,
                    f"unpaced{run}",
                    receiver,
                    paced=False,
                )
                p, _ = drain_ours(
                    broker,
                    tmp / f"p{run}.db",
                    args.samples,
                    args.batch,
                    f"paced{run}",
                    receiver,
                    paced=True,
                )
                b = drain_bare(broker, same, receiver, f"bare-unpaced{run}")
                unpaced.append(u)
                paced.append(p)
                bare.append(b)
                print(
                    f"run {run}: {u.messages} messages of {args.batch} samples, msg/s  "
                    f"to PUBACK: ours {u.acked_per_s:6,.0f}  paced {p.acked_per_s:6,.0f}  "
                    f"bare {b.acked_per_s:6,.0f}   delivered: paced "
                    f"{p.delivered_per_s:6,.0f}  bare {b.delivered_per_s:6,.0f}",
                    flush=True,
                )
            lag_paced, _ = drain_ours(
                broker,
                tmp / "lag-p.db",
                args.lag_samples,
                args.batch,
                "lag-paced",
                receiver,
                paced=True,
            )
            lags = live_lags(receiver, lag_paced.window)
            lag_unpaced, _ = drain_ours(
                broker,
                tmp / "lag-u.db",
                args.lag_samples,
                args.batch,
                "lag-unpaced",
                receiver,
                paced=False,
            )
            lags_unpaced = live_lags(receiver, lag_unpaced.window)
        finally:
            receiver.stop()

    def med(xs: list[Drain], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in xs)

    ours_m, bare_m = med(unpaced, "acked_per_s"), med(bare, "acked_per_s")
    paced_d, bare_d = med(paced, "delivered_per_s"), med(bare, "delivered_per_s")
    print(
        f"drain {args.samples:,} samples to PUBACK: ours {ours_m:,.0f} msg/s = "
        f"{ours_m * args.batch:,.0f} samples/s; bare paho {bare_m:,.0f} msg/s; "
        f"ratio {ours_m / bare_m:.2f}"
    )
    print(
        f"delivered to the receiver: ours paced {paced_d:,.0f} msg/s; bare paho "
        f"{bare_d:,.0f} msg/s; ratio {paced_d / bare_d:.2f}"
    )
    print(
        f"live lag at the receiver while draining {args.lag_samples:,} samples: paced p99 "
        f"{p99(lags):.3f} s over {len(lags)} messages ({lag_paced.window[1] - lag_paced.window[0]:.1f} s"
        f" drain); unpaced p99 {p99(lags_unpaced):.3f} s over {len(lags_unpaced)}"
    )
    print(
        json.dumps(
            {
                "drain_ratio": round(ours_m / bare_m, 3),
                "drain_msgs_per_s": round(ours_m),
                "drain_samples_per_s": round(ours_m * args.batch),
                "bare_msgs_per_s": round(bare_m),
                "delivered_ratio": round(paced_d / bare_d, 3),
                "delivered_msgs_per_s": round(paced_d),
                "bare_delivered_msgs_per_s": round(bare_d),
                "live_lag_p99_s": round(p99(lags), 3),
                "live_lag_max_s": round(max(lags), 3) if lags else None,
                "live_lag_messages": len(lags),
                "live_lag_p99_unpaced_s": round(p99(lags_unpaced), 3),
                "lag_drain_samples": args.lag_samples,
                "backlog_samples": args.samples,
                "batch": args.batch,
                "inflight": INFLIGHT,
            }
        )
    )


if __name__ == "__main__":
    main()
