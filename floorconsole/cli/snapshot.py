"""`floorconsole snapshot list|show|diff|export|import|at` as functions returning text; no
Textual, no argparse. (The start-up choice between the plant file and the active snapshot is
the engine's: floorconsole.engine.bootstrap.)"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from floorconsole.adapters.snapshot_store import (
    BUNDLE_PLANT,
    DB_NAME,
    SnapshotStore,
    SnapshotStoreError,
)
from floorconsole.core import toml_write
from floorconsole.core.snapshot import Running, Snapshot, plant_order
from floorconsole.core.units import parse_duration


class SnapshotCommandError(ValueError):
    """A snapshot command that cannot be done; the message is one line for the user."""


def open_store(data_dir: str | Path, *, create: bool = False) -> SnapshotStore:
    """The store of a data directory. Without create, a directory that has none is an error
    (a typo in --data-dir must not leave an empty database behind)."""
    path = Path(data_dir) / DB_NAME
    if not create and not path.exists():
        raise SnapshotCommandError(
            f"no snapshot store at {path}: has an engine run with this data directory?"
        )
    try:
        return SnapshotStore(path)
    except SnapshotStoreError as e:
        raise SnapshotCommandError(str(e)) from None
    except OSError as e:
        raise SnapshotCommandError(f"cannot open {path}: {e.strerror}") from None


def snapshot_list(data_dir: str | Path) -> str:
    """Every snapshot, oldest first: short id, created (UTC), author, message; * marks the
    active one."""
    with open_store(data_dir) as store:
        snaps = store.list()
        active = store.active()
    if not snaps:
        return f"no snapshots yet in {Path(data_dir) / DB_NAME}"
    author_w = min(max(len("AUTHOR"), *(len(s.author) for s in snaps)), 16)
    lines = [f"  {'ID':<12}  {'CREATED (UTC)':<19}  {'AUTHOR':<{author_w}}  MESSAGE"]
    for s in snaps:
        mark = "*" if active is not None and s.id == active.snapshot else " "
        lines.append(
            f"{mark} {s.short}  {_when(s.created)}  {s.author[:author_w]:<{author_w}}  "
            f"{_one_line(s.message)}"
        )
    if active is not None:
        lines.append(f"* active since {_when(active.since)} UTC ({_cause(active)})")
    else:
        lines.append("no snapshot has been activated yet")
    return "\n".join(lines)


def snapshot_show(data_dir: str | Path, ref: str) -> str:
    """One snapshot: who, when, why, its models, and its configuration as a plant file (model
    packages shown by the sha256 of their files)."""
    with open_store(data_dir) as store:
        snap = _get(store, ref)
        active = store.active()
        sidecars = {mid: store.blob(r.json_sha) for mid, r in snap.models.items()}
    lines = [
        f"snapshot {snap.id}",
        f"parent   {snap.parent or '(none)'}",
        f"author   {snap.author}",
        f"created  {_when(snap.created)} UTC",
        f"message  {_one_line(snap.message)}",
    ]
    if active is not None and active.snapshot == snap.id:
        lines.append(f"active   yes, since {_when(active.since)} UTC")
    for mid, r in snap.models.items():
        lines.append(
            f"model    {mid}: onnx {r.onnx_sha[:12]}, sidecar {r.json_sha[:12]}"
            f"{_sidecar_version(sidecars.get(mid))}"
        )
    lines.append("")
    lines.append(toml_write.dumps(plant_order(snap.config)).rstrip("\n"))
    return "\n".join(lines)


def snapshot_diff(data_dir: str | Path, old: str, new: str) -> str:
    """What changed from snapshot old to snapshot new, one line per rule, device, signal,
    model... in plant words."""
    with open_store(data_dir) as store:
        a, b = _get(store, old), _get(store, new)
        diff = store.diff(a.id, b.id)
    head = f"{a.short} ({_one_line(a.message)}) → {b.short} ({_one_line(b.message)})"
    return "\n".join([head, *diff.lines()])


def snapshot_export(data_dir: str | Path, ref: str, dest: str | Path) -> str:
    """Write a snapshot as a bundle (plant file, model packages, manifest) into dest."""
    with open_store(data_dir) as store:
        snap = _get(store, ref)
        try:
            plant = store.export_bundle(snap.id, dest)
        except SnapshotStoreError as e:
            raise SnapshotCommandError(str(e)) from None
        except OSError as e:
            raise SnapshotCommandError(f"cannot write to {dest}: {e.strerror}") from None
    return (
        f"exported snapshot {snap.short} to {plant} with {2 * len(snap.models)} model "
        f"file(s) and {Path(dest) / 'manifest.json'}; run it with "
        f"`floorconsole run -c {plant}`"
    )


def snapshot_import(data_dir: str | Path, src: str | Path) -> str:
    """Store the snapshot of a bundle, refusing one that is tampered with or incomplete."""
    with open_store(data_dir, create=True) as store:
        try:
            result = store.import_bundle(src)
        except SnapshotStoreError as e:
            raise SnapshotCommandError(str(e)) from None
    s = result.snapshot
    if not result.new:
        return f"snapshot {s.short} is already stored ({s.author}: {_one_line(s.message)})"
    return (
        f"imported snapshot {s.short} from {Path(src) / BUNDLE_PLANT} ({s.author}, "
        f"{_when(s.created)} UTC: {_one_line(s.message)}); "
        f"`floorconsole snapshot rollback {s.short}` activates it"
    )


def snapshot_at(data_dir: str | Path, when: str, *, now: float | None = None) -> str:
    """Which snapshot ran at a past time: an ISO time (UTC unless it says otherwise) or a
    duration back from now (10m, 2h, 1d)."""
    now = time.time() if now is None else now
    t = parse_when(when, now)
    if t > now:
        raise SnapshotCommandError(f"{when!r} is in the future ({_when(t)} UTC)")
    with open_store(data_dir) as store:
        log = store.activations()
        r = store.at(t)
        snap = store.get(r.snapshot) if r is not None else None
    if r is None or snap is None:
        if not log:
            return f"nothing ran at {_when(t)} UTC: no snapshot has been activated on this box"
        return (
            f"nothing ran at {_when(t)} UTC: the first activation was at "
            f"{_when(log[0].activated_at)} UTC"
        )
    return (
        f"at {_when(t)} UTC snapshot {snap.short} ran ({snap.author}: "
        f"{_one_line(snap.message)}), active since {_when(r.since)} UTC ({_cause(r)})"
    )


def request_rollback(data_dir: str | Path, ref: str) -> Snapshot:
    """The snapshot a rollback should activate, checked: it exists, it is not the one running
    and every model file it needs is in the store. Applying it is the engine's job."""
    with open_store(data_dir) as store:
        snap = _get(store, ref)
        try:
            store.model_files(snap)
        except SnapshotStoreError as e:
            raise SnapshotCommandError(str(e)) from None
        active = store.active()
    if active is not None and active.snapshot == snap.id:
        raise SnapshotCommandError(f"snapshot {snap.short} is already the active one")
    return snap


