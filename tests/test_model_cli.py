"""`floorconsole model calibrate | shadow | promote` against a running demo engine: the
candidate built from the history file, shadowed and promoted through the engine's socket as a
logged-in engineer (PIN from FLOORCONSOLE_PIN), with progress on stderr."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from floorconsole.cli import main
from floorconsole.core.plantsim import MotorSim
from floorconsole.engine.demo import DEMO_USERS
from floorconsole.engine.runtime import Engine
from tests.support.demo_engine import demo_engine_in, short_dir
from tests.support.recorded_motor import record_motor

ENG_PIN = next(u["pin"] for u in DEMO_USERS if u["name"] == "eng1")


@pytest.fixture
def engine() -> Iterator[Engine]:
    folder = short_dir("fc-mc-")
    try:
        with demo_engine_in(folder / "data") as (_plant, e):
            deadline = time.monotonic() + 30
            while len(e.snapshots.store.activations()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            yield e
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@pytest.mark.slow
def test_calibrate_shadow_and_promote_from_the_command_line(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engine
    since = time.time() - 3600.0
    until = record_motor(e.historian, MotorSim(9), since=since, seconds=330.0)
    e.historian.flush()
    d = str(e.data_dir)
    args = ["model", "calibrate", "--from", iso(since), "--to", iso(until), "--data-dir", d]
    assert main([*args, "--train-weights", "--seed", "4"]) == 0
    out, err = capsys.readouterr()
    assert "reading the history: 100 %" in err and "training the autoencoder" in err
    path = next(line.split()[1] for line in out.splitlines() if line.startswith("candidate"))
    assert path.startswith(f"{d}/candidates/motor1_anomaly/")
    assert "windows used" in out and "trained here" in out

    # the engine's commands need a user and a PIN
    monkeypatch.setenv("FLOORCONSOLE_PIN", "0000")
    user = ["--data-dir", d, "--user", "eng1"]
    assert main(["model", "shadow", "start", "--model", "motor1_anomaly", *user]) == 1
    assert "login as eng1 refused" in capsys.readouterr().err
    monkeypatch.setenv("FLOORCONSOLE_PIN", ENG_PIN)
    # without --candidate: the newest one on disk, the one just built
    assert main(["model", "shadow", "start", "--model", "motor1_anomaly", *user]) == 0
    started = capsys.readouterr().out
    assert "motor1_anomaly.shadow.score" in started
    assert f"({path.split('/')[-2][:12]})" in started
    deadline = time.monotonic() + 30
    while e.api.model_comparison("motor1_anomaly")["windows"] < 4:
        assert time.monotonic() < deadline, "the shadow never scored"
        time.sleep(0.2)
    assert main(["model", "shadow", "status", "--model", "motor1_anomaly", *user]) == 0
    status = capsys.readouterr().out
    assert "states agree in" in status and "rule       trip-motor1" in status

    before = e.snapshots.active.id  # type: ignore[union-attr]
    promote = ["model", "promote", "--model", "motor1_anomaly", "-m", "recalibrated"]
    assert main([*promote, *user]) == 0
    assert "active and healthy" in capsys.readouterr().out
    assert e.snapshots.active.id != before  # type: ignore[union-attr]
    assert e.snapshots.active.message == "recalibrated"  # type: ignore[union-attr]
    [rec] = e.api.audit(kind="model_change", text="model.promote", limit=1)[:1] or [None]
    assert rec is not None and rec["user"] == "eng1"
