"""Drift of live data against a model's training reference: PSI, KS, Wasserstein, Page-Hinkley.

The reference travels with the model (see core.model_package): per feature, quantile bin edges
with the training counts in each bin, a finer set of quantiles, the mean and the std. Live data
is a rolling window of the last N windows per feature.

- PSI (population stability index) over the reference bins: sum (q - p) ln(q / p), with p the
  reference share and q the live share of each bin. The outer bins are open (a live value below
  the training minimum counts in the first bin, above the maximum in the last), and a share is
  never taken below PSI_EPS, so an empty bin gives a large but finite figure. Rule of thumb, and
  our defaults: below 0.1 stable, 0.1 to 0.25 a shift worth a look (warn), above 0.25 a shift
  (alert).
- KS: the largest distance between the live empirical CDF and the reference CDF, the latter
  interpolated linearly between the stored quantiles (0 below the first, 1 above the last).
- Wasserstein: the earth mover's distance W1 between the live and the reference distribution,
  from their quantile functions on a grid of WASSERSTEIN_GRID mid-points, divided by the
  reference std (floored at STD_FLOOR_REL of the reference's typical magnitude): 1.0 means the
  live values sit, on average, one training standard deviation away from where they should.
- Page-Hinkley on the model's score, normalised by the score reference (z = (s - mean) / std),
  against the reference mean: a one-sided test for a rise of the score's level.

One state, in one vocabulary (DRIFT_STATES): filling, ok, warning, alert. What makes a warning
believable on healthy running (see the README, "Drift you can believe", for the figures):

- a line above chance: n live windows against m reference windows give, on the same
  distribution, n * PSI close to a chi-square with B - 1 degrees of freedom (times 1 + n/m for
  the reference's own noise). With F features and the score tested at once, a PSI counts only
  above the chi-square quantile at family_alpha / (F + 1) (Bonferroni), so the largest of 34
  noisy figures does not cross by chance; the line is max(psi_warn, that) (chance_psi).
- persistence: a level is taken only after its condition held for `persist` windows in a row,
  and left only after its condition (with hysteresis: CLEAR_RATIO of the line) failed for as
  long; a passing load change does not flip the state.
- the drivers: each warning or alert names the features over the line and their signed shift
  from the training mean in training standard deviations ("x.rms +3.1σ").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

PSI_EPS = 1e-4
PSI_WARN = 0.1
PSI_ALERT = 0.25
WASSERSTEIN_GRID = 50
STD_FLOOR_REL = 1e-6
# The one vocabulary of drift, on every screen, in the history (codes) and the alarm text.
FILLING, OK, WARNING, ALERT = "filling", "ok", "warning", "alert"
DRIFT_STATES = (FILLING, OK, WARNING, ALERT)
STATUS_CODES = {OK: 0, WARNING: 1, ALERT: 2}  # the drift.status signal's codes (filling: 0)
FAMILY_ALPHA = 0.01  # chance of any of the F + 1 PSI figures crossing its line by chance
CLEAR_RATIO = 0.8  # a level is left below this share of its line (hysteresis)
MAX_DRIVERS = 3  # features named in a warning's text
# Windows a level must hold before the state takes it (and fail before it is left): 20 s at
# the demo's 2 windows a second. With the 1200-window reference window and the chance line,
# 40 gave no false warning in 96 h of healthy simulator running and 20 gave one; the slow
# sensor drift of the recording still alerts before the score crosses (README, drift).
PERSIST_WINDOWS = 40


# --- statistics on arrays ---------------------------------------------------------------------------


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value over bins cut at edges[1:-1], outer bins open: 0 .. len(edges)-2.

    values (n, F) with edges (F, B+1), or values (n,) with edges (B+1,). A value equal to an inner
    edge goes to the bin above it, both in training and live, so counts agree."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim == 1:
        return np.searchsorted(e[1:-1], v, side="right")
    inner = e[:, 1:-1]
    # (n, F, B-1) comparison: small (N ~ 240, F ~ 33, B ~ 10), and one call
    return (v[:, :, None] >= inner[None, :, :]).sum(axis=2)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (see bin_index): (B,) for one feature or (F, B) for (n, F) values."""
    e = np.asarray(edges, dtype=np.float64)
    n_bins = e.shape[-1] - 1
    idx = bin_index(values, e)
    if e.ndim == 1:
        return np.bincount(idx.ravel(), minlength=n_bins).astype(np.float64)
    f = e.shape[0]
    flat = (idx + np.arange(f)[None, :] * n_bins).ravel()
    return np.bincount(flat, minlength=f * n_bins).reshape(f, n_bins).astype(np.float64)


