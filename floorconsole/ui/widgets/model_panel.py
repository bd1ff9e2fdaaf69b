"""The model panel (score against its warning and critical lines) and the drift panel (PSI per
feature, worst first); both say plainly when there is no model."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text

from floorconsole.console import Frame, ModelView
from floorconsole.core.model_state import (
    BAD,
    CRITICAL,
    NORMAL,
    NOT_SCORING,
    OUT_OF_SERVICE,
    WARNING,
)
from floorconsole.ui.format import sparkline
from floorconsole.ui.widgets.status_bars import Bar

# Every word of core.model_state has a shape and a colour; the word itself is always written.
STATE_SHAPE = {
    NORMAL: "●",
    WARNING: "▲",
    CRITICAL: "◆◆",
    BAD: "✕",
    OUT_OF_SERVICE: "○",
}
STATE_COLOR = {
    NORMAL: "quality-good",
    WARNING: "alarm-high",
    CRITICAL: "alarm-critical",
    BAD: "quality-bad",
    OUT_OF_SERVICE: "stale",
}
# core.drift.DRIFT_STATES: one vocabulary on the overview, the model panel and the drift screen
DRIFT_SHAPE = {"ok": "●", "warning": "▼", "alert": "◆", "filling": "○"}
DRIFT_COLOR = {
    "ok": "quality-good",
    "warning": "alarm-medium",
    "alert": "alarm-high",
    "filling": "muted",
}


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "—" if v is None else format(v, fmt)


def state_words(m: ModelView) -> str:
    """'◆◆ CRITICAL', '○ OUT OF SERVICE': the shape and the word of the model's state."""
    word = m.word
    return f"{STATE_SHAPE.get(word, '?')} {word}"


def score_words(m: ModelView) -> str:
    """The score beside the state; while the model is not scoring, the score shown is the last
    one and says so."""
    if m.word in NOT_SCORING:
        return f"last score {_num(m.smoothed)}"
    return f"score {_num(m.smoothed)}"


def model_text(m: ModelView, colors: Mapping[str, str], width: int) -> Text:
    t = Text()
    t.append(f"Model {m.id}", style="bold")
    t.append(f" v{m.version} {m.sha[:6]}\n" if m.running else "\n", style=colors.get("muted", ""))
    word = m.word
    style = ("bold " if word != NORMAL else "") + colors.get(STATE_COLOR.get(word, ""), "")
    if not m.running:
        t.append(f"{state_words(m)} not running\n", style=style.strip())
        t.append(f"{m.load_error}\n", style=colors.get("quality-bad", ""))
        return t
    if m.load_error:
        t.append(
            f"◆ new package refused: {m.load_error}\n", style=colors.get("quality-uncertain", "")
        )
    # One line says the state, in the one word every screen uses; why, when it is not scoring.
    t.append(state_words(m), style=style.strip())
    if word in NOT_SCORING:
        why = m.quality_detail or m.quality_reason
        t.append(f"  {why}\n" if why else "\n", style=style.strip())
        t.append(f"{score_words(m)}  warn {_num(m.warning)}  crit {_num(m.critical)}\n")
    else:
        t.append(f"  {score_words(m)}  warn {_num(m.warning)}  crit {_num(m.critical)}\n")
        if m.quality == "UNCERTAIN":
            t.append(
                f"◆ UNCERTAIN {m.quality_detail or m.quality_reason}\n",
                style=f"bold {colors.get('quality-uncertain', '')}".strip(),
            )
    if m.trend:
        top = max((m.critical or 1.0) * 1.2, max(m.trend))
        spark = sparkline(m.trend, max(8, width - 2), 0.0, top)
        t.append(spark + "\n", style=colors.get("trend", ""))
        t.append(f"trend of the smoothed score, scale 0–{top:.2f}\n", style=colors.get("muted", ""))
    t.append(
        f"infer {_num(m.inference_ms, '.2f')} ms · window {_num(m.window_ms, '.2f')} ms"
        f" · n {m.windows}",
        style=colors.get("muted", ""),
    )
    if m.bad_outputs:
        t.append(f" · {m.bad_outputs} bad", style=colors.get("quality-uncertain", ""))
    t.append("\n")
    return t


def drift_words(m: ModelView) -> str:
    """'▼ warning: x.rms +1.1σ, x.variance +0.8σ', '○ filling: 24 of 240 windows': the shape,
    the state and what drives it, as the engine worded it (core.drift.DriftReport.text)."""
    st = m.drift_status
    return f"{DRIFT_SHAPE.get(st, '?')} {m.drift_text or st}"


