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
"""

from __future__ import annotations

import hashlib
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
        self.plan: RowPlan | None = None

    def encode_row(self, samples: Sequence[Sample]) -> bytes | None:
        plan = self.plan
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
