"""Does a console slow the engine? 500 signals changing at 50 Hz, with and without a console.

A pymodbus server in another process holds 500 registers that change at 50 Hz; the engine
polls them every 20 ms (4 blocks of 125), decodes, and records every sample. We measure the
engine's ingest rate for a fixed time with no console, then with the console running headless
in the same process at its default tick (4 Hz), and the frame rate the console actually held.

    .venv/bin/python benchmarks/ui_load.py

Prints figures and ends with one line of JSON: ingest_ratio_with_ui, ui_fps, and the rates.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from floorconsole.core.config import parse_plant  # noqa: E402
from floorconsole.engine.bootstrap import open_engine  # noqa: E402
from floorconsole.engine.runtime import Engine  # noqa: E402

SIGNALS = 500
RATE_HZ = 50
MEASURE_S = 8.0
WARMUP_S = 2.0

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


def measure_ingest(engine: Engine, seconds: float) -> float:
    n0, t0 = engine.hub.samples_in, time.monotonic()
    time.sleep(seconds)
    return (engine.hub.samples_in - n0) / (time.monotonic() - t0)


async def with_console(engine: Engine) -> tuple[float, float]:
    from floorconsole.ui.app import make_app

    app = make_app(engine.api)  # default tick: 4 Hz
    async with app.run_test(headless=True, size=(120, 40)):
        await asyncio.sleep(WARMUP_S)
        n0, f0, t0 = engine.hub.samples_in, app.frames_shown, time.monotonic()
        await asyncio.sleep(MEASURE_S)
        dt = time.monotonic() - t0
        return (engine.hub.samples_in - n0) / dt, (app.frames_shown - f0) / dt


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(SIGNALS), str(RATE_HZ)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            plant = parse_plant(plant_text(port, Path(tmp)))
            engine = open_engine(
                data_dir=plant.edge.data_dir, base_dir=Path(tmp), user="bench", plant_raw=plant.raw
            )
            engine.start_background()
            try:
                time.sleep(WARMUP_S)
                bare = measure_ingest(engine, MEASURE_S)
                ui_rate, fps = asyncio.run(with_console(engine))
                rows = engine.historian.stats.rows_committed
            finally:
                engine.stop()
    finally:
        server.kill()
        server.wait()
    offered = SIGNALS * RATE_HZ
    print(f"offered            {offered:>10,.0f} samples/s ({SIGNALS} signals at {RATE_HZ} Hz)")
    print(f"ingest, no console {bare:>10,.0f} samples/s")
    print(f"ingest, console    {ui_rate:>10,.0f} samples/s")
    print(f"ratio              {ui_rate / bare:>10.3f}")
    print(f"console frames/s   {fps:>10.2f} (tick 4 Hz)")
    print(f"historian rows     {rows:>10,d}")
    print(
        json.dumps(
            {
                "ingest_ratio_with_ui": round(ui_rate / bare, 3),
                "ui_fps": round(fps, 2),
                "ingest_no_ui_per_s": round(bare),
                "ingest_with_ui_per_s": round(ui_rate),
                "offered_per_s": offered,
            }
        )
    )


if __name__ == "__main__":
    main()
