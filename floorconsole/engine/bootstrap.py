"""The composition root: the one place an engine is built, by the CLI, the demo and the tests.

open_engine takes the data directory, picks the snapshot to run, opens every store once
(snapshot store, historian, alarm journal, audit trail, users, uplink outbox), builds the
adapters (Modbus, MQTT, ONNX model packages, the uplink), and hands them all to the Engine
through its constructor. The engine builds none of them, and nothing is set on it afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floorconsole.adapters.alarm_journal import FILE_NAME as JOURNAL_FILE
from floorconsole.adapters.alarm_journal import AlarmJournal
from floorconsole.adapters.audit_log import AuditLog
from floorconsole.adapters.historian import PART_SAMPLES, Historian
from floorconsole.adapters.modbus import DevicePoller
from floorconsole.adapters.snapshot_store import SnapshotStore, SnapshotStoreError
from floorconsole.adapters.users import UserStore
from floorconsole.core.audit import REFUSED
from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.config import (
    BrokerConfig,
    DeviceConfig,
    ModelConfig,
    MqttPoint,
    PlantConfig,
    Problem,
    SignalConfig,
    validate_plant,
)
from floorconsole.core.links import LinkState, LinkStats
from floorconsole.core.opcua import OpcUaDeviceConfig
from floorconsole.core.points import ModbusPoint
from floorconsole.core.rules import AlarmAction
from floorconsole.core.snapshot import Snapshot, read_model_files
from floorconsole.core.sparkplug import DataType
from floorconsole.engine.hub import Hub
from floorconsole.engine.lock import DataDirLock
from floorconsole.engine.runtime import DemoControl, Engine, EngineStores
from floorconsole.engine.snapshots import HEALTH_WINDOW_S

# Adapters a plant may not use are imported when it does: OPC UA (asyncua), ONNX models
# (onnxruntime), MQTT and the uplink (paho), the demo's simulator. A Modbus-only engine is
# 40 to 60 MiB smaller without them (issue 19: RSS beside Node-RED).
if TYPE_CHECKING:
    from floorconsole.adapters.fleet import FleetLink
    from floorconsole.adapters.mqtt import BrokerClient
    from floorconsole.adapters.opcua import OpcUaSource
    from floorconsole.adapters.outbox import Outbox
    from floorconsole.adapters.sparkplug.uplink import SignalMetric, SparkplugUplink
    from floorconsole.adapters.uplink import Uplink
    from floorconsole.engine.model_runner import ModelRunner, PackageFallback

log = logging.getLogger(__name__)


class StartupError(ValueError):
    """The engine cannot start on what it was given (an unreadable plant file, a damaged
    snapshot store); the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class StartupPlan:
    """What an engine starting on a data directory runs."""

    snapshot: Snapshot
    imported: bool  # the content given at start was new and became a snapshot
    note: str | None  # why the content given at start was not used, for the log and console
    # Models whose package files could not be read: model id -> why. A stored package (or
    # none) stands in, so a missing file never keeps the engine from starting.
    stand_ins: dict[str, str] = field(default_factory=dict)


def plan_startup(store: SnapshotStore, plant_path: str | Path, *, author: str) -> StartupPlan:
    """The snapshot to run at start-up. A plant file whose content is new becomes a snapshot
    (parent: the active one) and runs. One whose content is an older snapshot does not
    override the active one (changes made in the console since): that one runs, and the note
    says so and how to write it back to a file."""
    stand_ins: dict[str, str] = {}
    try:
        result = store.import_plant_file(
            plant_path,
            author=author,
            message=f"plant file {Path(plant_path).name}",
            stand_ins=stand_ins,
        )
    except SnapshotStoreError as e:
        raise StartupError(str(e)) from None
    file_snap = result.snapshot
    active = store.active()
    if result.new or active is None or active.snapshot == file_snap.id:
        return StartupPlan(file_snap, imported=result.new, note=None, stand_ins=stand_ins)
    current = store.get(active.snapshot)
    note = (
        f"{plant_path} holds snapshot {file_snap.short} ({_when(file_snap.created)} UTC), "
        f"not the active snapshot {current.short} ({current.author}: "
        f"{_one_line(current.message)}); running {current.short}. "
        f"`floorconsole snapshot export {current.short} DIR` writes it to a plant file; "
        f"`floorconsole snapshot rollback {file_snap.short}` runs the file's"
    )
    return StartupPlan(current, imported=False, note=note)


