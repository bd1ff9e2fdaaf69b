"""The fleet, pure: the [fleet] plant-file table, the topics and JSON payloads edges and the
fleet tool exchange on the plant broker, the fleet's state as the tool sees it, rollout waves,
and "which snapshot ran where, when".

Topics, under `{prefix}/{edge}/` (prefix `floorconsole/fleet` unless [fleet] says otherwise):

    status           retained, the edge's: {"edge", "site", "tags", "state": "online"|"offline",
                     "t" (when it was said), "boot", "boot_id", "version", "snapshot",
                     "fleet_snapshot", "backlog_rows", "alarms" ({priority: unacknowledged}),
                     "models" ({id: state word}), "remote_apply", "pending" (the remote change
                     held for an engineer, or null)}; the last will says "offline" with
                     "will": true (its "t" is when the edge connected)
    alive            retained, the edge's: {"t", "boot_id"} at each status refresh; the last
                     will replaces the status, not this, so it says when the edge was last heard
    activations      retained, the edge's: {"edge", "activations": [{"seq", "snapshot",
                     "fleet_snapshot", "at", "outcome", "by", "note", "boot"}, ...], "runs":
                     [{"boot", "from", "to", "end"}, ...]} (the last ACTIVATIONS_KEPT rows of its
                     activation log; its last RUNS_KEPT runs before this one, "end" "stopped" or
                     "lost", "to" when it was last alive)
    rollout          retained, the tool's: {"rollout": ID, "action": "apply", "bundle":
                     {"files": {NAME: BASE64}}, "by", "t"} or {"rollout": ID, "action":
                     "rollback", "snapshot": ID, "by", "t"}
    rollout/result   retained, the edge's: {"rollout", "edge", "state", "ok", "snapshot",
                     "fleet_snapshot", "message", "t"}; state is one of RESULT_STATES

A command stays retained, so an edge offline during a rollout takes it when it returns; the
edge remembers the rollout ids it has handled, so a command seen again is not applied twice.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floorconsole.core.validate import Problem, Problems, join

DEFAULT_PREFIX = "floorconsole/fleet"
ACTIVATIONS_KEPT = 200  # rows of the activation log an edge publishes (the payload stays small)
RUNS_KEPT = 50  # runs of the engine an edge publishes (the gaps `fleet at` shows)
# "pending": verified and held for an engineer at the edge (remote_apply = "confirm");
# "deferred": that engineer put it off (who and why in the message). Neither is a failure.
RESULT_STATES = (
    "received",
    "refused",
    "applied",
    "failed",
    "rolled-back",
    "unchanged",
    "pending",
    "deferred",
)
# auto: a verified change is applied at once; confirm: it waits for an engineer at the edge.
REMOTE_APPLY = ("auto", "confirm")
# The tables of a rolled-out bundle an edge keeps its own: who it is, its fleet membership,
# and where its devices and brokers are (the same bundle runs on boxes in other buildings).
LOCAL_TABLES = ("edge", "fleet")
LOCAL_DEVICE_KEYS = ("host", "port", "unit_id")
LOCAL_BROKER_KEYS = ("host", "port", "username", "password_env", "tls", "client_id")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:=\-]*$")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The [fleet] table: this edge is a member of a fleet on `broker`."""

    broker: str
    enabled: bool = True
    topic_prefix: str = DEFAULT_PREFIX
    trusted_keys: Path | None = None  # a folder of Ed25519 public keys (*.pub, *.pem)
    status_interval_s: float = 10.0  # the retained status is refreshed this often, at most
    # confirm unless the plant file says auto: a change from another building does not
    # alter a running machine before someone who can see it agrees
    remote_apply: str = "confirm"


_KEYS = ("enabled", "broker", "topic_prefix", "trusted_keys", "status_interval", "remote_apply")


