"""Model packages (NAME.onnx beside its sidecar NAME.json) and the plant file's [[models]].

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from floorconsole.core.drift import (
    PSI_ALERT,
    PSI_WARN,
    DriftReference,
    FeatureReference,
)
from floorconsole.core.features import SCALAR_STATS, WAVEFORM_STATS
from floorconsole.core.model_state import DRIFT_LABELS, STATE_LABELS
from floorconsole.core.units import parse_duration

FORMAT = "floorconsole-model/1"
OUTPUT_KINDS = ("reconstruction_error", "score")
ERROR_KINDS = ("mse", "mae")
SMOOTHING_KINDS = ("ewma", "mean")
INPUT_KINDS = ("waveform", "scalar")
DEFAULT_DRIFT_WINDOW = 600  # 5 min at 2 windows/s: PSI's sampling noise stays well below 0.1
DEFAULT_DRIFT_MIN_WINDOWS = 240  # 2 min: with fewer, PSI's sampling noise alone nears 0.1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
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
    c = _Problems()
    if not isinstance(raw, dict):
        raise PackageError(json_path, ["the sidecar must be a JSON object"])
    c.unknown(
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
    name = c.string(raw, "name", "", pattern=NAME_PATTERN) or ""
    version = c.string(raw, "version", "") or ""
    description = c.string(raw, "description", "", required=False) or ""

    onnx = c.table(raw, "onnx", "")
    onnx_file = c.string(onnx, "file", "onnx") or ""
    onnx_sha = c.string(onnx, "sha256", "onnx") or ""
    onnx_input = c.string(onnx, "input", "onnx") or ""
    onnx_output = c.string(onnx, "output", "onnx") or ""
    c.unknown(onnx, "onnx", ("file", "sha256", "input", "output"))
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
    scaler = _scaler(c, c.table(raw, "scaler", ""), n_feat)
    output = _output(c, c.table(raw, "output", ""))
    smoothing = _smoothing(c, c.table(raw, "smoothing", ""))
    thresholds = _thresholds(c, c.table(raw, "thresholds", ""))
    drift = _drift_settings(c, raw.get("drift", {}))
    reference = _reference(c, c.table(raw, "reference", ""), [f.name for f in features])
    training = raw.get("training", {})
    if not isinstance(training, dict):
        c.add("training", "expected an object")
        training = {}
    if c.problems:
        raise PackageError(json_path, c.problems)
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


class _Problems:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def unknown(self, t: dict[str, Any], path: str, known: tuple[str, ...]) -> None:
        for k in t:
            if k not in known:
                self.add(_join(path, k), f"unknown key; expected one of {', '.join(known)}")

    def table(self, t: dict[str, Any], key: str, path: str) -> dict[str, Any]:
        v = t.get(key)
        if v is None:
            self.add(_join(path, key), "missing; it is required")
            return {}
        if not isinstance(v, dict):
            self.add(_join(path, key), "expected an object")
            return {}
        return v

    def string(
        self,
        t: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        choices: tuple[str, ...] | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        p = _join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return None
        v = t[key]
        if not isinstance(v, str) or not v:
            self.add(p, "expected a non-empty string")
            return None
        if choices is not None and v not in choices:
            self.add(p, f"{v!r} is not one of {', '.join(choices)}")
            return None
        if pattern is not None and not pattern.match(v):
            self.add(p, f"{v!r} is not a valid name (letters, digits, _ . -)")
            return None
        return v

    def number(
        self,
        t: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        default: float | None = None,
        positive: bool = False,
    ) -> float | None:
        p = _join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return default
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.add(p, f"expected a finite number, got {v!r}")
            return default
        if positive and not v > 0:
            self.add(p, f"must be above 0, got {v}")
            return default
        return float(v)

    def integer(
        self,
        t: dict[str, Any],
        key: str,
        path: str,
        *,
        default: int | None = None,
        required: bool = True,
        lo: int = 1,
    ) -> int | None:
        p = _join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return default
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            self.add(p, f"expected a whole number >= {lo}, got {v!r}")
            return default
        return v

    def vector(self, t: dict[str, Any], key: str, path: str, n: int) -> np.ndarray | None:
        p = _join(path, key)
        v = t.get(key)
        if not isinstance(v, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        ):
            self.add(p, "missing or not a list of numbers")
            return None
        a = np.asarray(v, dtype=np.float64)
        if len(a) != n:
            self.add(p, f"has {len(a)} values; the package has {n} features")
            return None
        if not np.isfinite(a).all():
            self.add(p, "holds a value that is not finite")
            return None
        return a


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _tables(c: _Problems, raw: Any, section: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key path, table) of each entry of a non-empty list of tables; the problems of the
    list itself and of entries that are not tables are reported, and those entries skipped."""
    if not isinstance(raw, list) or not raw:
        c.add(section, f"expected a non-empty list of {section}")
        return
    for i, t in enumerate(raw):
        p = f"{section}[{i}]"
        if not isinstance(t, dict):
            c.add(p, "expected an object")
            continue
        yield p, t


