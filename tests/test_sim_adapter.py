"""The simulated plant on the network, against a real pymodbus client and a mosquitto broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from floorconsole.adapters.broker import free_port
from floorconsole.adapters.sim import VIBRATION_TOPIC, SimPlant, parse_fault, run_sim_cli
from floorconsole.core.config import load_plant
from floorconsole.core.plantsim import DRIVE_POINTS
from floorconsole.core.registers import decode_point

ROOT = Path(__file__).resolve().parent.parent
DEMO = load_plant(ROOT / "fixtures" / "plants" / "demo.toml")
UNIT = DEMO.devices[0].unit_id


class Subscriber:
    """Collects vibration messages with their monotonic arrival times."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[float, dict]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(VIBRATION_TOPIC)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (time.monotonic(), json.loads(m.payload))
        )
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscription not acknowledged"

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sub(mosquitto) -> Iterator[Subscriber]:  # type: ignore[no-untyped-def]
    s = Subscriber(mosquitto.host, mosquitto.port)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def plant(mosquitto) -> Iterator[SimPlant]:  # type: ignore[no-untyped-def]
    sim = SimPlant(modbus_port=0, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, seed=3)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def client(plant: SimPlant) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=0.5, retries=0)
    assert c.connect()
    try:
        yield c
    finally:
        c.close()


def read_drive(c: ModbusTcpClient) -> dict[str, float | bool]:
    """Every drive signal of the demo plant, read and decoded the way the engine does."""
    hr = c.read_holding_registers(0, count=6, device_id=UNIT)
    ir = c.read_input_registers(0, count=2, device_id=UNIT)
    co = c.read_coils(0, count=11, device_id=UNIT)
    assert not (hr.isError() or ir.isError() or co.isError())
    tables = {"hr": hr.registers, "ir": ir.registers, "co": co.bits}
    out = {}
    for s in DEMO.signals_of_device("drive1"):
        p = s.source
        out[s.id] = decode_point(p, tables[p.table][p.address : p.address + p.width])  # type: ignore[union-attr]
    return out


def fails(c: ModbusTcpClient) -> bool:
    """True when a read gets no usable answer (refused, reset, timed out, or an exception)."""
    try:
        return c.read_holding_registers(0, count=2, device_id=UNIT).isError()
    except ModbusException:
        return True


def eventually(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def test_registers_decode_to_a_plausible_running_motor(
    plant: SimPlant, client: ModbusTcpClient
) -> None:
    v = read_drive(client)
    assert set(v) == set(DRIVE_POINTS)
    assert 1480 <= v["motor1.speed"] <= 1495
    assert 30.0 <= v["motor1.load"] <= 90.0
    assert v["motor1.current"] == pytest.approx(6.0 + 0.2 * v["motor1.load"], abs=0.5)
    assert 35.0 < v["motor1.temp"] < 95.0
    assert v["motor1.run_hours"] == pytest.approx(12_480.0, abs=0.01)
    assert v["motor1.running"] is True and v["motor1.trip"] is False

    first = v["motor1.current"]
    assert eventually(lambda: read_drive(client)["motor1.current"] != first, 2.0), (
        "the image refreshes (~10 Hz)"
    )
    assert eventually(lambda: read_drive(client)["motor1.run_hours"] > 12_480.0, 6.0, 0.5), (
        "run hours count up (0.001 h = 3.6 s)"
    )


def test_vibration_blocks_arrive_at_two_hertz(plant: SimPlant, sub: Subscriber) -> None:
    msgs = sub.wait_for(1, 3.0)
    assert msgs, "no vibration message within 3 s"
    start = len(sub.messages)
    time.sleep(3.0)
    arrivals = [t for t, _ in sub.messages[start:]]
    assert 5 <= len(arrivals) <= 7, f"{len(arrivals)} messages in 3 s"
    gaps = np.diff(arrivals)
    assert np.median(gaps) == pytest.approx(0.5, abs=0.08)
    for _, m in sub.messages:
        assert set(m) == {"motor_id", "ts", "x", "y", "z"}
        assert m["motor_id"] == "motor-01"
        assert abs(m["ts"] - time.time()) < 5.0
        for axis in ("x", "y", "z"):
            values = m[axis]
            assert len(values) == 256 and all(isinstance(x, float) for x in values)
            assert all(round(x, 5) == x for x in values)
            assert 0.003 < float(np.std(values)) < 0.1, "a running healthy motor, in g"
    ts = [m["ts"] for _, m in sub.messages]
    assert ts == sorted(ts)


def test_trip_coil_stops_the_motor_and_reset_restarts_it(
    plant: SimPlant, sub: Subscriber, client: ModbusTcpClient
) -> None:
    assert not client.write_coil(10, True, device_id=UNIT).isError()
    # the write reads back at once: the plant must not overwrite it with a stale image
    assert client.read_coils(10, count=1, device_id=UNIT).bits[0] is True
    assert eventually(lambda: read_drive(client)["motor1.running"] is False, 1.0)
    assert eventually(lambda: read_drive(client)["motor1.current"] == 0.0, 1.0)
    speeds = []
    assert eventually(
        lambda: speeds.append(read_drive(client)["motor1.speed"]) or speeds[-1] == 0, 8.0, 0.25
    ), "coasts to rest within a few seconds"
    assert speeds[0] > 0 and all(b <= a for a, b in zip(speeds, speeds[1:], strict=False))
    v = read_drive(client)
    assert v["motor1.trip"] is True and v["motor1.load"] == 0.0

    n = len(sub.messages)
    last = sub.wait_for(n + 1, 2.0)[-1]
    assert np.std(last["x"]) < 0.004, "standstill: sensor noise only"

    assert not client.write_coil(10, False, device_id=UNIT).isError()
    assert eventually(lambda: read_drive(client)["motor1.running"] is True, 1.0)
    assert eventually(lambda: read_drive(client)["motor1.speed"] > 300, 2.0), "soft start"


def test_run_coil_is_the_run_command(plant: SimPlant, client: ModbusTcpClient) -> None:
    assert not client.write_coil(0, False, device_id=UNIT).isError()
    assert client.read_coils(0, count=1, device_id=UNIT).bits[0] is False
    time.sleep(1.5)
    v = read_drive(client)
    assert 0 < v["motor1.speed"] < 1100, "the drive ramps down (about 4 s), it does not coast"
    assert v["motor1.trip"] is False and v["motor1.running"] is False
    low = v["motor1.speed"]
    assert not client.write_coil(0, True, device_id=UNIT).isError()
    assert eventually(lambda: read_drive(client)["motor1.speed"] > low + 200, 2.0)
    assert read_drive(client)["motor1.running"] is True


def test_dropout_takes_the_drive_offline_and_clear_brings_it_back(
    plant: SimPlant, client: ModbusTcpClient
) -> None:
    port = plant.modbus_port
    plant.inject("dropout")
    assert "dropout" in plant.active_faults()

    assert eventually(lambda: fails(client), 2.0)
    time.sleep(0.3)
    assert fails(client), "stays down while the fault is active"
    plant.clear("dropout")
    assert eventually(lambda: not fails(client), 3.0, 0.2)
    assert plant.modbus_port == port
    assert 1480 <= read_drive(client)["motor1.speed"] <= 1495, "the plant ran on meanwhile"


def test_silent_dropout_times_out(mosquitto) -> None:  # type: ignore[no-untyped-def]
    with SimPlant(
        modbus_port=0,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        dropout="silent",
        faults=["dropout"],
    ) as sim:
        c = ModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=0.3, retries=0)
        assert c.connect(), "a silent device still accepts the connection"
        t0 = time.monotonic()
        with pytest.raises(ModbusException):
            c.read_holding_registers(0, count=2, device_id=UNIT)
        assert time.monotonic() - t0 >= 0.25
        sim.clear("dropout")
        assert eventually(lambda: not fails(c), 2.0)
        c.close()


