"""The write-by-hand dialog: a value to a Modbus coil or holding register, armed, then confirmed
within the engine's time (control.arm, then control.write); the engine checks every step."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from floorconsole.console import Frame, SignalView
from floorconsole.ui.format import age_text
from floorconsole.ui.live import ShowsFrames, console_app

# SignalView.source of a Modbus signal, as the engine writes it: "drive1 hr:0 float32".
_MODBUS_SOURCE = re.compile(
    r"(?P<device>\S+) (?P<table>co|hr|ir|di):(?P<address>\d+)"
    r"(?: (?P<type>\S+))?"
)
# ... and of an OPC UA signal: "press2 ns=2;s=Line2.Press.StrokeRate" (its NodeId).
_OPCUA_SOURCE = re.compile(r"(?P<device>\S+) (?P<node>(?:ns=\d+;)?[isgb]=.+)")
_NODE_ID = re.compile(r"(?:ns=\d+;)?[isgb]=.+")
_ADDRESS = re.compile(r"(co|hr|ir|di):\d+")
TRUE_WORDS = ("true", "1", "on", "yes")
FALSE_WORDS = ("false", "0", "off", "no")
COUNTDOWN_TICK_S = 0.25
ARMED_SHAPE = "▲"
DONE_SHAPE = "✓"
REFUSED_SHAPE = "✕"


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """Where a hand write goes, as the plant file names it; any field may be "" (to be typed)."""

    device: str = ""
    address: str = ""  # "co:10", "hr:0"
    type: str = ""  # "" lets the engine choose: bool for co, uint16 for hr

    @property
    def table(self) -> str:
        return self.address.split(":", 1)[0] if ":" in self.address else ""


def target_of(view: SignalView | None) -> WriteTarget:
    """The device, address and type of a Modbus signal, read from its source text. A signal on
    a read-only table (ir, di) gives only its device; one from MQTT or a model, nothing."""
    if view is None:
        return WriteTarget()
    m = _MODBUS_SOURCE.fullmatch(view.source.strip())
    if m is None:
        ua = _OPCUA_SOURCE.fullmatch(view.source.strip())
        # an OPC UA node: its NodeId is the address, the server knows its type
        return WriteTarget(ua["device"], ua["node"]) if ua else WriteTarget()
    if m["table"] not in ("co", "hr"):
        return WriteTarget(device=m["device"])
    typ = m["type"] or ""
    return WriteTarget(
        m["device"], f"{m['table']}:{m['address']}", "" if m["table"] == "co" else typ
    )


def parse_value(text: str, table: str) -> bool | int | float:
    """What was typed, as the engine takes it: true/false for a coil, a number for a register.
    ValueError with what is expected otherwise."""
    word = text.strip().lower()
    if not word:
        raise ValueError("type a value first" + (": true or false" if table == "co" else ""))
    if table == "co":
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{text.strip()!r}: a coil takes true or false (1/0, on/off)")
    if table not in ("co", "hr") and word in ("true", "false", "on", "off"):
        return word in ("true", "on")  # an OPC UA node: the server converts to its type
    try:
        return int(word)
    except ValueError:
        pass
    try:
        number = float(word)
    except ValueError:
        raise ValueError(f"{text.strip()!r}: a holding register takes a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{text.strip()!r}: a holding register takes a finite number")
    return number


def value_now(frame: Frame | None, device: str, address: str) -> SignalView | None:
    """The signal the engine polls from this device and address, if there is one."""
    if frame is None or not device or not address:
        return None
    prefix = f"{device} {address}"
    for s in frame.signals:
        if s.source == prefix or s.source.startswith(prefix + " "):
            return s
    return None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ManualWriteDialog(ShowsFrames, ModalScreen[None]):
    """Device, address, type and value; Enter arms (control.arm), then y or Enter within the
    engine's time writes (control.write) and shows the value before and after. Esc cancels an
    arm (nothing is written) or closes. Every refusal is the engine's own message."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", key_display="Esc"),
        Binding("y,enter", "confirm", "Confirm", key_display="y/Enter"),
    ]

    DEFAULT_CSS = """
    ManualWriteDialog { align: center middle; }
    ManualWriteDialog > Vertical { width: 66; max-width: 100%; height: auto;
                                   border: round $primary; border-title-align: left;
                                   background: $surface; padding: 0 1; }
    ManualWriteDialog Horizontal { height: auto; }
    ManualWriteDialog .label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ManualWriteDialog Input { width: 1fr; margin: 0 1 0 0; }
    ManualWriteDialog #device { width: 14; }
    ManualWriteDialog #address { width: 10; }
    ManualWriteDialog #type { width: 1fr; }
    ManualWriteDialog .hint { color: $text-muted; height: auto; }
    ManualWriteDialog #state { height: auto; min-height: 1; }
    ManualWriteDialog #state.-armed { border: heavy $alarm-high; color: $alarm-high;
                                      text-style: bold; padding: 0 1; }
    ManualWriteDialog #state.-refused { color: $error; text-style: bold; }
    ManualWriteDialog Button { margin: 0 1 0 0; }
    """

    def __init__(self, target: WriteTarget, *, signal_id: str = "") -> None:
        super().__init__()
        self.target = target
        self.signal_id = signal_id
        self.phase = "edit"  # edit | arming | armed | writing | done
        self.armed: dict[str, Any] = {}  # what was armed: device, address, type, value
        self.token = ""
        self.deadline = 0.0  # monotonic time the arm runs out, as this console counts it
        self.message = ""  # the engine's last words, as shown
        self.result: dict[str, Any] = {}
        self.state_text = ""  # the state line in plain words: the engine's, the countdown's

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "Write by hand" + (f" · {self.signal_id}" if self.signal_id else "")
        with box:
            yield Static(
                "A coil (co) or holding register (hr) of a device. Enter arms; then "
                "confirm within the engine's time.",
                classes="hint",
            )
            with Horizontal():
                yield Static("device", classes="label")
                yield Input(self.target.device, placeholder="drive1", id="device", compact=True)
                yield Static("address", classes="label")
                yield Input(self.target.address, placeholder="co:11", id="address", compact=True)
                yield Static("type", classes="label")
                yield Input(self.target.type, placeholder="auto", id="type", compact=True)
            with Horizontal():
                yield Static("value ", classes="label")
                yield Input(placeholder=self._value_hint(), id="value", compact=True)
            yield Static("", id="now")
            yield Static("", id="state")
            with Horizontal():
                yield Button("Arm (Enter)", id="arm", compact=True, variant="warning")
                yield Button(
                    "Confirm (y)", id="confirm", compact=True, variant="error", disabled=True
                )
                yield Button("Cancel (Esc)", id="cancel", compact=True)
            yield Static("", id="keys", classes="hint")

    def on_mount(self) -> None:
        self.query_one(
            "#value"
            if self.target.device and self.target.address
            else "#device"
            if not self.target.device
            else "#address",
            Input,
        ).focus()
        self._show_keys()
        self._show_now(console_app(self).last_frame)
        self.set_interval(COUNTDOWN_TICK_S, self._countdown)

    # -- what is typed --------------------------------------------------------------------

    def _field(self, name: str) -> str:
        return self.query_one(f"#{name}", Input).value.strip()

    def _value_hint(self) -> str:
        table = self.target.table
        return (
            "true or false"
            if table == "co"
            else "a number"
            if table == "hr"
            else "true/false for co, a number for hr"
        )

    @on(Input.Changed, "#address")
    def _address_changed(self, event: Input.Changed) -> None:
        table = event.value.strip().split(":", 1)[0]
        self.query_one("#value", Input).placeholder = (
            "true or false"
            if table == "co"
            else "a number"
            if table == "hr"
            else "true/false for co, a number for hr"
        )
        self._show_now(console_app(self).last_frame)

    @on(Input.Changed, "#device")
    def _device_changed(self, event: Input.Changed) -> None:
        self._show_now(console_app(self).last_frame)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "value":
            self.action_arm()
            return
        order = ["device", "address", "type", "value"]
        nxt = order[order.index(event.input.id or "device") + 1]
        self.query_one(f"#{nxt}", Input).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "arm":
            self.action_arm()
        elif event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    # -- arm ------------------------------------------------------------------------------

    def action_arm(self) -> None:
        if self.phase not in ("edit", "done"):
            return
        device, address, typ = (
            self._field("device"),
            self._field("address").lower(),
            self._field("type"),
        )
        problem = ""
        if not device:
            problem = "type the device (its id in the plant file, e.g. drive1)"
        elif not (_ADDRESS.fullmatch(address) or _NODE_ID.fullmatch(address)):
            problem = (
                f"{address or 'the address'}: type it as co:N or hr:N (0-based), "
                "or an OPC UA NodeId (ns=2;s=...)"
            )
        if problem:
            self._state(f"{REFUSED_SHAPE} {problem}", "-refused")
            return
        try:
            value = parse_value(self.query_one("#value", Input).value, address.split(":")[0])
        except ValueError as e:
            self._state(f"{REFUSED_SHAPE} {e}", "-refused")
            self.query_one("#value", Input).focus()
            return
        self.armed = {"device": device, "address": address, "value": value}
        if typ:
            self.armed["type"] = typ
        self.phase = "arming"
        self._state("arming… (the engine checks the device, address, value and your role)")
        self.run_worker(self._send_arm(dict(self.armed)), group="manual-write", exit_on_error=False)

    async def _send_arm(self, args: dict[str, Any]) -> None:
        result = await console_app(self).command("control.arm", **args)
        self._armed_answer(result)

    def _armed_answer(self, result: dict[str, Any]) -> None:
        self.message = str(result.get("message") or "")
        if not result.get("ok") or not result.get("arm"):
            self.phase = "edit"
            self._state(
                f"{REFUSED_SHAPE} refused: {self.message or 'control.arm: not done'}", "-refused"
            )
            return
        self.phase = "armed"
        self.token = str(result["arm"])
        self.deadline = time.monotonic() + float(result.get("expires_s") or 10.0)
        for field in self.query(Input):
            field.disabled = True  # what was armed is what is confirmed
        self.query_one("#arm", Button).disabled = True
        self.query_one("#confirm", Button).disabled = False
        self.set_focus(None)
        self._show_armed()
        self._show_keys()

    def _show_armed(self) -> None:
        left = max(0.0, self.deadline - time.monotonic())
        a = self.armed
        text = Text(
            f"{ARMED_SHAPE} ARMED — write {_shown(a['value'])} to {a['device']} {a['address']}\n"
        )
        text.append(f"{self.message}\n")
        text.append(f"confirm within {math.ceil(left):.0f} s: y / Enter, Esc cancels")
        self._state(text, "-armed")

    def _countdown(self) -> None:
        if self.phase != "armed":
            return
        if time.monotonic() >= self.deadline:
            self._back_to_edit()
            self._state(
                f"{REFUSED_SHAPE} the arm expired unconfirmed: nothing was written. "
                "Enter arms it again.",
                "-refused",
            )
            return
        self._show_armed()

    def _back_to_edit(self) -> None:
        self.phase = "edit"
        self.token = ""
        for field in self.query(Input):
            field.disabled = False
        self.query_one("#arm", Button).disabled = False
        self.query_one("#confirm", Button).disabled = True
        self.query_one("#value", Input).focus()
        self._show_keys()

    # -- confirm --------------------------------------------------------------------------

    def action_confirm(self) -> None:
        if self.phase != "armed":
            return
        self.phase = "writing"
        self.query_one("#confirm", Button).disabled = True
        self._state(
            f"{ARMED_SHAPE} writing {_shown(self.armed['value'])} to "
            f"{self.armed['device']} {self.armed['address']}…",
            "-armed",
        )
        self.run_worker(self._send_write(self.token), group="manual-write", exit_on_error=False)

    async def _send_write(self, token: str) -> None:
        result = await console_app(self).command("control.write", arm=token)
        self._written(result)

    def _written(self, result: dict[str, Any]) -> None:
        self.result = result
        self.message = str(result.get("message") or "")
        self._back_to_edit()
        self.phase = "done"
        a = self.armed
        if "before" in result or "after" in result:
            change = f"{_shown(result.get('before'))} → {_shown(result.get('after'))}"
        else:
            change = ""
        if result.get("ok"):
            self._state(
                f"{DONE_SHAPE} WRITTEN {a['device']} {a['address']}: {change}\n{self.message}",
                "-done",
            )
        else:
            what = f" ({change})" if change else ""
            self._state(
                f"{REFUSED_SHAPE} NOT WRITTEN{what}: {self.message or 'refused'}", "-refused"
            )
        self._show_now(console_app(self).last_frame)

    def action_cancel(self) -> None:
        if self.phase in ("arming", "writing"):
            self.notify("waiting for the engine's answer", severity="warning")
            return
        if self.phase == "armed":
            # The engine forgets an arm by itself when its time runs out: nothing to send.
            self._back_to_edit()
            self._state(f"{REFUSED_SHAPE} cancelled: nothing was written", "-refused")
            return
        self.dismiss(None)

    # -- frames ---------------------------------------------------------------------------

    def show_frame(self, frame: Frame) -> None:
        """Called by the app's tick: the value now of the point, when the engine polls it."""
        self._show_now(frame)

    def _show_now(self, frame: Frame | None) -> None:
        if not self.is_mounted:
            return
        device = (self.armed.get("device") if self.phase == "armed" else None) or self._field(
            "device"
        )
        address = (self.armed.get("address") if self.phase == "armed" else None) or self._field(
            "address"
        ).lower()
        view = value_now(frame, device, address)
        if view is None:
            text = Text(
                "value now: not polled here (the engine reads it before it writes)", style="italic"
            )
        else:
            unit = f" {view.unit}" if view.unit else ""
            quality = "" if view.quality == "GOOD" else f" {view.quality}"
            text = Text(
                f"value now: {view.value_text}{unit}{quality} "
                f"({view.id}, age {age_text(view.age_s)})"
            )
        self.query_one("#now", Static).update(text)

    def _state(self, text: Text | str, cls: str = "") -> None:
        box = self.query_one("#state", Static)
        box.set_classes(cls)
        box.update(text)
        self.state_text = text.plain if isinstance(text, Text) else text

    def _show_keys(self) -> None:
        keys = (
            "y / Enter confirms · Esc cancels (nothing is written)"
            if self.phase == "armed"
            else "Enter arms · Tab next field · Esc closes"
        )
        self.query_one("#keys", Static).update(keys)
