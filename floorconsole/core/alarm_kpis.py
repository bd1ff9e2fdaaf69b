"""Alarm performance figures after ISA-18.2 (section 16) and EEMUA 191, from the alarm journal
over a chosen window: rates per 10 minutes against their targets, floods, the most frequent,
chattering, stale and standing alarms."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from floorconsole.core.alarms import AlarmState, JournalEntry

PERIOD_S = 600.0  # ISA-18.2 counts alarms per 10 minutes
FLOOD_COUNT = 10  # more than this many annunciations in one period is a flood
CHATTER_COUNT = 3  # annunciations of one alarm ...
CHATTER_WINDOW_S = 60.0  # ... within this long: chattering
STALE_S = 24 * 3600.0  # active longer than this: stale
TOP = 10

# The targets of ISA-18.2 table 16 (after EEMUA 191), per 10-minute period.
TARGET_AVG_ACCEPTABLE = 1.0  # "very likely to be acceptable"
TARGET_AVG_MANAGEABLE = 2.0  # "maximum manageable"
TARGET_PEAK = 10  # at most this many in any one period
TARGET_FLOOD_SHARE = 0.01  # under about 1 % of the periods in flood
TARGET_STALE = 5  # fewer than 5 stale alarms present at a time

_ACTIVE = (AlarmState.UNACK, AlarmState.ACKED)


def is_annunciation(e: JournalEntry) -> bool:
    """An alarm shown to the operator anew: into UNACK from anything but being in alarm."""
    return e.to_state is AlarmState.UNACK and e.from_state not in _ACTIVE


@dataclass(frozen=True, slots=True)
class AlarmCount:
    alarm_id: str
    count: int
    share: float  # of all annunciations in the window
    priority: str


@dataclass(frozen=True, slots=True)
class StandingAlarm:
    alarm_id: str
    state: str
    since: float | None  # wall-clock time of its activation, when the journal has it
    priority: str
    stale: bool


@dataclass(frozen=True, slots=True)
class AlarmKpis:
    """What `alarm_kpis` found; every figure with the target it is judged against."""

    since: float
    until: float
    periods: int
    annunciations: int
    avg_per_10min: float
    peak_per_10min: int
    peak_period_start: float | None
    flood_periods: int
    flood_share: float
    top: tuple[AlarmCount, ...]
    chattering: tuple[AlarmCount, ...]
    standing: tuple[StandingAlarm, ...]
    stale: tuple[StandingAlarm, ...]
    by_priority: Mapping[str, int] = field(default_factory=dict)

    def verdicts(self) -> list[tuple[str, str, str, bool]]:
        """(figure, value, target, within target) for each ISA-18.2 figure."""
        avg_ok = self.avg_per_10min <= TARGET_AVG_MANAGEABLE
        return [
            (
                "average per 10 min",
                f"{self.avg_per_10min:.2f}",
                f"≤{TARGET_AVG_ACCEPTABLE:g} acceptable, ≤{TARGET_AVG_MANAGEABLE:g} manageable",
                avg_ok,
            ),
            (
                "peak in 10 min",
                f"{self.peak_per_10min}",
                f"≤{TARGET_PEAK}",
                self.peak_per_10min <= TARGET_PEAK,
            ),
            (
                "periods in flood",
                f"{self.flood_share:.1%} ({self.flood_periods} of {self.periods})",
                f"<{TARGET_FLOOD_SHARE:.0%} (flood: >{FLOOD_COUNT} in 10 min)",
                self.flood_share < TARGET_FLOOD_SHARE,
            ),
            (
                "chattering alarms",
                f"{len(self.chattering)}",
                f"0 (≥{CHATTER_COUNT} in {CHATTER_WINDOW_S:g} s)",
                not self.chattering,
            ),
            (
                "stale alarms",
                f"{len(self.stale)}",
                f"<{TARGET_STALE} (active >{STALE_S / 3600:g} h)",
                len(self.stale) < TARGET_STALE,
            ),
            ("standing alarms", f"{len(self.standing)}", "as few as possible", True),
        ]


def alarm_kpis(
    entries: Iterable[JournalEntry],
    *,
    since: float,
    until: float,
    before: Mapping[str, tuple[AlarmState, float | None, str]] | None = None,
) -> AlarmKpis:
    """The figures for since <= t < until from the journal's transitions in that window
    (oldest first) and, in `before`, each alarm's state at `since`: (state, activation time,
    priority). Periods are 10-minute slices of the window from `since`; a last partial slice
    counts as a period."""
    if until <= since:
        raise ValueError(f"the window must end after it starts ({since} .. {until})")
    periods = max(1, math.ceil((until - since) / PERIOD_S))
    per_period = [0] * periods
    per_alarm: Counter[str] = Counter()
    priority: dict[str, str] = {}
    by_priority: Counter[str] = Counter()
    times: defaultdict[str, list[float]] = defaultdict(list)
    state: dict[str, tuple[AlarmState, float | None]] = {}
    for alarm_id, (st, t_act, prio) in (before or {}).items():
        state[alarm_id] = (st, t_act)
        priority[alarm_id] = prio

    ordered: Sequence[JournalEntry] = sorted(entries, key=lambda e: e.t_wall)
    for e in ordered:
        if not since <= e.t_wall < until:
            continue
        priority[e.alarm_id] = e.priority
        activated = state.get(e.alarm_id, (AlarmState.NORMAL, None))[1]
        if is_annunciation(e):
            per_period[min(periods - 1, int((e.t_wall - since) // PERIOD_S))] += 1
            per_alarm[e.alarm_id] += 1
            by_priority[e.priority] += 1
            times[e.alarm_id].append(e.t_wall)
            activated = e.t_wall
        elif e.to_state not in _ACTIVE:
            activated = None
        state[e.alarm_id] = (e.to_state, activated)

    total = sum(per_period)
    peak = max(per_period)
    floods = sum(1 for n in per_period if n > FLOOD_COUNT)

    def counted(ids: Iterable[str]) -> tuple[AlarmCount, ...]:
        return tuple(
            AlarmCount(i, per_alarm[i], per_alarm[i] / total if total else 0.0, priority[i])
            for i in ids
        )

    top = counted(i for i, _n in sorted(per_alarm.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP])
    chattering = counted(
        sorted(
            (i for i, ts in times.items() if _chatters(ts)),
            key=lambda i: (-per_alarm[i], i),
        )
    )
    standing = tuple(
        StandingAlarm(
            i,
            st.value,
            t_act,
            priority.get(i, ""),
            t_act is not None and until - t_act > STALE_S,
        )
        for i, (st, t_act) in sorted(state.items())
        if st in _ACTIVE
    )
    return AlarmKpis(
        since=since,
        until=until,
        periods=periods,
        annunciations=total,
        avg_per_10min=total / periods,
        peak_per_10min=peak,
        peak_period_start=since + per_period.index(peak) * PERIOD_S if total else None,
        flood_periods=floods,
        flood_share=floods / periods,
        top=top,
        chattering=chattering,
        standing=standing,
        stale=tuple(s for s in standing if s.stale),
        by_priority=dict(by_priority),
    )


def _chatters(ts: list[float]) -> bool:
    """CHATTER_COUNT annunciations within CHATTER_WINDOW_S, anywhere in the list."""
    k = CHATTER_COUNT - 1
    return any(ts[j + k] - ts[j] <= CHATTER_WINDOW_S for j in range(len(ts) - k))
