"""The attach socket: consoles in other processes reach the engine's EngineAPI over a local
Unix socket (DATA_DIR/engine.sock, mode 0660).

Protocol: newline-delimited JSON. A console sends {"id": N, "op": NAME, "args": {...}} and
gets {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": TEXT,
"kind": "CommandError" | "BadRequest" | "Internal"}. Ops are EngineAPI's method names, from a
fixed table (ARGS) that also says what each argument must be: any other shape is answered
"BadRequest" naming what was expected, before anything runs. "frame" answers
{"frame": the Frame as plain data, "session": info of args.session or null}, so one round
trip per refresh gives a console both what to draw and who it is; with "delta": true the
frame comes without its signals and "signals" holds what changed of them
(engine.frame_delta). A connection the engine will not serve, or ends, gets one last line
{"id": null, "ok": false, "kind": "Refused" | "Disconnected", "error": WHY} when it still
reads.

The server runs on a thread and asyncio loop of its own, never on the engine's loop: a
console asking for frames, or one on a slow link, cannot delay ingest or control. Consoles
pull frames at their own rate; a frame is built once and served to every console that asks
within FRAME_CACHE_S. A console that asks with "delta": true (every RemoteAPI does) gets
only what changed since its own last pull: the rows are encoded once per build for all
consoles, and per console only picked. Blocking calls (commands, history, login) run on the
server's own thread pool, so a 60 s apply for one console does not hold up another's frames.

Every console is bounded, so one that misbehaves costs the others and the engine nothing:
- what it sends: a request line of at most MAX_REQUEST_BYTES, read in pieces of READ_LIMIT
  (never more buffered); at most MAX_CALLS_IN_FLIGHT blocking calls running and
  MAX_CALLS_PENDING answers owed — past that it is disconnected;
- what waits for it: reading its next request waits while more than WRITE_BUFFER_HIGH of
  answers wait for it; one that reads nothing for CLIENT_WRITE_TIMEOUT_S, or has more than
  MAX_BUFFERED_BYTES waiting, is disconnected (the buffer dropped at once);
- the time it takes: the work done for it (thread CPU time) is charged to buckets of its own
  (WORK_RATE for what is answered at once, CALL_WORK_RATE for blocking calls) and to one of
  the server's (SERVER_WORK_RATE, so that many consoles together cannot take the engine's
  share of the interpreter); a console that has spent its own waits before its next request
  is read, and while the server's is spent only quiet consoles (those with their own bucket
  full: a console pulling frames at its refresh rate) are served at once. A frame build is
  shared by every console and at most one per FRAME_CACHE_S: nobody's in particular;
- at most MAX_CONSOLES at once; one more is refused with the reason.
A console that goes away or is disconnected has the sessions it logged in logged out, which
releases control it held.

Who is at the console: the OS user of the connecting process, from the socket (SO_PEERCRED),
is logged, audited with every login over the connection, and checked against the plant's
optional [edge] attach_allow (users and @groups).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import json
import logging
import math
import os
import reprlib
import select
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floorconsole.console import CALLS, CommandError
from floorconsole.engine.frame_delta import DeltaState, Tick, TickBuilder

if TYPE_CHECKING:
    from floorconsole.engine.api import EngineAPI
    from floorconsole.engine.runtime import Engine

log = logging.getLogger(__name__)

PROTOCOL = 1
SOCKET_NAME = "engine.sock"
SOCKET_MODE = 0o660  # the engine's user and group may attach; nobody else
# One frame build serves every console asking within this: with consoles pulling at 4 Hz
# at their own moments, 0.05 s built one for every 1.6 pulls (12 a second for five), 0.1 s
# one for every 2-3; a console's ages are then at most this much behind its refresh.
FRAME_CACHE_S = 0.1
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # a config.apply carries a whole plant configuration
READ_LIMIT = 64 * 1024  # requests are read in pieces of this; a console's read buffer
WRITE_BUFFER_HIGH = 256 * 1024  # per console: above this its next request waits
MAX_BUFFERED_BYTES = 8 * 1024 * 1024  # per console: answers waiting past this, disconnected
CLIENT_WRITE_TIMEOUT_S = 15.0  # a console that reads nothing for this long is disconnected
MAX_CALLS_IN_FLIGHT = 2  # per console: blocking calls running at once
MAX_CALLS_PENDING = 32  # per console: answers owed (running and waiting); past it, disconnected
MAX_CONSOLES = 32  # at once; one more is refused ...
EVICT_STALLED_S = 1.0  # ... unless a console has read nothing this long: it makes room
CALL_WORKERS = 16  # threads for blocking calls, shared by all consoles
WORK_RATE = 0.02  # per console, answered at once: seconds of CPU a second, long term ...
WORK_BURST = 0.2  # ... and at once
CALL_WORK_RATE = 0.1  # per console, blocking calls: long term ...
CALL_WORK_BURST = 5.0  # ... and at once (a dry run over a day of history)
SERVER_WORK_RATE = 0.15  # all consoles together, long term ...
SERVER_WORK_BURST = 0.5  # ... and at once
QUIET_S = 0.01  # a console whose own bucket lacks less than this is quiet
BUDGET_WAIT_S = 0.25  # a console waiting for its budget looks again this often
MAX_TEXT = 4096  # characters in a string argument (a user, a signal id, a session token)
MAX_COUNT = 100_000  # a limit or max_points
MAX_EPOCH_S = 1e11  # a time argument is seconds since 1970, before the year 5138
TRIM_AFTER_S = 1.0  # after consoles leave, give freed memory back to the OS this much later
TRIM_EVERY_S = 2.0  # and no more often than this
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL


# -- what each op takes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of an op: its kind ("text", "time", "count", "object", "hours"), whether
    it may be null, whether it must be given, and for a count its largest value."""

    kind: str
    required: bool = False
    nullable: bool = False
    hi: int = MAX_COUNT


