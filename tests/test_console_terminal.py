"""A console whose terminal goes away ends (issue 14): tmux kill-session, a pty whose master
closes (with the console as its controlling terminal, so SIGHUP, and without, so only end of
input / EIO on read) — the process is gone within 2 s, its session logged out (control
released), and it never spins. SIGTERM ends an attached console, a console with its engine
in process (run), and a headless engine, each within 2 s, the engine cleanly."""

from __future__ import annotations

import fcntl
import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from floorconsole.engine.attach import socket_path
from floorconsole.engine.demo import DEMO_USERS
from floorconsole.engine.runtime import Engine
from tests.support.demo_engine import running_demo_engine
from tests.support.engine_proc import EngineProcess

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "fixtures" / "plants" / "demo.toml"
PIN = {u["name"]: u["pin"] for u in DEMO_USERS}
F9 = b"\x1b[20~"
ENDS_WITHIN_S = 2.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fc-term-", dir="/tmp"))


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours has ended: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:  # not ours (tmux's): gone from /proc when reaped
        status = Path(f"/proc/{pid}/status")
        return status.exists() and "zombie" not in status.read_text()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with running_demo_engine("fc-term-") as e:
        yield e


def drawn(screen: bytes) -> bool:
    """The console has drawn its overview: a signal's quality is on the screen. (The product
    name is in the header only once, at the first paint, and can scroll out of the last 64 kB
    the test keeps; qualities are redrawn all the time.)"""
    return b"GOOD" in screen or b"floorconsole" in screen


def console_cmd(engine: Engine) -> list[str]:
    return [
        sys.executable,
        "-m",
        "floorconsole.cli",
        "attach",
        "--socket",
        str(socket_path(engine.data_dir)),
    ]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}


def logged_in(engine: Engine, user: str, since: float) -> dict[str, Any] | None:
    rows = engine.api.audit(kind="login", user=user, since=since)
    return rows[0] if rows else None


def logged_out(engine: Engine, user: str, since: float) -> bool:
    return bool(engine.api.audit(kind="logout", user=user, since=since))


def take_control(engine: Engine, user: str) -> None:
    wait_for(lambda: engine.api.frame().control_holder == user, 5, f"{user} holds control")


# -- a console in a pty ----------------------------------------------------------------------


class PtyConsole:
    """A console process on a pseudo-terminal of ours: we hold the master."""

    def __init__(self, cmd: list[str], *, controlling: bool) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x1e\x00\x64\x00\x00\x00\x00\x00")  # 30x100

        def become_its_terminal() -> None:  # in the child, after setsid
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env(),
            start_new_session=True,
            preexec_fn=become_its_terminal if controlling else None,
        )
        os.close(slave)
        self.screen = b""

    def drain(self, seconds: float = 0.0) -> None:
        """Read what the console drew (a pty whose master nobody reads blocks its writer)."""
        end = time.monotonic() + seconds
        os.set_blocking(self.master, False)
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
                self.screen = (self.screen + chunk)[-(1 << 16) :]
            except (BlockingIOError, OSError):
                if time.monotonic() >= end:
                    return
                time.sleep(0.02)

    def keys(self, data: bytes) -> None:
        os.write(self.master, data)
        self.drain(0.3)

    def login(self, user: str) -> None:
        self.keys(F9)
        self.drain(0.7)
        self.keys(user.encode())
        self.keys(b"\t")
        self.keys(PIN[user].encode())
        self.keys(b"\r")
        self.drain(0.5)

    def close_master(self) -> None:
        os.close(self.master)
        self.master = -1

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.master >= 0:
            os.close(self.master)


@pytest.mark.slow
@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "eio-only"])
def test_a_console_whose_pty_closes_ends_and_logs_out(engine: Engine, controlling: bool) -> None:
    since = time.time()
    con = PtyConsole(console_cmd(engine), controlling=controlling)
    try:
        wait_for(lambda: (con.drain(), drawn(con.screen))[1], 15, "the console drawn")
        con.login("eng1")
        wait_for(lambda: logged_in(engine, "eng1", since), 5, "eng1 logged in")
        con.keys(b"c")  # take control
        take_control(engine, "eng1")
        con.close_master()
        t0 = time.monotonic()
        gone = wait_for(lambda: not alive(con.proc.pid), ENDS_WITHIN_S, "the console gone")
        out = wait_for(
            lambda: logged_out(engine, "eng1", since), ENDS_WITHIN_S, "its session logged out"
        )
        assert engine.api.frame().control_holder == ""
        print(
            f"\npty master closed ({'controlling terminal: SIGHUP' if controlling else 'EIO'}):"
            f" console gone after {gone * 1000:.0f} ms, logged out after "
            f"{(time.monotonic() - t0) * 1000:.0f} ms ({out * 1000:.0f} ms after it went)"
        )
        row = logged_in(engine, "eng1", since)
        assert row is not None and row["detail"]["os_user"] == getpass.getuser()
    finally:
        con.kill()


