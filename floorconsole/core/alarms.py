"""Alarms after ISA-18.2: the state machine of one alarm, and the table behind banner and KPIs."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from floorconsole.core.clock import Clock


class AlarmState(StrEnum):
    NORMAL = "NORMAL"
    UNACK = "UNACK"  # active, unacknowledged
    ACKED = "ACKED"  # active, acknowledged
    RTN_UNACK = "RTN_UNACK"  # returned to normal, not yet acknowledged
    SHELVED = "SHELVED"
    SUPPRESSED = "SUPPRESSED"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


STATE_TEXT = {
    AlarmState.NORMAL: "normal",
    AlarmState.UNACK: "active, unacknowledged",
    AlarmState.ACKED: "active, acknowledged",
    AlarmState.RTN_UNACK: "returned to normal, unacknowledged",
    AlarmState.SHELVED: "shelved",
    AlarmState.SUPPRESSED: "suppressed by design",
    AlarmState.OUT_OF_SERVICE: "out of service",
}

# Lowest first: the index is the rank used for ordering.
PRIORITIES = ("low", "medium", "high", "critical")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}

MAX_SHELVE_S = 8 * 3600.0
CHATTER_COUNT = 3  # activations ...
CHATTER_WINDOW_S = 60.0  # ... within this long flag an alarm as chattering
KPI_WINDOW_S = 600.0
FLOOD_COUNT = 10  # more than this many annunciations in KPI_WINDOW_S is a flood
TOP_CHATTERING = 5

# System alarms: kind -> (priority, message with {source}).
SYSTEM_ALARMS: dict[str, tuple[str, str]] = {
    "device_down": ("high", "Device {source} down"),
    "broker_lost": ("high", "Broker {source} lost"),
    "model_failure": ("high", "Model {source} failed"),
    "drift_alert": ("medium", "Drift alert on {source}"),
    "write_failed": ("high", "Write to {source} failed"),
    "cache_trouble": ("high", "Local cache trouble: {source}"),
    "config_rolled_back": ("high", "Configuration {source} failed its health check: rolled back"),
    "audit_trouble": ("high", "Audit trail {source} cannot be written: control actions held"),
    "rule_held": ("high", "Rule {source} held: it cannot act"),
    "poll_behind": ("medium", "Device {source} polled slower than configured"),
}
# What a restored alarm's clear says when nothing re-asserted its condition after a restart.
CLEARED_WHILE_DOWN = "cleared while the engine was down"

_ACTIVE = (AlarmState.UNACK, AlarmState.ACKED)
_UNACKED = (AlarmState.UNACK, AlarmState.RTN_UNACK)
_OUT_OF_ANNUNCIATION = (AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE)


class AlarmError(ValueError):
    """An operation the alarm's state does not allow, or an unknown alarm; says which and why."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One state change of one alarm, as the journal stores it."""

    t_wall: float
    alarm_id: str
    from_state: AlarmState
    to_state: AlarmState
    by: str
    text: str
    priority: str
    # A shelve's expiry (wall clock) and the reason given for it; kept so a restart can
    # restore the shelve exactly (the text says the same in words).
    shelved_until: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AlarmHistory:
    """What the journal knows of one alarm when the engine starts: its latest transition,
    the annunciation and acknowledgement that apply to it, its latest shelve, and how many
    times it was annunciated."""

    last: JournalEntry
    annunciated: JournalEntry | None = None
    acknowledged: JournalEntry | None = None
    shelved: JournalEntry | None = None
    activations: int = 0


def system_alarm_id(kind: str, source: str) -> str:
    """'device_down:drive1'."""
    return f"{kind}:{source}"


