"""The start-up choice between the plant file and the active snapshot (engine side).

The `floorconsole snapshot ...` commands live in floorconsole.cli.snapshot; only what the
engine needs at start-up stays here, so the engine imports nothing from the command line.
The module keeps its old name until the composition root takes the start-up choice over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from floorconsole.adapters.snapshot_store import SnapshotStore, SnapshotStoreError
from floorconsole.core.snapshot import Snapshot


class StartupError(ValueError):
    """The snapshot to start with cannot be chosen; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class StartupPlan:
    """What `run -c PLANT.toml` should start with."""

    snapshot: Snapshot
    imported: bool  # the plant file's content was new and became a snapshot
    note: str | None  # why the plant file was not used, for the log and the console
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


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(text: str) -> str:
    return " ".join(text.split())
