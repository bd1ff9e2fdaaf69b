"""The console app and its factory: the CLI and the tests build it the same way."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches

from floorconsole.engine.frames import Frame
from floorconsole.engine.replay import ConsoleAPI
from floorconsole.ui.screens.overview import OverviewScreen
from floorconsole.ui.themes import DEFAULT_THEME, THEMES_DIR, cycle_order, load_themes


class FloorApp(App[None]):
    """Pulls a frame from EngineAPI on a tick and hands it to the screen on top."""

    CSS_PATH = "styles.tcss"
    TITLE = "floorconsole"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f1,h,question_mark", "help", "Help", key_display="F1/h"),
        Binding("t", "cycle_theme", "Theme"),
        Binding("q,f10", "quit", "Quit", key_display="q/F10"),
    ]

    def __init__(self, api: ConsoleAPI, *, theme: str = DEFAULT_THEME, refresh_hz: float = 4.0,
                 themes_dir: Path = THEMES_DIR, export_dir: Path | None = None) -> None:
        self._loaded = load_themes(themes_dir)
        super().__init__()
        self.api = api
        self.export_dir = export_dir or Path.cwd()
        self.refresh_hz = max(0.2, min(30.0, refresh_hz))
        self.last_frame: Frame | None = None
        self.frames_shown = 0
        self._wanted_theme = theme
        for t in self._loaded.themes.values():
            self.register_theme(t)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Defaults come from the default theme file, so no colour is written in code.
        return dict(self._loaded.themes[DEFAULT_THEME].variables)

    def on_mount(self) -> None:
        for problem in self._loaded.problems:
            self.notify(f"{problem}; using the others", severity="warning", timeout=10)
        if self._wanted_theme in self._loaded.themes:
            self.theme = self._wanted_theme
        else:
            self.theme = DEFAULT_THEME
            self.notify(f"no theme {self._wanted_theme!r}; using {DEFAULT_THEME} (have: "
                        f"{', '.join(cycle_order(self._loaded.themes))})", severity="warning")
        self.push_screen(OverviewScreen())
        self.set_interval(1.0 / self.refresh_hz, self.tick)
        self.call_after_refresh(self.tick)

    def tick(self) -> None:
        frame = self.api.frame()
        self.last_frame = frame
        show = getattr(self.screen, "show_frame", None)
        # A screen being pushed gets its first frame once it has composed (it asks for
        # app.last_frame in on_mount); before that its widgets do not exist yet.
        if show is not None and self.screen.is_mounted:
            try:
                show(frame)
            except NoMatches:
                return  # the screen's widgets are still being composed: the next tick draws
            self.frames_shown += 1

    def action_help(self) -> None:
        from floorconsole.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_cycle_theme(self) -> None:
        order = cycle_order(self._loaded.themes)
        nxt = order[(order.index(self.theme) + 1) % len(order)] if self.theme in order else order[0]
        self.theme = nxt
        self.notify(f"theme {nxt}")
        self.tick()


def make_app(api: ConsoleAPI, *, theme: str = DEFAULT_THEME, refresh_hz: float = 4.0,
             themes_dir: Path = THEMES_DIR, export_dir: Path | None = None) -> FloorApp:
    """The one way to build the console: the CLI and the tests alike."""
    return FloorApp(api, theme=theme, refresh_hz=refresh_hz, themes_dir=themes_dir,
                    export_dir=export_dir)