def psi(ref_counts: np.ndarray, live_counts: np.ndarray, eps: float = PSI_EPS) -> np.ndarray:
    """Population stability index per row (or a 0-d array for 1-D counts).

    Rows with no live data give 0 (nothing to compare yet)."""
    r = np.asarray(ref_counts, dtype=np.float64)
    q = np.asarray(live_counts, dtype=np.float64)
    rs = r.sum(axis=-1, keepdims=True)
    qs = q.sum(axis=-1, keepdims=True)
    p = np.maximum(np.divide(r, rs, out=np.zeros_like(r), where=rs > 0), eps)
    s = np.maximum(np.divide(q, qs, out=np.zeros_like(q), where=qs > 0), eps)
    out = ((s - p) * np.log(s / p)).sum(axis=-1)
    return np.where(qs[..., 0] > 0, out, 0.0)


def reference_cdf(x: np.ndarray, levels: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The reference CDF at x: linear between stored quantiles, 0 below the first, 1 above
    (np.interp holds the end values, and the levels run from 0 to 1)."""
    return np.interp(
        x, np.asarray(quantiles, dtype=np.float64), np.asarray(levels, dtype=np.float64)
    )


def _ks_sorted(v: np.ndarray, levels: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """KS D per column of already sorted live values v (n, F) against quantiles (F, L)."""
    n = v.shape[0]
    hi = np.arange(1, n + 1, dtype=np.float64) / n
    lo = hi - 1.0 / n
    out = np.empty(v.shape[1])
    for j in range(v.shape[1]):
        f = np.interp(v[:, j], quantiles[j], levels)
        out[j] = max((hi - f).max(), (f - lo).max())
    return out


def ks_statistic(live: np.ndarray, levels: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """One-sample Kolmogorov-Smirnov D of live values against the reference CDF.

    live (n,) with quantiles (L,) gives a 0-d array; live (n, F) with quantiles (F, L) gives (F,)."""
    v = np.sort(np.asarray(live, dtype=np.float64), axis=0)
    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    if v.shape[0] == 0:
        return np.zeros(q.shape[:-1])
    if v.ndim == 1:
        return np.asarray(_ks_sorted(v[:, None], lv, q[None, :])[0])
    return _ks_sorted(v, lv, q)


def _grid() -> np.ndarray:
    return (np.arange(WASSERSTEIN_GRID) + 0.5) / WASSERSTEIN_GRID


def _sorted_quantiles(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """np.quantile's default (linear) on sorted columns v (n, F), at levels u: (len(u), F)."""
    n = v.shape[0]
    pos = u * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo)[:, None]
    return v[lo] * (1.0 - frac) + v[hi] * frac  # type: ignore[no-any-return]


