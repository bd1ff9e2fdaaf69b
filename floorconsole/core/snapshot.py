"""Snapshots: the canonical form of a whole running configuration, its sha256 id, and diffs in plant words.

A snapshot is the plant file as data (the TOML dict, rules as edited) plus the bytes of every
model package it names. In the canonical form each [[models]] package path is replaced by a
reference to the content of its two files,

    package = "sha256:<sha256 of NAME.onnx>+<sha256 of NAME.json>"

so the same configuration has the same id wherever its files live on disk, and a changed model
file changes the id. The canonical text is JSON with sorted keys and no insignificant
whitespace; the snapshot id is the sha256 of that text. Who made a snapshot, when and why
(parent, author, message, created) travel beside the id, not inside it: the same content made
twice is the same snapshot.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from floorconsole.core import toml_write
from floorconsole.core.model_package import NAME_PATTERN, package_paths

FORMAT = "floorconsole-snapshot/1"
SECTIONS = ("edge", "brokers", "devices", "signals", "models", "rules", "uplink", "control")
LIST_SECTIONS = ("brokers", "devices", "signals", "models", "rules")
_ITEM_WORDS = {
    "brokers": "broker",
    "devices": "device",
    "signals": "signal",
    "models": "model",
    "rules": "rule",
}
_PACKAGE_REF = re.compile(r"sha256:([0-9a-f]{64})\+([0-9a-f]{64})")
_SHORT = 6  # hex digits of a model file's sha256 shown in a diff


class SnapshotError(ValueError):
    """A configuration that cannot be made into a snapshot; names the key path and why."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The two files of a model package, as bytes."""

    onnx: bytes
    sidecar: bytes

    @property
    def ref(self) -> ModelRef:
        return ModelRef(sha256_hex(self.onnx), sha256_hex(self.sidecar))


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model package identified by the sha256 of its NAME.onnx and NAME.json."""

    onnx_sha: str
    json_sha: str

    @property
    def ref(self) -> str:
        """The text that stands for the package in the canonical form."""
        return f"sha256:{self.onnx_sha}+{self.json_sha}"

    @property
    def shas(self) -> tuple[str, str]:
        return self.onnx_sha, self.json_sha

    @property
    def package_sha(self) -> str:
        """One id for the pair, as the console and `model inspect` show it (OnnxModel.sha256):
        sha256 over the two files' hex sha256, ONNX first."""
        return sha256_hex((self.onnx_sha + self.json_sha).encode("ascii"))


def parse_package_ref(text: Any) -> ModelRef | None:
    """The ModelRef a canonical package value stands for, or None for a path."""
    m = _PACKAGE_REF.fullmatch(text) if isinstance(text, str) else None
    return ModelRef(m.group(1), m.group(2)) if m else None


@dataclass(frozen=True)
class Snapshot:
    """One whole configuration. config is canonical (packages as refs): treat it as read-only."""

    id: str
    parent: str | None
    author: str
    message: str
    created: float  # wall time, UTC epoch seconds
    config: dict[str, Any]
    models: dict[str, ModelRef]  # [[models]] id -> its package's file hashes

    def __hash__(self) -> int:  # the dicts inside are not hashable; the id stands for them
        return hash(self.id)

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def canonical(self) -> str:
        return canonical_json(self.config)

    @property
    def blob_shas(self) -> set[str]:
        """Every model file this snapshot needs, by sha256."""
        return {sha for ref in self.models.values() for sha in ref.shas}

    def plant_config(self) -> dict[str, Any]:
        """A deep copy of the configuration, safe to edit into the next snapshot."""
        return copy.deepcopy(self.config)


# --- the canonical form ---------------------------------------------------------------------------


