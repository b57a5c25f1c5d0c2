"""Storage: SQLAlchemy 2 models and Alembic migrations, on SQLite (default) or PostgreSQL (by URL).

``open_store(settings)`` opens and upgrades the database; each stage keeps its tables in its own module here
and its own Alembic migrations in ``migrations/versions`` (a new branch per stage is fine: the store upgrades
to every head).
"""

from openlfr.store.db import Base, Store, StoreError, open_store

__all__ = ["Base", "Store", "StoreError", "open_store"]
