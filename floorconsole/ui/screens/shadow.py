"""The shadow screen: recalibrate a model from a healthy window, run the candidate beside the
live model, compare the two, and promote the candidate (issue 15).

Everything comes through the console contract: api.model_comparison for the figures, the
commands model.calibrate, model.shadow and model.promote (the last one asks for the PIN and a
reason, and is a snapshot like any change: F5 rolls it back)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from floorconsole.console import Frame, Unavailable
from floorconsole.ui.format import local
from floorconsole.ui.live import ShowsFrames, console_api, console_app
from floorconsole.ui.screens.reason import ReasonDialog
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.status_bars import Bar

LOAD_EVERY_S = 2.0
BLOCKS = "▁▂▃▄▅▆▇█"
WINDOWS = (("30 min", 1800.0), ("1 h", 3600.0), ("2 h", 7200.0), ("8 h", 28800.0))


def spark(values: Sequence[float | None], top: float, width: int) -> str:
    """The newest `width` values as block characters on a shared scale 0..top."""
    shown = list(values)[-width:]
    out = []
    for v in shown:
        if v is None:
            out.append(" ")
            continue
        k = int(min(1.0, max(0.0, v / top if top > 0 else 0.0)) * (len(BLOCKS) - 1))
        out.append(BLOCKS[k])
    return "".join(out)


def _when(t: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A wall time in the console's zone (ui.format.local)."""
    return local(float(t)).strftime(fmt) if isinstance(t, (int, float)) else "?"


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else "–"


def comparison_text(c: Mapping[str, Any], colors: Mapping[str, str], width: int) -> Text:
    """The comparison (EngineAPI.model_comparison) in plant words, fitted to `width`."""
    muted = colors.get("muted", "")
    t = Text()
    prog = c.get("calibrating")
    if prog:
        t.append(f"calibrating: {prog[0]} {float(prog[1]) * 100:.0f} %\n\n", style="bold")
    last = c.get("last_candidate")
    if not c.get("running"):
        t.append(f"no candidate runs beside {c.get('model', '?')}.\n", style="bold")
        if last and last.get("package_sha256") == c.get("live_sha256"):
            t.append(
                f"candidate {last.get('version', '')} ({str(last.get('package_sha256'))[:12]}) "
                "is the live model now: promoted. F5 rolls back to the one before.\n"
            )
        elif last:
            w = last.get("window", {})
            t.append(
                f"last candidate {last.get('version', '')} ({str(last.get('package_sha256'))[:12]})"
                f"\n  from {_when(w.get('since'))} to {_when(w.get('until'))}, "
                f"{w.get('windows', 0)} windows ({w.get('skipped', 0)} left out)\n"
                f"  warning {_g(last.get('warning'))} (live {_g(last.get('parent_warning'))}), "
                f"critical {_g(last.get('critical'))} (live {_g(last.get('parent_critical'))})\n"
            )
            t.append("s shadows it beside the live model.\n", style=muted)
        t.append("k recalibrates from a window of history marked healthy.\n", style=muted)
        return t
    cand, live, sh = c["candidate"], c["live"], c["shadow"]
    n = int(c.get("windows") or 0)
    agree = c.get("agreement")
    t.append("candidate ", style="bold")
    t.append(f"{cand['version']} ({cand['sha256'][:12]})\n")
    t.append("live      ", style="bold")
    t.append(f"{live['version']} ({live['sha256'][:12]})\n")
    t.append(
        f"beside it since {_when(c['since'], '%H:%M:%S')}: {n} windows, states agree "
        f"{'–' if agree is None else f'{agree:.0%}'}\n\n"
    )
    t.append(
        f"{'':<10}{'warning':>8}{'critical':>9}{'warned':>7}{'tripped':>8}  thresholds\n",
        style="bold",
    )
    for label, row, th in (
        ("live", live, (live.get("warning"), live.get("critical"))),
        ("candidate", sh, (cand.get("warning"), cand.get("critical"))),
    ):
        t.append(
            f"{label:<10}{row['warning_windows']:>8}{row['critical_windows']:>9}"
            f"{row['warnings']:>7}{row['trips']:>8}  {_g(th[0])} / {_g(th[1])}\n"
        )
    t.append(f"{'':<10}(windows in warning and critical; times it warned and tripped)\n", muted)
    t.append(f"candidate drift: {sh.get('drift', 'filling')}\n\n")
    series = c.get("series") or {}
    lv = [v for v in series.get("live", []) if v is not None]
    sv = [v for v in series.get("shadow", []) if v is not None]
    top = max([*lv, *sv, float(cand.get("critical") or 0.0), 1e-12])
    w = max(10, width - 11)
    t.append(f"scores, newest right (0 to {_g(top)}):\n", style="bold")
    t.append(f"{'live':<10} ")
    t.append(spark(series.get("live", []), top, w) + "\n", style=colors.get("warning", ""))
    t.append(f"{'candidate':<10} ")
    t.append(spark(series.get("shadow", []), top, w) + "\n\n", style=colors.get("trend", ""))
    t.append("rules replayed since the shadow started (dry run):\n", style="bold")
    rules = c.get("dry_run") or []
    if not rules:
        t.append("no rule watches this model's outputs\n", style=muted)
    for d in rules:
        t.append(
            f"{d['rule']} on {d['signal']}: live {d['live']['activations']} activation(s), "
            f"candidate {d['shadow']['activations']}\n"
        )
    if c.get("dry_run_error"):
        t.append(f"{c['dry_run_error']}\n", style=colors.get("error", ""))
    return t