def read_model_files(
    config: Mapping[str, Any],
    base_dir: str | Path,
    *,
    unreadable: dict[str, str] | None = None,
) -> dict[str, ModelFiles]:
    """The files of every [[models]] package given as a path (relative to base_dir, the plant
    file's folder), by model id. Packages already given as refs are left out.

    Raises SnapshotError naming the model and the missing or unreadable file; with an
    `unreadable` dict, such a model is left out and the dict gets (model id -> that text)."""
    out: dict[str, ModelFiles] = {}
    for i, _table, mid, pkg in _model_tables(config):
        if parse_package_ref(pkg) is not None:
            continue
        onnx_path, json_path = package_paths(Path(base_dir) / pkg)
        data = []
        try:
            for p in (onnx_path, json_path):
                try:
                    data.append(p.read_bytes())
                except FileNotFoundError:
                    raise SnapshotError(
                        f"models[{i}].package: {p} not found (model {mid!r})"
                    ) from None
                except OSError as e:
                    raise SnapshotError(
                        f"models[{i}].package: cannot read {p}: {e.strerror}"
                    ) from None
        except SnapshotError as e:
            if unreadable is None:
                raise
            unreadable[mid] = str(e)
            continue
        out[mid] = ModelFiles(onnx=data[0], sidecar=data[1])
    return out


def canonical_config(
    config: Mapping[str, Any], model_files: Mapping[str, ModelFiles] | None = None
) -> tuple[dict[str, Any], dict[str, ModelRef]]:
    """(canonical config, model refs by id) of a plant dict.

    A model whose id is in model_files gets the ref of those bytes; one without files must
    already carry a ref (a config taken from a snapshot). Raises SnapshotError on values TOML
    and JSON do not share (dates, NaN, infinities), on [[models]] without a unique id or a
    package, and on files given for a model the config does not have."""
    model_files = model_files or {}
    if not isinstance(config, Mapping):
        raise SnapshotError(f"a plant configuration is a table, not {type(config).__name__}")
    canon = _plain(config, "")
    refs: dict[str, ModelRef] = {}
    for i, table, mid, pkg in _model_tables(canon):
        if mid in model_files:
            ref = model_files[mid].ref
        else:
            given = parse_package_ref(pkg)
            if given is None:
                raise SnapshotError(
                    f"models[{i}].package: no model files given for {mid!r} (package {pkg!r})"
                )
            ref = given
        table["package"] = ref.ref
        refs[mid] = ref
    extra = sorted(set(model_files) - set(refs))
    if extra:
        raise SnapshotError(
            f"models: files given for {', '.join(map(repr, extra))}, which the "
            "configuration has no [[models]] entry for"
        )
    return canon, refs


