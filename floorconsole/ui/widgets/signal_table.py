"""The signals table: a line-API view that renders only the rows on screen, and only those
whose text changed; columns fall away by priority when the terminal is narrow.

Textual's DataTable re-renders every visible cell through Rich whenever any cell changes;
with 500 signals changing at 50 Hz that cost a fifth of a core at 4 Hz. Here each row is one
cached Strip, rebuilt from plain strings only when its text changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from floorconsole.console import SignalView
from floorconsole.ui.format import (
    age_cell_text,
    quality_cell,
    resample,
    sparkline,
    stale_extra_s,
    trend_scale,
    value_cell,
)
from floorconsole.ui.live import console_app


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    priority: int  # lower stays longer when the table is narrow
    right: bool = False


# Value and quality are never dropped: they are what the screen is for.
COLUMNS = (
    Column("signal", "Signal", 22, 0),
    Column("value", "Value", 14, 0, right=True),
    Column("quality", "Quality", 8, 0),
    Column("age", "Age", 6, 1, right=True),
    Column("trend", "Trend (1 min)", 20, 2),
    Column("detail", "Detail", 28, 3),
    Column("source", "Source", 30, 4),
)

MIN_DETAIL = 12  # narrower than this a reason is cut to nothing useful

# A cell is its text and the name of a theme variable (or "") for its colour, plus modifiers.
Cell = tuple[str, str, str]
Row = tuple[Cell, ...]


def columns_for(width: int, longest_id: int = 22, *, trend: bool = True) -> tuple[Column, ...]:
    """Drop the lowest-priority columns until the rest fit. The signal column grows to the
    longest id (16 to 40 wide) as far as the columns that always stay leave room.
    trend=False: no Trend column (the slow-link profile: sparklines change every redraw)."""
    rest = [c for c in COLUMNS[1:] if trend or c.key != "trend"]
    essential = sum(c.width + 1 for c in rest if c.priority <= 1) + 2
    with_trend = width - essential - 21
    room = with_trend if trend and with_trend >= 22 else width - essential  # keep the trend
    sig = max(16, min(40, longest_id, room))
    cols = [Column("signal", "Signal", sig, 0), *rest]
    order = [c.key for c in cols]
    while sum(c.width + 1 for c in cols) + 1 > width:
        drop = max(cols, key=lambda c: (c.priority, order.index(c.key)))
        if drop.priority == 0:
            break
        cols.remove(drop)
    # The reason of a value that is not GOOD, in whatever room is left: a narrow Detail column
    # beats none (the line under the table says it in full for the selected row).
    left = width - (sum(c.width + 1 for c in cols) + 1)
    if left >= MIN_DETAIL + 1 and not any(c.key == "detail" for c in cols):
        at = next((i for i, c in enumerate(cols) if c.key == "source"), len(cols))
        cols.insert(at, Column("detail", "Detail", left - 1, 3))
    return tuple(cols)


def row_cells(r: SignalView | str, cols: Sequence[Column], extra_age_s: float = 0.0) -> Row:
    """The text of one row, as plain strings: what is compared to decide a repaint.
    extra_age_s: how long ago the frame came, when it is stale (the ages go on growing)."""
    if isinstance(r, str):
        return ((f"▸ {r}", "", "bold"),) + tuple(("", "", "") for _ in cols[1:])
    out: list[Cell] = []
    for c in cols:
        if c.key == "signal":
            out.append((r.id, "", ""))
        elif c.key == "value":
            out.append(value_cell(r.value_text, r.unit, r.quality))
        elif c.key == "quality":
            out.append(quality_cell(r.quality))
        elif c.key == "age":
            out.append(
                (
                    age_cell_text(r.age_s + extra_age_s),
                    "" if r.quality == "GOOD" and not extra_age_s else "stale",
                    "",
                )
            )
        elif c.key == "trend":
            if r.kind == "waveform":
                spark = sparkline(r.waveform, c.width - 1)
            else:
                lo, hi = trend_scale(r.spark, r.range)
                spark = sparkline(resample(r.spark, c.width - 1), c.width - 1, lo, hi)
            out.append((spark, "trend", ""))
        elif c.key == "detail":
            parts = [p for p in (r.reason, r.detail) if p and p != "no value yet"]
            text = ": ".join(parts[:2])
            if r.malformed:  # first, so a long BAD detail does not hide it (L: by reason)
                text = f"{r.malformed} malformed" + (f" · {text}" if text else "")
            out.append((text, "muted", ""))
        elif c.key == "source":
            out.append((r.source, "muted", ""))
    return tuple(out)


@lru_cache(maxsize=256)
def _style(color: str, modifiers: str) -> Style:
    return Style.parse(f"{modifiers} {color}".strip() or "none")


def _fit(text: str, width: int, right: bool) -> str:
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


class SignalTable(ScrollView, can_focus=True):
    """One row per signal (or per asset heading). The header line stays put while rows scroll."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
    ]

    COMPONENT_CLASSES = {"signal-table--header", "signal-table--cursor"}

    DEFAULT_CSS = """
    SignalTable { height: 1fr; background: $surface; color: $foreground; overflow-x: hidden; }
    SignalTable > .signal-table--header { background: $panel; text-style: bold; }
    SignalTable > .signal-table--cursor { background: $selection; }
    """

    class Highlighted(Message):
        """The cursor moved to another row: the line under the table follows it."""

        def __init__(self, table: SignalTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> SignalTable:
            return self.table

    class Selected(Message):
        """A row was chosen (Enter, or a click on the row already under the cursor)."""

        def __init__(self, table: SignalTable, signal_id: str) -> None:
            super().__init__()
            self.table = table
            self.signal_id = signal_id

        @property
        def control(self) -> SignalTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cols: tuple[Column, ...] = ()
        self.rows: list[SignalView | str] = []
        self._keys: list[str] = []
        self._cells: dict[str, Row] = {}
        self._strips: dict[tuple[str, bool], Strip] = {}
        self._colors: Mapping[str, str] = {}
        self.extra_age_s = 0.0  # a stale frame's time since it came: added to every age
        self.cursor = 0
        self._base_style: Style | None = None  # rich_style, kept until the styles change

    # -- data -----------------------------------------------------------------------------

    def show(self, rows: Sequence[SignalView | str], colors: Mapping[str, str]) -> None:
        # The rows are of the frame the app is showing; a stale one's ages keep growing.
        self.extra_age_s = stale_extra_s(self.app, console_app(self).last_frame)
        longest = max((len(r.id) for r in rows if not isinstance(r, str)), default=22)
        slow = bool(getattr(self.app, "slow_link", False))
        cols = columns_for(max(30, self.size.width or 100), longest, trend=not slow)
        keys = [_row_key(r) for r in rows]
        if cols != self.cols or colors is not self._colors and dict(colors) != dict(self._colors):
            self.cols, self._colors = cols, dict(colors)
            self._cells.clear()
            self._strips.clear()
            self.refresh()
        selected = self._keys[self.cursor] if 0 <= self.cursor < len(self._keys) else None
        self.rows = list(rows)
        if keys != self._keys:
            self._keys = keys
            self.virtual_size = Size(self.size.width, len(rows) + 1)
            self.cursor = (
                keys.index(selected)
                if selected in keys
                else min(self.cursor, max(0, len(keys) - 1))
            )
            self._cells.clear()
            self._strips.clear()
            self.refresh()
            return
        # Only rows on screen are looked at; the rest are rendered when scrolled into view.
        first = int(self.scroll_offset.y)
        for i in range(first, min(len(rows), first + max(1, self.size.height - 1))):
            key = keys[i]
            cells = row_cells(rows[i], self.cols, self.extra_age_s)
            if self._cells.get(key) != cells:
                self._cells[key] = cells
                self._strips.pop((key, False), None)
                self._strips.pop((key, True), None)
                self.refresh_line(i + 1)

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def row_labels(self) -> list[str]:
        return [f"▸ {r}" if isinstance(r, str) else r.id for r in self.rows]

    @property
    def selected_row(self) -> SignalView | None:
        """The signal under the cursor (None on an asset heading or an empty table)."""
        if not (0 <= self.cursor < len(self.rows)):
            return None
        row = self.rows[self.cursor]
        return None if isinstance(row, str) else row

    @property
    def selected_signal(self) -> str | None:
        if not (0 <= self.cursor < len(self._keys)):
            return None
        key = self._keys[self.cursor]
        return None if key.startswith("group:") else key

    # -- rendering ------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        # Textual computes rich_style by walking every ancestor's styles: once per line of
        # every frame it was a twentieth of the console's time with 500 signals on screen.
        base = self._base_style
        if base is None:
            base = self._base_style = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("signal-table--header")
            text = " ".join(_fit(c.label, c.width, c.right) for c in self.cols)
            return Strip([Segment(" " + text, style)]).adjust_cell_length(width, style)
        index = int(self.scroll_offset.y) + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        key = self._keys[index]
        on_cursor = index == self.cursor and self.has_focus
        strip = self._strips.get((key, on_cursor))
        if strip is None or strip.cell_length != width:
            cells = self._cells.get(key)
            if cells is None:
                cells = self._cells[key] = row_cells(self.rows[index], self.cols, self.extra_age_s)
            strip = self._row_strip(cells, on_cursor, width, base)
            self._strips[(key, on_cursor)] = strip
        return strip

    def _row_strip(self, cells: Row, on_cursor: bool, width: int, base: Style) -> Strip:
        if on_cursor:
            base = base + self.get_component_rich_style("signal-table--cursor")
        segs = [Segment(" ", base)]
        for c, (text, color, mods) in zip(self.cols, cells, strict=False):
            colour = self._colors.get(color, "") if color else ""
            segs.append(Segment(_fit(text, c.width, c.right), base + _style(colour, mods)))
            segs.append(Segment(" ", base))
        return Strip(segs).adjust_cell_length(width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()  # a theme, a class (stale, focus): the base style too
        self._base_style = None

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)
        self._strips.clear()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- cursor ---------------------------------------------------------------------------

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(len(self.rows) - 1, index))
        old, self.cursor = self.cursor, index
        view = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + view:
            self.scroll_to(y=index - view + 1, animate=False)
        for i in (old, index):
            self.refresh_line(i + 1)
        self.refresh()
        if old != index:
            self.post_message(self.Highlighted(self))

    def action_cursor(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 2))

    def action_cursor_to(self, index: int) -> None:
        self._move_to(index if index >= 0 else len(self.rows) - 1)

    def action_select(self) -> None:
        sig = self.selected_signal
        if sig is not None:
            self.post_message(self.Selected(self, sig))

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_offset.y) + event.y - 1
        if event.y == 0 or index >= len(self.rows):
            return
        if index == self.cursor or event.chain >= 2:
            self.cursor = index
            self.action_select()  # a tap on the chosen row opens it: works for touch too
        else:
            self._move_to(index)


def _row_key(r: SignalView | str) -> str:
    return f"group:{r}" if isinstance(r, str) else r.id
