"""Signed snapshot bundles for the fleet: Ed25519 (the `cryptography` package) over the bundle's
manifest, which lists the sha256 of every file and the snapshot id, so one signature covers
the whole bundle.

    keys:       PRIVATE.pem (PKCS#8, mode 0600) and PUBLIC.pem; a key's id is the first 16 hex
                digits of the sha256 of its raw public bytes
    signature:  signature.json beside manifest.json:
                {"algorithm": "ed25519", "key_id": ID, "signer": NAME, "signed_at": EPOCH_S,
                 "manifest_sha256": HEX, "signature": BASE64}

An edge accepts a bundle only when it is signed by a key in its `[fleet] trusted_keys`, the
signature verifies over the manifest as it is, and every file matches the manifest
(snapshot_store.read_bundle). Each refusal names what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from floorconsole.adapters.snapshot_store import BUNDLE_MANIFEST, BundleError, read_bundle

SIGNATURE_FILE = "signature.json"
ALGORITHM = "ed25519"


class SignatureError(BundleError):
    """A bundle refused for its signature: unsigned, untrusted key, or changed after signing."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    name: str  # where it came from (the file), for messages
    public: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    snapshot: str
    key_id: str
    signer: str
    trusted_as: str


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: Path, public_path: Path) -> str:
    """A new signing key pair; the private file is created 0600 and never overwritten.
    Returns the key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_id(public)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise SignatureError(f"{path}: not a readable Ed25519 private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(
            f"{path}: an Ed25519 private key is expected, not {type(key).__name__}"
        )
    return key


def load_trusted(paths: Iterable[Path]) -> dict[str, TrustedKey]:
    """The keys an edge trusts, by id; a file that is not an Ed25519 public key is an error
    naming it (a plant file that names it is wrong)."""
    out: dict[str, TrustedKey] = {}
    for p in paths:
        try:
            key = serialization.load_pem_public_key(Path(p).read_bytes())
        except (OSError, ValueError) as e:
            raise SignatureError(f"{p}: not a readable public key ({e})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(
                f"{p}: an Ed25519 public key is expected, not {type(key).__name__}"
            )
        kid = key_id(key)
        out[kid] = TrustedKey(kid, str(p), key)
    return out


def sign_bundle(folder: Path, private: Ed25519PrivateKey, signer: str) -> dict[str, object]:
    """Check the bundle, then write signature.json over its manifest as it is now."""
    read_bundle(folder)  # a bundle that does not match its own manifest is not signed
    manifest = (Path(folder) / BUNDLE_MANIFEST).read_bytes()
    sig = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private.public_key()),
        "signer": signer,
        "signed_at": round(time.time(), 3),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(private.sign(manifest)).decode("ascii"),
    }
    (Path(folder) / SIGNATURE_FILE).write_text(json.dumps(sig, indent=2) + "\n", encoding="utf-8")
    return sig


def verify_bundle(folder: Path, trusted: dict[str, TrustedKey]) -> SignatureCheck:
    """Whether an edge may take this bundle: signed, by a trusted key, over this manifest, and
    every file as the manifest says. Raises SignatureError (or BundleError for a file) naming
    what is wrong."""
    root = Path(folder)
    sig_path = root / SIGNATURE_FILE
    if not sig_path.is_file():
        raise SignatureError(f"{sig_path}: missing; this edge takes signed bundles only")
    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        algorithm, kid = sig["algorithm"], str(sig["key_id"])
        signature = base64.b64decode(sig["signature"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SignatureError(f"{sig_path}: not a readable signature ({e})") from None
    if algorithm != ALGORITHM:
        raise SignatureError(f"{sig_path}: algorithm {algorithm!r}; this edge verifies {ALGORITHM}")
    key = trusted.get(kid)
    if key is None:
        raise SignatureError(
            f"{sig_path}: signed by key {kid} ({sig.get('signer', '?')}), which this edge does "
            f"not trust ([fleet] trusted_keys has {', '.join(sorted(trusted)) or 'none'})"
        )
    manifest_path = root / BUNDLE_MANIFEST
    try:
        manifest = manifest_path.read_bytes()
    except OSError as e:
        raise SignatureError(f"{manifest_path}: cannot be read ({e})") from None
    try:
        key.public.verify(signature, manifest)
    except InvalidSignature:
        raise SignatureError(
            f"{manifest_path}: changed after it was signed by {sig.get('signer', kid)} "
            "(the signature does not verify)"
        ) from None
    _plant, _models, meta = read_bundle(root)  # each file against the signed manifest
    return SignatureCheck(str(meta.get("id", "")), kid, str(sig.get("signer", "")), key.name)
