"""The equitability report: how the system's errors fall on different groups of people (sex, age band,
ethnicity...) on a labelled test set, as the College of Policing and NPL expect a force to know.

Protocol, as ``bench identify``: identities with 2+ images sorted by name; those at even positions are enrolled
with their first image (the stills profile, as enrolment does); mated probes are up to 5 further images of
each enrolled identity; non-mated probes are up to 5 images of every other identity (live profile, as a
camera). All enrolled identities make one watchlist. Per group, FNIR(t) is the share of its mated probes not
identified (wrong person at rank 1 or a score under t) and FPIR(t) the share of its non-mated probes whose
best score reaches t. The statistics (intervals, the test of equal rates over a grid of thresholds) are in
``openlfr.bench.equitability_stats``; this module reads the labels, embeds and writes the report.

Labels CSV: a header naming ``image`` (a path relative to the data folder) and ``identity``; every other
column is a group column. A group is a property of the person: one value per identity and column; an empty
cell leaves that person out of that column.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from openlfr.bench.equitability_design import PermutationDesign
from openlfr.bench.equitability_stats import (
    CONFIDENCE,
    clustered_rate,
    equal_rates_test,
    fnir_errors,
    fpir_errors,
    per_person,
    threshold_grid,
)
from openlfr.bench.identify import Protocol, build_protocol, det_points
from openlfr.bench.lfw_cache import cached_lfw_embeddings
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.vision.engine import model_id_for
from openlfr.watchlist.calibration import CalibrationError, choose_threshold, load_calibration
from openlfr.watchlist.search import Gallery

MIN_IDENTITIES = 10  # per group, enrolled and not enrolled: fewer people than this say nothing about a group
INTERVAL = (
    f"{CONFIDENCE:.0%} Clopper-Pearson on the effective number of probes (Korn-Graubard: probes clustered by person)"
)
TEST = (
    "chi-square of groups x errors at each threshold; p-values from permuting groups between people; "
    "Westfall-Young minP adjustment over the threshold grid (family-wise error at alpha per column and rate)"
)


class LabelsError(OpenLFRError):
    """The labels file is missing, malformed or does not fit the images."""


@dataclass(frozen=True)
class LabelledSet:
    images_dir: Path
    identities: dict[str, list[str]]  # identity -> its image keys (relative path without .jpg), sorted
    columns: list[str]  # group columns, in the file's order
    groups: dict[str, dict[str, str]]  # column -> identity -> group (identities with an empty cell left out)


def read_labels(labels: Path, images_dir: Path) -> LabelledSet:
    """The labels CSV checked against the images folder; one-line errors for anything wrong."""
    if not images_dir.is_dir():
        raise LabelsError(f"{images_dir}: not a folder")
    try:
        text = labels.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelsError(f"cannot read {labels}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise LabelsError(f"{labels}: not a text (UTF-8) CSV file") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise LabelsError(f"{labels}: not a CSV file ({exc})") from None
    if not rows:
        raise LabelsError(f"{labels}: empty; expected a header such as image,identity,sex")
    header = [name.strip() for name in rows[0]]
    lowered = [name.lower() for name in header]
    if "image" not in lowered or "identity" not in lowered:
        raise LabelsError(
            f"{labels}: the first line must name the columns image and identity and at least one group column "
            f"(e.g. image,identity,sex); found {','.join(header)}"
        )
    image_at, identity_at = lowered.index("image"), lowered.index("identity")
    columns = [(i, name) for i, name in enumerate(header) if i not in (image_at, identity_at)]
    if not columns:
        raise LabelsError(f"{labels}: no group column besides image and identity (e.g. sex, age_band, ethnicity)")
    if any(not name for _, name in columns) or len({n for _, n in columns}) != len(columns):
        raise LabelsError(f"{labels}: every group column needs a name of its own; found {','.join(header)}")

    identities: dict[str, list[str]] = {}
    groups: dict[str, dict[str, str]] = {name: {} for _, name in columns}
    first_seen: dict[tuple[str, str], int] = {}
    image_line: dict[str, int] = {}
    missing: list[tuple[int, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LabelsError(f"{labels} line {line}: {len(header)} fields expected, found {len(row)}")
        image, identity = row[image_at].strip(), row[identity_at].strip()
        if not image or not identity:
            raise LabelsError(f"{labels} line {line}: the image and identity fields must not be empty")
        key = _image_key(labels, line, image)
        if key in image_line:
            raise LabelsError(f"{labels} line {line}: {image} is listed twice (first on line {image_line[key]})")
        image_line[key] = line
        if not (images_dir / f"{key}.jpg").is_file():
            missing.append((line, image))
        identities.setdefault(identity, []).append(key)
        for index, column in columns:
            value = row[index].strip()
            if not value:
                continue
            known = groups[column].setdefault(identity, value)
            if known != value:
                raise LabelsError(
                    f"{labels} line {line}: {identity} has {column} '{value}' here but '{known}' on line "
                    f"{first_seen[(column, identity)]} (a group is a property of the person: one value each)"
                )
            first_seen.setdefault((column, identity), line)
    if missing:
        line, image = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise LabelsError(f"{labels} line {line}: image {image} not found under {images_dir}{more}")
    if not identities:
        raise LabelsError(f"{labels}: no images listed")
    return LabelledSet(
        images_dir=images_dir,
        identities={name: sorted(keys) for name, keys in identities.items()},
        columns=[name for _, name in columns],
        groups=groups,
    )


def _image_key(labels: Path, line: int, image: str) -> str:
    path = PurePosixPath(image.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise LabelsError(f"{labels} line {line}: {image}: image paths are relative to the data folder")
    if path.suffix != ".jpg":
        raise LabelsError(f"{labels} line {line}: {image}: only .jpg images are read (the embedding cache's format)")
    return str(path.with_suffix(""))


@dataclass(frozen=True)
class Outcomes:
    """Every probe's result against the watchlist."""

    protocol: Protocol
    mated_best: np.ndarray
    mated_correct: np.ndarray
    nonmated_best: np.ndarray
    model_id: str
    gallery_size: int
    newly_embedded: int
    undetected: int


