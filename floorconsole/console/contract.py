"""What a console may ask of an engine: the ConsoleAPI protocol, its errors and its answers.

EngineAPI (in process), RemoteAPI (over the attach socket) and RecordedAPI (a recording)
each provide every method here, and mypy checks that they do: a screen calls a method, it
never asks whether one exists. What one of them cannot give (a recording has no journal, no
audit trail and no running configuration) it refuses with Unavailable, and the screen says
so in its own words.
"""

from __future__ import annotations

from typing import Any, Protocol, Required, TypedDict

from floorconsole.console.views import Frame, History


class CommandError(Exception):
    """A command (or a call) the engine refused, with a message for the user."""


class Unavailable(Exception):
    """This console's engine does not offer the call: a recording has no journal, no audit
    trail, no running configuration and no history to replay."""


class CommandResult(TypedDict, total=False):
    """What api.command answers, over the socket as JSON too. Every answer has ok and
    message; the rest belongs to some commands."""

    ok: Required[bool]
    message: Required[str]
    # why it was not done: login | role | pin | locked | held (control is elsewhere) |
    # stale (the console's engine is gone; nothing was sent)
    refused: str
    arm: str  # control.arm: the token control.write confirms
    expires_s: float  # control.arm: how long the arm holds
    before: float | bool | None  # control.write: the point read before the write
    after: float | bool | None  # control.write: read back after it
    results: list[dict[str, Any]]  # alarm.ack_all: one per alarm
    snapshot: str  # config.apply, snapshot.rollback: the snapshot running afterwards
    seconds: float  # config.apply, snapshot.rollback: how long it took
    health: str  # config.apply, snapshot.rollback: "ok", or why the health check failed
    candidate: dict[str, Any]  # model.calibrate: the candidate package built (path, sha256...)


def viewer_session() -> dict[str, Any]:
    """What api.session() says for nobody: a viewer, allowed only to look."""
    return {
        "user": "",
        "role": "viewer",
        "locked": False,
        "pin_fresh": False,
        "idle_lock_s": 0.0,
        "permitted": [],
    }


class ConsoleAPI(Protocol):
    """Every call a console makes. A session is an opaque token the console holds; None is
    nobody (a viewer). Calls may block (a socket, a history query): screens make them from
    workers, except frame() and session(), which answer at once."""

    @property
    def reconnected(self) -> int:
        """How often the engine came back after going away (0 for an engine in process)."""
        ...

    def frame(self) -> Frame: ...

    def history(
        self, signal: str, since: float, until: float, max_points: int = 5000
    ) -> History: ...

    def command(self, name: str, /, session: str | None = None, **args: Any) -> CommandResult: ...

    # -- sessions: {"ok", "message", "session", "user", "role"} from login -------------------

    def login(self, user: str, pin: str) -> dict[str, Any]: ...

    def logout(self, session: str | None) -> None: ...

    def unlock(self, session: str | None, pin: str) -> dict[str, Any]: ...

    def session(self, session: str | None) -> dict[str, Any]:
        """{"user", "role", "locked", "pin_fresh", "idle_lock_s", "permitted"} and, from an
        engine that knows, "holds_control"."""
        ...

    def touch(self, session: str | None) -> None: ...

    def demo_users(self) -> list[dict[str, str]]: ...

    # -- reading the engine's records ------------------------------------------------------

    def audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]: ...

    def audit_verify(self) -> dict[str, Any]: ...

    def alarm_journal(self, limit: int = 500) -> list[dict[str, Any]]: ...

    def alarm_kpis(self, since: float, until: float) -> dict[str, Any]:
        """ISA-18.2 figures from the alarm journal for since <= t < until: the fields of
        core.alarm_kpis.AlarmKpis, and "verdicts" [[figure, value, target, within], ...]."""
        ...

    def model_histogram(self, model_id: str, feature: str) -> dict[str, Any]: ...

    def model_comparison(self, model_id: str, points: int = 120) -> dict[str, Any]:
        """A shadowed candidate against the live model (EngineAPI.model_comparison)."""
        ...

    # -- configuration: snapshots and rule changes -----------------------------------------

    def active_config(self) -> dict[str, Any]: ...

    def snapshots(self) -> list[dict[str, Any]]: ...

    def snapshot_diff(self, a: str, b: str) -> list[str]: ...

    def activations(self, limit: int = 200) -> list[dict[str, Any]]: ...

    def dry_run(
        self, rule: dict[str, Any], hours: tuple[float, ...] = (1.0, 24.0)
    ) -> dict[str, Any]: ...

    def opcua_browse(self, device: str, node: str = "", depth: int = 2) -> dict[str, Any]:
        """An OPC UA device's address space under node (default Objects), for an engineer
        adding a signal: {"device", "node", "tree": [lines], "variables": [{"node_id", "name",
        "data_type", "value"}], "signals": [[[signals]] tables for those variables]}."""
        ...


# The calls of the contract by name: what a console in another process may ask over the
# attach socket (engine.attach serves these and nothing else).
CALLS: frozenset[str] = frozenset(
    name for name, member in vars(ConsoleAPI).items() if callable(member) and name[0] != "_"
)
