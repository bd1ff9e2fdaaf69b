"""`floorconsole serve`: the console in a browser, one attached console per browser tab,
behind a login with the console's own users and PINs, over TLS when given a certificate."""

from __future__ import annotations

import argparse
import contextvars
import json
import secrets
import shlex
import socket
import ssl
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TITLE = "floorconsole"
PAGES = Path(__file__).resolve().parent / "serve_pages"
COOKIE = "floorconsole_web"
DEFAULT_IDLE = "15m"
MAX_WEB_SESSIONS = 256  # the oldest is logged out past this
LOGIN_FAILURES_PER_MINUTE = 5  # per browser address, on top of the engine's own PIN lockout
ENGINE_TIMEOUT_S = 10.0


@dataclass
class WebSession:
    """A browser that logged in: who, and when it last did anything."""

    user: str
    role: str
    last_seen: float


class WebLogins:
    """The web sessions of one `serve`: a random token per login, in a cookie, ended after
    `idle_s` without a request or a key press. Bounded: the oldest goes past MAX_WEB_SESSIONS.
    The PIN is checked by the engine (`check`), never here."""

    def __init__(
        self,
        check: Callable[[str, str], dict[str, Any]],
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self.idle_s = idle_s
        self._clock = clock
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()
        self._failures: dict[str, deque[float]] = {}

    def login(self, user: str, pin: str, peer: str) -> tuple[str | None, str]:
        """(token, message): a token when the engine accepted the PIN, else why not."""
        now = self._clock()
        recent = self._failures.setdefault(peer, deque(maxlen=LOGIN_FAILURES_PER_MINUTE))
        if len(recent) == recent.maxlen and now - recent[0] < 60:
            return None, f"too many failed logins from {peer}: wait a minute"
        if not user.strip() or not pin:
            return None, "a user name and a PIN are needed"
        try:
            r = self._check(user.strip(), pin)
        except OSError as e:
            return None, f"the engine cannot check PINs now: {e}"
        if not r.get("ok"):
            recent.append(now)
            if len(self._failures) > 1024:  # bounded: forget the addresses seen longest ago
                self._failures.pop(next(iter(self._failures)))
            return None, str(r.get("message") or "wrong user name or PIN")
        token = secrets.token_urlsafe(24)
        self._sessions[token] = WebSession(str(r.get("user")), str(r.get("role")), now)
        while len(self._sessions) > MAX_WEB_SESSIONS:
            self._sessions.popitem(last=False)
        return token, str(r.get("message", ""))

    def valid(self, token: str | None) -> WebSession | None:
        s = self._sessions.get(token or "")
        if s is None:
            return None
        if self._clock() - s.last_seen > self.idle_s:
            del self._sessions[token or ""]
            return None
        return s

    def touch(self, token: str | None) -> None:
        if (s := self.valid(token)) is not None:
            s.last_seen = self._clock()
            self._sessions.move_to_end(token or "")

    def logout(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)


def engine_login(
    sock: Path, user: str, pin: str, timeout: float = ENGINE_TIMEOUT_S
) -> dict[str, Any]:
    """Check a user's PIN with the running engine over its socket (the engine applies its own
    lockout and audits the attempt), then log that session out again: the browser's console
    logs in by itself. Raises OSError when no engine answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        f = s.makefile("rwb")

        def call(rid: int, op: str, args: dict[str, Any]) -> dict[str, Any]:
            f.write(json.dumps({"id": rid, "op": op, "args": args}).encode() + b"\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    raise ConnectionError("the engine closed the connection")
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("id") == rid:
                    return msg

        msg = call(1, "login", {"user": user, "pin": pin})
        if not msg.get("ok"):
            return {"ok": False, "message": str(msg.get("error") or "login refused")}
        result = msg.get("result") or {}
        if result.get("ok") and result.get("session"):
            call(2, "logout", {"session": result["session"]})
        return dict(result)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve` on the CLI's subparsers."""
    s = subparsers.add_parser(
        "serve",
        help="the console in a web browser, attached to a running engine",
        description="Serve the console to a browser (an HMI panel with only a browser gets "
        "the same screens). A login page with the console's users and PINs (checked by the "
        "engine) comes before the terminal; every browser tab then runs its own "
        "`floorconsole attach` to the one running engine, as a viewer until it logs in "
        "there too (F9). Nothing here starts devices or an engine, and every asset of the "
        "page is served from this box. With --tls-cert and --tls-key it speaks HTTPS.",
    )
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="PLANT.toml",
        help="plant file of the running engine (for its data directory)",
    )
    where.add_argument("--data-dir", type=Path, help="data directory of the running engine")
    where.add_argument("--socket", type=Path, metavar="PATH", help="the engine's socket")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this box only); 0.0.0.0 "
        "exposes the login page to the panel network (give it --tls-cert/--tls-key)",
    )
    s.add_argument("--tls-cert", type=Path, metavar="PEM", help="certificate chain (PEM) for HTTPS")
    s.add_argument("--tls-key", type=Path, metavar="PEM", help="private key (PEM) of --tls-cert")
    s.add_argument(
        "--idle-timeout",
        default=DEFAULT_IDLE,
        metavar="DURATION",
        help=f"a browser with no key press or request this long is logged out "
        f"(default {DEFAULT_IDLE})",
    )
    s.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    s.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, when it is not the one they asked for "
        "(behind a reverse proxy); default: taken from each request",
    )
    s.add_argument("--theme", default="isa101", help="isa101 (default), dark, high-contrast")
    s.add_argument(
        "--refresh",
        type=float,
        default=4.0,
        metavar="HZ",
        help="console refresh rate in Hz (default 4)",
    )
    s.add_argument(
        "--kiosk",
        action="store_true",
        help="HMI panel mode for every browser tab: no way out of the console, "
        "starts locked to viewer",
    )
    s.set_defaults(func=run)
    return s


