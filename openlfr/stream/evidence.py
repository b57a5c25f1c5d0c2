"""When does a track earn an alert: k of its last n embedded samples name the same person above the threshold,
or (track fusion) the track's looks fused into one template do, once it has k looks.

One sample is one look at a face; a passer-by who happens to resemble a listed person on one blurred,
turned frame should not raise an alert, while someone who does on two separate looks very probably does.

Track fusion (``EvidenceRule.fuse``): the track's embedded looks are combined as they come into one
quality-weighted template (``openlfr.watchlist.templates.RunningTemplate``), searched like any probe. Its
score is a match score with the calibrated meaning of any other: the fused template is one probe embedding,
and ``openlfr bench identify --probe-images M`` measures that the table's threshold for a target FPIR holds for
fused probes (the "track fusion" column: observed FPIR of the shipped table's threshold against its target).
A look that turns or blurs moves a single sample's score; it moves the fused score far less, so a listed
person is found on looks none of which would pass alone, while a stranger's looks, fused, stay a stranger.
The template is checked from the track's k-th look on, as the vote needs k looks too, and lives in memory
with the track only. The rule is a pure function of the track's samples, so it is tested without video.
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
    fuse: bool = False  # also alert when the track's fused looks (from its k-th look on) reach the threshold

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"evidence needs 1 <= k <= n, got k={self.k}, n={self.n}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"a match-score threshold lies in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Verdict:
    person_id: Hashable
    supporting: tuple[int, ...]  # indices (into the samples given) of the samples that named this person
    best: int  # index of the supporting sample with the highest score (for this person)
    score: float  # that highest score; for a fused verdict, the fused template's score
    fused: bool = False  # decided by the track's fused template, not the vote


def decide(
    samples: Sequence[Scored],
    rule: EvidenceRule,
    exclude: Iterable[Hashable] = (),
    fused: Sequence[Candidate] = (),
    looks: int = 0,
) -> Verdict | None:
    """The person the last ``n`` samples support at least ``k`` times above the threshold, if any; else, with
    ``rule.fuse``, the person the track's fused template (``fused``: its candidates, best first, after
    ``looks`` looks) names above the threshold once ``looks >= k``.

    Only a sample's best candidate votes (a face that looks like two listed people equally is no evidence for
    either). ``exclude`` lists people this track has already alerted on. Ties go to more votes, then the
    higher score.
    """
    excluded = set(exclude)
    voted = _vote(samples, rule, excluded)
    if voted is not None or not rule.fuse or looks < rule.k or not fused:
        return voted
    top = fused[0]
    if top.score < rule.threshold or top.person_id in excluded:
        return None
    return _fused_verdict(samples, rule, top)


def _fused_verdict(samples: Sequence[Scored], rule: EvidenceRule, top: Candidate) -> Verdict | None:
    """The fused template's verdict; its probe is the recent sample that scored this person highest."""
    start = max(0, len(samples) - rule.n)
    naming: dict[int, float] = {}
    for index in range(start, len(samples)):
        scores = [c.score for c in samples[index].candidates if c.person_id == top.person_id]
        if scores:
            naming[index] = max(scores)
    if not naming:  # none of the recent looks has the person among its candidates: nothing to show a human
        return None
    best = max(naming, key=lambda i: naming[i])
    return Verdict(top.person_id, tuple(sorted(naming)), best, float(top.score), fused=True)


def _vote(samples: Sequence[Scored], rule: EvidenceRule, excluded: set[Hashable]) -> Verdict | None:
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