def parse_fleet(
    raw: Any, broker_ids: set[str], *, default_broker: str | None, base_dir: Path
) -> tuple[FleetConfig | None, list[Problem]]:
    """The [fleet] table, or None without one; every problem with its path."""
    if raw is None:
        return None, []
    c = Problems()
    t = c.table(raw, "fleet")
    if t is None:
        return None, c.problems
    c.unknown_keys(t, "fleet", _KEYS)
    enabled = c.boolean(t, "enabled", "fleet", default=True)
    broker = c.string(t, "broker", "fleet", default=default_broker)
    if broker is None and "broker" not in t:
        c.add("fleet.broker", "missing; the id of a [[brokers]] entry (or give an [uplink])")
    elif broker is not None and broker not in broker_ids:
        known = ", ".join(sorted(broker_ids)) or "none defined"
        c.add("fleet.broker", f"{broker!r} is not a broker in this file ({known})")
    prefix = c.string(t, "topic_prefix", "fleet", default=DEFAULT_PREFIX) or DEFAULT_PREFIX
    if not prefix or prefix[0] == "/" or prefix[-1] == "/" or any(ch in prefix for ch in "+#"):
        c.add("fleet.topic_prefix", f"{prefix!r} is not a topic prefix (no + # or outer /)")
    keys = c.string(t, "trusted_keys", "fleet")
    interval = c.duration(t, "status_interval", "fleet", default=10.0, minimum=1.0)
    remote_apply = (
        c.string(t, "remote_apply", "fleet", default="confirm", choices=REMOTE_APPLY) or "confirm"
    )
    if c.problems or broker is None:
        return None, c.problems
    return (
        FleetConfig(
            broker=broker,
            enabled=enabled,
            topic_prefix=prefix,
            trusted_keys=(base_dir / keys) if keys else None,
            status_interval_s=interval,
            remote_apply=remote_apply,
        ),
        [],
    )


