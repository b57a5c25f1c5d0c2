"""The second opinion on the live path: which watchlists get one, and at which threshold.

A watchlist searched with a second opinion (``OPENLFR_SECOND_OPINION=sface``) carries the second model's
references beside the first's (a ``SecondGallery``), the screening score (the first model's threshold for one
false alert in ten faces on the table's LFW gallery of 840, 0.64: the same for every gallery, so a fused score
means one thing) and a threshold on the fused score, from the fused score's own table (``openlfr calibrate
--second-opinion``; shipped in openlfr/data). A gallery larger than the table's screens in more strangers (about
1 - 0.9^(N / 840) of them: a list of 840 re-scores one stranger in ten, of 8,400 two in three).

It is on only where it pays, and falls back to the first model alone, saying why in the watchlist's note:
where a listed person has no reference of the second model (enrolled before it was on: ``openlfr watchlist
reembed`` adds them); where no fused table is found; where the target false-alert rate at this gallery's size
lies beyond what the fused table measured (LFW's 13,423 strangers resolve FPIR 1e-3 up to about 100 entries, 1e-2
up to about 1,000); and where the fused threshold lies at or below the screen's share of the fused score (small
lists at lenient targets: FPIR 1e-3 below about 10 entries), where the second model could change no decision.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np

from openlfr.settings import Settings
from openlfr.stream.watchlists import LiveWatchlist
from openlfr.watchlist.calibration import CalibrationError, CalibrationTable, choose_threshold, load_calibration
from openlfr.watchlist.second_opinion import SECOND_WEIGHT, SecondGallery, fused_model_id


def fused_table(settings: Settings, first_model_id: str, second_model_id: str) -> CalibrationTable:
    """The fused score's table: the user's `openlfr calibrate --second-opinion` output, else the shipped one."""
    return load_calibration(fused_model_id(first_model_id, second_model_id), data_dir=settings.data_dir)


def screening_score(table: CalibrationTable) -> float:
    """The score the table's fused scores were screened at: the fused score is one function of a pair only if
    every gallery screens at the same first score, so the live path takes it from the table, whatever its size."""
    screen = table.source.get("screening_score")
    if not isinstance(screen, int | float):
        raise CalibrationError(f"{table.model_id}: the fused score's table does not say its screening score")
    return float(screen)


def fused_threshold(
    settings: Settings,
    first_model_id: str,
    second_model_id: str,
    entries: int,
    threshold: float | None,
    target_fpir: float | None,
) -> tuple[float, str]:
    """The fused score's threshold and how it was chosen; ``CalibrationError`` where its table has none (no
    table, or a target beyond what it measured: the first model alone is then the honest choice)."""
    if threshold is not None:  # a threshold given by a person is a first-model score, as it always was
        raise CalibrationError(f"a given threshold ({threshold}) is a score of the first model alone")
    table = fused_table(settings, first_model_id, second_model_id)
    choice = choose_threshold(table, entries, target_fpir=target_fpir)
    if choice.extrapolated:
        raise CalibrationError(f"the fused score's table does not measure {choice.describe()}")
    screen = screening_score(table)
    if choice.threshold <= (1.0 - SECOND_WEIGHT) * screen:
        # Every pair screened in then reaches the threshold whatever the second model says, and the rest alert
        # on the first score alone: the first model decides, the second would only cost.
        raise CalibrationError(
            f"at {entries} entries and this target the fused threshold ({choice.threshold:.4f}) lies below the "
            f"screen's share ({(1.0 - SECOND_WEIGHT) * screen:.4f}): the second model could change no decision"
        )
    note = f"fused score ({second_model_id} second opinion, screening score {screen:.4f}): "
    return choice.threshold, note + choice.describe()


def lacking(people: Sequence[Hashable], second_people: Sequence[Hashable]) -> list[Hashable]:
    """The listed people the second model has no reference of."""
    have = set(second_people)
    return sorted({p for p in people if p not in have}, key=str)


def fallback_note(watchlist: str, missing: list[Hashable], second_model_id: str) -> str:
    shown = ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return (
        f"second opinion off for watchlist {watchlist!r}: {len(missing)} listed people have no {second_model_id} "
        f"embeddings ({shown}); searched by the first model alone (`openlfr watchlist reembed {watchlist}` adds them)"
    )


def with_second_opinion(
    settings: Settings,
    watchlist: LiveWatchlist,
    embeddings: np.ndarray,
    person_ids: Sequence[Hashable],
    second_model_id: str,
    *,
    threshold: float | None,
    target_fpir: float | None,
) -> LiveWatchlist:
    """``watchlist`` with its second opinion and the fused threshold, or as it is with a note saying why not."""
    missing = lacking(watchlist.gallery.person_ids, person_ids)
    if missing:
        return replace(watchlist, note=f"{watchlist.note}; {fallback_note(watchlist.name, missing, second_model_id)}")
    try:
        chosen, note = fused_threshold(
            settings, watchlist.model_id, second_model_id, watchlist.size, threshold, target_fpir
        )
        screen = screening_score(fused_table(settings, watchlist.model_id, second_model_id))
    except CalibrationError as exc:
        return replace(watchlist, note=f"{watchlist.note}; second opinion off: {exc}")
    second = SecondGallery(
        embeddings, person_ids, second_model_id, screen, person_templates=settings.search_person_templates
    )
    return replace(watchlist, second=second, threshold=chosen, note=note)


def frozen_second_opinion(
    settings: Settings, watchlist: LiveWatchlist, embeddings: np.ndarray, person_ids: Sequence[Hashable], model_id: str
) -> LiveWatchlist:
    """A deployment's snapshot frozen with the second model's references: its threshold, chosen at authorisation,
    is the fused score's, so the second opinion runs whatever the setting says now (what was approved runs)."""
    screen = screening_score(fused_table(settings, watchlist.model_id, model_id))
    second = SecondGallery(embeddings, person_ids, model_id, screen, person_templates=settings.search_person_templates)
    note = f"{watchlist.note}; {model_id} second opinion, screening score {screen:.4f}"
    return replace(watchlist, second=second, note=note)
