"""OPC UA, pure: NodeId strings as the plant file writes them, and a value's StatusCode as our
quality (Good* GOOD, Uncertain* UNCERTAIN, Bad* BAD; the status name is the reason's detail).

A StatusCode is 32 bits: the top two are the severity (00 good, 01 uncertain, 10 and 11 bad),
the next fourteen the sub-code, and the low bits carry info flags; with InfoType DataValue
(bit 10), bit 7 is Overflow: the server's queue for this monitored item was full and values
before this one were dropped (OPC UA Part 4, 7.39).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floorconsole.core.quality import Quality, Reason
from floorconsole.core.validate import ID_PATTERN, Problems, join

_SEVERITY_MASK = 0xC0000000
_SUBCODE_MASK = 0xFFFF0000
INFO_TYPE_DATAVALUE = 0x00000400
OVERFLOW = 0x00000080

# Sub-codes (the top 16 bits) named by the specification, mapped to our reasons (a test checks
# each against asyncua's table of names).
REASONS: dict[int, Reason] = {
    0x40920000: Reason.INITIAL,  # Uncertain_InitialValue
    0x40900000: Reason.LAST_USABLE,  # Uncertain_LastUsableValue
    0x40910000: Reason.SUBSTITUTE,  # Uncertain_SubstituteValue
    0x40940000: Reason.OUT_OF_RANGE,  # Uncertain_EngineeringUnitsExceeded
    0x40930000: Reason.OUT_OF_RANGE,  # Uncertain_SensorNotAccurate
    0x808A0000: Reason.NO_COMM,  # Bad_NotConnected
    0x80050000: Reason.NO_COMM,  # Bad_CommunicationError
    0x800A0000: Reason.NO_COMM,  # Bad_Timeout
    0x80310000: Reason.NO_COMM,  # Bad_NoCommunication
    0x808B0000: Reason.DEVICE_FAILURE,  # Bad_DeviceFailure
    0x808C0000: Reason.DEVICE_FAILURE,  # Bad_SensorFailure
    0x80890000: Reason.CONFIG_ERROR,  # Bad_ConfigurationError
    0x80340000: Reason.CONFIG_ERROR,  # Bad_NodeIdUnknown
    0x80330000: Reason.CONFIG_ERROR,  # Bad_NodeIdInvalid
    0x808D0000: Reason.OUT_OF_SERVICE,  # Bad_OutOfService
}


@dataclass(frozen=True, slots=True)
class StatusQuality:
    quality: Quality
    reason: Reason
    detail: str  # the status name, and the overflow when there was one
    overflow: bool


def status_quality(code: int, name: str = "") -> StatusQuality:
    """Our quality for an OPC UA StatusCode (`name` as the stack names it, e.g.
    'UncertainLastUsableValue'). A value after a queue overflow is at best UNCERTAIN."""
    severity = code & _SEVERITY_MASK
    overflow = bool(code & INFO_TYPE_DATAVALUE) and bool(code & OVERFLOW)
    label = name or f"0x{code:08X}"
    if severity == 0:
        if overflow:
            return StatusQuality(
                Quality.UNCERTAIN,
                Reason.LAST_USABLE,
                f"{label}: values lost (queue overflow)",
                True,
            )
        return StatusQuality(Quality.GOOD, Reason.NONE, "", False)
    sub = code & _SUBCODE_MASK
    if severity == 0x40000000:
        reason = REASONS.get(sub, Reason.LAST_USABLE)
        if reason.quality is not Quality.UNCERTAIN:
            reason = Reason.LAST_USABLE
        detail = f"{label}{': values lost (queue overflow)' if overflow else ''}"
        return StatusQuality(Quality.UNCERTAIN, reason, detail, overflow)
    reason = REASONS.get(sub, Reason.DEVICE_FAILURE)
    if reason.quality is not Quality.BAD:
        reason = Reason.DEVICE_FAILURE
    return StatusQuality(Quality.BAD, reason, label, overflow)


_NODE_ID = re.compile(r"^(?:ns=(?P<ns>\d+);)?(?P<kind>[isgb])=(?P<ident>.+)$", re.S)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class NodeIdSpec:
    """A NodeId as written in the plant file: `ns=2;s=Line2.Press.Pressure`, `i=2258`, ..."""

    namespace: int
    kind: str  # i numeric, s string, g GUID, b opaque (base64)
    identifier: str

    def __str__(self) -> str:
        return f"ns={self.namespace};{self.kind}={self.identifier}"


def parse_node_id(text: str) -> NodeIdSpec:
    """A NodeId string, or ValueError saying what was expected."""
    if not isinstance(text, str):
        raise ValueError(
            f"expected a NodeId string like 'ns=2;s=Line2.Press.Pressure', not {text!r}"
        )
    if text.startswith("nsu="):
        raise ValueError(f"{text!r}: namespace URIs (nsu=) are not supported; use ns=INDEX")
    m = _NODE_ID.match(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a NodeId: expected [ns=N;]i=NUMBER, s=STRING, g=GUID or b=BASE64, "
            "e.g. 'ns=2;s=Line2.Press.Pressure'"
        )
    ns = int(m.group("ns") or 0)
    if ns > 65535:
        raise ValueError(f"{text!r}: namespace index {ns} is above 65535")
    kind, ident = m.group("kind"), m.group("ident")
    if kind == "i" and (not ident.isdigit() or int(ident) > 0xFFFFFFFF):
        raise ValueError(f"{text!r}: a numeric identifier is 0..4294967295")
    if kind == "g" and not _GUID.match(ident):
        raise ValueError(f"{text!r}: a GUID looks like 72962b91-fa75-4ae6-8d28-b404dc7daf63")
    return NodeIdSpec(ns, kind, ident)


# -- browsing: what an engineer adding a signal reads ------------------------------------------


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    """One node of a server's address space as `floorconsole opcua browse` shows it."""

    node_id: str
    name: str
    node_class: str  # Object, Variable, Method, ...
    data_type: str = ""  # for variables: Double, Int16, ...; "Double[]" for arrays
    value: str = ""  # the current value, shortened
    status: str = ""  # its StatusCode name when not Good
    children: tuple[BrowsedNode, ...] = ()
    truncated: bool = False  # more children than were read