def parse_when(text: str, now: float) -> float:
    """'10m' (back from now) or an ISO 8601 time (UTC unless it has an offset) -> epoch s."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SnapshotCommandError(
            f"{text!r} is neither a duration back from now (10m, 2h, 1d) "
            "nor an ISO time (2026-11-23T14:00:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _get(store: SnapshotStore, ref: str) -> Snapshot:
    try:
        if ref.strip().lower() == "active":
            snap = store.active_snapshot()
            if snap is None:
                raise SnapshotCommandError("no snapshot has been activated yet")
            return snap
        return store.get(ref)
    except SnapshotStoreError as e:
        raise SnapshotCommandError(str(e)) from None


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cause(r: Running) -> str:
    a = r.activation
    text = f"{a.outcome.value} by {a.by}, boot {a.boot[:8]}"
    if a.snapshot != r.snapshot:
        text += f"; snapshot {a.snapshot[:12]} failed its health check"
    if a.note:
        text += f": {_one_line(a.note)}"
    if r.last.seq != a.seq:
        text += f"; {r.last.outcome.value} {_when(r.last.activated_at)} UTC"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sidecar_version(sidecar: bytes | None) -> str:
    try:
        doc = json.loads(sidecar or b"")
    except ValueError:
        return ""
    if isinstance(doc, dict) and isinstance(doc.get("version"), str):
        name = doc.get("name") if isinstance(doc.get("name"), str) else ""
        return f" ({name} {doc['version']})".replace("( ", "(")
    return ""