_SESSION = Arg("text", nullable=True)
_OPT_TIME = Arg("time", nullable=True)
_OPT_TEXT = Arg("text", nullable=True)

# The ops a console may call, each an EngineAPI method of the same name (frame, command,
# login and logout are handled specially below), with the arguments each takes. Never
# looked up from the request beyond this table.
ARGS: dict[str, dict[str, Arg]] = {
    "hello": {},
    # delta: answer with what changed since this connection's last delta frame (frame_delta)
    "frame": {"session": _SESSION, "delta": Arg("flag")},
    "history": {
        "signal": Arg("text", required=True),
        "since": Arg("time", required=True),
        "until": Arg("time", required=True),
        "max_points": Arg("count"),
    },
    "command": {"name": Arg("text", required=True), "session": _SESSION, "args": Arg("object")},
    "login": {"user": Arg("text", required=True), "pin": Arg("text", required=True)},
    "logout": {"session": _SESSION},
    "unlock": {"session": _SESSION, "pin": Arg("text", required=True)},
    "session": {"session": _SESSION},
    "touch": {"session": _SESSION},
    "demo_users": {},
    "audit": {
        "since": _OPT_TIME,
        "until": _OPT_TIME,
        "user": _OPT_TEXT,
        "kind": _OPT_TEXT,
        "text": _OPT_TEXT,
        "limit": Arg("count"),
    },
    "audit_verify": {},
    "active_config": {},
    "snapshots": {},
    "snapshot_diff": {"a": Arg("text", required=True), "b": Arg("text", required=True)},
    "activations": {"limit": Arg("count")},
    "alarm_journal": {"limit": Arg("count")},
    "alarm_kpis": {"since": Arg("time", required=True), "until": Arg("time", required=True)},
    "model_histogram": {
        "model_id": Arg("text", required=True),
        "feature": Arg("text", required=True),
    },
    "model_comparison": {"model_id": Arg("text", required=True), "points": Arg("count")},
    "dry_run": {"rule": Arg("object", required=True), "hours": Arg("hours")},
    "opcua_browse": {
        "device": Arg("text", required=True),
        "node": Arg("text"),
        "depth": Arg("count"),
    },
}
OPS = frozenset(ARGS)
if OPS != CALLS | {"hello"}:  # the socket serves the console contract: no more, no less
    raise RuntimeError(f"attach ARGS and the console contract differ: {sorted(OPS ^ CALLS)}")
