"""The overview (level 2): header, condition banner, signals, model and drift, links, keys."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input

from floorconsole.engine.frames import Frame, SignalView
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.model_panel import DriftPanel, ModelPanel, model_line
from floorconsole.ui.widgets.search_box import SearchBoxMixin
from floorconsole.ui.widgets.signal_table import SignalTable
from floorconsole.ui.widgets.status_bars import Banner, Bar, HeaderBar, LinkBar

FAULT_KEYS = ("1", "2", "3", "4", "5", "6")
FAULT_SHORT = {
    "imbalance": "imbal",
    "bearing": "bear",
    "misalignment": "misal",
    "sensor_drift": "drift",
    "stuck_sensor": "stuck",
    "dropout": "drop",
}
SIDE_MIN_WIDTH = 110  # below this the model and drift panels fold into one line

NO_MODEL = "Model\nno model configured"
NO_DRIFT = "Drift\nno model configured: nothing to compare"


def is_feature_drift(signal_id: str) -> bool:
    """Per-feature drift figures (dozens per model) live on the model screen, not in the
    overview list, unless searched for by name."""
    return ".drift.psi." in signal_id


def visible_rows(
    signals: tuple[SignalView, ...], *, search: str, only_not_good: bool, grouped: bool
) -> list[SignalView | str]:
    """The table's rows after search and filter; with grouping, a heading row per asset."""
    needle = search.strip().lower()
    picked = [
        s
        for s in signals
        if (needle in s.id.lower() if needle else not is_feature_drift(s.id))
        and (not only_not_good or s.quality != "GOOD")
    ]
    if not grouped:
        return list(picked)
    out: list[SignalView | str] = []
    for asset in sorted({s.asset for s in picked}):
        out.append(asset)
        out.extend(s for s in picked if s.asset == asset)
    return out


def row_detail(row: SignalView | None, colors: Mapping[str, str]) -> Text:
    """The line under the table: the selected signal's quality and why, in full, at any width
    (the Detail column needs room that an 80-column terminal does not have)."""
    if row is None:
        return Text(" select a signal (↑↓) to read its quality and source here")
    text = Text(f" {row.id}  ")
    if row.quality == "GOOD":
        text.append("● GOOD", style=colors.get("quality-good", ""))
    else:
        key = "quality-bad" if row.quality == "BAD" else "quality-uncertain"
        why = ": ".join(p for p in (row.reason, row.detail) if p and p != "no value yet")
        word = "BAD" if row.quality == "BAD" else "UNCERTAIN"
        shape = "✕" if row.quality == "BAD" else "◆"
        text.append(f"{shape} {word} {why}".rstrip(), style=f"bold {colors.get(key, '')}".strip())
    if row.malformed:
        text.append(f" · {row.malformed} malformed")
    text.append(f" · {row.source}")
    return text


