"""A small TOML writer for plant files: tomllib reads TOML, nothing in the stdlib writes it.

It writes what a plant file holds the way a person would: top-level tables as [edge],
arrays of tables as [[signals]], anything deeper inline (inputs = { x = "..." }), and arrays
of inline tables one per line (actions = [ {...}, {...}, ]). The promise is a round trip:
tomllib.loads(dumps(d)) == d for any dict tomllib could have produced (NaN aside, which is
never equal to itself).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class TomlWriteError(ValueError):
    """A value TOML cannot hold; names its key path."""


def dumps(doc: Mapping[str, Any]) -> str:
    """The TOML text of a document (a dict of str keys, as tomllib.loads returns)."""
    if not isinstance(doc, Mapping):
        raise TomlWriteError(f"a TOML document is a table, not {type(doc).__name__}")
    lines: list[str] = []
    sections: list[tuple[str, Any]] = []
    for k, v in doc.items():
        _check_key(k, "")
        if _is_table(v) or _is_array_of_tables(v):
            sections.append((k, v))
        else:
            lines.append(f"{key(k)} = {value(v, k)}")
    for k, v in sections:
        if lines:
            lines.append("")
        if _is_table(v):
            lines.append(f"[{key(k)}]")
            lines.extend(_body(v, k))
        else:
            for i, item in enumerate(v):
                if i:
                    lines.append("")
                lines.append(f"[[{key(k)}]]")
                lines.extend(_body(item, f"{k}[{i}]"))
    return "\n".join(lines) + "\n" if lines else ""


def key(k: str) -> str:
    """A key as written: bare when it can be, else a quoted string."""
    return k if _BARE_KEY.fullmatch(k) else _string(k, k)


def value(v: Any, path: str = "") -> str:
    """One value in inline form: the right-hand side of `key = ...`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise TomlWriteError(f"{path or 'value'}: {v} does not fit TOML's 64-bit integers")
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v, path)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        if v.tzinfo is not None:
            raise TomlWriteError(f"{path or 'value'}: TOML has no time of day with an offset")
        return v.isoformat()
    if isinstance(v, Mapping):
        parts = []
        for k, item in v.items():
            _check_key(k, path)
            parts.append(f"{key(k)} = {value(item, _join(path, k))}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"
    if isinstance(v, (list, tuple)):
        items = [value(item, f"{path}[{i}]") for i, item in enumerate(v)]
        if any(isinstance(item, Mapping) for item in v):
            # an inline table must stay on one line; the array around it need not
            return "[\n" + "".join(f"  {item},\n" for item in items) + "]"
        return "[" + ", ".join(items) + "]"
    raise TomlWriteError(f"{path or 'value'}: TOML cannot hold a {type(v).__name__}")


def _body(table: Mapping[str, Any], path: str) -> list[str]:
    out = []
    for k, v in table.items():
        _check_key(k, path)
        out.append(f"{key(k)} = {value(v, _join(path, k))}")
    return out


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_array_of_tables(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(i, Mapping) for i in v)


def _check_key(k: Any, path: str) -> None:
    if not isinstance(k, str):
        raise TomlWriteError(f"{path or 'document'}: key {k!r} is not a string")


def _join(path: str, k: str) -> str:
    return f"{path}.{k}" if path else k


def _string(s: str, path: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise TomlWriteError(
                f"{path or 'value'}: a lone surrogate (U+{code:04X}) cannot be written as UTF-8"
            )
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
