"""Roles, what each may do, PIN hashing and the lockout rule: pure, no storage."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

# A critical action needs a PIN entered within this many seconds.
PIN_FRESH_S = 60.0
# This many wrong PINs in a row lock the user out for LOCKOUT_S.
MAX_FAILURES = 5
LOCKOUT_S = 300.0
# A console with no key press for this long locks and asks for a PIN again.
DEFAULT_IDLE_LOCK_S = 300.0

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 12
USER_NAME_MAX = 32


class Role(enum.IntEnum):
    """Who someone is on the floor; a higher role may do everything a lower one may."""

    VIEWER = 0
    OPERATOR = 1
    ENGINEER = 2
    ADMIN = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role from its name, any case ('operator', 'ADMIN')."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            expected = ", ".join(str(r) for r in cls)
            raise ValueError(f"unknown role {text!r}; expected one of {expected}") from None


# How long the engine lets a command run: most answer at once; a "long" one (apply,
# rollback, model import) waits for the new configuration's health check.
SHORT = "short"
LONG = "long"
# What a command's audit record names as its target (Action.target), besides an argument:
GROUP = ""  # the command's group word: "config" for config.apply
DEVICE_POINT = "device address"  # "drive1 co:10"
ALARM_COUNT = "alarms"  # "3 alarms"


@dataclass(frozen=True, slots=True)
class Action:
    """One engine command and everything the engine needs to know about it, bar its handler:
    who may run it, whether it needs a fresh PIN (critical) and the console holding control,
    how it is audited and how long it may take."""

    name: str
    min_role: Role
    critical: bool
    description: str
    audit_kind: str  # core.audit's record kind
    target: str  # the argument the audit record names (alarm, fault), or GROUP, DEVICE_POINT...
    needs_control: bool = False  # only the console holding control: one changes the plant
    timeout: str = SHORT


def _table(*actions: Action) -> dict[str, Action]:
    return {a.name: a for a in actions}


# The engine's commands: the one place each is described (engine.commands holds handlers).
ACTIONS: dict[str, Action] = _table(
    Action("audit.view", Role.VIEWER, False, "read the audit trail", "system", GROUP),
    Action("alarm.ack", Role.OPERATOR, False, "acknowledge an alarm", "alarm_ack", "alarm"),
    Action(
        "alarm.ack_all",
        Role.OPERATOR,
        False,
        "acknowledge every alarm shown",
        "alarm_ack",
        ALARM_COUNT,
    ),
    Action(
        "alarm.unshelve",
        Role.OPERATOR,
        False,
        "return a shelved alarm to service",
        "alarm_unshelve",
        "alarm",
    ),
    Action(
        "alarm.shelve",
        Role.OPERATOR,
        True,
        "shelve an alarm (it stops annunciating)",
        "alarm_shelve",
        "alarm",
    ),
    Action(
        "demo.inject",
        Role.OPERATOR,
        False,
        "inject a fault into the simulated plant",
        "system",
        "fault",
    ),
    Action(
        "demo.clear",
        Role.OPERATOR,
        False,
        "clear injected faults in the simulated plant",
        "system",
        "fault",
    ),
    Action(
        "demo.toggle",
        Role.OPERATOR,
        False,
        "switch demo fault injection on or off",
        "system",
        "fault",
    ),
    Action(
        "control.take",
        Role.ENGINEER,
        False,
        "take control (writes, rules, rollbacks)",
        "system",
        GROUP,
    ),
    Action(
        "control.release",
        Role.ENGINEER,
        False,
        "release control for another console",
        "system",
        GROUP,
    ),
    Action(
        "control.request",
        Role.ENGINEER,
        False,
        "ask the console holding control for it",
        "system",
        GROUP,
    ),
    Action(
        "control.arm",
        Role.ENGINEER,
        False,
        "arm a manual write to a device",
        "write",
        DEVICE_POINT,
        needs_control=True,
    ),
    Action(
        "rule.reset",
        Role.ENGINEER,
        False,
        "reset a latched rule (a trip) once clear",
        "rule_reset",
        "rule",
        needs_control=True,
    ),
    Action(
        "control.write",
        Role.ENGINEER,
        True,
        "confirm an armed manual write to a device",
        "write",
        "arm",
        needs_control=True,
    ),
    Action(
        "config.apply",
        Role.ENGINEER,
        True,
        "apply a configuration change",
        "snapshot_apply",
        GROUP,
        needs_control=True,
        timeout=LONG,
    ),
    Action(
        "snapshot.rollback",
        Role.ENGINEER,
        True,
        "roll back to an earlier snapshot",
        "snapshot_rollback",
        "snapshot",
        needs_control=True,
        timeout=LONG,
    ),
    Action(
        "model.import",
        Role.ADMIN,
        True,
        "import a model package",
        "model_change",
        "model",
        needs_control=True,
        timeout=LONG,
    ),
    # Recalibration at the box (engine.calibrate, engine.shadow): building a candidate and
    # shadowing it change nothing the plant sees; promoting it is a configuration change.
    Action(
        "model.calibrate",
        Role.ENGINEER,
        False,
        "build a candidate model package from a healthy window of history",
        "model_change",
        "model",
        timeout=LONG,
    ),
    Action(
        "model.shadow",
        Role.ENGINEER,
        False,
        "run a candidate model beside the live one, or stop it",
        "model_change",
        "model",
    ),
    Action(
        "model.promote",
        Role.ENGINEER,
        True,
        "make a shadowed candidate the live model (a new snapshot)",
        "model_change",
        "model",
        needs_control=True,
        timeout=LONG,
    ),
    # A remote change held on this edge ([fleet] remote_apply = "confirm"): accepting it is a
    # configuration change like config.apply; deferring it changes nothing here.
    Action(
        "fleet.accept",
        Role.ENGINEER,
        True,
        "accept a remote change from the fleet (applied and health-checked)",
        "snapshot_apply",
        "rollout",
        needs_control=True,
        timeout=LONG,
    ),
    Action(
        "fleet.defer",
        Role.ENGINEER,
        False,
        "defer a remote change from the fleet (the fleet tool is told who and why)",
        "snapshot_apply",
        "rollout",
    ),
    Action("users.manage", Role.ADMIN, True, "add, remove and change users", "user_change", "name"),
    Action("kiosk.leave", Role.ADMIN, True, "leave kiosk mode", "kiosk", GROUP),
)


def action(name: str) -> Action:
    """The action of an engine command name; KeyError naming the known ones otherwise."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(
            f"unknown action {name!r}; known actions: {', '.join(sorted(ACTIONS))}"
        ) from None