class OverviewScreen(SearchBoxMixin, Screen[None]):
    """What the line looks like now. Redrawn only from frames, only what changed."""

    BINDINGS = [
        Binding("enter,d", "detail", "Detail", key_display="⏎/d"),
        Binding("slash,f7", "search", "Search", key_display="//F7"),
        Binding("b,f8", "filter_not_good", "Not GOOD", key_display="b/F8"),
        Binding("g", "group", "Group"),
        Binding("f2,A", "alarms", "Alarms", key_display="F2/A"),
        Binding("f3,R", "rules", "Rules", key_display="F3/R"),
        Binding("f4,M", "model", "Model", key_display="F4/M"),
        Binding("f5,S", "snapshots", "Snapshots", key_display="F5/S"),
        Binding("U", "uplink", "Uplink", show=False),
        Binding("p", "pin", "Pin", show=False),
        Binding("T", "trend", "Trend", show=False),
        Binding("L", "links", "Links", show=False),
        Binding("escape", "clear", "Clear", show=False),
        *[Binding(k, f"fault({i})", f"Fault {k}", show=False) for i, k in enumerate(FAULT_KEYS)],
    ]

    DEFAULT_CSS = """
    OverviewScreen #main { height: 1fr; }
    OverviewScreen #left { width: 1fr; }
    OverviewScreen #side { width: 38; border-left: solid $panel; }
    OverviewScreen #side.narrow { display: none; }
    OverviewScreen #model-line { height: 1; display: none; color: $muted; }
    OverviewScreen #model-line.narrow { display: block; }
    OverviewScreen #search { display: none; height: 3; }
    OverviewScreen #search.open { display: block; }
    OverviewScreen #filters { height: 1; color: $muted; }
    OverviewScreen #row-detail { height: 1; background: $panel; color: $foreground; }
    OverviewScreen .panel { padding: 0 1; }
    OverviewScreen #model-panel { height: 9; border-bottom: solid $panel; }
    OverviewScreen #drift-panel { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.search = ""
        self.only_not_good = False
        self.grouped = False
        self._frame: Frame | None = None

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Banner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                # Disabled until opened, so a hidden box never takes the keys typed.
                yield Input(
                    placeholder="search signals by name (Esc to clear)", id="search", disabled=True
                )
                yield Bar("", id="filters")
                yield SignalTable(id="signals")
                yield Bar("", id="row-detail")
            with Vertical(id="side"):
                yield ModelPanel(NO_MODEL, id="model-panel", classes="panel")
                yield DriftPanel(NO_DRIFT, id="drift-panel", classes="panel")
        yield Bar("model: no model configured", id="model-line")
        yield LinkBar(id="links")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one(SignalTable).focus()

    def on_resize(self) -> None:
        narrow = self.size.width < SIDE_MIN_WIDTH
        self.query_one("#side").set_class(narrow, "narrow")
        self.query_one("#model-line").set_class(narrow, "narrow")

    def show_frame(self, frame: Frame) -> None:
        self._frame = frame
        colors = self.app.theme_variables
        width = self.size.width
        self.query_one(HeaderBar).show(
            frame,
            width,
            self.app.who,  # type: ignore[attr-defined]
            self.app.control,
        )  # type: ignore[attr-defined]
        self.query_one(Banner).show(frame, colors)
        rows = visible_rows(
            frame.signals,
            search=self.search,
            only_not_good=self.only_not_good,
            grouped=self.grouped,
        )
        table = self.query_one(SignalTable)
        table.show(rows, colors)
        self._show_row_detail()
        self.query_one("#filters", Bar).set_text(self._filter_text(len(rows), len(frame.signals)))
        self.query_one(LinkBar).show(frame, colors, width)
        if self.query_one("#side").display:
            self.query_one(ModelPanel).show(frame, colors)
            self.query_one(DriftPanel).show(frame, colors)
        else:
            self.query_one("#model-line", Bar).set_text(model_line(frame))

    def _filter_text(self, shown: int, total: int) -> str:
        parts = []
        if self.search:
            parts.append(f"search {self.search!r}")
        if self.only_not_good:
            parts.append("only not GOOD")
        if self.grouped:
            parts.append("grouped by asset")
        frame = self._frame
        demo = ""
        if frame is not None and frame.demo is not None:
            demo = "  faults " + " ".join(
                f"{k}:{FAULT_SHORT.get(name, name)}{'*' if name in frame.demo.active else ''}"
                for k, name in zip(FAULT_KEYS, frame.demo.faults, strict=False)
            )
        hidden = sum(1 for s in frame.signals if is_feature_drift(s.id)) if frame else 0
        if hidden and not self.search:
            parts.append(f"{hidden} drift figures on F4")
        head = f" {shown}/{total} signals" + (f" · {' · '.join(parts)}" if parts else "")
        room = self.query_one("#filters").size.width or self.size.width
        if demo and len(head + demo) > room:
            # A narrow table keeps the demo's fault keys: they come first, the counts after.
            return f" {demo.strip()} ·{head}"
        return head + demo

    def _refresh_now(self) -> None:
        if self._frame is not None:
            self.show_frame(self._frame)

    # -- actions --------------------------------------------------------------------------

    def action_detail(self) -> None:
        sig = self.query_one(SignalTable).selected_signal
        if sig is None:
            self.notify("select a signal row first", severity="warning")
            return
        from floorconsole.ui.screens.detail import SignalDetailScreen

        self.app.push_screen(SignalDetailScreen(sig))

    def _show_row_detail(self) -> None:
        row = self.query_one(SignalTable).selected_row
        self.query_one("#row-detail", Bar).set_text(row_detail(row, self.app.theme_variables))

    @on(SignalTable.Highlighted)
    def _row_highlighted(self, event: SignalTable.Highlighted) -> None:
        self._show_row_detail()

    def action_pin(self) -> None:
        """Pin the selected signal for the trend (up to four), or unpin it."""
        sig = self.query_one(SignalTable).selected_signal
        if sig is None:
            self.notify("select a signal row first", severity="warning")
            return
        from floorconsole.ui.widgets.trend_chart import MAX_PINNED

        pinned: list[str] = self.app.pinned  # type: ignore[attr-defined]
        if sig in pinned:
            pinned.remove(sig)
            self.notify(f"unpinned {sig} ({len(pinned)} pinned; T shows them)", timeout=3)
        elif len(pinned) >= MAX_PINNED:
            self.notify(
                f"{MAX_PINNED} signals pinned at most: unpin one first (p on it)",
                severity="warning",
            )
        else:
            pinned.append(sig)
            self.notify(f"pinned {sig} ({len(pinned)} of {MAX_PINNED}; T shows them)", timeout=3)

    def action_trend(self) -> None:
        """The pinned signals together; with none pinned, the selected one."""
        from floorconsole.ui.screens.trend import TrendScreen

        pinned: list[str] = list(self.app.pinned)  # type: ignore[attr-defined]
        if not pinned:
            sig = self.query_one(SignalTable).selected_signal
            if sig is None:
                self.notify("pin signals first (p on a row), then T", severity="warning")
                return
            pinned = [sig]
        self.app.push_screen(TrendScreen(pinned))

    @on(SignalTable.Selected)
    def _row_selected(self, event: SignalTable.Selected) -> None:
        self.action_detail()

    def action_alarms(self) -> None:
        from floorconsole.ui.screens.alarms import AlarmScreen

        self.app.push_screen(AlarmScreen())

    def action_rules(self) -> None:
        from floorconsole.ui.screens.rules import RulesScreen

        self.app.push_screen(RulesScreen())

    def action_links(self) -> None:
        from floorconsole.ui.screens.links import LinksScreen

        self.app.push_screen(LinksScreen())

    def action_uplink(self) -> None:
        from floorconsole.ui.screens.uplink import UplinkScreen

        self.app.push_screen(UplinkScreen())

    def action_snapshots(self) -> None:
        from floorconsole.ui.screens.snapshots import SnapshotScreen

        self.app.push_screen(SnapshotScreen())

    def action_model(self) -> None:
        frame = self._frame
        if frame is None or not frame.models:
            self.notify("no model configured in this plant file", severity="warning")
            return
        from floorconsole.ui.screens.drift import DriftScreen

        self.app.push_screen(DriftScreen(frame.models[0].id))

    def _search_changed_to(self, text: str) -> None:
        self.search = text
        self._refresh_now()

    def _search_list(self) -> SignalTable:
        return self.query_one(SignalTable)

    def action_clear(self) -> None:
        self._search_box().value = ""
        self._close_search()
        self.search = ""
        self.query_one(SignalTable).focus()
        self._refresh_now()

    def action_filter_not_good(self) -> None:
        self.only_not_good = not self.only_not_good
        self._refresh_now()

    def action_group(self) -> None:
        self.grouped = not self.grouped
        self._refresh_now()

    def action_fault(self, index: int) -> None:
        frame = self._frame
        if frame is None or frame.demo is None or index >= len(frame.demo.faults):
            self.notify("fault injection exists only in the demo", severity="warning")
            return
        fault = frame.demo.faults[index]
        self.app.send_command("demo.toggle", fault=fault)  # type: ignore[attr-defined]
