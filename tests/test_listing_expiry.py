"""A listing that ends inside a deployment's window ends at its instant, and a window has a maximum length.

The gallery reads the clock on every search and finds nobody whose listing has ended (exact and indexed search);
a real pipeline on a synthetic clip raises no alert after the instant; a snapshot taken at authorisation keeps
each entry's expiry on SQLite and PostgreSQL; a window longer than ``deployment_max_window_hours`` is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from openlfr.governance import deployments as rules
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role
from openlfr.settings import Settings, StreamSettings, get_settings
from openlfr.store import open_store
from openlfr.store.governance_models import SnapshotPerson
from openlfr.store.models import Person, Watchlist
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.pipeline import AlertFound, CameraPipeline
from openlfr.stream.source import CameraConfig, Capture
from openlfr.vision.dlib_backend import HogDetector
from openlfr.vision.engine import model_id_for
from openlfr.watchlist.search import Gallery, GalleryError
from tests.storekit import person_row, reference_image_row, sighting
from tests.streamkit import portrait, write_face_clip, yuv_frames

KEY = b"0123456789abcdef0123456789abcdef"
MODEL = "m"
SNAPSHOT_MODEL = model_id_for(Settings())
T0 = 1_800_000_000.0  # an epoch second for galleries driven by a clock of the test's own


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def unit_rows(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, 64)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "ivf"])
def test_a_gallery_drops_a_listing_at_its_instant(indexed: bool) -> None:
    vectors = unit_rows(400, 3)
    people = [f"p{i // 2}" for i in range(400)]  # two references each
    ends = np.full(400, T0 + 1e9)
    ends[:2] = T0 + 10.0  # p0 ends at T0 + 10 s
    clock = Clock(T0)
    options = {"approximate_above": 100} if indexed else {}
    gallery = Gallery(vectors, people, list(range(400)), MODEL, expires_at=ends, clock=clock, **options)
    assert gallery.uses_index is indexed
    probe = vectors[1]
    clock.now = T0 + 10.0 - 1e-3
    assert gallery.search(probe, 3)[0][0].person_id == "p0"
    assert gallery.best_scores(probe)[0] == pytest.approx(1.0)
    clock.now = T0 + 10.0  # expires_at is the first instant the person is no longer listed
    found = gallery.search(probe, 3)[0]
    assert "p0" not in [c.person_id for c in found] and len(found) == 3
    assert gallery.best_scores(probe)[0] == pytest.approx(found[0].score)
    assert gallery.best_scores(probe)[0] < 0.9
    clock.now = T0 + 2e9  # everyone's listing has ended
    assert gallery.search(vectors[:5], 3) == [[]] * 5
    assert (gallery.best_scores(vectors[:5]) == 0).all()


def test_a_gallery_expiry_must_be_aware_and_one_per_reference() -> None:
    vectors = unit_rows(3, 1)
    with pytest.raises(GalleryError, match="aware"):
        Gallery(vectors, ["a", "b", "c"], [1, 2, 3], MODEL, expires_at=[datetime(2030, 1, 1)] * 3)
    with pytest.raises(GalleryError, match="3 embeddings but 2 expiry"):
        Gallery(vectors, ["a", "b", "c"], [1, 2, 3], MODEL, expires_at=[T0, T0])


def test_the_pipeline_raises_no_alert_after_the_listing_ends(engine, tmp_path: Path, astronaut) -> None:  # type: ignore[no-untyped-def]
    """Two separate sightings of one listed face, 2.6 s apart; the listing ends between them (at 2.0 s)."""
    face = portrait(astronaut)
    clip = write_face_clip(tmp_path / "twice.mp4", face, seconds=4.0, visible=[(0.0, 1.2), (2.6, 4.0)])
    (listed,) = [f for f in engine.faces(astronaut) if f.box.top < 200]
    filler = np.random.default_rng(5).normal(size=(20, len(listed.embedding))).astype(np.float32)
    vectors = np.vstack([listed.embedding[None, :], filler / np.linalg.norm(filler, axis=1, keepdims=True)])
    people = ["eileen", *[f"filler-{i}" for i in range(20)]]

    def run(ends_at_media_s: float) -> list[AlertFound]:
        clock = Clock(T0)  # the wall clock of this run: T0 + the clip's media time
        expiry = [T0 + ends_at_media_s] + [T0 + 1e9] * 20
        gallery = Gallery(vectors, people, list(range(21)), engine.model_id, expires_at=expiry, clock=clock)
        camera = CameraConfig("door", str(clip))
        pipeline = CameraPipeline(
            camera, StreamSettings(cooldown_s=0.0), engine, HogDetector(0), gallery, EvidenceRule(0.8)
        )
        alerts: list[AlertFound] = []
        for yuv, frame in yuv_frames(Capture(camera).frames()):
            clock.now = T0 + frame.media_time
            alerts += pipeline.process(yuv, frame.clock, frame.arrival, frame.media_time).alerts
        pipeline.finish()
        return alerts

    listed_throughout = run(1e9)
    assert [a.person_id for a in listed_throughout] == ["eileen", "eileen"]  # one alert per sighting
    assert listed_throughout[1].media_time >= 2.6
    ends_between = run(2.0)
    assert [a.person_id for a in ends_between] == ["eileen"]
    assert all(a.media_time < 2.0 for a in ends_between)


def _watchlist_with(db: sa.orm.Session, now: datetime, expiries: dict[str, datetime]) -> None:
    watchlist = Watchlist(name="wanted", purpose="test", created_by="admin", created_at=now)
    db.add(watchlist)
    for index, (ref, expires) in enumerate(expiries.items()):
        person = person_row(ref, watchlist=watchlist, added_at=now - timedelta(days=1), expires_at=expires)
        # Of the model the deployment will match with: a snapshot refuses people with no embedding of it.
        person.images.append(reference_image_row(unit_rows(1, 10 + index)[0], SNAPSHOT_MODEL, f"{index:064d}"))
        db.add(person)


def _draft(db: sa.orm.Session, start: datetime, hours: float) -> int:
    from openlfr.services import deployments
    from openlfr.services.context import Context

    olly = Context(get_settings(), KEY, "olly", Role.ADMIN.value)
    row = deployments.create_draft(
        db,
        olly,
        name="High street",
        place="Outside the station",
        purpose="Locate people wanted for violent offences",
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
        cameras=[{"name": "entrance", "source": "rtsp://127.0.0.1:8554/cam"}],
        watchlist="wanted",
        threshold=0.6,
        target_fpir=None,
    )
    return row.id


def _authorise(db: sa.orm.Session, deployment_id: int, now: datetime | None = None) -> None:
    from openlfr.services import deployments
    from openlfr.services.context import Context

    ava = Context(get_settings(), KEY, "ava", Role.AUTHORISER.value)
    deployments.authorise(db, ava, deployment_id, "Wanted offenders are known to use this station daily.", now)


def test_a_snapshot_keeps_each_listing_expiry_and_its_gallery_honours_it(store_url: str) -> None:
    from openlfr.services.live import snapshot_watchlist

    now = datetime.now(UTC)
    then = now - timedelta(hours=2)  # authorised two hours ago, when both listings were still current
    ended, current = now - timedelta(hours=1), now + timedelta(hours=1)
    store = open_store(get_settings())
    try:
        with store.session() as db:
            _watchlist_with(db, then, {"P-ended": ended, "P-current": current})
        with store.session() as db:
            deployment_id = _draft(db, then, 4)
            _authorise(db, deployment_id, then)
        with store.session() as db:
            kept = dict(db.execute(sa.select(SnapshotPerson.person_ref, SnapshotPerson.expires_at)).all())
        assert kept == {"P-ended": ended, "P-current": current}
        gallery = snapshot_watchlist(store, deployment_id, get_settings()).gallery
        assert gallery.size == 2  # the authorised snapshot, both people; one no longer searched
        # Each person's own reference as the probe: P-ended is found by nobody's, P-current by its own.
        (of_ended,), (of_current,) = unit_rows(1, 10), unit_rows(1, 11)
        assert [c.person_id for c in gallery.search(of_ended, 2)[0]] == ["P-current"]
        (best,) = gallery.search(of_current, 2)[0]
        assert (best.person_id, round(best.score, 3)) == ("P-current", 1.0)
    finally:
        store.close()


def test_a_window_longer_than_the_maximum_is_refused(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    store = open_store(get_settings())
    try:
        with store.session() as db:
            _watchlist_with(db, now, {"P1": now + timedelta(days=30)})
        with store.session() as db:
            century = _draft(db, now, 100 * 365.25 * 24)
            day = _draft(db, now, 24)
        with pytest.raises(TransitionRefused, match="876,600 h long; at most 24 h"), store.session() as db:
            _authorise(db, century)
        with store.session() as db:
            _authorise(db, day)  # exactly the maximum is allowed
        monkeypatch.setenv("OPENLFR_DEPLOYMENT_MAX_WINDOW_HOURS", "1000000")
        get_settings.cache_clear()
        with store.session() as db:
            _authorise(db, century)
    finally:
        store.close()


def test_the_window_rule_itself() -> None:
    start = datetime(2026, 5, 1, 10, tzinfo=UTC)
    rules.check_window(start, start + timedelta(hours=24), timedelta(hours=24))
    with pytest.raises(TransitionRefused, match="24 h long; at most 24 h"):
        rules.check_window(start, start + timedelta(hours=24, microseconds=1), timedelta(hours=24))
    with pytest.raises(TransitionRefused, match=r"36\.5 h long; at most 12 h"):
        rules.check_window(start, start + timedelta(hours=36.5), timedelta(hours=12))


# ----- a listing that ends after authorisation (expired early, removed): refused at the database -----


def _sighting(person: str, **given: Any) -> AlertFound:
    """A sighting whose probe names its person, so a stored byte of it would be found."""
    return sighting(person, probe=b"\xff\xd8probe of " + person.encode(), model_id=SNAPSHOT_MODEL, **given)


def test_an_alert_for_a_listing_ended_after_authorisation_is_refused(store_url: str) -> None:
    """Expired early, removed, or past the snapshot's own expiry at the sighting: nothing written, counted."""
    from openlfr.alerts.database import AlertDatabase, ListingEnded
    from openlfr.alerts.dispatch import AlertDispatcher
    from openlfr.services import watchlists
    from openlfr.services.context import Context
    from openlfr.store.alert_models import Alert

    now = datetime.now(UTC)
    later = now + timedelta(days=30)
    store = open_store(get_settings())
    try:
        with store.session() as db:
            _watchlist_with(db, now, {"P-kept": later, "P-expired": later, "P-removed": later, "P-soon": later})
        with store.session() as db:
            deployment_id = _draft(db, now - timedelta(minutes=1), 4)
            _authorise(db, deployment_id)
        ann = Context(get_settings(), KEY, "ann", Role.ADMIN.value)
        with store.session() as db:
            watchlists.expire(db, ann, "wanted", "P-expired", now - timedelta(seconds=1))
            watchlists.expire(db, ann, "wanted", "P-soon", now + timedelta(minutes=5))
            watchlists.remove_person(db, ann, "wanted", "P-removed")
        database = AlertDatabase(store)
        write = lambda found: database.write(found, watchlist_name="wanted", names={}, deployment_id=deployment_id)  # noqa: E731
        for person in ("P-expired", "P-removed"):
            with pytest.raises(ListingEnded, match=f"{person} was no longer listed"):
                write(_sighting(person, seen_at=now))
        assert write(_sighting("P-kept", seen_at=now))[1] is True
        assert write(_sighting("P-soon", seen_at=now, track_id=8))[1] is True  # still listed at the sighting
        with pytest.raises(ListingEnded):
            write(
                _sighting("P-soon", seen_at=now + timedelta(minutes=5), track_id=9)
            )  # at its new end: no longer listed
        with pytest.raises(ListingEnded):  # the snapshot's own expiry holds even if the listing were extended
            write(_sighting("P-kept", seen_at=later + timedelta(seconds=1), track_id=10))
        # Through the dispatcher (what a live deployment uses): refused ones counted, the rest written.
        dispatcher = AlertDispatcher(
            database, (), watchlist_name="wanted", names={}, deployment_id=deployment_id, held_max=10
        )
        for person, track in [("P-removed", 20), ("P-kept", 21), ("P-expired", 22)]:
            dispatcher.on_alert(_sighting(person, seen_at=now, track_id=track))
        assert dispatcher.drain(30)
        status = dispatcher.status()
        assert (status.written, status.refused, status.lost, status.held) == (1, 2, 0, 0)
        dispatcher.close()
        with store.session() as db:
            rows = db.execute(sa.select(Alert.person_ref, Alert.track_id, Alert.probe_jpeg).order_by(Alert.id)).all()
        assert [(r[0], r[1]) for r in rows] == [("P-kept", 7), ("P-soon", 8), ("P-kept", 21)]
        assert not any(b"P-expired" in r[2] or b"P-removed" in r[2] for r in rows)
    finally:
        store.close()


