"""The uplink: its [uplink] plant-file table, its JSON messages and its figures, all pure.

Messages (DESIGN.md, "Uplink messages"), on `{topic_prefix}/{edge_id}/{kind}`:

    data    {"edge": ID, "boot": BOOT, "seq": N, "historical": BOOL, "samples": [ENTRY, ...]}
    alarms  {"edge": ID, "boot": BOOT, "seq": N, "historical": BOOL, "alarms":  [RECORD, ...]}
    audit   {"edge": ID, "boot": BOOT, "seq": N, "historical": BOOL, "records": [RECORD, ...]}

ENTRY is {"s": SIGNAL, "v": VALUE, "q": QUALITY, "t": EPOCH_MS}, and for an enumerated signal
(a model's state) also "l": its word as the console shows it ("CRITICAL", "OUT OF SERVICE"
while BAD); an alarm RECORD is one
transition, {"alarm", "from", "to", "priority", "text", "by", "t"} (alarm_record); audit
RECORDs are the audit trail's own JSON objects. VALUE is a number, true or
false, null (no value; also NaN and infinities, which JSON cannot carry) or, for a waveform
signal, an array of numbers (non-finite points as null). Waveform samples travel in messages
of their own, never mixed with scalars, so one large block does not hold scalars back; a
message closes at `batch` entries or `max_message_bytes`, whichever comes first. A signal
whose id matches a glob in `exclude` (e.g. "motor*.vibration.*") is not forwarded at all: the
way to keep raw waveforms on the edge while their features go up. QUALITY is "GOOD",
"UNCERTAIN <reason>" or "BAD <reason>", as in history exports. BOOT names the run of the
engine that recorded the entries (not the one that sends them).

One `seq` counter serves all three kinds: it rises by one per message for the life of the data
directory, so a receiver subscribed to `{prefix}/{edge}/#` sees one gap-free sequence. A seq
is consumed by a message the `reject_new` policy refused: the receiver sees the gap, and the
edge counts it. Live messages go out in seq order; after an outage the backlog goes out in seq
order too, with "historical": true, interleaved with live ones so that live data is never
more than a second late. A receiver orders each of the two streams by seq.

`{prefix}/{edge}/status` is retained: {"edge", "boot", "state": "online" | "offline",
"snapshot", "backlog_rows", "backlog_bytes", "oldest_age_s", "t"}; the last will says offline
(with null backlog figures: they are not known when the broker sends it).

With `primary_host = "ID"` the edge publishes data only while `{prefix}/STATE/ID` holds
{"online": true} (retained, set by the consuming application after it subscribed, cleared by
its last will), after Sparkplug B's primary host: a broker restart that forgets every
subscription then loses nothing, because the edge waits until the consumer is back.

A primary host that says {"online": true, "receipts": true} publishes receipts on
`{prefix}/STATE/ID/{edge}`: {"seq": N}, the highest historical seq it has received (QoS 0,
often while it changes, again every second). The edge then keeps at most `host_window` bytes
of backlog sent but not yet received, so the broker's queue to that consumer stays short and
live messages, which wait in that queue behind backlog ones, still arrive within a second of
being sampled however long the backlog and however slow the consumer. Without receipts the
backlog goes as fast as the broker takes it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from floorconsole.core.history_format import json_value, quality_text
from floorconsole.core.model_state import enum_text
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import SparkplugConfig, SparkplugSessionView, parse_sparkplug
from floorconsole.core.validate import ID_PATTERN, UPLINK, Problem, Problems

if TYPE_CHECKING:
    from floorconsole.core.alarms import JournalEntry

ON_FULL = ("drop_oldest", "reject_new")
# kind -> the key of the list in the message; the kind is also the last topic level.
KINDS: dict[str, str] = {"data": "samples", "alarms": "alarms", "audit": "records"}

_KEYS = (
    "broker",
    "topic_prefix",
    "max_backlog_rows",
    "max_backlog_bytes",
    "on_full",
    "batch",
    "max_message_bytes",
    "inflight",
    "live_budget",
    "max_drain_rate",
    "exclude",
    "primary_host",
    "host_window",
    "status_interval",
    "reconnect_min",
    "reconnect_max",
    "format",
    "sparkplug",
)
# What the uplink speaks on the plant broker: its own JSON messages (below), Sparkplug B
# 3.0 (core/sparkplug.py, [uplink.sparkplug]), or "both" side by side, each with an outbox
# of its own (a broker down for one loses the other nothing).
FORMATS = ("json", "sparkplug", "both")


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """The [uplink] table. Sizes in bytes, times in seconds.

    max_backlog_rows counts entries (samples, alarm and audit records) waiting in the outbox,
    max_backlog_bytes the bytes of their JSON. live_budget is the share of the in-flight
    window kept free for live messages while the backlog drains (0.05: one slot of 20, for
    live data is a few messages a second against thousands); max_drain_rate caps backlog
    messages per second (0: as fast as the window allows), for plant brokers that drop what
    a slow subscriber cannot take. host_window bounds the backlog bytes sent but not yet
    confirmed by the primary host's receipts (when it sends them).
    """

    broker: str
    topic_prefix: str = "floorconsole"
    max_backlog_rows: int = 5_000_000
    max_backlog_bytes: int = 1 << 30
    on_full: str = "drop_oldest"
    batch: int = 200
    max_message_bytes: int = 256 * 1024
    inflight: int = 20
    live_budget: float = 0.05
    max_drain_rate: float = 0.0
    exclude: tuple[str, ...] = ()
    primary_host: str | None = None
    host_window: int = 2 << 20
    status_interval_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    format: str = "json"
    sparkplug: SparkplugConfig | None = None  # with format = "sparkplug" or "both"

    @property
    def live_reserve(self) -> int:
        """In-flight slots the backlog leaves to live messages while both are flowing."""
        if self.live_budget <= 0 or self.inflight < 2:
            return 0
        return min(self.inflight - 1, max(1, math.ceil(self.inflight * self.live_budget)))


def parse_uplink(
    raw: dict[str, Any] | None, broker_ids: set[str]
) -> tuple[UplinkConfig | None, list[Problem]]:
    """The [uplink] table, or None when the plant file has none; every problem with its path."""
    if raw is None:
        return None, []
    c = Problems(UPLINK)
    t = c.table(raw, "uplink")
    if t is None:
        return None, c.problems
    p = "uplink"
    c.unknown_keys(t, p, _KEYS)

    broker = c.string(t, "broker", p)
    if "broker" not in t:
        c.add("uplink.broker", "missing; it is required (the id of a [[brokers]] entry)")
    elif broker is not None and broker not in broker_ids:
        known = ", ".join(sorted(broker_ids)) or "none defined"
        c.add("uplink.broker", f"{broker!r} is not a broker in this file ({known})")
        broker = None

    prefix = c.string(t, "topic_prefix", p, default="floorconsole")
    if prefix is not None and (
        not prefix
        or prefix.startswith("/")
        or prefix.endswith("/")
        or "+" in prefix
        or "#" in prefix
        or "//" in prefix
    ):
        c.add(
            "uplink.topic_prefix",
            f'{prefix!r} is not a topic prefix like "floorconsole" or '
            '"plant3/edge" (no wildcards, no leading, trailing or double /)',
        )
        prefix = None

    on_full = c.string(t, "on_full", p, default="drop_oldest", choices=ON_FULL)
    rows = c.integer(t, "max_backlog_rows", p, default=5_000_000, lo=1, hi=10**12)
    size = c.size(t, "max_backlog_bytes", p, default=1 << 30, lo=1024)
    batch = c.integer(t, "batch", p, default=200, lo=1, hi=100_000)
    max_message = c.size(t, "max_message_bytes", p, default=256 * 1024, lo=1024)
    inflight = c.integer(t, "inflight", p, default=20, lo=1, hi=1000)
    live_budget = c.number(t, "live_budget", p, default=0.05, lo=0.0, hi=1.0, hi_open=True)
    drain_rate = c.number(t, "max_drain_rate", p, default=0.0, lo=0.0, hi=1e9)

    exclude: tuple[str, ...] = ()
    if "exclude" in t:
        v = t["exclude"]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            c.add(
                "uplink.exclude",
                'expected an array of signal ids or globs, e.g. ["motor1.vibration.*"]',
            )
        else:
            exclude = tuple(v)

    host = c.string(t, "primary_host", p, pattern=ID_PATTERN)
    host_window = c.size(t, "host_window", p, default=2 << 20, lo=1024)
    status = c.duration(t, "status_interval", p, default=10.0, minimum=1.0)
    rmin = c.duration(t, "reconnect_min", p, default=0.5, minimum=0.05)
    rmax = c.duration(t, "reconnect_max", p, default=30.0, minimum=0.05)
    if "reconnect_min" in t or "reconnect_max" in t:
        if rmin > rmax:
            c.add("uplink.reconnect_max", f"{rmax:g} s is below reconnect_min ({rmin:g} s)")

    fmt = c.string(t, "format", p, default="json", choices=FORMATS)
    sparkplug = None
    if fmt in ("sparkplug", "both"):
        if "sparkplug" not in t:
            c.add(
                "uplink.sparkplug",
                f'missing; format = "{fmt}" needs an [uplink.sparkplug] table with '
                "group (and optionally edge_node, primary_host)",
            )
        else:
            sparkplug = parse_sparkplug(t["sparkplug"], c)
    elif "sparkplug" in t:
        c.add("uplink.sparkplug", f'given, but format is {fmt!r}; set format = "sparkplug"')

    if c.problems or broker is None or prefix is None or on_full is None or fmt is None:
        return None, c.problems
    return UplinkConfig(
        broker=broker,
        topic_prefix=prefix,
        max_backlog_rows=rows,
        max_backlog_bytes=size,
        on_full=on_full,
        batch=batch,
        max_message_bytes=max_message,
        inflight=inflight,
        live_budget=live_budget,
        max_drain_rate=drain_rate,
        exclude=exclude,
        primary_host=host,
        host_window=host_window,
        status_interval_s=status,
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
        format=fmt,
        sparkplug=sparkplug,
    ), []


# ---------------------------------------------------------------------- topics


def topic(prefix: str, edge: str, kind: str) -> str:
    """`{prefix}/{edge}/data` | alarms | audit | status."""
    return f"{prefix}/{edge}/{kind}"


def host_state_topic(prefix: str, host: str) -> str:
    return f"{prefix}/STATE/{host}"


def host_receipt_topic(prefix: str, host: str, edge: str) -> str:
    return f"{prefix}/STATE/{host}/{edge}"


# ---------------------------------------------------------------------- entries


_QUALITY_JSON: dict[int, str] = {
    q * 256 + r: f',"q":{json.dumps(quality_text(Quality(q), Reason(r)))},"t":'
    for q in Quality
    for r in Reason
}


# After an entry's head: a float's longest repr (24), the quality and a time in ms (14 digits
# and a sign), the closing brace and a comma.
_NUMBER_TAIL = 24 + len(_QUALITY_JSON[Quality.GOOD * 256 + Reason.NONE]) + 17


def _label_bound(labels: Sequence[str]) -> int:
    """',"l":' and the word: a label, or a number's text for a value none names."""
    return 5 + max(26, *(len(json.dumps(w)) for w in labels)) if labels else 0