def drift_line(m: ModelView, colors: Mapping[str, str]) -> Text:
    """One line: 'Drift ▼ WARNING x.rms +1.1σ, …' in the state's colour (the drift screen)."""
    st = m.drift_status
    t = Text()
    t.append("Drift ", style="bold")
    words = m.drift_text.split(": ", 1)
    t.append(
        f"{DRIFT_SHAPE.get(st, '?')} {st.upper()}" + (f" {words[1]}" if len(words) == 2 else ""),
        style=("bold " if st in ("warning", "alert") else "")
        + colors.get(DRIFT_COLOR.get(st, "muted"), ""),
    )
    return t


def drift_text(m: ModelView, colors: Mapping[str, str], width: int, rows: int = 8) -> Text:
    t = Text()
    st = m.drift_status
    t.append("Drift ", style="bold")
    t.append(
        f"{DRIFT_SHAPE.get(st, '?')} {st.upper()}",
        style=("bold " if st in ("warning", "alert") else "")
        + colors.get(DRIFT_COLOR.get(st, "muted"), ""),
    )
    if st == "filling" or m.drift_count < m.drift_needed:
        t.append(
            f"\ncollecting {m.drift_count} of {m.drift_needed} windows before drift "
            "figures mean anything",
            style=colors.get("muted", ""),
        )
        return t
    words = m.drift_text.split(": ", 1)
    if st in ("warning", "alert") and len(words) == 2:
        # what drives it, by how much: "x.rms +1.1σ, x.variance +0.8σ"
        t.append(
            f"\n{words[1]}\n",
            style="bold " + colors.get(DRIFT_COLOR.get(st, "muted"), ""),
        )
        t.append(f"PSI max {_num(m.psi_max, '.2f')} {m.worst}\n")
    else:
        t.append(f"  PSI max {_num(m.psi_max, '.2f')} {m.worst}\n")
    name_w = max(8, min(14, width - 16))
    bar_w = max(4, width - name_w - 8)
    scale = m.psi_alert * 2 or 0.5
    for f in m.features[:rows]:
        filled = min(bar_w, round(f.psi / scale * bar_w))
        color = colors.get(DRIFT_COLOR.get(f.status, "muted"), "")
        t.append(f"{f.name[:name_w]:<{name_w}} ")
        t.append("█" * filled, style=color)
        t.append("·" * (bar_w - filled), style=colors.get("muted", ""))
        t.append(f" {f.psi:5.2f}", style=("bold " if f.status != "ok" else "") + color)
        t.append(f"{DRIFT_SHAPE.get(f.status, '')}\n" if f.status != "ok" else "\n", style=color)
    ph = "fired" if m.page_hinkley_fired else "ok"
    t.append(
        f"score Page-Hinkley {_num(m.page_hinkley, '.2f')} {ph}",
        style=colors.get("alarm-high" if m.page_hinkley_fired else "muted", ""),
    )
    return t


def model_line(frame: Frame) -> str:
    """One line for narrow terminals (the status line under the table)."""
    if not frame.models:
        return "model: no model configured"
    parts = []
    for m in frame.models:
        if not m.running:
            parts.append(f"model {m.id}: {state_words(m)} not running: {m.load_error}")
            continue
        why = ""
        if m.word in NOT_SCORING:
            why = f" ({m.quality_detail or m.quality_reason})"
        parts.append(
            f"model {m.id}: {state_words(m)}{why} {score_words(m)}/{_num(m.warning)} · drift "
            f"{drift_words(m)}"
            + (f" PSI {_num(m.psi_max, '.2f')}" if m.drift_status == "ok" else "")
        )
    return " │ ".join(parts)


class ModelPanel(Bar):
    """Score, state, thresholds and trend of each model (or that there is none)."""

    def show(self, frame: Frame, colors: Mapping[str, str]) -> None:
        if not frame.models:
            self.set_text("Model\nno model configured")
            return
        width = max(20, self.size.width - 2)
        out = Text()
        for m in frame.models:
            out.append_text(model_text(m, colors, width))
        self.set_text(out)


class DriftPanel(Bar):
    """PSI per feature against the model's training data, worst first."""

    def show(self, frame: Frame, colors: Mapping[str, str]) -> None:
        if not frame.models:
            self.set_text("Drift\nno model configured: nothing to compare")
            return
        width = max(20, self.size.width - 2)
        rows = max(3, self.size.height - 3) if self.size.height else 8
        out = Text()
        for m in frame.models:
            out.append_text(drift_text(m, colors, width, rows))
        self.set_text(out)
