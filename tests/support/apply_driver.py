"""A process that runs a real engine and applies edited configurations in a loop, for the
engine-level kill -9 test (tests/test_apply_kill.py).

    python -m tests.support.apply_driver PLANT DATA_DIR --start K --total N [--health-s S]

It starts the engine the way `floorconsole run -c PLANT` does (bootstrap.open_engine with the
plant file: the active snapshot runs, so the console's changes survive a restart), prints what it
runs, then for attempt i = K .. N-1 edits the running configuration into cycle_config(i) and
applies it with SnapshotManager.apply on the engine's loop, as the config.apply command does.
Lines, each flushed:

    running {json}      once the engine has started: see running_state()
    begin i             just before attempt i is handed to the engine
    swap i / swapped i  around the engine's swap of configurations (the in-memory step that
                        leaves no trace in the store, so the test can tell where a kill hit)
    done i {json}       the apply's result, once it returned
    finished            after the last attempt (then the engine stops cleanly)

Attempt i always asks for the same content, whatever the run, so the test knows from the
store's messages ("cycle i") which snapshot an attempt made.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from floorconsole.core.config import ModbusPoint
from floorconsole.core.snapshot import make_snapshot, read_model_files
from floorconsole.engine import runtime
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.runtime import Engine
from floorconsole.engine.snapshots import ApplyRefused

RULE = "trip-temp"
SCALED = "motor1.temp"
APPLY_TIMEOUT_S = 60.0


def cycle_config(base: dict[str, Any], i: int) -> dict[str, Any]:
    """The configuration attempt i applies: the running one with the rule's threshold and one
    signal's scale of its own (neither ever equals the plant file's)."""
    cfg = copy.deepcopy(base)
    next(r for r in cfg["rules"] if r["id"] == RULE)["threshold"] = 100.0 + i / 8
    next(s for s in cfg["signals"] if s["id"] == SCALED)["scale"] = 0.1 + (i % 5 + 1) / 1000
    cfg["edge"]["site"] = f"kill test, cycle {i}"
    return cfg


def running_state(e: Engine) -> dict[str, Any]:
    """What the engine runs, read from its parts rather than from its snapshot manager: the id
    the running plant (with the model files it loaded from disk) hashes to, the typed rule
    threshold and signal scale, and the sha256 pair of every loaded ONNX package."""
    assert e.snapshots is not None
    plant = e.plant
    content = make_snapshot(
        plant.raw,
        read_model_files(plant.raw, Path("/")),
        parent=None,
        author="",
        message="",
        created=0.0,
    )
    rule = next(r for r in plant.rules if r.id == RULE)
    signal = next(s for s in plant.signals if s.id == SCALED)
    models = {
        mid: [r.model.onnx_sha256, r.model.sidecar_sha256] if r.model else None
        for mid, r in e.models.items()
    }
    assert isinstance(signal.source, ModbusPoint)
    return {
        "snapshot": e.snapshots.active.id,
        "content_id": content.id,
        "threshold": rule.threshold,
        "scale": signal.source.scale,
        "models": models,
    }


def say(line: str) -> None:
    """One whole line in one write, so a kill cannot leave half of one (the test ignores a
    last line without its newline all the same)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class SwapLines(logging.Handler):
    """'swap i' and 'swapped i' from the engine's own log lines around its swap of
    configurations (Engine.swap: "snapshot X replacing Y", then "snapshot X replaced Y")."""

    def __init__(self, attempt: list[int]) -> None:
        super().__init__(logging.DEBUG)
        self.attempt = attempt  # [the attempt in flight], set by main()

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("snapshot %s replacing"):
            say(f"swap {self.attempt[0]}")
        elif str(record.msg).startswith("snapshot %s replaced"):
            say(f"swapped {self.attempt[0]}")


def apply(e: Engine, cfg: dict[str, Any], *, message: str) -> dict[str, Any]:
    """What the config.apply command does once the session is checked: SnapshotManager.apply
    on the engine's loop (EngineAPI.command now takes the user from a login session, which
    this test has no use for)."""
    assert e.snapshots is not None and e.loop is not None
    fut = asyncio.run_coroutine_threadsafe(
        e.snapshots.apply(cfg, user="driver", message=message), e.loop
    )
    try:
        return fut.result(APPLY_TIMEOUT_S).as_dict()
    except ApplyRefused as err:
        return {"ok": False, "message": f"refused, nothing changed: {err}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plant", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--total", type=int, default=100)
    parser.add_argument("--health-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    e = open_engine(
        data_dir=args.data_dir,
        base_dir=args.plant.parent,
        user="driver",
        plant_file=args.plant,
        health_window_s=args.health_s,
    )
    attempt = [-1]
    engine_log = logging.getLogger(runtime.__name__)
    engine_log.setLevel(logging.DEBUG)
    engine_log.propagate = False  # its debug lines are for SwapLines, not stderr
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    engine_log.addHandler(to_stderr)
    engine_log.addHandler(SwapLines(attempt))
    e.start_background()
    say(f"running {json.dumps(running_state(e))}")
    try:
        for i in range(args.start, args.total):
            cfg = cycle_config(e.api.active_config(), i)
            attempt[0] = i
            say(f"begin {i}")
            t0 = time.monotonic()
            r = apply(e, cfg, message=f"cycle {i}")
            r["wall"] = round(time.monotonic() - t0, 3)
            say(f"done {i} {json.dumps(r)}")
    finally:
        e.stop()
    say("finished")


if __name__ == "__main__":
    main()