def attach_command(args: argparse.Namespace) -> list[str]:
    """The command each browser tab runs: `floorconsole attach` with the target and console
    options of `serve`, under this same interpreter (so it works from a venv not on PATH)."""
    cmd = [sys.executable, "-m", "floorconsole.cli", "attach"]
    if args.config is not None:
        cmd += ["-c", str(Path(args.config).resolve())]
    elif args.data_dir is not None:
        cmd += ["--data-dir", str(Path(args.data_dir).resolve())]
    else:
        cmd += ["--socket", str(Path(args.socket).resolve())]
    cmd += ["--theme", args.theme, "--refresh", str(args.refresh)]
    if args.kiosk:
        cmd.append("--kiosk")
    return cmd


_ws_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("ws_token", default=None)


def make_server(
    command: list[str],
    *,
    host: str,
    port: int,
    public_url: str | None = None,
    logins: WebLogins | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Any:
    """A textual-serve Server that runs `command` per browser tab, behind `logins` (None: no
    login page, for tests of the page alone). Imported here, not at the top: aiohttp costs
    every other command start-up time it does not need."""
    import asyncio

    import aiohttp_jinja2
    from aiohttp import WSMsgType, web
    from aiohttp.web_runner import GracefulExit
    from textual_serve.server import Server

    class ConsoleServer(Server):  # type: ignore[misc]
        """textual-serve with what a plant network needs: its page without an internet font
        service (our copy of the template), a login page before the terminal, an idle
        timeout, TLS. And: textual-serve writes its own address into the page for the
        websocket, which for --host 0.0.0.0 is ws://0.0.0.0:PORT, an address no panel can
        reach; unless a public URL is given, each page names the host the browser asked for."""

        fixed_url = public_url

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.router.add_get("/login", self.handle_login_page, name="login")
            app.router.add_post("/login", self.handle_login)
            app.router.add_get("/logout", self.handle_logout)
            if logins is not None:
                app.middlewares.append(self.require_login)
            return app

        @web.middleware
        async def require_login(self, request: web.Request, handler: Any) -> web.StreamResponse:
            assert logins is not None
            path = request.path
            if path.startswith(("/login", "/static/")):
                return await handler(request)  # type: ignore[no-any-return]
            token = request.cookies.get(COOKIE)
            if logins.valid(token) is None:
                if path == "/":
                    raise web.HTTPFound("/login")
                raise web.HTTPUnauthorized(text="log in first: /login")
            logins.touch(token)
            return await handler(request)  # type: ignore[no-any-return]

        def _login_context(self, message: str = "", user: str = "") -> dict[str, Any]:
            idle = logins.idle_s if logins is not None else 0
            return {
                "title": self.title,
                "action": "/login",
                "message": message,
                "user": user,
                "idle": f"{idle / 60:g} min" if idle >= 60 else f"{idle:g} s",
            }

        async def handle_login_page(self, request: web.Request) -> web.StreamResponse:
            if logins is None:
                raise web.HTTPFound("/")
            return aiohttp_jinja2.render_template(  # type: ignore[no-any-return]
                "login.html", request, self._login_context()
            )

        async def handle_login(self, request: web.Request) -> web.StreamResponse:
            if logins is None:
                raise web.HTTPFound("/")
            form = await request.post()
            user, pin = str(form.get("user", ""))[:64], str(form.get("pin", ""))[:64]
            peer = request.remote or "?"
            token, message = await asyncio.to_thread(logins.login, user, pin, peer)
            if token is None:
                page = aiohttp_jinja2.render_template(
                    "login.html", request, self._login_context(message, user)
                )
                page.set_status(401)
                return page  # type: ignore[no-any-return]
            r = web.HTTPFound("/")
            r.set_cookie(
                COOKIE,
                token,
                httponly=True,
                samesite="Strict",
                secure=request.secure,
                path="/",
            )
            raise r

        async def handle_logout(self, request: web.Request) -> web.StreamResponse:
            if logins is not None:
                logins.logout(request.cookies.get(COOKIE))
            r = web.HTTPFound("/login")
            r.del_cookie(COOKIE, path="/")
            raise r

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            base = (self.fixed_url or f"{request.scheme}://{request.host}").rstrip("/")
            ws = ("wss:" if base.startswith("https:") else "ws:") + base.split(":", 1)[1]
            fontsize = request.query.get("fontsize", "16")
            static = str(request.app.router["static"].url_for(filename="/")).rstrip("/")
            return {
                "font_size": int(fontsize) if fontsize.isdigit() else 16,
                "app_websocket_url": ws + str(request.app.router["websocket"].url_for()),
                "config": {"static": {"url": f"{base}{static}/"}},
                "application": {"name": self.title},
            }

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            _ws_token.set(request.cookies.get(COOKIE))
            return await super().handle_websocket(request)  # type: ignore[no-any-return]

        async def _process_messages(
            self, websocket: web.WebSocketResponse, app_service: Any
        ) -> None:
            """textual-serve's loop, with each message from the browser counted as activity
            and the terminal closed when the web session ends (idle timeout)."""
            token = _ws_token.get()
            watch = asyncio.create_task(self._close_when_logged_out(websocket, token))
            try:
                async for message in websocket:
                    if message.type != WSMsgType.TEXT:
                        continue
                    try:
                        envelope = message.json()
                    except ValueError:
                        continue
                    if not isinstance(envelope, list) or not envelope:
                        continue
                    kind = envelope[0]
                    if logins is not None and kind in ("stdin", "resize"):
                        logins.touch(token)
                    if kind == "stdin" and len(envelope) > 1:
                        await app_service.send_bytes(str(envelope[1]).encode("utf-8"))
                    elif kind == "resize" and len(envelope) > 1 and isinstance(envelope[1], dict):
                        size = envelope[1]
                        await app_service.set_terminal_size(
                            int(size.get("width", 80)), int(size.get("height", 24))
                        )
                    elif kind == "ping" and len(envelope) > 1:
                        await websocket.send_json(["pong", envelope[1]])
                    elif kind == "blur":
                        await app_service.blur()
                    elif kind == "focus":
                        await app_service.focus()
            finally:
                watch.cancel()

        async def _close_when_logged_out(
            self, websocket: web.WebSocketResponse, token: str | None
        ) -> None:
            if logins is None:
                return
            while not websocket.closed:
                await asyncio.sleep(1.0)
                if logins.valid(token) is None:
                    await websocket.close(code=4001, message=b"logged out: idle")
                    return

        def serve(self, debug: bool = False) -> None:
            """textual-serve's serve(), with TLS when a context is given."""
            import signal

            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            def request_exit() -> None:
                raise GracefulExit()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, request_exit)
            web.run_app(
                self._make_app(),
                host=self.host,
                port=self.port,
                handle_signals=False,
                loop=loop,
                ssl_context=ssl_context,
                print=lambda *args: None,
            )

    return ConsoleServer(
        shlex.join(command),
        host=host,
        port=port,
        title=TITLE,
        public_url=public_url,
        templates_path=PAGES,
    )


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for HTTPS; raises ValueError naming the file that is wrong."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ValueError(f"{what} {path}: no such file")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise ValueError(
            f"--tls-cert {cert} / --tls-key {key}: not a certificate and its key ({e})"
        ) from None
    return ctx


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM. A port already taken, a bad certificate or a bad idle
    timeout is one line and exit status 1."""
    from floorconsole.core.units import parse_duration

    try:
        idle_s = parse_duration(str(args.idle_timeout))
        if idle_s <= 0:
            raise ValueError("must be more than 0")
    except ValueError as e:
        print(f"floorconsole: --idle-timeout {args.idle_timeout!r}: {e}", file=sys.stderr)
        return 1
    if (args.tls_cert is None) != (args.tls_key is None):
        print("floorconsole: --tls-cert and --tls-key go together", file=sys.stderr)
        return 1
    ctx = None
    if args.tls_cert is not None:
        try:
            ctx = tls_context(args.tls_cert, args.tls_key)
        except ValueError as e:
            print(f"floorconsole: {e}", file=sys.stderr)
            return 1
    sock = _socket_of(args)
    if sock is None:
        print(
            f"floorconsole: cannot read the plant file {args.config}; no engine to log in to",
            file=sys.stderr,
        )
        return 1
    logins = WebLogins(lambda user, pin: engine_login(sock, user, pin), idle_s)
    try:
        server = make_server(
            attach_command(args),
            host=args.host,
            port=args.port,
            public_url=args.public_url,
            logins=logins,
            ssl_context=ctx,
        )
    except ImportError as e:
        print(
            f"floorconsole: serve needs textual-serve ({e}); pip install textual-serve",
            file=sys.stderr,
        )
        return 1
    if not sock.exists():
        print(
            f"floorconsole: no engine at {sock} yet; the login page says so until one "
            f"runs (floorconsole run --headless -c PLANT.toml)",
            file=sys.stderr,
        )
    if args.host not in ("127.0.0.1", "localhost", "::1") and ctx is None:
        print(
            f"floorconsole: serving on {args.host}:{args.port} without TLS: PINs cross the "
            "network in clear text (give --tls-cert and --tls-key)",
            file=sys.stderr,
        )
    try:
        server.serve()
    except OSError as e:
        print(
            f"floorconsole: cannot serve on {args.host}:{args.port}: {e.strerror or e}",
            file=sys.stderr,
        )
        return 1
    return 0


def _socket_of(args: argparse.Namespace) -> Path | None:
    """The engine socket serve's consoles will attach to; None when the plant file cannot be
    read here (the attach in each tab reports that)."""
    from floorconsole.engine.attach import socket_path

    if args.socket is not None:
        return Path(args.socket)
    if args.data_dir is not None:
        return socket_path(Path(args.data_dir))
    try:
        from floorconsole.core.config import load_plant

        return socket_path(load_plant(args.config).edge.data_dir)
    except Exception:  # noqa: BLE001 - a warning only; attach says what is wrong
        return None
