"""Templates (issue 22): several embeddings of a face combined into one, and a gallery that searches people's
templates while still naming the reference photo nearest the probe."""

import numpy as np
import pytest

from openlfr.watchlist.search import Gallery
from openlfr.watchlist.templates import MIN_WEIGHT, RunningTemplate, person_templates, quality_weight, template

MODEL = "mobilefacenet_v1+flip"


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_a_template_is_the_renormalised_weighted_mean_of_unit_vectors() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(3, 16)) * np.array([[1.0], [5.0], [0.2]])  # lengths must not weigh in
    expected = unit(unit(raw).sum(axis=0))
    assert np.allclose(template(raw), expected, atol=1e-6)
    assert template(raw).dtype == np.float32 and np.isclose(np.linalg.norm(template(raw)), 1.0)
    weighted = unit(2.0 * unit(raw[0]) + 1.0 * unit(raw[1]) + 0.0 * unit(raw[2]))
    assert np.allclose(template(raw, [2.0, 1.0, 0.0]), weighted, atol=1e-6)
    # one embedding is its own template
    assert np.allclose(template(raw[:1]), unit(raw[0]), atol=1e-6)


def test_a_template_refuses_what_has_no_direction() -> None:
    with pytest.raises(ValueError):
        template(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        template(np.eye(2), [0.0, 0.0])
    with pytest.raises(ValueError):
        template(np.eye(2), [1.0])
    with pytest.raises(ValueError):
        template(np.array([[1.0, 0.0], [-1.0, 0.0]]))


def test_averaging_looks_of_one_face_brings_them_closer_to_that_face() -> None:
    rng = np.random.default_rng(7)
    face = unit(rng.normal(size=64))
    looks = unit(face + 0.9 * rng.normal(size=(5, 64)) / np.sqrt(64))
    single = looks @ face
    assert template(looks) @ face > single.max()


def test_person_templates_group_by_person_in_order_of_first_appearance() -> None:
    vectors = np.eye(4)
    combined, people, rows = person_templates(vectors, ["b", "a", "b", "c"], weights=[1.0, 1.0, 3.0, 1.0])
    assert people == ["b", "a", "c"] and rows == [[0, 2], [1], [3]]
    assert np.allclose(combined[0], unit(np.array([1.0, 0, 3.0, 0])), atol=1e-6)
    assert np.allclose(combined[1], [0, 1, 0, 0]) and np.allclose(combined[2], [0, 0, 0, 1])


def test_a_running_template_weighs_looks_by_quality_and_forgets() -> None:
    running = RunningTemplate()
    assert running.vector is None and running.looks == 0
    running.add(np.array([3.0, 0.0]), quality=0.9)
    running.add(np.array([0.0, 1.0]), quality=0.1)
    assert running.looks == 2
    assert np.allclose(running.vector, unit(np.array([0.9, 0.1])), atol=1e-6)
    assert quality_weight(0.0) == MIN_WEIGHT and quality_weight(float("nan")) == MIN_WEIGHT
    running.clear()
    assert running.vector is None and running.looks == 0


def test_a_gallery_of_person_templates_searches_one_entry_per_person() -> None:
    rng = np.random.default_rng(3)
    base = unit(rng.normal(size=(3, 32)))
    refs = np.concatenate([unit(base[[0, 0, 0]] + 0.3 * unit(rng.normal(size=(3, 32)))), base[[1, 2]]])
    people = ["ann", "ann", "ann", "bob", "cid"]
    ids = ["ann/1", "ann/2", "ann/3", "bob/1", "cid/1"]
    plain = Gallery(refs, people, ids, MODEL)
    fused = Gallery(refs, people, ids, MODEL, person_templates=True)
    assert plain.size == 5 and fused.size == 3 and fused.person_count == 3
    probe = refs[1] + 0.01 * base[1]
    ((best, *_),) = fused.search(probe, k=3, exact=True)
    assert best.person_id == "ann"
    assert best.reference_id == "ann/2"  # the photo nearest the probe, for the operator to compare with
    expected = float(unit(probe) @ template(refs[:3]))
    assert np.isclose(best.cosine, expected, atol=1e-5)
    assert np.isclose(fused.best_scores(probe[None], exact=True)[0], best.score)


def test_a_template_gallery_ends_a_listing_at_its_instant() -> None:
    now = [1000.0]
    refs = np.eye(3)
    fused = Gallery(
        refs, ["ann", "ann", "bob"], [1, 2, 3], MODEL, expires_at=[2000.0, 2000.0, 5000.0],
        clock=lambda: now[0], person_templates=True,
    )  # fmt: skip
    assert [c.person_id for c in fused.search(refs[0], k=2, exact=True)[0]] == ["ann", "bob"]
    now[0] = 2000.0
    assert [c.person_id for c in fused.search(refs[0], k=2, exact=True)[0]] == ["bob"]


def test_thresholds_are_picked_for_what_is_searched() -> None:
    from openlfr.settings import Settings
    from openlfr.watchlist.search import gallery_options, searched_entries

    on, off = Settings(search_person_templates=True), Settings(search_person_templates=False)
    assert Settings().search_person_templates  # the default, as bench identify's figures support
    assert searched_entries(on, references=5, people=3) == 3 and searched_entries(off, references=5, people=3) == 5
    refs = np.eye(5)
    people = ["a", "a", "b", "b", "c"]
    for settings in (on, off):
        gallery = Gallery(refs, people, list(range(5)), MODEL, **gallery_options(settings))
        assert gallery.size == searched_entries(settings, references=5, people=3)
