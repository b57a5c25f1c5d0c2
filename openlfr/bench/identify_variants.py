"""``openlfr bench identify --enrol-images N --probe-images M``: several photos a listed person, several looks a
probe, and the ways of scoring them side by side.

Protocol (issue 22). The people are today's (``openlfr.bench.identify``): identities with 2+ images sorted by
name, those at even positions enrolled, the others strangers. With N and M:

* an enrolled person's **references** are their first ``min(N, images - 1)`` images (at least one is left to
  probe with), embedded with the stills profile;
* their **mated probes** are made from the images after the references, up to ``5 M`` of them, taken in order
  M at a time: up to 5 probes of up to M looks each (a person with few images gives fewer, shorter probes —
  as a track may give fewer looks). No image is both a reference and a probe;
* the **non-mated probes** are up to ``5 M`` images of each stranger with 2+ images, M at a time, and the one
  image of each stranger with one image (a one-look probe); strangers filed under another name of an enrolled
  person (``LFW_ALIASES``) are left out, as today.

With N = M = 1 this is today's protocol exactly: the same references, the same 1,992 mated and 6,688
non-mated probes, so the figures stay comparable. Probes are embedded with the live profile.

A **variant** is one way of scoring (a :class:`Variant` in ``VARIANTS``; add one to add a column): what the
gallery holds (each reference, or one template per person) and how a probe's looks meet it (each look alone,
the best look winning, or the looks fused into one template). Each variant gives a probe one score per
gallery entry; from those come rank-1, FNIR at FPIR 1e-1/1e-2/1e-3 (thresholds read off all non-mated
probes) and two checks of the calibrated threshold (target FPIR 1e-2 and 1e-3, N = the entries searched):

* ``holdout``: a table made from one half of the strangers' comparisons (split by identity, alternately by
  name), the threshold picked from it as a deployment would, FPIR observed on the other half;
* ``shipped``: the threshold picked from the product's own table (single references x single looks, all of
  LFW), FPIR observed on all non-mated probes — whether the shipped table stays true for what is searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlfr.bench.identify_common import (
    FPIR_POINTS,
    LFW_ALIASES,
    fnir,
    identity_halves,
    observed_fpir,
    threshold_at_fpir,
)
from openlfr.bench.lfw_cache import cached_lfw_embeddings
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.watchlist.calibration import CalibrationError, CalibrationTable, choose_threshold
from openlfr.watchlist.calibration_build import ImpostorAccumulator
from openlfr.watchlist.score import cosine_from_score, match_score
from openlfr.watchlist.templates import person_templates, template

PROBES_PER_IDENTITY = 5
CHECK_TARGETS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Probe:
    identity: str
    keys: tuple[str, ...]  # its looks: one image each


@dataclass(frozen=True)
class TemplateProtocol:
    enrol_images: int
    probe_images: int
    enrolled: list[str]
    references: list[tuple[str, ...]]  # per enrolled person, in the order of ``enrolled``
    mated: list[Probe]
    nonmated: list[Probe]  # aliases of enrolled people already left out
    excluded_aliases: int = 0  # non-mated probes left out as another name of an enrolled person

    @property
    def reference_keys(self) -> list[str]:
        return [key for keys in self.references for key in keys]

    @property
    def probe_keys(self) -> list[str]:
        return [key for probe in self.mated + self.nonmated for key in probe.keys]


def _groups(keys: list[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(keys[i : i + size]) for i in range(0, len(keys), size)]


def build_template_protocol(
    identities: dict[str, list[str]],
    enrol_images: int = 1,
    probe_images: int = 1,
    aliases: dict[str, str] | None = None,
    enrolled_offset: int = 0,
) -> TemplateProtocol:
    """The protocol of the module docstring; ``aliases`` defaults to ``LFW_ALIASES``. ``enrolled_offset`` 1 swaps
    the roles (the people at odd positions enrolled): a second, disjoint gallery from the same images."""
    if enrol_images < 1 or probe_images < 1:
        raise OpenLFRError("--enrol-images and --probe-images count photos: at least 1 each")
    names = sorted(identities)
    several = [n for n in names if len(identities[n]) >= 2]
    single = [n for n in names if len(identities[n]) == 1]
    enrolled, others = several[enrolled_offset::2], several[1 - enrolled_offset :: 2]
    if not enrolled or (not others and not single):
        raise OpenLFRError("too few identities for the identification protocol (need 2+ images for some)")
    references, mated = [], []
    for name in enrolled:
        keys = identities[name]
        used = min(enrol_images, len(keys) - 1)
        references.append(tuple(keys[:used]))
        rest = keys[used : used + PROBES_PER_IDENTITY * probe_images]
        mated += [Probe(name, group) for group in _groups(rest, probe_images)]
    strangers = [
        Probe(name, group)
        for name in others
        for group in _groups(identities[name][: PROBES_PER_IDENTITY * probe_images], probe_images)
    ]
    strangers += [Probe(name, (identities[name][0],)) for name in single]
    pairs = LFW_ALIASES if aliases is None else aliases
    both_ways = {**pairs, **{b: a for a, b in pairs.items()}}
    listed = set(enrolled)
    kept = [p for p in strangers if both_ways.get(p.identity) not in listed]
    return TemplateProtocol(
        enrol_images, probe_images, enrolled, references, mated, kept, excluded_aliases=len(strangers) - len(kept)
    )


@dataclass
class BenchData:
    """What a variant scores from: the protocol and every image's embedding (references stills, probes live)."""

    settings: Settings
    images_dir: Path
    model_id: str
    protocol: TemplateProtocol
    reference_vectors: dict[str, np.ndarray]
    probe_vectors: dict[str, np.ndarray]
    extras: dict[str, object] = field(default_factory=dict)  # for variants that bring their own embeddings


