"""A demo engine (simulated plant, real pymodbus and broker) running on a background thread,
in a short data directory: a Unix socket path has at most 107 bytes and pytest's tmp_path can
be longer."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from floorconsole.engine.bootstrap import open_engine
from floorconsole.engine.demo import DemoPlant
from floorconsole.engine.runtime import Engine

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "plants" / "demo.toml"


def short_dir(prefix: str = "fc-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextmanager
def demo_engine_in(data_dir: Path) -> Iterator[tuple[DemoPlant, Engine]]:
    """The simulated plant and an engine on it in data_dir, running on a background thread."""
    with DemoPlant(DEMO) as d:
        e = open_engine(
            data_dir=data_dir,
            base_dir=DEMO.parent,
            user="test",
            plant_raw=d.plant.raw,
            source="demo plant",
            demo=d.sim,
        )
        e.start_background()
        try:
            yield d, e
        finally:
            e.stop()


@contextmanager
def running_demo_engine(prefix: str = "fc-") -> Iterator[Engine]:
    """A demo engine in a short data directory of its own, removed afterwards."""
    folder = short_dir(prefix)
    try:
        with demo_engine_in(folder / "data") as (_plant, e):
            yield e
    finally:
        shutil.rmtree(folder, ignore_errors=True)
