"""The uplink publisher: the outbox to the plant broker at QoS 1, live data first, backlog after.

One thread owns everything here: the paho client (driven through paho's external-loop calls,
loop_read/loop_write/loop_misc around our own select), the in-flight window, the backlog
cursor and the deletes. Nothing is shared with paho's own threads, so there are no races
between a reconnect and a publish.

Each connection gets a fresh paho client. A QoS 1 message paho holds when the connection
drops (even one refused with MQTT_ERR_NO_CONN) dies with that client object and is never sent
by it; its row is still in the outbox and goes out once more, by us, on the next connection.
So a message is in at most one paho client at a time and is never queued twice (the
STACK_NOTES trap), and ordering after a reconnect is ours alone: the backlog in seq order, then
live. The price is that a message in flight when the link dropped may reach the receiver
twice; receivers drop duplicates by seq, and there are at most `inflight` of them per drop.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from floorconsole.adapters.mqtt_login import configure_client
from floorconsole.adapters.outbox import Outbox, OutboxMessage
from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.config import BrokerConfig
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.uplink import (
    KINDS,
    DrainMeter,
    UplinkConfig,
    UplinkStats,
    host_receipt_topic,
    host_state_topic,
    message_payload,
    parse_host_state,
    parse_receipt,
    status_payload,
    topic,
)

log = logging.getLogger(__name__)

_PREFETCH = 24  # backlog messages read from SQLite at a time (a read blocks this thread)
_DELETE_EVERY_S = 0.1
_DELETE_BATCH = 512
_OLDEST_EVERY_S = 1.0
_GOODBYE_S = 1.0


class _ConnectionLost(Exception):
    pass


class Uplink:
    """Publishes the outbox to the plant broker; start() and stop() from any thread.

    While connected (and, with primary_host, while that host says it is online) messages
    committed from now on go out as soon as they are committed ("live"); everything older is
    the backlog and goes out in seq order with "historical": true, using the in-flight window
    less the share kept for live messages (live_budget), at most max_drain_rate messages a
    second. A row leaves the outbox only after its PUBACK.
    """

    def __init__(
        self,
        config: UplinkConfig,
        broker: BrokerConfig,
        outbox: Outbox,
        *,
        edge_id: str,
        snapshot_id: str = "",
        clock: Clock | None = None,
        client_id: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if broker.id != config.broker:
            raise ValueError(f"broker {broker.id!r} is not the uplink's broker {config.broker!r}")
        self.config = config
        self.broker = broker
        self.outbox = outbox
        self.edge_id = edge_id
        self.clock = clock or SystemClock()
        self.connect_timeout_s = connect_timeout_s
        self.client_id = client_id or (
            f"{broker.client_id}-uplink" if broker.client_id else f"floorconsole-{edge_id}-uplink"
        )
        self.link = LinkStats(broker.id, "uplink", f"{broker.host}:{broker.port}")
        self._snapshot = snapshot_id
        self._topics = {kind: topic(config.topic_prefix, edge_id, kind) for kind in KINDS}
        self._status_topic = topic(config.topic_prefix, edge_id, "status")
        self._host_topic = self._receipt_topic = None
        if config.primary_host:
            self._host_topic = host_state_topic(config.topic_prefix, config.primary_host)
            self._receipt_topic = host_receipt_topic(
                config.topic_prefix, config.primary_host, edge_id
            )

        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        # Publisher thread only (read by stats() as plain values).
        self._state = "stopped"
        self._client: mqtt.Client | None = None
        self._connack: ReasonCode | None = None
        self._disconnected = ""
        self._accepted_before = False
        self._host_online = False
        self._host_receipts = False
        self._flow_open = False
        self._inflight: dict[int, tuple[OutboxMessage, bool]] = {}
        self._acked_pending: list[OutboxMessage] = []
        self._last_delete = 0.0
        self._prefetch: deque[OutboxMessage] = deque()
        self._cursor = -1
        self._backlog_below = 0
        self._reading_backlog = False
        self._backlog_exhausted = False
        self._hist_inflight = 0
        # Backlog messages sent but not yet in the primary host's receipts: (seq, bytes).
        self._unconfirmed: deque[tuple[int, int]] = deque()
        self._unconfirmed_bytes = 0
        self._host_seq: int | None = None
        self._next_backlog_at = 0.0
        self._meter = DrainMeter()
        self._status_due = 0.0
        self._oldest_due = 0.0
        self._goodbye_mid: int | None = None
        self._goodbye_acked = False
        self._released: set[int] = set()

        self._drain_started: float | None = None
        self._drain_messages = 0
        self.last_drain: tuple[int, int, float] | None = None  # entries, messages, seconds

        self.published = 0
        self.acked = 0
        self.resent = 0
        self.live_lag_s: float | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> bool:
        """Start the publisher thread; returns at once. False (stats say why) when this
        configuration cannot connect at all: a missing password variable, a missing file."""
        if self._thread is not None:
            return True
        problem = configure_client(self._new_paho(), self.broker)
        if problem:
            self._set_state("down", LinkState.DOWN, problem)
            self.link.errors += 1
            log.error("uplink to %s: %s", self.broker.id, problem)
            return False
        self._stopping = False
        self.outbox.set_waker(self.wake)
        self._set_state("connecting", LinkState.CONNECTING)
        self._thread = threading.Thread(
            target=self._run, name=f"uplink-{self.broker.id}", daemon=True
        )
        self._thread.start()
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Say offline (retained), disconnect cleanly (no last will), join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self.wake()
        thread.join(timeout)
        self.outbox.set_waker(lambda: None)

    def close(self) -> None:
        self.stop()
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        """Make the publisher look at its queues now (new messages committed, stop asked)."""
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (it is awake anyway) or closed
            pass

    def set_snapshot(self, snapshot_id: str) -> None:
        """The active snapshot changed: the retained status says so at once."""
        self._snapshot = snapshot_id
        self._status_due = 0.0
        self.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until every message in the outbox is acknowledged and deleted (tests, tools)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.rows == 0 and not self.outbox.pending and not self._inflight:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        delay = self.config.reconnect_min_s
        try:
            self.outbox.open_reader()
            while not self._stopping:
                try:
                    accepted = self._session()
                except Exception as exc:  # noqa: BLE001 - a bug must not end the uplink
                    log.exception("uplink to %s", self.broker.id)
                    self.link.errors += 1
                    self._set_state("down", LinkState.DOWN, f"internal error: {exc}")
                    accepted = False
                self._teardown()
                if self._stopping:
                    break
                if accepted:
                    delay = self.config.reconnect_min_s
                self._sleep(delay * random.uniform(0.8, 1.2))
                if not accepted:
                    delay = min(self.config.reconnect_max_s, delay * 2)
        except Exception as exc:  # noqa: BLE001 - e.g. the database vanished
            log.exception("uplink to %s stopped", self.broker.id)
            self._set_state("down", LinkState.DOWN, f"stopped: {exc}")
            return
        finally:
            self.outbox.close_reader()
        self._set_state("stopped", LinkState.DOWN, "stopped")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._refresh_oldest()
            try:
                ready, _, _ = select.select([self._wake_r], [], [], min(left, _OLDEST_EVERY_S))
            except (OSError, ValueError):
                return
            if ready:
                self._drain_wake()

    def _new_paho(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        # Status messages may take a slot or two beside the data window.
        client.max_inflight_messages_set(self.config.inflight + 2)
        client.connect_timeout = self.connect_timeout_s
        return client

    def _session(self) -> bool:
        """One connection, from CONNECT to its loss or our stop. True if it was accepted."""
        client = self._new_paho()
        problem = configure_client(client, self.broker)
        if problem:
            self.link.errors += 1
            self._set_state("down", LinkState.DOWN, problem)
            return False
        self._set_will(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._connack = None
        self._disconnected = ""
        b = self.broker
        try:
            client.connect(b.host, b.port, keepalive=max(1, round(b.keepalive_s)))
        except (OSError, ValueError) as e:
            self.link.errors += 1
            self._set_state("down", LinkState.DOWN, f"cannot connect to {b.host}:{b.port}: {e}")
            return False
        deadline = time.monotonic() + self.connect_timeout_s
        while self._connack is None:
            left = deadline - time.monotonic()
            if (left <= 0 or not self._io(client, min(left, 0.25))) and self._connack is None:
                self.link.errors += 1
                why = self._disconnected or f"no CONNACK within {self.connect_timeout_s:g} s"
                self._set_state(
                    "down",
                    LinkState.DOWN,
                    f"connection to {b.host}:{b.port} closed before it was accepted ({why})",
                )
                return False
            if self._stopping:
                return False
        if self._connack.is_failure:
            self.link.errors += 1
            self._set_state("down", LinkState.DOWN, f"connection refused: {self._connack}")
            return False

        if self._accepted_before:
            self.link.reconnects += 1
        self._accepted_before = True
        self._publish_status(client)
        if self._host_topic is not None:
            self._subscribe(client)
            self._set_state(
                "waiting for host",
                LinkState.DEGRADED,
                f"waiting for primary host {self.config.primary_host!r}",
            )
        else:
            self._open_flow()
        log.info("uplink to %s: connected at %s:%d", b.id, b.host, b.port)

        try:
            while not self._stopping:
                self._update_flow()
                self._pump(client)
                self._delete_acked()
                if time.monotonic() >= self._status_due:
                    self._publish_status(client)
                self._refresh_oldest()
                if not self._io(client, self._timeout()):
                    raise _ConnectionLost(self._disconnected or "connection lost")
        except _ConnectionLost as e:
            self._set_state("down", LinkState.DOWN, f"connection lost: {e}")
            log.warning(
                "uplink to %s: connection lost (%s); %d entries kept", b.id, e, self.outbox.rows
            )
            return True
        self._goodbye(client)
        return True

    # What a format (the Sparkplug uplink) says differently on the same session.

    def _set_will(self, client: mqtt.Client) -> None:
        client.will_set(
            self._status_topic, self._status(online=False, figures=False), qos=1, retain=True
        )

    def _subscribe(self, client: mqtt.Client) -> None:
        topics = [(self._host_topic, 1), (self._receipt_topic, 0)]
        client.subscribe([(t, qos) for t, qos in topics if t is not None])

    def _farewell(self, client: mqtt.Client) -> mqtt.MQTTMessageInfo:
        """The last message of a clean stop, at QoS 1."""
        return client.publish(self._status_topic, self._status(online=False), qos=1, retain=True)

    def _io(self, client: mqtt.Client, timeout: float) -> bool:
        """One turn of paho's external loop; False once the connection is gone."""
        sock = client.socket()
        if sock is None or self._disconnected:
            return False
        pending = getattr(sock, "pending", None)  # TLS may hold decrypted bytes select can't see
        if pending is not None and pending() > 0:
            timeout = 0.0
        want = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select([sock, self._wake_r], want, [], max(0.0, timeout))
        except (OSError, ValueError):
            return False
        if self._wake_r in readable:
            self._drain_wake()
        if sock in readable or (pending is not None and pending() > 0):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
        if writable and client.socket() is not None:
            if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
        if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        return not self._disconnected

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _timeout(self) -> float:
        now = time.monotonic()
        t = min(self._status_due - now, 0.5)
        if self._acked_pending:
            t = min(t, self._last_delete + _DELETE_EVERY_S - now)
        if (
            self._reading_backlog
            and self.config.max_drain_rate > 0
            and len(self._inflight) < self._backlog_limit()
        ):
            t = min(t, self._next_backlog_at - now)
        return max(0.0, t)

    def _teardown(self) -> None:
        """After a connection: acked rows deleted now (a kill -9 in the outage then resends
        nothing the broker has), unacknowledged ones released for the next connection."""
        self._delete_acked(force=True)
        released = [m.seq for m, _h in self._inflight.values()]
        self.outbox.release(released)
        self._released.update(released)
        self._inflight.clear()
        self._hist_inflight = 0
        self._close_flow()
        self._host_online = False
        client, self._client = self._client, None
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def _goodbye(self, client: mqtt.Client) -> None:
        """Stopping: flush deletes, say offline (retained), DISCONNECT (no last will)."""
        self._close_flow()
        self._goodbye_acked = False
        info = self._farewell(client)
        self._goodbye_mid = info.mid
        deadline = time.monotonic() + _GOODBYE_S
        while not self._goodbye_acked and time.monotonic() < deadline:
            if not self._io(client, 0.05):
                return
        self._delete_acked(force=True)
        client.disconnect()
        deadline = time.monotonic() + _GOODBYE_S
        while client.want_write() and time.monotonic() < deadline:
            if not self._io(client, 0.05):
                break
        log.info("uplink to %s: disconnected; %d entries kept", self.broker.id, self.outbox.rows)

    # ------------------------------------------------------------------ flow

    def _open_flow(self) -> None:
        self._backlog_below = self.outbox.open_live()
        self._flow_open = True
        self._cursor = -1
        self._prefetch.clear()
        self._reading_backlog = True
        self._backlog_exhausted = False
        self._unconfirmed.clear()
        self._unconfirmed_bytes = 0
        # Nothing confirmed yet by a host that sends receipts (it may have restarted);
        # None: it sends none, the backlog is not paced by it.
        self._host_seq = -1 if self._host_receipts else None
        self._meter.start(time.monotonic(), self.outbox.rows)
        self._drain_started = time.monotonic()
        self._drain_messages = 0
        self._set_state("up", LinkState.UP)

    def _close_flow(self) -> None:
        if self._flow_open:
            self.outbox.close_live()
        self._flow_open = False
        self._prefetch.clear()
        self._reading_backlog = False
        self._drain_started = None  # an interrupted drain is not a drain done

    def _update_flow(self) -> None:
        if self._host_topic is not None:
            if self._host_online and not self._flow_open:
                log.info("uplink to %s: primary host online; data flows", self.broker.id)
                self._open_flow()
            elif not self._host_online and self._flow_open:
                log.warning("uplink to %s: primary host offline; holding data", self.broker.id)
                self._close_flow()
                self._set_state(
                    "waiting for host",
                    LinkState.DEGRADED,
                    f"waiting for primary host {self.config.primary_host!r}",
                )
        if self._flow_open and self.outbox.live_overflowed:
            # We fell far behind: what was queued in memory is read back as backlog.
            self._backlog_below = self.outbox.open_live()
            self._reading_backlog = True
            self._backlog_exhausted = False
            self._meter.total = self._meter.done + self.outbox.rows
            if self._drain_started is None:
                self._drain_started = time.monotonic()
                self._drain_messages = 0

    def _backlog_limit(self) -> int:
        return self.config.inflight - (self.config.live_reserve if self._flow_open else 0)

    def _pump(self, client: mqtt.Client) -> None:
        if not self._flow_open:
            return
        room = self.config.inflight - len(self._inflight)
        if room > 0 and self.outbox.live_waiting:
            for m in self.outbox.take_live(room):
                self._send(client, m, historical=False)
        limit = self._backlog_limit()
        rate = self.config.max_drain_rate
        window = self.config.host_window
        while self._reading_backlog and len(self._inflight) < limit:
            now = time.monotonic()
            if rate > 0 and now < self._next_backlog_at:
                break
            if self._host_seq is not None and self._unconfirmed_bytes >= window:
                break  # the consumer is behind: the broker's queue to it stays short
            if not self._prefetch:
                if not self._read_ahead():
                    self._reading_backlog = False
                    self._drain_done()
                    return
                continue
            m = self._prefetch.popleft()
            if not self.outbox.claim(m):
                continue  # dropped by on_full since we read it
            self._send(client, m, historical=True)
            if rate > 0:
                self._next_backlog_at = max(self._next_backlog_at, now) + 1.0 / rate
        # The window is busy: read the next rows now, while the broker works, rather than
        # when the window has run dry.
        if self._reading_backlog and len(self._prefetch) < _PREFETCH // 2:
            self._read_ahead()

    def _read_ahead(self) -> bool:
        """More backlog into the prefetch queue; False when the range holds nothing more."""
        if self._backlog_exhausted:
            return False
        msgs, last = self.outbox.read_backlog(self._cursor, self._backlog_below, _PREFETCH)
        if last is None:
            self._backlog_exhausted = True
            return False
        self._cursor = last
        self._prefetch.extend(msgs)
        return True

    def _send(self, client: mqtt.Client, m: OutboxMessage, *, historical: bool) -> None:
        body = self.outbox.body_of(m)
        payload = message_payload(self.edge_id, m.boot, m.seq, historical, m.kind, body)
        info = client.publish(self._topics[m.kind], payload, qos=1)
        # Tracked even when refused: the row is released with the others at teardown.
        self._inflight[info.mid] = (m, historical)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # MQTT_ERR_NO_CONN: paho keeps it queued in this client object, which is dropped
            # with the connection, so it is not sent twice.
            raise _ConnectionLost(mqtt.error_string(info.rc))
        self.published += 1
        if m.seq in self._released:
            self._released.discard(m.seq)
            self.resent += 1
        if historical:
            self._hist_inflight += 1
            self._unconfirmed.append((m.seq, len(body)))
            self._unconfirmed_bytes += len(body)
        else:
            self.live_lag_s = max(0.0, self.clock.wall() - m.t)

    def _delete_acked(self, force: bool = False) -> None:
        if not self._acked_pending:
            return
        now = time.monotonic()
        if (
            not force
            and len(self._acked_pending) < _DELETE_BATCH
            and now - self._last_delete < _DELETE_EVERY_S
        ):
            return
        self._last_delete = now
        if self.outbox.delete_acked(self._acked_pending):
            self._acked_pending = []
        # else: the database refused (counted in the outbox); they stay claimed, tried again

    # ------------------------------------------------------------------ status

    def _status(self, *, online: bool, figures: bool = True) -> bytes:
        st = self.outbox.stats()
        age = (
            None
            if st.oldest_t is None or not figures
            else max(0.0, self.clock.wall() - st.oldest_t)
        )
        return status_payload(
            self.edge_id,
            self.outbox.boot,
            online=online,
            snapshot=self._snapshot,
            backlog_rows=st.rows if figures else None,
            backlog_bytes=st.bytes if figures else None,
            oldest_age_s=age,
            t=self.clock.wall(),
        )

    def _publish_status(self, client: mqtt.Client) -> None:
        self._status_due = time.monotonic() + self.config.status_interval_s
        client.publish(self._status_topic, self._status(online=True), qos=1, retain=True)

    def _refresh_oldest(self) -> None:
        now = time.monotonic()
        if now < self._oldest_due:
            return
        self._oldest_due = now + _OLDEST_EVERY_S
        try:
            self.outbox.refresh_oldest()
        except Exception:  # noqa: BLE001 - a figure, not worth stopping for
            log.debug("uplink: oldest entry not read", exc_info=True)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._connack = reason_code

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        why = str(reason_code)
        # paho says "Unspecified error" for a socket closed under it.
        self._disconnected = (
            "closed by the broker or the network" if why in ("", "Unspecified error") else why
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            if mid == self._goodbye_mid:
                self._goodbye_acked = True
            return
        m, historical = entry
        self.acked += 1
        self._acked_pending.append(m)
        if historical:
            self._hist_inflight -= 1
            self._drain_messages += 1
            self._meter.add(time.monotonic(), m.n)
            self._drain_done()

    def _drain_done(self) -> None:
        if self._drain_started is None or self._reading_backlog or self._hist_inflight:
            return
        if self._drain_messages:
            self.last_drain = (
                self._meter.done,
                self._drain_messages,
                time.monotonic() - self._drain_started,
            )
            log.info(
                "uplink to %s: backlog drained, %d entries in %d messages in %.1f s",
                self.broker.id,
                *self.last_drain,
            )
        self._drain_started = None

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._host_topic:
            self._host_online, self._host_receipts = parse_host_state(msg.payload)
        elif msg.topic == self._receipt_topic:
            seq = parse_receipt(msg.payload)
            if seq is None:
                return
            self._host_seq = seq
            unconfirmed = self._unconfirmed
            while unconfirmed and unconfirmed[0][0] <= seq:
                self._unconfirmed_bytes -= unconfirmed.popleft()[1]

    def _set_state(self, state: str, link: LinkState, error: str = "") -> None:
        self._state = state
        if self.link.set_state(link, time.monotonic(), error) and state == "down":
            log.warning("uplink to %s: %s", self.broker.id, error)

    # ------------------------------------------------------------------ figures

    @property
    def state(self) -> str:
        return self._state

    def stats(self) -> UplinkStats:
        """A consistent-enough snapshot for the console (any thread)."""
        st = self.outbox.stats()
        now = time.monotonic()
        draining = self._flow_open and (self._reading_backlog or self._hist_inflight > 0)
        meter = self._meter
        return UplinkStats(
            state=self._state,
            broker=self.broker.id,
            endpoint=self.link.endpoint,
            state_age_s=round(max(0.0, now - self.link.since_mono), 1),
            last_error=self.link.last_error,
            backlog_rows=st.rows,
            backlog_bytes=st.bytes,
            backlog_messages=st.messages,
            backlog_full=st.full,
            oldest_age_s=None if st.oldest_t is None else max(0.0, self.clock.wall() - st.oldest_t),
            draining=draining,
            drain_rate=round(meter.rate(now), 1) if draining else 0.0,
            drain_progress=round(meter.progress, 3) if draining else None,
            time_left_s=meter.time_left(now) if draining else None,
            published=self.published,
            acked=self.acked,
            inflight=len(self._inflight),
            duplicates_possible=self.resent,
            reconnects=self.link.reconnects,
            live_lag_s=self.live_lag_s,
            next_seq=st.next_seq,
            disk_full=st.disk_full,
            db_errors=st.errors,
            db_last_error=st.last_error,
            dropped=st.dropped,
        )