class SampleEncoder:
    """Samples to the JSON text of message entries, one at a time, with per-signal caches.

    encode() returns (text, is_waveform), or None for an excluded signal; it raises
    ValueError for a sample it cannot put into JSON (a time that is not a finite number).
    """

    def __init__(self, exclude: Sequence[str] = ()) -> None:
        self._exclude = tuple(exclude)
        self._heads: dict[str, str | None] = {}
        self.heads = self._heads  # read-only for others: signal -> head (None: excluded)
        self._worst_head = 0  # the longest head made
        # Enumerated signals (a model's state): their entries carry "l", the word the console
        # shows ("CRITICAL", "OUT OF SERVICE"), beside the code in "v".
        self.labels: dict[str, tuple[str, ...]] = {}

    def _head(self, signal: str) -> str | None:
        if any(fnmatch.fnmatchcase(signal, pat) for pat in self._exclude):
            head = None
        else:
            head = '{"s":' + json.dumps(signal) + ',"v":'
            self._worst_head = max(self._worst_head, len(head))
        self._heads[signal] = head
        return head

    def entry_bound(self, signal: str) -> int:
        """The most bytes a GOOD number of this signal takes as an entry, comma included:
        its head, a float's longest repr (24), the quality and a time in ms (14 digits and
        a sign), the closing brace; with its longest label when it is enumerated."""
        head = self._head_of(signal)
        return len(head or "") + _NUMBER_TAIL + _label_bound(self.labels.get(signal, ()))

    def worst_entry_bound(self) -> int:
        """entry_bound's largest over every signal seen so far (O(labels), not O(signals))."""
        labels = [w for ws in self.labels.values() for w in ws]
        return self._worst_head + _NUMBER_TAIL + (_label_bound(labels) if labels else 0)

    def skips(self, signal: str) -> bool:
        """Whether a signal is excluded (its samples encode to None)."""
        return self._head_of(signal) is None

    def _head_of(self, signal: str) -> str | None:
        """The cached head (encode() inlines this lookup: it is the hot path)."""
        head = self._heads.get(signal, "")
        return self._head(signal) if head == "" else head

    def encode(self, s: Sample) -> tuple[str, bool] | None:
        head = self._heads.get(s.signal, "")
        if head == "":
            if not isinstance(s.signal, str):
                raise ValueError(f"signal name must be a string, not {type(s.signal).__name__}")
            head = self._head(s.signal)
        if head is None:
            return None
        v = s.value
        cls = v.__class__
        wave = False
        if cls is float:  # exactly: numpy's float64 is a float subclass that reprs differently
            x = cast(float, v)
            text = repr(x) if x - x == 0.0 else "null"  # NaN and infinities are not JSON
        elif cls is bool:
            text = "true" if v else "false"
        elif v is None:
            text = "null"
        elif isinstance(v, np.ndarray):
            text = json.dumps(json_value(v), separators=(",", ":"))
            wave = True
        else:
            x = float(v)  # type: ignore[arg-type]  # ints, numpy scalars
            text = repr(x) if math.isfinite(x) else "null"
        t = s.t_source
        if not (t.__class__ in (float, int) and math.isfinite(t)):
            raise ValueError(f"{s.signal!r}: time {t!r} is not a finite number")
        if self.labels:
            labels = self.labels.get(s.signal)
            if labels:
                code = None if wave else cast("float | bool | None", v)
                word = enum_text(labels, code, s.quality.name, s.reason.text)
                text += ',"l":' + json.dumps(word)
        return f"{head}{text}{_QUALITY_JSON[s.quality * 256 + s.reason]}{round(t * 1000)}}}", wave