def plan_given(
    store: SnapshotStore,
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    author: str,
    source: str = "",
) -> StartupPlan:
    """As plan_startup, for a configuration given at start as a dict (the demo's, a test's):
    one that is an older snapshot does not undo the changes made in the console since."""
    active = store.active()
    known = {s.id for s in store.list()}
    stand_ins: dict[str, str] = {}
    files = read_model_files(raw, base_dir, unreadable=stand_ins)
    for mid in stand_ins:  # as for a plant file: a stored package stands in
        files[mid] = store.stand_in(mid)
    try:
        snap = store.put(
            raw,
            files,
            author=author,
            message=source or "configuration given at start",
            parent=active.snapshot if active is not None else None,
        )
    except SnapshotStoreError as e:
        raise StartupError(str(e)) from None
    if snap.id not in known or active is None or active.snapshot == snap.id:
        return StartupPlan(snap, imported=snap.id not in known, note=None, stand_ins=stand_ins)
    current = store.get(active.snapshot)
    note = (
        f"{source or 'the configuration given at start'} is snapshot "
        f"{snap.short}, not the active {current.short} ({current.author}: "
        f"{current.message.splitlines()[0] if current.message else ''}); "
        f"running {current.short}. Roll back to {snap.short} on F5 to undo"
    )
    return StartupPlan(current, imported=False, note=note)


class PlantAdapters:
    """The real adapters a configuration reaches its devices, brokers and models through.

    package_fallback: stored copies of a model package that cannot be used (the snapshot
    store's), tried in turn by a model runner."""

    def __init__(self, package_fallback: PackageFallback | None = None) -> None:
        self._package_fallback = package_fallback

    def model_runner(
        self, model: ModelConfig, clock: Clock, stale_after_s: Mapping[str, float]
    ) -> ModelRunner:
        from floorconsole.engine.model_runner import ModelRunner

        # A package that fails to load gives a runner that says why, not an exception.
        return ModelRunner.from_config(
            model, clock, stale_after_s=stale_after_s, fallback=self._package_fallback
        )

    def device_poller(
        self,
        device: DeviceConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        clock: Clock,
        link: LinkStats,
    ) -> DevicePoller:
        return DevicePoller(device, signals, hub, clock, link)

    def broker_client(
        self,
        broker: BrokerConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        link: LinkStats,
    ) -> BrokerClient:
        from floorconsole.adapters.mqtt import BrokerClient

        return BrokerClient(broker, signals, hub, loop, clock, link)

    def opcua_source(
        self,
        device: OpcUaDeviceConfig,
        signals: Sequence[SignalConfig],
        hub: Hub,
        clock: Clock,
        link: LinkStats,
    ) -> OpcUaSource:
        from floorconsole.adapters.opcua import engine_source

        return engine_source(device, signals, hub.ingest, clock, link)


