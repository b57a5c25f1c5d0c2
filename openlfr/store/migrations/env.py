"""Alembic environment. OpenLFR runs migrations itself (``openlfr.store.db.migrate``) on a connection it
passes in; run by hand (``alembic -x url=...``) it opens one from the ``url`` argument."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from openlfr.store.db import import_models, make_engine, normalise_url

target_metadata = import_models()


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///path/openlfr.db ...")
    engine = make_engine(normalise_url(url))
    with engine.connect() as opened:
        run(opened)
        opened.commit()
