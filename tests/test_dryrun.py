"""The dry run: crafted series with known answers, and the count the engine itself makes when
the edited rule is applied and the same recording is replayed (the issue's "done when")."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorconsole.adapters.historian import HistoryReader
from floorconsole.core.alarms import AlarmTable, JournalEntry
from floorconsole.core.config import validate_plant
from floorconsole.core.dryrun import TICK_S, dry_run
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.rules import ActionRecord, ControlConfig, RuleConfig, parse_rules
from floorconsole.core.sample import Sample
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.control import Control
from floorconsole.engine.hub import Hub
from floorconsole.engine.runtime import WATCHDOG_INTERVAL_S

SIGNAL = "tank.level"
RANGE = (0.0, 100.0)
WALL0 = 1_700_000_000.0  # an integer: wall0 + k/64 is exact, so recorded times replay exactly
G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def rule(**kw: Any) -> RuleConfig:
    raw = {
        "id": "high-level",
        "signal": SIGNAL,
        "op": ">",
        "threshold": 60,
        "actions": [{"alarm": "high", "message": "tank level high"}],
        **kw,
    }
    [r], problems = parse_rules([raw], signals={SIGNAL: RANGE}, devices=set(), brokers=set())
    assert problems == []
    return r


def series(
    values: Sequence[float | None], step: float = 1.0, t0: float = WALL0, quality: Quality = G
) -> list[tuple[float, float | None, Quality]]:
    return [(t0 + i * step, v, quality) for i, v in enumerate(values)]


# -- crafted series --------------------------------------------------------------------------


def test_counts_each_crossing_with_its_times() -> None:
    r = dry_run(rule(), series([40, 61, 65, 50, 70, 30, 80, 80, 10]))
    assert (r.activations, r.releases) == (3, 3)
    assert (r.first, r.last) == (WALL0 + 1, WALL0 + 6)
    assert r.active_s == pytest.approx(2 + 1 + 2)  # 1..3, 4..5, 6..8
    assert (r.samples, r.since, r.until) == (9, WALL0, WALL0 + 8)


def test_on_delay_lets_only_long_enough_crossings_through() -> None:
    # Above the threshold for 1, 2, 3 and 5 samples a second apart; on_delay 2.5 s.
    values = [40, 70, 40, 70, 70, 40, 70, 70, 70, 40, 70, 70, 70, 70, 70, 40]
    r = dry_run(rule(on_delay="2500ms"), series(values))
    assert r.activations == 2
    # The timer fires on the engine's 100 ms tick, 2.5 s after the value went above.
    assert r.first == pytest.approx(WALL0 + 6 + 2.5)
    assert r.last == pytest.approx(WALL0 + 10 + 2.5)
    assert dry_run(rule(), series(values)).activations == 4


def test_deadband_keeps_the_output_on_through_small_dips() -> None:
    values = [50, 61, 57, 61, 57, 61, 54, 61]
    assert dry_run(rule(), series(values)).activations == 4
    r = dry_run(rule(deadband=5), series(values))  # releases below 55
    assert (r.activations, r.releases) == (2, 1)
    assert dry_run(rule(deadband="10%"), series(values)).activations == 1  # below 50


def test_timers_run_on_after_the_last_sample_until_the_end() -> None:
    s = series([40, 70])
    assert dry_run(rule(on_delay="5s"), s).activations == 0
    r = dry_run(rule(on_delay="5s"), s, until=WALL0 + 10)
    assert r.activations == 1 and r.first == pytest.approx(WALL0 + 6)
    assert r.active_s == pytest.approx(4.0)


def test_quality_policy_and_the_change_cap() -> None:
    bad = series([40, 40, None, None, 40], quality=G)
    bad[2] = (bad[2][0], None, B)
    bad[3] = (bad[3][0], None, B)
    assert dry_run(rule(on_bad_quality="hold"), bad).activations == 0
    r = dry_run(rule(on_bad_quality="activate"), bad)
    assert (r.activations, r.releases) == (1, 1)
    chatter = series([40, 70] * 10)
    assert dry_run(rule(), chatter).activations == 10
    capped = dry_run(rule(max_changes_per_hour=3), chatter)
    assert capped.activations == 2 and capped.held >= 1


def test_a_silent_signal_goes_stale_as_the_hub_marks_it() -> None:
    # Above the threshold, then nothing for 20 s: with a 10 s stale limit the value goes BAD
    # on the first tick past 11 s and the release policy lets the output go.
    s = series([70, 70])
    kw = {"on_bad_quality": "release"}
    assert dry_run(rule(**kw), s, until=WALL0 + 21).releases == 0
    r = dry_run(rule(**kw), s, until=WALL0 + 21, stale_after_s=10.0)
    assert (r.activations, r.releases) == (1, 1)
    assert r.active_s == pytest.approx(
        11.1
    )  # from the first sample to the first tick past 1 + 10 s


def test_disabled_rule_and_empty_history() -> None:
    assert dry_run(rule(enabled=False), series([40, 70, 40])).activations == 0
    empty = dry_run(rule(), [])
    assert (empty.activations, empty.samples, empty.first, empty.since) == (0, 0, None, None)


def test_the_tick_is_the_engines() -> None:
    assert TICK_S == WATCHDOG_INTERVAL_S


# -- the engine's path: Hub -> Control.on_samples, Control.tick every 100 ms -----------------


class StepClock:
    """Monotonic time set to exactly the replay's times (seconds since the first sample)."""

    def __init__(self, wall0: float) -> None:
        self.wall0 = wall0
        # The hub is built before the first sample: its "no value yet" entries must not share
        # the first sample's time (a sample at the same time and value reads as a re-emission).
        self.now = -1.0

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall0 + self.now