def tree_lines(root: BrowsedNode) -> list[str]:
    """The tree, one node a line: name, NodeId, and for variables type and current value."""
    out: list[str] = []

    def walk(n: BrowsedNode, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        text = f"{prefix}{branch}{n.name}  {n.node_id}"
        if n.node_class == "Variable":
            text += f"  {n.data_type or '?'}  {n.value}"
            if n.status:
                text += f"  ({n.status})"
        elif n.node_class not in ("Object", "Folder"):
            text += f"  [{n.node_class}]"
        out.append(text)
        child_prefix = prefix if top else prefix + ("   " if last else "│  ")
        for i, c in enumerate(n.children):
            walk(c, child_prefix, i == len(n.children) - 1, False)
        if n.truncated:
            out.append(f"{child_prefix}└─ … (more: browse this node to see them)")

    walk(root, "", True, True)
    return out


def signal_id_for(device: str, name: str) -> str:
    """'press2' + 'Pressure' -> 'press2.pressure': a plant-file signal id from a browse name."""
    slug = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "value"
    return f"{device}.{slug}"


def plant_lines(device: str, nodes: list[BrowsedNode], sampling: str = "100ms") -> str:
    """The plant-file lines for these variables, to paste (or to go through a snapshot)."""
    blocks = []
    seen: set[str] = set()
    for n in nodes:
        if n.node_class != "Variable":
            continue
        sid = signal_id_for(device, n.name)
        k = 2
        while sid in seen:
            sid = f"{signal_id_for(device, n.name)}_{k}"
            k += 1
        seen.add(sid)
        blocks.append(
            "[[signals]]\n"
            f'id = "{sid}"\n'
            f'device = "{device}"\n'
            f'node = "{n.node_id}"\n'
            f'sampling_interval = "{sampling}"\n'
        )
    return "\n".join(blocks)


def variables(root: BrowsedNode) -> list[BrowsedNode]:
    """Every variable in the tree, depth first."""
    out = [root] if root.node_class == "Variable" else []
    for c in root.children:
        out.extend(variables(c))
    return out


# -- the plant file: `protocol = "opc-ua"` devices and signals that read a node -----------------

SECURITY_MODES = ("None", "Basic256Sha256-Sign", "Basic256Sha256-SignAndEncrypt")
DEVICE_KEYS = (
    "id",
    "protocol",
    "endpoint",
    "security",
    "certificate",
    "private_key",
    "server_certificate",
    "trusted_dir",
    "username",
    "password_env",
    "publishing_interval",
    "timeout",
    "description",
)
SIGNAL_KEYS = ("device", "node", "browse_path", "sampling_interval", "queue_size", "kind")
_ENDPOINT = re.compile(
    r"^opc\.tcp://(?P<host>\[[0-9a-fA-F:]+\]|[^/:\s]+)(?::(?P<port>\d+))?(/\S*)?$"
)
_PATH_PART = re.compile(r"^(?:(?P<ns>\d+):)?(?P<name>[^/]+)$")


@dataclass(frozen=True, slots=True)
class OpcUaDeviceConfig:
    """One OPC UA server the engine subscribes to (a `protocol = "opc-ua"` device)."""

    id: str
    endpoint: str  # opc.tcp://host:4840/path
    security: str = "None"  # one of SECURITY_MODES
    certificate: Path | None = None  # ours (DER or PEM), for Sign and SignAndEncrypt
    private_key: Path | None = None
    server_certificate: Path | None = None  # the server's, pinned
    trusted_dir: Path | None = None  # or: servers whose certificate is in this folder
    username: str | None = None
    password_env: str | None = None  # the password is read from this variable, never the file
    publishing_s: float = 0.2
    timeout_s: float = 4.0
    protocol: str = "opc-ua"


@dataclass(frozen=True, slots=True)
class OpcUaNodePoint:
    """A signal read from (or a rule writing to) one node of an OPC UA device."""

    device: str
    node: str = ""  # a NodeId string; empty when browse_path names the node
    browse_path: tuple[str, ...] = ()  # ("2:Plant", "2:Press", "2:Pressure") under Objects
    sampling_s: float = 0.1
    queue_size: int = 10

    @property
    def label(self) -> str:
        return self.node or "/".join(self.browse_path)


def parse_browse_path(text: str) -> tuple[str, ...]:
    """'2:Plant/2:Press/2:Pressure' (browse names under the Objects folder, each with its
    namespace index) -> ('2:Plant', '2:Press', '2:Pressure'); ValueError saying what was
    expected."""
    if not isinstance(text, str) or not text.strip("/ "):
        raise ValueError(f"expected a browse path like '2:Plant/2:Press/2:Pressure', not {text!r}")
    parts = []
    for part in text.strip("/").split("/"):
        m = _PATH_PART.match(part.strip())
        if m is None:
            raise ValueError(f"{text!r}: {part!r} is not a browse name like '2:Pressure'")
        parts.append(f"{m.group('ns') or 0}:{m.group('name')}")
    return tuple(parts)


def parse_device(
    c: Problems, t: dict[str, Any], path: str, base_dir: Path
) -> OpcUaDeviceConfig | None:
    """A `protocol = "opc-ua"` [[devices]] table; every mistake reported with its key path."""
    c.unknown_keys(t, path, DEVICE_KEYS)
    did = c.string(t, "id", path, required=True, pattern=ID_PATTERN)
    endpoint = c.string(t, "endpoint", path, required=True)
    if endpoint is not None:
        m = _ENDPOINT.match(endpoint)
        if m is None or (m.group("port") and not 1 <= int(m.group("port")) <= 65535):
            c.add(
                join(path, "endpoint"),
                f"{endpoint!r} is not an OPC UA endpoint; expected opc.tcp://HOST[:PORT][/PATH], "
                "e.g. opc.tcp://10.0.0.5:4840/press2",
            )
            endpoint = None
    security = c.string(t, "security", path, default="None", choices=SECURITY_MODES) or "None"
    files: dict[str, Path | None] = {}
    for key in ("certificate", "private_key", "server_certificate", "trusted_dir"):
        name = c.string(t, key, path)
        files[key] = None
        if name is None:
            continue
        f = base_dir / name
        if key == "trusted_dir" and not f.is_dir():
            c.add(join(path, key), f"{name!r}: no such folder (of trusted server certificates)")
        elif key != "trusted_dir" and not f.is_file():
            c.add(join(path, key), f"{name!r}: no such file")
        files[key] = f
    if security != "None":
        for key in ("certificate", "private_key"):
            if key not in t:
                c.add(
                    join(path, key),
                    f"missing; security {security} needs the client's certificate and private_key",
                )
        if "server_certificate" in t and "trusted_dir" in t:
            c.add(path, "give server_certificate (pinned) or trusted_dir, not both")
    else:
        for key in ("certificate", "private_key", "server_certificate", "trusted_dir"):
            if key in t:
                c.add(
                    join(path, key),
                    'has no use with security = "None"; set security to '
                    "Basic256Sha256-Sign or Basic256Sha256-SignAndEncrypt, or remove it",
                )
    username = c.string(t, "username", path)
    password_env = c.string(t, "password_env", path)
    if password_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", password_env):
        c.add(join(path, "password_env"), f"{password_env!r} is not an environment variable name")
    if username is not None and "password_env" not in t:
        c.add(
            join(path, "password_env"),
            "missing; a username needs password_env, the environment variable holding its "
            "password (never the password itself in the file)",
        )
    if "password_env" in t and "username" not in t:
        c.add(join(path, "username"), "missing; password_env is the password of a username")
    publishing = c.duration(t, "publishing_interval", path, default=0.2, minimum=0.01)
    timeout = c.duration(t, "timeout", path, default=4.0, minimum=0.5)
    c.string(t, "description", path)
    if did is None or endpoint is None:
        return None
    return OpcUaDeviceConfig(
        id=did,
        endpoint=endpoint,
        security=security,
        certificate=files["certificate"],
        private_key=files["private_key"],
        server_certificate=files["server_certificate"],
        trusted_dir=files["trusted_dir"],
        username=username,
        password_env=password_env,
        publishing_s=publishing,
        timeout_s=timeout,
    )


def parse_node_point(
    c: Problems, t: dict[str, Any], path: str, device: str | None
) -> OpcUaNodePoint | None:
    """The node a signal reads: `node = "ns=2;s=..."` or `browse_path = "2:Plant/2:Pressure"`,
    with its sampling interval and queue size."""
    node = ""
    bpath: tuple[str, ...] = ()
    if ("node" in t) == ("browse_path" in t):
        c.add(
            path, 'an OPC UA signal names its node: node = "ns=2;s=..." or browse_path, one of them'
        )
    elif "node" in t:
        try:
            node = str(parse_node_id(t["node"]))
        except ValueError as e:
            c.add(join(path, "node"), str(e))
            return None
    else:
        try:
            bpath = parse_browse_path(t["browse_path"])
        except ValueError as e:
            c.add(join(path, "browse_path"), str(e))
            return None
    sampling = c.duration(t, "sampling_interval", path, default=0.1, minimum=0.0)
    queue = c.integer(t, "queue_size", path, default=10, lo=1, hi=10000)
    if device is None or not (node or bpath):
        return None
    return OpcUaNodePoint(device, node, bpath, sampling, queue)


def environment_problems(raw: dict[str, Any], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key path, message) for each OPC UA device whose password variable is not set here:
    not a reason to refuse the file (the engine shows that device BAD and says why), but
    `floorconsole check` says so."""
    out = []
    devices = raw.get("devices")
    for i, t in enumerate(devices if isinstance(devices, list) else []):
        if not isinstance(t, dict) or t.get("protocol") != "opc-ua":
            continue
        var = t.get("password_env")
        if isinstance(var, str) and var not in environ:
            out.append(
                (
                    f"devices[{i}].password_env",
                    f"environment variable {var} is not set here; the engine needs it to log in "
                    f"to {t.get('endpoint', 'the server')}",
                )
            )
    return out
