"""Annunciation on a real terminal: a new HIGH alarm rings the bell (BEL, 0x07, in the bytes the
terminal receives) and its banner tag flashes until acknowledged; a LOW one below the console's
priority does neither; silence stops the bell, not the flash."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app

REPO = Path(__file__).resolve().parents[1]
SGR = re.compile(rb"\x1b\[([0-9;]*)m")
TAG = "▲ HIGH".encode()
GRACE_S = 0.5  # bytes of a phase's last frame may still be on their way when the next begins


def run_on_a_terminal(marks: Path, cols: int = 80, rows: int = 24) -> list[tuple[float, bytes]]:
    """Run the scripted console on a pseudo-terminal; every chunk it wrote, with when it came."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "TZ": "UTC", "PYTHONPATH": str(REPO)}
    env.pop("TEXTUAL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.annunciate_console", str(marks), "high"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the console closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data))
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(master)
    return chunks


def tag_styles(data: bytes) -> list[bytes]:
    """The SGR codes in force where each HIGH tag is drawn."""
    out = []
    for m in re.finditer(re.escape(TAG), data):
        before = list(SGR.finditer(data, 0, m.start()))
        out.append(before[-1].group(1) if before else b"")
    return out


@pytest.mark.slow
def test_a_new_high_alarm_rings_and_flashes_until_acknowledged(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    chunks = run_on_a_terminal(marks)
    starts = {}
    for line in marks.read_text().splitlines():
        phase, t = line.split()
        starts.setdefault(int(phase), float(t))
    assert set(starts) >= {0, 1, 2, 3}, starts
    everything = b"".join(c for _, c in chunks)
    assert b"bells " in everything, everything[-400:]

    def during(phase: int) -> bytes:
        lo, hi = starts[phase] + (GRACE_S if phase else 0.0), starts[phase + 1]
        return b"".join(c for t, c in chunks if lo <= t < hi)

    low_only, ringing, acked = during(0), during(1), during(2)
    # Phase 0: a LOW alarm, below the console's priority: no bell, no flash.
    assert b"\x07" not in low_only
    # Phase 1: the HIGH alarm rings once (the repeat is 10 s away) and its tag flashes: drawn
    # again and again, in two styles (reverse block on, off). The console's driver sends a
    # style as a change from the last (ui/screen_diff.py): after the first full style the tag
    # comes with reverse on (7) and off (27), so at least two distinct codes.
    ring_window = b"".join(c for t, c in chunks if starts[1] <= t < starts[2])
    assert ring_window.count(b"\x07") == 1, ring_window.count(b"\x07")
    styles = tag_styles(ringing)
    assert len(styles) >= 4 and len(set(styles)) >= 2, styles
    # Phase 2: acknowledged: no bell, and the tag is no longer redrawn (no flash).
    assert b"\x07" not in acked
    assert len(tag_styles(acked)) <= 1, tag_styles(acked)


async def test_silence_stops_the_bell_not_the_flash() -> None:
    from tests.support.annunciate_console import ScriptedAlarms

    api = ScriptedAlarms(Path(os.devnull))
    api.frames = (api.frames[1],) * 3  # the HIGH alarm unacknowledged throughout
    app = make_app(api, annunciate="high", refresh_hz=0.2)  # ticked by hand
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.tick()
        assert app.bells == 1 and app.flashing
        app._bell_t -= 11  # ten seconds on: it rings again
        app.tick()
        assert app.bells == 2
        await pilot.press("exclamation_mark")
        app._bell_t -= 11
        app.tick()
        assert app.bells == 2 and app.flashing  # silenced, still flashing
        assert any("silenced" in n.message for n in app._notifications)


async def test_annunciation_is_off_outside_kiosk_unless_asked() -> None:
    from tests.support.annunciate_console import ScriptedAlarms

    api = ScriptedAlarms(Path(os.devnull))
    api.frames = (api.frames[1],) * 3
    app = make_app(api, refresh_hz=0.2)
    assert app.annunciate == "off" and make_app(api, kiosk=True).annunciate == "high"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.tick()
        assert app.bells == 0 and not app.flashing
    with pytest.raises(ValueError, match="not one of off, low"):
        make_app(RecordedAPI.load(REPO / "fixtures/recordings/overview.json"), annunciate="loud")


async def test_an_engine_gone_and_back_does_not_ring_again() -> None:
    from dataclasses import replace

    from tests.support.annunciate_console import ScriptedAlarms

    api = ScriptedAlarms(Path(os.devnull))
    ringing = api.frames[1]
    api.frames = (ringing,) * 3
    app = make_app(api, annunciate="high", refresh_hz=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.tick()
        assert app.bells == 1
        api.frames = (replace(ringing, stale="engine gone 3 s"),) * 3
        app.tick()
        api.frames = (ringing,) * 3
        app.tick()
        assert app.bells == 1 and app.flashing
