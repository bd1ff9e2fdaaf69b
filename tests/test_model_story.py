"""One truthful story: the model's state is one word (core.model_state) on the status line, the
model panel, the banner and the state signal, and a BAD model is never called NORMAL. Checked
on the derivation itself, on recorded frames, and on every frame of the live demo's faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from floorconsole.console import Frame
from floorconsole.core.config import DerivedPoint, SignalConfig
from floorconsole.core.model_state import (
    BAD,
    CRITICAL,
    DRIFT_LABELS,
    NORMAL,
    OUT_OF_SERVICE,
    STATE_LABELS,
    WARNING,
    enum_text,
    model_state_word,
)
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.uplink import SampleEncoder
from floorconsole.engine.api import _signal_view
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.widgets.model_panel import model_line, model_text
from floorconsole.ui.widgets.status_bars import banner_text
from tests.support.demo_engine import demo_engine_in

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "fixtures" / "recordings"

DEMO = REPO / "fixtures" / "plants" / "demo.toml"
STATE = "motor1_anomaly.state"


def test_the_word_follows_quality_first_then_the_state() -> None:
    w = model_state_word
    assert w(running=True, quality="GOOD", reason="", state="normal") == NORMAL
    assert w(running=True, quality="GOOD", reason="", state="critical") == CRITICAL
    assert w(running=True, quality="UNCERTAIN", reason="initial", state=1) == WARNING
    # BAD carries the last state (0 after the machine stopped): never read as NORMAL.
    assert w(running=True, quality="BAD", reason="out of service", state="normal") == (
        OUT_OF_SERVICE
    )
    assert w(running=True, quality="BAD", reason="no communication", state=2) == BAD
    assert w(running=False, quality="UNCERTAIN", reason="", state="normal") == BAD


def test_enumerated_values_say_their_label_not_a_number() -> None:
    assert enum_text(STATE_LABELS, 2.0, "GOOD", "") == "CRITICAL"
    assert enum_text(DRIFT_LABELS, 1.0, "GOOD", "") == "WARNING"
    assert enum_text(DRIFT_LABELS, 0.0, "UNCERTAIN", "initial") == "FILLING"  # not OK yet
    assert enum_text(STATE_LABELS, 0.0, "BAD", "out of service") == OUT_OF_SERVICE
    assert enum_text(STATE_LABELS, 0.0, "BAD", "device failure") == BAD
    assert enum_text(STATE_LABELS, 7.0, "GOOD", "") == "? 7"  # a code without a word says so
    assert enum_text(STATE_LABELS, None, "UNCERTAIN", "initial") == "—"


def test_the_signal_view_and_the_uplink_carry_the_word() -> None:
    cfg = SignalConfig(STATE, DerivedPoint("model motor1_anomaly"), labels=STATE_LABELS)
    good = Sample(STATE, 2.0, Quality.GOOD, Reason.NONE, 1.7e9, 1.0, "")
    stopped = Sample(STATE, 0.0, Quality.BAD, Reason.OUT_OF_SERVICE, 1.7e9, 2.0, "motor off")
    assert _signal_view(cfg, good, 1.0, (), 0).value_text == "CRITICAL"
    assert _signal_view(cfg, stopped, 2.0, (), 0).value_text == "OUT OF SERVICE"
    enc = SampleEncoder()
    enc.labels[STATE] = STATE_LABELS
    text, _ = enc.encode(good)  # type: ignore[misc]
    assert '"v":2.0,"l":"CRITICAL"' in text
    text, _ = enc.encode(stopped)  # type: ignore[misc]
    assert '"l":"OUT OF SERVICE"' in text and '"q":"BAD out of service"' in text
    current = Sample("motor1.current", 2.0, Quality.GOOD, Reason.NONE, 1.7e9, 1.0, "")
    plain, _ = enc.encode(current)  # type: ignore[misc]
    assert '"l"' not in plain


# -- the screens' words, from one frame ---------------------------------------------------------


def words_on_screens(frame: Frame) -> dict[str, str]:
    """What each place says about the model in this frame, as plain text."""
    m = frame.models[0]
    state = next(s for s in frame.signals if s.id == STATE)
    return {
        "status line": model_line(frame),
        "model panel": model_text(m, {}, 36).plain,
        "banner": banner_text(frame, {}).plain,
        "state signal": state.value_text,
    }


def check_one_story(frame: Frame) -> str:
    """The word of the model in this frame, after checking every place tells it alike."""
    m = frame.models[0]
    word = m.word
    said = words_on_screens(frame)
    assert word in said["status line"], said
    assert word in said["model panel"].splitlines()[1], said  # the panel's state line
    state = next(s for s in frame.signals if s.id == STATE)
    if state.value is not None:
        assert said["state signal"] == word, said
    if word != NORMAL:
        for where, text in said.items():
            assert "NORMAL" not in text, f"{where} says NORMAL while the model is {word}: {said}"
    if word in (WARNING, CRITICAL, BAD):
        conds = [c for c in frame.conditions if c.source == f"model {m.id}"]
        assert conds and word in conds[0].text, frame.conditions
        assert "No active conditions" not in said["banner"], said
        shown = [a for a in frame.alarms if a.state in ("UNACK", "RTN_UNACK", "ACKED")]
        if not shown and conds[0] is min(
            frame.conditions, key=lambda c: {"high": 0, "medium": 1}.get(c.severity, 2)
        ):
            assert word in said["banner"], said
    return word


def test_a_recorded_bad_model_says_bad_everywhere() -> None:
    """The vibration sensor went silent: the model's inputs are stale, it is BAD, not scoring."""
    frame = RecordedAPI.load(RECORDINGS / "sensor_silent.json").frame()
    assert frame.models[0].quality == "BAD"
    said = words_on_screens(frame)
    assert frame.models[0].word == BAD
    assert "BAD" in said["status line"] and "NORMAL" not in said["status line"]
    assert "NORMAL" not in said["model panel"], said["model panel"]
    assert "last score" in said["model panel"]  # the score shown is the last one, and says so


