"""The plant file's [[models]]: which model package scores which signals, and the signals a
model writes back (its score, smoothed score, state and drift figures)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floorconsole.core.drift import PSI_ALERT, PSI_WARN
from floorconsole.core.model_package import ModelPackage, PackageError, load_sidecar, package_paths
from floorconsole.core.model_state import DRIFT_LABELS, STATE_LABELS
from floorconsole.core.validate import ID_PATTERN, PLANT, Problem, Problems

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
    state 0 normal, 1 warning, 2 critical; drift.status 0 ok, 1 warning, 2 alert."""
    m = cfg.id
    out = [
        OutputSignal(cfg.output_id("score"), "", f"{m}: raw anomaly score"),
        OutputSignal(
            cfg.output_id("smoothed"), "", f"{m}: smoothed score (compared with the thresholds)"
        ),
        OutputSignal(
            cfg.output_id("state"), "", f"{m}: 0 normal, 1 warning, 2 critical", STATE_LABELS
        ),
        OutputSignal(f"{m}.drift.status", "", f"{m}: drift 0 ok, 1 warning, 2 alert", DRIFT_LABELS),
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
    package_problems: list[Problem] | None = None,
) -> tuple[list[ModelConfig], list[Problem]]:
    """Validate the plant file's [[models]]; returns (models, problems with their key paths).

    Inputs must name existing signals (and, when the package's sidecar can be read, exactly the
    package's inputs); outputs become new signal ids and must not clash with existing signals or
    with another model's outputs. A model with a problem is left out of the list.

    package_problems: when given, what is wrong with the package files (missing, unreadable,
    inputs other than the file wires) goes there instead, and the model is kept: the file's
    text is fine, and the engine runs such a model from a stored copy or reports it BAD."""
    c = Problems()
    # Problems of the package files: with the text's, or apart when the caller asks.
    pkg = c if package_problems is None else Problems()
    if not isinstance(raw, list):
        c.add("models", "expected an array of tables ([[models]])")
        return [], c.problems
    models: list[ModelConfig] = []
    taken: dict[str, str] = {}  # output signal id -> who made it
    seen_ids: dict[str, int] = {}
    for i, t in enumerate(raw):
        p = f"models[{i}]"
        if not isinstance(t, dict):
            c.add(p, "expected a table")
            continue
        before = c.mark()
        c.unknown_keys(t, p, MODEL_KEYS)
        mid = t.get("id")
        if "id" not in t:
            c.add(f"{p}.id", "missing; it is required")
        elif not isinstance(mid, str) or not ID_PATTERN.match(mid):
            c.add(f"{p}.id", f"{mid!r} is not {PLANT.bad_id}")
        elif mid in seen_ids:
            c.add(f"{p}.id", f"{mid!r} is already used by models[{seen_ids[mid]}]")
        elif mid in signal_ids:
            c.add(f"{p}.id", f"{mid!r} is already a signal id; a model needs an id of its own")
        else:
            seen_ids[mid] = i
        description = t.get("description", "")
        if not isinstance(description, str):
            c.add(f"{p}.description", "expected a string")
        pkg_path, sidecar = _package(c, pkg, t, p, base_dir)
        inputs = _inputs(c, pkg, t, p, signal_ids, sidecar)
        outputs = _outputs(c, t, p)
        psi_warn, psi_alert, window = _drift(c, t, p)
        enable = t.get("enable")
        if enable is not None and (not isinstance(enable, str) or enable not in signal_ids):
            c.add(
                f"{p}.enable",
                f"{enable!r} is not a signal in this file (the model scores only "
                "while it is true, e.g. a run coil)",
            )
        settle = c.duration(t, "settle", p, default=0.0)
        if "settle" in t and "enable" not in t:
            c.add(f"{p}.settle", "applies only with enable (time after it turns true)")
        max_bad = t.get("max_bad_windows", MAX_BAD_WINDOWS)
        if isinstance(max_bad, bool) or not isinstance(max_bad, int) or max_bad < 1:
            c.add(
                f"{p}.max_bad_windows", f"expected a whole number of windows >= 1, got {max_bad!r}"
            )
            max_bad = MAX_BAD_WINDOWS

        if c.since(before) or not isinstance(mid, str) or pkg_path is None:
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
                c.add(where, f"output {sig.id!r} is already a signal in this file")
                clash = True
            elif sig.id in taken:
                c.add(where, f"output {sig.id!r} is already written by {taken[sig.id]}")
                clash = True
            else:
                taken[sig.id] = p
        if not clash:
            models.append(cfg)
    if package_problems is not None:
        package_problems.extend(pkg.problems)
    return models, c.problems


