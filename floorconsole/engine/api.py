"""EngineAPI: the one door from consoles (and the CLI) into the engine: frames and commands."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from floorconsole.console import (
    CommandError,
    CommandResult,
    Condition,
    ConsoleAPI,
    DemoView,
    FleetPendingView,
    Frame,
    HistorianView,
    History,
    HistoryPoint,
    LinkView,
    ModelView,
    QualityMark,
    SignalView,
    format_value,
)
from floorconsole.core.config import DerivedPoint, ModbusPoint, MqttPoint, SignalConfig
from floorconsole.core.model_state import BAD, CRITICAL, WARNING, enum_text
from floorconsole.core.opcua import OpcUaNodePoint
from floorconsole.core.quality import Quality
from floorconsole.core.sample import Sample
from floorconsole.engine.commands import Commands

if TYPE_CHECKING:
    from floorconsole.engine.runtime import Engine

WAVEFORM_POINTS = 128  # a waveform block is shown downsampled to this many points


def _source_text(s: SignalConfig) -> str:
    src = s.source
    if isinstance(src, ModbusPoint):
        return f"{src.device} {src.table}:{src.address} {src.type}"
    if isinstance(src, DerivedPoint):
        return src.producer
    if isinstance(src, OpcUaNodePoint):
        return f"{src.device} {src.label}"
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
    elif isinstance(v, (int, np.integer)):  # a counter reads 5, not 5.00
        kind, value, text = "scalar", float(v), str(int(v))
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
        self._commands = Commands(engine, self._sessions, self._manual, self.active_config)
        self._signals = {s.id: s for s in (*engine.plant.signals, *engine.derived)}
        self._readers = threading.local()

    reconnected = 0  # in process: the engine never goes away and comes back

    # -- frames ---------------------------------------------------------------------------

    def frame(self) -> Frame:
        e = self._engine
        now_mono, now_wall = e.clock.mono(), e.clock.wall()
        malformed: Counter[str] = Counter()
        links = []
        polled = {d.id: d.poll_s for d in e.plant.devices}
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
                    poll_s=polled.get(ls.id) if ls.kind == "device" else None,
                    poll_rate_hz=ls.poll_rate_hz,
                    poll_lag_s=ls.poll_lag_s,
                    polls_skipped=ls.polls_skipped,
                    polls_held_back=ls.polls_held_back,
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
        models = tuple(r.view(latest.get(r.state_id)) for r in e.models.values())
        uplink = e.uplink.stats() if e.uplink is not None else None
        control = e.active.control
        demo = None
        if e.demo is not None:
            demo = DemoView(
                faults=tuple(e.demo.fault_kinds()), active=tuple(e.demo.active_faults())
            )
        holder, requested = self._sessions.holder()
        pending = _fleet_pending(e)
        return Frame(
            t_wall=now_wall,
            t_mono=now_mono,
            edge_id=e.plant.edge.id,
            site=e.plant.edge.site,
            config_id=e.snapshot_id,
            control_mode="writes enabled" if control.config.mode == "control" else "read-only",
            signals=signals,
            links=tuple(links),
            conditions=self._conditions(links, hist, e.models.values(), uplink)
            + model_conditions(models)
            + _fleet_conditions(pending, now_wall),
            historian=hist,
            ingest_rate=round(e.ingest_rate, 1),
            demo=demo,
            models=models,
            alarms=control.alarm_views(),
            snapshot=e.snapshot_id,
            uplink=uplink,
            control_holder=holder,
            control_requested_by=requested,
            alarm_summary=control.alarm_summary(),
            rules=control.rule_views(),
            timezone=e.plant.edge.timezone,
            consoles=e.attach_server.consoles if e.attach_server is not None else 0,
            fleet_pending=pending,
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

    def alarm_kpis(self, since: float, until: float) -> dict[str, Any]:
        """ISA-18.2 figures from the journal over a window (read on the caller's thread)."""
        from dataclasses import asdict

        from floorconsole.core.alarm_kpis import alarm_kpis

        if not until > since:
            raise CommandError(f"a KPI window must end after it starts ({since} .. {until})")
        entries, before = self._engine.journal.kpi_inputs(since, until)
        k = alarm_kpis(entries, since=since, until=until, before=before)
        return {**asdict(k), "verdicts": [list(v) for v in k.verdicts()]}

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

    def command(self, name: str, /, session: str | None = None, **args: Any) -> CommandResult:
        """Run a command on the engine's loop; answers {"ok": bool, "message": str, ...}.

        The engine checks the session's role (and, for a critical action, a PIN entered
        within the last minute) whatever the console shows; a refusal carries "refused":
        "login" | "role" | "pin" | "locked" | "held" and is audited. An allowed command is
        audited before it runs and again with its result; it does not run when its record
        cannot be written. The acting user comes from the session, never from the arguments.
        What each command is: core.auth.ACTIONS; how it runs: engine.commands."""
        return self._commands.run(name, session, args)

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

    # -- snapshots --------------------------------------------------------------------------

    def _snapshots(self) -> Any:
        mgr = self._engine.snapshots
        if mgr is None:
            raise CommandError("this engine runs without a snapshot store")
        return mgr

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

    # -- dry run ----------------------------------------------------------------------------

    def opcua_browse(self, device: str, node: str = "", depth: int = 2) -> dict[str, Any]:
        """Browse one of the configuration's OPC UA devices, with its own endpoint and
        security, on the caller's thread (a connection of its own: the engine's loop and
        session are not involved). The signals are plant-file tables for the variables
        found; adding them is a config.apply like any change (a snapshot)."""
        import asyncio
        from dataclasses import asdict

        from floorconsole.adapters.opcua import OpcUaError, browse, endpoint_of
        from floorconsole.core.opcua import parse_node_id, plant_lines, tree_lines, variables

        plant = self._engine.active.plant
        dev = next((d for d in plant.opcua_devices if d.id == device), None)
        if dev is None:
            known = ", ".join(d.id for d in plant.opcua_devices) or "none"
            raise CommandError(f"no OPC UA device {device!r} in this configuration ({known})")
        if node:
            try:
                parse_node_id(node)
            except ValueError as e:
                raise CommandError(str(e)) from None
        try:
            root = asyncio.run(
                browse(endpoint_of(dev), node or None, depth=max(0, min(int(depth), 6)))
            )
        except OpcUaError as e:
            raise CommandError(f"{device}: {e}") from None
        found = variables(root)[:200]
        import tomllib

        tables = tomllib.loads(plant_lines(device, found)).get("signals", [])
        return {
            "device": device,
            "node": node,
            "tree": tree_lines(root),
            "variables": [{k: v for k, v in asdict(n).items() if k != "children"} for n in found],
            "signals": tables,
        }

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
            devices={d.id for d in plant.devices} | {u.id for u in plant.opcua_devices},
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

    def model_comparison(self, model_id: str, points: int = 120) -> dict[str, Any]:
        """The candidate shadowing a model against the live one (engine.shadow): both
        scores over time (at most `points`, the newest), agreement, how often each was in
        warning or critical, and the dry run of every rule on the model's outputs replayed
        with the shadow's recorded outputs beside the live ones, since the shadow started.
        Without a shadow: {"running": False} and the last candidate calibrated, if any."""
        import sqlite3

        from floorconsole.adapters.historian import HistorianError, HistoryReader
        from floorconsole.core.dryrun import dry_run

        e = self._engine
        active = e.active
        runner = active.models.get(model_id)
        if runner is None:
            raise CommandError(f"no model {model_id!r} in this configuration")
        cand = e.candidates.get(model_id)
        sh = active.shadows.get(model_id)
        progress = e.calibration_progress.get(model_id)
        base: dict[str, Any] = {
            "model": model_id,
            "running": sh is not None,
            "calibrating": list(progress) if progress else None,
            "last_candidate": cand.as_dict() if cand is not None else None,
            "live_sha256": runner.model.sha256 if runner.model is not None else "",
        }
        if sh is None:
            return base
        out = {**base, **sh.summary()}
        pairs = list(sh.pairs)
        step = max(1, math.ceil(len(pairs) / max(1, points)))
        shown = pairs[::-1][::step][::-1]
        out["series"] = {
            "t": [p[0] for p in shown],
            "live": [p[1] for p in shown],
            "shadow": [p[2] for p in shown],
        }
        now = e.clock.wall()
        mapping = sh.summary()["signals"]
        rules = []
        reader = getattr(self._readers, "reader", None)
        try:
            if reader is None:
                reader = HistoryReader(e.historian.path)
                self._readers.reader = reader
            for r in e.plant.rules:
                if r.signal not in mapping:
                    continue
                live = reader.query(r.signal, sh.since, None)
                shadow = reader.query(mapping[r.signal], sh.since, None)
                rules.append(
                    {
                        "rule": r.id,
                        "signal": r.signal,
                        "shadow_signal": mapping[r.signal],
                        "live": dry_run(r, live, until=now).as_dict(),
                        "shadow": dry_run(r, shadow, until=now).as_dict(),
                    }
                )
        except (HistorianError, OSError, sqlite3.Error) as err:
            out["dry_run_error"] = f"history could not be read: {err}"
        out["dry_run"] = rules
        return out


if TYPE_CHECKING:  # mypy proves the engine gives a console every call of the contract

    def _is_console_api(api: EngineAPI) -> ConsoleAPI:
        return api


def _fleet_pending(e: Any) -> FleetPendingView | None:
    """The remote change held for an engineer here, as the console shows it."""
    p = e.fleet.pending if e.fleet is not None else None
    if p is None:
        return None
    return FleetPendingView(
        rollout=p.rollout,
        action=p.action,
        snapshot=p.snapshot[:12],
        bundle=p.bundle[:12],
        by=p.by,
        received=p.t,
        deferred_by=p.deferred_by,
        deferred_why=p.deferred_why,
    )


def _fleet_conditions(p: FleetPendingView | None, now_wall: float) -> tuple[Condition, ...]:
    if p is None:
        return ()
    what = f"bundle {p.bundle}" if p.bundle else f"rollback to {p.snapshot}"
    said = f"deferred by {p.deferred_by}: {p.deferred_why}" if p.deferred_by else "waits"
    return (
        Condition(
            "low",
            "fleet",
            f"remote change {p.rollout} ({what}) from {p.by or '?'} {said}; "
            "accept or defer it: F5, then a or x",
            round(max(0.0, now_wall - p.received), 1),
        ),
    )
