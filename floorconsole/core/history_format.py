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


def readable_number(x: float) -> float:
    """x with the digits its source carries, for people reading an export: 51.8 where a scale
    of 0.1 left 51.800000000000004, 51.8 where a float32 register read 51.79999923706055.

    Whole numbers stay exact (a counter is not rounded); a value a float32 holds exactly is
    written with float32's shortest digits (that is all the precision it ever had); anything
    else with 15 significant digits, which every decimal of up to 15 digits survives and
    the last-bit noise of a scale or offset does not."""
    if not math.isfinite(x) or x.is_integer():
        return x
    single = np.float32(x)
    if float(single) == x:
        return float(str(single))
    return float(format(x, ".15g"))


def readable_value(value: Value) -> bool | float | list[float | None] | None:
    """json_value at readable precision (readable_number): what the history exports write.
    The uplink keeps json_value's full precision: machines read it, not people."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.ndarray):
        single = value.astype(np.float32)
        if np.array_equal(single, value, equal_nan=True):
            # A float32 waveform (or one as exact): numpy's shortest digits, in one pass.
            exact = single.astype(str).astype(np.float64)
            return [_finite_or_none(x) for x in exact.tolist()]
        return [_finite_or_none(readable_number(x)) for x in value.tolist()]
    return _finite_or_none(readable_number(float(value)))


def csv_value(value: Value) -> str:
    """The value as one CSV cell: '12.4', 'true', '' for no value, a JSON array for a waveform."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.ndarray):
        return json.dumps(readable_value(value), separators=(",", ":"))
    x = readable_number(float(value))
    # A whole number without '.0' ('11', '1480'), as people write it, up to where float64
    # stops counting in ones.
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return repr(x)
