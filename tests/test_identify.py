"""The open-set identification protocol, its figures, and the `bench identify` / `calibrate` commands."""

import itertools
import json
import subprocess
from pathlib import Path

import numpy as np

from openlfr.bench.identify import (
    alias_probes,
    build_protocol,
    det_points,
    fnir,
    observed_fpir,
    threshold_at_fpir,
)
from tests.conftest import OPENLFR_BIN, require_data

SUBSET = 1500  # identities, first by name: ~1,400 images, shared with the calibration hold-out test's cache


def test_protocol_follows_the_issue_exactly():
    identities = {
        "Ann": [f"Ann/Ann_{i:04d}" for i in range(1, 9)],  # 8 images: position 0, enrolled
        "Bob": ["Bob/Bob_0001"],  # single image: non-mated
        "Cid": [f"Cid/Cid_{i:04d}" for i in range(1, 8)],  # 7 images: position 1, non-mated (up to 5)
        "Dee": ["Dee/Dee_0001", "Dee/Dee_0002"],  # position 2, enrolled
        "Eve": ["Eve/Eve_0001"],
    }
    protocol = build_protocol(identities)
    assert protocol.enrolled == ["Ann", "Dee"]
    assert protocol.gallery_keys == ["Ann/Ann_0001", "Dee/Dee_0001"]
    assert protocol.mated_keys == [f"Ann/Ann_{i:04d}" for i in range(2, 7)] + ["Dee/Dee_0002"]
    assert protocol.mated_identity == ["Ann"] * 5 + ["Dee"]
    assert protocol.nonmated_keys == [f"Cid/Cid_{i:04d}" for i in range(1, 6)] + ["Bob/Bob_0001", "Eve/Eve_0001"]
    assert set(protocol.nonmated_identity).isdisjoint(protocol.enrolled)


def test_probes_filed_under_an_enrolled_persons_other_name_are_not_strangers():
    identities = {
        "Joseph_Blatter": ["Joseph_Blatter/Joseph_Blatter_0001", "Joseph_Blatter/Joseph_Blatter_0002"],  # enrolled
        "Kim_Example": ["Kim_Example/Kim_Example_0001", "Kim_Example/Kim_Example_0002"],  # non-mated
        "Mireya_Moscoso": ["Mireya_Moscoso/Mireya_Moscoso_0001", "Mireya_Moscoso/Mireya_Moscoso_0002"],  # non-mated
        "Mireya_Elisa_Moscoso_Rodriguez": ["Mireya_Elisa_Moscoso_Rodriguez/Mireya_Elisa_Moscoso_Rodriguez_0001"],
        "Sepp_Blatter": ["Sepp_Blatter/Sepp_Blatter_0001"],  # single image: non-mated, but Joseph_Blatter is enrolled
    }
    protocol = build_protocol(identities)
    assert protocol.enrolled == ["Joseph_Blatter", "Mireya_Moscoso"]
    excluded = [n for n, out in zip(protocol.nonmated_identity, alias_probes(protocol), strict=True) if out]
    # both alias directions count; a stranger with an alias that is not enrolled would stay a stranger
    assert sorted(excluded) == ["Mireya_Elisa_Moscoso_Rodriguez", "Sepp_Blatter"]


def test_figures_on_known_scores():
    nonmated = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1])
    # at most 1 of 10 may alert: the threshold sits just above the second-highest non-mated score
    t = threshold_at_fpir(nonmated, 0.1)
    assert 0.5 < t < 0.5 + 1e-9
    assert observed_fpir(nonmated, t) == 0.1
    mated = np.array([0.95, 0.6, 0.45, 0.8])
    correct = np.array([True, True, True, False])  # the 0.8 probe found the wrong person: a miss at any t
    assert fnir(mated, correct, t) == 0.5
    _, fpir_values, fnir_values = det_points(mated, correct, nonmated)
    assert np.all(np.diff(fpir_values) <= 0) and np.all(np.diff(fnir_values) >= 0)
    assert fnir_values[-1] == 0.75 and fpir_values[0] == 1.0