def test_a_running_deployment_brings_its_snapshot_down_to_the_listings(store_url: str) -> None:
    """The watch every run keeps: ended entries are tightened once (one audit), and the run is told which."""
    from openlfr.runtime.listing_watch import ListingWatch
    from openlfr.services import watchlists
    from openlfr.services.context import Context
    from openlfr.store.governance_models import AuditEntry

    now = datetime.now(UTC)
    later = now + timedelta(days=30)
    store = open_store(get_settings())
    told: list[list[str]] = []
    try:
        with store.session() as db:
            _watchlist_with(db, now, {"P-kept": later, "P-expired": later, "P-removed": later})
        with store.session() as db:
            deployment_id = _draft(db, now - timedelta(minutes=1), 4)
            _authorise(db, deployment_id)
        system = Context.system(get_settings(), KEY)
        watches = [ListingWatch(store, system, deployment_id, told.append) for _ in range(2)]  # two processes
        for watch in watches:
            watch.settle()
            watch.round()
        assert told == []
        ann = Context(get_settings(), KEY, "ann", Role.ADMIN.value)
        ends = now + timedelta(seconds=30)
        with store.session() as db:
            watchlists.expire(db, ann, "wanted", "P-expired", ends)
            watchlists.remove_person(db, ann, "wanted", "P-removed")
        for watch in watches:
            watch.round()
            watch.round()  # nothing new the second time
        assert told == [["P-expired", "P-removed"], ["P-expired", "P-removed"]]
        with store.session() as db:
            kept = dict(db.execute(sa.select(SnapshotPerson.person_ref, SnapshotPerson.expires_at)).all())
            audits = db.scalars(
                sa.select(AuditEntry.details).where(AuditEntry.action == "deployment.snapshot_listing_ended")
            ).all()
        assert kept["P-kept"] == later and kept["P-expired"] == ends
        assert now - timedelta(seconds=5) < kept["P-removed"] < datetime.now(UTC)
        assert len(audits) == 1 and sorted(audits[0]["people"]) == ["P-expired", "P-removed"], audits
    finally:
        store.close()


