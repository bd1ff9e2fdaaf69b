"""The demo takes the same ports at every start when it can, so restarting it runs the same
snapshot (and keeps the changes made in the console); a second demo falls back to free ports."""

from __future__ import annotations

import copy
import socket
from pathlib import Path

import pytest

from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DEMO_MODBUS_PORT, DemoPlant

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "plants" / "demo.toml"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_second_demo_takes_other_ports() -> None:
    # A demo someone runs on this machine already holds the usual port: then neither test demo
    # gets it, and they must still not collide.
    usual_free = _port_free(DEMO_MODBUS_PORT)
    with DemoPlant(DEMO) as a, DemoPlant(DEMO) as b:
        assert a.sim.modbus_port != b.sim.modbus_port
        assert a.broker.port != b.broker.port
        assert (DEMO_MODBUS_PORT in (a.sim.modbus_port, b.sim.modbus_port)) == usual_free


def test_restarting_the_demo_runs_the_same_snapshot_and_keeps_console_changes(
    tmp_path: Path,
) -> None:
    if not _port_free(DEMO_MODBUS_PORT):
        pytest.skip(f"port {DEMO_MODBUS_PORT} is held by a demo running on this machine")
    data = tmp_path / "data"

    def start(d: DemoPlant) -> tuple[str, str]:
        e = open_engine(
            data_dir=data,
            base_dir=DEMO.parent,
            user="t",
            plant_raw=d.plant.raw,
            source="demo plant",
            demo=d.sim,
        )
        snap, note = e.snapshots.active.id, e.snapshots.start_note
        e.close()  # not started: only the composition root ran
        return snap, note

    with DemoPlant(DEMO) as d:
        first, note = start(d)
        assert note == ""
    with DemoPlant(DEMO) as d:
        again, note = start(d)
        assert again == first and note == ""  # no new snapshot per start
        # a change made in the console since (an applied snapshot), then a restart
        from floorconsole.adapters.snapshot_store import SnapshotStore

        with SnapshotStore.in_data_dir(data) as store:
            raw = copy.deepcopy(d.plant.raw)
            raw["rules"][0]["threshold"] = 0.7
            from floorconsole.core.snapshot import read_model_files

            changed = store.put(
                raw,
                read_model_files(raw, DEMO.parent),
                author="eng1",
                message="lower trip",
                parent=first,
            )
            store.record_activation(changed.id, "applied", by="eng1")
    with DemoPlant(DEMO) as d:
        kept, note = start(d)
        assert kept == changed.id, "the console's change was undone by a restart"
        assert "running " + changed.short in note and "demo plant" in note
