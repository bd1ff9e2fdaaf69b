"""The dry run: a rule replayed over recorded samples through the engine's own evaluator.

The engine feeds a rule each sample as it arrives and ticks it every 100 ms (its watchdog
period), on the monotonic clock. A replay does the same with a fresh RuleEvaluator on a fake
monotonic clock taken from the recorded sample times: seconds since the first sample, with
ticks at every multiple of 100 ms after it (a tick due at a sample's time runs before that
sample). Because it is the same evaluator, delays, deadband, minimum times, the change cap
and the quality policy count exactly as the engine counts them.

A quality change that came with no new sample is stored at the time of the last sample, so
a recording does not say when it happened. The one the engine makes itself is replayed: given
the signal's stale limit (the hub's), a signal with no sample for longer than that goes BAD
(no communication) on the first tick past it, as the hub's staleness check does. A device
poller marks its signals BAD at the failed poll, sooner than that limit; the replay cannot
know that moment and takes the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from floorconsole.core.quality import Quality, Reason
from floorconsole.core.rules import RuleConfig, RuleEvaluator, Transition
from floorconsole.core.sample import Sample

TICK_S = 0.1  # the engine's watchdog period (engine.runtime.WATCHDOG_INTERVAL_S)

# A recording without reasons (t, value, quality) gets one that belongs to its quality; it is
# only ever shown in a transition's text.
_REASON_OF = {
    Quality.GOOD: Reason.NONE,
    Quality.UNCERTAIN: Reason.LAST_USABLE,
    Quality.BAD: Reason.NO_COMM,
}


@dataclass(frozen=True, slots=True)
class DryRunResult:
    """What a rule would have done over a recording."""

    activations: int
    releases: int
    active_s: float  # how long the output was active between the first sample and `until`
    first: float | None  # wall time of the first activation, None when there was none
    last: float | None  # wall time of the last activation
    held: int = 0  # changes the max_changes_per_hour cap held back
    samples: int = 0
    since: float | None = None  # wall time of the first sample replayed
    until: float | None = None  # wall time the replay ran to

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dry_run(
    rule: RuleConfig,
    samples: Iterable[Sequence[Any]],
    *,
    until: float | None = None,
    stale_after_s: float | None = None,
    tick_s: float = TICK_S,
) -> DryRunResult:
    """Replay samples of the rule's signal, oldest first, through a fresh RuleEvaluator.

    Each sample is (t_wall, value, quality) or (t_wall, value, quality, reason), such as the
    historian's Record. After the last sample the timers keep running until `until` (a wall
    time; default: the last sample's), so an on-delay that was running when the recording
    ends still fires if it was due by then. stale_after_s: the signal's stale limit in the
    hub (Hub.stale_after), None for a signal the hub never marks stale (a model output).
    """
    ev = RuleEvaluator(rule)
    replay = _Replay(ev, tick_s, stale_after_s)
    t0: float | None = None
    prev_rel = 0.0
    n = 0
    for s in samples:
        t = float(s[0])
        if t0 is None:
            t0 = t
        # Monotonic time never runs back: a sample stamped earlier than the one before it
        # (a source clock that stepped) is taken as arriving with it.
        rel = max(prev_rel, t - t0)
        prev_rel = rel
        replay.ticks_through(rel)
        q = Quality(s[2])
        reason = Reason(s[3]) if len(s) > 3 else _REASON_OF[q]
        replay.feed(Sample(rule.signal, s[1], q, reason, t, rel))
        n += 1
    if t0 is None:
        return DryRunResult(0, 0, 0.0, None, None, since=None, until=until)
    end_rel = max(prev_rel, (until - t0) if until is not None else prev_rel)
    replay.ticks_through(end_rel)
    active_s = replay.active_s + (
        end_rel - replay.active_from if replay.active_from is not None else 0.0
    )
    return DryRunResult(
        activations=len(replay.activations),
        releases=replay.releases,
        active_s=round(active_s, 3),
        first=t0 + replay.activations[0] if replay.activations else None,
        last=t0 + replay.activations[-1] if replay.activations else None,
        held=replay.held,
        samples=n,
        since=t0,
        until=t0 + end_rel,
    )


class _Replay:
    """The engine's 100 ms tick on the replay's clock, the hub's staleness check, and the
    tally of transitions."""

    def __init__(self, ev: RuleEvaluator, tick_s: float, stale_after_s: float | None) -> None:
        self.ev = ev
        self.tick_s = tick_s
        self.stale_after_s = stale_after_s
        self.k = 1  # the next tick is at k * tick_s
        self.latest: Sample | None = None  # the hub's latest value of the signal
        self.activations: list[float] = []
        self.releases = 0
        self.held = 0
        self.active_s = 0.0
        self.active_from: float | None = None

    def feed(self, sample: Sample) -> None:
        self.latest = sample
        self.take(self.ev.feed(sample, sample.t_mono))

    def _timers_running(self) -> bool:
        """Whether a tick can change anything now. When it cannot, ticks up to the next
        sample or staleness are skipped: they would all return nothing (a day is 864,000)."""
        ev, rule = self.ev, self.ev.rule
        if not rule.enabled:
            return False
        if ev.input_ok:
            return ev.demand != ev.active  # a delay, a minimum time or the cap is pending
        return ev.active and rule.on_bad_quality == "release"  # a release held for min_on

    def _first_tick_after(self, rel: float) -> int:
        k = max(self.k, int(rel / self.tick_s))
        while k * self.tick_s <= rel:
            k += 1
        return k

    def _stale_tick(self) -> int | None:
        """The tick at which the hub would mark the latest value stale, if it will."""
        s, limit = self.latest, self.stale_after_s
        if limit is None or s is None or s.quality is Quality.BAD:
            return None
        # The hub's own test (now - t_mono > limit), so rounding decides as it does there.
        k = max(self.k, int((s.t_mono + limit) / self.tick_s) - 1)
        while not k * self.tick_s - s.t_mono > limit:
            k += 1
        return k

    def ticks_through(self, rel: float) -> None:
        """Every tick at or before rel, in order."""
        step = self.tick_s
        while self.k * step <= rel:
            stale_k = self._stale_tick()
            if not self._timers_running():
                # Nothing to do before the staleness tick (or the next sample).
                if stale_k is None or stale_k * step > rel:
                    self.k = self._first_tick_after(rel)
                    return
                self.k = stale_k
            now = self.k * step
            latest = self.latest
            if (
                stale_k is not None
                and latest is not None
                and now - latest.t_mono > (self.stale_after_s or 0.0)
            ):
                # Hub.check_stale, then Control.tick feeds the degraded value to the rule.
                detail = f"no fresh value for {now - latest.t_mono:.1f} s"
                self.latest = latest.degraded(Reason.NO_COMM, detail)
                self.take(self.ev.feed(self.latest, now))
            self.take(self.ev.tick(now))
            self.k += 1

    def take(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            if tr.kind == "activate":
                self.activations.append(tr.t_mono)
                self.active_from = tr.t_mono
            elif tr.kind == "release":
                self.releases += 1
                if self.active_from is not None:
                    self.active_s += tr.t_mono - self.active_from
                self.active_from = None
            else:
                self.held += 1