@dataclass(frozen=True)
class Scored:
    """Every probe's match score with every gallery entry (what is searched: references or templates)."""

    mated: np.ndarray  # (mated probes, entries)
    nonmated: np.ndarray  # (non-mated probes, entries)
    entry_person: list[str]  # whose each entry is; len = N of the false-alert arithmetic
    # A score of its own (the second opinion's fused score), calibrated per probe: the shipped table says nothing
    # about it, and its hold-out threshold is read off one half's best scores at this gallery size (the pair
    # tables' independence projection does not hold for it: ``openlfr.watchlist.second_opinion``).
    per_probe_calibration: bool = False


class VariantUnavailable(OpenLFRError):
    """A variant cannot run here (say, its model is not installed); its column says why."""


@dataclass(frozen=True)
class Variant:
    key: str  # the column's name in the JSON
    label: str  # the column's heading in the printed table
    score: Callable[[BenchData], Scored]


def load_bench_data(
    settings: Settings, images_dir: Path, protocol: TemplateProtocol, *, workers: int = 2, quiet: bool = False
) -> BenchData:
    """The protocol's embeddings, from the LFW cache (what is missing is embedded once and cached)."""
    references = cached_lfw_embeddings(
        settings, images_dir, protocol.reference_keys, workers=workers, quiet=quiet, profile="stills"
    )
    probes = cached_lfw_embeddings(settings, images_dir, protocol.probe_keys, workers=workers, quiet=quiet)
    return BenchData(
        settings,
        images_dir,
        probes.model_id,
        protocol,
        dict(zip(references.keys, references.embeddings, strict=True)),
        dict(zip(probes.keys, probes.embeddings, strict=True)),
    )


def protocol_summary(protocol: TemplateProtocol) -> dict[str, object]:
    def looks(probes: list[Probe]) -> dict[str, int]:
        counts = np.bincount([len(p.keys) for p in probes], minlength=protocol.probe_images + 1)[1:]
        return {str(n): int(c) for n, c in enumerate(counts, start=1)}

    return {
        "enrol_images": protocol.enrol_images,
        "probe_images": protocol.probe_images,
        "n_enrolled": len(protocol.enrolled),
        "references": len(protocol.reference_keys),
        "n_mated": len(protocol.mated),
        "n_nonmated": len(protocol.nonmated),
        "excluded_alias_probes": protocol.excluded_aliases,
        "mated_probes_by_looks": looks(protocol.mated),
        "nonmated_probes_by_looks": looks(protocol.nonmated),
    }