def open_engine(
    *,
    data_dir: Path,
    base_dir: Path,
    user: str,
    plant_file: Path | None = None,
    plant_raw: Mapping[str, Any] | None = None,
    source: str = "",
    clock: Clock | None = None,
    demo: DemoControl | None = None,
    idle_lock_s: float | None = None,
    attach: bool = True,
    health_window_s: float = HEALTH_WINDOW_S,
    journal: AlarmJournal | None = None,
) -> Engine:
    """An engine on data_dir, ready to run: take the data directory, pick the snapshot to run
    (the plant file's or plant_raw's when its content is new; otherwise the active one, so
    changes made in the console survive a restart), open the stores, build the engine.

    demo: the simulated plant's fault injection; its demo users are put in the user store.
    journal: what records alarm transitions and action results, in place of alarms.db.

    Raises EngineAlreadyRunning before touching anything when another engine holds the
    directory, PlantError or StartupError for a configuration that cannot run."""
    if (plant_file is None) == (plant_raw is None):
        raise ValueError("open_engine needs one of plant_file and plant_raw")
    data_dir = Path(data_dir)
    lock = DataDirLock(data_dir)
    lock.acquire()
    opened: list[Callable[[], None]] = []  # closed again, last first, if the build fails
    models_dir = data_dir / "models"
    try:
        try:
            store = SnapshotStore.in_data_dir(data_dir)
            opened.append(store.close)
            if plant_file is not None:
                plan = plan_startup(store, plant_file, author=user)
            else:
                assert plant_raw is not None
                plan = plan_given(store, plant_raw, base_dir=base_dir, author=user, source=source)
            snap = plan.snapshot
            raw = store.materialize(snap.id, models_dir)
        except SnapshotStoreError as e:
            raise StartupError(str(e)) from None
        # Only the text refuses a start: a package file that cannot be used is the model's
        # problem (a stored copy runs, or it is BAD with an alarm), not the plant's.
        package_problems: list[Problem] = []
        where = source or f"snapshot {snap.short}"
        plant = validate_plant(
            raw, source=where, base_dir=base_dir, package_problems=package_problems
        )
        for problem in package_problems:
            log.error("%s: %s", where, problem)
        for mid, why in plan.stand_ins.items():
            log.error("model %s: %s; a stored package stands in, if there is one", mid, why)
        clock = clock or SystemClock()
        outbox, uplink = _uplink(plant, snap, clock, data_dir)
        if uplink is not None:
            opened.append(uplink.close)
        historian = Historian(
            data_dir / "history.db",
            retention_s=plant.edge.retention_s,
            clock=clock,
            commit_hook=outbox,
            flush_interval_s=commit_interval_s(plant),
            part_samples=part_samples(plant),
        )
        opened.append(historian.close)
        if journal is None:
            journal = AlarmJournal(data_dir / JOURNAL_FILE)
            opened.append(journal.close)
        audit_log = AuditLog.in_data_dir(data_dir, synchronous="NORMAL")
        opened.append(audit_log.close)
        users = UserStore.in_data_dir(data_dir)
        opened.append(users.close)
        demo_users = []
        if demo is not None:
            from floorconsole.engine.demo import ensure_demo_users

            demo_users = ensure_demo_users(users)
        stores = EngineStores(
            historian=historian,
            journal=journal,
            audit_log=audit_log,
            users=users,
            snapshots=store,
            outbox=outbox,
        )
        engine = Engine(
            plant,
            snapshot=snap,
            stores=stores,
            adapters=PlantAdapters(_stored_copies(store, models_dir)),
            lock=lock,
            clock=clock,
            data_dir=data_dir,
            base_dir=base_dir,
            uplink=uplink,
            demo=demo,
            demo_users=demo_users,
            idle_lock_s=idle_lock_s,
            attach=attach,
            start_note=plan.note or "",
            health_window_s=health_window_s,
            package_problems=plan.stand_ins,
            fleet_link=_fleet_link(plant),
        )
        if uplink is not None:
            from floorconsole.adapters.sparkplug.uplink import BothUplinks, SparkplugUplink

            if isinstance(uplink, SparkplugUplink):
                _watch_devices(uplink, engine)
            elif isinstance(uplink, BothUplinks):
                _watch_devices(uplink.sparkplug, engine)
    except BaseException:
        for close in reversed(opened):
            try:
                close()
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                log.exception("closing a store after a failed start")
        lock.release()
        raise
    if plan.note:
        log.warning("%s", plan.note)
    return engine


