"""The drift screen: every feature's drift figures, and the reference histogram of the chosen
feature against the live one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from floorconsole.console import Frame, ModelView, Unavailable
from floorconsole.ui.live import ShowsFrames, console_api
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.model_panel import DRIFT_COLOR, DRIFT_SHAPE, drift_line, model_text
from floorconsole.ui.widgets.status_bars import Bar


def histogram_text(h: Mapping[str, Any], colors: Mapping[str, str], width: int) -> Text:
    """Reference (training) share against live share per bin, as two bars per bin."""
    t = Text()
    edges, ref, live = h.get("edges", []), h.get("reference", []), h.get("live", [])
    t.append(f"{h.get('feature', '?')}: reference (training) ", style="bold")
    t.append("▒▒", style=colors.get("muted", ""))
    t.append(" against live ", style="bold")
    t.append("██", style=colors.get("trend", ""))
    t.append(f"  ({h.get('count', 0)} live windows)\n")
    if not ref:
        t.append("no histogram yet\n", style=colors.get("muted", ""))
        return t
    top = max(max(ref), max(live) if live else 0.0) or 1.0
    bar_w = max(6, width - 24)
    for i, r in enumerate(ref):
        lv = live[i] if i < len(live) else 0.0
        lo = edges[i] if i < len(edges) else float("nan")
        label = f"{lo:>10.3g} "
        t.append(label)
        t.append("▒" * round(r / top * bar_w), style=colors.get("muted", ""))
        t.append(f" {r * 100:4.1f}%\n")
        t.append(" " * len(label))
        t.append("█" * round(lv / top * bar_w), style=colors.get("trend", ""))
        t.append(f" {lv * 100:4.1f}%\n")
    return t


HISTOGRAM_EVERY_S = 2.0  # the live histogram moves slowly: no need to redraw it at each tick


class DriftScreen(ShowsFrames, Screen[None]):
    """One model: its state, and drift per feature against its training reference."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("s", "shadow", "Recalibrate/shadow"),
    ]

    DEFAULT_CSS = """
    DriftScreen #model { height: 8; padding: 0 1; background: $surface; }
    DriftScreen #body { height: 1fr; }
    DriftScreen OptionList { width: 58; height: 1fr; }
    DriftScreen #hist { width: 1fr; height: 1fr; padding: 0 1; overflow-y: auto; }
    """

    def __init__(self, model_id: str) -> None:
        super().__init__()
        self.model_id = model_id
        self._names: tuple[str, ...] = ()
        self._frame: Frame | None = None
        self.chosen = "score"
        self._loaded_at = -1e18

    def compose(self) -> ComposeResult:
        yield Bar(f"model {self.model_id}", id="model")
        with Horizontal(id="body"):
            yield OptionList(id="features")
            yield Static("choose a feature", id="hist")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def action_shadow(self) -> None:
        from floorconsole.ui.screens.shadow import ShadowScreen

        self.app.push_screen(ShadowScreen(self.model_id))

    def _model(self, frame: Frame) -> ModelView | None:
        return next((m for m in frame.models if m.id == self.model_id), None)

    def show_frame(self, frame: Frame) -> None:
        self._frame = frame
        m = self._model(frame)
        colors = self.app.theme_variables
        if m is None:
            self.query_one("#model", Bar).set_text(f"✕ model {self.model_id} is not running")
            return
        head = model_text(m, colors, max(20, self.size.width - 4))
        head.append_text(drift_line(m, colors))  # the same state and words as the overview's
        self.query_one("#model", Bar).set_text(head)
        names = ("score", *(f.name for f in m.features))
        options = self.query_one(OptionList)
        by_name = {f.name: f for f in m.features}
        if names != self._names:
            highlighted = options.highlighted
            options.clear_options()
            options.add_options(
                [Option(self._option_text(n, by_name.get(n), colors), id=n) for n in names]
            )
            if names and highlighted is None:
                options.highlighted = 0
            elif highlighted is not None:
                options.highlighted = min(highlighted, len(names) - 1)
            self._names = names
        else:
            for n in names[1:]:
                options.replace_option_prompt(n, self._option_text(n, by_name.get(n), colors))
        if frame.t_mono - self._loaded_at >= HISTOGRAM_EVERY_S:
            self._loaded_at = frame.t_mono
            self.load_histogram()

    @staticmethod
    def _option_text(name: str, f: Any, colors: Mapping[str, str]) -> Text:
        if f is None:
            return Text(f"{name:<18} (the model's score)")
        color = colors.get(DRIFT_COLOR.get(f.status, "muted"), "")
        t = Text(f"{name[:16]:<16} ")
        # the signed shift from training in σ (what a warning names) where the unsigned
        # Wasserstein distance stood: one row must fit the list at 80 columns
        t.append(f"PSI {f.psi:5.2f} KS {f.ks:4.2f} {f.shift:+5.1f}σ ", style=color)
        t.append(f"{DRIFT_SHAPE.get(f.status, '')} {f.status}", style=color)
        return t

    @on(OptionList.OptionHighlighted)
    def _chosen(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.chosen = event.option.id
            self.load_histogram()

    @work(thread=True, exclusive=True, exit_on_error=False, group="histogram")
    def load_histogram(self) -> None:
        text: Text | str
        try:
            h = console_api(self).model_histogram(self.model_id, self.chosen)
        except Unavailable:
            text = "histograms need a running engine"
        except Exception as e:  # a bad feature name or a stopped engine: say so
            text = f"no histogram for {self.chosen}: {e}"
        else:
            text = histogram_text(
                h, self.app.theme_variables, max(30, self.query_one("#hist").size.width - 2)
            )
        self.app.call_from_thread(self.query_one("#hist", Static).update, text)
