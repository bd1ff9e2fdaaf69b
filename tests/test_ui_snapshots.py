"""Snapshot images of the console, built from recorded frames (no sockets, frozen clock)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from floorconsole.engine.replay import RecordedAPI
from floorconsole.ui.app import FloorApp, make_app

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


@pytest.fixture(autouse=True)
def utc() -> None:
    # The header clock shows local time: pin the zone so images match on any machine.
    os.environ["TZ"] = "UTC"
    time.tzset()


def app_from(name: str, theme: str = "isa101") -> FloorApp:
    return make_app(RecordedAPI.load(RECORDINGS / name), theme=theme)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("theme", ["isa101", "dark", "high-contrast"])
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_overview(snap_compare, theme: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_from("overview.json", theme), terminal_size=size, run_before=settle)


def test_device_down(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_from("device_down.json"), terminal_size=(100, 30), run_before=settle)


def test_device_down_only_not_good(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app_from("device_down.json"), terminal_size=(80, 24), press=["b", "g"], run_before=settle
    )


def test_help(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app_from("overview.json"), terminal_size=(80, 24), press=["f1"], run_before=settle
    )


async def open_detail(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("enter")
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await settle(pilot)


def test_signal_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_from("overview.json"), terminal_size=(100, 30), run_before=open_detail)


def test_signal_detail_device_down(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app_from("device_down.json"), terminal_size=(80, 24), run_before=open_detail
    )


async def open_alarms(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("f2")
    await settle(pilot)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_alarm_screen_after_a_trip(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """The bearing fault tripped the motor: its HIGH alarm unacknowledged, the model out of
    service."""
    assert snap_compare(app_from("bearing_trip.json"), terminal_size=size, run_before=open_alarms)


@pytest.mark.parametrize("recording", ["sensor_silent.json", "bearing_trip.json"])
def test_model_panel_when_the_model_is_not_scoring(snap_compare, recording: str) -> None:  # type: ignore[no-untyped-def]
    """BAD (its inputs went stale) and OUT OF SERVICE (its machine stopped): the panel says the word
    and the last score, and nothing on the screen says NORMAL."""
    assert snap_compare(app_from(recording), terminal_size=(120, 40), run_before=settle)
