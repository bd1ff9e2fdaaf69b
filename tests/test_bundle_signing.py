"""Signed snapshot bundles: a bundle signed by a trusted key is taken; unsigned, signed by an
untrusted key, a manifest or a file changed after signing, each refused naming why."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from floorconsole.adapters.bundle_signing import (
    SignatureError,
    generate_key,
    load_private,
    load_trusted,
    sign_bundle,
    verify_bundle,
)
from floorconsole.adapters.snapshot_store import BundleError, SnapshotStore
from tests.test_snapshot_store import T0, FakeClock, demo_plant_without_rules, exported


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[str, Path]:
    plant = demo_plant_without_rules(tmp_path / "site")
    with SnapshotStore.in_data_dir(tmp_path / "var", clock=FakeClock(wall=T0), boot="b") as s:
        snap, folder = exported(s, plant, tmp_path)
    return snap.id, folder


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "keys"
    d.mkdir()
    generate_key(d / "ops.pem", d / "ops.pub")
    generate_key(d / "other.pem", d / "other.pub")
    return {"ops": d / "ops.pem", "ops_pub": d / "ops.pub", "other": d / "other.pem"}


def test_a_bundle_signed_by_a_trusted_key_is_taken(bundle, keys) -> None:  # type: ignore[no-untyped-def]
    snap_id, folder = bundle
    assert stat.S_IMODE(keys["ops"].stat().st_mode) == 0o600
    sig = sign_bundle(folder, load_private(keys["ops"]), "fleet:eng1")
    trusted = load_trusted([keys["ops_pub"]])
    check = verify_bundle(folder, trusted)
    assert check.snapshot == snap_id and check.signer == "fleet:eng1"
    assert check.key_id == sig["key_id"] and check.trusted_as == str(keys["ops_pub"])


def test_refusals_name_what_is_wrong(bundle, keys) -> None:  # type: ignore[no-untyped-def]
    _snap, folder = bundle
    trusted = load_trusted([keys["ops_pub"]])
    with pytest.raises(SignatureError, match="missing; this edge takes signed bundles only"):
        verify_bundle(folder, trusted)
    sign_bundle(folder, load_private(keys["other"]), "someone")
    with pytest.raises(SignatureError, match="which this edge does not trust"):
        verify_bundle(folder, trusted)
    sign_bundle(folder, load_private(keys["ops"]), "fleet:eng1")
    # a file changed after signing: the manifest still verifies, the file does not match it
    plant = folder / "plant.toml"
    plant.write_text(plant.read_text().replace("Plant", "Plamt", 1))
    with pytest.raises(BundleError, match="plant.toml: sha256 .* changed after export"):
        verify_bundle(folder, trusted)


def test_a_manifest_changed_after_signing_is_refused(bundle, keys) -> None:  # type: ignore[no-untyped-def]
    _snap, folder = bundle
    sign_bundle(folder, load_private(keys["ops"]), "fleet:eng1")
    m = folder / "manifest.json"
    doc = json.loads(m.read_text())
    doc["snapshot"]["message"] = "something else"
    m.write_text(json.dumps(doc, indent=2) + "\n")
    with pytest.raises(SignatureError, match="changed after it was signed by fleet:eng1"):
        verify_bundle(folder, load_trusted([keys["ops_pub"]]))


def test_keys_that_are_not_keys_are_named(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(SignatureError, match="junk.pub: not a readable public key"):
        load_trusted([junk])
    with pytest.raises(SignatureError, match="ops.pub: not a readable Ed25519 private key"):
        load_private(keys["ops_pub"])
    with pytest.raises(FileExistsError):
        generate_key(keys["ops"], tmp_path / "x.pub")  # never overwrites a private key
