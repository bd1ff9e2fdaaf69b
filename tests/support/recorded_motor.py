"""Healthy (or faulty) running of the simulated motor written into a real historian file, on
an accelerated clock: blocks every 0.5 s of plant time, stamped from a chosen wall time.

    record_motor(historian, MotorSim(1), since=T0, seconds=1800)

Signals as the demo plant names them (motor1.vibration.x/y/z, motor1.running), so a model
configured as in fixtures/plants/demo.toml reads them back."""

from __future__ import annotations

from pathlib import Path

from floorconsole.adapters.historian import Historian
from floorconsole.core.model_config import ModelConfig
from floorconsole.core.plantsim import MotorSim
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fixtures" / "models" / "motor_anomaly"
AXES = ("x", "y", "z")
HOP_S = 0.5


def demo_model_config(package: Path = PACKAGE) -> ModelConfig:
    """[[models]] motor1_anomaly as the demo plant file has it."""
    return ModelConfig(
        id="motor1_anomaly",
        package=package,
        inputs=tuple((a, f"motor1.vibration.{a}") for a in AXES),
        outputs=(("score", "motor1.anomaly_score"),),
        enable="motor1.running",
        settle_s=8.0,
    )


def record_motor(historian: Historian, sim: MotorSim, *, since: float, seconds: float) -> float:
    """Step the motor for `seconds` of plant time, one block per axis every HOP_S, appended to
    the historian with wall times from `since`; the running coil with every block. Returns the
    wall time after the last block."""
    n = int(round(seconds / HOP_S))
    t = since
    for i in range(n):
        sim.step(HOP_S)
        t = since + (i + 1) * HOP_S
        blocks = sim.vibration_block(256, 500.0)
        batch = [
            Sample(f"motor1.vibration.{a}", b, Quality.GOOD, Reason.NONE, t, t)
            for a, b in zip(AXES, blocks, strict=True)
        ]
        batch.append(Sample("motor1.running", sim.running, Quality.GOOD, Reason.NONE, t, t))
        historian.append(batch)
        if i % 400 == 399:
            historian.flush()
    historian.flush()
    return t + HOP_S