def gallery_entries(data: BenchData, templates: bool) -> tuple[np.ndarray, list[str]]:
    """Each reference, or one equal-weight template per person (LFW gives no quality to weigh photos by)."""
    protocol = data.protocol
    vectors = np.stack([data.reference_vectors[k] for k in protocol.reference_keys]).astype(np.float32)
    owners = [name for name, keys in zip(protocol.enrolled, protocol.references, strict=True) for _ in keys]
    if not templates:
        return vectors, owners
    combined, people, _ = person_templates(vectors, owners)
    return combined, [str(p) for p in people]


def probe_scores(data: BenchData, probes: list[Probe], entries: np.ndarray, fuse: bool) -> np.ndarray:
    """(probes, entries) match scores. Fused: the looks' equal-weight template meets each entry once. Not fused:
    each look meets each entry and the best look counts (what a track's best sample would say)."""
    if fuse:
        looks = np.stack([template(np.stack([data.probe_vectors[k] for k in p.keys])) for p in probes])
        return match_score(looks @ entries.T, data.model_id).astype(np.float32)
    flat = np.stack([data.probe_vectors[k] for p in probes for k in p.keys]).astype(np.float32)
    starts = np.cumsum([0] + [len(p.keys) for p in probes[:-1]])
    per_look = flat @ entries.T
    return match_score(np.maximum.reduceat(per_look, starts, axis=0), data.model_id).astype(np.float32)


def templated(person_level: bool, fuse_looks: bool) -> Callable[[BenchData], Scored]:
    def score(data: BenchData) -> Scored:
        entries, owners = gallery_entries(data, person_level)
        mated = probe_scores(data, data.protocol.mated, entries, fuse_looks)
        nonmated = probe_scores(data, data.protocol.nonmated, entries, fuse_looks)
        return Scored(mated, nonmated, owners)

    return score


VARIANTS: list[Variant] = [
    Variant("single", "single refs, single looks", templated(False, False)),
    Variant("person_templates", "person templates", templated(True, False)),
    Variant("track_fusion", "track fusion", templated(False, True)),
    Variant("both", "templates + fusion", templated(True, True)),
]


# ----- figures -----


