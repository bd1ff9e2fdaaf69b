"""The question before a console stops the engine it runs: who else loses their screen."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def attached_words(others: int) -> str:
    if others == 1:
        return "1 other console is attached: it loses its engine too."
    if others:
        return f"{others} other consoles are attached: they lose their engine too."
    return "No other console is attached."


def kiosk_stop_note(others: int) -> str:
    """Said in the leave-kiosk dialog of `run`/`demo --kiosk`, where the engine stops with the
    console: the admin's PIN is the confirmation, and the audit trail names the admin."""
    return (
        "Leaving stops the engine: polling, history, rules, alarms and the uplink stop with "
        f"it. {attached_words(others)} The admin's PIN confirms; the audit trail names them."
    )


def stop_question(others: int, who: str) -> str:
    """The dialog's words: what stops, for whom, and who will be named in the audit trail."""
    attached = attached_words(others)
    return (
        "Stop the engine?\n\n"
        "Polling, history, rules, alarms and the uplink stop with it.\n"
        f"{attached}\n"
        f"The audit trail records that {who} stopped it."
    )


class StopEngineDialog(ModalScreen[bool]):
    """Stop the engine (y) or stay (n, Esc). Stay is the default: Enter does not stop."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Stay"),
        Binding("y", "answer(True)", "Stop the engine"),
    ]
    DEFAULT_CSS = """
    StopEngineDialog { align: center middle; }
    StopEngineDialog > Vertical { width: 66; max-width: 100%; height: auto; border: round $primary;
                                  background: $surface; padding: 0 1; }
    StopEngineDialog Horizontal { height: auto; }
    StopEngineDialog Button { margin: 1 1 0 0; }
    """

    def __init__(self, others: int, who: str) -> None:
        super().__init__()
        self.others = others
        self.who = who

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(stop_question(self.others, self.who), id="question")
            with Horizontal():
                yield Button("Stay (n, Esc)", id="stay")
                yield Button("Stop the engine (y)", id="stop", variant="error")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
