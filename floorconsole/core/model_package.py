"""Model packages: NAME.onnx beside its sidecar NAME.json, and the validated sidecar.

The sidecar says everything the engine needs besides the ONNX graph itself:

    {
      "format": "floorconsole-model/1",
      "name": "motor_anomaly", "version": "1.0.0", "description": "...",
      "onnx": {"file": "motor_anomaly.onnx", "sha256": "<hex of that file>",
               "input": "features", "output": "variable"},
      "inputs": [{"name": "x", "kind": "waveform", "samples": 256, "rate_hz": 500.0, "unit": "g"},
                 {"name": "current", "kind": "scalar", "unit": "A"}],
      "features": [{"name": "x.rms", "input": "x", "stat": "rms", "window": "block"},
                   {"name": "current.mean_10s", "input": "current", "stat": "mean",
                    "window_s": 10.0}],
      "scaler": {"mean": [...], "std": [...], "std_floor_rel": 0.001, "clip": 5.0},
      "output": {"kind": "reconstruction_error", "error": "mse"}   # or {"kind": "score", "index": 0}
      "smoothing": {"kind": "ewma", "alpha": 0.3}                  # or {"kind": "mean", "window": 4}
      "thresholds": {"warning": 0.42, "critical": 0.77, "basis": "..."},
      "drift": {"window": 600, "min_windows": 240},                # optional
      "reference": {"windows": N, "levels": [0, 0.02, ..., 1],
                    "features": [{"name", "mean", "std", "edges", "counts", "quantiles"}, ...],
                    "score": {...the same for the score}},
      "training": {...}                                            # optional, free form
    }

The scaler maps a raw feature vector to the model's input: z = (x - mean) / std, clipped to
+-clip, as float32. std is stored already floored (at least std_floor_rel * |mean|, and > 0).
A reconstruction_error output is the mean squared (mse) or mean absolute (mae) difference
between the scaled input and the ONNX output; a score output is element `index` of it.

"onnx.sha256" ties a sidecar to one ONNX file: a sidecar beside another model's graph is refused.
Everything here is pure (stdlib + numpy); checking the ONNX graph itself is the adapter's job
(floorconsole.adapters.onnx_model).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from floorconsole.core.drift import (
    DriftReference,
    FeatureReference,
)
from floorconsole.core.features import SCALAR_STATS, WAVEFORM_STATS
from floorconsole.core.validate import ID_PATTERN, SIDECAR, Problems, join

FORMAT = "floorconsole-model/1"
OUTPUT_KINDS = ("reconstruction_error", "score")
ERROR_KINDS = ("mse", "mae")
SMOOTHING_KINDS = ("ewma", "mean")
INPUT_KINDS = ("waveform", "scalar")
DEFAULT_DRIFT_WINDOW = 600  # 5 min at 2 windows/s: PSI's sampling noise stays well below 0.1
DEFAULT_DRIFT_MIN_WINDOWS = 240  # 2 min: with fewer, PSI's sampling noise alone nears 0.1
NAME_PATTERN = ID_PATTERN  # a package's name, and its inputs' and features'
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class PackageError(Exception):
    """A model package that cannot be used: names the file and everything wrong with it."""

    def __init__(self, source: str | Path, problems: Sequence[str]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"{self.source}: {self.problems[0]}"
        else:
            text = f"{self.source}: {len(self.problems)} problems\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(text)


# --- the package ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    kind: str  # waveform | scalar
    samples: int | None = None  # waveform: block length the model was trained on
    rate_hz: float | None = None
    unit: str = ""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    input: str
    stat: str
    window_s: float | None = None  # None: one waveform block; else a scalar window in seconds

    @property
    def window_text(self) -> str:
        return "block" if self.window_s is None else f"{self.window_s:g} s"


@dataclass(frozen=True)
class Scaler:
    mean: np.ndarray
    std: np.ndarray
    clip: float
    std_floor_rel: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(F,) or (n, F) raw features -> float32 model input, z-scored and clipped."""
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return np.clip(np.nan_to_num(z, nan=0.0), -self.clip, self.clip).astype(np.float32)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    kind: str  # reconstruction_error | score
    error: str = "mse"
    index: int = 0

    def score(self, output: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        """Scores of a batch: output is what the ONNX graph gave, scaled its (n, F) input.

        Raises ValueError when the output does not have the size this spec needs."""
        n, f = scaled.shape
        out = np.asarray(output, dtype=np.float64)
        if self.kind == "reconstruction_error":
            if out.size != n * f:
                raise ValueError(
                    f"the ONNX output has {out.size // max(n, 1)} values per window; "
                    f"a reconstruction needs {f}"
                )
            # MLPRegressor converted by skl2onnx gives (n*f, 1): reshape, do not trust the shape
            diff = out.reshape(n, f) - scaled.astype(np.float64)
            if self.error == "mae":
                return np.abs(diff).mean(axis=1)
            return (diff * diff).mean(axis=1)
        per = out.size // max(n, 1)
        if out.size % max(n, 1) or self.index >= per:
            raise ValueError(
                f"the ONNX output has {per} values per window; the score is element {self.index}"
            )
        return out.reshape(n, per)[:, self.index]


@dataclass(frozen=True, slots=True)
class Smoothing:
    kind: str  # ewma | mean
    alpha: float = 0.3
    window: int = 4

    def describe(self) -> str:
        if self.kind == "ewma":
            return f"EWMA alpha {self.alpha:g}"
        return f"mean of the last {self.window} windows"


class Smoother:
    """The smoothed score: an EWMA, or the mean of the last `window` scores."""

    def __init__(self, spec: Smoothing) -> None:
        self.spec = spec
        self.value: float | None = None
        self._recent: list[float] = []

    def update(self, x: float) -> float:
        if self.spec.kind == "ewma":
            a = self.spec.alpha
            self.value = x if self.value is None else a * x + (1 - a) * self.value
        else:
            self._recent.append(x)
            if len(self._recent) > self.spec.window:
                del self._recent[0]
            self.value = sum(self._recent) / len(self._recent)
        return self.value

    def reset(self) -> None:
        self.value = None
        self._recent.clear()


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning: float
    critical: float
    basis: str = ""

    def state(self, smoothed: float) -> int:
        """0 normal, 1 warning, 2 critical."""
        if smoothed >= self.critical:
            return 2
        if smoothed >= self.warning:
            return 1
        return 0


@dataclass(frozen=True, slots=True)
class DriftSettings:
    window: int = DEFAULT_DRIFT_WINDOW
    min_windows: int = DEFAULT_DRIFT_MIN_WINDOWS
    ph_delta: float = 0.5
    ph_threshold: float = 25.0


@dataclass(frozen=True)
class ModelPackage:
    """A validated sidecar. Paths are absolute; the ONNX file is checked by the adapter."""

    name: str
    version: str
    description: str
    onnx_path: Path
    sidecar_path: Path
    onnx_sha256: str
    onnx_input: str
    onnx_output: str
    inputs: tuple[InputSpec, ...]
    features: tuple[FeatureSpec, ...]
    scaler: Scaler
    output: OutputSpec
    smoothing: Smoothing
    thresholds: Thresholds
    reference: DriftReference
    drift: DriftSettings = DriftSettings()
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def input(self, name: str) -> InputSpec:
        for i in self.inputs:
            if i.name == name:
                return i
        raise KeyError(name)


def package_paths(path: str | Path) -> tuple[Path, Path]:
    """(NAME.onnx, NAME.json) for 'NAME', 'NAME.onnx' or 'NAME.json'."""
    p = Path(path)
    if p.suffix in (".onnx", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".onnx"), p.with_name(p.name + ".json")


def load_sidecar(path: str | Path) -> ModelPackage:
    """Read and validate the sidecar of a package (path: NAME, NAME.onnx or NAME.json).

    Raises PackageError naming the file and every problem found."""
    onnx_path, json_path = package_paths(path)
    if not json_path.exists():
        raise PackageError(
            json_path,
            [
                f"missing sidecar: a model package is {onnx_path.name} with {json_path.name} beside "
                f"it, and {json_path.name} is not there"
            ],
        )
    try:
        raw = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PackageError(json_path, [f"cannot read the sidecar: {e.strerror}"]) from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackageError(json_path, [f"the sidecar is not valid JSON: {e}"]) from e
    return parse_sidecar(raw, json_path=json_path.resolve(), onnx_path=onnx_path.resolve())


def parse_sidecar(raw: Any, *, json_path: Path, onnx_path: Path) -> ModelPackage:
    c = Problems(SIDECAR)
    if not isinstance(raw, dict):
        raise PackageError(json_path, ["the sidecar must be a JSON object"])
    c.unknown_keys(
        raw,
        "",
        (
            "format",
            "name",
            "version",
            "description",
            "onnx",
            "inputs",
            "features",
            "scaler",
            "output",
            "smoothing",
            "thresholds",
            "drift",
            "reference",
            "training",
        ),
    )
    fmt = raw.get("format")
    if fmt != FORMAT:
        c.add("format", f"{fmt!r} is not a format this version reads; expected {FORMAT!r}")
    name = c.string(raw, "name", "", pattern=NAME_PATTERN, required=True) or ""
    version = c.string(raw, "version", "", required=True) or ""
    description = c.string(raw, "description", "") or ""

    onnx = c.required_table(raw, "onnx", "")
    onnx_file = c.string(onnx, "file", "onnx", required=True) or ""
    onnx_sha = c.string(onnx, "sha256", "onnx", required=True) or ""
    onnx_input = c.string(onnx, "input", "onnx", required=True) or ""
    onnx_output = c.string(onnx, "output", "onnx", required=True) or ""
    c.unknown_keys(onnx, "onnx", ("file", "sha256", "input", "output"))
    if onnx_file and onnx_file != onnx_path.name:
        c.add(
            "onnx.file",
            f"this sidecar belongs to {onnx_file!r}, not {onnx_path.name!r}: a "
            "sidecar for another model",
        )
    if onnx_sha and not SHA256_PATTERN.match(onnx_sha):
        c.add("onnx.sha256", "expected 64 lower-case hex digits")

    inputs = _inputs(c, raw.get("inputs"))
    features = _features(c, raw.get("features"), {i.name: i for i in inputs})
    n_feat = len(features)
    scaler = _scaler(c, c.required_table(raw, "scaler", ""), n_feat)
    output = _output(c, c.required_table(raw, "output", ""))
    smoothing = _smoothing(c, c.required_table(raw, "smoothing", ""))
    thresholds = _thresholds(c, c.required_table(raw, "thresholds", ""))
    drift = _drift_settings(c, raw.get("drift", {}))
    reference = _reference(c, c.required_table(raw, "reference", ""), [f.name for f in features])
    training = raw.get("training", {})
    if not isinstance(training, dict):
        c.add("training", "expected an object")
        training = {}
    sections = {
        "scaler": scaler,
        "output": output,
        "smoothing": smoothing,
        "thresholds": thresholds,
        "reference": reference,
    }
    for section, value in sections.items():
        if value is None and not c.problems:  # given as {}: nothing above saw a key missing
            c.add(section, "expected an object with its settings, got an empty one")
    if c.problems:
        raise PackageError(json_path, c.texts())
    assert scaler is not None and output is not None and smoothing is not None
    assert thresholds is not None and reference is not None
    return ModelPackage(
        name=name,
        version=version,
        description=description,
        onnx_path=onnx_path,
        sidecar_path=json_path,
        onnx_sha256=onnx_sha,
        onnx_input=onnx_input,
        onnx_output=onnx_output,
        inputs=tuple(inputs),
        features=tuple(features),
        scaler=scaler,
        output=output,
        smoothing=smoothing,
        thresholds=thresholds,
        reference=reference,
        drift=drift,
        training=training,
    )


def _vector(c: Problems, t: dict[str, Any], key: str, path: str, n: int) -> np.ndarray | None:
    """One finite number per feature."""
    p = join(path, key)
    v = c.numbers(t, key, path)
    if v is None:
        c.add(p, "missing or not a list of numbers")
        return None
    a = np.asarray(v, dtype=np.float64)
    if len(a) != n:
        c.add(p, f"has {len(a)} values; the package has {n} features")
        return None
    if not np.isfinite(a).all():
        c.add(p, "holds a value that is not finite")
        return None
    return a


def _inputs(c: Problems, raw: Any) -> list[InputSpec]:
    out: list[InputSpec] = []
    seen: set[str] = set()
    for p, t in c.list_of_tables(raw, "inputs"):
        c.unknown_keys(t, p, ("name", "kind", "samples", "rate_hz", "unit"))
        name = c.string(t, "name", p, pattern=NAME_PATTERN, required=True)
        kind = c.string(t, "kind", p, choices=INPUT_KINDS, required=True)
        unit = c.string(t, "unit", p) or ""
        samples = rate = None
        if kind == "waveform":
            samples = c.integer(t, "samples", p, lo=2, required=True)
            rate = c.number(t, "rate_hz", p, positive=True)
        elif kind == "scalar" and ("samples" in t or "rate_hz" in t):
            c.add(p, "samples and rate_hz apply only to waveform inputs")
        if name in seen:
            c.add(f"{p}.name", f"{name!r} is used twice")
            continue
        if name is not None and kind is not None:
            seen.add(name)
            out.append(InputSpec(name, kind, samples, rate, unit))
    return out


def _features(c: Problems, raw: Any, inputs: dict[str, InputSpec]) -> list[FeatureSpec]:
    out: list[FeatureSpec] = []
    seen: set[str] = set()
    for p, t in c.list_of_tables(raw, "features"):
        c.unknown_keys(t, p, ("name", "input", "stat", "window", "window_s"))
        name = c.string(t, "name", p, pattern=NAME_PATTERN, required=True)
        inp = c.string(t, "input", p, required=True)
        stat = c.string(t, "stat", p, required=True)
        spec = inputs.get(inp) if inp else None
        if inp and inputs and spec is None:
            c.add(f"{p}.input", f"{inp!r} is not one of the inputs ({', '.join(inputs)})")
        window_s = None
        if spec is not None and spec.kind == "waveform":
            if t.get("window") != "block" or "window_s" in t:
                c.add(p, 'a waveform feature takes window = "block" (one block)')
            if stat is not None and stat not in WAVEFORM_STATS:
                c.add(f"{p}.stat", f"{stat!r} is not one of {', '.join(WAVEFORM_STATS)}")
                stat = None
        elif spec is not None:
            window_s = c.number(t, "window_s", p, positive=True, required=True)
            if "window" in t:
                c.add(f"{p}.window", "a scalar feature takes window_s (seconds), not window")
            if stat is not None and stat not in SCALAR_STATS:
                c.add(f"{p}.stat", f"{stat!r} is not one of {', '.join(SCALAR_STATS)}")
                stat = None
        if name in seen:
            c.add(f"{p}.name", f"{name!r} is used twice")
            continue
        if name and inp and stat and spec is not None:
            seen.add(name)
            out.append(FeatureSpec(name, inp, stat, window_s))
    return out


def _scaler(c: Problems, t: dict[str, Any], n: int) -> Scaler | None:
    if not t:
        return None
    c.unknown_keys(t, "scaler", ("mean", "std", "std_floor_rel", "clip"))
    mean = _vector(c, t, "mean", "scaler", n)
    std = _vector(c, t, "std", "scaler", n)
    clip = c.number(t, "clip", "scaler", positive=True, required=True)
    floor = c.number(t, "std_floor_rel", "scaler", default=0.0) or 0.0
    if std is not None and not (std > 0).all():
        c.add(
            "scaler.std",
            f"feature {int(np.argmin(std))} has std {std.min()}: every std must be "
            "above 0 (store it floored)",
        )
        std = None
    if mean is None or std is None or clip is None:
        return None
    return Scaler(mean=mean, std=std, clip=clip, std_floor_rel=floor)


def _output(c: Problems, t: dict[str, Any]) -> OutputSpec | None:
    if not t:
        return None
    c.unknown_keys(t, "output", ("kind", "error", "index"))
    kind = c.string(t, "kind", "output", choices=OUTPUT_KINDS, required=True)
    if kind == "reconstruction_error":
        error = c.string(t, "error", "output", choices=ERROR_KINDS) or "mse"
        return OutputSpec(kind, error=error)
    if kind == "score":
        index = c.integer(t, "index", "output", default=0, lo=0)
        return OutputSpec(kind, index=index or 0)
    return None


def _smoothing(c: Problems, t: dict[str, Any]) -> Smoothing | None:
    if not t:
        return None
    c.unknown_keys(t, "smoothing", ("kind", "alpha", "window"))
    kind = c.string(t, "kind", "smoothing", choices=SMOOTHING_KINDS, required=True)
    if kind == "ewma":
        alpha = c.number(t, "alpha", "smoothing", positive=True, required=True)
        if alpha is not None and alpha > 1:
            c.add("smoothing.alpha", f"must be in (0, 1], got {alpha}")
            return None
        return Smoothing(kind, alpha=alpha) if alpha is not None else None
    if kind == "mean":
        window = c.integer(t, "window", "smoothing", required=True, lo=1)
        return Smoothing(kind, window=window) if window is not None else None
    return None


def _thresholds(c: Problems, t: dict[str, Any]) -> Thresholds | None:
    if not t:
        return None
    c.unknown_keys(t, "thresholds", ("warning", "critical", "basis"))
    warning = c.number(t, "warning", "thresholds", required=True)
    critical = c.number(t, "critical", "thresholds", required=True)
    basis = c.string(t, "basis", "thresholds") or ""
    if warning is None or critical is None:
        return None
    if not warning < critical:
        c.add("thresholds", f"warning {warning} must be below critical {critical}")
        return None
    return Thresholds(warning, critical, basis)


def _drift_settings(c: Problems, t: Any) -> DriftSettings:
    if not isinstance(t, dict):
        c.add("drift", "expected an object")
        return DriftSettings()
    c.unknown_keys(t, "drift", ("window", "min_windows", "page_hinkley"))
    window = c.integer(t, "window", "drift", default=DEFAULT_DRIFT_WINDOW, lo=2)
    min_w = c.integer(
        t,
        "min_windows",
        "drift",
        default=min(DEFAULT_DRIFT_MIN_WINDOWS, window or 2),
        lo=1,
    )
    ph = t.get("page_hinkley", {})
    delta, thr = 0.5, 25.0
    if isinstance(ph, dict):
        c.unknown_keys(ph, "drift.page_hinkley", ("delta", "threshold"))
        delta = c.number(ph, "delta", "drift.page_hinkley", default=0.5) or 0.0
        thr = c.number(ph, "threshold", "drift.page_hinkley", default=25.0, positive=True) or 25.0
    else:
        c.add("drift.page_hinkley", "expected an object")
    assert window is not None and min_w is not None
    if min_w > window:
        c.add("drift.min_windows", f"{min_w} is more than the window ({window})")
        min_w = window
    return DriftSettings(window=window, min_windows=min_w, ph_delta=delta, ph_threshold=thr)


def _feature_reference(c: Problems, t: Any, path: str, n_levels: int) -> FeatureReference | None:
    if not isinstance(t, dict):
        c.add(path, "expected an object")
        return None
    c.unknown_keys(t, path, ("name", "mean", "std", "edges", "counts", "quantiles"))
    name = c.string(t, "name", path, required=True) or ""
    mean = c.number(t, "mean", path, required=True)
    std = c.number(t, "std", path, required=True)
    arrays = {}
    for key in ("edges", "counts", "quantiles"):
        v = t.get(key)
        if (
            not isinstance(v, list)
            or not v
            or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in v
            )
        ):
            c.add(join(path, key), "missing or not a list of finite numbers")
            return None
        arrays[key] = np.asarray(v, dtype=np.float64)
    edges, counts, quantiles = arrays["edges"], arrays["counts"], arrays["quantiles"]
    ok = True
    if len(edges) < 3 or len(counts) != len(edges) - 1:
        c.add(
            path, f"{len(edges)} edges and {len(counts)} counts: expected B+1 edges for B >= 2 bins"
        )
        ok = False
    if (np.diff(edges) < 0).any():
        c.add(join(path, "edges"), "must not decrease")
        ok = False
    if (counts < 0).any() or counts.sum() <= 0:
        c.add(join(path, "counts"), "must be >= 0 with a positive total")
        ok = False
    if len(quantiles) != n_levels:
        c.add(join(path, "quantiles"), f"has {len(quantiles)} values for {n_levels} levels")
        ok = False
    elif (np.diff(quantiles) < 0).any():
        c.add(join(path, "quantiles"), "must not decrease")
        ok = False
    if std is not None and std < 0:
        c.add(join(path, "std"), "must be >= 0")
        ok = False
    if not ok or mean is None or std is None:
        return None
    return FeatureReference(
        name=name,
        mean=mean,
        std=std,
        edges=tuple(edges.tolist()),
        counts=tuple(counts.tolist()),
        quantiles=tuple(quantiles.tolist()),
    )