# Answered on the server's loop, at once: no thread hop, no lock held for long.
INLINE_OPS = frozenset({"hello", "frame", "session", "touch", "demo_users"})
MAX_DRY_RUN_HOURS = 24.0 * 400  # the historian keeps at most about a year
MAX_DRY_RUN_WINDOWS = 8


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
    (which console.decode reads back), several times faster: asdict deep-copies every leaf
    in Python, and a frame of 500 signals has some 40,000."""
    return json.dumps(obj, default=_shallow, separators=(",", ":"), ensure_ascii=False).encode()


class _BadRequest(Exception):
    pass


def _kind(v: Any) -> str:
    """A JSON value as a console's author would name it, with a short look at it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"the number {v}" if abs(v) < 10**30 else "a number too large"
    if isinstance(v, float):
        return f"the number {v!r}" if math.isfinite(v) else f"{v!r}"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    name = names.get(type(v), type(v).__name__)
    return f"{name} ({_SHORT.repr(v)})"


_SHORT = reprlib.Repr()  # bounded in length and depth, whatever a console sent
_SHORT.maxstring = _SHORT.maxother = 40


def check_request(req: Any) -> tuple[str, dict[str, Any]]:
    """(op, args) of a decoded request, every argument checked against ARGS; raises
    _BadRequest naming what was expected."""
    if not isinstance(req, dict):
        raise _BadRequest(f'a request is a JSON object {{"id", "op", "args"}}, got {_kind(req)}')
    op = req.get("op")
    if not isinstance(op, str):
        raise _BadRequest(
            f"op must be a string naming one of {', '.join(sorted(ARGS))}; got {_kind(op)}"
        )
    if op not in ARGS:
        raise _BadRequest(f"unknown op {_SHORT.repr(op)}; known: {', '.join(sorted(ARGS))}")
    raw = req.get("args")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _BadRequest(f"{op}: args must be an object of named arguments, got {_kind(raw)}")
    spec = ARGS[op]
    unknown = [k for k in raw if k not in spec]
    if unknown:
        takes = ", ".join(spec) or "no arguments"
        raise _BadRequest(f"{op}: unknown argument {unknown[0]!r}; it takes {takes}")
    args: dict[str, Any] = {}
    for name, arg in spec.items():
        if name not in raw:
            if arg.required:
                raise _BadRequest(f"{op}: argument {name!r} is missing")
            continue
        args[name] = _check_arg(op, name, arg, raw[name])
    if op == "history" and args["since"] > args["until"]:
        raise _BadRequest(
            f"history: since ({args['since']:g}) must not be after until ({args['until']:g})"
        )
    return op, args


def _check_arg(op: str, name: str, arg: Arg, v: Any) -> Any:
    where = f"{op}: {name}"
    if v is None:
        if arg.nullable:
            return None
        raise _BadRequest(f"{where} must not be null")
    if arg.kind == "text":
        if not isinstance(v, str):
            raise _BadRequest(f"{where} must be a string, got {_kind(v)}")
        if len(v) > MAX_TEXT:
            raise _BadRequest(f"{where} is {len(v)} characters long; at most {MAX_TEXT}")
        return v
    if arg.kind == "time":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _BadRequest(f"{where} must be a time in seconds since 1970, got {_kind(v)}")
        if not 0.0 <= v <= MAX_EPOCH_S:  # NaN fails this too
            raise _BadRequest(f"{where} is out of range: {v!r}; expected 0 to {MAX_EPOCH_S:g} s")
        return float(v)
    if arg.kind == "count":
        if isinstance(v, bool) or not isinstance(v, int):
            raise _BadRequest(f"{where} must be a whole number from 1 to {arg.hi}, got {_kind(v)}")
        if not 1 <= v <= arg.hi:
            raise _BadRequest(f"{where} is out of range: {v}; expected 1 to {arg.hi}")
        return v
    if arg.kind == "flag":
        if not isinstance(v, bool):
            raise _BadRequest(f"{where} must be true or false, got {_kind(v)}")
        return v
    if arg.kind == "object":
        if not isinstance(v, dict):
            raise _BadRequest(f"{where} must be an object, got {_kind(v)}")
        return v
    if arg.kind == "hours":
        if not isinstance(v, list) or not 1 <= len(v) <= MAX_DRY_RUN_WINDOWS:
            raise _BadRequest(
                f"{where} must be an array of 1 to {MAX_DRY_RUN_WINDOWS} numbers of hours, "
                f"got {_kind(v)}"
            )
        for h in v:
            if (
                isinstance(h, bool)
                or not isinstance(h, (int, float))
                or not 0.0 < h <= MAX_DRY_RUN_HOURS
            ):
                raise _BadRequest(
                    f"{where}: each window must be a number of hours above 0 and at most "
                    f"{MAX_DRY_RUN_HOURS:g}, got {_kind(h)}"
                )
        return tuple(float(h) for h in v)
    raise AssertionError(f"no check for argument kind {arg.kind!r}")  # a table mistake


