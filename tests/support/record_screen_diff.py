"""`python tests/support/record_screen_diff.py ARGS...`: the floorconsole CLI with every
ScreenDiff call recorded, one JSON line each (the terminal's size, Textual's write, what went
to the terminal), to the file FC_SCREEN_DIFF_LOG names: a test replays both into a terminal
emulator and compares."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from floorconsole.cli import main  # noqa: E402
from floorconsole.ui import screen_diff  # noqa: E402

_log = open(os.environ["FC_SCREEN_DIFF_LOG"], "w", encoding="utf-8")  # noqa: SIM115
_call = screen_diff.ScreenDiff.__call__


def _recorded(self: screen_diff.ScreenDiff, data: str) -> str:
    out = _call(self, data)
    _log.write(json.dumps([self.width, self.height, data, out]) + "\n")
    _log.flush()
    return out


screen_diff.ScreenDiff.__call__ = _recorded  # type: ignore[method-assign]
sys.exit(main(sys.argv[1:]))
