"""EngineAPI: the one door from consoles (and the CLI) into the engine: frames and commands."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from floorconsole.core.config import DerivedPoint, ModbusPoint, MqttPoint, SignalConfig
from floorconsole.core.model_state import BAD, CRITICAL, WARNING, enum_text
from floorconsole.core.quality import Quality
from floorconsole.core.sample import Sample
from floorconsole.engine.frames import (
    ActionView,
    AlarmSummary,
    AlarmView,
    Condition,
    DemoView,
    DriftFeatureView,
    Frame,
    HistorianView,
    History,
    HistoryPoint,
    LinkView,
    ModelView,
    QualityMark,
    RuleView,
    SignalView,
)

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Engine

COMMAND_TIMEOUT_S = 5.0
LONG_COMMAND_TIMEOUT_S = 60.0  # apply and rollback include a health check
LONG_COMMANDS = ("config.apply", "snapshot.rollback", "model.import")
WAVEFORM_POINTS = 128
# The audit record kind of each command (core.audit's kinds).
AUDIT_KIND = {
    "alarm.ack": "alarm_ack",
    "alarm.ack_all": "alarm_ack",
    "alarm.shelve": "alarm_shelve",
    "alarm.unshelve": "alarm_unshelve",
    "rule.reset": "rule_reset",
    "config.apply": "snapshot_apply",
    "snapshot.rollback": "snapshot_rollback",
    "control.arm": "write",
    "control.write": "write",
    "kiosk.leave": "kiosk",
    "demo.inject": "system",
    "demo.clear": "system",
    "demo.toggle": "system",
    "model.import": "model_change",
    "users.manage": "user_change",
    "audit.view": "system",
    "control.take": "system",
    "control.release": "system",
    "control.request": "system",
}  # a waveform block is shown downsampled to this many points


class CommandError(Exception):
    """A command the engine refused, with a message for the user."""


def format_value(value: float | bool | None, unit: str = "") -> str:
    """'12.43', '1480', 'ON', '—': precision follows magnitude so columns stay narrow."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "ON" if value else "OFF"
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 10000:
        text = f"{v:.0f}"
    elif a >= 100:
        text = f"{v:.1f}"
    elif a >= 1:
        text = f"{v:.2f}"
    else:
        text = f"{v:.3f}"
    return text


def _source_text(s: SignalConfig) -> str:
    src = s.source
    if isinstance(src, ModbusPoint):
        return f"{src.device} {src.table}:{src.address} {src.type}"
    if isinstance(src, DerivedPoint):
        return src.producer
    assert isinstance(src, MqttPoint)
    path = ".".join(str(p) for p in src.json_path)
    return f"{src.broker} {src.topic} {path}".rstrip()


