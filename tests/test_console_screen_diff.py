"""A real console on a pseudo-terminal sends only what changed (issue 19), and its terminal
shows what Textual drew: every write of a live console (themes, the help screen, a search, a
resize) replayed into pyte, Textual's own write beside what went to the terminal."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest

from floorconsole.engine.attach import socket_path
from floorconsole.engine.runtime import Engine
from tests.support.demo_engine import running_demo_engine

ROOT = Path(__file__).resolve().parents[1]
RECORDER = ROOT / "tests" / "support" / "record_screen_diff.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with running_demo_engine("fc-diff-") as e:
        yield e


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def state(screen: pyte.Screen) -> tuple[object, ...]:
    cells = tuple(
        (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.strikethrough, c.reverse)
        for line in (screen.buffer[y] for y in range(screen.lines))
        for c in (line[x] for x in range(screen.columns))
    )
    return cells, None if screen.cursor.hidden else (screen.cursor.x, screen.cursor.y)


@pytest.mark.slow
def test_a_live_console_shows_on_its_terminal_what_textual_drew(
    engine: Engine, tmp_path: Path
) -> None:
    log = tmp_path / "writes.jsonl"
    master, slave = os.openpty()
    set_size(slave, 100, 30)

    def become_its_terminal() -> None:  # so that a new size reaches it as SIGWINCH
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    cmd = [sys.executable, str(RECORDER), "attach", "--socket", str(socket_path(engine.data_dir))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    env["FC_SCREEN_DIFF_LOG"] = str(log)
    proc = subprocess.Popen(
        cmd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=become_its_terminal,
    )
    os.close(slave)
    tty = bytearray()

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if select.select([master], [], [], min(left, 0.05))[0]:
                try:
                    tty.extend(os.read(master, 1 << 16))
                except OSError:
                    return

    try:
        deadline = time.monotonic() + 30
        while b"GOOD" not in tty:
            assert time.monotonic() < deadline, "the console never drew its signals"
            drain(0.2)
        drain(1.5)
        for keys, wait in ((b"t", 1.0), (b"\x1bOP", 1.5), (b"\x1b", 1.0), (b"/mot", 1.0)):
            os.write(master, keys)
            drain(wait)
        os.write(master, b"\x1b")
        drain(1.0)
        set_size(master, 80, 24)
        drain(2.0)
        os.write(master, b"t")
        drain(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain(0.5)
        os.close(master)

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) > 20
    textual = pyte.Screen(100, 30)
    diffed = pyte.Screen(100, 30)
    feed_textual, feed_diffed = pyte.Stream(textual), pyte.Stream(diffed)
    size = (100, 30)
    for n, (width, height, data, out) in enumerate(calls):
        if width and (width, height) != size:
            size = (width, height)
            textual.resize(height, width)
            diffed.resize(height, width)
        feed_textual.feed(data.replace("\n", "\r\n"))
        feed_diffed.feed(out.replace("\n", "\r\n"))
        assert state(diffed) == state(textual), f"write {n}: {data[:200]!r}"
    assert size == (80, 24)  # the resize was seen
    written = "".join(out for _w, _h, _d, out in calls).replace("\n", "\r\n").encode()
    assert bytes(tty).endswith(written) or written in bytes(tty), "the terminal got other bytes"
    sent = sum(len(out) for _w, _h, _d, out in calls)
    drawn = sum(len(data) for _w, _h, data, _o in calls)
    assert sent < drawn / 2, (sent, drawn)