# -- what consoles cost -----------------------------------------------------------------------


class Budget:
    """A token bucket of CPU seconds: refilled at `rate` a second up to `burst`."""

    __slots__ = ("rate", "burst", "_level", "_mono")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._level, self._mono = burst, time.monotonic()

    def level(self) -> float:
        now = time.monotonic()
        self._level = min(self.burst, self._level + (now - self._mono) * self.rate)
        self._mono = now
        return self._level

    def charge(self, seconds: float) -> None:
        self._level = self.level() - seconds

    def wait_s(self) -> float:
        """How long until the bucket is no longer in debt."""
        level = self.level()
        return 0.0 if level >= 0 else -level / self.rate


# -- who is at the console -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a console connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int
    user: str  # the OS user's name, or "uid N" when it has none
    groups: frozenset[str]  # the user's groups by name (primary and supplementary)

    def __str__(self) -> str:
        return f"OS user {self.user}, pid {self.pid}"


UNKNOWN_PEER = Peer(0, -1, -1, "unknown", frozenset())


def peer_of(sock: socket.socket | None) -> Peer:
    """SO_PEERCRED of a connected Unix socket, with the user's and groups' names."""
    import grp
    import pwd

    try:
        assert sock is not None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
    except (OSError, AssertionError, AttributeError):
        return UNKNOWN_PEER
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    gids = {gid}
    if not user.startswith("uid "):
        try:
            gids.update(os.getgrouplist(user, gid))
        except OSError:
            pass
    groups = set()
    for g in gids:
        try:
            groups.add(grp.getgrgid(g).gr_name)
        except KeyError:
            groups.add(f"gid {g}")
    return Peer(pid, uid, gid, user, frozenset(groups))