def test_injected_fault_shows_in_the_published_vibration(plant: SimPlant, sub: Subscriber) -> None:
    before = sub.wait_for(2, 3.0)[-1]
    plant.inject("imbalance", 1.0)
    assert plant.active_faults() == ["imbalance"]
    n = len(sub.messages)
    after = sub.wait_for(n + 2, 3.0)[-1]
    assert np.std(after["x"]) > 3 * np.std(before["x"])
    plant.clear("imbalance")
    assert plant.active_faults() == []
    with pytest.raises(ValueError, match="not a fault"):
        plant.inject("rust")


def test_faults_given_at_construction(mosquitto, sub: Subscriber) -> None:  # type: ignore[no-untyped-def]
    with SimPlant(
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        faults={"stuck_sensor": 1.0, "bearing": 0.5},
    ) as sim:
        assert sim.active_faults() == ["bearing", "stuck_sensor"]
        msgs = sub.wait_for(2, 3.0)
        assert msgs and all(np.ptp(m["x"]) == 0.0 for m in msgs), "a stuck sensor is flat"


def test_parse_fault() -> None:
    assert parse_fault("bearing") == ("bearing", 1.0)
    assert parse_fault("sensor_drift:0.25") == ("sensor_drift", 0.25)
    with pytest.raises(ValueError, match="unknown fault 'rust'"):
        parse_fault("rust")
    with pytest.raises(ValueError, match="0 to 1"):
        parse_fault("bearing:2")


def test_cli_rejects_an_unknown_fault(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sim_cli(port=0, mqtt_host="127.0.0.1", mqtt_port=1, faults=["rust"], seed=1) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown fault 'rust'" in err


def test_cli_runs_until_interrupted(mosquitto, sub: Subscriber) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    code = (
        "import sys; from floorconsole.adapters.sim import run_sim_cli; "
        f"sys.exit(run_sim_cli({port}, {mosquitto.host!r}, {mosquitto.port}, "
        "['misalignment:0.5'], 7))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"127.0.0.1:{port}" in line and f"{mosquitto.port}" in line
        assert "misalignment:0.5" in line
        assert sub.wait_for(1, 3.0), "the CLI's plant publishes"
        c = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
        assert c.connect()
        assert 1480 <= read_drive(c)["motor1.speed"] <= 1495
        c.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_reports_a_busy_port(mosquitto, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    with SimPlant(mqtt_host=mosquitto.host, mqtt_port=mosquitto.port) as first:
        code = run_sim_cli(
            port=first.modbus_port,
            mqtt_host=mosquitto.host,
            mqtt_port=mosquitto.port,
            faults=[],
            seed=1,
        )
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(first.modbus_port) in err
