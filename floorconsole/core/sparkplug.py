"""Sparkplug B 3.0 session rules, pure: the topic namespace, metrics and their aliases, the
node's bdSeq and seq, births, deaths and data by exception, the primary host's STATE, and
what a host's command asks for. adapters/sparkplug encodes these as protobuf and sends them.

Topics (specification section 4):

    spBv1.0/{group}/NBIRTH|NDEATH|NDATA|NCMD/{edge}
    spBv1.0/{group}/DBIRTH|DDEATH|DDATA|DCMD/{edge}/{device}
    spBv1.0/STATE/{host}                     retained JSON {"online": BOOL, "timestamp": MS}

Session (sections 5 and 6): the NDEATH is registered as the MQTT will before connecting and
carries the bdSeq that the following NBIRTH carries too, so a host matches each death to its
birth; bdSeq rises by one (mod 256) per connection attempt and is kept across restarts by the
caller. Every NBIRTH, DBIRTH, NDATA, DDATA and DDEATH carries a seq, 0 for the NBIRTH and one
more (mod 256) for each message after it. A birth names every metric with its alias, type
and, as properties, its engineering unit; data then carries aliases only, and only metrics
that changed. `Node Control/Rebirth` in a NCMD asks for a fresh set of births.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from floorconsole.core.points import ModbusPoint
from floorconsole.core.quality import Quality
from floorconsole.core.validate import Problems

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
SEQ_MODULO = 256

# An id in a topic level: no MQTT wildcards or separators (spec: UTF-8, no + # /).
_LEVEL = re.compile(r"^[^/+#]+$")


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"


class DataType(IntEnum):
    """The Sparkplug B data types floorconsole sends (values from the specification's
    DataType enum; a test checks them against the generated classes)."""

    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15


# Plant-file signal types -> Sparkplug data types.
SIGNAL_TYPES: dict[str, DataType] = {
    "bool": DataType.Boolean,
    "int16": DataType.Int16,
    "uint16": DataType.UInt16,
    "int32": DataType.Int32,
    "uint32": DataType.UInt32,
    "float32": DataType.Float,
    "float64": DataType.Double,
}


def check_level(what: str, value: str) -> str:
    """A topic level, or ValueError naming what is wrong with it."""
    if not value or not _LEVEL.match(value):
        raise ValueError(f"{what} {value!r}: a Sparkplug topic level cannot be empty or hold / + #")
    return value


def node_topic(group: str, kind: MessageType, edge: str) -> str:
    return f"{NAMESPACE}/{group}/{kind.value}/{edge}"


def device_topic(group: str, kind: MessageType, edge: str, device: str) -> str:
    return f"{NAMESPACE}/{group}/{kind.value}/{edge}/{device}"


def state_topic(host: str) -> str:
    return f"{NAMESPACE}/STATE/{host}"


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    kind: MessageType
    edge: str
    device: str | None = None


def parse_topic(topic: str) -> Topic | None:
    """The parts of a node or device topic; None for anything else (STATE included)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        return None
    try:
        kind = MessageType(parts[2])
    except ValueError:
        return None
    device = parts[4] if len(parts) == 5 else None
    if (device is None) != kind.value.startswith("N"):
        return None
    return Topic(parts[1], kind, parts[3], device)


@dataclass(frozen=True, slots=True)
class HostState:
    online: bool
    timestamp_ms: int | None


def parse_state(payload: bytes | str) -> HostState:
    """A primary host's STATE (3.0: JSON with "online" and "timestamp"); anything else, or
    the pre-3.0 plain "ONLINE"/"OFFLINE" text, is read as offline with no time."""
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return HostState(False, None)
    if not isinstance(d, dict):
        return HostState(False, None)
    ts = d.get("timestamp")
    return HostState(d.get("online") is True, ts if isinstance(ts, int) else None)


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """What a host publishes (retained) on its STATE topic; used by hosts in tests."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload: by name in a birth (with its alias), by alias alone in data."""

    name: str | None
    alias: int | None
    timestamp_ms: int
    datatype: int
    value: float | int | bool | str | None
    quality: Quality = Quality.GOOD
    reason: str = ""
    historical: bool = False
    unit: str = ""


