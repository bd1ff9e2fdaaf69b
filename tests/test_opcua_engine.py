"""OPC UA in the engine, against an asyncua server in another process: values with their
status and source timestamps into the frames and the historian (arrays as waveforms, text
BAD and saying why), a manual write with read-back and audit, a rule's write the server
refuses alarmed, and the server killed and restarted (BAD within the timeout, back with its
subscriptions recreated)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from floorconsole.console.views import Frame, SignalView
from floorconsole.core.config import parse_plant
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.runtime import Engine
from tests.test_opcua_source import ServerProc, free_port

TIMEOUT_S = 2.0


def plant_text(port: int, data: Path) -> str:
    return f"""
[edge]
id = "edge-ua"
data_dir = "{data}"

[control]
enabled = true

[[devices]]
id = "press2"
protocol = "opc-ua"
endpoint = "opc.tcp://127.0.0.1:{port}/"
publishing_interval = "100ms"
timeout = "{TIMEOUT_S}s"

[[signals]]
id = "press2.pressure"
device = "press2"
node = "ns=2;s=Plant.Double"
sampling_interval = "50ms"
unit = "bar"

[[signals]]
id = "press2.strokes"
device = "press2"
browse_path = "0:Plant/Int32"  # the test server names its nodes in namespace 0

[[signals]]
id = "press2.count"
device = "press2"
node = "ns=2;s=Plant.Int16"

[[signals]]
id = "press2.profile"
device = "press2"
node = "ns=2;s=Plant.Waveform"

[[signals]]
id = "press2.state"
device = "press2"
node = "ns=2;s=Plant.String"

[[rules]]
id = "clamp"
signal = "press2.pressure"
op = ">"
threshold = 100
actions = [{{ write = "press2", node = "ns=2;s=Plant.ReadOnly", on = 1 }}]
"""


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sig(frame: Frame, sid: str) -> SignalView:
    return next(s for s in frame.signals if s.id == sid)


@pytest.fixture
def ua_server() -> Iterator[ServerProc]:
    s = ServerProc(free_port()).start()
    yield s
    s.kill()


@pytest.fixture
def engine(ua_server: ServerProc, tmp_path: Path) -> Iterator[Engine]:
    plant = parse_plant(plant_text(ua_server.port, tmp_path / "data"), base_dir=tmp_path)
    e = open_engine(
        data_dir=plant.edge.data_dir, base_dir=tmp_path, user="test", plant_raw=plant.raw
    )
    e.start_background()
    try:
        yield e
    finally:
        e.stop()


def test_values_writes_and_a_server_restart(engine: Engine, ua_server: ServerProc) -> None:
    api = engine.api
    wait_for(lambda: sig(api.frame(), "press2.pressure").quality == "GOOD", what="GOOD")
    wait_for(lambda: sig(api.frame(), "press2.strokes").quality == "GOOD", what="browse path")
    f = api.frame()
    assert sig(f, "press2.pressure").value == pytest.approx(2.25)
    assert sig(f, "press2.strokes").value == -123456
    assert sig(f, "press2.profile").waveform == (0.0, 1.0, 0.0, -1.0)
    state = sig(f, "press2.state")
    assert state.quality == "BAD" and "text value" in state.detail
    assert sig(f, "press2.pressure").source == "press2 ns=2;s=Plant.Double"
    # The links screen counts what a subscription brings (no requests: it is not polled).
    from floorconsole.ui.screens.links import link_text

    ln = next(x for x in f.links if x.id == "press2")
    assert ln.messages >= 5, ln
    text = link_text(ln, {}).plain
    assert f"notifications {ln.messages:,}" in text and "requests" not in text, text

    # the server's status and source timestamp, as they are
    ua_server.send(set="Double", value=3.5, status="UncertainLastUsableValue", source_ts=1.8e9)
    wait_for(lambda: sig(api.frame(), "press2.pressure").quality == "UNCERTAIN", what="UNC")
    assert "UncertainLastUsableValue" in sig(api.frame(), "press2.pressure").detail
    engine.historian.flush()
    h = api.history("press2.pressure", 1.8e9 - 1, 1.8e9 + 1)
    assert [p.value for p in h.points] == [pytest.approx(3.5)]

    # a manual write: armed, confirmed, read back, audited
    engine.users().add("eng1", "engineer", "2222")
    eng = api.login("eng1", "2222")["session"]
    arm = api.command(
        "control.arm", session=eng, device="press2", address="ns=2;s=Plant.Int16", value=77
    )
    assert arm["ok"], arm
    r = api.command("control.write", session=eng, arm=arm["arm"])
    assert r["ok"] and r["before"] == -1234 and r["after"] == 77, r
    wait_for(lambda: sig(api.frame(), "press2.count").value == 77, what="written value")
    writes = api.audit(kind="write", limit=10)
    assert any(w["target"] == "press2 ns=2;s=Plant.Int16" for w in writes), writes
    bad = api.command("control.arm", session=eng, device="press2", address="ns=2;x=1", value=1)
    assert not bad["ok"] and "is not a NodeId" in bad["message"], bad

    # a rule writing to a node the server refuses: alarmed, with the server's word
    ua_server.send(set="Double", value=150.0)

    def refused() -> bool:
        return any(
            "press2 ns=2;s=Plant.ReadOnly" in a.id and "server refused the write" in a.text
            for a in api.frame().alarms
        )

    wait_for(refused, what=f"write_failed alarm in {api.frame().alarms}")

    # killed: BAD within the timeout; restarted: GOOD again, subscriptions recreated
    ua_server.send(set="Double", value=50.0)
    wait_for(lambda: sig(api.frame(), "press2.pressure").value == 50.0, what="50")
    ua_server.kill()
    t0 = time.monotonic()
    wait_for(lambda: sig(api.frame(), "press2.pressure").quality == "BAD", what="BAD")
    # the timeout, and a second of slack for a loaded machine
    assert time.monotonic() - t0 < TIMEOUT_S + 1.5
    assert sig(api.frame(), "press2.pressure").reason == "no communication"
    assert any(c.source == "press2" for c in api.frame().conditions)
    ua_server.start()
    wait_for(lambda: sig(api.frame(), "press2.pressure").quality == "GOOD", what="GOOD again")
    ua_server.send(set="Double", value=42.0)
    wait_for(lambda: sig(api.frame(), "press2.pressure").value == 42.0, what="new value")
    link = next(ln for ln in api.frame().links if ln.id == "press2")
    assert link.state == "up"
