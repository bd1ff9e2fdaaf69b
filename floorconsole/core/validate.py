"""Reading a configuration document (plant file, model sidecar): typed readers that collect
every problem with its key path, so one run reports them all.

The plant file (TOML) and a sidecar (JSON) say the same thing in their own words: a TOML file
has tables and shows the value it got ("got a string ('x')"), a JSON sidecar has objects and
shows the value as written ("got 'x'"). A `Wording` carries those differences as data; the
readers are one set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from floorconsole.core.units import parse_duration, parse_size

# Ids of devices, brokers, signals, rules, models: what a key path and a topic can carry.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class Problem(NamedTuple):
    """One thing wrong in a document: where (key path) and what was expected.

    A pair rather than a dataclass so callers that kept (path, message) tuples (dict(problems),
    `for path, message in problems`) read it unchanged."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def value_kind(v: Any) -> str:
    """How a TOML value reads in a message: 'a string ('x')', 'an array'."""
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def join(path: str, key: str) -> str:
    """'signals[0]' + 'address' -> 'signals[0].address'; '' + 'edge' -> 'edge'."""
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class Wording:
    """How one kind of document names what a reader expected."""

    got: Callable[[Any], str]  # the value in "..., got X"
    table: str  # what a table is called in "expected a table"
    table_shows_value: bool  # "expected a table, got an array" or just "expected an object"
    string: str  # "expected a string" | "expected a non-empty string"
    string_shows_value: bool
    bad_id: str  # after "'x' is not ", for a name that breaks ID_PATTERN
    number: str  # "a finite number" | "a number"
    digit_group: str  # "" or "_": 1000 or 1_000 in ranges


