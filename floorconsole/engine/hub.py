"""The hub: latest value of every signal, short trend buffers, staleness, and fan-out."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from floorconsole.core.clock import Clock
from floorconsole.core.config import ModbusPoint, MqttPoint, PlantConfig, SignalConfig
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample

log = logging.getLogger(__name__)

SPARK_POINTS = 120  # trend points kept per signal for sparklines
SPARK_INTERVAL_S = 0.5  # at most one trend point per signal this often: 120 points = 1 minute
MQTT_STALE_DEFAULT_S = 10.0


class SampleStore(Protocol):
    """What the hub writes to: the historian (or anything that records samples)."""

    def append(self, samples: Sequence[Sample]) -> None: ...

    def append_quality(self, sample: Sample) -> None: ...


def _never() -> bool:
    return False


class Hub:
    """Every sample passes through here on the engine's event loop thread.

    A degraded re-emission of an earlier value (Sample.degraded: the same value object and
    t_mono, another quality) is a quality change, not a new measurement: it updates the latest table and the quality log but is
    not stored as a sample row again.
    """

    def __init__(self, plant: PlantConfig, clock: Clock, store: SampleStore | None = None) -> None:
        self.clock = clock
        self.store = store
        now_mono, now_wall = clock.mono(), clock.wall()
        self.latest: dict[str, Sample] = {}
        self.spark: dict[str, deque[float]] = {}
        self._spark_t: dict[str, float] = {}
        self.stale_after: dict[str, float] = {}
        devices = {d.id: d for d in plant.devices}
        for s in plant.signals:
            # Every signal exists from the start, so the table never changes size under readers.
            self.latest[s.id] = Sample(
                s.id, None, Quality.UNCERTAIN, Reason.INITIAL, now_wall, now_mono, "no value yet"
            )
            self.spark[s.id] = deque(maxlen=SPARK_POINTS)
            self._spark_t[s.id] = -1e18
            if s.stale_after_s is not None:
                self.stale_after[s.id] = s.stale_after_s
            elif isinstance(s.source, MqttPoint):
                self.stale_after[s.id] = MQTT_STALE_DEFAULT_S
            elif isinstance(s.source, ModbusPoint):
                # The device poller flags its own signals; this is the backstop if it hangs.
                self.stale_after[s.id] = devices[s.source.device].stale_after_s + 1.0
        # No signal can go stale before this monotonic time (check_stale skips its scan of
        # every signal until then): the earliest deadline of the last scan, lowered by any
        # sample that starts a new deadline sooner (one turning from BAD, one older).
        self._stale_due = -math.inf
        self._min_stale = min(self.stale_after.values(), default=math.inf)
        self.ranges: dict[str, tuple[float, float]] = {
            s.id: s.range for s in plant.signals if s.range is not None
        }
        self.samples_in = 0
        self.unknown_signals = 0
        self._listeners: list[Callable[[Sequence[Sample]], None]] = []
        # Control's listener runs before the store takes the batch and before the others
        # (models, uplink): a crossing reaches its write without waiting on bookkeeping.
        self._first: list[Callable[[Sequence[Sample]], None]] = []
        # The store's "I am behind" (Historian.backlogged): sources stretch their polls.
        self._backlogged: Callable[[], bool] = getattr(store, "backlogged", None) or _never

    def add_signals(self, signals: Sequence[SignalConfig]) -> None:
        """Register signals the engine computes (model outputs). Call before readers start:
        the latest table must not change size while consoles read it. They get no stale
        limit here; their producer marks them BAD when its inputs go stale."""
        now_mono, now_wall = self.clock.mono(), self.clock.wall()
        for s in signals:
            if s.id in self.latest:
                raise ValueError(f"signal {s.id!r} is produced twice")
            self.latest[s.id] = Sample(
                s.id, None, Quality.UNCERTAIN, Reason.INITIAL, now_wall, now_mono, "no value yet"
            )
            self.spark[s.id] = deque(maxlen=SPARK_POINTS)
            self._spark_t[s.id] = -1e18

    def add_listener(self, fn: Callable[[Sequence[Sample]], None], *, first: bool = False) -> None:
        """Called with every batch after the latest table is updated (rules, models, uplink).
        first: before the store and the other listeners (control: its writes go out first)."""
        (self._first if first else self._listeners).append(fn)

    def backlogged(self) -> bool:
        """True while the store has more waiting than it commits in about half a second:
        pollers then stretch their polls (bounded memory, fresh history) until it catches up."""
        return self._backlogged()

    def ingest(self, samples: Sequence[Sample]) -> None:
        latest = self.latest
        spark = self.spark
        spark_t = self._spark_t
        store = self.store
        ranges = self.ranges
        fresh: list[Sample] = []
        good, bad, decode_error = Quality.GOOD, Quality.BAD, Reason.DECODE_ERROR
        ndarray = np.ndarray
        # The hot loop (every sample of every poll): fields unpacked once, the cheap tests
        # first, isinstance only where a value may be a waveform.
        for s in samples:
            sig, x, q, r, _t, t_mono, detail = s
            prev = latest.get(sig)
            if prev is None:
                self.unknown_signals += 1
                continue
            if q is good and x is not None:
                rng = ranges.get(sig)
                if (
                    rng is not None
                    and (x.__class__ is float or not isinstance(x, ndarray))
                    and not (rng[0] <= x <= rng[1])
                ):
                    # Outside its engineering range: shown, recorded, but not trusted.
                    s = s._replace(
                        quality=Quality.UNCERTAIN,
                        reason=Reason.OUT_OF_RANGE,
                        detail=f"{x:g} outside {rng[0]:g}–{rng[1]:g}",
                    )
                    q, r, detail = s.quality, s.reason, s.detail
            latest[sig] = s
            _, px, pq, pr, _, pt, pdetail = prev  # one unpacking, not four field lookups
            if q != pq or r != pr or (r is decode_error and _why(detail) != _why(pdetail)):
                # A payload BAD for another reason than the last (not_json, then wrong_type)
                # is a change too: the history's quality export says why, not only that.
                if store is not None:
                    store.append_quality(s)
                if q is not bad:
                    self._stale_from(sig, t_mono)  # a deadline again (or a new one)
            if t_mono <= pt:
                if t_mono == pt and x is px:
                    continue  # a degraded re-emission (Sample.degraded): quality change only
                self._stale_from(sig, t_mono)  # an older time: an earlier deadline
            fresh.append(s)
            if (
                x is not None
                and t_mono - spark_t[sig] >= SPARK_INTERVAL_S
                and not isinstance(x, ndarray)
            ):
                spark[sig].append(float(x))
                spark_t[sig] = t_mono
        self.samples_in += len(fresh)
        for fn in self._first:
            try:
                fn(fresh)
            except Exception:  # a failing consumer must not stop ingest for the others
                log.exception("sample listener %r failed", fn)
        if store is not None and fresh:
            store.append(fresh)
        for fn in self._listeners:
            try:
                fn(fresh)
            except Exception:  # a failing consumer must not stop ingest for the others
                log.exception("sample listener %r failed", fn)

    def check_stale(self) -> int:
        """Turn values with no fresh sample for their stale time BAD (no communication).

        Runs on the monotonic clock, so a wall-clock step makes no false stale flags.
        Returns how many signals changed.
        """
        now = self.clock.mono()
        if now < self._stale_due:
            return 0  # nothing can be due yet: no scan of every signal ten times a second
        changed: list[Sample] = []
        due = now + self._min_stale  # a signal turning GOOD after this scan: not sooner
        latest, bad = self.latest, Quality.BAD
        for sid, limit in self.stale_after.items():
            s = latest[sid]
            if s.quality is bad:
                continue
            if now - s.t_mono <= limit:
                if s.t_mono + limit < due:
                    due = s.t_mono + limit
                continue
            if s.reason is Reason.INITIAL:
                detail = f"no value received in {limit:g} s"
            else:
                detail = f"no fresh value for {now - s.t_mono:.1f} s (limit {limit:g} s)"
            changed.append(s.degraded(Reason.NO_COMM, detail))
        self._stale_due = due
        if changed:
            self.ingest(changed)
        return len(changed)

    def _stale_from(self, sig: str, t_mono: float) -> None:
        limit = self.stale_after.get(sig)
        if limit is not None and t_mono + limit < self._stale_due:
            self._stale_due = t_mono + limit

    def rescan_stale(self) -> None:
        """The latest table was written from outside ingest (values carried over from the
        configuration before): the next check_stale looks at every signal again."""
        self._stale_due = -math.inf


def _why(detail: str) -> str:
    """The reason word a decoding error's detail starts with ("not_json: ...")."""
    return detail.partition(": ")[0]
