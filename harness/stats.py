"""Statistics of timing samples: the paired speedup estimator, its bootstrap CI, sample floors.

Pure functions on per-call durations (nanoseconds); nothing here reads a clock or a store, so
every figure a row holds can be recomputed later from the raw samples it keeps.

Why a paired estimator: `timing.measure_pair` runs the candidate and its reference (the
baseline) interleaved in rounds (A,B / B,A / ...). This VM drifts 20-60% between minutes and
other processes come and go, so the two sides' whole-run distributions shift by different
amounts under load (a 1.2 ms INT8 call slips between a neighbour's time slices, a 30 ms fp32
call does not), and a ratio of the two medians can read 20x where the truth is 2x. Comparing
the sides *within* each round, then taking a robust centre over rounds, cancels the drift that
both sides of a round share, and a burst that hits one round moves one of many ratios.

Which estimator: chosen by `python -m harness.benchmarks.estimators` (synthetic samples with
known ratios, drift and one-sided contention bursts) and by `harness.benchmarks.contention`
(ResNet-56 fp32 vs INT8 idle and 4x oversubscribed). The default, `ESTIMATOR`, is the one with
the smallest error there; the others stay selectable for that comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Rounds = Sequence[Sequence[int]]  # per round, the per-call durations of one side (ns)

TRIM = 0.2  # trimmed mean: drop the slowest and fastest 20% of a round's calls
CONFIDENCE = 0.95


def range_coverage(n: int) -> float:
    """How often the range of n i.i.d. per-round ratios covers their median: 1 - 2^(1-n)."""
    return 1.0 - 2.0 ** (1 - n) if n >= 1 else 0.0


# the fewest rounds whose per-round ratios give a distribution-free interval of CONFIDENCE
# (`median_ci`): 6 (the range of 6 covers 96.9%; of 5, 93.8%; of 4, 87.5%; of 2, 50%)
MIN_CI_ROUNDS = next(n for n in range(2, 64) if range_coverage(n) >= CONFIDENCE)
BOOTSTRAP = 2000  # resamples; the CI's ends move < 1% between seeds at this count


def trimmed_mean(x: np.ndarray, trim: float = TRIM) -> float:
    """Mean of the middle (1 - 2 trim) of the values (scipy's trim_mean, without the import)."""
    x = np.sort(np.asarray(x, dtype=float))
    k = int(trim * len(x))
    core = x[k: len(x) - k] if len(x) - 2 * k > 0 else x
    return float(core.mean())


def _round_log_ratios(cand: Rounds, ref: Rounds, centre: Callable[[np.ndarray], float]
                      ) -> np.ndarray:
    """log(ref / cand) per round, each side summarised by `centre`."""
    return np.array([np.log(centre(np.asarray(r, float)) / centre(np.asarray(c, float)))
                     for c, r in zip(cand, ref, strict=True)])


def hodges_lehmann(x: np.ndarray) -> float:
    """Median of the Walsh averages (x_i + x_j) / 2, i <= j: a robust centre that keeps ~95%
    of the mean's efficiency on normal data and ignores up to 29% outliers."""
    x = np.asarray(x, float)
    i, j = np.triu_indices(len(x))
    return float(np.median((x[i] + x[j]) / 2))


# Each estimator maps (candidate rounds, reference rounds) to log(speedup); speedup > 1 means
# the candidate is faster (less time per call at batch 1, more images per second at batch N:
# both are reference time / candidate time per call of the same batch).
def _ratio_of_medians(cand: Rounds, ref: Rounds) -> float:
    a, b = np.concatenate([np.asarray(c, float) for c in cand]), np.concatenate(
        [np.asarray(r, float) for r in ref])
    return float(np.log(np.median(b) / np.median(a)))


def _ratio_of_means(cand: Rounds, ref: Rounds) -> float:
    a, b = np.concatenate([np.asarray(c, float) for c in cand]), np.concatenate(
        [np.asarray(r, float) for r in ref])
    return float(np.log(b.mean() / a.mean()))


def _median_round_trimmed(cand: Rounds, ref: Rounds) -> float:
    return float(np.median(_round_log_ratios(cand, ref, trimmed_mean)))


def _hl_round_trimmed(cand: Rounds, ref: Rounds) -> float:
    return hodges_lehmann(_round_log_ratios(cand, ref, trimmed_mean))


def _hl_round_medians(cand: Rounds, ref: Rounds) -> float:
    return hodges_lehmann(_round_log_ratios(cand, ref, np.median))


def _median_round_median(cand: Rounds, ref: Rounds) -> float:
    return float(np.median(_round_log_ratios(cand, ref, np.median)))


def _p25(x: np.ndarray) -> float:
    return float(np.percentile(x, 25))


def _median_round_p25(cand: Rounds, ref: Rounds) -> float:
    return float(np.median(_round_log_ratios(cand, ref, _p25)))


def _hl_round_p25(cand: Rounds, ref: Rounds) -> float:
    return hodges_lehmann(_round_log_ratios(cand, ref, _p25))


def _ratio_of_p10(cand: Rounds, ref: Rounds) -> float:
    a, b = np.concatenate([np.asarray(c, float) for c in cand]), np.concatenate(
        [np.asarray(r, float) for r in ref])
    return float(np.log(np.percentile(b, 10) / np.percentile(a, 10)))


ESTIMATORS: dict[str, Callable[[Rounds, Rounds], float]] = {
    "ratio-of-medians": _ratio_of_medians,  # what rows held before schema 3
    "ratio-of-means": _ratio_of_means,
    "median-round-trimmed-mean": _median_round_trimmed,
    "hl-round-trimmed-mean": _hl_round_trimmed,
    "hl-round-median": _hl_round_medians,
    "ratio-of-p10": _ratio_of_p10,
    "median-round-median": _median_round_median,
    "median-round-p25": _median_round_p25,
    "hl-round-p25": _hl_round_p25,
}
# per-round estimators: (how a round's side is summarised, how rounds are combined)
_PER_ROUND: dict[str, tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], float]]] = {
    "median-round-trimmed-mean": (trimmed_mean, np.median),
    "hl-round-trimmed-mean": (trimmed_mean, hodges_lehmann),
    "hl-round-median": (np.median, hodges_lehmann),
    "median-round-median": (np.median, np.median),
    "median-round-p25": (_p25, np.median),
    "hl-round-p25": (_p25, hodges_lehmann),
}
ESTIMATOR = "median-round-median"  # chosen by the benchmarks named in the module docstring


