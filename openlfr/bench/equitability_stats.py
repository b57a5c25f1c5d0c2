"""The statistics of the equitability report, on score arrays: per-group error rates with intervals, and a test
of equal rates across groups at every threshold of a grid.

Probes are not independent: one person's photos share a face, so their outcomes go together (a person the
model finds hard is missed in most of their photos). Both the intervals and the test therefore treat the
*person* as the unit of sampling:

- Intervals are Clopper-Pearson (exact binomial), computed on the effective number of probes (Korn and
  Graubard 1998): the number of probes divided by the design effect measured from the spread of the error
  rate between people (never more than the probes themselves). Clopper-Pearson rather than Wilson because the
  counts that matter at an operating threshold are small (0 to a few false alerts) and a public report should
  never claim more certainty than it has: Clopper-Pearson covers at least 95% for every rate and sample size,
  Wilson only on average and below it near 0. With no clustering it is the plain Clopper-Pearson interval.
- The test of equal rates (at one threshold: Pearson's chi-square statistic of the groups x error table) gets
  its p-value from permuting the group labels between *people*, which is exact for any clustering and for the
  small counts where the chi-square distribution does not hold. Each threshold of the grid is its own test; to
  say "groups differ at threshold t" about any t of a grid without crying wolf, the p-values are adjusted with
  Westfall and Young's single-step minP over the grid (FWER): the chance that *any* threshold of the grid is
  called significant when the groups do not differ stays at most alpha. Neighbouring thresholds are nearly the
  same test (the same probes, a count or two apart); minP uses that correlation from the permutations
  themselves, where Bonferroni over 60 thresholds would demand p < 0.001 at each and miss real differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from openlfr.bench.equitability_design import ALPHA, GRID_STEP, PERMUTATIONS

CONFIDENCE = 0.95
_TIE = 1e-9  # statistics this close count as equal: the same table computed in another order


@dataclass(frozen=True)
class Rate:
    """An error rate over probes, with its interval."""

    errors: int
    probes: int
    rate: float
    low: float
    high: float
    effective_probes: float  # probes / design effect: what the interval rests on

    def as_dict(self) -> dict[str, object]:
        return {
            "rate": round(self.rate, 5),
            "ci": [round(self.low, 5), round(self.high, 5)],
            "errors": self.errors,
            "probes": self.probes,
            "effective_probes": round(self.effective_probes, 1),
        }


def clopper_pearson(errors: float, trials: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact binomial interval; ``errors`` and ``trials`` may be fractional (effective counts)."""
    if trials <= 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2
    low = 0.0 if errors <= 0 else float(beta.ppf(tail, errors, trials - errors + 1))
    high = 1.0 if errors >= trials else float(beta.ppf(1 - tail, errors + 1, trials - errors))
    return low, high


def clustered_rate(
    errors_per_person: np.ndarray, probes_per_person: np.ndarray, confidence: float = CONFIDENCE
) -> Rate:
    """The pooled error rate of these people's probes, with a Korn-Graubard (clustered Clopper-Pearson) interval."""
    errors = np.asarray(errors_per_person, np.float64)
    probes = np.asarray(probes_per_person, np.float64)
    total, hits, people = float(probes.sum()), float(errors.sum()), len(probes)
    if total == 0:
        return Rate(0, 0, 0.0, 0.0, 1.0, 0.0)
    rate = hits / total
    effective = total
    if people >= 2 and 0.0 < rate < 1.0:
        # variance of the ratio estimator with people as clusters; a design effect under 1 is not credited
        between = people / (people - 1) * float(np.sum((errors - rate * probes) ** 2)) / total**2
        effective = min(total, rate * (1 - rate) / between) if between > 0 else total
    low, high = clopper_pearson(rate * effective, effective, confidence)
    return Rate(round(hits), round(total), rate, low, high, effective)


def threshold_grid(scores: np.ndarray, step: float = GRID_STEP, extra: tuple[float, ...] = ()) -> np.ndarray:
    """Multiples of ``step`` spanning the scores (a threshold below all or above all tells nothing), plus ``extra``."""
    values = np.asarray(scores, np.float64)
    low = np.floor(values.min() / step) * step if len(values) else 0.0
    high = np.ceil(values.max() / step) * step if len(values) else 1.0
    grid = np.arange(max(low, 0.0), min(high, 1.0) + step / 2, step)
    return np.unique(np.round(np.concatenate([grid, np.asarray(extra, np.float64)]), 6))


