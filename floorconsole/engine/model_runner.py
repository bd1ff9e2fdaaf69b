"""The model runner: features, ONNX inference and drift for one [[models]] entry, as signals.

Registered as a hub listener, it is handed every batch of fresh samples and returns the samples
it makes, which the engine ingests. When every waveform input has a new block (their source
times within ALIGN_TOLERANCE_S), it computes the package's features, scales them, runs the ONNX
graph once (the session was built at load time; run releases the GIL), and writes:

    <outputs.score>                 raw score (e.g. mean squared reconstruction error)
    <outputs.smoothed>              smoothed score (default id <model id>.smoothed)
    <outputs.state>                 0 normal, 1 warning, 2 critical (default <model id>.state)
    <model id>.drift.status         0 ok, 1 warning, 2 alert (UNCERTAIN initial while the window
                                    fills; its detail names what drives a warning)
    <model id>.drift.psi_max        largest PSI over the features
    <model id>.drift.score_psi      PSI of the score against the training scores
    <model id>.drift.page_hinkley   Page-Hinkley statistic / threshold on the score (>= 1 fires)
    <model id>.drift.psi.<feature>  PSI per feature, e.g. motor1_anomaly.drift.psi.x.kurtosis

The first three come with every window; drift figures at most every DRIFT_EMIT_S.

Quality: a BAD input, a stale input (no fresh value for its stale time, checked by check() on
the engine's watchdog), a block of the wrong length or with non-finite samples makes every
output BAD, carrying its last value; an UNCERTAIN input makes the outputs UNCERTAIN. Inputs
beyond what the features can represent (samples past features.REPRESENTABLE, a feature that
overflows) are BAD decoding error, never scored; features more than FAR_OUTSIDE standard
deviations from training make the outputs UNCERTAIN out of range. A NaN or inf score, or a run that fails, is BAD and counted ("model output not
finite", "model cannot score"); after
max_bad_windows of them in a row the model has failed (condition(), hence an alarm) until it
scores again. BAD windows feed neither the smoothing nor drift. Numpy's floating-point warnings
are counted (status()["counts"]["numeric_warnings"]), never printed.

A package that cannot be used at start (missing, unreadable, its ONNX and sidecar at odds, not
fitting the inputs) runs from the last good copy a fallback offers (the snapshot store), or
not at all (outputs BAD configuration error); either way condition() says why, so the engine
raises a model-failure alarm and runs everything else.

reload() swaps in a new package; one that fails to load (or does not fit this model's inputs)
leaves the running one in place and is reported by condition() and status().
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from floorconsole.adapters.onnx_model import OnnxModel, load_package
from floorconsole.console import DriftFeatureView, ModelView
from floorconsole.core.clock import Clock
from floorconsole.core.drift import (
    FILLING,
    PERSIST_WINDOWS,
    DriftMonitor,
    DriftReport,
    PageHinkley,
)
from floorconsole.core.features import (
    REPRESENTABLE,
    SCALAR_STATS,
    WAVEFORM_STATS,
    scalar_features,
    waveform_features,
)
from floorconsole.core.model_config import ModelConfig, OutputSignal, output_signals
from floorconsole.core.model_package import PackageError, Smoother
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

log = logging.getLogger(__name__)

ALIGN_TOLERANCE_S = 0.25  # blocks of one window must share their source time within this
DRIFT_EMIT_S = 1.0  # drift signals at most this often: they move slowly, and there are many
SCALAR_HOP_S = 0.5  # a model with scalar inputs only runs at most this often
DEFAULT_STALE_S = 5.0
TREND_POINTS = 120
STATE_NAMES = ("normal", "warning", "critical")
MAX_LOAD_ERRORS = 5
# Scaled features beyond this many standard deviations of the training data are not a fault the
# model can judge (a broken sensor or gateway): a million is far past any real fault (the
# recorded bearing, imbalance and misalignment faults reach about a thousand).
FAR_OUTSIDE = 1e6

# Where a runner whose package cannot be used finds stored copies: (package path, where from),
# the last good one first. The snapshot store offers them, verified by hash.
PackageFallback = Callable[[ModelConfig], Iterable[tuple[Path, str]]]


@dataclass
class _Input:
    name: str  # the package's input name
    signal: str
    kind: str  # waveform | scalar
    samples: int | None
    stale_after_s: float
    latest: Sample | None = None
    used_mono: float = -math.inf  # t_mono of the block used by the last run
    history: deque[tuple[float, float]] | None = None  # scalar: (t_mono, value)
    window_s: float = 0.0  # scalar: the longest window its features need


class _Plan:
    """How to get the package's feature vector from the inputs, worked out once per package."""

    def __init__(self, model: OnnxModel) -> None:
        pkg = model.package
        self.waveforms = [i.name for i in pkg.inputs if i.kind == "waveform"]
        self.scalars = [i.name for i in pkg.inputs if i.kind == "scalar"]
        wf_row = {n: k for k, n in enumerate(self.waveforms)}
        wf_j, rows, cols = [], [], []
        self.scalar_feats: list[tuple[int, str, int, float]] = []
        self.scalar_window: dict[str, float] = {}
        for j, f in enumerate(pkg.features):
            if f.window_s is None:
                wf_j.append(j)
                rows.append(wf_row[f.input])
                cols.append(WAVEFORM_STATS.index(f.stat))
            else:
                self.scalar_feats.append((j, f.input, SCALAR_STATS.index(f.stat), f.window_s))
                self.scalar_window[f.input] = max(self.scalar_window.get(f.input, 0.0), f.window_s)
        self.wf_j = np.asarray(wf_j, dtype=np.intp)
        self.rows = np.asarray(rows, dtype=np.intp)
        self.cols = np.asarray(cols, dtype=np.intp)
        self.n = len(pkg.features)


