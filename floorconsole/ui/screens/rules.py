"""The rules screen: each rule's live state (value against threshold, delay timers running,
last activation, each action's last result), and the way into changing them: edit, add from a
template, enable or disable."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable

from floorconsole.engine.api import format_value
from floorconsole.engine.frames import Frame, RuleView
from floorconsole.ui.format import local
from floorconsole.ui.screens.rule_editor import (
    ApplyDialog,
    RuleEditor,
    apply_config,
    dry_run_lines,
    rule_template,
)
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.status_bars import Bar


def _clock(t: float | None) -> str:
    return local(t).strftime("%H:%M:%S") if t else "never"


# The rule's state word (RuleView.state) -> (shape and text, theme variable): never "normal"
# while the rule is held or could not act, and every state in text, not colour alone.
STATE_CELLS = {
    "DISABLED": ("○ disabled", "muted"),
    "HELD": ("◆ HELD", "alarm-medium"),
    "NOT APPLIED": ("✕ NOT APPLIED", "quality-bad"),
    "LATCHED": ("▲ LATCHED", "alarm-high"),
    "ACTIVE": ("▲ ACTIVE", "alarm-high"),
}


def state_cell(r: RuleView, colors: Mapping[str, str]) -> Text:
    word = r.state or ("DISABLED" if not r.enabled else "ACTIVE" if r.active else "NORMAL")
    if word not in STATE_CELLS:
        return Text("● normal")
    text, var = STATE_CELLS[word]
    bold = "" if word == "DISABLED" else "bold "
    return Text(text, style=f"{bold}{colors.get(var, '')}".strip())


def rule_cells(r: RuleView, colors: Mapping[str, str]) -> tuple[Text | str, ...]:
    state = state_cell(r, colors)
    value = "—" if r.value is None else format_value(r.value)
    if r.quality != "GOOD":
        value = f"{value} ({r.quality})"
    return (
        r.id,
        r.condition,
        value,
        state,
        r.pending or "",
        _clock(r.last_activation),
        str(r.changes_last_hour),
    )


def actions_text(r: RuleView, colors: Mapping[str, str]) -> Text:
    t = Text(f"{r.id}: {r.condition}\n", style="bold")
    if r.note:
        t.append(f"{r.note}\n", style=colors.get("alarm-medium", ""))
    for a in r.actions:
        if a.last_ok is None:
            mark, style = "○", colors.get("muted", "")
        elif a.last_ok:
            mark, style = "●", ""
        else:
            mark, style = "✕", f"bold {colors.get('quality-bad', '')}"
        t.append(f" {mark} {a.kind:<8} {a.target:<32} ", style=style)
        t.append(
            f"{a.last_result or 'not run yet'}{'  at ' + _clock(a.last_at) if a.last_at else ''}\n",
            style=style,
        )
    return t


class ResetDialog(ApplyDialog):
    """Why a latched rule (a trip) is reset: required, kept in the audit trail."""

    PLACEHOLDER = "why (required), e.g. bearing replaced, WO 1234"
    HINT = "Enter resets · Esc goes back"
    REQUIRED = "A reason is required: say what was done. It is kept in the audit trail."


class RulesScreen(Screen[None]):
    """Rules as they run in the engine, whether or not a console is open; each change made
    here is applied to the running plant as a new snapshot."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("e,enter", "edit", "Edit", key_display="e/⏎"),
        Binding("n", "new", "New rule"),
        Binding("t", "toggle_rule", "On/off"),
        Binding("f3", "reset", "Reset trip", key_display="F3"),
    ]

    DEFAULT_CSS = """
    RulesScreen #mode { height: 1; background: $panel; padding: 0 1; }
    RulesScreen DataTable { height: 1fr; }
    RulesScreen #actions { height: 8; padding: 0 1;
                           background: $surface; border-top: solid $panel; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._ids: list[str] = []
        self._frame: Frame | None = None

    def compose(self) -> ComposeResult:
        yield Bar("", id="mode")
        table: DataTable[Text | str] = DataTable(cursor_type="row")
        yield table
        yield Bar("", id="actions")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for key, label, width in (
            ("id", "Rule", 16),
            ("cond", "Condition", 28),
            ("value", "Value", 12),
            ("state", "State", 14),
            ("timer", "Timer", 16),
            ("last", "Last on", 9),
            ("changes", "Ch/h", 5),
        ):
            t.add_column(label, key=key, width=width)
        t.focus()

    def show_frame(self, frame: Frame) -> None:
        self._frame = frame
        if not self.query("#mode"):
            return  # the screen is being taken down (its widgets go before it does)
        colors = self.app.theme_variables
        mode = Text(f"control outputs: {frame.control_mode.upper()}", style="bold")
        if frame.control_mode != "writes enabled":
            mode.append(
                "  — rules are evaluated and alarm, but nothing is written to a device",
                style=colors.get("muted", ""),
            )
        self.query_one("#mode", Bar).set_text(mode)
        t = self.query_one(DataTable)
        ids = [r.id for r in frame.rules]
        if ids != self._ids:
            t.clear()
            for r in frame.rules:
                t.add_row(*rule_cells(r, colors), key=r.id)
            self._ids = ids
        else:
            for r in frame.rules:
                for col, v in zip(
                    ("id", "cond", "value", "state", "timer", "last", "changes"),
                    rule_cells(r, colors),
                    strict=True,
                ):
                    t.update_cell(r.id, col, v)
        if not frame.rules:
            self.query_one("#actions", Bar).set_text("no rules in this configuration")
            return
        row = t.cursor_row if 0 <= t.cursor_row < len(frame.rules) else 0
        self.query_one("#actions", Bar).set_text(actions_text(frame.rules[row], colors))

    # -- changing rules --------------------------------------------------------------------

    @property
    def api(self) -> Any:
        """The engine's API (EngineAPI or a console's stand-in for it)."""
        return self.app.api  # type: ignore[attr-defined]

    def _selected_id(self) -> str | None:
        t = self.query_one(DataTable)
        if not self._ids or not (0 <= t.cursor_row < len(self._ids)):
            return None
        return self._ids[t.cursor_row]

    def _plant(self) -> dict[str, Any] | None:
        """The running plant as a plain dict, to edit; None (and a notice saying why) when
        this console cannot change it."""
        get = getattr(self.api, "active_config", None)
        if get is None:
            self.notify(
                "rules cannot be changed from this console: its engine does not give "
                "out the running configuration (no active_config)",
                severity="error",
                timeout=10,
            )
            return None
        try:
            return dict(get())
        except Exception as e:  # an engine without a snapshot store says so
            self.notify(f"rules cannot be changed: {e}", severity="error", timeout=10)
            return None

    def _signal_ranges(self, plant: Mapping[str, Any]) -> dict[str, tuple[float, float] | None]:
        """Every signal a rule may watch, with its range: what the engine shows (plant
        signals, model outputs, drift figures), and the plant file's own signals."""
        out: dict[str, tuple[float, float] | None] = {}
        for s in plant.get("signals", []):
            if isinstance(s, Mapping) and "id" in s and s.get("kind") != "waveform":
                rng = s.get("range")
                out[str(s["id"])] = (float(rng[0]), float(rng[1])) if rng else None
        frame = self._frame or self.app.last_frame  # type: ignore[attr-defined]
        if frame is not None:
            for v in frame.signals:
                if v.kind == "waveform":
                    out.pop(v.id, None)
                else:
                    out[v.id] = tuple(v.range) if v.range else out.get(v.id)  # type: ignore[assignment]
        for r in plant.get("rules", []):
            if isinstance(r, Mapping) and isinstance(r.get("signal"), str):
                out.setdefault(r["signal"], None)  # a running rule's signal exists
        return out

    @on(DataTable.RowSelected)
    def _row_chosen(self) -> None:
        self.action_edit()

    def _selected_rule(self) -> tuple[dict[str, Any], int] | None:
        """The running plant and the place of the selected rule in its rules; None (and a
        notice saying why) when there is none to change."""
        rid = self._selected_id()
        if rid is None:
            self.notify("no rule selected; n adds one", severity="warning")
            return None
        plant = self._plant()
        if plant is None:
            return None
        index = next((i for i, r in enumerate(plant.get("rules", [])) if r.get("id") == rid), None)
        if index is None:
            self.notify(
                f"rule {rid} is not in the running configuration (it changed "
                "meanwhile?); try again",
                severity="error",
            )
            return None
        return plant, index

    def action_edit(self) -> None:
        chosen = self._selected_rule()
        if chosen is not None:
            plant, index = chosen
            self._open(
                RuleEditor(plant, index, plant["rules"][index], signals=self._signal_ranges(plant))
            )

    def action_new(self) -> None:
        plant = self._plant()
        if plant is None:
            return
        signals = self._signal_ranges(plant)
        if not signals:
            self.notify("this plant has no signal a rule could watch", severity="error")
            return
        frame = self._frame
        rid = self._selected_id()
        near = next((r.signal for r in frame.rules if r.id == rid), None) if frame else None
        signal = near if near in signals else sorted(signals)[0]
        view = next((v for v in frame.signals if v.id == signal), None) if frame else None
        value = view.value if view is not None and isinstance(view.value, (int, float)) else None
        template = rule_template(plant, signal, signals.get(signal), value)
        self._open(RuleEditor(plant, None, template, signals=signals))

    def _open(self, editor: RuleEditor) -> None:
        def done(result: dict[str, Any] | None) -> None:
            if result is not None:
                self.app.tick()  # type: ignore[attr-defined]

        self.app.push_screen(editor, done)

    def action_reset(self) -> None:
        """Reset the selected latched rule (a trip), with a reason; the engine checks the
        role and that the condition has cleared, and audits who and why."""
        rid = self._selected_id()
        frame = self._frame
        r = next((x for x in frame.rules if x.id == rid), None) if frame else None
        if r is None:
            self.notify("no rule selected", severity="warning")
            return
        if not r.latch or not r.active:
            what = "does not latch" if not r.latch else "has not tripped"
            self.notify(f"rule {r.id} {what}: nothing to reset", severity="warning")
            return
        summary = Text(f"Reset {r.id}: its outputs release.\n", style="bold")
        if r.note:
            summary.append(r.note)

        def answered(reason: str | None) -> None:
            if reason:
                self.app.send_command("rule.reset", rule=r.id, reason=reason)  # type: ignore[attr-defined]

        self.app.push_screen(ResetDialog(summary), answered)

    def action_toggle_rule(self) -> None:
        chosen = self._selected_rule()
        if chosen is None:
            return
        plant, index = chosen
        rule = copy.deepcopy(plant["rules"][index])
        rule["enabled"] = not bool(rule.get("enabled", True))
        plant["rules"][index] = rule
        if getattr(self.api, "dry_run", None) is None:
            self._confirm_toggle(plant, rule, None)
        else:
            self._toggle_dry_run(plant, rule)

    @work(thread=True, exclusive=True, group="toggle", exit_on_error=False)
    def _toggle_dry_run(self, plant: dict[str, Any], rule: dict[str, Any]) -> None:
        try:
            result: dict[str, Any] | None = dict(self.api.dry_run(copy.deepcopy(rule)))
        except Exception as e:  # shown in the dialog; the toggle can still go ahead
            result = {"ok": False, "message": f"the dry run failed: {e}"}
        self.app.call_from_thread(self._confirm_toggle, plant, rule, result)

    def _confirm_toggle(
        self, plant: dict[str, Any], rule: dict[str, Any], result: dict[str, Any] | None
    ) -> None:
        rid = rule.get("id")
        if rule["enabled"]:
            summary = Text(f"Enable rule {rid}: it acts again on its signal.\n", style="bold")
        else:
            summary = Text(
                f"Disable rule {rid}: it stops acting (no writes, publishes or "
                "alarms) until enabled again.\n",
                style="bold",
            )
        if result is not None and result.get("ok"):
            if rule["enabled"]:
                summary.append("\n".join(dry_run_lines(result)))
            elif result.get("current") is not None:
                fired = ", ".join(f"{n} in {k[:-1]} h" for k, n in result["current"].items())
                summary.append(f"today's rule fired {fired}")
        elif result is not None:
            summary.append(str(result.get("message", "")))

        def answered(message: str | None) -> None:
            if message:
                self._apply(plant, message)

        self.app.push_screen(ApplyDialog(summary), answered)

    @work(thread=True, exclusive=True, group="apply", exit_on_error=False)
    def _apply(self, plant: dict[str, Any], message: str) -> None:
        result = apply_config(self.app, plant, message)
        self.app.call_from_thread(self._applied, result)

    def _applied(self, result: dict[str, Any]) -> None:
        ok = bool(result.get("ok"))
        self.notify(
            str(result.get("message") or ("applied" if ok else "not applied")),
            severity="information" if ok else "error",
            timeout=12,
        )
        self.app.tick()  # type: ignore[attr-defined]
