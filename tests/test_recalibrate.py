"""Recalibration at the box: a candidate package from a healthy window of recorded history,
deterministic, checked like an imported package (engine.calibrate, core.calibrate,
core.onnx_write); real SQLite history, real onnxruntime."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from floorconsole.adapters.historian import Historian, HistoryReader
from floorconsole.adapters.onnx_model import load_package
from floorconsole.core.calibrate import MIN_WINDOWS, CalibrationError
from floorconsole.core.features import block_features
from floorconsole.core.plantsim import MotorSim
from floorconsole.engine.calibrate import calibrate
from tests.support.recorded_motor import PACKAGE, demo_model_config, record_motor

OVERHAUL = {"broadband_gain": 1.5}  # more flow noise after the overhaul: healthy, but new


def recorded(tmp_path: Path, seconds: float, *, seed: int = 5) -> tuple[Path, float, float]:
    """An overhauled motor's healthy running, `seconds` of it ending an hour ago."""
    db = tmp_path / "history.db"
    since = time.time() - 3600.0 - seconds
    h = Historian(db, retention_s=None)
    h.start()
    try:
        sim = MotorSim(seed)
        sim.overhaul(**OVERHAUL)
        until = record_motor(h, sim, since=since, seconds=seconds)
    finally:
        h.close()
    return db, since, until


def test_a_trained_candidate_is_the_same_bytes_twice_and_passes_the_import_checks(
    tmp_path: Path,
) -> None:
    onnx = pytest.importorskip("onnx")
    db, since, until = recorded(tmp_path, 900.0)
    parent = load_package(PACKAGE)
    cfg = demo_model_config()
    cands = []
    steps: list[str] = []
    with HistoryReader(db) as reader:
        for k in range(2):
            t0 = time.monotonic()
            cands.append(
                calibrate(
                    reader,
                    cfg,
                    parent,
                    since,
                    until,
                    tmp_path / f"out{k}",
                    train_weights=True,
                    seed=11,
                    progress=lambda what, done: steps.append(what),
                )
            )
            assert time.monotonic() - t0 < 30.0
    a, b = cands
    assert a.path.parent != b.path.parent
    for suffix in (".onnx", ".json"):
        assert a.path.with_suffix(suffix).read_bytes() == b.path.with_suffix(suffix).read_bytes()
    assert {"reading the history", "training the autoencoder"} <= set(steps)
    data = a.path.with_suffix(".onnx").read_bytes()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    assert hashlib.sha256(data).hexdigest() == a.onnx_sha256 != parent.onnx_sha256
    model = load_package(a.path)  # the checks an imported package passes
    assert model.sha256 == a.package_sha256
    training = json.loads(a.path.with_suffix(".json").read_text())["training"]
    assert training["parent"]["package_sha256"] == parent.sha256
    # times as the sidecar keeps every number: 10 significant digits, whole seconds
    assert training["window"]["since"] == pytest.approx(since, abs=1.0)
    assert training["window"]["until"] == pytest.approx(until, abs=1.0)
    assert training["window"]["windows"] == a.window.windows >= 1700  # 15 min at 2 a second
    assert training["window"]["skipped"] == a.window.skipped
    assert training["seed"] == 11
    # another seed: other weights
    with HistoryReader(db) as reader:
        c = calibrate(
            reader, cfg, parent, since, until, tmp_path / "out2", train_weights=True, seed=12
        )
    assert c.onnx_sha256 != a.onnx_sha256


def test_the_candidate_fits_the_new_normal_and_still_sees_every_fault(tmp_path: Path) -> None:
    db, since, until = recorded(tmp_path, 1200.0)
    parent = load_package(PACKAGE)
    with HistoryReader(db) as reader:
        kept = calibrate(reader, demo_model_config(), parent, since, until, tmp_path / "a")
        trained = calibrate(
            reader, demo_model_config(), parent, since, until, tmp_path / "b", train_weights=True
        )
    assert kept.onnx_sha256 == parent.onnx_sha256  # without training: the parent's graph

    def warnings(model_path: Path, fault: str | None, windows: int, seed: int = 77) -> np.ndarray:
        """Whether the smoothed score is at or above warning, window by window."""
        m = load_package(model_path)
        sim = MotorSim(seed)
        sim.overhaul(**OVERHAUL)
        if fault:
            sim.set_fault(fault, 1.0)
        rows = []
        for _ in range(windows):
            sim.step(0.5)
            rows.append(block_features(*sim.vibration_block(256, 500.0)))
        s = m.score(np.asarray(rows))
        smoothed = np.convolve(s, np.ones(4) / 4, mode="valid")
        return smoothed >= m.package.thresholds.warning

    assert warnings(PACKAGE, None, 240).mean() > 0.5  # today's model calls the new normal anomalous
    # every fault the model can see (dropout is a device gone: BAD inputs, not a score), with
    # the windows it may take: the sensor drift ramps up over 15 minutes
    budget = {"imbalance": 40, "bearing": 40, "misalignment": 40, "stuck_sensor": 40}
    budget["sensor_drift"] = 600
    for cand in (kept, trained):
        assert warnings(cand.path, None, 240).mean() < 0.02
        for fault, windows in budget.items():
            seen = warnings(cand.path, fault, windows)
            assert seen.any(), (cand.path, fault)
            assert seen[-20:].all(), (cand.path, fault)  # and it stays in warning


def test_too_short_a_window_is_refused_with_the_counts(tmp_path: Path) -> None:
    db, since, until = recorded(tmp_path, 120.0)
    with HistoryReader(db) as reader, pytest.raises(CalibrationError) as err:
        calibrate(reader, demo_model_config(), load_package(PACKAGE), since, until, tmp_path)
    assert f"at least {MIN_WINDOWS}" in str(err.value) and "usable windows" in str(err.value)