def _signal_view(
    cfg: SignalConfig, s: Sample, now_mono: float, spark: tuple[float, ...], malformed: int
) -> SignalView:
    v = s.value
    wave: tuple[float, ...] = ()
    if isinstance(v, np.ndarray):
        kind = "waveform"
        step = max(1, len(v) // WAVEFORM_POINTS)
        wave = tuple(float(x) for x in v[::step])
        rms = float(np.sqrt(np.mean(np.square(v)))) if len(v) else 0.0
        value: float | bool | None = rms
        text = f"rms {format_value(rms)}"
    elif isinstance(v, (bool, np.bool_)):
        kind, value, text = "bool", bool(v), format_value(bool(v))
    elif v is None:
        kind, value, text = "none", None, "—"
    else:
        kind, value, text = "scalar", float(v), format_value(float(v))
    if cfg.labels and kind != "waveform":
        # An enumerated signal says its word; while BAD, BAD or OUT OF SERVICE (not the last
        # code, which reads as a state the model is not in).
        text = enum_text(cfg.labels, value, s.quality.name, s.reason.text)
    return SignalView(
        id=cfg.id,
        asset=cfg.asset,
        kind=kind,
        value=value,
        value_text=text,
        unit=cfg.unit,
        quality=s.quality.name,
        reason=s.reason.text if s.quality is not Quality.GOOD else "",
        detail=s.detail,
        age_s=round(max(0.0, now_mono - s.t_mono), 3),
        source=_source_text(cfg),
        range=cfg.range,
        spark=spark,
        waveform=wave,
        malformed=malformed,
        labels=cfg.labels,
    )


def _model_view(st: dict[str, Any], state: Sample | None = None) -> ModelView:
    """The model's view; its state and quality taken from its state signal's latest sample when
    there is one, so the panel, the banner and the signal's row say the word of one sample
    (the runner moves on between the two reads)."""
    d = st["drift"]
    th = st.get("thresholds") or {}
    if state is not None and st["running"] and state.value is not None:
        code = int(float(state.value)) if not isinstance(state.value, np.ndarray) else 0
        st = {
            **st,
            "state": ("normal", "warning", "critical")[max(0, min(2, code))],
            "quality": state.quality.name,
            "quality_reason": state.reason.text,
            "quality_detail": state.detail or st["quality_detail"],
        }
    return ModelView(
        id=st["id"],
        running=st["running"],
        version=st["version"],
        sha=st["sha256"],
        quality=st["quality"],
        quality_detail=st["quality_detail"],
        score=st["score"],
        smoothed=st["smoothed"],
        state=st["state"],
        warning=th.get("warning"),
        critical=th.get("critical"),
        trend=tuple(st["trend"]),
        inference_ms=st["last_inference_ms"],
        window_ms=st["last_window_ms"],
        windows=st["counts"]["windows"],
        bad_outputs=st["counts"]["bad_outputs"],
        drift_status=d["status"],
        drift_count=d["count"],
        drift_needed=d.get("min_windows", 0),
        psi_warn=d.get("psi_warn", 0.1),
        psi_alert=d.get("psi_alert", 0.25),
        psi_max=d.get("psi_max"),
        worst=d.get("worst") or "",
        page_hinkley=d.get("page_hinkley"),
        page_hinkley_fired=bool(d.get("page_hinkley_fired")),
        features=tuple(
            sorted(
                (
                    DriftFeatureView(f["name"], f["psi"], f["ks"], f["wasserstein"], f["status"])
                    for f in d["features"]
                ),
                key=lambda f: -f.psi,
            )
        ),
        # not running: why the configured package could not be used, not the stand-in's error
        load_error=(st.get("package_problem") if not st["running"] else "")
        or st["load_error"]
        or "",
        quality_reason=st.get("quality_reason", ""),
    )


def model_conditions(models: tuple[ModelView, ...]) -> tuple[Condition, ...]:
    """A model at WARNING or CRITICAL, or not scoring (BAD), is a condition in the banner, in
    the same word the model panel and the state signal use. OUT OF SERVICE is not: the model
    was told not to score because its machine stopped, which the plant's signals show."""
    out = []
    for m in models:
        if not m.running:
            continue  # a package that failed to load is a condition of its own already
        word = m.word
        score = f"score {format_value(m.smoothed)}"
        if word == CRITICAL:
            line = f" ≥ crit {format_value(m.critical)}" if m.critical is not None else ""
            out.append(
                Condition("high", f"model {m.id}", f"model {m.id} {word} {score}{line}", 0.0)
            )
        elif word == WARNING:
            line = f" ≥ warn {format_value(m.warning)}" if m.warning is not None else ""
            out.append(
                Condition("medium", f"model {m.id}", f"model {m.id} {word} {score}{line}", 0.0)
            )
        elif word == BAD:
            why = m.quality_detail or m.quality_reason or "outputs BAD"
            out.append(
                Condition("medium", f"model {m.id}", f"model {m.id} {word} not scoring: {why}", 0.0)
            )
    return tuple(out)


class EngineAPI:
    """Plain data in, plain data out. Safe to call from a console's thread.

    frame() reads the engine's tables without taking the engine's loop (the latest table
    never changes size, and copying a deque is atomic under the GIL), so a console that
    asks for frames never delays ingest; commands run on the engine's loop.
    """

    def __init__(self, engine: Engine) -> None:
        from floorconsole.core.auth import DEFAULT_IDLE_LOCK_S
        from floorconsole.engine.manual import ManualWrites
        from floorconsole.engine.sessions import Sessions

        self._engine = engine
        fixed = engine.idle_lock_s  # a test's or a caller's; else the running plant's

        def idle() -> float:
            return fixed or engine.plant.edge.idle_lock_s or DEFAULT_IDLE_LOCK_S

        self._sessions = Sessions(engine.users, engine.audit, engine.clock, idle)
        self._manual = ManualWrites(engine)
        self._signals = {s.id: s for s in (*engine.plant.signals, *engine.derived)}
        self._readers = threading.local()

    # -- frames ---------------------------------------------------------------------------

    def frame(self) -> Frame:
        e = self._engine
        now_mono, now_wall = e.clock.mono(), e.clock.wall()
        malformed: Counter[str] = Counter()
        links = []
        for ls in list(e.links.values()):
            by_reason = tuple(
                sorted((sig, reason, n) for (sig, reason), n in list(ls.malformed.items()))
            )
            for sig, _reason, n in by_reason:
                malformed[sig] += n
            links.append(
                LinkView(
                    id=ls.id,
                    kind=ls.kind,
                    endpoint=ls.endpoint,
                    state=ls.state.value,
                    state_age_s=round(max(0.0, now_mono - ls.since_mono), 1)
                    if ls.since_mono
                    else 0.0,
                    last_rtt_ms=ls.last_rtt_ms,
                    requests=ls.requests,
                    errors=ls.errors,
                    reconnects=ls.reconnects,
                    last_error=ls.last_error,
                    messages=ls.messages,
                    malformed=ls.bad_payloads,
                    malformed_by_reason=by_reason,
                    bad_payloads_by_reason=tuple(sorted(ls.bad_payload_reasons.items())),
                )
            )
        hub = e.hub
        # One read of each latest sample, for the rows and the model views alike: the model's
        # word and its state signal's row must come from the same sample.
        latest = {sid: hub.latest[sid] for sid in self._signals}
        signals = tuple(
            _signal_view(cfg, latest[sid], now_mono, tuple(hub.spark[sid]), malformed[sid])
            for sid, cfg in self._signals.items()
        )
        st = e.historian.stats
        hist = HistorianView(
            rows_committed=st.rows_committed,
            rows_pending=st.rows_pending,
            errors=st.errors,
            last_error=st.last_error,
            dropped=st.dropped,
            db_bytes=st.db_bytes,
        )
        models = tuple(_model_view(r.status(), latest.get(r.state_id)) for r in e.models.values())
        uplink = e.uplink.stats() if e.uplink is not None else None
        control = e.active.control.status()
        demo = None
        if e.demo is not None:
            demo = DemoView(
                faults=tuple(e.demo.fault_kinds()), active=tuple(e.demo.active_faults())
            )
        holder, requested = self._sessions.holder()
        return Frame(
            t_wall=now_wall,
            t_mono=now_mono,
            edge_id=e.plant.edge.id,
            site=e.plant.edge.site,
            config_id=e.snapshot_id,
            control_mode="writes enabled" if control["mode"] == "control" else "read-only",
            signals=signals,
            links=tuple(links),
            conditions=self._conditions(links, hist, e.models.values(), uplink)
            + model_conditions(models),
            historian=hist,
            ingest_rate=round(e.ingest_rate, 1),
            demo=demo,
            models=models,
            alarms=tuple(AlarmView(**a) for a in control["alarms"]),
            snapshot=e.snapshot_id,
            uplink=uplink,
            control_holder=holder,
            control_requested_by=requested,
            alarm_summary=_alarm_summary(control),
            rules=tuple(_rule_view(r) for r in control["rules"]),
            timezone=e.plant.edge.timezone,
            consoles=e.attach_server.consoles if e.attach_server is not None else 0,
        )

    @staticmethod
    def _conditions(
        links: list[LinkView], hist: HistorianView, models: Any = (), uplink: Any = None
    ) -> tuple[Condition, ...]:
        out = []
        if uplink is not None:
            from floorconsole.core.uplink import uplink_conditions

            for sev, text in uplink_conditions(uplink):
                out.append(Condition(sev, "uplink", text, uplink.state_age_s))
        for r in models:
            c = r.condition()
            if c is not None:
                out.append(Condition(c[0], f"model {r.cfg.id}", c[1], 0.0))
        for ln in links:
            if ln.state == "down":
                what = "device" if ln.kind == "device" else "broker"
                why = f": {ln.last_error}" if ln.last_error else ""
                out.append(Condition("high", ln.id, f"{what} {ln.id} down{why}", ln.state_age_s))
            elif ln.state == "degraded":
                out.append(
                    Condition(
                        "medium",
                        ln.id,
                        f"{ln.id}: {ln.last_error or 'some reads fail'}",
                        ln.state_age_s,
                    )
                )
        if hist.errors and hist.last_error:
            out.append(Condition("high", "historian", f"history cache: {hist.last_error}", 0.0))
        if hist.dropped:
            out.append(
                Condition("high", "historian", f"history cache dropped {hist.dropped} samples", 0.0)
            )
        return tuple(out)

    def model_histogram(self, model_id: str, feature: str) -> dict[str, Any]:
        """Reference against live shares per bin of one feature (or "score")."""
        r = self._engine.models.get(model_id)
        if r is None:
            raise CommandError(f"no model {model_id!r} in this configuration")
        return r.histogram(feature)

    # -- history --------------------------------------------------------------------------

    def history(self, signal: str, since: float, until: float, max_points: int = 5000) -> History:
        """Samples and quality changes of one signal between two wall-clock times."""
        cfg = self._signals.get(signal)
        if cfg is None:
            raise CommandError(f"no signal {signal!r} in this configuration")
        reader = getattr(self._readers, "reader", None)
        if reader is None:
            from floorconsole.adapters.historian import HistoryReader

            reader = HistoryReader(self._engine.historian.path)
            self._readers.reader = reader
        if isinstance(cfg.source, MqttPoint) and cfg.source.kind == "waveform":
            # A waveform's history is shown as the RMS of each block.
            rows = [
                (
                    w.t,
                    float(np.sqrt(np.mean(np.square(w.value)))) if len(w.value) else None,
                    w.quality,
                )
                for w in reader.query_waveforms(signal, since, until)
            ]
        else:
            rows = [(r.t, r.value, r.quality) for r in reader.query(signal, since, until)]
        truncated = len(rows) > max_points
        if truncated:
            step = math.ceil(len(rows) / max_points)
            rows = rows[::step]
        points = tuple(
            HistoryPoint(t=t, value=None if v is None else float(v), quality=Quality(q).name)
            for t, v, q in rows
        )
        marks = tuple(
            QualityMark(
                t=q.t, quality=Quality(q.quality).name, reason=q.reason.text, detail=q.detail
            )
            for q in reader.quality_changes(signal, since, until)
        )
        return History(
            signal=signal,
            unit=cfg.unit,
            since=since,
            until=until,
            points=points,
            quality_changes=marks,
            truncated=truncated,
        )

    def alarm_journal(self, limit: int = 500) -> list[dict[str, Any]]:
        """The last alarm transitions, newest first."""
        journal = self._engine.journal
        if journal is None:
            return []
        return [
            {
                "t": e.t_wall,
                "alarm": e.alarm_id,
                "from": e.from_state.value,
                "to": e.to_state.value,
                "by": e.by,
                "text": e.text,
                "priority": e.priority,
            }
            for e in reversed(journal.query(limit=limit))
        ]

    # -- commands -------------------------------------------------------------------------

    def command(self, name: str, /, session: str | None = None, **args: Any) -> dict[str, Any]:
        """Run a command on the engine's loop; returns {"ok": bool, "message": str, ...}.

        The engine checks the session's role (and, for a critical action, a PIN entered
        within the last minute) whatever the console shows; a refusal carries "refused":
        "login" | "role" | "pin" | "locked" and is audited. An allowed command is audited
        before it runs and again with its result; it does not run when its record cannot be
        written. The acting user comes from the session, never from the arguments."""
        from floorconsole.core.auth import ACTIONS

        handler = getattr(self, f"_cmd_{name.replace('.', '_')}", None)
        if handler is None or name not in ACTIONS:
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
        params = inspect.signature(handler).parameters
        if "user" in params:
            args["user"] = user
        if "session_token" in params:
            args["session_token"] = session
        shown = {
            k: v for k, v in args.items() if k not in ("user", "config", "pin", "session_token")
        }
        try:
            self._engine.audit(
                AUDIT_KIND[name],
                user,
                _target(name, args),
                {"command": name, "phase": "request", **shown},
            )
        except Exception as e:  # noqa: BLE001 - no record, no action
            return {
                "ok": False,
                "message": f"not done: the audit record could not be written ({e})",
            }

        async def call() -> dict[str, Any]:
            result = handler(**args)
            if asyncio.iscoroutine(result):
                result = await result
            return result  # type: ignore[no-any-return]

        timeout = LONG_COMMAND_TIMEOUT_S if name in LONG_COMMANDS else COMMAND_TIMEOUT_S
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
            AUDIT_KIND[name],
            user,
            _target(name, args),
            {"command": name, "phase": "result", **outcome},
        )
        return result

    # -- sessions ---------------------------------------------------------------------------

    def login(self, user: str, pin: str, os_user: str = "") -> dict[str, Any]:
        """{"ok", "message", "session": token or None, "user", "role"}; audited either way,
        with the OS user at the console (the attach socket's peer; this process's user when
        not given). Five wrong PINs in a row lock the user for five minutes."""
        return self._sessions.login(user, pin, os_user)

    def logout(self, session: str | None) -> None:
        self._sessions.logout(session)

    def unlock(self, session: str | None, pin: str) -> dict[str, Any]:
        """The PIN again: unlocks an idle-locked session and opens the 60 s window that
        critical actions need."""
        return self._sessions.unlock(session, pin)

    def session(self, session: str | None) -> dict[str, Any]:
        """{"user", "role", "locked", "pin_fresh", "idle_lock_s", "permitted"}; no session,
        or an unknown one, is a viewer."""
        return self._sessions.info(session)

    def touch(self, session: str | None) -> None:
        """The user did something: the session's idle timer starts again."""
        self._sessions.touch(session)

    def demo_users(self) -> list[dict[str, str]]:
        """The demo's accounts with their PINs (the demo shows them); empty on a real box."""
        return [dict(u) for u in self._engine.demo_users]

    # -- audit trail -------------------------------------------------------------------------

    def audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Audit records, newest first, filtered; readable by every role."""
        return self._engine.audit_log().query(
            since=since, until=until, user=user, kind=kind, text=text, limit=limit
        )

    def audit_verify(self) -> dict[str, Any]:
        """Walk the hash chain: {"ok", "message"} naming the first bad record if any."""
        result = self._engine.audit_log().verify()
        return {"ok": bool(result.ok), "message": result.message}

    # -- manual writes: arm, then confirm ----------------------------------------------------

    def _cmd_control_arm(
        self, device: str, address: str, value: float | bool, user: str, type: str = ""
    ) -> dict[str, Any]:
        return self._manual.arm(device, address, value, user, type or None)

    async def _cmd_control_write(self, arm: str, user: str) -> dict[str, Any]:
        return await self._manual.confirm(arm, user)

    # -- admin: users and model packages ---------------------------------------------------

    def _cmd_users_manage(
        self, op: str, name: str, user: str, role: str = "", pin: str = ""
    ) -> dict[str, Any]:
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

    async def _cmd_model_import(
        self, model: str, package: str, message: str, user: str
    ) -> dict[str, Any]:
        """A new package (PATH without extension: PATH.onnx + PATH.json) for model `model`,
        applied as a new snapshot: checked, loaded beside, health-checked, or refused."""
        import copy

        config = copy.deepcopy(self.active_config())
        models = [m for m in config.get("models", []) if m.get("id") == model]
        if not models:
            known = ", ".join(m.get("id", "?") for m in config.get("models", [])) or "none"
            raise CommandError(f"no model {model!r} in the running configuration ({known})")
        models[0]["package"] = str(package)
        return await self._cmd_config_apply(config, message, user)

    # -- control: one console at a time -------------------------------------------------

    def _cmd_control_take(self, session_token: str) -> dict[str, Any]:
        return self._sessions.take(session_token)

    def _cmd_control_release(self, session_token: str) -> dict[str, Any]:
        return self._sessions.release(session_token)

    def _cmd_control_request(self, session_token: str) -> dict[str, Any]:
        return self._sessions.request(session_token)

    def stop_engine(self, session: str | None = None) -> dict[str, Any]:
        """The engine's own console (under `run` or `demo`) is leaving and the engine stops
        with it: record who asked (the session's user, else the account the engine runs as,
        the person at its terminal) before anything stops, as a command is recorded. Not a
        command of the socket: an attached console leaves and the engine runs on. The caller
        then stops the engine, whose last record names the same user."""
        import getpass

        user = str(self.session(session).get("user") or "")
        who = user or f"{getpass.getuser()} (viewer at the engine's console)"
        others = self._engine.attach_server.consoles if self._engine.attach_server else 0
        try:
            self._engine.audit(
                "system", who, "engine", {"command": "engine.stop", "phase": "request"}
            )
        except Exception as e:  # noqa: BLE001 - no record, no action
            return {"ok": False, "message": f"not stopped: the audit record failed ({e})"}
        self._engine.stop_requested_by = who
        result = {
            "ok": True,
            "message": f"engine stopping, asked by {who}",
            "by": who,
            "others": others,
        }
        self._engine.audit_safe(
            "system", who, "engine", {"command": "engine.stop", "phase": "result", **result}
        )
        return result

    def _cmd_kiosk_leave(self, user: str) -> dict[str, Any]:
        return {"ok": True, "message": f"kiosk left by {user}"}

    def _demo(self) -> Any:
        if self._engine.demo is None:
            raise CommandError("fault injection exists only in the demo")
        return self._engine.demo

    def _cmd_demo_inject(self, fault: str, severity: float = 1.0) -> dict[str, Any]:
        demo = self._demo()
        if fault not in demo.fault_kinds():
            raise CommandError(
                f"no fault {fault!r}; expected one of {', '.join(demo.fault_kinds())}"
            )
        demo.inject(fault, severity)
        return {"ok": True, "message": f"fault {fault} injected"}

    def _cmd_demo_clear(self, fault: str) -> dict[str, Any]:
        demo = self._demo()
        demo.clear(fault)
        return {"ok": True, "message": f"fault {fault} cleared"}

    def _cmd_demo_toggle(self, fault: str) -> dict[str, Any]:
        demo = self._demo()
        if fault in demo.active_faults():
            return self._cmd_demo_clear(fault)
        return self._cmd_demo_inject(fault)

    # -- snapshots --------------------------------------------------------------------------

    def _snapshots(self) -> Any:
        mgr = self._engine.snapshots
        if mgr is None:
            raise CommandError("this engine runs without a snapshot store")
        return mgr

    async def _cmd_config_apply(
        self, config: dict[str, Any], message: str, user: str
    ) -> dict[str, Any]:
        from floorconsole.engine.snapshots import ApplyRefused

        try:
            result = await self._snapshots().apply(config, user=user, message=message)
        except ApplyRefused as e:
            return {"ok": False, "message": f"refused, nothing changed: {e}"}
        return dict(result.as_dict())

    async def _cmd_snapshot_rollback(self, snapshot: str, user: str) -> dict[str, Any]:
        from floorconsole.adapters.snapshot_store import SnapshotStoreError
        from floorconsole.engine.snapshots import ApplyRefused

        try:
            result = await self._snapshots().rollback(snapshot, user=user)
        except (ApplyRefused, SnapshotStoreError) as e:
            return {"ok": False, "message": f"refused, nothing changed: {e}"}
        return dict(result.as_dict())

    def active_config(self) -> dict[str, Any]:
        """The running configuration as a plain plant-file dict, to edit and apply."""
        return dict(self._snapshots().active.plant_config())

    def snapshots(self) -> list[dict[str, Any]]:
        mgr = self._snapshots()
        return [
            {
                "id": s.id,
                "short": s.short,
                "parent": s.parent,
                "author": s.author,
                "message": s.message,
                "created": s.created,
                "active": s.id == mgr.active.id,
            }
            for s in mgr.store.list()
        ]

    def snapshot_diff(self, a: str, b: str) -> list[str]:
        return list(self._snapshots().store.diff(a, b).lines())

    def activations(self, limit: int = 200) -> list[dict[str, Any]]:
        acts = self._snapshots().store.activations()[-limit:]
        return [
            {
                "seq": a.seq,
                "snapshot": a.snapshot[:12],
                "at": a.activated_at,
                "outcome": str(a.outcome),
                "by": a.by,
                "note": a.note,
            }
            for a in reversed(acts)
        ]

    # -- alarms -----------------------------------------------------------------------------

    def _control(self) -> Any:
        return _Refusals(self._engine.active.control)

    def _cmd_alarm_ack(self, alarm: str, user: str) -> dict[str, Any]:
        return _alarm_result(self._control().acknowledge(alarm, user), f"{alarm} acknowledged")

    def _cmd_alarm_ack_all(self, alarms: list[str], user: str) -> dict[str, Any]:
        results = self._control().acknowledge(list(alarms), user)
        done = sum(1 for r in results if r.get("ok", True))
        return {"ok": True, "message": f"{done} alarm(s) acknowledged", "results": results}

    def _cmd_alarm_shelve(
        self, alarm: str, duration_s: float, user: str, reason: str = ""
    ) -> dict[str, Any]:
        return _alarm_result(
            self._control().shelve(alarm, float(duration_s), user, str(reason)),
            f"{alarm} shelved for {float(duration_s) / 60:g} min: {str(reason).strip()}",
        )

    def _cmd_rule_reset(self, rule: str, user: str, reason: str = "") -> dict[str, Any]:
        """Release a latched rule (a trip) once its condition has cleared."""
        try:
            return self._engine.active.control.reset(rule, user, str(reason))  # type: ignore[no-any-return]
        except ValueError as e:
            raise CommandError(str(e)) from None

    def _cmd_alarm_unshelve(self, alarm: str, user: str) -> dict[str, Any]:
        return _alarm_result(self._control().unshelve(alarm, user), f"{alarm} unshelved")

    # -- dry run ----------------------------------------------------------------------------

    def dry_run(
        self, rule: dict[str, Any], hours: tuple[float, ...] = (1.0, 24.0)
    ) -> dict[str, Any]:
        """How often a rule as edited (a [[rules]] table) would have activated over the last
        `hours` of history, beside the running rule of the same id; both replayed through
        the engine's own evaluator (core.dryrun). Reads the history file on the caller's
        thread, like history(): the engine's loop is not involved."""
        import bisect
        import sqlite3

        from floorconsole.adapters.historian import HistorianError, HistoryReader
        from floorconsole.core.dryrun import dry_run
        from floorconsole.core.rules import RuleConfig, parse_rules

        e = self._engine
        plant = e.plant
        ranges = {
            s.id: s.range
            for s in (*plant.signals, *e.derived)
            if not (isinstance(s.source, MqttPoint) and s.source.kind == "waveform")
        }
        parsed, problems = parse_rules(
            [rule],
            signals=ranges,
            devices={d.id for d in plant.devices},
            brokers={b.id for b in plant.brokers},
        )
        if problems or not parsed:
            text = "; ".join(
                str(p).removeprefix("rules[0].").replace("rules[0]", "rule", 1) for p in problems
            )
            return {"ok": False, "message": text or "the rule could not be read"}
        edited = parsed[0]
        current = next((r for r in plant.rules if r.id == edited.id), None)
        hours = tuple(hours) or (1.0, 24.0)
        now = e.clock.wall()
        reader = getattr(self._readers, "reader", None)
        try:
            if reader is None:
                reader = HistoryReader(e.historian.path)
                self._readers.reader = reader
            history = {
                sig: reader.query(sig, now - max(hours) * 3600.0, None)
                for sig in {edited.signal, *([current.signal] if current else [])}
            }
        except (HistorianError, OSError, sqlite3.Error) as err:
            return {"ok": False, "message": f"history could not be read: {err}"}

        def replay(r: RuleConfig) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
            records = history[r.signal]
            until = max(now, records[-1].t) if records else now
            stale = e.hub.stale_after.get(r.signal)
            counts: dict[str, int] = {}
            detail: dict[str, dict[str, Any]] = {}
            for h in hours:
                start = bisect.bisect_left(records, now - h * 3600.0, key=lambda x: x.t)
                result = dry_run(r, records[start:], until=until, stale_after_s=stale)
                counts[f"{h:g}h"] = result.activations
                detail[f"{h:g}h"] = result.as_dict()
            return counts, detail

        edited_counts, edited_detail = replay(edited)
        current_counts, current_detail = replay(current) if current else (None, None)
        first = history[edited.signal][0].t if history[edited.signal] else None
        return {
            "ok": True,
            "rule": edited.id,
            "signal": edited.signal,
            "enabled": edited.enabled,
            "edited": edited_counts,
            "current": current_counts,
            "current_enabled": current.enabled if current else None,
            "detail": {"edited": edited_detail, "current": current_detail},
            "history_from": first,
            "now": now,
        }


