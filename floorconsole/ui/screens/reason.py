"""A dialog that asks why (a promotion, a deferred remote change): the answer is audited."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class ReasonDialog(ModalScreen[str | None]):
    """Why this change: the reason typed, or None when cancelled (Esc)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]
    DEFAULT_CSS = """
    ReasonDialog { align: center middle; }
    ReasonDialog > Vertical { width: 60; height: auto; border: round $primary;
                              background: $surface; padding: 0 1; }
    """

    def __init__(
        self,
        question: str,
        *,
        placeholder: str = "e.g. recalibrated after the overhaul, WO 1234",
        kept_by: str = "the audit trail keeps it",
        enter: str = "go on",
    ) -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.kept_by = kept_by
        self.enter = enter

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield Input(placeholder=self.placeholder, id="reason")
            yield Static(f"Enter to {self.enter} · Esc to cancel")

    @on(Input.Submitted)
    def _given(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.notify(f"say why first: {self.kept_by}", severity="warning")
            return
        self.dismiss(event.value.strip())

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
