"""Headless Chromium driven over the DevTools protocol with aiohttp (already a dependency of
textual-serve): open a page, read the xterm.js screen as text, take a screenshot. No browser
download, no Node: Debian's chromium and one websocket."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-device-scale-factor=1",
    "--font-render-hinting=none",
]

# textual.js keeps its xterm.js Terminal in a closure; it does assign it as `this.terminal =
# new Terminal(...)`, so an inherited setter on Object.prototype sees it go by and keeps it
# in window.__term (then steps aside: the property becomes an ordinary own property).
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(v) {
    Object.defineProperty(this, "terminal",
      {value: v, writable: true, configurable: true, enumerable: true});
    if (v && v.buffer && v.buffer.active) { window.__term = v; }
  },
});
"""

# One character per cell, so that row[x] is column x: "\0" for the right half of a wide
# character, "\ufffd" for a cell whose text is more than one UTF-16 unit.
SCREEN_TEXT = """
(() => {
  const t = window.__term;
  if (!t) { return null; }
  const b = t.buffer.active, rows = [];
  for (let y = 0; y < t.rows; y++) {
    const line = b.getLine(b.viewportY + y);
    let row = "";
    for (let x = 0; x < t.cols; x++) {
      const cell = line && line.getCell(x);
      const ch = cell ? cell.getChars() : "";
      row += !cell ? " " : cell.getWidth() === 0 ? "\\0" : ch.length === 0 ? " "
        : ch.length === 1 ? ch : "\\ufffd";
    }
    rows.push(row);
  }
  const screen = t.element.querySelector(".xterm-screen").getBoundingClientRect();
  return {cols: t.cols, rows: t.rows, lines: rows,
          box: [screen.left, screen.top, screen.width, screen.height]};
})()
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return next(
        (p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.path.exists(p)), None
    )


class Browser:
    """One headless Chromium with one page; use as an async context manager."""

    def __init__(
        self, executable: str, *, width: int, height: int, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.executable = executable
        self.width, self.height = width, height
        self.extra_args = extra_args
        self.requests: list[str] = []  # every URL the page asked for, in order
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.console: list[str] = []

    async def __aenter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(
            prefix="fc-chromium-", ignore_cleanup_errors=True
        )
        self.proc = subprocess.Popen(
            [
                self.executable,
                *CHROMIUM_ARGS,
                *self.extra_args,
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-port=0",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            port = await asyncio.to_thread(self._devtools_port)
            self.http = aiohttp.ClientSession()
            async with self.http.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json(content_type=None)
            page = next(t for t in targets if t["type"] == "page")
            self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            self._reader = asyncio.create_task(self._read())
            await self.send("Page.enable")
            await self.send("Runtime.enable")
            await self.send("Network.enable")
            await self.send(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=self.height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await self.send("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    def _devtools_port(self) -> int:
        """Chromium prints `DevTools listening on ws://127.0.0.1:PORT/...` on stderr."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line and self.proc.poll() is not None:
                break
            seen.append(line)
            if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                # keep draining stderr so chromium never blocks on a full pipe
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return int(m.group(1))
        raise RuntimeError("chromium did not start its DevTools endpoint:\n" + "".join(seen))

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data and (fut := self._pending.pop(data["id"], None)):
                if "error" in data:
                    fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                )
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(str(data["params"]["request"]["url"]))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(data["params"]["exceptionDetails"]))
        for fut in self._pending.values():
            fut.set_exception(RuntimeError("the browser went away"))

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page error: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def screen(self) -> dict[str, Any] | None:
        """The terminal as text: cols, rows, lines, and the screen's box in CSS pixels."""
        return await self.evaluate(SCREEN_TEXT)  # type: ignore[no-any-return]

    async def screenshot(self, path: Path) -> Path:
        r = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))
        return path

    async def __aexit__(self, *exc: object) -> None:
        if getattr(self, "ws", None) is not None:
            await self.ws.close()
        if getattr(self, "http", None) is not None:
            await self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self._profile.cleanup()
