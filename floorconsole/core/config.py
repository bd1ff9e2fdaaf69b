"""The plant file: its model, and validation that reports every problem with its key path."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floorconsole import __version__
from floorconsole.core.fleet import FleetConfig, parse_fleet, parse_tags
from floorconsole.core.model_config import ModelConfig, output_signals, parse_models
from floorconsole.core.model_package import PackageError, load_sidecar
from floorconsole.core.opcua import SIGNAL_KEYS as _OPCUA_KEYS
from floorconsole.core.opcua import OpcUaDeviceConfig, OpcUaNodePoint, parse_node_point
from floorconsole.core.opcua import parse_device as _opcua_device
from floorconsole.core.points import ModbusPoint, read_point
from floorconsole.core.rules import ControlConfig, RuleConfig, parse_control, parse_rules
from floorconsole.core.sparkplug import writable_problems
from floorconsole.core.uplink import UplinkConfig, parse_uplink
from floorconsole.core.validate import ID_PATTERN, Problem, Problems, join, value_kind

PROTOCOLS = ("modbus-tcp", "opc-ua")
SIGNAL_KINDS = ("scalar", "waveform")

# Sections of the plant file that later releases add; named so the message can say so.
FUTURE_SECTIONS: dict[str, str] = {}


class PlantError(Exception):
    """A plant file that cannot be used; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(map(str, problems)))


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca: Path | None
    cert: Path | None
    key: Path | None


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    id: str
    host: str
    port: int = 1883
    username: str | None = None
    password_env: str | None = None
    tls: TLSConfig | None = None
    keepalive_s: float = 15.0
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str
    protocol: str
    host: str
    port: int = 502
    unit_id: int = 1
    poll_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 1

    @property
    def stale_after_s(self) -> float:
        """A value with no fresh read for this long is BAD (no communication)."""
        return 2 * self.poll_s + self.timeout_s


@dataclass(frozen=True, slots=True)
class MqttPoint:
    broker: str
    topic: str
    json_path: tuple[str | int, ...]  # empty: the payload itself is the value
    time_path: tuple[str | int, ...] | None = None
    kind: str | None = None  # scalar | waveform | None (first good payload decides)
    max_payload: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class DerivedPoint:
    """A signal the engine computes itself (a model's score, a drift figure)."""

    producer: str  # e.g. "model motor1_anomaly"


