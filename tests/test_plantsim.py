"""The simulated motor: determinism, process physics, vibration lines, faults and the Modbus image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kurtosis

from floorconsole.core import plantsim as ps
from floorconsole.core.config import load_plant
from floorconsole.core.plantsim import MotorSim
from floorconsole.core.registers import decode_point

DEMO_PLANT = Path(__file__).resolve().parent.parent / "fixtures" / "plants" / "demo.toml"
FS = 500.0
BLOCK = 256


def line_amplitude(x: np.ndarray, freq: float, fs: float = FS) -> float:
    """Peak amplitude of the spectral line nearest freq (Hann window, amplitude-corrected)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft((x - x.mean()) * w)) * 2 / w.sum()
    f = np.fft.rfftfreq(len(x), 1 / fs)
    band = np.abs(f - freq) <= 1.0
    return float(spec[band].max())


def blocks(sim: MotorSim, count: int, *, axis: int | None = None) -> list:
    """count consecutive blocks, stepping plant time by one block length between them."""
    out = []
    for _ in range(count):
        sim.step(BLOCK / FS)
        b = sim.vibration_block(BLOCK, FS)
        out.append(b if axis is None else b[axis])
    return out


def crest(x: np.ndarray) -> float:
    return float(np.abs(x).max() / np.sqrt(np.mean(x**2)))


# --- determinism and continuity -------------------------------------------------------------------


def test_same_seed_same_readings_and_blocks() -> None:
    a, b = MotorSim(7), MotorSim(7)
    for sim in (a, b):
        sim.set_fault("bearing", 0.5)
    for _ in range(20):
        ra, rb = a.step(0.1), b.step(0.1)
        assert ra == rb
        for xa, xb in zip(a.vibration_block(), b.vibration_block(), strict=True):
            np.testing.assert_array_equal(xa, xb)
    assert a.register_image() == b.register_image()


def test_different_seed_differs() -> None:
    a, b = MotorSim(1), MotorSim(2)
    a.step(1.0)
    b.step(1.0)
    assert a.reading().load_pct != b.reading().load_pct
    assert not np.array_equal(a.vibration_block()[0], b.vibration_block()[0])


def test_vibration_does_not_disturb_the_process() -> None:
    """Pulling blocks (or not) leaves the load, current and temperature trajectory unchanged."""
    a, b = MotorSim(3), MotorSim(3)
    for _ in range(50):
        a.step(0.2)
        a.vibration_block()
        b.step(0.2)
    assert a.reading() == b.reading()


@pytest.mark.parametrize("fault", [None, "bearing", "misalignment"])
def test_blocks_are_continuous_in_phase(fault: str | None) -> None:
    """Two blocks of 256 are the same samples as one block of 512: no phase jump at the seam."""
    a, b = MotorSim(11), MotorSim(11)
    if fault:
        a.set_fault(fault)
        b.set_fault(fault)
    first, second = a.vibration_block(256), a.vibration_block(256)
    whole = b.vibration_block(512)
    for axis in range(3):
        joined = np.concatenate([first[axis], second[axis]])
        np.testing.assert_allclose(joined, whole[axis], rtol=0, atol=1e-12)


def test_tonal_part_continues_across_many_blocks() -> None:
    """With noise removed by averaging over seeds the 1x waveform has no seam at block edges."""
    n_seeds, n = 40, 64
    acc = np.zeros(3 * n)
    for seed in range(n_seeds):
        sim = MotorSim(5)
        # same operating point and phase for all, independent noise: seed only the axis streams
        sim._rng_axis = [np.random.default_rng([seed, a]) for a in range(3)]
        acc += np.concatenate([sim.vibration_block(n)[0] for _ in range(3)])
    mean = acc / n_seeds
    steps = np.abs(np.diff(mean))
    seams = steps[[n - 1, 2 * n - 1]]
    assert seams.max() < 3 * np.median(steps) + 0.005


# --- process physics ----------------------------------------------------------------------------


def test_nominal_operating_point() -> None:
    sim = MotorSim(0)
    speeds, loads = [], []
    for _ in range(3600):  # one hour, 1 s steps
        r = sim.step(1.0)
        speeds.append(r.speed_rpm)
        loads.append(r.load_pct)
        assert r.running and not r.tripped
    assert min(loads) >= ps.LOAD_MIN_PCT - 1 and max(loads) <= ps.LOAD_MAX_PCT + 1
    assert max(loads) - min(loads) > 20, "the load profile should vary over an hour"
    assert 1480 <= min(speeds) and max(speeds) <= 1496
    assert 24.6 < sim.shaft_hz < 25.0