def test_a_console_on_a_dead_terminal_never_spins(engine: Engine) -> None:
    """End of input on the terminal (what a hung-up tty reads as): Textual's own driver takes
    it for piped input and loops on it; ours ends the console, using next to no CPU."""
    r, w = os.pipe()
    os.close(w)  # stdin at end of input from the start
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(
            console_cmd(engine), stdin=r, stdout=null, stderr=null, cwd=ROOT, env=env()
        )
    os.close(r)
    try:
        proc.wait(10)  # connecting and starting take most of it
    except subprocess.TimeoutExpired:
        cpu = cpu_s(proc.pid)
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"the console did not end on end of input; {cpu:.1f} s of CPU in 10 s"
        ) from None


@pytest.mark.slow
def test_tmux_kill_session_ends_the_console_and_logs_it_out(engine: Engine) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("no tmux")
    since = time.time()
    name = f"fc-test-{os.getpid()}"
    tmux = ["tmux", "-L", name]  # a server of its own: nobody else's sessions touched
    cmd = " ".join(f"'{c}'" for c in console_cmd(engine))
    pid = int(
        subprocess.check_output(
            [
                *tmux,
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "100",
                "-y",
                "30",
                "-P",
                "-F",
                "#{pane_pid}",
                f"cd '{ROOT}' && PYTHONPATH='{ROOT}' exec {cmd}",
            ],
            text=True,
        )
    )

    def pane() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", name], capture_output=True, text=True
        ).stdout

    try:
        try:
            wait_for(lambda: "motor1" in pane(), 15, "the console drawn")
        except AssertionError:
            raise AssertionError(f"the console not drawn in tmux within 15 s:\n{pane()}") from None
        for keys in (["F9"], ["op1"], ["Tab"], [PIN["op1"]], ["Enter"]):
            subprocess.run([*tmux, "send-keys", "-t", name, *keys], check=True)
            time.sleep(0.4)
        wait_for(lambda: logged_in(engine, "op1", since), 5, "op1 logged in")
        subprocess.run([*tmux, "kill-session", "-t", name], check=True)
        gone = wait_for(lambda: not alive(pid), ENDS_WITHIN_S, "the console gone")
        wait_for(lambda: logged_out(engine, "op1", since), ENDS_WITHIN_S, "op1 logged out")
        print(f"\ntmux kill-session: console gone after {gone * 1000:.0f} ms, logged out")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


# -- SIGTERM -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_ends_an_attached_console_within_2_s(engine: Engine) -> None:
    since = time.time()
    con = PtyConsole(console_cmd(engine), controlling=True)
    try:
        wait_for(lambda: (con.drain(), drawn(con.screen))[1], 15, "the console drawn")
        con.login("op1")
        wait_for(lambda: logged_in(engine, "op1", since), 5, "op1 logged in")
        con.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        while con.proc.poll() is None and time.monotonic() - t0 < ENDS_WITHIN_S:
            con.drain(0.02)
        assert con.proc.poll() is not None, "the console did not end within 2 s of SIGTERM"
        print(f"\nSIGTERM: attached console ended after {(time.monotonic() - t0) * 1000:.0f} ms")
        wait_for(lambda: logged_out(engine, "op1", since), ENDS_WITHIN_S, "op1 logged out")
    finally:
        con.kill()


@pytest.mark.slow
def test_sigterm_ends_a_console_and_its_engine_and_a_headless_engine_within_2_s() -> None:
    folder = short_dir()
    try:
        with EngineProcess(folder, signals=10, poll_ms=100) as e:
            assert e.proc is not None
            time.sleep(1.0)
            e.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            rc = e.proc.wait(10)
            took = time.monotonic() - t0
            print(f"\nSIGTERM: headless engine ended after {took * 1000:.0f} ms (rc {rc})")
            assert took <= ENDS_WITHIN_S and rc == 0
            assert "engine stopped" in e.log_text()
            # The same plant with a console on the terminal: `floorconsole run`.
            plant = folder / "plant.toml"
            con = PtyConsole(
                [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant)],
                controlling=True,
            )
            try:
                wait_for(lambda: (con.drain(), drawn(con.screen))[1], 20, "the console")
                con.proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                while con.proc.poll() is None and time.monotonic() - t0 < ENDS_WITHIN_S:
                    con.drain(0.02)
                took = time.monotonic() - t0
                assert con.proc.poll() is not None, "run did not end within 2 s of SIGTERM"
                print(f"SIGTERM: console with its engine (run) ended after {took * 1000:.0f} ms")
                log = (folder / "data" / "engine.log").read_text()
                assert log.rstrip().endswith("engine stopped"), log[-500:]
            finally:
                con.kill()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