# What a commit may add to the newest committed sample's age beyond the wait for it: the
# commit, and the wait behind a compaction's write (at 20 ms polls, 75,000 samples/s, the
# newest committed sample was at most 38 to 45 ms old with commits 6.7 ms apart).
COMMIT_MARGIN_S = 0.014


def commit_interval_s(plant: PlantConfig) -> float:
    """How often the historian commits, so the newest sample in the file stays under two
    polls old: a sample waits a poll for the next, then the commit interval, then the commit
    (COMMIT_MARGIN_S). Half the fastest Modbus poll, and never more than a poll less that
    margin; between 5 and 100 ms: 6 ms at 20 ms polls, 50 ms at 100 ms, 100 ms at 200 ms and
    slower. Fewer commits cost less (each wakes a cold writer: at 100 ms polls, commits a
    third of a poll apart took 2.0 us of CPU a sample, half a poll apart 1.8, issue 19); the
    outbox makes its uplink messages in the same transactions."""
    fastest = min((d.poll_s for d in plant.devices), default=0.3)
    return min(0.1, max(0.005, min(fastest / 2, fastest - COMMIT_MARGIN_S)))


def part_samples(plant: PlantConfig) -> int:
    """How many samples a part of the history gathers before it is compacted: PART_SAMPLES
    when the fastest poll is 20 ms or quicker (the compaction's write then holds commits
    back a few milliseconds, well inside a poll), proportionally more for slower polls, up
    to three times that. A compaction costs per block as much as per sample: at 100 ms polls
    (15,000 samples/s) blocks of 64 samples took 1.0 us of CPU a sample, blocks of about
    150 (each part every 15 s) 0.84 (issue 19)."""
    fastest = min((d.poll_s for d in plant.devices), default=0.3)
    return int(PART_SAMPLES * min(3.0, max(1.0, fastest / 0.02)))


def _stored_copies(store: SnapshotStore, models_dir: Path) -> PackageFallback:
    """The snapshot store's copies of a model's package, written under models_dir, other than
    the configured one (that one just failed)."""

    def copies(cfg: ModelConfig) -> Iterator[tuple[Path, str]]:
        for path, whence in store.package_copies(cfg.id, models_dir):
            if path != cfg.package:
                yield path, whence

    return copies


def _uplink(
    plant: PlantConfig, snap: Snapshot, clock: Clock, data_dir: Path
) -> tuple[Outbox | None, Uplink | None]:
    """With an [uplink]: the outbox (its rows commit in the historian's own transactions, so
    a sample is stored and queued for the plant broker together, or neither) and the uplink
    that forwards it, its retained status naming the snapshot; with format = "sparkplug" the
    Sparkplug B edge node on the same outbox (bdSeq kept in data_dir)."""
    if plant.uplink is None:
        return None, None
    from floorconsole.adapters.outbox import Outbox
    from floorconsole.adapters.sparkplug.uplink import BothUplinks, SparkplugUplink
    from floorconsole.adapters.uplink import Uplink

    outbox = Outbox(plant.uplink)
    broker = next(b for b in plant.brokers if b.id == plant.uplink.broker)
    uplink_cfg = plant.uplink

    def sparkplug_uplink(on: Outbox) -> SparkplugUplink:
        return SparkplugUplink(
            uplink_cfg,
            broker,
            on,
            edge_id=plant.edge.id,
            data_dir=data_dir,
            metrics=sparkplug_metrics(plant),
            devices=[d.id for d in plant.devices],
            snapshot_id=snap.short,
            clock=clock,
        )

    if plant.uplink.format == "both":  # each its own outbox, filled by the same commits
        spb_outbox = Outbox(plant.uplink, boot=outbox.boot, table="outbox_sparkplug")
        outbox.secondary = spb_outbox
        sp = sparkplug_uplink(spb_outbox)
        both = BothUplinks(
            plant.uplink, broker, outbox, sp, edge_id=plant.edge.id, snapshot_id=snap.short,
            clock=clock,
        )  # fmt: skip
        return outbox, both
    if plant.uplink.format == "sparkplug":
        return outbox, sparkplug_uplink(outbox)
    uplink = Uplink(
        plant.uplink, broker, outbox, edge_id=plant.edge.id, snapshot_id=snap.short, clock=clock
    )
    return outbox, uplink


