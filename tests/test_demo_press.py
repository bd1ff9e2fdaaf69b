"""The demo's OPC UA machine beside the Modbus drive: `floorconsole demo` adds
fixtures/plants/demo_press.toml and runs the press's asyncua server in a process of its own;
the engine reads both machines, and an engineer's write to the press reads back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

from floorconsole.cli import DEMO_PLANT, DEMO_PRESS
from floorconsole.console.views import Frame, SignalView
from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DemoPlant
from tests.support.demo_engine import short_dir


def wait_for(cond: Callable[[], bool], timeout: float = 40.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sig(frame: Frame, sid: str) -> SignalView:
    return next(s for s in frame.signals if s.id == sid)


@pytest.mark.slow
def test_the_demo_reads_the_press_over_opcua_beside_the_drive() -> None:
    folder = short_dir("fc-press-")
    try:
        t0 = time.monotonic()
        with DemoPlant(DEMO_PLANT, machines=[DEMO_PRESS]) as d:
            started = time.monotonic() - t0
            (press,) = d.plant.opcua_devices
            assert press.endpoint == f"opc.tcp://127.0.0.1:{d.opcua_port}/press2"
            assert "press2 (OPC UA)" in d.banner(folder)
            e = open_engine(
                data_dir=folder / "data",
                base_dir=DEMO_PLANT.parent,
                user="test",
                plant_raw=d.plant.raw,
                source="demo plant",
                demo=d.sim,
            )
            e.start_background()
            try:
                api = e.api
                for s in ("press2.pressure", "press2.die_temp", "motor1.current"):
                    wait_for(lambda s=s: sig(api.frame(), s).quality == "GOOD", what=s)
                wait_for(lambda: sig(api.frame(), "press2.force").kind == "waveform", what="wave")
                eng = api.login("eng1", "2222")["session"]
                arm = api.command(
                    "control.arm",
                    session=eng,
                    device="press2",
                    address="ns=2;s=Line2.Press.StrokeRate",
                    value=45,
                )
                r = api.command("control.write", session=eng, arm=arm["arm"])
                assert r["ok"] and r["before"] == 30.0 and r["after"] == 45.0, r
                wait_for(lambda: sig(api.frame(), "press2.stroke_rate").value == 45.0, what="45")
            finally:
                e.stop()
        # the press's server does not hold up the demo's start: it is not waited for
        print(f"demo plant started in {started:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