def refused_by_allow_list(peer: Peer, allow: tuple[str, ...]) -> str:
    """Why [edge] attach_allow keeps this console out, or "" when it lets it in."""
    if not allow:
        return ""
    if peer.user in allow or any(f"@{g}" in allow for g in peer.groups):
        return ""
    return (
        f"{peer} may not attach: [edge] attach_allow lets in only {', '.join(allow)} "
        f"(this user's groups: {', '.join(sorted(peer.groups)) or 'none'})"
    )


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
        allow: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        self.api = api
        self.path = Path(path)
        self.frame_cache_s = frame_cache_s
        self._hello = {"protocol": PROTOCOL, "pid": os.getpid(), **(hello or {})}
        self._allow = allow  # read at each connection: an applied plant file takes effect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._conns: set[_Connection] = set()
        self._calls: ThreadPoolExecutor | None = None
        self._ticks = TickBuilder()
        self._tick: Tick | None = None
        self._frame_mono = float("-inf")
        self._trim: asyncio.TimerHandle | None = None
        self.work = Budget(SERVER_WORK_RATE, SERVER_WORK_BURST)  # all consoles together
        self._trimmed_mono = float("-inf")
        self.trim_s = 0.0  # how long the last collection and trim took
        # figures, for tests and benchmarks
        self.frames_built = 0
        self.frames_served = 0
        self.frame_bytes_out = 0  # of frame answers, written to consoles
        self.build_s = 0.0
        self.dropped = 0  # consoles disconnected for misbehaving
        self.refused = 0  # consoles refused at the door (too many, not allowed)
        self.bad_requests = 0
        self.trims = 0

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
        self._calls = ThreadPoolExecutor(CALL_WORKERS, thread_name_prefix="floorconsole-call")
        sock = _bind(self.path)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=READ_LIMIT)
        log.info("consoles attach at %s (mode %o)", self.path, SOCKET_MODE)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            for c in list(self._conns):
                c.end()
            deadline = time.monotonic() + 2.0
            while self._conns and time.monotonic() < deadline:  # their sessions log out
                await asyncio.sleep(0.02)
            self._calls.shutdown(wait=False, cancel_futures=True)
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("socket"))
        why = self._refusal(peer)
        if why:
            self.refused += 1
            log.warning("console refused (%s): %s", peer, why)
            _last_word(writer.transport, _error(None, "Refused", why))  # type: ignore[arg-type]
            return
        conn = _Connection(self, reader, writer, peer)
        self._conns.add(conn)
        try:
            await conn.run()
        except Exception as e:  # noqa: BLE001 - one console's failure, never the server's
            log.error("console %s: ended by a failure in the server: %r", peer, e)
            conn.end()
        finally:
            self._conns.discard(conn)
            await conn.logout_all()
            self._trim_soon()

    def _refusal(self, peer: Peer) -> str:
        if len(self._conns) >= MAX_CONSOLES and not self._make_room():
            return (
                f"the engine serves at most {MAX_CONSOLES} consoles at once and has "
                f"{len(self._conns)}: try again when one has left"
            )
        try:
            allow = self._allow() if self._allow is not None else ()
        except Exception as e:  # noqa: BLE001 - no allow-list to read: nobody is let in
            return f"the allow-list cannot be read ({e})"
        return refused_by_allow_list(peer, allow)

    def _make_room(self) -> bool:
        """At the cap, the console that has read nothing for longest (at least
        EVICT_STALLED_S) gives its place to the one arriving: consoles that stopped reading
        cannot keep a working one out until their own timeout."""
        now = time.monotonic()
        stalled = [c for c in self._conns if not c.closed and c.stalled_since is not None]
        if not stalled:
            return False
        oldest = min(stalled, key=lambda c: c.stalled_since or now)
        idle = now - (oldest.stalled_since or now)
        if idle < EVICT_STALLED_S:
            return False
        oldest.drop(
            f"read nothing for {idle:.0f} s while the engine served {len(self._conns)} "
            f"consoles, its most, and another arrived: disconnected to make room"
        )
        return True

    async def call(self, fn: Callable[[], Any]) -> Any:
        """fn on the call pool: a blocking call never holds up the server's loop."""
        return await asyncio.get_running_loop().run_in_executor(self._calls, fn)

    def _trim_soon(self) -> None:
        """Consoles have left: give the memory their buffers held back to the OS, once, a
        moment later. glibc keeps freed blocks in its arenas (the server's loop and the call
        threads each have one), so without this RSS stays at its peak after abuse."""
        if _malloc_trim is None or self._trim is not None or self._loop is None:
            return

        def trim() -> None:
            self._trim = None
            if self._calls is not None:
                try:
                    self._calls.submit(self._trim_now)
                except RuntimeError:  # shutting down
                    pass

        self._trim = self._loop.call_later(TRIM_AFTER_S, trim)

    def _trim_now(self) -> None:
        """Hand the free pages of every malloc arena back to the OS (measured: 40 consoles
        that read nothing, three times over, left 19-23 MB behind without this, 2-3 MB with
        it)."""
        now = time.monotonic()
        if now - self._trimmed_mono < TRIM_EVERY_S:
            return
        self._trimmed_mono = now
        t0 = time.perf_counter()
        if _malloc_trim is not None:
            _malloc_trim(0)
        self.trims += 1
        self.trim_s = time.perf_counter() - t0

    # -- frames -------------------------------------------------------------------------

    def frame_json(self) -> bytes:
        """The current frame, serialized; one build serves every console asking within
        frame_cache_s."""
        return self.frame_parts(delta=False)[1]

    def frame_parts(self, delta: bool) -> tuple[Tick, bytes, float]:
        """The current tick, the frame's JSON (without its signals for a delta answer, whose
        rows the tick then holds too) and the thread time spent building what is shared: one
        build serves every console asking within frame_cache_s, nobody's in particular."""
        t0, p0 = time.thread_time(), time.perf_counter()
        now = time.monotonic()
        tick = self._tick
        built = tick is None or now - self._frame_mono >= self.frame_cache_s
        if tick is None or built:
            tick = self._tick = self._ticks.tick(self.api.frame())
            self._frame_mono = now
            self.frames_built += 1
        if delta:
            built = built or not tick.built(delta=True)
            body = tick.head(dumps)
            tick.rows()
        else:
            built = built or not tick.built(delta=False)
            body = tick.full(dumps)
        self.frames_served += 1
        if not built:
            return tick, body, 0.0
        self.build_s += time.perf_counter() - p0
        return tick, body, time.thread_time() - t0


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_malloc_trim = _load_malloc_trim()


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


