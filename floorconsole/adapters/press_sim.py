"""The demo's second machine: a press on line 2 behind an OPC UA server (asyncua's), run in a
process of its own by `floorconsole demo` (`python -m floorconsole.adapters.press_sim PORT`).

Under ns=2;s=Line2.Press: Pressure (bar, following each stroke), Strokes (a counter), Running
(writable: a rule or an engineer stops the press), StrokeRate (writable setpoint, strokes a
minute), DieTemp (°C, warming while it runs) and Force (the force profile of the last stroke,
an array: a waveform). Prints "ready" when it listens; stops on SIGTERM or when its parent's
stdin closes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import subprocess
import sys
import time

from asyncua import Server, ua

NS_URI = "urn:floorconsole:demo:press"
PROFILE_POINTS = 32


async def serve(port: int, ready: asyncio.Event | None = None) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/press2")
    server.set_server_name("floorconsole demo press (line 2)")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    line = await server.nodes.objects.add_object(f"ns={idx};s=Line2", f"{idx}:Line2")
    press = await line.add_object(f"ns={idx};s=Line2.Press", f"{idx}:Press")

    async def var(name: str, value: object, vtype: ua.VariantType, writable: bool = False):  # type: ignore[no-untyped-def]
        v = await press.add_variable(
            f"ns={idx};s=Line2.Press.{name}", f"{idx}:{name}", value, varianttype=vtype
        )
        if writable:
            await v.set_writable()
        return v

    V = ua.VariantType
    pressure = await var("Pressure", 0.0, V.Double)
    strokes = await var("Strokes", 0, V.UInt32)
    running = await var("Running", True, V.Boolean, writable=True)
    rate = await var("StrokeRate", 30.0, V.Double, writable=True)
    temp = await var("DieTemp", 38.0, V.Double)
    force = await var("Force", [0.0] * PROFILE_POINTS, V.Double)

    async with server:
        if ready is not None:
            ready.set()
        print("ready", flush=True)
        phase, count, die = 0.0, 0, 38.0
        dt = 0.1
        while True:
            await asyncio.sleep(dt)
            on = bool(await running.read_value())
            spm = min(120.0, max(1.0, float(await rate.read_value())))
            if on:
                phase += dt * spm / 60.0
                if phase >= 1.0:
                    phase -= 1.0
                    count += 1
                    await strokes.write_value(ua.Variant(count, V.UInt32))
                    peak = 180.0 + 4.0 * math.sin(count / 7.0)
                    profile = [
                        round(peak * math.sin(math.pi * i / (PROFILE_POINTS - 1)) ** 3, 2)
                        for i in range(PROFILE_POINTS)
                    ]
                    await force.write_value(ua.Variant(profile, V.Double))
                bar = 20.0 + 160.0 * max(0.0, math.sin(math.pi * phase)) ** 2
                die += (70.0 - die) * dt / 600.0
            else:
                bar = 0.0
                die += (38.0 - die) * dt / 900.0
            await pressure.write_value(ua.Variant(round(bar, 2), V.Double))
            await temp.write_value(ua.Variant(round(die, 2), V.Double))


async def _main(port: int) -> None:
    task = asyncio.create_task(serve(port))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The demo holds our stdin: when it ends (even killed), the pipe closes and so do we.
    stdin_closed = asyncio.create_task(reader.read())
    await asyncio.wait([task, stdin_closed], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class PressProcess:
    """The press's server in its own process; stop() ends it (and it ends itself when the
    demo's process goes, its stdin closing)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int = 0) -> None:
        self.proc = proc
        self.port = port

    def wait_ready(self, timeout: float) -> bool:
        """True once the server accepts connections (False after `timeout`, or when the
        process ended): the demo starts its engine after this, so the press's link does not
        begin its life with connection errors a new user would take for a fault."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


def start_press(port: int = 0) -> tuple[PressProcess, int]:
    """Start the press's server on `port` when it is free (the same address at every demo
    start, so its configuration is the same snapshot), else on a free one; not waited for."""
    chosen = _free(port) if port else 0
    if not chosen:
        chosen = _free(0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "floorconsole.adapters.press_sim", str(chosen)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the demo's terminal is the demo's to handle
    )
    return PressProcess(proc, chosen), chosen


def _free(port: int) -> int:
    """`port` if nothing listens there (0: any free port), else 0."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
        return int(s.getsockname()[1])


if __name__ == "__main__":
    try:
        asyncio.run(_main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