def test_current_follows_load() -> None:
    sim = MotorSim(4)
    load, current = [], []
    for _ in range(1800):
        sim.step(1.0)
        load.append(sim.load_demand_pct)
        current.append(sim.reading().current_a)
    load_a, current_a = np.array(load), np.array(current)
    assert np.corrcoef(load_a, current_a)[0, 1] > 0.99
    slope, intercept = np.polyfit(load_a, current_a, 1)
    assert slope == pytest.approx(ps.CURRENT_PER_PCT_A, rel=0.05)
    assert intercept == pytest.approx(ps.NO_LOAD_CURRENT_A, abs=0.3)
    residual = current_a - (slope * load_a + intercept)
    assert 0.01 < residual.std() < 0.2, "a little measurement noise, not none and not much"


def test_speed_slips_with_load() -> None:
    sim = MotorSim(4)
    sim.hold_load(30.0)
    sim.step(10.0)
    light = sim.speed_rpm
    sim.hold_load(90.0)
    sim.step(10.0)
    heavy = sim.speed_rpm
    assert light == pytest.approx(1500 - 20 * 0.3)
    assert heavy == pytest.approx(1500 - 20 * 0.9)


def test_temperature_lags_a_load_step() -> None:
    sim = MotorSim(9)
    sim.hold_load(30.0)
    sim.step(3600.0)  # settle: 15 thermal time constants
    t_cold = sim.temp_c
    assert t_cold == pytest.approx(ps.AMBIENT_C + ps.THERMAL_RISE_C_PER_A2 * 12.0**2, abs=0.05)

    sim.hold_load(90.0)
    sim.step(1.0)
    assert sim.current_a == pytest.approx(24.0, abs=0.1), "current follows load within a second"
    t_hot = ps.AMBIENT_C + ps.THERMAL_RISE_C_PER_A2 * 24.0**2
    rise = t_hot - t_cold
    assert sim.temp_c - t_cold < 0.01 * rise, "temperature must not jump with the current"

    sim.step(ps.THERMAL_TAU_S - 1.0)
    frac = (sim.temp_c - t_cold) / rise
    assert frac == pytest.approx(1 - math.exp(-1), abs=0.02), "first order: 63 % after one tau"
    sim.step(4 * ps.THERMAL_TAU_S)
    assert sim.temp_c == pytest.approx(t_hot, abs=0.02 * rise)


def test_starts_near_thermal_steady_state() -> None:
    sim = MotorSim(12)
    expected = ps.AMBIENT_C + ps.THERMAL_RISE_C_PER_A2 * sim.current_a**2
    assert sim.temp_c == pytest.approx(expected, abs=0.5)
    assert sim.temp_c > ps.AMBIENT_C + 20


def test_trip_coasts_to_rest_and_reset_restarts() -> None:
    sim = MotorSim(2)
    sim.step(1.0)
    hours = sim.run_hours
    sim.set_trip(True)
    speeds = []
    for i in range(100):  # 10 s
        r = sim.step(0.1)
        speeds.append(sim.speed_rpm)
        if i >= 4:
            assert r.current_a == 0.0, "the contactor opened: no current after 0.5 s"
        assert not r.running and r.tripped
    assert all(b <= a for a, b in zip(speeds, speeds[1:], strict=False))
    assert speeds[10] > 300, "coasts (seconds), does not stop dead"
    assert speeds[-1] == 0.0
    assert sim.reading().speed_rpm == 0
    assert sim.reading().load_pct == 0.0
    assert sim.run_hours == pytest.approx(hours, abs=1e-9), "run hours stop with the motor"

    x, y, z = sim.vibration_block(4096)
    for axis in (x, y, z):
        assert axis.std() == pytest.approx(ps.SENSOR_NOISE_G, rel=0.1), "only sensor noise"

    sim.set_trip(False)
    sim.step(0.1)
    assert sim.running
    sim.step(8.0)
    assert sim.speed_rpm == pytest.approx(sim._loaded_speed(sim.load_demand_pct), abs=0.5)
    assert sim.current_a > ps.NO_LOAD_CURRENT_A


