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
    # (signal id, reason) -> count, for MQTT payloads that could not be used
    malformed: Counter[tuple[str, str]] = field(default_factory=Counter)

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


class SampleSink(Protocol):
    """Where sources deliver samples. Called on the engine's event loop thread only;
    a source running in another thread hands over with loop.call_soon_threadsafe."""

    def ingest(self, samples: Sequence[Sample]) -> None: ...
