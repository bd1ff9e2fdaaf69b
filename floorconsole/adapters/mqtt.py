"""The MQTT source: one paho client per broker, payloads decoded in its thread, samples to the engine."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from floorconsole.adapters.mqtt_login import configure_client
from floorconsole.core.clock import Clock
from floorconsole.core.config import BrokerConfig, MqttPoint, SignalConfig
from floorconsole.core.links import BadInputLog, LinkState, LinkStats, SampleSink
from floorconsole.core.payload import BAD_TIME, Malformed, TopicDecoder
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

log = logging.getLogger(__name__)

SUBSCRIBE_QOS = 1
# Measured: in-flight 20-100 is the sweet spot; 1000 halved QoS 1 throughput.
MAX_INFLIGHT = 50
# Two clients with one id kick each other off the broker, e.g. the old and the new
# configuration side by side during a snapshot apply: number them.
_instance = itertools.count(1)


class BrokerClient:
    """Reads the signals of one broker. Runs paho's network thread; never blocks the engine.

    Everything the outside sees goes through `stats` (state, counters, last error) and `sink`
    (samples, handed to the engine's loop with call_soon_threadsafe, one batch per message).
    A callback never raises: paho would let the exception kill its network thread.

    On a lost connection the last sample of every signal is sent again as UNCERTAIN (last
    usable), keeping its receive time, so the engine's staleness watchdog turns it BAD on
    schedule. Every (re)connect subscribes to every topic again: sessions are clean, so a
    broker restart forgets our subscriptions.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        signals: Sequence[SignalConfig],
        sink: SampleSink,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        stats: LinkStats,
        *,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.broker = broker
        self.sink = sink
        self.loop = loop
        self.clock = clock
        self.stats = stats
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        by_topic: dict[str, list[SignalConfig]] = {}
        for s in signals:
            if not isinstance(s.source, MqttPoint) or s.source.broker != broker.id:
                raise ValueError(f"signal {s.id!r} is not read from broker {broker.id!r}")
            by_topic.setdefault(s.source.topic, []).append(s)
        self._decoders = {topic: TopicDecoder(topic, sigs) for topic, sigs in by_topic.items()}
        self._bad_input = BadInputLog(stats)
        self._last: dict[str, Sample] = {}  # paho thread only
        self._connected_once = False
        self._subscribe_mid = -1
        # How the current connection attempt went: "" (no CONNACK yet), "refused", "accepted".
        # paho's thread only.
        self._connack = ""
        self._stopping = False
        self._started = False
        self._tls_set = False  # paho refuses a second tls_set, e.g. on start after stop
        self.client_id = broker.client_id or (
            f"floorconsole-{socket.gethostname()}-{broker.id}-{os.getpid()}-{next(_instance)}"
        )
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    @property
    def topics(self) -> list[str]:
        return list(self._decoders)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> bool:
        """Begin connecting in paho's thread; returns at once. False (and stats say why) when
        the configuration cannot work: a missing password variable or unreadable TLS files."""
        if self._started:
            return True
        self._stopping = False
        problem = self._configure()
        if problem:
            self._set_state(LinkState.DOWN, problem)
            self.stats.errors += 1
            log.error("broker %s: %s", self.broker.id, problem)
            return False
        self._set_state(LinkState.CONNECTING)
        keepalive = max(1, round(self.broker.keepalive_s))
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=keepalive)
        self.client.loop_start()
        self._started = True
        return True

    def stop(self) -> None:
        """Disconnect and join paho's thread. A deliberate stop sends no degraded samples."""
        if not self._started:
            return
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False
        if self.stats.set_state(LinkState.DOWN, self.clock.mono(), "stopped"):
            log.info("broker %s: stopped", self.broker.id)

    def _configure(self) -> str:
        problem = configure_client(self.client, self.broker, tls=not self._tls_set)
        if problem:
            return problem
        self._tls_set = self.broker.tls is not None
        self.client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        return ""

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish through this broker connection; paho's MQTTMessageInfo comes back as is.

        While disconnected, rc is MQTT_ERR_NO_CONN, but a QoS 1/2 message stays queued in paho
        and goes out after the reconnect: do not queue it again (it would be sent twice).
        paho keeps nothing on disk; durability across restarts belongs to the outbox.
        """
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho callbacks (paho's thread) ----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        try:
            if reason_code.is_failure:
                self._connack = "refused"
                self.stats.errors += 1
                self._set_state(LinkState.DOWN, f"connection refused: {reason_code}")
                return
            self._connack = "accepted"
            if not self._decoders:  # a broker we only publish to (rule actions): up now
                if self._connected_once:
                    self.stats.reconnects += 1
                self._connected_once = True
                self._set_state(LinkState.UP)
                return
            # Up only once the SUBACK is in (_on_subscribe): before that no data can arrive.
            result, mid = client.subscribe([(t, SUBSCRIBE_QOS) for t in self._decoders])
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._set_state(
                    LinkState.DEGRADED, f"subscribe failed: {mqtt.error_string(result)}"
                )
                return
            self._subscribe_mid = -1 if mid is None else mid
        except Exception:  # noqa: BLE001 - a raise here would end paho's thread
            log.exception("broker %s: on_connect failed", self.broker.id)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        try:
            self.stats.errors += 1
            self._set_state(
                LinkState.DOWN, f"cannot connect to {self.broker.host}:{self.broker.port}"
            )
        except Exception:  # noqa: BLE001
            log.exception("broker %s: on_connect_fail failed", self.broker.id)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        try:
            if mid != self._subscribe_mid:
                return
            refused = [
                t for t, rc in zip(self._decoders, reason_codes, strict=False) if rc.is_failure
            ]
            if self._connected_once:
                self.stats.reconnects += 1
            self._connected_once = True
            if refused:
                self._set_state(
                    LinkState.DEGRADED, f"subscription refused for {', '.join(refused)}"
                )
            else:
                self._set_state(LinkState.UP)
        except Exception:  # noqa: BLE001
            log.exception("broker %s: on_subscribe failed", self.broker.id)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        try:
            connack, self._connack = self._connack, ""
            if self._stopping or connack == "refused":
                return  # a refused CONNACK already said why; the values were degraded then
            if connack == "":
                # Closed before any CONNACK: e.g. a TLS 1.3 server rejecting our certificate
                # after the handshake looked complete to us.
                self.stats.errors += 1
                self._set_state(
                    LinkState.DOWN,
                    f"connection closed by {self.broker.host}:"
                    f"{self.broker.port} before it was accepted "
                    f"({reason_code})",
                )
                return
            self._set_state(LinkState.DOWN, f"connection lost: {reason_code}")
            detail = f"broker {self.broker.id} down"
            degraded = [s.degraded(Reason.LAST_USABLE, detail) for s in self._last.values()]
            if degraded:
                self._hand_over(degraded)
        except Exception:  # noqa: BLE001
            log.exception("broker %s: on_disconnect failed", self.broker.id)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self.stats.messages += 1
            decoder = self._decoders.get(msg.topic)
            if decoder is None:
                return
            now_wall, now_mono = self.clock.wall(), self.clock.mono()
            out = decoder.decode(msg.payload, now_wall, now_mono)
            samples = list(out.samples)
            lost = False
            for sid, problem in out.problems:
                self.stats.malformed[(sid, problem.reason)] += 1
                if problem.reason != BAD_TIME:
                    lost = True
                    # The operator sees why the value stopped: BAD decoding error, naming the
                    # problem, with the last good value kept (greyed), not a silent age-out.
                    samples.append(self._undecodable(sid, problem, now_wall, now_mono))
            if out.problems:
                # Once per payload, however many signals read it
                self.stats.bad_payloads += lost
                for reason in {problem.reason for _sid, problem in out.problems}:
                    self.stats.bad_payload_reasons[reason] += 1
                first = self._bad_input.first(
                    msg.topic, [(sid, str(problem)) for sid, problem in out.problems]
                )
                if first:
                    log.warning("%s", first)
            if samples:
                for s in out.samples:
                    self._last[s.signal] = s
                self._hand_over(samples)
        except Exception:  # noqa: BLE001 - one bad message must not end the source
            self.stats.errors += 1
            log.exception(
                "broker %s: message on %r could not be handled",
                self.broker.id,
                getattr(msg, "_topic", b"?"),
            )

    def log_bad_input(self, now_mono: float) -> None:
        """At most once a minute, a summary of the bad payloads since the last one: call it
        from the engine's watchdog."""
        text = self._bad_input.summary(now_mono)
        if text:
            log.warning("%s", text)

    # -- helpers ---------------------------------------------------------------------------

    def _undecodable(
        self, sid: str, problem: Malformed, now_wall: float, now_mono: float
    ) -> Sample:
        detail = f"{problem.reason}: {problem.detail}"
        last = self._last.get(sid)
        if last is not None:
            return last.degraded(Reason.DECODE_ERROR, detail)
        return Sample(sid, None, Quality.BAD, Reason.DECODE_ERROR, now_wall, now_mono, detail)

    def _hand_over(self, samples: list[Sample]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.sink.ingest, samples)
        except RuntimeError:  # the engine's loop is closed: it is shutting down
            pass

    def _set_state(self, state: LinkState, error: str = "") -> None:
        was = self.stats.state
        if self.stats.set_state(state, self.clock.mono(), error):
            if state is LinkState.UP:
                log.info(
                    "broker %s: %s at %s:%d",
                    self.broker.id,
                    "recovered" if was is not LinkState.CONNECTING else "connected",
                    self.broker.host,
                    self.broker.port,
                )
            else:
                log.warning(
                    "broker %s: %s%s", self.broker.id, state.value, f" ({error})" if error else ""
                )
