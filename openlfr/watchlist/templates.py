"""Templates: several embeddings of one face combined into one, searched like a single embedding.

A template is the weighted mean of unit-norm embeddings, renormalised to unit norm. Each embedding is one
look at a face plus what that look added (pose, light, blur, the camera); averaging several looks keeps what
they share, the person, and shrinks what they do not. Measured on LFW (``openlfr bench identify
--enrol-images 3 --probe-images 3``), both uses pay:

* a **person template**: a listed person's reference photos combined into one embedding, searched instead of
  each reference alone (``openlfr.watchlist.search.Gallery``, ``person_templates=True``);
* a **track template**: the looks a live track has embedded, fused as the track grows (``RunningTemplate``,
  ``openlfr.stream.evidence``), weighted by each look's quality so a blurred, turned look counts for less.

Only memory: nothing here writes anything anywhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

MIN_WEIGHT = 0.05  # a look's weight never falls to 0: a poor look still says something about the face


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    array = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise ValueError("a template cannot be made from a zero vector")
    return array / norms


def quality_weight(quality: float) -> float:
    """A look's weight in a track template: its quality score (0..1, ``Quality.score``), at least MIN_WEIGHT."""
    return max(float(quality), MIN_WEIGHT) if np.isfinite(quality) else MIN_WEIGHT


def template(embeddings: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The unit-norm weighted mean of these embeddings' unit vectors (float32). Equal weights by default."""
    unit = unit_rows(embeddings)
    w = np.ones(len(unit)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(unit),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"a template needs one finite, non-negative weight per embedding ({len(unit)}), some > 0")
    total = (w[:, None] * unit).sum(axis=0)
    norm = np.linalg.norm(total)
    if norm < 1e-9:  # looks that cancel out exactly (never two real faces): no direction to keep
        raise ValueError("these embeddings cancel out: no template")
    return (total / norm).astype(np.float32)


def person_templates(
    embeddings: np.ndarray, person_ids: Sequence[Hashable], weights: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, list[Hashable], list[list[int]]]:
    """One template per person, in order of first appearance: (templates, person ids, the rows each came from)."""
    rows: dict[Hashable, list[int]] = {}
    for index, person in enumerate(person_ids):
        rows.setdefault(person, []).append(index)
    if len(person_ids) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(person_ids)} person ids")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    vectors = [template(embeddings[r], None if w is None else w[r]) for r in rows.values()]
    dimension = np.shape(embeddings)[1] if np.ndim(embeddings) == 2 else 0
    stacked = np.stack(vectors) if vectors else np.zeros((0, dimension), np.float32)
    return stacked, list(rows), list(rows.values())


class RunningTemplate:
    """A track's looks fused as they come: the quality-weighted sum of their unit vectors, kept in memory only
    and dropped with the track (``clear``)."""

    def __init__(self) -> None:
        self._total: np.ndarray | None = None
        self.looks = 0

    def add(self, embedding: np.ndarray, quality: float = 1.0) -> None:
        unit = unit_rows(embedding)[0]
        weighted = quality_weight(quality) * unit
        self._total = weighted if self._total is None else self._total + weighted
        self.looks += 1

    @property
    def vector(self) -> np.ndarray | None:
        """The unit-norm fused embedding (float32), or None before the first look."""
        if self._total is None:
            return None
        norm = np.linalg.norm(self._total)
        return None if norm < 1e-9 else (self._total / norm).astype(np.float32)

    def clear(self) -> None:
        self._total = None
        self.looks = 0
