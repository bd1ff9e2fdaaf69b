"""The detail of one signal: value, quality and age; history over a range with statistics and
quality changes; the latest waveform block; CSV export of the shown range."""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from floorconsole.core.history_format import csv_value, iso_ms, zone
from floorconsole.core.units import parse_duration
from floorconsole.engine.api import format_value
from floorconsole.engine.frames import Frame, History, HistoryPoint, SignalView
from floorconsole.ui.format import (
    age_text,
    console_zone,
    local,
    quality_text,
    stale_extra_s,
    value_text,
    zone_label,
)
from floorconsole.ui.widgets.chart import TimeChart, WaveformChart, initial_quality
from floorconsole.ui.widgets.footer import ConsoleFooter

LIVE_RELOAD_S = 5.0  # a live range is read again this often, not at every tick
WAVEFORM_REDRAW_S = 1.0  # the waveform block is redrawn at most this often (slow SSH)
CHART_MAX_POINTS = 4000  # far more than a 160-column chart has dots; the engine strides beyond
EXPORT_MAX_POINTS = 10_000_000  # an export asks for every sample
MAX_RANGE_S = 400 * 86400.0
PRESETS: dict[str, tuple[str, float]] = {
    "5m": ("5 min", 300.0),
    "1h": ("1 h", 3600.0),
    "24h": ("24 h", 86400.0),
}
CSV_HEADER = ("time", "signal", "value", "quality")
RANGE_HINT = "try 90m, 2h, 1d, or 2026-11-23T10:00 2026-11-23T12:00 (local; Z = UTC)"


class RangeError(ValueError):
    """A custom range that cannot be read, with a message that says what is expected."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A live window back from now, or a fixed window (until=None: from `since` until now)."""

    label: str
    back_s: float | None = None
    since: float | None = None
    until: float | None = None

    @property
    def live(self) -> bool:
        return self.back_s is not None or self.until is None

    def window(self, now: float) -> tuple[float, float]:
        if self.back_s is not None:
            return now - self.back_s, now
        assert self.since is not None
        return self.since, self.until if self.until is not None else now


def preset(key: str) -> TimeRange:
    label, span = PRESETS[key]
    return TimeRange(label, back_s=span)