def sparkplug_metrics(plant: PlantConfig) -> list[SignalMetric]:
    """Each signal as a Sparkplug metric: a Modbus device's and an MQTT source's (named by its
    broker id) belong to that Sparkplug device, derived ones (models, drift) to the node.
    Waveform signals have no metric (Sparkplug datasets are not implemented); each rule's
    alarm is a node metric `Alarms/rule:ID`."""
    from floorconsole.adapters.sparkplug.uplink import ALARM_PREFIX, SignalMetric

    out = []
    for s in plant.signals:
        src = s.source
        if isinstance(src, ModbusPoint):
            bool_ = src.type == "bool" or src.table in ("co", "di")
            kind = DataType.Boolean if bool_ else DataType.Double
            out.append(SignalMetric(s.id, src.device, kind, s.unit))
        elif isinstance(src, MqttPoint):
            if src.kind != "waveform":
                out.append(SignalMetric(s.id, src.broker, DataType.Double, s.unit))
        else:
            out.append(SignalMetric(s.id, None, DataType.Double, s.unit))
    for rule in plant.rules:  # each rule's alarm: the state of its last transition
        if any(isinstance(a, AlarmAction) for a in rule.actions):
            out.append(SignalMetric(f"{ALARM_PREFIX}{rule.alarm_id}", None, DataType.String))
    return out


def _engine_metrics(engine: Engine) -> tuple[list[SignalMetric], list[str]]:
    """The running configuration's metrics and devices: its plant's signals and rule alarms,
    and the model outputs the engine derives (node metrics)."""
    from floorconsole.adapters.sparkplug.uplink import SignalMetric

    plant = engine.active.plant
    metrics = sparkplug_metrics(plant)
    known = {m.signal for m in metrics}
    metrics += [
        SignalMetric(s.id, None, DataType.Double, s.unit)
        for s in engine.derived
        if s.id not in known
    ]
    return metrics, [d.id for d in plant.devices]


def _watch_devices(uplink: SparkplugUplink, engine: Engine) -> None:
    """A Sparkplug device is alive while its link (Modbus device, MQTT source) is not down;
    the model outputs the engine derives are node metrics."""
    uplink.define_metrics(*_engine_metrics(engine))
    uplink.metrics_source = lambda: _engine_metrics(engine)  # again after each swap
    # A host's write is refused (none is allowed yet) and the refusal is in the audit trail.
    uplink.on_refused = lambda topic, why: engine.audit(
        REFUSED, "sparkplug-host", topic, {"action": "sparkplug command", "why": why}
    )
    uplink.watch_devices(
        lambda: {k: v.state is not LinkState.DOWN for k, v in list(engine.links.items())}
    )
    sp = uplink.config.sparkplug
    if sp is not None and sp.writable:  # the metrics a host may write: the console's path
        from floorconsole.engine.host_writes import host_principal, host_writer

        uplink.on_write = host_writer(engine, host_principal(sp.primary_host), sp.host_role)


def _fleet_link(plant: PlantConfig) -> FleetLink | None:
    """With an enabled [fleet]: the edge's link to the plant broker (status, rollouts)."""
    if plant.fleet is None or not plant.fleet.enabled:
        return None
    from floorconsole.adapters.fleet import FleetLink

    broker = next(b for b in plant.brokers if b.id == plant.fleet.broker)
    return FleetLink(broker, prefix=plant.fleet.topic_prefix, edge=plant.edge.id)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(text: str) -> str:
    return " ".join(text.split())
