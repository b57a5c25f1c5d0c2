"""Opening the database: SQLite by default (a file in the data directory), PostgreSQL by URL.

``open_store(settings)`` returns a :class:`Store` whose schema is at the newest Alembic revision: it upgrades
the database on first use (and after an upgrade of OpenLFR), so a user never runs migrations by hand.
Sessions come from ``store.session()``: one transaction, committed when the block ends, rolled back (and
nothing written) when it raises.

Deleted faces are gone from the files, not only from the tables: a SQLite database is created readable by its
owner only, every connection runs with ``secure_delete`` (freed space is zeroed), and a transaction that
deleted or cleared face images or embeddings (``ERASED_FACE_TABLES``) is followed, once committed and whichever
session or connection ran it, by a scrub (``_scrub``): a WAL checkpoint that writes the zeroed pages into the
database file and truncates the WAL, where the old pages would otherwise stay readable. On PostgreSQL the scrub
vacuums the face tables.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import LargeBinary, TypeDecorator

from openlfr.errors import InvalidNumber, InvalidText, InvalidTime, OpenLFRError
from openlfr.settings import Settings
from openlfr.store import changes
from openlfr.text import first_line, holds_nul

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another to finish

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Tables whose rows hold faces (images, embeddings) or the rows they hang from.
ERASED_FACE_TABLES = (
    "alerts",
    "alert_looks",
    "snapshot_images",
    "snapshot_people",
    "reference_images",
    "watchlist_people",
    "watchlists",
    "photo_searches",
)
_FACE_COLUMNS = ("probe_jpeg", "probe_embedding", "image_jpeg", "face_jpeg", "embedding")
_ERASES_FACES = re.compile(
    r'^\s*(?:DELETE\s+FROM\s+"?(?:{tables})\b|UPDATE\s+"?(?:{tables})"?\s+SET\b.*\b(?:{columns})\b)'.format(
        tables="|".join(ERASED_FACE_TABLES), columns="|".join(_FACE_COLUMNS)
    ),
    re.IGNORECASE | re.DOTALL,
)
# Any constant: PostgreSQL advisory lock that serialises concurrent first-time migrations.
_MIGRATION_LOCK_KEY = 0x0F3E_17F2


class StoreError(OpenLFRError):
    """The database cannot be opened, reached or upgraded, or a record the user named does not exist."""


# The driver's errors that say "the database did not answer" (locked, unreachable, restarting): worth retrying.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, DisconnectionError)


class Base(DeclarativeBase):
    """All OpenLFR tables. Each stage keeps its models in its own module under ``openlfr.store``."""

    # The same float type whichever SQLAlchemy 2.x maps ``float`` to by default.
    type_annotation_map: ClassVar[dict[Any, Any]] = {float: sa.Double()}

    def column_values(self, *, without: Collection[str] = ()) -> dict[str, Any]:
        """The row's values by column (an insert's values, or a copy of the row), leaving out ``without``."""
        return {column.key: getattr(self, column.key) for column in self.__table__.columns if column.key not in without}


Record = TypeVar("Record", bound="DataclassInstance")


def record_from(record: type[Record], row: object, **given: Any) -> Record:
    """A record (a dataclass) of a row: each field from the row's attribute of the same name, unless ``given``."""
    taken = {field.name: getattr(row, field.name) for field in fields(record) if field.name not in given}
    return record(**taken, **given)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database: SQLite keeps no time zone, so none is ever stored."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        try:
            return value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise InvalidTime(f"{value.isoformat()} is outside years 1-9999 in UTC") from None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Float32Vector(TypeDecorator[np.ndarray]):
    """A float32 vector as little-endian bytes: the same bytes in SQLite and PostgreSQL, no extension needed."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: np.ndarray | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        vector = np.asarray(value)
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise ValueError("an embedding must be a finite 1-D vector")
        return vector.astype("<f4").tobytes()

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> np.ndarray | None:
        return None if value is None else np.frombuffer(value, dtype="<f4").astype(np.float32)


def import_models() -> sa.MetaData:
    """Every table of every stage on ``Base.metadata``: the modules of this package named ``models`` or
    ``*_models``. Migrations are checked against this (a test compares the two)."""
    import importlib
    import pkgutil

    import openlfr.store as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name == "models" or module.name.endswith("_models"):
            importlib.import_module(f"openlfr.store.{module.name}")
    return Base.metadata


def normalise_url(raw: str) -> URL:
    """A database URL with a driver that is installed: ``postgresql://`` means psycopg 3 here."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {raw!r} (expected sqlite:///PATH or postgresql://...)") from exc
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {url.get_backend_name()!r}: use SQLite or PostgreSQL")
    return url


