"""The engine: runs one configuration at a time (sources, hub, models, rules) on one loop, on
the stores and adapters the composition root (engine/bootstrap.py) hands it."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from floorconsole.core.alarms import AlarmTable, JournalEntry
from floorconsole.core.clock import Clock
from floorconsole.core.config import (
    BrokerConfig,
    DerivedPoint,
    DeviceConfig,
    ModelConfig,
    PlantConfig,
    SignalConfig,
)
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.opcua import OpcUaDeviceConfig
from floorconsole.core.quality import Quality
from floorconsole.core.rules import ControlConfig, PublishAction
from floorconsole.core.sample import Sample
from floorconsole.core.uplink import alarm_record
from floorconsole.engine.control import AuditNow, AuditWriter, Control, Journal
from floorconsole.engine.hub import Hub
from floorconsole.engine.lock import DataDirLock
from floorconsole.engine.snapshots import HEALTH_WINDOW_S, SnapshotManager

if TYPE_CHECKING:
    from floorconsole.adapters.alarm_journal import AlarmJournal
    from floorconsole.adapters.audit_log import AuditLog
    from floorconsole.adapters.fleet import FleetLink
    from floorconsole.adapters.historian import Historian
    from floorconsole.adapters.modbus import DevicePoller
    from floorconsole.adapters.mqtt import BrokerClient
    from floorconsole.adapters.onnx_model import OnnxModel
    from floorconsole.adapters.opcua import OpcUaSource
    from floorconsole.adapters.outbox import Outbox
    from floorconsole.adapters.snapshot_store import SnapshotStore
    from floorconsole.adapters.uplink import Uplink
    from floorconsole.adapters.users import UserStore
    from floorconsole.core.snapshot import Snapshot
    from floorconsole.engine.attach import AttachServer
    from floorconsole.engine.calibrate import Candidate
    from floorconsole.engine.fleet import FleetAgent
    from floorconsole.engine.model_runner import ModelRunner
    from floorconsole.engine.shadow import Shadow

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.1
SWITCH_INTERVAL_S = 0.001
# A device polled at under this share of its configured rate (over the poller's rate window)
# raises poll_behind; at this second share or better it clears.
POLL_BEHIND_RATIO = 0.8
POLL_KEEPS_UP_RATIO = 0.9
STOP_TIMEOUT_S = 2.0


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, the configuration, the stores) out of the
    garbage collector's view, once, before the sources start.

    Python's full (generation 2) collection walks every tracked object while it holds the
    GIL: at ingest rate one ran every ~4 s over ~110,000 objects and stopped the loop and every
    thread for 40 to 130 ms, the largest single tail of a rule's write under load (issue 19).
    Frozen, those objects are skipped; a full collection then walks only what ingest keeps
    alive (the latest table, pending rows) and takes 2 to 10 ms. Objects made later (another
    configuration after an apply) are collected as before."""
    gc.collect()
    gc.freeze()


def _control_phases(
    plant: PlantConfig, polled: Sequence[tuple[DeviceConfig, Sequence[SignalConfig]]]
) -> dict[str, float]:
    """Where in its poll period each device that feeds a rule polls (seconds after the rest).

    Devices polled at the same instant answer together, and the loop handles their answers
    one after the other: with 20 devices, the last waited ~8 ms, and a crossing in it reached
    its rule that much later (issue 19). The devices a rule reads are polled apart, spread
    over the period between the others' polls, so their answer finds the loop idle. The rest
    stay together: polls spread one by one would wake the loop for each (measured: 4 us of CPU
    more a sample)."""
    inputs = {r.signal for r in plant.rules if r.enabled}
    feeding = [d for d, sigs in polled if any(s.id in inputs for s in sigs)]
    return {d.id: d.poll_s * (k + 1) / (len(feeding) + 1) for k, d in enumerate(feeding)}


