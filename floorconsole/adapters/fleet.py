"""The fleet on the plant broker (paho-mqtt): an edge's link (its retained status with a last
will, its activation log, rollout commands in, results out) and the fleet tool's client (every
edge's messages into a core.fleet.FleetState, commands out). The protocol is core/fleet.py's.

Both run paho's own network thread (loop_start) and reconnect by themselves; a command
arriving at an edge is handed to a callback on that thread, which must hand it on quickly.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from floorconsole.adapters.mqtt_login import configure_client
from floorconsole.core.config import BrokerConfig
from floorconsole.core.fleet import FleetState, topic

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 64 << 20  # a command carrying more is refused before it is decoded
MAX_BUNDLE_FILES = 200


class BundleTransferError(ValueError):
    """A bundle in a command that cannot be written out; the text names the file."""


def pack_bundle(folder: Path) -> dict[str, str]:
    """Every file of a bundle folder (plant file, model packages, manifest, signature) as
    relative POSIX name -> base64, for a rollout command."""
    root = Path(folder)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = base64.b64encode(p.read_bytes()).decode()
    return out


def unpack_bundle(files: Mapping[str, str], dest: Path) -> Path:
    """Write a command's bundle files into dest (replaced), refusing a name that leaves the
    folder, bad base64, or too much."""
    if len(files) > MAX_BUNDLE_FILES:
        raise BundleTransferError(f"{len(files)} files; a bundle has at most {MAX_BUNDLE_FILES}")
    if sum(len(v) for v in files.values()) * 3 // 4 > MAX_BUNDLE_BYTES:
        raise BundleTransferError(f"bundle over {MAX_BUNDLE_BYTES >> 20} MiB")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name, data in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise BundleTransferError(f"bundle file {name!r} is not inside the bundle")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BundleTransferError(f"bundle file {name!r}: not base64") from None
        p = dest.joinpath(*rel.parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
    return dest


def _client(client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.reconnect_delay_set(min_delay=1, max_delay=10)
    return c


class FleetLink:
    """An edge's end: connect (last will: offline), say online with the status the engine
    gives, publish its activation log, take rollout commands for this edge."""

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        prefix: str,
        edge: str,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.edge = edge
        self._on_command_cb: Callable[[bytes], None] = lambda _payload: None
        self._on_connected_cb: Callable[[], None] = lambda: None
        self.status_topic = topic(prefix, edge, "status")
        self.command_topic = topic(prefix, edge, "rollout")
        self.result_topic = topic(prefix, edge, "rollout/result")
        self.activations_topic = topic(prefix, edge, "activations")
        self.alive_topic = topic(prefix, edge, "alive")
        self.connected = False
        self.problem = ""
        self.published = 0
        self._client: mqtt.Client | None = None
        self._will: dict[str, Any] = {}

    def start(
        self,
        will: dict[str, Any],
        *,
        on_command: Callable[[bytes], None],
        on_connected: Callable[[], None],
    ) -> bool:
        """Connect in the background; False (and problem says why) when it cannot at all.
        on_command gets each command's payload, on_connected runs at each (re)connect; both
        on paho's thread."""
        self._on_command_cb, self._on_connected_cb = on_command, on_connected
        client = _client(f"floorconsole-fleet-{self.edge}")
        problem = configure_client(client, self.broker)
        if problem:
            self.problem = problem
            log.error("fleet: %s", problem)
            return False
        self._will = dict(will)
        client.will_set(self.status_topic, json.dumps(will).encode(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        b = self.broker
        client.connect_async(b.host, b.port, keepalive=max(1, round(b.keepalive_s)))
        client.loop_start()
        return True

    def publish(self, topic_name: str, doc: dict[str, Any], *, retain: bool = True) -> bool:
        c = self._client
        if c is None or not self.connected:
            return False
        info = c.publish(topic_name, json.dumps(doc, separators=(",", ":")), qos=1, retain=retain)
        self.published += 1
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def stop(self, goodbye: dict[str, Any] | None = None, timeout: float = 3.0) -> None:
        """Say offline (retained) and disconnect cleanly (no last will)."""
        c, self._client = self._client, None
        if c is None:
            return
        if goodbye is not None and self.connected:
            info = c.publish(self.status_topic, json.dumps(goodbye), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        c.disconnect()
        c.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self.problem = f"fleet broker refused the connection: {reason_code}"
            log.warning("fleet: %s", self.problem)
            return
        self.connected = True
        self.problem = ""
        client.subscribe(self.command_topic, qos=1)
        self._on_connected_cb()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.command_topic and msg.payload:
            self._on_command_cb(bytes(msg.payload))


class FleetClient:
    """The fleet tool's end: every edge's retained status, activation log and rollout result
    into a FleetState (under a lock), commands out."""

    def __init__(self, broker: BrokerConfig, *, prefix: str, client_id: str = "") -> None:
        self.broker = broker
        self.prefix = prefix
        self.state = FleetState(prefix)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.messages = 0
        self._client = _client(client_id or f"floorconsole-fleet-tool-{time.time_ns() % 10**9}")
        self._connected = threading.Event()
        self.problem = ""

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raises ConnectionError naming the broker when it cannot."""
        c = self._client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        b = self.broker
        _connect(c, b)
        deadline = time.monotonic() + timeout
        # a refusal (bad login, a revoked one) is an answer: no need to wait out the timeout
        while not self._connected.wait(0.1):
            if self.problem or time.monotonic() > deadline:
                c.disconnect()
                c.loop_stop()
                raise ConnectionError(
                    f"the plant broker {b.host}:{b.port} refused us: {self.problem}"
                    if self.problem
                    else f"the plant broker {b.host}:{b.port} did not accept us within "
                    f"{timeout:g} s"
                )

    def settle(self, quiet_s: float = 0.5, timeout: float = 5.0) -> None:
        """Wait until the retained messages have come in (none for quiet_s)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            with self.lock:
                n = self.messages
            if n == last:
                return
            last = n
            time.sleep(quiet_s)

    def wait_for(self, pred: Callable[[FleetState], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not pred(self.state):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
            return True

    def send(self, edge: str, payload: bytes) -> None:
        """A rollout command for an edge, retained: an edge offline now takes it on return."""
        info = self._client.publish(topic(self.prefix, edge, "rollout"), payload, 1, retain=True)
        info.wait_for_publish(10.0)

    def retain(self, topic_name: str, payload: bytes = b"") -> None:
        """A retained message in place of the one there (empty: remove it)."""
        self._client.publish(topic_name, payload, 1, retain=True).wait_for_publish(10.0)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self.problem = str(reason_code)
            return
        p = self.prefix
        client.subscribe(
            [
                (f"{p}/+/status", 1),
                (f"{p}/+/activations", 1),
                (f"{p}/+/alive", 1),
                (f"{p}/+/rollout", 1),
                (f"{p}/+/rollout/result", 1),
            ]
        )
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.messages += 1
            self.state.apply(msg.topic, bytes(msg.payload))
            self.changed.notify_all()


# -- mosquitto's dynamic security plugin: revoking an edge's credentials ---------------------


def _connect(c: mqtt.Client, broker: BrokerConfig) -> None:
    """Log in (TLS, user), connect and start the client's thread; ConnectionError naming the
    broker when the login is incomplete or the broker cannot be reached. The callbacks are
    set before: paho calls on_connect from its thread once the broker answers."""
    problem = configure_client(c, broker)
    if problem:
        raise ConnectionError(problem)
    try:
        c.connect(broker.host, broker.port, keepalive=max(1, round(broker.keepalive_s)))
    except (OSError, ValueError) as e:
        raise ConnectionError(
            f"cannot connect to the plant broker {broker.host}:{broker.port}: {e}"
        ) from None
    c.loop_start()


DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"


class DynsecError(RuntimeError):
    """The dynamic-security plugin answered a command with an error (its text is in it)."""


def dynsec(
    broker: BrokerConfig, commands: list[dict[str, Any]], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Send commands to mosquitto's dynamic-security plugin (as a client with its admin role)
    and return its responses in order. ConnectionError when the broker cannot be reached or
    refuses us; DynsecError naming the command for a response with an error; TimeoutError
    when no answer comes (no plugin loaded, or no right to its topics)."""
    c = _client(f"floorconsole-fleet-dynsec-{time.time_ns() % 10**9}")
    ready, answered = threading.Event(), threading.Event()
    refused: list[str] = []
    responses: list[dict[str, Any]] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        if rc.is_failure:
            refused.append(str(rc))
            ready.set()
            return
        client.subscribe(DYNSEC_TOPIC + "/response", qos=1)

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, rcs: Any, props: Any) -> None:
        ready.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and isinstance(doc.get("responses"), list):
            responses.extend(r for r in doc["responses"] if isinstance(r, dict))
            answered.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    _connect(c, broker)
    try:
        if not ready.wait(timeout) or refused:
            raise ConnectionError(
                f"the plant broker {broker.host}:{broker.port} refused us: "
                f"{refused[0] if refused else 'no answer'}"
            )
        c.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}), qos=1).wait_for_publish(timeout)
        if not answered.wait(timeout):
            raise TimeoutError(
                f"no answer on {DYNSEC_TOPIC}/response within {timeout:g} s: is mosquitto's "
                "dynamic security plugin loaded, and may this login use it?"
            )
    finally:
        c.disconnect()
        c.loop_stop()
    for r in responses:
        if r.get("error"):
            raise DynsecError(f"dynamic security: {r.get('command', '?')}: {r['error']}")
    return responses
