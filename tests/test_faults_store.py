"""The store when things go wrong, on SQLite and a real PostgreSQL: a sighting written twice is one alert; a purged
probe image or removed person leaves no byte of their JPEG in the database's files; the SQLite file is private;
migration 0004 upgrades a database that already holds doubled alerts and old snapshots."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.alerts.database import AlertDatabase
from openlfr.settings import get_settings
from openlfr.store import Store, open_store
from openlfr.store import db as store_db
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import Deployment, SnapshotPerson
from openlfr.store.models import ReferenceImage, Watchlist
from openlfr.vision.engine import model_id_for
from tests.postgres import PostgresServer
from tests.storekit import person_row, reference_image_row, sighting

WINDOW = 64  # bytes: any run of the image this long found in a file counts as a surviving chunk


def recognisable_jpeg(seed: int) -> bytes:
    """A JPEG of noise: no 64-byte run of it occurs anywhere by chance."""
    noise = np.random.default_rng(seed).integers(0, 256, (160, 160, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "JPEG", quality=90)
    return out.getvalue()


def surviving_chunks(image: bytes, files: list[Path]) -> dict[str, int]:
    """For each file, how many of the image's 64-byte windows (at every offset) occur in it."""
    found = {}
    for path in files:
        if not path.exists():
            continue
        data = path.read_bytes()
        present = {data[i : i + WINDOW] for i in range(len(data) - WINDOW + 1)}
        hits = sum(image[i : i + WINDOW] in present for i in range(len(image) - WINDOW + 1))
        if hits:
            found[path.name] = hits
    return found


def sqlite_files(store: Store) -> list[Path]:
    main = Path(str(store.engine.url.database))
    return [main, main.with_name(main.name + "-wal"), main.with_name(main.name + "-shm")]


def database_files(store: Store, request: pytest.FixtureRequest, tables: list[str]) -> list[Path]:
    """The files the database keeps these tables in: SQLite's three; PostgreSQL's table and TOAST files."""
    if store.engine.dialect.name == "sqlite":
        return sqlite_files(store)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    files = []
    with store.engine.connect() as connection:
        connection.exec_driver_sql("CHECKPOINT")  # what PostgreSQL holds in memory, written to the files
        for table in tables:
            heap, toast = connection.execute(
                sa.text(
                    "SELECT pg_relation_filepath(oid), pg_relation_filepath(reltoastrelid) FROM pg_class "
                    "WHERE relname = :table"
                ),
                {"table": table},
            ).one()
            files += [server.data / heap, server.data / toast]
    return files


def deployment_row(store: Store) -> int:
    now = datetime.now(UTC)
    with store.session() as db:
        row = Deployment(
            name="High street",
            place="Outside the station",
            purpose="test",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
            cameras=[{"name": "entrance", "source": "clip.mp4"}],
            watchlist_name="wanted",
            threshold=0.6,
            created_by="olly",
        )
        db.add(row)
        db.flush()
        # The people the tests' sightings name, listed and in the snapshot: an alert is written only for them.
        watchlist = Watchlist(name="wanted", purpose="test", created_by="admin", created_at=now)
        for ref in ("P1", "P2"):
            watchlist.people.append(person_row(ref, added_at=now))
            db.add(
                SnapshotPerson(
                    deployment_id=row.id,
                    person_ref=ref,
                    display_name=ref,
                    category="wanted_offence",
                    expires_at=now + timedelta(days=1),
                )
            )
        db.add(watchlist)
        return row.id


def alert_rows(store: Store) -> list[tuple[int, int, str]]:
    with store.session() as db:
        return [tuple(r) for r in db.execute(sa.select(Alert.id, Alert.track_id, Alert.person_ref).order_by(Alert.id))]


