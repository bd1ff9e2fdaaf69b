"""What a console costs a slow link: bytes per second a live demo console writes to its
terminal, under a real pseudo-terminal (Textual's headless mode skips encoding and writing,
which is the cost that matters over SSH), at 80x24 and 160x48 at the default refresh; the
same at 80x24 with FLOORCONSOLE_SCREEN_DIFF=0 (Textual's own output, every dirty line whole)
for comparison; and that a value going bad still shows within one refresh.

    .venv/bin/python benchmarks/terminal.py

The baseline is the plain text of a full screen rewritten at every refresh (cols x rows bytes
at 4 Hz): a ratio of 1.0 means the console sends as much as repainting every cell's character
once per frame, without any colour.

The staleness check: the demo's drive is taken offline (its fault 6, asked for over the
engine's socket as operator op1) while an observer on that socket pulls frames at 30 Hz; the
time from the observer's last frame with motor1.current GOOD to the moment the bytes the
console sent (read by pyte, a terminal emulator) show it not GOOD is an upper bound of the
delay, to hold within one refresh (250 ms) plus the observer's period.

Ends with one line of JSON: terminal_bytes_per_s_80x24, terminal_bytes_per_s_160x48, their
ratios, terminal_bytes_per_s_80x24_textual (no diff), stale_shown_within_s and
stale_within_one_refresh.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFRESH_HZ = 4.0  # the console's default
WARMUP_S = 12.0  # the demo starts its plant, engine and model; the first full paint is not counted
MEASURE_S = 20.0
OBSERVER_HZ = 30.0
WATCHED = "motor1.current"
DROPOUT_KEY = "dropout"


@contextmanager
def demo_console(
    cols: int, rows: int, data: str, diff: bool = True
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The demo (engine and console in one process) on a cols x rows pseudo-terminal: yields
    the terminal's master side and the process."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "", "PYTHONPATH": str(ROOT)}
    if not diff:
        env["FLOORCONSOLE_SCREEN_DIFF"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "floorconsole.cli", "demo", "--data-dir", data],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        yield master, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def read_some(master: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    r, _, _ = select.select([master], [], [], timeout)
    if not r:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo ended early ({proc.returncode})")
        return b""
    try:
        return os.read(master, 65536)
    except OSError:
        raise RuntimeError("the demo closed its terminal") from None


def measure(cols: int, rows: int, diff: bool = True) -> float:
    """Bytes per second the demo console writes to a cols x rows terminal, once warm."""
    with tempfile.TemporaryDirectory(prefix="fc-term-") as data:
        with demo_console(cols, rows, data, diff) as (master, proc):
            counted = 0
            t_measure = time.monotonic() + WARMUP_S
            t_end = t_measure + MEASURE_S
            while (now := time.monotonic()) < t_end:
                chunk = read_some(master, proc, 0.1)
                if now >= t_measure:
                    counted += len(chunk)
    return counted / MEASURE_S


def stale_check(cols: int = 80, rows: int = 24) -> float | None:
    """Upper bound of the time from the engine marking WATCHED not GOOD to the console's
    terminal showing it (None: pyte is not installed, the check is skipped)."""
    try:
        import pyte
    except ImportError:
        print("stale check skipped: pyte (a test extra) is not installed")
        return None
    from floorconsole.engine.attach import socket_path
    from floorconsole.engine.remote import RemoteAPI

    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)

    def shown() -> str:
        """The quality the console's terminal shows for WATCHED ('' while not on screen)."""
        for line in screen.display:
            if line.strip().startswith(WATCHED + " "):
                return "GOOD" if "GOOD" in line else "not GOOD"
        return ""

    with tempfile.TemporaryDirectory(prefix="fc-stale-", dir="/tmp") as data:
        with demo_console(cols, rows, data) as (master, proc):
            deadline = time.monotonic() + 60
            while shown() != "GOOD" or not socket_path(Path(data)).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the demo console never showed its signals")
                stream.feed(read_some(master, proc, 0.1))
            api = RemoteAPI(socket_path(Path(data)), refresh_hz=OBSERVER_HZ).connect(timeout=10)
            try:
                session = api.login("op1", "1111")["session"]
                t_good = t_shown = 0.0
                api.command("demo.toggle", session=session, fault=DROPOUT_KEY)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    stream.feed(read_some(master, proc, 0.005))
                    now = time.monotonic()
                    seen = {s.id: s.quality for s in api.frame().signals}
                    if seen.get(WATCHED) == "GOOD":
                        t_good = now
                    if shown() == "not GOOD":
                        t_shown = now
                        break
                else:
                    raise RuntimeError(f"{WATCHED} never showed not GOOD after the dropout")
            finally:
                api.close()
    return t_shown - t_good


def main() -> None:
    figures: dict[str, float | bool | None] = {}
    for cols, rows in ((80, 24), (160, 48)):
        rate = measure(cols, rows)
        baseline = cols * rows * REFRESH_HZ
        key = f"{cols}x{rows}"
        figures[f"terminal_bytes_per_s_{key}"] = round(rate)
        figures[f"terminal_ratio_{key}"] = round(rate / baseline, 3)
        print(
            f"{key}: {rate:,.0f} bytes/s to the terminal at {REFRESH_HZ:g} Hz; a plain full "
            f"repaint would be {baseline:,.0f} bytes/s: ratio {rate / baseline:.2f}"
        )
    plain = measure(80, 24, diff=False)
    figures["terminal_bytes_per_s_80x24_textual"] = round(plain)
    print(
        f"80x24 with FLOORCONSOLE_SCREEN_DIFF=0 (Textual's own output): {plain:,.0f} bytes/s; "
        f"the diff sends {figures['terminal_bytes_per_s_80x24'] / plain:.2f} of it"
    )
    delay = stale_check()
    if delay is not None:
        limit = 1 / REFRESH_HZ + 1 / OBSERVER_HZ
        figures["stale_shown_within_s"] = round(delay, 3)
        figures["stale_within_one_refresh"] = delay <= limit
        print(
            f"{WATCHED} not GOOD on the terminal within {delay * 1000:.0f} ms of the engine "
            f"saying so (one refresh {1000 / REFRESH_HZ:.0f} ms + the observer's "
            f"{1000 / OBSERVER_HZ:.0f} ms: {'yes' if delay <= limit else 'NO'})"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
