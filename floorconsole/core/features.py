"""Window features: condition-monitoring statistics of waveform blocks and scalar windows.

Everything here is vectorised over leading axes: a (3, 256) block of x, y, z gives (3, 11), and
a (n_windows, 3, 256) batch gives (n_windows, 3, 11) in one pass.

Definitions, per window x of n samples (population moments, ddof=0):

    rms              sqrt(mean(x^2))
    peak             max|x|
    peak_to_peak     max(x) - min(x)
    crest_factor     peak / rms
    variance         m2 = mean((x - mean(x))^2)
    std              sqrt(m2)
    skewness         m3 / m2^1.5
    kurtosis         m4 / m2^2 - 3                 (excess: a Gaussian gives 0)
    shape_factor     rms / mean|x|
    impulse_factor   peak / mean|x|
    clearance_factor peak / mean(sqrt|x|)^2

Degenerate windows never give NaN or inf; these are the values used instead:

- a ratio whose denominator is 0 (an all-zero window) is 0;
- a window whose spread is below rounding (std <= 1e-9 * peak, e.g. a stuck sensor's constant
  output, where float rounding leaves m2 at 1e-34 instead of 0), or so small that m2^2
  underflows to 0 (|x| below ~1e-77), has variance, std, skewness and excess kurtosis 0; ratios
  of that window (crest, shape, ...) are still computed, so a constant non-zero window has
  crest, shape, impulse and clearance factor 1;
- an empty window gives 0 for every statistic;
- a non-finite sample (NaN, inf) is treated as 0, and a statistic that overflows float64 (only
  for |x| beyond ~1e150) is clipped to the largest finite float.

A caller that must tell these cases apart (the model runner) checks its input before: samples
beyond REPRESENTABLE in magnitude give features that are clipped or silently 0, not measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WAVEFORM_STATS: tuple[str, ...] = (
    "rms",
    "peak",
    "peak_to_peak",
    "crest_factor",
    "variance",
    "std",
    "skewness",
    "kurtosis",
    "shape_factor",
    "impulse_factor",
    "clearance_factor",
)
SCALAR_STATS: tuple[str, ...] = ("mean", "std", "min", "max")

# Below this share of the peak, the spread of a window is float rounding, not signal.
DEGENERATE_SPREAD = 1e-9

_FMAX = np.finfo(np.float64).max
# The largest sample magnitude whose features are all computed, not clipped: kurtosis takes the
# fourth power of deviations up to twice the peak, and (2 * 1e75)^4 is still below float64's
# 1.8e308, while (2 * 1e77)^4 is not.
REPRESENTABLE = 1e75


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, and 0 where den is 0."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den > 0)
    return out


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0, posinf=_FMAX, neginf=-_FMAX)


def waveform_features(blocks: np.ndarray | Sequence[float]) -> np.ndarray:
    """The 11 WAVEFORM_STATS of each window along the last axis: (..., n) -> (..., 11)."""
    x = np.asarray(blocks, dtype=np.float64)
    if x.ndim == 0:
        x = x.reshape(1)
    out_shape = x.shape[:-1] + (len(WAVEFORM_STATS),)
    n = x.shape[-1]
    if n == 0:
        return np.zeros(out_shape)
    if not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, 0.0)

    with np.errstate(over="ignore", invalid="ignore"):
        ax = np.abs(x)
        peak = ax.max(axis=-1)
        mean_abs = ax.mean(axis=-1)
        rms = np.sqrt(np.mean(x * x, axis=-1))
        p2p = x.max(axis=-1) - x.min(axis=-1)
        sqrt_abs_mean = np.sqrt(ax).mean(axis=-1)

        d = x - x.mean(axis=-1, keepdims=True)
        d2 = d * d
        m2 = d2.mean(axis=-1)
        m3 = (d2 * d).mean(axis=-1)
        m4 = (d2 * d2).mean(axis=-1)
        std = np.sqrt(m2)
        # m2 * m2 > 0 also rules out spreads so small (|x| < ~1e-77) that the moments underflow
        spread = (std > DEGENERATE_SPREAD * peak) & (m2 * m2 > 0)
        m2 = np.where(spread, m2, 0.0)
        std = np.where(spread, std, 0.0)
        skew = _safe_ratio(m3, m2 * std)
        kurt = np.where(spread, _safe_ratio(m4, m2 * m2) - 3.0, 0.0)

        out = np.stack(
            [
                rms,
                peak,
                p2p,
                _safe_ratio(peak, rms),
                m2,
                std,
                skew,
                kurt,
                _safe_ratio(rms, mean_abs),
                _safe_ratio(peak, mean_abs),
                _safe_ratio(peak, sqrt_abs_mean * sqrt_abs_mean),
            ],
            axis=-1,
        )
    return _finite(out)


def block_features(*axes: np.ndarray | Sequence[float]) -> np.ndarray:
    """Features of one block of several axes (e.g. x, y, z), flattened axis by axis: 11 per
    axis, in WAVEFORM_STATS order. Axes of unequal length are computed one by one."""
    lengths = {len(a) for a in axes}
    if len(lengths) == 1:
        return waveform_features(np.stack([np.asarray(a, dtype=np.float64) for a in axes])).ravel()
    return np.concatenate([waveform_features(a) for a in axes])


def scalar_features(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """mean, std (population), min, max of each window along the last axis: (..., n) -> (..., 4).

    An empty window gives zeros; non-finite values count as 0 (see the module docstring)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0:
        x = x.reshape(1)
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1] + (len(SCALAR_STATS),))
    if not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean(axis=-1)
        std = x.std(axis=-1)
        std = np.where(std > DEGENERATE_SPREAD * np.abs(x).max(axis=-1), std, 0.0)
        out = np.stack([mean, std, x.min(axis=-1), x.max(axis=-1)], axis=-1)
    return _finite(out)


def waveform_feature_names(inputs: Sequence[str]) -> list[str]:
    """'x.rms', 'x.peak', ... in the order block_features returns them."""
    return [f"{i}.{s}" for i in inputs for s in WAVEFORM_STATS]