def _inputs(c: _Problems, raw: Any) -> list[InputSpec]:
    out: list[InputSpec] = []
    seen: set[str] = set()
    for p, t in _tables(c, raw, "inputs"):
        c.unknown(t, p, ("name", "kind", "samples", "rate_hz", "unit"))
        name = c.string(t, "name", p, pattern=NAME_PATTERN)
        kind = c.string(t, "kind", p, choices=INPUT_KINDS)
        unit = c.string(t, "unit", p, required=False) or ""
        samples = rate = None
        if kind == "waveform":
            samples = c.integer(t, "samples", p, lo=2)
            rate = c.number(t, "rate_hz", p, required=False, positive=True)
        elif kind == "scalar" and ("samples" in t or "rate_hz" in t):
            c.add(p, "samples and rate_hz apply only to waveform inputs")
        if name in seen:
            c.add(f"{p}.name", f"{name!r} is used twice")
            continue
        if name is not None and kind is not None:
            seen.add(name)
            out.append(InputSpec(name, kind, samples, rate, unit))
    return out


def _features(c: _Problems, raw: Any, inputs: dict[str, InputSpec]) -> list[FeatureSpec]:
    out: list[FeatureSpec] = []
    seen: set[str] = set()
    for p, t in _tables(c, raw, "features"):
        c.unknown(t, p, ("name", "input", "stat", "window", "window_s"))
        name = c.string(t, "name", p, pattern=NAME_PATTERN)
        inp = c.string(t, "input", p)
        stat = c.string(t, "stat", p)
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
            window_s = c.number(t, "window_s", p, positive=True)
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


def _scaler(c: _Problems, t: dict[str, Any], n: int) -> Scaler | None:
    if not t:
        return None
    c.unknown(t, "scaler", ("mean", "std", "std_floor_rel", "clip"))
    mean = c.vector(t, "mean", "scaler", n)
    std = c.vector(t, "std", "scaler", n)
    clip = c.number(t, "clip", "scaler", positive=True)
    floor = c.number(t, "std_floor_rel", "scaler", required=False, default=0.0) or 0.0
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


def _output(c: _Problems, t: dict[str, Any]) -> OutputSpec | None:
    if not t:
        return None
    c.unknown(t, "output", ("kind", "error", "index"))
    kind = c.string(t, "kind", "output", choices=OUTPUT_KINDS)
    if kind == "reconstruction_error":
        error = c.string(t, "error", "output", required=False, choices=ERROR_KINDS) or "mse"
        return OutputSpec(kind, error=error)
    if kind == "score":
        index = c.integer(t, "index", "output", required=False, default=0, lo=0)
        return OutputSpec(kind, index=index or 0)
    return None