def test_stop_command_ramps_down() -> None:
    sim = MotorSim(2)
    sim.set_run(False)
    sim.step(2.0)
    assert 0 < sim.speed_rpm < 1000 and sim.current_a > 0, "a ramp, not a coast or a cut"
    sim.step(3.0)
    assert sim.speed_rpm == 0.0 and sim.current_a == 0.0 and not sim.running
    assert sim.reading().running is False and sim.reading().tripped is False


def test_run_hours_count_running_time() -> None:
    sim = MotorSim(1, run_hours=100.0)
    for _ in range(360):
        sim.step(10.0)
    assert sim.run_hours == pytest.approx(101.0, abs=1e-9)


def test_invalid_arguments() -> None:
    sim = MotorSim(0)
    with pytest.raises(ValueError, match="positive"):
        sim.step(0.0)
    with pytest.raises(ValueError, match="not a fault"):
        sim.set_fault("rust")
    with pytest.raises(ValueError, match="0..1"):
        sim.set_fault("bearing", 1.5)
    with pytest.raises(ValueError, match="0..100"):
        sim.hold_load(120.0)


# --- vibration spectrum ---------------------------------------------------------------------------


def test_one_x_and_two_x_lines_at_running_speed() -> None:
    sim = MotorSim(21)
    sim.step(1.0)
    x, y, z = sim.vibration_block(8192)  # 16 s at 500 Hz: 0.06 Hz resolution
    f1 = sim.shaft_hz
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w)) * 2 / w.sum()
    f = np.fft.rfftfreq(len(x), 1 / FS)
    # the strongest line below 60 Hz is 1x, the strongest between 40 and 60 Hz is 2x
    low = f < 40
    assert f[low][spec[low].argmax()] == pytest.approx(f1, abs=0.1)
    mid = (f > 40) & (f < 60)
    assert f[mid][spec[mid].argmax()] == pytest.approx(2 * f1, abs=0.1)
    scale = (sim.speed_rpm / ps.RATED_RPM) ** 2
    assert line_amplitude(x, f1) == pytest.approx(ps.ONE_X_G[0] * scale, rel=0.15)
    assert line_amplitude(x, 2 * f1) == pytest.approx(ps.TWO_X_G[0] * scale, rel=0.25)
    assert line_amplitude(z, f1) < 0.5 * line_amplitude(x, f1), "axial 1x is the smaller"
    assert line_amplitude(x, 2 * ps.SUPPLY_HZ) > 3 * np.median(spec), "100 Hz magnetic line"
    for axis in (x, y, z):
        assert 0.005 < axis.std() < 0.05, "healthy machine: some tens of mg"


def _healthy_and_faulty(
    kind: str, severity: float = 1.0, n_blocks: int = 16, seed: int = 31
) -> tuple[list, list]:
    healthy, faulty = MotorSim(seed), MotorSim(seed)
    faulty.set_fault(kind, severity)
    return blocks(healthy, n_blocks), blocks(faulty, n_blocks)


def _mean_feature(bs: list, axis: int, fn) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean([fn(b[axis]) for b in bs]))


def test_imbalance_raises_radial_one_x() -> None:
    sim = MotorSim(31)
    sim.step(0.5)
    f1 = sim.shaft_hz
    healthy, faulty = _healthy_and_faulty("imbalance")
    for axis in (0, 1):
        h = _mean_feature(healthy, axis, lambda v: line_amplitude(v, f1))
        f = _mean_feature(faulty, axis, lambda v: line_amplitude(v, f1))
        assert f > 4 * h
    h2 = _mean_feature(healthy, 0, lambda v: line_amplitude(v, 2 * f1))
    f2 = _mean_feature(faulty, 0, lambda v: line_amplitude(v, 2 * f1))
    assert f2 == pytest.approx(h2, rel=0.3), "imbalance is a 1x fault; 2x stays"


def test_imbalance_grows_with_severity() -> None:
    sim = MotorSim(31)
    f1 = sim.shaft_hz
    amps = []
    for sev in (0.0, 0.25, 0.5, 1.0):
        _, faulty = _healthy_and_faulty("imbalance", sev, n_blocks=4)
        amps.append(_mean_feature(faulty, 0, lambda v: line_amplitude(v, f1)))
    assert amps == sorted(amps) and amps[-1] > 4 * amps[0]