class DemoControl(Protocol):
    """What the demo's simulated plant offers the engine: fault injection."""

    def fault_kinds(self) -> list[str]: ...

    def active_faults(self) -> list[str]: ...

    def inject(self, kind: str, severity: float = 1.0) -> None: ...

    def clear(self, kind: str) -> None: ...


class Adapters(Protocol):
    """How a configuration reaches its devices, brokers and model packages. The composition
    root (engine/bootstrap.py) gives the real adapters; the engine builds none of them."""

    def model_runner(
        self, model: ModelConfig, clock: Clock, stale_after_s: Mapping[str, float]
    ) -> ModelRunner: ...

    def device_poller(
        self,
        device: DeviceConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        clock: Clock,
        link: LinkStats,
    ) -> DevicePoller: ...

    def broker_client(
        self,
        broker: BrokerConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        link: LinkStats,
    ) -> BrokerClient: ...

    def opcua_source(
        self,
        device: OpcUaDeviceConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        clock: Clock,
        link: LinkStats,
    ) -> OpcUaSource: ...


@dataclass(frozen=True, slots=True)
class EngineStores:
    """The files an engine keeps in its data directory, each opened once by the composition
    root for the engine's life, and closed by the engine when it stops. One object each, so
    a listener on one of them is registered once, never again per configuration."""

    historian: Historian
    journal: AlarmJournal  # alarm transitions and action results, alarms.db
    audit_log: AuditLog
    users: UserStore
    snapshots: SnapshotStore
    outbox: Outbox | None = None  # with an [uplink]: rows committed with the historian's


