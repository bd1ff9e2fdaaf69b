"""A real engine in a process of its own, for tests that measure it from outside (its RSS, its
ingest) or signal it: a Modbus device in another process whose registers change at 50 Hz,
and `floorconsole run --headless` on a plant file that polls them, logging to a file.

    with EngineProcess(folder) as e:
        e.socket, e.pid, e.rss_mb(), e.log_text()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DEVICE = r"""
import sys, time
from floorconsole.adapters.modbus_server import ModbusDeviceServer
n = int(sys.argv[1])
s = ModbusDeviceServer(name="changing")
s.start()
print(s.port, flush=True)
i = 0
next_t = time.monotonic()
while True:
    i += 1
    s.set("hr", 0, [(i + k) % 1000 for k in range(n)])
    next_t += 0.02
    time.sleep(max(0.0, next_t - time.monotonic()))
"""


def plant_text(port: int, signals: int, poll_ms: int, edge_extra: str = "") -> str:
    lines = [
        f'[edge]\nid = "proc"\nsite = "engine in a process"\ndata_dir = "data"\n{edge_extra}\n',
        f'[[devices]]\nid = "dev"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\n'
        f'port = {port}\npoll = "{poll_ms}ms"\ntimeout = "500ms"\nretries = 0\n',
    ]
    for k in range(signals):
        lines.append(
            f'[[signals]]\nid = "asset{k // 25:02d}.sig{k:03d}"\ndevice = "dev"\n'
            f'address = "hr:{k}"\ntype = "uint16"\nrange = [0, 1000]\n'
        )
    return "\n".join(lines)


class EngineProcess:
    """`floorconsole run --headless` in a process group of its own, on a changing device."""

    def __init__(
        self, folder: Path, *, signals: int = 100, poll_ms: int = 20, edge_extra: str = ""
    ) -> None:
        self.folder = Path(folder)
        self.signals, self.poll_ms, self.edge_extra = signals, poll_ms, edge_extra
        self.data_dir = self.folder / "data"
        self.socket = self.data_dir / "engine.sock"
        self.log_path = self.folder / "engine.log"
        self.device: subprocess.Popen[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> EngineProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.device = subprocess.Popen(
            [sys.executable, "-c", DEVICE, str(self.signals)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        try:
            assert self.device.stdout is not None
            port = int(self.device.stdout.readline())
            plant = self.folder / "plant.toml"
            plant.write_text(plant_text(port, self.signals, self.poll_ms, self.edge_extra))
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "floorconsole.cli", "run", "--headless", "-c", plant],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 30
            while not self.socket.exists():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the engine did not start:\n{self.log_text()}")
                time.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.device is not None:
            self.device.kill()
            self.device.wait()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