def parse_tags(c: Problems, t: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """[edge] tags: a list of words the fleet tool filters and groups by ("hall-2", "line=3")."""
    if "tags" not in t:
        return ()
    v = t["tags"]
    p = join(path, "tags")
    if not isinstance(v, list):
        c.add(p, f'expected a list of words, e.g. ["hall-2", "press"], got {type(v).__name__}')
        return ()
    out: list[str] = []
    for i, item in enumerate(v):
        if not isinstance(item, str) or not _TAG.match(item):
            c.add(f"{p}[{i}]", f"{item!r} is not a tag (letters, digits, _ . : = -)")
        elif item not in out:
            out.append(item)
    return tuple(out)


def topic(prefix: str, edge: str, kind: str) -> str:
    return f"{prefix}/{edge}/{kind}"


def edge_of(prefix: str, topic_name: str) -> tuple[str, str] | None:
    """(edge, kind) of a fleet topic, None for another one."""
    if not topic_name.startswith(prefix + "/"):
        return None
    rest = topic_name[len(prefix) + 1 :]
    edge, _, kind = rest.partition("/")
    return (edge, kind) if edge and kind else None


# -- what an edge says -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    """One edge as its retained status says it."""

    edge: str
    state: str  # online | offline
    t: float  # when it said so (the will: when it connected)
    site: str = ""
    tags: tuple[str, ...] = ()
    boot: float | None = None
    boot_id: str = ""
    version: str = ""
    snapshot: str = ""
    fleet_snapshot: str = ""  # the bundle's id when the running snapshot came from one
    backlog_rows: int | None = None
    alarms: Mapping[str, int] = field(default_factory=dict)  # priority -> unacknowledged
    models: Mapping[str, str] = field(default_factory=dict)  # model id -> state word
    will: bool = False  # the broker said it (the edge went without a goodbye)
    every: float | None = None  # the edge refreshes its status this often (seconds)
    decommissioned: str = ""  # "by: why" when the fleet tool revoked its login
    # a remote change held there (remote_apply "confirm"): "held" (waits for an engineer
    # there) or "deferred" (one said not now), and what it is in words; "" when none
    held: str = ""
    held_text: str = ""

    def stale(self, now: float) -> bool:
        """Online by its last word, but silent for three refreshes: a box that says
        "online" since a month ago must not read as running."""
        return (
            self.state == "online" and self.every is not None and now - self.t > 3 * self.every + 5
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "edge": self.edge,
            "site": self.site,
            "tags": list(self.tags),
            "state": self.state,
            "t": self.t,
            "boot": self.boot,
            "boot_id": self.boot_id,
            "version": self.version,
            "snapshot": self.snapshot,
            "fleet_snapshot": self.fleet_snapshot,
            "backlog_rows": self.backlog_rows,
            "alarms": dict(self.alarms),
            "models": dict(self.models),
            "will": self.will,
            "every": self.every,
            "decommissioned": self.decommissioned,
            "held": self.held,
            "held_text": self.held_text,
        }


class PayloadError(ValueError):
    """A fleet message that is not what the protocol says; the text names what is wrong."""


def _doc(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as e:
        raise PayloadError(f"{what}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"{what}: expected a JSON object")
    return doc


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def parse_status(edge: str, payload: bytes) -> EdgeStatus:
    d = _doc(payload, f"status of {edge}")
    state = d.get("state")
    t = _num(d.get("t"))
    if state not in ("online", "offline") or t is None:
        raise PayloadError(f"status of {edge}: needs state online|offline and a time t")
    alarms: dict[str, Any] = d["alarms"] if isinstance(d.get("alarms"), dict) else {}
    models: dict[str, Any] = d["models"] if isinstance(d.get("models"), dict) else {}
    backlog = _num(d.get("backlog_rows"))
    held, held_text = _held(d.get("pending"))
    return EdgeStatus(
        edge=edge,
        state=state,
        t=t,
        site=str(d.get("site") or ""),
        tags=tuple(str(x) for x in d.get("tags") or () if isinstance(x, str)),
        boot=_num(d.get("boot")),
        boot_id=str(d.get("boot_id") or ""),
        version=str(d.get("version") or ""),
        snapshot=str(d.get("snapshot") or ""),
        fleet_snapshot=str(d.get("fleet_snapshot") or ""),
        backlog_rows=None if backlog is None else int(backlog),
        alarms={str(k): int(v) for k, v in alarms.items() if _num(v) is not None},
        models={str(k): str(v) for k, v in models.items()},
        will=bool(d.get("will")),
        every=_num(d.get("every")),
        decommissioned=_decommissioned(d.get("decommissioned")),
        held=held,
        held_text=held_text,
    )


def _held(v: Any) -> tuple[str, str]:
    """The status's `pending` (a PendingChange as a dict, or null) as (word, words)."""
    if not isinstance(v, dict) or not isinstance(v.get("rollout"), str) or not v["rollout"]:
        return "", ""
    bundle = str(v.get("bundle") or "")[:12]
    what = (
        f"rollout {v['rollout']}"
        + (f" (bundle {bundle})" if bundle else "")
        + f" from {v.get('by') or '?'}"
    )
    if v.get("deferred_by"):
        why = v.get("deferred_why") or "no reason given"
        return "deferred", f"{what}, deferred by {v['deferred_by']}: {why}"
    return "held", f"{what}, received {utc(_num(v.get('t')))} UTC, waits for an engineer there"


def _decommissioned(v: Any) -> str:
    if isinstance(v, dict):
        return f"{v.get('by') or '?'}: {v.get('why') or 'no reason given'}"
    return str(v) if isinstance(v, str) else ""


@dataclass(frozen=True, slots=True)
class ActivationRow:
    """One row of an edge's activation log as it publishes it."""

    seq: int
    snapshot: str
    at: float
    outcome: str
    by: str = ""
    note: str = ""
    fleet_snapshot: str = ""
    boot: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "snapshot": self.snapshot,
            "fleet_snapshot": self.fleet_snapshot,
            "at": self.at,
            "outcome": self.outcome,
            "by": self.by,
            "note": self.note,
            "boot": self.boot,
        }


def parse_activations(edge: str, payload: bytes) -> tuple[ActivationRow, ...]:
    d = _doc(payload, f"activations of {edge}")
    rows = d.get("activations")
    if not isinstance(rows, list):
        raise PayloadError(f"activations of {edge}: needs a list 'activations'")
    out = []
    for r in rows:
        if not isinstance(r, dict) or _num(r.get("at")) is None:
            continue  # counted by the caller as a bad row would be noise; the rest still count
        out.append(
            ActivationRow(
                seq=int(_num(r.get("seq")) or 0),
                snapshot=str(r.get("snapshot") or ""),
                at=float(r["at"]),
                outcome=str(r.get("outcome") or ""),
                by=str(r.get("by") or ""),
                note=str(r.get("note") or ""),
                fleet_snapshot=str(r.get("fleet_snapshot") or ""),
                boot=str(r.get("boot") or ""),
            )
        )
    return tuple(sorted(out, key=lambda a: a.seq))


@dataclass(frozen=True, slots=True)
class EngineRun:
    """One run of an edge's engine as the edge kept it: from its start to when it was last
    alive; "stopped" (a clean stop) or "lost" (killed, power cut: its last heartbeat)."""

    boot: str
    start: float
    end: float
    how: str  # stopped | lost

    def as_dict(self) -> dict[str, Any]:
        return {"boot": self.boot, "from": self.start, "to": self.end, "end": self.how}


def parse_runs(payload: bytes) -> tuple[EngineRun, ...]:
    """The runs in an activations message (none from an edge that does not send them)."""
    try:
        d = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return ()
    rows = d.get("runs") if isinstance(d, dict) else None
    out = []
    for r in rows if isinstance(rows, list) else ():
        if not isinstance(r, dict):
            continue
        start, end = _num(r.get("from")), _num(r.get("to"))
        if start is None or end is None or end < start:
            continue
        how = "stopped" if r.get("end") == "stopped" else "lost"
        out.append(EngineRun(str(r.get("boot") or ""), start, end, how))
    return tuple(sorted(out, key=lambda x: x.start))


@dataclass(frozen=True, slots=True)
class Gap:
    """An edge not running (or not heard) at a moment: since when, until when it came back
    (None: not yet, as far as the broker knows), and how it went."""

    since: float
    until: float | None
    how: str  # stopped | lost | last will | said offline


def offline_at(
    runs: Sequence[EngineRun], status: EdgeStatus | None, alive_t: float | None, when: float
) -> Gap | None:
    """The gap `when` falls in, from the runs an edge published and its status now (a last
    will: since it was last heard, its `alive`); None when it ran then, or before its record."""
    spans: list[tuple[float, float | None, str]] = [(r.start, r.end, r.how) for r in runs]
    if status is not None and status.boot is not None:
        if status.state == "online":
            spans.append((status.boot, None, ""))
        elif status.will:
            heard = max(x for x in (alive_t, status.t, status.boot) if x is not None)
            spans.append((status.boot, heard, "last will"))
        else:
            spans.append((status.boot, status.t, "said offline"))
    spans.sort(key=lambda s: s[0])
    for i, (start, end, how) in enumerate(spans):
        if when < start:
            return None  # before this run: an earlier one covers it, or nothing is known
        if end is None or when <= end:
            return None
        nxt = spans[i + 1][0] if i + 1 < len(spans) else None
        if nxt is None or when < nxt:
            return Gap(end, nxt, how)
    return None


# Outcomes after which the row's snapshot runs (core.snapshot.Outcome values).
_RUNS = ("applied", "rolled-back", "health-ok")


def running_at(rows: Sequence[ActivationRow], when: float) -> ActivationRow | None:
    """The row whose snapshot ran at `when`: the last activation at or before it (a
    health-failed row names what failed; the rollback row after it names what ran)."""
    best = None
    for r in rows:
        if r.at <= when and r.outcome in _RUNS:
            best = r
    return best


@dataclass(frozen=True, slots=True)
class RolloutResult:
    rollout: str
    edge: str
    state: str  # one of RESULT_STATES
    ok: bool
    snapshot: str = ""  # what runs now
    fleet_snapshot: str = ""
    message: str = ""
    t: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout,
            "edge": self.edge,
            "state": self.state,
            "ok": self.ok,
            "snapshot": self.snapshot,
            "fleet_snapshot": self.fleet_snapshot,
            "message": self.message,
            "t": self.t,
        }


def parse_result(edge: str, payload: bytes) -> RolloutResult:
    d = _doc(payload, f"rollout result of {edge}")
    if d.get("state") not in RESULT_STATES or not isinstance(d.get("rollout"), str):
        raise PayloadError(f"rollout result of {edge}: needs rollout and a state")
    return RolloutResult(
        rollout=d["rollout"],
        edge=edge,
        state=d["state"],
        ok=bool(d.get("ok")),
        snapshot=str(d.get("snapshot") or ""),
        fleet_snapshot=str(d.get("fleet_snapshot") or ""),
        message=str(d.get("message") or ""),
        t=_num(d.get("t")) or 0.0,
    )


@dataclass(frozen=True, slots=True)
class RolloutCommand:
    rollout: str
    action: str  # apply | rollback
    files: Mapping[str, str] = field(default_factory=dict)  # bundle file name -> base64
    snapshot: str = ""  # rollback: the snapshot (stored on the edge) to go back to
    by: str = ""
    t: float = 0.0


def parse_command(edge: str, payload: bytes) -> RolloutCommand:
    d = _doc(payload, f"rollout command for {edge}")
    rid, action = d.get("rollout"), d.get("action")
    if not isinstance(rid, str) or not rid or action not in ("apply", "rollback"):
        raise PayloadError(f"rollout command for {edge}: needs rollout and action apply|rollback")
    files: dict[str, str] = {}
    if action == "apply":
        bundle = d.get("bundle")
        raw = bundle.get("files") if isinstance(bundle, dict) else None
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise PayloadError(f"rollout {rid}: bundle.files must map file names to base64")
        files = dict(raw)
    elif not isinstance(d.get("snapshot"), str) or not d["snapshot"]:
        raise PayloadError(f"rollout {rid}: a rollback names the snapshot to go back to")
    return RolloutCommand(
        rollout=rid,
        action=action,
        files=files,
        snapshot=str(d.get("snapshot") or ""),
        by=str(d.get("by") or ""),
        t=_num(d.get("t")) or 0.0,
    )


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A verified remote change held on an edge with remote_apply = "confirm", until an
    engineer there accepts it (then applied like a local change) or defers it."""

    rollout: str
    action: str  # apply | rollback
    snapshot: str  # the local snapshot it would run (stored already)
    by: str  # who sent it, as the fleet tool said
    t: float  # when it was received
    bundle: str = ""  # the fleet bundle's id (apply)
    deferred_by: str = ""
    deferred_why: str = ""
    deferred_t: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout,
            "action": self.action,
            "snapshot": self.snapshot,
            "by": self.by,
            "t": self.t,
            "bundle": self.bundle,
            "deferred_by": self.deferred_by,
            "deferred_why": self.deferred_why,
            "deferred_t": self.deferred_t,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PendingChange:
        """From the edge's state file; ValueError for a record that is not one."""
        if not all(isinstance(d.get(k), str) and d[k] for k in ("rollout", "action", "snapshot")):
            raise ValueError("a pending change needs rollout, action and snapshot")
        return cls(
            rollout=d["rollout"],
            action=d["action"],
            snapshot=d["snapshot"],
            by=str(d.get("by") or ""),
            t=_num(d.get("t")) or 0.0,
            bundle=str(d.get("bundle") or ""),
            deferred_by=str(d.get("deferred_by") or ""),
            deferred_why=str(d.get("deferred_why") or ""),
            deferred_t=_num(d.get("deferred_t")),
        )


def command_payload(cmd: RolloutCommand) -> bytes:
    doc: dict[str, Any] = {"rollout": cmd.rollout, "action": cmd.action, "by": cmd.by, "t": cmd.t}
    if cmd.action == "apply":
        doc["bundle"] = {"files": dict(cmd.files)}
    else:
        doc["snapshot"] = cmd.snapshot
    return json.dumps(doc, separators=(",", ":")).encode()


# -- a bundle on this edge -------------------------------------------------------------------


def localize(bundle: Mapping[str, Any], local: Mapping[str, Any]) -> dict[str, Any]:
    """A rolled-out plant configuration as this edge runs it: its own [edge] and [fleet]
    tables, and for each device and broker it also has (same id), its own address and login.
    Everything else (signals, models, rules, control, uplink) is the bundle's."""
    out = {k: v for k, v in bundle.items() if k not in LOCAL_TABLES}
    for k in LOCAL_TABLES:
        if k in local:
            out[k] = local[k]
    for section, keys in (("devices", LOCAL_DEVICE_KEYS), ("brokers", LOCAL_BROKER_KEYS)):
        mine = {t.get("id"): t for t in local.get(section, []) if isinstance(t, dict)}
        merged = []
        for t in bundle.get(section, []) or []:
            if isinstance(t, dict) and t.get("id") in mine:
                own = mine[t["id"]]
                t = {k: v for k, v in t.items() if k not in keys}
                t.update({k: own[k] for k in keys if k in own})
            merged.append(t)
        if section in bundle:
            out[section] = merged
        # a broker only this edge has (the fleet's own, say) stays
        if section == "brokers":
            have = {t.get("id") for t in merged if isinstance(t, dict)}
            extra = [t for i, t in mine.items() if i not in have]
            if extra:
                out["brokers"] = merged + extra
    return out


# -- the fleet as the tool sees it -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeRow:
    """One line of the fleet view."""

    edge: str
    site: str
    tags: tuple[str, ...]
    online: bool
    last_seen: float | None
    boot: float | None
    version: str
    snapshot: str  # the fleet snapshot's short id when it came from one, else the local one
    backlog: int | None
    alarms: Mapping[str, int]
    models: str  # worst model word, or "" with no model
    result: str  # the last rollout result, "" when none
    stale: bool = False  # online by its last word, silent for three of its refreshes
    decommissioned: bool = False  # its login revoked by the fleet tool
    held: str = ""  # "held" / "deferred": a remote change waits for an engineer there


_WORD_RANK = {"NORMAL": 0, "OUT OF SERVICE": 1, "WARNING": 2, "CRITICAL": 3, "BAD": 4}


def worst_model(models: Mapping[str, str]) -> str:
    if not models:
        return ""
    return max(models.values(), key=lambda w: _WORD_RANK.get(w, 5))


class FleetState:
    """Every edge seen on the broker: its status, activation log and last rollout result,
    fed by messages (apply) and read as rows. Bounded: one entry per edge."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.status: dict[str, EdgeStatus] = {}
        self.activations: dict[str, tuple[ActivationRow, ...]] = {}
        self.results: dict[str, RolloutResult] = {}
        self.commands: dict[str, str] = {}  # edge -> rollout id of the retained command
        self.runs: dict[str, tuple[EngineRun, ...]] = {}
        self.alive: dict[str, float] = {}  # edge -> when it was last heard (its `alive`)
        self.bad_messages = 0
        self.last_problem = ""

    def apply(self, topic_name: str, payload: bytes) -> str | None:
        """Take one message; returns the edge it was about (None for another topic or a
        bad message, which is counted)."""
        where = edge_of(self.prefix, topic_name)
        if where is None:
            return None
        edge, kind = where
        try:
            if kind == "status":
                if payload:
                    self.status[edge] = parse_status(edge, payload)
            elif kind == "activations":
                if payload:
                    self.activations[edge] = parse_activations(edge, payload)
                    self.runs[edge] = parse_runs(payload)
            elif kind == "alive":
                t = _num(_doc(payload, f"alive of {edge}").get("t")) if payload else None
                if t is not None:
                    self.alive[edge] = t
            elif kind == "rollout/result":
                if payload:
                    self.results[edge] = parse_result(edge, payload)
            elif kind == "rollout":
                if payload:
                    self.commands[edge] = parse_command(edge, payload).rollout
                else:
                    self.commands.pop(edge, None)
            else:
                return None
        except PayloadError as e:
            self.bad_messages += 1
            self.last_problem = str(e)
            return None
        return edge

    def rows(
        self, *, site: str | None = None, tags: Iterable[str] = (), edges: Iterable[str] = ()
    ) -> list[EdgeRow]:
        """The edges (filtered: a site, every tag given, one of the edges given), by site then
        name."""
        want_tags, want_edges = set(tags), set(edges)
        out = []
        for e, s in self.status.items():
            if site is not None and s.site != site:
                continue
            if want_tags and not want_tags <= set(s.tags):
                continue
            if want_edges and e not in want_edges:
                continue
            r = self.results.get(e)
            out.append(
                EdgeRow(
                    edge=e,
                    site=s.site,
                    tags=s.tags,
                    online=s.state == "online",
                    last_seen=self.heard(e),
                    boot=s.boot,
                    version=s.version,
                    snapshot=self.last_snapshot(e)[:12],
                    backlog=s.backlog_rows,
                    alarms=s.alarms,
                    models=worst_model(s.models),
                    result="" if r is None else r.state,
                    stale=s.stale(time.time()),
                    decommissioned=bool(s.decommissioned),
                    held=s.held,
                )
            )
        return sorted(out, key=lambda r: (r.site, r.edge))

    def heard(self, edge: str) -> float | None:
        """When the edge was last heard: its status, or its last heartbeat when later (a
        last will carries the time it connected, not the time it went)."""
        s = self.status.get(edge)
        times = [t for t in (None if s is None else s.t, self.alive.get(edge)) if t is not None]
        return max(times) if times else None

    def last_snapshot(self, edge: str) -> str:
        """What the edge runs (the fleet bundle's id when it came from one); for an offline
        edge, whose goodbye names none, what its activation log says ran last."""
        s = self.status.get(edge)
        if s is not None and s.snapshot:
            return s.fleet_snapshot or s.snapshot
        last = running_at(self.activations.get(edge, ()), math.inf)
        return "" if last is None else (last.fleet_snapshot or last.snapshot)

    def at(self, when: float) -> dict[str, ActivationRow | Gap | None]:
        """Which snapshot each edge ran at `when`, or the gap it was offline in (None:
        nothing by then, as far as its published log reaches)."""
        names = sorted(set(self.status) | set(self.activations))
        out: dict[str, ActivationRow | Gap | None] = {}
        for e in names:
            gap = offline_at(self.runs.get(e, ()), self.status.get(e), self.alive.get(e), when)
            out[e] = gap if gap is not None else running_at(self.activations.get(e, ()), when)
        return out


def group_rows(rows: Sequence[EdgeRow], by: str) -> dict[str, list[EdgeRow]]:
    """Rows grouped by "site" or "tag" (an edge with two tags is in both groups)."""
    groups: dict[str, list[EdgeRow]] = {}
    for r in rows:
        keys = [r.site or "(no site)"] if by == "site" else (list(r.tags) or ["(no tag)"])
        for k in keys:
            groups.setdefault(k, []).append(r)
    return dict(sorted(groups.items()))


def plan_waves(
    edges: Sequence[str], canary: Sequence[str], waves: Sequence[str]
) -> list[list[str]]:
    """The canary first, then the rest in waves: each wave a count ("2") or a share of the
    edges left after the canary ("25%"); what the waves given do not cover goes in a last one.
    Raises ValueError naming a wave that is not a count or a share."""
    unknown = [c for c in canary if c not in edges]
    if unknown:
        raise ValueError(f"canary {', '.join(unknown)} is not among the target edges")
    rest = [e for e in edges if e not in canary]
    out: list[list[str]] = [list(canary)] if canary else []
    i = 0
    for w in waves:
        text = w.strip()
        try:
            n = math.ceil(len(rest) * float(text[:-1]) / 100.0) if text.endswith("%") else int(text)
        except ValueError:
            raise ValueError(f"wave {w!r} is neither a count (3) nor a share (25%)") from None
        if n <= 0:
            raise ValueError(f"wave {w!r} takes no edge")
        if i < len(rest):
            out.append(rest[i : i + n])
            i += n
    if i < len(rest):
        out.append(rest[i:])
    return out


# -- as text (the CLI and the fleet view say the same) ---------------------------------------


def utc(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = max(0.0, now - t)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 48 * 3600:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def alarm_text(alarms: Mapping[str, int]) -> str:
    """Unacknowledged alarms by priority, highest first: "U1 H2 M0" -> "urgent 1 high 2"."""
    order = ("urgent", "critical", "high", "medium", "low")
    keys = sorted(alarms, key=lambda k: order.index(k) if k in order else len(order))
    parts = [f"{k[0].upper()}{alarms[k]}" for k in keys if alarms[k]]
    return " ".join(parts) or "0"


ROW_HEADER = (
    f"{'EDGE':<14} {'SITE':<9} {'STATE':<7} {'SEEN':>4} {'SNAPSHOT':<12} "
    f"{'BACKLOG':>7} {'ALARMS':<8} MODEL"
)


def row_line(r: EdgeRow, now: float) -> str:
    """One edge in 78 columns (the fleet view at 80x24)."""
    backlog = "-" if r.backlog is None else str(r.backlog)
    state = ("STALE" if r.stale else "online") if r.online else "OFFLINE"
    if r.online and not r.stale and r.held:
        state = "HELD" if r.held == "held" else "DEFER"  # online, a change waits there
    if r.decommissioned:
        state = "DECOM"
    return (
        f"{r.edge[:14]:<14} {r.site[:9]:<9} {state:<7} "
        f"{ago(r.last_seen, now):>4} {r.snapshot[:12]:<12} {backlog[:7]:>7} "
        f"{alarm_text(r.alarms)[:8]:<8} {(r.models or '-')[:8]}"
    )


def list_text(rows: Sequence[EdgeRow], now: float, *, group: str | None = None) -> str:
    if not rows:
        return "no edge has said anything on this broker yet"
    if group is None:
        return "\n".join([ROW_HEADER, *(row_line(r, now) for r in rows)])
    lines = []
    for name, members in group_rows(rows, group).items():
        online = sum(1 for r in members if r.online)
        lines.append(f"{group} {name}: {len(members)} edge(s), {online} online")
        lines.append("  " + ROW_HEADER)
        lines.extend("  " + row_line(r, now) for r in members)
    return "\n".join(lines)


def detail_text(state: FleetState, edge: str, now: float) -> str:
    s = state.status.get(edge)
    if s is None:
        return (
            f"no edge {edge!r} on this broker (known: {', '.join(sorted(state.status)) or 'none'})"
        )
    heard = state.heard(edge)
    last = state.last_snapshot(edge)
    lines = [
        f"edge      {s.edge}  ({s.state}{', last will' if s.will else ''}"
        f"{', STALE: silent since it said so' if s.stale(now) else ''}"
        f"{', DECOMMISSIONED by ' + s.decommissioned if s.decommissioned else ''})",
        f"site      {s.site or '-'}   tags {' '.join(s.tags) or '-'}",
        f"seen      {utc(heard)} UTC ({ago(heard, now)} ago)",
    ]
    if s.state != "online":
        how = "its last will, no goodbye" if s.will else "it said goodbye"
        lines.append(f"offline   since {utc(heard)} UTC ({ago(heard, now)} ago): {how}")
    lines += [
        f"boot      {utc(s.boot)} UTC   floorconsole {s.version or '?'}",
        (
            f"snapshot  {s.snapshot[:12]}"
            + (f"  (fleet bundle {s.fleet_snapshot[:12]})" if s.fleet_snapshot else "")
            if s.snapshot
            else f"snapshot  {last[:12] or '-'}" + ("  (the last its log says ran)" if last else "")
        ),
        f"backlog   {'-' if s.backlog_rows is None else s.backlog_rows} rows   "
        f"unacked alarms {alarm_text(s.alarms)}",
        "models    " + (", ".join(f"{k} {v}" for k, v in s.models.items()) or "none"),
    ]
    if s.held:
        lines += textwrap.wrap(
            s.held_text, 78, initial_indent=f"{s.held:<10}", subsequent_indent=" " * 10
        )
    r = state.results.get(edge)
    if r is not None:
        lines.append(f"rollout   {r.rollout}: {r.state} at {utc(r.t)} UTC")
        lines += textwrap.wrap(r.message, 78, initial_indent=" " * 10, subsequent_indent=" " * 10)
    rows = state.activations.get(edge, ())
    lines.append(f"activations ({len(rows)}, newest first):")
    for a in reversed(rows[-15:]):
        name = a.fleet_snapshot[:12] or a.snapshot[:12]
        line = f"  {utc(a.at)}  {name:<12} {a.outcome:<25} {a.by[:16]:<16} {a.note[:40]}"
        if len(line.rstrip()) <= 78:
            lines.append(line.rstrip())
            continue
        # the note under the row, in two lines at most: it reads at 80x24
        lines.append(f"  {utc(a.at)}  {name:<12} {a.outcome:<25} {a.by[:16]}")
        note = textwrap.wrap(a.note, 78, initial_indent=" " * 23, subsequent_indent=" " * 23)
        lines += note[:2]
    return "\n".join(lines)


def at_text(state: FleetState, when: float) -> str:
    answers = state.at(when)
    if not answers:
        return "no edge has published its activations on this broker"
    lines = [f"at {utc(when)} UTC:"]
    for edge, row in answers.items():
        if isinstance(row, Gap):
            back = (
                f", back {utc(row.until)} UTC"
                if row.until is not None
                else " (not back yet, as far as the broker knows)"
            )
            lines.append(f"  {edge:<16} OFFLINE since {utc(row.since)} UTC ({row.how}){back}")
        elif row is None:
            lines.append(f"  {edge:<16} nothing activated by then (as far as its log reaches)")
        else:
            fleet = f" (bundle {row.fleet_snapshot[:12]})" if row.fleet_snapshot else ""
            lines.append(
                f"  {edge:<16} {row.snapshot[:12]}{fleet}, since {utc(row.at)} UTC "
                f"({row.outcome} by {row.by})"
            )
    return "\n".join(lines)