def test_misalignment_raises_two_x_and_axial_one_x() -> None:
    sim = MotorSim(31)
    f1 = sim.shaft_hz
    healthy, faulty = _healthy_and_faulty("misalignment")
    for axis in (0, 1):
        h = _mean_feature(healthy, axis, lambda v: line_amplitude(v, 2 * f1))
        f = _mean_feature(faulty, axis, lambda v: line_amplitude(v, 2 * f1))
        assert f > 3 * h
    h_ax = _mean_feature(healthy, 2, lambda v: line_amplitude(v, f1))
    f_ax = _mean_feature(faulty, 2, lambda v: line_amplitude(v, f1))
    assert f_ax > 3 * h_ax


@pytest.mark.parametrize("severity", [0.3, 1.0])
def test_bearing_defect_raises_kurtosis_and_crest(severity: float) -> None:
    healthy, faulty = _healthy_and_faulty("bearing", severity, n_blocks=24)
    for axis in (0, 1):
        k_h = _mean_feature(healthy, axis, lambda v: kurtosis(v, fisher=False))
        k_f = _mean_feature(faulty, axis, lambda v: kurtosis(v, fisher=False))
        c_h = _mean_feature(healthy, axis, crest)
        c_f = _mean_feature(faulty, axis, crest)
        assert k_h < 3.0, "a healthy, tone-dominated signal is sub-Gaussian"
        assert k_f > 1.8 * k_h
        assert c_f > 1.4 * c_h


def test_bearing_energy_sits_at_the_resonance() -> None:
    healthy, faulty = _healthy_and_faulty("bearing", 1.0, n_blocks=16)

    def band_power(v: np.ndarray, lo: float, hi: float) -> float:
        spec = np.abs(np.fft.rfft(v)) ** 2
        f = np.fft.rfftfreq(len(v), 1 / FS)
        return float(spec[(f >= lo) & (f <= hi)].sum())

    h = _mean_feature(healthy, 1, lambda v: band_power(v, 150, 200))
    f = _mean_feature(faulty, 1, lambda v: band_power(v, 150, 200))
    assert f > 20 * h


def test_bearing_impacts_repeat_at_bpfo() -> None:
    """Impacts come at the outer-race frequency (~3.6x running speed): the harmonic of BPFO nearest
    the resonance is the strongest line from 60 to 240 Hz, and BPFO itself stands out.

    (Envelope analysis would need several BPFO harmonics inside one band; at 500 samples/s only
    one fits between the 1x/2x lines and Nyquist, so the raw spectrum is the honest check.)
    """
    sim, ref = MotorSim(8), MotorSim(8)
    sim.set_fault("bearing", 1.0)
    n = 8192
    y, y_ref = sim.vibration_block(n)[1], ref.vibration_block(n)[1]
    bpfo = ps.BPFO_ORDER * sim.shaft_hz
    w = np.hanning(n)
    spec = np.abs(np.fft.rfft(y * w))
    f = np.fft.rfftfreq(n, 1 / FS)
    band = (f > 60) & (f < 240)
    assert f[band][spec[band].argmax()] == pytest.approx(2 * bpfo, rel=0.01)
    assert line_amplitude(y, bpfo) > 5 * line_amplitude(y_ref, bpfo)


def test_sensor_drift_grows_slowly() -> None:
    sim = MotorSim(17)
    sim.set_fault("sensor_drift", 1.0)
    levels, offsets = [], []
    for minute in range(16):
        x = sim.vibration_block(2048)[ps.DRIFT_AXIS]
        levels.append(sim.drift_level())
        offsets.append(float(x.mean()))
        if minute == 1:
            # one minute in: a few mg and a few % gain, nothing a glance at the waveform shows
            assert 0.0 < offsets[-1] < 0.1 * ps.DRIFT_MAX_OFFSET_G + 0.003
        sim.step(60.0)
    assert levels == sorted(levels)
    assert levels[0] == 0.0 and levels[-1] == pytest.approx(1.0)
    assert offsets[-1] == pytest.approx(ps.DRIFT_MAX_OFFSET_G, abs=0.005)
    assert all(b > a - 0.003 for a, b in zip(offsets, offsets[1:], strict=False))
    # the other axes are untouched
    clean = MotorSim(17)
    clean.step(15 * 60.0)
    drifted_y = sim.vibration_block(2048)[1]
    clean_y = clean.vibration_block(2048)[1]
    assert drifted_y.std() == pytest.approx(clean_y.std(), rel=0.1)