@dataclass
class Recorder:
    """The engine's journal: every alarm transition and action outcome it records."""

    actions: list[ActionRecord] = field(default_factory=list)

    def append(self, entry: JournalEntry) -> None:
        pass

    def record_action(self, record: ActionRecord) -> None:
        self.actions.append(record)

    def close(self) -> None:
        pass

    def activations(self, rule_id: str) -> list[float]:
        return [
            a.t_wall
            for a in self.actions
            if a.rule == rule_id and a.action == "alarm" and a.transition == "activate"
        ]


@dataclass
class Stored:
    """What the hub stores (the historian's samples table), as (t, value, quality, reason)."""

    rows: list[tuple[float, Any, Quality, Reason]] = field(default_factory=list)

    def append(self, samples: Sequence[Sample]) -> None:
        self.rows.extend((s.t_source, s.value, s.quality, s.reason) for s in samples)

    def append_quality(self, sample: Sample) -> None:
        pass


def drive(
    samples: Sequence[tuple[float, Any, Quality]],
    end_rel: float,
    tick: Any,
    ingest: Any,
    clock: StepClock,
) -> None:
    """Samples into the hub at their times (seconds since the first), the watchdog tick at
    every 100 ms in between: a tick due at a sample's time runs first."""
    k = 1
    t0 = samples[0][0]
    for t, v, q in samples:
        rel = t - t0
        while k * WATCHDOG_INTERVAL_S <= rel:
            clock.now = k * WATCHDOG_INTERVAL_S
            tick()
            k += 1
        clock.now = rel
        reason = Reason.NONE if q is G else (Reason.LAST_USABLE if q is U else Reason.NO_COMM)
        ingest([Sample(SIGNAL, v, q, reason, t, rel)])
    while k * WATCHDOG_INTERVAL_S <= end_rel:
        clock.now = k * WATCHDOG_INTERVAL_S
        tick()
        k += 1
    clock.now = end_rel


def hub_and_control(
    r: RuleConfig,
    samples: Sequence[tuple[float, Any, Quality]],
    end_rel: float,
    stale_after_s: float | None,
) -> tuple[Recorder, Stored]:
    from floorconsole.core.config import EdgeConfig, MqttPoint, PlantConfig, SignalConfig

    clock = StepClock(samples[0][0])
    sig = SignalConfig(
        SIGNAL, MqttPoint("local", "t/level", ("v",)), range=RANGE, stale_after_s=stale_after_s
    )
    plant = PlantConfig(edge=EdgeConfig(id="t"), signals=(sig,))
    stored = Stored()
    hub = Hub(plant, clock, stored)
    if stale_after_s is None:
        hub.stale_after.pop(SIGNAL)
    journal = Recorder()
    control = Control(
        [r], ControlConfig(), hub.latest.get, {}, None, AlarmTable(clock), journal, clock
    )
    hub.add_listener(control.on_samples)

    def tick() -> None:  # Configuration.tick, for a plant without models or links
        hub.check_stale()
        control.tick()

    drive(samples, end_rel, tick, hub.ingest, clock)
    return journal, stored