def search_outcomes(
    settings: Settings, labelled: LabelledSet, protocol: Protocol, *, workers: int, quiet: bool
) -> Outcomes:
    probe_keys = protocol.mated_keys + protocol.nonmated_keys
    probes = cached_lfw_embeddings(settings, labelled.images_dir, probe_keys, workers=workers, quiet=quiet)
    references = cached_lfw_embeddings(
        settings, labelled.images_dir, protocol.gallery_keys, workers=workers, quiet=quiet, profile="stills"
    )
    gallery = Gallery.from_arrays(references.embeddings, protocol.enrolled, protocol.gallery_keys, probes.model_id)
    mated = len(protocol.mated_keys)
    hits = gallery.search(probes.embeddings[:mated], k=1, exact=True)
    return Outcomes(
        protocol=protocol,
        mated_best=np.array([c[0].score for c in hits]),
        mated_correct=np.array(
            [c[0].person_id == name for c, name in zip(hits, protocol.mated_identity, strict=True)], bool
        ),
        nonmated_best=gallery.best_scores(probes.embeddings[mated:], exact=True),
        model_id=probes.model_id,
        gallery_size=gallery.size,
        newly_embedded=probes.newly_embedded + references.newly_embedded,
        undetected=probes.hows.count("centre") + references.hows.count("centre"),
    )


def default_threshold(settings: Settings, model_id: str, gallery_size: int) -> dict[str, object]:
    """The threshold a deployment of this watchlist would run at without one given (``scan_target_fpir``)."""
    try:
        table = load_calibration(model_id, explicit=settings.calibration_file, data_dir=settings.data_dir)
    except CalibrationError as exc:
        raise CalibrationError(f"{exc} (or give the operating threshold with --threshold)") from exc
    choice = choose_threshold(table, gallery_size, target_fpir=settings.scan_target_fpir)
    return {"threshold": round(choice.threshold, 4), "how": f"deployment default: {choice.describe()}"}


