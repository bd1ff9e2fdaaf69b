"""Pinned signals together: up to four on one time axis, each on its own scale and unit, a
cursor that reads every value at its time, and CSV export of what is shown."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from floorconsole.core.history_format import zone
from floorconsole.engine.frames import Frame, History
from floorconsole.ui.format import console_zone, zone_label
from floorconsole.ui.screens.detail import (
    CHART_MAX_POINTS,
    EXPORT_MAX_POINTS,
    LIVE_RELOAD_S,
    PRESETS,
    RangeError,
    TimeRange,
    export_path,
    parse_range,
    preset,
)
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.trend_chart import TrendChart, TrendSeries, csv_rows, iso_time


@dataclass(frozen=True, slots=True)
class _Request:
    seq: int
    since: float
    until: float


@dataclass(frozen=True, slots=True)
class _Loaded:
    request: _Request
    histories: tuple[History, ...]


class TrendScreen(Screen[None]):
    """The pinned signals over 5 min, 1 h, 24 h or a custom range. The cursor starts at the
    newest time; ← → move it a column (shift: ten), Home/End to the ends."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="Esc"),
        Binding("m", "range('5m')", "5min"),
        Binding("o", "range('1h')", "1h"),
        Binding("d", "range('24h')", "24h"),
        Binding("c", "custom", "Custom"),
        Binding("y", "y_scale", "Y-axis", show=False),
        Binding("left", "cursor(-1)", "◀", show=False),
        Binding("right", "cursor(1)", "▶", show=False),
        Binding("shift+left", "cursor(-10)", show=False),
        Binding("shift+right", "cursor(10)", show=False),
        Binding("home", "cursor_end(0)", show=False),
        Binding("end", "cursor_end(1)", show=False),
        Binding("x,f12", "export", "Export", key_display="x/F12"),
    ]

    AUTO_FOCUS = ""

    DEFAULT_CSS = """
    TrendScreen { layout: vertical; background: $background; }
    TrendScreen .line { height: 1; width: 100%; background: $panel; color: $foreground; }
    TrendScreen #cursor-line { background: $surface; }
    TrendScreen TrendChart { height: 1fr; background: $surface; color: $foreground; }
    TrendScreen #custom { display: none; }
    TrendScreen.-custom #custom { display: block; }
    TrendScreen #message { height: auto; max-height: 2; display: none; background: $surface; }
    TrendScreen #message.-shown { display: block; }
    """

    def __init__(self, signals: list[str]) -> None:
        super().__init__()
        self.signals = list(signals)
        self.time_range: TimeRange = preset("5m")
        self.range_key = "5m"
        self.y_axis = "data"  # "data" | "range"
        self.cursor: float | None = None  # None: follow the newest time
        self._units: dict[str, str] = {}
        self._ranges: dict[str, tuple[float, float] | None] = {}
        self._frame_t: float | None = None
        self._seq = 0
        self._loading = False
        self._shown: _Loaded | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="line")
        yield Static(id="range", classes="line")
        yield TrendChart(id="trend")
        yield Static(id="cursor-line", classes="line")
        yield Input(
            id="custom",
            compact=True,
            placeholder="90m · 2h · 1d · or 2026-11-23T10:00 2026-11-23T12:00 — Enter, Esc",
        )
        yield Static(id="message")
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        names = " · ".join(self.signals)
        self.query_one("#title", Static).update(
            Text(f" Trend of {len(self.signals)}: {names}", style="bold", no_wrap=True)
        )
        frame = getattr(self.app, "last_frame", None)
        if frame is not None:
            self.show_frame(frame)
        self.reload()
        self.set_interval(LIVE_RELOAD_S, self._live_reload)

    def show_frame(self, frame: Frame) -> None:
        """Called by the app's tick: units and engineering ranges of the pinned signals."""
        self._frame_t = frame.t_wall
        for view in frame.signals:
            if view.id in self.signals:
                self._units[view.id] = view.unit
                self._ranges[view.id] = view.range

    def _now(self) -> float:
        return self._frame_t if self._frame_t is not None else time.time()

    # -- loading --------------------------------------------------------------------------

    def reload(self) -> None:
        since, until = self.time_range.window(self._now())
        self._seq += 1
        self._loading = True
        self._load(_Request(self._seq, since, until))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="trend",
        name="trend",
        description="read the pinned signals' history for the trend",
    )
    def _load(self, request: _Request) -> _Loaded:
        api = self.app.api  # type: ignore[attr-defined]
        histories = tuple(
            api.history(s, request.since, request.until, CHART_MAX_POINTS) for s in self.signals
        )
        return _Loaded(request, histories)

    def _live_reload(self) -> None:
        if self.time_range.live and not self._loading and self.app.screen is self:
            self.reload()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "trend":
            if event.state is WorkerState.SUCCESS and isinstance(worker.result, _Loaded):
                if worker.result.request.seq == self._seq:
                    self._loading = False
                    self._shown = worker.result
                    self._draw()
            elif event.state is WorkerState.ERROR:
                self._loading = False
                self._say(f"history could not be read: {worker.error}")
        elif worker.group == "trend-export":
            if event.state is WorkerState.SUCCESS and isinstance(worker.result, tuple):
                path, rows = worker.result
                self.notify(f"exported {rows} rows to {path}", timeout=8)
            elif event.state is WorkerState.ERROR:
                self.notify(f"export failed: {worker.error}", severity="error", timeout=10)

    # -- drawing --------------------------------------------------------------------------

    def series(self) -> list[TrendSeries]:
        """What the chart shows: each pinned signal's history on its scale."""
        if self._shown is None:
            return []
        out = []
        for sig, h in zip(self.signals, self._shown.histories, strict=True):
            rng = self._ranges.get(sig) if self.y_axis == "range" else None
            out.append(TrendSeries(sig, h.unit or self._units.get(sig, ""), h, rng))
        return out

    def _window(self) -> tuple[float, float]:
        if self._shown is not None:
            return self._shown.request.since, self._shown.request.until
        return self.time_range.window(self._now())

    def _cursor_t(self) -> float:
        t0, t1 = self._window()
        return t1 if self.cursor is None else min(max(self.cursor, t0), t1)

    def _draw(self) -> None:
        t0, t1 = self._window()
        self.query_one(TrendChart).show(self.series(), t0, t1, self._cursor_t())
        self._show_range_line()
        self._show_cursor_line()

    def _show_range_line(self) -> None:
        text = Text(" Range ", no_wrap=True)
        for key in (*PRESETS, "custom"):
            label = PRESETS[key][0] if key in PRESETS else "custom"
            text.append(f"[{label}]" if key == self.range_key else f" {label} ")
            text.append(" ")
        t0, t1 = self._window()
        tz = zone(console_zone())  # the console's zone, as on the header's clock
        text.append(f"│ {iso_time(t0, tz)[11:19]} → {iso_time(t1, tz)[11:19]} {zone_label(t1)}")
        if self.time_range.live:
            text.append(" · live")
        self.query_one("#range", Static).update(text)

    def _show_cursor_line(self) -> None:
        t = self._cursor_t()
        where = "newest" if self.cursor is None else "←→ moves"
        self.query_one("#cursor-line", Static).update(
            Text(
                f" cursor {iso_time(t, zone(console_zone()))[:19].replace('T', ' ')} "
                f"{zone_label(t)} ({where})",
                no_wrap=True,
            )
        )

    def cursor_line(self) -> str:
        return str(self.query_one("#cursor-line", Static).render())

    def _say(self, message: str) -> None:
        box = self.query_one("#message", Static)
        box.update(Text(f" ✕ {message}") if message else "")
        box.set_class(bool(message), "-shown")

    # -- actions --------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.has_class("-custom"):
            self.remove_class("-custom")
            self.set_focus(None)
            return
        self.dismiss()

    def action_range(self, key: str) -> None:
        if key in PRESETS:
            self.range_key, self.time_range, self.cursor = key, preset(key), None
            self._say("")
            self.reload()

    def action_custom(self) -> None:
        self.add_class("-custom")
        self.query_one("#custom", Input).focus()

    @on(Input.Submitted, "#custom")
    def _custom_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            rng = parse_range(event.value, self._now())
        except RangeError as e:
            self._say(str(e))
            return
        self.time_range, self.range_key, self.cursor = rng, "custom", None
        self.remove_class("-custom")
        self.set_focus(None)
        self._say("")
        self.reload()

    def action_y_scale(self) -> None:
        self.y_axis = "range" if self.y_axis == "data" else "data"
        self._draw()

    def action_cursor(self, columns: int) -> None:
        t0, t1 = self._window()
        step = (t1 - t0) / self.query_one(TrendChart).plot_width()
        self.cursor = min(max(self._cursor_t() + columns * step, t0), t1)
        self._draw()

    def action_cursor_end(self, end: int) -> None:
        t0, t1 = self._window()
        self.cursor = t1 if end else t0
        self._draw()

    def action_export(self) -> None:
        if self._shown is None:
            self.notify("nothing to export yet: the history is still loading", severity="warning")
            return
        folder = Path(getattr(self.app, "export_dir", Path.cwd()))
        t0, t1 = self._window()
        self._export(t0, t1, folder)

    @work(
        thread=True,
        exit_on_error=False,
        group="trend-export",
        name="trend-export",
        description="write the pinned signals' shown range to CSV",
    )
    def _export(self, since: float, until: float, folder: Path) -> tuple[Path, int]:
        api = self.app.api  # type: ignore[attr-defined]
        series = [
            TrendSeries(s, h.unit or self._units.get(s, ""), h)
            for s in self.signals
            for h in [api.history(s, since, until, EXPORT_MAX_POINTS)]
        ]
        folder.mkdir(parents=True, exist_ok=True)
        path = export_path(folder, "trend_" + "+".join(self.signals), since, until)
        rows = csv_rows(series, zone(console_zone()))
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        return path, len(rows) - 1