sample_steps = st.sampled_from([1 / 64, 0.25, 0.5, 1.0, 1.5, 2.5, 4.0, 12.0])
sample_values = st.one_of(st.integers(0, 130).map(float), st.none())
qualities = st.sampled_from([G, G, G, G, U, B])
durations = st.sampled_from(["0s", "500ms", "1s", "2500ms", "4s"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(sample_steps, sample_values, qualities), min_size=1, max_size=60),
    st.sampled_from([">", ">=", "<", "<="]),
    st.integers(20, 90),
    st.sampled_from([0, 3, 8]),
    durations,
    durations,
    durations,
    durations,
    st.sampled_from([None, 1, 3]),
    st.sampled_from(["hold", "activate", "release"]),
    st.sampled_from([None, 3.0, 10.0]),
)
def test_dry_run_counts_what_hub_and_control_do(
    steps: list[tuple[float, float | None, Quality]],
    op: str,
    threshold: int,
    deadband: int,
    on_delay: str,
    off_delay: str,
    min_on: str,
    min_off: str,
    cap: int | None,
    policy: str,
    stale: float | None,
) -> None:
    kw: dict[str, Any] = {
        "op": op,
        "threshold": threshold,
        "deadband": deadband,
        "on_delay": on_delay,
        "off_delay": off_delay,
        "min_on": min_on,
        "min_off": min_off,
        "on_bad_quality": policy,
    }
    if cap is not None:
        kw["max_changes_per_hour"] = cap
    r = rule(**kw)
    t = WALL0
    samples = []
    for dt, v, q in steps:
        t += dt
        samples.append((t, v if q is not B else None, q))
    end_rel = samples[-1][0] - samples[0][0] + 15.0
    journal, stored = hub_and_control(r, samples, end_rel, stale)
    engine_times = journal.activations(r.id)
    result = dry_run(r, stored.rows, until=samples[0][0] + end_rel, stale_after_s=stale)
    assert result.activations == len(engine_times)
    assert result.releases == sum(1 for a in journal.actions if a.transition == "release")
    if engine_times:
        assert (result.first, result.last) == (engine_times[0], engine_times[-1])


# -- the test: a recording made by the engine, the dry run of an edited rule, and the
#    engine running that rule over the same recording --------------------------------------

RULE_A = {
    "id": "high-level",
    "signal": SIGNAL,
    "op": ">",
    "threshold": 60,
    "deadband": 5,
    "on_delay": "2s",
    "off_delay": "1s",
    "on_bad_quality": "hold",
    "actions": [{"alarm": "high", "message": "tank level high"}],
}
RULE_B = {
    **RULE_A,
    "threshold": 55,
    "deadband": 2,
    "on_delay": "1500ms",
    "off_delay": "0s",
    "min_on": "3s",
    "max_changes_per_hour": 40,
    "on_bad_quality": "release",
}


def plant(tmp: Path, rule_raw: dict[str, Any]) -> Any:
    raw = {
        "edge": {"id": "tank-farm", "data_dir": str(tmp)},
        "brokers": [{"id": "local", "host": "127.0.0.1", "port": 1883}],
        "signals": [
            {
                "id": SIGNAL,
                "broker": "local",
                "topic": "farm/tank1",
                "json": "level",
                "range": list(RANGE),
                "unit": "%",
            }
        ],
        "rules": [rule_raw],
    }
    return validate_plant(raw, base_dir=tmp)


def recorded_series(seed: int = 6) -> list[tuple[float, float | None, Quality]]:
    """About 25 minutes of a tank level: excursions past 55 and 60 of 0.5 to 40 s, chatter
    around the thresholds, values past the range (the hub makes them UNCERTAIN), BAD
    stretches, and silences longer than the stale limit (10 s for an MQTT signal)."""
    rng = random.Random(seed)
    out: list[tuple[float, float | None, Quality]] = []
    t = WALL0

    def emit(v: float | None, q: Quality = G, dt: float | None = None) -> None:
        nonlocal t
        t += dt if dt is not None else rng.choice([0.25, 0.5, 0.5, 0.75, 62 / 64])
        out.append((t, v, q))

    for _ in range(120):
        for _ in range(rng.randint(5, 30)):
            emit(rng.uniform(30, 50))
        kind = rng.random()
        high = rng.uniform(56, 90)
        if kind < 0.5:  # an excursion of 0.5 to 40 s
            for _ in range(rng.choice([1, 2, 3, 4, 6, 10, 20, 80])):
                emit(high + rng.uniform(-1, 1))
        elif kind < 0.7:  # chatter inside the deadbands
            for _ in range(rng.randint(5, 40)):
                emit(rng.uniform(52, 64))
        elif kind < 0.8:
            emit(150.0)  # out of range: UNCERTAIN
            emit(rng.uniform(56, 70))
        elif kind < 0.9:
            for _ in range(rng.randint(1, 8)):
                emit(None, B)
        else:  # a silence past the stale limit, high or low before it
            emit(high if rng.random() < 0.5 else 40.0)
            emit(rng.uniform(30, 70), dt=rng.choice([10.5, 15.0, 30.0]))
    return out


