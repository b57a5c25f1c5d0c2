"""Thresholds from a target false-alert rate and the watchlist's size.

A *calibration table* says, for each match-score threshold ``t``, the false match rate FMR(t): the chance
that one comparison of two different people scores ``t`` or more. It is measured on impostor pairs
(``openlfr calibrate`` uses every cross-identity pair of LFW). A passer-by who is on no list is compared with
every reference of the watchlist; they raise a false alert if any comparison reaches ``t``:

    FPIR(N, t) = 1 - (1 - FMR(t)) ** N        (N = reference embeddings searched)

which assumes the N comparisons are independent (the identification benchmark measures how well that
holds). A deployment gives either a threshold (we say what FPIR to expect) or a target FPIR such as
"1 in 33,000 faces" (we pick the lowest threshold whose expected FPIR is at or under it, and say which).

The measured table is trusted down to FMR = 100 / (independent impostor pairs), where a point rests on at
least 100 pairs of people (about 10% Poisson error). Beyond that the tail is a Gaussian fitted to the
measured tail (FMR from 1e-3 down to that limit): the probit of FMR is a straight line in the score, anchored
at the last trusted point. On LFW with dlib's model the probit is straight to within measurement error over
FMR 1e-3..1e-6, while a straight line in log FMR visibly bends; and the measured points past 1e-6 are
LFW's own label errors (one person filed under two spellings, a mislabelled photo, twins), not a tail
to follow. A choice that relies on the fitted tail says so (``extrapolated``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.watchlist.score import cosine_from_score, score_floor

FORMAT = "openlfr-calibration/1"
GRID_STEP = 0.001  # score thresholds 0.000, 0.001, ..., 1.000
RELIABLE_COUNT = 100.0  # a table FMR is trusted where it rests on at least this many independent impostor pairs
TAIL_FIT_MAX_FMR = 1e-3
_NORMAL = NormalDist()


def probit_exceedance(fmr: float) -> float:
    """z with P(Z >= z) = fmr for a standard normal Z (accurate for tiny fmr)."""
    return -_NORMAL.inv_cdf(fmr)


def exceedance(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class CalibrationError(OpenLFRError):
    """No usable calibration table, or a target that cannot be met."""


def score_grid(step: float = GRID_STEP) -> np.ndarray:
    return np.round(np.arange(0.0, 1.0 + step / 2, step), 6)


@dataclass(frozen=True)
class TailFit:
    """A Gaussian impostor tail: probit(FMR) = intercept + slope * score, for scores above ``from_score``."""

    from_score: float
    intercept: float
    slope: float

    def fmr(self, score: float) -> float:
        return exceedance(self.intercept + self.slope * score)

    def score_for(self, fmr: float) -> float:
        return (probit_exceedance(fmr) - self.intercept) / self.slope


@dataclass(frozen=True)
class CalibrationTable:
    """Match-score threshold -> FMR for one embedding model."""

    model_id: str
    thresholds: np.ndarray  # match scores, ascending, evenly spaced
    fmr: np.ndarray  # FMR(score >= threshold), non-increasing
    pairs_at_or_above: np.ndarray  # impostor image pairs scoring >= threshold (unweighted counts)
    independent_pairs: float  # how many independent impostor comparisons the FMR rests on
    tail: TailFit | None
    source: dict[str, object] = field(default_factory=dict)

    @property
    def resolved_fmr(self) -> float:
        """The smallest FMR the measurements themselves support."""
        return RELIABLE_COUNT / self.independent_pairs

    def fmr_at(self, threshold: float) -> tuple[float, bool]:
        """(FMR at this score threshold, whether it was extrapolated beyond the measurements)."""
        if not 0.0 <= threshold <= 1.0:
            raise CalibrationError(f"a match-score threshold lies in [0, 1], got {threshold}")
        # the grid point at or below the threshold: FMR is non-increasing, so this errs high
        index = int(np.searchsorted(self.thresholds, threshold + 1e-9, side="right")) - 1
        measured = float(self.fmr[max(index, 0)])
        if self.tail is not None and threshold > self.tail.from_score:
            return self.tail.fmr(threshold), True
        if measured < self.resolved_fmr and self.tail is None:
            return max(measured, 0.0), True
        return measured, False

    def threshold_for_fmr(self, target_fmr: float) -> tuple[float, bool]:
        """(the lowest score threshold with FMR <= target, whether that needed the extrapolated tail)."""
        if target_fmr <= 0:
            raise CalibrationError("a target false match rate must be above 0")
        reliable = self.fmr * self.independent_pairs >= RELIABLE_COUNT
        within = np.flatnonzero((self.fmr <= target_fmr) & reliable)
        if within.size:
            return float(self.thresholds[within[0]]), False
        if self.tail is None:
            raise CalibrationError(
                f"the calibration table resolves FMR only down to {self.resolved_fmr:.1e}; "
                f"a target of {target_fmr:.1e} needs more impostor pairs"
            )
        threshold = max(self.tail.score_for(target_fmr), self.tail.from_score)
        if threshold > 1.0:
            raise CalibrationError(f"no threshold up to 1.0 reaches an FMR of {target_fmr:.1e} on this model")
        return math.ceil(threshold * 1e4) / 1e4, True

    # ----- files -----

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "model_id": self.model_id,
            "score_floor": score_floor(self.model_id),
            "independent_pairs": self.independent_pairs,
            "source": self.source,
            "tail_fit": None
            if self.tail is None
            else {"from_score": self.tail.from_score, "intercept": self.tail.intercept, "slope": self.tail.slope},
            "table": [
                {"threshold": round(float(t), 6), "fmr": float(f"{f:.6g}"), "pairs_at_or_above": int(c)}
                for t, f, c in zip(self.thresholds, self.fmr, self.pairs_at_or_above, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, document: dict[str, object], origin: str = "calibration table") -> CalibrationTable:
        try:
            if document.get("format") != FORMAT:
                raise CalibrationError(f"{origin}: not an OpenLFR calibration table ({FORMAT})")
            rows = document["table"]
            assert isinstance(rows, list)
            tail = document.get("tail_fit")
            source = document.get("source") or {}
            assert isinstance(source, dict)
            return cls(
                model_id=str(document["model_id"]),
                thresholds=np.array([r["threshold"] for r in rows], np.float64),
                fmr=np.array([r["fmr"] for r in rows], np.float64),
                pairs_at_or_above=np.array([r["pairs_at_or_above"] for r in rows], np.int64),
                independent_pairs=float(document["independent_pairs"]),  # type: ignore[arg-type]
                tail=None
                if not tail
                else TailFit(float(tail["from_score"]), float(tail["intercept"]), float(tail["slope"])),  # type: ignore[index]
                source=source,
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise CalibrationError(f"{origin}: malformed calibration table ({exc})") from exc

    def save(self, path: Path) -> None:
        import os
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "w") as out:
            json.dump(self.to_json(), out, indent=1)
        os.replace(temp_name, path)  # never a half-written table

    @classmethod
    def load(cls, path: Path) -> CalibrationTable:
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise CalibrationError(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
        if not isinstance(document, dict):
            raise CalibrationError(f"{path}: not a calibration table")
        return cls.from_json(document, str(path))


# ----- building a table from impostor scores -----


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
    reliable = (fmr * independent_pairs >= RELIABLE_COUNT) & (fmr > 0)
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
    source: dict[str, object] | None = None,
    chunk_rows: int = 1024,
    progress: object | None = None,
) -> CalibrationTable:
    """Every cross-identity pair of these images, each pair of people weighted equally.

    With ``references`` (the same images embedded as enrolment does, row for row), a pair compares one image's
    reference embedding with the other's probe embedding — in both directions — as a deployment compares a
    watchlist photo with a camera's face. Without, probe embeddings are compared with each other.
    """
    probes = np.ascontiguousarray(embeddings, np.float32)
    refs = probes if references is None else np.ascontiguousarray(references, np.float32)
    if refs.shape != probes.shape:
        raise ValueError(f"references {refs.shape} and probes {probes.shape} must be the same images")
    names = np.asarray(identities)
    _, codes, counts = np.unique(names, return_inverse=True, return_counts=True)
    per_image = 1.0 / counts[codes].astype(np.float64)
    accumulator = ImpostorAccumulator(model_id)
    n = len(probes)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        # symmetric comparisons: the upper triangle, each unordered pair once; reference x probe: every pair
        first = start if references is None else 0
        cosines = refs[start:stop] @ probes[first:].T
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(first, n)[None, :]
        impostor = codes[start:stop, None] != codes[None, first:]
        if references is None:
            impostor &= cols > rows
        weights = per_image[start:stop, None] * per_image[None, first:]
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
            "weighting": "every pair of different people counts once (1/(n_i*n_j) per image pair)",
            "compares": "reference x probe embeddings" if references is not None else "probe x probe embeddings",
        },
    )


# ----- false-alert arithmetic -----


def fpir(fmr: float, watchlist_size: int) -> float:
    """FPIR(N) = 1 - (1 - FMR)^N, computed without cancellation for tiny FMR."""
    if fmr >= 1.0:
        return 1.0
    return float(-math.expm1(watchlist_size * math.log1p(-fmr)))


def fmr_for_fpir(target_fpir: float, watchlist_size: int) -> float:
    """The per-comparison FMR that gives this FPIR over N references."""
    if not 0.0 < target_fpir < 1.0:
        raise CalibrationError(f"a target false-alert rate lies strictly between 0 and 1, got {target_fpir}")
    if watchlist_size < 1:
        raise CalibrationError("a watchlist needs at least one reference to set a threshold for")
    return float(-math.expm1(math.log1p(-target_fpir) / watchlist_size))


def parse_rate(text: str | float) -> float:
    """'1 in 33,000', '1/33000', '3e-5' or 0.00003 -> 3.03e-05."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        cleaned = text.replace(",", "").replace("_", "").strip().lower()
        match = re.fullmatch(r"1\s*(?:in|/|:)\s*([0-9.e+]+)", cleaned)
        try:
            value = 1.0 / float(match.group(1)) if match else float(cleaned)
        except (ValueError, ZeroDivisionError):
            raise CalibrationError(f"'{text}' is not a rate: write 1e-3, 0.001, '1 in 1000' or '1/1000'") from None
    if not 0.0 < value < 1.0:
        raise CalibrationError(f"a false-alert rate lies strictly between 0 and 1, got {text}")
    return value


