"""The link detail: each device and broker, its state and counters, and the bad input it got:
payloads by reason (each payload once) and bad values by signal and reason."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen

from floorconsole.console import Frame, LinkView
from floorconsole.core.units import format_duration
from floorconsole.ui.live import ShowsFrames
from floorconsole.ui.widgets.footer import ConsoleFooter
from floorconsole.ui.widgets.status_bars import LINK_SHAPE, Bar

# What each reason means, in the words of the plant file and the payload (core/payload.py)
REASON_TEXT = {
    "oversized": "longer than the signal's max_payload",
    "not_json": "not UTF-8 JSON",
    "missing_key": "the json path leads nowhere",
    "wrong_type": "not a number, boolean or array of numbers of the signal's kind",
    "not_finite": "NaN or infinity",
    "bad_time": "time unusable: value kept with the receive time",
}
MAX_SIGNAL_ROWS = 40  # per link: the rest are summed in one line


def link_text(ln: LinkView, colors: dict[str, str]) -> Text:
    t = Text()
    bad = ln.state in ("down", "degraded", "connecting")
    style = colors.get("quality-bad" if ln.state == "down" else "quality-uncertain", "")
    t.append(f"{ln.kind} {ln.id}", style="bold")
    t.append(f" ({ln.endpoint})  ")
    t.append(
        f"{LINK_SHAPE.get(ln.state, '?')} {ln.state}", style=f"bold {style}" if bad else "bold"
    )
    if ln.state_age_s:
        t.append(f" for {format_duration(ln.state_age_s)}")
    t.append("\n")
    if ln.last_error:
        t.append(f"  last error   {ln.last_error}\n", style=colors.get("muted", ""))
    if ln.kind == "device" and ln.endpoint.startswith("opc.tcp://"):
        # Subscribed, not polled: the server sends data changes; there is no request to count.
        t.append(f"  notifications {ln.messages:,}  errors {ln.errors:,}")
        t.append(f"  reconnects {ln.reconnects}\n")
        return t
    if ln.kind == "device":
        rtt = "—" if ln.last_rtt_ms is None else f"{ln.last_rtt_ms:.1f} ms"
        t.append(f"  requests     {ln.requests:,}  errors {ln.errors:,}  round trip {rtt}")
        t.append(f"  reconnects {ln.reconnects}\n")
        if ln.poll_s and ln.poll_rate_hz is not None:
            t.append(poll_text(ln), style=poll_style(ln, colors))
        return t
    t.append(f"  messages     {ln.messages:,}  errors {ln.errors:,}  reconnects {ln.reconnects}\n")
    warn = colors.get("quality-uncertain", "")
    t.append("  bad payloads ")
    t.append(f"{ln.malformed:,}", style=f"bold {warn}" if ln.malformed else "")
    t.append(" (each payload once, however many signals read it)\n")
    for reason, n in sorted(ln.bad_payloads_by_reason, key=lambda x: (-x[1], x[0])):
        t.append(f"    {reason:<12} {n:>10,}  ", style=warn)
        t.append(f"{REASON_TEXT.get(reason, '')}\n", style=colors.get("muted", ""))
    rows = sorted(ln.malformed_by_reason, key=lambda x: (-x[2], x[0], x[1]))
    if rows:
        t.append("  bad values by signal\n")
        for sig, reason, n in rows[:MAX_SIGNAL_ROWS]:
            t.append(f"    {sig:<32} {reason:<12} {n:>10,}\n")
        if len(rows) > MAX_SIGNAL_ROWS:
            rest = sum(n for _s, _r, n in rows[MAX_SIGNAL_ROWS:])
            t.append(f"    … {len(rows) - MAX_SIGNAL_ROWS} more, {rest:,} bad values\n")
    return t


def poll_text(ln: LinkView) -> str:
    """'  polls        4.9/s of 5/s  last 3 ms late' and, when there were any, the polls that
    could not start on time and those the engine held back while it caught up."""
    assert ln.poll_s and ln.poll_rate_hz is not None
    text = (
        f"  polls        {ln.poll_rate_hz:.1f}/s of {1 / ln.poll_s:g}/s"
        f"  last {ln.poll_lag_s * 1000:.0f} ms late"
    )
    if ln.polls_skipped:
        text += f"  skipped {ln.polls_skipped:,}"
    if ln.polls_held_back:
        text += f"  held back {ln.polls_held_back:,} (engine behind)"
    return text + "\n"


def poll_style(ln: LinkView, colors: dict[str, str]) -> str:
    """Warning colour while the device gets less than 90% of its polls (the level at which
    the poll_behind alarm clears), plain otherwise."""
    assert ln.poll_s and ln.poll_rate_hz is not None
    behind = ln.poll_rate_hz < 0.9 / ln.poll_s
    return colors.get("quality-uncertain", "") if behind else ""


def links_text(frame: Frame, colors: dict[str, str]) -> Text:
    t = Text("Links", style="bold")
    t.append("  (counters kept across restarts)\n\n", style=colors.get("muted", ""))
    if not frame.links:
        t.append("no devices or brokers in this configuration\n")
    for ln in frame.links:
        t.append_text(link_text(ln, colors))
        t.append("\n")
    return t


class LinksScreen(ShowsFrames, Screen[None]):
    """Every device and broker in detail: what the link bar sums up."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", key_display="Esc"),
        Binding("b", "browse_opcua", "Browse OPC UA"),
    ]
    DEFAULT_CSS = """
    LinksScreen #links-box { height: 1fr; }
    LinksScreen #links { height: auto; padding: 1 2; }
    """

    _links: tuple[LinkView, ...] = ()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="links-box"):
            yield Bar("", id="links")
        yield ConsoleFooter()

    @property
    def text(self) -> str:
        last = getattr(self.query_one("#links", Bar), "_last", "")
        return last.plain if isinstance(last, Text) else str(last)

    def action_browse_opcua(self) -> None:
        """The address space of an OPC UA device (the next one at each press), to add
        signals from."""
        from floorconsole.ui.screens.opcua_browse import OpcUaBrowseScreen

        servers = [ln.id for ln in self._links if ln.endpoint.startswith("opc.tcp://")]
        if not servers:
            self.notify("no OPC UA device in this configuration", severity="warning")
            return
        self._browsed = (getattr(self, "_browsed", -1) + 1) % len(servers)
        self.app.push_screen(OpcUaBrowseScreen(servers[self._browsed]))

    def show_frame(self, frame: Frame) -> None:
        self._links = frame.links
        bar = self.query_one("#links", Bar)
        text = links_text(frame, self.app.theme_variables)
        if text != getattr(bar, "_last", None):
            bar._last = text
            bar.update(text)  # its height follows the text (a layout pass, on this screen only)
