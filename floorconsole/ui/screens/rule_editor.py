"""The rule editor: threshold, timing, quality policy and actions of one rule, the dry run of
the edit over the historian beside the running rule, and apply with a message."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from floorconsole.core.alarms import PRIORITIES
from floorconsole.core.rules import OPS, QUALITY_POLICIES, RuleConfig, parse_rules
from floorconsole.ui.widgets.footer import ConsoleFooter

DRY_RUN_DEBOUNCE_S = 0.6  # after the last keystroke: a dry run reads up to a day of history
LABELS = {
    "id": "Rule id",
    "signal": "Signal",
    "op": "Op",
    "threshold": "Threshold",
    "deadband": "Deadband",
    "on_delay": "On delay",
    "off_delay": "Off delay",
    "min_on": "Min on",
    "min_off": "Min off",
    "max_changes_per_hour": "Max changes/h",
    "on_bad_quality": "Bad quality",
    "enabled": "Enabled",
    "description": "Description",
    "actions": "Actions",
}
ACTION_LABELS = {
    "write": "device",
    "address": "address",
    "on": "on value",
    "off": "off value",
    "publish": "broker",
    "topic": "topic",
    "qos": "QoS",
    "payload": "payload",
    "alarm": "priority",
    "message": "message",
    "type": "type",
    "scale": "scale",
    "offset": "offset",
    "word_order": "word order",
}
DURATION_KEYS = ("on_delay", "off_delay", "min_on", "min_off")
ACTION_KINDS = ("write", "publish", "alarm")


# -- plain data: field text, the rule built from it, problems, the dry run's words ------------


def field_text(value: object) -> str:
    """A rule value as the editor shows it ('' when absent)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_number(text: str, *, allow_bool: bool = False) -> int | float | bool:
    """'0.8' -> 0.8, '12' -> 12, and 'true'/'false' where a bit may be written."""
    t = text.strip()
    if allow_bool and t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        raise ValueError(
            f"{text.strip()!r} is not a number" + (" (or true / false)" if allow_bool else "")
        ) from None
    if not math.isfinite(f):
        raise ValueError(f"{text.strip()!r} is not a finite number")
    return f


def set_from_text(
    out: dict[str, Any],
    key: str,
    text: str,
    initial: str,
    convert: Any,
    label: str,
    problems: list[str],
) -> None:
    """One field into the rule: untouched, the value stays exactly as it was (60.0 stays 60.0,
    an absent key stays absent); emptied, the key goes (its default applies); else converted,
    or a problem named after the field."""
    if text == initial:
        return
    if not text.strip():
        out.pop(key, None)
        return
    try:
        out[key] = convert(text)
    except ValueError as e:
        problems.append(f"{label}: {e}")


def problem_label(path: str, index: int, rules: Sequence[Mapping[str, Any]]) -> str:
    """'rules[3].actions[0].address' -> 'Action 1 address' for the rule being edited (index);
    another rule's problem (a conflict the edit made) names that rule."""
    m = re.match(r"^rules\[(\d+)\](?:\.(.*))?$", path)
    if m is None:
        return path or "Rules"
    rest = m.group(2) or ""
    if int(m.group(1)) != index:
        other = rules[int(m.group(1))].get("id", m.group(1)) if int(m.group(1)) < len(rules) else ""
        return f"Rule {other} {rest}".rstrip()
    a = re.match(r"^actions\[(\d+)\](?:\.(\w+))?$", rest)
    if a:
        key = a.group(2)
        return f"Action {int(a.group(1)) + 1}" + (f" {ACTION_LABELS.get(key, key)}" if key else "")
    return LABELS.get(rest, rest) if rest else "Rule"


def check_rules(
    rules: list[dict[str, Any]],
    index: int,
    *,
    signals: Mapping[str, tuple[float, float] | None],
    devices: set[str],
    brokers: set[str],
) -> tuple[RuleConfig | None, list[str]]:
    """The engine's own validation of the edited rules list; the rule at index, parsed, and
    every problem in the editor's words."""
    parsed, problems = parse_rules(rules, signals=signals, devices=devices, brokers=brokers)
    words = [f"{problem_label(p.path, index, rules)}: {p.message}" for p in problems]
    rid = rules[index].get("id")
    rule = next((r for r in parsed if r.id == rid), None) if not problems else None
    if rule is None and not problems:
        words.append("the rule could not be read")
    return rule, words


