"""The second opinion in ``openlfr bench identify``: SFace re-scores what MobileFaceNet screens in.

Both models embed the same LFW images (each has its own embedding cache); every probe is scored against every
gallery entry by each, in the same way (the same references or templates, the same looks, ``templated``), and the
pairs whose MobileFaceNet score reaches the screening score get the fused score (``openlfr.watchlist.second_opinion``).
The screening score is the threshold the product's MobileFaceNet table gives for a false-alert rate of 1 in 10
(``SCREEN_FPIR``) on the gallery searched: nine strangers in ten never cost a second embedding. The fused score is
calibrated by its own table, per probe (``holdout`` in the figures: each stranger's best fused score on one half
of the strangers, the threshold checked on the other half); the shipped MobileFaceNet table says nothing about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openlfr.bench.identify_common import identity_halves
from openlfr.bench.identify_variants import (
    BenchData,
    Scored,
    Variant,
    VariantUnavailable,
    build_template_protocol,
    load_bench_data,
    templated,
)
from openlfr.bench.lfw_cache import lfw_identities, resolve_lfw
from openlfr.errors import OpenLFRError
from openlfr.face_models import embedder_spec
from openlfr.settings import Settings
from openlfr.vision.engine import model_id_for
from openlfr.vision.model_files import installed_model
from openlfr.watchlist.calibration import (
    CalibrationError,
    choose_threshold,
    load_calibration,
    now_iso,
    user_table_path,
)
from openlfr.watchlist.second_opinion import (
    SECOND_WEIGHT,
    fused_model_id,
    fused_scores,
    per_probe_table,
    rescored_share,
)

SECOND_EMBEDDER = "sface"
SCREEN_FPIR = 1e-1


def second_data(data: BenchData) -> BenchData:
    """The same protocol embedded by SFace (from its own LFW cache; what is missing is embedded once)."""
    cached = data.extras.get(SECOND_EMBEDDER)
    if isinstance(cached, BenchData):
        return cached
    settings = data.settings.model_copy(update={"embedder": SECOND_EMBEDDER, "embedder_model": None})
    try:
        spec = embedder_spec(SECOND_EMBEDDER)
        installed_model(settings.cache_dir, spec.cache_file, spec.sha256, spec.name)
    except OpenLFRError as exc:
        raise VariantUnavailable(str(exc)) from exc
    second = load_bench_data(settings, data.images_dir, data.protocol, quiet=True)
    data.extras[SECOND_EMBEDDER] = second
    return second


def screening_score(data: BenchData, entries: int) -> float:
    """The first model's threshold for a 1-in-10 false-alert rate on ``entries``, from its shipped table."""
    settings = data.settings
    try:
        table = load_calibration(model_id_for(settings), explicit=settings.calibration_file, data_dir=settings.data_dir)
    except OpenLFRError as exc:
        raise VariantUnavailable(f"no calibration table to screen with: {exc}") from exc
    return choose_threshold(table, entries, target_fpir=SCREEN_FPIR).threshold


def with_second_opinion(key: str, person_level: bool, fuse_looks: bool) -> Callable[[BenchData], Scored]:
    scorer = templated(person_level, fuse_looks)

    def score(data: BenchData) -> Scored:
        first, second = scorer(data), scorer(second_data(data))
        screen = screening_score(data, len(first.entry_person))
        data.extras[f"second_opinion_cost:{key}"] = {
            "screening_score": round(screen, 4),
            "rescored_share_of_nonmated_probes": round(rescored_share(first.nonmated, screen), 4),
            "rescored_share_of_mated_probes": round(rescored_share(first.mated, screen), 4),
        }
        return Scored(
            fused_scores(first.mated, second.mated, screen),
            fused_scores(first.nonmated, second.nonmated, screen),
            first.entry_person,
            per_probe_calibration=True,
        )

    return score


SECOND_OPINION_VARIANTS = [
    Variant("second_opinion", "second opinion", with_second_opinion("second_opinion", False, False)),
    Variant("both_second_opinion", "both + second opinion", with_second_opinion("both_second_opinion", True, True)),
]


def second_opinion_cost(data: BenchData) -> dict[str, object]:
    """What the second opinion cost each of its columns: the share of probes SFace had to embed."""
    prefix = "second_opinion_cost:"
    return {key[len(prefix) :]: value for key, value in data.extras.items() if key.startswith(prefix)}


