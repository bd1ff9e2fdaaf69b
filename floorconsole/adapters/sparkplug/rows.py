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

from floorconsole.adapters.sparkplug import sparkplug_b_pb2 as spb
from floorconsole.core.quality import Quality
from floorconsole.core.sample import Sample
from floorconsole.core.sparkplug import DataType

VERSION = b"\x01"
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
    by_key = {(o, a): s for s, (a, o) in plan.signals.items()}
    out: list[dict[str, object]] = []
    off, end = _HEAD, len(blob)
    unpack = _GROUP.unpack_from
    while off < end:
        owner, _n, size = unpack(blob, off)
        off += _GROUP.size
        p = spb.Payload.FromString(blob[off : off + size])
        off += size
        for m in p.metrics:
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
    text = repr(sorted((s, a, str(o)) for s, (a, o, _t) in fast.items()))
    fp = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return RowPlan(signals, tuple(owners), fp)


class SparkplugRows:
    """The outbox's RowEncoder for a Sparkplug uplink (writer thread); `plan` is replaced
    whole (one reference: no lock) when the uplink's metric set changes."""

    def __init__(self) -> None:
        self._plan: RowPlan | None = None
        self.plans: dict[bytes, RowPlan] = {}  # every plan this process encoded with

    @property
    def plan(self) -> RowPlan | None:
        return self._plan

    @plan.setter
    def plan(self, plan: RowPlan | None) -> None:
        if plan is not None:
            self.plans[plan.fingerprint] = plan
        self._plan = plan

    def plan_text(self, fingerprint: bytes) -> str | None:
        """What outbox_plans stores for a fingerprint this encoder made rows with."""
        plan = self.plans.get(fingerprint)
        return None if plan is None else plan.text()

    def encode_row(self, samples: Sequence[Sample]) -> bytes | None:
        plan = self._plan
        if plan is None:
            return None
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


def row_groups(blob: bytes, plan: RowPlan) -> list[tuple[str | None, int, bytes]] | None:
    """A stored row's (owner, samples, serialized metrics) per owner, in order; None when it
    was made with another plan (or another version of this form)."""
    if blob[:1] != VERSION or blob[1:_HEAD] != plan.fingerprint:
        return None
    out = []
    off, end = _HEAD, len(blob)
    owners = plan.owners
    unpack = _GROUP.unpack_from
    while off < end:
        owner, n, size = unpack(blob, off)
        off += _GROUP.size
        out.append((owners[owner], n, blob[off : off + size]))
        off += size
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