def alarm_record(entry: JournalEntry) -> dict[str, Any]:
    """One alarm transition as an entry of an alarms message."""
    return {
        "alarm": entry.alarm_id,
        "from": str(entry.from_state),
        "to": str(entry.to_state),
        "priority": entry.priority,
        "text": entry.text,
        "by": entry.by,
        "t": round(entry.t_wall * 1000),
    }


def record_json(record: dict[str, Any]) -> str:
    """An alarm or audit record as one JSON entry (non-finite numbers become null)."""
    return json.dumps(_finite(record), separators=(",", ":"), allow_nan=False)


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def chunk_entries(
    entries: Sequence[tuple[str, float]], batch: int, max_bytes: int
) -> list[tuple[bytes, float, int]]:
    """Entries (json text, wall time) to message bodies: (JSON array, oldest time, count).

    A body closes at `batch` entries, or before an entry that would take it past max_bytes;
    an entry larger than max_bytes on its own still goes, alone.
    """
    out: list[tuple[bytes, float, int]] = []
    i, n = 0, len(entries)
    while i < n:
        size = 2
        j = i
        t_min = entries[i][1]
        while j < n and j - i < batch:
            add = len(entries[j][0]) + 1
            if j > i and size + add > max_bytes:
                break
            size += add
            t = entries[j][1]
            if t < t_min:
                t_min = t
            j += 1
        body = "[" + ",".join(e[0] for e in entries[i:j]) + "]"
        out.append((body.encode("utf-8"), t_min, j - i))
        i = j
    return out