class ModelRunner:
    """Runs one model on the engine side. on_samples and check run on the engine's loop;
    reload may run in a worker thread; status may be called from any thread."""

    def __init__(
        self,
        model: ModelConfig,
        package: OnnxModel | None,
        clock: Clock,
        *,
        stale_after_s: Mapping[str, float] | None = None,
        load_error: str = "",
    ) -> None:
        self.cfg = model
        self.clock = clock
        self._lock = threading.Lock()
        stale = dict(stale_after_s or {})
        self._inputs: dict[str, _Input] = {}
        self._by_signal: dict[str, list[_Input]] = {}
        for name, sig in model.inputs:
            inp = _Input(
                name=name,
                signal=sig,
                kind="waveform",
                samples=None,
                stale_after_s=stale.get(sig, DEFAULT_STALE_S),
            )
            self._inputs[name] = inp
            self._by_signal.setdefault(sig, []).append(inp)
        self.started_mono = clock.mono()
        self.score_id = model.output_id("score")
        self.smoothed_id = model.output_id("smoothed")
        self.state_id = model.output_id("state")
        self.drift_prefix = f"{model.id}.drift"
        # Which per-feature PSI signals exist is fixed by the package at start (the hub's table
        # does not grow); a reloaded package with other features shows them in status() only.
        self._psi_features: tuple[str, ...] = (
            tuple(package.package.feature_names) if package is not None else ()
        )
        self.model: OnnxModel | None = None
        self._plan: _Plan | None = None
        self._smoother: Smoother | None = None
        self.paused = False
        self._drift: DriftMonitor | None = None
        self.load_errors: deque[str] = deque(maxlen=MAX_LOAD_ERRORS)
        self.last_load_error = load_error
        if load_error:
            self.load_errors.append(load_error)
        # Why the configured package is not the one running (it could not be used at start),
        # and where the running copy came from; both "" for the configured package.
        self.package_problem = ""
        self.stored_copy = ""
        # Scoring that fails (non-finite output, a failed run): windows in a row, and the
        # failure once there were max_bad_windows of them ("" while it scores).
        self._bad_run = 0
        self.failure = ""
        self.numeric_warnings = 0
        # figures
        self.runs = 0
        self.bad_outputs = 0
        self.nonfinite = 0
        self.out_of_range = 0
        self.misaligned = 0
        self.last_inference_ms: float | None = None
        self.last_window_ms: float | None = None
        self.last_score: float | None = None
        self.last_smoothed: float | None = None
        self.last_state = 0
        self.quality = Quality.UNCERTAIN
        self.quality_detail = "no window yet"
        self.quality_reason = Reason.INITIAL
        self._bad_latched = False
        self._trend: deque[float] = deque(maxlen=TREND_POINTS)
        self._report: DriftReport | None = None
        self._last_drift_emit = -math.inf
        self._last_run_mono = -math.inf
        if package is not None:
            self._install(package)

    @classmethod
    def from_config(
        cls,
        model: ModelConfig,
        clock: Clock,
        *,
        stale_after_s: Mapping[str, float] | None = None,
        fallback: PackageFallback | None = None,
    ) -> ModelRunner:
        """Load the package named by the config. One that cannot be used runs from the first
        stored copy the fallback offers that loads and fits; with none, the runner has no
        model, its outputs are BAD (configuration error). condition() says why either way."""
        problem = _try_load(model, model.package)
        if isinstance(problem, OnnxModel):
            return cls(model, problem, clock, stale_after_s=stale_after_s)
        tried: set[str] = set()
        for path, where in fallback(model) if fallback is not None else ():
            copy = _try_load(model, path)
            if not isinstance(copy, OnnxModel):
                log.warning("model %s: stored copy from %s unusable: %s", model.id, where, copy)
                continue
            if copy.sha256 in tried:
                continue
            tried.add(copy.sha256)
            runner = cls(model, copy, clock, stale_after_s=stale_after_s)
            runner.package_problem, runner.stored_copy = problem, where
            log.error(
                "model %s: package unusable (%s); running the stored copy %s %s (%s) from %s",
                model.id,
                _one_line(problem),
                copy.name,
                copy.version,
                copy.sha256[:12],
                where,
            )
            return runner
        log.error(
            "model %s: package unusable and no stored copy: running without it (%s)",
            model.id,
            _one_line(problem),
        )
        return cls(model, None, clock, stale_after_s=stale_after_s, load_error=problem)

    def note_package_problem(self, problem: str) -> None:
        """What was wrong with the configured package before this runner was built (its files
        could not be read, so a stored copy stood in): reported by condition()."""
        with self._lock:
            self.package_problem = problem
            if self.model is not None and not self.stored_copy:
                self.stored_copy = "the snapshot store"

    # --- package ------------------------------------------------------------------------------

    def _install(self, package: OnnxModel) -> None:
        pkg = package.package
        plan = _Plan(package)
        drift = drift_monitor(self.cfg, package)
        for inp in self._inputs.values():
            spec = pkg.input(inp.name)
            inp.kind = spec.kind
            inp.samples = spec.samples
            inp.window_s = plan.scalar_window.get(inp.name, 0.0)
            if spec.kind == "scalar" and inp.history is None:
                inp.history = deque()
        self.model = package
        self._plan = plan
        self._smoother = Smoother(pkg.smoothing)
        self._drift = drift
        self._trend.clear()
        self._report = None
        self._last_drift_emit = -math.inf

    def reload(self, new: OnnxModel | str | Path) -> bool:
        """Swap in a new package (a loaded one, or a path to load). On failure the running model
        stays, the error is kept (condition(), status()) and False is returned.

        Loading builds an onnxruntime session (holds the GIL for milliseconds): call it with a
        path from a worker thread, e.g. await asyncio.to_thread(runner.reload, path)."""
        try:
            package = new if isinstance(new, OnnxModel) else load_package(new)
            problem = _compatibility(self.cfg, package)
        except PackageError as e:
            problem = str(e)
        if problem:
            with self._lock:
                self.last_load_error = problem
                self.load_errors.append(problem)
            log.warning(
                "model %s: package refused, %s",
                self.cfg.id,
                "previous model keeps running" if self.model else "no model running",
            )
            return False
        with self._lock:
            self._install(package)
            self.last_load_error = ""
            self.package_problem = self.stored_copy = ""
        log.info(
            "model %s: running %s %s (%s)",
            self.cfg.id,
            package.name,
            package.version,
            package.sha256[:12],
        )
        return True

    # --- samples in, samples out ----------------------------------------------------------------

    def output_signals(self) -> list[OutputSignal]:
        """The signals this runner writes: register them with the hub before the first window."""
        return output_signals(self.cfg, self._psi_features)

    def on_samples(self, batch: Sequence[Sample]) -> list[Sample]:
        """Take a batch of fresh samples; return the model's output samples (often none)."""
        by_signal = self._by_signal
        mine = [s for s in batch if s.signal in by_signal]
        if not mine:
            return []
        with self._lock:
            for s in mine:
                for inp in by_signal[s.signal]:
                    inp.latest = s
                    if (
                        inp.history is not None
                        and s.quality is not Quality.BAD
                        and isinstance(s.value, (int, float))
                        and math.isfinite(s.value)
                    ):
                        inp.history.append((s.t_mono, float(s.value)))
            with np.errstate(all="call", call=self._numeric_warning):
                return self._maybe_run()

    def _numeric_warning(self, kind: str, flag: int) -> None:
        # Counted, never printed: a console owns the terminal, and a flood of warnings from
        # absurd inputs would bury the log. The window itself is judged on its values.
        self.numeric_warnings += 1

    def check(self) -> list[Sample]:
        """Staleness of the inputs on the monotonic clock: call it from the engine's watchdog
        (every 0.1-1 s). Returns BAD outputs once when an input goes stale."""
        with self._lock:
            if self._bad_latched:
                return []
            now = self.clock.mono()
            why = self._stale_reason(now)
            if why is None and self.model is None:
                why = (Reason.CONFIG_ERROR, self._not_running())
            if why is None:
                return []
            return self._bad(*why, now=now, all_outputs=True)

    def _not_running(self) -> str:
        why = _one_line(self.package_problem or self.last_load_error or "no package")
        return f"no model running: {why}"

    def _stale_reason(self, now: float) -> tuple[Reason, str] | None:
        for inp in self._inputs.values():
            last = inp.latest.t_mono if inp.latest is not None else self.started_mono
            if now - last > inp.stale_after_s:
                what = "no value" if inp.latest is None else "no fresh value"
                return (
                    Reason.NO_COMM,
                    f"input {inp.name} ({inp.signal}): {what} for "
                    f"{now - last:.1f} s (limit {inp.stale_after_s:g} s)",
                )
        return None

    def _maybe_run(self) -> list[Sample]:
        now = self.clock.mono()
        plan = self._plan
        if self.model is None or plan is None:
            if self._bad_latched:
                return []
            return self._bad(
                Reason.CONFIG_ERROR,
                self._not_running(),
                now=now,
                all_outputs=True,
            )
        wave = [self._inputs[n] for n in plan.waveforms]
        if wave:
            if any(i.latest is None or i.latest.t_mono <= i.used_mono for i in wave):
                return []
            times = [i.latest.t_source for i in wave if i.latest is not None]
            if max(times) - min(times) > ALIGN_TOLERANCE_S:
                # wait for the late ones; the early ones will be replaced by their next block
                self.misaligned += 1
                newest = max(times)
                for i in wave:
                    if i.latest is not None and newest - i.latest.t_source > ALIGN_TOLERANCE_S:
                        i.used_mono = i.latest.t_mono
                return []
            for i in wave:
                assert i.latest is not None
                i.used_mono = i.latest.t_mono
        elif now - self._last_run_mono < SCALAR_HOP_S:
            return []
        self._last_run_mono = now
        return self._run(now)

    def _run(self, now: float) -> list[Sample]:
        t0 = time.perf_counter()
        model, plan = self.model, self._plan
        assert model is not None and plan is not None
        worst = Quality.GOOD
        worst_reason, worst_detail = Reason.NONE, ""
        t_source = 0.0
        for inp in self._inputs.values():
            s = inp.latest
            if s is None:
                if inp.kind == "scalar":
                    continue  # judged by its window below
                return self._bad(
                    Reason.NO_COMM, f"input {inp.name} ({inp.signal}): no value yet", now=now
                )
            if s.quality is Quality.BAD:
                return self._bad(
                    s.reason, f"input {inp.name} ({inp.signal}) is BAD: {s.quality_text}", now=now
                )
            if now - s.t_mono > inp.stale_after_s:
                return self._bad(
                    Reason.NO_COMM,
                    f"input {inp.name} ({inp.signal}): no fresh value for {now - s.t_mono:.1f} s",
                    now=now,
                )
            if s.quality > worst:
                worst, worst_reason = s.quality, s.reason
                worst_detail = f"input {inp.name} ({inp.signal}) is {s.quality_text}"
            t_source = max(t_source, s.t_source)

        feats = np.empty(plan.n)
        if plan.waveforms:
            blocks = []
            for name in plan.waveforms:
                inp = self._inputs[name]
                assert inp.latest is not None
                v = inp.latest.value
                if not isinstance(v, np.ndarray) or v.ndim != 1:
                    return self._bad(
                        Reason.CONFIG_ERROR,
                        f"input {name} ({inp.signal}) is not a waveform",
                        now=now,
                    )
                if inp.samples is not None and len(v) != inp.samples:
                    return self._bad(
                        Reason.CONFIG_ERROR,
                        f"input {name} ({inp.signal}): block of "
                        f"{len(v)} samples; the model was "
                        f"trained on {inp.samples}",
                        now=now,
                    )
                if not np.isfinite(v).all():
                    return self._bad(
                        Reason.DECODE_ERROR,
                        f"input {name} ({inp.signal}): block holds NaN or inf",
                        now=now,
                    )
                peak = float(np.abs(v).max()) if len(v) else 0.0
                if peak > REPRESENTABLE:
                    return self._beyond_features(f"input {name} ({inp.signal})", peak, now)
                blocks.append(v)
            if len({len(b) for b in blocks}) == 1:
                wf = waveform_features(np.stack(blocks))
            else:
                wf = np.stack([waveform_features(b) for b in blocks])
            feats[plan.wf_j] = wf[plan.rows, plan.cols]
        for j, name, stat, window_s in plan.scalar_feats:
            inp = self._inputs[name]
            hist = inp.history
            assert hist is not None
            while hist and now - hist[0][0] > inp.window_s:
                hist.popleft()
            vals = [v for t, v in hist if now - t <= window_s]
            peak = max(map(abs, vals), default=0.0)
            if peak > REPRESENTABLE:
                return self._beyond_features(f"input {name} ({inp.signal})", peak, now)
            if not vals:
                return self._bad(
                    Reason.NO_COMM,
                    f"input {name} ({inp.signal}): no value in the last {window_s:g} s",
                    now=now,
                )
            feats[j] = scalar_features(np.asarray(vals))[stat]
            if inp.latest is not None:
                t_source = max(t_source, inp.latest.t_source)
        return self._score(feats, worst, worst_reason, worst_detail, t_source, now, t0)

    def score_features(
        self,
        features: np.ndarray,
        *,
        t_source: float,
        quality: Quality = Quality.GOOD,
        reason: Reason = Reason.NONE,
    ) -> list[Sample]:
        """Run one window from a ready feature vector (recordings and replays store features,
        not blocks): the same scoring, smoothing, thresholds and drift as a live window."""
        with self._lock:
            now = self.clock.mono()
            if self.model is None:
                return self._bad(
                    Reason.CONFIG_ERROR,
                    self._not_running(),
                    now=now,
                    all_outputs=True,
                )
            if quality is Quality.BAD:
                return self._bad(reason, "input is BAD", now=now)
            with np.errstate(all="call", call=self._numeric_warning):
                return self._score(
                    np.asarray(features, dtype=np.float64),
                    quality,
                    reason,
                    "",
                    t_source,
                    now,
                    time.perf_counter(),
                )

    def _score(
        self,
        feats: np.ndarray,
        quality: Quality,
        reason: Reason,
        detail: str,
        t_source: float,
        now: float,
        t0: float,
    ) -> list[Sample]:
        model, smoother, drift = self.model, self._smoother, self._drift
        assert model is not None and smoother is not None and drift is not None
        far, overflow = _far_outside(model, feats)
        if overflow:
            self.out_of_range += 1
            return self._bad(
                Reason.DECODE_ERROR,
                f"inputs beyond what the features can represent: {far}; not scored",
                now=now,
            )
        if far:
            # Scored (the scaler clips), but no fault the model was trained to judge: a sensor
            # or gateway gone wrong as likely as the machine. Never GOOD.
            self.out_of_range += 1
            if quality is Quality.GOOD:
                quality, reason = Quality.UNCERTAIN, Reason.OUT_OF_RANGE
            detail = f"inputs far outside the training data: {far}"
        scaled = model.package.scaler.transform(feats[None, :])
        t1 = time.perf_counter()
        try:
            out = model.run(scaled)
            score = float(model.package.output.score(out, scaled)[0])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own errors, a shape, a value
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return self._cannot_score(f"model cannot score: {first[:200]}", now)
        finally:
            self.last_inference_ms = (time.perf_counter() - t1) * 1000.0
        self.runs += 1
        if not math.isfinite(score):
            self.nonfinite += 1
            return self._cannot_score(f"model output not finite ({score})", now)
        if self._bad_run:
            if self.failure:
                log.info("model %s: scores again after %d bad windows", self.cfg.id, self._bad_run)
            self._bad_run, self.failure = 0, ""
        smoothed = smoother.update(score)
        state = model.package.thresholds.state(smoothed)
        drift.update(feats, score)
        self.last_score, self.last_smoothed, self.last_state = score, smoothed, state
        self._trend.append(smoothed)
        self.quality, self.quality_detail = quality, detail
        self.quality_reason = reason if quality is not Quality.GOOD else Reason.NONE
        self._bad_latched = False
        q, r = quality, reason if quality is not Quality.GOOD else Reason.NONE
        out_samples = [
            Sample(self.score_id, score, q, r, t_source, now, detail),
            Sample(self.smoothed_id, smoothed, q, r, t_source, now, detail),
            Sample(self.state_id, float(state), q, r, t_source, now, detail),
        ]
        if now - self._last_drift_emit >= DRIFT_EMIT_S:
            self._last_drift_emit = now
            report = drift.report(full=True)
            self._report = report
            out_samples += self._drift_samples(report, q, r, detail, t_source, now)
        self.last_window_ms = (time.perf_counter() - t0) * 1000.0
        return out_samples

    def _drift_samples(
        self, report: DriftReport, q: Quality, r: Reason, detail: str, t_source: float, now: float
    ) -> list[Sample]:
        p = self.drift_prefix
        if report.status == FILLING:
            # always INITIAL while filling: the status row then says FILLING (core.model_state)
            dq, dr = max(q, Quality.UNCERTAIN), Reason.INITIAL
            dd = f"drift window filling: {report.count} of {self._drift_min()} windows"
            sd = dd
        else:
            dq, dr, dd = q, r, detail
            sd = f"{report.text}; {detail}" if detail else report.text  # names the drivers
        out = [
            Sample(f"{p}.status", float(report.status_code), dq, dr, t_source, now, sd),
            Sample(f"{p}.psi_max", report.psi_max, dq, dr, t_source, now, dd),
            Sample(f"{p}.score_psi", report.score_psi, dq, dr, t_source, now, dd),
            Sample(f"{p}.page_hinkley", report.page_hinkley, dq, dr, t_source, now, dd),
        ]
        psi = {f.name: f.psi for f in report.features}
        out += [
            Sample(f"{p}.psi.{name}", psi[name], dq, dr, t_source, now, dd)
            for name in self._psi_features
            if name in psi
        ]
        return out

    def _beyond_features(self, what: str, peak: float, now: float) -> list[Sample]:
        self.out_of_range += 1
        return self._bad(
            Reason.DECODE_ERROR,
            f"{what}: samples up to {peak:.3g}, beyond what the features can represent "
            f"(|x| <= {REPRESENTABLE:g}); not scored",
            now=now,
        )

    def _cannot_score(self, detail: str, now: float) -> list[Sample]:
        """A window the model could not score: BAD, saying why; max_bad_windows of them in a
        row are a failure of the model (condition(), an alarm) until it scores again."""
        self._bad_run += 1
        limit = self.cfg.max_bad_windows
        if self._bad_run >= limit:
            if not self.failure:
                log.error(
                    "model %s: %s for %d windows in a row: model failure",
                    self.cfg.id,
                    detail,
                    self._bad_run,
                )
            self.failure = f"{detail} for {self._bad_run} windows in a row (limit {limit})"
        return self._bad(Reason.DEVICE_FAILURE, detail, now=now)

    def pause(self, detail: str) -> list[Sample]:
        """The machine is not in a state the model knows (stopped, starting): every output
        BAD out of service, once, and the smoothing forgets what came before, so the first
        windows after a restart are not averaged with the ones before the stop."""
        with self._lock:
            if self.paused:
                return []
            self.paused = True
            if self._smoother is not None:
                self._smoother.reset()
            self.last_state = 0
            out = self._bad(Reason.OUT_OF_SERVICE, detail, now=self.clock.mono(), all_outputs=True)
            self.bad_outputs -= 1  # not a bad output: the model was told not to score
            self.quality_detail = detail
            return out

    def resume(self) -> None:
        with self._lock:
            self.paused = False

    def _drift_min(self) -> int:
        return self._drift.min_windows if self._drift is not None else 0

    def _output_ids(self, all_outputs: bool) -> list[str]:
        ids = [self.score_id, self.smoothed_id, self.state_id]
        if all_outputs:
            ids += [s.id for s in output_signals(self.cfg, self._psi_features)[3:]]
        return ids

    def _bad(
        self, reason: Reason, detail: str, *, now: float, all_outputs: bool = False
    ) -> list[Sample]:
        """Every output BAD, carrying its last value. Drift signals go BAD with the first bad
        window (or when check() finds an input stale), not again with each one after it."""
        if reason.quality is not Quality.BAD:
            reason = Reason.DEVICE_FAILURE
        self.bad_outputs += 1
        self.quality, self.quality_detail = Quality.BAD, detail
        self.quality_reason = reason
        include_drift = all_outputs or not self._bad_latched
        self._bad_latched = True
        last = {
            self.score_id: self.last_score,
            self.smoothed_id: self.last_smoothed,
            self.state_id: float(self.last_state) if self.last_score is not None else None,
        }
        rep = self._report
        if rep is not None:
            p = self.drift_prefix
            last.update(
                {
                    f"{p}.status": float(rep.status_code),
                    f"{p}.psi_max": rep.psi_max,
                    f"{p}.score_psi": rep.score_psi,
                    f"{p}.page_hinkley": rep.page_hinkley,
                }
            )
            last.update({f"{p}.psi.{f.name}": f.psi for f in rep.features})
        t = self.clock.wall()
        return [
            Sample(sid, last.get(sid), Quality.BAD, reason, t, now, detail)
            for sid in self._output_ids(include_drift)
        ]

    # --- views ----------------------------------------------------------------------------------

    def condition(self) -> tuple[str, str] | None:
        """(severity, text) for the console's banner (and the model-failure alarm) when the
        model does not run as configured: its package could not be used (running a stored
        copy, or nothing), it has failed to score for max_bad_windows in a row, or a new
        package was refused. None when all is well."""
        with self._lock:
            mid = self.cfg.id
            if self.model is None:
                why = self._not_running().removeprefix("no model running: ")
                return ("high", f"model {mid} not running: {why}")
            if self.package_problem:
                m = self.model
                return (
                    "high",
                    f"model {mid}: package unusable ({_one_line(self.package_problem)}); "
                    f"running the stored copy {m.name} {m.version} ({m.sha256[:12]}) from "
                    f"{self.stored_copy}",
                )
            if self.failure:
                return ("high", f"model {mid}: {self.failure}")
            if not self.last_load_error:
                return None
            err = self.last_load_error.splitlines()[0]
            return (
                "medium",
                f"model {self.cfg.id}: new package refused, still running "
                f"{self.model.name} {self.model.version} "
                f"({self.model.sha256[:12]}): {err}",
            )

    @property
    def drift_status(self) -> str:
        """filling | ok | warning | alert: what the engine's tick asks ten times a second."""
        rep = self._report
        return rep.status if rep is not None else FILLING

    @property
    def drift_text(self) -> str:
        """The drift state in words with its drivers ('alert: x.rms +2.5σ, …'): the alarm's
        text, the panels' line."""
        rep = self._report
        if rep is not None:
            return rep.text
        return f"filling: 0 of {self._drift_min()} windows"

    def view(self, state: Sample | None = None) -> ModelView:
        """The model as the model and drift panels show it: score against thresholds, drift
        against the training data (features worst first). Its state and quality come from
        `state`, its state signal's latest sample, when there is one, so the panel, the
        banner and the signal's row say the word of one sample (the runner moves on between
        two reads)."""
        with self._lock:
            m = self.model
            rep = self._report
            drift = self._drift
            th = m.package.thresholds if m is not None else None
            word = STATE_NAMES[self.last_state]
            quality, reason = self.quality.name, self.quality_reason.text
            detail = self.quality_detail
            if state is not None and m is not None and state.value is not None:
                code = int(float(state.value)) if not isinstance(state.value, np.ndarray) else 0
                word = ("normal", "warning", "critical")[max(0, min(2, code))]
                quality, reason = state.quality.name, state.reason.text
                detail = state.detail or detail
            return ModelView(
                id=self.cfg.id,
                running=m is not None,
                version=m.version if m is not None else "",
                sha=m.sha256[:12] if m is not None else "",
                quality=quality,
                quality_detail=detail,
                score=self.last_score,
                smoothed=self.last_smoothed,
                state=word,
                warning=th.warning if th else None,
                critical=th.critical if th else None,
                trend=tuple(self._trend),
                inference_ms=self.last_inference_ms,
                window_ms=self.last_window_ms,
                windows=self.runs,
                bad_outputs=self.bad_outputs,
                drift_status=rep.status if rep is not None else FILLING,
                drift_count=rep.count if rep is not None else 0,
                drift_needed=drift.min_windows if drift is not None else 0,
                psi_warn=drift.psi_warn if drift is not None else 0.1,
                psi_alert=drift.psi_alert if drift is not None else 0.25,
                psi_max=rep.psi_max if rep is not None else None,
                worst=(rep.worst or "") if rep is not None else "",
                page_hinkley=rep.page_hinkley if rep is not None else None,
                page_hinkley_fired=bool(rep.page_hinkley_fired) if rep is not None else False,
                features=tuple(
                    sorted(
                        (
                            DriftFeatureView(f.name, f.psi, f.ks, f.wasserstein, f.status, f.shift)
                            for f in (rep.features if rep is not None else ())
                        ),
                        key=lambda f: -f.psi,
                    )
                ),
                # not running: why the configured package could not be used, not the
                # stand-in's error
                load_error=(self.package_problem if m is None else "")
                or self.last_load_error
                or "",
                quality_reason=reason,
                drift_text=(
                    rep.text
                    if rep is not None
                    else f"filling: 0 of {drift.min_windows if drift is not None else 0} windows"
                ),
            )

    def status(self) -> dict[str, Any]:
        """Plain data: everything about the model, for tests and diagnostics (frames take
        view())."""
        with self._lock:
            m = self.model
            rep = self._report
            th = m.package.thresholds if m is not None else None
            drift: dict[str, Any] = {"status": FILLING, "count": 0, "features": []}
            if self._drift is not None:
                drift.update(
                    window=self._drift.window,
                    min_windows=self._drift.min_windows,
                    persist=self._drift.persist,
                    psi_warn=self._drift.psi_warn,
                    psi_alert=self._drift.psi_alert,
                )
            if rep is not None:
                drift.update(
                    status=rep.status,
                    count=rep.count,
                    psi_max=rep.psi_max,
                    worst=rep.worst,
                    score_psi=rep.score_psi,
                    page_hinkley=rep.page_hinkley,
                    page_hinkley_fired=rep.page_hinkley_fired,
                    text=rep.text,
                    drivers=list(rep.drivers),
                    line=rep.line,
                    features=[
                        {
                            "name": f.name,
                            "psi": f.psi,
                            "ks": f.ks,
                            "wasserstein": f.wasserstein,
                            "status": f.status,
                            "shift": f.shift,
                        }
                        for f in rep.features
                    ],
                )
            return {
                "id": self.cfg.id,
                "running": m is not None,
                "name": m.name if m is not None else "",
                "version": m.version if m is not None else "",
                "sha256": m.sha256[:12] if m is not None else "",
                "onnx_sha256": m.onnx_sha256[:12] if m is not None else "",
                "inputs": dict(self.cfg.inputs),
                "outputs": {
                    "score": self.score_id,
                    "smoothed": self.smoothed_id,
                    "state": self.state_id,
                    "drift": self.drift_prefix,
                },
                "quality": self.quality.name,
                "quality_detail": self.quality_detail,
                "quality_reason": self.quality_reason.text,
                "score": self.last_score,
                "smoothed": self.last_smoothed,
                "state": STATE_NAMES[self.last_state],
                "state_code": self.last_state,
                "thresholds": {"warning": th.warning, "critical": th.critical} if th else {},
                "smoothing": m.package.smoothing.describe() if m is not None else "",
                "trend": list(self._trend),
                "last_inference_ms": self.last_inference_ms,
                "last_window_ms": self.last_window_ms,
                "drift": drift,
                "counts": {
                    "windows": self.runs,
                    "bad_outputs": self.bad_outputs,
                    "nonfinite": self.nonfinite,
                    "out_of_range": self.out_of_range,
                    "bad_in_a_row": self._bad_run,
                    "numeric_warnings": self.numeric_warnings,
                    "misaligned": self.misaligned,
                },
                "failure": self.failure,
                "package_problem": self.package_problem,
                "stored_copy": self.stored_copy,
                "load_error": self.last_load_error,
                "load_errors": list(self.load_errors),
            }

    def histogram(self, feature: str) -> dict[str, Any]:
        """Reference against live shares per bin of one feature (or "score"), for the drift
        screen: {"feature", "edges", "reference", "live", "count"}; shares sum to 1."""
        with self._lock:
            d = self._drift
            if d is None:
                raise KeyError(f"model {self.cfg.id} is not running")
            ref = d.reference
            if feature == "score":
                fr = ref.score
                live = d._score_counts.copy()
            else:
                names = ref.names
                if feature not in names:
                    raise KeyError(f"model {self.cfg.id} has no feature {feature!r}")
                j = names.index(feature)
                fr = ref.features[j]
                live = d.live_counts()[j]
            r = np.asarray(fr.counts, dtype=np.float64)
            return {
                "feature": feature,
                "edges": list(fr.edges),
                "reference": (r / r.sum()).tolist(),
                "live": (live / live.sum()).tolist() if live.sum() else [0.0] * len(live),
                "count": int(live.sum()),
            }


