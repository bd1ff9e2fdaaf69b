"""Braille charts of a signal's history and of a waveform block: pure rendering plus two widgets.

The rendering functions turn data into lines of (text, role) segments, where a role is the
name of a theme variable ("trend", "quality-bad", ...) or "" for plain text. They need no app,
so tests read the plain text; the widgets only add colour from the theme.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widget import Widget

from floorconsole.core.quality import QUALITY_SHAPE, Quality
from floorconsole.engine.frames import History, HistoryPoint, QualityMark
from floorconsole.ui.format import local

Segment = tuple[str, str]  # (text, role): role is a theme variable name, or "" for plain text
Line = list[Segment]

LEVEL = {"GOOD": 0, "UNCERTAIN": 1, "BAD": 2}
MARK_SHAPE = {q.name: QUALITY_SHAPE[q] for q in Quality}  # ● ◆ ✕ where quality changed
SPAN_FILL = {"UNCERTAIN": "┄", "BAD": "━"}  # the stretch while not GOOD, so it reads without colour
QUALITY_ROLE = {"GOOD": "trend", "UNCERTAIN": "quality-uncertain", "BAD": "quality-bad"}
_CELL_ROLE = {0: "trend", 1: "quality-uncertain", 2: "stale"}

# Dot bits of a braille cell (U+2800 + bits), indexed [row 0..3][column 0..1].
_DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_BRAILLE = 0x2800

_TICK_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)
MIN_WIDTH = 12
MIN_HEIGHT = 3


class BrailleCanvas:
    """A grid of braille cells, 2x4 dots each; every cell remembers the worst quality drawn in it."""

    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self._bits = [[0] * self.width for _ in range(self.height)]
        self._level = [[-1] * self.width for _ in range(self.height)]

    @property
    def dot_width(self) -> int:
        return self.width * 2

    @property
    def dot_height(self) -> int:
        return self.height * 4

    def dot(self, x: int, y: int, level: int = 0) -> None:
        """Set the dot at (x, y); y = 0 is the top row. Dots off the canvas are ignored."""
        if 0 <= x < self.dot_width and 0 <= y < self.dot_height:
            row, col = y // 4, x // 2
            self._bits[row][col] |= _DOT[y % 4][x % 2]
            if level > self._level[row][col]:
                self._level[row][col] = level

    def line(self, x0: int, y0: int, x1: int, y1: int, level: int = 0) -> None:
        """Bresenham's line between two dots, both ends included."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, level)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rows(self) -> list[str]:
        """One string per cell row; an empty cell is a space, not a blank braille character."""
        return ["".join(chr(_BRAILLE + b) if b else " " for b in row) for row in self._bits]

    def cell_level(self, col: int, row: int) -> int:
        """-1 for an empty cell, else the worst quality level (0 GOOD, 1 UNCERTAIN, 2 BAD)."""
        return self._level[row][col]

    def segments(self, row: int, roles: Mapping[int, str] = _CELL_ROLE) -> Line:
        """A row as segments, consecutive cells of one quality sharing one segment."""
        text = self.rows()[row]
        out: Line = []
        for col, ch in enumerate(text):
            level = self._level[row][col]
            role = roles.get(level, "") if level >= 0 else ""
            if out and out[-1][1] == role:
                out[-1] = (out[-1][0] + ch, role)
            else:
                out.append((ch, role))
        return out


# -- scales and labels ----------------------------------------------------------------------


def x_to_dot(x: float, x0: float, x1: float, dot_width: int) -> int:
    if x1 <= x0:
        return 0
    return max(0, min(dot_width - 1, int((x - x0) / (x1 - x0) * dot_width)))


def x_to_col(x: float, x0: float, x1: float, width: int) -> int:
    """The cell column where x falls (the same mapping as dots, two dots per cell)."""
    return x_to_dot(x, x0, x1, width * 2) // 2


def y_to_dot(y: float, y0: float, y1: float, dot_height: int) -> int:
    if y1 <= y0:
        return dot_height // 2
    return max(0, min(dot_height - 1, round((y1 - y) / (y1 - y0) * (dot_height - 1))))


def axis_label(value: float, span: float) -> str:
    """A y label with as many decimals as the span needs: 12.50 over 9.3, 1500 over 1500."""
    if span <= 0 or not math.isfinite(span):
        span = abs(value) or 1.0
    decimals = max(0, min(4, 2 - math.floor(math.log10(span))))
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" and decimals == 0 else text


