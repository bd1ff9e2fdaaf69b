"""The engine's commands run: each checked against the session, audited, run on the loop.

What each command is (who may run it, PIN, control, audit kind, target, timeout class) is
core.auth.ACTIONS, the one table; here each name is given its handler, once, by hand, and
a handler without a row in that table stops the engine from starting.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from floorconsole.console import CommandError, CommandResult
from floorconsole.core.alarms import AlarmError
from floorconsole.core.auth import ACTIONS, ALARM_COUNT, DEVICE_POINT, GROUP, LONG, SHORT, Action

if TYPE_CHECKING:
    from floorconsole.engine.manual import ManualWrites
    from floorconsole.engine.runtime import Engine
    from floorconsole.engine.sessions import Sessions

# Seconds the engine gives a command of each timeout class (core.auth.Action.timeout).
TIMEOUT_S = {SHORT: 5.0, LONG: 60.0}  # a long one includes a health check
# Arguments an audit record does not repeat: who acts is its user column; a configuration is
# its own snapshot; a PIN is never written down.
NOT_AUDITED = ("user", "config", "pin", "session_token")

Handler = Callable[..., CommandResult | Awaitable[CommandResult]]


def target_of(action: Action, args: Mapping[str, Any]) -> str:
    """What a command acts on, for the audit record's target column."""
    if action.target == DEVICE_POINT and "device" in args:
        return f"{args['device']} {args.get('address', '')}".strip()
    if action.target == ALARM_COUNT:
        return f"{len(args.get('alarms') or [])} alarms"
    if action.target not in (GROUP, DEVICE_POINT) and action.target in args:
        return str(args[action.target])
    return action.name.split(".")[0]


