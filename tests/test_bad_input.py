"""Malformed input a user can see: per broker, bad payloads counted once each and by reason;
per signal, bad values by reason; in the console API's link view, in the log (the first, then
a summary a minute), kept across restarts (kill -9 included), and the quality changes in
`history --quality`."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.historian import Historian
from floorconsole.console import LinkView
from floorconsole.core.links import BadInputLog, LinkStats
from floorconsole.engine.attach import socket_path
from floorconsole.engine.remote import RemoteAPI
from tests.test_model_start import wait_for

# --- the counters and the log, alone ---------------------------------------------------------


def test_bad_input_log_first_then_a_summary_a_minute() -> None:
    stats = LinkStats("plant", "broker", "127.0.0.1:1883")
    said = BadInputLog(stats, every_s=60.0)
    assert said.summary(0.0) is None, "nothing to say"
    stats.bad_payloads += 1
    stats.bad_payload_reasons["not_json"] += 1
    stats.malformed[("line.temp", "not_json")] += 1
    first = said.first("t/temp", [("line.temp", "not_json: Expecting value")])
    assert first is not None and "bad payload on t/temp" in first and "not_json" in first
    assert said.first("t/temp", [("line.temp", "not_json: x")]) is None, "only the first"
    for _ in range(999):
        stats.bad_payloads += 1
        stats.bad_payload_reasons["not_json"] += 1
        stats.malformed[("line.temp", "not_json")] += 1
    assert said.summary(30.0) is None, "not before the minute is up"
    text = said.summary(60.0)
    assert text is not None
    assert "1000 bad payloads since the last summary (not_json 1000)" in text
    assert "line.temp not_json 1000" in text
    assert said.summary(125.0) is None, "nothing new: no line"


def test_counters_round_trip_and_persist(tmp_path: Path) -> None:
    stats = LinkStats("plant", "broker", "x")
    stats.bad_payloads = 7
    stats.bad_payload_reasons.update({"not_json": 5, "bad_time": 2})
    stats.malformed.update({("a", "not_json"): 5, ("b", "not_json"): 5})
    h = Historian(tmp_path / "history.db")
    h.start()
    h.set_input_counts({("plant", *k): n for k, n in stats.input_counts().items()})
    h.flush()
    h.close()
    h = Historian(tmp_path / "history.db")
    h.start()
    kept = h.input_counts()
    h.close()
    again = LinkStats("plant", "broker", "x")
    again.restore_input_counts({(s, r): n for (_link, s, r), n in kept.items()})
    assert again.input_counts() == stats.input_counts()
    assert again.bad_payloads == 7 and again.malformed_total == 10


# --- against a running engine and a real mosquitto -------------------------------------------


def write_plant(tmp: Path, port: int) -> Path:
    path = tmp / "plant.toml"
    path.write_text(
        f"""
[edge]
id = "bad-input"
data_dir = "{tmp / "data"}"

[[brokers]]
id = "plant"
host = "127.0.0.1"
port = {port}

[[signals]]
id = "line.temp"
broker = "plant"
topic = "t/line"
json = "v"

