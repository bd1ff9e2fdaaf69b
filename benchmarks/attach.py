"""Do attached consoles slow the engine? 500 signals changing at 50 Hz, with no console and
with 5 consoles attached over the socket, each drawing at its default 4 Hz.

A pymodbus server in another process holds 500 registers that change at 50 Hz; the engine
polls them every 20 ms and records every sample (as benchmarks/ui_load.py). The 5 consoles
are real ones (`floorconsole attach`), each in its own process on its own pseudo-terminal
(80x24), drawing and writing to it as over SSH; another process reads their terminals. Ingest
is measured alone, with the consoles, and alone again (the two "alone" figures averaged), in
one run.

    .venv/bin/python benchmarks/attach.py

Prints figures and ends with one line of JSON holding ingest_ratio_5_consoles.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ui_load import RATE_HZ, SERVER, SIGNALS, plant_text  # noqa: E402
from floorconsole.core.config import parse_plant  # noqa: E402
from floorconsole.engine.attach import dumps, socket_path  # noqa: E402
from floorconsole.engine.bootstrap import open_engine  # noqa: E402
from floorconsole.engine.runtime import Engine  # noqa: E402

CONSOLES = 5
CONSOLE_HZ = 4.0
MEASURE_S = 6.0
WARMUP_S = 2.0

# Starts the consoles on their terminals, reads what they write, says "ready" once each has
# drawn, then on a line from stdin counts bytes for the measuring time, prints them per
# console, and ends the consoles.
CONSOLES_SCRIPT = r"""
import json, os, signal, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from benchmarks.ui_load import console_env, drain, open_pty, stop
path, n, hz, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
masters, procs = [], []
for _ in range(n):
    master, tty = open_pty(80, 24)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "floorconsole.cli", "attach", "--socket", path, "--refresh", str(hz)],
        stdin=tty, stdout=tty, stderr=tty, env=console_env(), start_new_session=True))
    os.close(tty)
    masters.append(master)
try:
    counts = [0] * n
    deadline = time.monotonic() + 60
    while min(counts) < 2000 and time.monotonic() < deadline:  # each has drawn its screen
        drain(masters, time.monotonic() + 0.2, counts)
    print("ready", flush=True)
    drain(masters, time.monotonic() + 1.0)
    sys.stdin.readline()
    counts = [0] * n
    t0 = time.monotonic()
    drain(masters, t0 + seconds, counts)
    dt = time.monotonic() - t0
    print(json.dumps([c / dt for c in counts]), flush=True)
finally:
    for p in procs:
        stop(p)
"""


def measure_ingest(engine: Engine, seconds: float) -> float:
    n0, t0 = engine.samples_in, time.monotonic()
    time.sleep(seconds)
    return (engine.samples_in - n0) / (time.monotonic() - t0)


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
        with tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp:
            plant = parse_plant(plant_text(port, Path(tmp)))
            engine = open_engine(
                data_dir=plant.edge.data_dir, base_dir=Path(tmp), user="bench", plant_raw=plant.raw
            )
            engine.start_background()
            try:
                srv = engine.attach_server
                assert srv is not None, "the engine is not listening for consoles"
                time.sleep(WARMUP_S)
                frame = engine.api.frame()
                t0 = time.perf_counter()
                for _ in range(20):
                    engine.api.frame()
                build_ms = (time.perf_counter() - t0) / 20 * 1000
                t0 = time.perf_counter()
                for _ in range(20):
                    data = dumps(frame)
                json_ms = (time.perf_counter() - t0) / 20 * 1000
                bare1 = measure_ingest(engine, MEASURE_S)
                consoles = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CONSOLES_SCRIPT,
                        str(socket_path(engine.data_dir)),
                        str(CONSOLES),
                        str(CONSOLE_HZ),
                        str(MEASURE_S),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                assert consoles.stdin is not None and consoles.stdout is not None
                assert consoles.stdout.readline().strip() == "ready"
                time.sleep(WARMUP_S)
                consoles.stdin.write("go\n")
                consoles.stdin.flush()
                built0, served0, build_s0 = srv.frames_built, srv.frames_served, srv.build_s
                bytes0 = srv.frame_bytes_out
                t_served = time.monotonic()
                with_consoles = measure_ingest(engine, MEASURE_S)
                built, served = srv.frames_built - built0, srv.frames_served - served0
                answer_bytes = (srv.frame_bytes_out - bytes0) / max(1, served)
                fps = [served / (time.monotonic() - t_served) / CONSOLES]
                serve_ms = (srv.build_s - build_s0) / max(1, built) * 1000
                tty_bytes = json.loads(consoles.stdout.readline())
                consoles.wait(20)
                bare2 = measure_ingest(engine, MEASURE_S)
            finally:
                engine.stop()
    finally:
        server.kill()
        server.wait()
    bare = (bare1 + bare2) / 2
    ratio = with_consoles / bare
    offered = SIGNALS * RATE_HZ
    print(f"offered               {offered:>10,.0f} samples/s ({SIGNALS} signals at {RATE_HZ} Hz)")
    print(
        f"ingest, no console    {bare:>10,.0f} samples/s ({bare1:,.0f} before, {bare2:,.0f} after)"
    )
    print(f"ingest, {CONSOLES} consoles    {with_consoles:>10,.0f} samples/s")
    print(f"ratio                 {ratio:>10.3f}")
    print(f"console frames/s      {fps[0]:.2f} served per console (each asks at {CONSOLE_HZ:g} Hz)")
    print(f"console to its tty    {', '.join(f'{x:,.0f}' for x in tty_bytes)} bytes/s")
    print(
        f"frame                 {len(data):>10,d} bytes of JSON; build {build_ms:.2f} ms, "
        f"serialize {json_ms:.2f} ms"
    )
    print(f"frame answer          {answer_bytes:>10,.0f} bytes a pull (what changed, on average)")
    print(
        f"served / built        {served} / {built} frames "
        f"({served / max(1, built):.2f} consoles per build, {serve_ms:.2f} ms a build)"
    )
    print(
        json.dumps(
            {
                "ingest_ratio_5_consoles": round(ratio, 3),
                "ingest_no_console_per_s": round(bare),
                "ingest_5_consoles_per_s": round(with_consoles),
                "console_fps": round(fps[0], 2),
                "console_tty_bytes_per_s": [round(x) for x in tty_bytes],
                "frame_bytes": len(data),
                "frame_answer_bytes": round(answer_bytes),
                "frame_build_ms": round(build_ms, 2),
                "frame_serialize_ms": round(json_ms, 2),
                "frames_served": served,
                "frames_built": built,
                "offered_per_s": offered,
            }
        )
    )


if __name__ == "__main__":
    main()
