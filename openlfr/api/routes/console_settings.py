"""The console's settings an administrator changes (whether a confirmed match needs a second operator)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from openlfr.api.deps import DB, AdminWrite, AnyPrincipal, server
from openlfr.api.schemas import ConsoleSettingsOut, SettingsIn
from openlfr.services import console

router = APIRouter(prefix="/api", tags=["settings"])


@router.get("/settings")
def get_settings(request: Request, _: AnyPrincipal, db: DB) -> ConsoleSettingsOut:
    return ConsoleSettingsOut.model_validate(console.console_settings(db, server(request).settings))


@router.put("/settings")
def put_settings(body: SettingsIn, write: AdminWrite) -> ConsoleSettingsOut:
    for key, value in body.model_dump().items():
        console.change_setting(write.db, write.ctx, key, value)
    return ConsoleSettingsOut.model_validate(console.console_settings(write.db, write.ctx.settings))
