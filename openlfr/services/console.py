"""Settings an administrator changes in the console (today: whether a confirmed match needs a second
operator), stored in the database over the defaults of ``Settings``; every change audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.clock import utc_now
from openlfr.governance.deployments import GovernanceError
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store.governance_models import ConsoleSetting

CONSOLE_SETTINGS: dict[str, type] = {"require_second_verifier": bool}


def console_settings(db: Session, settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {"require_second_verifier": settings.require_second_verifier}
    for row in db.scalars(select(ConsoleSetting)):
        if row.key in CONSOLE_SETTINGS:
            values[row.key] = row.value
    return values


def change_setting(db: Session, ctx: Context, key: str, value: Any) -> None:
    expected = CONSOLE_SETTINGS.get(key)
    if expected is None:
        raise GovernanceError(f"unknown setting {key!r}")
    if not isinstance(value, expected):
        raise GovernanceError(f"setting {key!r} takes a {expected.__name__}")
    before = console_settings(db, ctx.settings)[key]
    row = db.get(ConsoleSetting, key)
    if row is None:
        db.add(ConsoleSetting(key=key, value=value, changed_by=ctx.actor, changed_at=utc_now()))
    else:
        row.value, row.changed_by, row.changed_at = value, ctx.actor, utc_now()
    ctx.audit(db, "settings.change", f"setting:{key}", {"from": before, "to": value})


def require_second_verifier(db: Session, settings: Settings) -> bool:
    return bool(console_settings(db, settings)["require_second_verifier"])
