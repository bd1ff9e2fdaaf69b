"""Parsing of durations and sizes written in plant files ("200ms", "5s", "30d", "64KiB")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)\s*$")
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_FACTOR = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 10**6,
    "MiB": 2**20,
    "GB": 10**9,
    "GiB": 2**30,
}


def parse_duration(text: str) -> float:
    """Seconds from '250ms', '5s', '10m', '2h', '30d'. Raises ValueError with the accepted forms."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f'{text!r} is not a duration like "200ms", "5s", "10m", "2h" or "30d"')
    return float(m.group(1)) * _DURATION_FACTOR[m.group(2)]


def parse_size(text: str | int) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f'{text!r} is not a size like 65536, "64KiB" or "1MB"')
    return int(m.group(1)) * _SIZE_FACTOR[m.group(2)]


def format_duration(seconds: float) -> str:
    """Short human form for ages: '0.4s', '12s', '3m', '2h', '5d'."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