@dataclass(frozen=True)
class Speedup:
    """A paired speedup estimate with its bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    estimator: str
    rounds: int

    @property
    def rel_width(self) -> float:
        """Half-width of the CI relative to the estimate (0.05 = +-5%)."""
        return (self.ci_high - self.ci_low) / 2 / self.value if self.value > 0 else float("inf")


def median_ci(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free CI of a median from order statistics (as asv's `quantile_ci`): the
    k-th smallest and k-th largest values, k the largest with P(Binomial(n, 1/2) < k) <=
    alpha / 2. Coverage >= `confidence` for any continuous i.i.d. data; with too few values
    for that, the range (coverage `range_coverage(n)`, below `confidence`: the callers mark
    such a measurement noisy, `quality.assess`)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(x, float))
    n = len(x)
    k = int(binom.ppf((1 - confidence) / 2, n, 0.5))  # P(X <= k) ~ alpha/2
    while k > 0 and binom.cdf(k - 1, n, 0.5) > (1 - confidence) / 2:
        k -= 1
    k = max(k, 1)
    return float(x[k - 1]), float(x[n - k])


def speedup(cand: Rounds, ref: Rounds, estimator: str = ESTIMATOR, *, seed: int = 0,
            confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP) -> Speedup:
    """The speedup of `cand` over `ref` and its CI over rounds.

    For the median-of-rounds estimators the CI is the exact order-statistic interval of the
    per-round log ratios (`median_ci`): measured on the synthetic scenarios of
    `benchmarks/estimators.py`, a percentile bootstrap of a median over 16 rounds covered the
    truth in only 86-90% of trials (the bootstrap distribution of a small-sample median is
    lumpy), the order-statistic interval in >= 95%. Every other estimator gets a percentile
    bootstrap: rounds resampled as pairs (a round's candidate and reference chunks stay
    together, so the drift they share stays cancelled), `resamples` times with a fixed seed,
    so the same samples always give the same interval. With one round there is nothing to
    resample and the CI is the point itself; callers treat that as noisy.
    """
    if len(cand) != len(ref) or not cand:
        raise ValueError("candidate and reference need the same, non-zero number of rounds")
    fn = ESTIMATORS[estimator]
    point = fn(cand, ref)
    n = len(cand)
    if n < 2:
        v = float(np.exp(point))
        return Speedup(v, v, v, estimator, n)
    if estimator in _PER_ROUND and _PER_ROUND[estimator][1] is np.median:
        lo, hi = median_ci(_round_log_ratios(cand, ref, _PER_ROUND[estimator][0]), confidence)
        return Speedup(float(np.exp(point)), float(np.exp(min(lo, point))),
                       float(np.exp(max(hi, point))), estimator, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    if estimator in _PER_ROUND:
        centre, agg = _PER_ROUND[estimator]
        logs = _round_log_ratios(cand, ref, centre)  # per-round values: resample those
        boots = (np.median(logs[idx], axis=1) if agg is np.median
                 else np.array([agg(logs[i]) for i in idx]))
    else:
        boots = np.array([fn([cand[k] for k in i], [ref[k] for k in i]) for i in idx])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Speedup(float(np.exp(point)), float(np.exp(min(lo, point))),
                   float(np.exp(max(hi, point))), estimator, n)


def cv(samples: Sequence[int]) -> float:
    """Robust coefficient of variation: (p75 - p25) / 1.349 / median (= sd / mean for normal
    data, unmoved by a few preempted calls)."""
    x = np.asarray(samples, float)
    if len(x) < 2:
        return 0.0
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return float((q3 - q1) / 1.349 / med) if med > 0 else 0.0


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Do two closed intervals share a point?"""
    return a[0] <= b[1] and b[0] <= a[1]
