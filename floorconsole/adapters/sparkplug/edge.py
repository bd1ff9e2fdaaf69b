"""A Sparkplug B 3.0 edge node on the plant broker: births, deaths, data by exception, the
primary host's STATE, rebirth on request. The session rules are core/sparkplug.py's; this is
the MQTT side (paho-mqtt 2.x) and the bdSeq kept in the data directory.

One thread owns the session: it connects with a fresh paho client per attempt (each attempt
registers its own NDEATH will with a new bdSeq, written to disk before CONNECT, so a host can
match every death to its birth across restarts and kill -9), waits for the primary host's
STATE when there is one, publishes NBIRTH and a DBIRTH per live device, then sends what
changed. Callers hand values over from any thread through a bounded queue.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.sparkplug.codec import decode, encode
from floorconsole.core.quality import Quality
from floorconsole.core.sparkplug import (
    AliasTable,
    DataType,
    MessageType,
    Metric,
    ReportByException,
    SeqCounter,
    death_metrics,
    device_topic,
    metric_value,
    next_bdseq,
    node_birth_metrics,
    node_topic,
    parse_state,
    parse_topic,
    rebirth_requested,
    state_topic,
)

log = logging.getLogger(__name__)

BDSEQ_FILE = "sparkplug_bdseq"
QUEUE_MAX = 100_000  # values waiting to be sent; past this the oldest are dropped and counted
_RETRY_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A metric this node or one of its devices publishes."""

    name: str
    datatype: DataType
    unit: str = ""


@dataclass(frozen=True, slots=True)
class _Update:
    device: str | None
    name: str
    value: object
    quality: Quality
    reason: str
    t_ms: int


@dataclass
class SparkplugStats:
    """What the console's uplink screen shows of the session."""

    connected: bool = False
    bdseq: int | None = None
    seq: int | None = None
    host_online: bool | None = None  # None: no primary host configured
    births: int = 0
    last_birth_ms: int | None = None
    rebirth_requests: int = 0
    messages: int = 0
    dropped: int = 0
    refused_commands: int = 0
    last_error: str = ""
    devices_alive: list[str] = field(default_factory=list)


