"""A console on a real terminal (the test's pseudo-terminal) whose frames follow a script in
time, for checking annunciation on the bytes the terminal receives:

    python -m tests.support.annunciate_console MARKS_FILE [PRIORITY]

phase 0 (0-2 s)  a LOW alarm unacknowledged (below the console's priority: no bell, no flash)
phase 1 (2-6 s)  a HIGH alarm arrives, unacknowledged (bell, and its banner tag flashes)
phase 2 (6-9 s)  the HIGH alarm acknowledged (no bell, no flash)
Each phase's start is written to MARKS_FILE as "PHASE MONOTONIC_TIME" (the clock is shared by
every process on the machine); the console quits after phase 2.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from floorconsole.engine.frames import Frame
from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app

RECORDING = Path(__file__).resolve().parents[2] / "fixtures" / "recordings" / "overview.json"
PHASES = (2.0, 6.0, 9.0)  # when each phase ends, seconds after the first frame


class ScriptedAlarms(RecordedAPI):
    def __init__(self, marks: Path) -> None:
        base = RecordedAPI.load(RECORDING)
        super().__init__(base.frame(), {})
        self.marks = marks.open("a", encoding="utf-8")
        self.t0: float | None = None
        self.phase = -1
        self.on_done = lambda: None
        tmpl = base.frame().alarms[0]
        now = base.frame().t_wall
        low = replace(
            tmpl, id="low:advisory", priority="low", message="Advisory", state="UNACK",
            condition=True, activated=now - 30,
        )  # fmt: skip
        high = replace(
            tmpl, state="UNACK", condition=True, activated=now, text="score 6.81 > 0.8 for 5 s"
        )
        acked = replace(high, state="ACKED", acked=now + 4, acked_by="op1")
        self.frames = (
            replace(base.frame(), alarms=(low,)),
            replace(base.frame(), alarms=(high, low)),
            replace(base.frame(), alarms=(acked, low)),
        )

    def frame(self) -> Frame:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        phase = next((i for i, end in enumerate(PHASES) if now - self.t0 < end), len(PHASES))
        if phase != self.phase:
            self.phase = phase
            self.marks.write(f"{phase} {now}\n")
            self.marks.flush()
        if phase >= len(PHASES):
            self.on_done()
        return self.frames[min(phase, len(self.frames) - 1)]


def main(marks: str, priority: str = "high") -> None:
    api = ScriptedAlarms(Path(marks))
    app = make_app(api, annunciate=priority, refresh_hz=8.0)
    api.on_done = app.exit
    app.run()
    print(f"bells {app.bells}", file=sys.stdout, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
