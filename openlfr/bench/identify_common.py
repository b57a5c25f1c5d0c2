"""The figures of open-set identification shared by ``bench identify``'s protocols: thresholds read off the
non-mated probes, FNIR and FPIR at a threshold, the split of strangers into halves, LFW's aliases."""

from __future__ import annotations

import numpy as np

FPIR_POINTS = (1e-1, 1e-2, 1e-3)
HOLDOUT_REPEATS = 20
# LFW files these people under two names each (issue 9). A probe filed under one name while the other name is
# enrolled is the enrolled person, not a stranger: such probes are left out of the non-mated set (the figures
# with them are reported too, as "uncleaned").
LFW_ALIASES = {
    "Sepp_Blatter": "Joseph_Blatter",
    "Sung_Hong_Choi": "Choi_Sung-hong",
    "Hasan_Wirayuda": "Hassan_Wirajuda",
    "Mireya_Elisa_Moscoso_Rodriguez": "Mireya_Moscoso",
}


def threshold_at_fpir(nonmated_best: np.ndarray, target: float) -> float:
    """The lowest threshold at which at most ``floor(target * n)`` non-mated probes reach it."""
    ordered = np.sort(nonmated_best)[::-1]
    allowed = int(np.floor(target * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return 0.0
    # just above the first score that must not alert (scores are float64; nextafter keeps it tight)
    return float(np.nextafter(ordered[allowed], np.inf))


def observed_fpir(nonmated_best: np.ndarray, threshold: float) -> float:
    return float(np.mean(nonmated_best >= threshold)) if len(nonmated_best) else 0.0


def fnir(mated_best: np.ndarray, mated_correct: np.ndarray, threshold: float) -> float:
    return float(1.0 - np.mean(mated_correct & (mated_best >= threshold)))


def identity_halves(identity: list[str], seed: int | None) -> np.ndarray:
    """A boolean mask: the probes whose identity falls in the first half (alternate names, or a random half)."""
    names = sorted(set(identity))
    if seed is None:
        first = set(names[0::2])
    else:
        rng = np.random.default_rng(seed)
        first = {names[i] for i in rng.permutation(len(names))[: len(names) // 2]}
    return np.array([n in first for n in identity])
