"""MQTT payloads to signal values: size, JSON, path, type and time checks; errors are values.

A message is parsed at most once, however many signals read it: several signals usually
read different keys of one payload (a vibration block carries x, y and z).

Checks run in this order and the first failure is the reason, which is also the counter key
in LinkStats.malformed:

  oversized    the payload is longer than the point's max_payload (checked before parsing)
  not_json     not UTF-8 text, or not JSON (also: nested too deeply to parse)
  missing_key  the path leads nowhere: no such key, index past the end, or a step into a
               value that is not an object/array
  wrong_type   the value is not a number, a boolean or a non-empty array of numbers; or its
               kind (scalar or waveform) is not the signal's kind
  not_finite   NaN or ±Infinity (Python's json accepts these literals; 1e999 parses to inf),
               anywhere, including inside an array; or an integer too big for a float

A source timestamp (time_path) is epoch seconds, epoch milliseconds (any number above 1e11:
that many seconds is the year 5138) or ISO 8601 text (without an offset it is taken as UTC).
A bad or missing timestamp does NOT drop the value: the value is still good, only its source
time is unknown, so the receive time stands in and the problem is reported as BAD_TIME
beside the value, for the adapter to count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from floorconsole.core.config import MqttPoint, SignalConfig
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, Value, waveform

OVERSIZED = "oversized"
NOT_JSON = "not_json"
MISSING_KEY = "missing_key"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
MALFORMED_REASONS = (OVERSIZED, NOT_JSON, MISSING_KEY, WRONG_TYPE, NOT_FINITE)
# Not a drop: the value is used with the receive time. Counted under its own key.
BAD_TIME = "bad_time"

_MS_THRESHOLD = 1e11


@dataclass(frozen=True, slots=True)
class Malformed:
    """Why a payload gave no value for a signal: reason (a counter key) and a readable detail."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Extracted:
    """A usable value; t_source is None when the payload carries no (usable) source time."""

    value: float | bool | np.ndarray
    t_source: float | None = None
    time_problem: str = ""  # set when a time_path was configured but its value was unusable

    @property
    def kind(self) -> str:
        return "waveform" if isinstance(self.value, np.ndarray) else "scalar"


class Payload:
    """The bytes of one message, parsed on first use and then shared by every signal."""

    __slots__ = ("raw", "_doc")

    _UNPARSED: Any = object()

    def __init__(self, raw: bytes | bytearray) -> None:
        self.raw = raw
        self._doc: Any = Payload._UNPARSED

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def doc(self) -> Any:
        """The parsed JSON document, or a Malformed(not_json)."""
        if self._doc is Payload._UNPARSED:
            self._doc = parse_json(self.raw)
        return self._doc


