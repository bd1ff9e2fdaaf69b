"""Decommissioning an edge on a mosquitto run with its dynamic security plugin: `fleet
decommission` deletes the edge's login, the broker drops it and refuses it from then on (not
authorised), the rollout command retained for it is cleared, a rollout naming it is refused,
and the fleet tool's own trail (`fleet audit`) has the step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from floorconsole.adapters.fleet import FleetClient
from floorconsole.adapters.fleet_trail import FleetTrail
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.cli.fleet import FleetError, rollout
from floorconsole.core.config import BrokerConfig
from tests.support.dynsec import PLUGIN, dynsec_broker, plugin_path
from tests.support.fleet import Edge, bundle, edge_plant, keys, settled, wait
from tests.test_fleet import poll_at, quiet

ROOT = Path(__file__).resolve().parents[1]


def cli(port: int, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floorconsole.cli", "fleet", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


def test_decommission_revokes_the_edge_login(
    tmp_path: Path,
    modbus_server_factory: Callable[..., ModbusDeviceServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = plugin_path()
    if plugin is None:
        pytest.fail(
            f"{PLUGIN} not found: decommissioning is tested against mosquitto's dynamic "
            "security plugin; install the Debian package mosquitto (it ships it)"
        )
    monkeypatch.setenv("EDGE_D_PW", "edge-secret")
    monkeypatch.setenv("FLEET_ADMIN_PW", "admin-secret")
    broker, folder = dynsec_broker(
        plugin, ("fleet-admin", "admin-secret"), {"edge-d": "edge-secret"}
    )
    private, trusted = keys(tmp_path / "keys")
    dev = modbus_server_factory()
    raw = edge_plant(
        "edge-d", dev.port, broker.port, trusted, site="h", tags=[], login=("edge-d", "EDGE_D_PW")
    )
    edge = Edge(tmp_path / "e", raw, dev)
    admin = BrokerConfig(
        id="plant",
        host="127.0.0.1",
        port=broker.port,
        username="fleet-admin",
        password_env="FLEET_ADMIN_PW",
    )
    client = FleetClient(admin, prefix="floorconsole/fleet")
    data = tmp_path / "tool"
    conn = ["--broker", f"127.0.0.1:{broker.port}", "--username", "fleet-admin"]
    conn += ["--password-env", "FLEET_ADMIN_PW"]
    login = [*conn, "--data-dir", str(data)]
    try:
        e = edge.start()
        settled()(edge)
        client.connect()
        wait(
            client,
            lambda s: "edge-d" in s.status and s.status["edge-d"].state == "online",
            "edge-d online with its own login",
        )
        before = edge.snapshot
        assert e.fleet is not None and e.fleet.link.connected

        done = cli(
            broker.port, data, "decommission", "edge-d", "--why", "moved", "--by", "ops", *login
        )
        assert done.returncode == 0, done.stderr
        # the broker dropped it and refuses its login from now on; its status says offline
        wait(client, lambda s: s.status["edge-d"].state == "offline", "edge-d shown offline")
        end = time.monotonic() + 30
        while "not authori" not in e.fleet.link.problem.lower() and time.monotonic() < end:
            time.sleep(0.1)
        assert "not authori" in e.fleet.link.problem.lower(), e.fleet.link.problem
        assert not e.fleet.link.connected
        again = FleetClient(
            BrokerConfig(
                id="plant",
                host="127.0.0.1",
                port=broker.port,
                username="edge-d",
                password_env="EDGE_D_PW",
            ),
            prefix="floorconsole/fleet",
        )
        with pytest.raises(ConnectionError, match="(?i)not authori"):
            again.connect(timeout=10)
        listed = cli(broker.port, data, "list", *conn)
        line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("edge-d"))
        assert "DECOM" in line, listed.stdout + listed.stderr
        # a rollout naming it is refused by the tool; nothing reaches the edge
        g1, _ = bundle(tmp_path / "g1", raw, private, message="poll 250", change=poll_at(250))
        with FleetTrail.in_dir(data) as records, pytest.raises(FleetError, match="decommissioned"):
            rollout(client, g1, canary=["edge-d"], waves=[], soak_s=0, say=quiet, records=records)
        with client.lock:
            assert "edge-d" not in client.state.commands
        assert edge.snapshot == before
        # the tool's trail
        audit = cli(broker.port, data, "audit", "--data-dir", str(data))
        assert audit.returncode == 0, audit.stderr
        assert "decommission" in audit.stdout and "decommissioned edge-d" in audit.stdout
        assert "by ops: moved" in audit.stdout, audit.stdout
    finally:
        client.close()
        edge.stop()
        broker.close()
        shutil.rmtree(folder, ignore_errors=True)
