"""A console API served from a recording: for snapshot tests and offline review, no engine."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from floorconsole.engine.frames import Frame, History, frame_from_dict, history_from_dict

VIEW_ONLY = "a recording is view-only: it has no users and runs no commands"


class ConsoleAPI(Protocol):
    """What a console needs from an engine; EngineAPI and RecordedAPI both provide it.
    A session is an opaque token the console holds; None is nobody (a viewer)."""

    def frame(self) -> Frame: ...

    def history(
        self, signal: str, since: float, until: float, max_points: int = 5000
    ) -> History: ...

    def command(self, name: str, session: str | None = None, **args: Any) -> dict[str, Any]: ...

    def login(self, user: str, pin: str) -> dict[str, Any]: ...

    def logout(self, session: str) -> None: ...

    def unlock(self, session: str, pin: str) -> dict[str, Any]: ...

    def session(self, session: str | None) -> dict[str, Any]: ...

    def touch(self, session: str) -> None: ...

    def demo_users(self) -> list[dict[str, str]]: ...


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


class RecordedAPI:
    """Serves one recorded frame (always the same, so snapshot images are stable) and the
    recorded history of each signal. A recording has no users: everyone is a viewer, a login
    is refused, and commands are recorded and refused."""

    def __init__(self, frame: Frame, histories: dict[str, History]) -> None:
        self._frame = frame
        self._histories = histories
        self.commands: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def load(cls, path: Path) -> RecordedAPI:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            frame_from_dict(data["frame"]),
            {k: history_from_dict(v) for k, v in data.get("histories", {}).items()},
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

    def command(self, name: str, session: str | None = None, **args: Any) -> dict[str, Any]:
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

    def logout(self, session: str) -> None:
        return None

    def unlock(self, session: str, pin: str) -> dict[str, Any]:
        return {"ok": False, "message": f"cannot unlock: {VIEW_ONLY}"}

    def session(self, session: str | None) -> dict[str, Any]:
        return viewer_session()

    def touch(self, session: str) -> None:
        return None

    def demo_users(self) -> list[dict[str, str]]:
        return []
