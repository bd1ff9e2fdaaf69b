"""A Modbus TCP device on loopback, in its own thread: for tests and for the plant simulator.

    server = ModbusDeviceServer()             # port 0: a free port, reported by start()
    port = server.start()
    server.set_value(point, 12.5)             # encoded as the point says (type, word order, scale)
    server.illegal.add(("hr", 100))           # that address answers exception 2
    server.exceptions[("hr", 7)] = 6          # or any other exception code (6: busy)
    server.delay_s = 0.3                      # a slow device
    server.silent = True                      # connected, but no answers
    server.stop(); server.start()             # dropout and return, same port, same values

The four tables (co, di, hr, ir) are separate and span the whole address space unless `size`
says otherwise. Values live in this object, not in the pymodbus server, so they survive a
stop/start and can be read and written from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from floorconsole.core.points import TABLES, ModbusPoint
from floorconsole.core.registers import BIT_TABLES, decode_point, encode

log = logging.getLogger(__name__)

# Function code -> table. Reads and writes of one table share its storage.
_FC_TABLE = {
    1: "co",
    5: "co",
    15: "co",
    2: "di",
    3: "hr",
    6: "hr",
    16: "hr",
    22: "hr",
    23: "hr",
    4: "ir",
}
_WRITE_FCS = frozenset({5, 15, 6, 16, 22, 23})

# (table, address, values) after a client wrote them; called on the server's thread.
WriteHook = Callable[[str, int, list[int] | list[bool]], None]


class _Store:
    """The four tables, with the device's faults. Duck-types what pymodbus asks of a context
    (async_getValues / async_setValues / device_ids): every request of every unit id lands here.
    """

    def __init__(self, owner: ModbusDeviceServer) -> None:
        self.owner = owner

    def device_ids(self) -> list[int]:
        return [0]

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        table = _FC_TABLE[func_code]
        await self.owner._misbehave()
        code = self.owner._check(table, address, count)
        if code is not None:
            return code
        if func_code not in _WRITE_FCS:
            self.owner._count_read(table)
        return self.owner.get(table, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        table = _FC_TABLE[func_code]
        await self.owner._misbehave()
        code = self.owner._check(table, address, len(values))
        if code is not None:
            return code
        stored = [bool(v) for v in values] if table in BIT_TABLES else [int(v) for v in values]
        self.owner._write_from_client(table, address, stored)
        return None


class _RequestHandler(ServerRequestHandler):
    """pymodbus's handler reads `self.last_pdu` again after awaiting the datastore; by then a
    later request on the same connection may have replaced it, and a delayed answer would go
    out with the wrong transaction id (wrong data for the wrong request). This one captures
    the request when it arrives and answers exactly that request."""

    def handle_later(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if pdu is None:
            return
        task = self.loop.create_task(self._answer(pdu, addr))
        self.server._tasks.add(task)
        task.add_done_callback(self.server._tasks.discard)

    async def _answer(self, pdu: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except asyncio.CancelledError:
            return  # silent device, or server stopping: no answer at all
        except Exception as exc:  # a device answers a failing datastore with exception 4
            log.error("modbus server: request %s failed: %r", pdu, exc)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        if self.transport:
            self.server_send(response, addr)


class _TcpServer(ModbusTcpServer):
    def __init__(self, store: _Store, host: str, port: int) -> None:
        # pymodbus wants a valid context to construct; ours replaces it right after.
        placeholder = SimDevice(0, simdata=[SimData(0, datatype=DataType.REGISTERS)])
        super().__init__(placeholder, address=(host, port))
        self.context = store  # type: ignore[assignment]
        self._tasks: set[asyncio.Task[None]] = set()

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusDeviceServer:
    """A simulated Modbus TCP device on 127.0.0.1, served from its own thread and event loop.

    Faults can be switched at any time from any thread:
    - `illegal`: a set of (table, address); a request touching one gets exception 2.
    - `exceptions`: (table, address) -> exception code (one pymodbus's ExcCodes knows) for
      other refusals: 4 failure, 6 busy, 11 gateway target not answering...; after `illegal`.
    - `delay_s`: every answer waits this long (an asyncio sleep in this server's own loop, so
      other servers and their clients are not held up).
    - `silent`: the connection stays open but requests get no answer, ever (turning it off
      does not answer the requests that arrived while silent).
    - stop() / start(): the device drops off the network and comes back on the same port.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        size: int = 65536,
        illegal: Iterable[tuple[str, int]] = (),
        delay_s: float = 0.0,
        on_write: WriteHook | None = None,
        name: str = "modbus-device",
    ) -> None:
        if not 1 <= size <= 65536:
            raise ValueError(f"size must be 1..65536, got {size}")
        self.host = host
        self.name = name
        self.size = size
        self.illegal: set[tuple[str, int]] = set(illegal)
        self.exceptions: dict[tuple[str, int], int] = {}
        self.delay_s = delay_s
        self.on_write = on_write
        self.requests: Counter[str] = Counter()  # read requests answered, per table
        self.writes: Counter[str] = Counter()  # write requests applied, per table
        self._port = port
        self._silent = False
        self._lock = threading.Lock()
        self._tables: dict[str, list[Any]] = {
            "hr": [0] * size,
            "ir": [0] * size,
            "co": [False] * size,
            "di": [False] * size,
        }
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _TcpServer | None = None
        self._stop_event: asyncio.Event | None = None
        self._hung: set[asyncio.Future[None]] = set()

    # -- lifetime --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after the first start, the one a port of 0 turned into)."""
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 5.0) -> int:
        """Listen (on the same port as before, after a stop); returns the port."""
        if self.running:
            return self._port
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(ready, failure),
            name=f"{self.name}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"{self.name}: server did not start within {timeout} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(
                f"{self.name}: cannot listen on {self.host}:{self._port}: {failure[0]}"
            ) from failure[0]
        return self._port

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every client connection; values are kept."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(stop_event.set)
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> ModbusDeviceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._serve(ready, failure))
        except BaseException as e:  # noqa: BLE001 - reported to start(), which raises it
            if not ready.is_set():
                failure.append(e)
                ready.set()
            else:
                log.exception("%s: server thread failed", self.name)

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = _TcpServer(_Store(self), self.host, self._port)
        if not await server.listen():
            failure.append(OSError(f"address {self.host}:{self._port} is not available"))
            ready.set()
            return
        self._server = server
        self._port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            self._release_hung()
            await server.shutdown()
            for task in list(server._tasks):
                task.cancel()
            if server._tasks:
                await asyncio.gather(*server._tasks, return_exceptions=True)
            self._server = None

    # -- faults ----------------------------------------------------------------------------

    @property
    def silent(self) -> bool:
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._silent = bool(value)
        loop = self._loop
        if not value and loop is not None and self.running:
            loop.call_soon_threadsafe(self._release_hung)

    def _release_hung(self) -> None:
        for fut in list(self._hung):
            fut.cancel()
        self._hung.clear()

    async def _misbehave(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self._silent:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hung.add(fut)
            await fut  # cancelled when silence ends or the server stops: never answered

    def _check(self, table: str, address: int, count: int) -> ExcCodes | None:
        if address < 0 or count < 1 or address + count > self.size:
            return ExcCodes.ILLEGAL_ADDRESS
        illegal = self.illegal
        if illegal and any((table, a) in illegal for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        exceptions = self.exceptions
        if exceptions:
            for a in range(address, address + count):
                code = exceptions.get((table, a))
                if code is not None:
                    return ExcCodes(code)
        return None

    def _count_read(self, table: str) -> None:
        self.requests[table] += 1

    def _write_from_client(self, table: str, address: int, values: list[Any]) -> None:
        with self._lock:
            self._tables[table][address : address + len(values)] = values
        self.writes[table] += 1
        if self.on_write is not None:
            self.on_write(table, address, list(values))

    # -- values ----------------------------------------------------------------------------

    def set(
        self, table: str, address: int, values: int | bool | Sequence[int] | Sequence[bool]
    ) -> None:
        """Raw values from `address` on: 16-bit words for hr/ir, bools for co/di."""
        seq = list(values) if isinstance(values, (list, tuple)) else [values]
        self._check_span(table, address, len(seq))
        if table in BIT_TABLES:
            stored: list[Any] = [bool(v) for v in seq]
        else:
            stored = []
            for v in seq:
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                    raise ValueError(
                        f"{table}:{address}: {v!r} is not a 16-bit register value (0..65535)"
                    )
                stored.append(v)
        with self._lock:
            self._tables[table][address : address + len(stored)] = stored

    def get(self, table: str, address: int, count: int = 1) -> list[Any]:
        """Raw values: words for hr/ir, bools for co/di; includes what clients wrote."""
        self._check_span(table, address, count)
        with self._lock:
            return self._tables[table][address : address + count]

    def set_value(self, point: ModbusPoint, value: float | bool) -> None:
        """Store an engineering value as the point encodes it (type, word order, scale)."""
        self.set(point.table, point.address, encode(value, point))

    def get_value(self, point: ModbusPoint) -> float | bool:
        return decode_point(point, self.get(point.table, point.address, point.width))

    def _check_span(self, table: str, address: int, count: int) -> None:
        if table not in TABLES:
            raise ValueError(f"table {table!r} is not one of {', '.join(TABLES)}")
        if address < 0 or count < 1 or address + count > self.size:
            raise ValueError(f"{table}:{address} (+{count}) is outside 0..{self.size - 1}")
