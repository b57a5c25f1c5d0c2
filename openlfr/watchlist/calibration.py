"""Thresholds from a target false-alert rate and the watchlist's size.

A *calibration table* says, for each match-score threshold ``t``, the false match rate FMR(t): the chance
that one comparison of two different people scores ``t`` or more. It is measured on impostor pairs
(``openlfr calibrate`` uses every cross-identity pair of LFW). A passer-by who is on no list is compared with
every reference of the watchlist; they raise a false alert if any comparison reaches ``t``:

    FPIR(N, t) = 1 - (1 - FMR(t)) ** N        (N = reference embeddings searched)

which assumes the N comparisons are independent. They are not quite: a passer-by with a common-looking face
scores high against many references at once, so the best of N correlated comparisons reaches ``t`` less often
than N independent ones would. A table says how much, as ``effective_fraction`` f: a probe's N comparisons count
as f N independent ones (``openlfr calibrate`` measures f on LFW from galleries of 1,000 people and the other
people's faces; 1 = independent, the conservative value every table without a measurement gets). With dlib's
model f is about 0.74 (its stranger scores crowd in a narrow cone); with MobileFaceNet's it is close to 1. The
identification benchmark measures how well the projection holds. A deployment gives either a threshold (we
say what FPIR to expect) or a target FPIR such as "1 in 33,000 faces" (we pick the lowest threshold whose
expected FPIR is at or under it, and say which).

The measured table is trusted down to FMR = 100 / (independent impostor pairs), where a point rests on at
least 100 pairs of people (about 10% Poisson error). Beyond that the tail is a Gaussian fitted to the
measured tail (FMR from 1e-3 down to that limit): the probit of FMR is a straight line in the score, anchored
at the last trusted point. On LFW with dlib's model the probit is straight to within measurement error over
FMR 1e-3..1e-6, while a straight line in log FMR visibly bends; and the measured points past 1e-6 are
LFW's own label errors (one person filed under two spellings, a mislabelled photo, twins), not a tail
to follow. A choice that relies on the fitted tail says so (``extrapolated``).

Building a table from impostor scores is :mod:`openlfr.watchlist.calibration_build`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np

from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError
from openlfr.face_models import shipped_calibration
from openlfr.watchlist.score import score_floor

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
    effective_fraction: float = 1.0  # a probe's N comparisons count as this share of N independent ones

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
            "effective_fraction": self.effective_fraction,
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
                effective_fraction=float(document.get("effective_fraction", 1.0)),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise CalibrationError(f"{origin}: malformed calibration table ({exc})") from exc

    def save(self, path: Path) -> None:
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


# ----- false-alert arithmetic -----


def fpir(fmr: float, watchlist_size: float) -> float:
    """FPIR(N) = 1 - (1 - FMR)^N, computed without cancellation for tiny FMR."""
    if fmr >= 1.0:
        return 1.0
    return float(-math.expm1(watchlist_size * math.log1p(-fmr)))


def fmr_for_fpir(target_fpir: float, watchlist_size: float) -> float:
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
        return asdict(self)


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
    # the comparisons that count as independent (see the module docstring); never fewer than one
    effective = max(1.0, watchlist_size * min(max(table.effective_fraction, 0.0), 1.0))
    if target_fpir is not None:
        picked, extrapolated = table.threshold_for_fmr(fmr_for_fpir(target_fpir, effective))
    else:
        assert threshold is not None
        picked, extrapolated = float(threshold), False
    fmr, beyond = table.fmr_at(picked)
    return ThresholdChoice(
        threshold=picked,
        watchlist_size=watchlist_size,
        expected_fpir=fpir(fmr, effective),
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
    shipped_name = shipped_calibration(model_id)  # the model's registry entry names its shipped tables
    shipped = resources.files("openlfr") / "data" / (shipped_name or "-")
    if shipped_name is not None and shipped.is_file():
        return CalibrationTable.from_json(json.loads(shipped.read_text()), f"shipped {shipped.name}")
    raise CalibrationError(
        f"no calibration table for the embedding model {model_id}, so no threshold can be picked for a target "
        "false-alert rate: run 'openlfr calibrate --data LFW_DIR' with this model to make one"
    )


@lru_cache(maxsize=8)
def cached_calibration(model_id: str, explicit: Path | None, data_dir: Path | None) -> CalibrationTable | None:
    """``load_calibration``, read once per process (an alert's event and page ask for each alert); None where
    there is no table for the model."""
    try:
        return load_calibration(model_id, explicit=explicit, data_dir=data_dir)
    except CalibrationError:
        return None


def calibrated_rate(
    model_id: str, score: float, *, explicit: Path | None, data_dir: Path | None
) -> tuple[float, bool] | None:
    """(the calibrated FMR of ``score`` to three significant figures, what a person reads; whether it comes from
    the fitted tail beyond the measurements), as an alert's page and event give it; None without a table."""
    table = cached_calibration(model_id, explicit, data_dir)
    if table is None:
        return None
    rate, extrapolated = table.fmr_at(score)
    return float(f"{rate:.3g}"), extrapolated


def false_match_rate(model_id: str, score: float, *, explicit: Path | None, data_dir: Path | None) -> float | None:
    """The calibrated FMR of ``score`` (see ``calibrated_rate``); None without a calibration table for the model."""
    found = calibrated_rate(model_id, score, explicit=explicit, data_dir=data_dir)
    return None if found is None else found[0]


def now_iso() -> str:
    return utc_now().isoformat(timespec="seconds")
