"""When does a track earn an alert: k of its last n embedded samples name the same person above the threshold.

One sample is one look at a face; a passer-by who happens to resemble a listed person on one blurred,
turned frame should not raise an alert, while someone who does on two separate looks very probably does.
The rule is a pure function of the track's samples, so it is tested without video.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from openlfr.watchlist.search import Candidate


class Scored(Protocol):
    """A sample as the rule sees it: the matcher's candidates for one look, best first (only their person and
    score are read)."""

    @property
    def candidates(self) -> Sequence[Candidate]: ...


@dataclass(frozen=True)
class EvidenceRule:
    threshold: float  # match score a sample's best candidate must reach to count
    k: int = 2  # supporting samples needed...
    n: int = 5  # ...among the track's last n samples

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"evidence needs 1 <= k <= n, got k={self.k}, n={self.n}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"a match-score threshold lies in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Verdict:
    person_id: Hashable
    supporting: tuple[int, ...]  # indices (into the samples given) of the samples that named this person
    best: int  # index of the supporting sample with the highest score
    score: float  # that highest score


def decide(samples: Sequence[Scored], rule: EvidenceRule, exclude: Iterable[Hashable] = ()) -> Verdict | None:
    """The person the last ``n`` samples support at least ``k`` times above the threshold, if any.

    Only a sample's best candidate votes (a face that looks like two listed people equally is no evidence for
    either). ``exclude`` lists people this track has already alerted on. Ties go to more votes, then the
    higher score.
    """
    excluded = set(exclude)
    start = max(0, len(samples) - rule.n)
    votes: dict[Hashable, list[int]] = {}
    for index in range(start, len(samples)):
        candidates = samples[index].candidates
        if not candidates:
            continue
        top = candidates[0]
        if top.score >= rule.threshold and top.person_id not in excluded:
            votes.setdefault(top.person_id, []).append(index)
    verdicts = []
    for person, indices in votes.items():
        if len(indices) >= rule.k:
            best = max(indices, key=lambda i: samples[i].candidates[0].score)
            verdicts.append(Verdict(person, tuple(indices), best, float(samples[best].candidates[0].score)))
    if not verdicts:
        return None
    return max(verdicts, key=lambda v: (len(v.supporting), v.score))
