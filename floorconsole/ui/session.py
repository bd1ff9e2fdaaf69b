"""Who is at the console, in the header's words, and what a refusal tells the person at it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text

from floorconsole.console import ConsoleAPI, viewer_session

# What the console adds to a refusal, so the person at it knows what to do next.
REFUSAL_HINT = {
    "login": "log in with F9",
    "role": "your role may not do this",
    "pin": "enter your PIN",
    "locked": "the console is locked: enter your PIN",
    "held": "c asks for control",
    "stale": "the console reconnects by itself",
}


def session_info(api: ConsoleAPI, session: str | None) -> dict[str, Any]:
    """api.session(session), with a viewer's answer for any key it leaves out."""
    return {**viewer_session(), **dict(api.session(session))}


def who_words(info: Mapping[str, Any]) -> str:
    """'ENGINEER eng1', 'LOCKED eng1' when idle-locked, 'VIEWER' when nobody is logged in."""
    user = str(info.get("user") or "")
    if not user:
        return "VIEWER"
    if info.get("locked"):
        return f"LOCKED {user}"
    return f"{str(info.get('role') or 'viewer').upper()} {user}"


def who_text(info: Mapping[str, Any], colors: Mapping[str, str]) -> Text:
    """The header's words with their style: a locked console stands out in reverse (the word
    LOCKED says it too, for a monochrome panel); a viewer is quiet."""
    words = who_words(info)
    if info.get("user") and info.get("locked"):
        return Text(
            f" {words} ", style=f"bold reverse {colors.get('quality-uncertain', '')}".strip()
        )
    if not info.get("user"):
        return Text(words, style=colors.get("muted", ""))
    return Text(words, style="bold")


def demo_hint(users: Iterable[Mapping[str, Any]]) -> str:
    """'demo users: op1 1111 operator · eng1 2222 engineer · admin 9999 admin', or ''."""
    parts = [f"{u.get('name', '')} {u.get('pin', '')} {u.get('role', '')}" for u in users]
    return ("demo users: " + " · ".join(parts)) if parts else ""


def refusal_text(name: str, result: Mapping[str, Any]) -> str:
    """The engine's message, with what to do next when it is a refusal."""
    message = str(
        result.get("message") or (f"{name}: done" if result.get("ok") else f"{name}: not done")
    )
    hint = REFUSAL_HINT.get(str(result.get("refused") or ""), "")
    if hint and hint.split()[-1] not in message:
        return f"{message} ({hint})"
    return message
