"""Control rules: their configuration, its validation, and the evaluator of one rule.

A rule compares one signal with a threshold. Its output goes active when the comparison has
held for on_delay, and back when the value has passed the threshold by the deadband the
other way for off_delay; minimum on and off times and a cap on changes per hour hold a change
back, and input that is not GOOD gets the rule's quality policy at once. All time is the
engine's monotonic clock; an evaluator is fed samples and ticked, and returns transitions.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from floorconsole.core.alarms import PRIORITIES
from floorconsole.core.history_format import iso_utc_ms
from floorconsole.core.opcua import OpcUaNodePoint, parse_node_id
from floorconsole.core.points import ModbusPoint, read_point
from floorconsole.core.quality import Quality
from floorconsole.core.registers import write_value
from floorconsole.core.sample import Sample
from floorconsole.core.validate import ID_PATTERN, Problem, Problems, join, value_kind

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
QUALITY_POLICIES = ("hold", "activate", "release")
PLACEHOLDERS = ("rule", "signal", "value", "threshold", "state", "time")
HOUR_S = 3600.0

_RULE_KEYS = (
    "id",
    "signal",
    "op",
    "threshold",
    "deadband",
    "on_delay",
    "off_delay",
    "min_on",
    "min_off",
    "max_changes_per_hour",
    "on_bad_quality",
    "enabled",
    "latch",
    "actions",
    "description",
)
_WRITE_KEYS = ("write", "address", "type", "word_order", "scale", "offset", "on", "off")
_OPCUA_WRITE_KEYS = ("write", "node", "on", "off")  # an OPC UA node, in its own type
_PUBLISH_KEYS = ("publish", "topic", "qos", "payload")
_ALARM_KEYS = ("alarm", "message")
_CONTROL_KEYS = ("enabled",)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteAction:
    """Write `on` when the rule activates and `off` (if given) when it releases; read back."""

    point: ModbusPoint | OpcUaNodePoint
    on: float | bool
    off: float | bool | None = None

    kind = "write"

    @property
    def device(self) -> str:
        return self.point.device

    @property
    def target(self) -> str:
        """'drive1 co:10', or 'press2 ns=2;s=Press.Run' for an OPC UA node."""
        if isinstance(self.point, OpcUaNodePoint):
            return f"{self.point.device} {self.point.label}"
        return f"{self.point.device} {self.point.table}:{self.point.address}"

    def value_for(self, activate: bool) -> float | bool | None:
        return self.on if activate else self.off


@dataclass(frozen=True, slots=True)
class PublishAction:
    """Publish on every transition; payload is a template, or a JSON object when None."""

    broker: str
    topic: str
    qos: int = 1
    payload: str | None = None

    kind = "publish"

    @property
    def target(self) -> str:
        return f"{self.broker} {self.topic}"

    def render(self, fields: Mapping[str, str | float | bool | None]) -> str:
        """The payload for these placeholder values (rule, signal, value, threshold, state,
        time); {{ and }} stand for literal braces."""
        if self.payload is None:
            return json.dumps(dict(fields), separators=(",", ":"))
        text = {k: _template_text(v) for k, v in fields.items()}

        def sub(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "{{":
                return "{"
            if whole == "}}":
                return "}"
            return text[m.group(1)]

        return _TEMPLATE.sub(sub, self.payload)


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """Raise the rule's alarm on activation; it returns to normal on release."""

    priority: str
    message: str

    kind = "alarm"

    @property
    def target(self) -> str:
        return self.priority


ActionConfig = WriteAction | PublishAction | AlarmAction