# ----- a real deployment: the listing expired early mid-run -----


def doubled_clip(clip: Path, folder: Path) -> Path:
    """The clip twice in a row: the person is seen again 10 s after the first sighting."""
    import subprocess

    listing = folder / "twice.txt"
    listing.write_text(f"file '{clip}'\nfile '{clip}'\n")
    out = folder / "twice.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)], check=True
    )
    return out


@pytest.mark.data
@pytest.mark.slow
def test_a_listing_expired_mid_deployment_raises_no_alert_after_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``openlfr serve`` runs the Hamilton clip twice over (cooldown 0: without the expiry each pass alerts, twice
    in its first 4 s); after the first alert Lin-Manuel Miranda's listing is expired (as ``openlfr watchlist
    expire`` does): the run reloads its pipeline within seconds, nothing is raised after the listing's end (so
    none in the second pass), and the snapshot entry ends when the listing does."""
    import os

    from openlfr.services import watchlists
    from openlfr.services.context import Context
    from tests.conftest import require_data
    from tests.serverkit import build_app, configure
    from tests.test_faults_live import PERSON, Serve, authorise, incident_record, prepare_deployment, wait_for

    clip = doubled_clip(require_data("video", "short_hamilton_clip.mp4"), tmp_path)
    stills = require_data("stills")
    configure(monkeypatch, OPENLFR_STREAM_COOLDOWN_S="0")
    app = build_app()
    deployment_id = prepare_deployment(app, clip, stills)
    server = Serve(dict(os.environ))
    server.start()
    try:
        authorise(app, deployment_id)
        wait_for("the first alert", lambda: bool(alerts_seen(app, deployment_id)), 120, every=0.2)
        # What `openlfr watchlist expire hamilton --person LMM-001` does (in-process: the command's start-up takes
        # longer than the clip on a busy machine).
        with app.state.server.store.session() as db:
            watchlists.expire(db, Context.local(get_settings(), "ann"), "hamilton", PERSON, datetime.now(UTC))
        with app.state.server.sessions() as db:
            expired_at = db.scalar(sa.select(Person.expires_at).where(Person.reference_id == PERSON))
        assert expired_at is not None
        reloaded = wait_for(
            "the run to reload without the person",
            lambda: "ended after authorisation" in incident_record(app, deployment_id)[0],
            20,
            every=0.2,
        )
        wait_for(
            "the clip to end", lambda: "the source ended" in incident_record(app, deployment_id)[0], 120, every=0.5
        )
        run = server.pipeline(deployment_id)
        seen = alerts_seen(app, deployment_id)
        print(f"alerts {seen}; expired at {expired_at:%H:%M:%S.%f}; reloaded {reloaded:.1f} s later; run {run}")
        assert seen and {person for person, _, _ in seen} == {PERSON}, seen
        assert all(at < expired_at for _, at, _ in seen), seen
        assert all(media < 10.0 for _, _, media in seen), seen  # none in the second pass
        assert run["restarts"] == 0 and run["alerts_lost"] == 0, run
        with app.state.server.sessions() as db:
            ends = db.scalar(sa.select(SnapshotPerson.expires_at).where(SnapshotPerson.deployment_id == deployment_id))
        assert ends == expired_at
        _, audit = incident_record(app, deployment_id)
        assert ("system", "deployment.snapshot_listing_ended") in audit, audit
    finally:
        server.stop()
        app.state.server.store.close()


def alerts_seen(app: object, deployment_id: int) -> list[tuple[str, datetime, float]]:
    """(person, seen at, media time) of the deployment's alerts."""
    from openlfr.store.alert_models import Alert

    with app.state.server.sessions() as db:  # type: ignore[attr-defined]
        rows = db.execute(
            sa.select(Alert.person_ref, Alert.seen_at, Alert.media_time_s).where(Alert.deployment_id == deployment_id)
        )
        return [(str(person), at, float(media)) for person, at, media in rows]
