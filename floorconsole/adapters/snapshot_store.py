"""The snapshot store: snapshots, model file blobs and the activation log in DATA_DIR/snapshots.db.

Configuration changes are rare and must survive a power cut, so this database runs WAL with
synchronous=FULL (every commit is on disk when COMMIT returns), unlike the historian. A put
(blobs + snapshot row) and an activation are one transaction each: a process killed at any
point leaves the old state or the new one, never a snapshot without its model files. The
activation log is append-only, enforced by triggers.

Bundles (`snapshot export` / `snapshot import`) are a folder holding plant.toml, the model
packages under models/<model id>/ and manifest.json with the snapshot's id, parent, author,
message, created and the sha256 of every file.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from floorconsole.adapters.sqlite_file import Schema, SqliteFile, open_store
from floorconsole.core import toml_write
from floorconsole.core.clock import Clock, SystemClock
from floorconsole.core.model_package import package_paths
from floorconsole.core.snapshot import (
    Activation,
    ModelFiles,
    ModelRef,
    Outcome,
    Running,
    Snapshot,
    SnapshotDiff,
    SnapshotError,
    blobs_of,
    canonical_config,
    diff_snapshots,
    make_snapshot,
    plant_order,
    read_model_files,
    running,
    safe_name,
    sha256_hex,
    snapshot_from_canonical,
    with_packages,
)
from floorconsole.core.snapshot import model_file_stem as _stem

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_NAME = "snapshots.db"
BUNDLE_FORMAT = "floorconsole-bundle/1"
BUNDLE_PLANT = "plant.toml"
BUNDLE_MANIFEST = "manifest.json"
_BUSY_TIMEOUT_S = 5.0
_MIN_PREFIX = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id        TEXT PRIMARY KEY,    -- sha256 of canonical
    parent    TEXT,                -- may name a snapshot this store never saw (an imported bundle)
    author    TEXT NOT NULL,
    message   TEXT NOT NULL,
    created   REAL NOT NULL,       -- wall time, UTC epoch seconds
    canonical TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,       -- of data
    size   INTEGER NOT NULL,
    data   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshot     TEXT NOT NULL REFERENCES snapshots (id),
    activated_at REAL NOT NULL,    -- wall time, UTC epoch seconds
    boot         TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN
                   ('applied', 'health-ok', 'health-failed-rolled-back', 'rolled-back')),
    actor        TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER IF NOT EXISTS activations_no_update BEFORE UPDATE ON activations
BEGIN SELECT RAISE(ABORT, 'the activation log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS activations_no_delete BEFORE DELETE ON activations
BEGIN SELECT RAISE(ABORT, 'the activation log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS snapshots_no_update BEFORE UPDATE ON snapshots
BEGIN SELECT RAISE(ABORT, 'a snapshot never changes; make a new one'); END;
CREATE TRIGGER IF NOT EXISTS blobs_no_update BEFORE UPDATE ON blobs
BEGIN SELECT RAISE(ABORT, 'a blob is stored by its sha256 and never changes'); END;
"""
_SCHEMA = Schema("snapshot database", SCHEMA_VERSION, SCHEMA)


class SnapshotStoreError(ValueError):
    """A request the store cannot satisfy; the message is one line a user can act on."""


class UnknownSnapshot(SnapshotStoreError):
    pass


class AmbiguousSnapshot(SnapshotStoreError):
    pass


