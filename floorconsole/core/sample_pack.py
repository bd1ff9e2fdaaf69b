"""Scalar samples packed for the history file: many (signal, time, value, quality) in one blob.

SQLite spends about 6 microseconds of CPU on a sample stored as a row of its own with an
index entry (issue 19: more than all the rest of the engine's work on it). Packed, a commit
of 1,500 signals is one row; a signal's samples of some seconds are one row later.

Layout, little-endian: a 16-byte head (version u8, three pad bytes, n u32, k u32, four pad
bytes), then t float64[n], v float64[n], the k signal ids int32[k], their k + 1 start
offsets int32[k + 1], and q int32[n]. Samples are grouped by signal (ids ascending), each
signal's in the order given. A value of NaN is "no value" (SQLite stored NaN as NULL too).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

VERSION = 1
_HEAD = struct.Struct("<B3xII4x")

ROW_DTYPE = np.dtype([("s", "<i4"), ("t", "<f8"), ("v", "<f8"), ("q", "<i4")])


class PackError(ValueError):
    """Bytes that are not a packed block this version reads."""


class Packed(NamedTuple):
    """A block read back: arrays are read-only views of its bytes."""

    t: np.ndarray
    v: np.ndarray
    ids: np.ndarray
    starts: np.ndarray
    q: np.ndarray

    def of(self, sid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One signal's (t, v, q), empty when the block holds none of it."""
        i = int(np.searchsorted(self.ids, sid))
        if i == len(self.ids) or self.ids[i] != sid:
            empty = self.t[:0]
            return empty, self.v[:0], self.q[:0]
        lo, hi = int(self.starts[i]), int(self.starts[i + 1])
        return self.t[lo:hi], self.v[lo:hi], self.q[lo:hi]


def group_rows(rows: np.ndarray) -> np.ndarray:
    """Rows of ROW_DTYPE grouped by signal, each signal's kept in their order."""
    return rows[np.argsort(rows["s"], kind="stable")]


def pack(rows: np.ndarray) -> bytes:
    """Rows of ROW_DTYPE, already grouped by signal (group_rows), as one blob."""
    n = len(rows)
    s = rows["s"]
    cuts = np.flatnonzero(s[1:] != s[:-1]) + 1 if n else np.empty(0, np.int64)
    starts = np.concatenate(([0], cuts, [n])).astype("<i4") if n else np.zeros(1, "<i4")
    ids = s[starts[:-1]].astype("<i4") if n else np.empty(0, "<i4")
    return b"".join(
        (
            _HEAD.pack(VERSION, n, len(ids)),
            rows["t"].astype("<f8").tobytes(),
            rows["v"].astype("<f8").tobytes(),
            ids.tobytes(),
            starts.tobytes(),
            rows["q"].astype("<i4").tobytes(),
        )
    )


def pack_parts(
    s: np.ndarray, t: np.ndarray, v: np.ndarray, q: np.ndarray, cuts: Sequence[int]
) -> list[bytes]:
    """Several blobs from one set of columns at once: the rows from cuts[i] to cuts[i + 1]
    are blob i (an empty range gives b""). Each range's rows grouped by signal, as pack()
    takes them; the same bytes as pack() of each range, in a few array operations for all
    of them rather than a dozen for each (a commit packs eight)."""
    n = len(s)
    t = np.ascontiguousarray(t, "<f8")
    v = np.ascontiguousarray(v, "<f8")
    q = np.ascontiguousarray(q, "<i4")
    s32 = np.ascontiguousarray(s, "<i4")
    # Where each signal's run starts, over all the ranges (a range's start starts a run).
    edge = np.ones(n, dtype=bool)
    if n:
        edge[1:] = s32[1:] != s32[:-1]
        edge[[c for c in cuts[:-1] if c < n]] = True
    runs = np.flatnonzero(edge)
    out = []
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=False):
        if hi <= lo:
            out.append(b"")
            continue
        i0, i1 = np.searchsorted(runs, (lo, hi))
        first = runs[i0:i1]
        starts = np.empty(len(first) + 1, "<i4")
        starts[:-1] = first - lo
        starts[-1] = hi - lo
        out.append(
            b"".join(
                (
                    _HEAD.pack(VERSION, hi - lo, len(first)),
                    t[lo:hi].tobytes(),
                    v[lo:hi].tobytes(),
                    s32[first].tobytes(),
                    starts.tobytes(),
                    q[lo:hi].tobytes(),
                )
            )
        )
    return out


def pack_one(sid: int, t: np.ndarray, v: np.ndarray, q: np.ndarray) -> bytes:
    """One signal's samples as a blob (t, v float64 and q int32 arrays)."""
    n = len(t)
    return b"".join(
        (
            _HEAD.pack(VERSION, n, 1),
            t.astype("<f8", copy=False).tobytes(),
            v.astype("<f8", copy=False).tobytes(),
            struct.pack("<iii", sid, 0, n),
            q.astype("<i4", copy=False).tobytes(),
        )
    )


def unpack(data: bytes) -> Packed:
    """A blob back as arrays; PackError names what is wrong with bytes that do not read."""
    if len(data) < _HEAD.size:
        raise PackError(f"packed samples: {len(data)} bytes, shorter than the 16-byte head")
    version, n, k = _HEAD.unpack_from(data)
    if version != VERSION:
        raise PackError(f"packed samples: version {version}, this floorconsole reads {VERSION}")
    size = _HEAD.size + 20 * n + 4 * (2 * k + 1)
    if len(data) != size:
        raise PackError(f"packed samples: {len(data)} bytes where {n} samples of {k} take {size}")
    at = _HEAD.size
    t = np.frombuffer(data, "<f8", n, at)
    v = np.frombuffer(data, "<f8", n, at + 8 * n)
    at += 16 * n
    ids = np.frombuffer(data, "<i4", k, at)
    starts = np.frombuffer(data, "<i4", k + 1, at + 4 * k)
    q = np.frombuffer(data, "<i4", n, at + 8 * k + 4)
    if starts[0] != 0 or starts[-1] != n or (k and np.any(np.diff(starts) <= 0)):
        raise PackError("packed samples: signal offsets out of order")
    return Packed(t, v, ids, starts, q)


def regroup(parts: list[Packed], max_span_s: float) -> list[tuple[int, float, float, int, bytes]]:
    """Chunks' samples as one block a signal: (signal, t0, t1, n, data), each block's samples
    by time (equal times in the order they came) and spanning at most max_span_s."""
    if not parts:
        return []
    s = np.concatenate([np.repeat(p.ids, np.diff(p.starts)) for p in parts])
    t = np.concatenate([p.t for p in parts])
    v = np.concatenate([p.v for p in parts])
    q = np.concatenate([p.q for p in parts])
    order = np.lexsort((t, s))  # by signal, then time; lexsort is stable
    s, t, v, q = s[order], t[order], v[order], q[order]
    bounds = [0, *(np.flatnonzero(s[1:] != s[:-1]) + 1).tolist(), len(s)]
    blocks = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        sid = int(s[lo])
        while lo < hi:
            end = lo + int(np.searchsorted(t[lo:hi], t[lo] + max_span_s, side="right"))
            blocks.append(
                (
                    sid,
                    float(t[lo]),
                    float(t[end - 1]),
                    end - lo,
                    pack_one(sid, t[lo:end], v[lo:end], q[lo:end]),
                )
            )
            lo = end
    return blocks