class Alarm:
    """One alarm. `condition` is the process condition (is the thing alarmed about true?);
    `state` is what ISA-18.2 makes of it. A shelved, suppressed or out-of-service alarm keeps
    following its condition without annunciating it, so it comes back in the right state.

    Every operation returns the JournalEntry of the transition, or None when the state did not
    change (an activate of an alarm already active). Operations the state does not allow raise
    AlarmError with the reason.
    """

    def __init__(
        self, id: str, priority: str, message: str, *, clock: Clock, source: str = "rule"
    ) -> None:
        if priority not in PRIORITY_RANK:
            raise AlarmError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        self.id = id
        self.priority = priority
        self.message = message
        self.source = source
        self.clock = clock
        self.state = AlarmState.NORMAL
        self.condition = False
        self.text = ""  # detail of the latest activation or clear
        self.activated_wall: float | None = None
        self.activated_mono: float | None = None
        self.acked_wall: float | None = None
        self.acked_by = ""
        self.shelved_until_mono: float | None = None
        self.shelved_until_wall: float | None = None
        self.shelved_by = ""
        self.shelved_reason = ""
        self.activations_total = 0
        # Restored active from the journal at a start, and not yet re-asserted by its source:
        # a clear then says the condition went while the engine was down.
        self.restored = False
        self._recent: deque[float] = deque()  # mono times of annunciations, CHATTER_WINDOW_S

    @property
    def rank(self) -> int:
        return PRIORITY_RANK[self.priority]

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE

    @property
    def unacknowledged(self) -> bool:
        return self.state in _UNACKED

    def chattering(self, now_mono: float | None = None) -> bool:
        """CHATTER_COUNT or more annunciations within the last CHATTER_WINDOW_S."""
        now = self.clock.mono() if now_mono is None else now_mono
        self._prune(now)
        return len(self._recent) >= CHATTER_COUNT

    def _prune(self, now: float) -> None:
        recent = self._recent
        while recent and now - recent[0] > CHATTER_WINDOW_S:
            recent.popleft()

    # -- process condition -----------------------------------------------------------------

    def activate(self, text: str = "", by: str = "system") -> JournalEntry | None:
        if self.condition:
            self.restored = False  # still present after a restart: no new annunciation
            return None
        self.condition = True
        self.text = text
        if self.state in _OUT_OF_ANNUNCIATION:
            return None
        return self._annunciate(by, text)

    def clear(self, text: str = "", by: str = "system") -> JournalEntry | None:
        if not self.condition:
            return None
        self.condition = False
        if self.restored:
            self.restored = False
            text = f"{CLEARED_WHILE_DOWN}{': ' + text if text else ''}"
        self.text = text
        if self.state is AlarmState.UNACK:
            return self._move(AlarmState.RTN_UNACK, by, text or "returned to normal")
        if self.state is AlarmState.ACKED:
            return self._move(AlarmState.NORMAL, by, text or "returned to normal")
        return None

    # -- operator actions ------------------------------------------------------------------

    def acknowledge(self, user: str) -> JournalEntry:
        if self.state is AlarmState.UNACK:
            self.acked_wall, self.acked_by = self.clock.wall(), user
            return self._move(AlarmState.ACKED, user, "acknowledged", self.acked_wall)
        if self.state is AlarmState.RTN_UNACK:
            self.acked_wall, self.acked_by = self.clock.wall(), user
            return self._move(
                AlarmState.NORMAL, user, "acknowledged after return to normal", self.acked_wall
            )
        raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}; nothing to acknowledge")

    def confirm(self) -> None:
        """The source says the condition still holds after a restart (no transition)."""
        self.restored = False

    def shelve(self, duration_s: float, user: str, reason: str = "") -> JournalEntry:
        if not 0 < duration_s <= MAX_SHELVE_S:
            raise AlarmError(
                f"alarm {self.id}: shelve for {duration_s:g} s refused; a shelve "
                f"lasts more than 0 s and at most {MAX_SHELVE_S / 3600:g} h"
            )
        if self.state in _OUT_OF_ANNUNCIATION:
            raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}; it cannot be shelved")
        now_wall = self.clock.wall()
        self.shelved_until_mono = self.clock.mono() + duration_s
        self.shelved_until_wall = now_wall + duration_s
        self.shelved_by = user
        self.shelved_reason = reason.strip()
        text = f"shelved for {_duration(duration_s)}"
        if self.shelved_reason:
            text += f": {self.shelved_reason}"
        entry = self._move(AlarmState.SHELVED, user, text, now_wall)
        return _with_shelve(entry, self.shelved_until_wall, self.shelved_reason)

    def unshelve(self, user: str) -> JournalEntry:
        if self.state is not AlarmState.SHELVED:
            raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}, not shelved")
        self._end_shelve()
        return self._back(user, "unshelved")

    def suppress(self, by: str, reason: str = "") -> JournalEntry:
        """Suppressed by design (logic, e.g. the unit is stopped); overrides a shelve."""
        if self.state in (AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE):
            raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}; cannot suppress")
        self._end_shelve()
        return self._move(AlarmState.SUPPRESSED, by, f"suppressed{': ' + reason if reason else ''}")

    def unsuppress(self, by: str) -> JournalEntry:
        if self.state is not AlarmState.SUPPRESSED:
            raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}, not suppressed")
        return self._back(by, "suppression ended")

    def remove_from_service(self, user: str, reason: str = "") -> JournalEntry:
        if self.state is AlarmState.OUT_OF_SERVICE:
            raise AlarmError(f"alarm {self.id} is already out of service")
        self._end_shelve()
        return self._move(
            AlarmState.OUT_OF_SERVICE,
            user,
            f"removed from service{': ' + reason if reason else ''}",
        )

    def return_to_service(self, user: str) -> JournalEntry:
        if self.state is not AlarmState.OUT_OF_SERVICE:
            raise AlarmError(f"alarm {self.id} is {STATE_TEXT[self.state]}, not out of service")
        return self._back(user, "returned to service")

    def tick(self, now_mono: float | None = None) -> JournalEntry | None:
        """Ends a shelve whose time is up."""
        now = self.clock.mono() if now_mono is None else now_mono
        if (
            self.state is AlarmState.SHELVED
            and self.shelved_until_mono is not None
            and now >= self.shelved_until_mono
        ):
            self._end_shelve()
            return self._back("shelve expiry", "shelve expired")
        return None

    # -- restart ---------------------------------------------------------------------------

    def restore(self, history: AlarmHistory) -> None:
        """Take the state the journal last recorded, with no transition: the state, when it
        was annunciated, who acknowledged it, a shelve's expiry, reason and user. An active
        alarm comes back with its condition present and `restored` set, so its source either
        re-asserts it (nothing re-annunciates) or clears it (CLEARED_WHILE_DOWN)."""
        last = history.last
        now_wall, now_mono = self.clock.wall(), self.clock.mono()
        self.state = last.to_state
        self.text = last.text
        self.activations_total = history.activations
        self.condition = self.restored = self.state in _ACTIVE
        if history.annunciated is not None:  # kept in every state, as in memory
            self.activated_wall = history.annunciated.t_wall
            self.activated_mono = now_mono - (now_wall - self.activated_wall)
            ack = history.acknowledged
            if ack is not None and ack.t_wall >= self.activated_wall:
                self.acked_wall, self.acked_by = ack.t_wall, ack.by
        shelve = history.shelved
        if self.state is AlarmState.SHELVED and shelve is not None:
            until = shelve.shelved_until
            self.shelved_by, self.shelved_reason = shelve.by, shelve.reason
            self.shelved_until_wall = until
            # An expiry that passed while the engine was down ends at the first tick.
            self.shelved_until_mono = now_mono + (until - now_wall) if until else now_mono

    def _end_shelve(self) -> None:
        self.shelved_until_mono = self.shelved_until_wall = None
        self.shelved_by = self.shelved_reason = ""

    # -- helpers ---------------------------------------------------------------------------

    def _back(self, by: str, text: str) -> JournalEntry:
        """Out of shelved/suppressed/out of service: active again if the condition still is."""
        if self.condition:
            return self._annunciate(by, f"{text}; condition still active")
        return self._move(AlarmState.NORMAL, by, text)

    def _annunciate(self, by: str, text: str) -> JournalEntry:
        now = self.clock.mono()
        self.activated_wall, self.activated_mono = self.clock.wall(), now
        self.acked_wall, self.acked_by = None, ""
        self.activations_total += 1
        self._recent.append(now)
        detail = text or self.message
        if self.chattering(now):
            detail += f" (chattering: {len(self._recent)} in {CHATTER_WINDOW_S:g} s)"
        # The journal entry carries the activation time itself: a restart restores it exactly.
        return self._move(AlarmState.UNACK, by, detail, self.activated_wall)

    def _move(
        self, to: AlarmState, by: str, text: str, t_wall: float | None = None
    ) -> JournalEntry:
        t = self.clock.wall() if t_wall is None else t_wall
        entry = JournalEntry(t, self.id, self.state, to, by, text, self.priority)
        self.state = to
        return entry

    def as_dict(self, now_mono: float, now_wall: float) -> dict[str, Any]:
        """Plain data for a frame."""
        shelved_until = None
        if self.shelved_until_mono is not None:
            shelved_until = now_wall + (self.shelved_until_mono - now_mono)
        return {
            "id": self.id,
            "priority": self.priority,
            "message": self.message,
            "text": self.text,
            "source": self.source,
            "state": self.state.value,
            "state_text": STATE_TEXT[self.state],
            "condition": self.condition,
            "activated": self.activated_wall,
            "acked": self.acked_wall,
            "acked_by": self.acked_by,
            "shelved_until": shelved_until,
            "shelved_by": self.shelved_by,
            "shelved_reason": self.shelved_reason,
            "chattering": self.chattering(now_mono),
            "activations_total": self.activations_total,
        }


