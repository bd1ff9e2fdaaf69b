"""Applying a configuration and rolling back: validate, build beside the running one, swap at
a tick boundary, health-check, and come back by itself when the check fails."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floorconsole.adapters.snapshot_store import SnapshotStore, SnapshotStoreError
from floorconsole.core.audit import SNAPSHOT_APPLY, SNAPSHOT_ROLLBACK
from floorconsole.core.config import PlantConfig, PlantError, validate_plant
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.snapshot import Snapshot, SnapshotError, diff_snapshots, read_model_files

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Configuration, Engine

log = logging.getLogger(__name__)

HEALTH_WINDOW_S = 10.0  # a new configuration has this long to prove itself
HEALTH_POLL_S = 0.02


class ApplyRefused(Exception):
    """A configuration refused before the swap: nothing changed."""


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    message: str
    snapshot: str  # the snapshot running afterwards
    seconds: float
    health: str  # "ok", or why it failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "snapshot": self.snapshot,
            "seconds": round(self.seconds, 3),
            "health": self.health,
        }


def health_problems(cfg: Configuration, since_wall: float) -> list[str]:
    """What keeps a configuration from being healthy now; empty when it is."""
    problems = []
    for ln in cfg.links.values():
        if ln.state.value != "up":
            problems.append(
                f"{ln.kind} {ln.id} is {ln.state.value}"
                f"{': ' + ln.last_error if ln.last_error else ''}"
            )
    for r in cfg.models.values():
        if r.model is None:
            problems.append(f"model {r.cfg.id} did not load: {r.last_load_error}")
            continue
        if r.package_problem:
            problems.append(f"model {r.cfg.id} runs a stored copy: {r.package_problem}")
            continue
        s = cfg.hub.latest.get(r.score_id)
        if s is None or s.reason is Reason.INITIAL:
            problems.append(f"model {r.cfg.id} has not scored yet")
        elif s.reason is Reason.OUT_OF_SERVICE:
            en = cfg.hub.latest.get(r.cfg.enable) if r.cfg.enable else None
            if en is not None and en.quality is Quality.GOOD and en.value:
                problems.append(f"model {r.cfg.id} is settling: {s.detail}")
            # else: told not to score because its machine is stopped: healthy
        elif s.quality is not Quality.GOOD or s.value is None or not math.isfinite(float(s.value)):
            problems.append(f"model {r.cfg.id} output is {s.quality.name}: {s.detail}")
    for rec in cfg.control.recent:
        if rec.action == "write" and not rec.ok and rec.t_wall >= since_wall:
            problems.append(f"write {rec.target} failed: {rec.text}")
    return problems


class SnapshotManager:
    """The engine's side of snapshots: the store, the active one, apply and rollback."""

    def __init__(
        self,
        engine: Engine,
        store: SnapshotStore,
        active: Snapshot,
        *,
        base_dir: Path,
        health_window_s: float = HEALTH_WINDOW_S,
        start_note: str = "",
    ) -> None:
        self.engine = engine
        self.store = store
        self.active = active
        self.base_dir = base_dir
        self.health_window_s = health_window_s
        self.models_dir = engine.data_dir / "models"
        self._busy = asyncio.Lock()
        self.last_result: ApplyResult | None = None
        self.start_note = start_note  # why this snapshot and not the plant file's, if they differ

    # -- building -------------------------------------------------------------------------

    def build(self, plant: PlantConfig, snap: Snapshot) -> Configuration:
        cfg = self.engine.build(plant, snap.short)
        # A new package that cannot be used is refused here, where someone is applying it;
        # the stored copies are for starting unattended, not for changes.
        failed = [
            f"model {r.cfg.id}: {r.package_problem or r.last_load_error}"
            for r in cfg.models.values()
            if r.model is None or r.package_problem
        ]
        if failed:
            raise ApplyRefused("; ".join(failed))
        return cfg

    async def started(self) -> None:
        """At engine start: record that the active snapshot runs, then whether it is healthy.
        A configuration that was healthy before but is not now (a device down at start) is
        reported, not rolled back: there is nothing better to go back to."""
        loop = asyncio.get_running_loop()
        snap = self.active
        since = time.time()
        async with self._busy:  # an apply waits until the start-up check is known
            await loop.run_in_executor(
                None,
                lambda: self.store.record_activation(
                    snap.id, "applied", by="engine start", note=self.start_note
                ),
            )
            problems = await self.health_check(self.engine.active, since)
            if not problems:
                await loop.run_in_executor(
                    None,
                    lambda: self.store.record_activation(snap.id, "health-ok", by="engine start"),
                )
        if problems:
            log.warning(
                "snapshot %s at start: not healthy yet (%s)", snap.short, "; ".join(problems[:3])
            )

    # -- commands -------------------------------------------------------------------------

    async def apply(self, config: dict[str, Any], *, user: str, message: str) -> ApplyResult:
        """A new snapshot from an edited configuration, applied and health-checked."""
        if not message.strip():
            raise ApplyRefused("a change needs a message saying why")
        loop = asyncio.get_running_loop()
        async with self._busy:
            t0 = time.monotonic()

            def store_and_validate() -> tuple[Snapshot, PlantConfig]:
                # A model given as a path (a new package) is read and stored with the
                # snapshot; one given as a ref is already in the store. A configuration
                # refused below stays in the store, never activated: a record of the try.
                files = read_model_files(config, self.base_dir)
                snap = self.store.put(
                    config, files, author=user, message=message, parent=self.active.id
                )
                raw = self.store.materialize(snap.id, self.models_dir)
                return snap, validate_plant(
                    raw, source=f"snapshot {snap.short}", base_dir=self.base_dir
                )

            try:
                snap, plant = await loop.run_in_executor(None, store_and_validate)
            except PlantError as e:
                raise ApplyRefused("; ".join(str(p) for p in e.problems[:5])) from None
            except (SnapshotError, SnapshotStoreError) as e:
                raise ApplyRefused(str(e)) from None
            if snap.id == self.active.id:
                raise ApplyRefused("nothing changed: this is the running configuration")
            cfg = self.build(plant, snap)
            return await self._switch(cfg, snap, user=user, outcome="applied", t0=t0)

    async def rollback(self, ref: str, *, user: str, outcome: str = "rolled-back") -> ApplyResult:
        """An earlier snapshot, model included, back in force. outcome "applied": a stored
        snapshot that never ran here (one a fleet rollout brought), health-checked alike."""
        loop = asyncio.get_running_loop()
        async with self._busy:
            t0 = time.monotonic()
            snap = await loop.run_in_executor(None, self.store.get, ref)
            try:
                plant = await loop.run_in_executor(
                    None,
                    lambda: validate_plant(
                        self.store.materialize(snap.id, self.models_dir),
                        source=f"snapshot {snap.short}",
                        base_dir=self.base_dir,
                    ),
                )
            except PlantError as e:
                raise ApplyRefused("; ".join(str(p) for p in e.problems[:5])) from None
            cfg = self.build(plant, snap)
            return await self._switch(cfg, snap, user=user, outcome=outcome, t0=t0)

    def _audit_changes(self, old: Snapshot, new: Snapshot, user: str, outcome: str) -> None:
        """The activation in the audit trail (under the snapshot's short id, as everywhere
        else), then its rule and model changes in plant words, per item."""
        self.engine.audit_safe(
            SNAPSHOT_ROLLBACK if outcome == "rolled-back" else SNAPSHOT_APPLY,
            user,
            new.short,
            {"phase": "activated", "outcome": outcome, "from": old.short, "to": new.short},
        )
        for change in diff_snapshots(old, new).changes:
            kind = {"rules": "rule_change", "models": "model_change"}.get(change.section)
            if kind is not None:
                self.engine.audit_safe(
                    kind,
                    user,
                    change.label,
                    {"change": change.text(), "from": old.short, "to": new.short},
                )

    async def _switch(
        self, cfg: Configuration, snap: Snapshot, *, user: str, outcome: str, t0: float
    ) -> ApplyResult:
        loop = asyncio.get_running_loop()
        prev, prev_snap = self.engine.active, self.active
        since = time.time()
        await self.engine.swap(cfg, carry_values=True)
        self.active = snap
        await loop.run_in_executor(
            None, lambda: self._audit_changes(prev_snap, snap, user, outcome)
        )
        await loop.run_in_executor(
            None, lambda: self.store.record_activation(snap.id, outcome, by=user)
        )
        problems = await self.health_check(cfg, since)
        if not problems:
            await loop.run_in_executor(
                None, lambda: self.store.record_activation(snap.id, "health-ok", by="engine")
            )
            result = ApplyResult(
                True,
                f"snapshot {snap.short} active and healthy ({time.monotonic() - t0:.2f} s)",
                snap.id,
                time.monotonic() - t0,
                "ok",
            )
            self.last_result = result
            self.engine.alarms.clear_system("config_rolled_back", snap.short)
            log.info("snapshot %s %s by %s: healthy", snap.short, outcome, user)
            return result
        why = "; ".join(problems[:3])
        log.warning(
            "snapshot %s failed its health check (%s): rolling back to %s",
            snap.short,
            why,
            prev_snap.short,
        )
        back = self.engine.build(prev.plant, prev_snap.short)
        await self.engine.swap(back, carry_values=True)
        self.active = prev_snap
        await loop.run_in_executor(
            None,
            lambda: self.store.record_activation(
                snap.id, "health-failed-rolled-back", by="engine", note=why
            ),
        )
        await loop.run_in_executor(
            None,
            lambda: self.store.record_activation(
                prev_snap.id, "rolled-back", by="engine", note=f"{snap.short} failed: {why}"
            ),
        )
        self.engine.alarms.raise_system("config_rolled_back", snap.short, why)
        await loop.run_in_executor(
            None,
            lambda: self.engine.audit_safe(
                "snapshot_rollback",
                "engine",
                prev_snap.short,
                {
                    "phase": "automatic",
                    "failed": snap.short,
                    "back_to": prev_snap.short,
                    "why": why,
                },
            ),
        )
        result = ApplyResult(
            False,
            f"snapshot {snap.short} failed its health check ({why}); {prev_snap.short} is back",
            prev_snap.id,
            time.monotonic() - t0,
            why,
        )
        self.last_result = result
        return result

    async def health_check(self, cfg: Configuration, since_wall: float) -> list[str]:
        """Poll until healthy or the window ends; the problems at the end (empty: healthy)."""
        deadline = time.monotonic() + self.health_window_s
        problems = health_problems(cfg, since_wall)
        while problems and time.monotonic() < deadline:
            await asyncio.sleep(HEALTH_POLL_S)
            problems = health_problems(cfg, since_wall)
        return problems
