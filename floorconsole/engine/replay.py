"""A console API served from a recording: for snapshot tests and offline review, no engine."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floorconsole.console import (
    CommandResult,
    ConsoleAPI,
    Frame,
    History,
    Unavailable,
    decode,
    viewer_session,
)

VIEW_ONLY = "a recording is view-only: it has no users and runs no commands"
NO_ENGINE = "a recording has no running engine"


class RecordedAPI:
    """Serves one recorded frame (always the same, so snapshot images are stable) and the
    recorded history of each signal. A recording has no users: everyone is a viewer, a login
    is refused, and commands are recorded and refused."""

    reconnected = 0  # nothing to reconnect to

    def __init__(self, frame: Frame, histories: dict[str, History]) -> None:
        self._frame = frame
        self._histories = histories
        self.commands: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def load(cls, path: Path) -> RecordedAPI:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            decode(Frame, data["frame"]),
            {k: decode(History, v) for k, v in data.get("histories", {}).items()},
        )

    def save(self, path: Path) -> None:
        data = {
            "frame": asdict(self._frame),
            "histories": {k: asdict(v) for k, v in self._histories.items()},
        }
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    def set_frame(self, frame: Frame) -> None:
        self._frame = frame

    def frame(self) -> Frame:
        return self._frame

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        h = self._histories.get(signal)
        if h is None:
            return History(
                signal=signal, unit="", since=since, until=until, points=(), quality_changes=()
            )
        pts = tuple(p for p in h.points if since <= p.t <= until)
        marks = tuple(m for m in h.quality_changes if since <= m.t <= until)
        return replace(h, since=since, until=until, points=pts, quality_changes=marks)

    def command(self, name: str, /, session: str | None = None, **args: Any) -> CommandResult:
        self.commands.append((name, {**args, "session": session}))
        return {"ok": False, "refused": "login", "message": f"{name}: {VIEW_ONLY}"}

    # -- sessions: nobody can log in to a recording -----------------------------------------

    def login(self, user: str, pin: str) -> dict[str, Any]:
        return {
            "ok": False,
            "message": f"cannot log in: {VIEW_ONLY}",
            "session": None,
            "user": "",
            "role": "viewer",
        }

    def logout(self, session: str | None) -> None:
        return None

    def unlock(self, session: str | None, pin: str) -> dict[str, Any]:
        return {"ok": False, "message": f"cannot unlock: {VIEW_ONLY}"}

    def session(self, session: str | None) -> dict[str, Any]:
        return viewer_session()

    def touch(self, session: str | None) -> None:
        return None

    def demo_users(self) -> list[dict[str, str]]:
        return []

    # -- what only a running engine has ----------------------------------------------------

    def audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        raise Unavailable(f"{NO_ENGINE}: no audit trail")

    def audit_verify(self) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no audit trail")

    def alarm_journal(self, limit: int = 500) -> list[dict[str, Any]]:
        raise Unavailable(f"{NO_ENGINE}: no alarm journal")

    def alarm_kpis(self, since: float, until: float) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no alarm journal")

    def model_histogram(self, model_id: str, feature: str) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no live drift windows")

    def model_comparison(self, model_id: str, points: int = 120) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no shadow model")

    def active_config(self) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no running configuration")

    def snapshots(self) -> list[dict[str, Any]]:
        raise Unavailable(f"{NO_ENGINE}: no snapshot store")

    def snapshot_diff(self, a: str, b: str) -> list[str]:
        raise Unavailable(f"{NO_ENGINE}: no snapshot store")

    def activations(self, limit: int = 200) -> list[dict[str, Any]]:
        raise Unavailable(f"{NO_ENGINE}: no snapshot store")

    def dry_run(
        self, rule: dict[str, Any], hours: tuple[float, ...] = (1.0, 24.0)
    ) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no history to replay")

    def opcua_browse(self, device: str, node: str = "", depth: int = 2) -> dict[str, Any]:
        raise Unavailable(f"{NO_ENGINE}: no OPC UA servers to browse")


if TYPE_CHECKING:  # mypy proves a recording answers every call of the contract

    def _is_console_api(api: RecordedAPI) -> ConsoleAPI:
        return api
