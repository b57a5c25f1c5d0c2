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

from collections.abc import Callable

from openlfr.bench.identify_variants import (
    BenchData,
    Scored,
    Variant,
    VariantUnavailable,
    load_bench_data,
    templated,
)
from openlfr.errors import OpenLFRError
from openlfr.face_models import embedder_spec
from openlfr.vision.engine import model_id_for
from openlfr.vision.model_files import installed_model
from openlfr.watchlist.calibration import choose_threshold, load_calibration
from openlfr.watchlist.second_opinion import fused_scores, rescored_share

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
