"""Sparkplug data messages made once, when their samples are recorded into the outbox.

Why: a backlog row the uplink sends after an outage would otherwise be parsed from its JSON
body and built into protobuf metrics one by one at send time (about 3 us a sample, four times
what the JSON uplink spends wrapping the stored body). The historian's writer thread has the
samples themselves in hand when it records the row, so it encodes the row's metrics there,
once, in the form a backlog row is sent in: by alias, with a timestamp, a double value and
is_historical = true, grouped by owner (the node or a device) in the order the slow path
groups them. The publisher adds the payload's timestamp and seq around the stored bytes.

Only rows whose every sample is a GOOD number of a Double metric the birth named get this
form (the common case); anything else (a bad quality, a boolean, an unknown signal, a
waveform) leaves the row to the publisher's general path, which also keeps the quality
property rules. A row is stamped with a fingerprint of the alias plan it was made with; after
a configuration change (or a restart with another plant file) a row of an older plan goes the
general path.

A row that has this form is stored without its JSON body (the outbox, adapters/outbox.py):
encoding every sample twice made recording cost more than the form saved at send time. Each
plan is stored beside the rows (outbox_plans, in the rows' own transaction), so a row of any
plan can be read back as entries (`row_entries`) by the general path, by a JSON uplink after
the format went back to JSON, and by tools.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.core.quality import Quality
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import DataType

# 2: the fingerprint covers what the plan holds (1 hashed the metric set without types, so a
# signal turned from Double to Boolean kept the fingerprint of a plan that no longer had it).
VERSION = b"\x02"
_GROUP = struct.Struct("<HII")  # owner index, samples, bytes of the metrics that follow
_HEAD = len(VERSION) + 8  # version and fingerprint


@dataclass(frozen=True, slots=True)
class RowPlan:
    """What a row is encoded with: signal -> (alias, owner index) for Double metrics, the
    owners (None: the node) and a fingerprint of both."""

    signals: Mapping[str, tuple[int, int]]
    owners: tuple[str | None, ...]
    fingerprint: bytes

    def text(self) -> str:
        """The plan as stored in outbox_plans (JSON), for reading its rows back."""
        return json.dumps(
            {
                "owners": list(self.owners),
                "signals": [[s, a, o] for s, (a, o) in self.signals.items()],
            },
            separators=(",", ":"),
        )


def plan_from_text(fingerprint: bytes, text: str) -> RowPlan:
    """A plan as outbox_plans holds it."""
    d = json.loads(text)
    signals = {str(s): (int(a), int(o)) for s, a, o in d["signals"]}
    return RowPlan(signals, tuple(d["owners"]), fingerprint)


def row_fingerprint(blob: bytes) -> bytes | None:
    """The fingerprint of the plan a stored row was made with (None: not this form)."""
    return blob[1:_HEAD] if blob[:1] == VERSION and len(blob) >= _HEAD else None


def row_entries(blob: bytes, plan: RowPlan) -> list[dict[str, object]] | None:
    """A stored row as the JSON body's entries ({"s", "v", "q": "GOOD", "t"}), in time order
    (the form keeps each owner's samples together); None for a row of another plan."""
    if row_fingerprint(blob) != plan.fingerprint:
        return None
    frames = _frames(blob)
    if frames is None:
        raise ValueError(f"row of plan {plan.fingerprint.hex()}: its groups do not read")
    by_key = {(o, a): s for s, (a, o) in plan.signals.items()}
    out: list[dict[str, object]] = []
    for owner, _n, body in frames:
        for m in spb.Payload.FromString(body).metrics:
            sig = by_key.get((owner, m.alias))
            if sig is None:  # cannot be: the plan named every alias it encoded
                raise ValueError(f"row of plan {plan.fingerprint.hex()}: unknown alias {m.alias}")
            out.append({"s": sig, "v": m.double_value, "q": "GOOD", "t": m.timestamp})
    out.sort(key=lambda e: e["t"])  # type: ignore[arg-type,return-value]
    return out


def row_plan(fast: Mapping[str, tuple[int, str | None, DataType]]) -> RowPlan:
    """The plan of an uplink's metric set: signal -> (alias, owner, type)."""
    owners: dict[str | None, int] = {}
    signals: dict[str, tuple[int, int]] = {}
    for sig, (alias, owner, datatype) in fast.items():
        if datatype != DataType.Double:
            continue
        signals[sig] = (alias, owners.setdefault(owner, len(owners)))
    # Of exactly what a row is read back with: the owners in order and each Double metric's
    # alias and owner (a plan with the same fingerprint reads the same bytes the same way).
    text = repr((list(owners), sorted((s, a, o) for s, (a, o) in signals.items())))
    fp = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return RowPlan(signals, tuple(owners), fp)


# A metric as a backlog row holds it, serialized by hand in the canonical field order (what
# SerializeToString gives): Payload.metrics (field 2, length-delimited), then alias (2), timestamp
# (3, a varint of 6 bytes for any time from 1971 to 2109), is_historical (5) = true,
# double_value (13, 8 bytes little-endian).
_TS_MIN, _TS_END = 1 << 35, 1 << 42
_TAIL = 18  # 0x18, the timestamp's 6 bytes, 0x28 0x01, 0x69, the double's 8 bytes
_NUMBER_TYPES = frozenset({float, int, np.float64, np.float32, np.int64, np.int32, np.int16,
                           np.uint16, np.uint32, np.uint64, np.int8, np.uint8})  # fmt: skip


class _Tables:
    """A plan's per-signal prefixes (the metric's tag, its length, the alias) as arrays, for
    encoding a whole row at once."""

    def __init__(self, plan: RowPlan) -> None:
        self.index = {sig: i for i, sig in enumerate(plan.signals)}
        k = len(self.index)
        self.owner = np.zeros(k, dtype=np.intp)
        self.prefix = np.zeros((k, 5), dtype=np.uint8)
        width = np.zeros(k, dtype=np.intp)  # prefix bytes: 4 or 5
        self.ok = True  # every alias fits in two bytes (else the row goes the slow path)
        for i, (alias, owner) in enumerate(plan.signals.values()):
            self.owner[i] = owner
            if alias < 0x80:
                self.prefix[i, :4] = (0x12, 19 + 1, 0x10, alias)
                width[i] = 4
            elif alias < 0x4000:
                self.prefix[i] = (0x12, 19 + 2, 0x10, (alias & 0x7F) | 0x80, alias >> 7)
                width[i] = 5
            else:
                self.ok = False
        # Which of the 5 prefix columns a metric keeps (a one-byte alias drops the last).
        self.keep = np.ones((k, 5 + _TAIL), dtype=bool)
        self.keep[:, 4] = width == 5


class SparkplugRows:
    """The outbox's RowEncoder for a Sparkplug uplink (writer thread); `plan` is replaced
    whole (one reference: no lock) when the uplink's metric set changes."""

    def __init__(self) -> None:
        # The plan and its tables, replaced together (one reference: the writer thread never
        # sees one plan's fingerprint with another's aliases).
        self._current: tuple[RowPlan, _Tables] | None = None
        self.plans: dict[bytes, RowPlan] = {}  # every plan this process encoded with

    @property
    def plan(self) -> RowPlan | None:
        current = self._current
        return None if current is None else current[0]

    @plan.setter
    def plan(self, plan: RowPlan | None) -> None:
        if plan is not None:
            self.plans[plan.fingerprint] = plan
        self._current = None if plan is None else (plan, _Tables(plan))

    def plan_text(self, fingerprint: bytes) -> str | None:
        """What outbox_plans stores for a fingerprint this encoder made rows with."""
        plan = self.plans.get(fingerprint)
        return None if plan is None else plan.text()

    def encode_row(self, samples: Sequence[Sample]) -> bytes | None:
        """A row's stored form, or None when it has none (see the module's docstring)."""
        current = self._current
        if current is None or not samples:
            return None
        plan, tables = current
        if tables.ok:
            out = _encode_fast(plan, tables, samples)
            if out is not None:
                return out
        return self._encode_slow(plan, samples)

    def _encode_slow(self, plan: RowPlan, samples: Sequence[Sample]) -> bytes | None:
        """One sample at a time through protobuf: the rows _encode_fast leaves (ints of
        other kinds, odd times) come out the same."""
        signals = plan.signals
        good = Quality.GOOD
        isfinite = math.isfinite
        groups: dict[int, spb.Payload] = {}
        counts: dict[int, int] = {}
        for s in samples:
            f = signals.get(s.signal)
            if f is None or s.quality is not good:
                return None
            v = s.value
            cls = v.__class__
            if cls is float:
                x = v
            elif cls is bool or v is None:
                return None
            else:  # ints and numpy scalars, as the JSON body has them: a float
                try:
                    x = float(v)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    return None
            if not isfinite(x):  # type: ignore[arg-type]
                return None
            alias, owner = f
            p = groups.get(owner)
            if p is None:
                p = groups[owner] = spb.Payload()
                counts[owner] = 0
            counts[owner] += 1
            # As the JSON body has it: the time in whole milliseconds.
            p.metrics.add(
                alias=alias,
                timestamp=round(s.t_source * 1000),
                double_value=x,  # type: ignore[arg-type]
                is_historical=True,
            )
        out = [VERSION, plan.fingerprint]
        for owner, p in groups.items():
            body = p.SerializeToString()
            out.append(_GROUP.pack(owner, counts[owner], len(body)))
            out.append(body)
        return b"".join(out)


def _encode_fast(plan: RowPlan, tables: _Tables, samples: Sequence[Sample]) -> bytes | None:
    """The row encoded whole with numpy (about a quarter of the per-sample protobuf calls);
    None when it is not the common case: a sample that is not a GOOD finite number of the
    plan's, or a time outside 1971-2109. The bytes are those of _encode_slow."""
    sigs, vals, quals, _r, times, _m, _d = zip(*samples, strict=True)
    if quals.count(Quality.GOOD) != len(quals):
        return None
    if not _NUMBER_TYPES.issuperset(map(type, vals)):
        return None
    get = tables.index.get
    idx_list = list(map(get, sigs))
    if None in idx_list:
        return None
    idx = np.fromiter(idx_list, dtype=np.intp, count=len(idx_list))
    v = np.array(vals, dtype="<f8")
    if not np.isfinite(v).all():
        return None
    ms = np.rint(np.array(times, dtype=np.float64) * 1000.0)
    if not ((ms >= _TS_MIN) & (ms < _TS_END)).all():
        return None
    ts = ms.astype(np.int64)
    n = len(idx)
    mat = np.empty((n, 5 + _TAIL), dtype=np.uint8)
    mat[:, :5] = tables.prefix[idx]
    mat[:, 5] = 0x18
    for k in range(5):
        mat[:, 6 + k] = ((ts >> (7 * k)) & 0x7F) | 0x80
    mat[:, 11] = ts >> 35
    mat[:, 12] = 0x28
    mat[:, 13] = 0x01
    mat[:, 14] = 0x69
    mat[:, 15:] = v.view(np.uint8).reshape(n, 8)
    keep = tables.keep[idx]
    owner = tables.owner[idx]
    out = [VERSION, plan.fingerprint]
    first = int(owner[0])
    if (owner == first).all():
        out.append(_GROUP.pack(first, n, int(keep.sum())))
        out.append(mat[keep].tobytes())
        return b"".join(out)
    # Owners in the order they first appear, each with its samples in row order.
    owners, firsts = np.unique(owner, return_index=True)
    for o in owners[np.argsort(firsts)]:
        rows = owner == o
        body = mat[rows][keep[rows]].tobytes()
        out.append(_GROUP.pack(int(o), int(rows.sum()), len(body)))
        out.append(body)
    return b"".join(out)


def row_groups(blob: bytes, plan: RowPlan) -> list[tuple[str | None, int, bytes]] | None:
    """A stored row's (owner, samples, serialized metrics) per owner, in order; None when it
    was made with another plan (or another version of this form), or does not read as one
    (the caller then goes the general path, which counts a row it cannot read)."""
    if blob[:1] != VERSION or blob[1:_HEAD] != plan.fingerprint:
        return None
    frames = _frames(blob)
    owners = plan.owners
    if frames is None or any(o >= len(owners) for o, _n, _b in frames):
        return None
    return [(owners[o], n, body) for o, n, body in frames]


def _frames(blob: bytes) -> list[tuple[int, int, bytes]] | None:
    """A stored row's groups after its head: (owner index, samples, serialized metrics);
    None when the framing does not read (a damaged row)."""
    out = []
    off, end = _HEAD, len(blob)
    unpack = _GROUP.unpack_from
    try:
        while off < end:
            owner, n, size = unpack(blob, off)
            off += _GROUP.size
            if off + size > end:
                return None
            out.append((owner, n, blob[off : off + size]))
            off += size
    except struct.error:
        return None
    return out


def payload_bytes(metrics: bytes, timestamp_ms: int, seq: int) -> bytes:
    """A Payload from serialized metrics: the bytes SerializeToString would give for the
    same message (field 1 timestamp, the metrics, field 3 seq)."""
    return b"\x08" + _varint(timestamp_ms) + metrics + b"\x18" + _varint(seq)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