def shown(url: URL) -> str:
    """The URL as it may be printed: never with its password."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys make deletes cascade (a removed person takes their images and embeddings along);
    # WAL lets a reader (a live scan) and a writer (an enrolment) work at once; the timeout waits out a writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # Deleted rows and freed pages are overwritten with zeros, not just marked free (see the module docstring).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # SQLite's own lower() folds ASCII letters only, so a search for "émile" missed "Émile" (PostgreSQL's folds
    # every letter): Python's, which folds them all, takes its place on each connection.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _create_private(path: Path) -> None:
    """An empty database file only its owner can read (SQLite gives its -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the database file {path}: {exc.strerror}") from exc


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc.strerror}") from exc
            _create_private(path)
        engine = sa.create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    event.listen(engine, "before_cursor_execute", _refuse_nul_text)
    event.listen(engine, "before_cursor_execute", _refuse_huge_integers)
    # Faces erased in a transaction are scrubbed from the files once it has committed, whichever session or
    # connection did it: marked per statement, made due at commit, done when the connection goes back to the pool.
    event.listen(engine, "before_cursor_execute", _note_erasure)
    event.listen(engine, "commit", _erasure_committed)
    event.listen(engine, "rollback", _erasure_undone)
    event.listen(engine, "checkin", _Scrubber(url.get_backend_name()).on_checkin)
    changes.watch(engine)  # committed changes the console follows are announced (NOTIFY, in-process)
    return engine


_ERASING, _SCRUB_DUE = "openlfr_erasing_faces", "openlfr_scrub_due"


