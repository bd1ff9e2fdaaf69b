"""The simulated motor plant on the network: a Modbus TCP drive and an MQTT vibration sensor.

    sim = SimPlant(modbus_port=0, mqtt_host="127.0.0.1", mqtt_port=1883, seed=1)
    sim.start()                    # returns at once; the plant runs in its own thread
    sim.modbus_port                # the port 0 turned into
    sim.inject("bearing", 0.5)     # faults while running; "dropout" takes the drive offline
    sim.clear("bearing")
    sim.stop()

One plant thread owns the MotorSim: it steps it at ~10 Hz on the monotonic clock, writes the
register image into the Modbus server, and every 0.5 s publishes a block of vibration. A client
writing co:10 trips the motor (false resets it) and co:0 is the run command; both are applied
inside the server's write, under the plant lock, so a read-back right after a write sees the
value written and the next image already carries its effect.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from types import FrameType

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from floorconsole.adapters.broker import BrokerError, mqtt_ready, start_demo_broker
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.plantsim import FAULT_KINDS, RUN_COIL, TRIP_COIL, MotorReading, MotorSim

log = logging.getLogger(__name__)

MOTOR_ID = "motor-01"
VIBRATION_TOPIC = "factory/motor-01/vibration/raw"
BLOCK_SIZE = 256
SAMPLE_RATE_HZ = 500.0
PUBLISH_INTERVAL_S = 0.5
UPDATE_INTERVAL_S = 0.1  # register image refresh, ~10 Hz: faster than any sane poll of a drive
MAX_STEP_S = 1.0  # after a stall (suspend, debugger) the plant jumps at most this far at once
DECIMALS = 5  # 10 ug resolution: far below the sensor noise, and keeps a block near 6 KB
DROPOUT_MODES = ("offline", "silent")

FaultSpec = Iterable[str] | Mapping[str, float]


class SimPlant:
    """The demo plant: MotorSim behind a Modbus TCP server and an MQTT publisher, in threads.

    faults: kinds to inject from the start, or a mapping kind -> severity.
    dropout: "offline" stops the Modbus server (connections refused) until cleared;
             "silent" keeps it listening but it answers nothing (clients time out).
    Nothing here blocks the caller for longer than starting a local server takes; fault changes
    take effect on the plant thread within one update interval.
    """

    def __init__(
        self,
        *,
        modbus_port: int = 0,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        seed: int = 1,
        faults: FaultSpec = (),
        dropout: str = "offline",
        motor_id: str = MOTOR_ID,
        topic: str = VIBRATION_TOPIC,
        block_size: int = BLOCK_SIZE,
        sample_rate_hz: float = SAMPLE_RATE_HZ,
        publish_interval_s: float = PUBLISH_INTERVAL_S,
        update_interval_s: float = UPDATE_INTERVAL_S,
        clock: Clock | None = None,
    ) -> None:
        if dropout not in DROPOUT_MODES:
            raise ValueError(f"dropout must be one of {', '.join(DROPOUT_MODES)}, got {dropout!r}")
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.seed = seed
        self.dropout_mode = dropout
        self.motor_id = motor_id
        self.topic = topic
        self.block_size = block_size
        self.sample_rate_hz = sample_rate_hz
        self.publish_interval_s = publish_interval_s
        self.update_interval_s = update_interval_s
        self.clock = clock or SystemClock()
        self.published = 0  # vibration messages handed to the broker
        self.unsent = 0  # blocks dropped because the broker was not connected

        self._lock = threading.Lock()  # guards the MotorSim and coil write-backs
        self._motor = MotorSim(seed)
        for kind, severity in _fault_items(faults):
            self._motor.set_fault(kind, severity)
        self._server = ModbusDeviceServer(
            modbus_port, on_write=self._on_coil_write, name="sim-drive1"
        )
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=(f"floorconsole-sim-{socket.gethostname()}-{os.getpid()}-{id(self):x}"),
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.reconnect_delay_set(1, 5)
        self._mqtt_connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- life cycle ------------------------------------------------------------------------

    @property
    def modbus_port(self) -> int:
        return self._server.port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def mqtt_connected(self) -> bool:
        return self._mqtt_connected.is_set()

    def start(self) -> SimPlant:
        """Listen for Modbus, connect to the broker in the background, start the plant thread.

        Raises RuntimeError (naming the address) when the Modbus port cannot be bound.
        """
        if self.running:
            return self
        self._stop.clear()
        with self._lock:
            self._write_image()
            dropout = self._motor.dropout
        # Bind even when starting in dropout: a busy port fails here, and port 0 gets its number.
        self._server.start()
        self._apply_dropout(dropout)
        # connect_async + loop_start: a broker that is not up yet is retried in paho's thread.
        self._client.connect_async(self.mqtt_host, self.mqtt_port, keepalive=15)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="sim-plant", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the plant thread, the Modbus server and the MQTT client. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._server.silent = False
        self._server.stop()
        self._client.disconnect()
        self._client.loop_stop()
        self._mqtt_connected.clear()

    def __enter__(self) -> SimPlant:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults (the engine's DemoControl) -------------------------------------------------

    def fault_kinds(self) -> list[str]:
        return list(FAULT_KINDS)

    def active_faults(self) -> list[str]:
        """Active faults, in the order of fault_kinds()."""
        with self._lock:
            faults = self._motor.faults
        return [k for k in FAULT_KINDS if k in faults]

    def fault_severities(self) -> dict[str, float]:
        with self._lock:
            return self._motor.faults

    def inject(self, kind: str, severity: float = 1.0) -> None:
        """Start (or change the severity of) a fault. Raises ValueError for an unknown kind."""
        with self._lock:
            self._motor.set_fault(kind, severity)

    def clear(self, kind: str) -> None:
        with self._lock:
            self._motor.clear_fault(kind)

    def overhaul(self, *, one_x_gain: float = 1.0, broadband_gain: float = 1.0) -> None:
        """The motor after maintenance runs differently, healthy (MotorSim.overhaul)."""
        with self._lock:
            self._motor.overhaul(one_x_gain=one_x_gain, broadband_gain=broadband_gain)

    def reading(self) -> MotorReading:
        """The motor's latest reading (what the registers hold, before encoding)."""
        with self._lock:
            return self._motor.reading()

    # -- plant thread ----------------------------------------------------------------------

    def _run(self) -> None:
        last = time.monotonic()
        next_publish = last + self.publish_interval_s
        while not self._stop.wait(self.update_interval_s):
            now = time.monotonic()
            try:
                with self._lock:
                    self._motor.step(min(MAX_STEP_S, max(1e-3, now - last)))
                    self._write_image()
                    dropout = self._motor.dropout
                    block = None
                    if now >= next_publish:
                        block = self._motor.vibration_block(self.block_size, self.sample_rate_hz)
                last = now
                self._apply_dropout(dropout)
                if block is not None:
                    # a late tick skips the missed slots instead of publishing a burst
                    while next_publish <= now:
                        next_publish += self.publish_interval_s
                    self._publish(block)
            except Exception:  # noqa: BLE001 - the plant must keep running; log and go on
                log.exception("simulated plant: update failed")

    def _write_image(self) -> None:
        """Registers and coils from the motor; the caller holds the lock."""
        image = self._motor.register_image()
        for table in ("hr", "ir", "co"):
            for start, values in image.runs(table):
                self._server.set(table, start, values)

    def _apply_dropout(self, dropout: bool) -> None:
        """Bring the server in line with the dropout fault (never under the plant lock: a stop
        waits for requests in flight, which may be waiting for that lock in _on_coil_write)."""
        server = self._server
        if self.dropout_mode == "silent":
            if server.silent != dropout:
                server.silent = dropout
                log.info("simulated drive: %s", "silent" if dropout else "answering again")
            return
        if dropout and server.running:
            server.stop()
            log.info("simulated drive: offline (dropout)")
        elif not dropout and not server.running:
            server.start()
            log.info("simulated drive: back online on %s", server.endpoint)

    def _on_coil_write(self, table: str, address: int, values: list[int] | list[bool]) -> None:
        """A client wrote: apply run/trip commands now, and keep the written value as stored
        (the image of the previous tick must not overwrite it before the next one)."""
        if table != "co":
            return
        with self._lock:
            for offset, value in enumerate(values):
                coil = address + offset
                if coil == TRIP_COIL:
                    self._motor.set_trip(bool(value))
                elif coil == RUN_COIL:
                    self._motor.set_run(bool(value))
                else:
                    continue
                self._server.set("co", coil, bool(value))

    # -- MQTT ------------------------------------------------------------------------------

    def _publish(self, block: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        x, y, z = block
        duration = self.block_size / self.sample_rate_hz
        payload = json.dumps(
            {
                "motor_id": self.motor_id,
                "ts": round(self.clock.wall() - duration, 6),  # time of the first sample
                "x": _rounded(x),
                "y": _rounded(y),
                "z": _rounded(z),
            },
            separators=(",", ":"),
        )
        if not self._mqtt_connected.is_set():
            self.unsent += 1
            return
        info = self._client.publish(self.topic, payload, qos=0)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.published += 1
        else:
            self.unsent += 1

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        if not getattr(reason_code, "is_failure", False):
            self._mqtt_connected.set()
            log.info("simulated sensor: connected to %s:%s", self.mqtt_host, self.mqtt_port)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        self._mqtt_connected.clear()


def _rounded(values: object) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), DECIMALS)]


