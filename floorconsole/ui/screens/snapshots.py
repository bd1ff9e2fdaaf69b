"""The snapshots screen: every configuration that ran here, the active one marked, a diff
between any two in plant words, rollback with one key (and a confirmation), the activation
history, and a remote change from the fleet held for an engineer here (a accepts, x defers)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Static

from floorconsole.console import FleetPendingView, Frame, Unavailable
from floorconsole.ui.format import local
from floorconsole.ui.live import ShowsFrames, console_api, console_app
from floorconsole.ui.screens.reason import ReasonDialog
from floorconsole.ui.widgets.footer import ConsoleFooter


def _when(t: float | None) -> str:
    return local(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no, with the question spelled out; Esc is no."""

    BINDINGS = [Binding("escape,n", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]
    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical { width: 64; height: auto; border: round $primary;
                               background: $surface; padding: 1 2; }
    ConfirmDialog Button { margin: 1 1 0 0; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield Button("Yes (y)", id="yes", variant="warning")
            yield Button("No (n, Esc)", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SnapshotScreen(ShowsFrames, Screen[None]):
    """Snapshots, newest first."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("r", "rollback", "Rollback"),
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("v", "history", "Activations"),
        Binding("a", "accept_remote", "Accept remote", show=False),
        Binding("x", "defer_remote", "Defer remote", show=False),
    ]

    DEFAULT_CSS = """
    SnapshotScreen DataTable { height: 1fr; }
    SnapshotScreen #below { height: 12; padding: 0 1; background: $surface;
                            border-top: solid $panel; overflow-y: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[dict[str, Any]] = []
        self.marked: str | None = None
        self._held: FleetPendingView | None = None

    def compose(self) -> ComposeResult:
        table: DataTable[Text | str] = DataTable(cursor_type="row")
        yield table
        yield Static(
            "space marks a snapshot; d shows what changed from the marked one to the "
            "selected one; r rolls back to the selected one",
            id="below",
        )
        yield ConsoleFooter()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for key, label, width in (
            ("active", "", 2),
            ("id", "Snapshot", 12),
            ("created", "Created", 19),
            ("author", "Author", 10),
            ("message", "Message", 40),
        ):
            t.add_column(label, key=key, width=width)
        t.focus()
        self.load()

    def show_frame(self, frame: Frame) -> None:
        if frame.fleet_pending != self._held:
            self._held = frame.fleet_pending
            if self._held is not None:
                self._message(held_text(self._held))
        active = next((r["short"] for r in self._rows if r["active"]), None)
        if self._rows and frame.snapshot and active != frame.snapshot:
            self.load()  # a rollback or apply happened (here or elsewhere)

    @work(thread=True, exclusive=True, exit_on_error=False, group="snapshots")
    def load(self) -> None:
        try:
            rows = list(reversed(console_api(self).snapshots()))
        except Unavailable:  # a recording keeps no snapshots: an empty list
            rows = []
        except Exception as e:  # an engine without a store: say so
            self.app.call_from_thread(self._message, f"no snapshots: {e}")
            return
        self.app.call_from_thread(self._fill, rows)

    def _fill(self, rows: list[dict[str, Any]]) -> None:
        t = self.query_one(DataTable)
        cursor = t.cursor_row
        t.clear()
        for r in rows:
            mark = "●" if r["active"] else ("◇" if r["id"] == self.marked else "")
            t.add_row(
                mark,
                r["short"],
                _when(r["created"]),
                r["author"],
                r["message"].splitlines()[0] if r["message"] else "",
                key=r["id"],
            )
        self._rows = rows
        if rows:
            t.move_cursor(row=min(cursor, len(rows) - 1))

    def _message(self, text: str | Text) -> None:
        self.query_one("#below", Static).update(text)

    def _selected(self) -> dict[str, Any] | None:
        t = self.query_one(DataTable)
        if not self._rows or not (0 <= t.cursor_row < len(self._rows)):
            return None
        return self._rows[t.cursor_row]

    def action_mark(self) -> None:
        r = self._selected()
        if r is not None:
            self.marked = r["id"]
            self._fill(self._rows)
            self._message(f"marked {r['short']}; select another and press d for the diff")

    def action_diff(self) -> None:
        r = self._selected()
        if r is None:
            return
        base = self.marked or next((x["id"] for x in self._rows if x["active"]), None)
        if base is None or base == r["id"]:
            self._message("mark a different snapshot first (space)")
            return
        lines = console_api(self).snapshot_diff(base, r["id"])
        text = Text(f"from {base[:12]} to {r['short']}:\n", style="bold")
        text.append("\n".join(lines) if lines else "no difference")
        self._message(text)

    def action_history(self) -> None:
        acts = console_api(self).activations(50)
        text = Text("activations, newest first:\n", style="bold")
        for a in acts:
            text.append(
                f"{_when(a['at'])}  {a['snapshot']}  {a['outcome']:<26} {a['by']:<12} {a['note']}\n"
            )
        self._message(text)

    def action_rollback(self) -> None:
        r = self._selected()
        if r is None:
            return
        if r["active"]:
            self.notify("that snapshot is already the active one", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._message(f"rolling back to {r['short']} …")
                console_app(self).send_command(
                    "snapshot.rollback", snapshot=r["id"], then=self._rolled_back
                )

        self.app.push_screen(
            ConfirmDialog(
                f"Roll back to snapshot {r['short']} ({r['author']}: {r['message']})?\n"
                "Its rules, devices and model replace the running ones, then it is "
                "health-checked; if the check fails the current one comes back."
            ),
            answered,
        )

    def _rolled_back(self, result: dict[str, Any]) -> None:
        self._message(str(result.get("message", "")))
        self.load()

    # -- a remote change held here ([fleet] remote_apply = "confirm") -----------------------

    def _held_or_say(self) -> FleetPendingView | None:
        if self._held is None:
            self.notify("no remote change waits on this edge", severity="warning")
        return self._held

    def action_accept_remote(self) -> None:
        p = self._held_or_say()
        if p is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._message(f"applying remote change {p.rollout} …")
                console_app(self).send_command(
                    "fleet.accept", rollout=p.rollout, then=self._rolled_back
                )

        self.app.push_screen(
            ConfirmDialog(held_text(p, keys=False) + "\n\nApply it now (health-checked)?"), answered
        )

    def action_defer_remote(self) -> None:
        p = self._held_or_say()
        if p is None:
            return

        def given(reason: str | None) -> None:
            if reason:
                console_app(self).send_command(
                    "fleet.defer", rollout=p.rollout, reason=reason, then=self._rolled_back
                )

        self.app.push_screen(
            ReasonDialog(
                f"Defer remote change {p.rollout}: why? (the fleet tool is told)",
                placeholder="e.g. batch 4711 running until 14:00",
                kept_by="the fleet tool is told",
                enter="defer",
            ),
            given,
        )


def held_text(p: FleetPendingView, *, keys: bool = True) -> str:
    """A held remote change in words, with the keys that decide it (not in the dialog that
    asks whether to apply it: there y and n do)."""
    what = f"bundle {p.bundle} as snapshot {p.snapshot}" if p.bundle else f"back to {p.snapshot}"
    text = f"Remote change {p.rollout} from {p.by or '?'} ({p.action}: {what}), received "
    text += f"{_when(p.received)}"
    if keys:
        text += (
            ", waits for an engineer here: a accepts it (applied and health-checked), x defers it"
        )
    if p.deferred_by:
        text += f"\ndeferred by {p.deferred_by}: {p.deferred_why}"
    return text