class SeqCounter:
    """The seq of one session: 0 for its NBIRTH, then +1 mod 256 per message."""

    def __init__(self) -> None:
        self._next = 0

    def reset(self) -> None:
        self._next = 0

    def next(self) -> int:
        seq = self._next
        self._next = (seq + 1) % SEQ_MODULO
        return seq


def next_bdseq(previous: int | None) -> int:
    """The bdSeq of the next connection attempt: one more than the last (mod 256), 0 first."""
    return 0 if previous is None else (previous + 1) % SEQ_MODULO


@dataclass
class AliasTable:
    """Metric name -> alias, in the order metrics were added (1, 2, ...); fixed for a
    configuration, so a host's alias map from a birth stays valid until the next birth."""

    aliases: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> int:
        if name not in self.aliases:
            self.aliases[name] = len(self.aliases) + 1
        return self.aliases[name]

    def name_of(self, alias: int) -> str | None:
        for name, a in self.aliases.items():
            if a == alias:
                return name
        return None


def metric_value(value: object) -> float | int | bool | str | None:
    """A value Sparkplug can carry: non-finite floats and anything unknown become null."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def death_metrics(bdseq: int, now_ms: int) -> list[Metric]:
    """The NDEATH's one metric."""
    return [Metric(BDSEQ, None, now_ms, DataType.Int64, bdseq)]


def node_birth_metrics(bdseq: int, now_ms: int, metrics: Sequence[Metric]) -> list[Metric]:
    """An NBIRTH: bdSeq, Node Control/Rebirth (false), then every node metric by name."""
    return [
        Metric(BDSEQ, None, now_ms, DataType.Int64, bdseq),
        Metric(REBIRTH, None, now_ms, DataType.Boolean, False),
        *metrics,
    ]


def rebirth_requested(metrics: Iterable[Metric], aliases: AliasTable) -> bool:
    """Whether a NCMD's metrics ask for a rebirth (by name, or by the alias we gave it)."""
    for m in metrics:
        name = m.name if m.name is not None else aliases.name_of(m.alias or -1)
        if name == REBIRTH and m.value is True:
            return True
    return False


@dataclass
class ReportByException:
    """Which metrics changed since they were last sent: value or quality (the reason too),
    so a value that stays while its quality goes BAD is sent again."""

    last: dict[str, tuple[object, Quality, str]] = field(default_factory=dict)

    def changed(self, name: str, value: object, quality: Quality, reason: str) -> bool:
        now = (value, quality, reason)
        if self.last.get(name) == now:
            return False
        self.last[name] = now
        return True

    def reset(self) -> None:
        """A new session: nothing has been sent in it yet (its births record what they send
        through changed())."""
        self.last.clear()


class WriteRefused(Exception):
    """A host's write the engine refuses at once (the role the plant file gives the host is
    below a console write's): the uplink counts and audits it as it does its own refusals."""


@dataclass(frozen=True, slots=True)
class SparkplugConfig:
    """[uplink.sparkplug]: where this edge node sits in a host's namespace. edge_node None:
    the plant's [edge] id; primary_host None: publish whenever connected (no STATE wait).
    writable: the signals a host may write with a DCMD (none unless named: a host's write
    moves a real output); they go the console's write path as the principal
    "sparkplug host" with host_role (a role name, checked as a console user's would be)."""

    group: str
    edge_node: str | None = None
    primary_host: str | None = None
    writable: tuple[str, ...] = ()
    host_role: str = "engineer"


_SPARKPLUG_KEYS = ("group", "edge_node", "primary_host", "writable", "host_role")
HOST_ROLES = ("viewer", "operator", "engineer", "admin")  # core.auth.Role, by name