@dataclass(frozen=True, slots=True)
class RuleConfig:
    id: str
    signal: str
    op: str
    threshold: float
    deadband: float = 0.0  # absolute, in the signal's unit
    deadband_text: str = ""  # as written ("2%"), for display
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    min_on_s: float = 0.0
    min_off_s: float = 0.0
    max_changes_per_hour: int | None = None
    on_bad_quality: str = "hold"
    enabled: bool = True
    actions: tuple[ActionConfig, ...] = ()
    description: str = ""
    # A latched rule (a trip) keeps its output once it activates until its condition has
    # cleared and someone resets it; no delay, quality policy or timer releases it.
    latch: bool = False

    @property
    def release_level(self) -> float:
        """The level the value must pass, the other way, to release an active output."""
        if self.op in (">", ">="):
            return self.threshold - self.deadband
        if self.op in ("<", "<="):
            return self.threshold + self.deadband
        return self.threshold

    @property
    def alarm_id(self) -> str:
        return f"rule:{self.id}"

    def describe(self) -> str:
        """'motor1.anomaly_score > 0.8 (db 0.05, on 5s, off 2s)'."""
        extras = []
        if self.deadband:
            extras.append(f"db {self.deadband_text or f'{self.deadband:g}'}")
        for name, v in (
            ("on", self.on_delay_s),
            ("off", self.off_delay_s),
            ("min on", self.min_on_s),
            ("min off", self.min_off_s),
        ):
            if v:
                extras.append(f"{name} {v:g}s")
        if self.max_changes_per_hour:
            extras.append(f"max {self.max_changes_per_hour}/h")
        if self.latch:
            extras.append("latched")
        tail = f" ({', '.join(extras)})" if extras else ""
        return f"{self.signal} {self.op} {self.threshold:g}{tail}"


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """The outcome of one action of one rule on one transition, for the rules screen and the
    journal. ok is False for anything not done: failed, refused or not applied."""

    t_wall: float
    rule: str
    action: str  # "write" | "publish" | "alarm" | "cap"
    target: str  # 'drive1 co:10', 'local plant3/line2/alarms', 'high'
    transition: str  # "activate" | "release" | "held"
    ok: bool
    text: str
    duration_ms: float = 0.0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One change of a rule's output as the journal keeps it, so a restart restores it:
    event is "activate", "release" or "reset"; active is the output after it."""

    t_wall: float
    rule: str
    event: str
    active: bool
    by: str
    text: str


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """[control]: whether rules may write to devices at all. Read-only unless it says so."""

    enabled: bool = False

    @property
    def mode(self) -> str:
        return "control" if self.enabled else "read-only"


# -- validation ------------------------------------------------------------------------------


def parse_control(raw: Any, path: str = "control") -> tuple[ControlConfig, list[Problem]]:
    """The [control] table (absent: None or {}); read-only unless enabled = true."""
    c = Problems()
    if raw is None:
        return ControlConfig(), []
    t = c.table(raw, path)
    if t is None:
        return ControlConfig(), c.problems
    c.unknown_keys(t, path, _CONTROL_KEYS)
    enabled = c.boolean(t, "enabled", path, default=False)
    return ControlConfig(enabled=enabled), c.problems


def parse_rules(
    raw_rules: Any,
    *,
    signals: Mapping[str, tuple[float, float] | None],
    devices: set[str],
    brokers: set[str],
    path: str = "rules",
) -> tuple[list[RuleConfig], list[Problem]]:
    """Rules from the [[rules]] array, and every problem found, each with its key path.

    `signals` maps every signal a rule may use (plant signals, model outputs, drift figures)
    to its engineering range, or None when it has none (then a deadband in % is refused).
    Rules with a problem are left out of the list.
    """
    c = Problems()
    tables = c.array_of_tables(raw_rules, path) if raw_rules is not None else []
    rules: list[RuleConfig] = []
    seen_ids: dict[str, int] = {}
    written: dict[tuple[str, str, int], tuple[str, str]] = {}  # register -> (rule id, path)
    for i, t in enumerate(tables):
        p = f"{path}[{i}]"
        before = len(c.problems)
        rule = _rule(c, t, p, signals, devices, brokers, written)
        rid = t.get("id")
        if isinstance(rid, str):
            if rid in seen_ids:
                c.add(join(p, "id"), f"{rid!r} is already used by {path}[{seen_ids[rid]}]")
            else:
                seen_ids[rid] = i
        if rule is not None and len(c.problems) == before:
            rules.append(rule)
    return rules, c.problems


def _rule(
    c: Problems,
    t: dict[str, Any],
    p: str,
    signals: Mapping[str, Any],
    devices: set[str],
    brokers: set[str],
    written: dict[tuple[str, str, int], tuple[str, str]],
) -> RuleConfig | None:
    c.unknown_keys(t, p, _RULE_KEYS)
    rid = c.string(t, "id", p, required=True, pattern=ID_PATTERN)
    signal = c.string(t, "signal", p, required=True)
    if signal is not None and signal not in signals:
        known = ", ".join(sorted(signals)) or "none defined"
        c.add(join(p, "signal"), f"{signal!r} is not a signal of this plant ({known})")
        signal = None
    op = c.string(t, "op", p, required=True, choices=tuple(OPS))
    threshold = _threshold(c, t, p)
    deadband, deadband_text = _deadband(
        c, t, p, op, signals.get(signal) if signal else None, signal is not None
    )
    on_delay = c.duration(t, "on_delay", p, default=0.0)
    off_delay = c.duration(t, "off_delay", p, default=0.0)
    min_on = c.duration(t, "min_on", p, default=0.0)
    min_off = c.duration(t, "min_off", p, default=0.0)
    cap = None
    if "max_changes_per_hour" in t:
        cap = c.integer(t, "max_changes_per_hour", p, default=0, lo=1, hi=100_000) or None
    policy = c.string(t, "on_bad_quality", p, default="hold", choices=QUALITY_POLICIES) or "hold"
    enabled = c.boolean(t, "enabled", p, default=True)
    latch = c.boolean(t, "latch", p, default=False)
    description = c.string(t, "description", p, default="") or ""
    actions: list[ActionConfig] = []
    if "actions" in t:
        ap = join(p, "actions")
        raw_actions = t["actions"]
        if not isinstance(raw_actions, list):
            c.add(ap, f"expected an array of actions, got {value_kind(raw_actions)}")
            raw_actions = []
        for j, a in enumerate(raw_actions):
            action = _action(
                c, a, f"{ap}[{j}]", rid or "", signal, op, threshold, devices, brokers, written
            )
            if action is not None:
                actions.append(action)
        alarms = [j for j, a in enumerate(actions) if isinstance(a, AlarmAction)]
        if len(alarms) > 1:
            c.add(ap, "a rule raises at most one alarm; give one alarm action")
    if rid is None or signal is None or op is None or threshold is None:
        return None
    return RuleConfig(
        id=rid,
        signal=signal,
        op=op,
        threshold=threshold,
        deadband=deadband,
        deadband_text=deadband_text,
        on_delay_s=on_delay,
        off_delay_s=off_delay,
        min_on_s=min_on,
        min_off_s=min_off,
        max_changes_per_hour=cap,
        on_bad_quality=policy,
        enabled=enabled,
        actions=tuple(actions),
        description=description,
        latch=latch,
    )


def _threshold(c: Problems, t: dict[str, Any], p: str) -> float | None:
    if "threshold" not in t:
        c.add(join(p, "threshold"), "missing; it is required (a number, or true/false)")
        return None
    v = t["threshold"]
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        c.add(join(p, "threshold"), f"expected a finite number or true/false, got {value_kind(v)}")
        return None
    return float(v)


def _deadband(
    c: Problems,
    t: dict[str, Any],
    p: str,
    op: str | None,
    rng: tuple[float, float] | None,
    signal_known: bool,
) -> tuple[float, str]:
    if "deadband" not in t:
        return 0.0, ""
    dp = join(p, "deadband")
    v = t["deadband"]
    value: float | None = None
    text = ""
    if isinstance(v, str):
        m = _PERCENT.match(v)
        if not m:
            c.add(
                dp,
                f'{v!r} is not a deadband like 0.05 (in the signal\'s unit) or "2%" '
                "(of the signal's range)",
            )
            return 0.0, ""
        if signal_known and rng is None:
            c.add(
                dp,
                f"{v!r} is a percentage of the signal's range, and the signal has no "
                "range; give the signal range = [low, high] or an absolute deadband",
            )
            return 0.0, ""
        if rng is not None:
            value = float(m.group(1)) / 100.0 * (rng[1] - rng[0])
        text = v.strip()
    elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        c.add(dp, f'expected a number (0 or more) or a percentage like "2%", got {value_kind(v)}')
        return 0.0, ""
    elif v < 0:
        c.add(dp, f"{v} is negative; a deadband is 0 or more")
        return 0.0, ""
    else:
        value = float(v)
    if value and op in ("==", "!="):
        c.add(dp, f"a deadband applies to > >= < <=, not to {op}")
        return 0.0, ""
    return value or 0.0, text


def _action(
    c: Problems,
    a: Any,
    p: str,
    rule_id: str,
    signal: str | None,
    op: str | None,
    threshold: float | None,
    devices: set[str],
    brokers: set[str],
    written: dict[tuple[str, str, int], tuple[str, str]],
) -> ActionConfig | None:
    t = c.table(a, p)
    if t is None:
        return None
    kinds = [k for k in ("write", "publish", "alarm") if k in t]
    if len(kinds) != 1:
        c.add(
            p,
            "an action is one of { write = DEVICE, address = ... }, "
            "{ publish = BROKER, topic = ... } or { alarm = PRIORITY, message = ... }"
            + (f"; this one has {', '.join(kinds)}" if kinds else ""),
        )
        c.unknown_keys(t, p, _WRITE_KEYS + _PUBLISH_KEYS + _ALARM_KEYS)
        return None
    if kinds[0] == "write":
        return _write_action(c, t, p, rule_id, devices, written)
    if kinds[0] == "publish":
        return _publish_action(c, t, p, brokers)
    c.unknown_keys(t, p, _ALARM_KEYS)
    priority = c.string(t, "alarm", p, choices=PRIORITIES)
    default_message = f"{rule_id}: {signal} {op} {threshold:g}" if threshold is not None else ""
    message = c.string(t, "message", p, default=default_message) or default_message
    if priority is None:
        return None
    return AlarmAction(priority=priority, message=message)


def _opcua_write_action(
    c: Problems,
    t: dict[str, Any],
    p: str,
    rule_id: str,
    devices: set[str],
    written: dict[tuple[str, str, int], tuple[str, str]],
) -> WriteAction | None:
    """{ write = "press2", node = "ns=2;s=Press.Run", on = true, off = false }: the value is
    written in the node's own type (the server says which) and read back."""
    c.unknown_keys(t, p, _OPCUA_WRITE_KEYS)
    device = c.string(t, "write", p)
    if device is not None and device not in devices:
        known = ", ".join(sorted(devices)) or "none defined"
        c.add(join(p, "write"), f"{device!r} is not a device in this file ({known})")
        device = None
    node = None
    try:
        node = str(parse_node_id(t["node"]))
    except ValueError as e:
        c.add(join(p, "node"), str(e))
    values: dict[str, float | bool | None] = {"on": None, "off": None}
    if "on" not in t:
        c.add(join(p, "on"), "missing; the value written when the rule activates")
    for key in ("on", "off"):
        v = t.get(key)
        if key not in t:
            continue
        if isinstance(v, bool | int | float):
            values[key] = v
        else:
            c.add(join(p, key), f"expected a number or true/false, got {value_kind(v)}")
    if device is None or node is None or values["on"] is None:
        return None
    other = written.get((device, node, 0))
    if other is not None and other[0] != rule_id:
        c.add(
            join(p, "node"),
            f"{node} on {device} is already written by rule {other[0]!r} ({other[1]}); two "
            "rules would fight over one output",
        )
        return None
    written[(device, node, 0)] = (rule_id, p)
    return WriteAction(point=OpcUaNodePoint(device, node), on=values["on"], off=values["off"])


