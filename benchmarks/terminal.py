"""What a console costs a slow link: bytes per second a live demo console writes to its
terminal, under a real pseudo-terminal (Textual's headless mode skips encoding and writing,
which is the cost that matters over SSH), at 80x24 and 160x48 at the default refresh.

    .venv/bin/python benchmarks/terminal.py

The baseline is the plain text of a full screen rewritten at every refresh (cols x rows bytes
at 4 Hz): a ratio of 1.0 means the console sends as much as repainting every cell's character
once per frame, without any colour. Ends with one line of JSON: terminal_bytes_per_s_80x24,
terminal_bytes_per_s_160x48 and their ratios.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFRESH_HZ = 4.0  # the console's default
WARMUP_S = 12.0  # the demo starts its plant, engine and model; the first full paint is not counted
MEASURE_S = 20.0


def measure(cols: int, rows: int) -> float:
    """Bytes per second the demo console writes to a cols x rows terminal, once warm."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    with tempfile.TemporaryDirectory(prefix="fc-term-") as data:
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "", "PYTHONPATH": str(ROOT)}
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
        counted = 0
        try:
            t0 = time.monotonic()
            t_measure = t0 + WARMUP_S
            t_end = t_measure + MEASURE_S
            while (now := time.monotonic()) < t_end:
                r, _, _ = select.select([master], [], [], 0.1)
                if not r:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the demo ended early ({proc.returncode})")
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    raise RuntimeError("the demo closed its terminal") from None
                if now >= t_measure:
                    counted += len(chunk)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            os.close(master)
    return counted / MEASURE_S


def main() -> None:
    figures: dict[str, float] = {}
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
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
