"""Model path figures: one motor's window, and 20 motors at 2 windows/s, against bare ONNX runs.

    .venv/bin/python benchmarks/model.py [--seconds 10] [--motors 20]

A. window_ms: median wall time of ModelRunner.on_samples for one window of one motor (x, y, z
   blocks of 256 samples in; features, scaling, ONNX inference, smoothing, drift update, the
   drift report once a second, and the output samples out), over a few thousand windows of
   simulator data. Beside it, in the same run: bare_run_ms, the median of
   InferenceSession.run alone on the same windows' features, precomputed and scaled; and the
   parts (features, drift update, drift report).
B. cpu_share_20_motors: 20 runners (one package load and session each, as the engine builds
   them), each fed a window every 0.5 s in real time, paced on the monotonic clock, for
   --seconds; the process CPU time used over that span divided by its wall time: the share of
   one core the model path takes. Must stay at or below 0.25.
C. cpu_share_20_motors_with_shadow: B with a shadow beside every motor (engine.shadow.Shadow:
   a second runner on the same windows, its outputs handed to a store as the engine hands them
   to the historian, the live/shadow tallies). The candidate is the same package: a
   recalibrated candidate has the demo model's shape, so it costs the same. At most 0.25 too.

Prints readable figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floorconsole.adapters.onnx_model import load_package  # noqa: E402
from floorconsole.core.clock import SystemClock  # noqa: E402
from floorconsole.core.features import block_features, waveform_features  # noqa: E402
from floorconsole.core.model_config import ModelConfig  # noqa: E402
from floorconsole.core.plantsim import MotorSim  # noqa: E402
from floorconsole.core.quality import Quality, Reason  # noqa: E402
from floorconsole.core.sample import Sample, waveform  # noqa: E402
from floorconsole.engine.model_runner import ModelRunner  # noqa: E402

PKG = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "motor_anomaly"
CPU_LIMIT = 0.25


def make_blocks(seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    sim = MotorSim(seed)
    out = []
    for i in range(n):
        if i == n // 2:
            sim.set_fault("bearing", 0.5)  # half healthy, half faulty: both paths count
        sim.step(0.5)
        out.append(tuple(waveform(b) for b in sim.vibration_block(256, 500.0)))
    return out  # type: ignore[return-value]


def config(motor: int) -> ModelConfig:
    return ModelConfig(
        id=f"motor{motor}_anomaly",
        package=PKG,
        inputs=tuple((a, f"motor{motor}.vibration.{a}") for a in "xyz"),
        outputs=(("score", f"motor{motor}.anomaly_score"),),
    )


def feed(
    runner: ModelRunner, motor: int, blocks: tuple[np.ndarray, ...], clock: SystemClock
) -> list[Sample]:
    t, m = clock.wall(), clock.mono()
    batch = [
        Sample(f"motor{motor}.vibration.{a}", b, Quality.GOOD, Reason.NONE, t, m)
        for a, b in zip("xyz", blocks, strict=True)
    ]
    return runner.on_samples(batch)


def out_batch(motor: int, blocks: tuple[np.ndarray, ...], clock: SystemClock) -> list[Sample]:
    """The batch a shadow is handed: the same blocks the live runner just scored."""
    t, m = clock.wall(), clock.mono()
    return [
        Sample(f"motor{motor}.vibration.{a}", b, Quality.GOOD, Reason.NONE, t, m)
        for a, b in zip("xyz", blocks, strict=True)
    ]


def part_a(n: int) -> dict[str, float]:
    clock = SystemClock()
    model = load_package(PKG)
    runner = ModelRunner(config(1), model, clock)
    blocks = make_blocks(1, n)
    for b in blocks[:50]:  # warm up: first runs allocate
        feed(runner, 1, b, clock)
    window = []
    for b in blocks:
        t0 = time.perf_counter()
        out = feed(runner, 1, b, clock)
        window.append(time.perf_counter() - t0)
        assert out and out[0].quality is Quality.GOOD

    feats = np.array([block_features(*b) for b in blocks])
    scaled = model.package.scaler.transform(feats)
    sess, name = model.session, model.package.onnx_input
    out_name = [model.package.onnx_output]
    bare = []
    for row in scaled:
        x = row[None, :]
        t0 = time.perf_counter()
        sess.run(out_name, {name: x})
        bare.append(time.perf_counter() - t0)

    feat_t = []
    for b in blocks[:1000]:
        t0 = time.perf_counter()
        waveform_features(np.stack(b))
        feat_t.append(time.perf_counter() - t0)

    from floorconsole.core.drift import DriftMonitor

    mon = DriftMonitor(model.package.reference)
    scores = model.score(feats)
    upd, rep = [], []
    for f, s in zip(feats, scores, strict=True):
        t0 = time.perf_counter()
        mon.update(f, float(s))
        upd.append(time.perf_counter() - t0)
    for _ in range(200):
        t0 = time.perf_counter()
        mon.report(full=True)
        rep.append(time.perf_counter() - t0)

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs) * 1000.0, 4)

    return {
        "window_ms": med(window),
        "window_ms_p95": round(float(np.percentile(window, 95)) * 1000.0, 4),
        "bare_run_ms": med(bare),
        "features_ms": med(feat_t),
        "drift_update_ms": med(upd),
        "drift_report_ms": med(rep),
        "windows": len(blocks),
    }


class _Store:
    """What the historian's append costs the engine's loop: taking the samples (the writer
    thread does the rest)."""

    def __init__(self) -> None:
        self.rows = 0

    def append(self, samples: list[Sample]) -> None:
        self.rows += len(samples)


def part_b(motors: int, seconds: float, *, shadow: bool = False) -> dict[str, float]:
    from floorconsole.engine.shadow import Shadow

    clock = SystemClock()
    runners = [ModelRunner(config(k), load_package(PKG), clock) for k in range(motors)]
    store = _Store()
    shadows = (
        [Shadow(r, load_package(PKG), PKG, clock, store, {}) for r in runners] if shadow else []
    )
    per_motor = int(seconds / 0.5) + 2
    blocks = [make_blocks(100 + k, per_motor) for k in range(motors)]
    # Each motor's window comes at its own phase within the 0.5 s period, as sensors do.
    schedule = sorted(
        (i * 0.5 + k * 0.5 / motors, k, i)
        for k in range(motors)
        for i in range(per_motor)
        if i * 0.5 < seconds
    )
    t_start = time.monotonic()
    cpu_start = time.process_time()
    done = 0
    for due, k, i in schedule:
        delay = t_start + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        out = feed(runners[k], k, blocks[k][i], clock)
        if shadows:
            shadows[k].on_samples(out_batch(k, blocks[k][i], clock))
        done += bool(out)
    wall = time.monotonic() - t_start
    cpu = time.process_time() - cpu_start
    key = "cpu_share_20_motors_with_shadow" if shadow else "cpu_share_20_motors"
    if shadow:
        return {key: round(cpu / wall, 4), "shadow_windows": sum(x.windows for x in shadows)}
    return {
        key: round(cpu / wall, 4),
        "windows_done": done,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "windows_per_s": round(done / wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=3000)
    ap.add_argument("--motors", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    a = part_a(args.windows)
    print(f"A. one motor, {a['windows']} windows (features + inference + drift + samples)")
    print(f"   window_ms          median {a['window_ms']:.3f} ms, p95 {a['window_ms_p95']:.3f} ms")
    print(f"   bare_run_ms        median {a['bare_run_ms']:.4f} ms (InferenceSession.run alone)")
    print(f"   features_ms        median {a['features_ms']:.4f} ms")
    print(
        f"   drift_update_ms    median {a['drift_update_ms']:.4f} ms; report (KS, W1) "
        f"{a['drift_report_ms']:.3f} ms, once a second"
    )
    print(f"   window / bare run  {a['window_ms'] / a['bare_run_ms']:.1f}x")
    b = part_b(args.motors, args.seconds)
    ok = b["cpu_share_20_motors"] <= CPU_LIMIT
    print(
        f"B. {args.motors} motors at 2 windows/s for {b['wall_s']} s: {b['windows_done']} "
        f"windows, CPU {b['cpu_s']} s"
    )
    print(
        f"   cpu_share_20_motors {b['cpu_share_20_motors']:.3f} of one core "
        f"(limit {CPU_LIMIT}) {'ok' if ok else 'OVER'}"
    )
    c = part_b(args.motors, args.seconds, shadow=True)
    ok_c = c["cpu_share_20_motors_with_shadow"] <= CPU_LIMIT
    print(f"C. the same with a shadow beside every motor ({c['shadow_windows']} shadow windows)")
    print(
        f"   cpu_share_20_motors_with_shadow {c['cpu_share_20_motors_with_shadow']:.3f} of one "
        f"core (limit {CPU_LIMIT}) {'ok' if ok_c else 'OVER'}"
    )
    ok = ok and ok_c
    result = {
        **a,
        "window_over_bare": round(a["window_ms"] / a["bare_run_ms"], 1),
        **b,
        **c,
        "cpu_limit": CPU_LIMIT,
        "ok": ok,
    }
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
