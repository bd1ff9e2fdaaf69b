"""The help: every key of the console (from ui.keys.KEYS) and what each shape and colour means."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from floorconsole.core.quality import QUALITY_SHAPE, Quality
from floorconsole.ui.keys import KEYS
from floorconsole.ui.screens.manual_write import ARMED_SHAPE
from floorconsole.ui.widgets.chart import SPAN_FILL
from floorconsole.ui.widgets.status_bars import (
    ENGINE_BACK_SHAPE,
    ENGINE_GONE_SHAPE,
    LINK_SHAPE,
    SEVERITY_SHAPE,
)

KEY_COLUMN = 20

# (shape, words, theme variable for the shape's colour or "", what it means)
QUALITY_LEGEND = (
    (QUALITY_SHAPE[Quality.GOOD], "GOOD", "", "normal text, no colour: the value can be trusted"),
    (
        QUALITY_SHAPE[Quality.UNCERTAIN],
        "UNCERTAIN",
        "quality-uncertain",
        "amber, with the reason (initial, last usable, substitute, out of range)",
    ),
    (
        QUALITY_SHAPE[Quality.BAD],
        "BAD",
        "quality-bad",
        "red, with the reason (no communication, device failure, ...); the last value is "
        "greyed and struck through",
    ),
)
LINK_LEGEND = (
    (LINK_SHAPE["up"], "up", "", "answering"),
    (LINK_SHAPE["degraded"], "degraded", "quality-uncertain", "some requests fail"),
    (LINK_SHAPE["connecting"], "connecting", "quality-uncertain", "not connected yet"),
    (LINK_SHAPE["down"], "down", "quality-bad", "no answer: its signals turn BAD"),
)
SEVERITY_LEGEND = (
    (SEVERITY_SHAPE["critical"], "CRITICAL", "alarm-critical", "act now"),
    (SEVERITY_SHAPE["high"], "HIGH", "alarm-high", "act soon"),
    (SEVERITY_SHAPE["medium"], "MEDIUM", "alarm-medium", "look into it"),
    (SEVERITY_SHAPE["low"], "LOW", "alarm-low", "advisory"),
)
CHART_LEGEND = (
    (
        QUALITY_SHAPE[Quality.BAD] + SPAN_FILL["BAD"] * 2,
        "went BAD",
        "quality-bad",
        "no line is drawn while BAD",
    ),
    (
        QUALITY_SHAPE[Quality.UNCERTAIN] + SPAN_FILL["UNCERTAIN"] * 2,
        "went UNCERTAIN",
        "quality-uncertain",
        "the line is drawn in amber",
    ),
    (QUALITY_SHAPE[Quality.GOOD], "back to GOOD", "", ""),
    ("gap", "no data", "muted", "nothing was received (or it was BAD)"),
)

CONSOLE_LEGEND = (
    (
        "",
        "CONTROL you",
        "",
        "this console holds control: writes, rule changes and rollbacks "
        "go from here (c releases it)",
    ),
    ("", "CONTROL eng1", "", "another console holds it: c asks eng1 for it"),
    ("", "no CONTROL", "muted", "nobody holds control: the first engineer to act takes it"),
    ("?", "eng2 asks", "quality-uncertain", "someone asks you for control: c releases it"),
    (
        ENGINE_GONE_SHAPE,
        "ENGINE GONE",
        "quality-bad",
        "the engine went away: the last frame "
        "stays, greyed; nothing is sent; the console reconnects by itself",
    ),
    (
        ARMED_SHAPE,
        "ARMED",
        "alarm-high",
        "a write by hand waits for you: y confirms it "
        "before the count runs out, Esc cancels; nothing is written until then",
    ),
    (
        ENGINE_BACK_SHAPE,
        "ENGINE BACK",
        "",
        "reconnected (a restarted engine asks you to log in again with F9)",
    ),
)


Row = tuple[Text, Text]  # (keys or shape, what it means)


def help_sections(colors: Mapping[str, str]) -> list[tuple[str, list[Row]]]:
    """The help's content: keys by group, then the legends, each row in two columns."""
    sections: list[tuple[str, list[Row]]] = []
    for group, entries in KEYS:
        sections.append((group, [(Text(e.shown, style="bold"), Text(e.what)) for e in entries]))
    for title, legend in (
        ("Quality of a value", QUALITY_LEGEND),
        ("Devices and brokers", LINK_LEGEND),
        ("Conditions and alarms (banner)", SEVERITY_LEGEND),
        ("Chart: the line under the plot", CHART_LEGEND),
        ("Control and the engine (header, top line)", CONSOLE_LEGEND),
    ):
        rows = []
        for shape, words, role, meaning in legend:
            style = f"bold {colors.get(role, '')}".strip() if role else "bold"
            rows.append((Text(f"{shape} {words}".strip(), style=style), Text(meaning)))
        sections.append((title, rows))
    return sections


FOOTNOTE = (
    "Grey means normal. Colour appears only for what is abnormal, and always with a "
    "shape and words, so every state reads on a monochrome panel too."
)


def help_renderable(colors: Mapping[str, str]) -> Group:
    """Sections as two-column grids: long text wraps under its own column, not under the keys."""
    parts: list[Text | Table] = []
    for title, rows in help_sections(colors):
        parts.append(Text(title, style="bold underline"))
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=KEY_COLUMN, no_wrap=True)
        grid.add_column(ratio=1)
        for left, right in rows:
            grid.add_row(Text("  ") + left, right)
        parts.append(grid)
        parts.append(Text(""))
    parts.append(Text(FOOTNOTE, style=colors.get("muted", "")))
    return Group(*parts)


def help_text(colors: Mapping[str, str]) -> str:
    """The help as plain text, one row a line (for tests and logs)."""
    lines = []
    for title, rows in help_sections(colors):
        lines.append(title)
        lines.extend(f"  {left.plain:<{KEY_COLUMN}} {right.plain}".rstrip() for left, right in rows)
        lines.append("")
    lines.append(FOOTNOTE)
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    """Keys and symbols, over whatever screen was showing. Scroll with the arrows or PgUp/PgDn."""

    BINDINGS = [
        Binding("escape,q,f1", "close", "Close", key_display="Esc"),
        Binding("h,question_mark", "close", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > #help-box {
        width: 100%; max-width: 96; height: 100%;
        border: round $primary; border-title-align: left;
        background: $surface; color: $foreground; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        box = VerticalScroll(id="help-box")
        box.border_title = "Help · keys and symbols"
        box.border_subtitle = "Esc q F1 close · ↑ ↓ PgUp PgDn scroll"
        with box:
            yield Static(help_renderable(self.app.theme_variables), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    @property
    def text(self) -> str:
        """The help as plain text (for tests and for reading in a log)."""
        return help_text(self.app.theme_variables)
