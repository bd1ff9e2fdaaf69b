"""Up to four signals in one chart: a strip each, on its own scale and unit, one time axis and
one cursor whose time and values are read out. Pure rendering plus the widget that draws it."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from floorconsole.core.history_format import readable_number
from floorconsole.core.quality import QUALITY_SHAPE, Quality
from floorconsole.engine.frames import History, HistoryPoint
from floorconsole.ui.widgets.chart import (
    BrailleCanvas,
    Line,
    _ChartBase,
    _fit,
    _y_label_rows,
    bad_spans,
    initial_quality,
    label_line,
    marks_from_points,
    plot_history,
    time_ticks,
    x_to_col,
    y_bounds,
)

MAX_PINNED = 4
_SHAPE = {q.name: QUALITY_SHAPE[q] for q in Quality}
_BLANK = chr(0x2800)


@dataclass(frozen=True, slots=True)
class TrendSeries:
    """One pinned signal: its history over the shown range, and the scale it is drawn on
    (its engineering range when it has one and the chart is set to it, else the data's)."""

    signal: str
    unit: str
    history: History
    y_range: tuple[float, float] | None = None


def value_at(history: History, t: float) -> HistoryPoint | None:
    """The point in force at time t: the last one at or before it (None before the first)."""
    times = [p.t for p in history.points]
    i = bisect.bisect_right(times, t) - 1
    return history.points[i] if i >= 0 else None


def reading(point: HistoryPoint | None, unit: str) -> str:
    """'12.40 A ● GOOD', '✕ BAD', or '—' before the first point."""
    if point is None:
        return "—"
    shape = _SHAPE.get(point.quality, "?")
    if point.value is None or point.quality == "BAD":
        return f"{shape} {point.quality}"
    v = point.value
    text = f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return f"{text}{' ' + unit if unit else ''} {shape}" + (
        "" if point.quality == "GOOD" else f" {point.quality}"
    )


def render_trends(
    series: Sequence[TrendSeries],
    t0: float,
    t1: float,
    width: int,
    height: int,
    cursor: float | None = None,
) -> list[Line]:
    """`height` lines of exactly `width` characters: per series a title line (number, signal,
    unit, its value at the cursor) and its plot rows with y labels on its own scale, then one
    time axis. The cursor is a column drawn through every strip."""
    if not series:
        return [[(" " * width, "")] for _ in range(height)]
    n = len(series)
    plot_rows = max(1, (height - 1) // n - 1)
    prepared = []
    for s in series:
        h = s.history
        values = [
            p.value
            for p in h.points
            if p.quality != "BAD"
            and p.value is not None
            and math.isfinite(p.value)
            and t0 <= p.t <= t1
        ]
        lo, hi = y_bounds(values, s.y_range)
        labels = _y_label_rows(lo, hi, plot_rows) if values or s.y_range else {}
        prepared.append((s, values, lo, hi, labels))
    gw = max([4, *(len(label) for *_rest, labels in prepared for label in labels.values())])
    plot_w = max(1, width - gw - 1)
    cursor_col = (
        x_to_col(cursor, t0, t1, plot_w) if cursor is not None and t0 <= cursor <= t1 else None
    )
    lines: list[Line] = []
    for i, (s, values, lo, hi, labels) in enumerate(prepared):
        point = value_at(s.history, cursor) if cursor is not None else None
        title: Line = [(f" {i + 1} ", "muted"), (s.signal, "")]
        if s.unit:
            title.append((f" [{s.unit}]", "muted"))
        if cursor is not None:
            title.append(("  ", ""))
            title.append((reading(point, s.unit), _reading_role(point)))
        lines.append(_fit(title, width))
        marks = s.history.quality_changes or marks_from_points(s.history.points)
        start = initial_quality(s.history)
        canvas = BrailleCanvas(plot_w, plot_rows)
        plot_history(canvas, s.history.points, t0, t1, lo, hi, bad_spans(marks, start, t1, t0))
        for row in range(plot_rows):
            label = labels.get(row)
            gutter: Line = [(f"{label or '':>{gw}}", "muted"), ("┤" if label else "│", "muted")]
            if not values and row == plot_rows // 2:
                body: Line = [("no data in this range".center(plot_w), "muted")]
            else:
                body = canvas.segments(row)
            if cursor_col is not None:
                body = _with_cursor(body, cursor_col)
            lines.append(_fit(gutter + body, width))
    axis = label_line(time_ticks(t0, t1, plot_w), plot_w)
    lines.append(_fit([(" " * (gw + 1), ""), (axis, "muted")], width))
    while len(lines) < height:
        lines.insert(len(lines) - 1, [(" " * width, "")])
    return lines[:height] if len(lines) > height else lines


def _reading_role(point: HistoryPoint | None) -> str:
    if point is None:
        return "muted"
    return {"BAD": "quality-bad", "UNCERTAIN": "quality-uncertain"}.get(point.quality, "")


def _with_cursor(body: Line, col: int) -> Line:
    """The cursor's column: a bar where the plot is empty there, the plot's dots in the
    selection colour where it is not, so the line under the cursor stays visible."""
    out: Line = []
    pos = 0
    for text, role in body:
        end = pos + len(text)
        if pos <= col < end:
            k = col - pos
            ch = text[k]
            if text[:k]:
                out.append((text[:k], role))
            out.append(("│" if ch in (" ", _BLANK) else ch, "selection"))
            if text[k + 1 :]:
                out.append((text[k + 1 :], role))
        else:
            out.append((text, role))
        pos = end
    return out


def iso_time(t: float, tz: object = UTC) -> str:
    """An exported time with its offset: 2026-12-03T14:02:11.250+00:00."""
    return datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")  # type: ignore[arg-type]


def csv_rows(series: Sequence[TrendSeries], tz: object = UTC) -> list[tuple[str, ...]]:
    """What the chart shows, one row per recorded point of each signal, oldest first:
    time with its offset, signal, value, unit, quality."""
    rows: list[tuple[float, str, str, str, str]] = []
    for s in series:
        for p in s.history.points:
            # at the digits it carries: 51.8, not the 51.800000000000004 a scale leaves
            value = "" if p.value is None else repr(readable_number(float(p.value)))
            rows.append((p.t, s.signal, value, s.unit, p.quality))
    rows.sort(key=lambda r: (r[0], r[1]))
    header = ("time", "signal", "value", "unit", "quality")
    return [header, *((iso_time(t, tz), sig, v, u, q) for t, sig, v, u, q in rows)]


class TrendChart(_ChartBase):
    """Draws render_trends for the series it is given; redrawn only when they or its size
    change."""

    DEFAULT_CSS = "TrendChart { height: 1fr; min-height: 6; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: tuple[TrendSeries, ...] = ()
        self._window: tuple[float, float] = (0.0, 1.0)
        self._cursor: float | None = None

    @property
    def series(self) -> tuple[TrendSeries, ...]:
        return self._series

    def show(
        self, series: Sequence[TrendSeries], t0: float, t1: float, cursor: float | None
    ) -> None:
        self._series, self._window, self._cursor = tuple(series), (t0, t1), cursor
        self.refresh()

    def plot_width(self) -> int:
        """Columns of the plot (what one cursor step moves across)."""
        return max(1, self.size.width - 6)

    def _key(self) -> tuple[object, ...]:
        return (self._series, self._window, self._cursor)

    def _lines(self, width: int, height: int) -> list[Line]:
        return render_trends(self._series, *self._window, width, height, self._cursor)