[[signals]]
id = "line.flow"
broker = "plant"
topic = "t/line"
json = "f"
"""
    )
    return path


BURST = (
    [b"{not json"] * 30  # both signals lose their value: one payload, two bad values
    + [b'{"v": "hot", "f": 1.5}'] * 20  # only line.temp's value is bad
    + [b'{"other": 1}'] * 10  # neither key
)
PAYLOADS = Counter({"not_json": 30, "wrong_type": 20, "missing_key": 10})
VALUES = Counter(
    {
        ("line.temp", "not_json"): 30,
        ("line.flow", "not_json"): 30,
        ("line.temp", "wrong_type"): 20,
        ("line.temp", "missing_key"): 10,
        ("line.flow", "missing_key"): 10,
    }
)


def start(plant: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant), "--headless"],
            stdout=f,
            stderr=f,
        )


def link(data_dir: Path) -> LinkView:
    api = RemoteAPI(socket_path(data_dir)).connect(timeout=2)
    try:
        return next(ln for ln in api.frame().links if ln.id == "plant")
    finally:
        api.close()


def publish(port: int, payloads: list[bytes]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-gateway")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for p in payloads:
            c.publish("t/line", p, qos=1).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


def counted(data_dir: Path, payloads: int) -> LinkView | None:
    ln = link(data_dir)
    return ln if ln.malformed >= payloads and ln.state == "up" else None


@pytest.mark.slow
def test_malformed_payloads_counted_shown_logged_kept_and_exported(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    plant = write_plant(tmp_path, mosquitto.port)
    data_dir = tmp_path / "data"
    log = tmp_path / "engine.log"
    proc = start(plant, log)
    try:
        wait_for("engine up", lambda: link(data_dir).state == "up")
        publish(mosquitto.port, [b'{"v": 20.5, "f": 1.0}', *BURST, b'{"v": 21.5, "f": 1.0}'])
        ln = wait_for("60 bad payloads counted", lambda: counted(data_dir, 60))
        assert isinstance(ln, LinkView)
        assert ln.malformed == 60, "each payload once, not once per signal"
        assert Counter(dict(ln.bad_payloads_by_reason)) == PAYLOADS
        assert Counter({(s, r): n for s, r, n in ln.malformed_by_reason}) == VALUES
        time.sleep(1.5)  # the counters go to the historian about once a second
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        proc = start(plant, log)
        wait_for("engine up again", lambda: link(data_dir).state == "up")
        ln = link(data_dir)
        assert ln.malformed == 60 and Counter(dict(ln.bad_payloads_by_reason)) == PAYLOADS
        assert Counter({(s, r): n for s, r, n in ln.malformed_by_reason}) == VALUES
        publish(mosquitto.port, [b"\xff\xfe"] * 5)
        ln = wait_for("5 more", lambda: counted(data_dir, 65))
        assert isinstance(ln, LinkView) and dict(ln.bad_payloads_by_reason)["not_json"] == 35
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        proc = start(plant, log)
        ln = wait_for("kept after a clean stop", lambda: counted(data_dir, 65))
        assert isinstance(ln, LinkView) and ln.malformed == 65
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)

    text = log.read_text()
    firsts = [line for line in text.splitlines() if "bad payload on t/line" in line]
    assert len(firsts) == 2, "one line at the first bad payload of each run (two got some)"
    assert "not_json" in firsts[0] and "Traceback" not in text

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "floorconsole.cli",
            "history",
            "line.temp",
            "--data-dir",
            str(data_dir),
            "--quality",
            "--since",
            "1h",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and set(rows[0]) == {"time", "signal", "quality", "detail"}
    bad = [r for r in rows if r["quality"] == "BAD decoding error"]
    assert any(r["detail"].startswith("not_json: ") for r in bad), rows
    assert any(r["detail"].startswith("wrong_type: ") for r in bad), "a new reason is a change"
    assert any(r["detail"].startswith("missing_key: ") for r in bad), rows
    assert [r["quality"] for r in rows].count("GOOD") >= 2, f"and when it came back: {rows}"
    as_json = subprocess.run(
        [
            sys.executable,
            "-m",
            "floorconsole.cli",
            "history",
            "line.temp",
            "--data-dir",
            str(data_dir),
            "--quality",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert len(json.loads(as_json)) == len(rows)


# --- the link detail screen ------------------------------------------------------------------


async def test_link_detail_screen_shows_counts_by_reason() -> None:
    import dataclasses

    from floorconsole.engine.replay import RecordedAPI
    from floorconsole.ui.app import make_app
    from floorconsole.ui.screens.links import LinksScreen
    from tests.test_ui_snapshots import RECORDINGS

    api = RecordedAPI.load(RECORDINGS / "overview.json")
    frame = api.frame()
    broker = next(ln for ln in frame.links if ln.kind == "broker")
    counted = dataclasses.replace(
        broker,
        malformed=1243,
        bad_payloads_by_reason=(("not_json", 1200), ("missing_key", 43)),
        malformed_by_reason=(
            ("motor1.vibration.x", "not_json", 1200),
            ("motor1.vibration.y", "not_json", 1200),
            ("motor1.vibration.x", "missing_key", 43),
        ),
    )
    links = tuple(counted if ln.id == broker.id else ln for ln in frame.links)
    api.set_frame(dataclasses.replace(frame, links=links))
    app = make_app(api)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("L")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LinksScreen)
        # Filled at the screen's next frame: on a loaded runner that is more than two
        # pauses away (CI once read it empty).
        for _ in range(100):
            if screen.text:
                break
            await pilot.pause(0.05)
        text = screen.text
        assert f"broker {broker.id}" in text
        assert "bad payloads 1,243" in text
        assert "not_json" in text and "1,200" in text and "missing_key" in text
        assert "motor1.vibration.y" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, LinksScreen)
        await pilot.click("#links")  # the link bar opens it too
        await pilot.pause()
        assert isinstance(app.screen, LinksScreen)
