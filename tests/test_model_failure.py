"""A model that cannot score, inputs beyond what features represent, packages that cannot be
used at start: the model runner's side (fast, no engine). The engine-level scenarios are in
tests/test_model_start.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from floorconsole.adapters.onnx_model import load_package
from floorconsole.core.clock import FakeClock
from floorconsole.core.model_config import MAX_BAD_WINDOWS, parse_models
from floorconsole.core.plantsim import MotorSim
from floorconsole.core.quality import Quality, Reason
from floorconsole.engine.model_runner import ModelRunner
from tests.test_model import (
    PKG,
    SCORE,
    SIGNAL_IDS,
    _corrupt,
    _not_json,
    block_samples,
    by_id,
    config,
    copy_package,
    models_entry,
    onnx_graph,
    put_onnx,
    sim_blocks,
)


def test_non_finite_output_for_max_bad_windows_is_a_model_failure(tmp_path: Path) -> None:
    stem = copy_package(tmp_path)
    put_onnx(stem, onnx_graph(body="inf"))  # every output NaN or inf
    clock = FakeClock()
    runner = ModelRunner(config(stem, max_bad_windows=3), load_package(stem), clock)
    sim = MotorSim(1)
    for n in range(1, 5):
        clock.advance(0.5)
        out = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
        assert out[SCORE].quality is Quality.BAD
        assert out[SCORE].detail.startswith("model output not finite")
        cond = runner.condition()
        if n < 3:
            assert cond is None, f"{n} bad windows are counted, not yet a failure"
        else:
            assert cond is not None and cond[0] == "high"
            assert "model output not finite" in cond[1] and f"{n} windows in a row" in cond[1]
    st = runner.status()
    assert st["counts"]["nonfinite"] == 4 and st["counts"]["bad_in_a_row"] == 4
    assert st["failure"].startswith("model output not finite")
    # a good package again: it scores, the failure ends
    assert runner.reload(PKG)
    clock.advance(0.5)
    out = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
    assert out[SCORE].quality is Quality.GOOD
    assert runner.condition() is None and runner.status()["failure"] == ""


def test_max_bad_windows_in_the_plant_file() -> None:
    models, problems = parse_models([models_entry(max_bad_windows=2)], SIGNAL_IDS, PKG.parent)
    assert problems == [] and models[0].max_bad_windows == 2
    assert parse_models([models_entry()], SIGNAL_IDS, PKG.parent)[0][0].max_bad_windows == (
        MAX_BAD_WINDOWS
    )
    _, problems = parse_models([models_entry(max_bad_windows=0)], SIGNAL_IDS, PKG.parent)
    assert problems == [
        ("models[0].max_bad_windows", "expected a whole number of windows >= 1, got 0")
    ]


@pytest.mark.parametrize("big", [1e300, 1e150, 1e30, 1e12])
def test_inputs_beyond_what_features_represent_are_never_good(big: float) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), load_package(PKG), clock)
    sim = MotorSim(2)
    clock.advance(0.5)
    runner.on_samples(block_samples(clock, sim_blocks(sim)))  # one good window first
    x, y, z = sim_blocks(sim)
    x = x * 0 + big * np.sign(np.sin(np.arange(len(x))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning reaching the user fails the test
        clock.advance(0.5)
        out = by_id(runner.on_samples(block_samples(clock, (x, y, z))))
    assert out[SCORE].quality is not Quality.GOOD, out[SCORE]
    if big > 1e75:  # features overflow: not scored
        assert out[SCORE].quality is Quality.BAD and out[SCORE].reason is Reason.DECODE_ERROR
        assert "beyond what the features can represent" in out[SCORE].detail
    else:  # scored (the scaler clips), but far outside anything the model knows
        assert out[SCORE].quality is Quality.UNCERTAIN
        assert out[SCORE].reason is Reason.OUT_OF_RANGE
        assert "far outside the training data" in out[SCORE].detail
    assert runner.status()["counts"]["out_of_range"] == 1
    assert runner.condition() is None, "an absurd input is not a model failure"
    # and the next normal window scores GOOD again
    clock.advance(0.5)
    out = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
    assert out[SCORE].quality is Quality.GOOD


@pytest.mark.parametrize("damage", ["corrupt onnx", "sidecar not json", "missing"])
def test_unusable_package_runs_the_stored_copy(tmp_path: Path, damage: str) -> None:
    stem = copy_package(tmp_path / "pkg")
    if damage == "corrupt onnx":
        _corrupt(stem)
    elif damage == "sidecar not json":
        _not_json(stem)
    else:
        stem.with_suffix(".onnx").unlink()
    offered = []

    def fallback(cfg: object) -> list[tuple[Path, str]]:
        offered.append(cfg)
        return [(tmp_path / "gone", "snapshot aaaa"), (PKG, "snapshot 1234567890ab")]

    clock = FakeClock()
    runner = ModelRunner.from_config(config(stem), clock, fallback=fallback)
    assert offered and runner.model is not None
    assert runner.model.sha256 == load_package(PKG).sha256
    sev, text = runner.condition() or ("", "")
    assert sev == "high" and "package unusable" in text
    assert "running the stored copy" in text and "snapshot 1234567890ab" in text
    clock.advance(0.5)
    out = by_id(runner.on_samples(block_samples(clock, sim_blocks(MotorSim(1)))))
    assert out[SCORE].quality is Quality.GOOD

    # no stored copy: runs without it, BAD with the reason
    alone = ModelRunner.from_config(config(stem), clock, fallback=lambda cfg: [])
    assert alone.model is None
    sev, text = alone.condition() or ("", "")
    assert sev == "high" and "not running" in text
    clock.advance(0.5)
    out = by_id(alone.on_samples(block_samples(clock, sim_blocks(MotorSim(1)))))
    assert out[SCORE].quality is Quality.BAD and out[SCORE].reason is Reason.CONFIG_ERROR
    assert out[SCORE].detail.startswith("no model running: ")


def test_package_problems_listed_apart_from_the_plant_file(tmp_path: Path) -> None:
    stem = copy_package(tmp_path)
    _not_json(stem)
    listed: list[tuple[str, str]] = []
    models, problems = parse_models([models_entry()], SIGNAL_IDS, tmp_path, package_problems=listed)
    assert problems == [] and [m.id for m in models] == ["motor1_anomaly"]
    assert listed[0][0] == "models[0].package" and "not valid JSON" in listed[0][1]
    # without the list the file is refused, as before
    assert parse_models([models_entry()], SIGNAL_IDS, tmp_path)[1][0][0] == "models[0].package"