def parse_json(raw: bytes | bytearray) -> Any:
    """The JSON document in raw, or Malformed(not_json, ...). Never raises."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Malformed(NOT_JSON, f"not UTF-8 text (byte {e.start})")
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError, and ints past the str->int digit limit
        return Malformed(NOT_JSON, _first_line(str(e)))
    except RecursionError:
        return Malformed(NOT_JSON, "nested too deeply")


def extract(
    payload: Payload | bytes | bytearray, point: MqttPoint, kind: str | None = None
) -> Extracted | Malformed:
    """The value point reads from payload, or why not. Never raises.

    kind overrides point.kind: the adapter passes the kind learned from the first good
    payload when the plant file leaves it open.
    """
    if not isinstance(payload, Payload):
        payload = Payload(payload)
    if payload.size > point.max_payload:
        return Malformed(
            OVERSIZED, f"{payload.size} bytes, more than max_payload {point.max_payload}"
        )
    doc = payload.doc
    if isinstance(doc, Malformed):
        return doc
    node = _walk(doc, point.json_path)
    if isinstance(node, Malformed):
        return node
    value = _to_value(node, point.json_path)
    if isinstance(value, Malformed):
        return value
    want = kind or point.kind
    got = "waveform" if isinstance(value, np.ndarray) else "scalar"
    if want is not None and want != got:
        return Malformed(
            WRONG_TYPE, f"{format_path(point.json_path)} is a {got}, the signal is a {want}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        return Malformed(NOT_FINITE, f"{format_path(point.json_path)} is {value}")
    if isinstance(value, np.ndarray):
        finite = np.isfinite(value)
        if not finite.all():
            i = int(np.argmin(finite))
            return Malformed(NOT_FINITE, f"{format_path(point.json_path)}[{i}] is {value[i]}")
    if point.time_path is None:
        return Extracted(value)
    t = _source_time(doc, point.time_path)
    if isinstance(t, str):
        return Extracted(value, None, t)
    return Extracted(value, t)


def format_path(path: Sequence[str | int]) -> str:
    """('axes', 0, 'rms') -> '$.axes[0].rms', as in the messages users read."""
    out = "$"
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def _walk(doc: Any, path: Sequence[str | int]) -> Any:
    node = doc
    for depth, step in enumerate(path):
        if isinstance(step, int):
            if not isinstance(node, list):
                return Malformed(
                    MISSING_KEY,
                    f"{format_path(path[:depth])} is {_kind(node)}, not an array (for [{step}])",
                )
            if step >= len(node):
                return Malformed(
                    MISSING_KEY,
                    f"{format_path(path[: depth + 1])}: index past the end (length {len(node)})",
                )
        else:
            if not isinstance(node, dict):
                return Malformed(
                    MISSING_KEY,
                    f"{format_path(path[:depth])} is {_kind(node)}, "
                    f"not an object (for key {step!r})",
                )
            if step not in node:
                return Malformed(MISSING_KEY, f"no key {step!r} in {format_path(path[:depth])}")
        node = node[step]
    return node


def _to_value(node: Any, path: Sequence[str | int]) -> float | bool | np.ndarray | Malformed:
    # json yields exact types, so identity checks are both right and fast.
    t = type(node)
    if t is bool:
        return bool(node)
    if t is float:
        return float(node)
    if t is int:
        try:
            return float(node)
        except OverflowError:
            return Malformed(NOT_FINITE, f"{format_path(path)}: integer too large for a float")
    if t is list:
        if not node:
            return Malformed(WRONG_TYPE, f"{format_path(path)} is an empty array")
        for i, v in enumerate(node):
            vt = type(v)
            if vt is not float and vt is not int:
                return Malformed(
                    WRONG_TYPE, f"{format_path(path)}[{i}] is {_kind(v)}, not a number"
                )
        try:
            return waveform(node)
        except OverflowError:
            return Malformed(NOT_FINITE, f"{format_path(path)}: integer too large for a float")
    return Malformed(
        WRONG_TYPE,
        f"{format_path(path)} is {_kind(node)}, not a number, boolean or array of numbers",
    )


def _source_time(doc: Any, path: Sequence[str | int]) -> float | str:
    """Epoch seconds from the payload, or a string saying what is wrong with it."""
    node = _walk(doc, path)
    if isinstance(node, Malformed):
        return node.detail
    where = format_path(path)
    t = type(node)
    if t is int or t is float:
        try:
            seconds = float(node)
        except OverflowError:
            return f"{where} is not a time (too large)"
        if not math.isfinite(seconds) or seconds <= 0:
            return f"{where} is {node}, not a time"
        return seconds / 1000.0 if seconds > _MS_THRESHOLD else seconds
    if t is str:
        try:
            parsed = datetime.fromisoformat(node)
        except ValueError:
            return f"{where} is {node[:40]!r}, not ISO 8601 or epoch seconds"
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
        return seconds if seconds > 0 else f"{where} is {node[:40]!r}, before 1970"
    return f"{where} is {_kind(node)}, not a time"


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "not JSON"


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message gave: samples to ingest, and (signal id, problem) pairs to count."""

    samples: list[Sample]
    problems: list[tuple[str, Malformed]]


class TopicDecoder:
    """The signals that read one topic. Decodes each message once for all of them.

    Holds one piece of state: the kind of a signal whose plant file leaves kind open is
    fixed by its first good payload, so a later payload of the other kind is wrong_type
    instead of silently turning a scalar into a waveform.
    """

    def __init__(self, topic: str, signals: Sequence[SignalConfig]) -> None:
        self.topic = topic
        self._points: list[tuple[str, MqttPoint]] = []
        for s in signals:
            if not isinstance(s.source, MqttPoint) or s.source.topic != topic:
                raise ValueError(f"signal {s.id!r} does not read topic {topic!r}")
            self._points.append((s.id, s.source))
        self._kinds: dict[str, str] = {sid: p.kind for sid, p in self._points if p.kind}

    @property
    def signal_ids(self) -> list[str]:
        return [sid for sid, _ in self._points]

    def kind_of(self, signal_id: str) -> str | None:
        """scalar, waveform, or None while no good payload has decided it."""
        return self._kinds.get(signal_id)

    def decode(self, raw: bytes | bytearray, now_wall: float, now_mono: float) -> Decoded:
        payload = Payload(raw)
        samples: list[Sample] = []
        problems: list[tuple[str, Malformed]] = []
        for sid, point in self._points:
            result = extract(payload, point, self._kinds.get(sid))
            if isinstance(result, Malformed):
                problems.append((sid, result))
                continue
            if sid not in self._kinds:
                self._kinds[sid] = result.kind
            if result.time_problem:
                problems.append((sid, Malformed(BAD_TIME, result.time_problem)))
            t_source = result.t_source if result.t_source is not None else now_wall
            value: Value = result.value
            samples.append(Sample(sid, value, Quality.GOOD, Reason.NONE, t_source, now_mono))
        return Decoded(samples, problems)
