"""The equitability report: its statistics on synthetic scores, the labels file, and `bench equitability` on an
LFW subset the test labels itself (with a difference planted, and without)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from openlfr.bench.equitability import LabelsError, read_labels
from openlfr.bench.equitability_design import PermutationDesign
from openlfr.bench.equitability_stats import (
    clopper_pearson,
    clustered_rate,
    equal_rates_test,
    fnir_errors,
    fpir_errors,
    threshold_grid,
)
from openlfr.bench.identify import build_protocol
from tests.conftest import OPENLFR_BIN, require_data

# ----- statistics on synthetic scores -----


def impostor_scores(seed: int, shift_b: float = 0.0, people: int = 160, per_person: int = 3):
    """Best impostor scores of people in groups A and B; each person has their own level (probes cluster)."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0.45, 0.05, people)
    group = {f"p{i}": "AB"[i % 2] for i in range(people)}
    person = np.repeat([f"p{i}" for i in range(people)], per_person)
    scores = np.repeat(level, per_person) + rng.normal(0.0, 0.04, len(person))
    scores += np.where([group[p] == "B" for p in person], shift_b, 0.0)
    return scores, person, group


def test_a_planted_fpir_difference_is_found_with_the_thresholds_where_it_shows():
    scores, person, group = impostor_scores(seed=11, shift_b=0.06)
    grid = threshold_grid(scores)
    test = equal_rates_test(fpir_errors(scores, grid), person, group, grid, permutations=499, seed=1)
    assert test.significant.any()
    # B's impostors score 0.06 higher: where a few percent of A alert, B alerts several times as often
    assert test.highest_significant is not None and 0.5 < test.highest_significant < 0.75
    assert test.no_difference_at_or_above is not None and test.no_difference_at_or_above > test.highest_significant
    assert not test.significant[test.thresholds >= test.no_difference_at_or_above].any()
    # far below every score all alert alike: nothing to tell apart there
    assert test.p_value[0] == 1.0
    lowest = test.lowest_significant
    assert lowest is not None and lowest <= 0.45
    ranges = test.significant_ranges()
    assert ranges[0][0] == lowest and ranges[-1][1] == test.highest_significant


def test_no_difference_is_reported_where_groups_come_from_one_distribution():
    """Family-wise error over the grid: with alpha 0.05, few of 40 null data sets may show any significant threshold."""
    flagged = 0
    smallest_raw = []
    for seed in range(40):
        scores, person, group = impostor_scores(seed=100 + seed)
        grid = threshold_grid(scores)
        test = equal_rates_test(fpir_errors(scores, grid), person, group, grid, permutations=199, seed=seed)
        flagged += bool(test.significant.any())
        smallest_raw.append(test.p_value.min())
    # expected 2 of 40; 6 or more has probability 0.014 under a correct 5% test
    assert flagged <= 5
    # without the correction, scanning ~40 thresholds finds p < 0.05 somewhere far more often than 5%
    assert sum(p < 0.05 for p in smallest_raw) > flagged


def test_the_permutation_is_between_people_so_clustered_probes_do_not_fake_a_difference():
    """Strongly clustered people (each person's photos score alike): a probe-level test would often cry wolf."""
    flagged = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        people = 60
        level = rng.normal(0.45, 0.08, people)  # most of the spread is between people
        person = np.repeat([f"p{i}" for i in range(people)], 8)
        scores = np.repeat(level, 8) + rng.normal(0.0, 0.01, len(person))
        group = {f"p{i}": "AB"[i % 2] for i in range(people)}
        grid = threshold_grid(scores, step=0.02)
        test = equal_rates_test(fpir_errors(scores, grid), person, group, grid, permutations=199, seed=seed)
        flagged += bool(test.significant.any())
    assert flagged <= 4  # expected 1.5 of 30


