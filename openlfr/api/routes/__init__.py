"""The JSON API under ``/api``, one ``APIRouter`` per resource, all included in ``router`` (which the composition
root, ``openlfr.server``, mounts).

Every route names who may call it by the type of its principal or write parameter (``openlfr.api.deps``); a
write commits with its audit entries once the handler returns.
"""

from __future__ import annotations

from fastapi import APIRouter

from openlfr.api.routes import (
    accounts,
    alerts,
    audit,
    cameras,
    console_settings,
    deployments,
    events,
    records,
    retention,
    search,
    watchlists,
)

RESOURCES = (
    accounts,
    console_settings,
    watchlists,
    search,
    deployments,
    records,
    alerts,
    events,
    cameras,
    audit,
    retention,
)

router = APIRouter()
for _resource in RESOURCES:
    router.include_router(_resource.router)