def _fault_items(faults: FaultSpec) -> list[tuple[str, float]]:
    if isinstance(faults, Mapping):
        return [(str(k), float(v)) for k, v in faults.items()]
    return [(k, 1.0) for k in faults]


def parse_fault(text: str) -> tuple[str, float]:
    """'bearing' -> ('bearing', 1.0); 'bearing:0.4' -> ('bearing', 0.4). ValueError otherwise."""
    kind, _, sev = text.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    if not sev:
        return kind, 1.0
    try:
        severity = float(sev)
    except ValueError:
        severity = -1.0
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"fault {text!r}: severity must be a number from 0 to 1")
    return kind, severity


def run_sim_cli(
    port: int, mqtt_host: str | None, mqtt_port: int, faults: list[str], seed: int
) -> int:
    """`floorconsole sim`: run the plant until Ctrl-C (or SIGTERM). Returns the exit status.

    mqtt_host None: use the broker already answering MQTT on 127.0.0.1:mqtt_port, or start a
    local one there. Faults are KIND or KIND:SEVERITY.
    """
    try:
        fault_map = dict(parse_fault(f) for f in faults)
    except ValueError as e:
        print(f"floorconsole sim: {e}", file=sys.stderr)
        return 2
    broker = None
    host = mqtt_host
    if host is None:
        host = "127.0.0.1"
        if not mqtt_ready(host, mqtt_port):
            try:
                broker = start_demo_broker(mqtt_port)
            except BrokerError as e:
                print(
                    f"floorconsole sim: cannot start a local MQTT broker on port {mqtt_port}: "
                    f"{e}; give --mqtt-host/--mqtt-port of a running one",
                    file=sys.stderr,
                )
                return 1
    sim = SimPlant(
        modbus_port=port, mqtt_host=host, mqtt_port=mqtt_port, seed=seed, faults=fault_map
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sim.start()
        except RuntimeError as e:
            print(f"floorconsole sim: {e}", file=sys.stderr)
            return 1
        active = ", ".join(f"{k}:{v:g}" for k, v in fault_map.items()) or "none"
        where = "local broker " if broker is not None else ""
        print(
            f"floorconsole sim: drive1 Modbus TCP on 127.0.0.1:{sim.modbus_port}, vibration "
            f"to {where}mqtt://{host}:{mqtt_port}/{sim.topic}, seed {seed}, faults: {active}"
            f" (Ctrl-C stops)",
            flush=True,
        )
        while not done.wait(0.5):
            pass
        return 0
    finally:
        sim.stop()
        if broker is not None:
            broker.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
