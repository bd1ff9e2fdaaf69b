"""Drift calibration figures: false drift warnings on healthy running, and how soon the slow
sensor drift is seen.

    .venv/bin/python benchmarks/drift_calibration.py [--seeds 4] [--hours 8] [--window N]
                                                     [--persist N]

A. Healthy: for each seed, a simulator motor (core.plantsim, its normal load profile: two load
   cycles and a random walk, 30-90 %) stepped 0.5 s a window for --hours of plant time (no
   wall clock: a fake one), the demo model's features and scores, fed to the drift monitor the
   engine builds (engine.model_runner.drift_monitor), a report every second of plant time as
   the runner makes. Counts the warnings (entries into warning or alert) and the alerts.
B. Sensor drift: the same on seed 45 (the recording's), ten healthy minutes, then the demo's
   sensor_drift fault at severity 1 for up to 15 minutes: seconds from the fault's start to
   the first warning and the first alert, and what the warning said.

Prints readable figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorconsole.adapters.onnx_model import OnnxModel, load_package  # noqa: E402
from floorconsole.core.drift import ALERT, WARNING, DriftMonitor  # noqa: E402
from floorconsole.core.features import block_features  # noqa: E402
from floorconsole.core.model_config import ModelConfig  # noqa: E402
from floorconsole.core.plantsim import MotorSim  # noqa: E402
from floorconsole.engine.model_runner import drift_monitor  # noqa: E402

PKG = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "motor_anomaly"
HOP_S = 0.5  # a window every 0.5 s, as adapters.sim publishes
REPORT_EVERY = 2  # the runner reports drift once a second (DRIFT_EMIT_S)
DRIFT_SEED = 45
DRIFT_LEAD_S = 600.0
DRIFT_MAX_S = 900.0


PERSIST: int | None = None  # --persist: override PERSIST_WINDOWS for a sweep


def monitor(model: OnnxModel, window: int | None = None) -> DriftMonitor:
    cfg = ModelConfig(
        id="motor1_anomaly",
        package=PKG,
        inputs=tuple((a, f"motor1.vibration.{a}") for a in "xyz"),
        outputs=(("score", "motor1.anomaly_score"),),
        drift_window=window,
    )
    mon = drift_monitor(cfg, model)
    if PERSIST is not None:
        mon.persist = PERSIST
    return mon


def windows(sim: MotorSim, n: int) -> np.ndarray:
    out = np.empty((n, 33))
    for i in range(n):
        sim.step(HOP_S)
        out[i] = block_features(*sim.vibration_block(256, 500.0))
    return out


def run_healthy(model: OnnxModel, seed: int, hours: float, window: int | None) -> dict[str, int]:
    """Warnings and alerts of one seed's healthy run."""
    mon = monitor(model, window)
    sim = MotorSim(seed)
    warnings = alerts = 0
    prev = "filling"
    chunk = 1200
    left = round(hours * 3600 / HOP_S)
    k = 0
    while left > 0:
        n = min(chunk, left)
        feats = windows(sim, n)
        scores = model.score(feats)
        for f, s in zip(feats, scores, strict=True):
            mon.update(f, float(s))
            k += 1
            if k % REPORT_EVERY == 0:
                st = mon.report(full=False).status
                if st in (WARNING, ALERT) and prev not in (WARNING, ALERT):
                    warnings += 1
                if st == ALERT and prev != ALERT:
                    alerts += 1
                prev = st
        left -= n
    return {"warnings": warnings, "alerts": alerts}


def run_sensor_drift(model: OnnxModel, window: int | None) -> dict[str, object]:
    """Seconds from the fault's start to the first warning and alert (None: not within)."""
    mon = monitor(model, window)
    sim = MotorSim(DRIFT_SEED)
    lead = round(DRIFT_LEAD_S / HOP_S)
    feats = windows(sim, lead)
    for f, s in zip(feats, model.score(feats), strict=True):
        mon.update(f, float(s))
        mon.report(full=False)
    sim.set_fault("sensor_drift", 1.0)
    seen: dict[str, object] = {"warning_s": None, "alert_s": None, "warning_text": ""}
    for i in range(round(DRIFT_MAX_S / HOP_S)):
        f = windows(sim, 1)[0]
        mon.update(f, float(model.score(f[None, :])[0]))
        if (i + 1) % REPORT_EVERY:
            continue
        r = mon.report(full=False)
        t = (i + 1) * HOP_S
        if r.status in (WARNING, ALERT) and seen["warning_s"] is None:
            seen["warning_s"], seen["warning_text"] = t, r.text
        if r.status == ALERT:
            seen["alert_s"], seen["alert_text"] = t, r.text
            break
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="healthy runs, seeds 1..N")
    ap.add_argument("--hours", type=float, default=8.0, help="plant hours per healthy run")
    ap.add_argument("--window", type=int, default=None, help="override the package's window")
    ap.add_argument("--persist", type=int, default=None, help="override the persistence")
    args = ap.parse_args()
    global PERSIST
    PERSIST = args.persist
    model = load_package(PKG)
    mon = monitor(model, args.window)
    print(
        f"drift monitor: window {mon.window}, min {mon.min_windows} windows, lines "
        f"{mon.psi_warn}/{mon.psi_alert} (or chance at family alpha {mon.family_alpha}), "
        f"persistence {mon.persist} windows"
    )
    t0 = time.perf_counter()
    per_seed = []
    for seed in range(1, args.seeds + 1):
        r = run_healthy(model, seed, args.hours, args.window)
        per_seed.append(r)
        print(
            f"  healthy seed {seed}: {args.hours:g} h, {r['warnings']} warnings, {r['alerts']} alerts"
        )
    total_h = args.seeds * args.hours
    warnings = sum(r["warnings"] for r in per_seed)
    alerts = sum(r["alerts"] for r in per_seed)
    worst_per_8h = max(r["warnings"] * 8.0 / args.hours for r in per_seed)
    print(
        f"A. healthy: {warnings} warnings and {alerts} alerts in {total_h:g} h on {args.seeds} "
        f"seeds: {warnings * 8.0 / total_h:.2f} warnings per 8 h (worst seed {worst_per_8h:.2f})"
    )
    d = run_sensor_drift(model, args.window)
    print(
        f"B. sensor drift: warning after {d['warning_s']} s ({d['warning_text']}), alert after "
        f"{d['alert_s']} s ({d.get('alert_text', '')})"
    )
    print(f"({time.perf_counter() - t0:.0f} s)")
    result = {
        "window": mon.window,
        "min_windows": mon.min_windows,
        "persist_windows": mon.persist,
        "family_alpha": mon.family_alpha,
        "seeds": args.seeds,
        "hours_per_seed": args.hours,
        "healthy_warnings": warnings,
        "healthy_alerts": alerts,
        "warnings_per_8h": round(warnings * 8.0 / total_h, 3),
        "worst_seed_warnings_per_8h": round(worst_per_8h, 3),
        "sensor_drift_warning_s": d["warning_s"],
        "sensor_drift_alert_s": d["alert_s"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