def _ref_grid(levels: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The reference quantile function on the Wasserstein grid: (G, F)."""
    u = _grid()
    return np.stack([np.interp(u, levels, quantiles[j]) for j in range(quantiles.shape[0])], axis=1)


def _std_scale(quantiles: np.ndarray, ref_std: np.ndarray) -> np.ndarray:
    floor = STD_FLOOR_REL * np.maximum(np.abs(quantiles).max(axis=1), 1e-300)
    return np.maximum(ref_std, floor)  # type: ignore[no-any-return]


def wasserstein(
    live: np.ndarray, levels: np.ndarray, quantiles: np.ndarray, ref_std: np.ndarray | float
) -> np.ndarray:
    """W1 between live values and the reference, in reference standard deviations.

    Both quantile functions are evaluated on WASSERSTEIN_GRID mid-points of (0, 1): the live one
    from the sorted live values, the reference one by interpolating its stored quantiles."""
    v = np.asarray(live, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    std = np.atleast_1d(np.asarray(ref_std, dtype=np.float64))
    one = v.ndim == 1
    if one:
        v, q = v[:, None], q[None, :]
    if v.shape[0] == 0:
        out = np.zeros(q.shape[0])
    else:
        live_q = _sorted_quantiles(np.sort(v, axis=0), _grid())
        out = np.abs(live_q - _ref_grid(lv, q)).mean(axis=0) / _std_scale(q, std)
    return np.asarray(out[0]) if one else out


def psi_status(value: float, warn: float = PSI_WARN, alert: float = PSI_ALERT) -> str:
    if value >= alert:
        return ALERT
    if value >= warn:
        return WARNING
    return OK


def chi2_quantile(p: float, dof: int) -> float:
    """The chi-square quantile at p (Wilson-Hilferty: within a few per cent for dof >= 3 and
    the tails used here; stdlib only, core stays numpy + stdlib)."""
    z = NormalDist().inv_cdf(p)
    k = float(dof)
    return k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3


def chance_psi(n: int, ref_n: int, bins: int, tests: int, alpha: float = FAMILY_ALPHA) -> float:
    """The PSI that n live windows reach by chance alone, on the training distribution, with
    probability alpha over `tests` figures at once (Bonferroni): chi2(B-1) / n, widened by
    1 + n / ref_n for the reference's own sampling noise. inf with no live data."""
    if n <= 0:
        return math.inf
    q = chi2_quantile(1.0 - alpha / max(1, tests), max(1, bins - 1))
    return q * (1.0 / n + 1.0 / max(1, ref_n))


# --- streaming detector on the score ------------------------------------------------------------------


class PageHinkley:
    """Page-Hinkley test for a rise in the mean of a stream.

    m_t = sum (x_i - mean - delta), PH_t = m_t - min(m_1..m_t); it fires while PH_t > threshold.
    mean is the known in-control mean when given (the model's training reference: drift is
    measured against what the model learned), else the running mean of the stream. Each step's
    contribution is clipped to +-clip, so a single wild value cannot fire it on its own; a shift
    must persist. The statistic is capped at twice the threshold (see update). With x in reference standard deviations, the defaults fire after ~8 windows
    of a +4 sd rise, and not on the training distribution itself (see tests/test_drift.py).
    """

    def __init__(
        self,
        *,
        delta: float = 0.5,
        threshold: float = 25.0,
        clip: float = 5.0,
        mean: float | None = 0.0,
        min_samples: int = 10,
    ) -> None:
        if threshold <= 0 or delta < 0 or clip <= 0:
            raise ValueError("Page-Hinkley needs threshold > 0, delta >= 0 and clip > 0")
        self.delta = delta
        self.threshold = threshold
        self.clip = clip
        self.fixed_mean = mean
        self.min_samples = min_samples
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0 if self.fixed_mean is None else self.fixed_mean
        self.cum = 0.0
        self.cum_min = 0.0
        self.detections = 0
        self._fired = False

    @property
    def statistic(self) -> float:
        """PH_t: how far the cumulative sum stands above its minimum."""
        return self.cum - self.cum_min

    @property
    def ratio(self) -> float:
        """statistic / threshold: 1 or more means it fires."""
        return self.statistic / self.threshold

    @property
    def fired(self) -> bool:
        return self._fired

    def update(self, x: float) -> bool:
        """Feed one value; returns whether the test fires now. Non-finite values are ignored."""
        if not math.isfinite(x):
            return self._fired
        self.n += 1
        if self.fixed_mean is None:
            self.mean += (x - self.mean) / self.n
        step = min(self.clip, max(-self.clip, x - self.mean - self.delta))
        self.cum += step
        self.cum_min = min(self.cum_min, self.cum)
        # Capped at 2 x threshold, so that once the level is back the test clears within
        # threshold / delta values instead of paying back everything a long fault piled up.
        if self.cum - self.cum_min > 2 * self.threshold:
            self.cum_min = self.cum - 2 * self.threshold
        fired = self.n >= self.min_samples and self.statistic > self.threshold
        if fired and not self._fired:
            self.detections += 1
        self._fired = fired
        return fired


# --- the reference and the rolling monitor ------------------------------------------------------------


@dataclass(frozen=True)
class FeatureReference:
    """Training distribution of one feature (or of the score)."""

    name: str
    mean: float
    std: float
    edges: tuple[float, ...]  # B+1 quantile bin edges: min, inner cuts, max
    counts: tuple[float, ...]  # B training counts per bin (outer bins open)
    quantiles: tuple[float, ...]  # at DriftReference.levels


@dataclass(frozen=True)
class DriftReference:
    """Everything drift needs from a model package, as arrays."""

    features: tuple[FeatureReference, ...]
    score: FeatureReference
    levels: tuple[float, ...]  # quantile levels, 0 .. 1, increasing
    windows: int  # how many training windows the reference summarises

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks: float
    wasserstein: float
    status: str  # filling | ok | warning | alert: over its line at the model's drift level
    shift: float = 0.0  # live mean - training mean, in training standard deviations


def shift_text(name: str, shift: float) -> str:
    """'x.rms +3.1σ': a feature and how far its live mean sits from training."""
    return f"{name} {shift:+.1f}σ"


@dataclass(frozen=True)
class DriftReport:
    """Drift figures over the live window; status 'filling' until min_windows are in."""

    count: int  # live windows in the rolling window
    status: str  # filling | ok | warning | alert (DRIFT_STATES)
    psi_max: float
    worst: str  # the feature with the largest PSI ('' while filling)
    features: tuple[FeatureDrift, ...]  # worst PSI first
    score_psi: float
    page_hinkley: float  # statistic / threshold; >= 1 fires
    page_hinkley_fired: bool
    line: float = PSI_WARN  # the PSI a feature must reach now to count (chance_psi, psi_warn)
    needed: int = 0  # windows before the figures mean anything (min_windows)
    drivers: tuple[str, ...] = ()  # 'x.rms +3.1σ', 'score Page-Hinkley 1.3': why not ok

    @property
    def status_code(self) -> int:
        return STATUS_CODES.get(self.status, 0)

    @property
    def text(self) -> str:
        """The state in words, with what drives it: 'warning: x.rms +3.1σ, x.variance +2.7σ',
        'filling: 120 of 240 windows', 'ok'. The same words on every screen and in the alarm."""
        if self.status == FILLING:
            return f"filling: {self.count} of {self.needed} windows"
        if self.drivers:
            return f"{self.status}: {', '.join(self.drivers)}"
        return self.status


class DriftMonitor:
    """A rolling live window of the last `window` feature vectors (and scores), compared with the
    reference. PSI counts are kept incrementally; KS and Wasserstein are computed on report().

    The raw level is the worst over the features and the score of their PSI against the lines
    (psi_warn and psi_alert, each raised to chance_psi when that is higher: family_alpha=None
    turns the correction off); a firing Page-Hinkley test makes it at least a warning. The
    state takes a level once the raw level held it for `persist` windows, and leaves it once
    the raw figure stayed below CLEAR_RATIO of its line for as long (0: at once, both ways).
    Until min_windows windows are in, 'filling'. Call report() regularly (the runner does,
    every second): persistence is counted in windows between reports.
    """

    def __init__(
        self,
        reference: DriftReference,
        *,
        window: int = 600,
        min_windows: int = 240,
        psi_warn: float = PSI_WARN,
        psi_alert: float = PSI_ALERT,
        page_hinkley: PageHinkley | None = None,
        persist: int = 0,
        family_alpha: float | None = FAMILY_ALPHA,
    ) -> None:
        if not 0 < psi_warn < psi_alert:
            raise ValueError(f"need 0 < psi_warn < psi_alert, got {psi_warn} and {psi_alert}")
        if window < 2 or not 1 <= min_windows <= window:
            raise ValueError(
                f"need window >= 2 and 1 <= min_windows <= window, got {window}, {min_windows}"
            )
        if persist < 0 or (family_alpha is not None and not 0 < family_alpha < 1):
            raise ValueError(
                f"need persist >= 0 and 0 < family_alpha < 1, got {persist}, {family_alpha}"
            )
        self.reference = reference
        self.window = window
        self.min_windows = min_windows
        self.psi_warn = psi_warn
        self.psi_alert = psi_alert
        self.persist = persist
        self.family_alpha = family_alpha
        self.page_hinkley = page_hinkley or PageHinkley()
        f = len(reference.features)
        self.n_features = f
        self._levels = np.asarray(reference.levels, dtype=np.float64)
        self._edges = np.array([r.edges for r in reference.features], dtype=np.float64)
        self._ref_counts = np.array([r.counts for r in reference.features], dtype=np.float64)
        self._quantiles = np.array([r.quantiles for r in reference.features], dtype=np.float64)
        self._mean = np.array([r.mean for r in reference.features], dtype=np.float64)
        self._std = np.array([r.std for r in reference.features], dtype=np.float64)
        self._ref_grid = _ref_grid(self._levels, self._quantiles)  # fixed: computed once
        self._w_scale = _std_scale(self._quantiles, self._std)
        s = reference.score
        self._score_edges = np.asarray(s.edges, dtype=np.float64)
        self._score_ref_counts = np.asarray(s.counts, dtype=np.float64)
        self._score_mean = s.mean
        self._score_std = max(s.std, STD_FLOOR_REL * max(abs(s.mean), 1e-300))
        n_bins = self._edges.shape[1] - 1
        self._n_bins = n_bins
        self._values = np.zeros((window, f))
        self._bins = np.zeros((window, f), dtype=np.intp)
        self._counts = np.zeros((f, n_bins))
        self._scores = np.zeros(window)
        self._score_bins = np.zeros(window, dtype=np.intp)
        self._score_counts = np.zeros(len(self._score_ref_counts))
        self._feature_rows = np.arange(f)
        self._n = 0  # windows seen
        self._head = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self._state = FILLING
        # per level (warning, alert): the window count since its condition holds / fails
        self._on_since: dict[str, int | None] = {WARNING: None, ALERT: None}
        self._off_since: dict[str, int | None] = {WARNING: None, ALERT: None}
        self._drivers: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return min(self._n, self.window)

    @property
    def state(self) -> str:
        """filling | ok | warning | alert, as of the last report()."""
        return self._state

    def update(self, features: np.ndarray, score: float) -> None:
        """Add one window's feature vector and its score (both finite; callers filter)."""
        v = np.asarray(features, dtype=np.float64)
        if v.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} features, got shape {v.shape}")
        i = self._head
        bins = bin_index(v[None, :], self._edges)[0]
        sbin = int(bin_index(np.asarray(score, dtype=np.float64), self._score_edges))
        if self._n >= self.window:
            self._counts[self._feature_rows, self._bins[i]] -= 1
            self._score_counts[self._score_bins[i]] -= 1
        self._values[i] = v
        self._bins[i] = bins
        self._counts[self._feature_rows, bins] += 1
        self._scores[i] = score
        self._score_bins[i] = sbin
        self._score_counts[sbin] += 1
        self._head = (i + 1) % self.window
        self._n += 1
        self.page_hinkley.update((score - self._score_mean) / self._score_std)

    def live_values(self) -> np.ndarray:
        """The live window, oldest first: (count, F)."""
        n = self.count
        if self._n <= self.window:
            return self._values[:n].copy()
        return np.roll(self._values, -self._head, axis=0)

    def live_counts(self) -> np.ndarray:
        """Live counts per reference bin: (F, B)."""
        return self._counts.copy()

    def psi_values(self) -> np.ndarray:
        return psi(self._ref_counts, self._counts)

    def chance_line(self) -> float:
        """The PSI the live window reaches by chance (chance_psi); 0 without the correction."""
        if self.family_alpha is None:
            return 0.0
        return chance_psi(
            self.count,
            self.reference.windows,
            self._n_bins,
            self.n_features + 1,
            self.family_alpha,
        )

    def shifts(self) -> np.ndarray:
        """Live mean minus training mean per feature, in training standard deviations."""
        n = self.count
        if not n:
            return np.zeros(self.n_features)
        live_mean = self._values[:n].mean(axis=0)
        return (live_mean - self._mean) / self._w_scale  # type: ignore[no-any-return]

    def _step_state(self, worst: float, ph_fired: bool, line_w: float, line_a: float) -> str:
        """The state after this report: levels taken and left with persistence, hysteresis."""
        n = self._n
        rank = DRIFT_STATES.index(self._state)
        for level, line in ((WARNING, line_w), (ALERT, line_a)):
            held = rank >= DRIFT_STATES.index(level)
            cond = worst >= (line * CLEAR_RATIO if held else line)
            if level == WARNING and ph_fired:
                cond = True
            if cond:
                self._off_since[level] = None
                if self._on_since[level] is None:
                    self._on_since[level] = n
            else:
                self._on_since[level] = None
                if self._off_since[level] is None:
                    self._off_since[level] = n
        state = OK
        for level in (WARNING, ALERT):
            held = rank >= DRIFT_STATES.index(level)
            on, off = self._on_since[level], self._off_since[level]
            if held:
                keep = off is None or n - off < self.persist
            else:
                keep = on is not None and n - on >= self.persist
            if keep:
                state = level
        return state

    def report(self, *, full: bool = True) -> DriftReport:
        """Figures over the live window, and the state stepped on (persistence counts the
        windows between reports). full=False skips KS and Wasserstein (left at 0)."""
        n = self.count
        psis = self.psi_values()
        score_psi = float(psi(self._score_ref_counts, self._score_counts))
        if full and n:
            live = np.sort(self.live_values(), axis=0)  # sorted once for KS and Wasserstein
            ks = _ks_sorted(live, self._levels, self._quantiles)
            live_q = _sorted_quantiles(live, _grid())
            ws = np.abs(live_q - self._ref_grid).mean(axis=0) / self._w_scale
        else:
            ks = ws = np.zeros(self.n_features)
        shifts = self.shifts()
        chance = self.chance_line()
        line_w, line_a = max(self.psi_warn, chance), max(self.psi_alert, chance)
        ph = self.page_hinkley
        if n < self.min_windows:
            self._reset_state()
            self._state = FILLING
        else:
            if self._state == FILLING:
                self._state = OK
            worst = max(float(psis.max()) if len(psis) else 0.0, score_psi)
            new = self._step_state(worst, ph.fired, line_w, line_a)
            if new != self._state:
                self._drivers = ()  # named afresh for the new level
            self._state = new
        state = self._state
        rank = DRIFT_STATES.index(state)

        def feature_status(value: float) -> str:
            # a feature is marked only at the level the model's drift has taken
            if state == FILLING:
                return FILLING
            if rank >= DRIFT_STATES.index(ALERT) and value >= line_a:
                return ALERT
            if rank >= DRIFT_STATES.index(WARNING) and value >= line_w * CLEAR_RATIO:
                return WARNING
            return OK

        order = np.argsort(-psis, kind="stable")
        names = self.reference.names
        feats = tuple(
            FeatureDrift(
                names[j],
                float(psis[j]),
                float(ks[j]),
                float(ws[j]),
                feature_status(float(psis[j])),
                float(shifts[j]),
            )
            for j in order
        )
        if state in (WARNING, ALERT) and not self._drivers:
            # named when the level is taken, kept while it holds: the alarm's text is stable
            drivers = [shift_text(f.name, f.shift) for f in feats if f.status != OK]
            if score_psi >= line_w * CLEAR_RATIO:
                drivers.append(f"score PSI {score_psi:.2f}")
            if ph.fired:
                drivers.append(f"score Page-Hinkley {ph.ratio:.1f}")
            if not drivers and feats:
                drivers.append(shift_text(feats[0].name, feats[0].shift))
            self._drivers = tuple(drivers[:MAX_DRIVERS])
        return DriftReport(
            count=n,
            status=state,
            psi_max=float(psis.max()) if len(psis) else 0.0,
            worst=feats[0].name if feats and n else "",
            features=feats,
            score_psi=score_psi,
            page_hinkley=ph.ratio,
            page_hinkley_fired=ph.fired,
            line=line_w if math.isfinite(line_w) else self.psi_warn,
            needed=self.min_windows,
            drivers=self._drivers if state in (WARNING, ALERT) else (),
        )

    def reset(self) -> None:
        self._n = 0
        self._head = 0
        self._counts[:] = 0
        self._score_counts[:] = 0
        self.page_hinkley.reset()
        self._reset_state()


