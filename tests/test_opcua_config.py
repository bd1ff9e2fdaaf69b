"""`protocol = "opc-ua"` in the plant file: a good one parses to what the engine runs, and
`floorconsole check` names every OPC UA mistake by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from floorconsole.cli import main
from floorconsole.core.config import PlantError, parse_plant
from floorconsole.core.opcua import OpcUaDeviceConfig, OpcUaNodePoint, parse_browse_path
from floorconsole.core.rules import WriteAction

GOOD = """
[edge]
id = "edge1"

[control]
enabled = true

[[devices]]
id = "drive1"
protocol = "modbus-tcp"
host = "127.0.0.1"

[[devices]]
id = "press2"
protocol = "opc-ua"
endpoint = "opc.tcp://10.0.0.5:4840/press2"
security = "Basic256Sha256-SignAndEncrypt"
certificate = "pki/client.der"
private_key = "pki/client.pem"
server_certificate = "pki/server.der"
username = "floor"
password_env = "PRESS2_PASSWORD"
publishing_interval = "250ms"
timeout = "3s"

[[signals]]
id = "press2.pressure"
device = "press2"
node = "ns=2;s=Line2.Press.Pressure"
sampling_interval = "50ms"
queue_size = 20
unit = "bar"

[[signals]]
id = "press2.strokes"
device = "press2"
browse_path = "2:Line2/2:Press/2:Strokes"

[[signals]]
id = "motor1.current"
device = "drive1"
address = "hr:0"
type = "uint16"