class ReplayEngine:
    """An Engine with its configuration driven by hand: hub ingest and the watchdog tick on a
    clock set to each sample's time. Everything below the sources is the engine's own."""

    def __init__(self, tmp: Path, rule_raw: dict[str, Any], wall0: float) -> None:
        self.clock = StepClock(wall0)
        self.journal = Recorder()
        self.engine = open_engine(
            data_dir=tmp,
            base_dir=tmp,
            user="test",
            plant_raw=plant(tmp, rule_raw).raw,
            clock=self.clock,
            journal=self.journal,  # type: ignore[arg-type]
        )
        self.engine.historian.start()

    def run(self, samples: Sequence[tuple[float, Any, Quality]], end_rel: float) -> None:
        cfg = self.engine.active
        drive(samples, end_rel, cfg.tick, cfg.hub.ingest, self.clock)
        self.engine.historian.flush()

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[list[ReplayEngine]]:
    made: list[ReplayEngine] = []
    yield made
    for e in made:
        e.close()


def test_dry_run_of_an_edited_rule_equals_the_engine_running_it(
    tmp_path: Path, engines: list[ReplayEngine]
) -> None:
    series_ = recorded_series()
    t0 = series_[0][0]
    end_rel = series_[-1][0] - t0 + 30.0
    assert end_rel < 3600  # one recording inside both windows: 1 h and 24 h count alike

    # The engine runs rule A and records the tank level in its historian.
    first = ReplayEngine(tmp_path / "running", RULE_A, t0)
    engines.append(first)
    first.run(series_, end_rel)
    ran_a = first.journal.activations("high-level")

    # The console's dry run of rule B as edited, beside the running rule A.
    answer = first.engine.api.dry_run(RULE_B)
    assert answer["ok"], answer
    assert answer["current"]["24h"] == answer["current"]["1h"] == len(ran_a)
    dry_b = answer["edited"]["24h"]

    # Rule B applied: an engine running it is fed the recording from the historian.
    with HistoryReader(first.engine.historian.path) as reader:
        recording = reader.query(SIGNAL, None, None)
    assert len(recording) == len(series_)
    assert sum(1 for r in recording if r.quality is U) >= 5  # the hub's out-of-range marks
    applied = ReplayEngine(tmp_path / "applied", RULE_B, t0)
    engines.append(applied)
    applied.run([(r.t, r.value, r.quality) for r in recording], end_rel)
    ran_b = applied.journal.activations("high-level")

    assert dry_b == answer["edited"]["1h"] == len(ran_b)
    detail = answer["detail"]["edited"]["24h"]
    assert (detail["first"], detail["last"]) == (ran_b[0], ran_b[-1])
    assert detail["releases"] == sum(
        1 for a in applied.journal.actions if a.transition == "release"
    )
    # The edit matters: the two rules count differently over the same recording.
    assert len(ran_b) != len(ran_a) and len(ran_a) >= 10


def test_dry_run_answers_with_the_problems_of_a_bad_rule(
    tmp_path: Path, engines: list[ReplayEngine]
) -> None:
    e = ReplayEngine(tmp_path, RULE_A, WALL0)
    engines.append(e)
    e.run(series([40, 70, 70, 70, 40]), 10.0)
    bad = {
        **RULE_A,
        "threshold": "high",
        "on_delay": "5 sec",
        "actions": [{"write": "drive9", "address": "co:1", "on": True}],
    }
    answer = e.engine.api.dry_run(bad)
    assert not answer["ok"]
    for text in (
        "threshold: expected a finite number",
        "on_delay: '5 sec' is not a duration",
        "actions[0].write: 'drive9' is not a device",
    ):
        assert text in answer["message"]
    new = e.engine.api.dry_run({**RULE_A, "id": "new-rule", "threshold": 65})
    assert new["ok"] and new["current"] is None and new["edited"] == {"1h": 1, "24h": 1}
    waveform = e.engine.api.dry_run({**RULE_A, "signal": "nope"})
    assert not waveform["ok"] and "signal: 'nope' is not a signal" in waveform["message"]