class BundleError(SnapshotStoreError):
    """A bundle refused on import: tampered with or incomplete. Names the file."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    snapshot: Snapshot
    new: bool  # False: the store already had this content (the stored snapshot is returned)


# Parent of import_plant_file when none is given: the snapshot active at the time.
ACTIVE = "active"


class SnapshotStore(SqliteFile):
    """One SQLite file; safe to share between threads (one connection behind a lock). Several
    processes (the engine and a CLI command) may open it at once."""

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, boot: str | None = None
    ) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self.boot = boot or uuid.uuid4().hex
        self._lock = threading.RLock()
        self._conn = open_store(
            self.path,
            _SCHEMA,
            error=SnapshotStoreError,
            timeout_s=_BUSY_TIMEOUT_S,
            foreign_keys=True,
        )

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, **kwargs: Any) -> SnapshotStore:
        return cls(Path(data_dir) / DB_NAME, **kwargs)

    # --- snapshots ------------------------------------------------------------------------------

    def put(
        self,
        config: Mapping[str, Any],
        model_files: Mapping[str, ModelFiles] | None = None,
        *,
        author: str,
        message: str,
        parent: str | None = None,
        created: float | None = None,
    ) -> Snapshot:
        """Store a configuration and its model files as a snapshot; return it.

        Idempotent: content already stored returns the stored snapshot (its first author,
        message and time) and adds no row. Models without files must carry package refs whose
        blobs are already stored (a config taken from a snapshot and edited)."""
        return self._put(
            config, model_files, author=author, message=message, parent=parent, created=created
        ).snapshot

    def _put(
        self,
        config: Mapping[str, Any],
        model_files: Mapping[str, ModelFiles] | None,
        *,
        author: str,
        message: str,
        parent: str | None,
        created: float | None,
    ) -> ImportResult:
        try:
            snap = make_snapshot(
                config,
                model_files,
                parent=parent,
                author=author,
                message=message,
                created=self.clock.wall() if created is None else created,
            )
        except SnapshotError as e:
            raise SnapshotStoreError(str(e)) from None
        blobs = blobs_of(model_files or {})
        with self._tx() as c:
            row = c.execute(f"SELECT {_COLS} FROM snapshots WHERE id = ?", (snap.id,)).fetchone()
            if row is not None:
                return ImportResult(_snapshot(row), new=False)
            for mid, ref in snap.models.items():
                for sha, kind in ((ref.onnx_sha, "onnx"), (ref.json_sha, "sidecar")):
                    if sha in blobs:
                        c.execute(
                            "INSERT OR IGNORE INTO blobs (sha256, size, data) VALUES (?, ?, ?)",
                            (sha, len(blobs[sha]), blobs[sha]),
                        )
                    elif not c.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone():
                        raise SnapshotStoreError(
                            f"model {mid}: its {kind} file (sha256 {sha[:12]}) is not in the "
                            "store; give the model's files"
                        )
            c.execute(
                "INSERT INTO snapshots (id, parent, author, message, created, canonical) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (snap.id, snap.parent, snap.author, snap.message, snap.created, snap.canonical),
            )
        return ImportResult(snap, new=True)

    def get(self, ref: str) -> Snapshot:
        """A snapshot by id or unique prefix (at least 4 hex digits)."""
        return _snapshot(self._row(ref))

    def resolve(self, ref: str) -> str:
        """The full id of a snapshot given by id or unique prefix."""
        return str(self._row(ref)[0])

    def _row(self, ref: str) -> tuple[Any, ...]:
        text = ref.strip().lower() if isinstance(ref, str) else ""
        if not text or any(ch not in "0123456789abcdef" for ch in text) or len(text) > 64:
            raise UnknownSnapshot(
                f"{ref!r} is not a snapshot id (hex digits, as `snapshot list` shows them)"
            )
        if len(text) < _MIN_PREFIX:
            raise AmbiguousSnapshot(
                f"{ref!r} is too short; give at least {_MIN_PREFIX} hex digits of a snapshot id"
            )
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLS} FROM snapshots WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 6",
                (len(text), text),
            ).fetchall()
        if not rows:
            raise UnknownSnapshot(f"no snapshot {text} in {self.path} (`snapshot list` shows them)")
        if len(rows) > 1:
            shown = ", ".join(r[0][:12] for r in rows[:5]) + (", …" if len(rows) > 5 else "")
            raise AmbiguousSnapshot(
                f"{text} matches more than one snapshot ({shown}); give more digits"
            )
        return tuple(rows[0])

    def contains(self, snapshot_id: str) -> bool:
        with self._lock:
            return (
                self._conn.execute(
                    "SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,)
                ).fetchone()
                is not None
            )

    def list(self) -> list[Snapshot]:
        """Every snapshot, oldest first (by created, then by when it was stored)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLS} FROM snapshots ORDER BY created, rowid"
            ).fetchall()
        return [_snapshot(r) for r in rows]

    def blob(self, sha: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        return bytes(row[0]) if row else None

    def model_files(self, snapshot: Snapshot | str) -> dict[str, ModelFiles]:
        """The bytes of every model package of a snapshot, by model id."""
        snap = snapshot if isinstance(snapshot, Snapshot) else self.get(snapshot)
        return self._files_of(snap.models, f"snapshot {snap.short}")

    def _files_of(self, models: Mapping[str, ModelRef], whose: str) -> dict[str, ModelFiles]:
        out = {}
        for mid, ref in models.items():
            onnx, sidecar = self.blob(ref.onnx_sha), self.blob(ref.json_sha)
            if onnx is None or sidecar is None:
                raise SnapshotStoreError(f"{whose}: model {mid}'s files are missing from the store")
            out[mid] = ModelFiles(onnx=onnx, sidecar=sidecar)
        return out

    def package_copies(self, model_id: str, folder: str | Path) -> Iterator[tuple[Path, str]]:
        """Stored packages of a model, for when the one configured cannot be used: each
        distinct package the snapshots gave this model id, the newest snapshot first, written
        to folder/<package sha>/ (files already there are checked against their sha256) as
        (package path, "snapshot <short> of <time>"). A blob whose bytes do not hash to its
        sha256, or an empty one (a stand-in for files that were missing), is passed over."""
        seen: set[ModelRef] = set()
        root = Path(folder).resolve()
        for snap in reversed(self.list()):
            ref = snap.models.get(model_id)
            if ref is None or ref in seen:
                continue
            seen.add(ref)
            onnx, sidecar = self.blob(ref.onnx_sha), self.blob(ref.json_sha)
            if not onnx or not sidecar:
                continue
            if sha256_hex(onnx) != ref.onnx_sha or sha256_hex(sidecar) != ref.json_sha:
                log.error(
                    "snapshot store: model %s blob of %s fails its sha256", model_id, snap.short
                )
                continue
            try:
                paths = _write_packages(
                    {model_id: ref},
                    {model_id: ModelFiles(onnx=onnx, sidecar=sidecar)},
                    root,
                    by_content=True,
                )
            except OSError as e:
                log.error("snapshot store: cannot write model %s's stored copy: %s", model_id, e)
                continue
            yield root / paths[model_id], f"snapshot {snap.short} of {_iso(snap.created)}"

    def stand_in(self, model_id: str) -> ModelFiles:
        """The package to snapshot for a model whose files cannot be read: the newest stored
        one of that model id, or two empty files (the model then runs without a package, BAD,
        and the snapshot says so by its empty sha256)."""
        for snap in reversed(self.list()):
            ref = snap.models.get(model_id)
            if ref is None:
                continue
            onnx, sidecar = self.blob(ref.onnx_sha), self.blob(ref.json_sha)
            if onnx and sidecar:
                return ModelFiles(onnx=onnx, sidecar=sidecar)
        return ModelFiles(onnx=b"", sidecar=b"")

    def diff(self, old: str, new: str) -> SnapshotDiff:
        """old → new in plant words, sidecar changes included."""
        return diff_snapshots(self.get(old), self.get(new), sidecar=self.blob)

    # --- the activation log ---------------------------------------------------------------------

    def record_activation(
        self,
        snapshot: str,
        outcome: Outcome | str,
        *,
        by: str,
        note: str = "",
        boot: str | None = None,
        at: float | None = None,
    ) -> Activation:
        """Append one row to the activation log (one transaction). The snapshot must be stored
        with every model file it needs."""
        try:
            outcome = Outcome(outcome)
        except ValueError:
            raise SnapshotStoreError(
                f"{outcome!r} is not an outcome; expected one of "
                f"{', '.join(o.value for o in Outcome)}"
            ) from None
        snap = self.get(snapshot)
        when = self.clock.wall() if at is None else at
        boot = boot or self.boot
        with self._tx() as c:
            shas = sorted(snap.blob_shas)
            have = (
                c.execute(
                    f"SELECT count(*) FROM blobs WHERE sha256 IN ({','.join('?' * len(shas))})",
                    shas,
                ).fetchone()[0]
                if shas
                else 0
            )
            if have != len(shas):
                raise SnapshotStoreError(
                    f"snapshot {snap.short} is missing model files; it cannot be activated"
                )
            cur = c.execute(
                "INSERT INTO activations (snapshot, activated_at, boot, outcome, "
                "actor, note) VALUES (?, ?, ?, ?, ?, ?)",
                (snap.id, when, boot, outcome.value, by, note),
            )
            seq = int(cur.lastrowid or 0)
        return Activation(
            seq=seq,
            snapshot=snap.id,
            activated_at=when,
            boot=boot,
            outcome=outcome,
            by=by,
            note=note,
        )

    def activations(self, snapshot: str | None = None) -> builtins.list[Activation]:
        """The log in order (seq), or only the rows of one snapshot."""
        sql = "SELECT seq, snapshot, activated_at, boot, outcome, actor, note FROM activations"
        args: tuple[Any, ...] = ()
        if snapshot is not None:
            sql += " WHERE snapshot = ?"
            args = (self.resolve(snapshot),)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            Activation(
                seq=r[0],
                snapshot=r[1],
                activated_at=r[2],
                boot=r[3],
                outcome=Outcome(r[4]),
                by=r[5],
                note=r[6],
            )
            for r in rows
        ]

    def active(self) -> Running | None:
        """The snapshot running now, according to the log; None before the first activation."""
        return running(self.activations())

    def active_snapshot(self) -> Snapshot | None:
        r = self.active()
        return None if r is None else self.get(r.snapshot)

    def at(self, when: float) -> Running | None:
        """The snapshot that ran at a past wall time (across restarts); None if none had been
        activated by then."""
        return running(self.activations(), at=when)

    # --- files ----------------------------------------------------------------------------------

    def import_plant_file(
        self,
        path: str | Path,
        *,
        author: str,
        message: str,
        parent: str | None = ACTIVE,
        stand_ins: dict[str, str] | None = None,
    ) -> ImportResult:
        """A snapshot of a plant file as it is on disk, its model packages read beside it.
        parent defaults to the active snapshot. new is False when the content was known.

        stand_ins: when given, a model whose files cannot be read does not refuse the file:
        its newest stored package stands in (stand_in()), and stand_ins[model id] says why."""
        p = Path(path)
        try:
            config = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise SnapshotStoreError(f"{p}: cannot read the plant file: {e.strerror}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise SnapshotStoreError(f"{p}: not valid TOML: {e}") from None
        unreadable: dict[str, str] | None = None if stand_ins is None else {}
        try:
            files = read_model_files(config, p.resolve().parent, unreadable=unreadable)
        except SnapshotError as e:
            raise SnapshotStoreError(f"{p}: {e}") from None
        if stand_ins is not None and unreadable:
            for mid, why in unreadable.items():
                files[mid] = self.stand_in(mid)
                stand_ins[mid] = why
        if parent == ACTIVE:
            current = self.active()
            parent = current.snapshot if current else None
        return self._put(config, files, author=author, message=message, parent=parent, created=None)

    def materialize(self, snapshot: str, folder: str | Path) -> dict[str, Any]:
        """Write a snapshot's model files out of the blobs and return its plant dict with each
        package pointing (absolute path) at them, ready for validate_plant.

        Files go to folder/<package sha, 16 digits>/NAME.{onnx,json}: named by content, so
        one folder (DATA_DIR/models, say) serves every snapshot, and the files of a running
        model are never rewritten with other bytes. Files already there are left alone."""
        snap = self.get(snapshot)
        return self._materialize(snap.config, snap.models, folder, f"snapshot {snap.short}")

    def materialize_config(self, config: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
        """materialize for a configuration that is not a snapshot (yet): a snapshot's config
        edited in the console, its packages still refs to stored blobs, so it can be
        validated before it is put."""
        try:
            canon, refs = canonical_config(config)
        except SnapshotError as e:
            raise SnapshotStoreError(str(e)) from None
        return self._materialize(canon, refs, folder, "the configuration")

    def _materialize(
        self, canon: dict[str, Any], refs: Mapping[str, ModelRef], folder: str | Path, whose: str
    ) -> dict[str, Any]:
        root = Path(folder).resolve()
        paths = _write_packages(refs, self._files_of(refs, whose), root, by_content=True)
        return with_packages(canon, {mid: str(root / rel) for mid, rel in paths.items()})

    def export_bundle(self, snapshot: str, folder: str | Path) -> Path:
        """Write plant.toml, the model packages and manifest.json into folder (new or empty);
        returns the plant file's path. `floorconsole run -c` accepts that file as it is."""
        snap = self.get(snapshot)
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise SnapshotStoreError(
                f"{folder} is not an empty folder; export writes a bundle into a new or empty one"
            )
        folder.mkdir(parents=True, exist_ok=True)
        rel = _write_packages(snap.models, self.model_files(snap), folder, by_content=False)
        config = plant_order(with_packages(snap.config, rel))
        header = (
            f"# floorconsole snapshot {snap.id}\n"
            f"# by {snap.author} at {_iso(snap.created)}: {snap.message}\n"
            "# Exported with manifest.json; `floorconsole snapshot import` refuses this "
            "folder once a file in it is changed.\n\n"
        )
        plant = folder / BUNDLE_PLANT
        _write_file(plant, (header + toml_write.dumps(config)).encode("utf-8"))
        files = {BUNDLE_PLANT: sha256_hex(plant.read_bytes())}
        for rel_name in rel.values():
            for p in package_paths(folder / rel_name):
                files[p.relative_to(folder).as_posix()] = sha256_hex(p.read_bytes())
        manifest = {
            "format": BUNDLE_FORMAT,
            "snapshot": {
                "id": snap.id,
                "parent": snap.parent,
                "author": snap.author,
                "message": snap.message,
                "created": snap.created,
            },
            "plant": BUNDLE_PLANT,
            "files": dict(sorted(files.items())),
        }
        # written last: a bundle whose export was cut short has no manifest and is refused
        _write_file(
            folder / BUNDLE_MANIFEST,
            (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        )
        return plant

    def import_bundle(self, folder: str | Path) -> ImportResult:
        """Store the snapshot of a bundle written by export_bundle, after checking every file
        against the manifest and the content against the snapshot id. Raises BundleError
        naming the file and what is wrong."""
        config, files, meta = read_bundle(folder)
        result = self._put(
            config,
            files,
            author=meta["author"],
            message=meta["message"],
            parent=meta["parent"],
            created=meta["created"],
        )
        if result.snapshot.id != meta["id"]:  # read_bundle checked it; the store must agree
            raise BundleError(f"{Path(folder) / BUNDLE_MANIFEST}: snapshot id does not match")
        return result

    # --- checks ---------------------------------------------------------------------------------

    def verify(self) -> builtins.list[str]:
        """Everything wrong with the store, one line each; empty when all is well: SQLite
        integrity, every snapshot's text hashing to its id, every blob to its sha256, every
        snapshot's and every activation's model files present."""
        problems: builtins.list[str] = []
        with self._lock:
            c = self._conn
            problems += [
                f"sqlite: {r[0]}" for r in c.execute("PRAGMA integrity_check") if r[0] != "ok"
            ]
            problems += [
                f"sqlite: {r[0]} row {r[1]} refers to a missing {r[2]}"
                for r in c.execute("PRAGMA foreign_key_check")
            ]
            blobs = {}
            for sha, size, data in c.execute("SELECT sha256, size, data FROM blobs"):
                blobs[sha] = True
                if sha256_hex(data) != sha or size != len(data):
                    problems.append(f"blob {sha[:12]}: content does not match its sha256")
            snaps = c.execute(f"SELECT {_COLS} FROM snapshots").fetchall()
            acts = c.execute("SELECT seq, snapshot FROM activations ORDER BY seq").fetchall()
        complete: dict[str, bool] = {}
        for row in snaps:
            try:
                snap = _snapshot(row)
            except SnapshotStoreError as e:
                problems.append(str(e))
                complete[row[0]] = False
                continue
            missing = sorted(s for s in snap.blob_shas if s not in blobs)
            complete[snap.id] = not missing
            problems += [f"snapshot {snap.short}: model file {s[:12]} missing" for s in missing]
        for seq, sid in acts:
            if not complete.get(sid, False):
                problems.append(f"activation {seq}: snapshot {sid[:12]} is not complete")
        return problems


_COLS = "id, parent, author, message, created, canonical"


def _snapshot(row: tuple[Any, ...] | sqlite3.Row) -> Snapshot:
    sid, parent, author, message, created, canonical = row
    try:
        return snapshot_from_canonical(
            canonical, parent=parent, author=author, message=message, created=created, expect_id=sid
        )
    except SnapshotError as e:
        raise SnapshotStoreError(f"snapshot {sid[:12]} is damaged: {e}") from None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _write_file(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a temporary beside it, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_packages(
    models: Mapping[str, ModelRef],
    files: Mapping[str, ModelFiles],
    folder: Path,
    *,
    by_content: bool,
) -> dict[str, str]:
    """Write each model package as folder/<package sha>/NAME.{onnx,json} (by_content) or as
    folder/models/<model id>/NAME.{onnx,json} (for people: a bundle); returns each model's
    package path (NAME, no suffix) relative to folder. Models sharing one package share its
    files."""
    out: dict[str, str] = {}
    written: dict[ModelRef, str] = {}
    for mid, ref in models.items():
        if ref in written:
            out[mid] = written[ref]
            continue
        pkg = files[mid]
        if by_content or not safe_name(mid):
            sub = PurePosixPath(ref.package_sha[:16])
        else:
            sub = PurePosixPath("models", mid)
        rel = (sub / _stem(pkg.sidecar, mid if safe_name(mid) else "model")).as_posix()
        onnx_path, json_path = package_paths(folder / rel)
        for p, data in ((onnx_path, pkg.onnx), (json_path, pkg.sidecar)):
            if not (p.is_file() and sha256_hex(p.read_bytes()) == sha256_hex(data)):
                _write_file(p, data)
        written[ref] = out[mid] = rel
    return out


def read_bundle(folder: str | Path) -> tuple[dict[str, Any], dict[str, ModelFiles], dict[str, Any]]:
    """(plant dict, model files by id, snapshot metadata) of a bundle, checked: every file
    the manifest lists is there with its sha256, every model file the plant names is listed,
    and the content hashes to the manifest's snapshot id. Raises BundleError naming the file."""
    root = Path(folder)
    manifest_path = root / BUNDLE_MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a folder; a bundle is the folder `snapshot export` wrote")
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path}: missing; a bundle is {BUNDLE_PLANT}, its model files "
            f"and {BUNDLE_MANIFEST}, as `snapshot export` writes them"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{manifest_path}: not a readable manifest: {e}") from None
    meta, listed, plant_name = _manifest(manifest, manifest_path)

    contents: dict[str, bytes] = {}
    for name, sha in listed.items():
        p = root / name
        if not p.is_file():
            raise BundleError(f"{p}: missing (listed in {BUNDLE_MANIFEST})")
        data = p.read_bytes()
        if sha256_hex(data) != sha:
            raise BundleError(
                f"{p}: sha256 {sha256_hex(data)[:12]} does not match the "
                f"manifest's {sha[:12]}; the file was changed after export"
            )
        contents[name] = data

    plant_path = root / plant_name
    try:
        config = tomllib.loads(contents[plant_name].decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BundleError(f"{plant_path}: not valid TOML: {e}") from None

    files: dict[str, ModelFiles] = {}
    for i, model in enumerate(config.get("models", []) if isinstance(config, dict) else []):
        if not isinstance(model, dict) or not isinstance(model.get("package"), str):
            continue  # make_snapshot names what is wrong with the table itself
        mid = model.get("id")
        pair = []
        for p in package_paths(PurePosixPath(model["package"]).as_posix()):
            name = _inside(p.as_posix(), f"{plant_path}: models[{i}].package")
            if name not in listed:
                where = root / name
                raise BundleError(
                    f"{where}: {'missing' if not where.exists() else 'not listed in the manifest'}"
                    f" (model {mid}'s package); the bundle is incomplete"
                )
            pair.append(contents[name])
        if isinstance(mid, str):
            files[mid] = ModelFiles(onnx=pair[0], sidecar=pair[1])
    try:
        snap = make_snapshot(
            config,
            files,
            parent=meta["parent"],
            author=meta["author"],
            message=meta["message"],
            created=meta["created"],
        )
    except SnapshotError as e:
        raise BundleError(f"{plant_path}: {e}") from None
    if snap.id != meta["id"]:
        raise BundleError(
            f"{manifest_path}: snapshot id {meta['id'][:12]} does not match the "
            f"bundle's content ({snap.id[:12]}); the bundle was changed"
        )
    return config, files, meta


def _manifest(doc: Any, path: Path) -> tuple[dict[str, Any], dict[str, str], str]:
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a manifest of format {BUNDLE_FORMAT!r}")
    meta = doc.get("snapshot")
    if not isinstance(meta, dict):
        raise BundleError(f'{path}: no "snapshot" table')
    sid = meta.get("id")
    if not isinstance(sid, str) or len(sid) != 64 or any(c not in "0123456789abcdef" for c in sid):
        raise BundleError(f"{path}: snapshot.id is not a sha256")
    if not (meta.get("parent") is None or isinstance(meta.get("parent"), str)):
        raise BundleError(f"{path}: snapshot.parent is not an id")
    for k in ("author", "message"):
        if not isinstance(meta.get(k), str):
            raise BundleError(f"{path}: snapshot.{k} is not a string")
    created = meta.get("created")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise BundleError(f"{path}: snapshot.created is not a time")
    listed = doc.get("files")
    if not isinstance(listed, dict) or not all(
        isinstance(v, str) and len(v) == 64 for v in listed.values()
    ):
        raise BundleError(f'{path}: "files" is not a table of file name = sha256')
    checked = {_inside(name, f"{path}: files"): sha for name, sha in listed.items()}
    plant = doc.get("plant")
    if not isinstance(plant, str) or _inside(plant, f"{path}: plant") not in checked:
        raise BundleError(f'{path}: the plant file {plant!r} is not listed in "files"')
    return (
        {
            "id": sid,
            "parent": meta.get("parent"),
            "author": meta["author"],
            "message": meta["message"],
            "created": float(created),
        },
        checked,
        _inside(plant, ""),
    )


def _inside(name: str, where: str) -> str:
    """A bundle-relative file name, normalised; refuses one that leaves the bundle."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise BundleError(f"{where}: {name!r} lies outside the bundle")
    return p.as_posix()
