"""A process that runs a real engine headless and takes alarm operations on stdin, for the
restart tests (tests/test_alarm_restart.py).

    python -m tests.support.alarm_driver PLANT

The engine runs in the main thread as `floorconsole run --headless` runs it (run_forever:
SIGTERM stops it cleanly); a thread reads one JSON object a line from stdin and runs it on
the engine's loop, answering one JSON line on stdout:

    {"op": "state"}                            -> {"alarms": [...], "rules": [...]} (rule
                                                  actions in flight finished and the journal
                                                  flushed first, so a kill after it loses
                                                  nothing the answer showed)
    {"op": "ack" | "suppress" | "oos", "alarm": ID}
    {"op": "shelve", "alarm": ID, "duration_s": S, "reason": TEXT}

An operation the alarm's state refuses answers {"error": why}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from floorconsole.core.config import load_plant
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.runtime import Engine


def say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(e: Engine) -> None:
    e._ready.wait(30)
    say({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        loop = e.loop
        assert loop is not None

        async def run(cmd: dict[str, Any] = cmd) -> Any:
            c = e.active.control
            op = cmd["op"]
            if op == "state":
                # Actions in flight first (a write runs after its journal record, a few ms
                # behind the alarm it goes with), so the answer and the device agree. No
                # wait_for around it: that would let the loop turn between idle and status.
                await c.idle()
                return c.status()
            if op == "ack":
                return c.acknowledge(cmd["alarm"], "op1")
            if op == "shelve":
                return c.shelve(cmd["alarm"], cmd["duration_s"], "op1", cmd["reason"])
            if op == "suppress":
                return [str(e.alarms.suppress(cmd["alarm"], "logic", "unit stopped"))]
            if op == "oos":
                return [str(e.alarms.remove_from_service(cmd["alarm"], "eng1", "sensor swap"))]
            raise ValueError(f"unknown op {op!r}")

        try:
            result = asyncio.run_coroutine_threadsafe(run(), loop).result(10)
        except Exception as err:  # noqa: BLE001 - answered, the test decides
            say({"error": str(err)})
            continue
        e.journal.flush()
        say(result)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plant_file = Path(sys.argv[1])
    plant = load_plant(plant_file)
    e = open_engine(
        data_dir=plant.edge.data_dir,
        base_dir=plant_file.resolve().parent,
        user="driver",
        plant_file=plant_file,
        attach=False,
    )
    threading.Thread(target=serve, args=(e,), daemon=True).start()
    e.run_forever()


if __name__ == "__main__":
    main()