class BdSeqFile:
    """The last bdSeq used, in the data directory: written (and fsynced) before each CONNECT
    that announces it, so no two connection attempts ever share one, kill -9 included."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            value = int(text)
        except ValueError:
            log.warning("%s holds %r, not a bdSeq: starting again from 0", self.path, text)
            return None
        return value if 0 <= value <= 255 else None

    def take_next(self) -> int:
        value = next_bdseq(self.last())
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return value


class SparkplugEdge:
    """The edge node `edge` of `group` on one broker."""

    def __init__(
        self,
        *,
        group: str,
        edge: str,
        host: str,
        port: int,
        data_dir: Path,
        node_metrics: Sequence[MetricDef],
        devices: dict[str, Sequence[MetricDef]],
        primary_host: str | None = None,
        client_id: str | None = None,
        keepalive: int = 10,
    ) -> None:
        self.group, self.edge = group, edge
        self.host, self.port = host, port
        self.primary_host = primary_host
        self.client_id = client_id or f"floorconsole-spb-{edge}"
        self.keepalive = keepalive
        self.bdseq_file = BdSeqFile(Path(data_dir) / BDSEQ_FILE)
        self.node_defs = list(node_metrics)
        self.device_defs = {d: list(ms) for d, ms in devices.items()}
        self.aliases = AliasTable()
        for m in self.node_defs:
            self.aliases.add(m.name)
        for d, ms in self.device_defs.items():
            for m in ms:
                self.aliases.add(f"{d}/{m.name}")
        self._types = {m.name: m for m in self.node_defs}
        self._types.update({f"{d}/{m.name}": m for d, ms in self.device_defs.items() for m in ms})
        self._latest: dict[str, _Update] = {}
        self._alive: dict[str, bool] = dict.fromkeys(self.device_defs, False)
        self._queue: queue.Queue[_Update | tuple[str, str] | None] = queue.Queue(QUEUE_MAX)
        self._seq = SeqCounter()
        self._rbe = ReportByException()
        self._lock = threading.Lock()
        self._stats = SparkplugStats(host_online=None if primary_host is None else False)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._rebirth = threading.Event()
        self._host_online = threading.Event()
        self._host_offline = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None

    # -- from any thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"sparkplug {self.edge}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """A clean goodbye: NDEATH with this session's bdSeq, then disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def update(
        self,
        name: str,
        value: object,
        quality: Quality,
        reason: str = "",
        *,
        device: str | None = None,
        t_ms: int | None = None,
    ) -> None:
        """A metric's latest value; sent when it changed (value, quality or reason)."""
        item = _Update(device, name, value, quality, reason, t_ms or int(time.time() * 1000))
        self._put(item)

    def device_state(self, device: str, alive: bool) -> None:
        """A device came up (DBIRTH) or went down (DDEATH)."""
        self._put(("up" if alive else "down", device))

    def stats(self) -> SparkplugStats:
        with self._lock:
            s = SparkplugStats(**vars(self._stats))
            s.devices_alive = [d for d, a in self._alive.items() if a]
            return s

    def _put(self, item: _Update | tuple[str, str]) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                break
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    with self._lock:
                        self._stats.dropped += 1
                except queue.Empty:
                    pass
        self._wake.set()

    # -- the session thread ----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            ok = self._session()
            if self._stop.is_set():
                break
            attempt = 0 if ok else attempt + 1
            self._stop.wait(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])

    def _session(self) -> bool:
        """One connection: True when it got as far as a birth."""
        bdseq = self.bdseq_file.take_next()
        now = _ms()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        client.will_set(
            node_topic(self.group, MessageType.NDEATH, self.edge),
            encode(death_metrics(bdseq, now), seq=None, timestamp_ms=now),
            qos=1,
            retain=False,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._lost.clear()
        self._host_online.clear()
        self._host_offline.clear()
        connected = threading.Event()
        client.user_data_set(connected)
        with self._lock:
            self._stats.bdseq = bdseq
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError as e:
            self._error(f"cannot connect to {self.host}:{self.port}: {e}")
            return False
        client.loop_start()
        self._client = client
        try:
            if not connected.wait(10) or self._lost.is_set():
                self._error(f"no CONNACK from {self.host}:{self.port}")
                return False
            if self.primary_host is not None:
                while not self._host_online.is_set():
                    if self._stop.is_set() or self._lost.is_set():
                        return False
                    self._host_online.wait(0.2)
            self._births(client, bdseq)
            while not (self._stop.is_set() or self._lost.is_set()):
                if self._host_offline.is_set():
                    # 3.0: the primary host went offline: end this session (NDEATH) and
                    # connect again, to wait for it with a new bdSeq.
                    self._goodbye(client, bdseq)
                    return True
                if self._rebirth.is_set():
                    self._rebirth.clear()
                    self._births(client, bdseq)
                self._send_pending(client)
                self._wake.wait(0.2)
                self._wake.clear()
            if self._stop.is_set():
                self._goodbye(client, bdseq)
            return True
        finally:
            client.loop_stop()
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._client = None
            with self._lock:
                self._stats.connected = False

    def _goodbye(self, client: mqtt.Client, bdseq: int) -> None:
        now = _ms()
        info = client.publish(
            node_topic(self.group, MessageType.NDEATH, self.edge),
            encode(death_metrics(bdseq, now), seq=None, timestamp_ms=now),
            qos=1,
        )
        try:
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass

    def _births(self, client: mqtt.Client, bdseq: int) -> None:
        """NBIRTH (seq 0) with every node metric, then a DBIRTH per live device."""
        self._seq.reset()
        self._rbe.reset()
        self._apply_device_events(self._drain_into_latest())
        now = _ms()
        node = [self._metric(m.name, None, now, birth=True) for m in self.node_defs]
        self._publish(
            client,
            node_topic(self.group, MessageType.NBIRTH, self.edge),
            node_birth_metrics(bdseq, now, node),
        )
        for device, alive in self._alive.items():
            if alive:
                self._device_birth(client, device, now)
        with self._lock:
            self._stats.births += 1
            self._stats.last_birth_ms = now

    def _device_birth(self, client: mqtt.Client, device: str, now: int) -> None:
        ms = [self._metric(m.name, device, now, birth=True) for m in self.device_defs[device]]
        self._publish(client, device_topic(self.group, MessageType.DBIRTH, self.edge, device), ms)

    def _metric(self, name: str, device: str | None, now: int, *, birth: bool) -> Metric:
        key = f"{device}/{name}" if device else name
        d = self._types[key]
        u = self._latest.get(key)
        value = metric_value(u.value) if u is not None else None
        quality = u.quality if u is not None else Quality.BAD
        reason = u.reason if u is not None else "no value yet"
        self._rbe.changed(key, value, quality, reason)
        return Metric(
            key if birth else None,
            self.aliases.aliases[key],
            u.t_ms if u is not None else now,
            d.datatype,
            value,
            quality,
            reason,
            unit=d.unit if birth else "",
        )

    def _drain_into_latest(self) -> list[str]:
        """Take everything queued, in order: the keys whose latest value came, and device
        events as "@up:DEVICE" / "@down:DEVICE" (applied by the caller, in that order)."""
        events: list[str] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return events
            if isinstance(item, tuple):
                kind, device = item
                if device in self._alive:
                    events.append(f"@{kind}:{device}")
                continue
            if item is None:
                continue
            key = f"{item.device}/{item.name}" if item.device else item.name
            if key not in self._types:
                continue  # not a metric of this node: nothing a host was told about
            self._latest[key] = item
            events.append(key)

    def _apply_device_events(self, events: list[str]) -> None:
        for e in events:
            if e.startswith("@"):
                kind, device = e[1:].split(":", 1)
                self._alive[device] = kind == "up"

    def _send_pending(self, client: mqtt.Client) -> None:
        """What changed, in order: data of the node and of live devices, and a DBIRTH or
        DDEATH where a device came or went (data queued before it goes out first)."""
        events = self._drain_into_latest()
        node: list[Metric] = []
        per_device: dict[str, list[Metric]] = {}

        def flush() -> None:
            if node:
                self._publish(client, node_topic(self.group, MessageType.NDATA, self.edge), node)
            for device, ms in per_device.items():
                topic = device_topic(self.group, MessageType.DDATA, self.edge, device)
                self._publish(client, topic, ms)
            node.clear()
            per_device.clear()

        for key in events:
            if key.startswith("@"):
                kind, device = key[1:].split(":", 1)
                alive = kind == "up"
                if alive == self._alive[device]:
                    continue
                flush()
                self._alive[device] = alive
                if alive:
                    self._device_birth(client, device, _ms())
                else:
                    topic = device_topic(self.group, MessageType.DDEATH, self.edge, device)
                    self._publish(client, topic, [])
                continue
            u = self._latest[key]
            owner = u.device
            if owner is not None and not self._alive.get(owner, False):
                continue  # a dead device sends nothing; its DBIRTH carries the latest value
            value = metric_value(u.value)
            if not self._rbe.changed(key, value, u.quality, u.reason):
                continue
            m = Metric(
                None,
                self.aliases.aliases[key],
                u.t_ms,
                self._types[key].datatype,
                value,
                u.quality,
                u.reason,
            )
            (per_device.setdefault(owner, []) if owner else node).append(m)
        flush()

    def _publish(self, client: mqtt.Client, topic: str, metrics: list[Metric]) -> None:
        seq = self._seq.next()
        client.publish(topic, encode(metrics, seq=seq, timestamp_ms=_ms()), qos=0)
        with self._lock:
            self._stats.seq = seq
            self._stats.messages += 1

    # -- paho callbacks (paho's thread) ---------------------------------------------------

    def _on_connect(self, client, connected, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            self._error(f"broker refused the connection: {reason}")
            self._lost.set()
            connected.set()
            return
        client.subscribe(
            [
                (node_topic(self.group, MessageType.NCMD, self.edge), 1),
                (f"spBv1.0/{self.group}/DCMD/{self.edge}/+", 1),
            ]
            + ([(state_topic(self.primary_host), 1)] if self.primary_host else [])
        )
        with self._lock:
            self._stats.connected = True
            self._stats.last_error = ""
        connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        self._lost.set()
        self._wake.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        if self.primary_host is not None and msg.topic == state_topic(self.primary_host):
            online = parse_state(bytes(msg.payload)).online
            with self._lock:
                self._stats.host_online = online
            (self._host_online if online else self._host_offline).set()
            self._wake.set()
            return
        t = parse_topic(msg.topic)
        if t is None or t.edge != self.edge:
            return
        try:
            _seq, _ts, metrics = decode(bytes(msg.payload))
        except Exception as e:  # noqa: BLE001 - a host's malformed command is counted, not fatal
            self._error(f"undecodable {t.kind.value} on {msg.topic}: {e}")
            return
        if t.kind is MessageType.NCMD and rebirth_requested(metrics, self.aliases):
            with self._lock:
                self._stats.rebirth_requests += 1
            self._rebirth.set()
            self._wake.set()
            return
        # Writes from a host are refused until the plant file allows them per metric.
        with self._lock:
            self._stats.refused_commands += 1
        log.warning(
            "sparkplug: %s on %s refused: no metric is writable from a host", t.kind, msg.topic
        )

    def _error(self, text: str) -> None:
        with self._lock:
            first = self._stats.last_error != text
            self._stats.last_error = text
        if first:
            log.warning("sparkplug %s: %s", self.edge, text)


def _ms() -> int:
    return int(time.time() * 1000)