# The plant file: tables, values shown by kind.
PLANT = Wording(
    got=value_kind,
    table="table",
    table_shows_value=True,
    string="expected a string",
    string_shows_value=True,
    bad_id="a valid id (letters, digits, _ . - ; not starting with . or -)",
    number="a finite number",
    digit_group="",
)
# The [uplink] table: counts run to millions and bytes to gigabytes, so ranges group digits.
UPLINK = Wording(
    got=value_kind,
    table="table",
    table_shows_value=True,
    string="expected a string",
    string_shows_value=True,
    bad_id="a valid id (letters, digits, _ . - ; not starting with . or -)",
    number="a number",
    digit_group="_",
)
# A model sidecar (JSON): objects, values shown as written.
SIDECAR = Wording(
    got=repr,
    table="object",
    table_shows_value=False,
    string="expected a non-empty string",
    string_shows_value=False,
    bad_id="a valid name (letters, digits, _ . -)",
    number="a finite number",
    digit_group="",
)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Problems:
    """Collects problems while reading a document's tables.

    Each reader takes the table, the key and the table's key path; it returns the value, or
    the default after recording why the value is not usable (a missing optional key is not a
    problem)."""

    def __init__(self, wording: Wording = PLANT) -> None:
        self.wording = wording
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def texts(self) -> list[str]:
        """Each problem as one 'key.path: message' line."""
        return [str(p) for p in self.problems]

    def _num(self, n: float) -> str:
        return f"{n:{self.wording.digit_group}}" if self.wording.digit_group else f"{n}"

    # -- tables ----------------------------------------------------------------------------

    def table(self, value: Any, path: str) -> dict[str, Any] | None:
        """value itself as a table, or None (and a problem) when it is something else."""
        if not isinstance(value, dict):
            w = self.wording
            got = f", got {w.got(value)}" if w.table_shows_value else ""
            self.add(path, f"expected {'an' if w.table[0] in 'aeiou' else 'a'} {w.table}{got}")
            return None
        return value

    def required_table(self, t: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        """t[key] as a table; {} (and a problem) when missing or not a table."""
        if t.get(key) is None:
            self.add(join(path, key), "missing; it is required")
            return {}
        return self.table(t[key], join(path, key)) or {}

    def array_of_tables(self, value: Any, path: str) -> list[dict[str, Any]]:
        """A plant file's [[path]]: each entry, {} for one that is not a table."""
        if not isinstance(value, list):
            self.add(path, f"expected an array of tables ([[{path}]]), got {value_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            t = self.table(item, f"{path}[{i}]")
            out.append(t if t is not None else {})
        return out

    def list_of_tables(self, value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A sidecar's non-empty list of objects: (key path, table) of each entry that is one."""
        if not isinstance(value, list) or not value:
            self.add(path, f"expected a non-empty list of {path}")
            return
        for i, t in enumerate(value):
            p = f"{path}[{i}]"
            if self.table(t, p) is not None:
                yield p, t

    def unknown_keys(self, t: Mapping[str, Any], path: str, known: tuple[str, ...]) -> None:
        for key in t:
            if key not in known:
                self.add(join(path, key), f"unknown key; expected one of {', '.join(known)}")

    # -- values ----------------------------------------------------------------------------

    def string(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
        choices: tuple[str, ...] | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        p = join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return default
        v = t[key]
        w = self.wording
        if not isinstance(v, str) or (not w.string_shows_value and not v):
            self.add(p, f"{w.string}, got {w.got(v)}" if w.string_shows_value else w.string)
            return default
        if choices is not None and v not in choices:
            self.add(p, f"{v!r} is not one of {', '.join(choices)}")
            return default
        if pattern is not None and not pattern.match(v):
            self.add(p, f"{v!r} is not {w.bad_id}")
            return default
        return v

    @overload
    def integer(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int,
        lo: int,
        hi: int | None = None,
        required: bool = False,
    ) -> int: ...
    @overload
    def integer(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: None = None,
        lo: int,
        hi: int | None = None,
        required: bool = False,
    ) -> int | None: ...
    def integer(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int | None = None,
        lo: int,
        hi: int | None = None,
        required: bool = False,
    ) -> int | None:
        """A whole number from lo to hi (hi None: lo or more)."""
        p = join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return default
        v = t[key]
        got = self.wording.got(v)
        if hi is None:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                self.add(p, f"expected a whole number >= {self._num(lo)}, got {got}")
                return default
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(
                p, f"expected a whole number from {self._num(lo)} to {self._num(hi)}, got {got}"
            )
            return default
        if not lo <= v <= hi:
            self.add(
                p, f"{self._num(v)} is out of range; expected {self._num(lo)} to {self._num(hi)}"
            )
            return default
        return v

    @overload
    def number(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float,
        required: bool = False,
        nonzero: bool = False,
        positive: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        hi_open: bool = False,
    ) -> float: ...
    @overload
    def number(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: None = None,
        required: bool = False,
        nonzero: bool = False,
        positive: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        hi_open: bool = False,
    ) -> float | None: ...
    def number(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float | None = None,
        required: bool = False,
        nonzero: bool = False,
        positive: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        hi_open: bool = False,
    ) -> float | None:
        """A finite number; nonzero, positive (above 0) or within [lo, hi] (hi_open: below hi)
        when asked."""
        p = join(path, key)
        if key not in t:
            if required:
                self.add(p, "missing; it is required")
            return default
        v = t[key]
        if not _is_number(v) or not math.isfinite(v):
            self.add(p, f"expected {self.wording.number}, got {self.wording.got(v)}")
            return default
        if nonzero and v == 0:
            self.add(p, "must not be 0")
            return default
        if positive and not v > 0:
            self.add(p, f"must be above 0, got {v}")
            return default
        if lo is not None and hi is not None and (v < lo or v > hi or (hi_open and v == hi)):
            upper = f"below {hi:g}" if hi_open else f"{hi:g}"
            self.add(p, f"{v:g} is out of range; expected {lo:g} to {upper}")
            return default
        return float(v)

    def boolean(self, t: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        if key not in t:
            return default
        v = t[key]
        if not isinstance(v, bool):
            self.add(join(path, key), f"expected true or false, got {self.wording.got(v)}")
            return default
        return v

    def duration(
        self, t: Mapping[str, Any], key: str, path: str, *, default: float, minimum: float = 0.0
    ) -> float:
        """Seconds, from 2.5 or "250ms", "5s", "2m", "1h", "30d"."""
        if key not in t:
            return default
        try:
            v = parse_duration(t[key])
        except ValueError as e:
            self.add(join(path, key), str(e))
            return default
        if v < minimum:
            self.add(join(path, key), f"{t[key]!r} is too short; at least {minimum * 1000:g} ms")
            return default
        return v

    def size(self, t: Mapping[str, Any], key: str, path: str, *, default: int, lo: int = 0) -> int:
        """Bytes, from 65536 or "64KiB", "1MB"."""
        if key not in t:
            return default
        v = t[key]
        try:
            if isinstance(v, bool):
                raise ValueError(f'{v!r} is not a size like 65536, "64KiB" or "1MB"')
            n = parse_size(v)
        except ValueError as e:
            self.add(join(path, key), str(e))
            return default
        if n < lo:
            self.add(join(path, key), f"{v!r} is too small; at least {lo:_} bytes")
            return default
        return n

    def numbers(
        self, t: Mapping[str, Any], key: str, path: str, *, finite: bool = False
    ) -> list[float] | None:
        """A list of numbers, or None when t[key] is not one (the caller words the problem:
        what the list is for says more than a generic message)."""
        v = t.get(key)
        if not isinstance(v, list) or not all(
            _is_number(x) and (not finite or math.isfinite(x)) for x in v
        ):
            return None
        return [float(x) for x in v]

    def mark(self) -> int:
        """A point to ask `since` about: did reading one entry find a problem?"""
        return len(self.problems)

    def since(self, mark: int) -> bool:
        return len(self.problems) > mark
