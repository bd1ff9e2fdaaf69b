"""Themes as data: TOML files in themes/ become Textual themes; a broken file falls back."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parents[2] / "themes"
DEFAULT_THEME = "isa101"
THEME_ORDER = ("isa101", "dark", "high-contrast")
_COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "warning",
    "error",
    "success",
)
REQUIRED_VARIABLES = (
    "alarm-critical",
    "alarm-high",
    "alarm-medium",
    "alarm-low",
    "quality-good",
    "quality-uncertain",
    "quality-bad",
    "stale",
    "muted",
    "trend",
    "banner-normal",
    "banner-text",
    "selection",
)
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class ThemeFileError(ValueError):
    """A theme file that cannot be used, with the file and what is wrong."""


@dataclass(frozen=True)
class LoadedThemes:
    themes: dict[str, Theme]
    problems: tuple[str, ...]  # one line per broken file, shown to the user


def parse_theme(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ThemeFileError(f"theme {path.name}: cannot read it ({e})") from e
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ThemeFileError(f"theme {path.name}: 'name' is missing")
    colors = data.get("colors", {})
    variables = data.get("variables", {})
    if not isinstance(colors, dict) or not isinstance(variables, dict):
        raise ThemeFileError(f"theme {path.name}: [colors] and [variables] must be tables")
    for key, value in {**colors, **variables}.items():
        if not isinstance(value, str) or not _HEX.match(value):
            raise ThemeFileError(
                f'theme {path.name}: {key} = {value!r} is not a colour like "#1b1f23"'
            )
    unknown = set(colors) - set(_COLOR_KEYS)
    if unknown:
        raise ThemeFileError(f"theme {path.name}: unknown colour(s) {', '.join(sorted(unknown))}")
    missing = [v for v in REQUIRED_VARIABLES if v not in variables]
    if "primary" not in colors:
        missing.insert(0, "colors.primary")
    if missing:
        raise ThemeFileError(f"theme {path.name}: missing {', '.join(missing)}")
    # each colour checked above to be a "#rrggbb" string, or absent (Textual's default)
    palette: dict[str, Any] = {k: colors.get(k) for k in _COLOR_KEYS}
    return Theme(
        name=name, dark=bool(data.get("dark", False)), variables=dict(variables), **palette
    )


def load_themes(directory: Path = THEMES_DIR) -> LoadedThemes:
    """Every good theme file in the folder; each broken one becomes a problem line."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            t = parse_theme(path)
        except ThemeFileError as e:
            problems.append(str(e))
            continue
        themes[t.name] = t
    if DEFAULT_THEME not in themes:
        raise ThemeFileError(
            f"the default theme {DEFAULT_THEME} is missing or broken in "
            f"{directory}: {'; '.join(problems) or 'no such file'}"
        )
    return LoadedThemes(themes, tuple(problems))


def cycle_order(themes: dict[str, Theme]) -> list[str]:
    known = [n for n in THEME_ORDER if n in themes]
    return known + sorted(n for n in themes if n not in known)