def reference_from_samples(
    names: Sequence[str],
    values: np.ndarray,
    scores: np.ndarray,
    *,
    bins: int = 10,
    levels: int = 51,
) -> DriftReference:
    """Build a reference from training data: (n, F) feature values and (n,) scores.

    Bin edges are the 0, 1/B, ..., 1 quantiles; counts are taken with bin_counts, the very
    function that counts live data, so a training set compared with itself gives PSI 0."""
    x = np.asarray(values, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names) or x.shape[0] != s.shape[0] or x.shape[0] < bins:
        raise ValueError(
            f"need (n, {len(names)}) values, n scores and n >= {bins}; got {x.shape} and {s.shape}"
        )
    lv = np.linspace(0.0, 1.0, levels)
    bq = np.linspace(0.0, 1.0, bins + 1)

    def one(name: str, col: np.ndarray) -> FeatureReference:
        edges = np.quantile(col, bq)
        counts = bin_counts(col, edges)
        return FeatureReference(
            name=name,
            mean=float(col.mean()),
            std=float(col.std()),
            edges=tuple(float(e) for e in edges),
            counts=tuple(float(c) for c in counts),
            quantiles=tuple(float(q) for q in np.quantile(col, lv)),
        )

    return DriftReference(
        features=tuple(one(nm, x[:, j]) for j, nm in enumerate(names)),
        score=one("score", s),
        levels=tuple(float(v) for v in lv),
        windows=int(x.shape[0]),
    )
