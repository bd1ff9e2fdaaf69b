"""Many consoles on one engine over its attach socket (issue 9): the same values everywhere, an
action in one seen by the others, a killed console leaves nothing behind, a slow link slows
only its own console, and consoles ride out an engine restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from floorconsole.console import Frame
from floorconsole.engine import attach
from floorconsole.engine.attach import socket_path
from floorconsole.engine.demo import DEMO_USERS
from floorconsole.engine.remote import RemoteAPI
from floorconsole.engine.runtime import Engine
from tests.support.demo_engine import running_demo_engine
from tests.support.throttle import ThrottledRelay

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "fixtures" / "plants" / "demo.toml"
PIN = {u["name"]: u["pin"] for u in DEMO_USERS}


def short_dir() -> Path:
    # A Unix socket path has at most 107 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="fc-attach-", dir="/tmp"))


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.01) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with running_demo_engine("fc-attach-") as e:
        yield e


@pytest.fixture
def consoles(engine: Engine) -> Iterator[list[RemoteAPI]]:
    apis = [RemoteAPI(socket_path(engine.data_dir)).connect() for _ in range(3)]
    try:
        yield apis
    finally:
        for a in apis:
            a.close()


def test_the_socket_is_for_the_engines_user_and_group(engine: Engine) -> None:
    path = socket_path(engine.data_dir)
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def raw_call(path: Path, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        f = sock.makefile("rb")
        # Answers come as they are ready, not in order: the id says which is which.
        got = {m["id"]: m for m in (json.loads(f.readline()) for _ in requests)}
        return [got[r["id"]] for r in requests]


def test_only_engine_api_ops_are_served(engine: Engine) -> None:
    bad, unknown, refused, ok = raw_call(
        socket_path(engine.data_dir),
        {"id": 1, "op": "_engine"},
        {"id": 2, "op": "__init__", "args": {}},
        {"id": 3, "op": "command", "args": {"name": "control.write", "args": {"arm": "x"}}},
        {"id": 4, "op": "session", "args": {"session": None}},
    )
    assert not bad["ok"] and bad["kind"] == "BadRequest" and "unknown op" in bad["error"]
    assert not unknown["ok"] and unknown["kind"] == "BadRequest"
    assert refused["ok"] and refused["result"].get("refused") == "login", refused
    assert ok["ok"] and ok["result"]["role"] == "viewer"


def test_a_console_that_reads_nothing_is_dropped(
    engine: Engine, consoles: list[RemoteAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attach, "CLIENT_WRITE_TIMEOUT_S", 1.0)
    server = engine.attach_server
    assert server is not None
    dropped = server.dropped
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(str(socket_path(engine.data_dir)))
        sock.sendall(b"".join(b'{"id":%d,"op":"frame"}\n' % i for i in range(300)))
        n0 = consoles[0].frames_received
        wait_for(
            lambda: server.dropped > dropped, 5, "the console that reads nothing dropped", 0.05
        )
        assert consoles[0].frames_received > n0 and consoles[0].frame().stale == ""


def test_three_consoles_see_the_same_values(engine: Engine, consoles: list[RemoteAPI]) -> None:
    wait_for(lambda: engine.api.frame().signals[0].quality == "GOOD", 10, "drive1 read")
    with ThreadPoolExecutor(3) as pool:
        for _attempt in range(20):
            frames: list[Frame] = list(pool.map(RemoteAPI.refresh, consoles))
            if len({f.t_mono for f in frames}) == 1:
                break  # one build, served to all three from the cache
        else:
            raise AssertionError("three consoles never got the same frame build")
    assert frames[0] == frames[1] == frames[2]
    f = frames[0]
    assert f.stale == "" and f.edge_id == engine.plant.edge.id
    local = engine.api.frame()
    assert [s.id for s in f.signals] == [s.id for s in local.signals]
    current = next(s for s in f.signals if s.id == "motor1.current")
    assert current.quality == "GOOD" and current.value is not None
    # what every console shows for a setting that does not move: the same as the engine's
    assert {c.frame().snapshot for c in consoles} == {local.snapshot}


def test_an_action_in_one_console_shows_in_the_others(
    engine: Engine, consoles: list[RemoteAPI]
) -> None:
    a, b, c = consoles
    login = a.login("op1", PIN["op1"])
    assert login["ok"], login
    token = login["session"]
    assert a.session(token)["role"] == "operator"
    try:
        r = a.command("demo.toggle", session=token, fault="imbalance")
        assert r["ok"], r
        seen = wait_for(
            lambda: all(
                "imbalance" in (x.frame().demo.active or ())  # type: ignore[union-attr]
                for x in (b, c)
            ),
            2.0,
            "the fault in the other consoles",
        )
        print(
            f"\nan action in one console seen by the others after {seen * 1000:.0f} ms "
            f"(refresh 250 ms)"
        )
        assert seen <= 0.25 + 0.1  # one refresh, plus the frame cache and the link
        # The engine checks roles whoever asks: a viewer console is refused.
        refused = b.command("demo.toggle", session=None, fault="imbalance")
        assert not refused["ok"] and refused.get("refused") == "login"
    finally:
        a.command("demo.clear", session=token, fault="imbalance")
        a.logout(token)


def test_a_killed_console_leaves_nothing_behind(engine: Engine, consoles: list[RemoteAPI]) -> None:
    b = consoles[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.attach_console",
            str(socket_path(engine.data_dir)),
            "eng1",
            PIN["eng1"],
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        said = json.loads(proc.stdout.readline())
        token = said["session"]
        assert said["control"]["ok"], said
        assert engine.api.session(token)["user"] == "eng1"
        wait_for(lambda: b.frame().control_holder == "eng1", 2, "the holder shown elsewhere")
        n_before, rate_before = b.frames_received, engine.ingest_rate
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        gone = wait_for(
            lambda: engine.api.session(token)["user"] == "",
            3,
            "the killed console's session logged out",
        )
        assert engine.api.frame().control_holder == ""
        wait_for(lambda: b.frame().control_holder == "", 1, "control free in the others")
        print(f"\nkilled console's session logged out after {gone * 1000:.0f} ms")
        time.sleep(0.6)
        assert b.frames_received >= n_before + 2 and b.frame().stale == ""
        assert engine.ingest_rate > 0.5 * rate_before
        assert engine.loop is not None and not engine.loop.is_closed()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_console_on_a_slow_link_slows_only_itself(
    engine: Engine, consoles: list[RemoteAPI]
) -> None:
    b = consoles[0]
    measure_s = 3.0

    def measure() -> tuple[float, float]:
        n0, f0, t0 = engine.samples_in, b.frames_received, time.monotonic()
        time.sleep(measure_s)
        dt = time.monotonic() - t0
        return (engine.samples_in - n0) / dt, (b.frames_received - f0) / dt

    ingest_alone, fps_alone = measure()
    relay_path = engine.data_dir / "slow.sock"
    with ThrottledRelay(relay_path, socket_path(engine.data_dir), rate=20_000) as relay:
        slow = RemoteAPI(relay_path, refresh_hz=4.0).connect(timeout=10)
        try:
            s0 = slow.frames_received
            ingest_slow, fps_slow = measure()
            slow_fps = (slow.frames_received - s0) / measure_s
            frame_bytes = relay.bytes_down / max(1, slow.frames_received)
        finally:
            slow.close()
    print(
        f"\ningest {ingest_alone:.0f} → {ingest_slow:.0f} samples/s; fast console "
        f"{fps_alone:.2f} → {fps_slow:.2f} frames/s; slow console {slow_fps:.2f} frames/s "
        f"(~{frame_bytes / 1000:.0f} kB a frame at 20 kB/s)"
    )
    assert slow_fps < 2.0  # the link is the limit for that console ...
    assert fps_slow >= 0.85 * fps_alone  # ... and for nobody else
    assert ingest_slow >= 0.85 * ingest_alone


async def test_the_console_on_a_remote_api_shows_live_values(engine: Engine) -> None:
    from floorconsole.ui.app import make_app
    from floorconsole.ui.widgets.signal_table import SignalTable

    api = RemoteAPI(socket_path(engine.data_dir)).connect()
    try:
        app = make_app(api)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one(SignalTable)
            deadline = time.monotonic() + 5
            while table.row_count == 0 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            first = app.frames_shown
            await pilot.pause(1.0)
            assert app.frames_shown >= first + 2
            assert "motor1.current" in table.row_labels()
            shown = app.last_frame
            assert shown is not None and shown.stale == ""
            current = next(s for s in shown.signals if s.id == "motor1.current")
            assert current.quality == "GOOD" and current.age_s < 2.0
    finally:
        api.close()


# -- the engine goes away and comes back ------------------------------------------------------


def start_engine(data_dir: Path) -> subprocess.Popen[bytes]:
    """`floorconsole demo --headless` in a process group of its own (its broker and simulator
    with it), so a SIGKILL to the group leaves nothing running."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "floorconsole.cli",
            "demo",
            "--headless",
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_consoles_ride_out_an_engine_restart() -> None:
    folder = short_dir()
    data = folder / "data"
    engine = start_engine(data)
    apis: list[RemoteAPI] = []
    try:
        wait_for(lambda: socket_path(data).exists(), 30, "the engine's socket", 0.1)
        apis = [RemoteAPI(socket_path(data)).connect(timeout=10) for _ in range(3)]
        login = apis[0].login("op1", PIN["op1"])
        assert login["ok"], login
        token = login["session"]
        first = apis[0].frame()
        kill_group(engine)
        gone = wait_for(lambda: all(a.frame().stale for a in apis), 1.0, "every console stale")
        print(f"\nengine killed: every console stale after {gone * 1000:.0f} ms")
        stale = apis[1].frame()
        assert stale.stale.startswith("engine gone") and str(socket_path(data)) in stale.stale
        assert stale.signals == apis[1]._frame.signals  # type: ignore[union-attr] # the last frame, kept
        r = apis[0].command("demo.toggle", session=token, fault="imbalance")
        assert not r["ok"] and r["message"].startswith("engine not reachable"), r
        assert apis[0].session(token)["role"] == "viewer"

        engine = start_engine(data)
        back = wait_for(lambda: all(a.frame().stale == "" for a in apis), 30, "fresh frames", 0.05)
        print(f"engine restarted: fresh frames in every console after {back:.1f} s")
        for a in apis:
            assert a.reconnected == 1
            assert a.frame().t_wall > first.t_wall
        # The restarted engine knows no old session, and no PIN was kept to log in again.
        assert apis[0].session(token)["role"] == "viewer"
        assert not apis[0].command("demo.toggle", session=token, fault="imbalance")["ok"]
    finally:
        for a in apis:
            a.close()
        kill_group(engine, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)