def test_fnir_errors_count_a_wrong_person_as_a_miss_at_every_threshold():
    grid = np.array([0.5, 0.7, 0.9])
    errors = fnir_errors(np.array([0.8, 0.95, 0.6]), np.array([True, False, True]), grid)
    assert errors.tolist() == [[False, False, True], [True, True, True], [False, True, True]]
    assert fpir_errors(np.array([0.6]), grid).tolist() == [[True, False, False]]


def test_intervals_are_exact_and_widen_when_probes_cluster_by_person():
    low, high = clopper_pearson(0, 300)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 300), rel=1e-6)  # the exact bound at 0 errors
    low, high = clopper_pearson(5, 100)
    assert low == pytest.approx(0.01643, abs=1e-4) and high == pytest.approx(0.11284, abs=1e-4)
    independent = clustered_rate(np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), np.full(12, 4))
    clustered = clustered_rate(np.array([4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]), np.full(12, 4))
    assert independent.rate == clustered.rate == 6 / 48
    assert clustered.effective_probes < independent.effective_probes <= 48
    assert clustered.high - clustered.low > independent.high - independent.low
    assert clustered.low <= clustered.rate <= clustered.high


# ----- the labels file -----


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        csv.writer(out).writerows(rows)
    return path


@pytest.fixture
def tiny_images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for name in ("Ann", "Bob"):
        (folder / name).mkdir(parents=True)
        for i in (1, 2):
            (folder / name / f"{name}_{i:04d}.jpg").write_bytes(b"not read by the labels check")
    return folder


