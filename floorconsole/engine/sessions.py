"""Console sessions: who is logged in where, with which role, and whether their PIN is fresh.

The engine checks every command here, whatever the console shows: a console that hides a
button and one that sends the command anyway get the same answer. A session is an opaque
token held by one console; without one a console is a viewer. A session that sees no
activity for `idle_lock_s` locks: it keeps its user but acts as a viewer until the PIN is
entered again. Critical actions (a write, a rule change, a rollback, a shelve) need a PIN
entered within the last PIN_FRESH_S. Every login, failed login, lock and refusal is audited.
"""

from __future__ import annotations

import getpass
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from floorconsole.adapters.users import AuthResult, UserError, UserStore
from floorconsole.console import CommandResult
from floorconsole.core.auth import (
    ACTIONS,
    DEFAULT_IDLE_LOCK_S,
    PIN_FRESH_S,
    Role,
    needs_fresh_pin,
    permitted,
)
from floorconsole.core.clock import Clock

Audit = Callable[[str, str, str, dict[str, Any]], None]  # (kind, user, target, detail)


@dataclass
class Session:
    token: str
    user: str
    role: Role
    pin_mono: float  # when the PIN was last entered
    active_mono: float  # the last key press or command
    os_user: str = ""  # who sits at the console, by the OS (the socket's peer): audited


@dataclass(frozen=True)
class Refusal:
    reason: str  # "login", "role", "pin" or "locked"
    message: str

    def as_dict(self) -> CommandResult:
        return {"ok": False, "message": self.message, "refused": self.reason}


