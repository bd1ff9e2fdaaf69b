"""The console's terminal driver: Textual's LinuxDriver, told what to do when the terminal goes
away.

Textual 8.2's LinuxDriver reads keys on a thread that selects on stdin and reads what is
ready. When the terminal is gone that loop never ends: a hung-up tty reads as end of input
(0 bytes) at once, which the driver takes for "stdin is piped" and selects again, so it
spins (seen at ~80% CPU on a deleted pty, 37,891 read + select calls in 3 s); a pty whose
master closed reads as EIO, which ends the thread in App.panic — and the writer thread then
dies on EIO too, leaving its bounded queue to fill and the app blocked on its next write,
so the process never ends. Nothing in Textual's API covers either case, so this driver is
installed by FloorApp.get_driver_class (App's documented way to choose a driver) in place
of LinuxDriver, and overrides run_input_thread (a copy of Textual's loop with the two cases
handled) and the file its writer thread writes to (failures swallowed and reported once).
Both call `on_terminal_gone(why)` on the app's loop; the app logs out and exits.

Every write passes through a ScreenDiff (floorconsole.ui.screen_diff), which sends only the
cells that changed since the last frame: a tenth of the bytes Textual's whole-line repaints
cost, which is what a console over SSH or a modem link pays. FLOORCONSOLE_SCREEN_DIFF=0 in
the environment turns it off (Textual's own output, as written), to compare or to rule it out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import selectors
import threading
import time
from codecs import getincrementaldecoder
from typing import IO, Any

from textual._loop import loop_last
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from floorconsole.ui.screen_diff import ScreenDiff

log = logging.getLogger(__name__)

# A read that fails with one of these means the terminal is gone, not that a key is odd.
GONE_ERRNOS = frozenset({errno.EIO, errno.EBADF, errno.ENXIO, errno.ENODEV, errno.EPIPE})


class ConsoleDriver(LinuxDriver):
    """LinuxDriver that ends the app when its terminal goes away, never spinning."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.terminal_gone = ""  # why, once the terminal is gone
        self.screen_diff: ScreenDiff | None = (
            None if os.environ.get("FLOORCONSOLE_SCREEN_DIFF", "1") == "0" else ScreenDiff()
        )
        self._diff_lock = threading.Lock()
        # Textual types _file as the real stdout; its writer thread needs only write/flush
        self._file = _TerminalOut(self._file, self._gone)  # type: ignore[assignment]

    def write(self, data: str) -> None:
        if self.terminal_gone:  # nobody to draw for; the writer's queue must not fill
            return
        diff = self.screen_diff
        if diff is None:
            super().write(data)
            return
        # One diff at a time, queued in the order diffed (Textual writes from its loop; the
        # lock costs nothing there and keeps a write from another thread from interleaving).
        with self._diff_lock:
            # The size the terminal has now (one ioctl): a new one forgets what it showed.
            diff.resize(*self._terminal_size())
            data = diff(data)
            if data:
                super().write(data)

    @property
    def output_busy_s(self) -> float:
        """Seconds the writer has spent writing to the terminal (see floorconsole.ui.slow_link)."""
        out = self._file
        return float(out.busy_s) if isinstance(out, _TerminalOut) else 0.0

    def _terminal_size(self) -> tuple[int, int]:
        """The size of the terminal written to; (0, 0) when it cannot be asked."""
        try:
            size = os.get_terminal_size(self._file.fileno())  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):  # no file (None) or not a terminal
            return 0, 0
        return size.columns, size.lines

    def _gone(self, why: str) -> None:
        """From any thread: the terminal is gone. Stops reading and tells the app once."""
        if self.terminal_gone:
            return
        self.terminal_gone = why
        self.exit_event.set()
        tell = getattr(self._app, "on_terminal_gone", None)
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        if tell is None or loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(tell, why)
        except RuntimeError:  # the loop closed meanwhile: the app is ending anyway
            pass

    def run_input_thread(self) -> None:
        """Textual's input loop, with end of input and a failed read ending it (and the app)
        instead of spinning or panicking."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        fileno = self.fileno
        parser = XTermParser(self._debug)
        feed, tick = parser.feed, parser.tick
        decode = getincrementaldecoder("utf-8")().decode

        def process(events: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> bool:
            """False when the terminal is gone."""
            for last, (_key, mask) in loop_last(events):
                if mask & selectors.EVENT_READ:
                    try:
                        data = os.read(fileno, 1024 * 4)
                    except OSError as e:
                        if e.errno in GONE_ERRNOS:
                            self._gone(f"terminal gone: reading it failed ({os.strerror(e.errno)})")
                            return False
                        raise
                    if not data:
                        self._gone("terminal gone: end of input (hang-up)")
                        return False
                    for event in feed(decode(data, final=final and last)):
                        self.process_message(event)
            for event in tick():
                self.process_message(event)
            return True

        try:
            while not self.exit_event.is_set():
                if not process(selector.select(0.1)):
                    return
            selector.unregister(self.fileno)
            process(selector.select(0.1), final=True)
        finally:
            selector.close()
            try:
                for _event in feed(""):
                    pass
            except (EOFError, ParseError):
                pass


class _TerminalOut:
    """The terminal as the writer thread sees it: a write that fails because the terminal is
    gone is reported (once) and dropped, so the thread lives on and its queue drains."""

    def __init__(self, file: IO[str] | Any, gone: Any) -> None:
        self._f = file
        self._gone = gone
        self._failed = False
        # Seconds spent in write and flush: blocked, mostly, when the terminal cannot take
        # what we send as fast as we send it (the slow-link profile reads it; one writer
        # thread adds, the app's loop reads a float: atomic under the GIL).
        self.busy_s = 0.0

    def write(self, text: str) -> int:
        if self._failed:
            return len(text)
        t0 = time.monotonic()
        try:
            return int(self._f.write(text))
        except (OSError, ValueError) as e:  # ValueError: the file was closed
            self._fail(e)
            return len(text)
        finally:
            self.busy_s += time.monotonic() - t0

    def flush(self) -> None:
        if self._failed:
            return
        t0 = time.monotonic()
        try:
            self._f.flush()
        except (OSError, ValueError) as e:
            self._fail(e)
        finally:
            self.busy_s += time.monotonic() - t0

    def _fail(self, e: Exception) -> None:
        self._failed = True
        why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        self._gone(f"terminal gone: writing to it failed ({why})")

    def fileno(self) -> int:
        return int(self._f.fileno())

    def isatty(self) -> bool:
        return bool(self._f.isatty())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)
