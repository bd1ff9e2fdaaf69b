"""The uplink speaking Sparkplug B 3.0: the same outbox, the same lossless session machinery as
the JSON uplink (adapters/uplink.py), with Sparkplug's topics, births, deaths and STATE.

Why a subclass of the JSON uplink rather than SparkplugEdge: the outbox is what makes the
uplink lossless (a sample is stored and queued in one SQLite transaction; a row leaves only
after the broker's PUBACK; after an outage or a kill -9 the backlog goes out in order, with
`is_historical`). The session thread, its in-flight window, its claims and deletes are the
JSON uplink's; this class changes only what goes on the wire:

- the MQTT will is the NDEATH with this attempt's bdSeq (BdSeqFile: written and fsynced
  before CONNECT, so a host matches every death to its birth across restarts and kill -9);
- when data may flow (connected and, with a primary host, its STATE online) an NBIRTH (seq 0,
  bdSeq, Node Control/Rebirth, every node metric with alias, type and engineering unit, the
  running snapshot) and a DBIRTH per live device go out first;
- each outbox row of samples becomes NDATA/DDATA by alias (one per owner in it), at QoS 1 so
  the row is deleted only once the broker has it; backlog rows carry is_historical = true;
- a device whose link is down gets a DDEATH (checked every 0.05 s) and a DBIRTH when it is back;
- the primary host going offline closes the connection without DISCONNECT (the broker sends
  the NDEATH will) and a new session waits for it with a new bdSeq;
- NCMD Node Control/Rebirth is answered at once (on the session thread, within the read that
  brought it); a DCMD writing a metric the plant file lists ([uplink.sparkplug] writable),
  of its type and addressed to its device, is handed to `on_write` (the engine writes it as
  a console would); any other command is refused, counted and reported to `on_refused`;
- backlog rows whose Sparkplug form was made when they were recorded (rows.py) go out up to
  _COALESCE_ROWS to a message per owner, without parsing their JSON.

Alarm rows become NDATA of node metrics `Alarms/{alarm id}` (String, the state the alarm went
to) for the alarms named in the birth (the plant's rules'); audit rows, and transitions of
other alarms, are not carried in Sparkplug: they leave the outbox unsent and are counted
(`not_carried`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from floorconsole.adapters.outbox import Outbox, OutboxMessage
from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.adapters.sparkplug.codec import decode, encode, fill_metric
from floorconsole.adapters.sparkplug.edge import BDSEQ_FILE, BdSeqFile
from floorconsole.adapters.sparkplug.rows import SparkplugRows, payload_bytes, row_groups, row_plan
from floorconsole.adapters.uplink import Uplink, _ConnectionLost
from floorconsole.core.clock import Clock
from floorconsole.core.config import BrokerConfig
from floorconsole.core.quality import Quality
from floorconsole.core.sparkplug import (
    AliasTable,
    DataType,
    MessageType,
    Metric,
    SeqCounter,
    SparkplugSessionView,
    Topic,
    WriteRefused,
    death_metrics,
    device_topic,
    entry_quality,
    metric_value,
    node_birth_metrics,
    node_topic,
    parse_state,
    parse_topic,
    rebirth_requested,
    state_topic,
)
from floorconsole.core.uplink import UplinkConfig, UplinkStats

log = logging.getLogger(__name__)

SNAPSHOT_METRIC = "Properties/Snapshot"  # which configuration runs, in the NBIRTH
ALARM_PREFIX = "Alarms/"  # node metric per alarm: the state its last transition went to
_TICK_S = 0.05  # how often device links are looked at (DDEATH/DBIRTH): a dict read
# Backlog rows made when recorded go out several to a message (per owner: one NDATA/DDATA
# with the metrics of up to this many rows): a message per row and owner would spend more on
# MQTT (publish, PUBACK) than on the data. Bounded so a message stays small for any host.
_COALESCE_ROWS = 8
_COALESCE_BYTES = 64_000


@dataclass(frozen=True, slots=True)
class SignalMetric:
    """A signal as a Sparkplug metric: of the node (device None: model outputs, drift
    figures) or of a device (a Modbus device or an MQTT source)."""

    signal: str
    device: str | None
    datatype: DataType = DataType.Double
    unit: str = ""


Liveness = Callable[[], Mapping[str, bool]]
RefusedHook = Callable[[str, str], None]  # (topic, why)
WriteHook = Callable[[str, str, "float | bool"], None]  # (topic, signal, value)


class SparkplugUplink(Uplink):
    """The outbox to the plant broker as Sparkplug B edge node `edge_node` of `group`."""

    def __init__(
        self,
        config: UplinkConfig,
        broker: BrokerConfig,
        outbox: Outbox,
        *,
        edge_id: str,
        data_dir: Path,
        metrics: Sequence[SignalMetric],
        devices: Sequence[str] = (),
        snapshot_id: str = "",
        clock: Clock | None = None,
        client_id: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if config.sparkplug is None:
            raise ValueError('SparkplugUplink needs [uplink] format = "sparkplug"')
        super().__init__(
            config,
            broker,
            outbox,
            edge_id=edge_id,
            snapshot_id=snapshot_id,
            clock=clock,
            client_id=client_id
            or (f"{broker.client_id}-spb" if broker.client_id else f"floorconsole-{edge_id}-spb"),
            connect_timeout_s=connect_timeout_s,
        )
        sp = config.sparkplug
        self.group = sp.group
        self.edge = sp.edge_node or edge_id
        self.primary_host = sp.primary_host
        self._host_topic = state_topic(sp.primary_host) if sp.primary_host else None
        self._receipt_topic = None
        self.bdseq_file = BdSeqFile(Path(data_dir) / BDSEQ_FILE)
        self._bdseq: int | None = None
        self._seq = SeqCounter()
        self._last_seq: int | None = None
        self.aliases = AliasTable()
        self._metrics: dict[str, SignalMetric] = {}
        self._devices: list[str] = []
        self._alias: dict[str, int] = {}
        # signal -> (alias, device, type): what the data path looks up per sample
        self._fast: dict[str, tuple[int, str | None, DataType]] = {}
        self._alive: dict[str, bool] = {}
        # Data rows in their Sparkplug form, made as they are recorded (rows.py): the
        # backlog then goes out without parsing JSON or building metrics one by one.
        self.rows = SparkplugRows()
        outbox.row_encoder = self.rows
        # Backlog rows waiting to go out together (sent at the latest when _pump returns;
        # in _inflight under -1 - seq meanwhile, so the window counts them and a teardown
        # releases them). Once sent, a coalesced message takes one slot of the window, as a
        # JSON message does: _inflight maps its mid to its last row, and the rows before
        # that one wait here for the same PUBACK (released at a teardown too).
        self._coalesced: list[tuple[OutboxMessage, Mapping[str | None, bytes]]] = []
        self._coalesced_bytes = 0
        self._coalesced_acks: dict[int, list[OutboxMessage]] = {}
        self.define_metrics(metrics, devices)
        # Set (any thread) when the engine swapped configurations: the metric set is read
        # again from metrics_source on the session thread, and a changed one is reborn.
        self._metrics_stale = False
        self.metrics_source: Callable[[], tuple[list[SignalMetric], list[str]]] | None = None
        self._data_topics: dict[str | None, str] = {}
        self._not_good: set[str] = set()  # last sent with a quality other than GOOD
        # signal -> (value, quality, reason, t_ms): what the next birth says
        self._latest: dict[str, tuple[float | int | bool | str | None, Quality, str, int]] = {}
        self._liveness: Liveness = lambda: {}
        self.on_refused: RefusedHook = lambda topic, why: None
        # A host's write of a metric the plant file allows ([uplink.sparkplug] writable),
        # already checked against its type: the engine writes it as a console would.
        self.writable = frozenset(sp.writable)
        self.on_write: WriteHook = lambda topic, signal, value: self._refuse(
            topic, f"write to {signal}: no engine to write it"
        )
        self._host_writes = 0
        self._snapshot_sent = ""
        self._births = 0
        self._last_birth_ms: int | None = None
        self._rebirth_requests = 0
        self._refused = 0
        self._refused_unrecorded = 0
        self._refuse_audited_at = -1e9
        self._host_state_ms: int | None = None  # timestamp of the last STATE taken
        self._stale_states = 0  # STATE messages ignored: older than the last one
        self._not_carried = 0
        self._skipped_dead = 0
        self._unknown = 0

    # ------------------------------------------------------------------ set-up

    def define_metrics(self, metrics: Sequence[SignalMetric], devices: Sequence[str]) -> None:
        """The metric set (before start(), or on the session thread). A metric keeps its alias for the life of this object (a host's
        map stays valid for the metrics both sets share); new ones get the next aliases."""
        self._devices = list(dict.fromkeys(devices))
        for m in metrics:
            if m.device is not None and m.device not in self._devices:
                self._devices.append(m.device)
        self._metrics = {}
        for m in sorted(metrics, key=lambda m: (m.device is not None, m.device or "")):
            self._metrics[m.signal] = m
            self.aliases.add(m.signal)
        self.aliases.add(SNAPSHOT_METRIC)
        self._alias = dict(self.aliases.aliases)
        self._fast = {s: (self._alias[s], m.device, m.datatype) for s, m in self._metrics.items()}
        self.rows.plan = row_plan(self._fast)
        self._alive = {d: self._alive.get(d, True) for d in self._devices}

    def set_snapshot(self, snapshot_id: str) -> None:
        """Another configuration runs: its metric set is read again before its data goes."""
        self._metrics_stale = True
        super().set_snapshot(snapshot_id)

    def _refresh_metrics(self, client: mqtt.Client) -> bool:
        """After a swap: the new configuration's metrics; a changed set is announced with a
        fresh NBIRTH and DBIRTHs. True when the set changed."""
        self._metrics_stale = False
        if self.metrics_source is None:
            return False
        try:
            metrics, devices = self.metrics_source()
        except Exception:  # noqa: BLE001 - keep the set we have rather than stop sending
            log.exception("sparkplug %s: the new configuration's metrics not read", self.edge)
            return False
        if list(self._metrics.values()) == sorted(
            metrics, key=lambda m: (m.device is not None, m.device or "")
        ) and self._devices == list(dict.fromkeys(devices)):
            return False
        self.define_metrics(metrics, devices)
        log.info("sparkplug %s: metric set changed with the configuration: rebirth", self.edge)
        if self._flow_open:
            self._birth(client)
        return True

    def watch_devices(self, liveness: Liveness) -> None:
        """Where the session reads whether each device is alive (its link not down)."""
        self._liveness = liveness

    # ------------------------------------------------------------------ session hooks

    def _new_paho(self) -> mqtt.Client:
        client = super()._new_paho()
        # Our window bounds the rows in flight; paho must not hold QoS 1 data back while
        # a QoS 0 birth or death overtakes it (the host would see seqs out of order).
        client.max_inflight_messages_set(0)
        return client

    def _set_will(self, client: mqtt.Client) -> None:
        self._bdseq = self.bdseq_file.take_next()
        now = _ms()
        client.will_set(
            node_topic(self.group, MessageType.NDEATH, self.edge),
            encode(death_metrics(self._bdseq, now), seq=None, timestamp_ms=now),
            qos=1,
            retain=False,
        )

    def _subscribe(self, client: mqtt.Client) -> None:
        pass  # in _on_connect, for every session (commands come with or without a host)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if reason_code.is_failure:
            return
        topics = [
            (node_topic(self.group, MessageType.NCMD, self.edge), 1),
            (f"spBv1.0/{self.group}/DCMD/{self.edge}/+", 1),
        ]
        if self._host_topic is not None:
            topics.append((self._host_topic, 1))
        client.subscribe(topics)

    def _farewell(self, client: mqtt.Client) -> mqtt.MQTTMessageInfo:
        now = _ms()
        return client.publish(
            node_topic(self.group, MessageType.NDEATH, self.edge),
            encode(death_metrics(self._bdseq or 0, now), seq=None, timestamp_ms=now),
            qos=1,
        )

    def _open_flow(self) -> None:
        if self._client is not None:
            self._birth(self._client)
        super()._open_flow()

    def _update_flow(self) -> None:
        if self._host_topic is not None and self._flow_open and not self._host_online:
            # 3.0: the primary host went offline. Dropping the connection without DISCONNECT
            # makes the broker send our NDEATH will; the next session waits for the host.
            log.warning(
                "sparkplug %s: primary host %s offline; ending the session",
                self.edge,
                self.primary_host,
            )
            self._close_flow()
            raise _ConnectionLost(f"primary host {self.primary_host!r} went offline")
        super()._update_flow()

    def _publish_status(self, client: mqtt.Client) -> None:
        """The JSON uplink's status slot, used here as the session's tick: device deaths
        and births, and the snapshot metric when it changed."""
        self._status_due = time.monotonic() + _TICK_S
        if self._metrics_stale:
            self._refresh_metrics(client)
        if not self._flow_open:
            return
        alive = self._liveness()
        for device in self._devices:
            now_alive = alive.get(device, True)
            if now_alive == self._alive[device]:
                continue
            self._alive[device] = now_alive
            if now_alive:
                self._device_birth(client, device, _ms())
            else:
                self._publish(
                    client, device_topic(self.group, MessageType.DDEATH, self.edge, device), []
                )
                log.warning("sparkplug %s: device %s down: DDEATH", self.edge, device)
        if self._snapshot != self._snapshot_sent:
            self._snapshot_sent = self._snapshot
            m = Metric(None, self._alias[SNAPSHOT_METRIC], _ms(), DataType.String, self._snapshot)
            self._publish(client, node_topic(self.group, MessageType.NDATA, self.edge), [m])

    # ------------------------------------------------------------------ births

    def _birth(self, client: mqtt.Client) -> None:
        """NBIRTH (seq 0) with every node metric, then a DBIRTH per live device."""
        self._seq.reset()
        self._not_good.clear()  # a birth carries every metric's quality
        now = _ms()
        node = [self._birth_metric(m, now) for m in self._metrics.values() if m.device is None]
        node.append(
            Metric(
                SNAPSHOT_METRIC, self._alias[SNAPSHOT_METRIC], now, DataType.String, self._snapshot
            )
        )
        self._snapshot_sent = self._snapshot
        self._publish(
            client,
            node_topic(self.group, MessageType.NBIRTH, self.edge),
            node_birth_metrics(self._bdseq or 0, now, node),
        )
        alive = self._liveness()
        for device in self._devices:
            self._alive[device] = alive.get(device, True)
            if self._alive[device]:
                self._device_birth(client, device, now)
        self._births += 1
        self._last_birth_ms = now

    def _device_birth(self, client: mqtt.Client, device: str, now: int) -> None:
        ms = [self._birth_metric(m, now) for m in self._metrics.values() if m.device == device]
        self._publish(client, device_topic(self.group, MessageType.DBIRTH, self.edge, device), ms)

    def _birth_metric(self, m: SignalMetric, now: int) -> Metric:
        last = self._latest.get(m.signal)
        if last is None:
            return Metric(
                m.signal,
                self._alias[m.signal],
                now,
                m.datatype,
                None,
                Quality.BAD,
                "no value yet",
                unit=m.unit,
            )
        value, quality, reason, t = last
        return Metric(
            m.signal, self._alias[m.signal], t, m.datatype, value, quality, reason,
            unit=m.unit,
        )  # fmt: skip

    def _publish(
        self, client: mqtt.Client, topic: str, metrics: list[Metric], qos: int = 0
    ) -> mqtt.MQTTMessageInfo:
        if self._coalesced:  # rows before it go before it
            self._flush_coalesced(client)
        seq = self._seq.next()
        self._last_seq = seq
        info = client.publish(topic, encode(metrics, seq=seq, timestamp_ms=_ms()), qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _ConnectionLost(mqtt.error_string(info.rc))
        return info

    # ------------------------------------------------------------------ data

    def _pump(self, client: mqtt.Client) -> None:
        super()._pump(client)
        if self._coalesced:
            self._flush_coalesced(client)

    def _teardown(self) -> None:
        self._coalesced.clear()  # their rows are in _inflight: released with the others
        self._coalesced_bytes = 0
        for rows in self._coalesced_acks.values():  # released with the others too
            for m in rows:
                self._inflight[-1 - m.seq] = (m, True)
        self._coalesced_acks.clear()
        super()._teardown()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        rows = self._coalesced_acks.pop(mid, None)
        if rows is not None:  # the rows before its last one: acknowledged by the same PUBACK
            for m in rows:
                key = -1 - m.seq
                self._inflight[key] = (m, True)
                super()._on_publish(client, userdata, key, reason_code, properties)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _send(self, client: mqtt.Client, m: OutboxMessage, *, historical: bool) -> None:
        if self._coalesced and not (historical and m.spb is not None):
            self._flush_coalesced(client)
        if self._metrics_stale:  # a swap: rows of the new configuration may be here first
            self._refresh_metrics(client)
        if m.kind == "data":
            if historical and m.spb is not None and not self._not_good:
                # Made when recorded (rows.py); with a quality property owed to a metric
                # (a GOOD after a bad one), or another plan, the general path below.
                plan = self.rows.plan
                groups = None if plan is None else row_groups(m.spb, plan)
                if groups is not None:
                    self._coalesce(client, m, self._stored_payloads(groups))
                    return
            payloads = self._data_payloads(m, historical)
        elif m.kind == "alarms":
            payloads = self._alarm_payloads(m, historical)
        else:  # audit records: no Sparkplug metric for them
            self._not_carried += m.n
            self._acked_pending.append(m)
            return
        self._send_payloads(client, m, payloads, historical)

    def _alarm_payloads(self, m: OutboxMessage, historical: bool) -> dict[str | None, spb.Payload]:
        """Alarm transitions as node metrics `Alarms/{alarm id}` (String: the state it went
        to), for the alarms the birth named (the plant's rules'); others are counted."""
        p = spb.Payload()
        for r in json.loads(m.body):
            name = f"{ALARM_PREFIX}{r.get('alarm')}"
            f = self._fast.get(name)
            if f is None:
                self._not_carried += 1
                continue
            t = int(r.get("t", 0))
            state = str(r.get("to", ""))
            metric = Metric(None, f[0], t, DataType.String, state, historical=historical)
            fill_metric(p.metrics.add(), metric, datatype=False)
            last = self._latest.get(name)
            if not historical and (last is None or last[3] <= t):
                self._latest[name] = (state, Quality.GOOD, "", t)
        return {None: p} if len(p.metrics) else {}

    def _coalesce(
        self, client: mqtt.Client, m: OutboxMessage, payloads: Mapping[str | None, bytes]
    ) -> None:
        """A backlog row made when recorded: sent with the next few (_flush_coalesced)."""
        if not payloads:  # every sample of it was a dead device's
            self._acked_pending.append(m)
            return
        self._inflight[-1 - m.seq] = (m, True)
        self._coalesced.append((m, payloads))
        self._coalesced_bytes += sum(len(b) for b in payloads.values())
        self.published += 1
        self._hist_inflight += 1
        if m.seq in self._released:
            self._released.discard(m.seq)
            self.resent += 1
        if len(self._coalesced) >= _COALESCE_ROWS or self._coalesced_bytes >= _COALESCE_BYTES:
            self._flush_coalesced(client)

    def _flush_coalesced(self, client: mqtt.Client) -> None:
        """The waiting rows as one NDATA/DDATA per owner (the metrics of a payload are a
        repeated field: their serialized forms concatenate), in the rows' order."""
        rows, self._coalesced = self._coalesced, []
        self._coalesced_bytes = 0
        merged: dict[str | None, list[bytes]] = {}
        for _m, payloads in rows:
            for owner, body in payloads.items():
                merged.setdefault(owner, []).append(body)
        info: mqtt.MQTTMessageInfo | None = None
        for owner, parts in merged.items():
            seq = self._seq.next()
            self._last_seq = seq
            data = payload_bytes(b"".join(parts), _ms(), seq)
            info = client.publish(self._data_topic(owner), data, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise _ConnectionLost(mqtt.error_string(info.rc))
        if info is not None:
            inflight = self._inflight
            for m, _p in rows:
                del inflight[-1 - m.seq]
            inflight[info.mid] = (rows[-1][0], True)
            if len(rows) > 1:
                self._coalesced_acks[info.mid] = [m for m, _p in rows[:-1]]

    def _data_topic(self, owner: str | None) -> str:
        topic = self._data_topics.get(owner)
        if topic is None:
            topic = self._data_topics[owner] = (
                node_topic(self.group, MessageType.NDATA, self.edge)
                if owner is None
                else device_topic(self.group, MessageType.DDATA, self.edge, owner)
            )
        return topic

    def _stored_payloads(
        self, groups: list[tuple[str | None, int, bytes]]
    ) -> dict[str | None, bytes]:
        """A recorded row's metrics per owner, less those of a dead device (counted)."""
        dead = {d for d, a in self._alive.items() if not a}
        if not dead:
            return {owner: body for owner, _n, body in groups}
        out: dict[str | None, bytes] = {}
        for owner, n, body in groups:
            if owner in dead:
                self._skipped_dead += n
            else:
                out[owner] = body
        return out

    def _data_payloads(self, m: OutboxMessage, historical: bool) -> dict[str | None, spb.Payload]:
        # The hot path (every sample passes here): a GOOD double goes into the protobuf in
        # one call, by alias, without a type (the birth gave it) or a Quality property (a
        # metric without one is GOOD; one is sent with the first GOOD after a bad one).
        payloads: dict[str | None, spb.Payload] = {}
        newest: dict[str, dict[str, Any]] = {}  # per signal, its last entry in this row
        not_good, fast = self._not_good, self._fast
        dead = {d for d, a in self._alive.items() if not a}
        double = DataType.Double
        for e in self.outbox.entries_of(m):
            sig: str = e.get("s", "")
            f = fast.get(sig)
            if f is None:
                self._unknown += 1
                continue
            alias, owner, datatype = f
            if dead and owner in dead:
                self._skipped_dead += 1
                continue
            v = e.get("v")
            if v.__class__ is list:
                self._not_carried += 1  # a waveform: Sparkplug datasets are not implemented
                continue
            p = payloads.get(owner)
            if p is None:
                p = payloads[owner] = spb.Payload()
            if (
                v.__class__ is float
                and e.get("q") == "GOOD"
                and datatype == double
                and sig not in not_good
            ):
                if historical:
                    p.metrics.add(
                        alias=alias, timestamp=e.get("t", 0), double_value=v, is_historical=True
                    )
                else:
                    p.metrics.add(alias=alias, timestamp=e.get("t", 0), double_value=v)
            else:
                quality, reason = entry_quality(e.get("q") or "GOOD")
                metric = Metric(
                    None, alias, e.get("t", 0), datatype, _as_type(v, datatype), quality, reason,
                    historical,
                )  # fmt: skip
                fill_metric(p.metrics.add(), metric, datatype=False)
                if quality is Quality.GOOD:
                    not_good.discard(sig)
                else:
                    not_good.add(sig)
            if not historical:
                newest[sig] = e
        for sig, e in newest.items():  # what the next birth says of each metric
            quality, reason = entry_quality(e.get("q") or "GOOD")
            t = e.get("t", 0)
            last = self._latest.get(sig)
            if last is None or last[3] <= t:
                value = _as_type(e.get("v"), self._metrics[sig].datatype)
                self._latest[sig] = (value, quality, reason, t)
        return payloads

    def _send_payloads(
        self,
        client: mqtt.Client,
        m: OutboxMessage,
        payloads: dict[str | None, spb.Payload],
        historical: bool,
    ) -> None:
        info: mqtt.MQTTMessageInfo | None = None
        for owner, p in payloads.items():
            topic = self._data_topic(owner)
            seq = self._seq.next()
            self._last_seq = seq
            p.seq = seq
            p.timestamp = _ms()
            data = p.SerializeToString()
            info = client.publish(topic, data, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._inflight[-1 - m.seq] = (m, historical)  # released at teardown
                raise _ConnectionLost(mqtt.error_string(info.rc))
        if info is None:  # nothing in it a host was told about
            self._acked_pending.append(m)
            return
        # The row is done when its last message is: the broker acknowledges in order.
        self._inflight[info.mid] = (m, historical)
        self.published += 1
        if m.seq in self._released:
            self._released.discard(m.seq)
            self.resent += 1
        if historical:
            self._hist_inflight += 1
        else:
            self.live_lag_s = max(0.0, self.clock.wall() - m.t)

    # ------------------------------------------------------------------ commands, STATE

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._host_topic:
            state = parse_state(bytes(msg.payload))
            online = state.online
            last = self._host_state_ms
            if state.timestamp_ms is not None:
                if last is not None and state.timestamp_ms < last:
                    # 3.0: a STATE older than the last one seen is stale (a retained message
                    # a bridge or a slow broker delivered late): ignored.
                    self._stale_states += 1
                    log.info(
                        "sparkplug %s: primary host %s STATE of %d ignored (older than %d)",
                        self.edge, self.primary_host, state.timestamp_ms, last,
                    )  # fmt: skip
                    return
                self._host_state_ms = state.timestamp_ms
            if online != self._host_online:
                log.info(
                    "sparkplug %s: primary host %s %s", self.edge, self.primary_host,
                    "online" if online else "offline",
                )  # fmt: skip
            self._host_online = online
            return
        t = parse_topic(msg.topic)
        if t is None or t.edge != self.edge or t.group != self.group:
            return
        try:
            _seq, _ts, metrics = decode(bytes(msg.payload))
        except Exception as e:  # noqa: BLE001 - a host's malformed command is counted
            self._refuse(msg.topic, f"undecodable {t.kind.value}: {e}")
            return
        if t.kind is MessageType.NCMD and rebirth_requested(metrics, self.aliases):
            self._rebirth_requests += 1
            if self._flow_open:
                log.info("sparkplug %s: rebirth requested", self.edge)
                self._birth(client)
            return
        if not metrics:
            self._refuse(msg.topic, f"write to nothing: a {t.kind.value} without metrics")
        for m in metrics:
            name = m.name if m.name is not None else self.aliases.name_of(m.alias or -1)
            value, why = self._host_write(t, name, m)
            if why:
                self._refuse(msg.topic, f"write to {name or f'alias {m.alias}'}: {why}")
                continue
            assert name is not None and value is not None
            try:  # the engine takes it from here (its loop): role, audit, write, read-back
                self.on_write(msg.topic, name, value)
            except WriteRefused as e:  # refused at once (the host's role): counted, audited
                self._refuse(msg.topic, f"write to {name}: {e}")
                continue
            except Exception:  # noqa: BLE001 - the hook must not end the session
                log.exception("sparkplug: handing a host's write to the engine")
            self._host_writes += 1

    def _host_write(self, t: Topic, name: str | None, m: Metric) -> tuple[float | bool | None, str]:
        """(value, "") for a write a host may make: a metric the plant file lists as
        writable, addressed to its owner, with a value of its type; else (None, why)."""
        if name is None:
            return None, "an alias this node never gave"
        if name not in self.writable:
            return None, "not writable from a host ([uplink.sparkplug] writable does not list it)"
        d = self._metrics.get(name)
        if d is None:
            return None, "not a metric of the running configuration"
        if d.device != t.device:
            return None, (
                f"it belongs to {f'device {d.device}' if d.device else 'the node'}, "
                f"not to {f'device {t.device}' if t.device else 'the node'}"
            )
        if m.datatype and m.datatype != d.datatype:
            return None, f"datatype {_type_name(m.datatype)}, but the metric is {d.datatype.name}"
        v = m.value
        if v is None:
            return None, "no value in the command"
        if d.datatype == DataType.Boolean:
            if not isinstance(v, bool):
                return None, f"expected a Boolean value, got {v!r}"
            return v, ""
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None, f"expected a number for a {d.datatype.name} metric, got {v!r}"
        return float(v), ""

    def _refuse(self, topic: str, why: str) -> None:
        """Count, log and audit a refused command. At most one audit record (a durable
        write on this thread) a second: a host flooding commands cannot stall the data;
        the next record says how many were refused unrecorded in between."""
        self._refused += 1
        now = time.monotonic()
        if now < self._refuse_audited_at + 1.0:
            self._refused_unrecorded += 1
            return
        self._refuse_audited_at = now
        if self._refused_unrecorded:
            why += f" ({self._refused_unrecorded} more refused since the last record)"
            self._refused_unrecorded = 0
        log.warning("sparkplug %s: %s refused: %s", self.edge, topic, why)
        try:
            self.on_refused(topic, why)
        except Exception:  # noqa: BLE001 - the audit hook must not end the session
            log.exception("sparkplug: recording a refused command")

    # ------------------------------------------------------------------ figures

    def stats(self) -> UplinkStats:
        return dataclasses.replace(super().stats(), sparkplug=self.session())

    def session(self) -> SparkplugSessionView:
        alive = dict(self._alive)
        return SparkplugSessionView(
            group=self.group,
            edge_node=self.edge,
            primary_host=self.primary_host,
            host_online=None if self.primary_host is None else self._host_online,
            bdseq=self._bdseq,
            seq=self._last_seq,
            births=self._births,
            last_birth_ms=self._last_birth_ms,
            rebirth_requests=self._rebirth_requests,
            refused_commands=self._refused,
            devices_alive=tuple(d for d, a in alive.items() if a),
            devices_dead=tuple(d for d, a in alive.items() if not a),
            not_carried=self._not_carried,
            skipped_dead=self._skipped_dead,
            unknown_signals=self._unknown,
        )


def _type_name(code: int) -> str:
    try:
        return DataType(code).name
    except ValueError:
        return str(code)


def _as_type(v: object, datatype: DataType) -> float | int | bool | str | None:
    if v is None:
        return None
    if datatype == DataType.Boolean:
        return bool(v)
    if datatype in (DataType.Float, DataType.Double):
        return metric_value(float(v)) if isinstance(v, int | float) else None
    if datatype == DataType.String:
        return str(v)
    return metric_value(v)


def _ms() -> int:
    return int(time.time() * 1000)


class BothUplinks(Uplink):
    """[uplink] format = "both": the JSON uplink (this object, on the outbox table "outbox")
    and a Sparkplug one beside it on its own outbox (fed from the same commits), each with its
    own session, cursor and deletes. Started, stopped and told of a new snapshot together;
    stats() are the JSON uplink's with the Sparkplug session in them."""

    def __init__(
        self,
        config: UplinkConfig,
        broker: BrokerConfig,
        outbox: Outbox,
        sparkplug: SparkplugUplink,
        **kw: Any,
    ) -> None:
        super().__init__(config, broker, outbox, **kw)
        self.sparkplug = sparkplug

    def start(self) -> bool:
        ok = super().start()
        return self.sparkplug.start() and ok

    def stop(self, timeout: float = 10.0) -> None:
        self.sparkplug.stop(timeout)
        super().stop(timeout)

    def close(self) -> None:
        self.sparkplug.close()
        super().close()

    def set_snapshot(self, snapshot_id: str) -> None:
        super().set_snapshot(snapshot_id)
        self.sparkplug.set_snapshot(snapshot_id)

    def stats(self) -> UplinkStats:
        return dataclasses.replace(super().stats(), sparkplug=self.sparkplug.session())