def _write_action(
    c: Problems,
    t: dict[str, Any],
    p: str,
    rule_id: str,
    devices: set[str],
    written: dict[tuple[str, str, int], tuple[str, str]],
) -> WriteAction | None:
    if "node" in t:
        return _opcua_write_action(c, t, p, rule_id, devices, written)
    c.unknown_keys(t, p, _WRITE_KEYS)
    device = c.string(t, "write", p)
    if device is not None and device not in devices:
        known = ", ".join(sorted(devices)) or "none defined"
        c.add(join(p, "write"), f"{device!r} is not a device in this file ({known})")
        device = None
    point = read_point(c, t, p, device, writable=True)
    if "on" not in t:
        c.add(join(p, "on"), "missing; the value written when the rule activates")
    if point is None:
        return None
    values: dict[str, float | bool | None] = {"on": None, "off": None}
    for key in ("on", "off"):
        if key not in t:
            continue
        try:
            values[key] = write_value(t[key], point)
        except ValueError as e:
            c.add(join(p, key), str(e))
    device, table, addr = point.device, point.table, point.address
    for a in range(addr, addr + point.width):
        other = written.get((device, table, a))
        if other is not None and other[0] != rule_id:
            c.add(
                join(p, "address"),
                f"{table}:{a} on {device} is already written by rule "
                f"{other[0]!r} ({other[1]}); two rules would fight "
                "over one output",
            )
            return None
    for a in range(addr, addr + point.width):
        written[(device, table, a)] = (rule_id, p)
    on = values["on"]
    if on is None:
        return None
    return WriteAction(point=point, on=on, off=values["off"])


