"""Control: rules evaluated at ingest rate, their actions run as tasks, and the alarm table.

Wiring (the composition root does it): Hub.add_listener(control.on_samples); control.tick()
every 100 ms on the engine loop; control.update_links(links) with the LinkStats of devices
and brokers; AlarmTable.on_entry(journal.append) once per alarm table (the table outlives the
Controls of successive configurations: each registering it again would journal every
transition once more). Everything here runs on the engine's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from floorconsole.console import ActionView, AlarmSummary, AlarmView, CommandResult, RuleView
from floorconsole.core.alarms import (
    KPI_WINDOW_S,
    AlarmError,
    AlarmHistory,
    AlarmState,
    AlarmTable,
    JournalEntry,
)
from floorconsole.core.clock import Clock
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.quality import Reason
from floorconsole.core.rules import (
    ActionRecord,
    AlarmAction,
    ControlConfig,
    PublishAction,
    RuleConfig,
    RuleEvaluator,
    RuleEvent,
    RuleState,
    Transition,
    WriteAction,
    payload_fields,
)
from floorconsole.core.sample import Sample

if TYPE_CHECKING:  # the engine's control logic imports no I/O library
    from floorconsole.adapters.modbus import WriteResult

log = logging.getLogger(__name__)

_SIGNAL = itemgetter(0)  # Sample.signal

# A device's writer and reader take its own kind of point: a ModbusPoint for a Modbus device,
# an OpcUaNodePoint for an OPC UA server (the action's point is the device's kind).
Writer = Callable[[Any, float | bool], Awaitable["WriteResult"]]
Reader = Callable[[Any], Awaitable[tuple[float | bool | None, str]]]
Publisher = Callable[[str, str, str, int], object]  # (broker, topic, payload, qos)
LatestGetter = Callable[[str], Sample | None]
# (kind, user, target, detail) -> None, raising when the record cannot be written.
AuditWriter = Callable[[str, str, str, dict[str, Any]], None]
# The same without waiting, for the loop: False when the trail is busy right now.
AuditNow = Callable[[str, str, str, dict[str, Any]], bool]
RECENT_ACTIONS = 200
READ_ONLY = "not applied: read-only mode (control.enabled is false)"
READ_BACK_TIMEOUT_S = 10.0
JOURNAL_WAIT_S = 5.0  # as AlarmJournal.flush(): a write waits this long for its record  # how long a start waits for a device to read an output back


class Journal(Protocol):
    def append(self, entry: JournalEntry) -> None: ...

    def record_action(self, record: ActionRecord) -> None: ...


class JournalState(Protocol):
    """What a start reads from the journal to restore alarms and rules (AlarmJournal)."""

    def alarm_histories(self) -> list[AlarmHistory]: ...

    def rule_states(self) -> dict[str, RuleEvent]: ...

    def last_actions(self) -> dict[tuple[str, str, str], ActionRecord]: ...

    def query(
        self, *, since: float | None = ..., state: str | None = ...
    ) -> list[JournalEntry]: ...


class Control:
    """Owns the rule evaluators, runs their actions, and raises and clears alarms.

    Actions of one rule run one transition after another in a task of their own (a release
    never overtakes the activation before it); ingest never waits for a device. With
    control.enabled false no Modbus write is ever sent: the write action reports "not
    applied: read-only mode". Publishes and alarms run in either mode: they tell people,
    they drive no output.
    """

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        control_cfg: ControlConfig,
        hub_latest_getter: LatestGetter,
        writers: Mapping[str, Writer],
        publisher: Publisher | None,
        alarm_table: AlarmTable,
        journal: Journal | None,
        clock: Clock,
        *,
        audit: AuditWriter | None = None,
        audit_now: AuditNow | None = None,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.config = control_cfg
        self.latest = hub_latest_getter
        self.writers = dict(writers)
        self.readers: dict[str, Reader] = {}  # device -> read one point (set at start)
        self.publisher = publisher
        self.alarms = alarm_table
        self.journal = journal
        self.clock = clock
        self.evaluators = {r.id: RuleEvaluator(r) for r in rules}
        self._by_signal: dict[str, list[RuleEvaluator]] = {}
        for ev in self.evaluators.values():
            if ev.rule.enabled:
                self._by_signal.setdefault(ev.rule.signal, []).append(ev)
        for r in rules:
            for a in r.actions:
                if isinstance(a, AlarmAction):
                    alarm_table.define(r.alarm_id, a.priority, a.message, source="rule")
        # (rule id, action index) -> the last result of that action
        self.last_results: dict[tuple[str, int], ActionRecord] = {}
        self.recent: deque[ActionRecord] = deque(maxlen=RECENT_ACTIONS)
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._journal_errors = 0
        # A write waits for its audit record and is not sent without it.
        self.audit = audit
        self.audit_now = audit_now
        self._followups: set[asyncio.Task[None]] = set()
        # Outputs restored active at a start are read back before anything is written.
        self._read_back: asyncio.Task[None] | None = None
        self._restored_outputs: list[tuple[RuleConfig, int, WriteAction]] = []

    def adopt(self, old: Control) -> None:
        """Take over from the Control of the configuration this one replaces (call on the
        engine loop, at the swap): rules with the same id and signal keep their output state
        and their actions' last results, and are evaluated at once on their last input under
        the new settings, so a rule that is active and no longer should be releases (and
        writes its off value) instead of leaving the output on."""
        now = self.clock.mono()
        self._read_back = old._read_back  # outputs still being read back at a start
        for rid, ev in self.evaluators.items():
            prev = old.evaluators.get(rid)
            if prev is None or prev.rule.signal != ev.rule.signal:
                continue
            ev.carry_over(prev)
            same = {
                i
                for i, (a, b) in enumerate(zip(prev.rule.actions, ev.rule.actions, strict=False))
                if (a.kind, a.target) == (b.kind, b.target)
            } | {-1}
            for (result_rule, i), rec in old.last_results.items():
                if result_rule == rid and i in same:
                    self.last_results[(rid, i)] = rec
            if ev.last_sample is not None and ev.rule.enabled:
                transitions = ev.feed(ev.last_sample, now)
                if transitions:
                    self._handle(ev.rule, transitions)
        # An alarm whose rule no longer raises it would otherwise stay active for good.
        raising = {
            r.alarm_id
            for r in self.rules.values()
            if any(isinstance(a, AlarmAction) for a in r.actions)
        }
        for gone in old.rules.values():
            if gone.alarm_id not in raising and gone.alarm_id in self.alarms.alarms:
                self.alarms.clear(gone.alarm_id, "rule changed: it no longer raises this alarm")

    # -- input -----------------------------------------------------------------------------

    def on_samples(self, batch: Sequence[Sample]) -> None:
        """Hub listener: evaluate every rule on the signals of this batch."""
        by_signal = self._by_signal
        # Most batches (a poll of a device no rule reads) hold none of the rules' signals:
        # the test runs in C, a twentieth of the Python loop's cost (issue 19).
        if by_signal.keys().isdisjoint(map(_SIGNAL, batch)):
            return
        now: float | None = None
        for s in batch:
            evs = by_signal.get(s.signal)
            if evs is None:
                continue
            if now is None:
                now = self.clock.mono()
            for ev in evs:
                transitions = ev.feed(s, now)
                if transitions:
                    self._handle(ev.rule, transitions)

    def tick(self) -> None:
        """Every 100 ms: timers, quality-only changes, shelve expiry, journal health."""
        now = self.clock.mono()
        for signal, evs in self._by_signal.items():
            latest = self.latest(signal)
            for ev in evs:
                transitions = []
                last = ev.last_sample
                # The hub passes a quality-only change (a degraded re-emission of the last
                # value: device or broker lost) to the latest table but not to listeners;
                # pick it up here, so the quality policy applies within one tick.
                if (
                    latest is not None
                    and latest is not last
                    and latest.reason is not Reason.INITIAL
                    and (
                        last is None
                        or latest.quality != last.quality
                        or latest.reason != last.reason
                    )
                ):
                    transitions += ev.feed(latest, now)
                transitions += ev.tick(now)
                if transitions:
                    self._handle(ev.rule, transitions)
                if not ev.held:
                    self.alarms.clear_system("rule_held", ev.rule.id, "no longer held")
        self.alarms.tick()
        self._check_journal()

    def update_links(self, links: Iterable[LinkStats]) -> None:
        """Raise or clear 'device down' / 'broker lost' from link states."""
        for link in links:
            kind = "device_down" if link.kind == "device" else "broker_lost"
            if link.state is LinkState.DOWN:
                detail = f"{link.endpoint}: {link.last_error}" if link.last_error else link.endpoint
                self.alarms.raise_system(kind, link.id, detail)
            elif link.state in (LinkState.UP, LinkState.DEGRADED):
                self.alarms.clear_system(kind, link.id, f"{link.endpoint}: {link.state.value}")

    def raise_system(self, kind: str, source: str, text: str = "") -> None:
        """System alarms from elsewhere in the engine: model_failure, drift_alert,
        cache_trouble (kinds in core.alarms.SYSTEM_ALARMS)."""
        self.alarms.raise_system(kind, source, text)

    def clear_system(self, kind: str, source: str, text: str = "") -> None:
        self.alarms.clear_system(kind, source, text)

    def _check_journal(self) -> None:
        errors = getattr(self.journal, "errors", 0)
        if errors > self._journal_errors:
            self._journal_errors = errors
            self.alarms.raise_system(
                "cache_trouble", "alarm journal", getattr(self.journal, "last_error", "")
            )

    # -- actions ---------------------------------------------------------------------------

    def _handle(
        self,
        rule: RuleConfig,
        transitions: list[Transition],
        *,
        event: str | None = None,
        by: str = "rule",
    ) -> None:
        """Run the actions of these transitions; event and by name a change someone made
        (a reset by a user) in the journal's rule record."""
        for tr in transitions:
            log.info("rule %s: %s: %s", rule.id, tr.kind, tr.reason)
            if tr.kind == "held":
                self._record(rule, -1, "cap", "changes per hour", tr, False, tr.reason)
                self.alarms.raise_system("rule_held", rule.id, tr.reason)
                continue
            if tr.kind == "confirmed":  # restored at a start, and still due: nothing to do
                alarm = self.alarms.alarms.get(rule.alarm_id)
                if alarm is not None:
                    alarm.confirm()
                continue
            prev = self._chains.get(rule.id)
            writes = any(isinstance(a, WriteAction) for a in rule.actions)
            # Control first: when nothing of this rule is still running, its change is
            # journaled and each write's audit record committed right here, in the callback
            # of the poll that saw the crossing (a tenth of a millisecond each, into the WAL;
            # their fsyncs follow beside), and the write goes out on the next loop turn
            # without waiting for another thread. Otherwise, as before: journaled before it
            # takes effect, the write waiting for the record (flush).
            now = writes and self._quiet(prev) and self._record_rule_now(rule.id, event, tr, by)
            if not now:
                self._record_rule(rule.id, event or tr.kind, tr.kind == "activate", by, tr.reason)
            ahead = self._audit_ahead(rule, tr) if now else {}
            for i, action in enumerate(rule.actions):
                if isinstance(action, AlarmAction):
                    self._alarm(rule, i, action, tr)
            if any(not isinstance(a, AlarmAction) for a in rule.actions):
                # The journal starts committing the record now, while this loop turn ends
                # and the task starts: a write waits for the record, not for both in turn.
                journaled = self._journal_soon() if writes and not now else None
                task = asyncio.get_running_loop().create_task(
                    self._run_actions(rule, tr, prev, journaled, committed=now, ahead=ahead),
                    name=f"rule {rule.id} {tr.kind}",
                )
                self._chains[rule.id] = task
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _alarm(self, rule: RuleConfig, index: int, action: AlarmAction, tr: Transition) -> None:
        if tr.kind == "activate":
            entry = self.alarms.activate(rule.alarm_id, tr.reason)
        else:
            entry = self.alarms.clear(rule.alarm_id, tr.reason)
        text = (
            f"{entry.from_state.value} -> {entry.to_state.value}"
            if entry is not None
            else f"no change ({self.alarms.get(rule.alarm_id).state.value})"
        )
        self._record(rule, index, "alarm", action.target, tr, True, text)

    def _quiet(self, prev: asyncio.Task[None] | None) -> bool:
        """Nothing this transition must wait for: no earlier transition of the rule still
        acting, no output still being read back at start."""
        read_back = self._read_back
        return (prev is None or prev.done()) and (read_back is None or read_back.done())

    def _record_rule_now(self, rule_id: str, event: str | None, tr: Transition, by: str) -> bool:
        """The rule's change committed to the journal now, on the loop, if it can be without
        waiting (AlarmJournal.record_rule_now); False: queue it (_record_rule)."""
        record_now = getattr(self.journal, "record_rule_now", None)
        if record_now is None:
            return False
        active = tr.kind == "activate"
        ev = RuleEvent(self.clock.wall(), rule_id, event or tr.kind, active, by, tr.reason)
        return bool(record_now(ev))

    def _audit_ahead(self, rule: RuleConfig, tr: Transition) -> dict[int, bool | Exception]:
        """Each write action's request record committed now on the loop, when the trail is
        free (Engine.audit_now): action index -> True (committed) or the exception that kept
        it from being written. An action not in the result audits in its task as before."""
        out: dict[int, bool | Exception] = {}
        if self.audit is None or self.audit_now is None or not self.config.enabled:
            return out
        for i, action in enumerate(rule.actions):
            if not isinstance(action, WriteAction) or action.device not in self.writers:
                continue
            request = self._request(rule, action, tr)
            if request is None:
                continue
            try:
                if self.audit_now("write", f"rule {rule.id}", action.target, request):
                    out[i] = True
            except Exception as e:  # noqa: BLE001 - no record, no write: _write says so
                out[i] = e
        return out

    def _request(
        self, rule: RuleConfig, action: WriteAction, tr: Transition
    ) -> dict[str, Any] | None:
        """The audit record's detail of a write before it is sent (None: nothing is written)."""
        value = action.value_for(tr.kind == "activate")
        if value is None:
            return None
        return {
            "phase": "request",
            "rule": rule.id,
            "transition": tr.kind,
            "reason": tr.reason,
            "before": action.value_for(tr.kind != "activate"),
            "value": value,
        }

    def _record_rule(self, rule_id: str, event: str, active: bool, by: str, text: str) -> None:
        record = getattr(self.journal, "record_rule", None)
        if record is not None:
            record(RuleEvent(self.clock.wall(), rule_id, event, active, by, text))

    def _journal_soon(self) -> asyncio.Future[None] | None:
        """A future done once the journal has committed what was handed to it (None when
        the journal cannot call back: _journaled() waits on a worker thread instead)."""
        flush_later = getattr(self.journal, "flush_later", None)
        if flush_later is None:
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:  # on the journal's writer thread
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

        flush_later(done)
        return fut

    async def _journaled(self) -> None:
        """Wait until the journal has committed what was handed to it (off the loop)."""
        flush = getattr(self.journal, "flush", None)
        if flush is not None:
            ok = await asyncio.get_running_loop().run_in_executor(None, flush)
            if ok is False:
                log.warning("alarm journal: a rule's state was not committed in time")

    async def _run_actions(
        self,
        rule: RuleConfig,
        tr: Transition,
        prev: asyncio.Task[None] | None,
        journaled: asyncio.Future[None] | None = None,
        *,
        committed: bool = False,
        ahead: Mapping[int, bool | Exception] | None = None,
    ) -> None:
        """committed: the rule's change is in the journal already (_record_rule_now), with
        nothing to wait for; ahead: write records audited already (_audit_ahead)."""
        if prev is not None and not prev.done():
            await asyncio.wait([prev])
        if not committed and any(isinstance(a, WriteAction) for a in rule.actions):
            read_back = self._read_back
            if read_back is not None and not read_back.done():
                await asyncio.wait([read_back])  # an output is read before it is written
            if journaled is None:
                await self._journaled()
            else:
                try:
                    await asyncio.wait_for(journaled, JOURNAL_WAIT_S)
                except TimeoutError:
                    log.warning("alarm journal: a rule's state was not committed in time")
        for i, action in enumerate(rule.actions):
            try:
                if isinstance(action, WriteAction):
                    await self._write(rule, i, action, tr, (ahead or {}).get(i, False))
                elif isinstance(action, PublishAction):
                    self._publish(rule, i, action, tr)
            except Exception as e:  # a bug in one action must not stop the others
                log.exception("rule %s: action %d failed", rule.id, i)
                self._record(rule, i, action.kind, action.target, tr, False, f"error: {e!r}")

    async def _write(
        self,
        rule: RuleConfig,
        index: int,
        action: WriteAction,
        tr: Transition,
        audited: bool | Exception = False,
    ) -> None:
        """audited: the request record was committed already (True), or could not be
        (the exception); False: it is written here first."""
        value = action.value_for(tr.kind == "activate")
        if value is None:
            self._record(
                rule,
                index,
                "write",
                action.target,
                tr,
                True,
                "nothing written on release (no off value)",
            )
            return
        if not self.config.enabled:
            self._record(rule, index, "write", action.target, tr, False, READ_ONLY)
            return
        writer = self.writers.get(action.device)
        if writer is None:
            text = f"not applied: no connection to device {action.device} in this engine"
            self._record(rule, index, "write", action.target, tr, False, text)
            self.alarms.raise_system("write_failed", action.target, f"rule {rule.id}: {text}")
            return
        who = f"rule {rule.id}"
        if self.audit is not None and audited is not True:
            request = self._request(rule, action, tr)
            assert request is not None  # value is not None
            try:
                if isinstance(audited, Exception):
                    raise audited
                # Committed on the loop when the trail is free (a tenth of a millisecond, no
                # fsync), else from a worker thread: either way before the write is sent.
                done = self.audit_now is not None and self.audit_now(
                    "write", who, action.target, request
                )
                if not done:
                    await self._audited("write", who, action.target, request)
            except Exception as e:  # noqa: BLE001 - no record, no write
                text = f"not applied: the audit record could not be written ({e})"
                self._record(rule, index, "write", action.target, tr, False, text)
                self.alarms.raise_system("write_failed", action.target, f"{who}: {text}")
                return
        result = await writer(action.point, value)
        self._record(
            rule,
            index,
            "write",
            action.target,
            tr,
            result.ok,
            result.text,
            result.duration_ms,
            result.attempts,
        )
        if self.audit is not None:
            # The result follows the write it describes: recorded off the action's path
            # (the next action on this rule waits for nothing but its own record).
            self._follow_up(
                self._audited(
                    "write",
                    who,
                    action.target,
                    {
                        "phase": "result",
                        "rule": rule.id,
                        "ok": result.ok,
                        "value": value,
                        "after": result.read_back,
                        "text": result.text,
                    },
                ),
                f"{who}: result of the write to {action.target} not audited",
            )
        source = action.target
        if not result.ok:
            self.alarms.raise_system("write_failed", source, f"rule {rule.id}: {result.text}")
        elif result.mismatches:
            # The device ignored a write and the retry took: raised and returned at once,
            # so it waits for an acknowledgement (returned to normal, unacknowledged).
            self.alarms.raise_system(
                "write_failed",
                source,
                f"rule {rule.id}: read back differed {result.mismatches} time(s); {result.text}",
            )
            self.alarms.clear_system("write_failed", source, "retry read back as written")
        else:
            self.alarms.clear_system("write_failed", source, f"rule {rule.id}: {result.text}")

    def _follow_up(self, coro: Awaitable[None], failure: str) -> None:
        """A record that follows what it describes, written in the background; close()
        still waits for it."""

        async def run() -> None:
            try:
                await coro
            except Exception:  # noqa: BLE001 - audit() raised the alarm; say which record
                log.exception("%s", failure)

        task = asyncio.get_running_loop().create_task(run(), name="audit follow-up")
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    async def _audited(self, kind: str, user: str, target: str, detail: dict[str, Any]) -> None:
        """The audit record written (fsync) off the loop; returns once it is committed."""
        assert self.audit is not None
        await asyncio.get_running_loop().run_in_executor(
            None, self.audit, kind, user, target, detail
        )

    def _publish(self, rule: RuleConfig, index: int, action: PublishAction, tr: Transition) -> None:
        if self.publisher is None:
            self._record(
                rule,
                index,
                "publish",
                action.target,
                tr,
                False,
                "not applied: no broker connection for publishing",
            )
            return
        payload = action.render(payload_fields(rule, tr, self.clock.wall()))
        try:
            info = self.publisher(action.broker, action.topic, payload, action.qos)
        except Exception as e:  # noqa: BLE001 - reported as the action's result
            self._record(rule, index, "publish", action.target, tr, False, f"failed: {e}")
            return
        rc = getattr(info, "rc", 0)
        if rc:
            held = "kept in the client until it reconnects" if action.qos else "lost"
            self._record(
                rule,
                index,
                "publish",
                action.target,
                tr,
                False,
                f"broker not connected (rc {rc}); QoS {action.qos}: {held}",
            )
        else:
            self._record(
                rule,
                index,
                "publish",
                action.target,
                tr,
                True,
                f"sent ({len(payload)} bytes, QoS {action.qos})",
            )

    def _record(
        self,
        rule: RuleConfig,
        index: int,
        action: str,
        target: str,
        tr: Transition,
        ok: bool,
        text: str,
        duration_ms: float = 0.0,
        attempts: int = 0,
    ) -> None:
        rec = ActionRecord(
            self.clock.wall(), rule.id, action, target, tr.kind, ok, text, duration_ms, attempts
        )
        self.last_results[(rule.id, index)] = rec
        self.recent.append(rec)
        if self.journal is not None:
            self.journal.record_action(rec)
        if not ok:
            log.warning("rule %s: %s %s: %s", rule.id, action, target, text)

    async def idle(self) -> None:
        """Wait until every action started so far has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, timeout: float = 5.0) -> None:
        """Let running actions finish (a write in flight is not cut off), then stop."""
        try:
            await asyncio.wait_for(self.idle(), timeout)
        except TimeoutError:
            for t in list(self._tasks):
                t.cancel()
        if self._followups:  # the records of what was done
            await asyncio.wait(list(self._followups), timeout=timeout)

    # -- commands --------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str | Sequence[str], user: str) -> list[dict[str, Any]]:
        """One alarm, "all", or a list of ids (those shown on a filtered screen)."""
        if alarm_id == "all":
            entries = self.alarms.acknowledge_all(user)
        elif isinstance(alarm_id, str):
            entry = self.alarms.acknowledge(alarm_id, user)
            entries = [entry] if entry is not None else []
        else:
            entries = self.alarms.acknowledge_all(user, alarm_id)
        return [_entry_dict(e) for e in entries]

    def shelve(
        self, alarm_id: str, duration_s: float, user: str, reason: str = ""
    ) -> dict[str, Any]:
        """ISA-18.2: a shelve has a reason, kept with its expiry and who shelved it."""
        if not reason.strip():
            raise AlarmError(f"alarm {alarm_id}: a shelve needs a reason (why it is shelved)")
        return _entry_dict(self.alarms.shelve(alarm_id, duration_s, user, reason))

    def reset(self, rule_id: str, user: str, reason: str) -> CommandResult:
        """Release a latched rule (a trip) whose condition has cleared: its release runs
        (the off values are written, its alarm returns to normal). ValueError says why not."""
        if not reason.strip():
            raise ValueError(f"rule {rule_id}: a reset needs a reason (what was done)")
        ev = self.evaluators.get(rule_id)
        if ev is None:
            known = ", ".join(sorted(self.evaluators)) or "none"
            raise ValueError(f"no rule {rule_id!r} in this configuration (rules: {known})")
        known_input = ev.input_ok
        tr = ev.reset(self.clock.mono(), f"reset by {user}: {reason.strip()}")
        self._handle(ev.rule, [tr], event="reset", by=user)
        message = f"rule {rule_id} reset: its outputs release"
        if not known_input:
            message += (
                f" (its input is {ev.quality_text}: the condition could not be checked; "
                "it trips again if the condition is back)"
            )
        return {"ok": True, "message": message}

    def unshelve(self, alarm_id: str, user: str) -> dict[str, Any]:
        return _entry_dict(self.alarms.unshelve(alarm_id, user))

    def remove_from_service(self, alarm_id: str, user: str, reason: str = "") -> dict[str, Any]:
        return _entry_dict(self.alarms.remove_from_service(alarm_id, user, reason))

    def return_to_service(self, alarm_id: str, user: str) -> dict[str, Any]:
        return _entry_dict(self.alarms.return_to_service(alarm_id, user))

    # -- restart ---------------------------------------------------------------------------

    def restore(self, journal: JournalState) -> str:
        """At a start, before any input: the alarm table and the rules' outputs as the journal
        last recorded them. Nothing is annunciated or written here; outputs restored active
        are read back from their devices (read_back_outputs) before any write. Returns what
        was restored, in words, for the engine-start entry."""
        now_w = self.clock.wall()
        recent = journal.query(since=now_w - KPI_WINDOW_S, state="UNACK")
        alarms = self.alarms.restore(
            journal.alarm_histories(), [(e.t_wall, e.alarm_id) for e in recent]
        )
        now_m = self.clock.mono()
        on = 0
        last_actions = journal.last_actions()
        for rid, event in journal.rule_states().items():
            ev = self.evaluators.get(rid)
            if ev is None or not event.active or not ev.rule.enabled:
                continue
            ev.restore(True, now_m - (now_w - event.t_wall), event.text)
            on += 1
            alarm = self.alarms.alarms.get(ev.rule.alarm_id)
            if alarm is not None and alarm.state in (
                AlarmState.SHELVED,
                AlarmState.SUPPRESSED,
                AlarmState.OUT_OF_SERVICE,
            ):
                alarm.condition = True  # followed silently, as it was before the stop
            for i, a in enumerate(ev.rule.actions):
                rec = last_actions.get((rid, a.kind, a.target))
                if rec is not None:
                    self.last_results[(rid, i)] = rec
                if isinstance(a, WriteAction):
                    self._restored_outputs.append((ev.rule, i, a))
        # An alarm of a rule that no longer raises it would otherwise stay active for good.
        raising = {
            r.alarm_id
            for r in self.rules.values()
            if any(isinstance(a, AlarmAction) for a in r.actions)
        }
        for aid, alarm in list(self.alarms.alarms.items()):
            if alarm.source == "rule" and aid not in raising and alarm.condition:
                alarm.restored = False
                self.alarms.clear(aid, "rule no longer in this configuration")
        return f"{alarms} alarm(s) not normal and {on} rule output(s) on, restored from the journal"

    def start_read_back(self) -> None:
        """Read back, on the engine's loop, the outputs restored active; writes wait for it."""
        if self._restored_outputs and self._read_back is None:
            self._read_back = asyncio.get_running_loop().create_task(
                self._read_back_outputs(), name="read back restored outputs"
            )

    async def _read_back_outputs(self) -> None:
        tr_kind = "restore"
        for rule, i, action in self._restored_outputs:
            tr = Transition(rule.id, tr_kind, self.clock.mono(), None, "read back at start")
            expected = action.on
            reader = self.readers.get(action.device)
            if reader is None:
                text = f"not read back at start: no connection to device {action.device}"
                self._record(rule, i, "write", action.target, tr, False, text)
                continue
            deadline = self.clock.mono() + READ_BACK_TIMEOUT_S
            value: float | bool | None = None
            why = ""
            while True:
                try:
                    value, why = await reader(action.point)
                except Exception as e:  # noqa: BLE001 - reported as the action's result
                    value, why = None, str(e)
                if value is not None or self.clock.mono() >= deadline:
                    break
                await asyncio.sleep(0.2)
            if value is None:
                text = f"not read back at start: {why}"
                self._record(rule, i, "write", action.target, tr, False, text)
                self.alarms.raise_system("write_failed", action.target, f"rule {rule.id}: {text}")
            elif _same(value, expected):
                text = f"read back at start: {_value_text(value)}, as the rule left it"
                self._record(rule, i, "write", action.target, tr, True, text)
            elif rule.latch and self.config.enabled:
                # A trip found not set (the device restarted meanwhile) is set again: a latched
                # rule is protective, and only a reset releases it. Read first, then written.
                text = (
                    f"read back at start: {_value_text(value)}, but the latched rule left "
                    f"{_value_text(expected)}: written again"
                )
                self._record(rule, i, "write", action.target, tr, False, text)
                again = Transition(rule.id, "activate", self.clock.mono(), None, text)
                await self._write(rule, i, action, again)
            else:
                text = (
                    f"read back at start: {_value_text(value)}, but the rule left "
                    f"{_value_text(expected)}; not written again (reset or release the rule)"
                )
                self._record(rule, i, "write", action.target, tr, False, text)
                self.alarms.raise_system("write_failed", action.target, f"rule {rule.id}: {text}")
        self._restored_outputs.clear()

    # -- views -----------------------------------------------------------------------------

    def rule_views(self) -> tuple[RuleView, ...]:
        """Each rule as the rules screen shows it: value against threshold, the timer
        running, the last result of each action (wall-clock times)."""
        now_m, now_w = self.clock.mono(), self.clock.wall()
        views = []
        for rid, ev in self.evaluators.items():
            st = ev.state(now_m)
            pending = ""
            if st.pending:
                left = st.remaining_s
                pending = (st.pending_why or st.pending) + (
                    f" {left:.1f} s left" if left is not None else ""
                )
            results = self._results(rid, ev)
            actions = [
                ActionView(
                    kind=kind,
                    target=target,
                    last_result=last.text if last else "",
                    last_ok=last.ok if last else None,
                    last_at=last.t_wall if last else None,
                )
                for kind, target, last in results
            ]
            word, note = self._state_words(ev, st, results)
            views.append(
                RuleView(
                    id=st.id,
                    enabled=st.enabled,
                    signal=st.signal,
                    condition=st.condition,
                    value=st.value,
                    quality=st.quality,
                    active=st.active,
                    pending=pending,
                    last_activation=None
                    if st.last_activation_mono is None
                    else now_w - (now_m - st.last_activation_mono),
                    changes_last_hour=st.changes_last_hour,
                    note=note or st.held or "",
                    actions=tuple(actions),
                    state=word,
                    latch=ev.rule.latch,
                )
            )
        return tuple(views)

    def _results(self, rid: str, ev: RuleEvaluator) -> list[tuple[str, str, ActionRecord | None]]:
        """(kind, target, last result) of each action of a rule."""
        return [
            (a.kind, a.target, self.last_results.get((rid, i)))
            for i, a in enumerate(ev.rule.actions)
        ]

    def alarm_views(self) -> tuple[AlarmView, ...]:
        """Every alarm in banner order (most urgent unacknowledged first), then the rest."""
        now_m, now_w = self.clock.mono(), self.clock.wall()
        order = {a.id: i for i, a in enumerate(self.alarms.banner())}
        alarms = sorted(
            self.alarms.alarms.values(), key=lambda a: (order.get(a.id, len(order)), -a.rank, a.id)
        )
        return tuple(AlarmView(**a.as_dict(now_m, now_w)) for a in alarms)

    def alarm_summary(self) -> AlarmSummary:
        """The alarm counts and ISA-18.2 figures (per 10 min, flood, chattering) of the header."""
        c, k = self.alarms.counts(), self.alarms.kpis()
        return AlarmSummary(
            active=c["active"],
            unack=c["unack"],
            shelved=c["shelved"],
            suppressed=c["suppressed"],
            out_of_service=c["out_of_service"],
            alarms_10min=k["alarms_10min"],
            flood=k["flood"],
            floods=k["floods"],
            top_chattering=tuple((t["id"], t["activations_10min"]) for t in k["top_chattering"]),
        )

    def status(self) -> dict[str, Any]:
        """Plain data (str, int, float, bool, None, lists, dicts): everything, for tests and
        diagnostics; frames take the views above."""
        now_m, now_w = self.clock.mono(), self.clock.wall()

        def wall(m: float | None) -> float | None:
            return None if m is None else now_w - (now_m - m)

        rules = []
        for rid, ev in self.evaluators.items():
            state = ev.state(now_m)
            st = asdict(state)
            for key in ("since", "last_activation", "last_release"):
                st[key] = wall(st.pop(f"{key}_mono"))
            st["actions"] = [
                {
                    "kind": a.kind,
                    "target": a.target,
                    "last": _record_dict(self.last_results.get((rid, i))),
                }
                for i, a in enumerate(ev.rule.actions)
            ]
            held = self.last_results.get((rid, -1))
            st["last_held"] = _record_dict(held)
            st["state_word"], st["note"] = self._state_words(ev, state, self._results(rid, ev))
            st["latched"] = ev.rule.latch
            rules.append(st)
        banner = self.alarms.banner()
        order = {a.id: i for i, a in enumerate(banner)}
        alarms = sorted(
            self.alarms.alarms.values(), key=lambda a: (order.get(a.id, len(order)), -a.rank, a.id)
        )
        return {
            "mode": self.config.mode,
            "rules": rules,
            "alarms": [a.as_dict(now_m, now_w) for a in alarms],
            "banner": [a.id for a in banner],
            "counts": self.alarms.counts(),
            "kpis": self.alarms.kpis(),
            "recent_actions": [asdict(r) for r in self.recent][-20:],
        }

    def _state_words(
        self, ev: RuleEvaluator, st: RuleState, results: list[tuple[str, str, ActionRecord | None]]
    ) -> tuple[str, str]:
        """The rule's state in one word and why, for the rules screen and the banner: never
        NORMAL while it is held or could not act. results: (kind, target, last result) of
        each action."""
        if not ev.rule.enabled:
            return "DISABLED", ""
        if ev.held:
            return "HELD", ev.held
        failed = [
            (target, rec)
            for kind, target, rec in results
            if kind == "write" and rec is not None and not rec.ok and rec.text != READ_ONLY
        ]
        if failed:
            return "NOT APPLIED", f"{failed[0][0]}: {failed[0][1].text}"
        if st.latch:
            note = {
                "present": "latched: the condition is still present",
                "clear": "latched: the condition has cleared; reset (F3) to release",
                "unknown": f"latched: the condition cannot be seen (input {ev.quality_text}); "
                "reset (F3) to release",
            }[st.latch]
            return "LATCHED", note
        return ("ACTIVE" if ev.active else "NORMAL"), ""


def _same(value: float | bool, expected: float | bool) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return bool(value) == bool(expected)
    return abs(float(value) - float(expected)) <= 1e-6 * max(1.0, abs(float(expected)))


def _value_text(v: float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}"


def _entry_dict(entry: JournalEntry | None) -> dict[str, Any]:
    if entry is None:
        return {}
    d = asdict(entry)
    d["from_state"], d["to_state"] = entry.from_state.value, entry.to_state.value
    return d


def _record_dict(rec: ActionRecord | None) -> dict[str, Any] | None:
    return None if rec is None else asdict(rec)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