@functools.lru_cache(maxsize=64)
def _envelope(edge: str, boot: str, historical: bool, kind: str) -> tuple[bytes, bytes]:
    return (
        f'{{"edge":{json.dumps(edge)},"boot":{json.dumps(boot)},"seq":'.encode(),
        f',"historical":{"true" if historical else "false"},"{KINDS[kind]}":'.encode(),
    )


def message_payload(
    edge: str, boot: str, seq: int, historical: bool, kind: str, body: bytes
) -> bytes:
    """The whole message: the envelope around a stored body (decided at send time: the
    historical flag says how this message left, not how it was recorded)."""
    head, mid = _envelope(edge, boot, historical, kind)
    return b"".join((head, str(seq).encode(), mid, body, b"}"))


def status_payload(
    edge: str,
    boot: str,
    *,
    online: bool,
    snapshot: str,
    backlog_rows: int | None,
    backlog_bytes: int | None,
    oldest_age_s: float | None,
    t: float,
) -> bytes:
    return json.dumps(
        {
            "edge": edge,
            "boot": boot,
            "state": "online" if online else "offline",
            "snapshot": snapshot,
            "backlog_rows": backlog_rows,
            "backlog_bytes": backlog_bytes,
            "oldest_age_s": None if oldest_age_s is None else round(oldest_age_s, 3),
            "t": round(t * 1000),
        },
        separators=(",", ":"),
    ).encode("utf-8")


