"""Rules: plant-file validation with key paths, and the evaluator on a fake monotonic clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorconsole.core.clock import FakeClock
from floorconsole.core.quality import Reason
from floorconsole.core.rules import (
    AlarmAction,
    PublishAction,
    RuleConfig,
    RuleEvaluator,
    Transition,
    WriteAction,
    parse_control,
    parse_rules,
    payload_fields,
)
from floorconsole.core.sample import Sample

SIGNALS = {"motor1.anomaly_score": (0.0, 1.0), "motor1.current": (0.0, 50.0), "line.state": None}
DEVICES = {"drive1"}
BROKERS = {"local"}

DESIGN_EXAMPLE = {
    "id": "trip-motor1",
    "signal": "motor1.anomaly_score",
    "op": ">",
    "threshold": 0.8,
    "deadband": 0.05,
    "on_delay": "5s",
    "off_delay": "2s",
    "on_bad_quality": "hold",
    "actions": [
        {"write": "drive1", "address": "co:10", "on": True, "off": False},
        {"publish": "local", "topic": "plant3/line2/alarms", "qos": 1},
        {"alarm": "high", "message": "Motor 1 anomaly"},
    ],
}


def parse(rules: list[object]) -> tuple[list[RuleConfig], dict[str, str]]:
    parsed, problems = parse_rules(rules, signals=SIGNALS, devices=DEVICES, brokers=BROKERS)
    return parsed, {p.path: p.message for p in problems}


# -- validation ------------------------------------------------------------------------------


def test_the_design_example_parses() -> None:
    [rule], problems = parse([DESIGN_EXAMPLE])
    assert problems == {}
    assert (rule.id, rule.signal, rule.op, rule.threshold) == (
        "trip-motor1",
        "motor1.anomaly_score",
        ">",
        0.8,
    )
    assert rule.deadband == 0.05 and rule.release_level == pytest.approx(0.75)
    assert (rule.on_delay_s, rule.off_delay_s, rule.on_bad_quality) == (5.0, 2.0, "hold")
    write, publish, alarm = rule.actions
    assert isinstance(write, WriteAction) and write.target == "drive1 co:10"
    assert (write.point.table, write.point.address, write.point.type) == ("co", 10, "bool")
    assert (write.on, write.off) == (True, False)
    assert isinstance(publish, PublishAction) and (publish.broker, publish.qos) == ("local", 1)
    assert isinstance(alarm, AlarmAction) and alarm.priority == "high"
    assert alarm.message == "Motor 1 anomaly"
    assert rule.describe() == "motor1.anomaly_score > 0.8 (db 0.05, on 5s, off 2s)"


def test_percent_deadband_uses_the_signal_range() -> None:
    [rule], problems = parse(
        [{"id": "r", "signal": "motor1.current", "op": "<", "threshold": 10, "deadband": "2%"}]
    )
    assert problems == {}
    assert rule.deadband == pytest.approx(1.0)  # 2 % of 0..50 A
    assert rule.release_level == pytest.approx(11.0)
    assert rule.deadband_text == "2%"


def test_every_problem_is_reported_with_its_key_path() -> None:
    rules = [
        {"id": "a", "signal": "nope", "op": ">", "threshold": 1, "colour": "red"},
        {
            "id": "b",
            "signal": "motor1.current",
            "op": "=>",
            "threshold": "high",
            "on_delay": "5 sec",
            "max_changes_per_hour": 0,
            "on_bad_quality": "ignore",
            "actions": [
                {"write": "drive1", "address": "ir:3", "on": 1},
                {"write": "drive1", "address": "di:0", "on": True},
                {"write": "drive9", "address": "co:1", "on": True},
                {"write": "drive1", "address": "hr:5", "on": 70000},
                {"write": "drive1", "address": "co:2"},
                {"publish": "plant", "topic": "a/#", "qos": 3},
                {"publish": "local", "topic": "x", "payload": "{rule} {colour}"},
                {"alarm": "urgent"},
                {"alarm": "low", "write": "drive1"},
            ],
        },
        {"id": "c", "signal": "line.state", "op": "==", "threshold": 3, "deadband": "2%"},
        {"id": "d", "signal": "motor1.current", "op": "==", "threshold": 3, "deadband": 1},
        {"id": "a", "signal": "motor1.current", "op": ">", "threshold": 1},
        {
            "id": "e",
            "signal": "motor1.current",
            "op": ">",
            "threshold": 1,
            "actions": [{"write": "drive1", "address": "co:10", "on": True}],
        },
        {
            "id": "f",
            "signal": "motor1.current",
            "op": ">",
            "threshold": 1,
            "actions": [{"write": "drive1", "address": "co:10", "on": True}],
        },
        {"signal": "motor1.current", "op": ">"},
    ]
    parsed, problems = parse(rules)
    expected = {
        "rules[0].signal": "'nope' is not a signal of this plant",
        "rules[0].colour": "unknown key",
        "rules[1].op": "'=>' is not one of >, >=, <, <=, ==, !=",
        "rules[1].threshold": "expected a finite number or true/false",
        "rules[1].on_delay": "is not a duration",
        "rules[1].max_changes_per_hour": "0 is out of range",
        "rules[1].on_bad_quality": "'ignore' is not one of hold, activate, release",
        "rules[1].actions[0].address": "ir (input registers) is read-only",
        "rules[1].actions[1].address": "di (discrete inputs) is read-only",
        "rules[1].actions[2].write": "'drive9' is not a device in this file (drive1)",
        "rules[1].actions[3].on": "70000 is outside the uint16 range",
        "rules[1].actions[4].on": "missing",
        "rules[1].actions[5].publish": "'plant' is not a broker in this file (local)",
        "rules[1].actions[5].topic": "no wildcards",
        "rules[1].actions[5].qos": "3 is out of range",
        "rules[1].actions[6].payload": "{colour} is not a placeholder",
        "rules[1].actions[7].alarm": "'urgent' is not one of low, medium, high, critical",
        "rules[1].actions[8]": "an action is one of",
        "rules[2].deadband": "the signal has no range",
        "rules[3].deadband": "a deadband applies to > >= < <=, not to ==",
        "rules[4].id": "'a' is already used by rules[0]",
        "rules[6].actions[0].address": "co:10 on drive1 is already written by rule 'e'",
        "rules[7].id": "missing",
        "rules[7].threshold": "missing",
    }
    for path, text in expected.items():
        assert path in problems, f"no problem reported at {path}; got {sorted(problems)}"
        assert text in problems[path], f"{path}: {problems[path]!r} does not say {text!r}"
    assert set(problems) == set(expected)
    # Only the rules with no problem at all are returned.
    assert [r.id for r in parsed] == ["e"]


def test_rules_must_be_an_array_of_tables() -> None:
    _, problems = parse({"id": "x"})  # type: ignore[arg-type]
    assert "expected an array of tables" in problems["rules"]


def test_write_to_a_holding_register_with_a_type_and_scale() -> None:
    [rule], problems = parse(
        [
            {
                "id": "speed",
                "signal": "motor1.current",
                "op": ">",
                "threshold": 40,
                "actions": [
                    {
                        "write": "drive1",
                        "address": "hr:5",
                        "type": "float32",
                        "scale": 0.1,
                        "on": 120.5,
                        "off": 0,
                    }
                ],
            }
        ]
    )
    assert problems == {}
    [write] = rule.actions
    assert isinstance(write, WriteAction)
    assert (write.point.type, write.point.width, write.on, write.off) == ("float32", 2, 120.5, 0.0)


def test_control_is_read_only_unless_the_plant_file_says_so() -> None:
    assert parse_control(None) == (parse_control({})[0], [])
    cfg, problems = parse_control({})
    assert not cfg.enabled and cfg.mode == "read-only" and problems == []
    cfg, problems = parse_control({"enabled": True})
    assert cfg.enabled and cfg.mode == "control" and problems == []
    cfg, problems = parse_control({"enabled": "yes", "interlocks": 1})
    assert not cfg.enabled
    assert {p.path for p in problems} == {"control.enabled", "control.interlocks"}


def test_publish_payload_template() -> None:
    [rule], problems = parse(
        [
            {
                "id": "r",
                "signal": "motor1.current",
                "op": ">",
                "threshold": 40,
                "actions": [
                    {
                        "publish": "local",
                        "topic": "t",
                        "payload": '{{"rule":"{rule}","v":{value},"s":"{state}","at":"{time}",'
                        '"thr":{threshold},"sig":"{signal}"}}',
                    }
                ],
            }
        ]
    )
    assert problems == {}
    [publish] = rule.actions
    assert isinstance(publish, PublishAction)
    tr = Transition("r", "activate", 10.0, 41.25, "")
    payload = publish.render(payload_fields(rule, tr, 1_700_000_000.5))
    assert json.loads(payload) == {
        "rule": "r",
        "v": 41.25,
        "s": "active",
        "at": "2023-11-14T22:13:20.500Z",
        "thr": 40,
        "sig": "motor1.current",
    }
    default = PublishAction("local", "t").render(
        payload_fields(rule, tr._replace(kind="release"), 1_700_000_000.0)
    )
    assert json.loads(default)["state"] == "normal"


# -- evaluation ------------------------------------------------------------------------------


def rule(**kw: object) -> RuleConfig:
    base: dict[str, object] = {"id": "r", "signal": "sig", "op": ">", "threshold": 50.0}
    base.update(kw)
    return RuleConfig(**base)  # type: ignore[arg-type]


class Driver:
    """Feeds an evaluator on a FakeClock and collects its transitions."""

    def __init__(self, cfg: RuleConfig) -> None:
        self.clock = FakeClock()
        self.ev = RuleEvaluator(cfg)
        self.out: list[Transition] = []

    def feed(self, value: float | None, quality: Reason = Reason.NONE) -> list[Transition]:
        s = Sample("sig", value, quality.quality, quality, self.clock.wall(), self.clock.mono())
        got = self.ev.feed(s, self.clock.mono())
        self.out += got
        return got

    def wait(self, seconds: float, step: float = 0.1) -> list[Transition]:
        """Advance the clock, ticking every `step` as the engine does."""
        got: list[Transition] = []
        end = self.clock.mono() + seconds
        while self.clock.mono() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.mono()))
            got += self.ev.tick(self.clock.mono())
        self.out += got
        return got

    @property
    def kinds(self) -> list[str]:
        return [t.kind for t in self.out]


def test_on_delay_activates_once_the_crossing_has_held_long_enough() -> None:
    d = Driver(rule(on_delay_s=5.0))
    t0 = d.clock.mono()
    assert d.feed(51.0) == []
    assert d.wait(4.9) == []
    assert d.ev.state(d.clock.mono()).pending == "activate"
    [tr] = d.wait(0.2)
    assert tr.kind == "activate" and tr.t_mono - t0 == pytest.approx(5.0)
    assert "sig 51 > 50" in tr.reason and "on-delay" in tr.reason
    assert d.ev.active


def test_a_crossing_shorter_than_on_delay_does_nothing() -> None:
    d = Driver(rule(on_delay_s=5.0))
    d.feed(60.0)
    d.wait(3.0)
    d.feed(49.0)
    d.wait(10.0)
    d.feed(55.0)
    d.wait(4.0)
    d.feed(40.0)
    d.wait(10.0)
    assert d.out == [] and not d.ev.active


def test_oscillation_inside_the_deadband_changes_the_output_once() -> None:
    # threshold 50 on a 0..100 range: ±1.5 % is 48.5 / 51.5, the deadband 2 % is 2.0
    [cfg], problems = parse_rules(
        [{"id": "r", "signal": "sig", "op": ">", "threshold": 50, "deadband": "2%"}],
        signals={"sig": (0.0, 100.0)},
        devices=set(),
        brokers=set(),
    )
    assert problems == [] and cfg.deadband == pytest.approx(2.0)
    d = Driver(cfg)
    for i in range(400):
        d.feed(51.5 if i % 2 == 0 else 48.5)
        d.wait(0.05)
    assert d.kinds == ["activate"]
    # Without the deadband the same input would flip the output on every sample.
    d2 = Driver(rule())
    for i in range(10):
        d2.feed(51.5 if i % 2 == 0 else 48.5)
    assert len(d2.out) == 10


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=-1.5, max_value=1.5), min_size=1, max_size=200),
    st.sampled_from([">", ">=", "<", "<="]),
    st.floats(min_value=0.0, max_value=3.0),
)
def test_any_wander_within_the_deadband_changes_the_output_at_most_once(
    offsets: list[float], op: str, on_delay: float
) -> None:
    d = Driver(rule(op=op, deadband=2.0, on_delay_s=on_delay))
    for off in offsets:
        d.feed(50.0 + off)
        d.wait(0.3)
    assert len(d.out) <= 1


def test_off_delay_and_deadband_release() -> None:
    d = Driver(rule(deadband=2.0, off_delay_s=2.0))
    d.feed(55.0)
    assert d.kinds == ["activate"]
    d.feed(48.5)  # below the threshold, not below threshold - deadband: stays active
    d.wait(5.0)
    assert d.kinds == ["activate"]
    d.feed(47.9)  # below 48: the off-delay starts
    d.wait(1.5)
    d.feed(48.5)  # still below the release level (demand stays off): the delay keeps running
    assert d.wait(0.4) == []
    [tr] = d.wait(0.2)
    assert tr.kind == "release" and "back past 48" in tr.reason and "off-delay" in tr.reason
    # A return above the threshold within the off-delay cancels the release.
    d.feed(60.0)
    d.feed(40.0)
    d.wait(1.0)
    d.feed(60.0)
    d.wait(5.0)
    assert d.kinds == ["activate", "release", "activate"]


def test_minimum_on_and_off_times() -> None:
    d = Driver(rule(min_on_s=10.0, min_off_s=4.0))
    d.feed(60.0)
    t_on = d.clock.mono()
    d.wait(1.0)
    d.feed(40.0)
    st_ = d.ev.state(d.clock.mono())
    assert (st_.pending, st_.pending_why) == ("release", "min on")
    assert st_.remaining_s == pytest.approx(9.0)
    d.wait(8.9)
    assert d.kinds == ["activate"]
    [rel] = d.wait(0.2)
    assert rel.kind == "release" and rel.t_mono - t_on == pytest.approx(10.0, abs=0.01)
    d.feed(60.0)
    assert d.ev.state(d.clock.mono()).pending_why == "min off"
    d.wait(rel.t_mono + 3.9 - d.clock.mono())
    assert d.kinds == ["activate", "release"]
    [act] = d.wait(0.2)
    assert act.kind == "activate" and act.t_mono - rel.t_mono == pytest.approx(4.0, abs=0.01)


def test_change_cap_holds_a_change_and_reports_it() -> None:
    d = Driver(rule(max_changes_per_hour=3))
    d.feed(60.0)
    d.wait(600)
    d.feed(40.0)
    d.wait(600)
    d.feed(60.0)
    d.wait(600)
    assert d.kinds == ["activate", "release", "activate"]
    d.feed(40.0)  # a fourth change in the hour: held, reported once
    d.wait(60)
    assert d.kinds == ["activate", "release", "activate", "held"]
    held = d.out[-1]
    assert "3 changes in the last hour reach the cap of 3" in held.reason
    state = d.ev.state(d.clock.mono())
    assert state.held and state.pending == "release" and state.pending_why == "change cap"
    assert state.changes_last_hour == 3
    # The first change leaves the hour 3600 s after it happened: then the release goes out.
    remaining = state.remaining_s
    assert remaining is not None and remaining == pytest.approx(3600 - 1860, abs=0.2)
    d.wait(remaining - 1)
    assert d.kinds[-1] == "held"
    d.wait(2)
    assert d.kinds[-1] == "release"
    assert not d.ev.active and d.ev.state(d.clock.mono()).held == ""


def test_quality_hold_keeps_the_output_and_stops_the_delay() -> None:
    d = Driver(rule(on_delay_s=5.0, on_bad_quality="hold"))
    d.feed(60.0)
    d.wait(3.0)
    assert d.feed(None, Reason.NO_COMM) == []
    assert d.ev.state(d.clock.mono()).pending == ""
    d.wait(10.0)
    assert d.out == []
    d.feed(60.0)  # good again: the on-delay starts afresh
    d.wait(4.9)
    assert d.out == []
    d.wait(0.2)
    assert d.kinds == ["activate"]
    # Active, then the input goes bad: the output is held, whatever the last value was.
    d.feed(40.0, Reason.LAST_USABLE)
    d.feed(None, Reason.DEVICE_FAILURE)
    d.wait(30)
    assert d.kinds == ["activate"] and d.ev.active


def test_quality_activate_forces_the_output_within_that_sample() -> None:
    d = Driver(rule(on_delay_s=5.0, min_off_s=60.0, on_bad_quality="activate"))
    [tr] = d.feed(None, Reason.NO_COMM)
    assert tr.kind == "activate" and tr.t_mono == d.clock.mono()
    assert "input BAD no communication: policy activate" in tr.reason
    d.feed(10.0)  # good and below: an ordinary release after its off-delay (0)
    assert d.kinds == ["activate", "release"]
    [again] = d.feed(10.0, Reason.LAST_USABLE)  # UNCERTAIN is not GOOD either; min off ignored
    assert again.kind == "activate"


def test_quality_release_forces_the_output_within_that_sample() -> None:
    d = Driver(rule(off_delay_s=30.0, on_bad_quality="release"))
    d.feed(60.0)
    [tr] = d.feed(60.0, Reason.DECODE_ERROR)  # no off-delay for a forced release
    assert tr.kind == "release" and "policy release" in tr.reason
    d.feed(float("nan"))  # a GOOD sample that is not a number gets the policy too
    d.feed(60.0)
    assert d.kinds == ["activate", "release", "activate"]


def test_quality_release_still_keeps_the_minimum_on_time() -> None:
    d = Driver(rule(min_on_s=20.0, on_bad_quality="release"))
    d.feed(60.0)
    assert d.feed(60.0, Reason.DECODE_ERROR) == []  # a trip is held at least min_on
    assert d.wait(19.5) == [] and d.ev.active
    [tr] = d.wait(1.0)
    assert tr.kind == "release" and tr.reason.endswith("policy release after min on")
    d.feed(60.0)
    assert d.kinds == ["activate", "release", "activate"]


def test_good_input_cancels_a_pending_forced_release() -> None:
    d = Driver(rule(min_on_s=20.0, on_bad_quality="release"))
    d.feed(60.0)
    d.feed(60.0, Reason.DECODE_ERROR)
    d.wait(5.0)
    d.feed(60.0)  # good again, still over the threshold: stays active
    assert d.wait(30.0) == [] and d.kinds == ["activate"]


def test_disabled_rule_does_nothing() -> None:
    d = Driver(rule(enabled=False))
    d.feed(99.0)
    d.wait(5.0)
    assert d.out == [] and not d.ev.state(d.clock.mono()).enabled


def test_state_shows_value_timers_last_activation_and_changes() -> None:
    d = Driver(rule(on_delay_s=5.0))
    d.feed(51.0)
    d.wait(2.0)
    s = d.ev.state(d.clock.mono())
    assert (s.value, s.threshold, s.quality, s.active, s.demand) == (
        51.0,
        50.0,
        "GOOD",
        False,
        True,
    )
    assert (s.pending, s.pending_why, s.remaining_s) == ("activate", "on-delay", pytest.approx(3.0))
    d.wait(3.0)
    s = d.ev.state(d.clock.mono())
    assert s.active and s.pending == "" and s.remaining_s is None
    assert s.last_activation_mono == pytest.approx(d.clock.mono())
    assert s.changes_last_hour == 1


def test_good_input_below_threshold_after_a_held_forced_release_still_releases() -> None:
    d = Driver(rule(min_on_s=20.0, on_bad_quality="release"))
    d.feed(60.0)
    d.feed(60.0, Reason.DECODE_ERROR)  # release wanted, held by min_on
    d.wait(5.0)
    d.feed(10.0)  # good again, below the threshold: the release must still come
    d.wait(20.0)
    assert d.kinds == ["activate", "release"]
