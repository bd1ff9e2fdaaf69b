"""The alarm screen (ISA-18.2): filter by state and priority, acknowledge one or all shown,
shelve for a chosen time, the journal, and the alarm KPIs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, OptionList, Static
from textual.widgets.option_list import Option

from floorconsole.console import AlarmView, Frame, Unavailable
from floorconsole.ui.format import local
from floorconsole.ui.live import ShowsFrames, console_api, console_app
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.status_bars import Bar

PRIORITY_SHAPE = {"critical": "◆◆", "high": "▲", "medium": "▼", "low": "○"}
PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
STATE_LABEL = {
    "NORMAL": "normal",
    "UNACK": "ACTIVE UNACK",
    "ACKED": "active ack",
    "RTN_UNACK": "RTN UNACK",
    "SHELVED": "shelved",
    "SUPPRESSED": "suppressed",
    "OUT_OF_SERVICE": "out of service",
}
STATE_FILTERS = (
    ("all", None),
    ("active", {"UNACK", "ACKED"}),
    ("unacknowledged", {"UNACK", "RTN_UNACK"}),
    ("shelved", {"SHELVED"}),
    ("suppressed / out of service", {"SUPPRESSED", "OUT_OF_SERVICE"}),
)
PRIORITY_FILTERS = ("low", "medium", "high", "critical")  # "at least"
SHELVE_CHOICES = (
    (15 * 60, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (8 * 3600, "8 hours (the most allowed)"),
)


def alarm_style(a: AlarmView, colors: Mapping[str, str]) -> str:
    if a.state in ("UNACK", "RTN_UNACK"):
        return f"bold {colors.get('alarm-' + a.priority, '')}".strip()
    if a.state == "ACKED":
        return colors.get("alarm-" + a.priority, "")
    return colors.get("muted", "")


def _clock(t: float | None) -> str:
    return local(t).strftime("%H:%M:%S") if t else ""


class ShelveDialog(ModalScreen[tuple[float, str] | None]):
    """Why and how long to shelve: a reason is required and at most 8 hours, as ISA-18.2 asks
    for a bounded shelve that says why."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]
    DEFAULT_CSS = """
    ShelveDialog { align: center middle; }
    ShelveDialog > Vertical { width: 56; height: auto; border: round $primary;
                              background: $surface; padding: 0 1; }
    ShelveDialog Input { margin: 0 0 1 0; }
    """

    def __init__(self, alarm_id: str) -> None:
        super().__init__()
        self.alarm_id = alarm_id

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Shelve {self.alarm_id}. Why (required):")
            yield Input(placeholder="e.g. sensor being replaced, work order 1234", id="reason")
            yield Static("For how long:")
            yield OptionList(*[Option(label, id=str(s)) for s, label in SHELVE_CHOICES])
            yield Static("Enter to shelve · Esc to cancel")

    @on(Input.Submitted)
    def _reason_given(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.notify("a shelve needs a reason: say why first", severity="warning")
            self.query_one("#reason", Input).focus()
            return
        self.dismiss((float(event.option.id or 0), reason))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class AlarmScreen(ShowsFrames, Screen[None]):
    """Every alarm that is not normal, most urgent first."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("a,enter", "ack", "Ack", key_display="a/⏎"),
        Binding("A", "ack_all", "Ack shown"),
        Binding("s", "shelve", "Shelve"),
        Binding("u", "unshelve", "Unshelve"),
        Binding("f", "state_filter", "State"),
        Binding("p", "priority_filter", "Priority"),
        Binding("n", "show_normal", "Normal too"),
        Binding("j", "journal", "Journal"),
        Binding("k", "kpis", "KPIs"),
    ]

    DEFAULT_CSS = """
    AlarmScreen #summary { height: 2; background: $panel; padding: 0 1; }
    AlarmScreen #filters { height: 1; color: $muted; padding: 0 1; }
    AlarmScreen DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.state_filter = 0
        self.min_priority = 0
        self.show_normal = False
        self._shown: list[AlarmView] = []
        self._frame: Frame | None = None

    def compose(self) -> ComposeResult:
        yield Bar("", id="summary")
        yield Bar("", id="filters")
        table: DataTable[Text | str] = DataTable(cursor_type="row", zebra_stripes=False)
        yield table
        yield ConsoleFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for key, label, width in (
            ("prio", "Priority", 10),
            ("state", "State", 14),
            ("message", "Alarm", 28),
            ("text", "Detail", 30),
            ("since", "Since", 8),
            ("ack", "Ack by", 10),
        ):
            t.add_column(label, key=key, width=width)
        t.focus()

    def shown(self, frame: Frame) -> list[AlarmView]:
        _name, states = STATE_FILTERS[self.state_filter]
        out = []
        for a in frame.alarms:
            if a.state == "NORMAL" and not self.show_normal:
                continue
            if states is not None and a.state not in states:
                continue
            if PRIORITY_RANK[a.priority] < self.min_priority:
                continue
            out.append(a)
        return out

    def show_frame(self, frame: Frame) -> None:
        self._frame = frame
        colors = self.app.theme_variables
        s = frame.alarm_summary
        if s is None:
            self.query_one("#summary", Bar).set_text("no alarm table in this engine")
            return
        summary = Text(
            f"{s.active} active · {s.unack} unacknowledged · {s.shelved} shelved · "
            f"{s.suppressed + s.out_of_service} suppressed/out of service\n"
        )
        n = s.alarms_10min
        summary.append(f"{n} alarm{'' if n == 1 else 's'} in 10 min")
        if s.flood:
            summary.append(
                "  ◆ FLOOD (more than 10 in 10 min)", style=f"bold {colors.get('alarm-high', '')}"
            )
        if s.top_chattering:
            summary.append(
                "  chattering: " + ", ".join(f"{i} ×{n}" for i, n in s.top_chattering),
                style=colors.get("alarm-medium", ""),
            )
        self.query_one("#summary", Bar).set_text(summary)
        name = STATE_FILTERS[self.state_filter][0]
        self.query_one("#filters", Bar).set_text(
            f"state: {name} · priority: {PRIORITY_FILTERS[self.min_priority]} and up"
            + (" · normal ones shown" if self.show_normal else "")
        )
        shown = self.shown(frame)
        t = self.query_one(DataTable)
        rows = [(a.id, self._cells(a, colors)) for a in shown]
        if [a.id for a in shown] != [a.id for a in self._shown]:
            cursor = t.cursor_row
            t.clear()
            for key, cells in rows:
                t.add_row(*cells, key=key)
            if rows:
                t.move_cursor(row=min(cursor, len(rows) - 1))
        else:
            for key, cells in rows:
                for col, value in zip(
                    ("prio", "state", "message", "text", "since", "ack"), cells, strict=True
                ):
                    t.update_cell(key, col, value)
        self._shown = shown

    @staticmethod
    def _cells(a: AlarmView, colors: Mapping[str, str]) -> tuple[Text | str, ...]:
        style = alarm_style(a, colors)
        chatter = " ↯" if a.chattering else ""
        return (
            Text(f"{PRIORITY_SHAPE[a.priority]} {a.priority.upper()}", style=style),
            Text(STATE_LABEL.get(a.state, a.state) + chatter, style=style),
            Text(a.message, style=style),
            # A shelve says why and who (ISA-18.2), where the latest transition's text goes.
            f"shelved by {a.shelved_by}: {a.shelved_reason}"
            if a.state == "SHELVED" and a.shelved_reason
            else a.text,
            _clock(a.activated),
            a.acked_by or (f"until {_clock(a.shelved_until)}" if a.shelved_until else ""),
        )

    def _selected(self) -> AlarmView | None:
        t = self.query_one(DataTable)
        if not self._shown or not (0 <= t.cursor_row < len(self._shown)):
            return None
        return self._shown[t.cursor_row]

    def _run(self, name: str, **args: Any) -> None:
        # The engine takes who acts from the session and checks the role; a locked session
        # or a critical action gets the PIN prompt from the app, then one more try.
        console_app(self).send_command(name, **args)

    def action_ack(self) -> None:
        a = self._selected()
        if a is None:
            self.notify("no alarm selected", severity="warning")
            return
        self._run("alarm.ack", alarm=a.id)

    def action_ack_all(self) -> None:
        ids = [a.id for a in self._shown if a.state in ("UNACK", "RTN_UNACK")]
        if not ids:
            self.notify("nothing shown needs acknowledging", severity="warning")
            return
        self._run("alarm.ack_all", alarms=ids)

    def action_shelve(self) -> None:
        a = self._selected()
        if a is None:
            self.notify("no alarm selected", severity="warning")
            return

        def done(chosen: tuple[float, str] | None) -> None:
            if chosen:
                seconds, reason = chosen
                self._run("alarm.shelve", alarm=a.id, duration_s=seconds, reason=reason)

        self.app.push_screen(ShelveDialog(a.id), done)

    def action_unshelve(self) -> None:
        a = self._selected()
        if a is None or a.state != "SHELVED":
            self.notify("select a shelved alarm", severity="warning")
            return
        self._run("alarm.unshelve", alarm=a.id)

    def _again(self) -> None:
        if self._frame is not None:
            self.show_frame(self._frame)

    def action_state_filter(self) -> None:
        self.state_filter = (self.state_filter + 1) % len(STATE_FILTERS)
        self._again()

    def action_priority_filter(self) -> None:
        self.min_priority = (self.min_priority + 1) % len(PRIORITY_FILTERS)
        self._again()

    def action_show_normal(self) -> None:
        self.show_normal = not self.show_normal
        self._again()

    def action_journal(self) -> None:
        self.app.push_screen(JournalScreen())

    def action_kpis(self) -> None:
        self.app.push_screen(KpiScreen())


class JournalScreen(ShowsFrames, Screen[None]):
    """Every alarm transition, newest first, from the engine's journal."""

    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc")]
    DEFAULT_CSS = "JournalScreen #journal { height: 1fr; padding: 0 1; overflow-y: auto; }"

    def compose(self) -> ComposeResult:
        yield Static("loading the journal…", id="journal")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        try:
            entries = console_api(self).alarm_journal(limit=500)
        except Unavailable:
            entries = None
        if entries is None:
            text: Text | str = "the journal needs a running engine"
        else:
            text = Text()
            for e in entries:
                text.append(
                    f"{_clock(e['t'])}  {e['alarm']:<28} {e['from']:>14} → "
                    f"{e['to']:<14} {e['by']:<10} {e['text']}\n"
                )
            if not entries:
                text = "no alarm transitions recorded yet"
        self.app.call_from_thread(self.query_one("#journal", Static).update, text)

    def show_frame(self, frame: Frame) -> None:
        pass


KPI_WINDOWS = (
    ("1", 3600.0, "1 hour"),
    ("2", 8 * 3600.0, "8 hours"),
    ("3", 86400.0, "24 hours"),
    ("4", 7 * 86400.0, "7 days"),
)


def kpi_text(k: Mapping[str, Any], label: str) -> Text:
    """The figures of core.alarm_kpis as a person reads them: each with its target and a shape
    (✓ within, ✕ over), the most frequent, chattering, stale and standing alarms."""
    t = Text()
    t.append(f"Alarm KPIs, last {label} ({k['periods']} periods of 10 min): ", style="bold")
    t.append(f"{k['annunciations']} annunciated\n\n")
    for figure, value, target, ok in k["verdicts"]:
        t.append(
            f" {'✓' if ok else '✕'} {figure:<20} {value:<24} target {target}\n",
            style="" if ok else "bold",
        )
    prios = k.get("by_priority") or {}
    if prios:
        t.append(
            "\n by priority: " + ", ".join(f"{p} {n}" for p, n in sorted(prios.items())) + "\n"
        )
    t.append("\n Most frequent\n", style="bold")
    for a in k["top"] or []:
        t.append(f"   {a['count']:>5}  {a['share']:6.1%}  {a['priority']:<8} {a['alarm_id']}\n")
    if not k["top"]:
        t.append("   none in this window\n")
    for title, key in (("Chattering", "chattering"),):
        t.append(f"\n {title} (3 or more in 60 s)\n", style="bold")
        for a in k[key] or []:
            t.append(f"   {a['count']:>5}  {a['alarm_id']}\n")
        if not k[key]:
            t.append("   none\n")
    t.append("\n Standing now (active; ◆ stale: active over 24 h)\n", style="bold")
    for a in k["standing"] or []:
        since = local(a["since"]).strftime("%Y-%m-%d %H:%M") if a["since"] else "?"
        t.append(
            f"   {'◆' if a['stale'] else ' '} {a['state']:<6} since {since}  {a['alarm_id']}\n"
        )
    if not k["standing"]:
        t.append("   none\n")
    return t


class KpiScreen(ShowsFrames, Screen[None]):
    """Alarm KPIs after ISA-18.2 from the journal over a chosen window (1-4)."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        *[Binding(key, f"window({i})", label) for i, (key, _s, label) in enumerate(KPI_WINDOWS)],
    ]
    DEFAULT_CSS = "KpiScreen #kpis { height: 1fr; padding: 0 1; overflow-y: auto; }"

    def __init__(self) -> None:
        super().__init__()
        self.window = 2  # 24 hours
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Static("reading the alarm journal…", id="kpis")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.load()

    def action_window(self, i: int) -> None:
        self.window = i
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        _key, span, label = KPI_WINDOWS[self.window]
        frame = console_app(self).last_frame
        now = frame.t_wall if frame is not None else time.time()
        try:
            body: Text | str = kpi_text(console_api(self).alarm_kpis(now - span, now), label)
        except Unavailable:
            body = "alarm KPIs need a running engine (they are read from its alarm journal)"
        except Exception as e:  # noqa: BLE001 - shown, not raised: the console stays up
            body = f"alarm KPIs could not be read: {e}"
        self.text = body.plain if isinstance(body, Text) else body
        self.app.call_from_thread(self.query_one("#kpis", Static).update, body)

    def show_frame(self, frame: Frame) -> None:
        pass
