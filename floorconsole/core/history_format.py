"""How history reads when exported: ISO 8601 UTC times, quality text, CSV and JSON values."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Value

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc_ms(t: float) -> str:
    """'2023-11-14T22:13:20.123Z' from epoch seconds, rounded to the nearest millisecond."""
    # Integer milliseconds first: fromtimestamp() truncates, and float seconds far from the
    # epoch carry sub-millisecond noise that would otherwise print as 0.999.
    ms = round(t * 1000)
    stamp = _EPOCH + timedelta(milliseconds=ms)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


@lru_cache(maxsize=16)
def zone(name: str = "UTC") -> tzinfo:
    """The tzinfo of an IANA zone name ("UTC", "Europe/Berlin"); checked by the plant file."""
    return UTC if name in ("", "UTC") else ZoneInfo(name)


def iso_ms(t: float, zone_name: str = "UTC") -> str:
    """An ISO 8601 time with its offset, to the millisecond: '...20.123Z' in UTC,
    '2023-11-14T23:13:20.123+01:00' in Europe/Berlin. Every exported time says its zone."""
    if zone_name in ("", "UTC"):
        return iso_utc_ms(t)
    ms = round(t * 1000)
    stamp = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone(zone_name))
    off = f"{stamp:%z}"  # +0100
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{off[:3]}:{off[3:]}"


def quality_text(quality: Quality, reason: Reason) -> str:
    """'GOOD', 'UNCERTAIN last usable', 'BAD no communication'."""
    if quality is Quality.GOOD:
        return "GOOD"
    if reason is Reason.NONE:
        return quality.name
    return f"{quality.name} {reason.text}"


def _finite_or_none(x: float) -> float | None:
    # JSON has no NaN or Infinity; a reader would reject the whole file for one of them.
    return x if math.isfinite(x) else None


def json_value(value: Value) -> bool | float | list[float | None] | None:
    """The value as plain JSON data: a number, true/false, null, or an array for a waveform."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.ndarray):
        return [_finite_or_none(x) for x in value.tolist()]
    return _finite_or_none(float(value))


def csv_value(value: Value) -> str:
    """The value as one CSV cell: '12.4', 'true', '' for no value, a JSON array for a waveform."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.ndarray):
        return json.dumps(json_value(value), separators=(",", ":"))
    # 12 significant digits: no '51.900000000000006' from a scale of 0.1, and more than a
    # float32 or any register-scaled value carries.
    return format(float(value), ".12g")
