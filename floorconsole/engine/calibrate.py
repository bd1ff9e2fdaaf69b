"""Recalibration: a candidate model package built from a window of recorded healthy history.

    cand = calibrate(reader, model_cfg, parent, since, until, DATA_DIR / "candidates",
                     train_weights=True, seed=7, progress=print_progress)

Reads the model's waveform inputs from the historian (HistoryReader: works beside a running
engine), block by block as the model runner saw them (every input GOOD, source times within
ALIGN_TOLERANCE_S, the machine running and settled when the model has an enable signal),
computes the package's features, and from them (core.calibrate) the scaler, the thresholds,
the drift reference and, with train_weights, new autoencoder weights written as ONNX. The
candidate goes to out_root/<model id>/<package sha, 16 digits>/NAME.{onnx,json} and is loaded
back with adapters.onnx_model.load_package: the same checks an imported package passes.

Its sidecar's "training" says where it came from: the window, the counts of windows used and
left out, the parent package's sha256, the seed. The same window and seed give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from floorconsole.adapters.onnx_model import OnnxModel, load_package, score_onnx_bytes
from floorconsole.core.calibrate import (
    DEFAULT_SEED,
    HIDDEN,
    MIN_WINDOWS,
    CalibrationError,
    Progress,
    Window,
    candidate_version,
    fit_scaler,
    scale,
    thresholds_from_scores,
    train_autoencoder,
)
from floorconsole.core.drift import reference_from_samples
from floorconsole.core.features import WAVEFORM_STATS, waveform_features
from floorconsole.core.model_config import ModelConfig
from floorconsole.core.model_package import dump_sidecar, reference_to_raw
from floorconsole.core.onnx_write import dense_autoencoder_onnx
from floorconsole.core.quality import Quality
from floorconsole.engine.model_runner import ALIGN_TOLERANCE_S

CHUNK_S = 600.0  # history is read ten minutes at a time: memory stays bounded for long windows
ENABLE_LOOKBACK_S = 3600.0  # how far before the window to look for the enable signal's state


class HistorySource(Protocol):
    def query(self, signal: str, since: float | None, until: float | None) -> list[Any]: ...

    def query_waveforms(
        self, signal: str, since: float | None, until: float | None
    ) -> list[Any]: ...


def _quiet(_what: str, _done: float) -> None:
    return None


@dataclass(frozen=True)
class Candidate:
    """A candidate package on disk, loaded and checked."""

    model_id: str
    path: Path  # NAME without suffix: NAME.onnx beside NAME.json
    package_sha256: str  # as OnnxModel.sha256
    onnx_sha256: str
    parent_sha256: str
    window: Window
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "path": str(self.path),
            "package_sha256": self.package_sha256,
            "onnx_sha256": self.onnx_sha256,
            "parent_sha256": self.parent_sha256,
            "window": self.window.as_dict(),
            **self.summary,
        }


class _EnableState:
    """Whether the machine was running and settled at a time, from the enable signal's
    recorded samples."""

    def __init__(self, records: Sequence[Any], settle_s: float) -> None:
        self.t = np.asarray([r.t for r in records], dtype=np.float64)
        on = [r.quality is Quality.GOOD and bool(r.value) for r in records]
        self.on = np.asarray(on, dtype=bool)
        since = np.full(len(on), np.inf)
        start = np.inf
        for i, v in enumerate(on):
            if v and (i == 0 or not on[i - 1]):
                start = self.t[i] if i else -np.inf  # on before the lookback: long settled
            since[i] = start if v else np.inf
        self.on_since = since
        self.settle_s = settle_s

    def ok(self, times: np.ndarray) -> np.ndarray:
        if not len(self.t):
            return np.zeros(len(times), dtype=bool)
        i = np.searchsorted(self.t, times, side="right") - 1
        valid = i >= 0
        j = np.where(valid, i, 0)
        return valid & self.on[j] & (times - self.on_since[j] >= self.settle_s)


def recorded_features(
    reader: HistorySource,
    cfg: ModelConfig,
    parent: OnnxModel,
    since: float,
    until: float,
    progress: Progress = _quiet,
) -> tuple[np.ndarray, int]:
    """(features (n, F), windows left out) of the window since <= t < until."""
    pkg = parent.package
    scalar = [f.name for f in pkg.features if f.window_s is not None]
    if scalar:
        raise CalibrationError(
            f"model {cfg.id}: recalibration reads waveform features only; "
            f"{', '.join(scalar[:3])} use scalar windows"
        )
    waveforms = [i for i in pkg.inputs if i.kind == "waveform"]
    signal_of = cfg.input_map
    cols = [
        (waveforms.index(pkg.input(f.input)), WAVEFORM_STATS.index(f.stat)) for f in pkg.features
    ]
    enable = None
    if cfg.enable:
        enable = _EnableState(
            reader.query(cfg.enable, since - ENABLE_LOOKBACK_S, until), cfg.settle_s
        )
    parts: list[np.ndarray] = []
    skipped = 0
    t = since
    while t < until:
        end = min(until, t + CHUNK_S)
        progress("reading the history", (t - since) / (until - since))
        blocks = []
        for spec in waveforms:
            recs = reader.query_waveforms(signal_of[spec.name], t, end)
            blocks.append(recs)
        anchor = blocks[0]
        feats, left = _chunk_features(anchor, blocks[1:], waveforms, enable)
        skipped += left
        if len(feats):
            parts.append(feats[:, [k * len(WAVEFORM_STATS) + s for k, s in cols]])
        t = end
    progress("reading the history", 1.0)
    x = np.concatenate(parts) if parts else np.zeros((0, len(pkg.features)))
    return x, skipped


def _chunk_features(
    anchor: list[Any], others: list[list[Any]], specs: Sequence[Any], enable: _EnableState | None
) -> tuple[np.ndarray, int]:
    """Features (m, inputs * 11) of the aligned, usable windows of one chunk, and how many
    anchor blocks were left out."""
    times = [np.asarray([r.t for r in recs], dtype=np.float64) for recs in others]
    rows: list[list[np.ndarray]] = []
    keep_t: list[float] = []
    skipped = 0
    for rec in anchor:
        group = [rec]
        for ts, recs in zip(times, others, strict=True):
            if not len(ts):
                break
            i = int(np.searchsorted(ts, rec.t))
            best = min(
                (k for k in (i - 1, i) if 0 <= k < len(ts)), key=lambda k: abs(ts[k] - rec.t)
            )
            if abs(ts[best] - rec.t) > ALIGN_TOLERANCE_S:
                break
            group.append(recs[best])
        usable = len(group) == len(specs) and all(
            r.quality is Quality.GOOD
            and (spec.samples is None or len(r.value) == spec.samples)
            and np.isfinite(r.value).all()
            for r, spec in zip(group, specs, strict=True)
        )
        if not usable:
            skipped += 1
            continue
        rows.append([r.value for r in group])
        keep_t.append(rec.t)
    if enable is not None and keep_t:
        ok = enable.ok(np.asarray(keep_t))
        skipped += int((~ok).sum())
        rows = [r for r, k in zip(rows, ok, strict=True) if k]
    if not rows:
        return np.zeros((0, len(specs) * len(WAVEFORM_STATS))), skipped
    feats = [waveform_features(np.stack([r[k] for r in rows])) for k in range(len(specs))]
    return np.concatenate(feats, axis=1), skipped


def calibrate(
    reader: HistorySource,
    cfg: ModelConfig,
    parent: OnnxModel,
    since: float,
    until: float,
    out_root: Path,
    *,
    train_weights: bool = False,
    seed: int = DEFAULT_SEED,
    progress: Progress = _quiet,
) -> Candidate:
    """Build, write and check a candidate package for model cfg.id from since <= t < until."""
    if not until > since:
        raise CalibrationError(f"the window must end after it starts ({since} .. {until})")
    pkg = parent.package
    x, skipped = recorded_features(reader, cfg, parent, since, until, progress)
    n = len(x)
    if n < MIN_WINDOWS:
        raise CalibrationError(
            f"model {cfg.id}: {n} usable windows between the two times ({skipped} left out: "
            f"an input BAD or missing, or the machine stopped); at least {MIN_WINDOWS} are "
            "needed (5 minutes of running)"
        )
    window = Window(since, until, n, skipped)
    mean, std = fit_scaler(x, pkg.scaler.std_floor_rel)
    z = scale(x, mean, std, pkg.scaler.clip)
    parent_raw = json.loads(pkg.sidecar_path.read_text(encoding="utf-8"))
    weights_note: dict[str, Any]
    if train_weights:
        if pkg.output.kind != "reconstruction_error":
            raise CalibrationError(
                f"model {cfg.id}: new weights are trained for autoencoders only (output kind "
                f"reconstruction_error); this package's output is a {pkg.output.kind}"
            )
        trained = train_autoencoder(z, seed=seed, progress=progress)
        onnx_bytes = dense_autoencoder_onnx(
            trained.weights,
            trained.biases,
            input_name=pkg.onnx_input,
            output_name=pkg.onnx_output,
            graph_name=pkg.name,
            doc=f"floorconsole {pkg.name}: autoencoder retrained at the box",
        )
        sizes = "-".join(str(s) for s in (len(pkg.features), *HIDDEN, len(pkg.features)))
        weights_note = {
            "weights": f"trained at the box: dense {sizes} tanh, Adam, seed {seed}, "
            f"{trained.steps} steps ({trained.epochs:.1f} epochs)",
            "train_loss": trained.loss,
        }
    else:
        onnx_bytes = pkg.onnx_path.read_bytes()
        weights_note = {"weights": "the parent's, unchanged"}
    progress("scoring the window", 0.0)
    scores = score_onnx_bytes(onnx_bytes, pkg.onnx_input, pkg.onnx_output, pkg.output, z)
    fit = thresholds_from_scores(scores)
    reference = reference_from_samples(pkg.feature_names, x, scores)
    onnx_sha = hashlib.sha256(onnx_bytes).hexdigest()
    sidecar = dict(parent_raw)
    sidecar["version"] = candidate_version(pkg.version, until)
    sidecar["onnx"] = {**parent_raw["onnx"], "sha256": onnx_sha}
    sidecar["scaler"] = {**parent_raw["scaler"], "mean": mean, "std": std}
    sidecar["thresholds"] = {
        "warning": fit.warning,
        "critical": fit.critical,
        "basis": fit.basis(n),
    }
    sidecar["reference"] = reference_to_raw(reference)
    sidecar["training"] = {
        "recalibrated": "at the box from a window of recorded history marked healthy",
        "model": cfg.id,
        "window": window.as_dict(),
        "inputs": {name: sig for name, sig in cfg.inputs},
        "parent": {
            "name": pkg.name,
            "version": pkg.version,
            "package_sha256": parent.sha256,
            "onnx_sha256": parent.onnx_sha256,
        },
        "seed": seed if train_weights else None,
        **weights_note,
    }
    text = dump_sidecar(sidecar)
    package_sha = hashlib.sha256(
        (onnx_sha + hashlib.sha256(text.encode()).hexdigest()).encode()
    ).hexdigest()
    stem = pkg.onnx_path.stem
    folder = Path(out_root) / cfg.id / package_sha[:16]
    path = folder / stem
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=folder.parent))
        try:
            (tmp / f"{stem}.onnx").write_bytes(onnx_bytes)
            (tmp / f"{stem}.json").write_text(text, encoding="utf-8")
            os.replace(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not folder.exists():
                raise
    progress("checking the candidate", 1.0)
    model = load_package(path)  # the checks an imported package passes
    s = np.asarray(scores, dtype=np.float64)
    summary = {
        "version": model.version,
        "warning": float(model.package.thresholds.warning),
        "critical": float(model.package.thresholds.critical),
        "parent_warning": float(pkg.thresholds.warning),
        "parent_critical": float(pkg.thresholds.critical),
        "score_mean": float(s.mean()),
        "trained": bool(train_weights),
        **{k: v for k, v in weights_note.items() if k == "train_loss"},
    }
    return Candidate(
        model_id=cfg.id,
        path=path,
        package_sha256=model.sha256,
        onnx_sha256=model.onnx_sha256,
        parent_sha256=parent.sha256,
        window=window,
        summary=summary,
    )
