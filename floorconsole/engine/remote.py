"""RemoteAPI: a console's EngineAPI in another process, over the engine's attach socket.

A background thread owns the socket: it pulls a frame (and who this console's session is)
at the console's own refresh rate, so frame() and session() answer at once from what came
last and never block a screen, however slow the link. Other calls are request/response,
waiting up to a timeout. When the engine goes away frame() keeps the last frame, marked
stale ("engine gone 3 s: reconnecting to ..."), commands answer "engine not reachable", and
the thread reconnects by itself. Sessions do not survive that (the engine logs out what a
lost connection logged in, and a restarted engine knows no tokens) and no PIN is kept to
log in again: session() answers viewer and `reconnected` counts the reconnections.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from floorconsole.console import (
    CommandError,
    CommandResult,
    ConsoleAPI,
    Frame,
    History,
    decode,
    viewer_session,
)
from floorconsole.core.auth import ACTIONS, LONG
from floorconsole.engine.attach import MAX_REQUEST_BYTES, PROTOCOL, dumps
from floorconsole.engine.frame_delta import DeltaReader

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0
LONG_CALL_TIMEOUT_S = 75.0  # apply and rollback wait for a health check on the engine
FRAME_TIMEOUT_S = 15.0  # one frame on a 20 kB/s link is a second or two
RECONNECT_EVERY_S = 0.5


class EngineUnreachable(ConnectionError):
    """No engine answers on the socket (not started, gone, or not answering)."""


class EngineRefused(EngineUnreachable):
    """The engine answers but will not serve this console (too many attached, or its OS user
    is not in the plant's [edge] attach_allow); the reason is the engine's own."""


class RemoteError(RuntimeError):
    """The engine failed a call for a reason other than a refusal."""


class RemoteAPI:
    """The ConsoleAPI (and the rest of EngineAPI's reading methods) over the attach socket:
    make_app(RemoteAPI(path)) is a console on a running engine."""

    def __init__(
        self, path: Path | str, *, refresh_hz: float = 4.0, call_timeout: float = CALL_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self.period = 1.0 / max(0.2, min(30.0, refresh_hz))
        self.call_timeout = call_timeout
        self.reconnected = 0  # connections made again after the engine went away
        self.frames_received = 0
        self.hello: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._frame: Frame | None = None
        self._first_frame = threading.Event()
        self._gone_since: float | None = None  # monotonic time the engine went away
        self._why_gone = ""
        self._ever_connected = False
        self._failed_connects = 0
        self._refused = ""  # the engine's reason, when it refused this console
        self._watched: str | None = None  # the session frame pulls ask about
        self._session_cache: tuple[str, dict[str, Any]] | None = None
        self._demo_users: list[dict[str, str]] | None = None
        self._wake: asyncio.Event | None = None

    # -- life ---------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> RemoteAPI:
        """Start the background thread and wait for the first frame. Raises EngineUnreachable
        when no engine answers within `timeout` (the thread is stopped again)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="floorconsole-remote", daemon=True
            )
            self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._first_frame.wait(0.01):
            # No socket, or nobody listening: say so at once rather than after the timeout.
            if self._failed_connects or time.monotonic() > deadline:
                why, refused = self._why_gone or "no answer", self._refused
                self.close()
                if refused:
                    raise EngineRefused(
                        f"the engine at {self.path} refused this console: {refused}"
                    )
                raise EngineUnreachable(f"no engine at {self.path}: {why}")
        return self

    def close(self) -> None:
        self._closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def __enter__(self) -> RemoteAPI:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shutdown(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._writer is not None:
            self._writer.close()

    @property
    def connected(self) -> bool:
        return self._gone_since is None and self._ever_connected

    # -- the background thread ----------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.path), limit=MAX_REQUEST_BYTES
                )
            except OSError as e:
                self._went_away(_why(e))
                self._failed_connects += 1
                await self._sleep(RECONNECT_EVERY_S)
                continue
            self._writer = writer
            reading = asyncio.create_task(self._read(reader))
            pulling = asyncio.create_task(self._pull())
            done, _ = await asyncio.wait({reading, pulling}, return_when=asyncio.FIRST_COMPLETED)
            for t in (reading, pulling):
                t.cancel()
            await asyncio.gather(reading, pulling, return_exceptions=True)
            why = "connection closed by the engine"
            refused = False
            for t in done:
                exc = None if t.cancelled() else t.exception()
                if exc is not None:
                    why = _why(exc)
                    refused = isinstance(exc, EngineRefused)
            writer.close()
            self._writer = None
            self._went_away(why)
            if refused:  # asking again at once would be refused again
                self._refused = why
                self._failed_connects += 1
            if not self._closing:
                await self._sleep(RECONNECT_EVERY_S if refused else min(0.05, RECONNECT_EVERY_S))

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def _went_away(self, why: str) -> None:
        if self._gone_since is None:
            self._gone_since = time.monotonic()
            if self._ever_connected and not self._closing:
                log.warning("engine at %s gone (%s): reconnecting", self.path, why)
        self._why_gone = why
        self._session_cache = None
        self._watched = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(EngineUnreachable(f"engine not reachable: {why}"))
        self._pending.clear()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            msg = json.loads(line)
            if msg.get("id") is None and msg.get("ok") is False:
                # The engine's last word on this connection: refused at the door, or
                # disconnected for breaking a bound (said why, then closed).
                why = str(msg.get("error") or "no reason given")
                if msg.get("kind") == "Refused":
                    raise EngineRefused(why)
                raise EngineUnreachable(f"disconnected by the engine: {why}")
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def _pull(self) -> None:
        hello = await self._request("hello", {}, self.call_timeout)
        if hello.get("protocol") != PROTOCOL:
            raise EngineUnreachable(
                f"the engine speaks protocol {hello.get('protocol')}, this console {PROTOCOL}"
            )
        self.hello = hello
        # Each pull asks for what changed since this connection's last (engine.frame_delta):
        # a few kB where the whole frame is hundreds, for the engine to write and for this
        # console to read. A new connection starts from nothing.
        rows = DeltaReader()
        while True:
            started = time.monotonic()
            watched = self._watched
            result = await self._request(
                "frame", {"session": watched, "delta": True}, FRAME_TIMEOUT_S
            )
            received = time.monotonic()
            # Decoding happens here, off the screen's thread.
            frame = rows.frame(result)
            if watched is not None and result.get("session") is not None:
                self._session_cache = (watched, result["session"])
            self._frame = frame
            self.frames_received += 1
            if self._gone_since is not None:
                if self._ever_connected:
                    self.reconnected += 1
                    log.warning("engine at %s back", self.path)
                self._gone_since = None
                self._why_gone = ""
            self._ever_connected = True
            self._refused = ""
            self._first_frame.set()
            wait = next_pull_s(started, received, result.get("mono"), self.period)
            await asyncio.sleep(max(0.0, wait - time.monotonic()))

    async def _request(self, op: str, args: dict[str, Any], timeout: float) -> Any:
        writer = self._writer
        if writer is None:
            raise EngineUnreachable(f"engine not reachable: {self._why_gone or 'not connected'}")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            writer.write(dumps({"id": rid, "op": op, "args": args}) + b"\n")
            msg = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise EngineUnreachable(
                f"engine not reachable: no answer to {op} within {timeout:g} s"
            ) from None
        finally:
            self._pending.pop(rid, None)
        if msg.get("ok"):
            return msg.get("result")
        if msg.get("kind") == "CommandError":
            raise CommandError(str(msg.get("error")))
        raise RemoteError(str(msg.get("error")))

    # -- calls from the console's threads ------------------------------------------------

    def _call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        loop = self._loop
        if loop is None or self._gone_since is not None or loop.is_closed():
            raise EngineUnreachable(self._unreachable_text())
        fut = asyncio.run_coroutine_threadsafe(
            self._request(op, args, timeout or self.call_timeout), loop
        )
        return fut.result()

    def _send(self, op: str, **args: Any) -> None:
        """A call whose answer nobody waits for (touch, logout from the screen's thread)."""
        loop = self._loop
        if loop is None or self._gone_since is not None or loop.is_closed():
            return

        async def go() -> None:
            try:
                await self._request(op, args, self.call_timeout)
            except Exception as e:  # noqa: BLE001 - the next frame's session shows the outcome
                log.info("%s: %s", op, e)

        asyncio.run_coroutine_threadsafe(go(), loop)

    def _unreachable_text(self) -> str:
        return f"engine not reachable: {self._why_gone or 'not connected'} ({self.path})"

    def frame(self) -> Frame:
        """The last frame received; marked stale when the engine has gone away."""
        frame = self._frame
        if frame is None:
            if not self._first_frame.wait(self.call_timeout) or self._frame is None:
                raise EngineUnreachable(self._unreachable_text())
            frame = self._frame
        gone = self._gone_since
        if gone is not None:
            return replace(
                frame,
                stale=f"engine gone {time.monotonic() - gone:.0f} s: reconnecting to {self.path}",
            )
        return frame

    def refresh(self) -> Frame:
        """A frame fetched now (waiting for it), kept as the last one: for a screen that
        wants to show what a command did without waiting for the next pull."""
        result = self._call("frame", session=None, timeout=FRAME_TIMEOUT_S)
        frame = decode(Frame, result["frame"])
        self._frame = frame
        return frame

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        return decode(
            History,
            self._call("history", signal=signal, since=since, until=until, max_points=max_points),
        )

    def command(self, name: str, /, session: str | None = None, **args: Any) -> CommandResult:
        action = ACTIONS.get(name)
        timeout = LONG_CALL_TIMEOUT_S if action is not None and action.timeout == LONG else None
        self._session_cache = None  # a command can lock, unlock or end a session
        try:
            # the engine's answer, as JSON: the keys of a CommandResult
            return cast(
                CommandResult,
                dict(self._call("command", timeout, name=name, session=session, args=args)),
            )
        except EngineUnreachable as e:
            return {"ok": False, "message": str(e)}

    # -- sessions -------------------------------------------------------------------------

    def login(self, user: str, pin: str) -> dict[str, Any]:
        self._session_cache = None
        try:
            return dict(self._call("login", user=user, pin=pin))
        except EngineUnreachable as e:
            return {"ok": False, "message": str(e), "session": None, "user": user, "role": "viewer"}

    def logout(self, session: str | None) -> None:
        self._session_cache = None
        self._send("logout", session=session)

    def unlock(self, session: str | None, pin: str) -> dict[str, Any]:
        self._session_cache = None
        try:
            return dict(self._call("unlock", session=session, pin=pin))
        except EngineUnreachable as e:
            return {"ok": False, "message": str(e)}

    def session(self, session: str | None) -> dict[str, Any]:
        """Who `session` is. Answered from the last frame pull when it asked about the same
        session (every refresh does), so the screen's tick never waits on the link."""
        if session is None or self._gone_since is not None:
            return viewer_session()
        cached = self._session_cache
        if cached is not None and cached[0] == session:
            return dict(cached[1])
        self._watched = session
        try:
            info = dict(self._call("session", session=session))
        except EngineUnreachable:
            return viewer_session()
        self._session_cache = (session, info)
        return info

    def touch(self, session: str | None) -> None:
        self._send("touch", session=session)

    def demo_users(self) -> list[dict[str, str]]:
        if self._demo_users is None:
            self._demo_users = list(self._call("demo_users"))
        return [dict(u) for u in self._demo_users]

    # -- the rest of EngineAPI ------------------------------------------------------------

    def audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        return list(
            self._call(
                "audit", since=since, until=until, user=user, kind=kind, text=text, limit=limit
            )
        )

    def audit_verify(self) -> dict[str, Any]:
        return dict(self._call("audit_verify", timeout=LONG_CALL_TIMEOUT_S))

    def active_config(self) -> dict[str, Any]:
        return dict(self._call("active_config"))

    def snapshots(self) -> list[dict[str, Any]]:
        return list(self._call("snapshots"))

    def snapshot_diff(self, a: str, b: str) -> list[str]:
        return list(self._call("snapshot_diff", a=a, b=b))

    def activations(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(self._call("activations", limit=limit))

    def alarm_journal(self, limit: int = 500) -> list[dict[str, Any]]:
        return list(self._call("alarm_journal", limit=limit))

    def alarm_kpis(self, since: float, until: float) -> dict[str, Any]:
        return dict(self._call("alarm_kpis", since=since, until=until))

    def model_histogram(self, model_id: str, feature: str) -> dict[str, Any]:
        return dict(self._call("model_histogram", model_id=model_id, feature=feature))

    def model_comparison(self, model_id: str, points: int = 120) -> dict[str, Any]:
        return dict(self._call("model_comparison", model_id=model_id, points=points))

    def dry_run(
        self, rule: dict[str, Any], hours: tuple[float, ...] = (1.0, 24.0)
    ) -> dict[str, Any]:
        return dict(
            self._call("dry_run", timeout=LONG_CALL_TIMEOUT_S, rule=rule, hours=list(hours))
        )

    def opcua_browse(self, device: str, node: str = "", depth: int = 2) -> dict[str, Any]:
        return dict(
            self._call(
                "opcua_browse", timeout=LONG_CALL_TIMEOUT_S, device=device, node=node, depth=depth
            )
        )


if TYPE_CHECKING:  # mypy proves an attached console has every call of the contract

    def _is_console_api(api: RemoteAPI) -> ConsoleAPI:
        return api


def next_pull_s(started: float, received: float, engine_mono: Any, period: float) -> float:
    """When (monotonic, here) to pull the next frame: on the next beat of the engine's clock
    (engine_mono, its time.monotonic() when it answered) at multiples of the period, at least
    half a period away; else one period after this pull began. Consoles pulling at their own
    moments made the engine build a frame for nearly every other pull (one build serves all
    consoles within attach.FRAME_CACHE_S); on the same beats, consoles at the same refresh
    share one build, and a console at half the rate every other one."""
    if not isinstance(engine_mono, (int, float)) or not math.isfinite(engine_mono):
        return started + period
    beat = (math.floor(engine_mono / period) + 1) * period
    if beat - engine_mono < period / 2:
        beat += period
    return received + (beat - engine_mono)


def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "no socket"
    if isinstance(e, ConnectionRefusedError):
        return "nothing listens on the socket"
    if isinstance(e, PermissionError):
        return "permission denied (the socket is for the engine's user and group)"
    return str(e) or type(e).__name__
