"""A simulated induction motor and its vibration sensor: deterministic physics, time passed in.

MotorSim is the plant behind `floorconsole sim`, the demo, the tests and the training data of the
anomaly model. Nothing here reads a clock or does I/O: step(dt) advances plant time, and the same
seed with the same sequence of calls gives the same numbers, bit for bit.

Random streams are separate (load, measurement noise, one per accelerometer axis, bearing
impacts), so pulling vibration blocks more or less often does not change the process trajectory,
and two blocks of 256 samples are the same samples as one block of 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from floorconsole.core.points import ModbusPoint
from floorconsole.core.registers import encode

# --- Machine: a 4-pole induction motor on a 50 Hz supply -----------------------------------------
SUPPLY_HZ = 50.0
POLE_PAIRS = 2
SYNC_RPM = 60.0 * SUPPLY_HZ / POLE_PAIRS  # 1500 rpm: the rotating field
RATED_RPM = 1480.0  # nameplate speed at 100 % load
# In the normal operating range slip is about proportional to torque, so speed falls linearly
# with load: 1494 rpm at 30 %, 1482 rpm at 90 %.
RATED_SLIP_RPM = SYNC_RPM - RATED_RPM

# --- Load profile: what the driven machine asks for ----------------------------------------------
LOAD_MEAN_PCT = 60.0
# Two slow cycles (shift pattern, process batches) ...
LOAD_CYCLES = ((14.0, 900.0), (6.0, 230.0))  # (amplitude %, period s)
# ... plus a bounded random walk (Ornstein-Uhlenbeck: mean-reverting, so it cannot wander off).
LOAD_WALK_TAU_S = 60.0
LOAD_WALK_STD_PCT = 5.0
LOAD_MIN_PCT = 30.0
LOAD_MAX_PCT = 90.0

# --- Stator current ------------------------------------------------------------------------------
NO_LOAD_CURRENT_A = 6.0  # magnetising current: flows whenever the motor is energised
CURRENT_PER_PCT_A = 0.2  # torque current: 26 A at rated load, about a 15 kW motor on 400 V
CURRENT_NOISE_A = 0.05  # drive's current measurement noise (1 sigma)
CURRENT_TAU_S = 0.1  # current settles within the drive's averaging window

# --- Thermal: one lumped body heated by copper loss (proportional to I squared) -----------------
AMBIENT_C = 25.0
# Steady-state rise per A^2: ~59 C at 60 % load (18 A), ~86 C at 90 % (24 A); class F allows 155 C.
THERMAL_RISE_C_PER_A2 = 0.105
# Real frames take 20-60 min; compressed to a few minutes so a demo shows the lag.
THERMAL_TAU_S = 240.0
TEMP_NOISE_C = 0.05

# --- Start, stop and trip ------------------------------------------------------------------------
ACCEL_RPM_PER_S = 300.0  # drive soft start: standstill to speed in about 5 s
DECEL_RPM_PER_S = 375.0  # controlled stop: the drive ramps down in about 4 s
# A trip opens the contactor: current collapses within the rotor time constant, and the rotor
# coasts against load torque (about proportional to speed for a pump or fan) plus a constant
# friction torque that brings it to rest in about 5 s.
TRIP_CURRENT_TAU_S = 0.05
COAST_TAU_S = 1.5
COAST_FRICTION_RPM_PER_S = 40.0
SPEED_NOISE_RPM = 0.4
INITIAL_RUN_HOURS = 12_480.0  # a motor with a history, so the counter is not 0.000
MAX_SUBSTEP_S = 0.1  # step(dt) integrates in pieces no longer than this

# --- Vibration: a triaxial accelerometer on the drive-end bearing housing, in g ------------------
# Axes: x radial horizontal, y radial vertical, z axial. Peak amplitudes at rated speed; forces
# from unbalance grow with speed squared, so all machine lines scale with (speed / rated)^2.
# 0.030 g at 24.7 Hz is 1.3 mm/s rms velocity: ISO 10816-3 zone A/B, a healthy machine.
ONE_X_G = (0.030, 0.024, 0.010)  # residual unbalance; axial is the smallest
ONE_X_PHASE = (0.0, -math.pi / 2, 0.6)  # radial y lags x by 90 degrees: an elliptical orbit
TWO_X_G = (0.010, 0.008, 0.006)  # residual misalignment and shaft-bow harmonics
TWO_X_PHASE = (0.3, -1.0, 1.9)
LINE_2F_G = (0.004, 0.004, 0.002)  # 100 Hz: magnetic pull at twice the supply frequency
BROADBAND_G = 0.006  # flow, rolling noise, electrical: machine broadband at rated speed (1 sigma)
SENSOR_NOISE_G = 0.002  # MEMS sensor noise floor: all that is left at standstill (1 sigma)

# --- Faults (severity 0..1 scales each) ----------------------------------------------------------
FAULT_KINDS = ("imbalance", "bearing", "misalignment", "sensor_drift", "stuck_sensor", "dropout")
# Unbalance: a rotating force at 1x, radial. Severity 1 takes 1x radial to 7x healthy
# (~9 mm/s rms, ISO zone C/D); axial barely moves.
IMBALANCE_1X_GAIN = 6.0
IMBALANCE_AXIAL_1X_GAIN = 0.5
# Misalignment (angular + parallel): 2x radial and 1x axial rise; severity 1 is 5x and 6x.
MISALIGN_2X_GAIN = 4.0
MISALIGN_AXIAL_1X_GAIN = 5.0
MISALIGN_AXIAL_2X_GAIN = 3.0
# Outer-race defect: a rolling element crossing a spall is an impact that rings the housing's
# structural resonance. BPFO = n/2 (1 - d/D cos a) x shaft speed; 3.6x is typical of a 6206-ish
# deep-groove bearing (9 balls). Early spalls catch only some passes (depending on each roller's
# load and slip), impacts vary in strength and their period jitters by ~1 %; the ringing dies
# within a few ms. Sparse, decaying impacts are what raise kurtosis and crest factor, even at
# 500 samples/s where a 175 Hz resonance is still below Nyquist.
BPFO_ORDER = 3.6
BEARING_RESONANCE_HZ = 175.0
BEARING_DAMPING = 0.15  # damping ratio of the ringing mode
BEARING_IMPACT_G = 0.3  # median impact at severity 1 and rated speed
BEARING_IMPACT_CHANCE = 0.3  # share of ball passes that strike the spall
BEARING_JITTER = 0.01  # relative spread of the impact period
BEARING_IMPACT_SPREAD = 0.5  # lognormal sigma of impact strength
BEARING_AXIS_GAIN = (0.8, 1.0, 0.3)  # the load zone is at the bottom: vertical radial sees most
# Sensor drift (a loosening mount or a failing charge amplifier) on one axis: gain and offset grow
# linearly over DRIFT_RAMP_S to their maximum times severity. After one minute at severity 1 the
# gain is up 4 % and the offset 3 mg: distributions move long before the waveform looks wrong.
DRIFT_AXIS = 0
DRIFT_RAMP_S = 900.0
DRIFT_MAX_GAIN = 0.6
DRIFT_MAX_OFFSET_G = 0.05
# stuck_sensor and dropout are all-or-nothing: any severity above 0 freezes the sensor output at
# its last value, or (dropout) tells the Modbus adapter to stop answering.

# --- Modbus image: the drive's points, as fixtures/plants/demo.toml declares them ---------------
# (a test checks that the two agree). co:0 is the running status and also takes a run command;
# co:10 is the trip: a client writing true trips the motor, false resets it.
DRIVE_POINTS: dict[str, ModbusPoint] = {
    "motor1.current": ModbusPoint("drive1", "hr", 0, "float32", "big"),
    "motor1.speed": ModbusPoint("drive1", "hr", 2, "uint16"),
    "motor1.temp": ModbusPoint("drive1", "hr", 3, "int16", scale=0.1),
    "motor1.load": ModbusPoint("drive1", "hr", 4, "float32", "little"),
    "motor1.run_hours": ModbusPoint("drive1", "ir", 0, "uint32", scale=0.001),
    "motor1.running": ModbusPoint("drive1", "co", 0, "bool"),
    "motor1.trip": ModbusPoint("drive1", "co", 10, "bool"),
}
RUN_COIL = DRIVE_POINTS["motor1.running"].address
TRIP_COIL = DRIVE_POINTS["motor1.trip"].address


@dataclass(frozen=True, slots=True)
class MotorReading:
    """What the drive reports at one moment: measured values, with sensor noise."""

    t: float
    current_a: float
    speed_rpm: int
    temp_c: float
    load_pct: float
    run_hours: float
    running: bool
    tripped: bool


@dataclass(frozen=True, slots=True)
class RegisterImage:
    """Values for the Modbus tables: 16-bit words for hr/ir, bits for co/di, keyed by address."""

    hr: dict[int, int] = field(default_factory=dict)
    ir: dict[int, int] = field(default_factory=dict)
    co: dict[int, bool] = field(default_factory=dict)
    di: dict[int, bool] = field(default_factory=dict)

    def runs(self, table: str) -> list[tuple[int, list[int | bool]]]:
        """Contiguous (start address, values) runs of one table, for block writes."""
        cells: dict[int, int] | dict[int, bool] = getattr(self, table)
        out: list[tuple[int, list[int | bool]]] = []
        for addr in sorted(cells):
            if out and out[-1][0] + len(out[-1][1]) == addr:
                out[-1][1].append(cells[addr])
            else:
                out.append((addr, [cells[addr]]))
        return out


class MotorSim:
    """One motor with its drive and vibration sensor. Plant time moves only in step(dt)."""

    def __init__(self, seed: int, *, run_hours: float = INITIAL_RUN_HOURS) -> None:
        self.seed = seed
        streams = np.random.SeedSequence(seed).spawn(6)
        self._rng_load = np.random.default_rng(streams[0])
        self._rng_meas = np.random.default_rng(streams[1])
        self._rng_axis = [np.random.default_rng(s) for s in streams[2:5]]
        self._rng_bearing = np.random.default_rng(streams[5])

        self._t = 0.0
        self._load_phase = [
            float(p) for p in self._rng_load.uniform(0, 2 * math.pi, len(LOAD_CYCLES))
        ]
        self._walk = float(self._rng_load.normal(0.0, LOAD_WALK_STD_PCT))
        self._run_cmd = True
        self._tripped = False
        self._coasting = False  # de-energised by a trip: no drive ramp, the rotor coasts
        self._run_hours = float(run_hours)
        self._load_hold: float | None = None
        # The machine as installed: an overhaul (a new coupling, the sensor re-mounted) changes
        # what healthy running looks like without any fault (see overhaul()).
        self._one_x_gain = 1.0
        self._broadband_gain = 1.0

        # Start at the operating point of the initial load, thermally settled, so the demo moves
        # from the first second instead of warming up from ambient for minutes.
        load = self.load_demand_pct
        self._speed = self._loaded_speed(load)
        self._current = self._running_current(load)
        self._temp = AMBIENT_C + THERMAL_RISE_C_PER_A2 * self._current**2

        self._faults: dict[str, float] = {}
        self._fault_since: dict[str, float] = {}
        self._shaft_phase = 0.0  # radians of the 1x line; 2x runs at twice this
        self._line_phase = 0.0  # radians of the 100 Hz magnetic line
        self._bpfo_cycle = 0.0  # nominal progress to the next bearing impact, in BPFO periods
        self._bpfo_jitter = 0.0  # how late (in periods) the next impact comes
        # ringing state y[n-1], y[n-2] and the second input of an impact at a block's last sample
        self._ring = (0.0, 0.0, 0.0)
        self._last_out = np.zeros(3)  # the last sample sent per axis (what a stuck sensor repeats)
        self._reading = self._measure()

    # --- process ---------------------------------------------------------------------------------

    @property
    def t(self) -> float:
        """Plant time in seconds since construction."""
        return self._t

    @property
    def load_demand_pct(self) -> float:
        """What the driven machine asks for now (30-90 %), whether or not the motor runs."""
        if self._load_hold is not None:
            return self._load_hold
        x = LOAD_MEAN_PCT + self._walk
        for (amp, period), ph in zip(LOAD_CYCLES, self._load_phase, strict=True):
            x += amp * math.sin(2 * math.pi * self._t / period + ph)
        return min(LOAD_MAX_PCT, max(LOAD_MIN_PCT, x))

    @property
    def energised(self) -> bool:
        return self._run_cmd and not self._tripped

    @property
    def running(self) -> bool:
        """Energised and turning: what co:0 reports."""
        return self.energised and self._speed > 0.0

    @property
    def tripped(self) -> bool:
        return self._tripped

    @property
    def run_command(self) -> bool:
        return self._run_cmd

    @property
    def speed_rpm(self) -> float:
        return self._speed

    @property
    def shaft_hz(self) -> float:
        """Running-speed (1x) frequency."""
        return self._speed / 60.0

    @property
    def current_a(self) -> float:
        return self._current

    @property
    def temp_c(self) -> float:
        return self._temp

    @property
    def run_hours(self) -> float:
        return self._run_hours

    def hold_load(self, pct: float | None) -> None:
        """Pin the load demand at pct (for step tests and fixed-load data sets); None resumes
        the profile. The random walk keeps running underneath, so resuming stays deterministic."""
        if pct is not None and not 0.0 <= pct <= 100.0:
            raise ValueError(f"load must be 0..100 %, got {pct!r}")
        self._load_hold = None if pct is None else float(pct)

    def overhaul(self, *, one_x_gain: float = 1.0, broadband_gain: float = 1.0) -> None:
        """A healthy machine that runs differently after maintenance: residual unbalance (1x)
        and machine broadband scaled by these gains, for good (what a model trained before the
        overhaul calls anomalous, and recalibration learns as the new normal)."""
        if not (one_x_gain > 0.0 and broadband_gain > 0.0):
            raise ValueError(f"gains must be > 0, got {one_x_gain!r}, {broadband_gain!r}")
        self._one_x_gain = float(one_x_gain)
        self._broadband_gain = float(broadband_gain)

    def set_run(self, on: bool) -> None:
        """Run command: False ramps the motor down, True starts it (unless tripped)."""
        self._run_cmd = bool(on)

    def set_trip(self, tripped: bool) -> None:
        """True trips the motor (it coasts to rest); False resets, and it restarts if commanded."""
        if tripped and not self._tripped:
            self._coasting = True
        self._tripped = bool(tripped)

    @staticmethod
    def _loaded_speed(load_pct: float) -> float:
        return SYNC_RPM - RATED_SLIP_RPM * load_pct / 100.0

    @staticmethod
    def _running_current(load_pct: float) -> float:
        return NO_LOAD_CURRENT_A + CURRENT_PER_PCT_A * load_pct

    def step(self, dt: float) -> MotorReading:
        """Advance plant time by dt seconds and return the new reading."""
        if not dt > 0.0 or not math.isfinite(dt):
            raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
        pieces = max(1, math.ceil(dt / MAX_SUBSTEP_S - 1e-9))
        h = dt / pieces
        for _ in range(pieces):
            self._substep(h)
        self._reading = self._measure()
        return self._reading

    def _substep(self, h: float) -> None:
        decay = math.exp(-h / LOAD_WALK_TAU_S)
        self._walk = (
            self._walk * decay
            + LOAD_WALK_STD_PCT * math.sqrt(1 - decay * decay) * self._rng_load.normal()
        )
        self._t += h
        load = self.load_demand_pct
        target = self._loaded_speed(load)

        if self.energised:
            self._coasting = False
            if self._speed < target:
                self._speed = min(target, self._speed + ACCEL_RPM_PER_S * h)
            else:  # load rose, or a restart during a ramp-down: follow down at the drive's rate
                self._speed = max(target, self._speed - DECEL_RPM_PER_S * h)
            i_target = self._running_current(load) * min(1.0, self._speed / target)
            tau = CURRENT_TAU_S
        elif self._coasting:
            k = math.exp(-h / COAST_TAU_S)
            # exact solution of dv/dt = -v/tau - f over h, stopped at 0
            self._speed = max(
                0.0,
                (self._speed + COAST_FRICTION_RPM_PER_S * COAST_TAU_S) * k
                - COAST_FRICTION_RPM_PER_S * COAST_TAU_S,
            )
            i_target = 0.0
            tau = TRIP_CURRENT_TAU_S
        else:  # a controlled stop: the drive ramps speed, and current, down to 0
            self._speed = max(0.0, self._speed - DECEL_RPM_PER_S * h)
            i_target = self._running_current(load) * self._speed / target
            tau = CURRENT_TAU_S
        self._current = i_target + (self._current - i_target) * math.exp(-h / tau)
        if self._current < 1e-3 and i_target == 0.0:
            self._current = 0.0

        t_inf = AMBIENT_C + THERMAL_RISE_C_PER_A2 * self._current**2
        self._temp = t_inf + (self._temp - t_inf) * math.exp(-h / THERMAL_TAU_S)
        if self.running:
            self._run_hours += h / 3600.0

    def _measure(self) -> MotorReading:
        noise = self._rng_meas.normal(size=3)
        current = max(0.0, self._current + CURRENT_NOISE_A * noise[0]) if self._current > 0 else 0.0
        speed = max(0, round(self._speed + SPEED_NOISE_RPM * noise[1])) if self._speed > 0 else 0
        full = self._running_current(self.load_demand_pct)
        load = self.load_demand_pct * min(1.0, self._current / full) if self.energised else 0.0
        return MotorReading(
            t=self._t,
            current_a=current,
            speed_rpm=int(speed),
            temp_c=self._temp + TEMP_NOISE_C * float(noise[2]),
            load_pct=load,
            run_hours=self._run_hours,
            running=self.running,
            tripped=self._tripped,
        )

    def reading(self) -> MotorReading:
        """The reading of the last step (or of construction)."""
        return self._reading

    # --- faults ----------------------------------------------------------------------------------

    def set_fault(self, kind: str, severity: float = 1.0) -> None:
        """Inject or change a fault. Severity 0..1; a drift keeps growing from when it began."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"{kind!r} is not a fault; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity of {kind} must be 0..1, got {severity!r}")
        if kind not in self._faults:
            self._fault_since[kind] = self._t
        self._faults[kind] = float(severity)

    def clear_fault(self, kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"{kind!r} is not a fault; expected one of {', '.join(FAULT_KINDS)}")
        self._faults.pop(kind, None)
        self._fault_since.pop(kind, None)

    @property
    def faults(self) -> dict[str, float]:
        """Active faults and their severities (a copy)."""
        return dict(self._faults)

    @property
    def dropout(self) -> bool:
        """The Modbus device should stop answering (read by the adapter)."""
        return self._faults.get("dropout", 0.0) > 0.0

    def drift_level(self) -> float:
        """How far sensor drift has grown: 0 (none) .. severity (after DRIFT_RAMP_S)."""
        sev = self._faults.get("sensor_drift", 0.0)
        if sev <= 0.0:
            return 0.0
        return sev * min(1.0, (self._t - self._fault_since["sensor_drift"]) / DRIFT_RAMP_S)

    # --- vibration -------------------------------------------------------------------------------

    def vibration_block(
        self, n: int = 256, fs: float = 500.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next n accelerometer samples at fs Hz per axis (x, y, z), in g.

        Continues in phase from the previous block at the current operating point; does not
        advance plant time (step does).
        """
        if n < 1 or not fs > 0.0:
            raise ValueError(f"need n >= 1 and fs > 0, got n={n!r} fs={fs!r}")
        f1 = self.shaft_hz
        scale = (self._speed / RATED_RPM) ** 2
        k = np.arange(n, dtype=np.float64)
        shaft = self._shaft_phase + 2 * math.pi * f1 * k / fs
        line = self._line_phase + 2 * math.pi * 2 * SUPPLY_HZ * k / fs
        self._shaft_phase = (self._shaft_phase + 2 * math.pi * f1 * n / fs) % (2 * math.pi)
        self._line_phase = (self._line_phase + 2 * math.pi * 2 * SUPPLY_HZ * n / fs) % (2 * math.pi)
        magnetising = min(1.0, self._current / NO_LOAD_CURRENT_A)

        imb = self._faults.get("imbalance", 0.0)
        mis = self._faults.get("misalignment", 0.0)
        one_x_gain = (
            1 + IMBALANCE_1X_GAIN * imb,
            1 + IMBALANCE_1X_GAIN * imb,
            1 + IMBALANCE_AXIAL_1X_GAIN * imb + MISALIGN_AXIAL_1X_GAIN * mis,
        )
        two_x_gain = (
            1 + MISALIGN_2X_GAIN * mis,
            1 + MISALIGN_2X_GAIN * mis,
            1 + MISALIGN_AXIAL_2X_GAIN * mis,
        )
        bearing = self._bearing_ringing(n, fs, f1, scale)

        noise_std = math.hypot(BROADBAND_G * self._broadband_gain * scale, SENSOR_NOISE_G)
        axes = []
        for a in range(3):
            sig = (
                scale
                * ONE_X_G[a]
                * self._one_x_gain
                * one_x_gain[a]
                * np.sin(shaft + ONE_X_PHASE[a])
                + scale * TWO_X_G[a] * two_x_gain[a] * np.sin(2 * shaft + TWO_X_PHASE[a])
                + magnetising * LINE_2F_G[a] * np.sin(line + a)
                + noise_std * self._rng_axis[a].standard_normal(n)
            )
            if bearing is not None:
                sig = sig + BEARING_AXIS_GAIN[a] * bearing
            axes.append(sig)

        drift = self.drift_level()
        if drift > 0.0:
            axes[DRIFT_AXIS] = axes[DRIFT_AXIS] * (1 + DRIFT_MAX_GAIN * drift) + (
                DRIFT_MAX_OFFSET_G * drift
            )

        if self._faults.get("stuck_sensor", 0.0) > 0.0:
            axes = [np.full(n, self._last_out[a]) for a in range(3)]
        else:
            self._last_out = np.array([ax[-1] for ax in axes])
        return axes[0], axes[1], axes[2]

    def _bearing_ringing(self, n: int, fs: float, f1: float, scale: float) -> np.ndarray | None:
        """Impacts at BPFO ringing a damped mode; impact timing and ringing carry over blocks.

        Each impact starts an exact sampled damped sinusoid at its true (sub-sample) time: put on
        the sample grid instead, a 5.6-sample period would alias into a false envelope line at
        |fs - 5 BPFO|. A sampled damped sinusoid obeys y[k] = a1 y[k-1] + a2 y[k-2], so an impact
        is two inputs to that recursion: its first sample, then what makes the second one right.
        """
        sev = self._faults.get("bearing", 0.0)
        if sev <= 0.0:
            self._ring = (0.0, 0.0, 0.0)
            return None
        wn = 2 * math.pi * BEARING_RESONANCE_HZ / fs  # radians per sample
        wd = wn * math.sqrt(1 - BEARING_DAMPING**2)
        r = math.exp(-BEARING_DAMPING * wn)
        a1, a2 = 2 * r * math.cos(wd), -r * r
        per_sample = BPFO_ORDER * f1 / fs  # impact periods per sample
        amp = BEARING_IMPACT_G * sev * scale
        rng = self._rng_bearing
        cycle, jitter = self._bpfo_cycle, self._bpfo_jitter
        y1, y2, pending = self._ring
        out = np.empty(n)
        for i in range(n):
            x, pending = pending, 0.0
            cycle += per_sample
            # Pocket clearance lets each ball arrive a little early or late, around a steady
            # cage: jitter per impact that does not accumulate into a phase drift.
            due = 1.0 + jitter
            if per_sample > 0.0 and cycle >= due:
                cycle -= 1.0
                late = (cycle - jitter) / per_sample  # samples since the impact (0..1)
                jitter = BEARING_JITTER * float(rng.standard_normal())
                strength = float(rng.lognormal(0.0, BEARING_IMPACT_SPREAD))
                if rng.random() < BEARING_IMPACT_CHANCE:
                    s0 = amp * strength * r**late * math.sin(wd * late)
                    s1 = amp * strength * r ** (late + 1) * math.sin(wd * (late + 1))
                    x += s0
                    pending = s1 - a1 * s0
            y = a1 * y1 + a2 * y2 + x
            y2, y1 = y1, y
            out[i] = y
        self._bpfo_cycle, self._bpfo_jitter = cycle, jitter
        self._ring = (y1, y2, pending)
        return out

    # --- Modbus ----------------------------------------------------------------------------------

    def register_image(self) -> RegisterImage:
        """The last reading encoded for the Modbus tables at the demo plant's addresses."""
        r = self._reading
        values: dict[str, float | bool] = {
            "motor1.current": r.current_a,
            "motor1.speed": r.speed_rpm,
            "motor1.temp": r.temp_c,
            "motor1.load": r.load_pct,
            "motor1.run_hours": r.run_hours,
            "motor1.running": r.running,
            "motor1.trip": r.tripped,
        }
        image = RegisterImage()
        for signal, point in DRIVE_POINTS.items():
            words = encode(values[signal], point)
            if point.table in ("co", "di"):
                getattr(image, point.table)[point.address] = bool(words[0])
            else:
                for i, w in enumerate(words):
                    getattr(image, point.table)[point.address + i] = w
        return image
