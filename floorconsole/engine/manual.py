"""Writes by hand: arm, then confirm within ARM_S, by the same user.

Arming checks everything that can be checked without touching the device (the device runs
in this configuration, the address is writable, the value fits the type, the box is not
read-only). Confirming reads the point (the value before), writes the audit record, writes
and reads back (the value after). An arm is used once.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from floorconsole.console import CommandError, CommandResult
from floorconsole.core.opcua import OpcUaNodePoint, parse_node_id
from floorconsole.core.points import ModbusPoint, read_point
from floorconsole.core.registers import point_label, value_text, write_value
from floorconsole.core.validate import Problems

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Engine

ARM_S = 10.0


@dataclass(frozen=True)
class Armed:
    point: ModbusPoint | OpcUaNodePoint
    value: float | bool
    user: str
    expires_mono: float


class ManualWrites:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._armed: dict[str, Armed] = {}

    def arm(
        self, device: str, address: str, value: float | bool, user: str, type_: str | None = None
    ) -> CommandResult:
        active = self._engine.active
        if device in active.opcua:
            return self._arm_node(device, address, value, user)
        if device not in active.pollers:
            known = ", ".join(sorted(active.pollers)) or "none"
            raise CommandError(
                f"no Modbus device {device!r} in the running configuration (devices: {known})"
            )
        # The same check as a rule's write action: address, type, writable table.
        c = Problems()
        given = {"address": address} | ({"type": type_} if type_ else {})
        point = read_point(c, given, "", device, writable=True)
        if point is None:
            raise CommandError("; ".join(c.texts()))
        try:
            write_value(value, point)
        except ValueError as e:
            raise CommandError(str(e)) from None
        if not active.control.config.enabled:
            raise CommandError(
                "control is read-only on this box ([control] enabled = false): nothing is written"
            )
        token = secrets.token_hex(6)
        now = self._engine.clock.mono()
        with self._lock:
            self._armed = {k: a for k, a in self._armed.items() if a.expires_mono > now}
            self._armed[token] = Armed(point, value, user, now + ARM_S)
        return {
            "ok": True,
            "arm": token,
            "expires_s": ARM_S,
            "message": f"armed: write {value_text(value)} to {device} {point_label(point)}; "
            f"confirm within {ARM_S:g} s",
        }

    def _arm_node(self, device: str, node: str, value: float | bool, user: str) -> CommandResult:
        """An OPC UA node: the address is its NodeId; the server converts to the node's type
        (read from the server at the write), so any number or true/false is armed."""
        try:
            node = str(parse_node_id(node))
        except ValueError as e:
            raise CommandError(str(e)) from None
        if isinstance(value, str) or not isinstance(value, bool | int | float):
            raise CommandError(f"expected a number or true/false for {device} {node}")
        if not self._engine.active.control.config.enabled:
            raise CommandError(
                "control is read-only on this box ([control] enabled = false): nothing is written"
            )
        token = secrets.token_hex(6)
        now = self._engine.clock.mono()
        with self._lock:
            self._armed = {k: a for k, a in self._armed.items() if a.expires_mono > now}
            self._armed[token] = Armed(OpcUaNodePoint(device, node), value, user, now + ARM_S)
        return {
            "ok": True,
            "arm": token,
            "expires_s": ARM_S,
            "message": f"armed: write {value_text(value)} to {device} {node}; "
            f"confirm within {ARM_S:g} s",
        }

    async def confirm(self, token: str, user: str) -> CommandResult:
        with self._lock:
            armed = self._armed.pop(token, None)
        if armed is None:
            raise CommandError(f"no armed write {token!r}: arm it again (an arm is used once)")
        if self._engine.clock.mono() > armed.expires_mono:
            raise CommandError(f"the armed write expired ({ARM_S:g} s): arm it again")
        if armed.user != user:
            raise CommandError(f"armed by {armed.user}; only they can confirm it")
        point = armed.point
        if isinstance(point, OpcUaNodePoint):
            label = f"{point.device} {point.node}"
            poller: Any = self._engine.active.opcua.get(point.device)
        else:
            label = f"{point.device} {point_label(point)}"
            poller = self._engine.active.pollers.get(point.device)
        if poller is None:
            raise CommandError(
                f"device {point.device} is no longer in the running configuration: nothing written"
            )
        before, error = await poller.read_point(point)
        if error:
            raise CommandError(f"not written: {label} could not be read first ({error})")
        loop = asyncio.get_running_loop()
        try:  # the record is committed before anything goes to the device
            await loop.run_in_executor(
                None,
                partial(
                    self._engine.audit,
                    "write",
                    user,
                    label,
                    {"phase": "writing", "before": before, "value": armed.value},
                ),
            )
        except Exception as e:  # noqa: BLE001 - no record, no write
            raise CommandError(
                f"not written: the audit record could not be written ({e})"
            ) from None
        write = poller.write_point if isinstance(point, OpcUaNodePoint) else poller.write
        result = await write(point, armed.value)
        return {
            "ok": result.ok,
            "before": before,
            "after": result.read_back,
            "message": f"{label}: {result.text}",
        }
