"""What reaches the plant broker from floorconsole edges: expected, received, missing,
duplicated and out-of-order messages by (edge, seq).

    python benchmarks/uplink_receiver.py --host 127.0.0.1 --port 1883 [--prefix floorconsole]
        [--edge line2-press] [--host-id historian] [--every 5]

Subscribes to {prefix}/{edge}/# at QoS 1 and prints one JSON line per edge every few seconds
(and at Ctrl-C). A message whose seq was seen before is a duplicate: counted and dropped.
Live and historical messages are two streams, each in seq order (the edge interleaves them
while it drains a backlog); a first arrival below the highest seq already seen in its own
stream is out of order. Missing: seqs between the first and the last expected that never
came.

With --host-id the receiver acts as the edges' primary host: after its subscription is in
place it sets {prefix}/STATE/{host-id} to {"online": true} (retained), and its last will sets
it offline. Edges configured with that primary_host publish data only while it is online, so
a broker restart that forgets the subscription loses nothing. It also sends receipts, the
highest historical seq it has of each edge, on {prefix}/STATE/{host-id}/{edge} every 20 ms
while that changes (and every second regardless), which paces the edges' backlog to what this
receiver takes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorconsole.core.uplink import (  # noqa: E402
    KINDS,
    host_receipt_topic,
    host_state_payload,
    host_state_topic,
    receipt_payload,
)

RECEIPT_EVERY_S = 0.02
RECEIPT_AGAIN_S = 1.0


@dataclass
class EdgeCount:
    """Per edge: the seqs seen and the counters."""

    seqs: set[int] = field(default_factory=set)
    top: dict[bool, int] = field(default_factory=dict)  # highest seq per stream (historical?)
    received: int = 0  # unique messages
    duplicated: int = 0
    out_of_order: int = 0
    historical: int = 0
    entries: int = 0  # samples and records in unique messages
    boots: set[str] = field(default_factory=set)
    last_historical_at: float = 0.0  # wall time the latest new historical message came


@dataclass(frozen=True)
class Report:
    edge: str
    expected: int
    received: int
    missing: int
    duplicated: int
    out_of_order: int
    historical: int
    entries: int
    first_missing: tuple[int, ...]
    last_historical_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "edge": self.edge,
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "historical": self.historical,
            "entries": self.entries,
            "first_missing": list(self.first_missing),
        }


class Receiver:
    """A QoS 1 subscriber that counts the edges' messages; start(), then report()."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        prefix: str = "floorconsole",
        edge: str = "+",
        host_id: str | None = None,
        keep: bool = False,
        qos: int = 1,
        client_id: str | None = None,
        reconnect_s: tuple[float, float] = (0.05, 0.2),
        receipts: bool = True,
        work_s: float = 0.0,
    ) -> None:
        """host_id: act as the primary host (with receipts unless told not to); work_s: time
        spent on each data message, standing in for a consumer slower than the broker."""
        self.host, self.port, self.prefix, self.edge = host, port, prefix, edge
        self.host_id = host_id
        self.receipts = receipts and host_id is not None
        self.work_s = work_s
        self.keep = keep
        self.qos = qos
        self.counts: dict[str, EdgeCount] = {}
        self.kept: dict[tuple[str, int], dict[str, Any]] = {}  # (edge, seq) -> message
        self.status: dict[str, dict[str, Any]] = {}  # edge -> latest status payload
        self.live_lags: list[float] = []  # arrival - oldest entry, live data messages
        self.live_arrivals: list[float] = []  # wall time each live lag was taken
        self.connects = 0
        self.malformed = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._sub_mid: int | None = None
        self._stop = threading.Event()
        self._receipts: threading.Thread | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"uplink-receiver-{os.getpid()}-{id(self) % 100000}",
            clean_session=True,
        )
        self.client.reconnect_delay_set(*reconnect_s)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        if host_id is not None:
            self.client.will_set(
                host_state_topic(prefix, host_id),
                host_state_payload(False, time.time()),
                qos=1,
                retain=True,
            )

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> Receiver:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"no subscription at {self.host}:{self.port} within {timeout:g} s")
        if self.receipts:
            self._receipts = threading.Thread(
                target=self._send_receipts, daemon=True, name="uplink-receiver-receipts"
            )
            self._receipts.start()
        return self

    def _send_receipts(self) -> None:
        assert self.host_id is not None
        sent: dict[str, tuple[int, float]] = {}
        while not self._stop.wait(RECEIPT_EVERY_S):
            now = time.monotonic()
            with self._lock:
                tops = {e: c.top[True] for e, c in self.counts.items() if True in c.top}
            for edge, top in tops.items():
                last = sent.get(edge)
                if last is None or last[0] != top or now - last[1] >= RECEIPT_AGAIN_S:
                    self.client.publish(
                        host_receipt_topic(self.prefix, self.host_id, edge),
                        receipt_payload(top),
                        qos=0,
                    )
                    sent[edge] = (top, now)

    def stop(self) -> None:
        self._stop.set()
        if self._receipts is not None:
            self._receipts.join()
        if self.host_id is not None and self.client.is_connected():
            info = self.client.publish(
                host_state_topic(self.prefix, self.host_id),
                host_state_payload(False, time.time()),
                qos=1,
                retain=True,
            )
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_subscribed(self, timeout: float) -> bool:
        """After a broker restart: True once the subscription is in place again."""
        return self._subscribed.wait(timeout)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: Any,
        reason_code: Any,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            return
        self.connects += 1
        self._subscribed.clear()
        _result, self._sub_mid = client.subscribe(f"{self.prefix}/{self.edge}/#", qos=self.qos)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reason_codes: Any, properties: object
    ) -> None:
        if mid != self._sub_mid:
            return
        if self.host_id is not None:
            # Only now: an edge waiting for us must not publish before we can receive.
            client.publish(
                host_state_topic(self.prefix, self.host_id),
                host_state_payload(True, time.time(), receipts=self.receipts),
                qos=1,
                retain=True,
            )
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        parts = msg.topic.split("/")
        kind = parts[-1]
        if kind == "status":
            try:
                self.status[parts[-2]] = json.loads(msg.payload)
            except ValueError:
                self.malformed += 1
            return
        if kind not in KINDS:
            return
        try:
            m = json.loads(msg.payload)
            edge, seq, historical = m["edge"], int(m["seq"]), bool(m["historical"])
            entries = m[KINDS[kind]]
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        with self._lock:
            c = self.counts.setdefault(edge, EdgeCount())
            if seq in c.seqs:
                c.duplicated += 1
                return
            c.seqs.add(seq)
            c.received += 1
            c.entries += len(entries)
            c.boots.add(m.get("boot", ""))
            top = c.top.get(historical)
            if top is not None and seq < top:
                c.out_of_order += 1
            else:
                c.top[historical] = seq
            if historical:
                c.historical += 1
                c.last_historical_at = arrived
            elif kind == "data" and entries:
                self.live_lags.append(arrived - min(e["t"] for e in entries) / 1000.0)
                self.live_arrivals.append(arrived)
            if self.keep:
                self.kept[(edge, seq)] = m
        if self.work_s:
            time.sleep(self.work_s)  # in paho's thread: the broker's queue to us grows

    # ------------------------------------------------------------------ figures

    def received(self, edge: str) -> int:
        with self._lock:
            c = self.counts.get(edge)
            return 0 if c is None else c.received

    def has(self, edge: str, seq: int) -> bool:
        with self._lock:
            c = self.counts.get(edge)
            return c is not None and seq in c.seqs

    def report(self, edge: str, first: int | None = None, last: int | None = None) -> Report:
        """Counts for one edge; expected is first..last (default: the lowest and highest seen)."""
        with self._lock:
            c = self.counts.get(edge, EdgeCount())
            seqs = set(c.seqs)
            lo = first if first is not None else min(seqs, default=0)
            hi = last if last is not None else max(seqs, default=-1)
            expected = max(0, hi - lo + 1)
            in_range = sum(1 for s in seqs if lo <= s <= hi)
            missing = [s for s in range(lo, hi + 1) if s not in seqs] if in_range < expected else []
            return Report(
                edge=edge,
                expected=expected,
                received=c.received,
                missing=len(missing),
                duplicated=c.duplicated,
                out_of_order=c.out_of_order,
                historical=c.historical,
                entries=c.entries,
                first_missing=tuple(missing[:10]),
                last_historical_at=c.last_historical_at,
            )

    def entries(self, edge: str, kind: str = "data") -> list[dict[str, Any]]:
        """Every entry of the kept messages of one edge, by seq (needs keep=True)."""
        key = KINDS[kind]
        with self._lock:
            out = []
            for (e, _seq), m in sorted(self.kept.items()):
                if e == edge and key in m:
                    out.extend(m[key])
            return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="floorconsole")
    p.add_argument("--edge", default="+", help="an edge id, or + for every edge")
    p.add_argument("--host-id", default=None, help="act as this primary host")
    p.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    args = p.parse_args(argv)
    r = Receiver(
        args.host, args.port, prefix=args.prefix, edge=args.edge, host_id=args.host_id
    ).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def report() -> None:
        for edge in sorted(r.counts):
            print(json.dumps(r.report(edge).as_dict()), flush=True)

    try:
        while not done.wait(args.every):
            report()
    except KeyboardInterrupt:
        pass
    finally:
        report()
        r.stop()


if __name__ == "__main__":
    main()
