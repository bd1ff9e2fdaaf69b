"""A copy of the demo plant file with its model package beside it, for snapshot tests."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from floorconsole.core import toml_write

REPO = Path(__file__).resolve().parents[2]


def demo_plant_without_rules(folder: Path) -> Path:
    """folder/plant.toml: the demo's devices, signals and model (package models/motor_anomaly,
    copied beside it), without its rules, so a test adds its own; returns the file's path."""
    (folder / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copy(REPO / "fixtures" / "models" / f"motor_anomaly{suffix}", folder / "models")
    doc = tomllib.loads((REPO / "fixtures" / "plants" / "demo.toml").read_text(encoding="utf-8"))
    doc.pop("rules", None)
    doc["models"][0]["package"] = "models/motor_anomaly"
    path = folder / "plant.toml"
    path.write_text(toml_write.dumps(doc), encoding="utf-8")
    return path
