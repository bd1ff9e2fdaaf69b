"""The demo: a local broker, the simulated plant, and the demo plant file pointed at them."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from floorconsole.adapters.broker import BrokerError, start_demo_broker
from floorconsole.adapters.sim import SimPlant
from floorconsole.core.config import PlantConfig, validate_plant

DEMO_MODBUS_PORT = 15020
DEMO_MQTT_PORT = 18830
DEMO_OPCUA_PORT = 14840


class DemoPlant:
    """Starts a broker (mosquitto if installed, else a pure-Python one) and the simulator on
    free loopback ports, and gives the demo plant file with those ports filled in."""

    def __init__(self, plant_file: Path, *, seed: int = 1, machines: Sequence[Path] = ()) -> None:
        self.plant_file = Path(plant_file)
        self.seed = seed
        # Plant-file fragments of OPC UA machines (demo_press.toml) added to the plant file,
        # each machine's server started beside the Modbus simulator.
        self.machines = [Path(m) for m in machines]
        self.broker: Any = None
        self.sim: Any = None
        self.press: Any = None
        self.opcua_port: int | None = None
        self.plant: PlantConfig

    def __enter__(self) -> DemoPlant:
        try:
            if self.machines:
                from floorconsole.adapters.press_sim import start_press

                # First, for a head start: it gets ready while the broker and the drive
                # start, and is waited for (at most 10 s) only after them, so the press's
                # link does not open with connection errors.
                self.press, self.opcua_port = start_press(DEMO_OPCUA_PORT)
            # The same ports at every start when they are free, so the demo's configuration
            # (ports included) is the same snapshot each time; others when they are taken.
            try:
                self.broker = start_demo_broker(DEMO_MQTT_PORT)
            except (BrokerError, OSError):
                self.broker = start_demo_broker()
            self.sim = self._sim(DEMO_MODBUS_PORT)
            self.plant = demo_plant(
                self.plant_file,
                modbus_port=self.sim.modbus_port,
                mqtt_host=self.broker.host,
                mqtt_port=self.broker.port,
                machines=self.machines,
                opcua_port=self.opcua_port,
            )
            if self.press is not None:  # it started first: ready by now, or nearly
                self.press.wait_ready(10.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _sim(self, port: int) -> Any:
        for p in (port, 0):
            sim = SimPlant(
                modbus_port=p,
                mqtt_host=self.broker.host,
                mqtt_port=self.broker.port,
                seed=self.seed,
            )
            try:
                sim.start()
                return sim
            except (RuntimeError, OSError):
                sim.stop()
                if p == 0:
                    raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        if self.press is not None:
            self.press.stop()
            self.press = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def banner(self, data_dir: Path) -> str:
        kind = type(self.broker).__name__.lstrip("_").replace("Demo", "")
        users = " · ".join(f"{u['name']} {u['pin']} {u['role']}" for u in DEMO_USERS)
        return (
            f"floorconsole demo: simulated drive1 on 127.0.0.1:{self.sim.modbus_port}, "
            f"broker ({kind}) on {self.broker.host}:{self.broker.port}, "
            + (
                f"press2 (OPC UA) on opc.tcp://127.0.0.1:{self.opcua_port}/press2, "
                if self.press is not None
                else ""
            )
            + f"history in {data_dir}"
            f"\ndemo users (log in with F9): {users}"
        )


# The demo's accounts. A real box has none until `floorconsole users add` creates them.
DEMO_USERS: tuple[dict[str, str], ...] = (
    {"name": "op1", "role": "operator", "pin": "1111"},
    {"name": "eng1", "role": "engineer", "pin": "2222"},
    {"name": "admin", "role": "admin", "pin": "9999"},
)


def ensure_demo_users(users: Any) -> list[dict[str, str]]:
    """The demo users in this data directory's user store, with the PINs the banner shows
    (reset at every start, which also lifts a lock left by an earlier run)."""
    for u in DEMO_USERS:
        if users.get(u["name"]) is None:
            users.add(u["name"], u["role"], u["pin"])
        else:
            users.set_role(u["name"], u["role"])
            users.reset_pin(u["name"], u["pin"])
    return [dict(u) for u in DEMO_USERS]


def demo_plant(
    plant_file: Path,
    *,
    modbus_port: int,
    mqtt_host: str,
    mqtt_port: int,
    machines: Sequence[Path] = (),
    opcua_port: int | None = None,
) -> PlantConfig:
    """The demo plant file with the simulator's and broker's actual ports, and the OPC UA
    machines' fragments added, their endpoints on opcua_port."""
    raw: dict[str, Any] = tomllib.loads(Path(plant_file).read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw)
    for m in machines:
        extra = tomllib.loads(Path(m).read_text(encoding="utf-8"))
        for key in ("devices", "signals", "rules"):
            raw.setdefault(key, []).extend(extra.get(key, []))
    for d in raw.get("devices", []):
        if d.get("protocol") == "opc-ua":
            if opcua_port is not None:
                d["endpoint"] = f"opc.tcp://127.0.0.1:{opcua_port}/press2"
            continue
        d["host"], d["port"] = "127.0.0.1", modbus_port
    for b in raw.get("brokers", []):
        b["host"], b["port"] = mqtt_host, mqtt_port
    return validate_plant(raw, source=str(plant_file), base_dir=Path(plant_file).resolve().parent)
