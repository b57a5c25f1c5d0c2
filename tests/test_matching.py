"""The match score and the gallery search: exact against brute force, approximate against exact."""

import itertools

import numpy as np
import pytest

from openlfr.watchlist.score import cosine_from_score, match_score, score_floor
from openlfr.watchlist.search import Gallery, GalleryError, exact_top_references

DLIB = "dlib_resnet_v1+flip"


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, d: int = 128, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


def near(vectors: np.ndarray, cosine: float, seed: int = 1) -> np.ndarray:
    """Unit vectors at exactly this cosine from each given unit vector (a 'same person' probe)."""
    noise = np.random.default_rng(seed).standard_normal(vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors
    noise = unit(noise)
    return unit(cosine * vectors + np.sqrt(1 - cosine**2) * noise)


# ----- the score -----


def test_score_is_monotone_clipped_and_inverts():
    cosines = np.linspace(-1, 1, 2001)
    scores = match_score(cosines, DLIB)
    assert scores.min() == 0.0 and scores.max() == 1.0
    assert np.all(np.diff(scores) >= 0)
    above = scores > 0
    assert np.allclose(cosine_from_score(scores[above], DLIB), cosines[above])


def test_score_floors_per_model():
    assert score_floor("dlib_resnet_v1+flip") == score_floor("dlib_resnet_v1") == 0.75
    # the best LFW verification cosine for dlib (~0.91) lands near the Met's 0.64
    assert abs(float(match_score(0.91, DLIB)) - 0.64) < 0.01
    assert score_floor("onnx:w600k_r50:0123456789ab") == 0.0
    assert float(match_score(0.4, "onnx:w600k_r50:0123456789ab")) == pytest.approx(0.4)
    assert float(match_score(-0.2, "onnx:x:y")) == 0.0
    with pytest.raises(ValueError):
        cosine_from_score(1.5, DLIB)


# ----- building a gallery -----


def test_gallery_refuses_what_cannot_be_right():
    vectors = random_unit(3)
    with pytest.raises(GalleryError, match="different embedding models"):
        Gallery.from_arrays(vectors, ["a", "b", "c"], [1, 2, 3], [DLIB, DLIB, "onnx:arc:123"])
    with pytest.raises(GalleryError, match="3 embeddings but 2 person ids"):
        Gallery.from_arrays(vectors, ["a", "b"], [1, 2, 3], DLIB)
    with pytest.raises(GalleryError, match="unique"):
        Gallery.from_arrays(vectors, ["a", "b", "c"], [1, 1, 3], DLIB)
    with pytest.raises(GalleryError, match="zero vector"):
        Gallery.from_arrays(np.zeros((1, 128)), ["a"], [1], DLIB)
    with pytest.raises(GalleryError, match="NaN"):
        Gallery.from_arrays(np.full((1, 128), np.nan), ["a"], [1], DLIB)
    with pytest.raises(GalleryError, match="2-D"):
        Gallery.from_arrays(np.zeros(128), ["a"], [1], DLIB)
    gallery = Gallery.from_arrays(vectors, ["a", "b", "c"], [1, 2, 3], [DLIB] * 3)
    with pytest.raises(GalleryError, match="come from onnx"):
        gallery.search(vectors[:1], model_id="onnx:arc:123")
    with pytest.raises(GalleryError, match="probes must be"):
        gallery.search(np.ones((1, 64)))


def test_empty_gallery_finds_nobody():
    gallery = Gallery.from_arrays(np.zeros((0, 128), np.float32), [], [], DLIB)
    assert gallery.search(random_unit(2)) == [[], []]
    assert gallery.best_scores(random_unit(2)).tolist() == [0.0, 0.0]


# ----- exact search -----


@pytest.mark.parametrize("chunk_rows", [7, 100, 65_536])
def test_exact_top_references_equals_brute_force(chunk_rows):
    gallery, probes = random_unit(1000, 32, seed=2), random_unit(17, 32, seed=3)
    idx, cos = exact_top_references(gallery, probes, m=10, chunk_rows=chunk_rows)
    brute = probes @ gallery.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    assert idx.tolist() == expected.tolist()
    assert np.allclose(cos, np.take_along_axis(brute, expected, axis=1))


def test_exact_top_references_smaller_gallery_than_m():
    idx, cos = exact_top_references(random_unit(3, 8), random_unit(2, 8, seed=5), m=10, chunk_rows=2)
    assert idx.shape == (2, 3) and np.all(np.diff(cos, axis=1) <= 0)


def test_person_scored_by_best_reference_and_listed_once():
    people = random_unit(50, seed=6)
    # person p0 has three references; the probe is close to the second one only
    refs = np.concatenate([people, random_unit(2, seed=7)])
    person_ids = [f"p{i}" for i in range(50)] + ["p0", "p0"]
    ref_ids = [f"r{i}" for i in range(52)]
    gallery = Gallery.from_arrays(refs, person_ids, ref_ids, DLIB)
    assert gallery.size == 52 and gallery.person_count == 50
    probe = near(refs[50:51], 0.97)
    candidates = gallery.search(probe, k=5)[0]
    assert candidates[0].person_id == "p0" and candidates[0].reference_id == "r50"
    assert candidates[0].cosine == pytest.approx(float(probe[0] @ refs[50]), abs=1e-5)
    assert candidates[0].score == pytest.approx(float(match_score(candidates[0].cosine, DLIB)))
    assert len({c.person_id for c in candidates}) == 5
    assert all(a.score >= b.score for a, b in itertools.pairwise(candidates))


def test_person_owning_many_top_references_does_not_hide_the_others():
    base = random_unit(1, seed=8)
    crowd = near(np.repeat(base, 40, axis=0), 0.99, seed=9)  # 40 references of one person, all near the probe
    others = random_unit(30, seed=10)
    gallery = Gallery.from_arrays(
        np.concatenate([crowd, others]), ["many"] * 40 + [f"o{i}" for i in range(30)], list(range(70)), DLIB
    )
    candidates = gallery.search(base, k=5)[0]
    assert candidates[0].person_id == "many"
    assert len(candidates) == 5 and len({c.person_id for c in candidates}) == 5
    brute = (others @ base[0]).max()
    assert candidates[1].cosine == pytest.approx(float(brute), abs=1e-5)


# ----- approximate search -----


def test_approximate_search_agrees_with_exact():
    gallery_vectors = random_unit(5000, seed=11)
    ids = [f"p{i}" for i in range(5000)]
    gallery = Gallery.from_arrays(gallery_vectors, ids, ids, DLIB, approximate_above=1000)
    assert gallery.uses_index and gallery.size == 5000
    mated = near(gallery_vectors[:200], 0.9, seed=12)
    approximate = gallery.search(mated, k=1)
    exact = gallery.search(mated, k=1, exact=True)
    agree = np.mean([a[0].person_id == e[0].person_id for a, e in zip(approximate, exact, strict=True)])
    assert agree >= 0.99
    assert all(e[0].person_id == f"p{i}" for i, e in enumerate(exact))
    # scores are recomputed from the stored vectors: identical to exact wherever the same reference is found
    same = [(a[0], e[0]) for a, e in zip(approximate, exact, strict=True) if a[0].reference_id == e[0].reference_id]
    assert all(a.cosine == pytest.approx(e.cosine, abs=1e-5) for a, e in same)


def test_approximate_search_with_sparse_cells_still_answers():
    # 40 references in 16 cells, one cell searched: the index sees only a few; the answer is short, not wrong
    vectors = random_unit(40, seed=13)
    ids = [f"p{i}" for i in range(40)]
    from openlfr.watchlist.search import IvfParams

    gallery = Gallery.from_arrays(vectors, ids, ids, DLIB, approximate_above=1, ivf=IvfParams(nprobe=1, nlist=16))
    found = gallery.search(vectors[:3], k=5)
    for i, candidates in enumerate(found):
        assert 1 <= len(candidates) <= 5
        assert candidates[0].person_id == f"p{i}" and candidates[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert gallery.best_scores(vectors[:3]).tolist() == pytest.approx([1.0, 1.0, 1.0])