@dataclass(frozen=True, slots=True)
class SignalConfig:
    id: str
    source: ModbusPoint | MqttPoint | OpcUaNodePoint | DerivedPoint
    unit: str = ""
    range: tuple[float, float] | None = None
    description: str = ""
    stale_after_s: float | None = None  # default: per device, or 10 s for MQTT
    # An enumerated signal (a model's state): the word of each code, 0 first; shown instead
    # of the number, which reads as a measurement (and 0 as normal).
    labels: tuple[str, ...] = ()

    @property
    def asset(self) -> str:
        """The asset a signal belongs to: its id up to the first dot."""
        return self.id.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    id: str
    site: str = ""
    data_dir: Path = Path("var")
    retention_s: float = 30 * 86400.0
    idle_lock_s: float = 300.0  # a console session with no key press this long locks
    # The zone every console, the CLI and exports show times in (an IANA name); UTC unless the
    # plant says otherwise, so a shift in Berlin and a laptop in Chicago read the same clock.
    timezone: str = "UTC"
    # OS users ("name") and groups ("@name") whose consoles may attach over the socket; empty:
    # whoever the socket's mode lets in (the engine's user and group).
    attach_allow: tuple[str, ...] = ()
    # Words the fleet tool filters and groups edges by ("hall-2", "press"); nothing else.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlantConfig:
    edge: EdgeConfig
    brokers: tuple[BrokerConfig, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()
    signals: tuple[SignalConfig, ...] = ()
    models: tuple[ModelConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    control: ControlConfig | None = None  # None: read-only
    uplink: UplinkConfig | None = None  # None: nothing leaves the box
    # `protocol = "opc-ua"` [[devices]]: servers subscribed to, not polled (see core/opcua.py)
    opcua_devices: tuple[OpcUaDeviceConfig, ...] = ()
    fleet: FleetConfig | None = None  # None: not a member of a fleet
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def signal(self, signal_id: str) -> SignalConfig:
        return self._signals_by_id[signal_id]

    @property
    def _signals_by_id(self) -> dict[str, SignalConfig]:
        return {s.id: s for s in self.signals}

    def signals_of_device(self, device_id: str) -> list[SignalConfig]:
        return [
            s
            for s in self.signals
            if isinstance(s.source, ModbusPoint) and s.source.device == device_id
        ]

    def signals_of_opcua(self, device_id: str) -> list[SignalConfig]:
        return [
            s
            for s in self.signals
            if isinstance(s.source, OpcUaNodePoint) and s.source.device == device_id
        ]

    def signals_of_broker(self, broker_id: str) -> list[SignalConfig]:
        return [
            s
            for s in self.signals
            if isinstance(s.source, MqttPoint) and s.source.broker == broker_id
        ]


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """'a.b[2].c' -> ('a', 'b', 2, 'c'). Raises ValueError on a malformed path."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'{text!r} is not a path like "x", "data.temp" or "axes[0].rms"')
    parts: list[str | int] = []
    for chunk in text.split("."):
        m = re.match(r"^([^\[\]]*)((?:\[\d+\])*)$", chunk)
        if not m or (not m.group(1) and not m.group(2)):
            raise ValueError(f'{text!r} is not a path like "x", "data.temp" or "axes[0].rms"')
        if m.group(1):
            parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(parts)


def load_plant(path: str | Path, *, package_problems: list[Problem] | None = None) -> PlantConfig:
    """Read and validate a plant file. Raises PlantError with every problem found.
    package_problems: see validate_plant."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PlantError(str(p), [Problem("", f"cannot read the plant file: {e.strerror}")]) from e
    return parse_plant(
        text, source=str(p), base_dir=p.resolve().parent, package_problems=package_problems
    )


def parse_plant(
    text: str,
    *,
    source: str = "<memory>",
    base_dir: Path | None = None,
    package_problems: list[Problem] | None = None,
) -> PlantConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlantError(source, [Problem("", f"not valid TOML: {e}")]) from e
    return validate_plant(
        raw, source=source, base_dir=base_dir or Path.cwd(), package_problems=package_problems
    )


def validate_plant(
    raw: dict[str, Any],
    *,
    source: str = "<memory>",
    base_dir: Path = Path("."),
    package_problems: list[Problem] | None = None,
) -> PlantConfig:
    """The plant configuration, or PlantError with every problem in its text.

    package_problems: when given, a model package file that is missing, unreadable or does not
    fit the model's inputs is listed there instead of refusing the file: the engine runs that
    model from a stored copy, or without it (BAD, with an alarm), and everything else."""
    c = Problems()
    for key in raw:
        if key in FUTURE_SECTIONS:
            c.add(
                key,
                f"{FUTURE_SECTIONS[key]} is not supported by floorconsole "
                f"{__version__}; remove it or upgrade",
            )
        elif key not in (
            "edge",
            "brokers",
            "devices",
            "signals",
            "models",
            "rules",
            "control",
            "uplink",
            "fleet",
        ):
            c.add(
                key,
                "unknown section; expected edge, brokers, devices, signals, models, "
                "rules, control, uplink, fleet",
            )

    edge = _edge(c, raw, base_dir)
    broker_tables = c.array_of_tables(raw.get("brokers", []), "brokers")
    device_tables = c.array_of_tables(raw.get("devices", []), "devices")
    brokers = _unique(
        c,
        broker_tables,
        [_broker(c, t, f"brokers[{i}]", base_dir) for i, t in enumerate(broker_tables)],
        "brokers",
    )
    all_devices = _unique(
        c,
        device_tables,
        [
            _opcua_device(c, t, f"devices[{i}]", base_dir)
            if t.get("protocol") == "opc-ua"
            else _device(c, t, f"devices[{i}]")
            for i, t in enumerate(device_tables)
        ],
        "devices",
    )
    devices = [d for d in all_devices if isinstance(d, DeviceConfig)]
    opcua_devices = [d for d in all_devices if isinstance(d, OpcUaDeviceConfig)]
    opcua_ids = {
        t["id"]
        for t in device_tables
        if isinstance(t.get("id"), str) and t.get("protocol") == "opc-ua"
    }
    # Ids named in the file, even where the rest of that table is wrong: one mistake in a
    # device must not show up again as "no such device" on each of its signals.
    broker_ids = {t["id"] for t in broker_tables if isinstance(t.get("id"), str)}
    device_ids = {t["id"] for t in device_tables if isinstance(t.get("id"), str)}
    signal_tables = c.array_of_tables(raw.get("signals", []), "signals")
    signal_list = [
        _signal(c, t, f"signals[{i}]", broker_ids, device_ids, opcua_ids)
        for i, t in enumerate(signal_tables)
    ]
    _overlaps(c, signal_list)
    signals = _unique(c, signal_tables, signal_list, "signals")
    signal_ids = {t["id"] for t in signal_tables if isinstance(t.get("id"), str)}
    models: list[ModelConfig] = []
    if "models" in raw:
        if not isinstance(raw["models"], list):
            c.add(
                "models",
                f"expected an array of tables ([[models]]), got {value_kind(raw['models'])}",
            )
        else:
            models, model_problems = parse_models(
                raw["models"], signal_ids, base_dir, package_problems=package_problems
            )
            for path, message in model_problems:
                c.add(path, message)
    # A rule may watch any signal: the plant's, and every model's outputs and drift figures.
    # Waveform signals are left out: a rule compares one number.
    ranges: dict[str, tuple[float, float] | None] = {
        s.id: s.range
        for s in signals
        if not (isinstance(s.source, MqttPoint) and s.source.kind == "waveform")
    }
    for m in models:
        for o in output_signals(m, _feature_names(m)):
            ranges[o.id] = None
    # A model that failed (its package missing, say) has said why; a rule watching one of its
    # outputs is not reported again as watching an unknown signal.
    for name in _outputs_of_failed_models(raw.get("models"), models, raw.get("rules")):
        ranges.setdefault(name, None)
    rules, rule_problems = parse_rules(
        raw.get("rules", []), signals=ranges, devices=device_ids, brokers=broker_ids
    )
    control, control_problems = parse_control(raw.get("control"))
    for prob in (*rule_problems, *control_problems):
        c.add(prob.path, prob.message)
    uplink, uplink_problems = parse_uplink(raw.get("uplink"), broker_ids)
    for path, message in uplink_problems:
        c.add(path, message)
    if uplink is not None and uplink.sparkplug is not None:  # what a host may write
        for path, message in writable_problems(uplink.sparkplug, {s.id: s.source for s in signals}):
            c.add(path, message)
    fleet, fleet_problems = parse_fleet(
        raw.get("fleet"),
        broker_ids,
        default_broker=uplink.broker if uplink is not None else None,
        base_dir=base_dir,
    )
    for prob in fleet_problems:
        c.add(prob.path, prob.message)
    if c.problems or edge is None:
        raise PlantError(source, c.problems)
    return PlantConfig(
        edge=edge,
        brokers=tuple(brokers),
        devices=tuple(devices),
        signals=tuple(signals),
        models=tuple(models),
        rules=tuple(rules),
        control=control,
        uplink=uplink,
        opcua_devices=tuple(opcua_devices),
        fleet=fleet,
        source=source,
        raw=raw,
    )


def _outputs_of_failed_models(
    raw_models: Any, models: list[ModelConfig], raw_rules: Any
) -> set[str]:
    """The signals a [[models]] table left out of `models` (it has a problem) would have
    made: the outputs it names, and what the rules watch under its id (its drift figures,
    <id>.state ...), found without its package."""
    loaded = {m.id for m in models}
    failed: set[str] = set()
    prefixes: list[str] = []
    for t in raw_models if isinstance(raw_models, list) else []:
        if not isinstance(t, dict) or not isinstance(t.get("id"), str) or t["id"] in loaded:
            continue
        prefixes.append(t["id"] + ".")
        outputs = t.get("outputs")
        if isinstance(outputs, dict):
            failed.update(v for v in outputs.values() if isinstance(v, str))
    for r in raw_rules if isinstance(raw_rules, list) else []:
        signal = r.get("signal") if isinstance(r, dict) else None
        if isinstance(signal, str) and signal.startswith(tuple(prefixes)):
            failed.add(signal)
    return failed


def _feature_names(m: ModelConfig) -> list[str]:
    """The package's features, for its per-feature drift signals (none if unreadable: the
    model's own validation has said why)."""
    try:
        return list(load_sidecar(m.package).feature_names)
    except (PackageError, OSError):
        return []


def _unique(c: Problems, tables: list[dict[str, Any]], items: list[Any], path: str) -> list[Any]:
    """Report ids used twice (judged on the tables, so a broken first one still counts)."""
    seen: dict[str, int] = {}
    dup: set[int] = set()
    for i, t in enumerate(tables):
        tid = t.get("id")
        if not isinstance(tid, str):
            continue
        if tid in seen:
            c.add(f"{path}[{i}].id", f"{tid!r} is already used by {path}[{seen[tid]}]")
            dup.add(i)
        else:
            seen[tid] = i
    return [item for i, item in enumerate(items) if item is not None and i not in dup]


def zone_problem(name: str) -> str:
    """'' when `name` is a time zone this machine knows (IANA, e.g. "Europe/Berlin"), else
    what is wrong with it."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return (
            f"{name!r} is not a time zone this machine knows; expected an IANA name such as "
            '"UTC" or "Europe/Berlin"'
        )
    return ""


def _edge(c: Problems, raw: dict[str, Any], base_dir: Path) -> EdgeConfig | None:
    if "edge" not in raw:
        c.add("edge", "missing; a plant file needs [edge] with at least id")
        return None
    t = c.table(raw["edge"], "edge")
    if t is None:
        return None
    c.unknown_keys(
        t,
        "edge",
        ("id", "site", "data_dir", "retention", "idle_lock", "attach_allow", "timezone", "tags"),
    )
    eid = c.string(t, "id", "edge", required=True, pattern=ID_PATTERN)
    site = c.string(t, "site", "edge", default="") or ""
    data_dir = c.string(t, "data_dir", "edge", default="var") or "var"
    retention = c.duration(t, "retention", "edge", default=30 * 86400.0, minimum=60.0)
    idle_lock = c.duration(t, "idle_lock", "edge", default=300.0, minimum=10.0)
    attach_allow = _attach_allow(c, t)
    tags = parse_tags(c, t, "edge")
    zone = c.string(t, "timezone", "edge", default="UTC") or "UTC"
    if zone_problem(zone):
        c.add("edge.timezone", zone_problem(zone))
        zone = "UTC"
    if eid is None:
        return None
    return EdgeConfig(
        id=eid,
        site=site,
        data_dir=(base_dir / data_dir),
        retention_s=retention,
        idle_lock_s=idle_lock if idle_lock is not None else 300.0,
        attach_allow=attach_allow,
        timezone=zone,
        tags=tags,
    )


# An OS user or group name as useradd and groupadd accept them (a trailing $ for machine
# accounts); a group is written with a leading @.
OS_NAME_PATTERN = re.compile(r"^@?[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")


def _attach_allow(c: Problems, t: dict[str, Any]) -> tuple[str, ...]:
    path = "edge.attach_allow"
    if "attach_allow" not in t:
        return ()
    v = t["attach_allow"]
    if not isinstance(v, list):
        c.add(
            path,
            f'expected a list of OS users and @groups, e.g. ["alice", "@operators"], '
            f"got {value_kind(v)}",
        )
        return ()
    out: list[str] = []
    for i, item in enumerate(v):
        if not isinstance(item, str):
            c.add(f"{path}[{i}]", f"expected an OS user or @group name, got {value_kind(item)}")
        elif not OS_NAME_PATTERN.match(item):
            c.add(
                f"{path}[{i}]",
                f"{item!r} is not an OS user or @group name (letters, digits, _ . - ; "
                "a group starts with @)",
            )
        else:
            out.append(item)
    if not v:
        c.add(
            path,
            "is empty, so no console could attach; leave it out to let the socket's mode decide",
        )
    return tuple(out)


def _broker(c: Problems, t: dict[str, Any], path: str, base_dir: Path) -> BrokerConfig | None:
    c.unknown_keys(
        t, path, ("id", "host", "port", "username", "password_env", "tls", "keepalive", "client_id")
    )
    bid = c.string(t, "id", path, required=True, pattern=ID_PATTERN)
    host = c.string(t, "host", path, required=True)
    port = c.integer(t, "port", path, default=1883, lo=1, hi=65535)
    username = c.string(t, "username", path)
    password_env = c.string(t, "password_env", path)
    keepalive = c.duration(t, "keepalive", path, default=15.0, minimum=1.0)
    client_id = c.string(t, "client_id", path)
    tls = None
    if "tls" in t:
        tt = c.table(t["tls"], join(path, "tls"))
        if tt is not None:
            tp = join(path, "tls")
            c.unknown_keys(tt, tp, ("ca", "cert", "key"))
            files = {k: c.string(tt, k, tp) for k in ("ca", "cert", "key")}
            if (files["cert"] is None) != (files["key"] is None):
                c.add(tp, "cert and key go together; give both or neither")
            tls = TLSConfig(
                *(base_dir / f if f else None for f in (files["ca"], files["cert"], files["key"]))
            )
    if bid is None or host is None:
        return None
    return BrokerConfig(
        id=bid,
        host=host,
        port=port,
        username=username,
        password_env=password_env,
        tls=tls,
        keepalive_s=keepalive,
        client_id=client_id,
    )


def _device(c: Problems, t: dict[str, Any], path: str) -> DeviceConfig | None:
    c.unknown_keys(
        t,
        path,
        ("id", "protocol", "host", "port", "unit_id", "poll", "timeout", "retries", "description"),
    )
    did = c.string(t, "id", path, required=True, pattern=ID_PATTERN)
    protocol = c.string(t, "protocol", path, required=True, choices=PROTOCOLS)
    host = c.string(t, "host", path, required=True)
    port = c.integer(t, "port", path, default=502, lo=1, hi=65535)
    unit_id = c.integer(t, "unit_id", path, default=1, lo=0, hi=255)
    poll = c.duration(t, "poll", path, default=1.0, minimum=0.01)
    timeout = c.duration(t, "timeout", path, default=1.0, minimum=0.01)
    retries = c.integer(t, "retries", path, default=1, lo=0, hi=10)
    c.string(t, "description", path)
    if did is None or protocol is None or host is None:
        return None
    return DeviceConfig(
        id=did,
        protocol=protocol,
        host=host,
        port=port,
        unit_id=unit_id,
        poll_s=poll,
        timeout_s=timeout,
        retries=retries,
    )


_COMMON_SIGNAL_KEYS = ("id", "unit", "range", "description", "stale_after")
_MODBUS_KEYS = ("device", "address", "type", "word_order", "scale", "offset")
_MQTT_KEYS = ("broker", "topic", "json", "ts", "kind", "max_payload")


def _signal(
    c: Problems,
    t: dict[str, Any],
    path: str,
    broker_ids: set[str],
    device_ids: set[str],
    opcua_ids: set[str] | None = None,
) -> SignalConfig | None:
    sid = c.string(t, "id", path, required=True, pattern=ID_PATTERN)
    unit = c.string(t, "unit", path, default="") or ""
    description = c.string(t, "description", path, default="") or ""
    stale_after = c.duration(t, "stale_after", path, default=-1.0, minimum=0.01)
    rng = None
    if "range" in t:
        r = t["range"]
        if (
            not isinstance(r, list)
            or len(r) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)
        ):
            c.add(join(path, "range"), "expected [low, high], two numbers")
        elif not r[0] < r[1]:
            c.add(join(path, "range"), f"low {r[0]} must be below high {r[1]}")
        else:
            rng = (float(r[0]), float(r[1]))

    has_device, has_broker = "device" in t, "broker" in t
    source: ModbusPoint | MqttPoint | OpcUaNodePoint | None = None
    if has_device and not has_broker and str(t["device"]) in (opcua_ids or ()):
        c.unknown_keys(t, path, _COMMON_SIGNAL_KEYS + _OPCUA_KEYS)
        source = parse_node_point(c, t, path, t["device"])
    elif has_device and has_broker:
        c.add(
            path,
            "a signal reads either a device (device, address) or a broker (broker, "
            "topic), not both",
        )
        c.unknown_keys(t, path, _COMMON_SIGNAL_KEYS + _MODBUS_KEYS + _MQTT_KEYS)
    elif has_device:
        c.unknown_keys(t, path, _COMMON_SIGNAL_KEYS + _MODBUS_KEYS)
        source = _modbus_point(c, t, path, device_ids)
    elif has_broker:
        c.unknown_keys(t, path, _COMMON_SIGNAL_KEYS + _MQTT_KEYS)
        source = _mqtt_point(c, t, path, broker_ids)
    else:
        c.add(path, "missing a source: give device and address (Modbus) or broker and topic (MQTT)")
        c.unknown_keys(t, path, _COMMON_SIGNAL_KEYS + _MODBUS_KEYS + _MQTT_KEYS)
    if sid is None or source is None:
        return None
    return SignalConfig(
        id=sid,
        source=source,
        unit=unit,
        range=rng,
        description=description,
        stale_after_s=stale_after if stale_after > 0 else None,
    )


def _modbus_point(
    c: Problems, t: dict[str, Any], path: str, device_ids: set[str]
) -> ModbusPoint | None:
    device = c.string(t, "device", path, required=True)
    if device is not None and device not in device_ids:
        known = ", ".join(sorted(device_ids)) or "none defined"
        c.add(join(path, "device"), f"{device!r} is not a device in this file ({known})")
        device = None
    return read_point(c, t, path, device, writable=False)


def _mqtt_point(
    c: Problems, t: dict[str, Any], path: str, broker_ids: set[str]
) -> MqttPoint | None:
    broker = c.string(t, "broker", path, required=True)
    if broker is not None and broker not in broker_ids:
        known = ", ".join(sorted(broker_ids)) or "none defined"
        c.add(join(path, "broker"), f"{broker!r} is not a broker in this file ({known})")
        broker = None
    topic = c.string(t, "topic", path, required=True)
    if topic is not None and (not topic or "+" in topic or "#" in topic):
        c.add(
            join(path, "topic"),
            f"{topic!r}: a signal reads one topic; no wildcards (+ #), not empty",
        )
        topic = None
    json_path: tuple[str | int, ...] = ()
    if "json" in t:
        try:
            json_path = parse_json_path(t["json"])
        except ValueError as e:
            c.add(join(path, "json"), str(e))
    time_path = None
    if "ts" in t:
        try:
            time_path = parse_json_path(t["ts"])
        except ValueError as e:
            c.add(join(path, "ts"), str(e))
    kind = c.string(t, "kind", path, choices=SIGNAL_KINDS)
    max_payload = c.size(t, "max_payload", path, default=256 * 1024)
    if broker is None or topic is None:
        return None
    return MqttPoint(
        broker=broker,
        topic=topic,
        json_path=json_path,
        time_path=time_path,
        kind=kind,
        max_payload=max_payload,
    )


def _overlaps(c: Problems, signals: list[SignalConfig | None]) -> None:
    """Two signals decoding overlapping registers of one device is almost always a typo; so
    are two reading one OPC UA node (one subscription would feed only one of them)."""
    taken: dict[tuple[str, str, int], str] = {}
    nodes: dict[tuple[str, str], str] = {}
    for i, s in enumerate(signals):
        if s is not None and isinstance(s.source, OpcUaNodePoint):
            node_key = (s.source.device, s.source.label)
            if node_key in nodes and nodes[node_key] != s.id:
                where = "node" if s.source.node else "browse_path"
                c.add(
                    f"signals[{i}].{where}",
                    f"{s.source.label} on {s.source.device} is already read by {nodes[node_key]!r}",
                )
            nodes.setdefault(node_key, s.id)
            continue
        if s is None or not isinstance(s.source, ModbusPoint):
            continue
        src = s.source
        for a in range(src.address, src.address + src.width):
            key = (src.device, src.table, a)
            if key in taken and taken[key] != s.id:
                c.add(
                    f"signals[{i}].address",
                    f"{src.table}:{a} on {src.device} is already read by {taken[key]!r}",
                )
                break
            taken[key] = s.id
