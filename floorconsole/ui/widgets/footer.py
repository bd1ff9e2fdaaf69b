"""The key bar at the bottom of every screen; in kiosk mode the keys that matter to someone at a
panel (log in, leave kiosk, help) come first, where a narrow panel still shows them; elsewhere
the keys to the other screens, help, login and quit come first, and below 100 columns the bar
is compact."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KIOSK_FIRST = ("leave_kiosk", "login", "help")
# What a footer cut short must keep (at 80 columns, and at 100 where it is cut too): the way to
# alarms, rules, the model, help, login and out.
NARROW_FIRST = ("alarms", "rules", "model", "help", "login", "quit", "leave_kiosk")
NARROW_WIDTH = 100


class ConsoleFooter(Footer):
    """Textual's Footer, with the keys that matter moved to the front."""

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        kiosk = bool(getattr(self.app, "kiosk", False))
        first = KIOSK_FIRST if kiosk else NARROW_FIRST

        def rank(item: object) -> int:
            action = item.action if isinstance(item, FooterKey) else ""
            action = action.rsplit(".", 1)[-1]
            return first.index(action) if action in first else len(first)

        yield from sorted(items, key=rank)  # stable: the rest keep their order

    def on_mount(self) -> None:
        self._narrow = self.app.size.width < NARROW_WIDTH
        self.compact = self._narrow

    def on_resize(self, event: events.Resize) -> None:
        narrow = self.app.size.width < NARROW_WIDTH
        if narrow != getattr(self, "_narrow", None):
            self._narrow = narrow
            self.compact = narrow
            self.refresh(recompose=True)
