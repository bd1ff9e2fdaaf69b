"""The layers of DESIGN.md hold: the engine runs with no screen, core imports no I/O library."""

from __future__ import annotations

import subprocess
import sys


def test_core_and_engine_import_no_textual() -> None:
    code = (
        "import sys, floorconsole.core.config, floorconsole.core.sample, "
        "floorconsole.engine.runtime, floorconsole.engine.api, floorconsole.engine.hub, "
        "floorconsole.engine.demo\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "print(','.join(bad))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"textual imported by core/engine: {r.stdout}"


def test_core_imports_no_io_library() -> None:
    code = (
        "import sys, pkgutil, importlib, floorconsole.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'floorconsole.core.{m.name}')\n"
        "io = ('pymodbus', 'paho', 'onnxruntime', 'sqlite_utils', 'sqlite3', 'textual')\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in io))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"core imported I/O libraries: {r.stdout}"
