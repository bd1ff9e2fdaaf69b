"""One-line bars: the header (with who holds control), the condition banner, the engine line
(engine gone / reconnected) and the link bar."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

from floorconsole.console import Condition, Frame
from floorconsole.core.units import format_duration
from floorconsole.ui.format import local, zone_label

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
SEVERITY_SHAPE = {"critical": "◆◆", "high": "▲", "medium": "▼", "low": "○"}
LINK_SHAPE = {"up": "●", "degraded": "◐", "connecting": "○", "down": "✕"}
ENGINE_GONE_SHAPE = "✕"
ENGINE_BACK_SHAPE = "●"
CONTROL_KEY = "c"  # take, ask for or release control (app binding; F9's menu offers it too)


class Bar(Static):
    """A one-line bar that repaints only when its text changed, and never asks for a layout
    pass (its height is fixed): a layout pass would re-render every visible table row."""

    def set_text(self, content: Text | str) -> None:
        # Rich's Text compares text and spans only, not its own style: a theme switched live
        # changes that style alone, and the bar must repaint in the new colours.
        key = (
            (content.plain, str(content.style), tuple(content.spans))
            if isinstance(content, Text)
            else content
        )
        if key != getattr(self, "_last_key", None):
            self._last, self._last_key = content, key
            self.update(content, layout=False)


class HeaderBar(Bar):
    """Site, edge id, configuration, control mode, who is at the console, and the clock."""

    DEFAULT_CSS = """
    HeaderBar { height: 1; background: $panel; color: $foreground; text-style: bold; }
    """

    def show(
        self, frame: Frame, width: int, who: Text | str = "VIEWER", control: Text | None = None
    ) -> None:
        # The zone beside the clock: the console, the CLI and exports speak the same one.
        clock = f"{local(frame.t_wall).strftime('%H:%M:%S')} {zone_label(frame.t_wall)}"
        cfg = (
            f"snapshot {frame.snapshot[:6]}" if frame.snapshot else f"config {frame.config_id[:6]}"
        )
        who = Text(who) if isinstance(who, str) else who
        if control is not None and control.cell_len:
            who = who + Text(" · ") + control
        room = width - len(clock) - who.cell_len - 6
        # Who is logged in and who holds control are never cut; the configuration's id stays
        # whole too: the product name, the control mode and then the site give way first.
        short = cfg.replace("snapshot", "snap")
        mode = frame.control_mode.upper()
        choices: tuple[list[str], ...] = (
            ["floorconsole", frame.site, frame.edge_id, cfg, mode],
            [frame.site, frame.edge_id, cfg, mode],
            [frame.site or "floorconsole", frame.edge_id, short],
        )
        if width < 90:
            choices = choices[2:]
        for parts in choices:
            left = " · ".join(p for p in parts if p)
            if len(left) <= room:
                break
        if len(left) > room:  # the site is the part cut: the id and the snapshot stay
            tail = f" · {frame.edge_id} · {short}"
            site = (frame.site or "floorconsole")[: max(0, room - len(tail) - 1)]
            left = (f"{site}…{tail}" if site else tail[3:])[: max(0, room)]
        text = Text(f" {left} · ") if left else Text(" ")
        text.append_text(who)
        pad = max(1, width - text.cell_len - len(clock) - 1)
        text.append(f"{' ' * pad}{clock} ")
        self.set_text(text)


def control_text(
    frame: Frame,
    me: str,
    colors: Mapping[str, str],
    *,
    mine: bool | None = None,
    narrow: bool = False,
) -> Text:
    """Who holds control, in the header's words. 'CONTROL you' (this console holds it; by
    default: its user is the holder) stands out in reverse, and the word says it; a request to
    the holder says so with the key that answers it."""
    holder, asker = frame.control_holder, frame.control_requested_by
    text = Text()
    if not holder:
        return text  # nobody holds it: the first engineer to act takes it; nothing to say
    if mine is None:
        mine = bool(me) and holder == me
    if mine:
        text.append(" CONTROL you ", style="bold reverse")
        if asker and asker != me:
            words = (
                f" ? {asker} asks: {CONTROL_KEY} releases "
                if narrow
                else f" ? {asker} asks for control: {CONTROL_KEY} releases "
            )
            text.append(" ")
            text.append(words, style=f"bold reverse {colors.get('quality-uncertain', '')}".strip())
        return text
    text.append(f"CONTROL {holder}", style="bold")
    if asker:
        text.append(" · you asked" if me and asker == me else f" · {asker} asks")
    return text


def engine_gone_text(stale: str) -> str:
    """What the console says, on its engine line and for every command it will not send."""
    return f"ENGINE GONE — {stale}"


class EngineLine(Bar):
    """The console's own line about its engine: gone (the frames shown are the last received,
    greyed) or just back. Docked at the top of every screen; hidden when all is well."""

    DEFAULT_CSS = """
    EngineLine { dock: top; height: 1; display: none; text-style: bold; }
    """

    def gone(self, stale: str, last_frame_wall: float) -> None:
        at = local(last_frame_wall).strftime("%H:%M:%S")
        # The engine's words first: on a narrow terminal the end of the line is what is cut.
        self.set_text(f" {ENGINE_GONE_SHAPE} {engine_gone_text(stale)} · last frame {at}")

    def back(self, note: str = "") -> None:
        self.set_text(
            f" {ENGINE_BACK_SHAPE} ENGINE BACK — reconnected, live frames again"
            + (f" · {note}" if note else "")
        )


class Banner(Bar):
    """The highest-priority condition first, with the count of the rest; grey when all is well.
    While a new alarm at or above the console's annunciation priority is unacknowledged, its
    tag flashes (the app sets `flashing`; ISA-101: flash for unacknowledged only)."""

    DEFAULT_CSS = """
    Banner { height: 1; background: $banner-normal; color: $banner-text; }
    """

    flash_dark = False  # set by the app each tick: the dark half of a flash

    def show(self, frame: Frame, colors: Mapping[str, str]) -> None:
        self.set_text(banner_text(frame, colors, flash_off=self.flash_dark))


def banner_text(frame: Frame, colors: Mapping[str, str], *, flash_off: bool = False) -> Text:
    """What the banner says for a frame. flash_off: the dark half of a flash (the alarm's tag
    drawn without its reverse block)."""
    shown = [a for a in frame.alarms if a.state in ("UNACK", "RTN_UNACK", "ACKED")]
    conds = sorted(frame.conditions, key=lambda c: (SEVERITY_ORDER.get(c.severity, 9), -c.age_s))
    if shown:
        return _alarm_text(frame, shown, conds, colors, flash_off)
    if not conds:
        bad = sum(1 for s in frame.signals if s.quality == "BAD")
        if bad:
            return Text(
                f" {bad} signal(s) BAD — see the Quality column",
                style=colors.get("quality-bad", ""),
            )
        return Text(" No active conditions", style=colors.get("banner-text", ""))
    top = conds[0]
    shape = SEVERITY_SHAPE.get(top.severity, "!")
    text = Text()
    text.append(
        f" {shape} {top.severity.upper()} ",
        style=f"bold reverse {colors.get('alarm-' + top.severity, '')}".strip(),
    )
    text.append(
        f" {top.text}  {format_duration(top.age_s)}",
        style=f"bold {colors.get('alarm-' + top.severity, '')}".strip(),
    )
    if len(conds) > 1:
        text.append(f"   +{len(conds) - 1} more", style="bold")
    return text


def _alarm_text(
    frame: Frame,
    shown: list,  # type: ignore[type-arg]
    conds: list[Condition],
    colors: Mapping[str, str],
    flash_off: bool,
) -> Text:
    top = shown[0]  # the frame lists alarms in banner order: most urgent unacknowledged
    color = colors.get("alarm-" + top.priority, "")
    unack = top.state in ("UNACK", "RTN_UNACK")
    state = {"UNACK": "UNACK", "RTN_UNACK": "RETURNED, UNACK", "ACKED": "ACK"}[top.state]
    since = local(top.activated).strftime("%H:%M:%S") if top.activated else ""
    text = Text()
    block = unack and not flash_off
    text.append(
        f" {SEVERITY_SHAPE.get(top.priority, '!')} {top.priority.upper()} ",
        style=f"bold {'reverse ' if block else ''}{color}".strip(),
    )
    text.append(f" {top.message}", style=f"bold {color}".strip() if unack else color)
    if top.text:
        text.append(f"  {top.text}", style=color)
    text.append(f"  {state} {since}", style="bold" if unack else "")
    s = frame.alarm_summary
    if s is not None:
        text.append(f"   {s.active} active · {s.unack} unack", style="bold")
    more = []
    if len(shown) > 1:
        more.append(f"+{len(shown) - 1} more, F2")
    # Conditions that are not alarms too (a device down is both): a model at WARNING under a
    # trip alarm is still said, as a count, with the most severe named where there is room.
    alarmed = {a.id.split(":", 1)[-1] for a in frame.alarms}
    extra = [c for c in conds if c.source.split()[-1] not in alarmed]
    if extra:
        more.append(f"+{len(extra)} condition{'s' if len(extra) > 1 else ''}: {extra[0].text}")
    if more:
        text.append(f" ({'; '.join(more)})")
    return text


class LinkBar(Bar):
    """Each device and broker: state (shape and word), last round trip, errors, malformed."""

    DEFAULT_CSS = """
    LinkBar { height: 1; background: $panel; color: $foreground; }
    """

    def on_click(self) -> None:
        """A click on the link bar opens the link detail (L from the overview)."""
        from floorconsole.ui.screens.links import LinksScreen

        self.app.push_screen(LinksScreen())

    def show(self, frame: Frame, colors: Mapping[str, str], width: int) -> None:
        text = Text(" ")
        for ln in frame.links:
            bad = ln.state in ("down", "degraded", "connecting")
            style = (
                f"bold {colors.get('quality-bad' if ln.state == 'down' else 'quality-uncertain', '')}"
                if bad
                else ""
            )
            text.append(f"{ln.id} {LINK_SHAPE.get(ln.state, '?')} {ln.state}", style=style.strip())
            if ln.kind == "device" and ln.last_rtt_ms is not None and ln.state != "down":
                text.append(
                    f" {ln.last_rtt_ms:.0f}ms"
                    if ln.last_rtt_ms >= 1
                    else f" {ln.last_rtt_ms:.1f}ms"
                )
            if ln.errors:
                text.append(f" err {ln.errors}")
            if ln.malformed:
                text.append(f" malformed {ln.malformed}", style=colors.get("quality-uncertain", ""))
            text.append("  │ ")
        up = frame.uplink
        if up is not None:
            shape = {"up": "●", "connecting": "○", "waiting for host": "◐"}.get(up.state, "✕")
            style = "" if up.state == "up" else f"bold {colors.get('quality-uncertain', '')}"
            text.append(f"uplink {shape} {up.state}", style=style.strip())
            if up.sparkplug is not None:  # the Sparkplug session a SCADA host sees
                text.append(f" spB bdSeq {up.sparkplug.bdseq} seq {up.sparkplug.seq}")
            if up.backlog_rows:
                text.append(f" backlog {_count(up.backlog_rows)}")
            text.append("  │ ")
        h = frame.historian
        text.append(f"history {_count(h.rows_committed)} rows")
        if h.errors or h.dropped:
            text.append(
                f" errors {h.errors} dropped {h.dropped}",
                style=f"bold {colors.get('quality-bad', '')}",
            )
        if width >= 100:
            text.append(f"  │ {frame.ingest_rate:.0f} samples/s", style=colors.get("muted", ""))
        self.set_text(text)


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    return str(n)