@dataclass(frozen=True)
class ThresholdChoice:
    """What threshold a deployment runs at and why."""

    threshold: float  # match score
    watchlist_size: int  # N, reference embeddings searched
    expected_fpir: float  # FPIR(N, threshold) from the table
    fmr: float  # FMR(threshold)
    target_fpir: float | None  # None when the threshold was given
    extrapolated: bool  # the FMR lies beyond what the table measured
    model_id: str

    def describe(self) -> str:
        how = (
            f"picked for a target of 1 in {1 / self.target_fpir:,.0f} faces"
            if self.target_fpir is not None
            else "given"
        )
        expected = f"1 in {1 / self.expected_fpir:,.0f}" if self.expected_fpir > 0 else "none measurable"
        note = " (FMR extrapolated beyond the calibration data)" if self.extrapolated else ""
        return (
            f"threshold {self.threshold:.4f} ({how}) with {self.watchlist_size:,} references: "
            f"expected false alerts {expected} faces; FMR {self.fmr:.2e}{note}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "watchlist_size": self.watchlist_size,
            "expected_fpir": self.expected_fpir,
            "fmr": self.fmr,
            "target_fpir": self.target_fpir,
            "extrapolated": self.extrapolated,
            "model_id": self.model_id,
        }


def choose_threshold(
    table: CalibrationTable,
    watchlist_size: int,
    *,
    target_fpir: float | None = None,
    threshold: float | None = None,
) -> ThresholdChoice:
    """Either a target FPIR (the lowest threshold meeting it is picked) or a threshold (its FPIR is stated)."""
    if (target_fpir is None) == (threshold is None):
        raise CalibrationError("give either a threshold or a target false-alert rate, not both")
    if watchlist_size < 1:
        raise CalibrationError("a watchlist needs at least one reference to set a threshold for")
    if target_fpir is not None:
        picked, extrapolated = table.threshold_for_fmr(fmr_for_fpir(target_fpir, watchlist_size))
    else:
        assert threshold is not None
        picked, extrapolated = float(threshold), False
    fmr, beyond = table.fmr_at(picked)
    return ThresholdChoice(
        threshold=picked,
        watchlist_size=watchlist_size,
        expected_fpir=fpir(fmr, watchlist_size),
        fmr=fmr,
        target_fpir=target_fpir,
        extrapolated=extrapolated or beyond,
        model_id=table.model_id,
    )


