"""Frames for attached consoles as changes: what a console's last pull did not carry.

A frame of 500 signals is some 250 kB of JSON once the trends are a minute long (600 kB),
and writing it for every pull of every console cost the engine 10-20 ms a pull, reading it
cost each console as much again. Over the attach socket a console that asks with
`"delta": true` gets instead:

- the frame without its signals (links, alarms, models, ...: small), as plain data;
- the signals' parts that do not change while a configuration runs (id, asset, unit,
  source, range, labels) once, and again only when they change ("layout");
- per signal, what changes (kind, value, text, quality, reason, detail, the sample's time on
  the frame's clock, malformed count, waveform) only when it changed since that console's
  last pull: a signal whose value holds costs nothing, and its age is worked out by the
  console from the sample time, so it is exact at every refresh;
- per trend, only the points added since that console's last pull.

The engine builds the rows once per tick for every console (Ticks), and per console only
picks which rows that console has not seen (DeltaState: references, no copies). A console
that connects again starts from nothing (a new DeltaState), so nothing can drift.

The console side (DeltaReader) rebuilds complete SignalViews, so screens see the same
Frame as from a full pull.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from floorconsole.console import Frame, SignalView, decode

# The row of a signal on the wire: [index, kind, value, value_text, quality, reason, detail,
# t_sample, malformed, waveform]; static: [id, asset, unit, source, range, labels].
ROW_LEN = 10
STATIC_LEN = 6


def _plain(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    return item() if callable(item) else str(obj)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain).encode


def _appended(old: tuple[float, ...], new: tuple[float, ...]) -> int:
    """How many points `new` has beyond `old` when `new` is `old` with points appended (and
    the oldest dropped past its length): the smallest n with new[:-n] a suffix of old. When
    none fits (the trend began again) every point of `new` counts as new."""
    if len(new) >= len(old) and new[: len(old)] == old:
        return len(new) - len(old)
    for n in range(1, len(new)):
        keep = len(new) - n
        if keep <= len(old) and new[:keep] == old[len(old) - keep :]:
            return n
    return len(new)


@dataclass(slots=True)
class _Rows:
    """One tick's signals as pieces of JSON, shared by every console."""

    layout: int
    static_key: tuple[tuple[Any, ...], ...]
    static: bytes
    rows: list[bytes]  # the same object as the tick before when the row did not change
    dyn: list[tuple[Any, ...]]
    sparks: list[tuple[float, ...]]
    seq: list[int]  # trend points seen appended, per signal, since the layout began
    pieces: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (signal, points)

    def spark_piece(self, i: int, new_points: int) -> bytes:
        """[i, length, the newest points]: a console keeps the last `length` of its trend
        and these; new_points <= 0 sends the whole trend."""
        key = (i, new_points)
        piece = self.pieces.get(key)
        if piece is None:
            spark = self.sparks[i]
            pts = spark if new_points <= 0 or new_points >= len(spark) else spark[-new_points:]
            piece = self.pieces[key] = b"[%d,%d,%s]" % (i, len(spark), _encode(pts).encode())
        return piece


class Tick:
    """The frame of one moment and, built on the first console that asks for changes, its
    rows (from the previous tick's, so an unchanged row is the same object)."""

    __slots__ = ("frame", "_builder", "_full", "_head", "_rows")

    def __init__(self, frame: Frame, builder: TickBuilder) -> None:
        self.frame = frame
        self._builder = builder
        self._full: bytes | None = None
        self._head: bytes | None = None
        self._rows: _Rows | None = None

    def full(self, dumps: Any) -> bytes:
        if self._full is None:
            self._full = dumps(self.frame)
        return self._full

    def head(self, dumps: Any) -> bytes:
        if self._head is None:
            self._head = dumps(replace(self.frame, signals=()))
        return self._head

    def built(self, delta: bool) -> bool:
        """Whether what a delta (or a full) answer needs of this tick is built already."""
        if delta:
            return self._head is not None and self._rows is not None
        return self._full is not None

    def rows(self) -> _Rows:
        if self._rows is None:
            self._rows = self._builder.rows(self.frame)
        return self._rows


class TickBuilder:
    """Keeps the last rows built, so the next tick reuses what did not change."""

    def __init__(self) -> None:
        self._last: _Rows | None = None
        self._layout = 0

    def tick(self, frame: Frame) -> Tick:
        return Tick(frame, self)

    def rows(self, frame: Frame) -> _Rows:
        signals = frame.signals
        static_key = tuple((s.id, s.asset, s.unit, s.source, s.range, s.labels) for s in signals)
        prev = self._last
        if prev is None or prev.static_key != static_key:
            self._layout += 1
            prev = None
        t_mono = frame.t_mono
        n = len(signals)
        rows: list[bytes] = [b""] * n
        dyn: list[tuple[Any, ...]] = [()] * n
        sparks: list[tuple[float, ...]] = [()] * n
        seq = [0] * n
        for i, s in enumerate(signals):
            # The sample's time on the frame's clock: a value that holds sends nothing more,
            # and the console's age of it is exact whenever it draws.
            d = (
                s.kind,
                s.value,
                s.value_text,
                s.quality,
                s.reason,
                s.detail,
                round(t_mono - s.age_s, 3),
                s.malformed,
                s.waveform,
            )
            spark = s.spark
            if prev is not None:
                if prev.dyn[i] == d:
                    d, rows[i] = prev.dyn[i], prev.rows[i]
                else:
                    rows[i] = _encode((i, *d)).encode()
                old = prev.sparks[i]
                if spark is old or spark == old:
                    sparks[i], seq[i] = old, prev.seq[i]
                else:
                    sparks[i], seq[i] = spark, prev.seq[i] + _appended(old, spark)
            else:
                rows[i] = _encode((i, *d)).encode()
                sparks[i] = spark
            dyn[i] = d
        if prev is None:
            static = _encode(static_key).encode()
        else:
            static, static_key = prev.static, prev.static_key
        self._last = _Rows(self._layout, static_key, static, rows, dyn, sparks, seq)
        return self._last


