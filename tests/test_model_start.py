"""Nothing outside the plant file's text keeps the engine from running: a corrupt sidecar, a
corrupt ONNX file, a missing package and a NaN-output model, each at start and after a kill -9
restart. The engine (a real `floorconsole run --headless` process) runs; another signal is
recorded and forwarded to a real mosquitto; the model runs from the snapshot store's copy
where one exists, else its outputs are BAD with the reason; a model-failure alarm is raised."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.onnx_model import load_package
from floorconsole.console import Frame
from floorconsole.core.plantsim import MotorSim
from floorconsole.engine.attach import socket_path
from floorconsole.engine.remote import EngineUnreachable, RemoteAPI
from tests.support.history import stored_count
from tests.test_model import PKG, copy_package, onnx_graph, put_onnx, sim_blocks

SCORE = "motor1.anomaly_score"
MODEL = "motor1_anomaly"
GOOD_SHA = load_package(PKG).sha256[:12]

pytestmark = pytest.mark.slow


def write_plant(tmp: Path, port: int) -> Path:
    text = f"""
[edge]
id = "model-start"
data_dir = "{tmp / "data"}"

[[brokers]]
id = "local"
host = "127.0.0.1"
port = {port}

[[signals]]
id = "line.temp"
broker = "local"
topic = "t/temp"
json = "v"

[[signals]]
id = "motor1.vibration.x"
broker = "local"
topic = "t/vib"
json = "x"
kind = "waveform"
stale_after = "3s"

[[signals]]
id = "motor1.vibration.y"
broker = "local"
topic = "t/vib"
json = "y"
kind = "waveform"
stale_after = "3s"

[[signals]]
id = "motor1.vibration.z"
broker = "local"
topic = "t/vib"
json = "z"
kind = "waveform"
stale_after = "3s"

[[models]]
id = "{MODEL}"
package = "models/motor_anomaly"
inputs = {{ x = "motor1.vibration.x", y = "motor1.vibration.y", z = "motor1.vibration.z" }}
outputs = {{ score = "{SCORE}" }}
max_bad_windows = 2

[uplink]
broker = "local"
topic_prefix = "fc"
"""
    path = tmp / "plant.toml"
    path.write_text(text)
    return path


@contextmanager
def plant_traffic(port: int) -> Iterator[list[bytes]]:
    """Publish vibration blocks and a temperature at 5 Hz; collect what the uplink forwards."""
    forwarded: list[bytes] = []
    stop = threading.Event()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-plant")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-host")
    sub.on_message = lambda c, u, m: forwarded.append(m.payload)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("fc/#", 1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()

    def run() -> None:
        sim = MotorSim(3)
        k = 0
        while not stop.wait(0.2):
            x, y, z = sim_blocks(sim)
            pub.publish("t/vib", json.dumps({"x": x.tolist(), "y": y.tolist(), "z": z.tolist()}))
            pub.publish("t/temp", json.dumps({"v": 20.0 + k % 7}))
            k += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield forwarded
    finally:
        stop.set()
        t.join()
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()


def start(plant: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant), "--headless"],
            stdout=f,
            stderr=f,
            env={**os.environ, "PYTHONWARNINGS": "default"},
        )


def wait_for(what: str, check: Callable[[], object], timeout: float = 25.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (EngineUnreachable, OSError, sqlite3.Error, KeyError, StopIteration) as e:
            last = repr(e)  # not there yet
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def frame_of(data_dir: Path) -> Frame:
    api = RemoteAPI(socket_path(data_dir)).connect(timeout=2)
    try:
        return api.frame()
    finally:
        api.close()


def temp_rows(data_dir: Path) -> int:
    return stored_count(data_dir / "history.db", "line.temp")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    proc.wait(15)


def check_running(data_dir: Path, forwarded: list[bytes], *, copy: bool, why: str) -> Frame:
    """The engine runs: line.temp recorded and forwarded; the model as the case says."""
    before = temp_rows(data_dir) if (data_dir / "history.db").exists() else 0
    n_fwd = len(forwarded)
    wait_for("line.temp recorded", lambda: temp_rows(data_dir) >= before + 5)
    wait_for("line.temp forwarded", lambda: any(b"line.temp" in m for m in forwarded[n_fwd:]))

    seen: list[object] = []

    def alarm_and_model() -> Frame | None:
        f = frame_of(data_dir)
        alarm = next(a for a in f.alarms if a.id == f"model_failure:{MODEL}")
        score = next(s for s in f.signals if s.id == SCORE)
        temp = next(s for s in f.signals if s.id == "line.temp")
        model = next(m for m in f.models if m.id == MODEL)
        seen[:] = [alarm.condition, alarm.text, score.quality, score.detail, model.sha, temp]
        ok = alarm.condition and why in alarm.text and temp.quality == "GOOD"
        if copy:  # the stored copy scores
            ok = ok and model.running and model.sha == GOOD_SHA and score.quality == "GOOD"
            ok = ok and "running the stored copy" in alarm.text
        else:
            ok = ok and score.quality == "BAD" and why in score.detail
        return f if ok else None

    try:
        return wait_for("model state and alarm", alarm_and_model)  # type: ignore[return-value]
    except AssertionError as e:
        raise AssertionError(f"{e}; seen {seen}") from None


def _corrupt_sidecar(stem: Path) -> None:
    stem.with_suffix(".json").write_text("{ not json")


def _corrupt_onnx(stem: Path) -> None:
    data = bytearray(stem.with_suffix(".onnx").read_bytes())
    data[len(data) // 2 :] = b"\x00garbage" * (len(data) // 16)
    stem.with_suffix(".onnx").write_bytes(bytes(data))


def _missing(stem: Path) -> None:
    stem.with_suffix(".onnx").unlink()
    stem.with_suffix(".json").unlink()


def _nan_output(stem: Path) -> None:
    put_onnx(stem, onnx_graph(body="inf"))  # zero times inf: NaN


CASES = {
    # case: (damage, a stored good copy exists, what the alarm / BAD detail says)
    "corrupt sidecar": (_corrupt_sidecar, True, "not valid JSON"),
    "corrupt onnx": (_corrupt_onnx, True, "sha256"),
    "missing package": (_missing, True, "not found"),
    "missing, never stored": (_missing, False, "not found"),
    "nan output": (_nan_output, False, "model output not finite"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_engine_runs_whatever_the_model_package(
    case: str, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    damage, stored, why = CASES[case]
    plant = write_plant(tmp_path, mosquitto.port)
    stem = copy_package(tmp_path / "models")
    data_dir = tmp_path / "data"
    log = tmp_path / "engine.log"
    with plant_traffic(mosquitto.port) as forwarded:
        if stored:  # a first run with the good package puts it in the snapshot store
            proc = start(plant, log)
            try:
                wait_for(
                    "the good package scores",
                    lambda: (
                        next(s for s in frame_of(data_dir).signals if s.id == SCORE).quality
                        == "GOOD"
                    ),
                )
            finally:
                stop(proc)
        damage(stem)
        proc = start(plant, log)
        try:
            check_running(data_dir, forwarded, copy=stored, why=why)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = start(plant, log)
            check_running(data_dir, forwarded, copy=stored, why=why)
        finally:
            if proc.poll() is None:
                stop(proc)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "RuntimeWarning" not in text, "numpy warnings are counted, not printed"
    assert f"model {MODEL}" in text and why in text, "the log says what is wrong"