def y_bounds(
    values: Sequence[float], fixed: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The y scale: the data's own min and max, or a fixed range widened to take in the data.

    A flat line gets a little room either side so it is drawn mid-height, not on an edge.
    """
    if fixed is not None:
        lo, hi = fixed
        if values:
            lo, hi = min(lo, min(values)), max(hi, max(values))
    elif values:
        lo, hi = min(values), max(values)
    else:
        lo, hi = 0.0, 1.0
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _gutter(labels: Sequence[str]) -> int:
    return max([4, *(len(s) for s in labels)])


def _y_label_rows(lo: float, hi: float, rows: int) -> dict[int, str]:
    """Labels for the top, bottom and (if there is room) middle rows of the plot."""
    if rows <= 0:
        return {}
    span = hi - lo
    out = {0: axis_label(hi, span)}
    if rows >= 2:
        out[rows - 1] = axis_label(lo, span)
    if rows >= 5:
        mid = (rows - 1) // 2
        # The middle row's own value: the centre of its dots, on the same scale as the plot.
        dot_h = rows * 4
        y = hi - (mid * 4 + 1.5) / (dot_h - 1) * span
        out[mid] = axis_label(y, span)
    return out


def time_format(span_s: float, step_s: float) -> str:
    """HH:MM:SS when ticks fall inside a minute, HH:MM up to a day, month-day beyond."""
    if step_s < 60:
        return "%H:%M:%S"
    if step_s >= 86400:
        return "%m-%d"
    return "%H:%M"


def _local_offset(t: float) -> float:
    off = local(t).utcoffset()
    return off.total_seconds() if off is not None else 0.0


def time_ticks(t0: float, t1: float, width: int) -> list[tuple[int, str]]:
    """(column, label) pairs for round local times between t0 and t1 that fit the width."""
    span = t1 - t0
    if span <= 0 or width <= 0:
        return []
    for step in _TICK_STEPS:
        fmt = time_format(span, step)
        label_w = len(local(t0).strftime(fmt))
        max_labels = max(1, (width + 2) // (label_w + 3))
        if span / step <= max_labels:
            break
    else:
        step = _TICK_STEPS[-1] * math.ceil(span / (_TICK_STEPS[-1] * 4))
        fmt = "%m-%d"
    off = _local_offset(t0)
    first = math.ceil((t0 + off) / step) * step - off
    out: list[tuple[int, str]] = []
    t = first
    while t <= t1 + 1e-9:
        lt = local(t)
        label = lt.strftime(fmt)
        if fmt == "%H:%M" and span >= 86400 and lt.hour == 0 and lt.minute == 0:
            label = lt.strftime("%m-%d")  # midnight says which day it is
        out.append((x_to_col(t, t0, t1, width), label))
        t += step
    return out


def label_line(ticks: Sequence[tuple[int, str]], width: int) -> str:
    """Labels centred on their columns, pushed inside the edges, dropped where they would touch."""
    chars = [" "] * width
    last_end = -2
    for col, label in ticks:
        start = max(0, min(width - len(label), col - len(label) // 2))
        if start <= last_end + 1 or start + len(label) > width:
            continue
        chars[start : start + len(label)] = label
        last_end = start + len(label) - 1
    return "".join(chars)


# -- history --------------------------------------------------------------------------------


def marks_from_points(points: Sequence[HistoryPoint]) -> tuple[QualityMark, ...]:
    """Quality changes seen in the points themselves, for a history that carries none."""
    out: list[QualityMark] = []
    prev: str | None = None
    for p in points:
        if prev is not None and p.quality != prev:
            out.append(QualityMark(t=p.t, quality=p.quality, reason="", detail=""))
        prev = p.quality
    return tuple(out)


def initial_quality(history: History, current: str | None = None) -> str:
    """The quality at the left edge: the first point's if it comes before the first change;
    with neither points nor changes, the current one (a live range that stayed as it is)."""
    pts, marks = history.points, history.quality_changes
    if pts and (not marks or pts[0].t < marks[0].t):
        return pts[0].quality
    if not pts and not marks and current is not None:
        return current
    return "GOOD"


def bad_spans(
    marks: Sequence[QualityMark], start_quality: str, until: float, since: float
) -> list[tuple[float, float]]:
    """Time intervals during which the signal was BAD."""
    spans: list[tuple[float, float]] = []
    bad_from = since if start_quality == "BAD" else None
    for m in sorted(marks, key=lambda m: m.t):
        if m.quality == "BAD" and bad_from is None:
            bad_from = m.t
        elif m.quality != "BAD" and bad_from is not None:
            spans.append((bad_from, m.t))
            bad_from = None
    if bad_from is not None:
        spans.append((bad_from, until))
    return spans


def gap_limit(times: Sequence[float], span: float, dot_width: int) -> float:
    """Two points further apart than this are not joined: there was no data between them.

    Three times the usual sample interval, and never less than a dot and a half (a gap
    narrower than a dot could not be seen anyway).
    """
    diffs = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    usual = statistics.median(diffs) if diffs else span
    return max(3.0 * usual, 1.5 * span / max(1, dot_width))


def plot_history(
    canvas: BrailleCanvas,
    points: Sequence[HistoryPoint],
    t0: float,
    t1: float,
    lo: float,
    hi: float,
    breaks: Sequence[tuple[float, float]] = (),
) -> None:
    """Draw usable points (not BAD, with a finite value) joined by lines, leaving gaps where
    the data stops for longer than gap_limit or where a BAD interval (sorted, disjoint
    `breaks`) lies between two points."""
    usable = [
        p
        for p in points
        if p.quality != "BAD" and p.value is not None and math.isfinite(p.value) and t0 <= p.t <= t1
    ]
    if not usable:
        return
    limit = gap_limit([p.t for p in usable], t1 - t0, canvas.dot_width)
    break_ends = [e for _s, e in breaks]
    prev: tuple[int, int, float, int] | None = None
    for p in usable:
        assert p.value is not None
        x = x_to_dot(p.t, t0, t1, canvas.dot_width)
        y = y_to_dot(p.value, lo, hi, canvas.dot_height)
        level = LEVEL.get(p.quality, 0)
        joined = False
        if prev is not None and p.t - prev[2] <= limit:
            # The first BAD interval that ends after the previous point must start after this one.
            j = bisect.bisect_right(break_ends, prev[2])
            joined = j >= len(breaks) or breaks[j][0] >= p.t
        if joined:
            assert prev is not None
            canvas.line(prev[0], prev[1], x, y, max(level, prev[3]))
        else:
            canvas.dot(x, y, level)
        prev = (x, y, p.t, level)


def quality_strip(
    marks: Sequence[QualityMark], t0: float, t1: float, width: int, start_quality: str = "GOOD"
) -> Line:
    """One line under the plot: the shape of each change at its column (✕ BAD, ◆ UNCERTAIN,
    ● back to GOOD; the worst wins when several share a column) and a fill while not GOOD."""
    cells: list[tuple[str, str]] = [(" ", "")] * width
    if width <= 0:
        return []
    ordered = sorted((m for m in marks if t0 <= m.t <= t1), key=lambda m: m.t)
    # Each state holds from just after its change's column to the next change's column.
    bounds = [(start_quality, 0)] + [(m.quality, x_to_col(m.t, t0, t1, width) + 1) for m in ordered]
    ends = [col - 1 for _q, col in bounds[1:]] + [width]
    for (state, begin), end in zip(bounds, ends, strict=True):
        if state in SPAN_FILL:
            for c in range(begin, end):
                cells[c] = (SPAN_FILL[state], QUALITY_ROLE[state])
    worst: dict[int, QualityMark] = {}
    for m in ordered:
        col = x_to_col(m.t, t0, t1, width)
        if col not in worst or LEVEL.get(m.quality, 0) > LEVEL.get(worst[col].quality, 0):
            worst[col] = m
    for col, m in worst.items():
        cells[col] = (MARK_SHAPE.get(m.quality, "?"), QUALITY_ROLE.get(m.quality, ""))
    return _merge(cells)


def _merge(cells: Sequence[tuple[str, str]]) -> Line:
    out: Line = []
    for ch, role in cells:
        if out and out[-1][1] == role:
            out[-1] = (out[-1][0] + ch, role)
        else:
            out.append((ch, role))
    return out


def _fit(line: Line, width: int) -> Line:
    """Cut or pad a line to exactly `width` characters."""
    out: Line = []
    used = 0
    for text, role in line:
        if used >= width:
            break
        text = text[: width - used]
        out.append((text, role))
        used += len(text)
    if used < width:
        out.append((" " * (width - used), ""))
    return out


def _message_lines(message: str, width: int, height: int) -> list[Line]:
    lines = [[(" " * width, "")] for _ in range(height)]
    lines[height // 2] = _fit([(message.center(width), "muted")], width)
    return lines


def render_time_chart(
    history: History,
    width: int,
    height: int,
    *,
    y_range: tuple[float, float] | None = None,
    start_quality: str | None = None,
    message: str = "",
) -> list[Line]:
    """The history as `height` lines of exactly `width` characters:

        12.50 ┤  ⢀⡠⠔⠊⠉         plot rows, y labels at top, bottom and middle
              │⡠⠊
         3.20 ┤
         qual │   ✕━━━━●      quality changes
                10:00   10:30   time labels

    y_range fixes the scale (widened if the data leaves it); otherwise the data's min/max.
    """
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return (
            _message_lines("too small"[:width], max(0, width), max(0, height)) if height > 0 else []
        )
    t0, t1 = history.since, history.until
    values = [
        p.value
        for p in history.points
        if p.quality != "BAD" and p.value is not None and math.isfinite(p.value) and t0 <= p.t <= t1
    ]
    lo, hi = y_bounds(values, y_range)
    plot_h = height - 2
    labels = _y_label_rows(lo, hi, plot_h) if values or y_range else {}
    gw = _gutter(list(labels.values()))
    plot_w = width - gw - 1
    marks = history.quality_changes or marks_from_points(history.points)
    start = start_quality or initial_quality(history)
    canvas = BrailleCanvas(plot_w, plot_h)
    plot_history(canvas, history.points, t0, t1, lo, hi, bad_spans(marks, start, t1, t0))
    lines: list[Line] = []
    empty = not values
    for row in range(plot_h):
        label = labels.get(row)
        gutter: Line = [(f"{label or '':>{gw}}", "muted"), ("┤" if label else "│", "muted")]
        if empty and row == plot_h // 2:
            body: Line = [((message or "no data in this range").center(plot_w), "muted")]
        else:
            body = canvas.segments(row)
        lines.append(_fit(gutter + body, width))
    lines.append(
        _fit([(f"{'qual':>{gw}} ", "muted")] + quality_strip(marks, t0, t1, plot_w, start), width)
    )
    lines.append(
        _fit(
            [(" " * (gw + 1), ""), (label_line(time_ticks(t0, t1, plot_w), plot_w), "muted")], width
        )
    )
    return lines


# -- waveform -------------------------------------------------------------------------------


def index_ticks(n: int, width: int) -> list[tuple[int, str]]:
    """Sample-index labels: first, last and as many round indices between as fit."""
    if n <= 0 or width <= 0:
        return []
    last = n - 1
    label_w = len(str(last))
    max_labels = max(2, (width + 2) // (label_w + 3))
    step = 1
    for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = s
        if last / s <= max_labels - 1:
            break
    ticks = [(x_to_col(i, 0, max(1, last), width), str(i)) for i in range(0, last, step)]
    end = (width - 1, str(last))
    # The last index always shows; a round one too close to it gives way.
    while (
        ticks
        and ticks[-1][0] + len(ticks[-1][1]) // 2 + 2 > end[0] - len(end[1]) + 1
        and len(ticks) > 1
    ):
        ticks.pop()
    return ticks + [end] if last else [(0, "0")]


def render_waveform(
    samples: Sequence[float], width: int, height: int, *, quality: str = "GOOD", message: str = ""
) -> list[Line]:
    """The latest waveform block: value against sample index, y labels min/max, index labels.

    A block that is not GOOD is drawn in the colour of its quality (greyed when BAD).
    """
    if width < MIN_WIDTH or height < 2:
        return (
            _message_lines("too small"[:width], max(0, width), max(0, height)) if height > 0 else []
        )
    vals = [v for v in samples if v is not None and math.isfinite(v)]
    lo, hi = y_bounds(vals)
    plot_h = height - 1
    labels = _y_label_rows(lo, hi, plot_h) if vals else {}
    gw = _gutter(list(labels.values()))
    plot_w = width - gw - 1
    canvas = BrailleCanvas(plot_w, plot_h)
    level = LEVEL.get(quality, 0)
    n = len(samples)
    prev: tuple[int, int] | None = None
    for i, v in enumerate(samples):
        if v is None or not math.isfinite(v):
            prev = None
            continue
        x = x_to_dot(i, 0, max(1, n - 1), canvas.dot_width) if n > 1 else 0
        if n > 1 and i == n - 1:
            x = canvas.dot_width - 1
        y = y_to_dot(v, lo, hi, canvas.dot_height)
        if prev is not None:
            canvas.line(prev[0], prev[1], x, y, level)
        else:
            canvas.dot(x, y, level)
        prev = (x, y)
    lines: list[Line] = []
    for row in range(plot_h):
        label = labels.get(row)
        gutter: Line = [(f"{label or '':>{gw}}", "muted"), ("┤" if label else "│", "muted")]
        if not vals and row == plot_h // 2:
            body: Line = [((message or "no waveform block yet").center(plot_w), "muted")]
        else:
            body = canvas.segments(row)
        lines.append(_fit(gutter + body, width))
    lines.append(
        _fit([(" " * (gw + 1), ""), (label_line(index_ticks(n, plot_w), plot_w), "muted")], width)
    )
    return lines


# -- output ---------------------------------------------------------------------------------


def plain(lines: Sequence[Line]) -> list[str]:
    """The text of each line, without roles (for tests and logs)."""
    return ["".join(text for text, _role in line) for line in lines]


def to_text(lines: Sequence[Line], colors: Mapping[str, str]) -> Text:
    """Rich Text with each role's colour taken from the theme variables."""
    out = Text(no_wrap=True, overflow="crop", end="")
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        for text, role in line:
            out.append(text, style=colors.get(role, "") if role else "")
    return out


# -- widgets --------------------------------------------------------------------------------


class _ChartBase(Widget):
    """Renders lines from a pure function at the widget's own size, coloured by the theme."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._cache: tuple[tuple[object, ...], Text] | None = None

    def _lines(self, width: int, height: int) -> list[Line]:
        raise NotImplementedError

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def rendered_lines(self) -> list[str]:
        """The plain text shown now (what a test or a log can read)."""
        return plain(self._lines(self.size.width, self.size.height))

    def render(self) -> Text:
        w, h = self.size.width, self.size.height
        colors = self.app.theme_variables
        key = (w, h, self.app.theme, *self._key())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, to_text(self._lines(w, h), colors))
        return self._cache[1]


class TimeChart(_ChartBase):
    """A signal's history: braille line, y labels, quality-change line, time labels."""

    DEFAULT_CSS = """
    TimeChart { height: 1fr; min-height: 4; background: $surface; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._history: History | None = None
        self._y_range: tuple[float, float] | None = None
        self._start_quality: str | None = None
        self._message = "loading…"
        self._version = 0

    @property
    def history(self) -> History | None:
        return self._history

    def show(
        self,
        history: History,
        *,
        y_range: tuple[float, float] | None = None,
        start_quality: str | None = None,
        message: str = "",
    ) -> None:
        self._history = history
        self._y_range = y_range
        self._start_quality = start_quality
        self._message = message
        self._version += 1
        self.refresh()

    def show_message(self, message: str) -> None:
        """A line in place of the plot (loading, an error), keeping the last history if any."""
        self._message = message
        self._version += 1
        self.refresh()

    def _key(self) -> tuple[object, ...]:
        return (self._version,)

    def _lines(self, width: int, height: int) -> list[Line]:
        if self._history is None:
            return _message_lines(self._message[:width], width, height) if height > 0 else []
        return render_time_chart(
            self._history,
            width,
            height,
            y_range=self._y_range,
            start_quality=self._start_quality,
            message=self._message,
        )


class WaveformChart(_ChartBase):
    """The latest block of a waveform signal, sample index on x."""

    DEFAULT_CSS = """
    WaveformChart { height: 1fr; min-height: 3; background: $surface; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._samples: tuple[float, ...] = ()
        self._quality = "GOOD"

    def show(self, samples: Sequence[float], quality: str = "GOOD") -> None:
        samples = tuple(samples)
        if samples == self._samples and quality == self._quality:
            return
        self._samples, self._quality = samples, quality
        self.refresh()

    def _key(self) -> tuple[object, ...]:
        return (self._samples, self._quality)

    def _lines(self, width: int, height: int) -> list[Line]:
        return render_waveform(self._samples, width, height, quality=self._quality)