def drift_monitor(cfg: ModelConfig, package: OnnxModel) -> DriftMonitor:
    """The drift monitor a runner builds for this model and package: the package's window and
    Page-Hinkley settings, the plant file's lines, PERSIST_WINDOWS and the correction for
    testing every feature at once (core.drift). Replays and calibration build it here too."""
    pkg = package.package
    window = cfg.drift_window or pkg.drift.window
    return DriftMonitor(
        pkg.reference,
        window=window,
        min_windows=min(pkg.drift.min_windows, window),
        psi_warn=cfg.psi_warn,
        psi_alert=cfg.psi_alert,
        page_hinkley=PageHinkley(delta=pkg.drift.ph_delta, threshold=pkg.drift.ph_threshold),
        persist=PERSIST_WINDOWS,
    )


_F64_MAX = float(np.finfo(np.float64).max)


def _far_outside(model: OnnxModel, feats: np.ndarray) -> tuple[str, bool]:
    """('', False) when every feature is a number the model can judge; else which feature is
    not, in words, and whether it is beyond representing at all (not finite, or clipped at
    float64's largest) rather than only far outside (the scaler clips what the graph gets)."""
    sc = model.package.scaler
    z = np.abs(np.nan_to_num((feats - sc.mean) / sc.std, nan=np.inf))
    j = int(np.argmax(z))
    worst = float(z[j])
    names = model.package.feature_names
    name = names[j] if j < len(names) else f"feature {j}"
    if not np.isfinite(feats).all() or float(np.abs(feats).max()) >= _F64_MAX:
        return f"a feature overflows ({name} at {worst:.3g} standard deviations)", True
    if worst > FAR_OUTSIDE:
        return f"{name} at {worst:.3g} standard deviations (limit {FAR_OUTSIDE:g})", False
    return "", False


