"""mosquitto with its dynamic security plugin for tests: the plugin found on this machine, and
a dynamic-security.json written by hand (the plugin's own PBKDF2-SHA512 password form)."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from floorconsole.adapters.broker import MosquittoBroker

PLUGIN = "mosquitto_dynamic_security.so"
# Debian/Ubuntu's package `mosquitto` puts it in the multiarch lib folder; others in lib(64).
_WHERE = (
    "/usr/lib/*-linux-gnu/" + PLUGIN,
    "/usr/lib/" + PLUGIN,
    "/usr/lib64/" + PLUGIN,
    "/usr/local/lib/" + PLUGIN,
    "/usr/lib/mosquitto/" + PLUGIN,
    "/usr/local/lib/mosquitto/" + PLUGIN,
)


def plugin_path() -> Path | None:
    for pattern in _WHERE:
        for hit in sorted(glob.glob(pattern)):
            return Path(hit)
    return None


def _client(username: str, password: str, roles: list[str]) -> dict[str, object]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {
        "username": username,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": 101,
        "roles": [{"rolename": r} for r in roles],
    }


def dynsec_broker(
    plugin: Path, admin: tuple[str, str], clients: dict[str, str]
) -> tuple[MosquittoBroker, Path]:
    """A started mosquitto whose logins are the plugin's: `admin` (username, password) may use
    its control topics; `clients` (username -> password) are ordinary logins. Every login may
    publish and subscribe anywhere (default ACL access), so the fleet runs as without it.
    Its folder is world-writable: mosquitto started as root reads and saves the file as its own
    user. Returns the broker and that folder (remove it after closing the broker)."""
    acls = [
        {"acltype": t, "topic": "$CONTROL/dynamic-security/#", "allow": True}
        for t in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    doc = {
        "clients": [_client(*admin, ["admin"])] + [_client(u, p, []) for u, p in clients.items()],
        "groups": [],
        "roles": [{"rolename": "admin", "acls": acls}],
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": True,
            "unsubscribe": True,
        },
    }
    folder = Path(tempfile.mkdtemp(prefix="floorconsole-dynsec-"))
    folder.chmod(0o777)
    conf = folder / "dynamic-security.json"
    conf.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    conf.chmod(0o666)
    broker = MosquittoBroker(extra=f"plugin {plugin}\nplugin_opt_config_file {conf}\n")
    try:
        return broker.start(), folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
