"""The session dialogs: log in (also how an admin leaves kiosk mode), the PIN prompt for a
critical or locked command, and the F9 choices of someone logged in."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from floorconsole.ui.session import demo_hint

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 64; max-width: 100%; height: auto; border: round $primary;
                     border-title-align: left; background: $surface; padding: 0 1; }}
{name} Input {{ margin: 0 0 0 0; }}
{name} .error {{ color: $error; text-style: bold; height: auto; }}
{name} .hint {{ color: $text-muted; height: auto; }}
{name} Horizontal {{ height: auto; }}
{name} Button {{ margin: 0 1 0 0; }}
"""


class LoginDialog(ModalScreen[dict[str, Any] | None]):
    """A user name and a masked PIN; Enter logs in, Esc cancels. Dismissed with the engine's
    login answer. With leave_kiosk, the login is an admin's and is followed at once by the
    kiosk.leave command: dismissed with that command's answer only when the engine says ok."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="Esc")]
    DEFAULT_CSS = DIALOG_CSS.format(name="LoginDialog")

    def __init__(self, *, leave_kiosk: bool = False, note: str = "") -> None:
        super().__init__()
        self.leave_kiosk = leave_kiosk
        self.note = note  # what leaving also does (stops the engine under run/demo)
        self.busy = False

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "Leave kiosk mode" if self.leave_kiosk else "Log in"
        with box:
            yield Static(
                "An admin's name and PIN leave kiosk mode."
                if self.leave_kiosk
                else "Your user name and PIN.",
                classes="hint",
            )
            if self.note:
                yield Static(self.note, id="note", classes="error")
            yield Input(placeholder="user name", id="user", max_length=32)
            yield Input(placeholder="PIN (digits)", id="pin", password=True, max_length=12)
            yield Static("", id="error", classes="error")
            hint = self._demo_hint()
            if hint:
                yield Static(hint, id="demo-users", classes="hint")
            yield Static(
                "Enter " + ("leaves kiosk" if self.leave_kiosk else "logs in") + " · Esc cancels",
                classes="hint",
            )

    def _demo_hint(self) -> str:
        get = getattr(self.app.api, "demo_users", None)
        try:
            return demo_hint(get()) if get is not None else ""
        except Exception:  # an engine that cannot say: no hint, the login still works
            return ""

    def on_mount(self) -> None:
        self.query_one("#user", Input).focus()

    @on(Input.Submitted, "#user")
    def _user_done(self, event: Input.Submitted) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def _pin_done(self, event: Input.Submitted) -> None:
        user = self.query_one("#user", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not user:
            self._error("type a user name first")
            self.query_one("#user", Input).focus()
            return
        if not pin:
            self._error("type the PIN")
            return
        if self.busy:
            return
        self.busy = True
        self._error("checking…")
        self._login(user, pin)

    @work(thread=True, exclusive=True, exit_on_error=False, group="login")
    def _login(self, user: str, pin: str) -> None:
        # A PIN check is a deliberately slow hash: keep it off the UI thread.
        api = self.app.api
        try:
            result = dict(api.login(user, pin))
            if result.get("ok") and self.leave_kiosk:
                session = result.get("session")
                leave = dict(api.command("kiosk.leave", session=session))
                if session and not leave.get("ok"):
                    api.logout(session)
                # Left open when the engine agreed: the console may stop its engine next, in
                # this admin's name; it logs the session out whatever the answer.
                result = {
                    **leave,
                    "user": result.get("user", user),
                    "session": session if leave.get("ok") else None,
                }
        except Exception as e:  # a console attached over a socket can lose it mid-call
            result = {"ok": False, "message": f"login failed: {e}"}
        self.app.call_from_thread(self._answered, result)

    def _answered(self, result: dict[str, Any]) -> None:
        self.busy = False
        if result.get("ok"):
            self.dismiss(result)
            return
        self._error(str(result.get("message") or "refused"))
        pin = self.query_one("#pin", Input)
        pin.value = ""
        pin.focus()

    def _error(self, text: str) -> None:
        self.query_one("#error", Static).update(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PinDialog(ModalScreen[bool]):
    """The PIN of the user logged in, masked: unlocks an idle-locked session and makes the PIN
    fresh for a critical command. Dismissed with True once the engine took it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="Esc")]
    DEFAULT_CSS = DIALOG_CSS.format(name="PinDialog")

    def __init__(self, session: str, user: str, reason: str) -> None:
        super().__init__()
        self.session = session
        self.user = user
        self.reason = reason
        self.busy = False

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = f"PIN for {self.user}" if self.user else "PIN"
        with box:
            yield Static(self.reason, id="reason")
            yield Input(placeholder="PIN (digits)", id="pin", password=True, max_length=12)
            yield Static("", id="error", classes="error")
            yield Static("Enter goes on · Esc cancels (nothing is done)", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def _submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            self.query_one("#error", Static).update("type the PIN")
            return
        if self.busy:
            return
        self.busy = True
        self.query_one("#error", Static).update("checking…")
        self._unlock(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="unlock")
    def _unlock(self, pin: str) -> None:
        try:
            result = dict(self.app.api.unlock(self.session, pin))
        except Exception as e:
            result = {"ok": False, "message": f"unlock failed: {e}"}
        self.app.call_from_thread(self._answered, result)

    def _answered(self, result: dict[str, Any]) -> None:
        self.busy = False
        if result.get("ok"):
            self.dismiss(True)
            return
        self.query_one("#error", Static).update(str(result.get("message") or "wrong PIN"))
        pin = self.query_one("#pin", Input)
        pin.value = ""
        pin.focus()

    def action_cancel(self) -> None:
        self.dismiss(False)


class AccountDialog(ModalScreen[str | None]):
    """F9 when someone is logged in: unlock (when locked), log out, switch user, or take, ask
    for or release control (the c key's job, here as a button for a touch panel).
    Dismissed with "unlock", "logout", "switch", "control" or None."""

    BINDINGS = [
        Binding("escape", "choose(None)", "Cancel", key_display="Esc"),
        Binding("l", "choose('logout')", "Log out"),
        Binding("s", "choose('switch')", "Switch user"),
        Binding("u", "choose('unlock')", "Unlock", show=False),
        Binding("c", "choose('control')", "Control", show=False),
    ]
    DEFAULT_CSS = DIALOG_CSS.format(name="AccountDialog")

    def __init__(self, who: str, locked: bool, control: str = "") -> None:
        super().__init__()
        self.who = who
        self.locked = locked
        self.control = control  # "Take control", "Ask for control", "Release control" or ""

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = self.who
        with box:
            yield Static(
                f"Logged in: {self.who}" + (" (locked: your PIN unlocks it)" if self.locked else "")
            )
            with Horizontal():
                if self.locked:
                    yield Button("Unlock (u)", id="unlock", variant="primary")
                yield Button("Log out (l)", id="logout", variant="warning")
                yield Button("Switch user (s)", id="switch")
                yield Button("Cancel (Esc)", id="cancel")
            if self.control:  # its own row: four buttons do not fit 64 cells
                with Horizontal():
                    yield Button(f"{self.control} (c)", id="control")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, what: str | None) -> None:
        if what == "unlock" and not self.locked or what == "control" and not self.control:
            return
        self.dismiss(what)