def canonical_json(canon: Mapping[str, Any]) -> str:
    """The canonical text of a canonical config: sorted keys, no insignificant whitespace."""
    return json.dumps(
        {"format": FORMAT, "plant": canon},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def snapshot_id(canonical: str) -> str:
    return sha256_hex(canonical.encode("utf-8"))


def make_snapshot(
    config: Mapping[str, Any],
    model_files: Mapping[str, ModelFiles] | None = None,
    *,
    parent: str | None,
    author: str,
    message: str,
    created: float,
) -> Snapshot:
    """A snapshot of a plant dict and the files of its model packages (see canonical_config)."""
    canon, refs = canonical_config(config, model_files)
    return Snapshot(
        id=snapshot_id(canonical_json(canon)),
        parent=parent,
        author=author,
        message=message,
        created=created,
        config=canon,
        models=refs,
    )


def snapshot_from_canonical(
    text: str,
    *,
    parent: str | None,
    author: str,
    message: str,
    created: float,
    expect_id: str | None = None,
) -> Snapshot:
    """A snapshot read back from its canonical text; raises SnapshotError if the text is not a
    canonical form or does not hash to expect_id."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SnapshotError(f"not a canonical snapshot: {e}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or not isinstance(doc.get("plant"), dict)
    ):
        raise SnapshotError(f"not a canonical snapshot of format {FORMAT!r}")
    canon, refs = canonical_config(doc["plant"])
    sid = snapshot_id(canonical_json(canon))
    if canonical_json(canon) != text:
        raise SnapshotError(f"snapshot {sid[:12]}: stored text is not in canonical form")
    if expect_id is not None and sid != expect_id:
        raise SnapshotError(f"snapshot {expect_id[:12]}: content hashes to {sid[:12]}")
    return Snapshot(
        id=sid,
        parent=parent,
        author=author,
        message=message,
        created=created,
        config=canon,
        models=refs,
    )


def blobs_of(model_files: Mapping[str, ModelFiles]) -> dict[str, bytes]:
    """Every file's bytes by sha256 (two models sharing a package share blobs)."""
    out: dict[str, bytes] = {}
    for files in model_files.values():
        out[sha256_hex(files.onnx)] = files.onnx
        out[sha256_hex(files.sidecar)] = files.sidecar
    return out


def with_packages(config: Mapping[str, Any], paths: Mapping[str, str]) -> dict[str, Any]:
    """A copy of a config with each listed model's package set to a path (NAME, no suffix)."""
    out = copy.deepcopy(dict(config))
    for _i, table, mid, _pkg in _model_tables(out):
        if mid in paths:
            table["package"] = paths[mid]
    return out


# Keys a person looks for first in each section; the rest follow in alphabetical order.
_LEADING_KEYS = {
    "edge": ("id", "site", "data_dir"),
    "brokers": ("id", "host", "port"),
    "devices": ("id", "protocol", "host", "port", "unit_id"),
    "signals": ("id", "device", "broker", "address", "topic", "json", "type"),
    "models": ("id", "package", "inputs", "outputs"),
    "rules": ("id", "signal", "op", "threshold"),
}


def plant_order(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy in the order a plant file is read: sections as in SECTIONS, then any other; in
    each table its id and main keys first. (A snapshot read back has its keys sorted.)"""
    keys = [k for k in SECTIONS if k in config] + [k for k in config if k not in SECTIONS]
    out: dict[str, Any] = {}
    for k in keys:
        v = config[k]
        lead = _LEADING_KEYS.get(k, ("id",))
        if isinstance(v, Mapping):
            out[k] = _lead(v, lead)
        elif isinstance(v, list):
            out[k] = [_lead(i, lead) if isinstance(i, Mapping) else copy.deepcopy(i) for i in v]
        else:
            out[k] = copy.deepcopy(v)
    return out


def _lead(table: Mapping[str, Any], lead: tuple[str, ...]) -> dict[str, Any]:
    first = [k for k in lead if k in table]
    return {k: copy.deepcopy(table[k]) for k in first + sorted(k for k in table if k not in lead)}


def model_file_stem(sidecar: bytes, fallback: str) -> str:
    """NAME for a package's files. A sidecar names its ONNX file (onnx.file) and is refused
    beside a file of another name, so the name comes from there; fallback when it says none."""
    try:
        name = json.loads(sidecar.decode("utf-8"))["onnx"]["file"]
    except (ValueError, KeyError, TypeError):
        return fallback
    if isinstance(name, str) and name.endswith(".onnx") and len(name) > 5 and safe_name(name):
        return name[: -len(".onnx")]
    return fallback


def safe_name(name: str) -> bool:
    """A name usable as one file or folder name: NAME_PATTERN, whole (no trailing newline)."""
    return bool(NAME_PATTERN.fullmatch(name)) if isinstance(name, str) else False


def _model_tables(config: Mapping[str, Any]) -> Iterable[tuple[int, dict[str, Any], str, Any]]:
    """(index, table, id, package) of each [[models]] entry, checking what a snapshot needs."""
    models = config.get("models", [])
    if not isinstance(models, list):
        raise SnapshotError("models: expected an array of tables ([[models]])")
    seen: dict[str, int] = {}
    for i, table in enumerate(models):
        if not isinstance(table, dict):
            raise SnapshotError(f"models[{i}]: expected a table")
        mid = table.get("id")
        if not isinstance(mid, str) or not mid:
            raise SnapshotError(f"models[{i}].id: missing; a snapshot needs every model's id")
        if mid in seen:
            raise SnapshotError(f"models[{i}].id: {mid!r} is already used by models[{seen[mid]}]")
        seen[mid] = i
        pkg = table.get("package")
        if not isinstance(pkg, str) or not pkg:
            raise SnapshotError(
                f'models[{i}].package: missing; expected a path like "models/motor_anomaly"'
            )
        yield i, table, mid, pkg


def _plain(v: Any, path: str) -> Any:
    """A deep copy holding only what both TOML and JSON hold (tuples become lists)."""
    if isinstance(v, Mapping):
        for k in v:
            if not isinstance(k, str):
                raise SnapshotError(f"{path or 'plant'}: key {k!r} is not a string")
        # sorted, as the canonical text and a snapshot read back from the store have them
        return {k: _plain(v[k], _join(path, k)) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(v)]
    if isinstance(v, float) and not math.isfinite(v):
        raise SnapshotError(f"{path}: {v} is not a finite number; a snapshot cannot hold it")
    if isinstance(v, (str, bool, int, float)):
        return v
    raise SnapshotError(
        f"{path}: a {type(v).__name__} ({v!r}) has no place in a snapshot; "
        "plant files hold strings, numbers, booleans, arrays and tables"
    )


# --- the activation log -------------------------------------------------------------------------


class Outcome(StrEnum):
    """What an activation log row records."""

    APPLIED = "applied"  # swapped in; its health check is running
    HEALTH_OK = "health-ok"  # passed its health check
    HEALTH_FAILED = "health-failed-rolled-back"  # failed it; what ran before came back
    ROLLED_BACK = "rolled-back"  # brought back by a rollback (asked for, or after a failure)

    @property
    def is_failure(self) -> bool:
        return self is Outcome.HEALTH_FAILED


@dataclass(frozen=True, slots=True)
class Activation:
    """One row of the append-only activation log."""

    seq: int
    snapshot: str
    activated_at: float  # wall time, UTC epoch seconds
    boot: str
    outcome: Outcome
    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Running:
    """Which snapshot ran: since when, the log row that made it so (for a snapshot that came
    back after another failed its health check, that is the failure row), and the latest row
    about it since (its health-ok, say; the same row when there is none)."""

    snapshot: str
    since: float
    activation: Activation
    last: Activation


def running(log: Sequence[Activation], at: float | None = None) -> Running | None:
    """The snapshot running after the log (in seq order), or at wall time `at`: after the last
    row written at or before it. None when nothing had been activated yet.

    applied, health-ok and rolled-back make their snapshot the running one; a health failure
    brings back whatever ran before that snapshot was applied, whether or not the engine also
    wrote a rolled-back row for it. Rows are read in seq order, so a wall clock stepped back
    between two rows cannot reorder them."""
    rows = list(log)
    if at is not None:
        last = max((i for i, r in enumerate(rows) if r.activated_at <= at), default=-1)
        rows = rows[: last + 1]
    current: Running | None = None
    before_apply: dict[str, Running | None] = {}
    for r in rows:
        if r.outcome is Outcome.APPLIED:
            before_apply[r.snapshot] = current
            current = Running(r.snapshot, r.activated_at, r, r)
        elif r.outcome is Outcome.HEALTH_FAILED:
            restored = before_apply.get(r.snapshot, current)
            if restored is not None and restored.snapshot == r.snapshot:
                restored = None
            current = None if restored is None else Running(restored.snapshot, r.activated_at, r, r)
        elif current is None or current.snapshot != r.snapshot or r.outcome is Outcome.ROLLED_BACK:
            current = Running(r.snapshot, r.activated_at, r, r)
        else:  # health-ok of the running snapshot: still running since it was applied
            current = Running(current.snapshot, current.since, current.activation, r)
    return current


# --- diff in plant words --------------------------------------------------------------------------


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


UNSET: Any = _Unset()
_BULK: Any = object()  # a field too large to show: "changed" is all a diff line says


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of an item that differs: its key path inside the item, old and new value
    (UNSET where the field is not there)."""

    path: str
    old: Any
    new: Any

    def text(self) -> str:
        if self.old is _BULK or self.new is _BULK:
            return f"{self.path} changed"
        a, b = parse_package_ref(self.old), parse_package_ref(self.new)
        if a is not None and b is not None:
            which = " and ".join(
                name
                for name, x, y in (
                    ("onnx", a.onnx_sha, b.onnx_sha),
                    ("sidecar", a.json_sha, b.json_sha),
                )
                if x != y
            )
            return (
                f"{self.path} changed (sha {a.package_sha[:_SHORT]} → "
                f"{b.package_sha[:_SHORT]}; {which} changed)"
            )
        return f"{self.path} {show_value(self.old)} → {show_value(self.new)}"


@dataclass(frozen=True, slots=True)
class ItemChange:
    """An item of a section (a rule, a device, [edge]) that was added, removed or changed."""

    section: str
    item: str | None  # the item's id; None for a table section such as edge
    kind: Literal["added", "removed", "changed", "reordered"]
    fields: tuple[FieldChange, ...] = ()
    value: Any = None  # the whole item, for added and removed

    @property
    def label(self) -> str:
        if self.item is None:
            return self.section
        return f"{_ITEM_WORDS.get(self.section, self.section)} {self.item}"

    def text(self) -> str:
        if self.kind == "reordered":
            return f"{self.section}: order changed"
        if self.kind == "removed":
            return f"{self.label} removed"
        if self.kind == "added":
            summary = _summary(self.value)
            return f"{self.label} added" + (f" ({summary})" if summary else "")
        return f"{self.label}: " + "; ".join(f.text() for f in self.fields)


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    old: str  # snapshot ids
    new: str
    changes: tuple[ItemChange, ...]

    def lines(self) -> list[str]:
        return render_diff(self)


def render_diff(diff: SnapshotDiff) -> list[str]:
    """The diff as text lines, one per item, in plant file order."""
    if diff.old == diff.new:
        return [f"{diff.old[:12]} and {diff.new[:12]} are the same snapshot"]
    if not diff.changes:
        return ["no differences"]
    return [c.text() for c in diff.changes]


def diff_snapshots(
    old: Snapshot, new: Snapshot, *, sidecar: Callable[[str], bytes | None] | None = None
) -> SnapshotDiff:
    """What changed from old to new. With sidecar (sha256 -> bytes of a stored sidecar), a
    changed model package also says what changed inside its sidecar (version, thresholds...)."""
    return SnapshotDiff(
        old.id, new.id, tuple(diff_configs(old.config, new.config, sidecar=sidecar))
    )


def diff_configs(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    sidecar: Callable[[str], bytes | None] | None = None,
) -> list[ItemChange]:
    """Item by item, section by section (edge, brokers, devices, signals, models, rules, uplink,
    control, then any other key), items of array sections matched by id."""
    keys = [k for k in SECTIONS if k in old or k in new]
    keys += [k for k in new if k not in keys]
    keys += [k for k in old if k not in keys]
    out: list[ItemChange] = []
    for section in keys:
        a, b = old.get(section, UNSET), new.get(section, UNSET)
        if _same(a, b):
            continue
        if section in LIST_SECTIONS or _is_list_of_tables(a) or _is_list_of_tables(b):
            out.extend(_diff_list(section, _as_list(a), _as_list(b), sidecar))
        elif isinstance(a, Mapping) or isinstance(b, Mapping):
            if a is UNSET:
                out.append(ItemChange(section, None, "added", value=b))
            elif b is UNSET:
                out.append(ItemChange(section, None, "removed", value=a))
            else:
                out.append(
                    ItemChange(
                        section,
                        None,
                        "changed",
                        tuple(_compare(a, b, "", _LEADING_KEYS.get(section, ()))),
                    )
                )
        else:
            out.append(ItemChange(section, None, "changed", (FieldChange(section, a, b),)))
    return out


def _diff_list(
    section: str, old: list[Any], new: list[Any], sidecar: Callable[[str], bytes | None] | None
) -> list[ItemChange]:
    a, b = _keyed(old), _keyed(new)
    out: list[ItemChange] = []
    lead = _LEADING_KEYS.get(section, ("id",))
    for k, item in b.items():
        if k not in a:
            shown = _lead(item, lead) if isinstance(item, Mapping) else item
            out.append(ItemChange(section, k, "added", value=shown))
            continue
        fields = _compare(a[k], item, "", lead)
        if section == "models":
            fields += _sidecar_changes(a[k], item, sidecar)
        if fields:
            out.append(ItemChange(section, k, "changed", tuple(fields)))
    out += [ItemChange(section, k, "removed", value=item) for k, item in a.items() if k not in b]
    common_a = [k for k in a if k in b]
    common_b = [k for k in b if k in a]
    if common_a != common_b:
        out.append(ItemChange(section, None, "reordered"))
    return out


def _keyed(items: list[Any]) -> dict[str, Any]:
    """Items by id; an item without a usable id (or with one used twice) by its position."""
    ids = [i.get("id") if isinstance(i, Mapping) else None for i in items]
    out: dict[str, Any] = {}
    for n, (item, iid) in enumerate(zip(items, ids, strict=True)):
        key = iid if isinstance(iid, str) and ids.count(iid) == 1 else f"#{n}"
        out[key] = item
    return out


def _compare(old: Any, new: Any, path: str, lead: tuple[str, ...] = ()) -> list[FieldChange]:
    if _same(old, new):
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping) and old and new:
        out: list[FieldChange] = []
        keys = set(old) | set(new)
        for k in [*(k for k in lead if k in keys), *sorted(keys - set(lead))]:
            out += _compare(old.get(k, UNSET), new.get(k, UNSET), _join(path, k))
        return out
    if _is_list_of_tables(old) and _is_list_of_tables(new):
        out = []
        for i in range(max(len(old), len(new))):
            out += _compare(
                old[i] if i < len(old) else UNSET, new[i] if i < len(new) else UNSET, f"{path}[{i}]"
            )
        return out
    return [FieldChange(path or "value", old, new)]


# Sidecar fields small enough to show old → new; the rest is reported as "changed".
_SIDECAR_DETAIL = ("name", "version", "description", "output", "smoothing", "thresholds", "drift")
_SIDECAR_BULK = ("inputs", "features", "scaler", "reference", "training")


def _sidecar_changes(
    old: Any, new: Any, sidecar: Callable[[str], bytes | None] | None
) -> list[FieldChange]:
    a = parse_package_ref(old.get("package")) if isinstance(old, Mapping) else None
    b = parse_package_ref(new.get("package")) if isinstance(new, Mapping) else None
    if sidecar is None or a is None or b is None or a.json_sha == b.json_sha:
        return []
    docs = []
    for sha in (a.json_sha, b.json_sha):
        raw = sidecar(sha)
        try:
            doc = json.loads(raw.decode("utf-8")) if raw is not None else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return []
        docs.append(doc)
    out: list[FieldChange] = []
    for k in _SIDECAR_DETAIL:
        out += _compare(docs[0].get(k, UNSET), docs[1].get(k, UNSET), f"sidecar.{k}")
    for k in _SIDECAR_BULK:
        if not _same(docs[0].get(k, UNSET), docs[1].get(k, UNSET)):
            out.append(FieldChange(f"sidecar.{k}", _BULK, _BULK))
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as data, type included: 1, 1.0 and true are three different values."""
    if a is UNSET or b is UNSET:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _is_list_of_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) for i in v)


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _join(path: str, k: str) -> str:
    k = toml_write.key(k)
    return f"{path}.{k}" if path else k


_BARE_VALUE = re.compile(r"[^\s\"',;{}\[\]]+")


def show_value(v: Any) -> str:
    """A value as a diff line shows it: strings bare where that is unambiguous, else as TOML."""
    if v is UNSET:
        return "(unset)"
    ref = parse_package_ref(v)
    if ref is not None:
        return f"sha {ref.package_sha[:_SHORT]}"
    if isinstance(v, str):
        if _BARE_VALUE.fullmatch(v) and v not in ("true", "false", "(unset)") and not _numeric(v):
            return v
        return toml_write.value(v)
    if isinstance(v, Mapping):
        inner = ", ".join(f"{toml_write.key(k)} = {show_value(x)}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(v, list):
        return "[" + ", ".join(show_value(x) for x in v) + "]"
    return toml_write.value(v)


def _numeric(s: str) -> bool:
    try:
        float(s.replace("_", ""))
    except ValueError:
        return False
    return True


def _summary(item: Any) -> str:
    """A short account of an added item: its fields, an array of tables as a count."""
    if not isinstance(item, Mapping):
        return show_value(item)
    parts = []
    for k, v in item.items():
        if k == "id":
            continue
        if _is_list_of_tables(v):
            parts.append(f"{toml_write.key(k)} ×{len(v)}")
        else:
            parts.append(f"{toml_write.key(k)} {show_value(v)}")
    return ", ".join(parts)