def test_labels_are_read_with_groups_per_person(tiny_images: Path, tmp_path: Path):
    labels = write_csv(
        tmp_path / "labels.csv",
        [
            ["image", "identity", "sex", "age_band"],
            ["Ann/Ann_0002.jpg", "Ann", "F", "30-45"],
            ["Ann/Ann_0001.jpg", "Ann", "F", ""],
            ["Bob/Bob_0001.jpg", "Bob", "M", ""],
        ],
    )
    labelled = read_labels(labels, tiny_images)
    assert labelled.identities == {"Ann": ["Ann/Ann_0001", "Ann/Ann_0002"], "Bob": ["Bob/Bob_0001"]}
    assert labelled.columns == ["sex", "age_band"]
    assert labelled.groups == {"sex": {"Ann": "F", "Bob": "M"}, "age_band": {"Ann": "30-45"}}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["path", "who", "sex"], ["Ann/Ann_0001.jpg", "Ann", "F"]], "must name the columns image and identity"),
        ([["image", "identity"], ["Ann/Ann_0001.jpg", "Ann"]], "no group column"),
        ([["image", "identity", "sex"], ["Ann/Ann_0001.jpg", "Ann"]], "line 2: 3 fields expected, found 2"),
        ([["image", "identity", "sex"], ["Ann/Ann_0009.jpg", "Ann", "F"]], "line 2: image Ann/Ann_0009.jpg not found"),
        ([["image", "identity", "sex"], ["../x.jpg", "Ann", "F"]], "relative to the data folder"),
        ([["image", "identity", "sex"], ["Ann/Ann_0001.png", "Ann", "F"]], "only .jpg"),
        (
            [["image", "identity", "sex"], ["Ann/Ann_0001.jpg", "Ann", "F"], ["Ann/Ann_0002.jpg", "Ann", "M"]],
            "line 3: Ann has sex 'M' here but 'F' on line 2",
        ),
        (
            [["image", "identity", "sex"], ["Ann/Ann_0001.jpg", "Ann", "F"], ["Ann/Ann_0001.jpg", "Ann", "F"]],
            "listed twice",
        ),
        ([], "empty"),
    ],
)
def test_bad_labels_get_one_clear_line(tiny_images: Path, tmp_path: Path, rows: list[list[str]], message: str):
    labels = write_csv(tmp_path / "labels.csv", rows)
    with pytest.raises(LabelsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        read_labels(labels, tiny_images)


def test_the_command_says_what_is_wrong_in_one_line(tiny_images: Path, tmp_path: Path):
    missing = subprocess.run(
        [str(OPENLFR_BIN), "bench", "equitability", "--data", str(tiny_images), "--labels", str(tmp_path / "no.csv")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "cannot read" in missing.stderr


@pytest.mark.parametrize(
    ("sexes", "message"),
    [
        ({"Ann": "F", "Bob": "F"}, "column sex: one group only \\(F\\)"),
        ({"Ann": "F", "Bob": "M"}, "column sex, group F: 1 enrolled and 0 non-enrolled identities; each group needs"),
    ],
)
def test_groups_too_small_are_refused_before_anything_is_embedded(
    tiny_images: Path, tmp_path: Path, sexes: dict[str, str], message: str
):
    from openlfr.bench.equitability import run_equitability
    from openlfr.settings import Settings

    rows = [["image", "identity", "sex"]] + [
        [f"{n}/{n}_{i:04d}.jpg", n, sexes[n]] for n in ("Ann", "Bob") for i in (1, 2)
    ]
    labels = write_csv(tmp_path / "labels.csv", rows)
    # the images are not JPEGs at all: reaching the embedding would fail differently
    with pytest.raises(LabelsError, match=message):
        run_equitability(Settings(), tiny_images, labels, thresholds=[0.7], min_identities=1)


# ----- the whole report on LFW -----

PEOPLE = 100  # identities (half enrolled), first by name among those with a photo to spare for a twin
IMAGES_EACH = 3  # per identity in the labels: keeps the subset to ~370 images (embedded once, then cached)
TWINS = 20  # group B's enrolled people given a "twin": their spare photo filed as another, never enrolled, person


def degrade(source: Path, target: Path) -> None:
    """A probe as a poor camera would take it: 1/6 of the resolution, then blurred."""
    from PIL import Image, ImageFilter

    with Image.open(source) as image:
        small = image.convert("RGB").resize((image.width // 6, image.height // 6), Image.Resampling.BILINEAR)
        blurred = small.resize(image.size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    target.parent.mkdir(parents=True, exist_ok=True)
    blurred.save(target, quality=90)


def labelled_lfw(lfw_images: Path, root: Path, *, plant: bool, seed: int) -> Path:
    """A data folder of links to LFW people (degraded copies beside them) and its labels CSV (columns group, band).

    Groups are drawn at random per person. With ``plant``, every mated probe of group B is degraded (FNIR rises
    for B) and TWINS of B's enrolled people get a twin in B (false alerts for B: FPIR rises).
    """
    names = sorted(p.name for p in lfw_images.iterdir() if p.is_dir())
    several = [n for n in names if len(list((lfw_images / n).glob("*.jpg"))) > IMAGES_EACH][:PEOPLE]
    rng = np.random.default_rng(seed)
    group = {n: str(rng.choice(["A", "B"])) for n in several}
    band = {n: str(rng.choice(["x", "y", "z"])) for n in several}  # a second column, three groups, nothing planted
    identities = {n: sorted(f"{n}/{f.stem}" for f in (lfw_images / n).glob("*.jpg"))[:IMAGES_EACH] for n in several}
    protocol = build_protocol(identities)
    root.mkdir(parents=True, exist_ok=True)
    rows = [["image", "identity", "group", "band"]]
    for name in several:
        (root / name).symlink_to(lfw_images / name, target_is_directory=True)  # read in place, never copied
        for key in identities[name]:
            mated_probe = name in protocol.enrolled and key != identities[name][0]
            if plant and mated_probe and group[name] == "B":
                degrade(lfw_images / f"{key}.jpg", root / "zz-degraded" / f"{key}.jpg")
                key = f"zz-degraded/{key}"
            rows.append([f"{key}.jpg", name, group[name], band[name]])
    if plant:
        twins = [n for n in protocol.enrolled if group[n] == "B"][:TWINS]
        assert len(twins) >= TWINS // 2, "too few people in group B for the planted false alerts"
        for name in twins:
            spare = sorted(f.stem for f in (lfw_images / name).glob("*.jpg"))[IMAGES_EACH]
            rows.append([f"{name}/{spare}.jpg", f"{name} (twin)", "B", band[name]])
    return write_csv(root / "labels.csv", rows)


def run_report(data: Path, labels: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENLFR_BIN), "bench", "equitability", "--data", str(data), "--labels", str(labels), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_bench_equitability_finds_a_planted_difference_on_lfw(tmp_path: Path):
    lfw_images = require_data("lfw", "images")
    labels = labelled_lfw(lfw_images, tmp_path / "planted", plant=True, seed=3)
    plot = tmp_path / "det.png"
    result = run_report(labels.parent, labels, "--plot", str(plot), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    column = report["columns"]["group"]
    a, b = column["groups"]["A"]["at_threshold"][0], column["groups"]["B"]["at_threshold"][0]
    # degraded probes are missed far more often, and B's twins raise false alerts
    assert b["fnir"]["rate"] > a["fnir"]["rate"] + 0.2
    assert b["fpir"]["rate"] > a["fpir"]["rate"]
    assert column["fnir_difference"]["significant"]
    assert column["fnir_difference"]["at_operating"][0]["p_adjusted"] <= 0.05
    assert column["fpir_difference"]["significant"]
    assert column["fpir_difference"]["highest_significant_threshold"] is not None
    for figures in (a, b):
        for rate in ("fnir", "fpir"):
            low, high = figures[rate]["ci"]
            assert low <= figures[rate]["rate"] <= high
    assert report["operating_thresholds"][0]["how"].startswith("deployment default")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


def test_bench_equitability_reports_no_difference_where_there_is_none(tmp_path: Path):
    lfw_images = require_data("lfw", "images")
    labels = labelled_lfw(lfw_images, tmp_path / "null", plant=False, seed=5)
    # four families (2 columns x FNIR, FPIR) at 1% each: a correct test fails this with probability under 4%
    result = run_report(labels.parent, labels, "--threshold", "0.7", "--threshold", "0.8", "--alpha", "0.01")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    # the printed report: per group, both thresholds, FNIR and FPIR with their intervals, and the verdicts
    for needle in ("group", "band", "0.7000", "0.8000", "FNIR [95% CI]", "FPIR [95% CI]"):
        assert needle in text
    assert text.count("FNIR: no significant difference") == 2  # both columns
    assert text.count("FPIR: no significant difference") == 2
    assert "differ significantly" not in text


def test_random_relabellings_of_lfw_people_rarely_differ(tmp_path: Path):
    """On real scores (the default engine's), groups drawn at random: significant at 5% in about 5% of families."""
    from openlfr.bench.equitability import run_equitability
    from openlfr.settings import get_settings

    lfw_images = require_data("lfw", "images")
    labels = labelled_lfw(lfw_images, tmp_path / "relabelled", plant=False, seed=0)
    with labels.open() as source:
        rows = list(csv.reader(source))
    flagged = families = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        people = sorted({row[1] for row in rows[1:]})
        group = dict(zip(people, rng.choice(["A", "B"], len(people)), strict=True))
        relabelled = write_csv(
            tmp_path / f"labels-{seed}.csv",
            [["image", "identity", "group"]] + [[r[0], r[1], group[r[1]]] for r in rows[1:]],
        )
        report = run_equitability(
            get_settings(),
            labels.parent,
            relabelled,
            thresholds=[0.7],
            design=PermutationDesign(permutations=199, seed=seed),
            quiet=True,
        )
        column = report["columns"]["group"]  # type: ignore[index]
        for rate in ("fnir_difference", "fpir_difference"):
            families += 1
            flagged += bool(column[rate]["significant"])
    # 40 families (FNIR on the enrolled people, FPIR on the others): 2 expected; 7 or more has probability 0.003
    assert families == 40 and flagged <= 6
