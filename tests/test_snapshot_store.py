"""adapters.snapshot_store on real SQLite files: puts, prefixes, the activation log across
restarts, materialize, bundles (round trip, tampered, incomplete), kill -9 at random moments."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from floorconsole.adapters.onnx_model import load_package
from floorconsole.adapters.snapshot_store import (
    AmbiguousSnapshot,
    BundleError,
    SnapshotStore,
    SnapshotStoreError,
    UnknownSnapshot,
)
from floorconsole.core.clock import FakeClock
from floorconsole.core.config import load_plant, validate_plant
from floorconsole.core.snapshot import (
    ModelFiles,
    Outcome,
    make_snapshot,
    read_model_files,
    sha256_hex,
)
from tests.support.demo_plant import demo_plant_without_rules
from tests.support.snapshot_writer import cycle_config

REPO = Path(__file__).resolve().parents[1]
PLANTS = REPO / "fixtures" / "plants"
MODELS = REPO / "fixtures" / "models"
T0 = 1_790_000_000.0


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    return demo_plant_without_rules(tmp_path / "site")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    with SnapshotStore.in_data_dir(tmp_path / "var", clock=clock, boot="boot-1") as s:
        yield s


def config_of(plant: Path) -> dict[str, Any]:
    return tomllib.loads(plant.read_text(encoding="utf-8"))


def with_rule(cfg: dict[str, Any], threshold: float = 0.8) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg["rules"] = [
        {
            "id": "trip-motor1",
            "signal": "motor1.anomaly_score",
            "op": ">",
            "threshold": threshold,
            "on_delay": "5s",
            "actions": [{"write": "drive1", "address": "co:10", "on": True}],
        }
    ]
    return cfg


def rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- put and get ----------------------------------------------------------------------------------


def test_put_is_idempotent_and_keeps_the_first_metadata(
    store: SnapshotStore, plant: Path, clock: FakeClock
) -> None:
    cfg = config_of(plant)
    files = read_model_files(cfg, plant.parent)
    first = store.put(cfg, files, author="eng1", message="first")
    clock.advance(60)
    again = store.put(copy.deepcopy(cfg), files, author="eng2", message="again")
    assert again == first
    assert (again.author, again.message, again.created) == ("eng1", "first", T0)
    assert [s.id for s in store.list()] == [first.id]
    assert rows(store.path, "blobs") == 2
    # a config taken from the snapshot needs no files: its package refs name stored blobs
    assert store.put(first.plant_config(), author="x", message="y").id == first.id

    second = store.put(
        with_rule(first.plant_config()), author="eng1", message="rule", parent=first.id
    )
    assert second.id != first.id and second.parent == first.id
    assert rows(store.path, "blobs") == 2  # same model: no new blob
    assert [s.id for s in store.list()] == [first.id, second.id]
    assert store.get(second.id) == second


def test_put_refuses_a_package_ref_whose_files_are_not_stored(
    store: SnapshotStore, plant: Path
) -> None:
    cfg = config_of(plant)
    s = make_snapshot(
        cfg, read_model_files(cfg, plant.parent), parent=None, author="a", message="m", created=0
    )
    with pytest.raises(
        SnapshotStoreError,
        match=r"model motor1_anomaly: its onnx file \(sha256 "
        r"[0-9a-f]{12}\) is not in the store",
    ):
        store.put(s.plant_config(), author="a", message="m")
    assert store.list() == []


def test_get_by_unique_prefix_and_clear_errors(store: SnapshotStore, plant: Path) -> None:
    base = config_of(plant)
    files = read_model_files(base, plant.parent)
    # find two configurations whose ids share their first 4 hex digits (pure, no I/O)
    seen: dict[str, float] = {}
    for n in range(20000):
        t = n / 10000
        sid = make_snapshot(
            with_rule(base, t), files, parent=None, author="", message="", created=0
        ).id
        if sid[:4] in seen:
            pair = (seen[sid[:4]], t)
            break
        seen[sid[:4]] = t
    a = store.put(with_rule(base, pair[0]), files, author="a", message="a")
    b = store.put(with_rule(base, pair[1]), files, author="b", message="b")
    assert a.id[:4] == b.id[:4] and a.id != b.id
    with pytest.raises(
        AmbiguousSnapshot,
        match=rf"{a.id[:4]} matches more than one snapshot "
        r"\(.*\); give more digits",
    ) as e:
        store.get(a.id[:4])
    assert a.id[:12] in str(e.value) and b.id[:12] in str(e.value)
    n = next(i for i in range(4, 64) if a.id[:i] != b.id[:i])
    assert store.get(a.id[:n]) == a
    assert store.get(b.id[:n].upper()) == b
    with pytest.raises(UnknownSnapshot, match=r"no snapshot 0000000 in .*snapshots.db"):
        store.get("0000000" if not a.id.startswith("0000000") else "fffffff")
    with pytest.raises(UnknownSnapshot, match=r"'line2' is not a snapshot id"):
        store.get("line2")
    with pytest.raises(AmbiguousSnapshot, match="too short; give at least 4"):
        store.get(a.id[:3])


# --- the activation log ---------------------------------------------------------------------------


def test_activations_active_and_at_across_a_restart(tmp_path: Path, plant: Path) -> None:
    data = tmp_path / "var"
    clock = FakeClock(wall=T0)
    with SnapshotStore.in_data_dir(data, clock=clock, boot="boot-1") as store:
        assert store.active() is None and store.at(T0) is None
        a = store.import_plant_file(plant, author="eng1", message="plant file").snapshot
        store.record_activation(a.id, Outcome.APPLIED, by="engine start")
        clock.advance(5)
        store.record_activation(a.id, "health-ok", by="engine")
        clock.advance(600)
        b = store.put(
            with_rule(a.plant_config(), 0.7), author="eng1", message="trip at 0.7", parent=a.id
        )
        store.record_activation(b.id, "applied", by="eng1", note="from the rules screen")
        clock.advance(5)
        store.record_activation(b.id, "health-ok", by="engine")
        clock.advance(600)
        c = store.put(
            with_rule(a.plant_config(), 0.1), author="eng2", message="too low", parent=b.id
        )
        store.record_activation(c.id, "applied", by="eng2")
        clock.advance(5)
        store.record_activation(
            c.id, "health-failed-rolled-back", by="engine", note="motor1_anomaly outputs BAD"
        )
        assert store.active().snapshot == b.id
        with pytest.raises(SnapshotStoreError, match="'switched' is not an outcome"):
            store.record_activation(a.id, "switched", by="x")
    # the box is off for an hour, then starts again: a new store, a new boot
    clock.advance(3600)
    with SnapshotStore.in_data_dir(data, clock=clock, boot="boot-2") as store:
        assert store.active().snapshot == b.id
        store.record_activation(a.id, "rolled-back", by="eng1", note="back to the plant file")
        log = store.activations()
        assert [r.seq for r in log] == list(range(1, 8))
        assert [r.outcome for r in log][-1] is Outcome.ROLLED_BACK
        assert {r.boot for r in log} == {"boot-1", "boot-2"}
        assert store.at(T0 - 1) is None
        assert store.at(T0).snapshot == a.id
        assert store.at(T0 + 300).snapshot == a.id
        mid_b = store.at(T0 + 900)
        assert (mid_b.snapshot, mid_b.since, mid_b.activation.note) == (
            b.id,
            T0 + 605,
            "from the rules screen",
        )
        assert store.at(T0 + 1212).snapshot == c.id  # on probation
        after = store.at(T0 + 1216)
        assert after.snapshot == b.id and after.activation.snapshot == c.id
        assert store.at(T0 + 1215 + 1800).snapshot == b.id  # the box was off: last known
        now = store.at(clock.wall())
        assert now.snapshot == a.id and now.activation.boot == "boot-2"
        assert store.active_snapshot() == a
        assert [r.outcome for r in store.activations(c.id[:8])] == [
            Outcome.APPLIED,
            Outcome.HEALTH_FAILED,
        ]


def test_the_activation_log_is_append_only(store: SnapshotStore, plant: Path) -> None:
    a = store.import_plant_file(plant, author="eng1", message="m").snapshot
    store.record_activation(a.id, "applied", by="engine")
    with sqlite3.connect(store.path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE activations SET outcome = 'rolled-back'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM activations")
        with pytest.raises(sqlite3.IntegrityError, match="never changes"):
            conn.execute("UPDATE snapshots SET message = 'rewritten'")
    assert store.verify() == []


def test_verify_finds_a_damaged_blob(store: SnapshotStore, plant: Path) -> None:
    a = store.import_plant_file(plant, author="eng1", message="m").snapshot
    store.record_activation(a.id, "applied", by="engine")
    sha = a.models["motor1_anomaly"].onnx_sha
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TRIGGER blobs_no_update")
        conn.execute("UPDATE blobs SET data = x'00' WHERE sha256 = ?", (sha,))
    assert store.verify() == [f"blob {sha[:12]}: content does not match its sha256"]


# --- plant files, materialize ---------------------------------------------------------------------


def test_import_plant_file_says_whether_it_was_new(store: SnapshotStore, plant: Path) -> None:
    first = store.import_plant_file(plant, author="eng1", message="plant file")
    assert first.new and first.snapshot.parent is None
    store.record_activation(first.snapshot.id, "applied", by="engine")
    again = store.import_plant_file(plant, author="eng1", message="plant file")
    assert not again.new and again.snapshot == first.snapshot
    plant.write_text(plant.read_text().replace('site = "Plant 3 / Line 2"', 'site = "L2"'))
    edited = store.import_plant_file(plant, author="eng1", message="edited")
    assert edited.new and edited.snapshot.parent == first.snapshot.id
    # a changed model file is a new snapshot too
    onnx = plant.parent / "models" / "motor_anomaly.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    assert store.import_plant_file(plant, author="eng1", message="model").new
    (plant.parent / "models" / "motor_anomaly.json").unlink()
    with pytest.raises(
        SnapshotStoreError,
        match=r"plant.toml: models\[0\]\.package: "
        r".*motor_anomaly.json not found",
    ):
        store.import_plant_file(plant, author="eng1", message="m")
    plant.write_text("[edge\n")
    with pytest.raises(SnapshotStoreError, match=r"plant.toml: not valid TOML"):
        store.import_plant_file(plant, author="eng1", message="m")


def test_materialize_writes_byte_identical_models_the_engine_loads(
    store: SnapshotStore, plant: Path, tmp_path: Path
) -> None:
    s = store.import_plant_file(plant, author="eng1", message="m").snapshot
    (plant.parent / "models" / "motor_anomaly.onnx").unlink()  # the store alone must do
    out = tmp_path / "var" / "models"
    cfg = store.materialize(s.short, out)
    pkg = Path(cfg["models"][0]["package"])
    ref = s.models["motor1_anomaly"]
    assert pkg == out.resolve() / ref.package_sha[:16] / "motor_anomaly"
    for suffix in (".onnx", ".json"):
        assert (pkg.parent / f"motor_anomaly{suffix}").read_bytes() == (
            MODELS / f"motor_anomaly{suffix}"
        ).read_bytes()
    plant_cfg = validate_plant(cfg, base_dir=plant.parent)
    model = load_package(plant_cfg.models[0].package)
    assert model.onnx_sha256 == s.models["motor1_anomaly"].onnx_sha
    assert model.sha256 == s.models["motor1_anomaly"].package_sha
    # materializing again (the files are there) leaves them alone and gives the same dict
    mtime = (pkg.parent / "motor_anomaly.onnx").stat().st_mtime_ns
    assert store.materialize(s.id, out) == cfg
    assert (pkg.parent / "motor_anomaly.onnx").stat().st_mtime_ns == mtime

    # an edit made in the console, materialized to be validated before it becomes a snapshot
    edited = s.plant_config()
    edited["signals"][0]["range"] = [0, 60]
    before = len(store.list())
    cfg2 = store.materialize_config(edited, out)
    assert cfg2["models"] == cfg["models"] and cfg2["signals"][0]["range"] == [0, 60]
    assert validate_plant(cfg2, base_dir=plant.parent).signals[0].range == (0.0, 60.0)
    assert len(store.list()) == before
    # a different model version lands beside it; the running one's files are not touched
    files = store.model_files(s)["motor1_anomaly"]
    doc = json.loads(files.sidecar)
    doc["version"] = "1.0.1"
    other = store.put(
        s.plant_config(),
        {"motor1_anomaly": ModelFiles(files.onnx, json.dumps(doc).encode())},
        author="eng1",
        message="model 1.0.1",
    )
    pkg2 = Path(store.materialize(other.id, out)["models"][0]["package"])
    assert pkg2.parent != pkg.parent and pkg2.name == "motor_anomaly"
    assert (pkg.parent / "motor_anomaly.json").read_bytes() == files.sidecar
    assert json.loads((pkg2.parent / "motor_anomaly.json").read_bytes())["version"] == "1.0.1"


# --- bundles --------------------------------------------------------------------------------------


def exported(store: SnapshotStore, plant: Path, tmp_path: Path, rule: bool = False):
    s = store.import_plant_file(plant, author="eng1", message="plant file").snapshot
    if rule:
        s = store.put(
            with_rule(s.plant_config(), 0.7), author="eng2", message="trip at 0.7", parent=s.id
        )
    folder = tmp_path / "bundle"
    store.export_bundle(s.id, folder)
    return s, folder


def test_export_import_round_trip_into_another_store(
    store: SnapshotStore, plant: Path, tmp_path: Path
) -> None:
    s, folder = exported(store, plant, tmp_path, rule=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["snapshot"] == {
        "id": s.id,
        "parent": s.parent,
        "author": "eng2",
        "message": "trip at 0.7",
        "created": T0,
    }
    assert sorted(manifest["files"]) == [
        "models/motor1_anomaly/motor_anomaly.json",
        "models/motor1_anomaly/motor_anomaly.onnx",
        "plant.toml",
    ]
    for name, sha in manifest["files"].items():
        assert sha256_hex((folder / name).read_bytes()) == sha
    doc = tomllib.loads((folder / "plant.toml").read_text())
    assert doc["models"][0]["package"] == "models/motor1_anomaly/motor_anomaly"
    assert doc["rules"][0]["threshold"] == 0.7

    with SnapshotStore(tmp_path / "other" / "snapshots.db") as other:
        result = other.import_bundle(folder)
        assert result.new and result.snapshot == s
        assert other.model_files(s.id) == store.model_files(s.id)
        assert not other.import_bundle(folder).new
    # importing into the store it came from changes nothing
    assert not store.import_bundle(folder).new


def test_an_exported_plant_file_is_accepted_by_run(
    store: SnapshotStore, plant: Path, tmp_path: Path
) -> None:
    s, folder = exported(store, plant, tmp_path)
    cfg = load_plant(folder / "plant.toml")
    assert cfg.models[0].package == folder / "models" / "motor1_anomaly" / "motor_anomaly"
    assert load_package(cfg.models[0].package).sha256 == s.models["motor1_anomaly"].package_sha
    assert [sig.id for sig in cfg.signals] == [sig["id"] for sig in config_of(plant)["signals"]]
    # and read back as a plant file on disk it is the same snapshot
    assert (
        store.import_plant_file(folder / "plant.toml", author="x", message="y").snapshot.id == s.id
    )
    with pytest.raises(SnapshotStoreError, match="not an empty folder"):
        store.export_bundle(s.id, folder)


def test_the_demo_plant_with_its_rules_exports_to_a_file_check_accepts(
    store: SnapshotStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from floorconsole.cli import main

    s = store.import_plant_file(PLANTS / "demo.toml", author="eng1", message="demo").snapshot
    plant = store.export_bundle(s.id, tmp_path / "demo-export")
    assert main(["check", str(plant)]) == 0, capsys.readouterr()
    assert load_plant(plant).raw["rules"] == config_of(PLANTS / "demo.toml").get("rules")


def _rewrite_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


ONNX = "models/motor1_anomaly/motor_anomaly.onnx"
SIDECAR = "models/motor1_anomaly/motor_anomaly.json"


def _flip_model_byte(folder: Path) -> None:
    p = folder / ONNX
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))


def _edit_plant(folder: Path) -> None:
    p = folder / "plant.toml"
    p.write_text(p.read_text().replace("threshold = 0.7", "threshold = 0.9"))


def _edit_plant_and_its_sha(folder: Path) -> None:
    _edit_plant(folder)
    sha = sha256_hex((folder / "plant.toml").read_bytes())
    _rewrite_manifest(folder, lambda d: d["files"].__setitem__("plant.toml", sha))


@pytest.mark.parametrize(
    ("tamper", "file", "says"),
    [
        (
            _flip_model_byte,
            ONNX,
            r"sha256 [0-9a-f]{12} does not match the manifest's [0-9a-f]{12}; "
            r"the file was changed after export",
        ),
        (_edit_plant, "plant.toml", "does not match the manifest's .*changed after export"),
        (
            _edit_plant_and_its_sha,
            "manifest.json",
            r"snapshot id [0-9a-f]{12} does not match the bundle's content \([0-9a-f]{12}\)",
        ),
        (
            lambda f: _rewrite_manifest(f, lambda d: d["snapshot"].__setitem__("id", "0" * 64)),
            "manifest.json",
            r"snapshot id 000000000000 does not match the bundle's content",
        ),
        (lambda f: (f / "manifest.json").unlink(), "manifest.json", "missing; a bundle is"),
        (lambda f: (f / SIDECAR).unlink(), SIDECAR, r"missing \(listed in manifest.json\)"),
        (
            lambda f: _rewrite_manifest(f, lambda d: d["files"].pop(SIDECAR)),
            SIDECAR,
            r"not listed in the manifest \(model motor1_anomaly's package\); the bundle is incomplete",
        ),
        (
            lambda f: (
                _rewrite_manifest(f, lambda d: d["files"].pop(SIDECAR)),
                (f / SIDECAR).unlink(),
            ),
            SIDECAR,
            r"missing \(model motor1_anomaly's package\)",
        ),
        (
            lambda f: _rewrite_manifest(
                f, lambda d: d["files"].__setitem__("../../etc/passwd", "0" * 64)
            ),
            "manifest.json",
            r"'../../etc/passwd' lies outside the bundle",
        ),
        (
            lambda f: (f / "manifest.json").write_text("{not json"),
            "manifest.json",
            "not a readable manifest",
        ),
    ],
)
def test_a_tampered_or_incomplete_bundle_is_refused_naming_the_file(
    store: SnapshotStore, plant: Path, tmp_path: Path, tamper, file: str, says: str
) -> None:
    _s, folder = exported(store, plant, tmp_path, rule=True)
    tamper(folder)
    with SnapshotStore(tmp_path / "other" / "snapshots.db") as other:
        with pytest.raises(BundleError) as e:
            other.import_bundle(folder)
        assert other.list() == []
    message = str(e.value)
    assert message.startswith(f"{folder / file}:"), message
    assert __import__("re").search(says, message), message
    assert "\n" not in message


# --- kill -9 --------------------------------------------------------------------------------------

CYCLES = 100


def _check_after_kill(db: Path, reported: list[str]) -> int:
    """The store a killed writer left: whole, holding all it reported, on one snapshot that
    the log agrees on. Returns the number of cycles complete (health-ok)."""
    with SnapshotStore(db) as store:
        assert store.verify() == []
        log = store.activations()
        assert [r.seq for r in log] == list(range(1, len(log) + 1))  # no half-written row
        by_id = {s.id: int(s.message.split()[1]) for s in store.list()}
        for line in reported:
            kind, i, sid = line.split()
            assert by_id[sid] == int(i)
            if kind in ("applied", "ok"):
                wanted = Outcome.APPLIED if kind == "applied" else Outcome.HEALTH_OK
                assert any(r.snapshot == sid and r.outcome is wanted for r in log), line
        cycles = [by_id[r.snapshot] for r in log]
        assert cycles == sorted(cycles)  # the log only moves forward
        ok = [by_id[r.snapshot] for r in log if r.outcome is Outcome.HEALTH_OK]
        done = max(ok, default=-1) + 1
        active = store.active()
        if active is None:
            assert not log
        else:
            # the old snapshot (last health-ok) or the new one (applied), never anything else
            assert active.snapshot == log[-1].snapshot
            assert by_id[active.snapshot] in (done - 1, done)
            snap = store.get(active.snapshot)
            assert snap.config["rules"] == cycle_config(by_id[snap.id])["rules"]
            files = store.model_files(snap)["m"]
            assert sha256_hex(files.onnx) == snap.models["m"].onnx_sha
        return done


@pytest.mark.slow
@pytest.mark.timeout(900)  # a loaded CI machine: the writer's start-up alone can take seconds
def test_kill_9_at_random_moments_leaves_old_or_new_and_a_consistent_log(tmp_path: Path) -> None:
    db = tmp_path / "snapshots.db"
    rng = random.Random(20261123)
    done, kills, runs = 0, 0, 0
    stalled = 0  # runs in a row that finished no cycle: on a busy machine, kill later
    finished = False
    while not finished:
        runs += 1
        assert runs < 200, "the writer makes no progress"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.snapshot_writer",
                str(db),
                "--start",
                str(done),
                "--cycles",
                str(CYCLES),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 20
            while "started\n" not in lines:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the writer did not start"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.08) * (1 + stalled))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
        finished = "done\n" in lines
        reported = [ln for ln in lines if ln.split()[0] in ("put", "applied", "ok")]
        before, done = done, _check_after_kill(db, reported)
        stalled = stalled + 1 if done == before else 0
    assert done == CYCLES
    assert kills >= 10, f"only {kills} kills landed"
