"""Window features against a plain reference implementation, and safety on degenerate windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from floorconsole.core.features import (
    SCALAR_STATS,
    WAVEFORM_STATS,
    block_features,
    scalar_features,
    waveform_feature_names,
    waveform_features,
)


def reference(x: np.ndarray) -> dict[str, float]:
    """The textbook formulas one by one, with the degenerate-window rules of core.features
    written out: a ratio over a zero denominator is 0, and a window whose std is at most 1e-9
    of its peak (or whose m2^2 underflows) has variance, std, skewness and kurtosis 0."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return dict.fromkeys(WAVEFORM_STATS, 0.0)
    rms = float(np.sqrt(np.mean(x**2)))
    peak = float(np.max(np.abs(x)))
    mean_abs = float(np.mean(np.abs(x)))
    d = x - np.mean(x)
    m2, m3, m4 = float(np.mean(d**2)), float(np.mean(d**3)), float(np.mean(d**4))
    std = float(np.sqrt(m2))
    flat = not (std > 1e-9 * peak and m2 * m2 > 0)
    clearance_den = float(np.mean(np.sqrt(np.abs(x)))) ** 2
    return {
        "rms": rms,
        "peak": peak,
        "peak_to_peak": float(np.max(x) - np.min(x)),
        "crest_factor": peak / rms if rms > 0 else 0.0,
        "variance": 0.0 if flat else m2,
        "std": 0.0 if flat else std,
        "skewness": 0.0 if flat else m3 / m2**1.5,
        "kurtosis": 0.0 if flat else m4 / m2**2 - 3.0,
        "shape_factor": rms / mean_abs if mean_abs > 0 else 0.0,
        "impulse_factor": peak / mean_abs if mean_abs > 0 else 0.0,
        "clearance_factor": peak / clearance_den if clearance_den > 0 else 0.0,
    }


