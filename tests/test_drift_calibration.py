"""Drift you can believe: hours of healthy simulator running raise no drift alert and at most one
warning per 8-hour shift, the slow sensor drift is still reported, and every screen reads one
state in one vocabulary (filling / ok / warning / alert) with the features that drive it.

The long runs use the simulator's own plant time (stepped 0.5 s a window, no wall clock) and the
drift monitor the engine builds (engine.model_runner.drift_monitor), reported once a second of
plant time as the runner does: hours of plant time in seconds of test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from floorconsole.adapters.onnx_model import OnnxModel, load_package
from floorconsole.core.clock import FakeClock
from floorconsole.core.drift import (
    ALERT,
    FILLING,
    OK,
    PERSIST_WINDOWS,
    PSI_WARN,
    WARNING,
    DriftMonitor,
    chance_psi,
    reference_from_samples,
)
from floorconsole.core.features import block_features
from floorconsole.core.model_state import DRIFT_LABELS, enum_text
from floorconsole.core.model_state import FILLING as FILLING_WORD
from floorconsole.core.plantsim import MotorSim
from floorconsole.engine.model_runner import ModelRunner, drift_monitor
from tests.test_model import PKG, config, load_recording

HOP_S = 0.5
REPORT_EVERY = 2  # a drift report each second of plant time (the runner's DRIFT_EMIT_S)


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return load_package(PKG)


def _windows(sim: MotorSim, n: int) -> np.ndarray:
    out = np.empty((n, 33))
    for i in range(n):
        sim.step(HOP_S)
        out[i] = block_features(*sim.vibration_block(256, 500.0))
    return out


def _feed(mon: DriftMonitor, model: OnnxModel, feats: np.ndarray, k0: int) -> list[tuple[int, Any]]:
    """Feed windows; the reports made (every REPORT_EVERY windows) with their window number."""
    out = []
    for i, (f, s) in enumerate(zip(feats, model.score(feats), strict=True)):
        mon.update(f, float(s))
        if (k0 + i + 1) % REPORT_EVERY == 0:
            out.append((k0 + i + 1, mon.report(full=False)))
    return out


# --- the long healthy run ----------------------------------------------------------------------


@pytest.mark.slow
def test_eight_hours_of_healthy_running_raise_no_alert_and_at_most_one_warning(
    model: OnnxModel,
) -> None:
    """One 8-hour shift of a healthy motor on the simulator's load profile (two load cycles
    and a random walk, 30-90 %): the drift state never reaches alert and enters warning at
    most once. Seed 7 is none of the seeds the calibration was made on (1-4)."""
    mon = drift_monitor(config(), model)
    sim = MotorSim(7)
    windows = round(8 * 3600 / HOP_S)
    states: list[str] = []
    k = 0
    while k < windows:
        n = min(2400, windows - k)
        states += [r.status for _, r in _feed(mon, model, _windows(sim, n), k)]
        k += n
    assert len(states) == windows // REPORT_EVERY
    assert states[0] == FILLING and FILLING not in states[-100:]
    entries = sum(
        1
        for a, b in zip(states, states[1:], strict=False)
        if b in (WARNING, ALERT) and a in (OK, FILLING)
    )
    assert ALERT not in states, "healthy running: no drift alert"
    assert entries <= 1, f"{entries} drift warnings in one 8-hour shift"
    # the load did change: the shift covered the simulator's whole load range
    assert sim.t == pytest.approx(8 * 3600, rel=1e-6)


def test_the_slow_sensor_drift_is_reported_naming_the_drifting_axis(model: OnnxModel) -> None:
    """Ten healthy minutes (the window full of healthy data, as in a running plant), then the
    demo's sensor drift: a warning within 180 s of its start (measured: about 117 s; the
    figures are in the README), then an alert, each naming x-axis features and their shift."""
    mon = drift_monitor(config(), model)
    sim = MotorSim(45)
    lead = round(600 / HOP_S)
    assert lead >= mon.window
    healthy = _feed(mon, model, _windows(sim, lead), 0)
    assert healthy[-1][1].status == OK
    sim.set_fault("sensor_drift", 1.0)
    warning = alert = None
    k = lead
    while alert is None and (k - lead) * HOP_S < 600:
        for n, r in _feed(mon, model, _windows(sim, 20), k):
            t = (n - lead) * HOP_S
            if warning is None and r.status in (WARNING, ALERT):
                warning = (t, r)
            if r.status == ALERT and alert is None:
                alert = (t, r)
        k += 20
    assert warning is not None and alert is not None
    assert warning[0] <= 180.0, warning[0]
    assert warning[0] < alert[0] <= 300.0
    for _t, r in (warning, alert):
        assert r.text.startswith(f"{r.status}: x."), r.text
        assert r.drivers and all(d.startswith("x.") and d.endswith("σ") for d in r.drivers)
        marked = [f for f in r.features if f.status != OK]
        assert marked and all(f.name.startswith("x.") and f.shift > 0 for f in marked)


# --- persistence, hysteresis and the chance line ----------------------------------------------


def _ref() -> Any:
    rng = np.random.default_rng(3)
    train = rng.normal(0, 1, (20_000, 4))
    return reference_from_samples(["a", "b", "c", "d"], train, rng.chisquare(3, 20_000))


def test_a_level_is_taken_and_left_only_after_it_persisted() -> None:
    """The same windows into a monitor without persistence and one with 40: the second takes
    the warning exactly 40 windows later and leaves it later, naming the shifted feature."""
    rng = np.random.default_rng(5)
    ref = _ref()
    now = DriftMonitor(ref, window=200, min_windows=100)
    late = DriftMonitor(ref, window=200, min_windows=100, persist=40)
    seen: dict[str, list[str]] = {"now": [], "late": []}
    for i in range(900):
        v = rng.normal(0, 1, 4)
        if 300 <= i < 500:
            v[1] += 1.5  # a lasting shift of feature b
        s = float(rng.chisquare(3))
        for name, mon in (("now", now), ("late", late)):
            mon.update(v, s)
            seen[name].append(mon.report(full=False).status)

    def first(states: list[str], word: str, after: int = 0) -> int:
        return next(i for i, s in enumerate(states) if i >= after and s == word)

    assert set(seen["late"][:300]) <= {FILLING, OK}
    on = first(seen["now"], WARNING)
    assert first(seen["late"], WARNING) == on + 40
    off_now = first(seen["now"], OK, on)
    assert first(seen["late"], OK, on + 40) >= off_now + 40
    assert seen["late"][-1] == OK
    # while it warned, it named b and its shift; b alone was marked
    late.reset()
    for _ in range(200):
        v = rng.normal(0, 1, 4)
        v[1] += 1.5
        late.update(v, float(rng.chisquare(3)))
        r = late.report(full=False)
    assert r.status in (WARNING, ALERT) and r.drivers[0].startswith("b +")
    assert r.text == f"{r.status}: {', '.join(r.drivers)}"
    assert [f.name for f in r.features if f.status != OK] == ["b"]


def test_the_chance_line_guards_small_windows_and_many_features() -> None:
    """34 figures at once: at 240 windows chance alone nears PSI 0.13, above the 0.1 line, so
    the line rises; at the full 1200 it is far below and the 0.1 line rules."""
    assert chance_psi(240, 20_400, 10, 34) > PSI_WARN
    assert chance_psi(1200, 20_400, 10, 34) < 0.5 * PSI_WARN
    assert chance_psi(240, 20_400, 10, 34) > chance_psi(240, 20_400, 10, 1)
    rng = np.random.default_rng(11)
    mon = DriftMonitor(_ref(), window=600, min_windows=40)
    for _ in range(60):
        mon.update(rng.normal(0, 1, 4), float(rng.chisquare(3)))
    r = mon.report()
    assert r.line > PSI_WARN and r.status == OK


# --- one state, one vocabulary ----------------------------------------------------------------


def test_one_state_and_one_vocabulary_from_the_runner_to_the_signal(model: OnnxModel) -> None:
    """While the window fills, every view says filling (the status signal's row too, not OK);
    at the recording's sensor-drift alert the view, the alarm text and the status signal's
    detail name the same x-axis features, and only those features are marked."""
    features, t, meta = load_recording("sensor_drift")
    clock = FakeClock(wall=1_700_000_000.0)
    runner = ModelRunner(config(), model, clock)
    seen: dict[str, Any] = {}
    for i, f in enumerate(features):
        clock.advance(HOP_S)
        out = {s.signal: s for s in runner.score_features(f, t_source=clock.wall())}
        st = out.get("motor1_anomaly.drift.status")
        view = runner.view()
        if i == 50:
            assert st is not None and view.drift_status == FILLING
            assert enum_text(DRIFT_LABELS, st.value, st.quality.name, st.reason.text) == (
                FILLING_WORD
            )
            assert view.drift_text.startswith("filling: ") and view.drift_text.endswith(
                "of 240 windows"
            )
            assert {f.status for f in view.features} == {FILLING}
        if st is not None and st.value == 2 and "alert" not in seen:
            seen["alert"] = (view, st, runner.drift_text)
    view, st, text = seen["alert"]
    assert view.drift_status == ALERT and text == view.drift_text == st.detail
    assert text.startswith("alert: x.") and "σ" in text
    assert enum_text(DRIFT_LABELS, st.value, st.quality.name, st.reason.text) == "ALERT"
    marked = {f.name for f in view.features if f.status != OK}
    assert marked and all(n.startswith("x.") for n in marked)
    assert PERSIST_WINDOWS == 40
