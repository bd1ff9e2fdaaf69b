"""Fixture: a real mosquitto broker on a free loopback port, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from floorconsole.adapters.broker import MOSQUITTO_HINT, MosquittoBroker, find_mosquitto


@pytest.fixture
def mosquitto() -> Iterator[MosquittoBroker]:
    """A started broker: .host, .port, .stop(), .start() (same port), .restart(), .kill().

    A missing mosquitto fails the test instead of skipping it: a green run must mean the MQTT
    code was exercised against a real broker.
    """
    if find_mosquitto() is None:
        pytest.fail(f"mosquitto not found: {MOSQUITTO_HINT}", pytrace=False)
    broker = MosquittoBroker().start()
    try:
        yield broker
    finally:
        broker.close()