def _note_erasure(
    connection: sa.Connection, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    if _ERASES_FACES.match(statement):
        connection.info[_ERASING] = True


def _erasure_committed(connection: sa.Connection) -> None:
    if connection.info.pop(_ERASING, False):
        connection.info[_SCRUB_DUE] = True


def _erasure_undone(connection: sa.Connection) -> None:
    connection.info.pop(_ERASING, None)


# SQLite: how long a scrub waits for readers to move on before it leaves the WAL to a later check-in.
SCRUB_WAIT_MS = 2000


class _Scrubber:
    """Scrubs at the check-in of a connection whose committed transaction erased faces. On SQLite a reader still
    on an older snapshot keeps the WAL from being truncated; then every later check-in on the engine tries
    again, without waiting, until the WAL is truncated."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.pending = False

    def on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        due = record is not None and record.info.pop(_SCRUB_DUE, False)
        if due or self.pending:
            done = _scrub(self.dialect, dbapi_connection, wait_ms=SCRUB_WAIT_MS if due else 0)
            if not done and not self.pending:
                log.warning("a reader kept the database's WAL from being truncated; retried at each use until it is")
            self.pending = not done


def _scrub(dialect: str, dbapi_connection: Any, wait_ms: int = SCRUB_WAIT_MS) -> bool:
    """Make what was deleted unreadable in the database's files, not only in its tables (on a connection that
    holds no open work: a pooled one being checked in, or a fresh one). Whether it was done.

    SQLite: checkpoint the WAL into the database file (whose freed pages ``secure_delete`` zeroed) and
    truncate it, waiting up to ``wait_ms`` for readers of older snapshots. PostgreSQL: ``VACUUM`` the tables
    that hold faces (deletes cascade between them), which prunes the dead row versions from the table files;
    README ("Watchlists and the store") says what PostgreSQL's WAL still holds. A failure is logged, not raised:
    the rows are deleted either way.
    """
    try:
        dbapi_connection.rollback()  # out of any transaction (there is nothing in it): VACUUM and TRUNCATE need that
        if dialect == "sqlite":
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
                busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cursor.close()
            return not busy
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute("VACUUM " + ", ".join(ERASED_FACE_TABLES))
        finally:
            dbapi_connection.autocommit = False
        return True
    except Exception as exc:  # any driver's error: the connection pool must not fail a check-in over it
        log.warning("could not scrub the database files after a purge: %s", first_line(exc))
        return True  # not retried at every check-in: the next purge tries again


def _refuse_nul_text(
    _connection: sa.Connection, _cursor: Any, _statement: str, parameters: Any, _context: Any, many: bool
) -> None:
    """No text with a NUL character is stored, on either database (see ``openlfr.text``): refused before it is
    sent, with a sentence instead of PostgreSQL's driver error."""
    # One row (a mapping or a positional tuple) or several (executemany); a batch of many rows sent as one
    # statement comes as one flat row even though ``many`` says otherwise.
    several = many and all(isinstance(row, (Mapping, tuple, list)) for row in parameters)
    for row in parameters if several else [parameters]:
        values = row.values() if isinstance(row, Mapping) else row
        if values and holds_nul(values):
            raise InvalidText("a text value contains a NUL character (\\x00), which cannot be stored; remove it")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _refuse_huge_integers(
    _connection: sa.Connection, _cursor: Any, _statement: str, parameters: Any, _context: Any, many: bool
) -> None:
    """No whole number outside 64 bits reaches either database (an id of 2^63 from a URL, say): refused with a
    sentence instead of SQLite's OverflowError or PostgreSQL's type error."""
    several = many and all(isinstance(row, (Mapping, tuple, list)) for row in parameters)
    for row in parameters if several else [parameters]:
        values = row.values() if isinstance(row, Mapping) else (row or ())
        for value in values:
            if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
                raise InvalidNumber(f"the number {value} is out of range (at most {INT64_MAX:,})")


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=(.*)$", re.MULTILINE)


def _script_heads() -> set[str] | None:
    """The head revisions, read from the migration files' text (None if a file is not in the usual shape)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    return revisions - parents


def _is_current(connection: sa.Connection) -> bool:
    """Whether the database is at every head, found without loading Alembic (a quarter of a second on every
    command); when in doubt, False, and Alembic decides."""
    heads = _script_heads()
    if not heads or not sa.inspect(connection).has_table("alembic_version"):
        return False
    current = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    connection.rollback()
    return current == heads


def migrate(engine: Engine) -> None:
    """Bring the schema to every head revision. Cheap when it is already there (one small query)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        if _is_current(connection):
            return
        config = _alembic_config(connection)
        wanted = set(ScriptDirectory.from_config(config).get_heads())
        if set(MigrationContext.configure(connection).get_current_heads()) == wanted:
            return
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        try:
            # Stages add their own migration branches; "heads" upgrades every branch.
            command.upgrade(config, "heads")
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                connection.commit()


class Store:
    """An open database: an engine and a session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def scrub(self) -> None:
        """Make what was deleted unreadable in the database's files now (``make_engine`` does this by itself
        after every transaction that erased faces; see ``_scrub``)."""
        with self.engine.connect() as connection:
            if not _scrub(self.engine.dialect.name, connection.connection.dbapi_connection):
                log.warning("a reader kept the database's WAL from being truncated")

    @property
    def url(self) -> str:
        return shown(self.engine.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed at the end of the block, rolled back if the block raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise StoreError(f"database {self.url}: {first_line(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """Open (and, unless told otherwise, upgrade) the database named by the settings."""
    url = normalise_url(settings.resolved_database_url())
    engine = make_engine(url)
    try:
        if upgrade:
            migrate(engine)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = first_line(exc)
        raise StoreError(f"cannot open database {shown(url)}: {reason}") from exc
    return Store(engine)