def _package(
    c: Problems, files: Problems, t: dict[str, Any], p: str, base_dir: Path
) -> tuple[Path | None, ModelPackage | None]:
    """The package path (NAME, resolved against the plant file) and its sidecar when readable;
    a missing or unreadable package file goes to `files`."""
    pkg = t.get("package")
    if "package" not in t:
        c.add(
            f"{p}.package",
            'missing; it is required (e.g. "models/motor_anomaly", relative to the plant file)',
        )
        return None, None
    if not isinstance(pkg, str) or not pkg:
        c.add(f"{p}.package", 'expected a path like "models/motor_anomaly"')
        return None, None
    onnx_path, _json_path = package_paths(base_dir / pkg)
    pkg_path = onnx_path.with_suffix("")
    if not onnx_path.exists():
        files.add(f"{p}.package", f"{onnx_path} not found")
        return pkg_path, None
    try:
        return pkg_path, load_sidecar(pkg_path)
    except PackageError as e:
        files.add(f"{p}.package", str(e).replace("\n", " "))
        return pkg_path, None


def _inputs(
    c: Problems,
    pkg: Problems,
    t: dict[str, Any],
    p: str,
    signal_ids: set[str],
    sidecar: ModelPackage | None,
) -> list[tuple[str, str]]:
    """The (package input, signal) pairs; a mismatch with the package's own inputs goes to pkg
    (a problem of the package file, not of the plant file's text)."""
    inputs: list[tuple[str, str]] = []
    t_in = t.get("inputs")
    if "inputs" not in t:
        c.add(
            f"{p}.inputs",
            'missing; map each package input to a signal, e.g. { x = "motor1.vibration.x" }',
        )
        return inputs
    if not isinstance(t_in, dict) or not t_in:
        c.add(f"{p}.inputs", "expected a table of input name = signal id")
        return inputs
    for name, sig in t_in.items():
        ip = f"{p}.inputs.{name}"
        if not isinstance(sig, str):
            c.add(ip, "expected a signal id (a string)")
        elif sig not in signal_ids:
            c.add(ip, f"{sig!r} is not a signal in this file")
        else:
            inputs.append((name, sig))
    if sidecar is not None:
        wanted = sidecar.input_names
        for name in wanted:
            if name not in t_in:
                pkg.add(
                    f"{p}.inputs",
                    f"the package {sidecar.name} needs input {name!r} "
                    f"(it reads {', '.join(wanted)})",
                )
        for name in t_in:
            if name not in wanted:
                pkg.add(
                    f"{p}.inputs.{name}",
                    f"the package {sidecar.name} has no input "
                    f"{name!r}; it reads {', '.join(wanted)}",
                )
    return inputs


def _outputs(c: Problems, t: dict[str, Any], p: str) -> list[tuple[str, str]]:
    outputs: list[tuple[str, str]] = []
    t_out = t.get("outputs")
    if "outputs" not in t:
        c.add(f"{p}.outputs", 'missing; give at least { score = "<asset>.anomaly_score" }')
        return outputs
    if not isinstance(t_out, dict):
        c.add(f"{p}.outputs", 'expected a table like { score = "motor1.anomaly_score" }')
        return outputs
    if "score" not in t_out:
        c.add(f"{p}.outputs.score", "missing; it is required")
    for key, sig in t_out.items():
        op = f"{p}.outputs.{key}"
        if key not in OUTPUT_KEYS:
            c.add(op, f"unknown output; expected one of {', '.join(OUTPUT_KEYS)}")
        elif not isinstance(sig, str) or not ID_PATTERN.match(sig):
            c.add(op, f"{sig!r} is not a valid signal id")
        else:
            outputs.append((key, sig))
    return outputs


def _drift(c: Problems, t: dict[str, Any], p: str) -> tuple[float, float, int | None]:
    """(psi_warn, psi_alert, window or None for the package's own)."""
    psi_warn, psi_alert, window = PSI_WARN, PSI_ALERT, None
    if "drift" not in t:
        return psi_warn, psi_alert, window
    d = t["drift"]
    dp = f"{p}.drift"
    if not isinstance(d, dict):
        c.add(dp, "expected a table like { psi_warn = 0.1, psi_alert = 0.25 }")
        return psi_warn, psi_alert, window
    c.unknown_keys(d, dp, DRIFT_KEYS)
    for k in ("psi_warn", "psi_alert"):
        if k in d and not _above_zero(d[k]):
            c.add(f"{dp}.{k}", f"expected a number above 0, got {d[k]!r}")
    psi_warn = float(d["psi_warn"]) if _above_zero(d.get("psi_warn")) else PSI_WARN
    psi_alert = float(d["psi_alert"]) if _above_zero(d.get("psi_alert")) else PSI_ALERT
    if not psi_warn < psi_alert:
        c.add(dp, f"psi_warn {psi_warn:g} must be below psi_alert {psi_alert:g}")
    if "window" in d:
        w = d["window"]
        if isinstance(w, bool) or not isinstance(w, int) or w < 10:
            c.add(f"{dp}.window", f"expected a whole number of windows >= 10, got {w!r}")
        else:
            window = w
    return psi_warn, psi_alert, window


def _above_zero(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
