"""`floorconsole opcua browse` against an asyncua server in another process: the tree with
types and values, the plant-file lines for the nodes picked (which `check` accepts), and
clear messages for a node that is not there and a server that is not there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from floorconsole.cli import main
from floorconsole.core.config import parse_plant
from tests.test_opcua_source import ServerProc, free_port


@pytest.fixture(scope="module")
def ua_server() -> Iterator[ServerProc]:
    s = ServerProc(free_port()).start()
    yield s
    s.kill()


def test_the_tree_with_types_and_values(
    ua_server: ServerProc, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = f"opc.tcp://127.0.0.1:{ua_server.port}/"
    assert main(["opcua", "browse", ep]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Objects  i=85"
    assert "└─ Plant  ns=2;s=Plant" in out
    assert "   ├─ Double  ns=2;s=Plant.Double  Double  2.25" in out
    assert "   ├─ Waveform  ns=2;s=Plant.Waveform  Double[]  [0.0, 1.0, 0.0, -1.0]" in out
    assert not any("[[signals]]" in line for line in out)  # nothing picked, nothing to paste


def test_picked_nodes_give_lines_the_plant_file_takes(
    ua_server: ServerProc, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ep = f"opc.tcp://127.0.0.1:{ua_server.port}/"
    argv = ["opcua", "browse", ep, "--device", "press2"]
    assert main([*argv, "--pick", "ns=2;s=Plant.Double", "--pick", "ns=2;s=Plant.Int16"]) == 0
    out = capsys.readouterr().out
    assert "Objects" not in out  # picked: just the lines
    text = '[edge]\nid = "e"\n' + out
    plant = parse_plant(text, base_dir=tmp_path)
    assert [s.id for s in plant.signals] == ["press2.double", "press2.int16"]
    (dev,) = plant.opcua_devices
    assert dev.endpoint == ep
    # NODE and no pick: the lines for every variable under it
    assert main(["opcua", "browse", ep, "ns=2;s=Plant", "--device", "press2", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("[[signals]]") == 16 and 'id = "press2.readonly"' in out


def test_a_missing_node_and_a_missing_server_say_so(
    ua_server: ServerProc, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = f"opc.tcp://127.0.0.1:{ua_server.port}/"
    assert main(["opcua", "browse", ep, "ns=2;s=Nope"]) == 1
    assert "ns=2;s=Nope: BadNodeIdUnknown" in capsys.readouterr().err
    assert main(["opcua", "browse", ep, "ns=2;q=1"]) == 2
    assert "is not a NodeId" in capsys.readouterr().err
    gone = f"opc.tcp://127.0.0.1:{free_port()}/"
    assert main(["opcua", "browse", gone, "--timeout", "1"]) == 1
    assert "cannot connect" in capsys.readouterr().err