def _alarm_result(result: Any, message: str) -> dict[str, Any]:
    if isinstance(result, list):
        result = result[0] if result else {"ok": False, "message": "no such alarm"}
    if not result.get("ok", True):
        return {"ok": False, "message": result.get("message") or result.get("error", "refused")}
    return {"ok": True, "message": message}


def _alarm_summary(control: dict[str, Any]) -> AlarmSummary:
    c, k = control["counts"], control["kpis"]
    return AlarmSummary(
        active=c["active"],
        unack=c["unack"],
        shelved=c["shelved"],
        suppressed=c["suppressed"],
        out_of_service=c["out_of_service"],
        alarms_10min=k["alarms_10min"],
        flood=k["flood"],
        floods=k["floods"],
        top_chattering=tuple((t["id"], t["activations_10min"]) for t in k["top_chattering"]),
    )


def _rule_view(st: dict[str, Any]) -> RuleView:
    pending = ""
    if st.get("pending"):
        left = st.get("remaining_s")
        pending = f"{st.get('pending_why') or st['pending']}" + (
            f" {left:.1f} s left" if left is not None else ""
        )
    actions = []
    for a in st["actions"]:
        last = a.get("last")
        actions.append(
            ActionView(
                kind=a["kind"],
                target=a["target"],
                last_result=last["text"] if last else "",
                last_ok=last["ok"] if last else None,
                last_at=last["t_wall"] if last else None,
            )
        )
    held = st.get("held") or ""
    return RuleView(
        id=st["id"],
        enabled=st["enabled"],
        signal=st["signal"],
        condition=st["condition"],
        value=st["value"],
        quality=st["quality"],
        active=st["active"],
        pending=pending,
        last_activation=st["last_activation"],
        changes_last_hour=st["changes_last_hour"],
        note=st.get("note") or held,
        actions=tuple(actions),
        state=st.get("state_word", ""),
        latch=bool(st.get("latched")),
    )


class _Refusals:
    """Control's alarm operations with an AlarmError (a refused transition: shelving past
    8 h, acknowledging an alarm that is normal) turned into a command error for the user."""

    def __init__(self, control: Any) -> None:
        self._control = control

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._control, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from floorconsole.core.alarms import AlarmError

            try:
                return fn(*args, **kwargs)
            except (AlarmError, KeyError) as e:
                raise CommandError(str(e).strip("'\"")) from None

        return call


def _target(name: str, args: dict[str, Any]) -> str:
    """What a command acts on, for the audit record's target column."""
    for key in ("alarm", "rule", "snapshot", "arm", "fault", "model", "name"):
        if key in args:
            return str(args[key])
    if "device" in args:
        return f"{args['device']} {args.get('address', '')}".strip()
    if name == "alarm.ack_all":
        return f"{len(args.get('alarms') or [])} alarms"
    return name.split(".")[0]