def _best(scores: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's best score and the person it names."""
    top = np.argmax(scores, axis=1)
    return scores[np.arange(len(scores)), top].astype(np.float64), owners[top]


def holdout_table(nonmated: np.ndarray, model_id: str) -> CalibrationTable:
    accumulator = ImpostorAccumulator(model_id)
    for start in range(0, len(nonmated), 1024):
        accumulator.add(cosine_from_score(nonmated[start : start + 1024], model_id))
    return accumulator.table(source={"what": "hold-out half of the non-mated probes x gallery entries"})


def per_probe_holdout(
    nonmated_best: np.ndarray, first: np.ndarray, mated_best: np.ndarray, correct: np.ndarray
) -> dict[str, object]:
    """A score calibrated per probe: the threshold read off the first half's best scores (the empirical table,
    no fitted tail), the false alerts counted on the other half."""
    checks: dict[str, object] = {}
    for target in CHECK_TARGETS:
        threshold = threshold_at_fpir(nonmated_best[first], target)
        seen = observed_fpir(nonmated_best[~first], threshold)
        checks[f"{target:.0e}".replace("e-0", "e-")] = {
            "threshold": round(threshold, 4),
            "observed_fpir": round(seen, 6),
            "observed_over_target": round(seen / target, 3),
            "fnir": round(fnir(mated_best, correct, threshold), 5),
        }
    return checks


def variant_figures(data: BenchData, scored: Scored, shipped: CalibrationTable | None) -> dict[str, object]:
    owners = np.asarray(scored.entry_person)
    mated_best, mated_named = _best(scored.mated, owners)
    correct = mated_named == np.array([p.identity for p in data.protocol.mated])
    nonmated_best, _ = _best(scored.nonmated, owners)
    size = len(scored.entry_person)
    figures: dict[str, object] = {"entries": size, "rank1": round(float(np.mean(correct)), 5)}
    for target in FPIR_POINTS:
        t = threshold_at_fpir(nonmated_best, target)
        figures[f"fnir_at_fpir_{target:.0e}".replace("e-0", "e-")] = round(fnir(mated_best, correct, t), 5)
    first = identity_halves([p.identity for p in data.protocol.nonmated], None)
    if scored.per_probe_calibration:
        figures["holdout"] = per_probe_holdout(nonmated_best, first, mated_best, correct)
        return figures
    table = holdout_table(scored.nonmated[first], data.model_id)
    for name, source, observed_on in (("holdout", table, nonmated_best[~first]), ("shipped", shipped, nonmated_best)):
        if source is None:
            continue
        checks: dict[str, object] = {}
        for target in CHECK_TARGETS:
            try:
                choice = choose_threshold(source, size, target_fpir=target)
            except CalibrationError as exc:  # a small subset's half may not reach the target
                checks[f"{target:.0e}".replace("e-0", "e-")] = {"error": str(exc)}
                continue
            seen = observed_fpir(observed_on, choice.threshold)
            checks[f"{target:.0e}".replace("e-0", "e-")] = {
                "threshold": round(choice.threshold, 4),
                "observed_fpir": round(seen, 6),
                "observed_over_target": round(seen / target, 3),
                "fnir": round(fnir(mated_best, correct, choice.threshold), 5),
            }
        figures[name] = checks
    return figures


def run_variants(
    data: BenchData, shipped: CalibrationTable | None, variants: list[Variant] | None = None
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for variant in variants if variants is not None else VARIANTS:
        try:
            scored = variant.score(data)
        except VariantUnavailable as exc:
            out[variant.key] = {"label": variant.label, "unavailable": str(exc)}
            continue
        out[variant.key] = {"label": variant.label, **variant_figures(data, scored, shipped)}
    return out


ROWS = (
    ("entries searched (N)", ("entries",)),
    ("rank-1", ("rank1",)),
    ("FNIR @ FPIR 1e-1", ("fnir_at_fpir_1e-1",)),
    ("FNIR @ FPIR 1e-2", ("fnir_at_fpir_1e-2",)),
    ("FNIR @ FPIR 1e-3", ("fnir_at_fpir_1e-3",)),
    ("hold-out 1e-2: observed FPIR", ("holdout", "1e-2", "observed_fpir")),
    ("hold-out 1e-3: observed FPIR", ("holdout", "1e-3", "observed_fpir")),
    ("hold-out 1e-3: FNIR", ("holdout", "1e-3", "fnir")),
    ("shipped table 1e-2: observed FPIR", ("shipped", "1e-2", "observed_fpir")),
    ("shipped table 1e-3: observed FPIR", ("shipped", "1e-3", "observed_fpir")),
    ("shipped table 1e-3: FNIR", ("shipped", "1e-3", "fnir")),
)


def format_table(variants: dict[str, dict[str, object]]) -> str:
    """The variants side by side, one row per figure (plain text, for the terminal and the README)."""
    columns = list(variants.values())
    headings = [str(c["label"]) for c in columns]
    width = max(12, *(len(h) for h in headings))
    lines = ["".ljust(34) + "".join(h.rjust(width + 2) for h in headings)]
    for title, path in ROWS:
        cells = []
        for column in columns:
            value: object = column
            for part in path:
                value = value.get(part, "") if isinstance(value, dict) else ""
            if "unavailable" in column:
                value = "n/a"
            cells.append((f"{value:.4g}" if isinstance(value, float) else str(value)).rjust(width + 2))
        lines.append(title.ljust(34) + "".join(cells))
    for column in columns:
        if "unavailable" in column:
            lines.append(f"{column['label']}: {column['unavailable']}")
    return "\n".join(lines)
