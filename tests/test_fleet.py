"""The fleet on a real mosquitto: three real engines, each on its own simulated device, and the
fleet tool. Canary-first rollout reaches all three healthy; a canary failing its health check
stops the rollout with the others untouched; an edge offline during a rollout takes it on its
return; a failure in the second wave rolls back the edges already updated; `fleet at` answers.
Then signature refusals (audited), and the same essentials across two bridged brokers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from floorconsole.adapters.broker import MosquittoBroker
from floorconsole.adapters.fleet import FleetClient, pack_bundle
from floorconsole.adapters.modbus_server import ModbusDeviceServer
from floorconsole.cli.fleet import FleetError, rollout
from floorconsole.core.fleet import (
    FleetState,
    RolloutCommand,
    command_payload,
    parse_fleet,
    plan_waves,
    row_line,
)
from tests.support.fleet import Edge, bundle, edge_plant, keys, settled, tool, wait

ROOT = Path(__file__).resolve().parents[1]


def ghost_device(cfg: dict[str, Any]) -> None:
    """A device nobody answers: the health check fails on every edge."""
    cfg["devices"].append(
        {
            "id": "ghost",
            "protocol": "modbus-tcp",
            "host": "127.0.0.1",
            "port": 1,
            "timeout": "200ms",
        }
    )
    cfg["signals"].append({"id": "ghost.s", "device": "ghost", "address": "hr:0", "type": "uint16"})


def poll_at(ms: int) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        cfg["devices"][0]["poll"] = f"{ms}ms"

    return change


@pytest.fixture
def fleet3(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    modbus_server_factory: Callable[..., ModbusDeviceServer],
) -> Iterator[tuple[list[Edge], Path, Any]]:
    private, trusted = keys(tmp_path / "keys")
    edges = []
    for name, site, tags in (
        ("edge-a", "hall1", ["press"]),
        ("edge-b", "hall1", ["press", "night"]),
        ("edge-c", "hall2", ["press"]),
    ):
        dev = modbus_server_factory()
        raw = edge_plant(name, dev.port, mosquitto.port, trusted, site=site, tags=tags)
        edges.append(Edge(tmp_path / name, raw, dev))
    try:
        for e in edges:
            e.start()
        for e in edges:
            settled()(e)
        yield edges, private, mosquitto
    finally:
        for e in edges:
            e.stop()


def fleet_cli(port: int, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "floorconsole.cli", "fleet", *args, "--broker", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def all_online(names: list[str]) -> Callable[[FleetState], bool]:
    return lambda s: all(n in s.status and s.status[n].state == "online" for n in names)


def quiet(_line: str) -> None:
    pass


def sent_directly(client: FleetClient, edge: str, folder: Path, rid: str) -> str:
    """A bundle sent as a rollout command without the tool's own checks; the edge's answer."""
    cmd = RolloutCommand(rid, "apply", files=pack_bundle(folder), by="test", t=time.time())
    client.send(edge, command_payload(cmd))
    wait(
        client,
        lambda s: (
            edge in s.results
            and s.results[edge].rollout == rid
            and s.results[edge].state != "received"
        ),
        f"{edge}'s answer to {rid}",
    )
    with client.lock:
        r = client.state.results[edge]
    return f"{r.state}: {r.message}"


@pytest.mark.slow
def test_three_edges_canary_waves_offline_and_rollback(
    fleet3: tuple[list[Edge], Path, MosquittoBroker], tmp_path: Path
) -> None:
    edges, private, broker = fleet3
    a, b, c = edges
    names = [e.raw["edge"]["id"] for e in edges]
    client = tool(broker.port)
    try:
        wait(client, all_online(names), "three edges online")
        # the list, from the retained statuses, filtered by site
        listed = fleet_cli(broker.port, "list", "--site", "hall1")
        assert "edge-a" in listed and "edge-b" in listed and "edge-c" not in listed, listed

        # 1. canary first, then one edge per wave: all three healthy on the new snapshot
        g1, g1_id = bundle(tmp_path / "g1", a.raw, private, message="poll 250", change=poll_at(250))
        r1 = rollout(client, g1, canary=["edge-a"], waves=["1"], soak_s=1, timeout_s=60, say=quiet)
        assert r1.ok and r1.updated == names and r1.waves == [["edge-a"], ["edge-b"], ["edge-c"]]
        for e in edges:
            assert e.engine is not None
            assert e.engine.plant.devices[0].poll_s == 0.25
            assert e.engine.fleet is not None and e.engine.fleet.bundles[e.snapshot] == g1_id
        wait(
            client,
            lambda s: all(s.status[n].fleet_snapshot == g1_id for n in names),
            "statuses naming the bundle",
        )
        t_g1 = time.time()
        after_g1 = {e.raw["edge"]["id"]: e.snapshot for e in edges}
        time.sleep(1.1)

        # 2. a canary that fails its health check: stopped, it came back by itself, others untouched
        bad, _ = bundle(tmp_path / "bad", a.raw, private, message="ghost", change=ghost_device)
        r2 = rollout(
            client, bad, canary=["edge-a"], waves=["50%"], soak_s=1, timeout_s=60, say=quiet
        )
        assert not r2.ok and "canary" in r2.stopped and "edge-a" in r2.failed
        assert "rolled-back" in r2.failed["edge-a"]
        assert {e.raw["edge"]["id"]: e.snapshot for e in edges} == after_g1
        with client.lock:
            assert client.state.results["edge-b"].rollout == r1.rollout
            assert client.state.results["edge-c"].rollout == r1.rollout

        # 3. an edge offline during the rollout takes it when it returns
        c.stop()
        wait(client, lambda s: s.status["edge-c"].state == "offline", "edge-c offline")
        g2, g2_id = bundle(tmp_path / "g2", a.raw, private, message="poll 300", change=poll_at(300))
        r3 = rollout(client, g2, canary=["edge-a"], waves=["2"], soak_s=1, timeout_s=60, say=quiet)
        assert r3.ok and r3.updated == ["edge-a", "edge-b"] and r3.pending == ["edge-c"]
        c.start()
        wait(
            client,
            lambda s: (
                s.results["edge-c"].rollout == r3.rollout and s.results["edge-c"].state == "applied"
            ),
            "edge-c applying the retained command on its return",
        )
        assert c.engine is not None and c.engine.plant.devices[0].poll_s == 0.3
        after_g2 = {e.raw["edge"]["id"]: e.snapshot for e in edges}

        # 4. a failure in the second wave rolls back the edges already updated
        c.device.stop()  # edge-c's machine is off the network: its health check fails
        g3, _ = bundle(tmp_path / "g3", a.raw, private, message="poll 350", change=poll_at(350))
        r4 = rollout(client, g3, canary=["edge-a"], waves=["2"], soak_s=1, timeout_s=60, say=quiet)
        assert not r4.ok and "wave 1" in r4.stopped and "edge-c" in r4.failed
        assert sorted(r4.rolled_back) == ["edge-a", "edge-b"]
        assert {e.raw["edge"]["id"]: e.snapshot for e in edges} == after_g2
        for e in edges:
            assert e.engine is not None and e.engine.plant.devices[0].poll_s == 0.3

        # 5. which snapshot ran where, when: the bundle g1 on every edge at t_g1
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_g1 + 0.5))
        out = fleet_cli(broker.port, "at", iso)
        for name in names:
            line = next(ln for ln in out.splitlines() if ln.strip().startswith(name))
            assert after_g1[name][:12] in line and g1_id[:12] in line, out
        shown = fleet_cli(broker.port, "show", "edge-b")
        assert "activations" in shown and g1_id[:12] in shown, shown
    finally:
        client.close()


def test_signature_refusals_are_reported_and_audited(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    modbus_server_factory: Callable[..., ModbusDeviceServer],
) -> None:
    private, trusted = keys(tmp_path / "keys")
    dev = modbus_server_factory()
    edge = Edge(
        tmp_path / "e",
        edge_plant("edge-s", dev.port, mosquitto.port, trusted, site="x", tags=[]),
        dev,
    )
    edge.start()
    client = tool(mosquitto.port)
    try:
        settled()(edge)
        wait(client, all_online(["edge-s"]), "edge online")
        before = edge.snapshot
        # changed after signing
        changed, _ = bundle(tmp_path / "b1", edge.raw, private, message="x", change=poll_at(400))
        plant = changed / "plant.toml"
        plant.write_text(plant.read_text().replace('"400ms"', '"50ms"'))
        # the tool itself refuses to send it...
        with pytest.raises(FleetError, match="changed after export"):
            rollout(client, changed, canary=["edge-s"], waves=[], soak_s=0, say=quiet)
        # ...and the edge refuses it when another tool sends it anyway
        why = sent_directly(client, "edge-s", changed, "r-changed")
        assert why.startswith("refused") and "changed after signing" in why, why
        # signed by a key the edge does not trust
        other, _ = keys(tmp_path / "other")
        untrusted, _ = bundle(tmp_path / "b2", edge.raw, other, message="y", change=poll_at(450))
        r = rollout(
            client, untrusted, canary=["edge-s"], waves=[], soak_s=0, timeout_s=30, say=quiet
        )
        assert not r.ok and "not trust" in r.failed["edge-s"], r.failed
        assert edge.snapshot == before
        assert edge.engine is not None
        refused = edge.engine.audit_log().query(kind="refused")
        whys = [str(rec["detail"]) for rec in refused if "fleet rollout" in rec["target"]]
        assert any("changed after signing" in w for w in whys) and any(
            "not trust" in w for w in whys
        )
    finally:
        client.close()
        edge.stop()


@pytest.mark.slow
def test_bridged_brokers(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    modbus_server_factory: Callable[..., ModbusDeviceServer],
) -> None:
    """Edges on one broker, the tool on another bridged to it: list, rollout, rollback, at."""
    remote = MosquittoBroker(
        extra=(
            "connection edges\n"
            f"address 127.0.0.1:{mosquitto.port}\n"
            "topic floorconsole/fleet/# both 1\n"
            "cleansession true\n"
        )
    ).start()
    private, trusted = keys(tmp_path / "keys")
    edges = []
    for name in ("edge-x", "edge-y"):
        dev = modbus_server_factory()
        raw = edge_plant(name, dev.port, mosquitto.port, trusted, site="far", tags=[])
        edges.append(Edge(tmp_path / name, raw, dev))
    client = None
    try:
        for e in edges:
            e.start()
        for e in edges:
            settled()(e)
        client = tool(remote.port)
        wait(client, all_online(["edge-x", "edge-y"]), "edges seen across the bridge")
        g1, g1_id = bundle(tmp_path / "g1", edges[0].raw, private, message="p", change=poll_at(250))
        r = rollout(client, g1, canary=["edge-x"], waves=["1"], soak_s=1, timeout_s=60, say=quiet)
        assert r.ok and r.updated == ["edge-x", "edge-y"], r
        t_g1 = time.time()
        time.sleep(1.1)
        edges[1].device.stop()
        g2, _ = bundle(tmp_path / "g2", edges[0].raw, private, message="q", change=poll_at(300))
        r = rollout(client, g2, canary=["edge-x"], waves=["1"], soak_s=1, timeout_s=60, say=quiet)
        assert not r.ok and r.rolled_back == ["edge-x"], r
        assert all(e.engine is not None and e.engine.plant.devices[0].poll_s == 0.25 for e in edges)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_g1 + 0.5))
        out = fleet_cli(remote.port, "at", iso)
        assert out.count(f"(bundle {g1_id[:12]})") == 2, out
    finally:
        if client is not None:
            client.close()
        for e in edges:
            e.stop()
        remote.close()


def test_waves_and_fleet_table() -> None:
    assert plan_waves(["a", "b", "c", "d", "e"], ["c"], ["1", "50%"]) == [
        ["c"],
        ["a"],
        ["b", "d"],
        ["e"],
    ]
    with pytest.raises(ValueError, match="canary z"):
        plan_waves(["a"], ["z"], [])
    with pytest.raises(ValueError, match="neither a count"):
        plan_waves(["a", "b"], ["a"], ["half"])
    cfg, problems = parse_fleet(
        {"broker": "nope"}, {"plant"}, default_broker=None, base_dir=Path(".")
    )
    assert cfg is None and "not a broker" in problems[0].message
    state = FleetState()
    assert state.apply("floorconsole/fleet/e1/status", b"{not json") is None
    assert state.bad_messages == 1 and "not JSON" in state.last_problem


def test_a_silent_edge_reads_stale_not_online() -> None:
    state = FleetState()
    old = time.time() - 100
    for name, t in (("quiet", old), ("fresh", time.time())):
        doc = {"edge": name, "state": "online", "t": t, "every": 10, "site": "h"}
        assert state.apply(f"floorconsole/fleet/{name}/status", json.dumps(doc).encode()) == name
    rows = {r.edge: r for r in state.rows()}
    assert rows["quiet"].stale and not rows["fresh"].stale
    assert "STALE" in row_line(rows["quiet"], time.time())
    assert "online" in row_line(rows["fresh"], time.time())