def _times(n: int) -> str:
    return f"{n} time" if n == 1 else f"{n} times"


def dry_run_lines(result: Mapping[str, Any]) -> list[str]:
    """'would have fired 14 times in 24 h; today's rule fired 2', one line per window."""
    if not result.get("ok"):
        return [f"dry run: {result.get('message', 'failed')}"]
    lines = []
    current = result.get("current")
    for key, n in result["edited"].items():
        window = f"{key[:-1]} h" if key.endswith("h") else key
        text = f"would have fired {_times(n)} in {window}"
        if current is None:
            text += "; no rule with this id runs today"
        else:
            text += f"; today's rule fired {current.get(key, 0)}"
        lines.append(text)
    if result.get("enabled") is False:
        lines.append("disabled: as edited, the rule would not act at all")
    if result.get("current_enabled") is False:
        lines.append("today's rule is disabled: it has not acted")
    first, now = result.get("history_from"), result.get("now")
    if first is None:
        lines.append(
            f"no history of {result.get('signal', 'the signal')} in the window: nothing to replay"
        )
    elif now is not None and result["edited"]:
        longest = max(float(k[:-1]) for k in result["edited"] if k.endswith("h")) * 3600.0
        covered = now - first
        if covered < longest * 0.98:
            span = (
                f"{covered / 3600.0:.1f} h"
                if covered >= 3600.0
                else f"{max(1.0, covered / 60.0):.0f} min"
            )
            lines.append(f"history covers only the last {span}")
    return lines


def rule_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What an edit changes, in the editor's words: 'Threshold 0.8 → 0.7'."""
    out = []
    for key in dict.fromkeys([*before, *after]):
        if key == "actions":
            continue
        a, b = before.get(key), after.get(key)
        if a != b:
            out.append(
                f"{LABELS.get(key, key)} {field_text(a) or '(none)'} → {field_text(b) or '(none)'}"
            )
    old, new = list(before.get("actions", [])), list(after.get("actions", []))
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        if a == b:
            continue
        if a is None:
            out.append(f"Action {i + 1} added: {_action_words(b)}")
        elif b is None:
            out.append(f"Action {i + 1} removed: {_action_words(a)}")
        else:
            out.append(f"Action {i + 1} {_action_words(a)} → {_action_words(b)}")
    return out


def _action_words(a: Any) -> str:
    if not isinstance(a, Mapping):
        return repr(a)
    if "write" in a:
        off = f", off {field_text(a['off'])}" if "off" in a else ""
        return f"write {a.get('write')} {a.get('address', '')} (on {field_text(a.get('on'))}{off})"
    if "publish" in a:
        return f"publish {a.get('publish')} {a.get('topic', '')} (QoS {a.get('qos', 1)})"
    if "alarm" in a:
        return f"alarm {a.get('alarm')}" + (f" {a['message']!r}" if a.get("message") else "")
    return repr(dict(a))


def apply_config(app: Any, plant: dict[str, Any], message: str) -> dict[str, Any]:
    """Send the whole edited plant to the engine, which validates, swaps, health-checks and
    rolls back by itself; its answer says which. Called from a worker thread: the app runs
    the command with its session (and the PIN prompt when the engine asks for it)."""
    try:
        result = app.call_from_thread(app.command, "config.apply", config=plant, message=message)
    except Exception as e:  # a console attached over a socket can lose it mid-command
        return {"ok": False, "message": f"apply failed: {e}"}
    return dict(result)


def rule_template(
    plant: Mapping[str, Any], signal: str, rng: tuple[float, float] | None, value: float | None
) -> dict[str, Any]:
    """A new rule to start from: a high alarm on one signal, 5 s on, 2 s off, holding on bad
    input; its threshold at 90 % of the signal's range (or its value now)."""
    ids = {r.get("id") for r in plant.get("rules", [])}
    n = 1
    while f"{signal}-high-{n}" in ids or f"rule-{n}" in ids:
        n += 1
    rid = (
        f"{signal}-high-{n}" if re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", signal) else f"rule-{n}"
    )
    if rng is not None:
        threshold: float = round(rng[0] + 0.9 * (rng[1] - rng[0]), 6)
    else:
        threshold = float(f"{value:.3g}") if value is not None else 0.0
    return {
        "id": rid,
        "signal": signal,
        "op": ">",
        "threshold": threshold,
        "on_delay": "5s",
        "off_delay": "2s",
        "on_bad_quality": "hold",
        "enabled": True,
        "actions": [{"alarm": "medium", "message": f"{signal} high"}],
    }


