"""Shadow models: a candidate package scoring beside the live model, with no effect on rules.

A shadow is a second ModelRunner on the same inputs, fed the very batches the live model is
fed (a hub listener registered after the models', so for every window the live model has
scored first). Its outputs are recorded in the historian as their own signals,

    <model id>.shadow.score / .smoothed / .state      e.g. motor1_anomaly.shadow.score
    <model id>.shadow.drift.status / .psi_max / ...   its drift against its own reference

but never enter the hub: rules, alarms, the uplink and the signals table never see them, so
a shadow cannot trip anything. Per window the live and the shadow state are compared
(agreement) and how often each was in warning or critical is counted; the last MAX_PAIRS
pairs of scores are kept for the comparison screen. A configuration swap (apply, promote,
rollback) ends the shadow: the new configuration starts without one.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from floorconsole.adapters.onnx_model import OnnxModel
from floorconsole.core.clock import Clock
from floorconsole.core.model_config import OUTPUT_KEYS, ModelConfig
from floorconsole.core.quality import Quality
from floorconsole.core.sample import Sample
from floorconsole.engine.model_runner import ModelRunner

SUFFIX = ".shadow"
MAX_PAIRS = 7200  # one hour at two windows a second, for the comparison's plot


def shadow_config(cfg: ModelConfig) -> ModelConfig:
    """The live model's entry with the shadow's own signal ids (<id>.shadow.*)."""
    sid = f"{cfg.id}{SUFFIX}"
    return dataclasses.replace(cfg, id=sid, outputs=(("score", f"{sid}.score"),))


def shadow_signal_of(cfg: ModelConfig) -> dict[str, str]:
    """Live output signal id -> the shadow's, for score, smoothed and state."""
    sh = shadow_config(cfg)
    return {cfg.output_id(k): sh.output_id(k) for k in OUTPUT_KEYS}


@dataclasses.dataclass
class Tally:
    """Windows in warning (state >= 1) and critical, and entries into each."""

    warning_windows: int = 0
    critical_windows: int = 0
    warnings: int = 0  # times the state went from normal to warning or critical
    trips: int = 0  # times it went to critical
    last: int = 0

    def add(self, state: int) -> None:
        if state >= 1:
            self.warning_windows += 1
            if self.last == 0:
                self.warnings += 1
        if state >= 2:
            self.critical_windows += 1
            if self.last < 2:
                self.trips += 1
        self.last = state

    def as_dict(self) -> dict[str, int]:
        return {
            "warning_windows": self.warning_windows,
            "critical_windows": self.critical_windows,
            "warnings": self.warnings,
            "trips": self.trips,
        }


class Shadow:
    """One candidate beside one live model. on_samples runs on the engine's loop."""

    def __init__(
        self,
        live: ModelRunner,
        candidate: OnnxModel,
        path: Path,
        clock: Clock,
        store: Any,
        stale_after_s: dict[str, float],
    ) -> None:
        self.live = live
        self.path = Path(path)
        self.candidate = candidate
        self.runner = ModelRunner(
            shadow_config(live.cfg), candidate, clock, stale_after_s=stale_after_s
        )
        self._store = store
        self.since = time.time()
        self.windows = 0
        self.agree = 0
        self.live_tally = Tally()
        self.shadow_tally = Tally()
        # (t, live score, shadow score, live state, shadow state)
        self.pairs: deque[tuple[float, float | None, float, int, int]] = deque(maxlen=MAX_PAIRS)
        self.recorded = 0

    def on_samples(self, batch: Sequence[Sample], why_not: str = "") -> None:
        out = self.runner.pause(why_not) if why_not else self.runner.on_samples(batch)
        if not out:
            return
        if self._store is not None:
            self._store.append(out)
            self.recorded += len(out)
        score_id = self.runner.score_id
        for s in out:
            if s.signal != score_id or s.quality is Quality.BAD or s.value is None:
                continue
            live_state = self.live.last_state
            mine = self.runner.last_state
            self.windows += 1
            self.agree += live_state == mine
            self.live_tally.add(live_state)
            self.shadow_tally.add(mine)
            self.pairs.append((s.t_source, self.live.last_score, float(s.value), live_state, mine))

    def check(self) -> None:
        """On the watchdog's tick: the runner's stale-input check, its outputs recorded."""
        out = self.runner.check()
        if out and self._store is not None:
            self._store.append(out)
            self.recorded += len(out)

    def summary(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "model": self.live.cfg.id,
            "candidate": {
                "path": str(self.path),
                "name": c.name,
                "version": c.version,
                "sha256": c.sha256,
                "warning": c.package.thresholds.warning,
                "critical": c.package.thresholds.critical,
            },
            "live": {
                "version": self.live.model.version if self.live.model else "",
                "sha256": self.live.model.sha256 if self.live.model else "",
                "warning": self.live.model.package.thresholds.warning if self.live.model else None,
                "critical": (
                    self.live.model.package.thresholds.critical if self.live.model else None
                ),
                **self.live_tally.as_dict(),
            },
            "shadow": {"drift": self.runner.drift_status, **self.shadow_tally.as_dict()},
            "since": self.since,
            "windows": self.windows,
            "agreement": self.agree / self.windows if self.windows else None,
            "signals": shadow_signal_of(self.live.cfg),
        }
