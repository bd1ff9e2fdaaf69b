"""Link state of a device or broker connection: data a source updates, not exceptions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from floorconsole.core.sample import Sample


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DEGRADED = "degraded"  # connected, but some reads fail (exception responses)
    DOWN = "down"


@dataclass
class LinkStats:
    """Owned and updated by one source (a device poller or a broker client); read by frames.

    Plain attributes written from one thread and read from another: each write is atomic
    under the GIL, and a frame only needs a consistent-enough view of counters.
    """

    id: str
    kind: str  # "device" | "broker"
    endpoint: str  # "127.0.0.1:5020"
    state: LinkState = LinkState.CONNECTING
    since_mono: float = 0.0
    last_rtt_ms: float | None = None
    requests: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""
    messages: int = 0
    # (signal id, reason) -> count, for MQTT payloads that could not be used: a bad value
    # per signal, so one payload read by three signals counts three times here
    malformed: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Payloads that lost at least one value, each counted once (the link bar's "malformed")
    bad_payloads: int = 0
    # reason -> payloads showing it (a payload with two reasons counts under both; bad_time,
    # a payload whose values were used with the receive time, only here)
    bad_payload_reasons: Counter[str] = field(default_factory=Counter)
    # A polled device's schedule: polls that could not start on time (the one before ran
    # long, or the engine held them back while its historian caught up: overload), the
    # polls a second achieved over the last few seconds, and how late the last one started.
    polls_skipped: int = 0
    polls_held_back: int = 0
    poll_rate_hz: float | None = None
    poll_lag_s: float = 0.0

    def set_state(self, state: LinkState, now_mono: float, error: str = "") -> bool:
        """Change state; returns True when it changed (so the caller logs once, not per poll)."""
        if error:
            self.last_error = error
        if state is self.state:
            return False
        self.state = state
        self.since_mono = now_mono
        return True

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def input_counts(self) -> dict[tuple[str, str], int]:
        """Every bad-input counter as (signal, reason) -> count: ("", "") bad payloads,
        ("", reason) payloads by reason, (signal, reason) bad values. What the historian
        keeps across restarts, and restore_input_counts() takes back."""
        out: dict[tuple[str, str], int] = dict(self.malformed)
        out.update({("", r): n for r, n in self.bad_payload_reasons.items()})
        if self.bad_payloads:
            out[("", "")] = self.bad_payloads
        return out

    def restore_input_counts(self, counts: dict[tuple[str, str], int]) -> None:
        """Counters kept from before a restart (or a configuration swap), added to these."""
        for (signal, reason), n in counts.items():
            if not signal and not reason:
                self.bad_payloads += n
            elif not signal:
                self.bad_payload_reasons[reason] += n
            else:
                self.malformed[(signal, reason)] += n


class BadInputLog:
    """When to log bad input of one link: a line at the first bad payload, then at most one
    summary a minute of what came since (counts by reason and the signals hit), so a broken
    gateway sending 1,000 payloads a second makes one log line a minute, not 1,000."""

    def __init__(self, stats: LinkStats, every_s: float = 60.0) -> None:
        self.stats = stats
        self.every_s = every_s
        self._said_first = False
        self._last_mono: float | None = None
        self._last: dict[tuple[str, str], int] = stats.input_counts()

    def first(self, topic: str, problems: Sequence[tuple[str, str]]) -> str | None:
        """The line for the first bad payload since start (None after): its topic and, per
        signal, the reason and detail."""
        if self._said_first:
            return None
        self._said_first = True
        what = "; ".join(f"{sid}: {why}" for sid, why in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return (
            f"{self.stats.kind} {self.stats.id}: bad payload on {topic}: {what}{more}; "
            f"counted, a summary follows at most every {self.every_s:g} s"
        )

    def summary(self, now_mono: float) -> str | None:
        """What came since the last summary, when there is something and it is time."""
        if self._last_mono is not None and now_mono - self._last_mono < self.every_s:
            return None
        counts = self.stats.input_counts()
        delta = {k: n - self._last.get(k, 0) for k, n in counts.items()}
        delta = {k: n for k, n in delta.items() if n > 0}
        if self._last_mono is None:
            self._last_mono = now_mono  # the minute starts with the engine
            if not delta:
                return None
        if not delta:
            return None
        self._last, self._last_mono = counts, now_mono
        payloads = delta.get(("", ""), 0)
        reasons = sorted(((r, n) for (s, r), n in delta.items() if not s and r), key=_by_count)
        signals = sorted(((f"{s} {r}", n) for (s, r), n in delta.items() if s), key=_by_count)
        text = ", ".join(f"{r} {n}" for r, n in reasons)
        hit = ", ".join(f"{s} {n}" for s, n in signals[:5])
        if len(signals) > 5:
            hit += f", +{len(signals) - 5} more"
        return (
            f"{self.stats.kind} {self.stats.id}: {payloads} bad payloads since the last "
            f"summary ({text}); bad values: {hit}; totals: {self.stats.bad_payloads} payloads"
        )


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


class SampleSink(Protocol):
    """Where sources deliver samples. Called on the engine's event loop thread only;
    a source running in another thread hands over with loop.call_soon_threadsafe."""

    def ingest(self, samples: Sequence[Sample]) -> None: ...
