"""Control against real devices: a pymodbus server and a real DevicePoller, mosquitto for publish.

The chain under test is the engine's: DevicePoller -> Hub -> Control.on_samples -> rule ->
action task -> DevicePoller.write (under the poller's lock) -> read-back.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from floorconsole.adapters.alarm_journal import FILE_NAME, AlarmJournal
from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.modbus import DevicePoller
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.adapters.mqtt import BrokerClient
from floorconsole.core.alarms import AlarmState, AlarmTable
from floorconsole.core.clock import SystemClock
from floorconsole.core.config import (
    BrokerConfig,
    DeviceConfig,
    EdgeConfig,
    ModbusPoint,
    MqttPoint,
    PlantConfig,
    SignalConfig,
)
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.rules import ActionRecord, ControlConfig, parse_rules
from floorconsole.core.sample import Sample
from floorconsole.engine.control import READ_ONLY, Control
from floorconsole.engine.hub import Hub

INPUT = ModbusPoint("drive1", "hr", 0, "uint16")
COIL = ModbusPoint("drive1", "co", 10, "bool")
POLL_S = 0.1


async def until(pred: Callable[[], bool], timeout: float = 3.0, what: str = "") -> float:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)
    return time.monotonic()


class Rig:
    """One device (input hr:0, output co:10), its poller, a hub, the control and its journal."""

    def __init__(
        self,
        server: ModbusDeviceServer,
        tmp_path: Path,
        *,
        enabled: bool = True,
        poll: bool = True,
        **rule: object,
    ) -> None:
        self.server = server
        self.clock = SystemClock()
        self.device = DeviceConfig(
            id="drive1",
            protocol="modbus-tcp",
            host="127.0.0.1",
            port=server.port,
            poll_s=POLL_S,
            timeout_s=0.3,
            retries=0,
        )
        signal = SignalConfig(id="motor1.current", source=INPUT, range=(0.0, 100.0))
        self.plant = PlantConfig(edge=EdgeConfig(id="t"), devices=(self.device,), signals=(signal,))
        self.hub = Hub(self.plant, self.clock)
        self.stats = LinkStats("drive1", "device", f"127.0.0.1:{server.port}")
        self.poller = DevicePoller(self.device, [signal], self.hub, self.clock, self.stats)
        raw = {
            "id": "trip",
            "signal": "motor1.current",
            "op": ">",
            "threshold": 50,
            "actions": [
                {"write": "drive1", "address": "co:10", "on": True, "off": False},
                {"alarm": "high", "message": "Motor 1 overload"},
            ],
        }
        raw.update(rule)
        rules, problems = parse_rules(
            [raw], signals={"motor1.current": (0.0, 100.0)}, devices={"drive1"}, brokers={"local"}
        )
        assert problems == []
        self.rule = rules[0]
        self.alarms = AlarmTable(self.clock)
        self.journal = AlarmJournal(tmp_path / FILE_NAME)
        self.alarms.on_entry(self.journal.append)  # once per alarm table, as the engine does
        self.control = Control(
            rules,
            ControlConfig(enabled=enabled),
            self.hub.latest.get,
            {"drive1": self.poller.write},
            None,
            self.alarms,
            self.journal,
            self.clock,
        )
        self.hub.add_listener(self.control.on_samples)
        self._poll = poll
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Rig:
        if self._poll:
            self._tasks.append(asyncio.create_task(self.poller.run()))
            await until(lambda: self.stats.state is LinkState.UP, what="device up")
        else:
            await self.poller.poll_once()
        self._tasks.append(asyncio.create_task(self._ticker()))
        return self

    async def _ticker(self) -> None:
        while True:
            self.control.tick()
            self.control.update_links([self.stats])
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.control.close()
        await self.poller.close()
        self.journal.close()

    def feed(self, value: float) -> None:
        """A sample straight into the hub, as a source delivers it."""
        now = self.clock.mono()
        self.hub.ingest(
            [
                Sample(
                    "motor1.current",
                    float(value),
                    Quality.GOOD,
                    Reason.NONE,
                    self.clock.wall(),
                    now,
                )
            ]
        )

    def coil(self) -> bool:
        return bool(self.server.get("co", 10)[0])

    def last_write(self) -> ActionRecord:
        rec = self.control.last_results.get(("trip", 0))
        assert rec is not None, "the write action has not run"
        return rec

    def has_written(self) -> bool:
        return ("trip", 0) in self.control.last_results


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        await r.stop()


async def rig(rigs: list[Rig], server: ModbusDeviceServer, tmp_path: Path, **kw: object) -> Rig:
    r = Rig(server, tmp_path, **kw)  # type: ignore[arg-type]
    rigs.append(r)
    return await r.start()


# -- DevicePoller.write ----------------------------------------------------------------------


async def test_write_reads_back_and_refusals_are_not_retried(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, poll=False)
    res = await r.poller.write(COIL, True)
    assert (res.ok, res.attempts, res.read_back, res.mismatches) == (True, 1, True, 0)
    assert modbus_server.get("co", 10) == [True]
    hr = ModbusPoint("drive1", "hr", 20, "float32", scale=0.1)
    res = await r.poller.write(hr, 123.4)
    assert res.ok and res.read_back == pytest.approx(123.4, abs=1e-4)
    assert modbus_server.get_value(hr) == pytest.approx(123.4, abs=1e-4)
    modbus_server.illegal.add(("co", 20))
    writes = modbus_server.writes["co"]
    res = await r.poller.write(ModbusPoint("drive1", "co", 20, "bool"), True)
    assert not res.ok and res.attempts == 1
    assert "exception 2 ILLEGAL DATA ADDRESS writing co:20" in res.error
    assert modbus_server.writes["co"] == writes
    res = await r.poller.write(ModbusPoint("drive1", "ir", 0, "uint16"), 1)
    assert not res.ok and res.attempts == 0 and "read-only" in res.error


async def test_a_lost_response_is_read_back_before_any_second_write(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, poll=False)
    undo = {"first": True, "revert": False}

    def slow_answer(table: str, address: int, values: list[int] | list[bool]) -> None:
        # The device applies the write but its answer comes after the client's timeout
        # (0.3 s): the response is lost, the write is not.
        if undo["first"]:
            undo["first"] = False
            if undo["revert"]:
                modbus_server.set(table, address, [not v for v in values])  # type: ignore[misc]
            time.sleep(0.45)

    modbus_server.on_write = slow_answer
    res = await r.poller.write(COIL, True)
    assert res.ok and res.attempts == 1, res
    assert "no response within 300 ms" in res.error and "read-back shows it applied" in res.error
    assert modbus_server.writes["co"] == 1  # not written a second time

    # Lost and not applied: the read-back shows it, and only then is it written again.
    undo.update(first=True, revert=True)
    res = await r.poller.write(COIL, False)
    assert res.ok and res.attempts == 2 and res.read_back is False, res
    assert modbus_server.writes["co"] == 3

    # No answer at all, read-back included: not known, and not written blindly again.
    modbus_server.on_write = None
    modbus_server.silent = True
    res = await r.poller.write(COIL, True)
    assert not res.ok and res.attempts == 1
    assert "not known whether co:10 holds the value" in res.error
    modbus_server.silent = False
    assert modbus_server.writes["co"] == 3


# -- rules through the engine's chain --------------------------------------------------------


async def test_crossing_longer_than_on_delay_writes_the_coil_and_it_reads_back_true(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, on_delay="300ms", off_delay="200ms")
    modbus_server.set_value(INPUT, 70)
    t_cross = time.monotonic()
    t_on = await until(r.coil, what="coil written")
    assert 0.3 <= t_on - t_cross <= 0.3 + 2 * POLL_S + 0.15
    await until(r.has_written, what="write result")
    rec = r.last_write()
    assert rec.ok and rec.text.startswith("ok: read back true") and rec.attempts == 1
    alarm = r.alarms.get("rule:trip")
    assert alarm.state is AlarmState.UNACK and "motor1.current 70 > 50" in alarm.text
    status = r.control.status()
    [rule] = status["rules"]
    assert rule["active"] and rule["value"] == 70 and rule["last_activation"] is not None
    assert rule["actions"][0]["last"]["ok"] is True
    assert status["banner"] == ["rule:trip"] and status["mode"] == "control"

    modbus_server.set_value(INPUT, 10)
    await until(lambda: not r.coil(), what="coil released")
    await until(lambda: r.alarms.get("rule:trip").state is AlarmState.RTN_UNACK)
    r.control.acknowledge("all", "op1")
    assert r.alarms.get("rule:trip").state is AlarmState.NORMAL
    await r.control.idle()
    assert r.journal.flush()
    assert [(e.from_state, e.to_state) for e in r.journal.query(alarm_id="rule:trip")] == [
        (AlarmState.NORMAL, AlarmState.UNACK),
        (AlarmState.UNACK, AlarmState.RTN_UNACK),
        (AlarmState.RTN_UNACK, AlarmState.NORMAL),
    ]
    assert [a.ok for a in r.journal.actions(rule="trip") if a.action == "write"] == [True, True]


async def test_crossing_shorter_than_on_delay_writes_nothing(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, on_delay="600ms")
    for _ in range(3):
        modbus_server.set_value(INPUT, 70)
        await until(lambda: r.hub.latest["motor1.current"].value == 70)
        await asyncio.sleep(0.25)
        assert r.control.status()["rules"][0]["pending"] == "activate"
        modbus_server.set_value(INPUT, 30)
        await until(lambda: r.hub.latest["motor1.current"].value == 30)
    await asyncio.sleep(0.8)
    assert modbus_server.writes["co"] == 0 and not r.coil()
    assert r.control.last_results == {}
    assert r.alarms.get("rule:trip").state is AlarmState.NORMAL


async def test_a_device_that_ignores_writes_is_caught_every_time(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, poll=False)
    # Seed 5 ignores 18 of the 257 writes sent, one of them a retry (so one write fails).
    rng = random.Random(5)
    kept = {"value": False}
    ignored = []
    lock = threading.Lock()

    def flaky(table: str, address: int, values: list[int] | list[bool]) -> None:
        with lock:
            if rng.random() < 0.05:  # silently put back what was there: the write is lost
                ignored.append(values[0])
                modbus_server.set(table, address, kept["value"])
            else:
                kept["value"] = bool(values[0])

    modbus_server.on_write = flaky
    alarm_id = "write_failed:drive1 co:10"
    n = 240
    results = []
    for i in range(n):
        r.feed(70 if i % 2 == 0 else 30)
        await r.control.idle()
        rec = r.last_write()
        results.append(rec)
        if rec.ok:
            assert r.coil() == (i % 2 == 0)
        else:  # ignored twice: reported failed, and the alarm stays active
            assert "read back" in rec.text and rec.attempts == 2
            assert r.alarms.get(alarm_id).active
    assert r.journal.flush()
    entries = r.journal.query(alarm_id=alarm_id)
    activations = sum(1 for e in entries if e.to_state is AlarmState.UNACK)
    retried = [x for x in results if x.attempts == 2]
    failed = [x for x in results if not x.ok]
    # Every ignored write was seen on its read-back: a first write ignored means a retry,
    # a retry ignored too means a failed write.
    assert len(ignored) == len(retried) + len(failed)
    assert modbus_server.writes["co"] == n + len(retried)
    # ...and every one of them raised the write alarm (each time, not once).
    assert activations == len(retried) > 0 and len(failed) == 1
    assert all("read back" in x.text for x in retried)
    print(f"{n} writes, {len(ignored)} ignored: {len(retried)} retried, {len(failed)} failed")


async def test_read_only_mode_never_writes(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path, enabled=False)
    for i in range(20):
        r.feed(70 if i % 2 == 0 else 30)
        await r.control.idle()
    modbus_server.set_value(INPUT, 90)  # and through the poller
    await until(lambda: r.control.evaluators["trip"].active)
    await asyncio.sleep(3 * POLL_S)
    await r.control.idle()
    assert sum(modbus_server.writes.values()) == 0
    assert r.last_write().text == READ_ONLY and not r.last_write().ok
    assert r.control.status()["mode"] == "read-only"
    # The alarm still tells the operator: it drives no output.
    assert r.alarms.get("rule:trip").active


@pytest.mark.parametrize("policy", ["activate", "release", "hold"])
async def test_bad_input_quality_applies_the_policy_within_one_poll(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig], policy: str
) -> None:
    # "activate" starts from normal with a 5 s on-delay it must not wait for; "release" and
    # "hold" start from active with a 10 s off-delay that "release" must not wait for.
    if policy == "activate":
        r = await rig(rigs, modbus_server, tmp_path, on_delay="5s", on_bad_quality=policy)
        modbus_server.set_value(INPUT, 30)
        await until(lambda: r.hub.latest["motor1.current"].value == 30)
    else:
        r = await rig(rigs, modbus_server, tmp_path, off_delay="10s", on_bad_quality=policy)
        modbus_server.set_value(INPUT, 70)
        await until(r.coil, what="active first")
    await r.control.idle()
    writes = modbus_server.writes["co"]
    modbus_server.exceptions[("hr", 0)] = 4  # SERVER DEVICE FAILURE: the input goes BAD
    t_bad = time.monotonic()
    await until(lambda: r.hub.latest["motor1.current"].quality is Quality.BAD)
    ev = r.control.evaluators["trip"]
    if policy == "hold":
        await asyncio.sleep(5 * POLL_S)
        await r.control.idle()
        assert r.coil() and ev.active and modbus_server.writes["co"] == writes
        return
    want = policy == "activate"
    t_done = await until(
        lambda: r.coil() == want and modbus_server.writes["co"] > writes, what=f"policy {policy}"
    )
    assert t_done - t_bad <= POLL_S + 0.15, "not within one poll"
    await r.control.idle()
    assert r.last_write().ok
    assert "input BAD device failure: exception 4" in ev.last_reason
    assert ev.last_reason.endswith(f"policy {policy}")


async def test_quality_lost_to_a_silent_device_reaches_the_rule_through_tick(
    modbus_server_factory: Callable[..., ModbusDeviceServer], tmp_path: Path, rigs: list[Rig]
) -> None:
    # The input and the output on different devices: the input device stops answering, and
    # its last value goes UNCERTAIN (last usable) as a quality-only change, which the hub
    # does not pass to listeners; the control's tick picks it up.
    sensor = modbus_server_factory(name="sensor")
    actuator = modbus_server_factory(name="actuator")
    r = await rig(rigs, sensor, tmp_path, on_bad_quality="activate", on_delay="5s")
    out_dev = DeviceConfig(
        id="drive1",
        protocol="modbus-tcp",
        host="127.0.0.1",
        port=actuator.port,
        poll_s=POLL_S,
        timeout_s=0.3,
        retries=0,
    )
    out = DevicePoller(
        out_dev, [], r.hub, r.clock, LinkStats("drive1", "device", f"127.0.0.1:{actuator.port}")
    )
    await out.poll_once()  # connects; a device with no signals to read is a write target
    r.control.writers["drive1"] = out.write
    try:
        sensor.set_value(INPUT, 30)
        await until(lambda: r.hub.latest["motor1.current"].value == 30)
        sensor.silent = True
        t0 = time.monotonic()
        await until(lambda: actuator.get("co", 10) == [True], what="forced activation")
        assert time.monotonic() - t0 <= 0.3 + POLL_S + 0.2  # timeout + one poll + one tick
        ev = r.control.evaluators["trip"]
        # Forced by the first degraded value (a timeout: last usable), from the hub's table.
        assert "input UNCERTAIN last usable" in ev.last_reason
        assert ev.last_reason.endswith("policy activate")
        await r.control.idle()
        assert r.last_write().ok and sensor.writes["co"] == 0
    finally:
        sensor.silent = False
        await out.close()


async def test_a_device_that_is_down_gets_no_queued_write(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path)
    modbus_server.stop()
    await until(lambda: r.stats.state is LinkState.DOWN, what="device down")
    modbus_server.set_value(INPUT, 70)  # what the device will say when it is back
    r.feed(70)
    await r.control.idle()
    rec = r.last_write()
    assert not rec.ok and rec.text.startswith("not applied: device down")
    assert rec.attempts == 0
    write_alarm = r.alarms.get("write_failed:drive1 co:10")
    assert write_alarm.state is AlarmState.UNACK and "not applied" in write_alarm.text
    await until(lambda: "device_down:drive1" in r.alarms.alarms, what="device down alarm")
    assert r.alarms.get("device_down:drive1").state is AlarmState.UNACK
    assert r.control.status()["banner"][:1] in (
        ["device_down:drive1"],
        ["write_failed:drive1 co:10"],
    )
    modbus_server.start()
    await until(lambda: r.stats.state is LinkState.UP, timeout=8, what="device back")
    await until(lambda: r.hub.latest["motor1.current"].quality is Quality.GOOD)
    await asyncio.sleep(3 * POLL_S)
    await r.control.idle()
    # Nothing was kept to be written later: the activation stays "not applied" (and alarmed).
    assert sum(modbus_server.writes.values()) == 0 and not r.coil()
    assert r.last_write() is rec
    await until(lambda: r.alarms.get("device_down:drive1").state is AlarmState.RTN_UNACK)


async def test_publish_action_delivers_the_templated_payload(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    clock = SystemClock()
    broker = BrokerConfig(id="local", host=mosquitto.host, port=mosquitto.port, keepalive_s=5)
    dummy = SignalConfig(id="line.speed", source=MqttPoint("local", "plant/line/speed", ()))
    stats = LinkStats("local", "broker", f"{mosquitto.host}:{mosquitto.port}")
    plant = PlantConfig(edge=EdgeConfig(id="t"), brokers=(broker,), signals=(dummy,))
    hub = Hub(plant, clock)
    client = BrokerClient(broker, [dummy], hub, loop, clock, stats)
    received: list[tuple[str, bytes | bytearray]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-alarm-listener")
    subscribed = threading.Event()
    sub.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, *a: c.subscribe("plant3/line2/alarms", 1)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    journal = AlarmJournal(tmp_path / FILE_NAME)
    try:
        assert client.start()
        await until(lambda: stats.state is LinkState.UP and subscribed.is_set(), 5)
        rules, problems = parse_rules(
            [
                {
                    "id": "trip",
                    "signal": "line.speed",
                    "op": "<",
                    "threshold": 5,
                    "actions": [
                        {
                            "publish": "local",
                            "topic": "plant3/line2/alarms",
                            "qos": 1,
                            "payload": '{{"rule":"{rule}","signal":"{signal}","value":{value},'
                            '"threshold":{threshold},"state":"{state}",'
                            '"time":"{time}"}}',
                        }
                    ],
                }
            ],
            signals={"line.speed": None},
            devices=set(),
            brokers={"local"},
        )
        assert problems == []

        def publish(b: str, topic: str, payload: str, qos: int) -> object:
            assert b == "local"
            return client.publish(topic, payload, qos)

        control = Control(
            rules, ControlConfig(), hub.latest.get, {}, publish, AlarmTable(clock), journal, clock
        )
        hub.add_listener(control.on_samples)
        hub.ingest(
            [Sample("line.speed", 2.5, Quality.GOOD, Reason.NONE, clock.wall(), clock.mono())]
        )
        await control.idle()
        await until(lambda: len(received) == 1, 5, "payload delivered")
        topic, payload = received[0]
        msg = json.loads(payload)
        assert topic == "plant3/line2/alarms"
        assert (msg["rule"], msg["signal"], msg["value"], msg["threshold"], msg["state"]) == (
            "trip",
            "line.speed",
            2.5,
            5,
            "active",
        )
        assert msg["time"].endswith("Z")
        assert control.last_results[("trip", 0)].ok
        hub.ingest(
            [Sample("line.speed", 9.0, Quality.GOOD, Reason.NONE, clock.wall(), clock.mono())]
        )
        await control.idle()
        await until(lambda: len(received) == 2, 5, "release payload delivered")
        assert json.loads(received[1][1])["state"] == "normal"
    finally:
        sub.loop_stop()
        sub.disconnect()
        client.stop()
        journal.close()


async def test_a_new_configuration_adopts_the_running_rule_state(
    modbus_server: ModbusDeviceServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = await rig(rigs, modbus_server, tmp_path)
    modbus_server.set_value(INPUT, 70)
    await until(r.coil, what="active")
    await r.control.idle()
    # The threshold is raised past the value: the new Control releases at once, writing
    # its off value, instead of starting inactive and leaving the coil on for good.
    rules, problems = parse_rules(
        [
            {
                "id": "trip",
                "signal": "motor1.current",
                "op": ">",
                "threshold": 80,
                "actions": [{"write": "drive1", "address": "co:10", "on": True, "off": False}],
            }
        ],
        signals={"motor1.current": (0.0, 100.0)},
        devices={"drive1"},
        brokers=set(),
    )
    assert problems == []
    new = Control(
        rules,
        ControlConfig(enabled=True),
        r.hub.latest.get,
        {"drive1": r.poller.write},
        None,
        r.alarms,
        r.journal,
        r.clock,
    )
    old, r.control = r.control, new  # (the engine gives the new one a hub of its own)
    new.adopt(old)
    await old.close()
    await new.idle()
    assert not r.coil() and not new.evaluators["trip"].active
    rec = new.last_results[("trip", 0)]
    assert rec.ok and rec.transition == "release"
    assert "motor1.current 70 back past 80" in new.evaluators["trip"].last_reason
    # The new rule raises no alarm: the old rule's alarm returned to normal, journaled once.
    assert r.alarms.get("rule:trip").state is AlarmState.RTN_UNACK
    assert r.journal.flush()
    assert [e.to_state for e in r.journal.query(alarm_id="rule:trip")] == [
        AlarmState.UNACK,
        AlarmState.RTN_UNACK,
    ]