def _publish_action(
    c: Problems, t: dict[str, Any], p: str, brokers: set[str]
) -> PublishAction | None:
    c.unknown_keys(t, p, _PUBLISH_KEYS)
    broker = c.string(t, "publish", p)
    if broker is not None and broker not in brokers:
        known = ", ".join(sorted(brokers)) or "none defined"
        c.add(join(p, "publish"), f"{broker!r} is not a broker in this file ({known})")
        broker = None
    topic = c.string(t, "topic", p, required=True)
    if topic is not None and (not topic or "+" in topic or "#" in topic):
        c.add(join(p, "topic"), f"{topic!r}: publish to one topic; no wildcards (+ #), not empty")
        topic = None
    qos = c.integer(t, "qos", p, default=1, lo=0, hi=2)
    payload = c.string(t, "payload", p)
    if payload is not None:
        problem = _template_problem(payload)
        if problem:
            c.add(join(p, "payload"), problem)
            payload = None
    if broker is None or topic is None or ("payload" in t and payload is None):
        return None
    return PublishAction(broker=broker, topic=topic, qos=qos, payload=payload)


def _template_problem(template: str) -> str:
    for m in _TEMPLATE.finditer(template):
        name = m.group(1)
        if name is not None and name not in PLACEHOLDERS:
            return (
                f"{{{name}}} is not a placeholder; use {', '.join('{' + n + '}' for n in PLACEHOLDERS)}"
                " (and {{ }} for literal braces)"
            )
    stray = _TEMPLATE.sub("", template)
    if "{" in stray or "}" in stray:
        return "unbalanced brace; write {{ and }} for literal braces"
    return ""