def _last_word(transport: asyncio.WriteTransport, line: bytes) -> None:
    """Say why, then close; a console that reads nothing more loses the line, not memory:
    whatever it has not taken a second later is dropped with the connection."""
    if transport.is_closing():
        return
    if transport.get_write_buffer_size() < WRITE_BUFFER_HIGH:
        transport.write(line)
        transport.close()
        asyncio.get_running_loop().call_later(1.0, transport.abort)
    else:
        transport.abort()


class _Ended(Exception):
    """The connection is over (disconnected by the server, or gone)."""


class _Connection:
    """One attached console."""

    def __init__(
        self,
        server: AttachServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.transport: asyncio.WriteTransport = writer.transport  # type: ignore[assignment]
        self.peer = peer
        self.sessions: set[str] = set()  # logged in over this connection
        self._calls = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stalled_since: float | None = None  # waiting for it to read, since (monotonic)
        self._built_s = 0.0  # of the request being answered: a frame build, nobody's cost
        self.delta = DeltaState()  # the rows this console has been sent (frame with delta)
        self.why = "went away"
        self.work = Budget(WORK_RATE, WORK_BURST)  # answered at once
        self.call_work = Budget(CALL_WORK_RATE, CALL_WORK_BURST)  # blocking calls
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    # -- ending -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def end(self) -> None:
        """The engine is stopping: close at once, nothing more will be said."""
        if not self._closed:
            self._closed = True
            self.why = "closed: the engine is stopping"
            self.transport.abort()

    def drop(self, why: str) -> None:
        """Disconnect a console that broke a bound, telling it why if it still reads."""
        if self._closed:
            return
        self._closed = True
        self.why = why
        self.server.dropped += 1
        for t in list(self._tasks):
            t.cancel()
        _last_word(self.transport, _error(None, "Disconnected", why))

    # -- the work a console costs --------------------------------------------------------

    def charge(self, own: Budget, seconds: float) -> None:
        own.charge(seconds)
        self.server.work.charge(seconds)

    async def _within_budget(self, own: Budget) -> None:
        """Wait until this console may be served again: its own bucket out of debt, and the
        server's too unless this console is quiet. Past its budget a console is served at
        its rate, however fast it asks; it is never the engine's loop that waits."""
        while not self._closed and not self.transport.is_closing():
            wait = own.wait_s()
            if wait <= 0 and own.level() < own.burst - QUIET_S:
                wait = self.server.work.wait_s()
            if wait <= 0:
                return
            if self._peer_hung_up():  # while it waits nothing is read or written to see it
                raise _Ended
            await asyncio.sleep(min(wait, BUDGET_WAIT_S))

    def _peer_hung_up(self) -> bool:
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLRDHUP)
            return any(ev & (select.POLLRDHUP | select.POLLHUP) for _fd, ev in poller.poll(0))
        except (OSError, ValueError):
            return True

    # -- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("console attached (%s)", self.peer)
        try:
            while not self._closed:
                await self._within_budget(self.work)
                line = await self._readline()
                if not line or self._closed:
                    break
                await self._request(line)
        except (ConnectionError, _Ended) as e:
            # asyncio keeps the exception that ended the connection (its reader and drain
            # waiter hold it); its traceback holds these frames, and so this connection and
            # its buffers, in a cycle only a full collection would free.
            e.__traceback__ = None
        finally:
            for t in list(self._tasks):
                t.cancel()
            if not self._closed:
                self._closed = True
                self.transport.close()
        if self.why == "went away":
            log.info("console went away (%s)", self.peer)
        else:
            log.warning("console %s (%s)", self.why, self.peer)

    async def _readline(self) -> bytes:
        """The next request line, or b"" at the end; a line longer than MAX_REQUEST_BYTES
        disconnects. Read in pieces of READ_LIMIT, so only a line being read is buffered."""
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return b""  # the end, maybe in the middle of a line: nothing to answer
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed
        parts = bytearray()
        too_long = (
            f"sent a request line over {MAX_REQUEST_BYTES} bytes "
            f"({MAX_REQUEST_BYTES // (1024 * 1024)} MB): disconnected"
        )
        while True:
            # `consumed` bytes wait in the reader with no end of line among them
            if len(parts) + consumed > MAX_REQUEST_BYTES:
                self.drop(too_long)
                raise _Ended
            try:
                parts += await self.reader.readexactly(consumed)
                parts += await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return b""
            except asyncio.LimitOverrunError as e:
                consumed = e.consumed
                continue
            if len(parts) > MAX_REQUEST_BYTES:
                self.drop(too_long)
                raise _Ended
            return bytes(parts)

    async def _request(self, line: bytes) -> None:
        t0 = time.thread_time()
        rid: Any = None
        try:
            req = json.loads(line)
            if isinstance(req, dict):
                rid = req.get("id")
            op, args = check_request(req)
        except (ValueError, RecursionError, _BadRequest) as e:
            # ValueError: not JSON (UnicodeDecodeError is one); RecursionError: nested too deep
            self.server.bad_requests += 1
            text = str(e) if isinstance(e, _BadRequest) else f"not a JSON request line: {e}"
            if isinstance(e, RecursionError):
                text = "not a JSON request line: nested too deep"
            out = _error(rid, "BadRequest", text)
        else:
            if op not in INLINE_OPS:
                self._start_call(rid, op, args)
                self.charge(self.work, time.thread_time() - t0)
                return
            out = self._inline(rid, op, args)
        self.charge(self.work, time.thread_time() - t0 - self._built_s)
        await self._send(out)

    def _inline(self, rid: Any, op: str, args: dict[str, Any]) -> bytes:
        api = self.server.api
        self._built_s = 0.0
        try:
            if op == "frame":  # from the cache: one build serves every console
                delta = bool(args.get("delta"))
                # what is shared is nobody's cost, and bounded by the cache
                tick, frame, self._built_s = self.server.frame_parts(delta)
                token = args.get("session")
                info = b"null" if token is None else dumps(api.session(token))
                head = b'{"id":%s,"ok":true,"result":{"frame":%s,"session":%s' % (
                    dumps(rid),
                    frame,
                    info,
                )
                if delta:  # what changed since this console's last: its own cost
                    # and the server's clock, so consoles pull on the same beats of it and
                    # share builds (remote.next_pull_s)
                    out = b'%s,"mono":%.4f,"signals":%s}}\n' % (
                        head,
                        time.monotonic(),
                        self.delta.answer(tick),
                    )
                else:
                    out = head + b"}}\n"
                self.server.frame_bytes_out += len(out)
                return out
            if op == "hello":
                return _ok(rid, self.server._hello)
            if op == "session":
                return _ok(rid, api.session(args.get("session")))
            if op == "touch":
                api.touch(args.get("session"))
                return _ok(rid, None)
            return _ok(rid, api.demo_users())
        except Exception as e:  # noqa: BLE001 - the console shows it, the engine keeps going
            log.exception("%s for a console failed", op)
            return _error(rid, "Internal", f"{op}: {e}")

    # -- blocking calls ---------------------------------------------------------------------

    def _start_call(self, rid: Any, op: str, args: dict[str, Any]) -> None:
        if len(self._tasks) >= MAX_CALLS_PENDING:
            self.drop(
                f"asked {len(self._tasks) + 1} calls without taking the answers "
                f"(at most {MAX_CALLS_PENDING}): disconnected"
            )
            raise _Ended
        task = asyncio.create_task(self._call(rid, op, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, rid: Any, op: str, args: dict[str, Any]) -> None:
        async with self._calls:
            try:
                await self._within_budget(self.call_work)
            except _Ended:  # it hung up while waiting: nobody to answer
                return
            fn = self._method(op, args)
            cost = [0.0]

            def timed() -> Any:
                t0 = time.thread_time()
                try:
                    return fn()
                finally:
                    cost[0] = time.thread_time() - t0

            try:
                result = await self.server.call(timed)
                out = _ok(rid, result)
            except CommandError as e:
                out = _error(rid, "CommandError", str(e))
            except TypeError as e:
                out = _error(rid, "BadRequest", f"bad arguments for {op}: {e}")
            except Exception as e:  # noqa: BLE001 - one console's failed call, not the server's
                log.warning("attach: %s failed: %s", op, e)
                out = _error(rid, "Internal", f"{op}: {e}")
            self.charge(self.call_work, cost[0])
        try:
            await self._send(out)
        except (_Ended, ConnectionError):
            pass

    def _method(self, op: str, args: dict[str, Any]) -> Callable[[], Any]:
        api = self.server.api
        if op == "command":
            name = args["name"]
            cargs = args.get("args") or {}
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
            user, pin = args["user"], args["pin"]

            def login() -> Any:
                r = api.login(user, pin, os_user=self.peer.user)
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
        method = getattr(api, op)  # op is one of ARGS, checked with its arguments
        return lambda: method(**args)

    # -- writing ------------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        """Queue an answer; past WRITE_BUFFER_HIGH wait for the console to read (which holds
        up its next request, nobody else's), and disconnect it when it reads nothing for
        CLIENT_WRITE_TIMEOUT_S or owes more than MAX_BUFFERED_BYTES."""
        if self._closed or self.transport.is_closing():  # gone: the rest goes unanswered
            raise _Ended
        self.transport.write(data)
        waiting = self.transport.get_write_buffer_size()
        if waiting <= WRITE_BUFFER_HIGH:
            return
        if waiting > MAX_BUFFERED_BYTES:
            self.drop(
                f"has {waiting} bytes of answers waiting, over {MAX_BUFFERED_BYTES}: disconnected"
            )
            raise _Ended
        timeout = CLIENT_WRITE_TIMEOUT_S
        if self.stalled_since is None:
            self.stalled_since = time.monotonic()
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            self.drop(f"read nothing for {timeout:g} s: disconnected")
            raise _Ended from None
        finally:
            if self.transport.get_write_buffer_size() <= WRITE_BUFFER_HIGH:
                self.stalled_since = None

    async def logout_all(self) -> None:
        """What a console that went away leaves behind: nothing. Its sessions end (and with
        them control it held)."""
        tokens, self.sessions = list(self.sessions), set()
        if not tokens:
            return
        for token in tokens:
            try:
                await self.server.call(partial(self.server.api.logout, token))
            except Exception as e:  # noqa: BLE001 - logged; the other sessions still end
                log.warning("logout of a departed console's session failed: %s", e)
        log.info("console %s: %d session(s) logged out", self.peer, len(tokens))


def _ok(rid: Any, result: Any) -> bytes:
    return dumps({"id": rid, "ok": True, "result": result}) + b"\n"


def _error(rid: Any, kind: str, text: str) -> bytes:
    return dumps({"id": rid, "ok": False, "error": text, "kind": kind}) + b"\n"


def start_attach_server(engine: Engine) -> AttachServer | None:
    """The engine's socket at DATA_DIR/engine.sock, or None (logged) when it cannot listen:
    the engine runs on without attached consoles."""
    path = socket_path(engine.data_dir)
    server = AttachServer(
        engine.api,
        path,
        hello={"edge_id": engine.plant.edge.id, "data_dir": str(engine.data_dir)},
        allow=lambda: engine.plant.edge.attach_allow,
    )
    try:
        server.start()
    except (OSError, RuntimeError) as e:
        log.warning("consoles cannot attach: %s", e)
        return None
    return server
