"""`floorconsole serve`: the console in a browser, one attached console per browser tab."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

TITLE = "floorconsole"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve` on the CLI's subparsers."""
    s = subparsers.add_parser(
        "serve",
        help="the console in a web browser, attached to a running engine",
        description="Serve the console over HTTP to a browser (an HMI panel with only a "
        "browser gets the same screens). Every browser tab runs its own "
        "`floorconsole attach` to the one running engine; nothing here starts "
        "devices or an engine. There is no TLS and no login page: the "
        "console's own F9 login applies, and a viewer sees but cannot act.",
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
        "exposes the console to the panel network, unencrypted and without "
        "a login page",
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


def make_server(command: list[str], *, host: str, port: int, public_url: str | None = None) -> Any:
    """A textual-serve Server that runs `command` per browser tab. Imported here, not at the
    top: aiohttp costs every other command start-up time it does not need."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    class ConsoleServer(Server):  # type: ignore[misc]
        """textual-serve writes its own address into the page for the websocket, which for
        --host 0.0.0.0 is ws://0.0.0.0:PORT — an address no panel can reach. Unless a public
        URL is given, each page names the host the browser asked for instead."""

        fixed_url = public_url

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

    return ConsoleServer(
        shlex.join(command), host=host, port=port, title=TITLE, public_url=public_url
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM. A port already taken is one line and exit status 1."""
    try:
        server = make_server(
            attach_command(args), host=args.host, port=args.port, public_url=args.public_url
        )
    except ImportError as e:
        print(
            f"floorconsole: serve needs textual-serve ({e}); pip install textual-serve",
            file=sys.stderr,
        )
        return 1
    socket = _socket_of(args)
    if socket is not None and not socket.exists():
        print(
            f"floorconsole: no engine at {socket} yet; each browser tab says so until one "
            f"runs (floorconsole run --headless -c PLANT.toml)",
            file=sys.stderr,
        )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"floorconsole: serving on {args.host}:{args.port} without TLS or a login page; "
            "anyone who reaches it sees the console as a viewer (F9 to log in)",
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
