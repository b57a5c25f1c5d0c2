"""A second opinion: a second face model re-scores the few candidates the first one already finds alike.

The first model (MobileFaceNet) screens every face; only a (probe, listed person) pair whose first score reaches
the screening score is embedded and compared again by the second model (SFace), so the second model's cost falls
on a handful of faces, not on every face. The fused score is the weighted mean of the two match scores
(``openlfr.watchlist.score``: each model's score is 0 at the 1st percentile of its own stranger cosines, so the
two scales agree where it matters), the second counted as 0 where it was not asked: a pair screened out scores
below ``(1 - weight) * screen`` and every pair screened in at least that, so the second opinion only ever
reorders what was screened in, and one threshold on the fused score means the same everywhere.

The fused score is a score of its own, with a calibration of its own, made per probe: the table (score -> share
of strangers whose best fused score over the whole gallery reaches it, read off as it is, no fitted tail) counts
each stranger once, not each pair, so it states the false-alert rate at the gallery size it was made with, N0.
The pair tables' projection, FPIR = 1 - (1 - FMR)^N, assumes a stranger's comparisons are independent; the fused
score's are not (a stranger screened in against one listed person is often screened in against several), and on
LFW a pair table of fused scores picks a threshold 30 times too cautious at 1e-2 (``openlfr bench identify``).
For another gallery size N the documented projection is FPIR(N) = 1 - (1 - FPIR(N0))^(N / N0), gallery chunks of
size N0 taken as independent; ``openlfr bench identify`` checks the threshold picked from one half of the
strangers on the other half.
"""

from __future__ import annotations

import numpy as np

SECOND_WEIGHT = 0.5  # the second model's share of a re-scored pair's fused score


def fused_scores(first: np.ndarray, second: np.ndarray, screen: float, weight: float = SECOND_WEIGHT) -> np.ndarray:
    """Fused scores of the same pairs; ``second`` is read only where ``first`` reaches ``screen``."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError("the two opinions must score the same pairs")
    return (1.0 - weight) * first + weight * np.where(first >= screen, second, 0.0)


def rescored_share(first: np.ndarray, screen: float) -> float:
    """The share of probes (rows) with any candidate the second model must re-score: what it costs."""
    rows = np.atleast_2d(np.asarray(first))
    return float(np.mean((rows >= screen).any(axis=1))) if rows.size else 0.0
