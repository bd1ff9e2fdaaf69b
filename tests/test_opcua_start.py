"""A server not there yet when the engine starts (one starting beside it): its values stay
"no value yet" and the link "connecting" for the device's timeout, then BAD; one that comes
up within it is read without a BAD value or a device-down in between."""

from __future__ import annotations

import asyncio
import time

from floorconsole.adapters.opcua import OpcUaEndpoint, OpcUaPoint, OpcUaSource
from floorconsole.core.links import LinkState
from floorconsole.core.quality import Quality
from tests.test_opcua_source import Got, ServerProc, free_port


def source(port: int, got: Got, timeout_s: float) -> OpcUaSource:
    ep = OpcUaEndpoint("press2", f"opc.tcp://127.0.0.1:{port}/", timeout_s=timeout_s)
    return OpcUaSource(ep, [OpcUaPoint("press2.d", "ns=2;s=Plant.Double")], got)


async def test_a_server_late_at_start_then_one_that_never_comes() -> None:
    port = free_port()
    got = Got()
    late = source(port, got, timeout_s=30.0)  # generous: the server's start on a busy machine
    task = asyncio.create_task(late.run())
    server = None
    try:
        await asyncio.sleep(1.0)
        assert late.link.state is LinkState.CONNECTING and late.link.errors >= 1
        assert got.samples == []  # nothing BAD while it is starting
        server = await asyncio.to_thread(ServerProc(port).start)
        await got.until(
            lambda: (s := got.latest("press2.d")) is not None and s.quality is Quality.GOOD,
            30,
            "the late server's value",
        )
        assert all(s.quality is Quality.GOOD for s in got.samples)
        assert late.link.state is LinkState.UP
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if server is not None:
            server.kill()

    never = Got()
    gone = source(free_port(), never, timeout_s=1.0)
    t0 = time.monotonic()
    task = asyncio.create_task(gone.run())
    try:
        await never.until(lambda: never.samples != [], 10, "BAD after the timeout")
        assert time.monotonic() - t0 >= 1.0
        s = never.samples[0]
        assert s.quality is Quality.BAD and s.detail == "connection refused"
        assert gone.link.state is LinkState.DOWN
        await asyncio.sleep(2.5)  # retries: the same reason is not sent again
        assert len(never.samples) == 1 and gone.link.errors >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
