"""The attach socket: consoles in other processes reach the engine's EngineAPI over a local
Unix socket (DATA_DIR/engine.sock, mode 0660).

Protocol: newline-delimited JSON. A console sends {"id": N, "op": NAME, "args": {...}} and
gets {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": TEXT,
"kind": "CommandError" | "BadRequest" | "Internal"}. Ops are EngineAPI's method names, from a
fixed list (OPS); nothing else is looked up. "frame" answers {"frame": Frame.to_dict(),
"session": info of args.session or null}, so one round trip per refresh gives a console
both what to draw and who it is.

The server runs on a thread and asyncio loop of its own, never on the engine's loop: a
console asking for frames, or one on a slow link, cannot delay ingest or control. Consoles
pull frames at their own rate; a frame is serialized once and served to every console that
asks within FRAME_CACHE_S. Blocking calls (commands, history, login) run on the server's
thread pool, so a 60 s apply for one console does not hold up another's frames. A console
that stops reading is dropped after CLIENT_WRITE_TIMEOUT_S; a console that goes away has
the sessions it logged in logged out, which releases control it held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floorconsole.engine.api import EngineAPI
    from floorconsole.engine.runtime import Engine

log = logging.getLogger(__name__)

PROTOCOL = 1
SOCKET_NAME = "engine.sock"
SOCKET_MODE = 0o660  # the engine's user and group may attach; nobody else
FRAME_CACHE_S = 0.05
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # a config.apply carries a whole plant configuration
WRITE_BUFFER_HIGH = 256 * 1024  # per console: above this a response waits for the reader
CLIENT_WRITE_TIMEOUT_S = 15.0  # a console that reads nothing for this long is dropped
MAX_CALLS_IN_FLIGHT = 8  # per console: blocking calls running at once
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL

# The ops a console may call, each an EngineAPI method of the same name (frame, command,
# login and logout are handled specially below). Never looked up from the request.
OPS = frozenset(
    {
        "hello",
        "frame",
        "history",
        "command",
        "login",
        "logout",
        "unlock",
        "session",
        "touch",
        "demo_users",
        "audit",
        "audit_verify",
        "active_config",
        "snapshots",
        "snapshot_diff",
        "activations",
        "alarm_journal",
        "model_histogram",
        "dry_run",
    }
)


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


# -- plain data -----------------------------------------------------------------------------

_FIELDS: dict[type, tuple[str, ...]] = {}


def _shallow(obj: Any) -> Any:
    """json's hook for what it cannot write itself: a dataclass becomes the dict of its
    fields (one level; json's C encoder walks the rest, tuples of floats included), a numpy
    scalar its Python value."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(obj):
            item = getattr(obj, "item", None)  # numpy scalars
            if callable(item):
                return item()
            if isinstance(obj, (set, frozenset)):
                return sorted(obj, key=str)
            return str(obj)
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(obj))
    return {n: getattr(obj, n) for n in names}


def dumps(obj: Any) -> bytes:
    """Frames, histories and command results as JSON, in the shape of dataclasses.asdict
    (which frame_from_dict reads back), several times faster: asdict deep-copies every leaf
    in Python, and a frame of 500 signals has some 40,000."""
    return json.dumps(obj, default=_shallow, separators=(",", ":"), ensure_ascii=False).encode()


class _BadRequest(Exception):
    pass


# -- the server -----------------------------------------------------------------------------


