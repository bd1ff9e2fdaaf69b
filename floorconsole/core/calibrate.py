"""Recalibration at the box: a candidate model package from a window of healthy history.

After an overhaul, a new mounting or a changed load profile, the model's idea of "normal" is
out of date. An engineer marks a window of recorded history as healthy; from the feature
vectors of that window this module computes what a new package needs, the way the model's
own training did (fixtures/models/train.py):

- the scaler: z = (x - mean) / std, std floored at std_floor_rel * |mean|, clipped;
- thresholds from the distribution of the reconstruction error over the window: warning =
  mean + WARN_SD sd, critical = mean + CRIT_SD sd;
- the drift reference (core.drift.reference_from_samples: the same bins and quantiles the
  drift monitor compares live data with);
- optionally new autoencoder weights (train_autoencoder): a small dense network trained here
  with numpy (Adam, tanh), deterministic for one data set and seed, and a fixed number of
  steps so it takes seconds on two cores whatever the window's length; written as ONNX by
  core.onnx_write.

Pure (stdlib + numpy): reading the history and running onnxruntime are the engine's
(engine.calibrate).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from floorconsole.core.model_package import dump_sidecar

WARN_SD = 3.0  # as fixtures/models/train.py: warning = mean + 3 sd of the training scores
CRIT_SD = 6.0  # critical = mean + 6 sd
MIN_WINDOWS = 600  # 5 min at 2 windows/s: fewer make thresholds and drift bins guesswork
HIDDEN = (16, 8, 16)  # the demo model's shape (33-16-8-16-33)
TRAIN_STEPS = 4000  # Adam steps of BATCH windows: about 5 s on one core for 33 features
BATCH = 256
LEARNING_RATE = 1e-3
L2 = 1e-4  # as MLPRegressor's alpha
DEFAULT_SEED = 20240601

Progress = Callable[[str, float], None]  # (what, fraction done 0..1)


def _quiet(_what: str, _done: float) -> None:
    return None


class CalibrationError(ValueError):
    """A window that cannot make a candidate (too short, no usable data); says why."""


def fit_scaler(x: np.ndarray, std_floor_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """mean and floored std of (n, F) features, rounded as the sidecar stores them, so the
    scores computed here are the scores the engine will compute."""
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), np.maximum(std_floor_rel * np.abs(mean), 1e-12))
    stored = json.loads(dump_sidecar({"mean": mean, "std": std}))
    return np.asarray(stored["mean"]), np.asarray(stored["std"])


def scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float) -> np.ndarray:
    """As core.model_package.Scaler.transform."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = (np.asarray(x, dtype=np.float64) - mean) / std
    return np.clip(np.nan_to_num(z, nan=0.0), -clip, clip).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ThresholdFit:
    warning: float
    critical: float
    mean: float
    sd: float

    def basis(self, windows: int) -> str:
        return (
            f"warning = mean + {WARN_SD:g} sd, critical = mean + {CRIT_SD:g} sd of the "
            f"reconstruction error over {windows} healthy windows (mean {self.mean:.4g}, "
            f"sd {self.sd:.4g})"
        )


def thresholds_from_scores(scores: np.ndarray) -> ThresholdFit:
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2:
        raise CalibrationError("no finite scores in the window: thresholds cannot be set")
    mean, sd = float(s.mean()), float(s.std())
    sd = max(sd, 1e-12)
    return ThresholdFit(mean + WARN_SD * sd, mean + CRIT_SD * sd, mean, sd)


@dataclass(frozen=True)
class TrainedWeights:
    weights: tuple[np.ndarray, ...]  # (in, out) per layer, float32 values held as float64
    biases: tuple[np.ndarray, ...]
    loss: float  # mean squared reconstruction error over the data at the end
    steps: int
    epochs: float


def _as_f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).astype(np.float64)


