"""The uplink screen: the plant broker's state, the backlog, and how the drain is going."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen

from floorconsole.console import Frame
from floorconsole.core.sparkplug import SparkplugSessionView
from floorconsole.core.units import format_duration
from floorconsole.ui.live import ShowsFrames
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.status_bars import Bar

SHAPE = {"up": "●", "connecting": "○", "waiting for host": "◐", "down": "✕", "stopped": "✕"}


def _size(n: int) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


def uplink_text(frame: Frame, colors: dict[str, str], width: int) -> Text:
    st = frame.uplink
    t = Text()
    if st is None:
        t.append("Uplink\nnone configured: nothing leaves this box ([uplink] in the plant file)")
        return t
    bad = st.state not in ("up",)
    style = f"bold {colors.get('quality-bad' if st.state in ('down', 'stopped') else 'quality-uncertain', '')}"
    t.append("Uplink to ", style="bold")
    t.append(f"{st.broker} ({st.endpoint})  ")
    t.append(f"{SHAPE.get(st.state, '?')} {st.state}", style=style if bad else "bold")
    t.append(f" for {format_duration(st.state_age_s)}")
    if st.last_error:
        t.append(f"  {st.last_error}", style=colors.get("muted", ""))
    t.append("\n\n")
    t.append(
        f"backlog      {st.backlog_rows:,} samples in {st.backlog_messages:,} messages, "
        f"{_size(st.backlog_bytes)}"
    )
    if st.backlog_full:
        t.append("  FULL", style=f"bold {colors.get('alarm-high', '')}")
    t.append("\n")
    oldest = (
        "—" if st.oldest_age_s is None or not st.backlog_rows else format_duration(st.oldest_age_s)
    )
    t.append(f"oldest unsent {oldest}\n")
    if st.draining:
        frac = st.drain_progress or 0.0
        bar_w = max(10, width - 30)
        filled = round(frac * bar_w)
        left = "—" if st.time_left_s is None else format_duration(st.time_left_s)
        t.append(f"draining     {st.drain_rate:,.0f} samples/s, {left} left\n")
        t.append(
            "             " + "█" * filled + "·" * (bar_w - filled) + f" {frac * 100:.0f}%\n",
            style=colors.get("trend", ""),
        )
    else:
        t.append("draining     no (live data only)\n")
    lag = "—" if st.live_lag_s is None else f"{st.live_lag_s:.2f} s"
    t.append(f"live lag     {lag}\n")
    t.append(
        f"published    {st.published:,}  acknowledged {st.acked:,}  in flight {st.inflight}"
        f"  next seq {st.next_seq:,}  reconnects {st.reconnects}\n"
    )
    if st.dropped_total or st.disk_full or st.db_errors:
        t.append(
            "dropped      "
            + (", ".join(f"{r} {n:,}" for r, n in st.dropped if n) or "none")
            + f"  disk full {st.disk_full}  database errors {st.db_errors}",
            style=f"bold {colors.get('alarm-high', '')}",
        )
        if st.db_last_error:
            t.append(f"  {st.db_last_error}", style=colors.get("muted", ""))
        t.append("\n")
    else:
        t.append("dropped      none\n")
    if st.sparkplug is not None:
        _sparkplug_text(t, st.sparkplug, colors)
    return t


def _sparkplug_text(t: Text, sp: SparkplugSessionView, colors: dict[str, str]) -> None:
    """The Sparkplug B session: what a SCADA host sees of this edge node."""
    t.append("\nSparkplug B ", style="bold")
    t.append(f"spBv1.0/{sp.group}/…/{sp.edge_node}\n")
    if sp.primary_host is None:
        host = "none configured (data flows whenever connected)"
    else:
        host = f"{sp.primary_host} " + ("online" if sp.host_online else "OFFLINE: holding data")
    t.append(
        f"primary host {host}\n",
        style=""
        if sp.host_online or sp.primary_host is None
        else colors.get("quality-uncertain", ""),
    )
    bdseq = "—" if sp.bdseq is None else str(sp.bdseq)
    seq = "—" if sp.seq is None else str(sp.seq)
    t.append(f"bdSeq        {bdseq}  seq {seq}  births {sp.births}")
    if sp.last_birth_ms is not None:
        t.append(f" (last {time.strftime('%H:%M:%S', time.gmtime(sp.last_birth_ms / 1000))} UTC)")
    t.append(f"  rebirth requests {sp.rebirth_requests}\n")
    t.append(f"devices      {', '.join(sp.devices_alive) or 'none'} alive")
    if sp.devices_dead:
        t.append(
            f"; dead (DDEATH): {', '.join(sp.devices_dead)}",
            style=colors.get("quality-bad", ""),
        )
    t.append("\n")
    if sp.refused_commands:
        t.append(f"commands     {sp.refused_commands} refused (none is writable from a host)\n")
    if sp.not_carried or sp.skipped_dead or sp.unknown_signals:
        t.append(
            f"not sent     {sp.not_carried} alarm/audit/waveform entries, "
            f"{sp.skipped_dead} of dead devices, {sp.unknown_signals} of unknown signals\n",
            style=colors.get("muted", ""),
        )


class UplinkScreen(ShowsFrames, Screen[None]):
    """Store-and-forward to the plant broker, as it stands."""

    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc")]
    DEFAULT_CSS = "UplinkScreen #uplink { height: 1fr; padding: 1 2; }"

    def compose(self) -> ComposeResult:
        yield Bar("", id="uplink")
        yield ConsoleFooter()

    def show_frame(self, frame: Frame) -> None:
        self.query_one("#uplink", Bar).set_text(
            uplink_text(frame, self.app.theme_variables, self.size.width - 4)
        )
