"""The console app and its factory: the CLI and the tests build it the same way."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.screen import ModalScreen

from floorconsole.console import ConsoleAPI, Frame, viewer_session
from floorconsole.core.alarms import PRIORITIES, PRIORITY_RANK
from floorconsole.ui.format import set_console_zone
from floorconsole.ui.live import ShowsFrames
from floorconsole.ui.screens.overview import OverviewScreen
from floorconsole.ui.session import refusal_text, session_info, who_text, who_words
from floorconsole.ui.slow_link import CHECK_EVERY_S, SLOW_REFRESH_HZ, SlowLink
from floorconsole.ui.themes import DEFAULT_THEME, THEMES_DIR, cycle_order, load_themes
from floorconsole.ui.widgets.status_bars import Banner, EngineLine, control_text, engine_gone_text

KIOSK_STAYS = "kiosk: an admin PIN leaves it (F11)"
KIOSK_NOTE_S = 4.0
TOUCH_EVERY_S = 1.0  # api.touch at most this often: the idle lock needs seconds, not keys
# Signals a terminal's keys can raise when a driver lets them through; a kiosk ignores them.
KIOSK_IGNORED_SIGNALS = ("SIGINT", "SIGQUIT", "SIGTSTP")
RECONNECTED_NOTE_S = 5.0  # how long the engine line says the engine is back
# Annunciation: a new alarm at or above the console's priority rings the terminal bell, again
# every BELL_REPEAT_S until silenced (!) or acknowledged, and its banner tag flashes (on and off
# every FLASH_HALF_S: 1 Hz, within ISA-101's slow flash) until acknowledged.
ANNUNCIATE_CHOICES = ("off", *PRIORITIES)
BELL_REPEAT_S = 10.0
FLASH_HALF_S = 0.5
UNACKED = ("UNACK", "RTN_UNACK")
LOG_IN_AGAIN = "reconnected: log in again (F9)"
# After a hang-up, a dead terminal or SIGTERM the process is gone within this, whatever
# hangs in its cleanup (the promise is 2 s; the rest is for the kernel and the engine's
# notice of the closed socket).
EXIT_WITHIN_S = 1.6

log = logging.getLogger(__name__)


class FloorApp(App[None]):
    """Pulls a frame from EngineAPI on a tick and hands it to the screen on top. Holds the
    session token of whoever logged in at this console (None: a viewer); the engine decides
    what that session may do, the console only asks."""

    CSS_PATH = "styles.tcss"
    TITLE = "floorconsole"
    ENABLE_COMMAND_PALETTE = False  # ctrl+p opens nothing, kiosk or not
    BINDINGS = [
        Binding("f1,h,question_mark", "help", "Help", key_display="F1/h"),
        Binding("f6", "audit", "Audit", key_display="F6"),
        Binding("f9", "login", "Login", key_display="F9"),
        Binding("c", "control", "Control"),
        Binding("t", "cycle_theme", "Theme"),
        Binding("q,f10", "quit", "Quit", key_display="q/F10"),
        Binding("exclamation_mark", "silence", "Silence", key_display="!", show=False),
        Binding("f11", "leave_kiosk", "Leave kiosk", key_display="F11"),
        # In kiosk mode "quit" is switched off (check_action), so these keys fall through
        # to here and say how to leave; ctrl+q is Textual's own quit, ctrl+z a suspend.
        Binding("q,f10,ctrl+q,ctrl+z,ctrl+backslash", "kiosk_stays", show=False),
    ]

    def __init__(
        self,
        api: ConsoleAPI,
        *,
        theme: str = DEFAULT_THEME,
        refresh_hz: float = 4.0,
        themes_dir: Path = THEMES_DIR,
        export_dir: Path | None = None,
        kiosk: bool = False,
        owns_engine: bool = False,
        annunciate: str | None = None,
    ) -> None:
        self._loaded = load_themes(themes_dir)
        if kiosk:
            # Textual keeps the terminal's ctrl+c / ctrl+z / ctrl+\ signals off unless this
            # is set; a kiosk never lets them through.
            os.environ.pop("TEXTUAL_ALLOW_SIGNALS", None)
        super().__init__()
        self.api = api
        self.kiosk = kiosk
        # True under `run` and `demo`: the engine lives in this process and stops when this
        # console quits, so quitting asks first; an attached console just leaves.
        self.owns_engine = owns_engine
        if annunciate is None:
            annunciate = "high" if kiosk else "off"  # a panel on the floor rings by default
        if annunciate not in ANNUNCIATE_CHOICES:
            raise ValueError(
                f"annunciate {annunciate!r} is not one of {', '.join(ANNUNCIATE_CHOICES)}"
            )
        self.annunciate = annunciate
        self._rung: set[tuple[str, float | None]] = set()  # alarms (id, activation) rung for
        self._silenced: set[tuple[str, float | None]] = set()
        self._bell_t = float("-inf")
        self.bells = 0  # times the bell rang (the tests read it; the terminal hears it)
        self.flashing = False  # a new alarm at or above the priority is unacknowledged
        self.export_dir = export_dir or Path.cwd()
        self.refresh_hz = max(0.2, min(30.0, refresh_hz))
        self.slow_link = False  # the terminal cannot keep up: see floorconsole.ui.slow_link
        self.slow_link_state = SlowLink()
        self.last_frame: Frame | None = None
        self.pinned: list[str] = []  # signals pinned for the trend screen (T), four at most
        self.frames_shown = 0
        self.session: str | None = None
        self.session_info: dict[str, Any] = viewer_session()
        self._last_touch = 0.0
        self._kiosk_note_t = float("-inf")
        self._wanted_theme = theme
        self.stale = ""  # the engine-gone text of the last frame; "" while the engine answers
        self._back_t = float("-inf")  # when the engine came back (monotonic)
        self._back_note = ""
        self._asked_seen = ""  # the control request last told to the holder
        self._no_frame_said = False
        self.ending = ""  # why the console is ending on its own (hang-up, SIGTERM), if it is
        # An attached console counts its reconnections: one between two ticks is a return too.
        self._reconnects = self._reconnect_count()
        for t in self._loaded.themes.values():
            self.register_theme(t)
        if kiosk:
            self.add_class("kiosk")

    def get_driver_class(self) -> type[Driver]:
        """Textual's choice, except that its Linux terminal driver becomes ours, which ends
        the console when the terminal goes away (floorconsole.ui.terminal says why)."""
        chosen = super().get_driver_class()
        try:
            from textual.drivers.linux_driver import LinuxDriver
        except ImportError:  # no termios: not a Unix terminal
            return chosen
        if chosen is LinuxDriver:
            from floorconsole.ui.terminal import ConsoleDriver

            return ConsoleDriver
        return chosen

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Defaults come from the default theme file, so no colour is written in code.
        return dict(self._loaded.themes[DEFAULT_THEME].variables)

    def on_mount(self) -> None:
        for problem in self._loaded.problems:
            self.notify(f"{problem}; using the others", severity="warning", timeout=10)
        if self._wanted_theme in self._loaded.themes:
            self.theme = self._wanted_theme
        else:
            self.theme = DEFAULT_THEME
            self.notify(
                f"no theme {self._wanted_theme!r}; using {DEFAULT_THEME} (have: "
                f"{', '.join(cycle_order(self._loaded.themes))})",
                severity="warning",
            )
        if self.kiosk and not self.is_headless:
            self._ignore_terminal_signals()
        if not self.is_headless:
            self._end_on_signals()
        self.push_screen(OverviewScreen())
        self._tick_timer = self.set_interval(1.0 / self.refresh_hz, self.tick)
        self.call_after_refresh(self.tick)
        if not self.is_headless:
            self.set_interval(CHECK_EVERY_S, self._check_terminal_keeps_up)

    def _check_terminal_keeps_up(self, now: float | None = None) -> None:
        """The slow-link profile (floorconsole.ui.slow_link): entered when the terminal cannot
        take what the console writes, left when it keeps up again; said once each way."""
        busy = getattr(self._driver, "output_busy_s", None)
        if busy is None:
            return
        now = time.monotonic() if now is None else now
        change = self.slow_link_state.feed(float(busy), now)
        if change is None:
            return
        self.slow_link = change
        hz = min(self.refresh_hz, SLOW_REFRESH_HZ) if change else self.refresh_hz
        self._tick_timer.stop()
        self._tick_timer = self.set_interval(1.0 / hz, self.tick)
        log.warning(
            "console: the terminal %s: %g redraws a second",
            "cannot keep up (slow link)" if change else "keeps up again",
            hz,
        )
        if change:
            self.notify(
                f"slow terminal: {hz:g} redraw a second, no trends or flashing until it "
                "keeps up again",
                severity="warning",
                timeout=10,
            )
        else:
            self.notify(f"the terminal keeps up again: {hz:g} redraws a second", timeout=5)

    @staticmethod
    def _ignore_terminal_signals() -> None:
        for name in KIOSK_IGNORED_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    signal.signal(sig, signal.SIG_IGN)
                except (ValueError, OSError):  # not the main thread: the driver's ISIG-off holds
                    pass

    def _end_on_signals(self) -> None:
        """SIGTERM (a service manager, kill) and SIGHUP (the terminal hung up) end any
        console, kiosk or not, through end_console."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self.end_console, f"{sig.name} received", 128 + sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass

    def on_terminal_gone(self, why: str) -> None:
        """The terminal driver's word that the terminal is gone (end of input, EIO)."""
        self.end_console(why, 129)

    def end_console(self, why: str, code: int = 1) -> None:
        """End this console now, for a reason outside it: its session is logged out (which
        releases control) and the app exits; the process is gone within EXIT_WITHIN_S even
        if something in its cleanup hangs on the dead terminal."""
        if self.ending:
            return
        self.ending = why
        log.warning("console ending: %s", why)
        if not self.is_headless:
            timer = threading.Timer(EXIT_WITHIN_S, _exit_now, (why, code))
            timer.daemon = True
            timer.start()
        session, self.session = self.session, None
        if session is not None:
            try:
                self.api.logout(session)
            except Exception as e:  # noqa: BLE001 - the engine logs out a closed connection too
                log.warning("logout while ending: %s", e)
        self.exit(return_code=code)

    def tick(self) -> None:
        if self.ending or not self.screen_stack:  # a last tick while the console closes
            return
        try:
            frame = self.api.frame()
        except Exception as e:  # an attached console's engine gone before any frame came
            if self.last_frame is None:
                if not self._no_frame_said:
                    self._no_frame_said = True
                    self.notify(f"no frame from the engine yet: {e}", severity="error", timeout=10)
                return
            frame = replace(self.last_frame, stale=str(e) or "engine not reachable")
        self.last_frame = frame
        set_console_zone(frame.timezone)
        self._engine_state(frame)
        self._annunciate(frame)
        if not self.stale:  # a gone engine has no sessions to ask about: keep the token
            self._poll_session()
        self._control_asked(frame)
        screen = self.screen
        # A screen being pushed gets its first frame once it has composed (it asks for
        # app.last_frame in on_mount); before that its widgets do not exist yet.
        if isinstance(screen, ShowsFrames) and screen.is_mounted:
            try:
                screen.show_frame(frame)
            except NoMatches:
                return  # the screen's widgets are still being composed: the next tick draws
            self.frames_shown += 1

    # -- annunciation ---------------------------------------------------------------------

    def _annunciated(self, frame: Frame) -> list[tuple[str, float | None]]:
        """The unacknowledged alarms at or above this console's priority, as (id, activation)."""
        if self.annunciate == "off":
            return []
        floor = PRIORITY_RANK[self.annunciate]
        return [
            (a.id, a.activated)
            for a in frame.alarms
            if a.state in UNACKED and PRIORITY_RANK.get(a.priority, -1) >= floor
        ]

    def _annunciate(self, frame: Frame) -> None:
        """Ring for a new alarm (and again every BELL_REPEAT_S until silenced or acknowledged);
        flash the banner while any such alarm is unacknowledged."""
        if frame.stale:
            return  # the last frame, kept: what rang stays rung, nothing rings again on return
        now = time.monotonic()
        keys = self._annunciated(frame)
        active = set(keys)
        unsilenced = active - self._silenced
        new = active - self._rung
        self._rung &= active  # an alarm acknowledged and raised again rings again
        self._silenced &= active
        if new or (unsilenced and now - self._bell_t >= BELL_REPEAT_S):
            self._rung |= new
            self._bell_t = now
            self.bells += 1
            self.bell()
        self.flashing = bool(active)
        # on a slow link the banner stays lit instead: every flash costs a redraw
        dark = self.flashing and not self.slow_link and int(now / FLASH_HALF_S) % 2 == 1
        if self.screen.is_mounted:
            for banner in self.screen.query(Banner):
                banner.flash_dark = dark

    def action_silence(self) -> None:
        """!: the bell stops for the alarms ringing now; their banner flashes on until each is
        acknowledged (ISA-18.2: silencing is not acknowledging). A new alarm rings again."""
        frame = self.last_frame
        keys = set(self._annunciated(frame)) if frame is not None else set()
        if not keys - self._silenced:
            self.notify("nothing is ringing", timeout=3)
            return
        self._silenced |= keys
        self.notify(f"bell silenced for {len(keys)} alarm(s): acknowledge them on F2", timeout=5)

    # -- the engine gone and back ---------------------------------------------------------

    def _engine_state(self, frame: Frame) -> None:
        """Grey the whole console the tick a frame comes marked stale, and say so in words on
        every screen; when the engine answers again, say that for a few seconds."""
        was, self.stale = self.stale, frame.stale
        count = self._reconnect_count()
        bounced, self._reconnects = count > self._reconnects, count
        if self.stale and not was:
            self.add_class("-stale")
            self.remove_class("-reconnected")
            self.refresh_bindings()
        elif not self.stale and (was or bounced):
            self.remove_class("-stale")
            self._back_t = time.monotonic()
            self._back_note = ""
            if self.session is not None:
                # A restarted engine forgot every session: find out now, and say it once.
                info = self._session_now()
                if not info.get("user"):
                    self.session = None
                    self._back_note = LOG_IN_AGAIN
                    self.notify(LOG_IN_AGAIN, severity="warning", timeout=10)
            self.add_class("-reconnected")
            self.refresh_bindings()
        elif (
            not self.stale
            and self.has_class("-reconnected")
            and time.monotonic() - self._back_t >= RECONNECTED_NOTE_S
        ):
            self.remove_class("-reconnected")
        if self.stale or self.has_class("-reconnected"):
            line = self._engine_line()
            if line is not None:
                if self.stale:
                    line.gone(self.stale, frame.t_wall)
                else:
                    line.back(self._back_note)

    def _reconnect_count(self) -> int:
        return self.api.reconnected

    def _engine_line(self) -> EngineLine | None:
        """The engine line of the screen showing (mounted the first time it is needed there);
        a dialog has none: the screen under it shows its own."""
        screen = self.screen
        if isinstance(screen, ModalScreen) or not screen.is_mounted:
            return None
        found = screen.query_children(EngineLine)
        if found:
            return found.first()
        line = EngineLine()
        screen.mount(line)
        return line

    # -- control: one console at a time writes ---------------------------------------------

    @property
    def control(self) -> Text:
        """The header's words for who holds control."""
        frame = self.last_frame
        if frame is None:
            return Text()
        return control_text(
            frame,
            str(self.session_info.get("user") or ""),
            self.theme_variables,
            mine=self._holds_control(frame),
            narrow=self.size.width < 90,
        )

    def _control_asked(self, frame: Frame) -> None:
        """Tell the holder, once, on whatever screen is showing, that someone asks."""
        me = str(self.session_info.get("user") or "")
        asker = frame.control_requested_by if self._holds_control(frame) else ""
        if asker and asker != me and asker != self._asked_seen:
            self.notify(
                f"{asker} asks for control: press c to release it (or keep working)",
                severity="warning",
                timeout=15,
            )
        self._asked_seen = asker

    def _holds_control(self, frame: Frame | None) -> bool:
        """This console holds control. An engine that says so per session is believed (the
        same user may be logged in at two consoles); otherwise the holder's name decides."""
        if "holds_control" in self.session_info:
            return bool(self.session_info["holds_control"])
        me = str(self.session_info.get("user") or "")
        return bool(me) and frame is not None and frame.control_holder == me

    def _control_choice(self) -> str:
        """What c would do now, in the words of F9's menu button."""
        frame = self.last_frame
        if self._holds_control(frame):
            return "Release control"
        if frame is None or not frame.control_holder:
            return "Take control"
        return "Ask for control"

    def action_control(self) -> None:
        """c: take control when it is free, ask for it when another console holds it, release
        it when this console holds it."""
        frame = self.last_frame
        me = str(self.session_info.get("user") or "")
        if not me:
            self.notify("control goes to an engineer: log in with F9 first", severity="warning")
            return
        holder = frame.control_holder if frame is not None else ""
        if self._holds_control(frame):
            self.send_command("control.release")
        elif not holder:
            self.send_command("control.take")
        elif frame is not None and frame.control_requested_by == me:
            self.notify(
                f"you asked {holder} for control already; {holder} releases it with c",
                severity="warning",
            )
        else:
            self.send_command("control.request")

    def _offer_request(self, result: dict[str, Any]) -> None:
        """A command refused because another console holds control: offer to ask for it."""
        from floorconsole.ui.screens.snapshots import ConfirmDialog

        if isinstance(self.screen, ConfirmDialog):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_command("control.request")

        message = str(result.get("message") or "control is held on another console")
        self.push_screen(ConfirmDialog(f"{message}\n\nAsk for control?"), answered)

    # -- the session ----------------------------------------------------------------------

    def _session_now(self) -> dict[str, Any]:
        try:
            return session_info(self.api, self.session)
        except Exception:  # an engine that lost its session store: show a viewer, keep going
            return viewer_session()

    def _poll_session(self) -> None:
        info = self._session_now()
        if self.session is not None and not info.get("user"):
            # The engine no longer knows the token (expired, engine restarted).
            self.session = None
            self.notify("the session ended: logged out", severity="warning")
        if info != self.session_info:
            self.session_info = info
            self.refresh_bindings()

    @property
    def who(self) -> Text:
        """The header's words for whoever is at this console: 'ENGINEER eng1', 'VIEWER'."""
        return who_text(self.session_info, self.theme_variables)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):
            self._user_active()
        await super().on_event(event)

    def _user_active(self) -> None:
        """Someone pressed a key or tapped: tell the engine, at most once a second, so the
        session's idle lock starts again."""
        now = time.monotonic()
        if self.session is None or self.stale or now - self._last_touch < TOUCH_EVERY_S:
            return  # a gone engine is not asked anything: the reconnect says what became of it
        self._last_touch = now
        try:
            self.api.touch(self.session)
        except Exception:  # the next tick's session poll shows what became of it
            pass

    def action_login(self) -> None:
        from floorconsole.ui.screens.login import AccountDialog, LoginDialog

        if isinstance(self.screen, LoginDialog | AccountDialog):
            return
        if self.session is None:
            self.push_screen(LoginDialog(), self._logged_in)
            return

        def chosen(what: str | None) -> None:
            if what == "unlock":
                self.run_worker(
                    self.ask_pin("Your PIN unlocks this console."),
                    group="unlock",
                    exit_on_error=False,
                )
            elif what == "logout":
                self.log_out()
            elif what == "switch":
                self.log_out(quiet=True)
                self.push_screen(LoginDialog(), self._logged_in)
            elif what == "control":
                self.action_control()

        self.push_screen(
            AccountDialog(
                who_words(self.session_info),
                bool(self.session_info.get("locked")),
                self._control_choice(),
            ),
            chosen,
        )

    def _logged_in(self, result: dict[str, Any] | None) -> None:
        if not result or not result.get("session"):
            return
        self.session = str(result["session"])
        self._last_touch = time.monotonic()
        self.tick()
        self.notify(f"logged in: {who_words(self.session_info)}")

    def log_out(self, *, quiet: bool = False) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                self.api.logout(session)
            except Exception as e:
                self.notify(f"logout: {e}", severity="warning")
        if not quiet:
            self.notify("logged out: viewer")
        self.tick()

    async def ask_pin(self, reason: str) -> bool:
        """The PIN dialog over whatever is showing; True once the engine took the PIN."""
        from floorconsole.ui.screens.login import PinDialog

        if self.session is None:
            return False
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def done(ok: bool | None) -> None:
            if not answer.done():
                answer.set_result(bool(ok))

        self.push_screen(
            PinDialog(self.session, str(self.session_info.get("user") or ""), reason), done
        )
        ok = await answer
        self.tick()
        return ok

    # -- commands -------------------------------------------------------------------------

    async def command(self, name: str, **args: Any) -> dict[str, Any]:
        """api.command with this console's session. When the engine wants the PIN again (a
        critical command, or the session idle-locked), ask for it and try once more. While the
        engine is gone nothing is sent: the answer is the engine line's own words. When
        another console holds control, offer to ask for it."""
        if self.stale:
            return {
                "ok": False,
                "refused": "stale",
                "message": f"{name}: not sent: {engine_gone_text(self.stale)}",
            }
        result = await asyncio.to_thread(self._command_once, name, args)
        refused = result.get("refused")
        if refused in ("pin", "locked") and self.session is not None:
            reason = (
                f"{name}: {result.get('message', '')}\nThe console is locked: your PIN unlocks it."
                if refused == "locked"
                else f"{name}: {result.get('message', '')}\nThis needs your PIN again."
            )
            if not await self.ask_pin(reason):
                return {**result, "message": f"{name}: not done (no PIN entered)"}
            result = await asyncio.to_thread(self._command_once, name, args)
        if result.get("refused") == "held" and name != "control.request":
            self._offer_request(result)
        return result

    def _command_once(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self.api.command(name, session=self.session, **args))
        except Exception as e:  # a console attached over a socket can lose it mid-command
            return {"ok": False, "message": f"{name} failed: {e}"}

    def send_command(
        self, name: str, *, then: Callable[[dict[str, Any]], None] | None = None, **args: Any
    ) -> None:
        """Run a command (with the PIN prompt when needed) without blocking the screen; say
        what came of it; hand the answer to `then`."""

        async def flow() -> None:
            result = await self.command(name, **args)
            self.notify(
                refusal_text(name, result),
                severity="information" if result.get("ok") else "error",
                timeout=8 if result.get("ok") else 10,
            )
            if then is not None:
                then(result)
            self.tick()

        self.run_worker(flow(), group="command", exit_on_error=False)

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quit":
            return not self.kiosk  # False: hidden, and the key falls through to kiosk_stays
        if action in ("leave_kiosk", "kiosk_stays"):
            return self.kiosk
        if action == "control":
            # Only someone logged in can hold control: a viewer's footer does not offer it.
            return bool(self.session_info.get("user"))
        return True

    async def action_quit(self) -> None:
        if self.kiosk:
            self.action_kiosk_stays()
            return
        if not self.owns_engine:
            await super().action_quit()  # an attached console leaves; the engine runs on
            return
        self.ask_stop_engine()

    def ask_stop_engine(self) -> None:
        """The engine stops with this console: ask first, saying who else is attached, then
        stop it (api.stop_engine: audited with who asked, before anything stops) and leave."""
        from floorconsole.ui.screens.stop_engine import StopEngineDialog

        if isinstance(self.screen, StopEngineDialog):
            return
        who = str(self.session_info.get("user") or "") or f"{getpass.getuser()} (viewer)"
        others = self.last_frame.consoles if self.last_frame is not None else 0

        def answered(stop: bool | None) -> None:
            if stop:
                self.run_worker(
                    self._stop_engine(self.session, None), group="stop", exit_on_error=False
                )

        self.push_screen(StopEngineDialog(others, who), answered)

    async def _stop_engine(self, acting: str | None, temporary: str | None) -> None:
        result = await asyncio.to_thread(self._stop_command, acting)
        if temporary is not None:
            self._logout_quietly(temporary)
        if not result.get("ok"):
            self.notify(refusal_text("engine.stop", result), severity="error", timeout=10)
            return
        self.exit()

    def _stop_command(self, session: str | None) -> dict[str, Any]:
        try:
            # Only the engine's own API has it (owns_engine is set by run and demo).
            return dict(self.api.stop_engine(session))  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - said on screen; the console stays
            return {"ok": False, "message": f"engine.stop failed: {e}"}

    def _logout_quietly(self, session: str) -> None:
        try:
            self.api.logout(session)
        except Exception:  # noqa: BLE001 - a session the engine lost needs no logout
            pass

    def action_kiosk_stays(self) -> None:
        # One note at a time: a fist on the keypad must not stack toasts over the header.
        now = time.monotonic()
        if now - self._kiosk_note_t >= KIOSK_NOTE_S:
            self._kiosk_note_t = now
            self.notify(KIOSK_STAYS, severity="warning", timeout=KIOSK_NOTE_S)

    def action_help_quit(self) -> None:  # ctrl+c
        if self.kiosk:
            self.action_kiosk_stays()
            return
        super().action_help_quit()

    def action_suspend_process(self) -> None:
        if self.kiosk:
            self.action_kiosk_stays()
            return
        super().action_suspend_process()

    def action_command_palette(self) -> None:
        if self.kiosk:
            self.action_kiosk_stays()
            return
        super().action_command_palette()

    def action_leave_kiosk(self) -> None:
        from floorconsole.ui.screens.login import LoginDialog

        if not self.kiosk or isinstance(self.screen, LoginDialog):
            return

        def done(result: dict[str, Any] | None) -> None:
            if not (result and result.get("ok")):
                return
            session = str(result.get("session") or "") or None
            if self.owns_engine:
                # The dialog said that leaving stops the engine; the admin's PIN confirmed it.
                self.run_worker(
                    self._stop_engine(session, session), group="stop", exit_on_error=False
                )
                return
            if session:
                self._logout_quietly(session)
            self.exit()

        note = ""
        if self.owns_engine:
            from floorconsole.ui.screens.stop_engine import kiosk_stop_note

            note = kiosk_stop_note(self.last_frame.consoles if self.last_frame else 0)
        self.push_screen(LoginDialog(leave_kiosk=True, note=note), done)

    def action_help(self) -> None:
        from floorconsole.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_audit(self) -> None:
        from floorconsole.ui.screens.audit import AuditScreen

        if not isinstance(self.screen, AuditScreen):
            self.push_screen(AuditScreen())

    def action_cycle_theme(self) -> None:
        order = cycle_order(self._loaded.themes)
        nxt = order[(order.index(self.theme) + 1) % len(order)] if self.theme in order else order[0]
        self.theme = nxt
        self.notify(f"theme {nxt}")
        self.tick()


def _exit_now(why: str, code: int) -> None:
    """The last resort of end_console: cleanup hung, the process ends here."""
    log.error("console did not end within %g s of %s: exiting now", EXIT_WITHIN_S, why)
    logging.shutdown()
    os._exit(code)


def make_app(
    api: ConsoleAPI,
    *,
    theme: str = DEFAULT_THEME,
    refresh_hz: float = 4.0,
    themes_dir: Path = THEMES_DIR,
    export_dir: Path | None = None,
    kiosk: bool = False,
    owns_engine: bool = False,
    annunciate: str | None = None,
) -> FloorApp:
    """The one way to build the console: the CLI and the tests alike."""
    return FloorApp(
        api,
        theme=theme,
        refresh_hz=refresh_hz,
        themes_dir=themes_dir,
        export_dir=export_dir,
        kiosk=kiosk,
        owns_engine=owns_engine,
        annunciate=annunciate,
    )