def parse_sparkplug(raw: object, c: Problems) -> SparkplugConfig | None:
    """The [uplink.sparkplug] table; its problems go to c with their key paths."""
    p = "uplink.sparkplug"
    t = c.table(raw, p)
    if t is None:
        return None
    c.unknown_keys(t, p, _SPARKPLUG_KEYS)
    before = len(c.problems)
    group = c.string(t, "group", p, required=True)
    edge = c.string(t, "edge_node", p)
    host = c.string(t, "primary_host", p)
    for key, value in (("group", group), ("edge_node", edge), ("primary_host", host)):
        if value is not None:
            try:
                check_level(key, value)
            except ValueError as e:
                c.add(f"{p}.{key}", str(e).split(": ", 1)[1] + f" (got {value!r})")
    role = c.string(t, "host_role", p, default="engineer", choices=HOST_ROLES)
    writable: list[str] = []
    raw_writable = t.get("writable", [])
    if not isinstance(raw_writable, list):
        c.add(f"{p}.writable", 'expected a list of signal ids, e.g. ["press1.setpoint"]')
    else:
        for i, name in enumerate(raw_writable):
            if not isinstance(name, str) or not name:
                c.add(f"{p}.writable[{i}]", f"expected a signal id, got {name!r}")
            elif name in writable:
                c.add(f"{p}.writable[{i}]", f"{name!r} is listed twice")
            else:
                writable.append(name)
    if len(c.problems) > before or group is None:
        return None
    return SparkplugConfig(
        group=group,
        edge_node=edge,
        primary_host=host,
        writable=tuple(writable),
        host_role=role or "engineer",
    )


def writable_problems(sp: SparkplugConfig, sources: dict[str, object]) -> list[tuple[str, str]]:
    """(key path, problem) for each [uplink.sparkplug] writable name that is not a signal a
    host may write: a Modbus holding register or coil read as is (no scale or offset, so
    the value a host writes is the register's). sources: signal id -> its source point."""
    out = []
    for i, name in enumerate(sp.writable):
        path = f"uplink.sparkplug.writable[{i}]"
        if name not in sources:
            out.append((path, f"no signal {name!r} in [[signals]]"))
            continue
        src = sources[name]
        if not isinstance(src, ModbusPoint):
            out.append((path, f"{name!r} is not read from a Modbus device: a host cannot write it"))
        elif src.table not in ("hr", "co"):
            out.append(
                (path, f"{name!r} is at {src.table}:{src.address}, which is read-only; a host may "
                 "write a holding register (hr) or a coil (co)")
            )  # fmt: skip
        elif src.scale != 1.0 or src.offset != 0.0 or src.word_order != "big":
            out.append(
                (path, f"{name!r} is scaled (scale, offset or word_order): a host writes the "
                 "register as is, so only an unscaled signal may be writable")
            )  # fmt: skip
    return out


def entry_quality(text: str) -> tuple[Quality, str]:
    """An outbox entry's "q" ("GOOD", "BAD no comm") as a quality and its reason in words."""
    word, _, reason = text.partition(" ")
    try:
        return Quality[word], reason
    except KeyError:
        return Quality.BAD, f"unknown quality {text!r}"


@dataclass(frozen=True, slots=True)
class SparkplugSessionView:
    """What the console's uplink screen shows of a Sparkplug session (plain data)."""

    group: str
    edge_node: str
    primary_host: str | None
    host_online: bool | None  # None: no primary host configured
    bdseq: int | None  # of the current (or last) connection attempt
    seq: int | None  # of the last message sent
    births: int
    last_birth_ms: int | None
    rebirth_requests: int
    refused_commands: int
    devices_alive: tuple[str, ...] = ()
    devices_dead: tuple[str, ...] = ()
    not_carried: int = 0  # alarm/audit entries and waveforms: no Sparkplug metric for them
    skipped_dead: int = 0  # samples of a device that was dead when they were due out
    unknown_signals: int = 0