[[rules]]
id = "clamp"
signal = "press2.pressure"
op = ">"
threshold = 250
actions = [{ write = "press2", node = "ns=2;s=Line2.Press.Stop", on = true, off = false }]
"""


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    (tmp_path / "pki").mkdir()
    for name in ("client.der", "client.pem", "server.der"):
        (tmp_path / "pki" / name).write_bytes(b"x")
    (tmp_path / "pki" / "trusted").mkdir()
    return tmp_path


def test_a_good_opcua_device_parses_to_what_the_engine_runs(pki: Path) -> None:
    plant = parse_plant(GOOD, base_dir=pki)
    (dev,) = plant.opcua_devices
    assert dev == OpcUaDeviceConfig(
        id="press2",
        endpoint="opc.tcp://10.0.0.5:4840/press2",
        security="Basic256Sha256-SignAndEncrypt",
        certificate=pki / "pki/client.der",
        private_key=pki / "pki/client.pem",
        server_certificate=pki / "pki/server.der",
        username="floor",
        password_env="PRESS2_PASSWORD",
        publishing_s=0.25,
        timeout_s=3.0,
    )
    assert [d.id for d in plant.devices] == ["drive1"]  # the Modbus pollers' list
    p, s = (x.source for x in plant.signals_of_opcua("press2"))
    assert p == OpcUaNodePoint("press2", "ns=2;s=Line2.Press.Pressure", (), 0.05, 20)
    assert s == OpcUaNodePoint("press2", "", ("2:Line2", "2:Press", "2:Strokes"), 0.1, 10)
    (action,) = plant.rules[0].actions
    assert isinstance(action, WriteAction)
    assert action.target == "press2 ns=2;s=Line2.Press.Stop" and action.off is False


def test_browse_paths_take_a_namespace_or_zero() -> None:
    assert parse_browse_path("/Objects2/2:Press") == ("0:Objects2", "2:Press")
    with pytest.raises(ValueError, match="browse path"):
        parse_browse_path("")


MISTAKES = [
    # (what is changed in GOOD, key path, words of the message)
    (
        ('node = "ns=2;s=Line2.Press.Pressure"', 'node = "ns=2;q=Pressure"'),
        "signals[0].node",
        "is not a NodeId",
    ),
    (
        ('node = "ns=2;s=Line2.Press.Pressure"', 'node = "ns=2;i=12x"'),
        "signals[0].node",
        "numeric identifier",
    ),
    (
        ('certificate = "pki/client.der"\n', ""),
        "devices[1].certificate",
        "needs the client's certificate",
    ),
    (
        ('private_key = "pki/client.pem"', 'private_key = "pki/nothere.pem"'),
        "devices[1].private_key",
        "no such file",
    ),
    (
        ('endpoint = "opc.tcp://10.0.0.5:4840/press2"', 'endpoint = "http://10.0.0.5/"'),
        "devices[1].endpoint",
        "expected opc.tcp://HOST",
    ),
    (
        ('security = "Basic256Sha256-SignAndEncrypt"', 'security = "Basic128Rsa15"'),
        "devices[1].security",
        "is not one of None, Basic256Sha256-Sign",
    ),
    (
        ('password_env = "PRESS2_PASSWORD"\n', ""),
        "devices[1].password_env",
        "a username needs password_env",
    ),
    (
        ('password_env = "PRESS2_PASSWORD"', 'password_env = "PRESS2 PASSWORD"'),
        "devices[1].password_env",
        "is not an environment variable name",
    ),
    (
        ('sampling_interval = "50ms"', 'sampling_interval = "often"'),
        "signals[0].sampling_interval",
        "",
    ),
    (("queue_size = 20", "queue_size = 0"), "signals[0].queue_size", "expected 1 to 10000"),
    (
        ('browse_path = "2:Line2/2:Press/2:Strokes"', 'browse_path = "2:Line2//2:Strokes"'),
        "signals[1].browse_path",
        "is not a browse name",
    ),
    (
        ('browse_path = "2:Line2/2:Press/2:Strokes"', 'address = "hr:3"'),
        "signals[1].address",
        "unknown key",
    ),
    (
        ('node = "ns=2;s=Line2.Press.Stop"', 'node = "Stop"'),
        "rules[0].actions[0].node",
        "is not a NodeId",
    ),
    (("on = true", 'on = "yes"'), "rules[0].actions[0].on", "expected a number or true/false"),
    (('timeout = "3s"', 'timeout = "10ms"'), "devices[1].timeout", "too short"),
    (
        ('browse_path = "2:Line2/2:Press/2:Strokes"', 'node = "ns=2;s=Line2.Press.Pressure"'),
        "signals[1].node",
        "is already read by 'press2.pressure'",
    ),
    (
        ('server_certificate = "pki/server.der"', 'trusted_dir = "pki/nope"'),
        "devices[1].trusted_dir",
        "no such folder",
    ),
]


@pytest.mark.parametrize(("change", "path", "words"), MISTAKES)
def test_each_opcua_mistake_is_named_by_its_key_path(
    pki: Path, change: tuple[str, str], path: str, words: str
) -> None:
    assert change[0] in GOOD
    with pytest.raises(PlantError) as e:
        parse_plant(GOOD.replace(change[0], change[1]), base_dir=pki)
    found = [str(p) for p in e.value.problems]
    assert any(p.startswith(f"{path}:") and words in p for p in found), found


def test_security_none_with_a_certificate_is_a_mistake(pki: Path) -> None:
    text = GOOD.replace('"Basic256Sha256-SignAndEncrypt"', '"None"')
    with pytest.raises(PlantError) as e:
        parse_plant(text, base_dir=pki)
    paths = {p.path for p in e.value.problems}
    assert {"devices[1].certificate", "devices[1].private_key"} <= paths


def test_check_names_a_password_variable_that_is_not_set(
    pki: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = pki / "plant.toml"
    plant.write_text(GOOD)
    monkeypatch.delenv("PRESS2_PASSWORD", raising=False)
    assert main(["check", str(plant)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{plant}: devices[1].password_env: environment variable PRESS2_PASSWORD is not set" in out
    )
    monkeypatch.setenv("PRESS2_PASSWORD", "secret")
    assert main(["check", str(plant)]) == 0
    # with another mistake too, both are listed
    plant.write_text(GOOD.replace('node = "ns=2;s=Line2.Press.Pressure"', 'node = "x"'))
    monkeypatch.delenv("PRESS2_PASSWORD")
    assert main(["check", str(plant)]) == 1
    out = capsys.readouterr().out
    assert "signals[0].node" in out and "devices[1].password_env" in out