class Configuration:
    """One running configuration: its hub, models, links, and the sources that feed them.

    The engine runs exactly one at a time; applying a snapshot builds the next one beside it
    (models loaded, signals registered) before the swap, so a refused configuration never
    touches the running one.
    """

    def __init__(
        self,
        plant: PlantConfig,
        *,
        snapshot_id: str,
        clock: Clock,
        store: object,
        loop_getter: Callable[[], asyncio.AbstractEventLoop | None],
        alarms: AlarmTable,
        adapters: Adapters,
        journal: Journal | None = None,
        audit: AuditWriter | None = None,
        audit_now: AuditNow | None = None,
    ) -> None:
        self.plant = plant
        self.snapshot_id = snapshot_id  # the short id of the snapshot this configuration is
        self.clock = clock
        self._loop_getter = loop_getter
        self._adapters = adapters
        self.hub = Hub(plant, clock, store)  # type: ignore[arg-type]
        self.derived: list[SignalConfig] = []
        self.models = self._build_models()
        self.links: dict[str, LinkStats] = {}
        for d in plant.devices:
            self.links[d.id] = LinkStats(d.id, "device", f"{d.host}:{d.port}")
        for u in plant.opcua_devices:
            self.links[u.id] = LinkStats(u.id, "device", u.endpoint)
        published = {
            a.broker for r in plant.rules for a in r.actions if isinstance(a, PublishAction)
        }
        for b in plant.brokers:
            if plant.signals_of_broker(b.id) or b.id in published:
                self.links[b.id] = LinkStats(b.id, "broker", f"{b.host}:{b.port}")
        self.pollers: dict[str, DevicePoller] = {}
        self.opcua: dict[str, OpcUaSource] = {}  # OPC UA servers, by device id
        self.clients: dict[str, BrokerClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._enabled_at: dict[str, float] = {}
        self.control = Control(
            plant.rules,
            plant.control or ControlConfig(),
            self.hub.latest.get,
            {},
            self._publish,
            alarms,
            journal,
            clock,
            audit=audit,
            audit_now=audit_now,
        )
        self.hub.add_listener(self.control.on_samples, first=True)
        # Candidates scoring beside live models (engine.shadow), by model id; registered after
        # the models, so a shadow sees each window after its live model has scored it.
        self.shadows: dict[str, Shadow] = {}
        self.hub.add_listener(self._run_shadows)

    def _build_models(self) -> dict[str, ModelRunner]:
        """One runner per [[models]] entry; its outputs become signals like any other. A
        package that fails to load gives a runner that reports why (a condition), not a crash."""
        runners: dict[str, ModelRunner] = {}
        for m in self.plant.models:
            r = self._adapters.model_runner(m, self.clock, self.hub.stale_after)
            outs = [
                SignalConfig(
                    id=o.id,
                    source=DerivedPoint(f"model {m.id}"),
                    unit=o.unit,
                    description=o.description,
                    labels=o.labels,
                )
                for o in r.output_signals()
            ]
            self.hub.add_signals(outs)
            self.derived.extend(outs)
            self.hub.add_listener(partial(self._run_model, r))
            runners[m.id] = r
        return runners

    def _run_model(self, runner: ModelRunner, batch: Sequence[Sample]) -> None:
        # Called from inside Hub.ingest: hand the outputs back on the next loop turn rather
        # than re-entering ingest.
        why_not = self._not_scoring(runner)
        samples = runner.pause(why_not) if why_not else runner.on_samples(batch)
        loop = self._loop_getter()
        if samples and loop is not None:
            loop.call_soon(self.hub.ingest, samples)

    def _run_shadows(self, batch: Sequence[Sample]) -> None:
        for sh in list(self.shadows.values()):
            sh.on_samples(batch, self._not_scoring(sh.runner))

    def start_shadow(self, model_id: str, candidate: OnnxModel, path: Path) -> Shadow:
        """A candidate scoring beside model_id, replacing any shadow it had. On the loop."""
        from floorconsole.engine.shadow import Shadow

        live = self.models[model_id]
        sh = Shadow(live, candidate, path, self.clock, self.hub.store, self.hub.stale_after)
        self.shadows[model_id] = sh
        return sh

    def _not_scoring(self, runner: ModelRunner) -> str:
        """Why the model must not score now ("" if it may): its enable signal is off, not
        GOOD, or turned on less than `settle` ago."""
        m = runner.cfg
        if m.enable is None:
            return ""
        en = self.hub.latest.get(m.enable)
        now = self.clock.mono()
        if en is None or en.quality is not Quality.GOOD or not en.value:
            self._enabled_at.pop(m.id, None)
            state = "not GOOD" if en is not None and en.quality is not Quality.GOOD else "off"
            return f"not scoring: {m.enable} is {state}"
        since = self._enabled_at.setdefault(m.id, now)
        if now - since < m.settle_s:
            return f"not scoring: {m.enable} on for {now - since:.0f} of {m.settle_s:g} s"
        runner.resume()
        return ""

    def _publish(self, broker: str, topic: str, payload: str, qos: int) -> object:
        client = self.clients.get(broker)
        if client is None:
            raise RuntimeError(f"no connection to broker {broker}")
        return client.publish(topic, payload, qos)

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        polled = [(d, self.plant.signals_of_device(d.id)) for d in self.plant.devices]
        polled = [(d, sigs) for d, sigs in polled if sigs]
        phases = _control_phases(self.plant, polled)
        for d, sigs in polled:
            p = self._adapters.device_poller(d, sigs, self.hub, self.clock, self.links[d.id])
            p.phase_s = phases.get(d.id, 0.0)
            self.pollers[d.id] = p
            self.control.writers[d.id] = p.write
            self.control.readers[d.id] = p.read_point
            self._tasks.append(asyncio.create_task(p.run(), name=f"poll {d.id}"))
        for u in self.plant.opcua_devices:
            sigs = self.plant.signals_of_opcua(u.id)
            if not sigs:
                continue
            src = self._adapters.opcua_source(u, sigs, self.hub, self.clock, self.links[u.id])
            self.opcua[u.id] = src
            self.control.writers[u.id] = src.write_point
            self.control.readers[u.id] = src.read_point
            self._tasks.append(asyncio.create_task(src.run(), name=f"opc-ua {u.id}"))
        for b in self.plant.brokers:
            if b.id not in self.links:
                continue
            c = self._adapters.broker_client(
                b, self.plant.signals_of_broker(b.id), self.hub, loop, self.clock, self.links[b.id]
            )
            c.start()
            self.clients[b.id] = c

    async def stop(self) -> None:
        await self.control.close()
        # Close the connections first: a request pymodbus is waiting on fails at once,
        # where a cancel alone can sit out the device's timeout and retries.
        for p in self.pollers.values():
            await p.close()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for t in pending:
                log.warning(
                    "%s did not stop within %g s; left behind", t.get_name(), STOP_TIMEOUT_S
                )
        self._tasks.clear()
        for c in self.clients.values():
            c.stop()
        self.pollers.clear()
        self.opcua.clear()
        self.clients.clear()
        self.control.writers.clear()
        self.control.readers.clear()

    def _check_poll_rates(self) -> None:
        """A device polled at under POLL_BEHIND_RATIO of its configured rate over the last
        window (overload: the engine held polls back, or polls take longer than their
        period) raises poll_behind; it clears once the device keeps up again."""
        for d in self.plant.devices:
            stats = self.links.get(d.id)
            if d.id not in self.pollers or stats is None or stats.poll_rate_hz is None:
                continue
            wanted = 1.0 / d.poll_s
            if stats.state is LinkState.DOWN:
                continue  # device_down says it; a down device's polls are not the point
            if stats.poll_rate_hz < POLL_BEHIND_RATIO * wanted:
                held = (
                    f", {stats.polls_held_back} held back (overload)"
                    if stats.polls_held_back
                    else ""
                )
                self.control.raise_system(
                    "poll_behind",
                    d.id,
                    f"{stats.poll_rate_hz:.1f} of {wanted:g} polls/s, "
                    f"last one {stats.poll_lag_s * 1000:.0f} ms late{held}",
                )
            elif stats.poll_rate_hz >= POLL_KEEPS_UP_RATIO * wanted:
                self.control.clear_system("poll_behind", d.id, f"{stats.poll_rate_hz:.1f} polls/s")

    def tick(self) -> None:
        """Every watchdog period: staleness of plant signals and of model inputs, rule timers,
        and system alarms from the state of links and models."""
        self.hub.check_stale()
        now = self.clock.mono()
        for c in self.clients.values():
            c.log_bad_input(now)
        for r in self.models.values():
            out = r.check()
            if out:
                self.hub.ingest(out)
        for sh in list(self.shadows.values()):
            sh.check()  # a shadow's stale inputs too: recorded BAD, like the live model's
        self.control.update_links(self.links.values())
        self._check_poll_rates()
        for mid, r in self.models.items():
            cond = r.condition()
            if cond is not None:
                self.control.raise_system("model_failure", mid, cond[1])
            else:
                self.control.clear_system("model_failure", mid)
            if r.drift_status == "alert":
                # names the features that drive it: "alert: x.rms +2.5σ, x.variance +1.7σ"
                self.control.raise_system("drift_alert", mid, r.drift_text)
            else:
                self.control.clear_system("drift_alert", mid)
        self.control.tick()


class Engine:
    """Owns the data directory (its lock and stores) and runs one configuration at a time:
    the devices, the broker clients, the hub, the models.

    Built by the composition root (engine/bootstrap.py: open_engine), which opens every store
    once and hands them over here; the engine builds no adapter itself, and nothing is set on
    it after construction.

    Runs on its own asyncio loop: in the main thread for a headless service (run_forever)
    or in a background thread under a console (start_background), so a slow screen never
    delays polling, control logic or the historian.
    """

    def __init__(
        self,
        plant: PlantConfig,
        *,
        snapshot: Snapshot,
        stores: EngineStores,
        adapters: Adapters,
        lock: DataDirLock,
        clock: Clock,
        data_dir: Path,
        base_dir: Path,
        uplink: Uplink | None = None,
        demo: DemoControl | None = None,
        demo_users: Sequence[dict[str, str]] = (),
        idle_lock_s: float | None = None,
        attach: bool = True,
        start_note: str = "",
        health_window_s: float = HEALTH_WINDOW_S,
        package_problems: Mapping[str, str] | None = None,
        fleet_link: FleetLink | None = None,
    ) -> None:
        self.clock = clock
        self.data_dir = Path(data_dir)
        # Recalibration (engine.calibrate): the last candidate built per model, and what a
        # calibration under way is doing (model -> (step, fraction done)), for the console.
        self.candidates: dict[str, Candidate] = {}
        self.calibration_progress: dict[str, tuple[str, float]] = {}
        self.demo = demo
        self._stores = stores
        self._adapters = adapters
        self.historian = stores.historian
        self.journal: AlarmJournal = stores.journal
        self.outbox = stores.outbox
        self.uplink = uplink
        self._audit_log = stores.audit_log
        self._users = stores.users
        self._closed = False
        self._audit_synced = 0.0
        self.idle_lock_s = idle_lock_s
        self.demo_users = [dict(u) for u in demo_users]  # the demo's accounts, for its banner
        # Listeners of the engine's life, registered here once: a configuration built for an
        # apply or a rollback registers none, so each alarm transition is written once.
        self.alarms = AlarmTable(self.clock)
        self.alarms.on_entry(self.journal.append)
        if self.outbox is not None:
            self.alarms.on_entry(self._uplink_alarm)
        self.active = self.build(plant, snapshot.short)
        self._uplink_labels()
        # Package files given at start that could not be read (a stored copy stands in): each
        # model's condition says so, on the start's configuration only.
        for mid, why in (package_problems or {}).items():
            if mid in self.active.models:
                self.active.models[mid].note_package_problem(why)
        self.started_wall = self.clock.wall()
        self._lock = lock
        self.snapshots = SnapshotManager(
            self,
            stores.snapshots,
            snapshot,
            base_dir=base_dir,
            health_window_s=health_window_s,
            start_note=start_note,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._rate: deque[tuple[float, int]] = deque(maxlen=50)
        self._counted = 0  # samples of earlier configurations, so the rate survives a swap
        self._cache_errors = self._cache_dropped = 0
        self._counts_saved = -1e9  # monotonic time the bad-input counters last went out
        self._counts_written: dict[tuple[str, str, str], int] = {}
        self.ingest_rate = 0.0
        self.attach = attach  # consoles in other processes attach at DATA_DIR/engine.sock
        self.attach_server: AttachServer | None = None  # while running, if it could listen
        self.stop_requested_by = ""  # the user a console's engine.stop named, for the record
        from floorconsole.engine.api import EngineAPI

        self.api = EngineAPI(self)
        # A member of a fleet: its status on the plant broker, rollout commands in.
        self.fleet: FleetAgent | None = None
        if fleet_link is not None and plant.fleet is not None:
            from floorconsole.engine.fleet import FleetAgent

            self.fleet = FleetAgent(self, plant.fleet, fleet_link)

    def _cache_alarm(self) -> None:
        """Cache trouble: the historian failing to commit (disk full, I/O) or dropping rows."""
        st = self.historian.stats
        trouble = st.rows_pending > 0 and bool(st.last_error) and st.errors > self._cache_errors
        if trouble or st.dropped > self._cache_dropped:
            why = st.last_error or f"{st.dropped} samples dropped"
            self.alarms.raise_system("cache_trouble", "history", why)
        elif st.rows_pending == 0 or not st.last_error:
            self.alarms.clear_system("cache_trouble", "history", "commits again")
        self._cache_errors, self._cache_dropped = st.errors, st.dropped

    def _restore_input_counts(self) -> None:
        """Bad-input counters of earlier runs (the historian keeps them), back on the links."""
        try:
            kept = self.historian.input_counts()
        except Exception as e:  # noqa: BLE001 - counters are worth a log line, not a start
            log.error("bad-input counters of earlier runs not read: %s", e)
            return
        by_link: dict[str, dict[tuple[str, str], int]] = {}
        for (link, signal, reason), n in kept.items():
            by_link.setdefault(link, {})[(signal, reason)] = n
        for link, counts in by_link.items():
            if link in self.links:
                self.links[link].restore_input_counts(counts)
        self._counts_written = dict(kept)

    def _persist_input_counts(self) -> None:
        """The links' bad-input totals to the historian when they changed: written with its
        next batch, so they survive a restart (a kill -9 loses about a second of them)."""
        self._counts_saved = self.clock.mono()
        now = {
            (link_id, signal, reason): n
            for link_id, stats in list(self.links.items())
            for (signal, reason), n in stats.input_counts().items()
        }
        changed = {k: n for k, n in now.items() if self._counts_written.get(k) != n}
        if changed:
            self.historian.set_input_counts(changed)
            self._counts_written.update(changed)

    def _uplink_alarm(self, entry: JournalEntry) -> None:
        if self.outbox is not None:
            self.outbox.add_records("alarms", [alarm_record(entry)], entry.t_wall)

    def build(self, plant: PlantConfig, snapshot_id: str) -> Configuration:
        """A configuration of snapshot snapshot_id (short form) ready to start, beside whatever
        runs now."""
        return Configuration(
            plant,
            snapshot_id=snapshot_id,
            clock=self.clock,
            store=self.historian,
            loop_getter=lambda: self._loop,
            alarms=self.alarms,
            adapters=self._adapters,
            journal=self.journal,
            audit=self.audit,
            audit_now=self.audit_now,
        )

    # -- users and the audit trail ------------------------------------------------------------

    def users(self) -> UserStore:
        """The box's users (users.db in the data directory)."""
        return self._users

    def audit_log(self) -> AuditLog:
        """The hash-chained audit trail (audit.db). Opened with synchronous=NORMAL: a record
        is committed (survives a crash) before the action it records; the watchdog's sync()
        puts it on disk within about a second."""
        return self._audit_log

    def audit(self, kind: str, user: str, target: str, detail: dict[str, Any]) -> None:
        """One record in the hash-chained audit trail, committed before this returns (so an
        action that waits on it never runs unrecorded). Raises when it cannot be written."""
        self._audit(kind, user, target, detail, wait=True)

    def audit_now(self, kind: str, user: str, target: str, detail: dict[str, Any]) -> bool:
        """audit() for the engine's loop: True once committed; False at once when the trail
        is busy (the caller then uses audit() from a worker thread). Raises like audit()."""
        return self._audit(kind, user, target, detail, wait=False)

    def _audit(
        self, kind: str, user: str, target: str, detail: dict[str, Any], *, wait: bool
    ) -> bool:
        t_wall = self.clock.wall()
        try:
            written = self.audit_log().append_record(kind, user, target, detail, t_wall, wait=wait)
        except Exception as e:
            log.error("audit record %s by %s not written: %s", kind, user or "-", e)
            self.alarms.raise_system("audit_trouble", "audit.db", str(e))
            raise
        if written is None:
            return False
        self.alarms.clear_system("audit_trouble", "audit.db", "records written again")
        if self.outbox is not None:  # a copy of the chain off the box, on the audit topic
            record = {
                "seq": written.seq,
                "t": round(t_wall * 1000),
                "user": user,
                "kind": kind,
                "target": target,
                "detail": detail,
                "hash": written.hash,
            }
            self.outbox.add_records("audit", [record], t_wall)
        return True

    def audit_safe(self, kind: str, user: str, target: str, detail: dict[str, Any]) -> None:
        """A record that follows what it describes (a result, a system event): trouble writing
        it is an alarm and a log line, not a crash."""
        try:
            self.audit(kind, user, target, detail)
        except Exception:  # noqa: BLE001 - reported by audit() as an alarm and in the log
            pass

    def _sync_audit(self) -> None:
        """Once a second: the audit records of the last second on disk, off the loop."""
        log_ = self._audit_log
        now = self.clock.mono()
        if log_ is None or self._loop is None or now - self._audit_synced < 1.0:
            return
        self._audit_synced = now

        def sync() -> None:
            try:
                log_.sync()
            except Exception as e:  # noqa: BLE001 - an alarm, not a dead watchdog
                log.error("audit trail not synced: %s", e)
                self.alarms.raise_system("audit_trouble", "audit.db", str(e))

        self._loop.run_in_executor(None, sync)

    def audit_event(self, what: str, detail: dict[str, Any] | None = None) -> None:
        self.audit_safe("system", "engine", what, dict(detail or {}))

    # The running configuration's parts, as the engine's own (consoles and tests read these).
    @property
    def plant(self) -> PlantConfig:
        return self.active.plant

    @property
    def snapshot_id(self) -> str:
        """The running snapshot's id, in the short form the snapshot store shows: the one id
        of the running configuration in frames, the log, the audit trail and the uplink."""
        return self.active.snapshot_id

    @property
    def hub(self) -> Hub:
        return self.active.hub

    @property
    def models(self) -> dict[str, ModelRunner]:
        return self.active.models

    @property
    def links(self) -> dict[str, LinkStats]:
        return self.active.links

    @property
    def derived(self) -> list[SignalConfig]:
        return self.active.derived

    @property
    def samples_in(self) -> int:
        return self._counted + self.active.hub.samples_in

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop() is called, then close the stores (an engine runs once). Takes
        the data-directory lock first, if the composition root has not."""
        if self._closed:
            raise RuntimeError("this engine has stopped and closed its stores: build another")
        self._lock.acquire()
        # The stores' writer threads (historian, journal, audit) hand work back and forth
        # with this loop; a thread waiting for the GIL waits up to the switch interval.
        # Python's 5 ms made each hop of a rule's write path (journal flush, audit) cost
        # milliseconds while the historian converts a batch; 1 ms keeps control quick.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        from floorconsole.adapters.process_memory import pin_mmap_threshold

        pin_mmap_threshold()  # large arrays back to the system when freed: RSS stays flat
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        watchdog: asyncio.Task[None] | None = None
        startup: asyncio.Task[None] | None = None
        attach: AttachServer | None = None
        try:
            self.historian.start()
            self._restore_input_counts()
            if self.uplink is not None:
                self.uplink.start()
            # Alarms and rule outputs as they were when the engine last ran, before any input.
            restored = self.active.control.restore(self.journal)
            self.journal.record_event(self.clock.wall(), "engine started", restored)
            freeze_startup_heap()
            await self.active.start(self._loop)
            self.active.control.start_read_back()
            watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
            log.info(
                "engine started: snapshot %s, %d devices, %d brokers, %d signals, data in %s",
                self.snapshot_id,
                len(self.active.pollers),
                len(self.active.clients),
                len(self.plant.signals),
                self.data_dir,
            )
            startup = asyncio.create_task(self.snapshots.started(), name="start-up health check")
            await asyncio.get_running_loop().run_in_executor(
                None,
                partial(
                    self.audit_event,
                    "engine started",
                    {"snapshot": self.snapshot_id, "data_dir": str(self.data_dir)},
                ),
            )
            if self.attach:
                from floorconsole.engine.attach import start_attach_server

                attach = self.attach_server = start_attach_server(self)  # own thread and loop
            if self.fleet is not None:
                await self.fleet.start()
            self._ready.set()
            await self._stop.wait()
        finally:
            if attach is not None:  # first, so attached consoles see the engine go at once
                attach.stop()
                self.attach_server = None
            for task in (watchdog, startup):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if self.fleet is not None:  # says offline before the sources stop
                await self.fleet.stop()
            await self.active.stop()
            self._persist_input_counts()
            # A start with no stop before it in the journal: the engine died (kill -9).
            self.journal.record_event(self.clock.wall(), "engine stopped", self.snapshot_id)
            self.journal.close()
            # Who stopped it, when its console asked (api.stop_engine); else the engine itself
            # (a signal to the service, or its process ending).
            self.audit_safe(
                "system",
                self.stop_requested_by or "engine",
                "engine stopped",
                {"snapshot": self.snapshot_id},
            )
            self.close()
            log.info("engine stopped")

    def close(self) -> None:
        """Close every store and release the data directory. run() does it when the engine
        stops; call it for an engine that was built but never run. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.journal.close()
            self._audit_log.sync()
            self._audit_log.close()
            self._users.close()
            if self.uplink is not None:
                self.uplink.stop()
            self.historian.close()
            if self.uplink is not None:
                self.uplink.close()
            self._stores.snapshots.close()
        finally:
            self._lock.release()

    def _uplink_labels(self) -> None:
        """The uplink says an enumerated signal's word beside its code, as the console does."""
        if self.outbox is not None:
            self.outbox.set_labels({s.id: s.labels for s in self.active.derived if s.labels})

    async def swap(self, new: Configuration, *, carry_values: bool = False) -> Configuration:
        """Stop the running configuration's sources and start the new one's, between two
        watchdog ticks. Returns the one that was running.

        carry_values: plant signals the two share keep their last value, quality and trend
        (the console does not flash "initial"); computed signals (model outputs) start
        afresh, so a health check sees them computed by the new configuration."""
        assert self._loop is not None
        old = self.active
        log.debug("snapshot %s replacing %s", new.snapshot_id, old.snapshot_id)
        new.control.adopt(old.control)  # outputs that are on stay known to the new rules
        if carry_values:
            derived = {s.id for s in new.derived}
            for sid, sample in old.hub.latest.items():
                if sid in new.hub.latest and sid not in derived:
                    new.hub.latest[sid] = sample
                    new.hub.spark[sid].extend(old.hub.spark[sid])
            new.hub.rescan_stale()
            # The machine did not stop for the swap: no second start-up settling time.
            new._enabled_at.update(old._enabled_at)
        await old.stop()
        for link_id, stats in new.links.items():  # bad-input counters go on, not from 0
            if link_id in old.links:
                stats.restore_input_counts(old.links[link_id].input_counts())
        self._counted += old.hub.samples_in
        self.active = new
        self._uplink_labels()
        await new.start(self._loop)
        if self.uplink is not None:  # the retained status names what runs, swapped back or not
            self.uplink.set_snapshot(new.snapshot_id)
        if self.fleet is not None:
            self.fleet.poke()
        log.info("snapshot %s replaced %s", new.snapshot_id, old.snapshot_id)
        return old

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            self.active.tick()
            self._cache_alarm()
            self._sync_audit()
            if self.clock.mono() - self._counts_saved >= 1.0:
                self._persist_input_counts()
            now = self.clock.mono()
            total = self.samples_in
            self._rate.append((now, total))
            t0, n0 = self._rate[0]
            if now - t0 > 0:
                self.ingest_rate = (total - n0) / (now - t0)

    def run_forever(self) -> None:
        """Headless: run in this thread until SIGINT/SIGTERM."""
        import signal

        async def main() -> None:
            loop = asyncio.get_running_loop()
            runner = asyncio.create_task(self.run())
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
            await runner

        asyncio.run(main())

    def start_background(self, timeout: float = 10.0) -> None:
        """Start on a thread of its own; returns once sources are started (or raises why not)."""

        def target() -> None:
            try:
                asyncio.run(self.run())
            except BaseException as e:  # reported to the starter, not lost in a thread
                self._failure = e
                self._ready.set()

        self._thread = threading.Thread(target=target, name="floorconsole-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"engine did not start within {timeout:g} s")
        if self._failure is not None:
            raise self._failure

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def uptime_s(self) -> float:
        return time.time() - self.started_wall
