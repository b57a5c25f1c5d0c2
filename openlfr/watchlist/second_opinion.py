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

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from openlfr.watchlist import templates
from openlfr.watchlist.calibration import CalibrationError, CalibrationTable, score_grid
from openlfr.watchlist.score import match_score
from openlfr.watchlist.search import Candidate

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


def scored_by(model_id: str, evidence: Mapping[str, object] | None) -> str:
    """The id whose calibration table gives an alert's score its meaning: the fused score's where the alert's
    evidence names a second opinion (``evidence["second_opinion"]``: its model id), else the model's own."""
    second = (evidence or {}).get("second_opinion")
    return fused_model_id(model_id, second) if isinstance(second, str) and second else model_id


def fused_model_id(first_model_id: str, second_model_id: str) -> str:
    """The id the fused score's calibration table carries: the first model's, then the second's base name
    (``mobilefacenet_v1+flip+second-sface_2021dec``), so the registry finds it among the first model's tables."""
    return f"{first_model_id}+second-{second_model_id.split('+', 1)[0]}"


class SecondGallery:
    """The second model's references of a watchlist, for re-scoring the candidates the first model screened in.

    Held in memory beside the first model's ``Gallery`` (a deployment's snapshot, a scan's watchlist), searched
    never on its own: ``rescore`` compares one probe with the candidates' people only. With ``person_templates``
    a person's references are combined as the first gallery combines them (the fused table was made so)."""

    def __init__(
        self,
        embeddings: np.ndarray,
        person_ids: Sequence[Hashable],
        model_id: str,
        screen: float,
        *,
        person_templates: bool = False,
        weight: float = SECOND_WEIGHT,
    ) -> None:
        vectors = templates.unit_rows(embeddings).astype(np.float32)
        owners = list(person_ids)
        if len(owners) != len(vectors):
            raise ValueError(f"{len(vectors)} embeddings but {len(owners)} person ids")
        if person_templates and len(vectors):
            vectors, owners, _ = templates.person_templates(vectors, owners)
            vectors = np.asarray(vectors, np.float32)
        self.model_id = model_id
        self.screen = float(screen)
        self.weight = float(weight)
        self.vectors = vectors
        self._rows: dict[Hashable, list[int]] = {}
        for row, person in enumerate(owners):
            self._rows.setdefault(person, []).append(row)

    @property
    def people(self) -> set[Hashable]:
        return set(self._rows)

    def screened_in(self, candidates: Sequence[Candidate]) -> bool:
        """Whether the second model must look at this probe: a candidate's first score reaches the screen."""
        return any(c.score >= self.screen for c in candidates)

    def rescore(self, candidates: Sequence[Candidate], probe: np.ndarray | None) -> list[Candidate]:
        """The candidates with fused scores, best first: those screened in get the mean with the second model's
        score of the same person (0 for a person it has no reference of, or without a ``probe``), the rest their
        share of the first."""
        unit = None if probe is None else np.asarray(probe, np.float32) / max(float(np.linalg.norm(probe)), 1e-12)
        fused = []
        for candidate in candidates:
            second = 0.0
            rows = self._rows.get(candidate.person_id)
            if candidate.score >= self.screen and rows and unit is not None:
                cosine = float(np.max(self.vectors[rows] @ unit))
                second = float(match_score(cosine, self.model_id))
            first = (1.0 - self.weight) * candidate.score
            score = first + self.weight * second if candidate.score >= self.screen else first
            fused.append(Candidate(candidate.person_id, candidate.reference_id, float(score), candidate.cosine))
        return sorted(fused, key=lambda c: -c.score)


def per_probe_table(best_fused: np.ndarray, entries: int, model_id: str, source: dict[str, object]) -> CalibrationTable:
    """A calibration table of the fused score from each stranger's best fused score over a gallery of ``entries``.

    The table format states a per-comparison FMR and projects FPIR(N) = 1 - (1 - FMR)^N; the fused score is
    calibrated per probe, so each threshold's share of strangers reaching it at N0 = ``entries`` is written as
    the FMR that projects to it: FMR = 1 - (1 - FPIR(N0))^(1 / N0). ``choose_threshold`` then gives
    FPIR(N) = 1 - (1 - FPIR(N0))^(N / N0), the projection this module documents, from a table trusted where at
    least 100 strangers reach a threshold (independent pairs = strangers x N0). No tail is fitted: the second
    model cuts the strangers' tail off far faster than a Gaussian (on LFW a probit fit put the threshold for
    FPIR 1e-3 at N0 where 99% of listed people are missed), so a target beyond the measurements is refused
    (``CalibrationError``), and the live path runs the first model alone there, saying so."""
    best = np.asarray(best_fused, np.float64)
    if best.size == 0 or entries < 1:
        raise CalibrationError("no strangers to calibrate the fused score from")
    thresholds = score_grid()
    reaching = np.array([(best >= t - 1e-9).sum() for t in thresholds], np.int64)
    share = reaching / best.size
    fmr = -np.expm1(np.log1p(-np.minimum(share, 1 - 1e-12)) / entries)
    fmr[share >= 1.0] = 1.0
    independent = float(best.size * entries)
    return CalibrationTable(
        model_id=model_id,
        thresholds=thresholds,
        fmr=fmr,
        pairs_at_or_above=reaching,
        independent_pairs=independent,
        tail=None,
        source={**source, "strangers": int(best.size), "gallery_entries": int(entries), "per_probe": True},
        effective_fraction=1.0,
    )
