"""Shared fixtures: real servers on loopback live in tests/support, one module each."""

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.modbus_server",
]
