"""The fleet view: every edge on the plant broker in one list (80x24 and up, over SSH), Enter
for an edge's detail with its activation history. A small App of its own: it reads a
core.fleet.FleetState that the fleet tool's broker client keeps current (under its lock), and
imports nothing from the adapters."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from floorconsole.core.fleet import ROW_HEADER, FleetState, detail_text, row_line

REFRESH_S = 1.0


def fleet_frame(
    state: FleetState, now: float, *, site: str | None = None, tags: Sequence[str] = ()
) -> tuple[str, list[tuple[str, str]]]:
    """(the summary line, [(edge, its line)]) for the list: what one refresh draws."""
    rows = state.rows(site=site, tags=tags)
    online = sum(1 for r in rows if r.online)
    unacked = sum(sum(r.alarms.values()) for r in rows)
    held = sum(1 for r in rows if r.held and not r.decommissioned)
    decom = sum(1 for r in rows if r.decommissioned)
    summary = (
        f"{len(rows)} edge(s), {online} online, {len(rows) - online} offline, "
        + (f"{held} held, " if held else "")  # a change waits for an engineer there
        + (f"{decom} decommissioned, " if decom else "")
        + f"{unacked} unacked alarm(s)"
        + (f"; {state.bad_messages} bad message(s)" if state.bad_messages else "")
    )
    return summary, [(r.edge, row_line(r, now)) for r in rows]


class EdgeDetail(Screen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "back")]

    def __init__(self, edge: str) -> None:
        super().__init__()
        self.edge = edge

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_detail()
        self.set_interval(REFRESH_S, self.refresh_detail)

    def refresh_detail(self) -> None:
        app = self.app
        assert isinstance(app, FleetApp)
        with app.lock:
            text = detail_text(app.state, self.edge, time.time())
        self.query_one("#detail", Static).update(text)


class FleetApp(App[None]):
    CSS = """
    #summary { height: 1; background: $primary; color: $text; }
    #header { height: 1; color: $text-muted; }
    OptionList { height: 1fr; border: none; }
    """
    # enter has priority over the list's own (which hides it from the footer); it does
    # nothing on an edge's detail (check_action), where it pushed a second detail before
    BINDINGS = [Binding("q", "quit", "quit"), Binding("enter", "detail", "detail", priority=True)]
    TITLE = "floorconsole fleet"

    def __init__(
        self,
        state: FleetState,
        lock: threading.Lock,
        *,
        site: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.state, self.lock, self.site, self.tags = state, lock, site, list(tags)
        self._lines: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(" " + ROW_HEADER, id="header")  # the list pads its rows by one
        yield OptionList(id="edges")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_list()
        self.set_interval(REFRESH_S, self.refresh_list)

    def refresh_list(self) -> None:
        with self.lock:
            summary, lines = fleet_frame(self.state, time.time(), site=self.site, tags=self.tags)
        self.query_one("#summary", Static).update(summary)
        if lines == self._lines:
            return
        self._lines = lines
        ol = self.query_one("#edges", OptionList)
        keep = ol.highlighted
        ol.clear_options()
        ol.add_options([Option(text, id=edge) for edge, text in lines])
        if lines:
            ol.highlighted = min(keep or 0, len(lines) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "detail" and isinstance(self.screen, EdgeDetail):
            return False
        return True

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.push_screen(EdgeDetail(event.option.id))

    def action_detail(self) -> None:
        ol = self.query_one("#edges", OptionList)
        if ol.highlighted is not None and self._lines:
            self.push_screen(EdgeDetail(self._lines[ol.highlighted][0]))


def run_fleet_view(
    state: FleetState, lock: threading.Lock, *, site: str | None = None, tags: Sequence[str] = ()
) -> None:
    FleetApp(state, lock, site=site, tags=tags).run()
