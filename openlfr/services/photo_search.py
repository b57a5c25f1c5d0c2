"""Operator-initiated photo search (OIFR): one face of a photo against the active entries of a watchlist.

``openlfr search``, ``POST /api/search`` and the console's search page all call :func:`search_photo`, in the
caller's transaction. The safeguards, in the order they are checked:

- a stated reason (at least ``MIN_REASON_CHARS`` characters) before anything is decoded or searched; a refused
  request searches nothing and writes nothing;
- only people still listed, and only references of the embedding model the engine makes
  (``store.watchlists.active_references``), searched by the same gallery code deployments use
  (``services.live.build_gallery``, which also drops a listing at the instant it ends);
- every search is audited (``search.photo``) with its reason, by whoever acts (``services.context``);
- the probe is kept nowhere: it is decoded in memory (``vision.image_io.decode_rgb``; uploads never touch the
  disk), its embedding lives only in this call, and nothing of it goes to the audit log, the logs or the
  database, unless the operator records the search for an investigation (``investigation``): then a
  ``PhotoSearch`` row keeps a JPEG of the searched face region only (never the rest of the photo, nor the
  embedding), cleared by retention ``OPENLFR_PROBE_RETENTION_SECONDS`` after the search, as an alert's probe is
  (:func:`purge_search_probes`, run by ``services.retention``).

The probe is embedded with the live profile (``probe_engine(settings)``), as a camera's probe is: the
calibration table measures stills-enrolled references against live-profile probes, so the false-match rate
given for each candidate's score (``fmr``) is the table's own figure, not one for a different comparison.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openlfr.clock import utc_now
from openlfr.enrolment.engines import process_engine
from openlfr.enrolment.gate import FaceChoice, left_to_right
from openlfr.enrolment.photos import ChosenFace, choose_and_analyse, embed_face, face_picture
from openlfr.errors import OpenLFRError
from openlfr.governance import retention
from openlfr.governance.retention import RetentionPolicy
from openlfr.governance.searches import MAX_INVESTIGATION_CHARS, MAX_REASON_CHARS, MAX_TOP, MIN_REASON_CHARS
from openlfr.services import audit_log
from openlfr.services.context import Context
from openlfr.services.live import build_gallery
from openlfr.settings import Settings
from openlfr.store.governance_models import AuditEntry
from openlfr.store.models import Person, ReferenceImage
from openlfr.store.search_models import PhotoSearch
from openlfr.store.watchlists import ListedPerson, active_references, get_watchlist
from openlfr.text import visible_text
from openlfr.vision.engine import FaceEngine
from openlfr.vision.types import Detection, Face, Quality
from openlfr.watchlist.calibration import CalibrationError, CalibrationTable, fpir, load_calibration
from openlfr.watchlist.search import Candidate

AUDIT_ACTION = "search.photo"
REFERENCE_VIEWED = "search.reference_viewed"
REFERENCE_REFUSED = "search.reference_refused"
MAX_GRANTING_SEARCHES = 200  # a person's searches looked through for a picture's grant, newest first
# One photo at a time through a shared engine (the server's worker threads share it).
_ENGINE_LOCK = threading.Lock()


class SearchRefused(OpenLFRError):
    """A photo search was not run as asked (no reason, no face, several faces and none chosen...); nothing was
    searched or written."""


class FaceNotChosen(SearchRefused):
    """The photo shows several faces and none was chosen (or one it does not have): nothing was searched. ``faces``
    are their boxes (left, top, right, bottom in the photo's pixels), numbered from the left as ``face`` counts
    them, and ``size`` the photo's (width, height), so that a person can be shown the faces to pick from."""

    def __init__(self, message: str, faces: list[list[int]], size: tuple[int, int]) -> None:
        super().__init__(message)
        self.faces, self.size = faces, size


@dataclass(frozen=True)
class SearchRequest:
    watchlist: str
    reason: str
    top: int = 5
    face: FaceChoice = None  # which face when the photo shows several: N from the left, or "largest"
    investigation: str | None = None  # record the search (and keep the probe's face) for this investigation

    def checked(self) -> SearchRequest:
        """The request with its text trimmed, or ``SearchRefused`` saying what is missing."""
        reason = visible_text(self.reason or "", "the reason", lines=True).strip()
        if len(reason) < MIN_REASON_CHARS:
            raise SearchRefused(
                f"say why you are searching (at least {MIN_REASON_CHARS} characters; {len(reason)} given): "
                "the reason is kept in the audit log with the search"
            )
        if len(reason) > MAX_REASON_CHARS:
            raise SearchRefused(f"the reason is longer than {MAX_REASON_CHARS} characters")
        if not 1 <= self.top <= MAX_TOP:
            raise SearchRefused(f"top must lie between 1 and {MAX_TOP}, got {self.top}")
        investigation = None
        if self.investigation is not None:
            investigation = visible_text(self.investigation, "the investigation reference").strip()
            if not investigation:
                raise SearchRefused("the investigation reference is empty")
            if len(investigation) > MAX_INVESTIGATION_CHARS:
                raise SearchRefused(f"the investigation reference is longer than {MAX_INVESTIGATION_CHARS} characters")
        if not self.watchlist.strip():
            raise SearchRefused("say which watchlist to search")
        return SearchRequest(self.watchlist.strip(), reason, self.top, self.face, investigation)


@dataclass(frozen=True)
class ProbeFace:
    """The face searched with: which of the photo's faces (numbered from the left), where, and how good."""

    number: int
    faces_found: int
    box: list[int]
    detector_score: float
    quality: Quality


@dataclass(frozen=True)
class SearchCandidate:
    rank: int
    person: str  # the listed person's reference id
    name: str
    category: str
    score: float  # the match score (openlfr.watchlist.score), in [0, 1]
    fmr: float | None  # the calibrated false-match rate of this score; None without a calibration table
    fmr_extrapolated: bool  # the FMR comes from the fitted tail beyond what the calibration measured
    fpir: float | None  # the chance a stranger scores this high against someone on the watchlist (N references)
    reference_image_id: int  # the reference photo that matched best

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, the score to 4 decimals and the rates to 3 significant figures."""
        return asdict(self) | {"score": round(self.score, 4), "fmr": _figures(self.fmr), "fpir": _figures(self.fpir)}


def _figures(rate: float | None) -> float | None:
    return None if rate is None else float(f"{rate:.3g}")


@dataclass(frozen=True)
class PhotoSearchResult:
    watchlist: str
    model_id: str
    searched_at: datetime
    searched_by: str
    references: int  # reference embeddings searched: the N of the false-alert arithmetic
    people: int
    probe: ProbeFace
    candidates: list[SearchCandidate]
    calibration: str  # where each fmr comes from, or why there is none
    investigation: str | None = None
    record_id: int | None = None  # the PhotoSearch row, when recorded for an investigation
    audit_seq: int | None = None  # the audit log entry of this search

    def as_dict(self) -> dict[str, Any]:
        return {
            "watchlist": self.watchlist,
            "model_id": self.model_id,
            "searched_at": self.searched_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "searched_by": self.searched_by,
            "references_searched": self.references,
            "people_searched": self.people,
            "probe": {
                "face": self.probe.number,
                "faces_found": self.probe.faces_found,
                "box": self.probe.box,
                "detector_score": round(self.probe.detector_score, 4),
                "quality": self.probe.quality.as_dict(),
            },
            "candidates": [c.as_dict() for c in self.candidates],
            "calibration": self.calibration,
            "investigation": self.investigation,
            "record_id": self.record_id,
            "audit_seq": self.audit_seq,
        }


# ----- the probe face -----


def _face_list(detections: Sequence[Detection], order: Sequence[int]) -> str:
    return "; ".join(
        f"{number}: {detections[i].box.height} px tall at x {detections[i].box.left}, y {detections[i].box.top}"
        for number, i in enumerate(order, 1)
    )


def _refusal(chosen: ChosenFace, choice: FaceChoice, pixels: np.ndarray) -> SearchRefused:
    """Why the photo gives no face to search with, listing its faces when there are some to choose from."""
    detections = chosen.detections
    if chosen.pick.problem == "no face":
        return SearchRefused("no face found in the photo")
    order = left_to_right([d.box for d in detections])
    faces = _face_list(detections, order)
    if chosen.pick.problem == "several faces":
        message = (
            f"{len(detections)} faces in the photo; choose one with --face N (numbered from the left; the API's "
            f"field face) or --face largest: {faces}"
        )
    else:
        message = f"face {choice} asked for, but the photo shows {len(detections)}: {faces}"
    boxes = [detections[i].box.as_list() for i in order]
    return FaceNotChosen(message, boxes, (int(pixels.shape[1]), int(pixels.shape[0])))


def embed_probe(
    engine: FaceEngine, pixels: np.ndarray, choice: FaceChoice, settings: Settings
) -> tuple[Face, ProbeFace]:
    """The chosen face of the photo, embedded (in memory only), and what the answer says about it."""
    with _ENGINE_LOCK:
        chosen = choose_and_analyse(engine, pixels, choice, settings.enrol_detect_max_side)
        face = chosen.face
        if face is None:
            raise _refusal(chosen, choice, pixels)
        embed_face(engine, face)
    assert chosen.pick.number is not None
    probe = ProbeFace(
        number=chosen.pick.number,
        faces_found=len(chosen.detections),
        box=face.box.as_list(),
        detector_score=float(face.score),
        quality=face.quality,
    )
    return face, probe


# ----- calibration -----


def _calibration(settings: Settings, model_id: str) -> tuple[CalibrationTable | None, str]:
    try:
        table = load_calibration(model_id, explicit=settings.calibration_file, data_dir=settings.data_dir)
    except CalibrationError as exc:
        return None, f"fmr null (no false-match rates): {exc}"
    source = table.source or {}
    measured = (
        f" on {source['dataset']}, {source['identity_pairs']:,} pairs of people" if "identity_pairs" in source else ""
    )
    return table, f"false-match rates (fmr) from the calibration table of {model_id}{measured}"


# ----- the search -----


def probe_engine(settings: Settings) -> FaceEngine:
    """The live-profile engine for these settings, built once per process (the server searches many photos)."""
    return process_engine(settings, stills=False)


def _candidates(
    found: Sequence[Candidate], people: Iterable[ListedPerson], table: CalibrationTable | None, references: int
) -> list[SearchCandidate]:
    """The gallery's best matches, ranked, each with who it is and its calibrated rates among ``references``."""
    by_ref = {p.reference_id: p for p in people}
    candidates = []
    for rank, candidate in enumerate(found, 1):
        person = by_ref[str(candidate.person_id)]
        rate, beyond = table.fmr_at(candidate.score) if table is not None else (None, False)
        candidates.append(
            SearchCandidate(
                rank=rank,
                person=person.reference_id,
                name=person.display_name,
                category=person.category,
                score=candidate.score,
                fmr=rate,
                fmr_extrapolated=beyond,
                fpir=None if rate is None else fpir(rate, references),
                reference_image_id=cast(int, candidate.reference_id),
            )
        )
    return candidates


def search_photo(
    db: Session,
    ctx: Context,
    engine: FaceEngine,
    pixels: np.ndarray,
    request: SearchRequest,
    *,
    now: datetime | None = None,
) -> PhotoSearchResult:
    """Search the watchlist for the chosen face of ``pixels`` (RGB), audit it, and record it if asked.

    ``request`` is checked first: a refused request has searched nothing and written nothing."""
    asked = request.checked()
    moment = now or utc_now()
    settings = ctx.settings
    watchlist = get_watchlist(db, asked.watchlist)
    model_id = engine.model_id
    refs = active_references(db, watchlist.id, model_id, moment)
    if refs.size == 0:
        raise SearchRefused(
            f"watchlist {asked.watchlist!r} has nobody to search for with the {model_id} model "
            "(empty, every entry expired, or enrolled with another model)"
        )

    face, probe = embed_probe(engine, pixels, asked.face, settings)
    assert face.embedding is not None

    person_refs = [refs.people[p].reference_id for p in refs.person_ids]
    expiry = [refs.people[p].expires_at for p in refs.person_ids]
    gallery = build_gallery(settings, refs.embeddings, person_refs, list(refs.image_ids), model_id, expiry)
    (found,) = gallery.search(face.embedding, asked.top, model_id=model_id)
    table, note = _calibration(settings, model_id)
    candidates = _candidates(found, refs.people.values(), table, gallery.size)
    record_id = None
    if asked.investigation is not None:
        record = PhotoSearch(
            searched_at=moment,
            searched_by=ctx.actor,
            investigation=asked.investigation,
            reason=asked.reason,
            watchlist_name=asked.watchlist,
            model_id=model_id,
            candidates=[c.as_dict() for c in candidates],
            probe_jpeg=face_picture(pixels, face.box),
        )
        db.add(record)
        db.flush()
        record_id = record.id
    entry = audit_log.record(
        db,
        ctx.key,
        ctx.actor,
        ctx.role,
        AUDIT_ACTION,
        f"watchlist:{asked.watchlist}",
        {
            "reason": asked.reason,
            "top": asked.top,
            "references": gallery.size,
            # The reference pictures this answer shows ("image"): what its searcher may then see (candidate_reference).
            "candidates": [
                {"person": c.person, "score": round(c.score, 4), "image": c.reference_image_id} for c in candidates
            ],
            "investigation": asked.investigation,
            "record": record_id,
        },
    )
    return PhotoSearchResult(
        watchlist=asked.watchlist,
        model_id=model_id,
        searched_at=moment,
        searched_by=ctx.actor,
        references=gallery.size,
        people=gallery.person_count,
        probe=probe,
        candidates=candidates,
        calibration=note,
        investigation=asked.investigation,
        record_id=record_id,
        audit_seq=entry.seq,
    )


def candidate_reference(db: Session, ctx: Context, image_id: int, now: datetime | None = None) -> bytes | None:
    """The face picture of reference photo ``image_id``, for the person acting, only as a candidate of a photo
    search they ran in the last ``search_reference_seconds`` and while its person is still listed; the view is
    audited (``search.reference_viewed``, with the search's audit entry). None otherwise, audited too
    (``search.reference_refused``): the same answer for an id that exists as for one that does not, so the
    pictures of a watchlist cannot be browsed by id.

    The search's own audit entry is the grant: it names the candidates its answer showed."""
    moment = now or utc_now()
    since = moment - timedelta(seconds=ctx.settings.search_reference_seconds)
    searches = db.execute(
        select(AuditEntry.seq, AuditEntry.details)
        .where(AuditEntry.action == AUDIT_ACTION, AuditEntry.actor == ctx.actor, AuditEntry.at >= since)
        .order_by(AuditEntry.seq.desc())
        .limit(MAX_GRANTING_SEARCHES)
    ).all()
    shown = next(
        (
            (seq, candidate)
            for seq, details in searches
            for candidate in details.get("candidates", [])
            if candidate.get("image") == image_id
        ),
        None,
    )
    data: bytes | None = None
    if shown is not None:
        data = db.scalar(
            select(ReferenceImage.face_jpeg)
            .join(Person, Person.id == ReferenceImage.person_id)
            .where(ReferenceImage.id == image_id, Person.listed_at(moment))
        )
    target = f"reference_image:{image_id}"
    if shown is None or data is None:  # asking for pictures no search showed is how a watchlist would be browsed
        ctx.audit(db, REFERENCE_REFUSED, target, {"search": None if shown is None else shown[0]})
        return None
    seq, candidate = shown
    ctx.audit(db, REFERENCE_VIEWED, target, {"search": seq, "person": candidate.get("person")})
    return data


# ----- retention -----


def purge_search_probes(db: Session, ctx: Context, policy: RetentionPolicy, now: datetime) -> list[int]:
    """Clear the face JPEG of recorded searches older than the probe retention period; the record stays."""
    cutoff = now - policy.probe_ttl
    due = db.execute(
        select(PhotoSearch.id, PhotoSearch.searched_at).where(
            PhotoSearch.probe_jpeg.is_not(None), PhotoSearch.searched_at <= cutoff
        )
    ).all()
    purged = [row_id for row_id, at in due if retention.probe_due(at, False, policy, now)]
    if purged:
        db.execute(update(PhotoSearch).where(PhotoSearch.id.in_(purged)).values(probe_jpeg=None, probe_purged_at=now))
        ctx.audit(db, "retention.search_probes_purged", "photo_searches", {"searches": purged})
    return purged