def check_groups(labelled: LabelledSet, protocol: Protocol, min_identities: int) -> None:
    """Every column has 2+ groups, each with enough enrolled and non-enrolled people (before any embedding)."""
    for column in labelled.columns:
        groups = labelled.groups[column]
        enrolled = [groups[n] for n in protocol.enrolled if n in groups]
        others = [groups[n] for n in sorted(set(protocol.nonmated_identity)) if n in groups]
        names = sorted(set(enrolled) | set(others))
        if len(names) < 2:
            raise LabelsError(f"column {column}: one group only ({', '.join(names) or 'none'}); nothing to compare")
        for name in names:
            mated, nonmated = enrolled.count(name), others.count(name)
            if min(mated, nonmated) < min_identities:
                raise LabelsError(
                    f"column {column}, group {name}: {mated} enrolled and {nonmated} non-enrolled identities; each "
                    f"group needs at least {min_identities} of each (merge groups or lower --min-identities)"
                )


def _column_report(
    outcomes: Outcomes,
    groups: dict[str, str],
    operating: list[float],
    design: PermutationDesign,
) -> dict[str, object]:
    protocol = outcomes.protocol
    mated_in = np.array([n in groups for n in protocol.mated_identity], bool)
    nonmated_in = np.array([n in groups for n in protocol.nonmated_identity], bool)
    mated_person = np.array(protocol.mated_identity)[mated_in]
    nonmated_person = np.array(protocol.nonmated_identity)[nonmated_in]
    names = sorted(set(groups[str(p)] for p in np.concatenate([mated_person, nonmated_person])))
    mated_best, mated_correct = outcomes.mated_best[mated_in], outcomes.mated_correct[mated_in]
    nonmated_best = outcomes.nonmated_best[nonmated_in]
    grid = threshold_grid(np.concatenate([mated_best, nonmated_best]), design.grid_step, tuple(operating))
    fnir_grid, fpir_grid = fnir_errors(mated_best, mated_correct, grid), fpir_errors(nonmated_best, grid)
    at_operating = [int(np.argmin(np.abs(grid - t))) for t in operating]

    report_groups: dict[str, object] = {}
    for name in names:
        in_mated = np.array([groups[str(p)] == name for p in mated_person], bool)
        in_nonmated = np.array([groups[str(p)] == name for p in nonmated_person], bool)
        _, fn_counts, fn_probes = per_person(fnir_grid[in_mated][:, at_operating], mated_person[in_mated])
        _, fp_counts, fp_probes = per_person(fpir_grid[in_nonmated][:, at_operating], nonmated_person[in_nonmated])
        report_groups[name] = {
            "enrolled_identities": len(set(mated_person[in_mated])),
            "nonmated_identities": len(set(nonmated_person[in_nonmated])),
            "mated_probes": int(in_mated.sum()),
            "nonmated_probes": int(in_nonmated.sum()),
            "rank1_identification_rate": round(float(np.mean(mated_correct[in_mated])), 4),
            "at_threshold": [
                {
                    "threshold": t,
                    "fnir": clustered_rate(fn_counts[:, i], fn_probes).as_dict(),
                    "fpir": clustered_rate(fp_counts[:, i], fp_probes).as_dict(),
                }
                for i, t in enumerate(operating)
            ],
        }
    group_of = {str(p): groups[str(p)] for p in np.concatenate([mated_person, nonmated_person])}
    tests = {}
    for rate, errors, person in (("fnir", fnir_grid, mated_person), ("fpir", fpir_grid, nonmated_person)):
        test = equal_rates_test(
            errors, person, group_of, grid, permutations=design.permutations, alpha=design.alpha, seed=design.seed
        )
        tests[rate] = {**test.as_dict(), "at_operating": [test.at(t) for t in operating]}
    return {"groups": report_groups, "fnir_difference": tests["fnir"], "fpir_difference": tests["fpir"]}