class CalibrateDialog(ModalScreen[tuple[float, bool] | None]):
    """Which healthy window to learn from (back from now), and whether to train weights."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]
    DEFAULT_CSS = """
    CalibrateDialog { align: center middle; }
    CalibrateDialog > Vertical { width: 60; height: auto; border: round $primary;
                                 background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "Recalibrate from history marked healthy (e.g. since the overhaul).\nThe last …"
            )
            yield OptionList(
                *[
                    Option(f"{label}: scaler, thresholds, drift reference", id=f"{s}:0")
                    for label, s in WINDOWS
                ],
                *[
                    Option(f"{label}: the same and new weights (seconds)", id=f"{s}:1")
                    for label, s in WINDOWS
                ],
            )
            yield Static("Enter to build the candidate · Esc to cancel")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        seconds, train = (event.option.id or "0:0").split(":")
        self.dismiss((float(seconds), train == "1"))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ShadowScreen(ShowsFrames, Screen[None]):
    """One model's candidate against the live model, and the keys that make and promote it."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("k", "calibrate", "Recalibrate"),
        Binding("s", "shadow", "Shadow on/off"),
        Binding("p", "promote", "Promote"),
    ]
    DEFAULT_CSS = """
    ShadowScreen #title { height: 1; padding: 0 1; background: $surface; }
    ShadowScreen #cmp { height: 1fr; padding: 0 1; overflow-y: auto; }
    """

    def __init__(self, model_id: str) -> None:
        super().__init__()
        self.model_id = model_id
        self._loaded_at = -1e18
        self.last: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Bar(f"shadow comparison · model {self.model_id}", id="title")
        yield Static("loading …", id="cmp")
        yield ConsoleFooter()

    def show_frame(self, frame: Frame) -> None:
        if frame.t_mono - self._loaded_at >= LOAD_EVERY_S:
            self._loaded_at = frame.t_mono
            self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="comparison")
    def load(self) -> None:
        text: Text | str
        try:
            c = console_api(self).model_comparison(self.model_id)
        except Unavailable:
            text = "the comparison needs a running engine"
        except Exception as e:  # a stopped engine, a model gone: say so
            text = f"no comparison for {self.model_id}: {e}"
        else:
            self.last = c
            width = max(30, self.size.width - 2)
            text = comparison_text(c, self.app.theme_variables, width)
        self.app.call_from_thread(self.query_one("#cmp", Static).update, text)

    def _reload(self, _result: dict[str, Any] | None = None) -> None:
        self._loaded_at = -1e18
        self.load()

    def action_calibrate(self) -> None:
        def picked(choice: tuple[float, bool] | None) -> None:
            if choice is None:
                return
            seconds, train = choice
            now = time.time()
            self.notify(f"building a candidate from the last {seconds / 3600:g} h …")
            console_app(self).send_command(
                "model.calibrate",
                model=self.model_id,
                since=now - seconds,
                until=now,
                train_weights=train,
                then=self._reload,
            )

        self.app.push_screen(CalibrateDialog(), picked)

    def action_shadow(self) -> None:
        op = "stop" if self.last.get("running") else "start"
        console_app(self).send_command(
            "model.shadow", model=self.model_id, op=op, then=self._reload
        )

    def action_promote(self) -> None:
        if not self.last.get("running"):
            self.notify("shadow a candidate first (s), then promote it", severity="warning")
            return
        cand = self.last.get("candidate", {})

        def reason(text: str | None) -> None:
            if text:
                console_app(self).send_command(
                    "model.promote", model=self.model_id, message=text, then=self._reload
                )

        self.app.push_screen(
            ReasonDialog(
                f"Promote candidate {cand.get('version', '')} to live model "
                f"{self.model_id}? It becomes a new snapshot, health-checked; F5 rolls it "
                "back. Why:"
            ),
            reason,
        )