def _fused_best(settings: Settings, images_dir: Path, offset: int, workers: int, quiet: bool) -> FusedStrangers:
    """Each stranger's best fused score over one gallery of ``bench identify``'s protocol (roles by ``offset``)."""
    protocol = build_template_protocol(lfw_identities(images_dir), 1, 1, enrolled_offset=offset)
    first_data = load_bench_data(settings, images_dir, protocol, workers=workers, quiet=quiet)
    try:
        second = second_data(first_data)
        scorer = templated(settings.search_person_templates, False)
        first_scores, second_scores = scorer(first_data), scorer(second)
        screen = screening_score(first_data, len(first_scores.entry_person))
    except VariantUnavailable as exc:
        raise OpenLFRError(str(exc)) from exc
    best = fused_scores(first_scores.nonmated, second_scores.nonmated, screen).max(axis=1)
    model_id = fused_model_id(first_data.model_id, second.model_id)
    names = [p.identity for p in protocol.nonmated]
    return FusedStrangers(best, names, len(first_scores.entry_person), screen, model_id)


@dataclass(frozen=True)
class FusedStrangers:
    best: np.ndarray
    identities: list[str]
    entries: int
    screen: float
    model_id: str


def run_calibrate_second_opinion(
    settings: Settings, data: Path, out: Path | None, *, workers: int = 2, quiet: bool = False
) -> dict[str, object]:
    """``openlfr calibrate --second-opinion``: the fused score's table, per stranger, on ``bench identify``'s
    protocol (one photo per listed person, one look per probe; each stranger's best fused score over the
    gallery, searched as the settings search it), taken twice with the roles swapped (the people enrolled in one
    are the strangers of the other), and written where the live path looks for it. The screening score is the
    one of the gallery the table is made for (N0 = its entries); the live path screens at that same score.
    The summary checks the table on a hold-out: made from half of the strangers (by identity), its thresholds
    for FPIR 1e-2 and 1e-3 at gallery sizes it resolves, the FPIR observed on the other half (projected from N0)."""
    start = time.perf_counter()
    if settings.second_opinion not in ("off", SECOND_EMBEDDER):
        raise OpenLFRError(f"the second opinion's table is made for {SECOND_EMBEDDER}, not {settings.second_opinion}")
    images_dir = resolve_lfw(data)
    runs = [_fused_best(settings, images_dir, offset, workers, quiet) for offset in (0, 1)]
    entries, screen, model_id = runs[0].entries, runs[0].screen, runs[0].model_id
    best = np.concatenate([run.best for run in runs])
    source: dict[str, object] = {
        "dataset": "LFW",
        "protocol": "bench identify (one photo per listed person, one look per probe), roles swapped once",
        "screening_score": round(screen, 4),
        "second_weight": SECOND_WEIGHT,
        "created_at": now_iso(),
    }
    table = per_probe_table(best, entries, model_id, source)
    target = out if out is not None else user_table_path(settings.data_dir, model_id)
    table.save(target)
    # hold-out: alternate identities (of each run's strangers) make the table, the others check it
    first = np.concatenate([identity_halves(run.identities, None) for run in runs])
    half = per_probe_table(best[first], entries, model_id, source)
    checks: dict[str, object] = {}
    for size in (1, 10, 100, entries):
        for fpir_target in (1e-2, 1e-3):
            key = f"N={size} FPIR {fpir_target:.0e}"
            try:
                threshold = choose_threshold(half, size, target_fpir=fpir_target).threshold
            except CalibrationError as exc:
                checks[key] = {"refused": str(exc)}
                continue
            at_entries = float(np.mean(best[~first] >= threshold))
            observed = 1.0 - (1.0 - at_entries) ** (size / entries)
            checks[key] = {
                "threshold": round(threshold, 4),
                "full_table_threshold": round(choose_threshold(table, size, target_fpir=fpir_target).threshold, 4),
                "observed_fpir": float(f"{observed:.3g}"),
                "observed_over_target": round(observed / fpir_target, 2),
            }
    return {
        "written": str(target),
        "model_id": model_id,
        "strangers": int(best.size),
        "gallery_entries": entries,
        "screening_score": round(screen, 4),
        "resolved_fpir_at_entries": round(100 / best.size, 5),
        "holdout": checks,
        "seconds": round(time.perf_counter() - start, 1),
    }