class DeltaState:
    """What one console has been sent: the engine's side of its copy of the rows."""

    __slots__ = ("layout", "rows", "seq")

    def __init__(self) -> None:
        self.layout = 0
        self.rows: list[bytes] = []
        self.seq: list[int] = []

    def answer(self, tick: Tick) -> bytes:
        """The signals' part of a frame answer: what changed since this console's last."""
        r = tick.rows()
        out = [b'{"layout":%d' % r.layout]
        if self.layout != r.layout:
            self.layout = r.layout
            self.rows = [b""] * len(r.rows)
            self.seq = [-1] * len(r.rows)  # no trend yet: the whole of each is sent
            out.append(b',"static":' + r.static)
        sent = self.rows
        changed = [row for row, was in zip(r.rows, sent, strict=True) if row is not was]
        sparks = [
            r.spark_piece(i, now - was if was >= 0 else 0)
            for i, (now, was) in enumerate(zip(r.seq, self.seq, strict=True))
            if now != was
        ]
        self.rows = list(r.rows)
        self.seq = list(r.seq)
        out.append(b',"rows":[' + b",".join(changed) + b"]")
        out.append(b',"spark":[' + b",".join(sparks) + b"]}")
        return b"".join(out)


class DeltaError(ValueError):
    """An answer that does not fit what this console holds: it connects again, afresh."""


_STR = str
_NUM = (int, float)


class DeltaReader:
    """The console's side: its copy of the rows, and whole Frames rebuilt from each answer."""

    def __init__(self) -> None:
        self.layout = -1
        self._static: list[tuple[str, str, str, str, tuple[float, float] | None, tuple[str, ...]]]
        self._static = []
        self._rows: list[tuple[Any, ...] | None] = []
        self._sparks: list[tuple[float, ...]] = []

    def frame(self, result: dict[str, Any]) -> Frame:
        try:
            head = decode(Frame, result["frame"])
            sig = result["signals"]
            if "static" in sig:
                self._layout(sig["static"])
                self.layout = sig["layout"]
            elif sig["layout"] != self.layout:
                raise DeltaError(
                    f"rows of layout {sig['layout']}, this console holds {self.layout}"
                )
            for row in sig["rows"]:
                self._row(row)
            for i, length, pts in sig["spark"]:
                if not isinstance(length, int) or not all(isinstance(p, _NUM) for p in pts):
                    raise DeltaError(f"trend {i}: expected a length and numbers")
                self._sparks[i] = (self._sparks[i] + tuple(pts))[-length:] if length else ()
            return replace(head, signals=self._views(head.t_mono))
        except DeltaError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise DeltaError(f"a frame's changes do not fit: {type(e).__name__} {e}") from None

    def _layout(self, static: list[Any]) -> None:
        rows = []
        for st in static:
            if len(st) != STATIC_LEN or not all(isinstance(x, _STR) for x in st[:4]):
                raise DeltaError(f"a signal's fixed part: expected {STATIC_LEN} fields, got {st!r}")
            rng = st[4]
            rows.append(
                (
                    st[0],
                    st[1],
                    st[2],
                    st[3],
                    None if rng is None else (rng[0], rng[1]),
                    tuple(_STR(x) for x in st[5]),
                )
            )
        self._static = rows
        self._rows = [None] * len(rows)
        self._sparks = [()] * len(rows)

    def _row(self, row: list[Any]) -> None:
        if len(row) != ROW_LEN:
            raise DeltaError(f"a signal's row: expected {ROW_LEN} fields, got {len(row)}")
        i, kind, value, text, quality, reason, detail, t, malformed, wave = row
        if not (
            isinstance(kind, _STR)
            and isinstance(text, _STR)
            and isinstance(quality, _STR)
            and isinstance(reason, _STR)
            and isinstance(detail, _STR)
            and isinstance(t, _NUM)
            and isinstance(malformed, int)
            and (value is None or isinstance(value, (*_NUM, bool)))
        ):
            raise DeltaError(f"signal row {i}: a field of the wrong type")
        self._rows[i] = (kind, value, text, quality, reason, detail, t, malformed, tuple(wave))

    def _views(self, t_mono: float) -> tuple[SignalView, ...]:
        out = []
        for st, row, spark in zip(self._static, self._rows, self._sparks, strict=True):
            if row is None:
                raise DeltaError(f"no row yet for signal {st[0]}")
            kind, value, text, quality, reason, detail, t, malformed, wave = row
            out.append(
                SignalView(
                    st[0],
                    st[1],
                    kind,
                    value,
                    text,
                    st[2],
                    quality,
                    reason,
                    detail,
                    round(max(0.0, t_mono - t), 3),
                    st[3],
                    st[4],
                    spark,
                    wave,
                    malformed,
                    st[5],
                )
            )
        return tuple(out)