def fnir_errors(mated_best: np.ndarray, mated_correct: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(probes x thresholds) True where a mated probe is missed: wrong person at rank 1, or scoring under t."""
    hit = np.asarray(mated_correct, bool)[:, None] & (np.asarray(mated_best)[:, None] >= thresholds[None, :])
    return ~hit


def fpir_errors(nonmated_best: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(probes x thresholds) True where a non-mated probe's best score reaches t: a false alert."""
    return np.asarray(nonmated_best)[:, None] >= thresholds[None, :]


def per_person(errors: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(people, errors per person x threshold, probes per person), people in sorted order."""
    people, codes = np.unique(np.asarray(person), return_inverse=True)
    counts = np.zeros((len(people), errors.shape[1]), np.float64)
    np.add.at(counts, codes, errors.astype(np.float64))
    return people, counts, np.bincount(codes, minlength=len(people)).astype(np.float64)


def chi_square(errors_by_group: np.ndarray, probes_by_group: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of a groups x (error, no error) table at each threshold.

    ``errors_by_group``: (..., groups, thresholds); ``probes_by_group``: (..., groups). 0 where every probe, or
    none, is an error (nothing to compare).
    """
    probes = probes_by_group[..., :, None]
    pooled = errors_by_group.sum(axis=-2, keepdims=True) / probes.sum(axis=-2, keepdims=True)
    spread = probes * pooled * (1.0 - pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(spread > 0, (errors_by_group - probes * pooled) ** 2 / spread, 0.0)
    return np.asarray(terms.sum(axis=-2))


@dataclass(frozen=True)
class EqualityTest:
    """Do the groups' error rates differ, threshold by threshold?"""

    thresholds: np.ndarray
    statistic: np.ndarray  # chi-square at each threshold
    p_value: np.ndarray  # permutation p-value of each threshold on its own
    p_adjusted: np.ndarray  # minP-adjusted over the grid: compare with alpha
    alpha: float
    permutations: int

    @property
    def significant(self) -> np.ndarray:
        return self.p_adjusted <= self.alpha

    @property
    def highest_significant(self) -> float | None:
        hits = self.thresholds[self.significant]
        return float(hits.max()) if hits.size else None

    @property
    def lowest_significant(self) -> float | None:
        hits = self.thresholds[self.significant]
        return float(hits.min()) if hits.size else None

    @property
    def no_difference_at_or_above(self) -> float | None:
        """The lowest grid threshold from which on no threshold differs significantly (NPL's statement)."""
        if not self.significant.any():
            return float(self.thresholds[0])
        above = np.flatnonzero(self.significant)[-1] + 1
        return float(self.thresholds[above]) if above < len(self.thresholds) else None

    def significant_ranges(self) -> list[tuple[float, float]]:
        """Runs of consecutive significant grid thresholds, as (first, last)."""
        ranges: list[tuple[float, float]] = []
        start: int | None = None
        flags = [*self.significant.tolist(), False]
        for index, flag in enumerate(flags):
            if flag and start is None:
                start = index
            elif not flag and start is not None:
                ranges.append((float(self.thresholds[start]), float(self.thresholds[index - 1])))
                start = None
        return ranges

    def at(self, threshold: float) -> dict[str, float]:
        index = int(np.argmin(np.abs(self.thresholds - threshold)))
        return {
            "threshold": float(self.thresholds[index]),
            "chi_square": round(float(self.statistic[index]), 3),
            "p": round(float(self.p_value[index]), 4),
            "p_adjusted": round(float(self.p_adjusted[index]), 4),
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "significant": bool(self.significant.any()),
            "significant_ranges": [[round(a, 4), round(b, 4)] for a, b in self.significant_ranges()],
            "highest_significant_threshold": self.highest_significant,
            "lowest_significant_threshold": self.lowest_significant,
            "no_difference_at_or_above": self.no_difference_at_or_above,
            "smallest_p_adjusted": round(float(self.p_adjusted.min()), 4) if len(self.p_adjusted) else None,
            "grid": [float(self.thresholds[0]), float(self.thresholds[-1]), len(self.thresholds)],
        }


def equal_rates_test(
    errors: np.ndarray,
    person: np.ndarray,
    group_of_person: dict[str, str],
    thresholds: np.ndarray,
    *,
    permutations: int = PERMUTATIONS,
    alpha: float = ALPHA,
    seed: int = 0,
) -> EqualityTest:
    """Test "every group has the same error rate" at each threshold, by permuting groups between people.

    ``errors`` is (probes x thresholds) as from ``fnir_errors``/``fpir_errors``; ``person`` names each probe's
    person; ``group_of_person`` gives each person's group (every person in ``person`` must have one).
    """
    if errors.shape != (len(person), len(thresholds)):
        raise ValueError(f"errors {errors.shape} must be (probes {len(person)}, thresholds {len(thresholds)})")
    people, counts, probes = per_person(errors, person)
    names = sorted(set(group_of_person[str(p)] for p in people))
    if len(names) < 2:
        raise ValueError("an equality test needs at least two groups")
    codes = np.array([names.index(group_of_person[str(p)]) for p in people])
    rng = np.random.default_rng(seed)
    # row 0 is the data as labelled; rows 1.. the same labels shuffled between people
    assignments = np.stack([codes] + [rng.permutation(codes) for _ in range(permutations)])
    membership = (assignments[:, :, None] == np.arange(len(names))[None, None, :]).astype(np.float64)
    errors_by_group = membership.transpose(0, 2, 1) @ counts
    probes_by_group = membership.transpose(0, 2, 1) @ probes
    statistic = chi_square(errors_by_group, probes_by_group)  # (1 + permutations, thresholds)
    draws = statistic.shape[0]
    p_each = np.empty_like(statistic)
    for column in range(statistic.shape[1]):
        values = statistic[:, column]
        ordered = np.sort(values)
        at_least = draws - np.searchsorted(ordered, values - _TIE * np.maximum(1.0, values), side="left")
        p_each[:, column] = at_least / draws
    smallest = p_each.min(axis=1)  # each draw's best threshold: what "significant somewhere" is judged against
    adjusted = np.array([np.mean(smallest <= p + 1e-12) for p in p_each[0]])
    return EqualityTest(
        thresholds=np.asarray(thresholds, np.float64),
        statistic=statistic[0],
        p_value=p_each[0],
        p_adjusted=adjusted,
        alpha=alpha,
        permutations=permutations,
    )
