"""The engine side of the uplink in a process of its own, fed by a synthetic source.

    python -m tests.support.uplink_driver DATA_DIR --port N [--host 127.0.0.1] [--edge ID]
        [--host-id ID] [--rate 1000] [--inflight 20] [--sparkplug GROUP]

With --sparkplug the uplink is the Sparkplug B one (group GROUP, edge node --edge, primary
host --host-id): line.sig0-4 are metrics of device "line1", line.sig5-9 node metrics.

Runs a Historian carrying an Outbox, and an Uplink to the broker, while SyntheticSource
appends `rate` samples a second. Prints one JSON line ("stats {...}") every 0.25 s. On
SIGTERM: stops the source, commits what is pending, waits for the outbox to drain (up to
30 s), stops cleanly, prints "final {...}" and exits 0. SIGKILL is the point of the exercise.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from floorconsole.adapters.historian import Historian
from floorconsole.adapters.outbox import Outbox
from floorconsole.adapters.sparkplug.uplink import SignalMetric, SparkplugUplink
from floorconsole.adapters.uplink import Uplink
from floorconsole.core.config import BrokerConfig
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import DataType, SparkplugConfig
from floorconsole.core.uplink import UplinkConfig

SIGNALS = tuple(f"line.sig{i}" for i in range(10))


class SyntheticSource:
    """Appends `rate` samples a second to a historian from a thread, as an engine would:
    small batches every few milliseconds, values counting up, wall-clock source times."""

    def __init__(self, historian: Historian, rate: float = 1000.0, start: int = 0) -> None:
        self.historian = historian
        self.rate = rate
        self.generated = 0
        self._next_value = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthetic-source", daemon=True)

    def start(self) -> SyntheticSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        good, none = Quality.GOOD, Reason.NONE
        while not self._stop.wait(0.005):
            mono = time.monotonic()
            due = int((mono - started) * self.rate)
            if due <= self.generated:
                continue
            wall = time.time()
            batch = []
            for _ in range(due - self.generated):
                v = self._next_value
                self._next_value += 1
                batch.append(Sample(SIGNALS[v % len(SIGNALS)], float(v), good, none, wall, mono))
            self.historian.append(batch)
            self.generated = due


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--edge", default="edge1")
    p.add_argument("--prefix", default="floorconsole")
    p.add_argument("--host-id", default=None)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--sparkplug", default=None, metavar="GROUP")
    args = p.parse_args(argv)

    config = UplinkConfig(
        broker="plant",
        topic_prefix=args.prefix,
        inflight=args.inflight,
        primary_host=None if args.sparkplug else args.host_id,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        format="sparkplug" if args.sparkplug else "json",
        sparkplug=SparkplugConfig(args.sparkplug, args.edge, args.host_id)
        if args.sparkplug
        else None,
    )
    outbox = Outbox(config)
    historian = Historian(args.data_dir / "history.db", commit_hook=outbox)
    historian.start()
    # Values go on from what an earlier (killed) run stored, so every sample is unique.
    start = int(historian.rows_total())
    broker = BrokerConfig("plant", args.host, args.port, keepalive_s=5.0)
    uplink: Uplink
    if args.sparkplug:
        metrics = [
            SignalMetric(s, "line1" if i < 5 else None, DataType.Double, "mm/s")
            for i, s in enumerate(SIGNALS)
        ]
        uplink = SparkplugUplink(
            config,
            broker,
            outbox,
            edge_id=args.edge,
            data_dir=args.data_dir,
            metrics=metrics,
            snapshot_id="driver",
        )
    else:
        uplink = Uplink(config, broker, outbox, edge_id=args.edge, snapshot_id="driver")
    uplink.start()
    source = SyntheticSource(historian, args.rate, start=start).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def line(tag: str) -> None:
        st = uplink.stats()
        print(
            tag,
            json.dumps(
                {
                    "boot": outbox.boot,
                    "state": st.state,
                    "next_seq": st.next_seq,
                    "backlog_rows": st.backlog_rows,
                    "published": st.published,
                    "acked": st.acked,
                    "generated": source.generated,
                    "historian_dropped": historian.stats.dropped,
                }
            ),
            flush=True,
        )

    print("started", outbox.boot, flush=True)
    while not stop.wait(0.25):
        line("stats")
    source.stop()
    historian.flush()
    drained = uplink.drain(30.0)
    uplink.stop()
    historian.close()
    line("final")
    print("drained" if drained else "not drained", flush=True)


if __name__ == "__main__":
    main()