class Sessions:
    def __init__(
        self,
        users: Callable[[], UserStore],
        audit: Audit,
        clock: Clock,
        idle_lock_s: float | Callable[[], float] = DEFAULT_IDLE_LOCK_S,
    ) -> None:
        self._users = users
        self._audit = audit
        self._clock = clock
        # A number, or where to read it (the running plant's [edge] idle_lock, so an applied
        # change takes effect at once).
        self._idle_lock = idle_lock_s
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._holder: str | None = None  # the session holding control
        self._requested_by = ""  # who asked the holder for control

    @property
    def idle_lock_s(self) -> float:
        return self._idle_lock() if callable(self._idle_lock) else self._idle_lock

    # -- logging in and out ------------------------------------------------------------------

    def _authenticate(self, user: str, pin: str) -> AuthResult:
        try:
            return self._users().authenticate(user, pin, self._clock.wall())
        except UserError as e:  # the store itself failed (busy, unreadable): nobody gets in
            return AuthResult(False, user, None, f"cannot check the PIN now: {e}")

    def login(self, user: str, pin: str, os_user: str = "") -> dict[str, Any]:
        """os_user: the OS user at the console (an attached console's socket peer); a console
        in the engine's own process is the engine's user."""
        os_user = os_user or engine_os_user()
        result = self._authenticate(user, pin)
        if not result.ok or result.role is None:
            detail: dict[str, Any] = {
                "failures": result.failures,
                "message": result.message,
                "os_user": os_user,
            }
            self._audit("login_failed", user, "console", detail)
            if result.just_locked:
                self._audit(
                    "user_locked",
                    user,
                    "console",
                    {"until": result.locked_until, "failures": result.failures, "os_user": os_user},
                )
            return {
                "ok": False,
                "message": result.message,
                "session": None,
                "user": user,
                "role": "viewer",
            }
        now = self._clock.mono()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = Session(token, result.user, result.role, now, now, os_user)
        self._audit("login", result.user, "console", {"role": str(result.role), "os_user": os_user})
        return {
            "ok": True,
            "message": f"logged in as {result.user} ({result.role})",
            "session": token,
            "user": result.user,
            "role": str(result.role),
        }

    def logout(self, token: str | None) -> None:
        with self._lock:
            s = self._sessions.pop(token or "", None)
            held = s is not None and self._holder == token
            if held:
                self._holder, self._requested_by = None, ""
        if s is not None:
            detail: dict[str, Any] = {"os_user": s.os_user}
            if held:
                detail["released control"] = True
            self._audit("logout", s.user, "console", detail)

    # -- control: one console at a time changes the plant ------------------------------------

    def holder(self) -> tuple[str, str]:
        """(user holding control or "", user who asked for it or "")."""
        with self._lock:
            s = self._live_holder(self._clock.mono())
            return (s.user if s is not None else ""), self._requested_by

    def _live_holder(self, now: float) -> Session | None:
        """The holding session; a holder that logged out or locked holds nothing."""
        s = self._sessions.get(self._holder or "")
        if s is None or self._locked(s, now):
            self._holder, self._requested_by = None, ""
            return None
        return s

    def take(self, token: str | None) -> CommandResult:
        s = self._get(token)
        assert s is not None  # check() ran first
        with self._lock:
            cur = self._live_holder(self._clock.mono())
            if cur is not None and cur.token != token:
                return {
                    "ok": False,
                    "message": f"control is held by {cur.user}; ask for it (they can release it)",
                    "refused": "held",
                }
            self._holder, self._requested_by = token, ""
        return {"ok": True, "message": f"{s.user} holds control"}

    def release(self, token: str | None) -> CommandResult:
        with self._lock:
            if self._holder != token:
                return {"ok": False, "message": "this console does not hold control"}
            self._holder, self._requested_by = None, ""
        return {"ok": True, "message": "control released"}

    def request(self, token: str | None) -> CommandResult:
        s = self._get(token)
        assert s is not None
        with self._lock:
            cur = self._live_holder(self._clock.mono())
            if cur is None or cur.token == token:
                self._holder, self._requested_by = token, ""
                return {"ok": True, "message": f"{s.user} holds control"}
            self._requested_by = s.user
        return {"ok": True, "message": f"asked {cur.user} for control"}

    def unlock(self, token: str | None, pin: str) -> dict[str, Any]:
        """The PIN again: unlocks an idle-locked session and refreshes the PIN window."""
        s = self._get(token)
        if s is None:
            return {"ok": False, "message": "not logged in: log in first (F9)"}
        result = self._authenticate(s.user, pin)
        if not result.ok or result.role is None:
            self._audit(
                "login_failed",
                s.user,
                "console",
                {
                    "failures": result.failures,
                    "message": result.message,
                    "during": "PIN confirmation",
                    "os_user": s.os_user,
                },
            )
            if result.just_locked:
                self._audit(
                    "user_locked",
                    s.user,
                    "console",
                    {"until": result.locked_until, "failures": result.failures},
                )
                self.logout(token)
            return {"ok": False, "message": result.message}
        now = self._clock.mono()
        with self._lock:
            was_locked = self._locked(s, now)
            s.pin_mono = s.active_mono = now
            s.role = result.role  # a role changed by an admin meanwhile takes effect
        if was_locked:
            self._audit(
                "login",
                s.user,
                "console",
                {"role": str(s.role), "unlocked": True, "os_user": s.os_user},
            )
        return {"ok": True, "message": "PIN accepted" + (": unlocked" if was_locked else "")}

    def touch(self, token: str | None) -> None:
        s = self._get(token)
        if s is None:
            return
        now = self._clock.mono()
        with self._lock:
            if not self._locked(s, now):
                s.active_mono = now

    # -- what a session may do ------------------------------------------------------------

    def info(self, token: str | None) -> dict[str, Any]:
        s = self._get(token)
        now = self._clock.mono()
        if s is None:
            return {
                "user": "",
                "role": "viewer",
                "locked": False,
                "pin_fresh": False,
                "holds_control": False,
                "idle_lock_s": self.idle_lock_s,
                "permitted": permitted(Role.VIEWER),
            }
        locked = self._locked(s, now)
        with self._lock:
            holder = self._live_holder(now)
        return {
            "user": s.user,
            "role": str(s.role),
            "locked": locked,
            "holds_control": holder is not None and holder.token == s.token,
            "pin_fresh": not locked and now - s.pin_mono <= PIN_FRESH_S,
            "idle_lock_s": self.idle_lock_s,
            "permitted": permitted(Role.VIEWER if locked else s.role),
        }

    def check(self, token: str | None, action_name: str) -> tuple[str, Refusal | None]:
        """(the user acting, None) when the session may run the action now, else the refusal.

        The refusal is audited here; so is nothing else (the command is, by the caller)."""
        action = ACTIONS[action_name]
        s = self._get(token)
        now = self._clock.mono()
        refusal: Refusal | None = None
        user = s.user if s is not None else ""
        if action.min_role <= Role.VIEWER:
            return user, None
        if s is None:
            refusal = Refusal(
                "login", f"log in (F9) to {action.description}: it needs {action.min_role}"
            )
        elif self._locked(s, now):
            refusal = Refusal(
                "locked",
                f"the session of {s.user} locked after "
                f"{self.idle_lock_s:g} s without activity: enter the "
                f"PIN to {action.description}",
            )
        elif s.role < action.min_role:
            refusal = Refusal(
                "role",
                f"{s.user} ({s.role}) may not {action.description}: "
                f"that needs {action.min_role} or above",
            )
        elif needs_fresh_pin(action_name, s.pin_mono, now):
            refusal = Refusal(
                "pin",
                f"enter the PIN again to {action.description} (needed "
                f"within {PIN_FRESH_S:g} s of a critical action)",
            )
        if refusal is None and action.needs_control:
            assert s is not None
            with self._lock:
                cur = self._live_holder(now)
                if cur is None:
                    self._holder, self._requested_by = s.token, ""  # free: taken by acting
                elif cur.token != s.token:
                    refusal = Refusal(
                        "held", f"control is held by {cur.user} on another console; ask for it"
                    )
        if refusal is not None:
            self._audit(
                "refused",
                user or "(nobody)",
                action_name,
                {"reason": refusal.reason, "message": refusal.message},
            )
            return user, refusal
        assert s is not None
        with self._lock:
            s.active_mono = now
        return s.user, None

    def _get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            return self._sessions.get(token)

    def _locked(self, s: Session, now: float) -> bool:
        return now - s.active_mono > self.idle_lock_s


def engine_os_user() -> str:
    """The OS user this process runs as: who sits at a console in the engine's own process."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for the uid (a container): say the uid
        return f"uid {os.getuid()}"