class Commands:
    """Every command's handler, and the one path a command takes: known, user from the
    session, allowed (role, PIN, control), audited before it runs, run on the engine's loop
    within its timeout, audited with its result."""

    def __init__(
        self,
        engine: Engine,
        sessions: Sessions,
        manual: ManualWrites,
        active_config: Callable[[], dict[str, Any]],
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._manual = manual
        self._active_config = active_config
        self.handlers: dict[str, Handler] = {
            "alarm.ack": self._alarm_ack,
            "alarm.ack_all": self._alarm_ack_all,
            "alarm.shelve": self._alarm_shelve,
            "alarm.unshelve": self._alarm_unshelve,
            "rule.reset": self._rule_reset,
            "demo.inject": self._demo_inject,
            "demo.clear": self._demo_clear,
            "demo.toggle": self._demo_toggle,
            "control.take": self._control_take,
            "control.release": self._control_release,
            "control.request": self._control_request,
            "control.arm": self._control_arm,
            "control.write": self._control_write,
            "config.apply": self._config_apply,
            "snapshot.rollback": self._snapshot_rollback,
            "model.import": self._model_import,
            "model.calibrate": self._model_calibrate,
            "model.shadow": self._model_shadow,
            "model.promote": self._model_promote,
            "fleet.accept": self._fleet_accept,
            "fleet.defer": self._fleet_defer,
            "users.manage": self._users_manage,
            "kiosk.leave": self._kiosk_leave,
        }  # audit.view has a row but no handler: it is api.audit(), a read
        undescribed = self.handlers.keys() - ACTIONS.keys()
        if undescribed:
            raise RuntimeError(f"commands without a row in core.auth.ACTIONS: {undescribed}")
        # which handler takes the acting user, which the session itself
        self._wants = {
            name: frozenset(inspect.signature(h).parameters) & {"user", "session_token"}
            for name, h in self.handlers.items()
        }

    def run(self, name: str, session: str | None, args: dict[str, Any]) -> CommandResult:
        handler = self.handlers.get(name)
        action = ACTIONS.get(name)
        if handler is None or action is None:
            return {
                "ok": False,
                "message": f"unknown command {name!r}; known: {', '.join(sorted(ACTIONS))}",
            }
        if "user" in args:
            return {
                "ok": False,
                "message": f"bad arguments for {name}: the user comes from "
                f"the session, not from user=",
            }
        loop = self._engine.loop
        if loop is None or loop.is_closed():
            return {"ok": False, "message": "the engine is not running"}
        user, refusal = self._sessions.check(session, name)
        if refusal is not None:
            return refusal.as_dict()
        wants = self._wants[name]
        if "user" in wants:
            args["user"] = user
        if "session_token" in wants:
            args["session_token"] = session
        shown = {k: v for k, v in args.items() if k not in NOT_AUDITED}
        target = target_of(action, args)
        try:
            self._engine.audit(
                action.audit_kind, user, target, {"command": name, "phase": "request", **shown}
            )
        except Exception as e:  # noqa: BLE001 - no record, no action
            return {
                "ok": False,
                "message": f"not done: the audit record could not be written ({e})",
            }

        async def call() -> CommandResult:
            result = handler(**args)
            if inspect.isawaitable(result):
                return await result
            return result

        timeout = TIMEOUT_S[action.timeout]
        result: CommandResult
        try:
            fut = asyncio.run_coroutine_threadsafe(call(), loop)
            result = fut.result(timeout)
        except CommandError as e:
            result = {"ok": False, "message": str(e)}
        except TimeoutError:
            result = {"ok": False, "message": f"the engine did not answer within {timeout:g} s"}
        except TypeError as e:
            result = {"ok": False, "message": f"bad arguments for {name}: {e}"}
        outcome = {k: v for k, v in result.items() if k not in ("results",)}
        self._engine.audit_safe(
            action.audit_kind, user, target, {"command": name, "phase": "result", **outcome}
        )
        return result

    # -- alarms -----------------------------------------------------------------------------

    def _alarm_ack(self, alarm: str, user: str) -> CommandResult:
        with _alarm_refusals():
            entries = self._engine.active.control.acknowledge(alarm, user)
        return _alarm_result(entries, f"{alarm} acknowledged")

    def _alarm_ack_all(self, alarms: list[str], user: str) -> CommandResult:
        with _alarm_refusals():
            results = self._engine.active.control.acknowledge(list(alarms), user)
        done = sum(1 for r in results if r.get("ok", True))
        return {"ok": True, "message": f"{done} alarm(s) acknowledged", "results": results}

    def _alarm_shelve(
        self, alarm: str, duration_s: float, user: str, reason: str = ""
    ) -> CommandResult:
        with _alarm_refusals():
            entry = self._engine.active.control.shelve(alarm, float(duration_s), user, str(reason))
        return _alarm_result(
            entry, f"{alarm} shelved for {float(duration_s) / 60:g} min: {str(reason).strip()}"
        )

    def _alarm_unshelve(self, alarm: str, user: str) -> CommandResult:
        with _alarm_refusals():
            entry = self._engine.active.control.unshelve(alarm, user)
        return _alarm_result(entry, f"{alarm} unshelved")

    # -- rules ------------------------------------------------------------------------------

    def _rule_reset(self, rule: str, user: str, reason: str = "") -> CommandResult:
        """Release a latched rule (a trip) once its condition has cleared."""
        try:
            return self._engine.active.control.reset(rule, user, str(reason))
        except ValueError as e:
            raise CommandError(str(e)) from None

    # -- manual writes: arm, then confirm ----------------------------------------------------

    def _control_arm(
        self, device: str, address: str, value: float | bool, user: str, type: str = ""
    ) -> CommandResult:
        return self._manual.arm(device, address, value, user, type or None)

    async def _control_write(self, arm: str, user: str) -> CommandResult:
        return await self._manual.confirm(arm, user)

    # -- control: one console at a time -------------------------------------------------

    def _control_take(self, session_token: str) -> CommandResult:
        return self._sessions.take(session_token)

    def _control_release(self, session_token: str) -> CommandResult:
        return self._sessions.release(session_token)

    def _control_request(self, session_token: str) -> CommandResult:
        return self._sessions.request(session_token)

    def _kiosk_leave(self, user: str) -> CommandResult:
        return {"ok": True, "message": f"kiosk left by {user}"}

    # -- admin: users and model packages ---------------------------------------------------

    def _users_manage(
        self, op: str, name: str, user: str, role: str = "", pin: str = ""
    ) -> CommandResult:
        """op: add (name, role, pin), remove, reset_pin (pin), set_role (role)."""
        from floorconsole.adapters.users import UserError

        store = self._engine.users()
        try:
            if op == "add":
                store.add(name, role, pin)
            elif op == "remove":
                if name == user:
                    raise CommandError("an admin cannot remove their own account here")
                store.remove(name)
            elif op == "reset_pin":
                store.reset_pin(name, pin)
            elif op == "set_role":
                store.set_role(name, role)
            else:
                raise CommandError(
                    f"users.manage: op {op!r}; expected add, remove, reset_pin or set_role"
                )
        except UserError as e:
            raise CommandError(str(e)) from None
        return {"ok": True, "message": f"user {name}: {op.replace('_', ' ')} done"}

    async def _model_import(
        self, model: str, package: str, message: str, user: str
    ) -> CommandResult:
        """A new package (PATH without extension: PATH.onnx + PATH.json) for model `model`,
        applied as a new snapshot: checked, loaded beside, health-checked, or refused."""
        config = copy.deepcopy(self._active_config())
        models = [m for m in config.get("models", []) if m.get("id") == model]
        if not models:
            known = ", ".join(m.get("id", "?") for m in config.get("models", [])) or "none"
            raise CommandError(f"no model {model!r} in the running configuration ({known})")
        models[0]["package"] = str(package)
        return await self._config_apply(config, message, user)

    # -- recalibration: candidate, shadow, promote (engine.calibrate, engine.shadow) --------

    def _runner(self, model: str) -> Any:
        runner = self._engine.models.get(model)
        if runner is None:
            known = ", ".join(self._engine.models) or "none"
            raise CommandError(f"no model {model!r} in the running configuration ({known})")
        return runner

    async def _model_calibrate(
        self,
        model: str,
        since: float,
        until: float,
        train_weights: bool = False,
        seed: int | None = None,
    ) -> CommandResult:
        """A candidate package from the history since <= t < until, marked healthy."""
        from floorconsole.adapters.historian import HistoryReader
        from floorconsole.core.calibrate import DEFAULT_SEED, CalibrationError
        from floorconsole.core.model_package import PackageError
        from floorconsole.engine.calibrate import calibrate

        runner = self._runner(model)
        parent = runner.model
        if parent is None:
            raise CommandError(f"model {model} runs no package: nothing to recalibrate from")
        engine = self._engine
        progress = engine.calibration_progress

        def work() -> Any:
            engine.historian.flush()
            reader = HistoryReader(engine.historian.path)
            try:
                return calibrate(
                    reader,
                    runner.cfg,
                    parent,
                    float(since),
                    float(until),
                    engine.data_dir / "candidates",
                    train_weights=bool(train_weights),
                    seed=DEFAULT_SEED if seed is None else int(seed),
                    progress=lambda what, done: progress.update({model: (what, done)}),
                )
            finally:
                reader.close()
                progress.pop(model, None)

        try:
            cand = await asyncio.get_running_loop().run_in_executor(None, work)
        except (CalibrationError, PackageError) as e:
            raise CommandError(str(e)) from None
        engine.candidates[model] = cand
        s = cand.summary
        return {
            "ok": True,
            "message": f"candidate {s['version']} ({cand.package_sha256[:12]}) from "
            f"{cand.window.windows} windows ({cand.window.skipped} left out): warning "
            f"{s['warning']:.4g} (live {s['parent_warning']:.4g}), critical "
            f"{s['critical']:.4g} (live {s['parent_critical']:.4g})"
            f"{', weights trained here' if s['trained'] else ''}",
            "candidate": cand.as_dict(),
        }

    async def _model_shadow(
        self, model: str, op: str = "start", candidate: str = ""
    ) -> CommandResult:
        """op start: the candidate (a package path; default the last one calibrated for
        this model) scores beside the live model; op stop ends it."""
        from floorconsole.adapters.onnx_model import load_package
        from floorconsole.core.model_package import PackageError
        from floorconsole.engine.model_runner import compatibility

        runner = self._runner(model)
        active = self._engine.active
        if op == "stop":
            sh = active.shadows.pop(model, None)
            if sh is None:
                return {"ok": True, "message": f"no shadow was running beside {model}"}
            return {
                "ok": True,
                "message": f"shadow {sh.candidate.version} beside {model} stopped after "
                f"{sh.windows} windows",
            }
        if op != "start":
            raise CommandError(f"model.shadow: op {op!r}; expected start or stop")
        path = candidate or self._newest_candidate(model)
        if not path:
            raise CommandError(
                f"no candidate for {model} yet: calibrate one first, or name its package"
            )
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, load_package, path)
        except PackageError as e:
            raise CommandError(str(e)) from None
        problem = compatibility(runner.cfg, loaded)
        if problem:
            raise CommandError(f"candidate {path} does not fit model {model}: {problem}")
        sh = active.start_shadow(model, loaded, loaded.package.onnx_path.with_suffix(""))
        return {
            "ok": True,
            "message": f"shadow {loaded.version} ({loaded.sha256[:12]}) scores beside "
            f"{model}; its outputs are recorded as {sh.runner.score_id} and the rest of "
            f"{model}.shadow.*, and never reach a rule",
        }

    def _newest_candidate(self, model: str) -> str:
        """The candidate built last for a model, here or by `floorconsole model calibrate`
        (DATA_DIR/candidates/<model>/<sha>/NAME.json, newest first); "" when there is none."""
        folder = self._engine.data_dir / "candidates" / model
        try:
            sidecars = [p for p in folder.glob("*/*.json") if not p.parent.name.startswith(".")]
            newest = max(sidecars, key=lambda p: p.stat().st_mtime, default=None)
        except OSError:
            newest = None
        last = self._engine.candidates.get(model)
        if last is not None and (
            newest is None
            or last.path.with_suffix(".json").stat().st_mtime >= newest.stat().st_mtime
        ):
            return str(last.path)
        return str(newest.with_suffix("")) if newest is not None else ""

    async def _model_promote(self, model: str, message: str, user: str) -> CommandResult:
        """The candidate shadowing `model` becomes its package: a new snapshot, applied and
        health-checked like any change (snapshot.rollback brings the previous one back)."""
        self._runner(model)
        sh = self._engine.active.shadows.get(model)
        if sh is None:
            raise CommandError(
                f"no candidate shadows {model}: shadow one first (model.shadow), then promote it"
            )
        return await self._model_import(model, str(sh.path), message, user)

    # -- a remote change held for an engineer here (engine.fleet) ---------------------------

    def _fleet(self) -> Any:
        if self._engine.fleet is None:
            raise CommandError("this edge is not a member of a fleet ([fleet] in the plant file)")
        return self._engine.fleet

    async def _fleet_accept(self, user: str, rollout: str = "") -> CommandResult:
        result: CommandResult = await self._fleet().accept(str(rollout), user)
        return result

    async def _fleet_defer(self, user: str, rollout: str = "", reason: str = "") -> CommandResult:
        result: CommandResult = await self._fleet().defer(str(rollout), user, str(reason))
        return result

    # -- demo faults ------------------------------------------------------------------------

    def _demo(self) -> Any:
        if self._engine.demo is None:
            raise CommandError("fault injection exists only in the demo")
        return self._engine.demo

    def _demo_inject(self, fault: str, severity: float = 1.0) -> CommandResult:
        demo = self._demo()
        if fault not in demo.fault_kinds():
            raise CommandError(
                f"no fault {fault!r}; expected one of {', '.join(demo.fault_kinds())}"
            )
        demo.inject(fault, severity)
        return {"ok": True, "message": f"fault {fault} injected"}

    def _demo_clear(self, fault: str) -> CommandResult:
        demo = self._demo()
        demo.clear(fault)
        return {"ok": True, "message": f"fault {fault} cleared"}

    def _demo_toggle(self, fault: str) -> CommandResult:
        demo = self._demo()
        if fault in demo.active_faults():
            return self._demo_clear(fault)
        return self._demo_inject(fault)

    # -- snapshots --------------------------------------------------------------------------

    def _snapshots(self) -> Any:
        mgr = self._engine.snapshots
        if mgr is None:
            raise CommandError("this engine runs without a snapshot store")
        return mgr

    async def _config_apply(self, config: dict[str, Any], message: str, user: str) -> CommandResult:
        from floorconsole.engine.snapshots import ApplyRefused

        try:
            result = await self._snapshots().apply(config, user=user, message=message)
        except ApplyRefused as e:
            return {"ok": False, "message": f"refused, nothing changed: {e}"}
        return _applied(result)

    async def _snapshot_rollback(self, snapshot: str, user: str) -> CommandResult:
        from floorconsole.adapters.snapshot_store import SnapshotStoreError
        from floorconsole.engine.snapshots import ApplyRefused

        try:
            result = await self._snapshots().rollback(snapshot, user=user)
        except (ApplyRefused, SnapshotStoreError) as e:
            return {"ok": False, "message": f"refused, nothing changed: {e}"}
        return _applied(result)


def _applied(result: Any) -> CommandResult:
    """An apply's or rollback's outcome (engine.snapshots.ApplyResult) as the answer."""
    return {
        "ok": result.ok,
        "message": result.message,
        "snapshot": result.snapshot,
        "seconds": round(result.seconds, 3),
        "health": result.health,
    }


def _alarm_result(result: Any, message: str) -> CommandResult:
    if isinstance(result, list):
        result = result[0] if result else {"ok": False, "message": "no such alarm"}
    if not result.get("ok", True):
        return {"ok": False, "message": result.get("message") or result.get("error", "refused")}
    return {"ok": True, "message": message}


@contextmanager
def _alarm_refusals() -> Iterator[None]:
    """A refused alarm transition (shelving past 8 h, acknowledging an alarm that is
    normal: AlarmError; an unknown alarm: KeyError) as a command error for the user."""
    try:
        yield
    except (AlarmError, KeyError) as e:
        raise CommandError(str(e).strip("'\"")) from None
