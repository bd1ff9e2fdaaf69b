"""Does a console slow the engine? 500 signals changing at 50 Hz, with and without a console.

A pymodbus server in another process holds 500 registers that change at 50 Hz; the engine
polls them every 20 ms (4 blocks of 125), decodes, and records every sample. The engine runs
as `floorconsole run`: headless (no console), then with its console in the same process
drawing to a real pseudo-terminal at 120x40 (Textual's encoding and the writes included, as
over SSH), then headless again; the two headless figures are averaged. Ingest is the rows the
historian committed per second, read from two frames over the engine's socket.

    .venv/bin/python benchmarks/ui_load.py

Prints figures and ends with one line of JSON: ingest_ratio_with_ui, the rates, and the bytes
per second the console wrote to its terminal.
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

from floorconsole.engine.attach import socket_path  # noqa: E402
from floorconsole.engine.remote import RemoteAPI  # noqa: E402

SIGNALS = 500
RATE_HZ = 50
MEASURE_S = 8.0
WARMUP_S = 4.0
COLS, ROWS = 120, 40

SERVER = r"""
import sys, time
from floorconsole.adapters.modbus_server import ModbusDeviceServer
n, hz = int(sys.argv[1]), float(sys.argv[2])
s = ModbusDeviceServer(name="ui-load")
s.start()
print(s.port, flush=True)
i = 0
next_t = time.monotonic()
while True:
    i += 1
    s.set("hr", 0, [(i + k) % 1000 for k in range(n)])
    next_t += 1.0 / hz
    time.sleep(max(0.0, next_t - time.monotonic()))
"""


def plant_text(port: int, data_dir: Path) -> str:
    lines = [
        f'[edge]\nid = "bench"\nsite = "ui load"\ndata_dir = "{data_dir}"\n',
        f'[[devices]]\nid = "dev"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
        f'port = {port}\npoll = "{1000 // RATE_HZ}ms"\ntimeout = "500ms"\nretries = 0\n',
    ]
    for k in range(SIGNALS):
        lines.append(
            f'[[signals]]\nid = "asset{k // 50:02d}.sig{k:03d}"\ndevice = "dev"\n'
            f'address = "hr:{k}"\ntype = "uint16"\nrange = [0, 1000]\n'
        )
    return "\n".join(lines)


@contextmanager
def modbus_server() -> Iterator[int]:
    """The changing registers, in a process of their own: yields the port."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(SIGNALS), str(RATE_HZ)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()


def open_pty(cols: int, rows: int) -> tuple[int, int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return master, slave


def console_env() -> dict[str, str]:
    return {**os.environ, "TERM": "xterm-256color", "COLORTERM": "", "PYTHONPATH": str(ROOT)}


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def drain(masters: list[int], until: float, counts: list[int] | None = None) -> None:
    """Read what the consoles write (as a terminal would) until `until`, counting bytes."""
    while (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select(masters, [], [], min(0.1, left))
        for fd in ready:
            try:
                n = len(os.read(fd, 65536))
            except OSError:
                continue
            if counts is not None:
                counts[masters.index(fd)] += n


def rows_committed(api: RemoteAPI) -> tuple[int, float]:
    return api.refresh().historian.rows_committed, time.monotonic()


def run_engine(plant: Path, data_dir: Path, console: bool) -> tuple[float, float]:
    """Ingest (rows committed per second) of `floorconsole run`, headless or with its console
    on a pseudo-terminal; and the bytes per second that console wrote (0 headless)."""
    cmd = [sys.executable, "-m", "floorconsole.cli", "run", "-c", str(plant)]
    cmd += ["--data-dir", str(data_dir)]
    masters: list[int] = []
    tty = subprocess.DEVNULL
    if console:
        master, tty = open_pty(COLS, ROWS)
        masters.append(master)
    else:
        cmd.append("--headless")
    proc = subprocess.Popen(
        cmd, stdin=tty, stdout=tty, stderr=tty, cwd=ROOT, env=console_env(), start_new_session=True
    )
    if console:
        os.close(tty)
    try:
        sock = socket_path(data_dir)
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not start ({proc.returncode})")
            drain(masters, time.monotonic() + 0.1)
        api = RemoteAPI(sock, refresh_hz=0.2).connect(timeout=10)  # two frames matter
        try:
            drain(masters, time.monotonic() + WARMUP_S)
            n0, t0 = rows_committed(api)
            counts = [0] * len(masters)
            drain(masters, t0 + MEASURE_S, counts)
            n1, t1 = rows_committed(api)
        finally:
            api.close()
    finally:
        stop(proc)
        for fd in masters:
            os.close(fd)
    return (n1 - n0) / (t1 - t0), sum(counts) / (t1 - t0)


def main() -> None:
    with modbus_server() as port, tempfile.TemporaryDirectory(prefix="fc-ui-", dir="/tmp") as tmp:
        plant = Path(tmp) / "plant.toml"
        plant.write_text(plant_text(port, Path(tmp) / "data"))
        bare1, _ = run_engine(plant, Path(tmp) / "a", console=False)
        with_ui, ui_bytes = run_engine(plant, Path(tmp) / "b", console=True)
        bare2, _ = run_engine(plant, Path(tmp) / "c", console=False)
    bare = (bare1 + bare2) / 2
    offered = SIGNALS * RATE_HZ
    print(f"offered            {offered:>10,.0f} samples/s ({SIGNALS} signals at {RATE_HZ} Hz)")
    print(f"ingest, no console {bare:>10,.0f} samples/s ({bare1:,.0f} before, {bare2:,.0f} after)")
    print(f"ingest, console    {with_ui:>10,.0f} samples/s (console on a {COLS}x{ROWS} pty)")
    print(f"ratio              {with_ui / bare:>10.3f}")
    print(f"console to its tty {ui_bytes:>10,.0f} bytes/s (default refresh, 4 Hz)")
    print(
        json.dumps(
            {
                "ingest_ratio_with_ui": round(with_ui / bare, 3),
                "ingest_no_ui_per_s": round(bare),
                "ingest_with_ui_per_s": round(with_ui),
                "console_bytes_per_s": round(ui_bytes),
                "offered_per_s": offered,
            }
        )
    )


if __name__ == "__main__":
    main()
