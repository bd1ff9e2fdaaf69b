"""The model package, onnxruntime on the fixture model, the ModelRunner and the fault recordings."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from floorconsole.adapters.onnx_model import OnnxModel, load_package
from floorconsole.cli.model import inspect_package
from floorconsole.core.clock import FakeClock
from floorconsole.core.drift import reference_from_samples
from floorconsole.core.features import block_features
from floorconsole.core.model_config import ModelConfig, output_signals, parse_models
from floorconsole.core.model_package import (
    FORMAT,
    PackageError,
    dump_sidecar,
    load_sidecar,
    parse_sidecar,
    reference_to_raw,
)
from floorconsole.core.plantsim import MotorSim
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, waveform
from floorconsole.engine.model_runner import ModelRunner

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fixtures" / "models" / "motor_anomaly"
RECORDINGS = ROOT / "fixtures" / "recordings"
SIGNALS = {"x": "motor1.vibration.x", "y": "motor1.vibration.y", "z": "motor1.vibration.z"}
SCORE = "motor1.anomaly_score"


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return load_package(PKG)


def config(package: Path = PKG, **kw: Any) -> ModelConfig:
    return ModelConfig(
        id="motor1_anomaly",
        package=package,
        inputs=tuple(SIGNALS.items()),
        outputs=(("score", SCORE),),
        **kw,
    )


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.signal: s for s in samples}


def block_samples(
    clock: FakeClock,
    blocks: tuple[np.ndarray, ...],
    *,
    quality: Reason = Reason.NONE,
    t_source: float | None = None,
) -> list[Sample]:
    t = clock.wall() if t_source is None else t_source
    return [
        Sample(sig, waveform(b), quality.quality, quality, t, clock.mono())
        for sig, b in zip(SIGNALS.values(), blocks, strict=True)
    ]


# --- the fixture package ----------------------------------------------------------------------------


def test_fixture_package_agrees_with_its_sidecar(model: OnnxModel) -> None:
    p = model.package
    assert (p.name, p.version) == ("motor_anomaly", "1.0.0")
    assert p.input_names == ["x", "y", "z"]
    assert all(i.kind == "waveform" and i.samples == 256 and i.rate_hz == 500.0 for i in p.inputs)
    assert len(p.features) == 33 and p.feature_names[:2] == ["x.rms", "x.peak"]
    assert [t.name for t in model.inputs] == ["features"]
    assert model.inputs[0].type == "tensor(float)" and model.inputs[0].shape[1] == 33
    assert p.onnx_output in [t.name for t in model.outputs]
    onnx_bytes = PKG.with_suffix(".onnx").read_bytes()
    assert model.onnx_sha256 == hashlib.sha256(onnx_bytes).hexdigest() == p.onnx_sha256
    assert model.sidecar_sha256 == hashlib.sha256(PKG.with_suffix(".json").read_bytes()).hexdigest()
    assert len(onnx_bytes) < 20_000, "a small model: KBs"
    assert 0 < p.thresholds.warning < p.thresholds.critical
    assert len(p.reference.features) == 33 and p.reference.windows > 10_000
    assert p.scaler.clip == 5.0 and (p.scaler.std > 0).all()


def test_fixture_scores_healthy_low_and_faulty_high(model: OnnxModel) -> None:
    healthy, faulty = MotorSim(2), MotorSim(2)
    faulty.set_fault("bearing", 1.0)
    h, f = [], []
    for _ in range(20):
        for sim, out in ((healthy, h), (faulty, f)):
            sim.step(0.5)
            out.append(block_features(*sim.vibration_block(256, 500.0)))
    hs, fs = model.score(np.array(h)), model.score(np.array(f))
    assert hs.shape == (20,) and np.isfinite(hs).all()
    assert np.median(hs) < model.package.thresholds.warning
    assert np.median(fs) > model.package.thresholds.critical
    # one window at a time gives the same as the batch
    assert float(model.score(np.array(h[0]))[0]) == pytest.approx(float(hs[0]), rel=1e-6)


def test_inspect_package_text() -> None:
    text = inspect_package(PKG.with_suffix(".json"))
    sidecar = load_sidecar(PKG)
    for needle in (
        "motor_anomaly 1.0.0",
        "input  features tensor(float) [?, 33]",
        "output variable",
        "x.kurtosis",
        "z.clearance_factor",
        "features (33)",
        "warning 0.3521",
        "mean of the last 4 windows",
        sidecar.onnx_sha256,
        "reconstruction_error",
        "10 bins",
    ):
        assert needle in text, needle
    assert all(len(line) <= 80 for line in text.splitlines() if "/" not in line), "80 columns"


@pytest.mark.slow
def test_training_is_reproducible() -> None:
    """train.py --check retrains twice: the two are byte-identical (same machine, same
    bytes), and the committed package matches them within the stated tolerance (weights,
    scores, thresholds), whatever processor trained it."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    r = subprocess.run(
        [sys.executable, str(ROOT / "fixtures" / "models" / "train.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("two retrains on this machine: identical") == 2, r.stdout
    assert "committed package against a retrain: within tolerance" in r.stdout, r.stdout


# --- bad packages -----------------------------------------------------------------------------------


def copy_package(tmp_path: Path, name: str = "motor_anomaly") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    stem = tmp_path / name
    shutil.copy(PKG.with_suffix(".onnx"), stem.with_suffix(".onnx"))
    shutil.copy(PKG.with_suffix(".json"), stem.with_suffix(".json"))
    return stem


def edit_sidecar(stem: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    path = stem.with_suffix(".json")
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(dump_sidecar(raw))


def put_onnx(stem: Path, data: bytes) -> None:
    """Replace the graph and re-sign the sidecar, so only the graph itself is wrong."""
    stem.with_suffix(".onnx").write_bytes(data)
    edit_sidecar(stem, lambda raw: raw["onnx"].update(sha256=hashlib.sha256(data).hexdigest()))


def onnx_graph(
    *,
    inputs: tuple[tuple[str, int], ...] = (("features", 33),),
    out_name: str = "variable",
    body: str = "identity",
    n_out: int | None = None,
) -> bytes:
    """A tiny ONNX graph made by hand: identity, a slice of the first n_out columns, a product
    with +inf (a model whose output is never finite), or a row sum (a one-value score)."""
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, k]) for n, k in inputs]
    first = inputs[0][0]
    inits = []
    if body == "identity":
        nodes = [helper.make_node("Identity", [first], [out_name])]
        width = inputs[0][1]
    elif body == "slice":
        assert n_out is not None
        inits = [
            helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
            helper.make_tensor("ends", TensorProto.INT64, [1], [n_out]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ]
        nodes = [helper.make_node("Slice", [first, "starts", "ends", "axes"], [out_name])]
        width = n_out
    elif body == "inf":
        inits = [helper.make_tensor("big", TensorProto.FLOAT, [1], [float("inf")])]
        nodes = [helper.make_node("Mul", [first, "big"], [out_name])]
        width = inputs[0][1]
    else:  # "sum"
        inits = [helper.make_tensor("axis", TensorProto.INT64, [1], [1])]
        nodes = [helper.make_node("ReduceSum", [first, "axis"], [out_name], keepdims=1)]
        width = 1
    out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None, width])
    graph = helper.make_graph(nodes, "test", ins, [out], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()  # type: ignore[no-any-return]


def _corrupt(stem: Path) -> None:
    put_onnx(stem, PKG.with_suffix(".onnx").read_bytes()[:-700] + b"\x00garbage" * 10)


def _wrong_feature_count(stem: Path) -> None:
    put_onnx(stem, onnx_graph(inputs=(("features", 32),)))


def _two_inputs(stem: Path) -> None:
    put_onnx(stem, onnx_graph(inputs=(("features", 33), ("extra", 4))))


def _wrong_input_name(stem: Path) -> None:
    put_onnx(stem, onnx_graph(inputs=(("input", 33),)))


def _short_output(stem: Path) -> None:
    put_onnx(stem, onnx_graph(body="slice", n_out=16))


def _missing_sidecar(stem: Path) -> None:
    stem.with_suffix(".json").unlink()


def _missing_onnx(stem: Path) -> None:
    stem.with_suffix(".onnx").unlink()


def _other_models_sidecar(stem: Path) -> None:
    """A sidecar signed for another graph: the fixture's graph replaced, the sidecar not."""
    stem.with_suffix(".onnx").write_bytes(onnx_graph())


def _sidecar_names_another_file(stem: Path) -> None:
    edit_sidecar(stem, lambda raw: raw["onnx"].update(file="pump_anomaly.onnx"))


def _reference_wrong_count(stem: Path) -> None:
    edit_sidecar(stem, lambda raw: raw["reference"]["features"].pop())


def _scaler_wrong_count(stem: Path) -> None:
    edit_sidecar(stem, lambda raw: raw["scaler"]["std"].pop())


def _not_json(stem: Path) -> None:
    stem.with_suffix(".json").write_text("{ not json")


def _thresholds_reversed(stem: Path) -> None:
    edit_sidecar(stem, lambda raw: raw["thresholds"].update(warning=1.0, critical=0.5))


BAD_PACKAGES = {
    "corrupt onnx": (_corrupt, "motor_anomaly.onnx: onnxruntime cannot load this file"),
    "wrong feature count": (
        _wrong_feature_count,
        "takes 32 features [?, 32]; the sidecar lists 33",
    ),
    "two inputs": (
        _two_inputs,
        "the graph has 2 inputs (features [?, 33], extra [?, 4]); the "
        "sidecar expects one input 'features' of 33 features",
    ),
    "wrong input name": (
        _wrong_input_name,
        "the graph's input is 'input'; the sidecar says 'features'",
    ),
    "output too short": (
        _short_output,
        "the ONNX output has 16 values per window; a reconstruction needs 33",
    ),
    "missing sidecar": (_missing_sidecar, "motor_anomaly.json: missing sidecar"),
    "missing onnx": (_missing_onnx, "motor_anomaly.onnx: missing ONNX file"),
    "sidecar of another model": (_other_models_sidecar, "a sidecar for another model"),
    "sidecar names another file": (
        _sidecar_names_another_file,
        "onnx.file: this sidecar belongs to 'pump_anomaly.onnx'",
    ),
    "reference wrong count": (
        _reference_wrong_count,
        "reference.features: has 32 entries; the package has 33 features",
    ),
    "scaler wrong count": (_scaler_wrong_count, "scaler.std: has 32 values; the package has 33"),
    "not json": (_not_json, "the sidecar is not valid JSON"),
    "thresholds reversed": (_thresholds_reversed, "warning 1.0 must be below critical 0.5"),
}


@pytest.mark.parametrize("case", BAD_PACKAGES)
def test_bad_package_refused_with_a_clear_message(tmp_path: Path, case: str) -> None:
    damage, message = BAD_PACKAGES[case]
    stem = copy_package(tmp_path)
    damage(stem)
    with pytest.raises(PackageError) as e:
        load_package(stem)
    assert message in str(e.value), str(e.value)
    assert str(tmp_path) in str(e.value), "the message names the file"
    with pytest.raises(PackageError):
        inspect_package(stem)


# --- the runner on live blocks ------------------------------------------------------------------------


def sim_blocks(sim: MotorSim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sim.step(0.5)
    return sim.vibration_block(256, 500.0)


def test_runner_on_simulator_blocks_end_to_end(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock, stale_after_s={s: 2.0 for s in SIGNALS.values()})
    ids = [s.id for s in runner.output_signals()]
    assert ids[:3] == [SCORE, "motor1_anomaly.smoothed", "motor1_anomaly.state"]
    assert "motor1_anomaly.drift.psi.x.kurtosis" in ids and len(ids) == 7 + 33
    sim = MotorSim(12)
    states = []
    for i in range(40):
        if i == 20:
            sim.set_fault("imbalance", 1.0)
        clock.advance(0.5)
        blocks = sim_blocks(sim)
        batch = block_samples(clock, blocks)
        out = by_id(runner.on_samples(batch[:2]))
        assert out == {}, "waits until every axis has its block"
        out = by_id(
            runner.on_samples(
                batch[2:]
                + [Sample("motor1.current", 12.0, Quality.GOOD, Reason.NONE, 0.0, clock.mono())]
            )
        )
        assert out[SCORE].quality is Quality.GOOD and out[SCORE].t_source == clock.wall()
        assert set(out) <= set(ids)
        states.append(out["motor1_anomaly.state"].value)
        # the same blocks again are not a new window
        assert runner.on_samples(batch[2:]) == []
    assert set(states[:20]) == {0.0}
    assert states[25] >= 1.0, "imbalance: warning within a few windows"
    st = runner.status()
    assert st["counts"]["windows"] == 40 and st["state"] in ("warning", "critical")
    assert st["last_inference_ms"] is not None and st["last_inference_ms"] < 50
    assert len(st["trend"]) == 40
    json.dumps(st)  # plain data


def test_bad_input_gives_bad_outputs(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    sim = MotorSim(3)
    clock.advance(0.5)
    good = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
    last_score = good[SCORE].value
    clock.advance(0.5)
    batch = block_samples(clock, sim_blocks(sim))
    batch[1] = Sample(
        batch[1].signal,
        None,
        Quality.BAD,
        Reason.DECODE_ERROR,
        clock.wall(),
        clock.mono(),
        "not a number at [17]",
    )
    out = runner.on_samples(batch)
    first = by_id(out)
    assert all(s.quality is Quality.BAD for s in out)
    assert "motor1_anomaly.drift.status" in first, "drift outputs go BAD with the first bad window"
    assert first[SCORE].reason is Reason.DECODE_ERROR
    assert first[SCORE].value == last_score, "BAD carries the last value"
    assert "motor1.vibration.y" in first[SCORE].detail
    clock.advance(0.5)
    batch = block_samples(clock, sim_blocks(sim), quality=Reason.NO_COMM)
    again = by_id(runner.on_samples(batch))
    assert set(again) == {SCORE, "motor1_anomaly.smoothed", "motor1_anomaly.state"}
    assert all(s.quality is Quality.BAD for s in again.values())
    assert runner.status()["counts"]["bad_outputs"] == 2
    clock.advance(0.5)
    back = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
    assert back[SCORE].quality is Quality.GOOD


def test_uncertain_input_gives_uncertain_outputs(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    clock.advance(0.5)
    out = by_id(
        runner.on_samples(
            block_samples(clock, sim_blocks(MotorSim(1)), quality=Reason.OUT_OF_RANGE)
        )
    )
    assert out[SCORE].quality is Quality.UNCERTAIN and out[SCORE].reason is Reason.OUT_OF_RANGE
    assert isinstance(out[SCORE].value, float)


def test_stale_input_makes_outputs_bad_once(model: OnnxModel) -> None:
    clock = FakeClock()
    stale = {s: 2.0 for s in SIGNALS.values()}
    runner = ModelRunner(config(), model, clock, stale_after_s=stale)
    sim = MotorSim(3)
    clock.advance(0.5)
    assert runner.on_samples(block_samples(clock, sim_blocks(sim)))
    clock.advance(1.5)
    assert runner.check() == []
    clock.advance(1.0)
    out = runner.check()
    assert len(out) == 7 + 33 and all(s.quality is Quality.BAD for s in out)
    assert out[0].reason is Reason.NO_COMM and "no fresh value" in out[0].detail
    clock.advance(1.0)
    assert runner.check() == [], "reported once, not at every watchdog tick"
    clock.advance(0.5)
    assert (
        by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))[SCORE].quality
        is Quality.GOOD
    )


def test_never_received_input_goes_stale(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock, stale_after_s={s: 2.0 for s in SIGNALS.values()})
    assert runner.check() == []
    clock.advance(3.0)
    out = runner.check()
    assert out and "no value for 3.0 s" in out[0].detail


def test_blocks_from_different_times_wait_for_each_other(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    sim = MotorSim(3)
    clock.advance(0.5)
    blocks = sim_blocks(sim)
    batch = block_samples(clock, blocks)
    late = Sample(
        batch[2].signal, batch[2].value, Quality.GOOD, Reason.NONE, clock.wall() - 1.0, clock.mono()
    )
    assert runner.on_samples(batch[:2] + [late]) == []
    assert runner.status()["counts"]["misaligned"] == 1
    clock.advance(0.5)
    fresh = block_samples(clock, sim_blocks(sim))
    assert runner.on_samples([fresh[2]]) == [], "x and y were set aside; they need new blocks"
    assert runner.on_samples(fresh[:2])


def test_wrong_block_length_and_non_finite_blocks_are_bad(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    clock.advance(0.5)
    x, y, z = sim_blocks(MotorSim(3))
    out = runner.on_samples(block_samples(clock, (x[:128], y[:128], z[:128])))
    assert out[0].quality is Quality.BAD and out[0].reason is Reason.CONFIG_ERROR
    assert "block of 128 samples; the model was trained on 256" in out[0].detail
    clock.advance(0.5)
    y2 = y.copy()
    y2[5] = np.nan
    out = runner.on_samples(block_samples(clock, (x, y2, z)))
    assert out[0].quality is Quality.BAD and out[0].reason is Reason.DECODE_ERROR


def test_non_finite_model_output_is_bad_and_counted(tmp_path: Path) -> None:
    stem = copy_package(tmp_path)
    put_onnx(stem, onnx_graph(body="inf"))
    runner = ModelRunner(config(stem), load_package(stem), FakeClock())
    clock = runner.clock
    assert isinstance(clock, FakeClock)
    sim = MotorSim(1)
    for _ in range(3):
        clock.advance(0.5)
        out = by_id(runner.on_samples(block_samples(clock, sim_blocks(sim))))
        assert out[SCORE].quality is Quality.BAD and out[SCORE].reason is Reason.DEVICE_FAILURE
        assert "not finite" in out[SCORE].detail or "inf" in out[SCORE].detail
    st = runner.status()
    assert st["counts"]["nonfinite"] == 3 and st["counts"]["bad_outputs"] == 3
    assert st["smoothed"] is None, "a non-finite score never reaches the smoothing"


def test_reload_failure_keeps_the_previous_model(tmp_path: Path, model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    sim = MotorSim(5)
    feats = []
    for _ in range(3):
        clock.advance(0.5)
        blocks = sim_blocks(sim)
        feats.append(block_features(*blocks))
        runner.on_samples(block_samples(clock, blocks))
    before = runner.status()
    assert runner.condition() is None

    for damage in (_corrupt, _wrong_feature_count, _reference_wrong_count, _missing_sidecar):
        stem = copy_package(tmp_path / damage.__name__)
        damage(stem)
        assert runner.reload(stem) is False
        st = runner.status()
        assert st["running"] and st["sha256"] == before["sha256"], "the old model runs on"
        severity, text = runner.condition() or ("", "")
        assert (
            severity == "medium"
            and "new package refused, still running motor_anomaly 1.0.0" in text
        )
        assert str(tmp_path) in st["load_error"]
        clock.advance(0.5)
        blocks = sim_blocks(sim)
        out = by_id(runner.on_samples(block_samples(clock, blocks)))
        assert out[SCORE].quality is Quality.GOOD
        assert out[SCORE].value == pytest.approx(float(model.score(block_features(*blocks))[0]))
    assert len(runner.status()["load_errors"]) == 4

    # a package for other inputs does not fit this model's wiring
    other = copy_package(tmp_path / "other")
    edit_sidecar(other, lambda raw: raw["inputs"][2].update(name="w"))
    edit_sidecar(
        other, lambda raw: [f.update(input="w") for f in raw["features"] if f["input"] == "z"]
    )
    assert runner.reload(other) is False
    assert "does not fit model motor1_anomaly" in runner.status()["load_error"]

    good = copy_package(tmp_path / "good")
    assert runner.reload(good) is True
    assert runner.condition() is None and runner.status()["drift"]["count"] == 0


def test_missing_package_at_start_gives_bad_outputs_and_a_condition(tmp_path: Path) -> None:
    clock = FakeClock()
    runner = ModelRunner.from_config(config(tmp_path / "nothing"), clock)
    severity, text = runner.condition() or ("", "")
    assert severity == "high" and "model motor1_anomaly not running" in text
    assert "missing ONNX file" in text
    clock.advance(0.5)
    out = runner.on_samples(block_samples(clock, sim_blocks(MotorSim(1))))
    assert out and all(s.quality is Quality.BAD and s.reason is Reason.CONFIG_ERROR for s in out)
    assert [s.id for s in runner.output_signals()][:3] == [
        SCORE,
        "motor1_anomaly.smoothed",
        "motor1_anomaly.state",
    ]
    assert runner.status()["running"] is False
    assert runner.reload(PKG) is True and runner.condition() is None


def test_histogram_for_the_drift_screen(model: OnnxModel) -> None:
    clock = FakeClock()
    runner = ModelRunner(config(), model, clock)
    sim = MotorSim(4)
    for _ in range(30):
        clock.advance(0.5)
        runner.on_samples(block_samples(clock, sim_blocks(sim)))
    h = runner.histogram("x.kurtosis")
    assert len(h["edges"]) == 11 and len(h["reference"]) == len(h["live"]) == 10
    assert sum(h["reference"]) == pytest.approx(1.0) and sum(h["live"]) == pytest.approx(1.0)
    assert h["count"] == 30
    assert runner.histogram("score")["count"] == 30
    with pytest.raises(KeyError):
        runner.histogram("w.rms")


# --- a model on scalar inputs -------------------------------------------------------------------------


def test_scalar_inputs_and_a_score_output(tmp_path: Path) -> None:
    """A package of another shape: two windows over a scalar signal, one score from the graph."""
    stem = tmp_path / "current_sum"
    data = onnx_graph(inputs=(("features", 2),), out_name="score", body="sum")
    stem.with_suffix(".onnx").write_bytes(data)
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (500, 2))
    names = ["current.mean_2s", "current.max_2s"]
    raw = {
        "format": FORMAT,
        "name": "current_sum",
        "version": "0.1",
        "onnx": {
            "file": "current_sum.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "input": "features",
            "output": "score",
        },
        "inputs": [{"name": "current", "kind": "scalar", "unit": "A"}],
        "features": [
            {"name": names[0], "input": "current", "stat": "mean", "window_s": 2.0},
            {"name": names[1], "input": "current", "stat": "max", "window_s": 2.0},
        ],
        "scaler": {"mean": [10.0, 10.0], "std": [1.0, 1.0], "clip": 5.0},
        "output": {"kind": "score", "index": 0},
        "smoothing": {"kind": "ewma", "alpha": 0.5},
        "thresholds": {"warning": 4.0, "critical": 8.0},
        "reference": reference_to_raw(reference_from_samples(names, train, train.sum(axis=1))),
    }
    stem.with_suffix(".json").write_text(dump_sidecar(raw))
    pkg = load_package(stem)
    cfg = ModelConfig(
        id="m2",
        package=stem,
        inputs=(("current", "motor1.current"),),
        outputs=(("score", "motor1.current_score"),),
    )
    clock = FakeClock()
    runner = ModelRunner(cfg, pkg, clock)
    out: dict[str, Sample] = {}
    for value in (10.0, 11.0, 12.0, 13.0):
        clock.advance(0.5)
        out = by_id(
            runner.on_samples(
                [
                    Sample(
                        "motor1.current",
                        value,
                        Quality.GOOD,
                        Reason.NONE,
                        clock.wall(),
                        clock.mono(),
                    )
                ]
            )
        )
    # the last 2 s hold 10, 11, 12, 13: mean 11.5 -> z 1.5, max 13 -> z 3; the graph sums them
    assert out["motor1.current_score"].value == pytest.approx(4.5)
    clock.advance(0.2)
    assert (
        runner.on_samples(
            [Sample("motor1.current", 14.0, Quality.GOOD, Reason.NONE, clock.wall(), clock.mono())]
        )
        == []
    ), "at most every 0.5 s"
    clock.advance(3.0)
    out = by_id(
        runner.on_samples(
            [Sample("motor1.speed", 1.0, Quality.GOOD, Reason.NONE, clock.wall(), clock.mono())]
        )
    )
    assert out == {}, "not an input of this model"


# --- the plant file's [[models]] ----------------------------------------------------------------------


SIGNAL_IDS = {"motor1.vibration.x", "motor1.vibration.y", "motor1.vibration.z", "motor1.current"}


def models_entry(**kw: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "motor1_anomaly",
        "package": "motor_anomaly",
        "inputs": dict(SIGNALS),
        "outputs": {"score": SCORE},
    }
    entry.update(kw)
    return entry


def test_parse_models_valid() -> None:
    models, problems = parse_models(
        [models_entry(drift={"psi_warn": 0.15, "psi_alert": 0.3})], SIGNAL_IDS, PKG.parent
    )
    assert problems == []
    (m,) = models
    assert m.id == "motor1_anomaly" and m.package == PKG
    assert m.input_map == SIGNALS and m.output_id("score") == SCORE
    assert m.output_id("state") == "motor1_anomaly.state"
    assert (m.psi_warn, m.psi_alert) == (0.15, 0.3)
    sigs = [s.id for s in output_signals(m, load_sidecar(PKG).feature_names)]
    assert len(sigs) == len(set(sigs)) == 40


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        (models_entry(color="red"), "models[0].color", "unknown key"),
        (
            models_entry(inputs={**SIGNALS, "x": "motor9.vibration.x"}),
            "models[0].inputs.x",
            "'motor9.vibration.x' is not a signal in this file",
        ),
        (
            models_entry(inputs={"x": SIGNALS["x"], "y": SIGNALS["y"]}),
            "models[0].inputs",
            "needs input 'z'",
        ),
        (
            models_entry(inputs={**SIGNALS, "w": "motor1.current"}),
            "models[0].inputs.w",
            "has no input 'w'",
        ),
        (
            models_entry(outputs={"score": "motor1.current"}),
            "models[0].outputs.score",
            "output 'motor1.current' is already a signal in this file",
        ),
        (models_entry(outputs={"smoothed": "a.b"}), "models[0].outputs.score", "missing"),
        (
            models_entry(outputs={"score": SCORE, "trend": "a.b"}),
            "models[0].outputs.trend",
            "unknown output",
        ),
        (models_entry(package="nowhere/motor"), "models[0].package", "not found"),
        (
            models_entry(drift={"psi_warn": 0.3, "psi_alert": 0.2}),
            "models[0].drift",
            "psi_warn 0.3 must be below psi_alert 0.2",
        ),
        (models_entry(drift={"psi_warn": -1}), "models[0].drift.psi_warn", "above 0"),
        (models_entry(drift={"psi": 1}), "models[0].drift.psi", "unknown key"),
        (models_entry(id="bad id!"), "models[0].id", "not a valid id"),
        (models_entry(id="motor1.current"), "models[0].id", "already a signal id"),
    ],
)
def test_parse_models_problems(entry: dict[str, Any], path: str, message: str) -> None:
    models, problems = parse_models([entry], SIGNAL_IDS, PKG.parent)
    assert models == []
    assert any(p == path and message in m for p, m in problems), problems


def test_parse_models_two_models_clash_and_duplicate_ids() -> None:
    a = models_entry()
    b = models_entry(id="other")
    c = models_entry()
    models, problems = parse_models([a, b, c], SIGNAL_IDS, PKG.parent)
    assert [m.id for m in models] == ["motor1_anomaly"]
    assert (
        "models[1].outputs.score",
        f"output '{SCORE}' is already written by models[0]",
    ) in problems
    assert any(p == "models[2].id" and "already used by models[0]" in m for p, m in problems)
    assert parse_models("nope", SIGNAL_IDS, PKG.parent)[1][0][0] == "models"


def test_parse_models_reports_a_bad_sidecar(tmp_path: Path) -> None:
    stem = copy_package(tmp_path)
    _reference_wrong_count(stem)
    _, problems = parse_models([models_entry()], SIGNAL_IDS, tmp_path)
    assert problems[0][0] == "models[0].package"
    assert "reference.features: has 32 entries" in problems[0][1]


# --- the recordings -------------------------------------------------------------------------------------


def load_recording(name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    d = np.load(RECORDINGS / f"{name}.npz")
    assert list(d["names"]) == load_sidecar(PKG).feature_names, "recorded with these features"
    return d["features"].astype(np.float64), d["t"], json.loads(str(d["meta"]))


def replay(
    model: OnnxModel,
    features: np.ndarray,
    t: np.ndarray,
    on_window: Callable[[float, dict[str, Sample], ModelRunner], None],
) -> ModelRunner:
    """Feed a recording window by window through the runner, on a fake clock at 0.5 s."""
    clock = FakeClock(wall=1_700_000_000.0)
    runner = ModelRunner(config(), model, clock)
    for f, ti in zip(features, t, strict=True):
        clock.advance(0.5)
        out = by_id(runner.score_features(f, t_source=clock.wall()))
        on_window(float(ti) - 0.5, out, runner)  # the window's start, in plant time
    return runner


@pytest.mark.parametrize("fault", ["imbalance", "bearing", "misalignment", "stuck_sensor"])
def test_each_fault_crosses_warning_within_10s_and_returns_within_10s(
    model: OnnxModel, fault: str
) -> None:
    features, t, meta = load_recording(fault)
    start, end = meta["start_s"], meta["end_s"]
    warning = model.package.thresholds.warning
    smoothed: list[tuple[float, float, float]] = []

    def on_window(ts: float, out: dict[str, Sample], _r: ModelRunner) -> None:
        smoothed.append(
            (
                ts,
                out["motor1_anomaly.smoothed"].value,  # type: ignore[arg-type]
                out["motor1_anomaly.state"].value,
            )
        )  # type: ignore[arg-type]

    replay(model, features, t, on_window)
    before = [s for ts, s, _ in smoothed if ts < start]
    assert max(before) < warning, "no false warning on the healthy minute before"
    up = next(ts for ts, s, _ in smoothed if ts >= start and s >= warning)
    assert up - start <= 10.0
    assert all(s >= warning for ts, s, _ in smoothed if start + 10 <= ts < end), "stays up"
    assert any(state >= 1 for ts, _, state in smoothed if start <= ts < end)
    down = next(ts for ts, s, _ in smoothed if ts >= end and s < warning)
    assert down - end <= 10.0
    assert all(s < warning for ts, s, _ in smoothed if ts >= end + 10), "stays down"


def test_sensor_drift_raises_drift_alert_before_the_score_crosses(model: OnnxModel) -> None:
    features, t, meta = load_recording("sensor_drift")
    start, end = meta["start_s"], meta["end_s"]
    warning = model.package.thresholds.warning
    seen: dict[str, Any] = {
        "alert": None,
        "cross": None,
        "alert_features": None,
        "status_before": set(),
        "psi_x_rms": None,
    }

    def on_window(ts: float, out: dict[str, Sample], r: ModelRunner) -> None:
        status = out.get("motor1_anomaly.drift.status")
        if "motor1_anomaly.drift.psi.x.rms" in out:
            seen["psi_x_rms"] = out["motor1_anomaly.drift.psi.x.rms"].value
        if ts < start and status is not None and status.quality is Quality.GOOD:
            seen["status_before"].add(status.value)
        if ts >= start and seen["alert"] is None and status is not None and status.value == 2:
            seen["alert"] = ts
            drift = r.status()["drift"]
            seen["alert_features"] = [
                f["name"] for f in drift["features"] if f["status"] == "alert"
            ]
            seen["worst"] = drift["worst"]
        smoothed = out["motor1_anomaly.smoothed"].value
        if ts >= start and seen["cross"] is None and smoothed >= warning:  # type: ignore[operator]
            seen["cross"] = ts
        if start <= ts < end and seen["cross"] is None:
            assert smoothed < warning  # type: ignore[operator]

    runner = replay(model, features, t, on_window)
    assert seen["status_before"] <= {0.0, 1.0}, "healthy: no drift alert before the fault"
    assert seen["alert"] is not None and seen["cross"] is not None
    assert seen["alert"] < seen["cross"], (seen["alert"], seen["cross"])
    assert seen["worst"].startswith("x.")
    assert seen["alert_features"] and all(n.startswith("x.") for n in seen["alert_features"]), (
        "the drifting axis is x: only its features alert"
    )
    st = runner.status()
    assert st["smoothed"] < warning, "back below after the drift is cleared"
    # the per-feature PSI signals carry the figures the drift panel shows
    assert seen["psi_x_rms"] == pytest.approx(
        next(f["psi"] for f in st["drift"]["features"] if f["name"] == "x.rms")
    )


def test_tolerance_check_flags_a_changed_threshold_and_ignores_versions() -> None:
    """The cross-machine comparison can fail: a threshold 1 % off is out of tolerance; the
    versions a package was trained with are information, not a difference."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train", ROOT / "fixtures/models/train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    side = json.loads(PKG.with_suffix(".json").read_text())
    other = json.loads(PKG.with_suffix(".json").read_text())
    other["training"]["versions"]["numpy"] = "0.0"
    assert train._numbers_differ(side, other, "sidecar", 1e-3) == []
    other["thresholds"]["warning"] *= 1.01
    assert train._numbers_differ(side, other, "sidecar", 1e-3) == [
        f"sidecar.thresholds.warning: {side['thresholds']['warning']!r} vs "
        f"{other['thresholds']['warning']!r}"
    ]


@pytest.mark.parametrize("section", ["scaler", "output", "smoothing", "thresholds", "reference"])
def test_an_empty_section_is_named_not_a_traceback(tmp_path: Path, section: str) -> None:
    raw = json.loads(PKG.with_suffix(".json").read_text())
    raw[section] = {}
    with pytest.raises(PackageError, match=f"{section}: expected an object with its settings"):
        parse_sidecar(
            raw,
            json_path=tmp_path / "motor_anomaly.json",
            onnx_path=tmp_path / "motor_anomaly.onnx",
        )
