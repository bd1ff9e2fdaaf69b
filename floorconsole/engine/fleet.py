"""The engine as a member of a fleet: its retained status on the plant broker (refreshed at a
bounded rate), its activation log, and rollout commands taken through its own health-checked
apply (engine/snapshots.py), each step audited. With [fleet] remote_apply = "confirm" a
verified change is held (one at a time, kept across restarts in DATA_DIR/fleet.json) until an
engineer at the console accepts it (commands fleet.accept / fleet.defer). The edge also keeps
its runs (start, last heartbeat, how each ended) so the fleet tool can tell the gaps when it
was not running. The protocol is core/fleet.py's; the broker client is adapters/fleet.py's
FleetLink."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

from floorconsole import __version__
from floorconsole.adapters.bundle_signing import (
    SignatureError,
    TrustedKey,
    load_trusted,
    verify_bundle,
)
from floorconsole.adapters.fleet import BundleTransferError, FleetLink, unpack_bundle
from floorconsole.adapters.snapshot_store import BundleError, SnapshotStoreError, read_bundle
from floorconsole.console import CommandError, CommandResult
from floorconsole.core.audit import REFUSED, SNAPSHOT_APPLY
from floorconsole.core.fleet import (
    ACTIVATIONS_KEPT,
    RUNS_KEPT,
    EngineRun,
    FleetConfig,
    PayloadError,
    PendingChange,
    RolloutCommand,
    RolloutResult,
    localize,
    parse_command,
)
from floorconsole.engine.snapshots import ApplyRefused

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Engine

log = logging.getLogger(__name__)

STATE_FILE = "fleet.json"
MIN_STATUS_GAP_S = 1.0  # the status is never published more often than this
HANDLED_KEPT = 200  # rollout ids remembered, so a retained command is not applied twice
BUNDLES_KEPT = 500  # local snapshot -> bundle ids remembered (the newest; bounded state file)
COMMAND_QUEUE = 8


class FleetAgent:
    """Runs on the engine's loop while the engine runs (start/stop from Engine.run)."""

    def __init__(self, engine: Engine, config: FleetConfig, link: FleetLink) -> None:
        self.engine = engine
        self.config = config
        self.link = link
        self.state_path = engine.data_dir / STATE_FILE
        self.handled: list[str] = []
        self.bundles: dict[str, str] = {}  # local snapshot id -> the fleet bundle's id
        self.commands_dropped = 0
        self.bad_commands = 0
        self.last_result: RolloutResult | None = None
        self.pending: PendingChange | None = None  # held for an engineer (remote_apply confirm)
        self.runs: list[EngineRun] = []  # earlier runs of this engine, oldest first
        self._run_start = engine.started_wall
        self._alive = engine.started_wall  # the last heartbeat of this run
        # the state file is written from worker threads (heartbeat, a held change, a bundle)
        self._state_lock = threading.Lock()
        self._load_state()
        self._queue: asyncio.Queue[bytes] | None = None
        self._poke: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_status = 0.0
        self._published_activations = -1

    # -- state kept across restarts -------------------------------------------------------

    def _load_state(self) -> None:
        try:
            doc = json.loads(self.state_path.read_text(encoding="utf-8"))
            self.handled = [str(x) for x in doc.get("handled", [])][-HANDLED_KEPT:]
            self.bundles = {str(k): str(v) for k, v in doc.get("bundles", {}).items()}
            if doc.get("pending"):
                self.pending = PendingChange.from_dict(doc["pending"])
            for r in doc.get("runs", []):
                self.runs.append(EngineRun(str(r[0]), float(r[1]), float(r[2]), str(r[3])))
            cur = doc.get("current")
            if cur:  # the run before this one: stopped cleanly, or lost at its last heartbeat
                how = "stopped" if cur.get("stopped") else "lost"
                self.runs.append(
                    EngineRun(str(cur["boot"]), float(cur["from"]), float(cur["alive"]), how)
                )
            self.runs = self.runs[-RUNS_KEPT:]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, KeyError, TypeError, IndexError) as e:
            log.error(
                "fleet: %s unreadable (%s); starting with no rollout remembered", self.state_path, e
            )

    def _save_state(self, *, stopped: bool = False) -> None:
        with self._state_lock:
            self._write_state(stopped)

    def _write_state(self, stopped: bool) -> None:
        doc = {
            "handled": self.handled[-HANDLED_KEPT:],
            "bundles": dict(self.bundles),
            "pending": None if self.pending is None else self.pending.as_dict(),
            "runs": [[r.boot, r.start, r.end, r.how] for r in self.runs[-RUNS_KEPT:]],
            "current": {
                "boot": self.engine.snapshots.store.boot,
                "from": self._run_start,
                "alive": self._alive,
                "stopped": stopped,
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.state_path)

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(COMMAND_QUEUE)
        self._poke = asyncio.Event()
        will = {**self._identity(), "state": "offline", "t": time.time(), "will": True}
        ok = self.link.start(will, on_command=self._from_broker, on_connected=self._connected)
        if ok:
            self._task = asyncio.create_task(self._run(), name="fleet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        goodbye = {**self._identity(), "state": "offline", "t": time.time()}
        loop = asyncio.get_running_loop()
        self._alive = goodbye["t"]
        try:
            await loop.run_in_executor(None, lambda: self._save_state(stopped=True))
        except OSError as e:
            log.error("fleet: %s not written at stop: %s", self.state_path, e)
        await loop.run_in_executor(None, lambda: self.link.stop(goodbye))

    def poke(self) -> None:
        """Publish the status soon (a change worth saying)."""
        if self._loop is not None and self._poke is not None:
            self._loop.call_soon_threadsafe(self._poke.set)

    def _connected(self) -> None:  # paho's thread
        self._published_activations = -1
        self.poke()

    def _from_broker(self, payload: bytes) -> None:  # paho's thread
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return

        def put() -> None:
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:
                # the command stays retained: it comes back at the next connect
                self.commands_dropped += 1
                log.warning("fleet: command queue full; a rollout command waits for a reconnect")

        loop.call_soon_threadsafe(put)

    async def _run(self) -> None:
        assert self._queue is not None and self._poke is not None
        commands = asyncio.create_task(self._commands())
        try:
            while True:
                try:
                    await asyncio.wait_for(self._poke.wait(), self.config.status_interval_s)
                except TimeoutError:
                    pass
                self._poke.clear()
                gap = MIN_STATUS_GAP_S - (time.monotonic() - self._last_status)
                if gap > 0:
                    await asyncio.sleep(gap)
                await self._publish()
        finally:
            commands.cancel()
            await asyncio.gather(commands, return_exceptions=True)

    async def _publish(self) -> None:
        loop = asyncio.get_running_loop()
        # the heartbeat is kept whether the broker hears it or not: the engine runs
        self._alive = time.time()
        try:
            await loop.run_in_executor(None, self._save_state)
        except OSError as e:
            log.error("fleet: %s not written: %s", self.state_path, e)
        if not self.link.connected:
            return
        try:
            status = await loop.run_in_executor(None, self._status)
            self.link.publish(self.link.status_topic, status)
            self.link.publish(
                self.link.alive_topic,
                {"t": status["t"], "boot_id": status["boot_id"]},
            )
            self._last_status = time.monotonic()
            rows = await loop.run_in_executor(None, self.engine.snapshots.store.activations)
            if len(rows) != self._published_activations:
                doc = {
                    "edge": self.link.edge,
                    "activations": [
                        {
                            "seq": a.seq,
                            "snapshot": a.snapshot,
                            "fleet_snapshot": self.bundles.get(a.snapshot, ""),
                            "at": a.activated_at,
                            "outcome": a.outcome.value,
                            "by": a.by,
                            "note": a.note,
                            "boot": a.boot,
                        }
                        for a in rows[-ACTIVATIONS_KEPT:]
                    ],
                    "runs": [r.as_dict() for r in self.runs[-RUNS_KEPT:]],
                }
                if self.link.publish(self.link.activations_topic, doc):
                    self._published_activations = len(rows)
        except Exception:  # noqa: BLE001 - the fleet's trouble never stops the engine
            log.exception("fleet: publishing the status failed")

    # -- what the edge says ---------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        e = self.engine
        return {
            "edge": self.link.edge,
            "site": e.plant.edge.site,
            "tags": list(e.plant.edge.tags),
            "boot": e.started_wall,
            "boot_id": e.snapshots.store.boot,
            "version": __version__,
            "every": self.config.status_interval_s,
        }

    def _status(self) -> dict[str, Any]:
        """The status as it is now (on a worker thread: it builds a console frame)."""
        e = self.engine
        alarms: dict[str, int] = {}
        for a in list(e.alarms.alarms.values()):
            if a.unacknowledged:
                alarms[a.priority] = alarms.get(a.priority, 0) + 1
        models = {m.id: m.word for m in e.api.frame().models}
        active = e.snapshots.active.id
        return {
            **self._identity(),
            "state": "online",
            "t": time.time(),
            "snapshot": active,
            "fleet_snapshot": self.bundles.get(active, ""),
            "backlog_rows": e.outbox.rows if e.outbox is not None else 0,
            "alarms": alarms,
            "models": models,
            "last_rollout": None if self.last_result is None else self.last_result.as_dict(),
            "remote_apply": self.config.remote_apply,
            "pending": None if self.pending is None else self.pending.as_dict(),
        }

    # -- rollout commands -----------------------------------------------------------------

    async def _commands(self) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            try:
                await self._command(payload)
            except Exception:  # noqa: BLE001 - one bad command never stops the engine
                log.exception("fleet: a rollout command failed")

    async def _command(self, payload: bytes) -> None:
        try:
            cmd = parse_command(self.link.edge, payload)
        except PayloadError as e:
            self.bad_commands += 1
            log.warning("fleet: %s (%d refused so far)", e, self.bad_commands)
            return
        if cmd.rollout in self.handled:
            return  # seen before: the retained command again after a reconnect
        by = f"fleet:{cmd.by or 'unknown'}"
        self._audit(SNAPSHOT_APPLY, by, cmd, {"phase": "received", "action": cmd.action})
        await self._result(cmd, "received", True, "taken; verifying")
        if cmd.action == "apply":
            await self._apply(cmd, by)
        else:
            await self._rollback(cmd, by)
        self.handled.append(cmd.rollout)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._save_state)
        self.poke()

    def _trusted(self) -> dict[str, TrustedKey]:
        folder = self.config.trusted_keys
        if folder is None or not folder.is_dir():
            return {}
        paths = sorted(p for p in folder.iterdir() if p.suffix in (".pub", ".pem"))
        return load_trusted(paths)

    async def _apply(self, cmd: RolloutCommand, by: str) -> None:
        loop = asyncio.get_running_loop()
        inbox = self.engine.data_dir / "fleet-inbox" / _safe(cmd.rollout)
        e = self.engine

        def receive() -> tuple[str, str, Any]:
            unpack_bundle(cmd.files, inbox)
            try:
                check = verify_bundle(inbox, self._trusted())
            except SignatureError:
                raise
            except BundleError as err:  # a file unlike the signed manifest says
                raise BundleError(f"changed after signing: {err}") from None
            config, files, meta = read_bundle(inbox)
            local = localize(config, e.snapshots.active.config)
            snap = e.snapshots.store.put(
                local,
                files,
                author=meta["author"],
                message=f"fleet rollout {cmd.rollout} of bundle {meta['id'][:12]}: "
                f"{meta['message']}",
                parent=e.snapshots.active.id,
            )
            with self._state_lock:
                self.bundles.pop(snap.id, None)  # newest last
                self.bundles[snap.id] = meta["id"]
                for old in list(self.bundles)[:-BUNDLES_KEPT]:
                    del self.bundles[old]
            return snap.id, meta["id"], check

        try:
            local_id, bundle_id, check = await loop.run_in_executor(None, receive)
        except (BundleError, BundleTransferError, SnapshotStoreError, OSError) as err:
            why = str(err)
            log.warning("fleet: rollout %s refused: %s", cmd.rollout, why)
            self._audit(REFUSED, by, cmd, {"phase": "verify", "why": why})
            await self._result(cmd, "refused", False, why)
            return
        finally:
            shutil.rmtree(inbox, ignore_errors=True)
        self._audit(
            SNAPSHOT_APPLY,
            by,
            cmd,
            {
                "phase": "verified",
                "bundle": bundle_id,
                "snapshot": local_id,
                "key": check.key_id,
                "signer": check.signer,
            },
        )
        if local_id == e.snapshots.active.id:
            await self._result(cmd, "unchanged", True, "already running this snapshot")
            return
        if self.config.remote_apply == "confirm":
            await self._hold(cmd, local_id, bundle_id)
            return
        await self._activate(cmd, by, local_id)

    async def _rollback(self, cmd: RolloutCommand, by: str) -> None:
        try:
            snap = self.engine.snapshots.store.get(cmd.snapshot)
        except SnapshotStoreError as err:
            self._audit(REFUSED, by, cmd, {"phase": "rollback", "why": str(err)})
            await self._result(cmd, "refused", False, str(err))
            return
        if snap.id == self.engine.snapshots.active.id:
            if self.pending is not None:  # back to what runs: the held change is not wanted
                await self._drop_pending(by, f"superseded by {cmd.rollout}")
            await self._result(cmd, "unchanged", True, "already running this snapshot")
            return
        if self.config.remote_apply == "confirm":
            await self._hold(cmd, snap.id, "")
            return
        await self._activate(cmd, by, snap.id)

    async def _activate(self, cmd: RolloutCommand, by: str, snapshot: str) -> CommandResult:
        try:
            r = await self.engine.snapshots.rollback(snapshot, user=by, outcome="applied")
        except (ApplyRefused, SnapshotStoreError) as err:
            self._audit(REFUSED, by, cmd, {"phase": "apply", "why": str(err)})
            await self._result(cmd, "failed", False, f"refused, nothing changed: {err}")
            return {"ok": False, "message": f"refused, nothing changed: {err}"}
        state = "applied" if r.ok else "rolled-back"
        self._audit(SNAPSHOT_APPLY, by, cmd, {"phase": state, "message": r.message})
        await self._result(cmd, state, r.ok, r.message)
        return {
            "ok": r.ok,
            "message": r.message,
            "snapshot": self.engine.snapshots.active.id,
        }

    # -- remote_apply = "confirm": held for an engineer at the edge -------------------------

    async def _hold(self, cmd: RolloutCommand, snapshot: str, bundle: str) -> None:
        by = f"fleet:{cmd.by or 'unknown'}"
        if self.pending is not None:
            await self._drop_pending(by, f"superseded by {cmd.rollout}")
        self.pending = PendingChange(
            rollout=cmd.rollout,
            action=cmd.action,
            snapshot=snapshot,
            by=cmd.by,
            t=time.time(),
            bundle=bundle,
        )
        await self._persist()
        self._audit(
            SNAPSHOT_APPLY, by, cmd, {"phase": "pending", "snapshot": snapshot, "bundle": bundle}
        )
        log.warning(
            "fleet: rollout %s from %s waits for an engineer here (remote_apply confirm)",
            cmd.rollout,
            cmd.by or "?",
        )
        await self._result(
            cmd, "pending", False, "verified; waits for an engineer at the edge to accept it"
        )

    async def _drop_pending(self, by: str, why: str) -> None:
        old, self.pending = self.pending, None
        if old is None:
            return
        await self._persist()
        self.engine.audit_safe(
            SNAPSHOT_APPLY,
            by,
            f"fleet rollout {old.rollout}",
            {"rollout": old.rollout, "phase": "superseded", "why": why},
        )

    async def _persist(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._save_state)

    def _held(self, rollout: str) -> PendingChange:
        p = self.pending
        if p is None:
            raise CommandError("no remote change waits on this edge")
        if rollout and rollout != p.rollout:
            raise CommandError(f"rollout {rollout!r} does not wait here; {p.rollout} does")
        return p

    async def accept(self, rollout: str, user: str) -> CommandResult:
        """The held change, accepted by an engineer here: the same health-checked apply as
        with remote_apply "auto", in this engineer's name."""
        p = self._held(rollout)
        self.pending = None
        await self._persist()
        cmd = RolloutCommand(p.rollout, p.action, snapshot=p.snapshot, by=p.by, t=p.t)
        self._audit(SNAPSHOT_APPLY, user, cmd, {"phase": "accepted", "fleet_by": p.by})
        if p.snapshot == self.engine.snapshots.active.id:
            await self._result(cmd, "unchanged", True, "already running this snapshot")
            return {"ok": True, "message": f"rollout {p.rollout}: already running its snapshot"}
        result = await self._activate(cmd, user, p.snapshot)
        self.poke()
        return result

    async def defer(self, rollout: str, user: str, reason: str) -> CommandResult:
        """The held change, put off by an engineer here: it stays held (accept it later, or a
        newer rollout supersedes it) and the fleet tool is told who and why."""
        p = self._held(rollout)
        why = str(reason).strip() or "no reason given"
        self.pending = PendingChange(
            **{**p.as_dict(), "deferred_by": user, "deferred_why": why, "deferred_t": time.time()}
        )
        await self._persist()
        cmd = RolloutCommand(p.rollout, p.action, snapshot=p.snapshot, by=p.by, t=p.t)
        self._audit(SNAPSHOT_APPLY, user, cmd, {"phase": "deferred", "why": why})
        await self._result(cmd, "deferred", False, f"deferred by {user}: {why}")
        return {"ok": True, "message": f"rollout {p.rollout} deferred: {why}"}

    async def _result(self, cmd: RolloutCommand, state: str, ok: bool, message: str) -> None:
        active = self.engine.snapshots.active.id
        r = RolloutResult(
            rollout=cmd.rollout,
            edge=self.link.edge,
            state=state,
            ok=ok,
            snapshot=active,
            fleet_snapshot=self.bundles.get(active, ""),
            message=message,
            t=time.time(),
        )
        if state != "received":
            self.last_result = r
        self.link.publish(self.link.result_topic, r.as_dict())
        if state != "received":
            self.poke()

    def _audit(self, kind: str, by: str, cmd: RolloutCommand, detail: dict[str, Any]) -> None:
        self.engine.audit_safe(
            kind, by, f"fleet rollout {cmd.rollout}", {"rollout": cmd.rollout, **detail}
        )


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:64] or "x"