def _reference(c: Problems, t: dict[str, Any], names: list[str]) -> DriftReference | None:
    if not t:
        return None
    c.unknown_keys(t, "reference", ("windows", "levels", "features", "score"))
    windows = c.integer(t, "windows", "reference", required=True, lo=1) or 0
    levels_raw = t.get("levels")
    if (
        not isinstance(levels_raw, list)
        or len(levels_raw) < 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in levels_raw)
    ):
        c.add("reference.levels", "expected a list of quantile levels from 0 to 1")
        return None
    levels = np.asarray(levels_raw, dtype=np.float64)
    if levels[0] != 0.0 or levels[-1] != 1.0 or (np.diff(levels) <= 0).any():
        c.add("reference.levels", "must rise strictly from 0 to 1")
        return None
    feats_raw = t.get("features")
    if not isinstance(feats_raw, list):
        c.add("reference.features", "expected a list, one entry per feature")
        return None
    if len(feats_raw) != len(names):
        c.add(
            "reference.features",
            f"has {len(feats_raw)} entries; the package has "
            f"{len(names)} features: the reference must describe each "
            "feature, in order",
        )
        return None
    feats = []
    bins: set[int] = set()
    for j, ft in enumerate(feats_raw):
        p = f"reference.features[{j}]"
        fr = _feature_reference(c, ft, p, len(levels))
        if fr is None:
            continue
        if fr.name != names[j]:
            c.add(f"{p}.name", f"{fr.name!r} where feature {j} is {names[j]!r}")
            continue
        bins.add(len(fr.counts))
        feats.append(fr)
    if len(bins) > 1:
        c.add("reference.features", f"features use different bin counts ({sorted(bins)}); use one")
    score = _feature_reference(c, t.get("score"), "reference.score", len(levels))
    if score is None or len(feats) != len(names) or len(bins) > 1:
        return None
    return DriftReference(
        features=tuple(feats), score=score, levels=tuple(levels.tolist()), windows=windows
    )


def dump_sidecar(raw: dict[str, Any]) -> str:
    """Canonical sidecar text: stable key order as given, floats with 10 significant digits, so
    a deterministic training run writes the same bytes every time."""

    def tidy(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.10g}")
        if isinstance(v, (np.floating,)):
            return float(f"{float(v):.10g}")
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, np.ndarray):
            return [tidy(x) for x in v.tolist()]
        if isinstance(v, dict):
            return {k: tidy(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [tidy(x) for x in v]
        return v

    return json.dumps(tidy(raw), indent=1, ensure_ascii=False) + "\n"


def reference_to_raw(ref: DriftReference) -> dict[str, Any]:
    """The sidecar's "reference" object for a DriftReference."""

    def one(f: FeatureReference) -> dict[str, Any]:
        return {
            "name": f.name,
            "mean": f.mean,
            "std": f.std,
            "edges": list(f.edges),
            "counts": list(f.counts),
            "quantiles": list(f.quantiles),
        }

    return {
        "windows": ref.windows,
        "levels": list(ref.levels),
        "features": [one(f) for f in ref.features],
        "score": one(ref.score),
    }