def allowed(role: Role, action_name: str) -> bool:
    """Whether someone with this role may do this action (the PIN freshness is separate)."""
    return role >= action(action_name).min_role


def permitted(role: Role) -> list[str]:
    """The action names this role may do, sorted."""
    return sorted(a.name for a in ACTIONS.values() if role >= a.min_role)


def needs_fresh_pin(action_name: str, pin_entered_mono: float | None, now_mono: float) -> bool:
    """Whether a critical action must ask for the PIN again before it runs."""
    if not action(action_name).critical:
        return False
    return pin_entered_mono is None or now_mono - pin_entered_mono > PIN_FRESH_S


# -- names and PINs ------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_user_name(name: str) -> str | None:
    """What is wrong with a user name, or None: 1 to 32 letters, digits, '.', '_' or '-'."""
    if not name:
        return "a user name cannot be empty"
    if len(name) > USER_NAME_MAX:
        return f"a user name is at most {USER_NAME_MAX} characters (got {len(name)})"
    if not _NAME.fullmatch(name):
        return (
            f"user name {name!r}: use only letters, digits, '.', '_' and '-' "
            f"(1 to {USER_NAME_MAX} characters)"
        )
    return None


def check_pin_format(pin: str) -> str | None:
    """What is wrong with a PIN, or None. The text never quotes the PIN."""
    if not (PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS) or not pin.isascii() or not pin.isdigit():
        return f"a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits (0-9), nothing else"
    return None


_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_DKLEN = 32
_SALT_BYTES = 16
# Above this cost a stored string is refused instead of making verify take minutes or
# exhaust memory (a tampered or hostile users.db).
_MAX_N = 2**20
_MAX_RP = 64


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """'scrypt$16384$8$1$<salt hex>$<hash hex>' for a PIN; a fresh 16-byte salt unless given."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(
        pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_DKLEN
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Whether the PIN matches a stored hash; False (never an exception) for a stored string
    that is malformed."""
    try:
        scheme, n_s, r_s, p_s, salt_hex, hash_hex = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except (AttributeError, ValueError):
        return False
    if (
        scheme != "scrypt"
        or not (2 <= n <= _MAX_N)
        or n & (n - 1)
        or not (1 <= r <= _MAX_RP)
        or not (1 <= p <= _MAX_RP)
        or not salt
        or not (16 <= len(expected) <= 64)
    ):
        return False
    try:
        digest = hashlib.scrypt(
            pin.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=256 * 1024 * 1024
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


# -- lockout -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lockout:
    """A user's wrong-PIN record: failures in a row and, once MAX_FAILURES is reached, until
    when (wall time) they are locked. When a lock has run out, counting starts again from
    zero: the next wrong PIN is failure 1 of a fresh MAX_FAILURES."""

    failures: int = 0
    last_failure_wall: float | None = None
    locked_until_wall: float | None = None

    def locked(self, now_wall: float) -> bool:
        return self.locked_until_wall is not None and now_wall < self.locked_until_wall

    def expired(self, now_wall: float) -> bool:
        """A lock was set and has run out."""
        return self.locked_until_wall is not None and now_wall >= self.locked_until_wall

    def after_failure(self, now_wall: float) -> Lockout:
        """The record after one more wrong PIN (not to be called while locked)."""
        failures = 1 if self.expired(now_wall) else self.failures + 1
        until = now_wall + LOCKOUT_S if failures >= MAX_FAILURES else None
        return Lockout(failures, now_wall, until)

    def after_success(self) -> Lockout:
        return Lockout()