def _with_shelve(entry: JournalEntry, until: float | None, reason: str) -> JournalEntry:
    return JournalEntry(
        entry.t_wall,
        entry.alarm_id,
        entry.from_state,
        entry.to_state,
        entry.by,
        entry.text,
        entry.priority,
        until,
        reason,
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


EntryListener = Callable[[JournalEntry], None]


class AlarmTable:
    """Every alarm of the engine (rule alarms and system alarms), the banner order and the KPIs.

    Each transition is passed to the listeners (the journal) and returned.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.alarms: dict[str, Alarm] = {}
        self._listeners: list[EntryListener] = []
        self._annunciations: deque[tuple[float, str]] = deque()  # (mono, id), KPI_WINDOW_S
        self._in_flood = False
        self.floods = 0  # flood episodes since start

    def on_entry(self, fn: EntryListener) -> None:
        """Call fn with every transition; adding the same listener again does nothing (a new
        configuration's Control wires the same journal to the same table)."""
        if fn not in self._listeners:
            self._listeners.append(fn)

    def define(self, id: str, priority: str, message: str, source: str = "rule") -> Alarm:
        """The alarm with this id, created on first use (its first definition wins)."""
        alarm = self.alarms.get(id)
        if alarm is None:
            alarm = Alarm(id, priority, message, clock=self.clock, source=source)
            self.alarms[id] = alarm
        return alarm

    def get(self, id: str) -> Alarm:
        try:
            return self.alarms[id]
        except KeyError:
            raise AlarmError(f"no alarm {id!r}") from None

    def _emit(self, entry: JournalEntry | None) -> JournalEntry | None:
        if entry is None:
            return None
        if entry.to_state is AlarmState.UNACK:
            self._annunciations.append((self.clock.mono(), entry.alarm_id))
            self._flood_check()
        for fn in self._listeners:
            fn(entry)
        return entry

    # -- operations (by id) ----------------------------------------------------------------

    def activate(self, id: str, text: str = "", by: str = "system") -> JournalEntry | None:
        return self._emit(self.get(id).activate(text, by))

    def clear(self, id: str, text: str = "", by: str = "system") -> JournalEntry | None:
        return self._emit(self.get(id).clear(text, by))

    def acknowledge(self, id: str, user: str) -> JournalEntry | None:
        return self._emit(self.get(id).acknowledge(user))

    def acknowledge_all(self, user: str, ids: Iterable[str] | None = None) -> list[JournalEntry]:
        """Acknowledge every unacknowledged alarm (of `ids`, when given: those shown)."""
        chosen = self.alarms.values() if ids is None else [self.get(i) for i in ids]
        out = []
        for alarm in list(chosen):
            if alarm.unacknowledged:
                entry = self._emit(alarm.acknowledge(user))
                if entry is not None:
                    out.append(entry)
        return out

    def shelve(
        self, id: str, duration_s: float, user: str, reason: str = ""
    ) -> JournalEntry | None:
        return self._emit(self.get(id).shelve(duration_s, user, reason))

    def unshelve(self, id: str, user: str) -> JournalEntry | None:
        return self._emit(self.get(id).unshelve(user))

    def suppress(self, id: str, by: str, reason: str = "") -> JournalEntry | None:
        return self._emit(self.get(id).suppress(by, reason))

    def unsuppress(self, id: str, by: str) -> JournalEntry | None:
        return self._emit(self.get(id).unsuppress(by))

    def remove_from_service(self, id: str, user: str, reason: str = "") -> JournalEntry | None:
        return self._emit(self.get(id).remove_from_service(user, reason))

    def return_to_service(self, id: str, user: str) -> JournalEntry | None:
        return self._emit(self.get(id).return_to_service(user))

    def tick(self) -> list[JournalEntry]:
        """Shelve expiries; call often (the engine does every 100 ms)."""
        now = self.clock.mono()
        out = []
        for alarm in self.alarms.values():
            if alarm.state is AlarmState.SHELVED:
                entry = self._emit(alarm.tick(now))
                if entry is not None:
                    out.append(entry)
        self._flood_check()
        return out

    # -- restart ---------------------------------------------------------------------------

    def restore(
        self, histories: Iterable[AlarmHistory], recent: Iterable[tuple[float, str]] = ()
    ) -> int:
        """Rebuild the table from the journal at a start (no transition is emitted, nothing
        annunciates): alarms of rules are already defined by the configuration; system
        alarms are defined again from their id. `recent` are the wall times of the
        annunciations of the last KPI window, so the KPIs carry on. Returns how many alarms
        came back in a state other than normal."""
        restored = 0
        for h in histories:
            aid = h.last.alarm_id
            alarm = self.alarms.get(aid)
            if alarm is None:
                kind, _, source = aid.partition(":")
                if kind in SYSTEM_ALARMS and source:
                    priority, message = SYSTEM_ALARMS[kind]
                    alarm = self.define(aid, priority, message.format(source=source), "system")
                elif h.last.to_state is AlarmState.NORMAL:
                    continue  # a rule alarm of a rule that is gone, and normal: forget it
                else:
                    alarm = self.define(aid, h.last.priority, aid, "rule")
            alarm.restore(h)
            if alarm.state is not AlarmState.NORMAL:
                restored += 1
        now_wall, now_mono = self.clock.wall(), self.clock.mono()
        for t, aid in sorted(recent):
            if aid in self.alarms and 0 <= now_wall - t <= KPI_WINDOW_S:
                self._annunciations.append((now_mono - (now_wall - t), aid))
        return restored

    # -- system alarms ---------------------------------------------------------------------

    def raise_system(self, kind: str, source: str, text: str = "") -> JournalEntry | None:
        """Activate the system alarm of this kind for this source (device id, broker id...)."""
        priority, message = SYSTEM_ALARMS[kind]
        alarm = self.define(
            system_alarm_id(kind, source), priority, message.format(source=source), source="system"
        )
        return self._emit(alarm.activate(text or alarm.message))

    def clear_system(self, kind: str, source: str, text: str = "") -> JournalEntry | None:
        alarm = self.alarms.get(system_alarm_id(kind, source))
        if alarm is None:
            return None
        return self._emit(alarm.clear(text))

    # -- views -----------------------------------------------------------------------------

    def banner(self) -> list[Alarm]:
        """Unacknowledged alarms first (highest priority, then active before returned, then
        newest), then active acknowledged ones the same way."""

        def key(a: Alarm) -> tuple[int, int, int, float]:
            return (
                0 if a.unacknowledged else 1,
                -a.rank,
                0 if a.state is AlarmState.UNACK else 1,
                -(a.activated_mono or 0.0),
            )

        return sorted((a for a in self.alarms.values() if a.unacknowledged or a.active), key=key)

    def counts(self) -> dict[str, int]:
        states = Counter(a.state for a in self.alarms.values())
        return {
            "active": states[AlarmState.UNACK] + states[AlarmState.ACKED],
            "unack": states[AlarmState.UNACK] + states[AlarmState.RTN_UNACK],
            "active_unack": states[AlarmState.UNACK],
            "acked": states[AlarmState.ACKED],
            "rtn_unack": states[AlarmState.RTN_UNACK],
            "shelved": states[AlarmState.SHELVED],
            "suppressed": states[AlarmState.SUPPRESSED],
            "out_of_service": states[AlarmState.OUT_OF_SERVICE],
            "total": len(self.alarms),
        }

    def _prune(self, now: float) -> None:
        ann = self._annunciations
        while ann and now - ann[0][0] > KPI_WINDOW_S:
            ann.popleft()

    def _flood_check(self) -> None:
        self._prune(self.clock.mono())
        flooding = len(self._annunciations) > FLOOD_COUNT
        if flooding and not self._in_flood:
            self.floods += 1
        self._in_flood = flooding

    def kpis(self) -> dict[str, Any]:
        """Alarms per 10 minutes, flood (more than 10 in 10 minutes) and the top chattering."""
        now = self.clock.mono()
        self._flood_check()
        per_alarm = Counter(i for _, i in self._annunciations)
        top = [
            {
                "id": i,
                "activations_10min": n,
                "chattering": self.alarms[i].chattering(now),
                "priority": self.alarms[i].priority,
            }
            for i, n in per_alarm.most_common()
            if n >= CHATTER_COUNT
        ][:TOP_CHATTERING]
        return {
            "alarms_10min": len(self._annunciations),
            "flood": self._in_flood,
            "floods": self.floods,
            "top_chattering": top,
            "chattering_now": sorted(a.id for a in self.alarms.values() if a.chattering(now)),
        }
