"""The key bar at the bottom of every screen; in kiosk mode the keys that matter to someone at a
panel (log in, leave kiosk, help) come first, where a narrow panel still shows them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from floorconsole.ui.live import console_app

KIOSK_FIRST = ("leave_kiosk", "login", "help")


class ConsoleFooter(Footer):
    """Textual's Footer; in kiosk mode with the app's session keys moved to the front."""

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        if not console_app(self).kiosk:
            yield from items
            return

        def rank(item: object) -> int:
            action = item.action if isinstance(item, FooterKey) else ""
            return KIOSK_FIRST.index(action) if action in KIOSK_FIRST else len(KIOSK_FIRST)

        yield from sorted(items, key=rank)  # stable: the rest keep their order
