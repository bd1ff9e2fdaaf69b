"""The engine end to end: a real pymodbus server and a real mosquitto, through the hub and the
historian to frames, with no console open."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.console import Frame, LinkView, SignalView
from floorconsole.core.config import PlantConfig, parse_plant
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.lock import EngineAlreadyRunning
from floorconsole.engine.runtime import Engine


def plant_for(modbus_port: int, mqtt_port: int, data_dir: Path) -> PlantConfig:
    return parse_plant(f"""
[edge]
id = "test-edge"
site = "Test bench"
data_dir = "{data_dir}"

[[brokers]]
id = "local"
host = "127.0.0.1"
port = {mqtt_port}

[[devices]]
id = "drive1"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {modbus_port}
poll = "100ms"
timeout = "200ms"
retries = 0

[[signals]]
id = "motor1.current"
device = "drive1"
address = "hr:0"
type = "float32"
unit = "A"

[[signals]]
id = "motor1.temp"
device = "drive1"
address = "hr:2"
type = "int16"
scale = 0.1

[[signals]]
id = "motor1.running"
device = "drive1"
address = "co:0"

[[signals]]
id = "motor1.vib"
broker = "local"
topic = "plant/vib"
json = "x"
kind = "waveform"
stale_after = "1s"

[[signals]]
id = "motor1.ambient"
broker = "local"
topic = "plant/env"
json = "t.ambient"
""")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sig(frame: Frame, sid: str) -> SignalView:
    return next(s for s in frame.signals if s.id == sid)


@pytest.fixture
def engine(
    modbus_server: ModbusDeviceServer, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[Engine]:
    from floorconsole.core.config import ModbusPoint

    modbus_server.set_value(ModbusPoint("drive1", "hr", 0, "float32"), 12.5)
    modbus_server.set("hr", 2, [612])
    modbus_server.set("co", 0, [True])
    plant = plant_for(modbus_server.port, mosquitto.port, tmp_path / "data")
    e = open_engine(
        data_dir=plant.edge.data_dir, base_dir=tmp_path, user="test", plant_raw=plant.raw
    )
    e.start_background()
    try:
        yield e
    finally:
        e.stop()


def publish(port: int, topic: str, payload: object) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_values_reach_frames_and_historian(engine: Engine, mosquitto: MosquittoBroker) -> None:
    api = engine.api
    wait_for(lambda: sig(api.frame(), "motor1.current").quality == "GOOD", what="modbus GOOD")
    f = api.frame()
    assert sig(f, "motor1.current").value == pytest.approx(12.5)
    assert sig(f, "motor1.temp").value == pytest.approx(61.2)
    assert sig(f, "motor1.running").value is True
    assert sig(f, "motor1.vib").quality == "UNCERTAIN"  # nothing published yet: initial
    wait_for(
        lambda: next(ln for ln in api.frame().links if ln.id == "local").state == "up",
        what="broker up",
    )
    publish(mosquitto.port, "plant/vib", {"x": [0.1, -0.2, 0.3, -0.1]})
    publish(mosquitto.port, "plant/env", {"t": {"ambient": 21.5}})
    wait_for(lambda: sig(api.frame(), "motor1.ambient").quality == "GOOD", what="mqtt GOOD")
    f = api.frame()
    vib = sig(f, "motor1.vib")
    assert vib.kind == "waveform" and vib.waveform == (0.1, -0.2, 0.3, -0.1)
    assert sig(f, "motor1.ambient").value == pytest.approx(21.5)
    drive = next(ln for ln in f.links if ln.id == "drive1")
    assert drive.state == "up" and drive.last_rtt_ms is not None and drive.requests > 0
    # no new vibration block for 1 s: the waveform goes BAD (no communication), value kept
    wait_for(lambda: sig(api.frame(), "motor1.vib").quality == "BAD", timeout=3, what="stale")
    vib = sig(api.frame(), "motor1.vib")
    assert vib.reason == "no communication" and vib.waveform
    engine.historian.flush()
    now = time.time()
    h = api.history("motor1.current", now - 60, now + 1)
    assert len(h.points) >= 3 and all(p.value == pytest.approx(12.5) for p in h.points)
    assert h.quality_changes[0].quality == "GOOD"


def test_device_down_goes_uncertain_then_bad_and_back(
    engine: Engine, modbus_server: ModbusDeviceServer
) -> None:
    api = engine.api
    wait_for(lambda: sig(api.frame(), "motor1.current").quality == "GOOD", what="GOOD")
    modbus_server.stop()
    t0 = time.monotonic()
    wait_for(
        lambda: sig(api.frame(), "motor1.current").quality == "UNCERTAIN",
        timeout=2,
        what="UNCERTAIN",
    )
    wait_for(lambda: sig(api.frame(), "motor1.current").quality == "BAD", timeout=2, what="BAD")
    # two poll periods plus the timeout (0.4 s), plus one poll of slack for scheduling
    assert time.monotonic() - t0 < 0.4 + 0.3
    f = api.frame()
    cur = sig(f, "motor1.current")
    assert cur.reason == "no communication" and cur.value == pytest.approx(12.5)
    assert any(c.source == "drive1" and "down" in c.text for c in f.conditions)
    modbus_server.start()
    wait_for(
        lambda: sig(api.frame(), "motor1.current").quality == "GOOD",
        timeout=10,
        what="GOOD again after reconnect",
    )


def test_second_engine_on_same_data_dir_refuses(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(EngineAlreadyRunning, match=r"pid \d+"):
        open_engine(
            data_dir=engine.data_dir, base_dir=tmp_path, user="test", plant_raw=engine.plant.raw
        )


def test_second_start_from_cli_names_the_process(engine: Engine, tmp_path: Path) -> None:
    plant_file = tmp_path / "plant.toml"
    plant_file.write_text(f'[edge]\nid = "x"\ndata_dir = "{engine.data_dir}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant_file), "--headless"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert "already running" in r.stderr and "pid" in r.stderr and "Traceback" not in r.stderr


async def test_console_exports_what_the_historian_holds(engine: Engine, tmp_path: Path) -> None:
    """Open the detail of a live signal in the console, export the shown range to CSV, and
    compare it row by row with the historian."""
    import csv

    from floorconsole.adapters.historian import HistoryReader
    from floorconsole.core.history_format import csv_value, iso_utc_ms, quality_text
    from floorconsole.ui.app import make_app
    from floorconsole.ui.screens.detail import SignalDetailScreen

    api = engine.api
    wait_for(lambda: sig(api.frame(), "motor1.current").quality == "GOOD", what="GOOD")
    time.sleep(1.0)
    engine.historian.flush()
    out = tmp_path / "exports"
    out.mkdir()
    app = make_app(api, export_dir=out)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.push_screen(SignalDetailScreen("motor1.current"))
        await pilot.pause()
        await app.workers.wait_for_complete()
        screen = app.screen
        assert isinstance(screen, SignalDetailScreen)
        engine.historian.flush()
        await pilot.press("x")
        await app.workers.wait_for_complete()
        await pilot.pause()
        since, until = screen.shown_history.since, screen.shown_history.until  # type: ignore[union-attr]
    (path,) = out.glob("*.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["time", "signal", "value", "quality"]
    with HistoryReader(engine.historian.path) as reader:
        expected = [
            [
                iso_utc_ms(r.t),
                "motor1.current",
                csv_value(r.value),
                quality_text(r.quality, r.reason),
            ]
            for r in reader.query("motor1.current", since, until)
        ]
    assert len(expected) >= 5
    assert rows[1:] == expected


def test_a_polled_device_says_its_achieved_poll_rate_on_its_link(engine: Engine) -> None:
    """The links screen's device line: the polls a second it gets against its configured poll
    and how late the last started (issue 19: polls stretch and say so); a broker has none."""
    from floorconsole.ui.screens.links import link_text

    api = engine.api

    def drive() -> LinkView:
        return next(ln for ln in api.frame().links if ln.id == "drive1")

    wait_for(lambda: drive().poll_rate_hz is not None, what="a poll rate measured")
    ln = drive()
    assert ln.poll_s == pytest.approx(0.1)
    assert 2.0 <= (ln.poll_rate_hz or 0) <= 11.0, ln  # about 10/s; a loaded box gets fewer
    text = link_text(ln, {}).plain
    assert f"{ln.poll_rate_hz:.1f}/s of 10/s" in text and "ms late" in text, text
    broker = next(x for x in api.frame().links if x.id == "local")
    assert broker.poll_s is None and "polls" not in link_text(broker, {}).plain