def _alarm_message(rule: Mapping[str, Any]) -> str:
    """The message of a rule's alarm action as a field shows it ("" without one)."""
    for a in rule.get("actions", []):
        if isinstance(a, Mapping) and "alarm" in a:
            return field_text(a.get("message"))
    return ""


# -- widgets ---------------------------------------------------------------------------------


def _select(
    options: Sequence[str], value: str, *, classes: str, id: str | None = None
) -> Select[str]:
    opts = list(dict.fromkeys([*options, *([value] if value and value not in options else [])]))
    return Select(
        [(o, o) for o in opts],
        value=value if value in opts else Select.NULL,
        allow_blank=value not in opts,
        compact=True,
        classes=classes,
        id=id,
    )


class ActionRow(Horizontal):
    """One action: where it writes, what it publishes where, or which alarm it raises. Keys
    the editor does not show (a write's type, scale; a payload template) are kept."""

    DEFAULT_CSS = """
    ActionRow { height: 1; }
    ActionRow .kind { width: 9; text-style: bold; }
    ActionRow .lbl { width: auto; padding: 0 1; color: $text-muted; }
    ActionRow Select.pick { width: 18; }
    ActionRow Select.qos { width: 7; }
    ActionRow Input.addr { width: 10; }
    ActionRow Input.val { width: 7; }
    ActionRow Input.wide { width: 1fr; }
    """

    def __init__(
        self, action: Mapping[str, Any], *, devices: Sequence[str], brokers: Sequence[str]
    ) -> None:
        super().__init__()
        self.original = dict(action)
        self.kind = next((k for k in ACTION_KINDS if k in action), "")
        self.devices = list(devices)
        self.brokers = list(brokers)
        self.initial: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        a = self.original
        yield Label(self.kind or "?", classes="kind")
        if self.kind == "write":
            yield _select(self.devices, str(a.get("write", "")), classes="pick a-write")
            yield Label("addr", classes="lbl")
            # Not a value that looks written in ("co:10" read as one, then failed as ''):
            # the placeholder says it is missing; an empty address is named in build().
            yield self._input("address", "required", "addr")
            yield Label("on", classes="lbl")
            yield self._input("on", "true", "val")
            yield Label("off", classes="lbl")
            yield self._input("off", "", "val")
        elif self.kind == "publish":
            yield _select(self.brokers, str(a.get("publish", "")), classes="pick a-publish")
            yield Label("topic", classes="lbl")
            yield self._input("topic", "plant/line/alarms", "wide")
            yield Label("qos", classes="lbl")
            yield _select(["0", "1", "2"], field_text(a.get("qos", 1)), classes="qos a-qos")
        elif self.kind == "alarm":
            yield _select(list(PRIORITIES), str(a.get("alarm", "")), classes="pick a-alarm")
            yield Label("message", classes="lbl")
            yield self._input("message", "default: rule, signal and threshold", "wide")
        else:
            yield Label(f"{a!r} (kept as it is)")

    def _input(self, key: str, placeholder: str, cls: str) -> Input:
        text = field_text(self.original.get(key))
        self.initial[key] = text
        return Input(text, placeholder=placeholder, compact=True, classes=f"{cls} a-{key}")

    def _text(self, key: str) -> str:
        return self.query_one(f".a-{key}", Input).value

    def _choice(self, key: str) -> str | None:
        v = self.query_one(f".a-{key}", Select).value
        return None if v is Select.NULL else str(v)

    def build(self, number: int) -> tuple[dict[str, Any], list[str]]:
        """The action as edited, and what is wrong with the fields themselves (the rest is
        checked with the whole rule)."""
        out = dict(self.original)
        problems: list[str] = []
        if self.kind not in ACTION_KINDS or not self.query(f".a-{self.kind}"):
            return out, problems  # not composed yet (just added): as it was made
        picked = self._choice(self.kind)
        if picked is None:
            problems.append(f"Action {number} {ACTION_LABELS[self.kind]}: choose one")
        else:
            out[self.kind] = picked
        if self.kind == "write":
            if not self._text("address").strip():
                problems.append(
                    f"Action {number} {ACTION_LABELS['address']}: required, e.g. co:10 (a coil) "
                    "or hr:5 (a holding register)"
                )
            self._keep_or_set(out, "address", lambda t: t.strip(), number, problems)
            self._keep_or_set(
                out, "on", lambda t: parse_number(t, allow_bool=True), number, problems
            )
            self._keep_or_set(
                out, "off", lambda t: parse_number(t, allow_bool=True), number, problems
            )
        elif self.kind == "publish":
            self._keep_or_set(out, "topic", lambda t: t.strip(), number, problems)
            qos = self._choice("qos")
            if qos is not None and field_text(self.original.get("qos", 1)) != qos:
                out["qos"] = int(qos)
        else:
            self._keep_or_set(out, "message", lambda t: t.strip(), number, problems)
        return out, problems

    def _keep_or_set(
        self, out: dict[str, Any], key: str, convert: Any, number: int, problems: list[str]
    ) -> None:
        set_from_text(
            out,
            key,
            self._text(key),
            self.initial[key],
            convert,
            f"Action {number} {ACTION_LABELS[key]}",
            problems,
        )


