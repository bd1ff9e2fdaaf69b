"""A console API served from a recording: for snapshot tests and offline review, no engine."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from floorconsole.engine.frames import Frame, History, frame_from_dict, history_from_dict


class ConsoleAPI(Protocol):
    """What a console needs from an engine; EngineAPI and RecordedAPI both provide it."""

    def frame(self) -> Frame: ...

    def history(self, signal: str, since: float, until: float,
                max_points: int = 5000) -> History: ...

    def command(self, name: str, **args: Any) -> dict[str, Any]: ...


class RecordedAPI:
    """Serves one recorded frame (always the same, so snapshot images are stable) and the
    recorded history of each signal. Commands are recorded, not executed."""

    def __init__(self, frame: Frame, histories: dict[str, History]) -> None:
        self._frame = frame
        self._histories = histories
        self.commands: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def load(cls, path: Path) -> RecordedAPI:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(frame_from_dict(data["frame"]),
                   {k: history_from_dict(v) for k, v in data.get("histories", {}).items()})

    def save(self, path: Path) -> None:
        data = {"frame": asdict(self._frame),
                "histories": {k: asdict(v) for k, v in self._histories.items()}}
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    def set_frame(self, frame: Frame) -> None:
        self._frame = frame

    def frame(self) -> Frame:
        return self._frame

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        h = self._histories.get(signal)
        if h is None:
            return History(signal=signal, unit="", since=since, until=until, points=(),
                           quality_changes=())
        pts = tuple(p for p in h.points if since <= p.t <= until)
        marks = tuple(m for m in h.quality_changes if since <= m.t <= until)
        return replace(h, since=since, until=until, points=pts, quality_changes=marks)

    def command(self, name: str, **args: Any) -> dict[str, Any]:
        self.commands.append((name, args))
        return {"ok": True, "message": f"{name} (recorded)"}
