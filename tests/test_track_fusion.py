"""Track fusion (issue 22): a track's looks fused into one template, and the evidence rule that reads it."""

from dataclasses import dataclass, field

import numpy as np
import pytest

from openlfr.stream.evidence import EvidenceRule, decide
from openlfr.stream.tracker import Track
from openlfr.vision.types import Box
from openlfr.watchlist.search import Candidate, Gallery

MODEL = "mobilefacenet_v1+flip"


@dataclass
class Look:
    candidates: list[Candidate] = field(default_factory=list)


def look(*scores: tuple[str, float]) -> Look:
    return Look([Candidate(person, f"{person}/ref", score, score) for person, score in scores])


def fused(person: str, score: float) -> list[Candidate]:
    return [Candidate(person, f"{person}/ref", score, score)]


RULE = EvidenceRule(threshold=0.6, k=2, n=5, fuse=True)


def test_the_fused_template_alerts_where_no_two_looks_agree_above_the_threshold() -> None:
    looks = [look(("ann", 0.55), ("bob", 0.2)), look(("ann", 0.62)), look(("ann", 0.5), ("cid", 0.3))]
    assert decide(looks, EvidenceRule(0.6, 2, 5)) is None  # the vote alone: one look above 0.6
    verdict = decide(looks, RULE, fused=fused("ann", 0.66), looks=3)
    assert verdict is not None and verdict.fused
    assert verdict.person_id == "ann" and verdict.score == 0.66
    assert verdict.best == 1  # the probe shown to the operator: the look that scored ann highest
    assert verdict.supporting == (0, 1, 2)


def test_the_fused_template_waits_for_k_looks_and_the_threshold() -> None:
    looks = [look(("ann", 0.7))]
    assert decide(looks, RULE, fused=fused("ann", 0.7), looks=1) is None  # one look is not a track's evidence
    two = [look(("ann", 0.5)), look(("ann", 0.5))]
    assert decide(two, RULE, fused=fused("ann", 0.59), looks=2) is None
    assert decide(two, RULE, fused=fused("ann", 0.6), looks=2) is not None
    # fusion off: the template is not read at all
    assert decide(two, EvidenceRule(0.6, 2, 5), fused=fused("ann", 0.9), looks=2) is None


def test_the_vote_still_decides_first_and_alerted_people_are_excluded() -> None:
    looks = [look(("ann", 0.7)), look(("ann", 0.8))]
    verdict = decide(looks, RULE, fused=fused("bob", 0.9), looks=2)
    assert verdict is not None and verdict.person_id == "ann" and not verdict.fused
    assert decide(looks, RULE, exclude={"ann", "bob"}, fused=fused("bob", 0.9), looks=2) is None
    # the fused person must be among the recent looks' candidates: something a human can compare
    assert decide([look(("cid", 0.3)), look(("cid", 0.3))], RULE, fused=fused("dee", 0.9), looks=2) is None


def test_a_tracks_fused_template_is_quality_weighted_and_forgotten_with_it() -> None:
    track = Track(1, Box(0, 0, 10, 10), 0.0, 0.0)
    good, poor = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    track.fused.add(good, quality=0.8)
    track.fused.add(poor, quality=0.2)
    vector = track.fused.vector
    assert vector is not None and vector[0] == pytest.approx(4 * vector[1])
    track.forget()
    assert track.fused.vector is None and track.fused.looks == 0


def test_fusing_noisy_looks_of_a_listed_face_finds_them_where_single_looks_do_not() -> None:
    """Synthetic, but the geometry of the claim: looks scattered around a face each score low against its
    reference; their mean lies nearer the face, so its score is higher than any look's, while a stranger's
    fused looks stay near the stranger."""
    rng = np.random.default_rng(11)
    dim = 128
    people = rng.normal(size=(50, dim))
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    gallery = Gallery(people, [f"p{i}" for i in range(50)], list(range(50)), MODEL)
    noise = rng.normal(size=(4, dim))
    looks = people[7] + 1.1 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    singles = gallery.best_scores(looks, exact=True)
    mean = looks / np.linalg.norm(looks, axis=1, keepdims=True)
    ((top, *_),) = gallery.search(mean.sum(axis=0), k=1, exact=True)
    assert top.person_id == "p7" and top.score > singles.max()
