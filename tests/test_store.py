"""The store on SQLite and on a real PostgreSQL: migrations, types that round-trip, cascades, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from openlfr.settings import Settings, get_settings
from openlfr.store import StoreError, open_store
from openlfr.store.db import import_models, normalise_url
from openlfr.store.models import Person, ReferenceImage, Watchlist
from tests.storekit import reference_image_row


def _image(person: Person, vector: np.ndarray, sha: str) -> ReferenceImage:
    return reference_image_row(
        vector,
        "m",
        sha,
        person=person,
        source="x.jpg",
        face_jpeg=b"\xff\xd8jpeg",
        box_left=1,
        box_top=2,
        box_right=30,
        box_bottom=40,
        detector_score=1.5,
        face_height_px=38,
        inter_eye_px=31.5,
        sharpness=42.0,
        yaw_deg=1.0,
        pitch_deg=2.0,
        roll_deg=3.0,
        added_by="tester",
    )


def test_migrations_build_exactly_the_models(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = open_store(get_settings())
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, import_models())
    assert differences == []
    # Opening again finds the schema current and changes nothing.
    open_store(get_settings()).close()
    store.close()


def test_sqlite_is_a_file_in_the_data_directory(isolated_data_dir) -> None:  # type: ignore[no-untyped-def]
    open_store(Settings()).close()
    assert (isolated_data_dir / "openlfr.db").is_file()


def test_rows_round_trip_and_deletes_cascade(store_url: str) -> None:
    store = open_store(get_settings())
    vector = np.random.default_rng(1).standard_normal(128).astype(np.float32)
    expires = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with store.session() as session:
        watchlist = Watchlist(name="w", purpose="p", created_by="a", created_at=datetime.now(UTC))
        person = Person(
            watchlist=watchlist,
            reference_id="P1",
            display_name="Person One",
            category="other",
            reason="",
            legal_basis="",
            added_by="a",
            added_at=datetime.now(UTC),
            expires_at=expires.astimezone(UTC) + timedelta(hours=0),
        )
        _image(person, vector, "a" * 64)
        session.add(watchlist)
    with store.session() as session:
        person = session.scalars(sa.select(Person)).one()
        assert person.expires_at == expires and person.expires_at.tzinfo is not None
        (image,) = person.images
        assert image.embedding.dtype == np.float32
        np.testing.assert_array_equal(image.embedding, vector)
        assert image.face_jpeg == b"\xff\xd8jpeg"
    with store.session() as session:
        # A database-level delete (not the ORM's): the foreign keys themselves must cascade.
        session.execute(sa.delete(Watchlist))
    with store.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Person)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(ReferenceImage)) == 0
    store.close()


def test_a_failed_transaction_writes_nothing(store_url: str) -> None:
    store = open_store(get_settings())
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(Watchlist(name="half", purpose="", created_by="a", created_at=datetime.now(UTC)))
        session.flush()
        raise RuntimeError("fails after the insert")
    with store.session() as session:
        assert session.scalars(sa.select(Watchlist)).all() == []
    store.close()


def test_category_is_checked_by_the_database(store_url: str) -> None:
    store = open_store(get_settings())
    with pytest.raises(sa.exc.IntegrityError), store.session() as session:
        watchlist = Watchlist(name="w", purpose="", created_by="a", created_at=datetime.now(UTC))
        session.add(
            Person(
                watchlist=watchlist,
                reference_id="P",
                display_name="P",
                category="jaywalking",
                reason="",
                legal_basis="",
                added_by="a",
                added_at=datetime.now(UTC),
                expires_at=datetime.now(UTC),
            )
        )
    store.close()


def test_naive_datetimes_are_refused(store_url: str) -> None:
    store = open_store(get_settings())
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.session() as session:
        session.add(Watchlist(name="w", purpose="", created_by="a", created_at=datetime.now()))
    store.close()


def test_bad_urls_give_one_clear_line() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        normalise_url("::nonsense::")
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        normalise_url("mysql://u@h/db")
    assert normalise_url("postgresql://u:secret@h/db").drivername == "postgresql+psycopg"


def test_unreachable_postgres_names_the_server_not_the_password() -> None:
    from tests.postgres import _free_port

    settings = Settings(database_url=f"postgresql://user:hunter2@127.0.0.1:{_free_port()}/nowhere")
    with pytest.raises(StoreError) as caught:
        open_store(settings)
    message = str(caught.value)
    assert message.startswith("cannot open database postgresql+psycopg://user:***@127.0.0.1")
    assert "hunter2" not in message and "\n" not in message


def test_the_quick_schema_check_agrees_with_alembic(store_url: str) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from openlfr.store.db import MIGRATIONS_DIR, _is_current, _script_heads

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert _script_heads() == set(ScriptDirectory.from_config(config).get_heads())
    store = open_store(get_settings())
    with store.engine.connect() as connection:
        assert _is_current(connection)
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
        connection.commit()
        assert not _is_current(connection)
    store.close()
