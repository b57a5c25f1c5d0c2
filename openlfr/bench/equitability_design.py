"""How the equitability report compares groups (its test's parameters and their defaults), apart from the
statistics themselves so that ``openlfr bench equitability --help`` shows the defaults without loading SciPy."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05
PERMUTATIONS = 999
GRID_STEP = 0.01


@dataclass(frozen=True)
class PermutationDesign:
    """How groups are compared: the spacing of the thresholds tested, the permutations drawn, the family-wise
    error rate, and the seed that makes the draws repeatable."""

    grid_step: float = GRID_STEP
    permutations: int = PERMUTATIONS
    alpha: float = ALPHA
    seed: int = 0