def run_equitability(
    settings: Settings,
    data: Path,
    labels: Path,
    *,
    thresholds: list[float] | None = None,
    design: PermutationDesign = PermutationDesign(),
    min_identities: int = MIN_IDENTITIES,
    workers: int = 2,
    quiet: bool = False,
    plot: Path | None = None,
) -> dict[str, object]:
    for t in thresholds or []:
        if not 0.0 <= t <= 1.0:
            raise OpenLFRError(f"a match-score threshold lies in [0, 1], got {t}")
    labelled = read_labels(labels, data)
    protocol = build_protocol(labelled.identities)
    check_groups(labelled, protocol, min_identities)
    if thresholds:
        operating = [{"threshold": round(t, 4), "how": "given"} for t in sorted(set(thresholds))]
    else:
        operating = [default_threshold(settings, model_id_for(settings), len(protocol.enrolled))]
    operating_values = [float(o["threshold"]) for o in operating]  # type: ignore[arg-type]
    start = time.perf_counter()
    outcomes = search_outcomes(settings, labelled, protocol, workers=workers, quiet=quiet)
    seconds_embedding = time.perf_counter() - start

    start = time.perf_counter()
    columns = {
        column: _column_report(outcomes, labelled.groups[column], operating_values, design)
        for column in labelled.columns
    }
    result: dict[str, object] = {
        "model_id": outcomes.model_id,
        "labels": str(labels),
        "n_identities": len(labelled.identities),
        "n_enrolled": outcomes.gallery_size,
        "n_mated": len(outcomes.mated_best),
        "n_nonmated": len(outcomes.nonmated_best),
        "operating_thresholds": operating,
        "interval": INTERVAL,
        "test": TEST,
        "alpha": design.alpha,
        "permutations": design.permutations,
        "seed": design.seed,
        "columns": columns,
        "undetected_images": outcomes.undetected,
        "images_embedded_now": outcomes.newly_embedded,
        "seconds_embedding": round(seconds_embedding, 1),
        "seconds_statistics": round(time.perf_counter() - start, 2),
    }
    if plot is not None:
        plot_group_det(outcomes, labelled, operating_values, plot)
        result["plot"] = str(plot)
    return result


def plot_group_det(outcomes: Outcomes, labelled: LabelledSet, operating: list[float], path: Path) -> None:
    """One DET panel per group column, one curve per group, the operating threshold(s) marked on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocol = outcomes.protocol
    panels = len(labelled.columns)
    figure, axes_row = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    for axes, column in zip(axes_row[0], labelled.columns, strict=True):
        groups = labelled.groups[column]
        for name in sorted(set(groups.values())):
            mated = np.array([groups.get(n) == name for n in protocol.mated_identity], bool)
            nonmated = np.array([groups.get(n) == name for n in protocol.nonmated_identity], bool)
            if not mated.any() or not nonmated.any():
                continue
            best, correct, impostors = (
                outcomes.mated_best[mated],
                outcomes.mated_correct[mated],
                outcomes.nonmated_best[nonmated],
            )
            _, fpir_values, fnir_values = det_points(best, correct, impostors)
            # a rate of zero has no place on log axes: drawn at half of one probe, the edge of what was measured
            fp_floor, fn_floor = 0.5 / len(impostors), 0.5 / len(best)
            keep = fpir_values > 0
            (line,) = axes.plot(
                fpir_values[keep],
                np.maximum(fnir_values[keep], fn_floor),
                drawstyle="steps-post",
                label=f"{name} ({len(best)} mated, {len(impostors)} non-mated probes)",
            )
            for t in operating:
                fp = max(float(np.mean(impostors >= t)), fp_floor)
                fn = max(float(1 - np.mean(correct & (best >= t))), fn_floor)
                axes.plot([fp], [fn], marker="o", color=line.get_color())
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("FPIR (non-mated probes raising an alert)")
        axes.set_ylabel("FNIR (mated probes missed or mis-identified)")
        marks = ", ".join(f"{t:.3f}" for t in operating)
        axes.set_title(f"{column}: DET per group (dots: threshold {marks}; 0 drawn at half a probe)", fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.part")
    try:
        figure.savefig(partial, dpi=110, format="png")
        os.replace(partial, path)  # never a half-written picture under the name asked for
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OpenLFRError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        plt.close(figure)
