"""Open-set 1:N search: which listed people does a probe face look like, and how much.

A :class:`Gallery` holds the reference embeddings of one watchlist (several per person), all from one
embedding model. A probe is scored against a *person* as the best score over that person's references
(max over references): a person enrolled with a frontal and a profile photo is found by whichever is
closer, and adding a reference can only make the person easier to find, never harder. The false-alert
arithmetic (``openlfr.watchlist.calibration``) therefore counts every reference searched: N = number of
reference embeddings, not of people.

With ``person_templates`` (``OPENLFR_SEARCH_PERSON_TEMPLATES``) a person's references are combined into one
template (``openlfr.watchlist.templates``) and the templates are searched: N is then the number of people. The
calibration table (single reference x single probe) stays true for templates within the 2x the product
promises: on LFW with three photos a person, the shipped table's threshold for FPIR 1e-2 and 1e-3 gave an
observed FPIR of 1.5x and 1.3x its target on templates (0.9x on single references), measured by ``openlfr bench
identify --enrol-images 3 --probe-images 3`` (its ``shipped`` check); a template's impostor tail is a little
heavier than one photo's, which the larger per-comparison FMR allowed by the smaller N does not fully absorb.
A candidate still names a reference: the person's photo nearest the probe, for the operator to compare with.

Two ways to search, same answer format:

* exact: cosine = one float32 matrix product, in chunks of the gallery so memory stays bounded at 1M
  references; the top candidates of each chunk are kept with a running per-probe cut-off, so only the first
  chunk is partitioned and later chunks cost a comparison;
* approximate: an inverted-file index (FAISS ``IndexIVFFlat``, inner product), used when the gallery has at
  least ``approximate_above`` references (``OPENLFR_SEARCH_APPROXIMATE_ABOVE``). k-means splits the gallery
  into ``nlist`` cells (4 * sqrt(n)); a probe is compared exactly with the references of its ``nprobe``
  nearest cells. Chosen over HNSW graphs (hnswlib, FAISS HNSW, usearch) by measurement (200k x 128 on two
  shared cores, mated probes at cosine 0.93): IVF reached recall@1 0.993 at 0.3 ms per probe after an 18 s
  build, the HNSW graphs needed 107-320 s to build for the same recall; see ``benchmarks/search.py`` for
  the 1M figures. Cosines it returns are recomputed exactly from the stored vectors, so scores never depend
  on the index; an index can only *miss* a reference (fewer alerts), never invent a higher score.

Whoever builds the gallery decides what is in it (expired entries are left out by the store); the gallery
only refuses what cannot be right: mixed models, wrong shapes, duplicate reference ids, zero vectors. A listing
that ends while the gallery is in use (a deployment runs for hours on its snapshot) ends at its instant: given
each reference's ``expires_at``, every search reads the clock and finds nobody whose listing has ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.watchlist import templates
from openlfr.watchlist.score import match_score

DEFAULT_APPROXIMATE_ABOVE = 200_000
EXACT_SCORE_BLOCK = 16_000_000  # floats in one chunk's score matrix (64 MB)
EXACT_MIN_CHUNK = 65_536


class GalleryError(OpenLFRError):
    """A gallery cannot be built from these arrays, or a probe does not fit it."""


@dataclass(frozen=True)
class Candidate:
    """One listed person a probe resembles: the best-matching reference, its cosine and match score."""

    person_id: Hashable
    reference_id: Hashable
    score: float  # the match score in [0, 1] (see openlfr.watchlist.score)
    cosine: float


@dataclass(frozen=True)
class IvfParams:
    nprobe: int = 64  # cells searched per probe (benchmarks/search.py: recall@1 >= 0.99 at 1M)
    nlist: int | None = None  # cells; None = 4 * sqrt(n) (FAISS's rule of thumb)
    train_per_cell: int = 64  # k-means training sample per cell (FAISS wants at least 39)

    def cells(self, n: int) -> int:
        # 4 sqrt(n) cells, but at least 39 training points per cell (below that k-means is unreliable)
        return self.nlist or int(max(1, min(4 * np.sqrt(n), n // 39, 65_536)))


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return np.ascontiguousarray(embeddings / norms, dtype=np.float32)


def _epoch_seconds(moments: Sequence[datetime | float] | np.ndarray, count: int) -> np.ndarray:
    values = []
    for moment in moments:
        if isinstance(moment, datetime):
            if moment.tzinfo is None:
                raise GalleryError("an expiry must be an aware datetime (UTC), not a naive one")
            values.append(moment.timestamp())
        else:
            values.append(float(moment))
    if len(values) != count:
        raise GalleryError(f"{count} embeddings but {len(values)} expiry times")
    return np.asarray(values, np.float64)


def _single_model_id(model_id: str | Sequence[str]) -> str:
    if isinstance(model_id, str):
        return model_id
    distinct = sorted(set(model_id))
    if len(distinct) > 1:
        raise GalleryError(
            f"references from different embedding models cannot be searched together: {', '.join(distinct)}"
        )
    if not distinct:
        raise GalleryError("no model id given for the gallery")
    return distinct[0]


def exact_top_references(
    gallery: np.ndarray, probes: np.ndarray, m: int, chunk_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` most similar gallery rows per probe: (indices, cosines), each (probes, min(m, n)), best first.

    Exact. Cosines come from one matrix product per chunk of the gallery (chunks bound the score matrix to
    ``EXACT_SCORE_BLOCK`` floats: one chunk for a single probe up to 16M references). Instead of partitioning
    every score, a cut-off is read off a strided sample of each probe's scores (its m-th best is a lower
    bound of the true m-th best) and of the best kept so far; only scores above it (about 64 m per probe)
    are gathered and sorted. So the cost is the matrix product plus one comparison per score.
    """
    n, b = len(gallery), len(probes)
    m = min(m, n)
    if m == 0 or b == 0:
        return np.zeros((b, 0), np.int64), np.zeros((b, 0), np.float32)
    rows_per_chunk = chunk_rows or max(EXACT_MIN_CHUNK, EXACT_SCORE_BLOCK // b)
    best_idx = np.zeros((b, 0), np.int64)
    best_cos = np.zeros((b, 0), np.float32)
    for start in range(0, n, rows_per_chunk):
        scores = probes @ gallery[start : start + rows_per_chunk].T  # (b, c)
        c = scores.shape[1]
        cutoff = np.full(b, -np.inf, np.float32)
        if c > m:
            stride = max(1, min(64, c // (64 * m)))  # sample every 64th score: about 64 m pass the cut
            sample = scores[:, ::stride]
            cutoff = np.partition(sample, sample.shape[1] - m, axis=1)[:, sample.shape[1] - m]
        if best_cos.shape[1] >= m:
            cutoff = np.maximum(cutoff, best_cos.min(axis=1))
        mask = scores >= cutoff[:, None]
        counts = mask.sum(axis=1)
        width = int(counts.max())
        if width == 0:
            continue
        rows, cols = np.nonzero(mask)
        position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        cand_cos = np.full((b, width), -np.inf, np.float32)
        cand_idx = np.zeros((b, width), np.int64)
        cand_cos[rows, position] = scores[rows, cols]
        cand_idx[rows, position] = cols + start
        all_idx = np.concatenate([best_idx, cand_idx], axis=1)
        all_cos = np.concatenate([best_cos, cand_cos], axis=1)
        keep = min(m, all_cos.shape[1])
        if all_cos.shape[1] > keep:
            part = np.argpartition(all_cos, all_cos.shape[1] - keep, axis=1)[:, -keep:]
            all_idx, all_cos = np.take_along_axis(all_idx, part, axis=1), np.take_along_axis(all_cos, part, axis=1)
        best_idx, best_cos = all_idx, all_cos
    order = np.argsort(-best_cos, axis=1, kind="stable")
    return np.take_along_axis(best_idx, order, axis=1), np.take_along_axis(best_cos, order, axis=1)


class Gallery:
    """Reference embeddings of one watchlist, searchable by probe embeddings of the same model."""

    def __init__(
        self,
        embeddings: np.ndarray,
        person_ids: Sequence[Hashable],
        reference_ids: Sequence[Hashable],
        model_id: str | Sequence[str],
        *,
        approximate_above: int = DEFAULT_APPROXIMATE_ABOVE,
        ivf: IvfParams | None = None,
        expires_at: Sequence[datetime | float] | np.ndarray | None = None,
        clock: Callable[[], float] = time.time,
        person_templates: bool = False,
    ) -> None:
        """``expires_at``: per reference, when its person stops being listed (aware datetime or epoch seconds);
        ``clock`` (epoch seconds) is read on every search to drop them at that instant. ``person_templates``:
        search one template per person (``openlfr.watchlist.templates``) instead of each reference."""
        self.model_id = _single_model_id(model_id)
        vectors = np.asarray(embeddings)
        if vectors.ndim != 2:
            raise GalleryError(f"embeddings must be a 2-D array (references x dimensions), got shape {vectors.shape}")
        if not len(person_ids) == len(reference_ids) == len(vectors):
            raise GalleryError(
                f"{len(vectors)} embeddings but {len(person_ids)} person ids and {len(reference_ids)} reference ids"
            )
        if not isinstance(model_id, str) and len(model_id) != len(vectors):
            raise GalleryError(f"{len(vectors)} embeddings but {len(model_id)} model ids")
        if len(set(reference_ids)) != len(reference_ids):
            raise GalleryError("reference ids must be unique within a gallery")
        if len(vectors) and not np.isfinite(vectors).all():
            raise GalleryError("embeddings contain NaN or infinite values")
        if len(vectors) and (np.linalg.norm(vectors, axis=1) < 1e-6).any():
            raise GalleryError("embeddings contain a zero vector")
        self.vectors = _unit_rows(vectors) if len(vectors) else np.zeros(vectors.shape, np.float32)
        self.person_ids = list(person_ids)
        self.reference_ids = list(reference_ids)
        # With templates, the searched rows are the people's templates; each keeps its references (their vectors
        # and ids) so a candidate still names the reference photo nearest the probe.
        self.templates = person_templates and len(vectors) > 0
        self._members: list[np.ndarray] = []
        if self.templates:
            combined, people, rows = templates.person_templates(self.vectors, self.person_ids)
            self._reference_vectors, self._all_reference_ids = self.vectors, self.reference_ids
            self._members = [np.asarray(r, np.int64) for r in rows]
            if expires_at is not None:  # a person's listing ends once: the earliest expiry of their references
                ends = _epoch_seconds(expires_at, len(vectors))
                expires_at = np.array([ends[r].min() for r in rows])
            self.vectors, self.person_ids = combined, people
            self.reference_ids = [self.reference_ids[r[0]] for r in rows]
        codes: dict[Hashable, int] = {}
        self._person_code = np.array([codes.setdefault(p, len(codes)) for p in self.person_ids], np.int64)
        self.person_count = len(codes)
        self.approximate_above = approximate_above
        self.ivf_params = ivf or IvfParams()
        self._index: Any = None
        self._expires_at = None if expires_at is None else _epoch_seconds(expires_at, len(self.vectors))
        self._clock = clock
        # References whose listing has ended, as of the last search (None: none yet), and the next to end.
        self._ended: np.ndarray | None = None
        self._listed_people = self.person_count
        self._next_expiry = (
            float(self._expires_at.min()) if self._expires_at is not None and len(self._expires_at) else math.inf
        )

    @classmethod
    def from_arrays(
        cls,
        embeddings: np.ndarray,
        person_ids: Sequence[Hashable],
        reference_ids: Sequence[Hashable],
        model_id: str | Sequence[str],
        **options: object,
    ) -> Gallery:
        return cls(embeddings, person_ids, reference_ids, model_id, **options)  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        """Number of embeddings searched (references, or templates): the N of the false-alert arithmetic."""
        return len(self.vectors)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    @property
    def uses_index(self) -> bool:
        return self.size >= self.approximate_above

    def _ended_listings(self) -> np.ndarray | None:
        """Which references' listings have ended by now (None while none has); the clock is read every time,
        the mask recomputed only when the next expiry has passed."""
        now = self._clock()
        if now >= self._next_expiry and self._expires_at is not None:
            ended = self._expires_at <= now
            later = self._expires_at[~ended]
            self._listed_people = len(np.unique(self._person_code[~ended]))
            self._ended = ended
            self._next_expiry = float(later.min()) if len(later) else math.inf
        return self._ended

    # ----- the approximate index -----

    def build_index(self) -> None:
        """Build the IVF index now (otherwise the first search above ``approximate_above`` builds it)."""
        import faiss

        params = self.ivf_params
        cells = min(params.cells(self.size), self.size)
        quantiser = faiss.IndexFlatIP(self.dimension)
        index = faiss.IndexIVFFlat(quantiser, self.dimension, cells, faiss.METRIC_INNER_PRODUCT)
        sample = min(self.size, cells * params.train_per_cell)
        rows = np.random.default_rng(0).choice(self.size, sample, replace=False) if sample < self.size else None
        index.train(self.vectors if rows is None else self.vectors[np.sort(rows)])
        index.add(self.vectors)
        self._index = index

    def _approximate_top_references(self, probes: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            self.build_index()
        index = self._index
        m = min(m, self.size)
        index.nprobe = min(self.ivf_params.nprobe, index.nlist)
        _, labels = index.search(probes, m)
        labels = labels.astype(np.int64)
        found = labels >= 0  # fewer than m references in the probed cells: FAISS pads with -1
        safe = np.where(found, labels, 0)
        # Scores come from the stored vectors, not the index, so they never depend on the index.
        cosines = np.where(found, np.einsum("bd,bmd->bm", probes, self.vectors[safe]), -np.inf).astype(np.float32)
        order = np.argsort(-cosines, axis=1, kind="stable")
        return np.take_along_axis(safe, order, axis=1), np.take_along_axis(cosines, order, axis=1)

    # ----- search -----

    def _check_probes(self, probes: np.ndarray, model_id: str | None) -> np.ndarray:
        if model_id is not None and model_id != self.model_id:
            raise GalleryError(f"probe embeddings come from {model_id}, the watchlist from {self.model_id}")
        array = np.asarray(probes, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or (self.size and array.shape[1] != self.dimension):
            raise GalleryError(f"probes must be (n, {self.dimension}) embeddings, got shape {np.shape(probes)}")
        if not np.isfinite(array).all():
            raise GalleryError("probe embeddings contain NaN or infinite values")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)

    def top_references(self, probes: np.ndarray, m: int, *, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reference-level top ``m``: (indices into the gallery, cosines), best first (-inf where the index
        found fewer than ``m``)."""
        unit = self._check_probes(probes, None)
        use_index = self.uses_index if exact is None else not exact
        if use_index and self.size > 0:
            idx, cos = self._approximate_top_references(unit, m)
        else:
            idx, cos = exact_top_references(self.vectors, unit, m)
        ended = self._ended_listings()
        if ended is None or idx.size == 0:
            return idx, cos
        # Ended listings score -inf and sort last, as references the index did not find do.
        cos = np.where(ended[idx], -np.inf, cos).astype(np.float32)
        order = np.argsort(-cos, axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(cos, order, axis=1)

    def search(
        self, probes: np.ndarray, k: int = 5, *, exact: bool | None = None, model_id: str | None = None
    ) -> list[list[Candidate]]:
        """The top ``k`` *people* for each probe (best reference per person), best first.

        ``exact=None`` searches exactly below ``approximate_above`` references and with the index above.
        Pass the probes' ``model_id`` to have a mismatch refused instead of producing meaningless scores.
        """
        unit = self._check_probes(probes, model_id)
        if k < 1:
            raise GalleryError("k must be at least 1")
        ended = self._ended_listings()
        if self.size == 0 or (ended is not None and ended.all()):
            return [[] for _ in range(len(unit))]
        results: list[list[Candidate] | None] = [None] * len(unit)
        pending = np.arange(len(unit))
        m = min(self.size, 4 * k)
        while len(pending):
            idx, cos = self.top_references(unit[pending], m, exact=exact)
            unfinished = []
            for row, probe_index in enumerate(pending):
                people = self._best_per_person(idx[row], cos[row], k, unit[probe_index])
                # Fewer than k people among the top m references: some person may own many of them, or their
                # listing has ended; look deeper, unless every person still listed has been found.
                if len(people) < min(k, self._listed_people) and m < self.size:
                    unfinished.append(probe_index)
                else:
                    results[probe_index] = people
            pending = np.array(unfinished, np.int64)
            m = min(self.size, m * 4)
        return [r if r is not None else [] for r in results]

    def _nearest_reference(self, entry: int, probe: np.ndarray) -> Hashable:
        """The reference an entry stands for; for a template, its person's reference nearest the probe."""
        if not self.templates:
            return self.reference_ids[entry]
        members = self._members[entry]
        nearest = members[int(np.argmax(self._reference_vectors[members] @ probe))]
        return self._all_reference_ids[nearest]

    def _best_per_person(self, idx: np.ndarray, cos: np.ndarray, k: int, probe: np.ndarray) -> list[Candidate]:
        scores = match_score(cos, self.model_id)
        seen: set[int] = set()
        people = []
        for i, c, s in zip(idx.tolist(), cos.tolist(), scores.tolist(), strict=True):
            if c == -np.inf:  # the index found fewer than m references
                break
            code = int(self._person_code[i])
            if code in seen:
                continue
            seen.add(code)
            people.append(Candidate(self.person_ids[i], self._nearest_reference(i, probe), float(s), float(c)))
            if len(people) == k:
                break
        return people

    def best_scores(self, probes: np.ndarray, *, exact: bool | None = None) -> np.ndarray:
        """Each probe's best match score over the whole gallery (the number an alert threshold is applied to)."""
        if self.size == 0:
            return np.zeros(len(np.atleast_2d(probes)))
        if self._ended_listings() is not None:  # the best reference may have ended: ask per person
            found = self.search(probes, 1, exact=exact)
            return np.array([people[0].score if people else 0.0 for people in found])
        _, cos = self.top_references(probes, 1, exact=exact)
        return match_score(cos[:, 0], self.model_id)


def searched_entries(settings: Settings, references: int, people: int) -> int:
    """How many embeddings a gallery built with these settings searches: the N a threshold is picked for."""
    return people if settings.search_person_templates else references


def gallery_options(settings: Settings) -> dict[str, Any]:
    """The search options a deployment's settings ask for, as keyword arguments of :class:`Gallery`."""
    return {
        "approximate_above": settings.search_approximate_above,
        "ivf": IvfParams(nprobe=settings.search_ivf_nprobe),
        "person_templates": settings.search_person_templates,
    }
