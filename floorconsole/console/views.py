"""Frames: immutable, plain-data views of what a console shows, built from the engine's state.

Frames carry only str, int, float, bool, None and tuples of those (or of other frame
classes), so they serialize to JSON for consoles attached over a socket and come back with
console.decode, which reads these field types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from floorconsole.core.model_state import model_state_word
from floorconsole.core.uplink import UplinkStats


@dataclass(frozen=True, slots=True)
class SignalView:
    id: str
    asset: str
    kind: str  # "scalar" | "bool" | "waveform" | "none"
    value: float | bool | None
    value_text: str
    unit: str
    quality: str  # GOOD | UNCERTAIN | BAD
    reason: str  # "" or e.g. "no communication"
    detail: str
    age_s: float
    source: str  # "drive1 hr:0 float32" or "local factory/motor-01/vibration/raw x"
    range: tuple[float, float] | None
    spark: tuple[float, ...] = ()
    waveform: tuple[float, ...] = ()  # the latest block, for waveform signals
    malformed: int = 0  # payloads for this signal that could not be used
    labels: tuple[str, ...] = ()  # an enumerated signal's words, code 0 first (a model's state)


@dataclass(frozen=True, slots=True)
class LinkView:
    id: str
    kind: str  # "device" | "broker"
    endpoint: str
    state: str  # connecting | up | degraded | down
    state_age_s: float
    last_rtt_ms: float | None
    requests: int
    errors: int
    reconnects: int
    last_error: str
    messages: int
    malformed: int  # payloads that lost a value, each counted once however many signals read it
    malformed_by_reason: tuple[tuple[str, str, int], ...] = ()  # bad values: (signal, reason, n)
    # payloads by reason (a payload with two reasons under both; bad_time: values kept)
    bad_payloads_by_reason: tuple[tuple[str, int], ...] = ()
    # A polled device's schedule: its configured poll, the polls a second it achieves, how
    # late the last one started, polls that could not start on time and polls the engine
    # held back while it caught up (overload). None / 0 for links that are not polled.
    poll_s: float | None = None
    poll_rate_hz: float | None = None
    poll_lag_s: float = 0.0
    polls_skipped: int = 0
    polls_held_back: int = 0


@dataclass(frozen=True, slots=True)
class Condition:
    """A system condition shown in the banner (device down, broker lost, historian trouble)."""

    severity: str  # "high" | "medium" | "low"
    source: str
    text: str
    age_s: float


@dataclass(frozen=True, slots=True)
class HistorianView:
    rows_committed: int
    rows_pending: int
    errors: int
    last_error: str
    dropped: int
    db_bytes: int


@dataclass(frozen=True, slots=True)
class DemoView:
    faults: tuple[str, ...]  # every fault that can be injected
    active: tuple[str, ...]  # those active now


@dataclass(frozen=True, slots=True)
class DriftFeatureView:
    name: str
    psi: float
    ks: float
    wasserstein: float
    status: str  # filling | ok | warning | alert (core.drift.DRIFT_STATES)
    shift: float = 0.0  # live mean - training mean, in training standard deviations


@dataclass(frozen=True, slots=True)
class ModelView:
    """One edge model: its score against its thresholds, and drift against its training data."""

    id: str
    running: bool
    version: str
    sha: str
    quality: str  # of its outputs: GOOD | UNCERTAIN | BAD
    quality_detail: str
    score: float | None
    smoothed: float | None
    state: str  # normal | warning | critical
    warning: float | None
    critical: float | None
    trend: tuple[float, ...]  # smoothed score, oldest first
    inference_ms: float | None
    window_ms: float | None
    windows: int
    bad_outputs: int
    drift_status: str  # filling | ok | warning | alert (core.drift.DRIFT_STATES), computed once
    drift_count: int  # windows in the live drift window
    drift_needed: int  # windows before drift figures mean anything
    psi_warn: float
    psi_alert: float
    psi_max: float | None
    worst: str
    page_hinkley: float | None
    page_hinkley_fired: bool
    features: tuple[DriftFeatureView, ...]  # worst first
    load_error: str
    quality_reason: str = ""  # why the outputs are not GOOD: "out of service", "no communication"
    # the drift state in words with what drives it, the same on every screen and in the alarm:
    # "warning: x.rms +3.1σ, x.variance +2.7σ", "filling: 24 of 240 windows", "ok"
    drift_text: str = ""

    @property
    def word(self) -> str:
        """The model's state as every screen says it: NORMAL, WARNING, CRITICAL, BAD or
        OUT OF SERVICE (core.model_state, the one derivation)."""
        return model_state_word(
            running=self.running,
            quality=self.quality,
            reason=self.quality_reason,
            state=self.state,
        )


@dataclass(frozen=True, slots=True)
class AlarmView:
    """One alarm after ISA-18.2: state, priority, and who did what when."""

    id: str
    priority: str  # low | medium | high | critical
    message: str
    text: str  # what the last transition said (value against threshold, error text)
    source: str  # "rule" or the system source (device, broker, model, cache)
    state: str  # NORMAL UNACK ACKED RTN_UNACK SHELVED SUPPRESSED OUT_OF_SERVICE
    state_text: str
    condition: bool  # the alarm condition is present now (also while shelved)
    activated: float | None
    acked: float | None
    acked_by: str
    shelved_until: float | None
    shelved_by: str
    chattering: bool
    activations_total: int
    shelved_reason: str = ""  # why it was shelved (ISA-18.2: a shelve has a reason)


@dataclass(frozen=True, slots=True)
class AlarmSummary:
    active: int
    unack: int
    shelved: int
    suppressed: int
    out_of_service: int
    alarms_10min: int
    flood: bool
    floods: int
    top_chattering: tuple[tuple[str, int], ...]  # (alarm id, activations in 10 min)


@dataclass(frozen=True, slots=True)
class ActionView:
    kind: str  # write | publish | alarm
    target: str  # "drive1 co:10", "local plant3/line2/alarms", "HIGH Motor 1 anomaly"
    last_result: str  # "" until it ran
    last_ok: bool | None
    last_at: float | None


@dataclass(frozen=True, slots=True)
class RuleView:
    """A rule's live state: value against threshold, timers running, actions' last results."""

    id: str
    enabled: bool
    signal: str
    condition: str  # "motor1.anomaly_score > 0.8 (deadband 0.05)"
    value: float | None
    quality: str
    active: bool
    pending: str  # "on-delay 3.2 s left", "" when no timer runs
    last_activation: float | None
    changes_last_hour: int
    note: str  # why it is held (cap reached, quality policy), or ""
    actions: tuple[ActionView, ...]
    # NORMAL | ACTIVE | LATCHED | HELD | NOT APPLIED | DISABLED: never NORMAL while the rule
    # is held by its cap or could not act ("" in recordings made before it existed)
    state: str = ""
    latch: bool = False  # the rule latches: once active, only a reset releases it


@dataclass(frozen=True, slots=True)
class FleetPendingView:
    """A remote change from the fleet held for an engineer here ([fleet] remote_apply =
    "confirm"): accept it (command fleet.accept) or defer it (fleet.defer)."""

    rollout: str
    action: str  # apply | rollback
    snapshot: str  # short id of the snapshot it would run
    bundle: str  # short id of the fleet bundle ("" for a rollback)
    by: str  # who sent it, as the fleet tool said
    received: float  # wall time
    deferred_by: str = ""
    deferred_why: str = ""


@dataclass(frozen=True, slots=True)
class Frame:
    t_wall: float
    t_mono: float
    edge_id: str
    site: str
    config_id: str  # short id of the running configuration
    control_mode: str  # "read-only" until control outputs exist
    signals: tuple[SignalView, ...]
    links: tuple[LinkView, ...]
    conditions: tuple[Condition, ...]
    historian: HistorianView
    ingest_rate: float  # samples per second over the last few seconds
    demo: DemoView | None = None
    models: tuple[ModelView, ...] = ()
    alarms: tuple[AlarmView, ...] = ()  # banner order: most urgent unacknowledged first
    alarm_summary: AlarmSummary | None = None
    rules: tuple[RuleView, ...] = ()
    snapshot: str = ""  # short id of the active snapshot, when the engine keeps snapshots
    uplink: UplinkStats | None = None  # store-and-forward to the plant broker, if configured
    control_holder: str = ""  # the user whose console holds control (writes, rules, rollback)
    control_requested_by: str = ""  # a user who asked the holder for control
    consoles: int = 0  # consoles attached over the engine's socket (the engine's own not counted)
    timezone: str = "UTC"  # the plant's [edge] timezone: every console shows times in it
    fleet_pending: FleetPendingView | None = None  # a remote change waiting for an engineer
    # Set by a console attached over the socket when the engine went away: the frame is the
    # last one received, shown greyed with this text ("engine gone 12 s: reconnecting").
    stale: str = ""


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    t: float
    value: float | None
    quality: str


@dataclass(frozen=True, slots=True)
class QualityMark:
    t: float
    quality: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class History:
    signal: str
    unit: str
    since: float
    until: float
    points: tuple[HistoryPoint, ...]
    quality_changes: tuple[QualityMark, ...]
    truncated: bool = False


def format_value(value: float | bool | None, unit: str = "") -> str:
    """'12.43', '1480', 'ON', '—': precision follows magnitude so columns stay narrow."""
    if value is None:
        return "—"
    # numpy's bool too, named rather than imported: the contract imports only core and stdlib
    if isinstance(value, bool) or type(value).__name__ == "bool_":
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
