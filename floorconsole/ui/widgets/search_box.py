"""The search box a list screen hides at the bottom: `/` opens it, typing filters at once,
Enter keeps the filter and goes back to the list (an empty Enter closes the box)."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import Input

SEARCH_ID = "search"


class SearchBoxMixin:
    """For a Screen with a disabled Input#search; the screen says what the text does
    (`_search_changed_to`) and which widget has the focus after (`_search_list`)."""

    def _search_changed_to(self, text: str) -> None:
        raise NotImplementedError

    def _search_list(self) -> Widget:
        raise NotImplementedError

    def _search_box(self) -> Input:
        return self.query_one(f"#{SEARCH_ID}", Input)  # type: ignore[attr-defined,no-any-return]

    def action_search(self) -> None:
        box = self._search_box()
        box.disabled = False
        box.add_class("open")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == SEARCH_ID:
            self._search_changed_to(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == SEARCH_ID:
            self._search_list().focus()
            if not event.value.strip():
                self._close_search()

    def _close_search(self) -> None:
        box = self._search_box()
        box.remove_class("open")
        box.disabled = True