def train_autoencoder(
    z: np.ndarray,
    *,
    seed: int = DEFAULT_SEED,
    hidden: Sequence[int] = HIDDEN,
    steps: int = TRAIN_STEPS,
    batch: int = BATCH,
    learning_rate: float = LEARNING_RATE,
    l2: float = L2,
    progress: Progress = _quiet,
) -> TrainedWeights:
    """A dense autoencoder F-h1-...-F (tanh, identity output) trained to reproduce z (n, F)
    with Adam on mean squared error. Deterministic: one seed gives one initialisation
    (Glorot uniform) and one order of minibatches, and every operation is plain float64
    numpy in a fixed order, so the same data and seed give the same weights."""
    x = np.asarray(z, dtype=np.float64)
    n, f = x.shape
    if n < 2:
        raise CalibrationError("too few windows to train on")
    rng = np.random.default_rng(seed)
    sizes = [f, *hidden, f]
    ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        lim = np.sqrt(6.0 / (a + b))
        ws.append(rng.uniform(-lim, lim, size=(a, b)))
        bs.append(rng.uniform(-lim, lim, size=b))
    params = ws + bs
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    batch = min(batch, n)
    order = rng.permutation(n)
    pos = 0
    layers = len(ws)
    report_every = max(1, steps // 20)
    for step in range(1, steps + 1):
        if pos + batch > n:
            order = rng.permutation(n)
            pos = 0
        xb = x[order[pos : pos + batch]]
        pos += batch
        # forward
        acts = [xb]
        h = xb
        for k in range(layers):
            h = h @ ws[k] + bs[k]
            if k < layers - 1:
                h = np.tanh(h)
            acts.append(h)
        # backward: d(mean over the batch of sum((y - x)^2) / 2) as MLPRegressor's loss
        delta = (acts[-1] - xb) / batch
        grads_w: list[np.ndarray] = [np.empty(0)] * layers
        grads_b: list[np.ndarray] = [np.empty(0)] * layers
        for k in range(layers - 1, -1, -1):
            grads_w[k] = acts[k].T @ delta + (l2 / batch) * ws[k]
            grads_b[k] = delta.sum(axis=0)
            if k:
                delta = (delta @ ws[k].T) * (1.0 - acts[k] * acts[k])
        grads = grads_w + grads_b
        lr_t = learning_rate * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        for i, g in enumerate(grads):
            m1[i] = beta1 * m1[i] + (1 - beta1) * g
            m2[i] = beta2 * m2[i] + (1 - beta2) * g * g
            params[i] -= lr_t * m1[i] / (np.sqrt(m2[i]) + eps)
        ws, bs = params[:layers], params[layers:]
        if step % report_every == 0:
            progress("training the autoencoder", step / steps)
    # The file holds float32: the loss and everything after are computed with those values.
    ws32 = tuple(_as_f32(w) for w in ws)
    bs32 = tuple(_as_f32(b) for b in bs)
    loss = float(np.mean((forward(ws32, bs32, x) - x) ** 2))
    return TrainedWeights(ws32, bs32, loss, steps, steps * batch / n)


def forward(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], z: np.ndarray
) -> np.ndarray:
    h = np.asarray(z, dtype=np.float64)
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w + b
        if k < len(weights) - 1:
            h = np.tanh(h)
    return h


@dataclass(frozen=True, slots=True)
class Window:
    """The healthy window a candidate comes from: wall-clock bounds and what was in it."""

    since: float
    until: float
    windows: int  # feature vectors used
    skipped: int  # windows left out (an input BAD, missing or misaligned, the machine stopped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "windows": self.windows,
            "skipped": self.skipped,
        }


def candidate_version(parent_version: str, until: float) -> str:
    """parent version + a tag naming the window's end, e.g. 1.0.0+cal.20261203T1930Z."""
    import time as _time

    stamp = _time.strftime("%Y%m%dT%H%MZ", _time.gmtime(until))
    base = parent_version.split("+cal.")[0]
    return f"{base}+cal.{stamp}"
