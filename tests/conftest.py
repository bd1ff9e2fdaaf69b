"""Shared fixtures: real servers on loopback live in tests/support, one module each.

The whole run gets a HOME of its own: the demo keeps its data under ~/.local/state, and the
commands that only read fall back to it when it exists, so a test that starts the demo must
not change what a later test (or the user's own demo) sees."""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="floorconsole-tests-home-")
os.environ["HOME"] = _home
atexit.register(shutil.rmtree, _home, ignore_errors=True)

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.modbus_server",
]
