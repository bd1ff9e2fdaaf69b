"""A process that puts and activates snapshots in a loop, for the kill -9 test.

    python -m tests.support.snapshot_writer DB --start K --cycles N [--blob-kib 512]

Cycle i puts a snapshot (a rule threshold and a model file of its own, so every cycle writes
new blobs), records it applied, then health-ok, printing "put i ID", "applied i ID" and
"ok i ID" after each commit. The content of cycle i is the same on every run, so a killed
run can be resumed from any cycle.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from floorconsole.adapters.snapshot_store import SnapshotStore
from floorconsole.core.snapshot import ModelFiles


def cycle_config(i: int) -> dict[str, Any]:
    return {
        "edge": {"id": "kill-test"},
        "models": [{"id": "m", "package": "models/m", "inputs": {"x": "s"}}],
        "rules": [
            {
                "id": "trip",
                "signal": "s",
                "op": ">",
                "threshold": i / 1000,
                "actions": [{"alarm": "high", "message": f"cycle {i}"}],
            }
        ],
    }


def cycle_files(i: int, blob_kib: int) -> dict[str, ModelFiles]:
    onnx = random.Random(i).randbytes(blob_kib * 1024)
    sidecar = json.dumps({"name": "m", "version": f"1.0.{i}", "onnx": {"file": "m.onnx"}}).encode()
    return {"m": ModelFiles(onnx=onnx, sidecar=sidecar)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--blob-kib", type=int, default=512)
    args = parser.parse_args(argv)

    store = SnapshotStore(args.db)
    print("started", flush=True)
    parent = store.active()
    parent_id = parent.snapshot if parent else None
    for i in range(args.start, args.cycles):
        snap = store.put(
            cycle_config(i),
            cycle_files(i, args.blob_kib),
            author="writer",
            message=f"cycle {i}",
            parent=parent_id,
        )
        print(f"put {i} {snap.id}", flush=True)
        store.record_activation(snap.id, "applied", by="writer")
        print(f"applied {i} {snap.id}", flush=True)
        store.record_activation(snap.id, "health-ok", by="writer")
        print(f"ok {i} {snap.id}", flush=True)
        parent_id = snap.id
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
