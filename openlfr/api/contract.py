"""The API as a contract a generated client can trust: one error model (the shape every error answer has), and
on every route of /api each status it can answer, documented with that model; the methods a path takes (``Allow``
on a 405, and the answer to ``OPTIONS``). ``tests/test_api_contract.py`` runs Schemathesis against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field
from starlette.routing import compile_path

from openlfr.api.deps import ADMITS, SAFE_METHODS
from openlfr.governance.roles import Role


class Problem(BaseModel):
    """One thing wrong with a request: the field (a validation error) or the photo (an enrolment refusal)."""

    field: str | None = Field(default=None, description="the field, as `where.name` (`query.since`, `cameras.0`)")
    photo: str | None = Field(default=None, description="the photo an enrolment refused ('' for the person)")
    problem: str


class FaceBox(BaseModel):
    """One face of a photo a search could not choose from: its number (the field ``face``) and where it is."""

    face: int = Field(description="numbered from the left, as the search's field `face` counts")
    box: list[int] = Field(description="left, top, right, bottom, in the photo's pixels")


class PhotoSize(BaseModel):
    width: int
    height: int


class ErrorOut(BaseModel):
    """Every error answer of the API: a sentence for the person reading it, and for a request that is not valid
    (422) each problem with the field it concerns. The input itself is never echoed (it may be a password)."""

    detail: str
    problems: list[Problem] = Field(default_factory=list, description="present on 422 answers")
    faces: list[FaceBox] | None = Field(
        default=None,
        description="a photo search's 400 when the photo shows several faces and none (or no such one) was chosen: "
        "each face to choose from",
    )
    photo: PhotoSize | None = Field(default=None, description="with `faces`: the size of the photo the boxes are in")


# Each status an /api route may answer besides its success, and what it means there. The error types behind them
# are mapped in ``openlfr.api.app.install_error_answers``.
MEANING = {
    400: "refused by a rule beyond the schema: the state of things (a name already taken, your own account), "
    "a period longer than ten years or ending before it starts, a time outside 1970-2999 (UTC), a password too "
    "easy to guess, a threshold and a target false-alert rate both given or neither",
    401: "not logged in (no session or token, or an expired one)",
    403: "your role may not do this, or a browser write without its CSRF token",
    404: "the thing named in the path does not exist",
    409: "refused in the current state (a deployment already authorised, an alert already decided...)",
    413: "the request body is over the limit of its route",
    422: "the request does not match the schema; `problems` names each field",
    429: "too many failed logins or tokens from this address or for this name; see `Retry-After`",
    503: "the database is busy or cannot be reached; try again after `Retry-After` seconds",
}
# Every route: who asks is checked first (401, 429), any body is bounded (413), the database may be busy (503),
# and a value the store cannot hold or a rule of the service layer is a 400.
EVERY_ROUTE = (400, 401, 413, 422, 429, 503)
# Refused in the state things are in (``TransitionRefused``): the routes that change a deployment, an alert or an
# account's standing.
CONFLICTS = frozenset(
    {
        ("POST", "/api/deployments/{deployment_id}/authorise"),
        ("POST", "/api/deployments/{deployment_id}/cancel"),
        ("POST", "/api/deployments/{deployment_id}/end"),
        ("POST", "/api/alerts/{alert_id}/decision"),
        ("POST", "/api/alerts/{alert_id}/verify"),
        ("POST", "/api/alerts/{alert_id}/outcome"),
        ("POST", "/api/alerts/{alert_id}/undo"),
        ("POST", "/api/alerts/{alert_id}/hold"),
        ("POST", "/api/users/{user_id}/role"),
        ("POST", "/api/users/{user_id}/disable"),
        ("POST", "/api/users/{user_id}/password"),
    }
)
# Routes without a path parameter that still look something up by a name in their body or query.
LOOKUPS = frozenset({("POST", "/api/deployments"), ("GET", "/api/events"), ("POST", "/api/search")})


def _admits(route: APIRoute) -> frozenset[Role]:
    """The roles the route's principal dependency admits (every role when it names none)."""
    pending, admitted = [route.dependant], frozenset(Role)
    while pending:
        dependant = pending.pop()
        if dependant.call in ADMITS:
            admitted &= ADMITS[dependant.call]
        pending.extend(dependant.dependencies)
    return admitted


def statuses(route: APIRoute, method: str, path: str) -> list[int]:
    """The error statuses ``method`` on ``path`` (a route of the API) may answer."""
    found = set(EVERY_ROUTE)
    if _admits(route) != frozenset(Role) or method not in SAFE_METHODS:  # a role refused, or a write's CSRF
        found.add(403)
    if "{" in path or (method, path) in LOOKUPS:
        found.add(404)
    if (method, path) in CONFLICTS:
        found.add(409)
    return sorted(found)


def _api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every route of the API, as included (the routers' prefixes applied)."""
    for context in iter_route_contexts(app.router.routes):
        route, path = context.original_route, context.path_format
        if isinstance(route, APIRoute) and path and path.startswith("/api/") and route.include_in_schema:
            for method in sorted(context.methods or ()):
                yield method, path, route


def document_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    """Each /api operation's error answers in ``schema``, all with the one error model (replacing FastAPI's own
    422 model, which is not the shape the API answers)."""
    error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(error.pop("$defs", {}))
    components["ErrorOut"] = error
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for method, path, route in _api_routes(app):
        operation = schema["paths"][path][method.lower()]
        for status in statuses(route, method, path):
            operation["responses"][str(status)] = {"description": MEANING[status], "content": answer}


def install_contract(app: FastAPI) -> None:
    """The OpenAPI document is made with every operation's error answers (once, when first asked for)."""
    plain = app.openapi
    done: list[int] = []

    def documented() -> dict[str, Any]:
        schema = plain()
        if id(schema) not in done:
            document_errors(app, schema)
            done.append(id(schema))
        return schema

    app.openapi = documented  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods ``path`` takes, over every route that matches it (one route per method), and OPTIONS."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.router.routes):
        if context.path_format and context.methods and compile_path(context.path_format)[0].match(path):
            methods |= set(context.methods)
    return sorted(methods | {"OPTIONS"})
