"""Drift statistics: PSI, KS, Wasserstein, Page-Hinkley and the rolling DriftMonitor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from floorconsole.core.drift import (
    PSI_ALERT,
    PSI_WARN,
    DriftMonitor,
    PageHinkley,
    bin_counts,
    bin_index,
    ks_statistic,
    psi,
    psi_status,
    reference_from_samples,
    wasserstein,
)

RNG = np.random.default_rng(7)
TRAIN = RNG.normal(0.0, 1.0, 50_000)
REF = reference_from_samples(["f"], TRAIN[:, None], TRAIN)
F = REF.features[0]
EDGES = np.asarray(F.edges)
LEVELS = np.asarray(REF.levels)
QUANT = np.asarray(F.quantiles)


def live_psi(values: np.ndarray) -> float:
    return float(psi(np.asarray(F.counts), bin_counts(values, EDGES)))


def test_reference_bins_are_deciles_with_equal_counts() -> None:
    assert len(F.edges) == 11 and len(F.counts) == 10
    assert sum(F.counts) == len(TRAIN)
    assert max(F.counts) - min(F.counts) <= 2
    assert F.mean == pytest.approx(TRAIN.mean()) and F.std == pytest.approx(TRAIN.std())
    assert len(F.quantiles) == len(REF.levels) == 51


def test_outer_bins_are_open_and_counts_agree_with_index() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    v = np.array([-5.0, 0.0, 0.5, 1.0, 2.9, 3.0, 99.0])
    assert bin_index(v, edges).tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert bin_counts(v, edges).tolist() == [3.0, 1.0, 3.0]
    two = np.stack([v, v + 1], axis=1)
    both = bin_counts(two, np.stack([edges, edges]))
    assert both.shape == (2, 3)
    assert both[0].tolist() == [3.0, 1.0, 3.0]
    assert both[1].tolist() == bin_counts(v + 1, edges).tolist()


def test_psi_of_identical_distributions_is_about_zero() -> None:
    assert live_psi(TRAIN) == pytest.approx(0.0, abs=1e-12)
    fresh = RNG.normal(0.0, 1.0, 20_000)
    assert live_psi(fresh) < 0.005
    # a live window of 600: sampling noise alone is about (bins - 1) / n
    small = [live_psi(RNG.normal(0.0, 1.0, 600)) for _ in range(50)]
    assert np.mean(small) == pytest.approx(9 / 600, rel=0.5)
    assert max(small) < PSI_WARN


@pytest.mark.parametrize(("shift", "status"), [(0.1, "ok"), (0.45, "warning"), (1.0, "alert")])
def test_shifted_distributions_cross_thresholds(shift: float, status: str) -> None:
    value = live_psi(RNG.normal(shift, 1.0, 20_000))
    # for two unit normals PSI (a symmetric KL divergence) is about shift^2
    assert value == pytest.approx(shift**2, rel=0.35, abs=0.01)
    assert psi_status(value) == status


def test_psi_scale_change_and_empty_bins() -> None:
    assert live_psi(RNG.normal(0.0, 2.0, 20_000)) > PSI_ALERT
    # everything in one outer bin: the empty bins take PSI_EPS, so large but finite
    value = live_psi(np.full(100, 50.0))
    assert np.isfinite(value) and value > 5
    assert float(psi(np.asarray(F.counts), np.zeros(10))) == 0.0, "no live data: nothing to say"


def test_psi_vectorised_over_features() -> None:
    ref = np.array([[10.0, 10.0, 10.0], [5.0, 20.0, 5.0]])
    live = np.array([[10.0, 10.0, 10.0], [20.0, 5.0, 5.0]])
    got = psi(ref, live)
    assert got.shape == (2,)
    assert got[0] == pytest.approx(0.0)
    p, q = ref[1] / 30, live[1] / 30
    assert got[1] == pytest.approx(((q - p) * np.log(q / p)).sum())


def test_ks_against_scipy() -> None:
    for shift, n in ((0.0, 400), (0.3, 400), (1.0, 1000)):
        live = RNG.normal(shift, 1.0, n)
        ours = float(ks_statistic(live, LEVELS, QUANT))
        exact = stats.kstest(live, stats.norm.cdf).statistic
        # the reference CDF is linear between 51 quantiles: close to the true one
        assert ours == pytest.approx(exact, abs=0.02)
    assert float(ks_statistic(np.array([]), LEVELS, QUANT)) == 0.0


def test_ks_vectorised_equals_one_by_one() -> None:
    live = RNG.normal(0.2, 1.0, (300, 3))
    q = np.stack([QUANT, QUANT + 1, QUANT * 2])
    got = ks_statistic(live, LEVELS, q)
    for j in range(3):
        assert got[j] == pytest.approx(float(ks_statistic(live[:, j], LEVELS, q[j])))


def test_wasserstein_in_reference_sds() -> None:
    same = float(wasserstein(RNG.normal(0.0, 1.0, 5000), LEVELS, QUANT, F.std))
    assert same < 0.05
    for shift in (0.5, 1.0, 3.0):
        live = RNG.normal(shift, 1.0, 5000)
        ours = float(wasserstein(live, LEVELS, QUANT, F.std))
        exact = stats.wasserstein_distance(live, TRAIN) / TRAIN.std()
        assert ours == pytest.approx(shift, rel=0.05)
        assert ours == pytest.approx(exact, rel=0.05, abs=0.02)
    # normalised: the same shift in units of the reference sd reads the same at any scale
    big = reference_from_samples(["g"], (TRAIN * 1000)[:, None], TRAIN)
    g = big.features[0]
    w = float(wasserstein(RNG.normal(1000.0, 1000.0, 5000), LEVELS, np.asarray(g.quantiles), g.std))
    assert w == pytest.approx(1.0, rel=0.05)


def test_wasserstein_on_a_constant_reference_is_finite() -> None:
    ref = reference_from_samples(["c"], np.full((100, 1), 2.0), np.zeros(100))
    c = ref.features[0]
    w = float(wasserstein(np.full(50, 2.5), np.asarray(ref.levels), np.asarray(c.quantiles), c.std))
    assert np.isfinite(w) and w > 1


# --- Page-Hinkley -------------------------------------------------------------------------------


def test_page_hinkley_fires_on_a_mean_shift() -> None:
    ph = PageHinkley()
    for x in RNG.normal(0, 1, 500):
        assert not ph.update(float(x))
    fired_at = None
    for i, x in enumerate(RNG.normal(4.0, 1, 100)):
        if ph.update(float(x)):
            fired_at = i
            break
    assert fired_at is not None and fired_at <= 10, "a +4 sd shift fires within ~8 values"
    assert ph.detections == 1


def test_page_hinkley_slow_small_shift_fires_eventually() -> None:
    ph = PageHinkley()
    for x in RNG.normal(0, 1, 300):
        ph.update(float(x))
    fired = [ph.update(float(x)) for x in RNG.normal(1.5, 1, 200)]
    assert any(fired) and fired.index(True) > 10, "a 1.5 sd shift needs time, then fires"


@pytest.mark.parametrize("kind", ["gauss", "chi2"])
def test_page_hinkley_quiet_on_noise(kind: str) -> None:
    """No alarm over 100,000 in-control values, Gaussian or skewed like a squared error."""
    ph = PageHinkley()
    if kind == "gauss":
        xs = RNG.normal(0, 1, 100_000)
    else:
        raw = RNG.chisquare(3, 100_000)
        xs = (raw - 3) / np.sqrt(6)  # mean 0, sd 1, long right tail
    for x in xs:
        assert not ph.update(float(x))
    assert ph.detections == 0


def test_page_hinkley_ignores_one_wild_value_and_clears_after_a_shift() -> None:
    ph = PageHinkley()
    for _ in range(50):
        ph.update(0.0)
    assert not ph.update(1e9), "one value is clipped: no alarm from a single spike"
    for _ in range(600):  # a long fault piles up far more than the threshold ...
        ph.update(20.0)
    assert ph.fired and ph.statistic <= 2 * ph.threshold
    cleared = None
    for i in range(400):
        if not ph.update(0.0):
            cleared = i
            break
    # ... but the cap lets it clear within threshold / delta values once the level is back
    assert cleared is not None and cleared <= ph.threshold / ph.delta + 1
    assert ph.update(float("nan")) is False


def test_page_hinkley_running_mean() -> None:
    ph = PageHinkley(mean=None)
    for x in RNG.normal(10.0, 1, 500):
        assert not ph.update(float(x)), "an unknown but steady level is learned"
    assert ph.mean == pytest.approx(10.0, abs=0.2)
    assert any(ph.update(float(x)) for x in RNG.normal(14.0, 1, 50))


# --- DriftMonitor --------------------------------------------------------------------------------


def _two_feature_reference() -> tuple[np.ndarray, object]:
    train = np.stack([RNG.normal(0, 1, 20_000), RNG.normal(5, 2, 20_000)], axis=1)
    scores = RNG.chisquare(3, 20_000)
    return train, reference_from_samples(["a", "b"], train, scores)


def test_monitor_fills_then_ok_on_reference_like_data() -> None:
    _, ref = _two_feature_reference()
    mon = DriftMonitor(ref, window=600, min_windows=240)  # type: ignore[arg-type]
    for i in range(700):
        mon.update(np.array([RNG.normal(0, 1), RNG.normal(5, 2)]), float(RNG.chisquare(3)))
        r = mon.report(full=False)
        assert r.status == ("filling" if i + 1 < 240 else "ok"), (i, r.psi_max)
    r = mon.report()
    assert r.count == 600
    assert r.psi_max < PSI_WARN and r.score_psi < PSI_WARN
    assert all(f.ks < 0.1 and f.wasserstein < 0.2 for f in r.features)
    assert not r.page_hinkley_fired


def test_monitor_alerts_on_the_shifted_feature_only() -> None:
    _, ref = _two_feature_reference()
    mon = DriftMonitor(ref, window=300, min_windows=100)  # type: ignore[arg-type]
    for _ in range(300):
        mon.update(np.array([RNG.normal(0, 1), RNG.normal(5, 2) + 3.0]), float(RNG.chisquare(3)))
    r = mon.report()
    assert r.status == "alert" and r.status_code == 2
    assert r.worst == "b" and [f.name for f in r.features] == ["b", "a"], "worst first"
    b, a = r.features
    assert (
        b.status == "alert" and b.psi > PSI_ALERT and b.wasserstein == pytest.approx(1.5, rel=0.2)
    )
    assert a.status == "ok"


def test_monitor_thresholds_are_configurable() -> None:
    _, ref = _two_feature_reference()
    mon = DriftMonitor(
        ref,
        window=400,
        min_windows=100,
        psi_warn=0.5,  # type: ignore[arg-type]
        psi_alert=2.0,
    )
    for _ in range(400):
        mon.update(np.array([RNG.normal(0.8, 1), RNG.normal(5, 2)]), float(RNG.chisquare(3)))
    r = mon.report()
    assert 0.25 < r.psi_max < 2.0 and r.status == "warning"
    with pytest.raises(ValueError):
        DriftMonitor(ref, psi_warn=0.3, psi_alert=0.2)  # type: ignore[arg-type]


def test_monitor_page_hinkley_on_the_score_raises_a_warning() -> None:
    _, ref = _two_feature_reference()
    mon = DriftMonitor(ref, window=300, min_windows=10)  # type: ignore[arg-type]
    for _ in range(300):
        mon.update(np.array([RNG.normal(0, 1), RNG.normal(5, 2)]), float(RNG.chisquare(3)))
    for _ in range(15):
        mon.update(np.array([RNG.normal(0, 1), RNG.normal(5, 2)]), 30.0)
    r = mon.report()
    assert r.page_hinkley_fired and r.page_hinkley >= 1
    assert r.status in ("warning", "alert")


def test_incremental_counts_equal_a_recount_after_wrapping() -> None:
    train, ref = _two_feature_reference()
    mon = DriftMonitor(ref, window=50, min_windows=10)  # type: ignore[arg-type]
    for i in range(137):
        mon.update(train[i] + i * 0.01, float(i))
    live = mon.live_values()
    assert live.shape == (50, 2)
    np.testing.assert_allclose(live, train[87:137] + np.arange(87, 137)[:, None] * 0.01)
    edges = np.array([f.edges for f in ref.features])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(mon.live_counts(), bin_counts(live, edges))
    mon.reset()
    assert mon.count == 0 and mon.report().status == "filling"
    with pytest.raises(ValueError):
        mon.update(np.zeros(3), 0.0)