def _parse_time(text: str, now: float) -> float:
    """Epoch seconds from an ISO date-time, or a bare HH:MM[:SS] meaning today; local unless
    the text carries Z or an offset."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = dtime.fromisoformat(text)
        except ValueError:
            raise RangeError(f"{text!r} is not a time; {RANGE_HINT}") from None
        dt = datetime.combine(local(now).date(), clock)
    if dt.tzinfo is None:  # a time without an offset is in the console's zone
        dt = dt.replace(tzinfo=zone(console_zone()))
    return dt.timestamp()


def _split_times(text: str) -> list[str]:
    for sep in (" to ", "..", "/", "→"):
        if sep in text:
            return [p.strip() for p in text.split(sep, 1)]
    parts = text.split()
    if len(parts) == 4:  # "2026-11-23 10:00 2026-11-23 12:00"
        return [f"{parts[0]} {parts[1]}", f"{parts[2]} {parts[3]}"]
    if len(parts) > 2:
        raise RangeError(f"{text!r} has {len(parts)} parts; {RANGE_HINT}")
    return parts


def _short_time(t: float) -> str:
    return local(t).strftime("%m-%d %H:%M")


def parse_range(text: str, now: float) -> TimeRange:
    """A custom range from what a user typed; RangeError with a readable message otherwise."""
    text = text.strip()
    if not text:
        raise RangeError(f"the range is empty; {RANGE_HINT}")
    if re.fullmatch(r"\d+(\.\d+)?\s*(ms|s|m|min|h|d)", text):
        back = parse_duration(text)
        if back <= 0:
            raise RangeError(f"{text!r} is no time at all; {RANGE_HINT}")
        if back > MAX_RANGE_S:
            raise RangeError(f"{text!r} is longer than {MAX_RANGE_S / 86400:.0f} days")
        return TimeRange(f"last {text}", back_s=back)
    times = [_parse_time(p, now) for p in _split_times(text)]
    if len(times) == 1:
        if times[0] >= now:
            raise RangeError(f"{text!r} is not in the past; {RANGE_HINT}")
        return TimeRange(f"since {_short_time(times[0])}", since=times[0])
    since, until = times
    if until <= since:
        raise RangeError(
            f"the end ({_short_time(until)}) must come after the start ({_short_time(since)})"
        )
    if until - since > MAX_RANGE_S:
        raise RangeError(f"the range is longer than {MAX_RANGE_S / 86400:.0f} days")
    return TimeRange(f"{_short_time(since)} → {_short_time(until)}", since=since, until=until)


@dataclass(frozen=True, slots=True)
class RangeStats:
    """Figures over the usable values (not BAD, with a value) of a range."""

    points: int
    usable: int
    uncertain: int
    bad: int
    minimum: float | None
    maximum: float | None
    mean: float | None


def range_stats(points: Sequence[HistoryPoint]) -> RangeStats:
    vals = [
        p.value
        for p in points
        if p.quality != "BAD" and p.value is not None and math.isfinite(p.value)
    ]
    return RangeStats(
        points=len(points),
        usable=len(vals),
        uncertain=sum(1 for p in points if p.quality == "UNCERTAIN"),
        bad=sum(1 for p in points if p.quality == "BAD"),
        minimum=min(vals) if vals else None,
        maximum=max(vals) if vals else None,
        mean=math.fsum(vals) / len(vals) if vals else None,
    )


def csv_rows(history: History) -> list[tuple[str, str, str, str]]:
    """One row per point, as `floorconsole history --format csv` writes them: ISO 8601 UTC time
    with ms, signal, value, quality with the reason of the change that led to it."""
    marks = sorted(history.quality_changes, key=lambda m: m.t)
    rows = []
    i, reason, reason_q = 0, "", "GOOD"
    for p in history.points:
        while i < len(marks) and marks[i].t <= p.t:
            reason, reason_q = marks[i].reason, marks[i].quality
            i += 1
        q = p.quality
        if q != "GOOD" and q == reason_q and reason:
            q = f"{q} {reason}"
        rows.append((iso_ms(p.t, console_zone()), history.signal, csv_value(p.value), q))
    return rows


def _stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def export_path(folder: Path, signal: str, since: float, until: float) -> Path:
    """'<folder>/motor1.current_20261123T100000Z_20261123T120000Z.csv', never an existing file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", signal) or "signal"
    base = f"{safe}_{_stamp(since)}_{_stamp(until)}"
    path = folder / f"{base}.csv"
    n = 1
    while path.exists():
        path = folder / f"{base}-{n}.csv"
        n += 1
    return path


