"""A Sparkplug host's write (a DCMD to a metric the plant file lists as writable) on the
console's own write path: the role the plant file gives the host is checked as a console
user's would be (control.write's), then ManualWrites arms and confirms it (the device runs
in this configuration, the address is writable, the value fits the type, control is not
read-only; the point read first, the audit record committed before anything is written, the
write read back). Audited as a console write is: a request record, the write's own, a result.

The uplink's thread only hands the write over (this runs on the engine's loop), so a slow or
dead device never holds the Sparkplug session up. Not checked: which console holds control
(a host is not a console session; the plant file's list is what allows it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from floorconsole.console import CommandError, CommandResult
from floorconsole.core.audit import REFUSED
from floorconsole.core.auth import ACTIONS, Role
from floorconsole.core.points import ModbusPoint
from floorconsole.core.registers import point_label
from floorconsole.core.sparkplug import WriteRefused
from floorconsole.engine.manual import ManualWrites

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Engine

log = logging.getLogger(__name__)

COMMAND = "sparkplug.write"  # what the audit records call it
ACTION = ACTIONS["control.write"]  # the console's write: its role and audit kind


def host_principal(primary_host: str | None) -> str:
    """Who a host's write is by, in the audit trail."""
    return f"sparkplug host {primary_host}" if primary_host else "sparkplug host"


def host_writer(
    engine: Engine, principal: str, role: str
) -> Callable[[str, str, float | bool], None]:
    """The uplink's on_write hook: schedules the write on the engine's loop, returns at once."""
    manual = ManualWrites(engine)
    pending: set[asyncio.Future[CommandResult]] = set()
    host_role = Role.parse(role)

    def on_write(topic: str, signal: str, value: float | bool) -> None:
        if host_role < ACTION.min_role:  # raised to the uplink: it counts and audits it
            raise WriteRefused(
                f"{principal} ({host_role}) may not {ACTION.description}: that needs "
                f"{ACTION.min_role} or above ([uplink.sparkplug] host_role)"
            )  # so write() below only ever runs for a role that may write
        loop = engine.loop
        if loop is None or loop.is_closed():
            engine.audit_safe(
                REFUSED, principal, signal, {"command": COMMAND, "why": "the engine is not running"}
            )
            return
        fut = asyncio.run_coroutine_threadsafe(
            write(engine, manual, principal, topic, signal, value), loop
        )
        pending.add(fut)  # type: ignore[arg-type]
        fut.add_done_callback(pending.discard)  # type: ignore[arg-type]

    return on_write


async def write(
    engine: Engine,
    manual: ManualWrites,
    principal: str,
    topic: str,
    signal: str,
    value: float | bool,
) -> CommandResult:
    """One host write, start to end (on the engine's loop); its result is audited."""
    loop = asyncio.get_running_loop()
    audit = partial(loop.run_in_executor, None)
    sig = next((s for s in engine.active.plant.signals if s.id == signal), None)
    point = sig.source if sig is not None else None
    if not isinstance(point, ModbusPoint):
        why = f"{signal} is not a Modbus signal of the running configuration"
        await audit(partial(engine.audit_safe, REFUSED, principal, signal, _why(topic, why)))
        return {"ok": False, "message": why}
    target = f"{point.device} {point_label(point)}"
    detail = {"command": COMMAND, "topic": topic, "signal": signal, "value": value}
    try:
        await audit(partial(engine.audit, ACTION.audit_kind, principal, target,
                            {**detail, "phase": "request"}))  # fmt: skip
    except Exception as e:  # noqa: BLE001 - no record, no write
        return {"ok": False, "message": f"not written: the audit record failed ({e})"}
    try:
        type_ = point.type if point.table in ("hr", "ir") else None
        armed = manual.arm(point.device, point_label(point), value, principal, type_)
        result = await manual.confirm(str(armed["arm"]), principal)
    except CommandError as e:
        result = {"ok": False, "message": str(e)}
    except Exception as e:  # noqa: BLE001 - a host's write must not take the loop down
        log.exception("sparkplug host write of %s", signal)
        result = {"ok": False, "message": f"not written: {e}"}
    await audit(partial(engine.audit_safe, ACTION.audit_kind, principal, target,
                        {**detail, "phase": "result", **result}))  # fmt: skip
    if not result.get("ok"):
        log.warning("sparkplug host write of %s: %s", signal, result.get("message"))
    return result


def _why(topic: str, why: str) -> dict[str, object]:
    return {"command": COMMAND, "topic": topic, "why": why}