def test_a_sighting_written_twice_is_one_alert(store_url: str) -> None:
    store = open_store(get_settings())
    try:
        deployment_id = deployment_row(store)
        alerts = AlertDatabase(store)
        found = sighting(probe=b"\xff\xd8probe")
        first, new = alerts.write(
            found, watchlist_name="wanted", names={"P1": "Person One"}, deployment_id=deployment_id
        )
        again, again_new = alerts.write(found, watchlist_name="wanted", names={}, deployment_id=deployment_id)
        assert (new, again_new) == (True, False)
        assert (again.id, again.uid, again.person_name, again.probe_jpeg) == (
            first.id,
            first.uid,
            "Person One",
            b"\xff\xd8probe",
        )
        # commit (what the dispatcher calls) answers the stored alert too, without an error.
        assert alerts.commit(found, watchlist_name="wanted", names={}, deployment_id=deployment_id).id == first.id
        assert alert_rows(store) == [(first.id, 7, "P1")]
        # Another track, or another person on the same track, is another sighting.
        other_track = alerts.commit(
            sighting(probe=b"x", track_id=8), watchlist_name="wanted", names={}, deployment_id=deployment_id
        )
        other_person = alerts.commit(
            sighting(probe=b"x", person="P2"), watchlist_name="wanted", names={}, deployment_id=deployment_id
        )
        assert len({first.id, other_track.id, other_person.id}) == 3

        # Two processes writing the same new sighting at the same moment: one row, both told its id.
        racing = sighting(probe=b"race", track_id=99)
        barrier, ids = threading.Barrier(4), []

        def write() -> None:
            barrier.wait()
            ids.append(alerts.commit(racing, watchlist_name="wanted", names={}, deployment_id=deployment_id).id)

        threads = [threading.Thread(target=write) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 1 and len(ids) == 4
        assert [r for r in alert_rows(store) if r[1] == 99] == [(ids[0], 99, "P1")]
    finally:
        store.close()


def test_outside_a_deployment_alerts_are_not_merged(store_url: str) -> None:
    """A bare scan has no deployment to key on: each alert it raises is written (NULLs never collide)."""
    store = open_store(get_settings())
    try:
        alerts = AlertDatabase(store)
        found = sighting(probe=b"\xff\xd8")
        ids = {alerts.commit(found, watchlist_name="w", names={}).id for _ in range(2)}
        assert len(ids) == 2
    finally:
        store.close()


def test_a_purged_probe_image_leaves_no_chunk_in_the_database_files(
    store_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openlfr.services.retention import enforce_once

    monkeypatch.setenv("OPENLFR_PROBE_RETENTION_SECONDS", "0")
    get_settings.cache_clear()
    probe = recognisable_jpeg(1)
    store = open_store(get_settings())
    try:
        deployment_id = deployment_row(store)
        record = AlertDatabase(store).commit(
            sighting(probe=probe), watchlist_name="wanted", names={}, deployment_id=deployment_id
        )
        files = database_files(store, request, ["alerts"])
        before = surviving_chunks(probe, files)
        assert sum(before.values()) > len(probe) // 2, before  # the check finds the image while it is there
        report = enforce_once(store, get_settings())
        assert report.probes_purged == [record.id]
        files = database_files(store, request, ["alerts"])
        assert surviving_chunks(probe, files) == {}
        with store.session() as db:
            assert db.scalar(sa.select(Alert.probe_jpeg).where(Alert.id == record.id)) is None
    finally:
        store.close()


def test_a_reader_on_an_old_snapshot_delays_the_scrub_until_it_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: a transaction still reading the old rows keeps the WAL from being truncated; the next use of the
    store after it ends finishes the scrub, without another purge."""
    import sqlite3

    from openlfr.services.retention import enforce_once

    monkeypatch.setenv("OPENLFR_PROBE_RETENTION_SECONDS", "0")
    # A long busy timeout, so that a purge done in less shows the scrub waited only SCRUB_WAIT_MS for the reader,
    # however slow a busy machine makes the rest of the purge.
    monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_MS", 60_000)
    get_settings.cache_clear()
    probe = recognisable_jpeg(5)
    store = open_store(get_settings())
    try:
        deployment_id = deployment_row(store)
        AlertDatabase(store).commit(
            sighting(probe=probe), watchlist_name="wanted", names={}, deployment_id=deployment_id
        )
        files = sqlite_files(store)
        reader = sqlite3.connect(files[0])
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
        started = time.monotonic()
        assert enforce_once(store, get_settings()).probes_purged
        assert time.monotonic() - started < 60  # waited SCRUB_WAIT_MS for the reader, not the busy timeout
        assert surviving_chunks(probe, files)  # still in the WAL: the reader may need those pages
        reader.rollback()
        reader.close()
        with store.session() as db:
            db.execute(sa.select(Alert.id)).all()
        assert surviving_chunks(probe, files) == {}
    finally:
        store.close()


def listed_with_photo(store: Store, photo: bytes, now: datetime) -> None:
    """Watchlist "wanted" with one person, P1, whose one reference photo is ``photo``."""
    with store.session() as db:
        watchlist = Watchlist(name="wanted", purpose="test", created_by="admin", created_at=now)
        person = person_row(
            "P1", watchlist=watchlist, display_name="Person One", reason="", legal_basis="", added_at=now
        )
        # Of the installation's model: a deployment's snapshot takes only that model's embeddings.
        model_id = model_id_for(get_settings())
        person.images.append(reference_image_row(np.ones(128, np.float32), model_id, "a" * 64, face_jpeg=photo))
        db.add(watchlist)


def remove_p1(store: Store) -> None:
    """As the server does: in a session of its own factory (not ``Store.session``), committed by hand."""
    from openlfr.enrolment.service import remove_person

    with sa.orm.sessionmaker(store.engine)() as db:
        assert remove_person(db, db.scalars(sa.select(Watchlist)).one(), "P1") == 1
        db.commit()
    with store.session() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(ReferenceImage)) == 0


def test_a_removed_person_leaves_no_chunk_of_their_photo(store_url: str, request: pytest.FixtureRequest) -> None:
    photo = recognisable_jpeg(2)
    store = open_store(get_settings())
    try:
        listed_with_photo(store, photo, datetime.now(UTC))
        tables = ["reference_images", "watchlist_people"]
        assert surviving_chunks(photo, database_files(store, request, tables))
        remove_p1(store)
        assert surviving_chunks(photo, database_files(store, request, tables)) == {}
    finally:
        store.close()


def test_a_destroyed_snapshot_leaves_no_chunk_of_its_photos(
    store_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openlfr.services import deployments
    from openlfr.services.context import Context
    from openlfr.services.retention import enforce_once

    monkeypatch.setenv("OPENLFR_SNAPSHOT_RETENTION_SECONDS", "0")
    get_settings.cache_clear()
    settings, photo, now = get_settings(), recognisable_jpeg(4), datetime.now(UTC)
    store = open_store(settings)
    try:
        listed_with_photo(store, photo, now - timedelta(hours=3))
        with store.session() as db:  # a two-hour deployment that ended an hour ago; its snapshot copied the photo
            row = deployments.create_draft(
                db,
                Context(settings, b"k" * 32, "olly", "admin"),
                name="High street",
                place="Outside the station",
                purpose="test",
                starts_at=now - timedelta(hours=3),
                ends_at=now - timedelta(hours=1),
                cameras=[{"name": "entrance", "source": "rtsp://127.0.0.1:8554/cam"}],
                watchlist="wanted",
                threshold=0.6,
                target_fpir=None,
            )
            ava = Context(settings, b"k" * 32, "ava", "authoriser")
            deployments.authorise(db, ava, row.id, "Wanted offenders use this station daily.", now - timedelta(hours=2))
        remove_p1(store)  # the watchlist's own copy is gone: only the snapshot's is left
        tables = ["snapshot_images", "snapshot_people"]
        assert surviving_chunks(photo, database_files(store, request, tables))
        assert enforce_once(store, settings).snapshots_destroyed == [row.id]
        assert surviving_chunks(photo, database_files(store, request, tables)) == {}
    finally:
        store.close()


def test_the_sqlite_database_is_created_private(isolated_data_dir: Path) -> None:
    os.umask(0o022)  # the usual umask, which would leave a new file readable by everyone
    store = open_store(get_settings())
    try:
        with store.session() as db:
            db.add(Watchlist(name="w", purpose="", created_by="a", created_at=datetime.now(UTC)))
        files = [p for p in isolated_data_dir.iterdir() if p.name.startswith("openlfr.db")]
        assert {p.name for p in files} >= {"openlfr.db", "openlfr.db-wal", "openlfr.db-shm"}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    finally:
        store.close()


def test_migration_0004_upgrades_doubled_alerts_and_old_snapshots(store_url: str) -> None:
    from alembic import command

    from openlfr.store.db import _alembic_config, make_engine, migrate, normalise_url

    engine = make_engine(normalise_url(store_url))
    try:
        with engine.connect() as connection:
            command.upgrade(_alembic_config(connection), "0003_alerts")
            connection.commit()
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        listed = now + timedelta(days=3)
        with engine.begin() as c:
            c.execute(
                sa.text(
                    "INSERT INTO watchlists (id, name, purpose, created_by, created_at) "
                    "VALUES (1, 'wanted', '', 'a', :now)"
                ),
                {"now": now},
            )
            c.execute(
                sa.text(
                    "INSERT INTO watchlist_people (id, watchlist_id, reference_id, display_name, category, reason, "
                    "legal_basis, added_by, added_at, expires_at) "
                    "VALUES (1, 1, 'P1', 'One', 'other', '', '', 'a', :now, :listed)"
                ),
                {"now": now, "listed": listed},
            )
            c.execute(
                sa.text(
                    "INSERT INTO deployments (id, name, place, purpose, starts_at, ends_at, cameras, watchlist_name, "
                    "status, created_by, created_at, snapshot_taken_at, watchlist_size, frames, faces_seen, tracks, "
                    "alerts_raised) VALUES (1, 'd', 'p', 'p', :now, :later, '[]', 'wanted', 'authorised', 'o', :now, "
                    ":now, 2, 0, 0, 0, 0)"
                ),
                {"now": now, "later": now + timedelta(hours=2)},
            )
            for ref in ("P1", "P-gone"):  # P-gone: removed from the watchlist since
                c.execute(
                    sa.text(
                        "INSERT INTO snapshot_people (deployment_id, person_ref, display_name, category, reason) "
                        "VALUES (1, :ref, :ref, 'other', '')"
                    ),
                    {"ref": ref},
                )
            for alert_id in (1, 2, 3):  # one sighting raised three times by restarts, before the constraint
                c.execute(
                    sa.text(
                        "INSERT INTO alerts (id, uid, created_at, seen_at, deployment_id, watchlist_name, camera, "
                        "track_id, person_ref, person_name, score, threshold, model_id, candidates, evidence) "
                        "VALUES (:id, :uid, :now, :now, 1, 'wanted', 'stage', 4, 'P1', '', 0.9, 0.6, 'm', '[]', '{}')"
                    ),
                    {"id": alert_id, "uid": f"u{alert_id}", "now": now},
                )
        migrate(engine)
        with engine.connect() as c:
            tracks = c.execute(sa.text("SELECT id, track_id FROM alerts ORDER BY id")).all()
            expiry = dict(c.execute(sa.select(SnapshotPerson.person_ref, SnapshotPerson.expires_at)).all())
        assert [tuple(t) for t in tracks] == [(1, 4), (2, -2), (3, -3)]
        # P-gone counts as expired when the snapshot was taken: never matched again.
        assert expiry == {"P1": listed.replace(tzinfo=UTC), "P-gone": now.replace(tzinfo=UTC)}
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:
            c.execute(sa.text("UPDATE alerts SET track_id = 4 WHERE id = 2"))
        with engine.connect() as connection:  # and back: 0004 can be undone, and done again
            command.downgrade(_alembic_config(connection), "0003_alerts")
            connection.commit()
            assert "expires_at" not in {c["name"] for c in sa.inspect(connection).get_columns("snapshot_people")}
        migrate(engine)
    finally:
        engine.dispose()


def test_text_with_a_nul_character_is_refused_on_every_database(store_url: str) -> None:
    from openlfr.errors import InvalidText
    from openlfr.text import plain_text

    assert plain_text("Ann O'Neil", "the display name") == "Ann O'Neil"
    with pytest.raises(InvalidText, match="the login name contains a NUL character"):
        plain_text("admin\x00", "the login name")
    store = open_store(get_settings())
    try:
        now = datetime.now(UTC)
        with pytest.raises(InvalidText, match="NUL character"), store.session() as db:
            db.add(Watchlist(name="fine", purpose="", created_by="a", created_at=now))
            db.add(Watchlist(name="wanted\x00", purpose="", created_by="a", created_at=now))
        with pytest.raises(InvalidText), store.session() as db:  # many rows in one statement
            db.execute(
                sa.insert(Watchlist),
                [
                    {"name": "x", "purpose": "", "created_by": "a", "created_at": now},
                    {"name": "y", "purpose": "\x00", "created_by": "a", "created_at": now},
                ],
            )
        with pytest.raises(InvalidText), store.session() as db:  # in a query's parameters too
            db.scalars(sa.select(Watchlist).where(Watchlist.name == "\x00")).all()
        with store.session() as db:  # nothing half-written, and the store still works
            assert db.scalars(sa.select(Watchlist.name)).all() == []
            db.add(Watchlist(name="wanted", purpose="", created_by="a", created_at=now))
        with store.session() as db:
            assert db.scalars(sa.select(Watchlist.name)).all() == ["wanted"]
    finally:
        store.close()
