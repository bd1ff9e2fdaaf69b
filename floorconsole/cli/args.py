"""What several commands read from their arguments the same way."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn


def add_data_dir_options(parser: argparse.ArgumentParser) -> None:
    """-c PLANT.toml or --data-dir DIR: where a command finds the data directory."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="PLANT.toml",
        help="plant file (for its data directory)",
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (instead of -c)")


def demo_data_dir() -> Path:
    """Where `floorconsole demo` keeps its data unless --data-dir says otherwise."""
    return Path.home() / ".local" / "state" / "floorconsole" / "demo"


def zone_of(args: argparse.Namespace) -> str:
    """The zone a command prints times in: the plant file's [edge] timezone when -c is given
    (the console shows the same), else UTC."""
    if getattr(args, "config", None):
        from floorconsole.core.config import PlantError, load_plant

        try:
            return load_plant(args.config).edge.timezone
        except PlantError:
            return "UTC"  # data_dir_of says what is wrong with the file
    return "UTC"


def data_dir_of(
    args: argparse.Namespace, error: type[Exception], *, demo_fallback: bool = False
) -> Path:
    """The data directory from --data-dir, or from the plant file given with -c; `error`
    (the command's own user-error type) with one line when neither is given or the plant
    file cannot be read.

    With demo_fallback (commands that only read), neither given and a demo that has run on
    this account: the demo's data directory, said on stderr, so `floorconsole history SIGNAL`
    works straight after `floorconsole demo`. Commands that change something never guess."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if getattr(args, "config", None):
        from floorconsole.core.config import PlantError, load_plant

        try:
            return load_plant(args.config).edge.data_dir
        except PlantError as e:
            raise error(f"{e.source}: {'; '.join(map(str, e.problems))}") from None
    demo = demo_data_dir()
    if demo_fallback and demo.is_dir():
        print(
            f"floorconsole: reading the demo's data directory {demo} "
            "(give -c PLANT.toml or --data-dir DIR for another)",
            file=sys.stderr,
        )
        return demo
    raise error("give -c PLANT.toml or --data-dir DIR to find the data directory")


def closest_names(name: str, known: Iterable[str], *, kind: str = "signals") -> str:
    """A hint for a mistyped name: the closest known names (difflib), or names it is part
    of; never the whole list of fifty (a short list is given whole)."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:  # a part of a name: 'vibration' for motor1.vibration.x and its kin
        close = [n for n in names if name.lower() in n.lower()][:3]
    if close:
        return f"did you mean {', '.join(close)}?"
    if not names:
        return f"there are no {kind}"
    if len(names) <= 6:
        return f"the {kind}: {', '.join(names)}"
    return f"none like it among the {len(names)} {kind}"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that names an unknown option whatever else is wrong.

    Plain argparse leaves options it does not know for the top-level parser to report after
    the command has parsed, so `check --bogus` said "required: PLANT.toml" and never named
    --bogus. Each parser here remembers what it was given; an error (a missing argument, an
    unknown option) names the unknown options first, under the command's own name. The
    subparsers of a CommandParser are CommandParsers (argparse makes them of the parent's type).
    """

    _given: list[str]

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        ns, extras = super().parse_known_args(args, namespace)
        # Innermost command first (it parses first): the one to speak for the leftovers.
        parsers = vars(ns).setdefault(_PARSERS, [])
        parsers.append(self)
        return ns, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        parsers: list[CommandParser] = vars(ns).pop(_PARSERS, [])
        if extras:
            owner = next((p for p in parsers if set(extras) <= set(p._given)), self)
            owner.error(_leftover_message(extras))
        return ns

    def error(self, message: str) -> NoReturn:
        if not message.startswith(("unrecognized option", "unexpected argument")):
            unknown = self._unknown_options()
            if unknown:
                message = _leftover_message(unknown)
        super().error(message)

    def _unknown_options(self) -> list[str]:
        known = [o for a in self._actions for o in a.option_strings]
        has_commands = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        unknown = []
        for token in getattr(self, "_given", []):
            if token == "--":
                break
            if not token.startswith("-") or token == "-" or token[1:2].isdigit():
                if has_commands:
                    break  # what follows is the sub-command's to judge
                continue
            name = token.split("=", 1)[0]
            if name in known or (not name.startswith("--") and name[:2] in known):
                continue  # -cPLANT.toml: a short option with its value attached
            if self.allow_abbrev and name.startswith("--"):
                if any(o.startswith(name) for o in known if o.startswith("--")):
                    continue
            unknown.append(name)
        return unknown


_PARSERS = "_command_parsers"  # kept on the namespace while parsing, removed after


def _leftover_message(extras: list[str]) -> str:
    options = [e.split("=", 1)[0] for e in extras if e.startswith("-") and e != "-"]
    others = [e for e in extras if not e.startswith("-") or e == "-"]
    parts = []
    if options:
        parts.append(f"unrecognized option{'s' if len(options) > 1 else ''} {' '.join(options)}")
    if others:
        parts.append(f"unexpected argument{'s' if len(others) > 1 else ''} {' '.join(others)}")
    return "; ".join(parts)