class AttachServer:
    """Serves one EngineAPI on a Unix socket from a thread of its own."""

    def __init__(
        self,
        api: EngineAPI,
        path: Path,
        *,
        frame_cache_s: float = FRAME_CACHE_S,
        hello: dict[str, Any] | None = None,
    ) -> None:
        self.api = api
        self.path = Path(path)
        self.frame_cache_s = frame_cache_s
        self._hello = {"protocol": PROTOCOL, "pid": os.getpid(), **(hello or {})}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._conns: set[_Connection] = set()
        self._frame_bytes = b""
        self._frame_mono = float("-inf")
        # figures, for tests and benchmarks
        self.frames_built = 0
        self.frames_served = 0
        self.build_s = 0.0
        self.dropped = 0

    @property
    def consoles(self) -> int:
        return len(self._conns)

    # -- life ---------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Bind and listen; returns once consoles can connect (or raises why not)."""
        if len(os.fsencode(self.path)) > UNIX_PATH_MAX:
            raise OSError(f"socket path {self.path} is longer than {UNIX_PATH_MAX} bytes")
        self._thread = threading.Thread(target=self._run, name="floorconsole-attach", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"attach server did not start within {timeout:g} s")
        if self._failure is not None:
            raise self._failure

    def stop(self, timeout: float = 3.0) -> None:
        """Close the socket and every console connection (they see the engine go at once);
        sessions logged in over them are logged out."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to the starter, or logged after start
            if not self._ready.is_set():
                self._failure = e
                self._ready.set()
            else:
                log.error("attach server stopped: %s", e)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        sock = _bind(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, sock=sock, limit=MAX_REQUEST_BYTES
        )
        log.info("consoles attach at %s (mode %o)", self.path, SOCKET_MODE)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            for c in list(self._conns):
                c.close()
            deadline = time.monotonic() + 2.0
            while self._conns and time.monotonic() < deadline:  # their sessions log out
                await asyncio.sleep(0.02)
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._conns.add(conn)
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            await conn.logout_all()

    # -- frames -------------------------------------------------------------------------

    def frame_json(self) -> bytes:
        """The current frame, serialized; one build serves every console asking within
        frame_cache_s."""
        now = time.monotonic()
        if now - self._frame_mono >= self.frame_cache_s:
            t0 = time.perf_counter()
            self._frame_bytes = dumps(self.api.frame())
            self.build_s += time.perf_counter() - t0
            self.frames_built += 1
            self._frame_mono = now
        self.frames_served += 1
        return self._frame_bytes


def _bind(path: Path) -> socket.socket:
    """A listening socket at `path` with mode 0660 from its first moment: bound in a private
    (0700) folder beside it, chmod-ed there, then renamed into place. A socket file already
    at `path` is a dead engine's (the data-directory lock says no other engine runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=".a", dir=path.parent)
    tmp = os.path.join(folder, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        os.chmod(tmp, SOCKET_MODE)
        sock.listen(64)
        sock.setblocking(False)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        raise
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.rmdir(folder)
    return sock


def _peer(writer: asyncio.StreamWriter) -> str:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        return f"pid {pid} uid {uid}"
    except (OSError, AttributeError):
        return "unknown peer"


class _Connection:
    """One attached console."""

    def __init__(
        self, server: AttachServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = _peer(writer)
        self.sessions: set[str] = set()  # logged in over this connection
        self._write_lock = asyncio.Lock()
        self._calls = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()

    async def run(self) -> None:
        log.info("console attached (%s)", self.peer)
        why = "went away"
        try:
            while not self._closed:
                line = await self.reader.readline()
                if not line:
                    break
                await self._request(line)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except (asyncio.LimitOverrunError, ValueError):
            why = f"sent a request over {MAX_REQUEST_BYTES} bytes: dropped"
        except _Dropped as e:
            why = str(e)
        finally:
            for t in list(self._tasks):
                t.cancel()
            self.close()
        (log.info if why == "went away" else log.warning)("console %s (%s)", why, self.peer)

    async def _request(self, line: bytes) -> None:
        rid: Any = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise _BadRequest("a request is a JSON object")
            rid = req.get("id")
            op = req.get("op")
            args = req.get("args") or {}
            if op not in OPS or not isinstance(args, dict):
                raise _BadRequest(f"unknown op {op!r}; known: {', '.join(sorted(OPS))}")
        except (ValueError, _BadRequest) as e:
            await self._send(_error(rid, "BadRequest", str(e)))
            return
        if op == "frame":  # served here, from the cache: no thread hop per refresh
            await self._send(self._frame_response(rid, args))
            return
        if op == "hello":
            await self._send(_ok(rid, self.server._hello))
            return
        task = asyncio.create_task(self._call(rid, op, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _frame_response(self, rid: Any, args: dict[str, Any]) -> bytes:
        try:
            frame = self.server.frame_json()
            token = args.get("session")
            info = b"null" if token is None else dumps(self.server.api.session(str(token)))
        except Exception as e:  # noqa: BLE001 - the console shows it, the engine keeps going
            log.exception("frame for a console failed")
            return _error(rid, "Internal", f"frame: {e}")
        return b'{"id":%s,"ok":true,"result":{"frame":%s,"session":%s}}\n' % (
            json.dumps(rid).encode(),
            frame,
            info,
        )

    async def _call(self, rid: Any, op: str, args: dict[str, Any]) -> None:
        from floorconsole.engine.api import CommandError

        async with self._calls:
            fn = self._method(op, args)
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, fn)
                out = _ok(rid, result)
            except CommandError as e:
                out = _error(rid, "CommandError", str(e))
            except TypeError as e:
                out = _error(rid, "BadRequest", f"bad arguments for {op}: {e}")
            except Exception as e:  # noqa: BLE001 - one console's failed call, not the server's
                log.warning("attach: %s failed: %s", op, e)
                out = _error(rid, "Internal", f"{op}: {e}")
        try:
            await self._send(out)
        except (_Dropped, ConnectionError):
            self.close()

    def _method(self, op: str, args: dict[str, Any]) -> Callable[[], Any]:
        api = self.server.api
        if op == "command":
            name = str(args.get("name", ""))
            cargs = args.get("args") or {}
            if not isinstance(cargs, dict):
                cargs = {}
            if name == "engine.stop":
                # An attached console leaves; the engine's own console (or its service) stops it.
                return lambda: {
                    "ok": False,
                    "refused": "role",
                    "message": "engine.stop: an attached console does not stop the engine; "
                    "it leaves (q), and the engine runs on for the others",
                }
            return lambda: api.command(name, session=args.get("session"), **cargs)
        if op == "login":

            def login() -> Any:
                r = api.login(**args)
                if r.get("ok") and r.get("session"):
                    if self._closed:  # the console went while the PIN was checked
                        api.logout(r["session"])
                    else:
                        self.sessions.add(str(r["session"]))
                return r

            return login
        if op == "logout":

            def logout() -> None:
                self.sessions.discard(str(args.get("session")))
                api.logout(args.get("session"))

            return logout
        method = getattr(api, op)  # op is one of OPS, checked by the caller
        return lambda: method(**args)

    async def _send(self, data: bytes) -> None:
        if self._closed:
            return
        async with self._write_lock:
            self.writer.write(data)
            try:
                await asyncio.wait_for(self.writer.drain(), CLIENT_WRITE_TIMEOUT_S)
            except TimeoutError:
                self.server.dropped += 1
                raise _Dropped(f"read nothing for {CLIENT_WRITE_TIMEOUT_S:g} s: dropped") from None

    async def logout_all(self) -> None:
        """What a console that went away leaves behind: nothing. Its sessions end (and with
        them control it held)."""
        tokens, self.sessions = list(self.sessions), set()
        if not tokens:
            return
        loop = asyncio.get_running_loop()
        for token in tokens:
            try:
                await loop.run_in_executor(None, self.server.api.logout, token)
            except Exception as e:  # noqa: BLE001 - logged; the other sessions still end
                log.warning("logout of a departed console's session failed: %s", e)
        log.info("console %s: %d session(s) logged out", self.peer, len(tokens))


class _Dropped(Exception):
    pass


def _ok(rid: Any, result: Any) -> bytes:
    return dumps({"id": rid, "ok": True, "result": result}) + b"\n"


def _error(rid: Any, kind: str, text: str) -> bytes:
    return dumps({"id": rid, "ok": False, "error": text, "kind": kind}) + b"\n"


def start_attach_server(engine: Engine) -> AttachServer | None:
    """The engine's socket at DATA_DIR/engine.sock, or None (logged) when it cannot listen:
    the engine runs on without attached consoles."""
    path = socket_path(engine.data_dir)
    server = AttachServer(
        engine.api, path, hello={"edge_id": engine.plant.edge.id, "data_dir": str(engine.data_dir)}
    )
    try:
        server.start()
    except (OSError, RuntimeError) as e:
        log.warning("consoles cannot attach: %s", e)
        return None
    return server