def write_csv(history: History, path: Path) -> int:
    """Write the history as CSV to a new file; returns the number of rows."""
    rows = csv_rows(history)
    with open(path, "x", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    return len(rows)


@dataclass(frozen=True, slots=True)
class _Request:
    seq: int
    since: float
    until: float
    live: bool


@dataclass(frozen=True, slots=True)
class _Loaded:
    request: _Request
    history: History
    stats: RangeStats


@dataclass(frozen=True, slots=True)
class _Exported:
    path: Path
    rows: int
    truncated: bool


def _line(text: Text | str) -> Text:
    out = text if isinstance(text, Text) else Text(text)
    out.no_wrap = True
    out.overflow = "ellipsis"
    out.end = ""
    return out


class SignalDetailScreen(Screen[None]):
    """One signal in depth. The value line follows the app's frames; the chart is read through
    the API in a thread worker when the range changes, and every few seconds for live ranges."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back", key_display="Esc"),
        Binding("m", "range('5m')", "5min"),
        Binding("o", "range('1h')", "1h"),
        Binding("d", "range('24h')", "24h"),
        Binding("c", "custom", "Custom"),
        Binding("y", "y_scale", "Y-axis", show=False),  # in the help; the footer is full at 80
        Binding("x,f12", "export", "Export", key_display="x/F12"),
        Binding("w", "write", "Write…"),
    ]

    AUTO_FOCUS = ""  # the range entry is hidden until asked for: keys go to the screen

    DEFAULT_CSS = """
    SignalDetailScreen { layout: vertical; background: $background; }
    SignalDetailScreen .line { height: 1; width: 100%; background: $panel; color: $foreground; }
    SignalDetailScreen #now, SignalDetailScreen #stats { background: $surface; }
    SignalDetailScreen #history { height: 2fr; min-height: 4; }
    SignalDetailScreen #wave-box { height: 1fr; min-height: 4; display: none; }
    SignalDetailScreen.-waveform #wave-box { display: block; }
    SignalDetailScreen #wave { height: 1fr; min-height: 3; }
    SignalDetailScreen #custom { display: none; }
    SignalDetailScreen.-custom #custom { display: block; }
    SignalDetailScreen #message { height: auto; max-height: 2; display: none;
                                  background: $surface; }
    SignalDetailScreen #message.-shown { display: block; }
    """

    def __init__(self, signal_id: str) -> None:
        super().__init__()
        self.signal_id = signal_id
        self.time_range: TimeRange = preset("5m")
        self.range_key = "5m"  # "5m" | "1h" | "24h" | "custom"
        self.y_axis = "data"  # "data" | "range"
        self.stats: RangeStats | None = None
        self.message = ""
        self._view: SignalView | None = None
        self._frame_t: float | None = None
        self._seq = 0
        self._loading = False
        self._shown: _Loaded | None = None
        self._wave_drawn = -math.inf
        self._texts: dict[str, Text] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="line")
        yield Static(id="now", classes="line")
        yield Static(id="range", classes="line")
        yield Static(id="stats", classes="line")
        yield TimeChart(id="history")
        with Vertical(id="wave-box"):
            yield Static(id="wave-title", classes="line")
            yield WaveformChart(id="wave")
        yield Input(
            id="custom",
            compact=True,
            placeholder="90m · 2h · 1d · or "
            "2026-11-23T10:00 2026-11-23T12:00 — Enter to apply, Esc to cancel",
        )
        yield Static(id="message")
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        self._set("title", Text(f" {self.signal_id}", style="bold"))
        frame = getattr(self.app, "last_frame", None)
        if frame is not None:
            self.show_frame(frame)
        self._show_range_line()
        self.reload()
        self.set_interval(LIVE_RELOAD_S, self._live_reload)

    # -- frames ---------------------------------------------------------------------------

    def show_frame(self, frame: Frame) -> None:
        """Called by the app's tick: the value line, and the waveform at most once a second."""
        self._frame_t = frame.t_wall
        view = next((s for s in frame.signals if s.id == self.signal_id), None)
        colors = self.app.theme_variables
        if view is None:
            self._set(
                "now",
                Text(
                    f" ✕ {self.signal_id} is not in the running configuration",
                    style=f"bold {colors.get('quality-bad', '')}".strip(),
                ),
            )
            return
        self._view = view
        rng = f"{view.range[0]:g}–{view.range[1]:g}" if view.range else "none"
        title = Text(f" {view.id}", style="bold")
        title.append(f" · {view.source or 'no source'} · unit {view.unit or '—'} · range {rng}")
        self._set("title", title)
        now = Text(" ")
        now.append_text(value_text(view.value_text, view.unit, view.quality, colors))
        now.append("  ")
        now.append_text(quality_text(view.quality, view.reason, colors))
        # A stale frame is the last one received: its ages go on growing while it is shown.
        now.append(f"  age {age_text(view.age_s + stale_extra_s(self.app, frame))}")
        if view.detail and view.quality != "GOOD":
            now.append(f"  {view.detail}", style=colors.get("muted", ""))
        self._set("now", now)
        if view.kind == "waveform":
            self.add_class("-waveform")
            if time.monotonic() - self._wave_drawn >= WAVEFORM_REDRAW_S:
                self._wave_drawn = time.monotonic()
                self.query_one(WaveformChart).show(view.waveform, view.quality)
                wt = Text(f" latest block · {len(view.waveform)} samples · {view.value_text}")
                if view.quality != "GOOD":
                    wt.append("  ")
                    wt.append_text(quality_text(view.quality, view.reason, colors, short=True))
                self._set("wave-title", wt)
        else:
            self.remove_class("-waveform")

    def _set(self, widget_id: str, text: Text) -> None:
        """Update a one-line Static only when its text changed: nothing to send otherwise."""
        line = _line(text)
        old = self._texts.get(widget_id)
        if old is not None and old.plain == line.plain and old.spans == line.spans:
            return
        self._texts[widget_id] = line
        self.query_one(f"#{widget_id}", Static).update(line)

    def line_text(self, widget_id: str) -> str:
        """The plain text of one of the top lines (title, now, range, stats, wave-title)."""
        line = self._texts.get(widget_id)
        return line.plain if line is not None else ""

    # -- history --------------------------------------------------------------------------

    def _now(self) -> float:
        return self._frame_t if self._frame_t is not None else time.time()

    def reload(self, *, quiet: bool = False) -> None:
        """Read the chart's history for the current range, in a thread worker."""
        since, until = self.time_range.window(self._now())
        self._seq += 1
        self._loading = True
        if not quiet:
            self._show_stats_line()
        self._load(_Request(self._seq, since, until, self.time_range.live))

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="history",
        name="history",
        description="read a signal's history for the detail chart",
    )
    def _load(self, request: _Request) -> _Loaded:
        history = self.app.api.history(  # type: ignore[attr-defined]
            self.signal_id, request.since, request.until, CHART_MAX_POINTS
        )
        return _Loaded(request, history, range_stats(history.points))

    def _live_reload(self) -> None:
        # A slow query is never stacked on itself, and nothing is read under another screen.
        if self.time_range.live and not self._loading and self.app.screen is self:
            self.reload(quiet=True)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "history":
            if event.state is WorkerState.SUCCESS and isinstance(worker.result, _Loaded):
                if worker.result.request.seq == self._seq:
                    self._loading = False
                    self._apply(worker.result)
            elif event.state is WorkerState.ERROR:
                self._loading = False
                self._say(f"history could not be read: {worker.error}")
                self._show_stats_line()
        elif worker.group == "export":
            if event.state is WorkerState.SUCCESS and isinstance(worker.result, _Exported):
                done = worker.result
                extra = " (downsampled by the engine)" if done.truncated else ""
                self.notify(f"exported {done.rows} rows{extra} to {done.path}", timeout=8)
            elif event.state is WorkerState.ERROR:
                self.notify(f"export failed: {worker.error}", severity="error", timeout=10)

    def _y_range(self) -> tuple[float, float] | None:
        if self.y_axis == "range" and self._view is not None and self._view.range is not None:
            return self._view.range
        return None

    def _apply(self, loaded: _Loaded) -> None:
        self._shown = loaded
        self.stats = loaded.stats
        current = self._view.quality if (self._view is not None and loaded.request.live) else None
        self.query_one(TimeChart).show(
            loaded.history,
            y_range=self._y_range(),
            start_quality=initial_quality(loaded.history, current),
        )
        self._show_range_line()
        self._show_stats_line()

    @property
    def shown_history(self) -> History | None:
        """The history the chart shows now (what an export writes)."""
        return self._shown.history if self._shown is not None else None

    def _show_range_line(self) -> None:
        text = Text(" Range ")
        for key in (*PRESETS, "custom"):
            label = PRESETS[key][0] if key in PRESETS else "custom"
            if key == self.range_key:
                text.append(f"[{label}]", style="bold reverse")
            else:
                text.append(f" {label} ")
            text.append(" ")
        since, until = (
            (self._shown.request.since, self._shown.request.until)
            if self._shown
            else self.time_range.window(self._now())
        )
        fmt = "%H:%M:%S" if until - since < 86400 else "%m-%d %H:%M"
        text.append(
            f"│ {local(since).strftime(fmt)} → {local(until).strftime(fmt)} {zone_label(until)}"
        )
        if self.range_key == "custom":
            text.append(f" ({self.time_range.label})")
        if self.time_range.live:
            text.append(" · live")
        self._set("range", text)

    def _show_stats_line(self) -> None:
        colors = self.app.theme_variables
        s = self.stats
        if s is None:
            self._set("stats", Text(" loading…", style=colors.get("muted", "")))
            return
        unit = self._shown.history.unit if self._shown is not None else ""
        if not unit and self._view is not None:
            unit = self._view.unit
        u = f" {unit}" if unit else ""
        text = Text(" ")
        labels = self._view.labels if self._view is not None else ()
        if s.usable and labels and self._shown is not None:
            # An enumerated signal's history in its words, not a mean of codes.
            codes = [p.value for p in self._shown.history.points if p.quality != "BAD"]
            seen = [
                w for i, w in enumerate(labels) if i in {int(c) for c in codes if c is not None}
            ]
            text.append(f"states {' · '.join(seen) or '—'}  · ")
        elif s.usable:
            assert s.minimum is not None and s.maximum is not None and s.mean is not None
            text.append(
                f"min {format_value(s.minimum)}{u}  max {format_value(s.maximum)}{u}  "
                f"mean {format_value(s.mean)}{u}  · "
            )
        else:
            text.append("no usable values · ", style=colors.get("muted", ""))
        text.append(f"{s.points} points")
        if s.bad:
            text.append(f", {s.bad} ✕ BAD", style=f"bold {colors.get('quality-bad', '')}".strip())
        if s.uncertain:
            text.append(
                f", {s.uncertain} ◆ UNCERT",
                style=f"bold {colors.get('quality-uncertain', '')}".strip(),
            )
        if self._shown is not None and self._shown.history.truncated:
            text.append(" · downsampled", style=colors.get("muted", ""))
        if self._loading:
            text.append(" · loading…", style=colors.get("muted", ""))
        self._set("stats", text)

    # -- messages -------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        """A message line above the footer (a bad range, a failed read); '' hides it."""
        self.message = message
        box = self.query_one("#message", Static)
        if not message:
            box.remove_class("-shown")
            box.update("")
            return
        colors = self.app.theme_variables
        box.update(Text(f" ✕ {message}", style=f"bold {colors.get('alarm-medium', '')}".strip()))
        box.add_class("-shown")

    # -- actions --------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.has_class("-custom"):
            self._close_custom()
            return
        self.dismiss()

    def action_range(self, key: str) -> None:
        if key not in PRESETS:
            return
        self.range_key = key
        self.time_range = preset(key)
        self._say("")
        self._show_range_line()
        self.reload()

    def action_custom(self) -> None:
        self.add_class("-custom")
        self.query_one("#custom", Input).focus()

    def _close_custom(self) -> None:
        self.remove_class("-custom")
        self._say("")
        self.set_focus(None)

    @on(Input.Submitted, "#custom")
    def _custom_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            rng = parse_range(event.value, self._now())
        except RangeError as e:
            self._say(str(e))
            return
        self.time_range = rng
        self.range_key = "custom"
        self._close_custom()
        self._show_range_line()
        self.reload()

    def action_y_scale(self) -> None:
        if self._view is None or self._view.range is None:
            self.notify(f"{self.signal_id} has no engineering range; the y axis follows the data")
            return
        self.y_axis = "range" if self.y_axis == "data" else "data"
        if self._shown is not None:
            self._apply(self._shown)
        self.notify(
            "y axis: " + ("engineering range" if self.y_axis == "range" else "min/max of the data")
        )

    def action_write(self) -> None:
        """w: write by hand, to this signal's coil or register or any co/hr typed. Offered to
        everyone: the engine says who may (a viewer's or operator's arm is refused)."""
        from floorconsole.ui.screens.manual_write import ManualWriteDialog, target_of

        self.app.push_screen(ManualWriteDialog(target_of(self._view), signal_id=self.signal_id))

    def action_export(self) -> None:
        if self._shown is None:
            self.notify("nothing to export yet: the history is still loading", severity="warning")
            return
        folder = Path(getattr(self.app, "export_dir", Path.cwd()))
        self._export(self._shown.request.since, self._shown.request.until, folder)

    @work(
        thread=True,
        exit_on_error=False,
        group="export",
        name="export",
        description="write the shown range of a signal's history to CSV",
    )
    def _export(self, since: float, until: float, folder: Path) -> _Exported:
        history = self.app.api.history(  # type: ignore[attr-defined]
            self.signal_id, since, until, EXPORT_MAX_POINTS
        )
        folder.mkdir(parents=True, exist_ok=True)
        path = export_path(folder, self.signal_id, since, until)
        rows = write_csv(history, path)
        return _Exported(path, rows, history.truncated)
