"""Fixture: a real pymodbus TCP server on a free loopback port, in its own thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from floorconsole.adapters.modbus_server import ModbusDeviceServer


@pytest.fixture
def modbus_server() -> Iterator[ModbusDeviceServer]:
    """A started ModbusDeviceServer on 127.0.0.1 and a free port; stopped after the test."""
    server = ModbusDeviceServer(name="test-device")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def modbus_server_factory() -> Iterator[Callable[..., ModbusDeviceServer]]:
    """Start as many devices as a test needs: factory(**ModbusDeviceServer kwargs)."""
    servers: list[ModbusDeviceServer] = []

    def make(**kwargs: object) -> ModbusDeviceServer:
        kwargs.setdefault("name", f"test-device-{len(servers)}")
        server = ModbusDeviceServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
