"""Building a calibration table from impostor scores: every cross-identity pair of a labelled image set.

``openlfr calibrate`` feeds LFW's embeddings through :func:`table_from_embeddings`; the identification benchmark
feeds its non-mated probes through :class:`ImpostorAccumulator` directly. Reading a table and picking a threshold
from it is :mod:`openlfr.watchlist.calibration`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from openlfr.watchlist.calibration import (
    GRID_STEP,
    RELIABLE_COUNT,
    TAIL_FIT_MAX_FMR,
    CalibrationError,
    CalibrationTable,
    TailFit,
    fmr_for_fpir,
    probit_exceedance,
    score_grid,
)
from openlfr.watchlist.score import cosine_from_score, match_score


class ImpostorAccumulator:
    """Counts impostor cosines per score-threshold bin, chunk by chunk (87M LFW pairs never sit in memory).

    ``weights`` let every pair of *people* count once however many images each has (1 / (n_i * n_j) per
    image pair); without them every image pair counts once.
    """

    def __init__(self, model_id: str, step: float = GRID_STEP) -> None:
        self.model_id = model_id
        self.thresholds = score_grid(step)
        self._cosine_edges = cosine_from_score(self.thresholds, model_id)
        self._cosine_edges[0] = -np.inf  # every score reaches 0: scores below the floor are clipped to it
        self._weighted = np.zeros(len(self.thresholds) + 1, np.float64)
        self._counts = np.zeros(len(self.thresholds) + 1, np.int64)
        self.total_weight = 0.0
        self.total_pairs = 0

    def add(self, cosines: np.ndarray, weights: np.ndarray | None = None) -> None:
        values = np.asarray(cosines, np.float64).ravel()
        # bin j holds cosines with edges[j-1] <= c < edges[j]: they reach thresholds 0..j-1
        bins = np.searchsorted(self._cosine_edges, values, side="right")
        size = len(self.thresholds) + 1
        self._counts += np.bincount(bins, minlength=size)
        if weights is None:
            self._weighted += np.bincount(bins, minlength=size)
            self.total_weight += values.size
        else:
            w = np.broadcast_to(np.asarray(weights, np.float64), np.shape(cosines)).ravel()
            self._weighted += np.bincount(bins, weights=w, minlength=size)
            self.total_weight += float(w.sum())
        self.total_pairs += values.size

    def table(
        self, independent_pairs: float | None = None, source: dict[str, object] | None = None
    ) -> CalibrationTable:
        if self.total_pairs == 0:
            raise CalibrationError("no impostor pairs to calibrate from")
        # pairs reaching threshold j = those in bins j+1 and above
        at_or_above_w = np.cumsum(self._weighted[::-1])[::-1][1:]
        at_or_above = np.cumsum(self._counts[::-1])[::-1][1:]
        fmr = at_or_above_w / self.total_weight
        independent = float(independent_pairs if independent_pairs is not None else self.total_pairs)
        return CalibrationTable(
            model_id=self.model_id,
            thresholds=self.thresholds.copy(),
            fmr=fmr,
            pairs_at_or_above=at_or_above,
            independent_pairs=independent,
            tail=fit_tail(self.thresholds, fmr, independent),
            source={**(source or {}), "image_pairs": self.total_pairs},
        )


def fit_tail(thresholds: np.ndarray, fmr: np.ndarray, independent_pairs: float) -> TailFit | None:
    """A straight line in probit(FMR) over the trusted tail, through its last trusted point (so no jump)."""
    reliable = (fmr * independent_pairs >= RELIABLE_COUNT) & (fmr > 0) & (fmr < 1)  # probit(1) is -inf
    points = np.flatnonzero(reliable & (fmr <= TAIL_FIT_MAX_FMR))
    if points.size < 5 and reliable.any():
        # too few impostor pairs to reach 1e-3 with confidence: fit the last trusted decade instead
        points = np.flatnonzero(reliable & (fmr <= 10 * fmr[reliable].min()))
    if points.size < 5:
        return None
    x = thresholds[points]
    y = np.array([probit_exceedance(float(f)) for f in fmr[points]])
    slope = float(np.polyfit(x, y, 1)[0])
    if slope <= 0:
        return None
    last = points[-1]
    intercept = float(y[-1] - slope * thresholds[last])
    return TailFit(from_score=float(thresholds[last]), intercept=intercept, slope=slope)


def table_from_embeddings(
    embeddings: np.ndarray,
    identities: Sequence[str],
    model_id: str,
    *,
    references: np.ndarray | None = None,
    reference_rows: np.ndarray | None = None,
    source: dict[str, object] | None = None,
    chunk_rows: int = 1024,
    progress: object | None = None,
) -> CalibrationTable:
    """Every cross-identity pair of these images, each pair of people weighted equally.

    With ``references`` (the same images embedded as enrolment does, row for row), a pair compares one image's
    reference embedding with the other's probe embedding — in both directions — as a deployment compares a
    watchlist photo with a camera's face. ``reference_rows`` (with ``references``, one row per index) says
    which images are references: each person's references meet every image of everyone else as a probe, still
    each ordered pair of people weighted once. Without references, probe embeddings are compared with each other.
    """
    probes = np.ascontiguousarray(embeddings, np.float32)
    n = len(probes)
    ref_index = np.arange(n) if reference_rows is None else np.asarray(reference_rows, np.int64)
    refs = probes if references is None else np.ascontiguousarray(references, np.float32)
    if references is None and reference_rows is not None:
        raise ValueError("reference_rows need the references' embeddings")
    if refs.shape != (len(ref_index), probes.shape[1]):
        raise ValueError(f"references {refs.shape} and probes {probes.shape} must be the same images")
    names = np.asarray(identities)
    _, codes, counts = np.unique(names, return_inverse=True, return_counts=True)
    per_image = 1.0 / counts[codes].astype(np.float64)
    ref_counts = np.bincount(codes[ref_index], minlength=len(counts))
    per_reference = 1.0 / ref_counts[codes[ref_index]].astype(np.float64)
    accumulator = ImpostorAccumulator(model_id)
    for start in range(0, len(ref_index), chunk_rows):
        stop = min(start + chunk_rows, len(ref_index))
        # symmetric comparisons: the upper triangle, each unordered pair once; reference x probe: every pair
        first = start if references is None else 0
        cosines = refs[start:stop] @ probes[first:].T
        rows = ref_index[start:stop, None]
        cols = np.arange(first, n)[None, :]
        impostor = codes[rows] != codes[None, first:]
        if references is None:
            impostor &= cols > rows
        weights = (per_image[rows] if references is None else per_reference[start:stop, None]) * per_image[cols]
        accumulator.add(cosines[impostor], weights[impostor])
        if progress is not None:
            progress(stop - start)  # type: ignore[operator]
    people = len(counts)
    return accumulator.table(
        independent_pairs=people * (people - 1) / 2,
        source={
            **(source or {}),
            "images": n,
            "identities": people,
            "identity_pairs": people * (people - 1) // 2,
            "weighting": "every pair of different people counts once (1/(n_i*n_j) per image pair)"
            if reference_rows is None
            else "every ordered pair of different people counts once (1/(r_i*n_j) per reference x probe pair)",
            "compares": "reference x probe embeddings" if references is not None else "probe x probe embeddings",
            "references": len(ref_index) if references is not None else 0,
        },
    )


def effective_fraction(
    table: CalibrationTable,
    references: np.ndarray,
    reference_identity: Sequence[str],
    probes: np.ndarray,
    probe_identity: Sequence[str],
    *,
    gallery_size: int = 1000,
    draws: int = 8,
    levels: tuple[float, ...] = (1e-1, 1e-2),
    seed: int = 0,
) -> float:
    """How many independent comparisons a probe's N comparisons with a gallery are worth, as a share of N.

    Galleries of ``gallery_size`` people (one reference each, drawn at random ``draws`` times) meet the probes of
    everyone else; at the thresholds the table picks for each FPIR level, the observed FPIR gives the N_eff with
    1 - (1 - FMR)^N_eff = FPIR. The median of N_eff / N, at most 1: never fewer false alerts promised than
    independence would give when the data cannot tell.
    """
    people = np.unique(np.asarray(reference_identity))
    if len(people) < 2 * gallery_size:
        return 1.0
    ref_names, probe_names = np.asarray(reference_identity), np.asarray(probe_identity)
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(draws):
        chosen = rng.choice(people, gallery_size, replace=False)
        rows = np.flatnonzero(np.isin(ref_names, chosen))
        _, first = np.unique(ref_names[rows], return_index=True)  # one reference a person
        gallery = references[rows[first]]
        strangers = probes[~np.isin(probe_names, chosen)]
        best = np.concatenate(
            [(strangers[i : i + 1024] @ gallery.T).max(axis=1) for i in range(0, len(strangers), 1024)]
        )
        scores = match_score(best, table.model_id)
        for level in levels:
            threshold, _ = table.threshold_for_fmr(fmr_for_fpir(level, len(gallery)))
            fmr, _ = table.fmr_at(threshold)
            observed = float(np.mean(scores >= threshold))
            if 0.0 < observed < 1.0 and 0.0 < fmr < 1.0:
                ratios.append(np.log1p(-observed) / np.log1p(-fmr) / len(gallery))
    return float(min(np.median(ratios), 1.0)) if ratios else 1.0


def impostor_cosines(probes: np.ndarray, gallery: np.ndarray) -> Iterable[np.ndarray]:
    """Every probe x gallery cosine, a block of probes at a time (for tables from non-mated probes)."""
    for start in range(0, len(probes), 1024):
        yield probes[start : start + 1024] @ gallery.T