def _smoothing(c: _Problems, t: dict[str, Any]) -> Smoothing | None:
    if not t:
        return None
    c.unknown(t, "smoothing", ("kind", "alpha", "window"))
    kind = c.string(t, "kind", "smoothing", choices=SMOOTHING_KINDS)
    if kind == "ewma":
        alpha = c.number(t, "alpha", "smoothing", positive=True)
        if alpha is not None and alpha > 1:
            c.add("smoothing.alpha", f"must be in (0, 1], got {alpha}")
            return None
        return Smoothing(kind, alpha=alpha) if alpha is not None else None
    if kind == "mean":
        window = c.integer(t, "window", "smoothing")
        return Smoothing(kind, window=window) if window is not None else None
    return None


def _thresholds(c: _Problems, t: dict[str, Any]) -> Thresholds | None:
    if not t:
        return None
    c.unknown(t, "thresholds", ("warning", "critical", "basis"))
    warning = c.number(t, "warning", "thresholds")
    critical = c.number(t, "critical", "thresholds")
    basis = c.string(t, "basis", "thresholds", required=False) or ""
    if warning is None or critical is None:
        return None
    if not warning < critical:
        c.add("thresholds", f"warning {warning} must be below critical {critical}")
        return None
    return Thresholds(warning, critical, basis)


def _drift_settings(c: _Problems, t: Any) -> DriftSettings:
    if not isinstance(t, dict):
        c.add("drift", "expected an object")
        return DriftSettings()
    c.unknown(t, "drift", ("window", "min_windows", "page_hinkley"))
    window = c.integer(t, "window", "drift", required=False, default=DEFAULT_DRIFT_WINDOW, lo=2)
    min_w = c.integer(
        t,
        "min_windows",
        "drift",
        required=False,
        default=min(DEFAULT_DRIFT_MIN_WINDOWS, window or 2),
        lo=1,
    )
    ph = t.get("page_hinkley", {})
    delta, thr = 0.5, 25.0
    if isinstance(ph, dict):
        c.unknown(ph, "drift.page_hinkley", ("delta", "threshold"))
        delta = c.number(ph, "delta", "drift.page_hinkley", required=False, default=0.5) or 0.0
        thr = (
            c.number(
                ph, "threshold", "drift.page_hinkley", required=False, default=25.0, positive=True
            )
            or 25.0
        )
    else:
        c.add("drift.page_hinkley", "expected an object")
    assert window is not None and min_w is not None
    if min_w > window:
        c.add("drift.min_windows", f"{min_w} is more than the window ({window})")
        min_w = window
    return DriftSettings(window=window, min_windows=min_w, ph_delta=delta, ph_threshold=thr)


def _feature_reference(c: _Problems, t: Any, path: str, n_levels: int) -> FeatureReference | None:
    if not isinstance(t, dict):
        c.add(path, "expected an object")
        return None
    c.unknown(t, path, ("name", "mean", "std", "edges", "counts", "quantiles"))
    name = c.string(t, "name", path) or ""
    mean = c.number(t, "mean", path)
    std = c.number(t, "std", path)
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
            c.add(_join(path, key), "missing or not a list of finite numbers")
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
        c.add(_join(path, "edges"), "must not decrease")
        ok = False
    if (counts < 0).any() or counts.sum() <= 0:
        c.add(_join(path, "counts"), "must be >= 0 with a positive total")
        ok = False
    if len(quantiles) != n_levels:
        c.add(_join(path, "quantiles"), f"has {len(quantiles)} values for {n_levels} levels")
        ok = False
    elif (np.diff(quantiles) < 0).any():
        c.add(_join(path, "quantiles"), "must not decrease")
        ok = False
    if std is not None and std < 0:
        c.add(_join(path, "std"), "must be >= 0")
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


def _reference(c: _Problems, t: dict[str, Any], names: list[str]) -> DriftReference | None:
    if not t:
        return None
    c.unknown(t, "reference", ("windows", "levels", "features", "score"))
    windows = c.integer(t, "windows", "reference") or 0
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


# --- the plant file's [[models]] --------------------------------------------------------------------