# -- the live demo: every frame of a fault walk -------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[object, object]]:
    with demo_engine_in(tmp_path) as (d, e):
        yield d, e


def walk(e: object, until: object, timeout: float, seen: list[str]) -> Frame:  # type: ignore[type-arg]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        frame = e.api.frame()  # type: ignore[attr-defined]
        seen.append(check_one_story(frame))
        if until(frame):  # type: ignore[operator]
            return frame
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s; words seen {sorted(set(seen))}")


@pytest.mark.slow
def test_every_frame_of_a_bearing_fault_tells_one_story(demo: tuple[object, object]) -> None:
    """Bearing fault: the score climbs through WARNING to CRITICAL, the rule trips the motor,
    the model goes OUT OF SERVICE; at every frame the status line, the model panel, the banner
    and the state signal say the same word."""
    d, e = demo
    seen: list[str] = []
    walk(e, lambda f: f.models[0].word == NORMAL and f.models[0].quality == "GOOD", 25, seen)
    d.sim.inject("bearing")  # type: ignore[attr-defined]
    walk(e, lambda f: f.models[0].word == OUT_OF_SERVICE, 30, seen)
    d.sim.clear("bearing")  # type: ignore[attr-defined]
    # A frame with a BAD model from a dead input, too: the drive drops out.
    d.sim.inject("dropout")  # type: ignore[attr-defined]
    walk(e, lambda f: f.models[0].word in (BAD, OUT_OF_SERVICE) and len(seen) > 20, 15, seen)
    assert {NORMAL, CRITICAL, OUT_OF_SERVICE} <= set(seen), sorted(set(seen))
    assert len(seen) > 50


async def test_the_state_signals_detail_says_its_words() -> None:
    """The history of the state signal reads as the states it went through, not as a mean of
    codes; its row says the word."""
    from floorconsole.ui.app import make_app
    from floorconsole.ui.screens.detail import SignalDetailScreen

    app = make_app(RecordedAPI.load(RECORDINGS / "bearing_trip.json"))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.tick()
        await app.push_screen(SignalDetailScreen(STATE))
        for _ in range(20):
            await pilot.pause(0.05)
            await app.workers.wait_for_complete()
            app.tick()
            stats = app.screen._texts.get("stats")  # type: ignore[attr-defined]
            if stats is not None and "states" in stats.plain:
                break
        assert stats is not None and "states NORMAL · CRITICAL" in stats.plain, stats
        assert "mean" not in stats.plain
        now = app.screen._texts.get("now")  # type: ignore[attr-defined]
        assert now is None or "OUT OF SERVICE" in now.plain