# ----- finding the table for a model -----


def table_file_name(model_id: str) -> str:
    return "calibration_" + re.sub(r"[^A-Za-z0-9_.+-]", "_", model_id) + ".json"


def user_table_path(data_dir: Path, model_id: str) -> Path:
    """Where ``openlfr calibrate`` writes by default, and where the system looks before the shipped one."""
    return data_dir / "calibration" / table_file_name(model_id)


def load_calibration(model_id: str, *, explicit: Path | None = None, data_dir: Path | None = None) -> CalibrationTable:
    """The table for this model: an explicit file, else the user's ``openlfr calibrate`` output, else shipped."""
    candidates: list[tuple[str, Path | None]] = [("OPENLFR_CALIBRATION_FILE", explicit)]
    if data_dir is not None:
        candidates.append(("calibrate output", user_table_path(data_dir, model_id)))
    for label, path in candidates:
        if path is not None and (label == "OPENLFR_CALIBRATION_FILE" or path.is_file()):
            table = CalibrationTable.load(path)
            if table.model_id != model_id:
                raise CalibrationError(f"{path} calibrates {table.model_id}, but the embeddings come from {model_id}")
            return table
    shipped = resources.files("openlfr") / "data" / table_file_name(model_id)
    if shipped.is_file():
        return CalibrationTable.from_json(json.loads(shipped.read_text()), f"shipped {shipped.name}")
    raise CalibrationError(
        f"no calibration table for the embedding model {model_id}, so no threshold can be picked for a target "
        "false-alert rate: run 'openlfr calibrate --data LFW_DIR' with this model to make one"
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def impostor_cosines(probes: np.ndarray, gallery: np.ndarray) -> Iterable[np.ndarray]:
    """Every probe x gallery cosine, a block of probes at a time (for tables from non-mated probes)."""
    for start in range(0, len(probes), 1024):
        yield probes[start : start + 1024] @ gallery.T
