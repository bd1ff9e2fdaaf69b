"""Text for cells: sparklines, ages, quality with shape and words (never colour alone)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from weakref import WeakKeyDictionary

from rich.text import Text

from floorconsole.console import Frame
from floorconsole.core.history_format import zone
from floorconsole.core.quality import QUALITY_SHAPE, Quality
from floorconsole.core.units import format_duration

BARS = "▁▂▃▄▅▆▇█"

# The zone this console shows times in: the plant's [edge] timezone, from the frames (UTC until
# the first one). One per process: a console is one app.
_ZONE = ["UTC"]


def set_console_zone(name: str) -> None:
    _ZONE[0] = name or "UTC"


def console_zone() -> str:
    return _ZONE[0]


def local(t: float) -> datetime:
    """Epoch seconds as a time in the console's zone (strftime it like time.localtime)."""
    return datetime.fromtimestamp(t, zone(_ZONE[0]))


def zone_label(t: float) -> str:
    """The zone's short name at time t ('UTC', 'CET', 'CEST'), shown beside every clock."""
    return local(t).tzname() or _ZONE[0]


def sparkline(
    values: Sequence[float], width: int, lo: float | None = None, hi: float | None = None
) -> str:
    """The last `width` values as block characters, scaled to lo..hi (or their own range)."""
    if not values or width <= 0:
        return ""
    vals = list(values)[-width:]
    a = min(vals) if lo is None else lo
    b = max(vals) if hi is None else hi
    if b - a <= 1e-12:
        return BARS[3] * len(vals)
    n = len(BARS) - 1
    return "".join(BARS[max(0, min(n, round((v - a) / (b - a) * n)))] for v in vals)


def resample(values: Sequence[float], width: int) -> list[float]:
    """The whole series in `width` points (the mean of each slice), so a 1-minute trend shows
    the minute, not only its last few seconds."""
    n = len(values)
    if n <= width or width <= 0:
        return list(values)
    return [
        sum(values[i * n // width : (i + 1) * n // width])
        / max(1, (i + 1) * n // width - i * n // width)
        for i in range(width)
    ]


MIN_TREND_SPAN = 0.02  # of the engineering range: the least a 1-minute trend's scale spans


def trend_scale(
    values: Sequence[float], eng_range: tuple[float, float] | None
) -> tuple[float | None, float | None]:
    """The scale of the overview's 1-minute trend: the values' own recent range, so a slow
    change fills the cell, but never narrower than MIN_TREND_SPAN of the engineering range,
    so noise on a steady value stays a flat line instead of filling it."""
    if not values:
        return None, None
    lo, hi = min(values), max(values)
    if eng_range is not None:
        least = abs(eng_range[1] - eng_range[0]) * MIN_TREND_SPAN
        if hi - lo < least:
            mid = (lo + hi) / 2
            lo, hi = mid - least / 2, mid + least / 2
    return lo, hi


def quality_text(
    quality: str, reason: str, colors: Mapping[str, str], *, short: bool = False
) -> Text:
    q = Quality[quality]
    shape = QUALITY_SHAPE[q]
    if q is Quality.GOOD:
        return Text(f"{shape} GOOD", style=colors.get("quality-good", ""))
    label = "BAD" if q is Quality.BAD else "UNCERT"
    words = f"{shape} {label}" if short or not reason else f"{shape} {label} {reason}"
    key = "quality-bad" if q is Quality.BAD else "quality-uncertain"
    return Text(words, style=f"bold {colors.get(key, '')}".strip())


def age_text(age_s: float) -> str:
    return format_duration(age_s)


def age_cell_text(age_s: float) -> str:
    """The Age column's text: whole seconds, '<1s' under one. Tenths of a second on a value
    polled five times a second change every frame and tell an operator nothing (its quality
    says whether it is fresh), yet they made every row of the table repaint every frame. From
    10 s on it is format_duration's, as everywhere; the detail screen keeps the tenths."""
    if age_s < 1.0:
        return "<1s"
    if age_s < 10.0:
        return f"{math.floor(age_s)}s"
    return format_duration(age_s)


class FrameClock:
    """When this console first showed a frame (told apart by its t_wall), on the console's own
    monotonic clock. A stale frame is the last one received, kept: the ages it carries were
    true then, so while it is shown they go on growing from that moment. The console's clock,
    not the engine's wall time: no skew, no NTP step; whole seconds, so an image of a frame
    that came stale does not change from run to run."""

    __slots__ = ("t_wall", "seen")

    def __init__(self) -> None:
        self.t_wall: float | None = None
        self.seen = 0.0  # monotonic time this console first showed the frame of t_wall

    def extra_s(self, frame: Frame, now: float | None = None) -> float:
        """Seconds to add to every age of `frame`: 0 while the engine answers."""
        now = time.monotonic() if now is None else now
        if frame.t_wall != self.t_wall:
            self.t_wall, self.seen = frame.t_wall, now
        if not frame.stale:
            return 0.0
        return float(math.floor(max(0.0, now - self.seen)))


_FRAME_CLOCKS: WeakKeyDictionary[object, FrameClock] = WeakKeyDictionary()


def frame_clock(console: object) -> FrameClock:
    """The one FrameClock of a console (its app): every screen counts from the same moment."""
    clock = _FRAME_CLOCKS.get(console)
    if clock is None:
        clock = _FRAME_CLOCKS[console] = FrameClock()
    return clock


def stale_extra_s(console: object, frame: Frame | None) -> float:
    """How much older than they say the ages of `frame` are now (0 for a live frame)."""
    return 0.0 if frame is None else frame_clock(console).extra_s(frame)


def value_text(value: str, unit: str, quality: str, colors: Mapping[str, str]) -> Text:
    """A value that is not GOOD is greyed: never a healthy-looking number from a dead source."""
    text = f"{value} {unit}".rstrip() if unit else value
    if quality == "GOOD":
        return Text(text, style=colors.get("quality-good", ""), justify="right")
    return Text(
        text,
        style=f"{colors.get('stale', '')} strike" if quality == "BAD" else colors.get("stale", ""),
        justify="right",
    )


def quality_cell(quality: str) -> tuple[str, str, str]:
    """(text, theme variable, modifiers) for the quality column: shape and word, always."""
    q = Quality[quality]
    if q is Quality.GOOD:
        return (f"{QUALITY_SHAPE[q]} GOOD", "quality-good", "")
    if q is Quality.BAD:
        return (f"{QUALITY_SHAPE[q]} BAD", "quality-bad", "bold")
    return (f"{QUALITY_SHAPE[q]} UNCERT", "quality-uncertain", "bold")


def value_cell(value: str, unit: str, quality: str) -> tuple[str, str, str]:
    """A value that is not GOOD is greyed (and struck through when BAD)."""
    text = f"{value} {unit}".rstrip() if unit else value
    if quality == "GOOD":
        return (text, "quality-good", "")
    return (text, "stale", "strike" if quality == "BAD" else "italic")
