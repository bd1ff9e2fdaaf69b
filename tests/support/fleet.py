"""Fleet test parts: an edge engine (its own simulated Modbus device, [fleet] on a given broker),
signed bundles made from a plant dict, and a fleet tool client."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from floorconsole.adapters.bundle_signing import generate_key, load_private, sign_bundle
from floorconsole.adapters.fleet import FleetClient
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.adapters.snapshot_store import SnapshotStore
from floorconsole.core.config import BrokerConfig
from floorconsole.core.fleet import FleetState
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.runtime import Engine

HEALTH_WINDOW_S = 3.0


def keys(folder: Path) -> tuple[Path, Path]:
    """(the signer's private key, the edges' trusted-keys folder holding its public key)."""
    trusted = folder / "trusted"
    trusted.mkdir(parents=True)
    generate_key(folder / "ops.pem", trusted / "ops.pub")
    return folder / "ops.pem", trusted


def edge_plant(
    edge: str,
    device_port: int,
    broker_port: int,
    trusted: Path,
    *,
    site: str,
    tags: list[str],
    remote_apply: str = "auto",
    login: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An edge's plant file; remote_apply "auto" unless told (the fleet tests roll out without
    an engineer at each edge); login: (username, the variable holding its password)."""
    broker: dict[str, Any] = {"id": "plant", "host": "127.0.0.1", "port": broker_port}
    if login is not None:
        broker["username"], broker["password_env"] = login
    return {
        "edge": {"id": edge, "site": site, "tags": tags},
        "brokers": [broker],
        "devices": [
            {
                "id": "dev",
                "protocol": "modbus-tcp",
                "host": "127.0.0.1",
                "port": device_port,
                "poll": "200ms",
                "timeout": "300ms",
                "retries": 0,
            }
        ],
        "signals": [
            {"id": "press.s0", "device": "dev", "address": "hr:0", "type": "uint16"},
            {"id": "press.s1", "device": "dev", "address": "hr:1", "type": "uint16"},
        ],
        "fleet": {
            "broker": "plant",
            "trusted_keys": str(trusted),
            "status_interval": "1s",
            "remote_apply": remote_apply,
        },
    }


class Edge:
    """An engine on its own simulated device, started and stopped by the test."""

    def __init__(self, folder: Path, raw: dict[str, Any], device: ModbusDeviceServer) -> None:
        self.folder, self.raw, self.device = folder, raw, device
        self.engine: Engine | None = None

    def start(self) -> Engine:
        self.engine = open_engine(
            data_dir=self.folder / "data",
            base_dir=self.folder,
            user="test",
            plant_raw=self.raw,
            source="fleet test plant",
            health_window_s=HEALTH_WINDOW_S,
            attach=False,
        )
        self.engine.start_background()
        return self.engine

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    @property
    def snapshot(self) -> str:
        assert self.engine is not None
        return self.engine.snapshots.active.id


def bundle(
    folder: Path, plant: dict[str, Any], private: Path, *, message: str, change: Callable[..., Any]
) -> tuple[Path, str]:
    """A signed bundle of plant changed by change(config); returns (folder, snapshot id)."""
    config = copy.deepcopy(plant)
    change(config)
    with SnapshotStore.in_data_dir(folder / "store") as store:
        snap = store.put(config, {}, author="eng1", message=message)
        out = folder / f"bundle-{snap.short}"
        store.export_bundle(snap.id, out)
    sign_bundle(out, load_private(private), "eng1")
    return out, snap.id


def tool(port: int) -> FleetClient:
    c = FleetClient(
        BrokerConfig(id="plant", host="127.0.0.1", port=port), prefix="floorconsole/fleet"
    )
    c.connect()
    return c


def wait(
    client: FleetClient, pred: Callable[[FleetState], bool], what: str, timeout: float = 30
) -> None:
    if not client.wait_for(pred, timeout):
        with client.lock:
            st = {e: (s.state, s.snapshot[:12]) for e, s in client.state.status.items()}
            rs = {e: (r.rollout, r.state, r.message) for e, r in client.state.results.items()}
        raise AssertionError(f"{what} within {timeout} s; status {st}; results {rs}")


def settled(deadline_s: float = 30.0) -> Callable[[Edge], None]:
    """Wait until an edge's start-up health check is done."""

    def check(edge: Edge) -> None:
        assert edge.engine is not None
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if any(
                a.outcome.value == "health-ok" for a in edge.engine.snapshots.store.activations()
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"{edge.raw['edge']['id']} never healthy")

    return check


def hold_change(engine: Engine, rollout: str) -> str:
    """A remote change held on an engine as with remote_apply "confirm", naming the snapshot it
    runs (accepting it changes nothing); the engine joins a fleet whose broker it never
    reaches when it is in none. For tests of the commands alone (the role matrix)."""
    from floorconsole.adapters.fleet import FleetLink
    from floorconsole.core.fleet import FleetConfig, PendingChange
    from floorconsole.engine.fleet import FleetAgent

    if engine.fleet is None:
        link = FleetLink(
            BrokerConfig(id="plant", host="127.0.0.1", port=1), prefix="t", edge="matrix"
        )
        engine.fleet = FleetAgent(engine, FleetConfig(broker="plant"), link)
    engine.fleet.pending = PendingChange(
        rollout, "apply", engine.snapshots.active.id, "matrix", time.time()
    )
    return rollout