def test_sensor_drift_gain_moves_rms_before_offset_is_large() -> None:
    sim = MotorSim(17)
    ref = MotorSim(17)
    sim.set_fault("sensor_drift", 1.0)
    sim.step(300.0)
    ref.step(300.0)
    x, x_ref = sim.vibration_block(4096)[0], ref.vibration_block(4096)[0]
    ratio = (x - x.mean()).std() / (x_ref - x_ref.mean()).std()
    assert ratio == pytest.approx(1 + ps.DRIFT_MAX_GAIN * 300.0 / ps.DRIFT_RAMP_S, abs=0.02)
    assert abs(x.mean()) < 0.5 * ps.DRIFT_MAX_OFFSET_G


def test_stuck_sensor_is_flat_at_its_last_value_and_recovers() -> None:
    sim = MotorSim(5)
    last = [axis[-1] for axis in sim.vibration_block()]
    sim.set_fault("stuck_sensor")
    for _ in range(3):
        sim.step(0.5)
        for axis, value in zip(sim.vibration_block(), last, strict=True):
            assert np.ptp(axis) == 0.0 and axis[0] == value
    sim.clear_fault("stuck_sensor")
    for axis in sim.vibration_block():
        assert axis.std() > 0.005


def test_faults_set_clear_and_list() -> None:
    sim = MotorSim(0)
    sim.set_fault("imbalance", 0.4)
    sim.set_fault("dropout")
    assert sim.faults == {"imbalance": 0.4, "dropout": 1.0}
    assert sim.dropout
    sim.clear_fault("dropout")
    sim.clear_fault("bearing")  # clearing an inactive fault is harmless
    assert sim.faults == {"imbalance": 0.4} and not sim.dropout


def test_clearing_a_fault_restores_healthy_vibration() -> None:
    sim, ref = MotorSim(40), MotorSim(40)
    sim.set_fault("imbalance")
    sim.vibration_block()
    ref.vibration_block()
    sim.clear_fault("imbalance")
    for a, b in zip(sim.vibration_block(), ref.vibration_block(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


# --- Modbus image ---------------------------------------------------------------------------------


def test_drive_points_match_the_demo_plant() -> None:
    plant = load_plant(DEMO_PLANT)
    for signal, point in ps.DRIVE_POINTS.items():
        assert plant.signal(signal).source == point, signal
    from_plant = {s.id for s in plant.signals_of_device("drive1")}
    assert from_plant == set(ps.DRIVE_POINTS)


def _decoded(sim: MotorSim) -> dict[str, float | bool]:
    image = sim.register_image()
    out = {}
    for signal, point in ps.DRIVE_POINTS.items():
        table = getattr(image, point.table)
        data = [table[point.address + i] for i in range(point.width)]
        out[signal] = decode_point(point, data)
    return out


def test_register_image_decodes_to_the_reading() -> None:
    sim = MotorSim(3)
    sim.step(5.0)
    r = sim.reading()
    v = _decoded(sim)
    assert v["motor1.current"] == pytest.approx(r.current_a, rel=1e-6)
    assert v["motor1.speed"] == r.speed_rpm
    assert v["motor1.temp"] == pytest.approx(r.temp_c, abs=0.051)
    assert v["motor1.load"] == pytest.approx(r.load_pct, rel=1e-6)
    assert v["motor1.run_hours"] == pytest.approx(r.run_hours, abs=0.0006)
    assert v["motor1.running"] is True and v["motor1.trip"] is False
    image = sim.register_image()
    assert image.runs("hr") == [(0, [image.hr[a] for a in range(6)])]
    assert image.runs("co") == [(0, [True]), (10, [False])]


def test_register_image_word_orders() -> None:
    """hr:0 is high word first, hr:4 low word first (demo.toml says so)."""
    sim = MotorSim(3)
    sim.hold_load(50.0)
    sim.step(2.0)
    image = sim.register_image()
    assert [image.hr[4], image.hr[5]] == [0x0000, 0x4248]  # 50.0f is 0x42480000


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 40), tripped=st.booleans())
def test_register_image_is_always_encodable_and_plausible(
    seed: int, steps: int, tripped: bool
) -> None:
    sim = MotorSim(seed)
    sim.set_trip(tripped)
    for _ in range(steps):
        sim.step(0.25)
    v = _decoded(sim)
    assert 0.0 <= v["motor1.current"] <= 50.0
    assert 0 <= v["motor1.speed"] <= 1500
    assert 20.0 <= v["motor1.temp"] <= 120.0
    assert 0.0 <= v["motor1.load"] <= 100.0
    assert v["motor1.trip"] is tripped
    assert v["motor1.running"] is (not tripped)
