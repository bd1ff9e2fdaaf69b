"""Views back from plain data (a JSON round trip), read off the dataclasses' own field types.

`decode(Frame, data)` walks the type hints of Frame (typing.get_type_hints) and recurses into
dataclasses, tuples (`tuple[X, ...]` and fixed ones), unions with None and enums, so a field
added to a view is decoded without anyone writing a line for it. One decoder is compiled per
type and kept: a console decodes a 500-signal frame several times a second.

Scalars are checked but passed through as they came (an int in a float field stays an int),
as the engine sent them. Data that does not fit raises DecodeError naming the field path
and what was expected ("Frame.signals[3].quality: expected str, got int 5").
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")
_Decoder = Callable[[Any], Any]


class DecodeError(ValueError):
    """Plain data that does not fit a view."""

    def __init__(self, what: str, path: str = "") -> None:
        super().__init__(f"{path}: {what}" if path else what)
        self.what = what
        self.path = path


def decode(cls: type[T], data: Any) -> T:
    """An instance of the view class `cls` from the plain data of its asdict()/JSON form."""
    try:
        return _decoder(cls)(data)  # type: ignore[no-any-return]
    except DecodeError as e:
        raise DecodeError(e.what, f"{cls.__name__}{e.path}") from None


_CACHE: dict[Any, _Decoder] = {}
_SCALARS: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (float, int),  # JSON writes 2.0 as 2.0, but a producer may hand over an int
    bool: (bool,),
    type(None): (type(None),),
}


def _decoder(tp: Any) -> _Decoder:
    found = _CACHE.get(tp)
    if found is None:
        found = _CACHE[tp] = _build(tp)
    return found


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _scalar_types(tp: Any) -> tuple[type, ...] | None:
    """The Python types a scalar field (or a union of scalars) accepts, or None when `tp`
    is not made of scalars alone."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    if _is_union(tp):
        out: tuple[type, ...] = ()
        for arg in get_args(tp):
            if arg not in _SCALARS:
                return None
            out += _SCALARS[arg]
        return out
    return None


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _name(tp: Any) -> str:
    return " | ".join(
        "None" if a is type(None) else getattr(a, "__name__", str(a))
        for a in (get_args(tp) if _is_union(tp) else (tp,))
    )


