"""A slow link for tests: a Unix-socket relay that forwards each way at a fixed byte rate,
like an SSH session over a poor line in front of an attached console."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

CHUNK = 1024


class ThrottledRelay:
    """Listens at `listen`, connects each client to `target`, and passes bytes through at
    `rate` bytes per second in each direction. Runs on a thread of its own."""

    def __init__(self, listen: Path, target: Path, rate: float) -> None:
        self.listen, self.target, self.rate = Path(listen), Path(target), float(rate)
        self.bytes_down = 0  # engine -> console
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throttled-relay", daemon=True)

    def __enter__(self) -> ThrottledRelay:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_unix_server(self._client, path=str(self.listen))
        self._ready.set()
        await self._stop.wait()
        server.close()

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        e_reader, e_writer = await asyncio.open_unix_connection(str(self.target))
        tasks = [
            asyncio.create_task(self._pipe(c_reader, e_writer, down=False)),
            asyncio.create_task(self._pipe(e_reader, c_writer, down=True)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        c_writer.close()
        e_writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, down: bool
    ) -> None:
        t_next = time.monotonic()
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            # Paced: this chunk leaves when the line would have carried the ones before it.
            t_next = max(t_next, time.monotonic()) + len(data) / self.rate
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
            writer.write(data)
            await writer.drain()
            if down:
                self.bytes_down += len(data)