def host_state_payload(online: bool, t: float, *, receipts: bool = False) -> bytes:
    return json.dumps(
        {"online": online, "receipts": receipts, "t": round(t * 1000)}, separators=(",", ":")
    ).encode("utf-8")


def receipt_payload(seq: int) -> bytes:
    return b'{"seq":%d}' % seq


def parse_receipt(payload: bytes | bytearray) -> int | None:
    """The seq of a receipt, or None for anything that is not one."""
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    seq = d.get("seq") if isinstance(d, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class HostState(NamedTuple):
    online: bool
    receipts: bool  # it sends receipts: pace the backlog by them from the first byte


def parse_host_state(payload: bytes | bytearray) -> HostState:
    """Online only for a JSON object whose "online" is true; anything else is offline."""
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return HostState(False, False)
    if not isinstance(d, dict):
        return HostState(False, False)
    return HostState(d.get("online") is True, d.get("receipts") is True)


# ---------------------------------------------------------------------- figures


class DrainMeter:
    """Rate, progress and time left of a backlog drain, from acknowledged entries over time."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self.total = 0
        self.done = 0
        self._points: deque[tuple[float, int]] = deque()

    def start(self, now: float, total: int) -> None:
        self.total = total
        self.done = 0
        self._points.clear()
        self._points.append((now, 0))

    def add(self, now: float, entries: int) -> None:
        self.done += entries
        self._points.append((now, self.done))
        while len(self._points) > 2 and now - self._points[1][0] > self.window_s:
            self._points.popleft()

    def rate(self, now: float) -> float:
        """Entries per second over the last window_s (0 when nothing moved in it)."""
        if len(self._points) < 2:
            return 0.0
        t0, n0 = self._points[0]
        t1, n1 = self._points[-1]
        if now - t1 > self.window_s or t1 <= t0:
            return 0.0
        return (n1 - n0) / max(now - t0, 1e-9)

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.done)

    @property
    def progress(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def time_left(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate <= 0 else self.remaining / rate


@dataclass(frozen=True, slots=True)
class UplinkStats:
    """What the console's uplink panel shows; plain data, safe to put in a frame.

    state: connecting | up | waiting for host | down | stopped. Backlog figures count what is
    in the outbox (not yet acknowledged by the broker). dropped counts entries by reason:
    backlog_full (on_full policy), not_stored (the database refused writes for longer than the
    historian keeps rows in memory), unencodable, unreadable (a row stored in Sparkplug form
    whose alias plan is lost).
    """

    state: str
    broker: str
    endpoint: str
    state_age_s: float
    last_error: str
    backlog_rows: int
    backlog_bytes: int
    backlog_messages: int
    backlog_full: bool
    oldest_age_s: float | None
    draining: bool
    drain_rate: float  # entries per second out of the backlog
    drain_progress: float | None  # 0..1 while draining
    time_left_s: float | None
    published: int
    acked: int
    inflight: int
    duplicates_possible: int  # messages sent again after a reconnect or restart
    reconnects: int
    live_lag_s: float | None  # age of the newest entry of the last live message when sent
    next_seq: int
    disk_full: int
    db_errors: int
    db_last_error: str
    dropped: tuple[tuple[str, int], ...] = field(default=())
    sparkplug: SparkplugSessionView | None = None  # with format = "sparkplug"

    @property
    def dropped_total(self) -> int:
        return sum(n for _reason, n in self.dropped)


def uplink_conditions(st: UplinkStats) -> list[tuple[str, str]]:
    """(severity, text) for the console's banner: what an operator must know about the uplink."""
    out: list[tuple[str, str]] = []
    if st.state == "down":
        why = f": {st.last_error}" if st.last_error else ""
        out.append(
            (
                "medium",
                f"uplink to {st.broker} down{why}; {st.backlog_rows:_} entries kept for later",
            )
        )
    elif st.state == "waiting for host":
        out.append(
            ("medium", f"uplink waits for the primary host; {st.backlog_rows:_} entries kept")
        )
    if st.backlog_full:
        out.append(("high", "uplink backlog full: entries are being dropped"))
    if st.disk_full:
        out.append(("high", f"uplink outbox: disk full ({st.disk_full} failed writes)"))
    for reason, n in st.dropped:
        if n:
            out.append(("high", f"uplink dropped {n:_} entries ({reason.replace('_', ' ')})"))
    return out