def _one_line(text: str, limit: int = 400) -> str:
    """A package error of several lines ("…: 2 problems" and one per line) as one line."""
    line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _try_load(model: ModelConfig, path: Path) -> OnnxModel | str:
    """The loaded package when it can be used for this model, else why not."""
    try:
        package = load_package(path)
    except PackageError as e:
        return str(e)
    except OSError as e:  # a file that vanished or cannot be read between the checks
        return f"{path}: cannot read the package: {e.strerror or e}"
    return _compatibility(model, package) or package


def _compatibility(cfg: ModelConfig, package: OnnxModel) -> str:
    """'' when the package reads exactly the inputs this model wires, else what differs."""
    wanted = set(package.package.input_names)
    given = {name for name, _ in cfg.inputs}
    if wanted == given:
        return ""
    parts = []
    if wanted - given:
        parts.append(
            f"it needs {', '.join(sorted(wanted - given))}, which models.{cfg.id}.inputs "
            "does not wire"
        )
    if given - wanted:
        parts.append(f"it has no input {', '.join(sorted(given - wanted))}")
    return (
        f"{package.package.sidecar_path}: package {package.name} {package.version} does not "
        f"fit model {cfg.id}: {'; '.join(parts)}"
    )


def compatibility(cfg: ModelConfig, package: OnnxModel) -> str:
    """Why a loaded package cannot serve this [[models]] entry ("" when it can): the check a
    reload makes, for a candidate about to shadow the model."""
    return _compatibility(cfg, package)