def _template_text(v: str | float | bool | None) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def payload_fields(
    rule: RuleConfig, transition: Transition, t_wall: float
) -> dict[str, str | float | bool | None]:
    """The placeholder values of a publish for one transition."""
    return {
        "rule": rule.id,
        "signal": rule.signal,
        "value": transition.value,
        "threshold": rule.threshold,
        "state": "active" if transition.kind == "activate" else "normal",
        "time": iso_utc_ms(t_wall),
    }


# -- evaluation ------------------------------------------------------------------------------


class Transition(NamedTuple):
    """What an evaluator decided: activate or release the output, or a change held by the cap."""

    rule: str
    # "activate" | "release" | "held"; "confirmed" after a restart when the first input
    # shows an output restored active still should be (no action runs, nothing annunciates)
    kind: str
    t_mono: float
    value: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class RuleState:
    """A rule's live state for the rules screen (monotonic times; the caller converts)."""

    id: str
    signal: str
    condition: str  # 'motor1.anomaly_score > 0.8 (db 0.05, on 5s)'
    enabled: bool
    value: float | None
    quality: str  # the input's quality text
    threshold: float
    release_level: float
    active: bool
    demand: bool  # what the input asks for now (after the deadband), before delays
    pending: str  # "" | "activate" | "release"
    pending_why: str  # "on-delay" | "off-delay" | "min on" | "min off" | "change cap"
    remaining_s: float | None
    since_mono: float | None  # last change of the output
    last_activation_mono: float | None
    last_release_mono: float | None
    changes_last_hour: int
    max_changes_per_hour: int | None
    held: str  # why a due change is held back (the cap), or ""
    last_reason: str  # reason of the last transition
    latch: str = ""  # a latched output: "" | "present" | "clear" | "unknown" (its condition)