OUTPUT_KEYS = ("score", "smoothed", "state")
MODEL_KEYS = (
    "id",
    "package",
    "inputs",
    "outputs",
    "drift",
    "description",
    "enable",
    "settle",
    "max_bad_windows",
)
# Windows in a row that a model may fail to score (a non-finite output, a failed run) before
# it is a model failure (a condition and an alarm); fewer are BAD windows, counted.
MAX_BAD_WINDOWS = 5
DRIFT_KEYS = ("psi_warn", "psi_alert", "window")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One [[models]] entry. package is NAME (no suffix), resolved against the plant file."""

    id: str
    package: Path
    inputs: tuple[tuple[str, str], ...]  # (package input name, signal id), in file order
    outputs: tuple[tuple[str, str], ...]  # (score | smoothed | state, signal id)
    psi_warn: float = PSI_WARN
    psi_alert: float = PSI_ALERT
    drift_window: int | None = None  # None: the package's drift.window
    description: str = ""
    # Score only while this signal is true (a run coil): a stopped machine is not anomalous,
    # it is not running. Outputs are BAD out of service meanwhile, and for `settle_s` after
    # it turns true (start-up transients are not in the training data either).
    enable: str | None = None
    settle_s: float = 0.0
    max_bad_windows: int = MAX_BAD_WINDOWS

    @property
    def input_map(self) -> dict[str, str]:
        return dict(self.inputs)

    def output_id(self, key: str) -> str:
        """The signal id of score, smoothed or state (the last two default to <id>.smoothed,
        <id>.state)."""
        given = dict(self.outputs)
        if key in given:
            return given[key]
        if key == "score":
            return f"{self.id}.score"
        return f"{self.id}.{key}"


@dataclass(frozen=True, slots=True)
class OutputSignal:
    """A signal a model writes: registered in the hub like a plant signal."""

    id: str
    unit: str
    description: str
    labels: tuple[str, ...] = ()  # an enumerated signal: the word of each code, 0 first


def output_signals(cfg: ModelConfig, feature_names: Sequence[str] = ()) -> list[OutputSignal]:
    """Every signal a model runner emits, in a fixed order. States are encoded as numbers:
    state 0 normal, 1 warning, 2 critical; drift.status 0 ok, 1 warn, 2 alert."""
    m = cfg.id
    out = [
        OutputSignal(cfg.output_id("score"), "", f"{m}: raw anomaly score"),
        OutputSignal(
            cfg.output_id("smoothed"), "", f"{m}: smoothed score (compared with the thresholds)"
        ),
        OutputSignal(
            cfg.output_id("state"), "", f"{m}: 0 normal, 1 warning, 2 critical", STATE_LABELS
        ),
        OutputSignal(f"{m}.drift.status", "", f"{m}: drift 0 ok, 1 warn, 2 alert", DRIFT_LABELS),
        OutputSignal(f"{m}.drift.psi_max", "", f"{m}: largest PSI over the features"),
        OutputSignal(f"{m}.drift.score_psi", "", f"{m}: PSI of the score"),
        OutputSignal(
            f"{m}.drift.page_hinkley",
            "",
            f"{m}: Page-Hinkley statistic / threshold on the score (>= 1 fires)",
        ),
    ]
    out += [
        OutputSignal(f"{m}.drift.psi.{f}", "", f"{m}: PSI of feature {f}") for f in feature_names
    ]
    return out


def parse_models(
    raw: list[dict[str, Any]] | Any,
    signal_ids: set[str],
    base_dir: Path,
    *,
    package_problems: list[tuple[str, str]] | None = None,
) -> tuple[list[ModelConfig], list[tuple[str, str]]]:
    """Validate the plant file's [[models]]; returns (models, problems as (key path, message)).

    Inputs must name existing signals (and, when the package's sidecar can be read, exactly the
    package's inputs); outputs become new signal ids and must not clash with existing signals or
    with another model's outputs. A model with a problem is left out of the list.

    package_problems: when given, what is wrong with the package files (missing, unreadable,
    inputs other than the file wires) goes there instead, and the model is kept: the file's
    text is fine, and the engine runs such a model from a stored copy or reports it BAD."""
    problems: list[tuple[str, str]] = []

    def add(path: str, message: str) -> None:
        problems.append((path, message))

    def add_package(path: str, message: str) -> None:
        (problems if package_problems is None else package_problems).append((path, message))

    if not isinstance(raw, list):
        add("models", "expected an array of tables ([[models]])")
        return [], problems
    models: list[ModelConfig] = []
    taken: dict[str, str] = {}  # output signal id -> who made it
    seen_ids: dict[str, int] = {}
    for i, t in enumerate(raw):
        p = f"models[{i}]"
        if not isinstance(t, dict):
            add(p, "expected a table")
            continue
        before = len(problems)
        for k in t:
            if k not in MODEL_KEYS:
                add(f"{p}.{k}", f"unknown key; expected one of {', '.join(MODEL_KEYS)}")
        mid = t.get("id")
        if "id" not in t:
            add(f"{p}.id", "missing; it is required")
        elif not isinstance(mid, str) or not NAME_PATTERN.match(mid):
            add(
                f"{p}.id",
                f"{mid!r} is not a valid id (letters, digits, _ . - ; not starting with . or -)",
            )
        elif mid in seen_ids:
            add(f"{p}.id", f"{mid!r} is already used by models[{seen_ids[mid]}]")
        elif mid in signal_ids:
            add(f"{p}.id", f"{mid!r} is already a signal id; a model needs an id of its own")
        else:
            seen_ids[mid] = i
        description = t.get("description", "")
        if not isinstance(description, str):
            add(f"{p}.description", "expected a string")

        pkg = t.get("package")
        pkg_path: Path | None = None
        sidecar: ModelPackage | None = None
        if "package" not in t:
            add(
                f"{p}.package",
                'missing; it is required (e.g. "models/motor_anomaly", relative to the plant file)',
            )
        elif not isinstance(pkg, str) or not pkg:
            add(f"{p}.package", 'expected a path like "models/motor_anomaly"')
        else:
            onnx_path, json_path = package_paths(base_dir / pkg)
            pkg_path = onnx_path.with_suffix("")
            if not onnx_path.exists():
                add_package(f"{p}.package", f"{onnx_path} not found")
            else:
                try:
                    sidecar = load_sidecar(pkg_path)
                except PackageError as e:
                    add_package(f"{p}.package", str(e).replace("\n", " "))

        inputs: list[tuple[str, str]] = []
        t_in = t.get("inputs")
        if "inputs" not in t:
            add(
                f"{p}.inputs",
                'missing; map each package input to a signal, e.g. { x = "motor1.vibration.x" }',
            )
        elif not isinstance(t_in, dict) or not t_in:
            add(f"{p}.inputs", "expected a table of input name = signal id")
        else:
            for name, sig in t_in.items():
                ip = f"{p}.inputs.{name}"
                if not isinstance(sig, str):
                    add(ip, "expected a signal id (a string)")
                elif sig not in signal_ids:
                    add(ip, f"{sig!r} is not a signal in this file")
                else:
                    inputs.append((name, sig))
            if sidecar is not None:
                wanted = sidecar.input_names
                for name in wanted:
                    if name not in t_in:
                        add_package(
                            f"{p}.inputs",
                            f"the package {sidecar.name} needs input {name!r} "
                            f"(it reads {', '.join(wanted)})",
                        )
                for name in t_in:
                    if name not in wanted:
                        add_package(
                            f"{p}.inputs.{name}",
                            f"the package {sidecar.name} has no input "
                            f"{name!r}; it reads {', '.join(wanted)}",
                        )

        outputs: list[tuple[str, str]] = []
        t_out = t.get("outputs")
        if "outputs" not in t:
            add(f"{p}.outputs", 'missing; give at least { score = "<asset>.anomaly_score" }')
        elif not isinstance(t_out, dict):
            add(f"{p}.outputs", 'expected a table like { score = "motor1.anomaly_score" }')
        else:
            if "score" not in t_out:
                add(f"{p}.outputs.score", "missing; it is required")
            for key, sig in t_out.items():
                op = f"{p}.outputs.{key}"
                if key not in OUTPUT_KEYS:
                    add(op, f"unknown output; expected one of {', '.join(OUTPUT_KEYS)}")
                elif not isinstance(sig, str) or not NAME_PATTERN.match(sig):
                    add(op, f"{sig!r} is not a valid signal id")
                else:
                    outputs.append((key, sig))

        psi_warn, psi_alert, window = PSI_WARN, PSI_ALERT, None
        if "drift" in t:
            d = t["drift"]
            dp = f"{p}.drift"
            if not isinstance(d, dict):
                add(dp, "expected a table like { psi_warn = 0.1, psi_alert = 0.25 }")
            else:
                for k in d:
                    if k not in DRIFT_KEYS:
                        add(f"{dp}.{k}", f"unknown key; expected one of {', '.join(DRIFT_KEYS)}")
                for k in ("psi_warn", "psi_alert"):
                    if k in d:
                        v = d[k]
                        if (
                            isinstance(v, bool)
                            or not isinstance(v, (int, float))
                            or not (math.isfinite(v) and v > 0)
                        ):
                            add(f"{dp}.{k}", f"expected a number above 0, got {v!r}")
                psi_warn = _num(d.get("psi_warn"), PSI_WARN)
                psi_alert = _num(d.get("psi_alert"), PSI_ALERT)
                if not psi_warn < psi_alert:
                    add(f"{dp}", f"psi_warn {psi_warn:g} must be below psi_alert {psi_alert:g}")
                if "window" in d:
                    w = d["window"]
                    if isinstance(w, bool) or not isinstance(w, int) or w < 10:
                        add(f"{dp}.window", f"expected a whole number of windows >= 10, got {w!r}")
                    else:
                        window = w

        enable = t.get("enable")
        if enable is not None and (not isinstance(enable, str) or enable not in signal_ids):
            add(
                f"{p}.enable",
                f"{enable!r} is not a signal in this file (the model scores only "
                "while it is true, e.g. a run coil)",
            )
        settle = 0.0
        if "settle" in t:
            try:
                settle = parse_duration(t["settle"])
            except ValueError as e:
                add(f"{p}.settle", str(e))
            if "enable" not in t:
                add(f"{p}.settle", "applies only with enable (time after it turns true)")

        max_bad = t.get("max_bad_windows", MAX_BAD_WINDOWS)
        if isinstance(max_bad, bool) or not isinstance(max_bad, int) or max_bad < 1:
            add(f"{p}.max_bad_windows", f"expected a whole number of windows >= 1, got {max_bad!r}")
            max_bad = MAX_BAD_WINDOWS

        if len(problems) > before or not isinstance(mid, str) or pkg_path is None:
            continue
        cfg = ModelConfig(
            id=mid,
            package=pkg_path,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            psi_warn=psi_warn,
            psi_alert=psi_alert,
            drift_window=window,
            description=description if isinstance(description, str) else "",
            enable=enable if isinstance(enable, str) else None,
            settle_s=settle,
            max_bad_windows=max_bad,
        )
        names = sidecar.feature_names if sidecar is not None else []
        clash = False
        for sig in output_signals(cfg, names):
            where = next((f"{p}.outputs.{k}" for k, s in outputs if s == sig.id), f"{p}.id")
            if sig.id in signal_ids:
                add(where, f"output {sig.id!r} is already a signal in this file")
                clash = True
            elif sig.id in taken:
                add(where, f"output {sig.id!r} is already written by {taken[sig.id]}")
                clash = True
            else:
                taken[sig.id] = p
        if not clash:
            models.append(cfg)
    return models, problems


def _num(v: Any, default: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        return default
    return float(v)