def test_bench_identify_on_an_lfw_subset(tmp_path):
    lfw = require_data("lfw", "images").parent
    plot = tmp_path / "det.png"
    command = [str(OPENLFR_BIN), "bench", "identify", "--data", str(lfw), "--identities", str(SUBSET), "--json"]
    command.append("--no-second-opinion")  # SFace has its own test (test_second_opinion); CI time stays flat
    result = subprocess.run(
        [*command, "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    from openlfr.bench.lfw_cache import lfw_identities

    identities = lfw_identities(lfw / "images")
    protocol = build_protocol({n: identities[n] for n in sorted(identities)[:SUBSET]})
    assert figures["n_mated"] == len(protocol.mated_keys)
    aliases = int(alias_probes(protocol).sum())
    assert figures["n_nonmated"] == len(protocol.nonmated_keys) - aliases
    assert figures["excluded_aliases"]["probes"] == aliases
    assert figures["uncleaned"]["n_nonmated"] == len(protocol.nonmated_keys)
    assert figures["n_enrolled"] == len(protocol.enrolled)
    assert 0.0 <= figures["fnir_at_fpir_1e-2"] <= figures["fnir_at_fpir_1e-3"] <= 1.0
    assert figures["threshold_at_fpir_1e-2"] <= figures["threshold_at_fpir_1e-3"] <= 1.0
    # the default engine identifies most mated probes at rank 1 on LFW; far from chance
    assert figures["rank1_identification_rate"] > 0.85
    assert figures["fnir_at_fpir_1e-2"] < 0.6
    assert set(figures["holdout"]) >= {"threshold", "observed_fpir", "within_factor_2"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_identify_rejects_a_folder_that_is_not_lfw(tmp_path):
    (tmp_path / "images").mkdir()
    result = subprocess.run(
        [str(OPENLFR_BIN), "bench", "identify", "--data", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "error" in result.stderr and "Traceback" not in result.stderr


def test_calibrate_writes_a_table_the_system_then_uses(tmp_path):
    images = require_data("lfw", "images")
    # a small LFW-shaped folder: the first 300 identities, linked in place (the data is never copied)
    small = tmp_path / "lfw-small" / "images"
    small.mkdir(parents=True)
    for person in sorted(p for p in images.iterdir() if p.is_dir())[:300]:
        (small / person.name).symlink_to(person, target_is_directory=True)
    out = tmp_path / "table.json"
    result = subprocess.run(
        [str(OPENLFR_BIN), "calibrate", "--data", str(small.parent), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    document = json.loads(out.read_text())
    assert document["model_id"] == summary["model_id"] == "mobilefacenet_v1+flip"
    assert document["source"]["identities"] == 300
    fmr = [row["fmr"] for row in document["table"]]
    assert fmr[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(fmr))

    from openlfr.watchlist.calibration import load_calibration

    assert load_calibration("mobilefacenet_v1+flip", explicit=Path(out)).source["identities"] == 300


def test_lfw_embedding_cache_reuses_and_invalidates(tmp_path, monkeypatch, astronaut):
    from openlfr.bench.lfw_cache import cached_lfw_embeddings, lfw_identities
    from openlfr.settings import Settings
    from openlfr.vision.image_io import encode_jpeg

    images = tmp_path / "images"
    for name in ("Ann_Example", "Bob_Example"):
        (images / name).mkdir(parents=True)
        (images / name / f"{name}_0001.jpg").write_bytes(encode_jpeg(astronaut[:300, 100:400]))
    settings = Settings(cache_dir=tmp_path / "cache")
    # a cache of LFW embeddings of its own; the model files are the installed ones
    settings.cache_dir.mkdir()
    (settings.cache_dir / "models").symlink_to(Settings().cache_dir / "models", target_is_directory=True)
    keys = [k for v in lfw_identities(images).values() for k in v]
    first = cached_lfw_embeddings(settings, images, keys, workers=1, quiet=True)
    assert first.newly_embedded == 2 and first.embeddings.shape == (2, 192)
    again = cached_lfw_embeddings(settings, images, keys, workers=1, quiet=True)
    assert again.newly_embedded == 0 and np.array_equal(again.embeddings, first.embeddings)
    # a changed image file is embedded again, the other one is reused
    (images / "Bob_Example" / "Bob_Example_0001.jpg").write_bytes(encode_jpeg(astronaut[:280, 110:390]))
    changed = cached_lfw_embeddings(settings, images, keys, workers=1, quiet=True)
    assert changed.newly_embedded == 1
    assert np.array_equal(changed.embeddings[0], first.embeddings[0])


def test_template_protocol_is_todays_with_one_photo_and_one_look():
    from openlfr.bench.identify_variants import build_template_protocol

    identities = {
        "Ann": [f"Ann/Ann_{i:04d}" for i in range(1, 9)],
        "Bob": ["Bob/Bob_0001"],
        "Cid": [f"Cid/Cid_{i:04d}" for i in range(1, 8)],
        "Dee": ["Dee/Dee_0001", "Dee/Dee_0002"],
        "Eve": ["Eve/Eve_0001"],
    }
    today = build_protocol(identities)
    same = build_template_protocol(identities)
    assert same.reference_keys == today.gallery_keys
    assert [p.keys for p in same.mated] == [(k,) for k in today.mated_keys]
    assert [p.keys for p in same.nonmated] == [(k,) for k in today.nonmated_keys]


def test_template_protocol_groups_photos_and_never_probes_with_a_reference():
    from openlfr.bench.identify_variants import build_template_protocol

    identities = {
        "Ann": [f"Ann/Ann_{i:04d}" for i in range(1, 21)],  # 20 images, enrolled
        "Bob": ["Bob/Bob_0001"],
        "Cid": [f"Cid/Cid_{i:04d}" for i in range(1, 8)],  # 7 images, a stranger
        "Dee": ["Dee/Dee_0001", "Dee/Dee_0002", "Dee/Dee_0003"],  # enrolled, few images
        "Sepp_Blatter": ["Sepp_Blatter/Sepp_Blatter_0001"],  # a stranger, unless his other name is enrolled
    }
    protocol = build_template_protocol(identities, enrol_images=3, probe_images=2, aliases={"Sepp_Blatter": "Dee"})
    assert protocol.enrolled == ["Ann", "Dee"]
    assert protocol.references == [("Ann/Ann_0001", "Ann/Ann_0002", "Ann/Ann_0003"), ("Dee/Dee_0001", "Dee/Dee_0002")]
    ann = [p.keys for p in protocol.mated if p.identity == "Ann"]
    assert ann == [(f"Ann/Ann_{i:04d}", f"Ann/Ann_{i + 1:04d}") for i in range(4, 14, 2)]  # 5 probes of 2 looks
    assert [p.keys for p in protocol.mated if p.identity == "Dee"] == [("Dee/Dee_0003",)]  # what is left: one look
    assert set(protocol.reference_keys).isdisjoint(protocol.probe_keys)
    assert [p.keys for p in protocol.nonmated] == [
        ("Cid/Cid_0001", "Cid/Cid_0002"), ("Cid/Cid_0003", "Cid/Cid_0004"), ("Cid/Cid_0005", "Cid/Cid_0006"),
        ("Cid/Cid_0007",), ("Bob/Bob_0001",),
    ]  # fmt: skip
    assert protocol.excluded_aliases == 1


def test_variants_score_templates_and_fused_looks_side_by_side():
    """Synthetic embeddings: each person a direction, each photo that direction plus noise. Fusing looks and
    combining references must not do worse than single looks on the same probes, and every column is filled."""
    from openlfr.bench.identify_variants import (
        VARIANTS,
        BenchData,
        build_template_protocol,
        format_table,
        run_variants,
    )
    from openlfr.settings import Settings

    rng = np.random.default_rng(5)
    names = [f"P{i:03d}" for i in range(400)]
    identities = {n: [f"{n}/{n}_{j:04d}" for j in range(1, 2 + (i % 9))] for i, n in enumerate(names)}
    protocol = build_template_protocol(identities, enrol_images=3, probe_images=3)
    centre = {n: rng.normal(size=64) for n in names}
    vectors = {k: centre[n] + 0.9 * rng.normal(size=64) for n, keys in identities.items() for k in keys}
    data = BenchData(Settings(), Path("."), "mobilefacenet_v1+flip", protocol, vectors, vectors)
    figures = run_variants(data, shipped=None)
    assert list(figures) == [v.key for v in VARIANTS]
    assert figures["person_templates"]["entries"] == len(protocol.enrolled) < figures["single"]["entries"]
    assert figures["both"]["fnir_at_fpir_1e-2"] <= figures["single"]["fnir_at_fpir_1e-2"]
    assert set(figures["single"]["holdout"]) == {"1e-2", "1e-3"}
    assert "FNIR @ FPIR 1e-3" in format_table(figures)