class ActionKindDialog(ModalScreen[str | None]):
    """Which kind of action to add."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", key_display="Esc")]
    DEFAULT_CSS = """
    ActionKindDialog { align: center middle; }
    ActionKindDialog > Vertical { width: 56; height: auto; border: round $primary;
                                  background: $surface; padding: 0 1; }
    ActionKindDialog OptionList { height: auto; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Add an action:")
            yield OptionList(
                Option("write: a value to a device register or coil", id="write"),
                Option("publish: a message to a broker topic", id="publish"),
                Option("alarm: raise an alarm while active", id="alarm"),
            )
            yield Static("Enter to add · Esc to cancel")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ApplyDialog(ModalScreen[str | None]):
    """What will change and what the dry run says, and the message the snapshot keeps."""

    # What the dialog says around its one required field (a subclass asks for another why).
    PLACEHOLDER = "why (required), e.g. raise trip after bearing change"
    HINT = (
        "Enter applies: validated, swapped, health-checked (back by itself "
        "if the check fails) · Esc goes back"
    )
    REQUIRED = (
        "A message is required: say why. It is kept with the snapshot, so whoever "
        "rolls back later knows what they undo."
    )

    BINDINGS = [Binding("escape", "dismiss_none", "Back", key_display="Esc")]
    DEFAULT_CSS = """
    ApplyDialog { align: center middle; }
    ApplyDialog > Vertical { width: 76; height: auto; max-height: 22; border: round $primary;
                             background: $surface; padding: 0 1; }
    ApplyDialog #summary { height: auto; max-height: 12; }
    ApplyDialog #message { margin-top: 1; }
    ApplyDialog #error { height: auto; color: $error; }
    """

    def __init__(self, summary: Text | str) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.summary, id="summary")
            yield Input(placeholder=self.PLACEHOLDER, id="message")
            yield Static("", id="error")
            yield Static(self.HINT)

    def on_mount(self) -> None:
        self.query_one("#message", Input).focus()

    @on(Input.Submitted, "#message")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.query_one("#error", Static).update(self.REQUIRED)
            return
        self.dismiss(text)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class RuleEditor(ModalScreen[dict[str, Any] | None]):
    """Edit one rule of the running plant (or a new one), see its dry run, apply it.

    Dismissed with the engine's answer to config.apply when it was applied, None otherwise.
    """

    BINDINGS = [
        Binding("f5", "dry_run", "Dry run", key_display="F5"),
        Binding("f8", "apply", "Apply", key_display="F8"),
        Binding("f3", "add_action", "+Action", key_display="F3"),
        Binding("f4", "remove_action", "-Action", key_display="F4"),
        Binding("escape", "cancel", "Cancel", key_display="Esc"),
    ]

    DEFAULT_CSS = """
    RuleEditor { align: center top; }
    RuleEditor > #box { width: 100%; max-width: 100; height: 1fr; max-height: 40;
                        border: round $primary; background: $surface; padding: 0 1; }
    RuleEditor #title { height: 1; text-style: bold; }
    RuleEditor #form { height: 1fr; min-height: 6; }
    RuleEditor .row { height: 1; }
    RuleEditor .row > Label { width: 14; color: $text-muted; }
    RuleEditor .row > Label.mid { width: 15; padding-left: 2; }
    RuleEditor .row Input { width: 12; }
    RuleEditor .row Input#f-id { width: 28; }
    RuleEditor .row Select { width: 14; }
    RuleEditor .row Select#f-signal { width: 1fr; }
    RuleEditor .row Checkbox { margin-left: 2; }
    RuleEditor #actions-title { height: 1; text-style: bold; margin-top: 0; }
    RuleEditor #actions { height: auto; }
    RuleEditor #problems { height: auto; max-height: 4; color: $error; }
    RuleEditor #dryrun { height: auto; min-height: 2; max-height: 5;
                         border-top: solid $panel; }
    """

    def __init__(
        self,
        plant: Mapping[str, Any],
        index: int | None,
        rule: Mapping[str, Any],
        *,
        signals: Mapping[str, tuple[float, float] | None],
    ) -> None:
        super().__init__()
        self.plant = copy.deepcopy(dict(plant))
        self.index = index
        self.original = copy.deepcopy(dict(rule))
        self.signals = dict(signals)
        self.devices = [str(d.get("id")) for d in self.plant.get("devices", []) if "id" in d]
        self.brokers = [str(b.get("id")) for b in self.plant.get("brokers", []) if "id" in b]
        self.initial: dict[str, str] = {}
        self.problems: list[str] = []
        self.parsed: RuleConfig | None = None
        self.dry: tuple[dict[str, Any], dict[str, Any]] | None = None  # (rule, its answer)
        self.applying = False
        self._timer: Timer | None = None
        self._ready = False
        # A new rule: the template its fields came from, so fields still as the template
        # made them follow a change of signal (threshold, id, alarm message).
        self._template = copy.deepcopy(dict(rule)) if index is None else None

    @property
    def api(self) -> Any:
        """The engine's API (EngineAPI or a console's stand-in for it)."""
        return self.app.api  # type: ignore[attr-defined]

    # -- layout ----------------------------------------------------------------------------

    def _input(self, key: str, placeholder: str = "", **kw: Any) -> Input:
        text = field_text(self.original.get(key))
        self.initial[key] = text
        return Input(text, placeholder=placeholder, compact=True, id=f"f-{key}", **kw)

    def _pick(self, key: str, options: Sequence[str], default: str) -> Select[str]:
        # What is shown for an absent key (the default) counts as unchanged, like a field.
        shown = str(self.original.get(key, default))
        self.initial[key] = shown
        return _select(options, shown, classes="", id=f"f-{key}")

    def compose(self) -> ComposeResult:
        r = self.original
        new = self.index is None
        with Vertical(id="box"):
            yield Static(
                "New rule (from a template)" if new else f"Edit rule {r.get('id')}", id="title"
            )
            with VerticalScroll(id="form"):
                with Horizontal(classes="row"):
                    yield Label(LABELS["id"])
                    yield self._input("id", "letters, digits, _ . -", disabled=not new)
                    yield Checkbox(
                        "enabled", bool(r.get("enabled", True)), compact=True, id="f-enabled"
                    )
                with Horizontal(classes="row"):
                    yield Label(LABELS["signal"])
                    yield self._pick("signal", sorted(self.signals), "")
                with Horizontal(classes="row"):
                    yield Label(LABELS["op"])
                    yield self._pick("op", list(OPS), ">")
                    yield Label(LABELS["threshold"], classes="mid")
                    yield self._input("threshold", "number or true/false")
                with Horizontal(classes="row"):
                    yield Label(LABELS["deadband"])
                    yield self._input("deadband", "0.5 or 2%")
                    yield Label(LABELS["on_bad_quality"], classes="mid")
                    yield self._pick("on_bad_quality", list(QUALITY_POLICIES), "hold")
                with Horizontal(classes="row"):
                    yield Label(LABELS["on_delay"])
                    yield self._input("on_delay", "e.g. 5s")
                    yield Label(LABELS["off_delay"], classes="mid")
                    yield self._input("off_delay", "e.g. 2s")
                with Horizontal(classes="row"):
                    yield Label(LABELS["min_on"])
                    yield self._input("min_on", "e.g. 20s")
                    yield Label(LABELS["min_off"], classes="mid")
                    yield self._input("min_off", "e.g. 1m")
                with Horizontal(classes="row"):
                    yield Label(LABELS["max_changes_per_hour"])
                    yield self._input("max_changes_per_hour", "no cap")
                yield Static(
                    "Actions (F3 adds one, F4 removes the one you are in)", id="actions-title"
                )
                with Vertical(id="actions"):
                    for a in r.get("actions", []):
                        yield ActionRow(
                            a if isinstance(a, Mapping) else {},
                            devices=self.devices,
                            brokers=self.brokers,
                        )
            yield Static("", id="problems")
            yield Static("dry run: waiting for the fields…", id="dryrun")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#f-id" if self.index is None else "#f-threshold", Input).focus()
        self._ready = True
        self._changed()

    # -- building and checking the rule ----------------------------------------------------

    def _value(self, out: dict[str, Any], key: str, convert: Any, problems: list[str]) -> None:
        set_from_text(
            out,
            key,
            self.query_one(f"#f-{key}", Input).value,
            self.initial[key],
            convert,
            LABELS[key],
            problems,
        )

    def _choice(self, key: str) -> str | None:
        v = self.query_one(f"#f-{key}", Select).value
        return None if v is Select.NULL else str(v)

    def build(self) -> tuple[dict[str, Any], list[str]]:
        """The rule as the fields say, and what is wrong with the fields themselves."""
        out = copy.deepcopy(self.original)
        problems: list[str] = []
        self._value(out, "id", lambda t: t.strip(), problems)
        for key in ("signal", "op", "on_bad_quality"):
            v = self._choice(key)
            if v is None:
                problems.append(f"{LABELS[key]}: choose one")
            elif v != self.initial[key]:
                out[key] = v
        self._value(out, "threshold", lambda t: parse_number(t, allow_bool=True), problems)
        self._value(
            out,
            "deadband",
            lambda t: t.strip() if t.strip().endswith("%") else parse_number(t),
            problems,
        )
        for key in DURATION_KEYS:
            self._value(out, key, lambda t: t.strip(), problems)

        def cap(text: str) -> int:
            v = parse_number(text)
            if isinstance(v, bool) or not float(v).is_integer():
                raise ValueError(f"{text.strip()!r} is not a whole number of changes")
            return int(v)

        self._value(out, "max_changes_per_hour", cap, problems)
        enabled = self.query_one("#f-enabled", Checkbox).value
        if enabled != bool(self.original.get("enabled", True)):
            out["enabled"] = enabled
        actions = []
        for i, row in enumerate(self.query(ActionRow)):
            action, action_problems = row.build(i + 1)
            actions.append(action)
            problems += action_problems
        if actions or "actions" in out:
            out["actions"] = actions
        return out, problems

    def plant_with(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """The whole plant with this rule in its place (or added at the end)."""
        plant = copy.deepcopy(self.plant)
        rules = plant.setdefault("rules", [])
        if self.index is None:
            rules.append(copy.deepcopy(dict(rule)))
        else:
            rules[self.index] = copy.deepcopy(dict(rule))
        return plant

    def check(self) -> tuple[dict[str, Any], list[str]]:
        rule, problems = self.build()
        self.parsed = None
        if not problems:
            rules = self.plant_with(rule)["rules"]
            index = len(rules) - 1 if self.index is None else self.index
            self.parsed, problems = check_rules(
                rules,
                index,
                signals=self.signals,
                devices=set(self.devices),
                brokers=set(self.brokers),
            )
        self.problems = problems
        return rule, problems

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _field_changed(self) -> None:
        if self._ready:
            self._changed()

    @on(Select.Changed, "#f-signal")
    def _signal_changed(self, event: Select.Changed) -> None:
        """A new rule's signal changed: what the template made for the old signal (and was
        not edited since) becomes what it makes for the new one."""
        before = self._template
        if before is None or not self._ready or event.value is Select.NULL:
            return
        signal = str(event.value)
        if signal == before.get("signal"):
            return
        after = rule_template(self.plant, signal, self.signals.get(signal), self._now(signal))
        for key in ("id", "threshold"):
            field = self.query_one(f"#f-{key}", Input)
            if field.value == field_text(before.get(key)):
                field.value = field_text(after.get(key))
        old_message = _alarm_message(before)
        for row in self.query(ActionRow):
            if row.kind == "alarm" and row.query(".a-message"):
                field = row.query_one(".a-message", Input)
                if field.value == old_message:
                    field.value = _alarm_message(after)
        self._template = after

    def _now(self, signal: str) -> float | None:
        """The signal's value in the console's latest frame, if it is a number."""
        frame = getattr(self.app, "last_frame", None)
        view = next((v for v in frame.signals if v.id == signal), None) if frame else None
        value = getattr(view, "value", None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def _changed(self) -> None:
        rule, problems = self.check()
        colors = self.app.theme_variables
        box = self.query_one("#problems", Static)
        box.update("\n".join(f"✕ {p}" for p in problems))
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if problems:
            self._show_dry(
                Text("dry run: fix the fields above first", style=colors.get("muted", ""))
            )
            return
        if self.dry is not None and self.dry[0] == rule:
            self._show_dry(self._dry_text(self.dry[1]))
            return
        self._show_dry(
            Text("dry run: waiting for you to stop typing…", style=colors.get("muted", ""))
        )
        self._timer = self.set_timer(DRY_RUN_DEBOUNCE_S, self.action_dry_run)

    # -- dry run ---------------------------------------------------------------------------

    def _show_dry(self, text: Text | str) -> None:
        self.query_one("#dryrun", Static).update(text)

    def _dry_text(self, result: Mapping[str, Any]) -> Text:
        colors = self.app.theme_variables
        ok = bool(result.get("ok"))
        head = Text(
            "Dry run over the history" + (f" of {result.get('signal')}" if ok else "") + ":\n",
            style="bold",
        )
        body = Text(
            "\n".join(dry_run_lines(result)),
            style="" if ok else f"bold {colors.get('quality-bad', '')}".strip(),
        )
        return head + body

    def action_dry_run(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        rule, problems = self.check()
        if problems:
            self.notify("fix the problems shown before a dry run", severity="warning")
            return
        self._start_dry_run(rule, then_apply=False)

    def _start_dry_run(self, rule: dict[str, Any], *, then_apply: bool) -> None:
        if getattr(self.api, "dry_run", None) is None:
            self._show_dry(
                "dry run: this console's engine cannot replay history "
                "(no dry_run); nothing can be applied from here"
            )
            return
        self._show_dry(
            Text(
                "dry run: replaying the history of the last day…",
                style=self.app.theme_variables.get("muted", ""),
            )
        )
        self._dry_run(rule, then_apply)

    @work(thread=True, exclusive=True, group="dry-run", exit_on_error=False)
    def _dry_run(self, rule: dict[str, Any], then_apply: bool) -> None:
        try:
            result = dict(self.api.dry_run(copy.deepcopy(rule)))
        except Exception as e:  # the answer is shown; the editor stays usable
            result = {"ok": False, "message": f"the dry run failed: {e}"}
        self.app.call_from_thread(self._dry_done, rule, result, then_apply)

    def _dry_done(self, rule: dict[str, Any], result: dict[str, Any], then_apply: bool) -> None:
        current, problems = self.check()
        if current != rule or problems:
            return  # the fields changed meanwhile: a newer dry run is on its way
        self.dry = (rule, result)
        self._show_dry(self._dry_text(result))
        if then_apply:
            self._ask_message(rule)

    # -- apply -----------------------------------------------------------------------------

    def action_apply(self) -> None:
        if self.applying:
            self.notify("an apply is running; wait for its answer", severity="warning")
            return
        rule, problems = self.check()
        if problems:
            self.notify("not applied: fix the problems shown first", severity="error")
            self.query_one("#problems", Static).update("\n".join(f"✕ {p}" for p in problems))
            return
        if rule == self.original and self.index is not None:
            self.notify("nothing changed: there is nothing to apply", severity="warning")
            return
        if self.dry is not None and self.dry[0] == rule:
            self._ask_message(rule)
        else:
            self._start_dry_run(rule, then_apply=True)

    def _ask_message(self, rule: dict[str, Any]) -> None:
        assert self.dry is not None
        result = self.dry[1]
        if not result.get("ok"):
            self.notify(
                "not applied: the dry run found a problem (shown below the form)", severity="error"
            )
            return
        what = "Add" if self.index is None else "Change"
        summary = Text(f"{what} rule {rule.get('id')}", style="bold")
        if self.parsed is not None:
            summary.append(
                f": {self.parsed.describe()}" + ("" if self.parsed.enabled else " (disabled)")
            )
        if self.index is None:
            changes = [f"→ {_action_words(a)}" for a in rule.get("actions", [])]
        else:
            changes = rule_changes(self.original, rule)
        for change in changes:
            summary.append(f"\n  {change}")
        summary.append("\n" + "\n".join(dry_run_lines(result)))

        def answered(message: str | None) -> None:
            if message:
                self.applying = True
                self._show_dry(
                    Text(
                        f"applying {rule.get('id')}: validating, swapping, health check…",
                        style="bold",
                    )
                )
                self._apply(self.plant_with(rule), message)

        self.app.push_screen(ApplyDialog(summary), answered)

    @work(thread=True, exclusive=True, group="apply", exit_on_error=False)
    def _apply(self, plant: dict[str, Any], message: str) -> None:
        result = apply_config(self.app, plant, message)
        self.app.call_from_thread(self._applied, result)

    def _applied(self, result: dict[str, Any]) -> None:
        self.applying = False
        ok = bool(result.get("ok"))
        text = str(result.get("message", ""))
        self.notify(
            text or ("applied" if ok else "not applied"),
            severity="information" if ok else "error",
            timeout=12,
        )
        if ok:
            self.dismiss(result)
            return
        colors = self.app.theme_variables
        self._show_dry(Text(f"NOT APPLIED: {text}", style=f"bold {colors.get('quality-bad', '')}"))

    # -- actions list ----------------------------------------------------------------------

    def action_add_action(self) -> None:
        def picked(kind: str | None) -> None:
            if kind is None:
                return
            blank: dict[str, dict[str, Any]] = {
                "write": {
                    "write": self.devices[0] if self.devices else "",
                    "address": "",
                    "on": True,
                    "off": False,
                },
                "publish": {
                    "publish": self.brokers[0] if self.brokers else "",
                    "topic": "",
                    "qos": 1,
                },
                "alarm": {"alarm": "medium"},
            }
            fresh = blank[kind]
            row = ActionRow(fresh, devices=self.devices, brokers=self.brokers)
            self.query_one("#actions", Vertical).mount(row)
            self.call_after_refresh(self._new_row_mounted, row)

        self.app.push_screen(ActionKindDialog(), picked)

    def _new_row_mounted(self, row: ActionRow) -> None:
        focusable = [w for w in row.query("Input, Select") if w.focusable]
        if focusable:
            focusable[0].focus()
        self._changed()

    def action_remove_action(self) -> None:
        rows = list(self.query(ActionRow))
        if not rows:
            self.notify("this rule has no action to remove", severity="warning")
            return
        focused: Widget | None = self.focused
        row = next(
            (r for r in rows if focused is not None and (focused is r or r in focused.ancestors)),
            None,
        )
        if row is None:
            self.notify(
                "move into an action's fields (Tab) to remove that action", severity="warning"
            )
            return
        self._remove(row)

    @work(exclusive=True, group="remove-action")
    async def _remove(self, row: ActionRow) -> None:
        await row.remove()
        self._changed()

    # -- leaving ---------------------------------------------------------------------------

    def action_cancel(self) -> None:
        if self.applying:
            self.notify("an apply is running; wait for its answer", severity="warning")
            return
        rule, _problems = self.build()
        if rule == self.original and self.index is not None:
            self.dismiss(None)
            return
        from floorconsole.ui.screens.snapshots import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss(None)

        what = "this new rule" if self.index is None else "your changes"
        self.app.push_screen(
            ConfirmDialog(f"Leave the editor and discard {what}? Nothing has been applied."),
            answered,
        )
