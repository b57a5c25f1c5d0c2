"""Storage: SQLAlchemy 2 models and Alembic migrations, on SQLite (default) or PostgreSQL (by URL).

``open_store(settings)`` opens and upgrades the database; each stage keeps its tables in its own module here
and its own Alembic migrations in ``migrations/versions`` (a new branch per stage is fine: the store upgrades
to every head). The names below load SQLAlchemy on first use only, so that importing a light module of this
package (``openlfr.store.categories``) stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openlfr.store.db import Base, Store, StoreError, open_store

__all__ = ["Base", "Store", "StoreError", "open_store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from openlfr.store import db

        return getattr(db, name)
    raise AttributeError(f"module 'openlfr.store' has no attribute {name!r}")