def _build(tp: Any) -> _Decoder:
    if tp is Any:
        return lambda v: v
    scalars = _scalar_types(tp)
    if scalars is not None:
        return _scalar(scalars, _name(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if _is_union(tp):
        return _union(tp)
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _tuple_of(args[0])
        return _fixed_tuple(args)
    raise TypeError(f"no decoder for {tp!r}: views carry scalars, tuples and dataclasses")


def _scalar(allowed: tuple[type, ...], name: str) -> _Decoder:
    bool_ok = bool in allowed

    def run(v: Any) -> Any:
        # bool is an int to isinstance; a true in a number field is still a wrong type
        if not isinstance(v, allowed) or (isinstance(v, bool) and not bool_ok):
            raise DecodeError(f"expected {name}, got {_kind(v)}")
        return v

    return run


def _enum(tp: type[enum.Enum]) -> _Decoder:
    def run(v: Any) -> Any:
        try:
            return tp(v)
        except ValueError:
            known = ", ".join(repr(m.value) for m in tp)
            raise DecodeError(f"expected one of {known}, got {_kind(v)}") from None

    return run


def _union(tp: Any) -> _Decoder:
    args = get_args(tp)
    optional = type(None) in args
    members = [_decoder(a) for a in args if a is not type(None)]
    name = _name(tp)

    def run(v: Any) -> Any:
        if v is None and optional:
            return None
        if len(members) == 1:
            return members[0](v)
        for dec in members:
            try:
                return dec(v)
            except DecodeError:
                continue
        raise DecodeError(f"expected {name}, got {_kind(v)}")

    return run


def _tuple_of(item_tp: Any) -> _Decoder:
    scalars = _scalar_types(item_tp)
    name = _name(item_tp)
    if scalars is not None:
        exact = frozenset(scalars)  # exact types: JSON gives no subclasses, and a bool is no float

        def run_scalars(v: Any) -> Any:
            if not isinstance(v, (list, tuple)):
                raise DecodeError(f"expected a list of {name}, got {_kind(v)}")
            out = tuple(v)
            if not exact.issuperset(map(type, out)):  # one pass in C: a waveform has 128
                i, x = next((i, x) for i, x in enumerate(out) if type(x) not in exact)
                raise DecodeError(f"expected {name}, got {_kind(x)}", f"[{i}]")
            return out

        return run_scalars
    item = _decoder(item_tp)

    def run(v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            raise DecodeError(f"expected a list of {name}, got {_kind(v)}")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except DecodeError as e:
                raise DecodeError(e.what, f"[{i}]{e.path}") from None
        return tuple(out)

    return run


def _fixed_tuple(args: tuple[Any, ...]) -> _Decoder:
    items = [_decoder(a) for a in args]
    kinds = [_scalar_types(a) for a in args]
    if all(k is not None for k in kinds):  # (float, float), (str, str, int): types checked in C
        sets = [frozenset(k or ()) for k in kinds]

        def run_scalars(v: Any) -> Any:
            if not isinstance(v, (list, tuple)) or len(v) != len(sets):
                raise DecodeError(f"expected a list of {len(sets)} items, got {_kind(v)}")
            if not all(map(frozenset.__contains__, sets, map(type, v))):
                for i, (dec, x) in enumerate(zip(items, v, strict=True)):
                    try:
                        dec(x)
                    except DecodeError as e:
                        raise DecodeError(e.what, f"[{i}]{e.path}") from None
            return tuple(v)

        return run_scalars

    def run(v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != len(items):
            raise DecodeError(f"expected a list of {len(items)} items, got {_kind(v)}")
        out = []
        for i, (dec, x) in enumerate(zip(items, v, strict=True)):
            try:
                out.append(dec(x))
            except DecodeError as e:
                raise DecodeError(e.what, f"[{i}]{e.path}") from None
        return tuple(out)

    return run


def _dataclass(cls: type) -> _Decoder:
    hints = get_type_hints(cls)
    # Required scalar fields, most of a frame, are fetched by one itemgetter and their types
    # checked by one map in C; the rest (views, tuples, fields with defaults) one by one.
    plain: list[tuple[str, _Decoder, frozenset[type]]] = []
    rest: list[tuple[str, _Decoder, bool]] = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        tp = hints[f.name]
        scalars = _scalar_types(tp)
        if required and scalars is not None:
            plain.append((f.name, _decoder(tp), frozenset(scalars)))
        else:
            rest.append((f.name, _decoder(tp), required))
    names = frozenset(f.name for f in dataclasses.fields(cls))
    what = cls.__name__
    plain_names = [p[0] for p in plain]
    plain_sets = [p[2] for p in plain]
    fetch = operator.itemgetter(*plain_names) if len(plain) > 1 else None

    def run(v: Any) -> Any:
        if not isinstance(v, dict):
            raise DecodeError(f"expected an object ({what}), got {_kind(v)}")
        if not names.issuperset(v):
            unknown = ", ".join(sorted(v.keys() - names))
            raise DecodeError(f"unknown field(s) {unknown} for {what}")
        try:
            values = fetch(v) if fetch is not None else tuple(v[n] for n in plain_names)
        except KeyError:
            missing = next(n for n in plain_names if n not in v)
            raise DecodeError(f"missing field {missing!r} of {what}") from None
        if not all(map(frozenset.__contains__, plain_sets, map(type, values))):
            for name, dec, _exact in plain:
                try:
                    dec(v[name])
                except DecodeError as e:
                    raise DecodeError(e.what, f".{name}{e.path}") from None
        kwargs = dict(v)
        for name, dec, required in rest:
            if name in v:
                try:
                    kwargs[name] = dec(v[name])
                except DecodeError as e:
                    raise DecodeError(e.what, f".{name}{e.path}") from None
            elif required:
                raise DecodeError(f"missing field {name!r} of {what}")
        return cls(**kwargs)

    return run