async def test_the_console_greys_out_when_its_engine_dies_and_comes_back() -> None:
    """The whole way: a Textual console on RemoteAPI, the engine SIGKILLed under it, then
    started again: ENGINE GONE at once with the last values kept and greyed, then live."""
    from floorconsole.ui.app import make_app
    from floorconsole.ui.widgets.signal_table import SignalTable
    from floorconsole.ui.widgets.status_bars import EngineLine

    folder = short_dir()
    data = folder / "data"
    engine = start_engine(data)
    api: RemoteAPI | None = None
    try:
        wait_for(lambda: socket_path(data).exists(), 30, "the engine's socket", 0.1)
        api = RemoteAPI(socket_path(data)).connect(timeout=10)
        app = make_app(api)
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one(SignalTable)
            deadline = time.monotonic() + 10
            while table.row_count == 0 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            assert not app.has_class("-stale")
            kill_group(engine)
            t0 = time.monotonic()
            while not app.has_class("-stale") and time.monotonic() - t0 < 2.0:
                await pilot.pause(0.05)
            assert app.has_class("-stale"), "the console did not notice within 2 s"
            line = str(app.screen.query_one(EngineLine)._last)
            assert "ENGINE GONE" in line and "engine gone" in line, line
            assert table.row_count > 0  # the last values stay on screen
            engine = start_engine(data)
            t0 = time.monotonic()
            while app.has_class("-stale") and time.monotonic() - t0 < 30:
                await pilot.pause(0.1)
            assert not app.has_class("-stale"), "the console did not come back"
            assert "ENGINE BACK" in str(app.screen.query_one(EngineLine)._last)
            assert app.last_frame is not None and app.last_frame.stale == ""
    finally:
        if api is not None:
            api.close()
        kill_group(engine, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_console_that_reads_nothing_is_disconnected_and_its_session_logged_out(
    engine: Engine, consoles: list[RemoteAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: not only counted — the connection is closed (its buffer dropped) and what it
    logged in is logged out, its OS user on the records."""
    import getpass

    monkeypatch.setattr(attach, "CLIENT_WRITE_TIMEOUT_S", 1.0)
    server = engine.attach_server
    assert server is not None
    since = time.time()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(str(socket_path(engine.data_dir)))
        sock.sendall(
            b'{"id":0,"op":"login","args":{"user":"op1","pin":"%s"}}\n' % PIN["op1"].encode()
        )
        f = sock.makefile("rb")
        token = json.loads(f.readline())["result"]["session"]
        assert engine.api.session(token)["user"] == "op1"
        consoles_before, dropped = server.consoles, server.dropped
        sock.sendall(b"".join(b'{"id":%d,"op":"frame"}\n' % i for i in range(300)))
        gone = wait_for(lambda: server.consoles < consoles_before, 5, "the console disconnected")
        assert server.dropped == dropped + 1
        wait_for(lambda: engine.api.session(token)["user"] == "", 2, "its session logged out")
        # What it is still sent ends, and the connection with it.
        sock.settimeout(2)
        rest = b""
        while chunk := sock.recv(1 << 16):
            rest += chunk
    print(f"\na console that read nothing disconnected {gone:.1f} s after it stopped reading")
    logins = engine.api.audit(kind="login", user="op1", since=since)
    logouts = engine.api.audit(kind="logout", user="op1", since=since)
    assert logins and logins[0]["detail"]["os_user"] == getpass.getuser()
    assert logouts and logouts[0]["detail"]["os_user"] == getpass.getuser()
    assert consoles[0].frame().stale == ""
