"""Rollback time on the demo plant: from the command to the earlier snapshot active and
health-checked, model included (its ONNX session rebuilt from the stored package).

    .venv/bin/python benchmarks/rollback.py

Two snapshots differ in the trip threshold; we roll back and forth 20 times. The baseline
is a bare swap to a configuration built in advance (no store, no validation, no health check)
in the same run. Ends with one line of JSON: rollback_median_s, rollback_max_s.
"""

from __future__ import annotations

import asyncio
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from floorconsole.engine.bootstrap import open_engine  # noqa: E402
from floorconsole.engine.demo import DemoPlant  # noqa: E402

DEMO = ROOT / "fixtures" / "plants" / "demo.toml"
ROLLBACKS = 20


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, DemoPlant(DEMO) as demo:
        engine = open_engine(
            data_dir=Path(tmp),
            base_dir=DEMO.parent,
            user="bench",
            plant_raw=demo.plant.raw,
            source="demo plant",
            demo=demo.sim,
        )
        engine.start_background()
        try:
            mgr = engine.snapshots
            assert mgr is not None
            deadline = time.monotonic() + 30
            while len(mgr.store.activations()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)  # the start-up health check (the model settles 8 s)
            first = mgr.active.id
            engine.users().add("bench", "engineer", "2468")  # an engineer applies and rolls back
            session = engine.api.login("bench", "2468")["session"]
            cfg = copy.deepcopy(engine.api.active_config())
            cfg["rules"][0]["threshold"] = 0.7
            r = engine.api.command(
                "config.apply", config=cfg, message="bench: threshold 0.7", session=session
            )
            assert r["ok"], r
            second = r["snapshot"]
            times, reported = [], []
            for i in range(ROLLBACKS):
                target = first if i % 2 == 0 else second
                t0 = time.perf_counter()
                r = engine.api.command("snapshot.rollback", snapshot=target, session=session)
                times.append(time.perf_counter() - t0)
                assert r["ok"] and r["snapshot"] == target, r
                assert engine.models["motor1_anomaly"].model is not None
                reported.append(r["seconds"])
            # baseline: a bare swap to a prebuilt configuration, same engine, same run
            bare = []
            assert engine.loop is not None
            for _ in range(5):
                cfg_obj = engine.build(engine.plant)
                t0 = time.perf_counter()
                asyncio.run_coroutine_threadsafe(
                    engine.swap(cfg_obj, carry_values=True), engine.loop
                ).result(30)
                bare.append(time.perf_counter() - t0)
        finally:
            engine.stop()
    med, worst = statistics.median(times), max(times)
    print(f"rollbacks            {ROLLBACKS} (model included, health-checked)")
    print(f"median               {med:.3f} s")
    print(f"max                  {worst:.3f} s")
    print(f"bare swap median     {statistics.median(bare):.3f} s (no store, no check)")
    print(
        json.dumps(
            {
                "rollback_median_s": round(med, 3),
                "rollback_max_s": round(worst, 3),
                "bare_swap_median_s": round(statistics.median(bare), 3),
                "rollback_over_bare": round(med / max(statistics.median(bare), 1e-6), 1),
                "rollbacks": ROLLBACKS,
            }
        )
    )


if __name__ == "__main__":
    main()