def scalar(value: object) -> float | None:
    """A rule's view of a value: a finite float (true is 1), or None for anything else."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
        value, np.ndarray
    ):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


class RuleEvaluator:
    """The state machine of one rule. Not thread-safe: the engine's loop feeds and ticks it.

    `demand` is the comparison after the deadband (a Schmitt trigger: once true, it stays
    true until the value passes release_level); the output follows demand after on_delay /
    off_delay, no sooner than min_off / min_on after its last change, and only while fewer
    than max_changes_per_hour changes happened in the last hour. Input that is not GOOD
    (or not a finite number) applies on_bad_quality within that sample: hold keeps the output
    and stops any delay running; activate forces the output at once, past every delay,
    minimum time and the cap, because a fail-safe that waits is no fail-safe; release skips
    the off-delay and the cap but still keeps a minimum on time (a trip held for min_on is
    a protective hold, and releasing is not the safe direction).
    """

    def __init__(self, rule: RuleConfig) -> None:
        self.rule = rule
        self._cmp = OPS[rule.op]
        self.active = False
        self.demand = False
        self.value: float | None = None
        self.quality_text = "no value yet"
        self.input_ok = False
        self.last_sample: Sample | None = None
        self.since_mono: float | None = None
        self.last_activation_mono: float | None = None
        self.last_release_mono: float | None = None
        self.last_reason = ""
        self.quality_text_why = ""
        self.held = ""
        self._pending_since: float | None = None
        self._forced_release_due: float | None = None
        self._changes: deque[float] = deque()
        # The output came back from the journal at a start; the first good input decides
        # whether it still should be on (see feed).
        self.restored = False

    def restore(self, active: bool, changed_mono: float | None, reason: str) -> None:
        """The output as the journal last recorded it, before any input after a start."""
        self.active = self.demand = active
        self.since_mono = changed_mono
        if active:
            self.last_activation_mono = changed_mono
        else:
            self.last_release_mono = changed_mono
        self.last_reason = reason
        self.restored = active

    @property
    def latched(self) -> bool:
        """A latched rule that has tripped: only reset() releases it."""
        return self.rule.latch and self.active

    def reset(self, now_mono: float, reason: str) -> Transition:
        """Release a latched output, once its condition has cleared; ValueError saying why
        not otherwise. Input that is not GOOD cannot show the condition (a model out of
        service while its machine is stopped): the reset is allowed, and the rule trips
        again if the condition is back once the input is."""
        r = self.rule
        if not r.latch:
            raise ValueError(f"rule {r.id} does not latch; there is nothing to reset")
        if not self.active:
            raise ValueError(f"rule {r.id} has not tripped; there is nothing to reset")
        if self.input_ok and self.demand:
            v = f"{self.value:.6g}" if self.value is not None else "?"
            raise ValueError(
                f"rule {r.id}: its condition is still present ({r.signal} {v} {r.op} "
                f"{r.threshold:g}, released below {r.release_level:g}); reset refused"
            )
        self.demand = False
        self.restored = False
        return self._change(False, now_mono, reason)

    def carry_over(self, old: RuleEvaluator) -> None:
        """Take the output state of the same rule from the configuration this one replaces,
        so a rule that is active stays active (and releases later) across a change.

        The output, its history (last changes, the hour's change count) and the last input
        carry over; a delay that was running starts again under the new settings with the
        next sample.
        """
        self.active = self.demand = old.active
        self.value, self.quality_text, self.input_ok = old.value, old.quality_text, old.input_ok
        self.last_sample = old.last_sample
        self.since_mono = old.since_mono
        self.last_activation_mono = old.last_activation_mono
        self.last_release_mono = old.last_release_mono
        self.last_reason = old.last_reason
        self._changes = deque(old._changes)
        self._pending_since = None
        self.held = ""
        self.restored = old.restored  # not yet confirmed since a start: the first input decides

    def feed(self, sample: Sample, now_mono: float) -> list[Transition]:
        self.last_sample = sample
        if not self.rule.enabled:
            return []
        v = scalar(sample.value)
        self.quality_text = sample.quality_text
        if sample.quality is not Quality.GOOD or v is None:
            self.input_ok = False
            why = (
                f"input {sample.quality_text}"
                if sample.quality is not Quality.GOOD
                else "input is not a number"
            )
            return self._bad_input(why, now_mono)
        self.input_ok = True
        self._forced_release_due = None
        self.value = v
        demand = self._demand(v)
        if self.restored and self.active:
            return self._first_after_restart(demand, now_mono)
        if demand != self.demand:
            self.demand = demand
            self.held = ""
            self._pending_since = now_mono if demand != self.active else None
        elif demand != self.active and self._pending_since is None:
            # Good input back after a bad spell that set the demand without changing the
            # output (a forced release waiting for min_on): the change is due again.
            self._pending_since = now_mono
        return self._advance(now_mono)

    def _first_after_restart(self, demand: bool, now: float) -> list[Transition]:
        """An output restored active meets its first good input: still due (or latched),
        it is confirmed; cleared meanwhile, it releases at once, saying so."""
        self.restored = False
        r = self.rule
        v = f"{self.value:.6g}" if self.value is not None else "?"
        self.demand = demand
        if demand or r.latch:
            still = "still present" if demand else "clear; the latch holds until a reset"
            return [Transition(r.id, "confirmed", now, self.value, f"after a restart: {still}")]
        return [
            self._change(
                False,
                now,
                f"cleared while the engine was down: {r.signal} {v} back past {r.release_level:g}",
            )
        ]

    def tick(self, now_mono: float) -> list[Transition]:
        """Let timers expire with no new sample."""
        if not self.rule.enabled:
            return []
        if not self.input_ok:
            due = self._forced_release_due
            if due is not None and self.active and now_mono >= due:
                self._forced_release_due = None
                return [
                    self._change(
                        False, now_mono, f"{self.quality_text_why}: policy release after min on"
                    )
                ]
            return []
        return self._advance(now_mono)

    def _demand(self, v: float) -> bool:
        level = self.rule.release_level if self.demand else self.rule.threshold
        return self._cmp(v, level)

    def _bad_input(self, why: str, now: float) -> list[Transition]:
        policy = self.rule.on_bad_quality
        self._pending_since = None
        self.held = ""
        if policy == "activate":
            self.demand = True
            if not self.active:
                return [self._change(True, now, f"{why}: policy activate")]
        elif policy == "release" and not self.latched:  # a trip stays through bad input
            self.demand = False
            if self.active:
                r = self.rule
                held_until = (
                    self.last_activation_mono + r.min_on_s
                    if r.min_on_s and self.last_activation_mono is not None
                    else now
                )
                if now < held_until:
                    self._forced_release_due = held_until
                    self.quality_text_why = why
                    return []
                return [self._change(False, now, f"{why}: policy release")]
        else:
            self.demand = self.active
        return []

    def _due(self) -> tuple[float, str]:
        """When the pending change may happen, and what it waits for."""
        assert self._pending_since is not None
        r = self.rule
        if self.demand:
            due, why = self._pending_since + r.on_delay_s, "on-delay"
            if self.last_release_mono is not None and r.min_off_s:
                if self.last_release_mono + r.min_off_s > due:
                    due, why = self.last_release_mono + r.min_off_s, "min off"
        else:
            due, why = self._pending_since + r.off_delay_s, "off-delay"
            if self.last_activation_mono is not None and r.min_on_s:
                if self.last_activation_mono + r.min_on_s > due:
                    due, why = self.last_activation_mono + r.min_on_s, "min on"
        return due, why

    def _cap_due(self, now: float) -> float | None:
        """When the change cap allows the next change, or None when it allows one now."""
        cap = self.rule.max_changes_per_hour
        changes = self._changes
        while changes and now - changes[0] >= HOUR_S:
            changes.popleft()
        if cap is None or len(changes) < cap:
            return None
        return changes[-cap] + HOUR_S

    def _advance(self, now: float) -> list[Transition]:
        if self._pending_since is None or self.demand == self.active:
            return []
        if self.latched:  # released by reset() only
            return []
        due, why = self._due()
        if now < due:
            return []
        if self._cap_due(now) is not None:
            if self.held:
                return []
            self.held = (
                f"{len(self._changes)} changes in the last hour reach the cap of "
                f"{self.rule.max_changes_per_hour}; "
                f"{'activation' if self.demand else 'release'} held"
            )
            return [Transition(self.rule.id, "held", now, self.value, self.held)]
        return [self._change(self.demand, now, self._reason(why, now))]

    def _reason(self, why: str, now: float) -> str:
        r = self.rule
        v = f"{self.value:.6g}" if self.value is not None else "?"
        assert self._pending_since is not None
        held_for = now - self._pending_since
        if self.demand:
            return f"{r.signal} {v} {r.op} {r.threshold:g} for {held_for:.3g} s ({why})"
        return f"{r.signal} {v} back past {r.release_level:g} for {held_for:.3g} s ({why})"

    def _change(self, to: bool, now: float, reason: str) -> Transition:
        self.active = to
        self.since_mono = now
        self._changes.append(now)
        if to:
            self.last_activation_mono = now
        else:
            self.last_release_mono = now
        self._pending_since = None
        self.held = ""
        self.restored = False
        self.last_reason = reason
        return Transition(self.rule.id, "activate" if to else "release", now, self.value, reason)

    def changes_last_hour(self, now_mono: float) -> int:
        self._cap_due(now_mono)
        return len(self._changes)

    def state(self, now_mono: float) -> RuleState:
        r = self.rule
        pending = why = ""
        remaining: float | None = None
        if (
            r.enabled
            and self.input_ok
            and not self.latched
            and self._pending_since is not None
            and self.demand != self.active
        ):
            pending = "activate" if self.demand else "release"
            due, why = self._due()
            cap_due = self._cap_due(now_mono)
            if cap_due is not None and cap_due > due:
                due, why = cap_due, "change cap"
            remaining = max(0.0, due - now_mono)
        return RuleState(
            id=r.id,
            signal=r.signal,
            condition=r.describe(),
            enabled=r.enabled,
            value=self.value,
            quality=self.quality_text,
            threshold=r.threshold,
            release_level=r.release_level,
            active=self.active,
            demand=self.demand,
            pending=pending,
            pending_why=why,
            remaining_s=remaining,
            since_mono=self.since_mono,
            last_activation_mono=self.last_activation_mono,
            last_release_mono=self.last_release_mono,
            changes_last_hour=self.changes_last_hour(now_mono),
            max_changes_per_hour=r.max_changes_per_hour,
            held=self.held,
            last_reason=self.last_reason,
            latch=self._latch_state(),
        )

    def _latch_state(self) -> str:
        if not self.latched:
            return ""
        if not self.input_ok:
            return "unknown"
        return "present" if self.demand else "clear"
