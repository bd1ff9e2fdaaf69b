"""Logging a test into an engine the way a console does: a demo user, a PIN, a session."""

from __future__ import annotations

import weakref
from typing import Any

from floorconsole.engine.demo import DEMO_USERS, ensure_demo_users

# engine -> {user name: session token}: kept beside the engine, never set on it
_SESSIONS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def session_of(engine: Any, name: str = "eng1") -> str:
    """A session token of demo user `name` (op1 operator, eng1 engineer, admin admin) on
    this engine, logged in once per engine."""
    cache = _SESSIONS.setdefault(engine, {})
    if name not in cache:
        if not engine.demo_users and not cache:  # built without the demo: its users all the same
            ensure_demo_users(engine.users())
        pin = next(u["pin"] for u in DEMO_USERS if u["name"] == name)
        r = engine.api.login(name, pin)
        assert r["ok"], r
        cache[name] = r["session"]
    return str(cache[name])
