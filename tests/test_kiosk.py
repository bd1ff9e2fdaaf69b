"""Kiosk mode for real: `floorconsole demo --kiosk` in a tmux pane, every key that could
leave the console sent one by one, then the demo admin's PIN, which leaves it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOORCONSOLE = Path(sys.executable).with_name("floorconsole")
# tmux key names; 'C-\' is ctrl+backslash (the terminal's SIGQUIT key).
ESCAPE_KEYS = (
    "C-c",
    "C-q",
    "C-z",
    "C-\\",
    "C-p",
    "q",
    "F10",
    "Escape",
    *(f"F{n}" for n in range(1, 13)),
)
# The header ends with who is logged in, then the clock and its zone (issue 13 added the zone).
ROLE = re.compile(r"· (VIEWER|LOCKED \S+|[A-Z]+ \S+)\s+\d\d:\d\d:\d\d(?: [A-Z][A-Za-z0-9+-]*)?\s*$")

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed: kiosk keys need a real terminal"
)


class Pane:
    """One tmux server of its own (-L), one pane running the console."""

    def __init__(self, socket: str, stderr: Path) -> None:
        self.socket = socket
        self.stderr = stderr

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "#{pane_pid}").strip())

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        err = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        raise AssertionError(
            f"{text!r} not shown within {timeout} s; the pane shows:\n{shown}"
            f"\nengine log:\n{err[-2000:]}"
        )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "T", "t")  # a zombie, or stopped by ctrl+z, is not a console


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    p = Pane(f"fc-kiosk-{uuid.uuid4().hex[:8]}", tmp_path / "data" / "engine.log")
    # exec: the pane's process is the console itself, so its pid is the one to watch. Textual
    # draws on stderr, so it stays the terminal; the engine's log is data/engine.log.
    cmd = f"exec {FLOORCONSOLE} demo --kiosk --data-dir {tmp_path / 'data'}"
    p.tmux("new-session", "-d", "-x", "100", "-y", "30", cmd)
    p.tmux("set-option", "-g", "remain-on-exit", "on")
    try:
        yield p
    finally:
        subprocess.run(["tmux", "-L", p.socket, "kill-server"], capture_output=True, timeout=10)


def test_no_key_leaves_the_kiosk_but_an_admin_pin_does(pane: Pane) -> None:
    shown = pane.wait_for("motor1.current", 30)
    pid = pane.pid()
    pane.wait_for("GOOD", 15)  # live values from the simulated plant
    assert "VIEWER" in shown.splitlines()[0]
    for key in ESCAPE_KEYS:
        pane.keys(key)
        time.sleep(0.4)
        assert alive(pid), f"{key} ended or stopped the console"
        # Whatever opened (help, alarms, a dialog), Esc comes back to the overview.
        for _ in range(3):
            first = pane.screen().splitlines()[0] if pane.screen() else ""
            if first.startswith(" floorconsole") or "Plant 3" in first:
                break
            pane.keys("Escape")
            time.sleep(0.3)
        first = pane.screen().splitlines()[0]
        assert "Plant 3" in first, f"after {key} the console is not in front:\n{pane.screen()}"
        assert ROLE.search(first) and ROLE.search(first)[1] == "VIEWER", (key, first)
        assert alive(pid)
    pane.keys("F11")
    pane.wait_for("Leave kiosk mode", 5)
    pane.keys("admin", "Enter")
    time.sleep(0.3)
    pane.keys("9999", "Enter")
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f"the console did not exit:\n{pane.screen()}"
