"""Snapshot images of the shadow comparison screen (ui/screens/shadow.py), built from recorded
frames and a comparison recorded from a running engine after an overhaul (a candidate trained
at the box beside today's model, which warns on the new normal); frozen clock, no sockets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import make_app

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


class RecordedComparison(RecordedAPI):
    """The recorded frames, and the comparison the engine gave for the same model."""

    comparison: dict[str, Any] = {}

    def model_comparison(self, model_id: str, points: int = 120) -> dict[str, Any]:
        return {**self.comparison, "model": model_id}


@pytest.fixture(autouse=True)
def utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def app(running: bool = True):  # type: ignore[no-untyped-def]
    api = RecordedComparison.load(RECORDINGS / "overview.json")
    c = json.loads((RECORDINGS / "shadow_comparison.json").read_text())
    api.comparison = c if running else {"running": False, "last_candidate": c["last_candidate"]}
    return make_app(api)


async def open_shadow(pilot) -> None:  # type: ignore[no-untyped-def]
    from floorconsole.ui.screens.shadow import ShadowScreen

    await pilot.pause()
    await pilot.press("f4")
    await pilot.pause()
    await pilot.press("s")
    # The comparison loads on the screen's first frame, in a worker: on a busy machine that can
    # take more than a few pauses, so wait until it has been shown (not "loading …").
    deadline = time.monotonic() + 20
    while not (isinstance(pilot.app.screen, ShadowScreen) and pilot.app.screen.last):
        assert time.monotonic() < deadline, "the shadow comparison did not load"
        await pilot.pause(0.05)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_shadow_comparison(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(), terminal_size=size, run_before=open_shadow)


def test_shadow_screen_before_a_shadow_runs(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(running=False), terminal_size=(100, 30), run_before=open_shadow)