def test_reference_agrees_with_scipy() -> None:
    x = np.random.default_rng(1).gamma(2.0, 1.0, 500)
    r = reference(x)
    assert r["skewness"] == pytest.approx(stats.skew(x, bias=True), rel=1e-12)
    assert r["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=True, bias=True), rel=1e-12)
    assert r["variance"] == pytest.approx(np.var(x), rel=1e-12)
    assert r["peak_to_peak"] == np.ptp(x)


def assert_matches(x: np.ndarray, got: np.ndarray) -> None:
    want = reference(x)
    for k, name in enumerate(WAVEFORM_STATS):
        assert got[k] == pytest.approx(want[name], rel=1e-6, abs=1e-6), name


RNG = np.random.default_rng(2024)
RANDOM_WINDOWS = [
    RNG.normal(0, 0.02, 256),
    RNG.normal(3.0, 0.5, 256),  # an offset
    RNG.uniform(-1, 1, 100),
    RNG.standard_t(3, 512) * 0.1,  # heavy tails
    RNG.exponential(1.0, 256),  # skewed, all positive
    -RNG.exponential(1.0, 256),
    np.sin(np.linspace(0, 40, 256)) + RNG.normal(0, 0.1, 256),
    RNG.normal(0, 1e-6, 256),  # tiny but real spread
    RNG.normal(0, 1e4, 64),
    np.array([1.0, -1.0]),
    np.array([0.0, 0.0, 5.0]),
]


@pytest.mark.parametrize("i", range(len(RANDOM_WINDOWS)))
def test_random_windows_match_reference(i: int) -> None:
    x = RANDOM_WINDOWS[i]
    assert_matches(x, waveform_features(x))


def test_batch_equals_one_by_one() -> None:
    batch = RNG.normal(0, 1, (5, 3, 256))
    got = waveform_features(batch)
    assert got.shape == (5, 3, len(WAVEFORM_STATS))
    for a in range(5):
        for b in range(3):
            assert_matches(batch[a, b], got[a, b])


def test_simulator_block_matches_reference() -> None:
    from floorconsole.core.plantsim import MotorSim

    sim = MotorSim(3)
    sim.set_fault("bearing", 1.0)
    sim.step(1.0)
    x, y, z = sim.vibration_block(256, 500.0)
    got = block_features(x, y, z)
    assert got.shape == (33,)
    for k, axis in enumerate((x, y, z)):
        assert_matches(axis, got[11 * k : 11 * (k + 1)])


DEGENERATE = {
    "zeros": np.zeros(256),
    "constant": np.full(256, 0.1),  # float rounding leaves m2 ~1e-34, not 0
    "negative constant": np.full(256, -3.7),
    "large constant": np.full(256, 1e6 + 0.1),
    "one spike": np.eye(1, 256, 100).ravel() * 2.5,
    "negative spike": -np.eye(1, 256, 0).ravel(),
    "single sample": np.array([0.3]),
    "single zero": np.array([0.0]),
    "two equal": np.array([2.0, 2.0]),
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_windows_are_finite_and_match(name: str) -> None:
    x = DEGENERATE[name]
    got = waveform_features(x)
    assert np.isfinite(got).all()
    assert_matches(x, got)


def test_documented_values_on_degenerate_windows() -> None:
    f = dict(zip(WAVEFORM_STATS, waveform_features(np.zeros(256)), strict=True))
    assert all(v == 0.0 for v in f.values()), "all zero: every statistic 0"
    f = dict(zip(WAVEFORM_STATS, waveform_features(np.full(256, 0.1)), strict=True))
    assert f["std"] == f["variance"] == f["skewness"] == f["kurtosis"] == 0.0
    assert f["rms"] == pytest.approx(0.1) and f["peak"] == pytest.approx(0.1)
    for ratio in ("crest_factor", "shape_factor", "impulse_factor", "clearance_factor"):
        assert f[ratio] == pytest.approx(1.0), "a constant non-zero window: every ratio 1"
    spike = dict(zip(WAVEFORM_STATS, waveform_features(np.eye(1, 256, 7).ravel()), strict=True))
    assert spike["crest_factor"] == pytest.approx(16.0)  # sqrt(256)
    assert spike["impulse_factor"] == pytest.approx(256.0)
    assert spike["clearance_factor"] == pytest.approx(256.0**2)
    assert spike["kurtosis"] > 100


def test_empty_windows_give_zeros() -> None:
    assert waveform_features(np.zeros(0)).tolist() == [0.0] * 11
    assert waveform_features(np.zeros((4, 0))).shape == (4, 11)
    assert scalar_features([]).tolist() == [0.0] * 4


def test_non_finite_samples_count_as_zero_and_overflow_is_clipped() -> None:
    x = RNG.normal(0, 1, 64)
    dirty = x.copy()
    dirty[[3, 9, 20]] = [np.nan, np.inf, -np.inf]
    clean = x.copy()
    clean[[3, 9, 20]] = 0.0
    np.testing.assert_array_equal(waveform_features(dirty), waveform_features(clean))
    huge = np.array([1e300, -1e300, 1e300, 5.0])
    got = waveform_features(huge)
    assert np.isfinite(got).all()
    assert np.isfinite(scalar_features(huge)).all()
    assert np.isfinite(scalar_features([np.nan, 1.0])).all()


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(0, 300),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    )
)
def test_never_nan_or_inf(x: np.ndarray) -> None:
    assert np.isfinite(waveform_features(x)).all()
    assert np.isfinite(scalar_features(x)).all()


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(2, 300),
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    )
)
def test_matches_reference_on_arbitrary_windows(x: np.ndarray) -> None:
    got = waveform_features(x)
    want = reference(x)
    peak = float(np.max(np.abs(x)))
    for k, name in enumerate(WAVEFORM_STATS):
        if name in ("skewness", "kurtosis") and want["std"] < 1e-6 * max(peak, 1e-300):
            # near-degenerate spread: both sides divide float noise by float noise
            continue
        assert got[k] == pytest.approx(want[name], rel=1e-6, abs=1e-6), name


def test_scalar_features_match_numpy() -> None:
    for x in (RNG.normal(5, 2, 40), np.array([1.0]), np.full(10, 7.0)):
        got = scalar_features(x)
        assert list(SCALAR_STATS) == ["mean", "std", "min", "max"]
        assert got == pytest.approx([x.mean(), x.std(), x.min(), x.max()], rel=1e-9, abs=1e-12)
    assert scalar_features(np.full(10, 0.1))[1] == 0.0
    assert scalar_features(RNG.normal(0, 1, (3, 20))).shape == (3, 4)


def test_names_follow_block_order() -> None:
    names = waveform_feature_names(("x", "y", "z"))
    assert len(names) == 33
    assert names[0] == "x.rms" and names[11] == "y.rms" and names[-1] == "z.clearance_factor"


def test_axes_of_unequal_length() -> None:
    a, b = RNG.normal(0, 1, 100), RNG.normal(0, 1, 80)
    got = block_features(a, b)
    np.testing.assert_allclose(got, np.concatenate([waveform_features(a), waveform_features(b)]))
