"""The console contract holds: the UI reaches the engine through floorconsole.console alone,
the contract imports only core and the standard library, views come back from JSON by their
own field types, and every command is described once and handled once."""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from floorconsole.console import CALLS, ConsoleAPI, DecodeError, Frame, History, decode
from floorconsole.core.auth import ACTIONS
from floorconsole.core.uplink import UplinkStats
from floorconsole.engine.api import EngineAPI
from floorconsole.engine.attach import OPS
from floorconsole.engine.remote import RemoteAPI
from floorconsole.engine.replay import RecordedAPI

PACKAGE = Path(__file__).resolve().parents[1] / "floorconsole"
RECORDINGS = PACKAGE.parent / "fixtures" / "recordings"


def imports_of(folder: Path) -> list[tuple[str, str]]:
    """(file, module) for every import in the folder's modules, inside functions too."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path.name, node.module))
    return found


def test_the_ui_reaches_the_engine_only_through_the_console_contract() -> None:
    allowed = ("floorconsole.ui", "floorconsole.core", "floorconsole.console")
    ours = [(f, m) for f, m in imports_of(PACKAGE / "ui") if m.split(".")[0] == "floorconsole"]
    assert ours, "the scan found no imports of ours in ui/: it looks in the wrong place"
    bad = [(f, m) for f, m in ours if not m.startswith(allowed)]
    assert bad == [], f"ui/ imports past the console contract: {bad}"


def test_the_contract_imports_only_core_and_the_standard_library() -> None:
    bad = [
        (f, m)
        for f, m in imports_of(PACKAGE / "console")
        if not m.startswith(("floorconsole.console", "floorconsole.core"))
        and m.split(".")[0] not in sys.stdlib_module_names
        and m != "__future__"
    ]
    assert bad == [], f"the console contract imports beyond core and stdlib: {bad}"


@pytest.mark.parametrize("name", ["overview.json", "device_down.json"])
def test_a_frame_comes_back_from_json_as_it_was(name: str) -> None:
    recorded = RecordedAPI.load(RECORDINGS / name)
    frame = recorded.frame()
    # every optional part present, so the decoder walks them all
    frame = replace(
        frame,
        uplink=UplinkStats(
            *(["up", "plant", "tcp://x:1883", 1.5, "", 3, 10, 2, False, None, True, 2.0]),
            *([0.5, 4.0, 7, 7, 0, 1, 2, 0.2, 99, 0, 0, ""]),
            dropped=(("backlog_full", 2),),
        ),
    )
    back = decode(Frame, json.loads(json.dumps(asdict(frame))))
    assert back == frame
    assert type(back.signals[0]) is type(frame.signals[0])
    assert back.uplink is not None and back.uplink.dropped == (("backlog_full", 2),)
    for sig in ("motor1.current", "motor1.temp"):
        h = recorded.history(sig, 0.0, 2e9)
        assert decode(History, json.loads(json.dumps(asdict(h)))) == h


def test_data_that_does_not_fit_is_named_by_its_field() -> None:
    data = asdict(RecordedAPI.load(RECORDINGS / "overview.json").frame())
    data["signals"][3]["quality"] = 5
    with pytest.raises(DecodeError, match=r"Frame\.signals\[3\]\.quality: expected str, got int"):
        decode(Frame, data)
    data["signals"][3]["quality"] = "GOOD"
    data["signals"][2]["spark"] = [1.0, "x"]
    with pytest.raises(DecodeError, match=r"Frame\.signals\[2\]\.spark\[1\]: expected float"):
        decode(Frame, data)
    data["signals"][2]["spark"] = []
    del data["historian"]["errors"]
    with pytest.raises(DecodeError, match=r"Frame\.historian: missing field 'errors'"):
        decode(Frame, data)


def test_every_engine_stand_in_answers_every_call_of_the_contract() -> None:
    # mypy proves the signatures; this proves the list the socket serves is that contract
    assert OPS == CALLS | {"hello"}
    assert {"frame", "command", "dry_run", "audit", "alarm_journal"} <= CALLS
    for cls in (EngineAPI, RemoteAPI, RecordedAPI):
        missing = sorted(c for c in CALLS if not callable(getattr(cls, c, None)))
        assert missing == [], f"{cls.__name__} lacks {missing}"
        assert hasattr(cls, "reconnected") or cls is RemoteAPI  # RemoteAPI sets it per object
    assert ConsoleAPI.__name__ == "ConsoleAPI"


def test_every_command_is_described_once_and_handled_once() -> None:
    from floorconsole.core.audit import KINDS
    from floorconsole.engine.commands import TIMEOUT_S, Commands, target_of

    # registering touches nothing of the engine's: no engine needed to see the table
    registered = set(Commands(None, None, None, dict).handlers)  # type: ignore[arg-type]
    assert registered == set(ACTIONS) - {"audit.view"}  # audit.view is api.audit(), a read
    needs_control = {n for n, a in ACTIONS.items() if a.needs_control}
    assert needs_control == {
        "control.arm",
        "control.write",
        "config.apply",
        "snapshot.rollback",
        "model.import",
        "rule.reset",
        "model.promote",  # issue 15: a promotion is a configuration change like any other
        "fleet.accept",  # issue 17: accepting a held remote change is one too
    }
    assert {n for n, a in ACTIONS.items() if a.timeout == "long"} == {
        "config.apply",
        "snapshot.rollback",
        "model.import",
        "model.promote",  # waits for the health check, as an apply does
        "model.calibrate",  # reads hours of history and may train: seconds, not instants
        "fleet.accept",  # issue 17: the accepted change is health-checked like an apply
    }
    for a in ACTIONS.values():
        assert a.audit_kind in KINDS and a.timeout in TIMEOUT_S, a
    # the audit record's target, as the five tables said before they were one
    assert target_of(ACTIONS["alarm.ack"], {"alarm": "motor1.trip"}) == "motor1.trip"
    assert target_of(ACTIONS["alarm.ack_all"], {"alarms": ["a", "b"]}) == "2 alarms"
    assert target_of(ACTIONS["control.arm"], {"device": "drive1", "address": "co:10"}) == (
        "drive1 co:10"
    )
    assert target_of(ACTIONS["config.apply"], {"config": {}, "message": "m"}) == "config"
    assert target_of(ACTIONS["control.take"], {"session_token": "t"}) == "control"
    assert target_of(ACTIONS["users.manage"], {"op": "add", "name": "op2"}) == "op2"


def test_every_screen_that_draws_frames_says_so_by_its_class() -> None:
    # The app's tick hands frames to ShowsFrames screens only: one that defines show_frame
    # without the base class would silently never be drawn.
    import importlib
    import inspect
    import pkgutil

    import floorconsole.ui as ui
    from floorconsole.ui.live import ShowsFrames

    drawn, forgotten = [], []
    for m in pkgutil.walk_packages(ui.__path__, "floorconsole.ui."):
        for _name, cls in inspect.getmembers(importlib.import_module(m.name), inspect.isclass):
            if cls.__module__ == m.name and "show_frame" in vars(cls):
                (drawn if issubclass(cls, ShowsFrames) else forgotten).append(cls.__name__)
    assert "OverviewScreen" in drawn and "TrendScreen" in drawn
    assert forgotten == [], f"show_frame without ShowsFrames: {forgotten}"
