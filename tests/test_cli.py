"""The command line as a new user meets it: one test per papercut mended in issue 12, on real
files (a real lock, a real historian, the real demo plant file)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from floorconsole.adapters.historian import Historian
from floorconsole.cli import build_parser, main
from floorconsole.cli.args import demo_data_dir
from floorconsole.core.history_format import csv_value, readable_value
from floorconsole.core.quality import Quality, Reason
from floorconsole.core.sample import Sample, waveform
from floorconsole.engine.lock import DataDirLock

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "plants" / "demo.toml"


def _good(signal: str, value: object, t: float) -> Sample:
    return Sample(signal, value, Quality.GOOD, Reason.NONE, t, t, "")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own, so the demo's default data directory is the test's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _record_demo_history(names: list[str]) -> Path:
    """A historian in the demo's default data directory; motor1.current holds 518 × 0.1
    (51.800000000000004, as a register scaled by 0.1 gives it)."""
    data = demo_data_dir()
    data.mkdir(parents=True)
    now = time.time()
    with Historian(data / "history.db") as h:
        h.append([_good(n, 1.0, now - 60) for n in names])
        h.append([_good("motor1.current", 518 * 0.1, now - 30)])
    return data


# -- a: a second demo on a data directory in use ------------------------------------------


def test_a_second_demo_refuses_before_it_starts_anything(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first = DataDirLock(data)  # the first demo's engine: this process holds the directory
    first.acquire()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "floorconsole.cli", "demo", "--headless", "--data-dir", data],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        first.release()
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # no banner, no "Failed to start server [Errno 98]"
    assert f"pid {os.getpid()}" in lines[0] and "already running" in lines[0]
    assert "simulated" not in r.stderr and "Failed to start" not in r.stderr
    assert sorted(p.name for p in data.iterdir()) == ["engine.lock"]  # nothing stored


# -- b: history finds the demo's data directory -------------------------------------------


def test_history_reads_the_demo_data_directory_without_data_dir(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _record_demo_history(["motor1.speed"])
    assert main(["history", "motor1.current", "--since", "5m"]) == 0
    out, err = capsys.readouterr()
    assert f"reading the demo's data directory {data}" in err
    assert out.splitlines()[1].split(",")[1:3] == ["motor1.current", "51.8"]


def test_history_without_data_dir_or_demo_says_what_to_give(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "motor1.current"]) == 1
    assert "give -c PLANT.toml or --data-dir DIR" in capsys.readouterr().err


def test_a_change_never_guesses_the_demo_directory(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_demo_history([])
    assert main(["snapshot", "rollback", "abc"]) == 1
    assert "give -c PLANT.toml or --data-dir DIR" in capsys.readouterr().err


# -- c: a mistyped signal name ------------------------------------------------------------


def test_a_mistyped_signal_suggests_the_closest_names_not_all_fifty(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"line{i // 10}.sensor{i % 10}.value" for i in range(50)]
    _record_demo_history(names)
    assert main(["history", "motor1.curent"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no history for 'motor1.curent'" in err and "did you mean motor1.current?" in err
    assert "line0.sensor0.value" not in err
    assert main(["history", "motor1.current", "pump9.flow"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'pump9.flow'" in err and "none like it among the 51 recorded signals" in err
    assert "line" not in err and "'motor1.current'" not in err


# -- d: check with a wrong model path ------------------------------------------------------


def test_check_reports_a_missing_model_once_not_its_rules_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = tmp_path / "plant.toml"
    text = DEMO.read_text().replace('"../models/motor_anomaly"', '"models/motor_anomal"')
    plant.write_text(text)
    assert main(["check", str(plant)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{plant}: models[0].package: {tmp_path / 'models' / 'motor_anomal.onnx'} not found"
    ]
    assert "1 problem(s)" in err
    # A rule on a signal that is nobody's is still reported.
    plant.write_text(text.replace('signal = "motor1.anomaly_score"', 'signal = "motor9.score"'))
    assert main(["check", str(plant)]) == 1
    assert "rules[0].signal: 'motor9.score' is not a signal" in capsys.readouterr().out


# -- e: unknown options are named ----------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [path]
    found: list[tuple] = []
    for name, sub in subs[0].choices.items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_every_command_is_covered() -> None:
    assert {"check", "history", "demo", "run"} <= {c[0] for c in COMMANDS}
    assert ("snapshot", "rollback") in COMMANDS and ("users", "add") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_option_is_named_for_every_command(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main([*command, "--bogus"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2
    assert err == f"floorconsole {' '.join(command)}: error: unrecognized option --bogus"


def test_unknown_option_wording_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["--bogus"], "floorconsole: error: unrecognized option --bogus"),
        (
            ["check", "a.toml", "--bogus=1"],
            "floorconsole check: error: unrecognized option --bogus",
        ),
        (["check", "a.toml", "b.toml"], "floorconsole check: error: unexpected argument b.toml"),
        (["audit", "list", "--data-d", "x", "--bogus"], "unrecognized option --bogus"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected), argv
    # a missing argument is still named when every option is known
    with pytest.raises(SystemExit):
        main(["users", "add", "--role", "admin"])
    assert "required: NAME" in capsys.readouterr().err


# -- f: values at their precision ----------------------------------------------------------


def test_history_json_prints_values_at_their_precision(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_demo_history([])
    assert main(["history", "motor1.current", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"value": 51.8,' in out and "51.800000000000004" not in out
    assert json.loads(out)[0]["value"] == 51.8


def test_readable_values() -> None:
    assert readable_value(518 * 0.1) == 51.8 and csv_value(518 * 0.1) == "51.8"
    f32 = float(np.float32(51.8))  # a float32 register: 51.79999923706055
    assert readable_value(f32) == 51.8 and csv_value(f32) == "51.8"
    assert csv_value(123456789012345.0) == "123456789012345"  # a counter stays exact
    assert readable_value(1 / 3) == 0.333333333333333 and readable_value(0.1) == 0.1
    wave32 = waveform(np.array([0.1, -2.7, float("nan")], dtype=np.float32))
    assert readable_value(wave32) == [0.1, -2.7, None]
    assert csv_value(waveform([0.1 * 3, 0.5])) == "[0.3,0.5]"


# -- the package ---------------------------------------------------------------------------


def test_the_engine_imports_nothing_from_the_cli() -> None:
    code = (
        "import sys, pkgutil, importlib, floorconsole.engine as e\n"
        "for m in pkgutil.iter_modules(e.__path__): importlib.import_module(f'floorconsole.engine.{m.name}')\n"
        "print(','.join(m for m in sys.modules if m == 'floorconsole.cli' or m.startswith('floorconsole.cli.')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"the engine imported the CLI: {r.stdout}"


def test_the_cli_imports_the_ui_only_when_a_console_opens() -> None:
    code = (
        "import sys, floorconsole.cli as c\n"
        "c.build_parser().parse_args(['history', 'x'])\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_serve')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"the CLI imported the UI at start: {r.stdout}"


def test_the_trend_csv_export_writes_values_at_their_digits() -> None:
    from floorconsole.ui.widgets import trend_chart as tc  # its views, wherever they live

    points = (tc.HistoryPoint(1.0, 518 * 0.1, "GOOD"), tc.HistoryPoint(2.0, 0.0, "GOOD"))
    history = tc.History("motor1.current", "A", 0.0, 3.0, points, ())
    rows = tc.csv_rows([tc.TrendSeries("motor1.current", "A", history)])
    assert [r[2] for r in rows[1:]] == ["51.8", "0.0"]
