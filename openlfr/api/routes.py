"""The JSON API. Every route names the roles it admits (``allow``); writes commit with their audit entry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openlfr.api import alert_source, audit_log, auth, enrol_upload, services, sources
from openlfr.api.auth import Principal
from openlfr.api.deps import ANY_ROLE, allow, context, get_db, server
from openlfr.api.schemas import (
    AlertOut,
    AuditEntryOut,
    DecisionIn,
    DeploymentOut,
    DraftIn,
    JustificationIn,
    OutcomeIn,
    PasswordChangeIn,
    PasswordIn,
    ReasonIn,
    ReviewOut,
    RoleIn,
    SettingsIn,
    UserIn,
    UserOut,
    VerdictOut,
    WatchlistIn,
)
from openlfr.governance import adjudication, deployments, records
from openlfr.governance.deployments import now_utc
from openlfr.governance.roles import Role
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, AuditEntry, Deployment, User

router = APIRouter(prefix="/api")

A, AU, OP, AD = Role.ADMIN, Role.AUTHORISER, Role.OPERATOR, Role.AUDITOR
SEES_ALERTS = (OP, AU)  # biometric images: the people who adjudicate and the authoriser who may hold them
READS_RECORDS = ANY_ROLE
READS_AUDIT = (AD, A)
DRAFTS = (A, OP, AU)


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def deployment_out(row: Deployment) -> DeploymentOut:
    moment = now_utc()
    permission = deployments.may_match(row, moment)
    return DeploymentOut(
        id=row.id,
        name=row.name,
        place=row.place,
        purpose=row.purpose,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        cameras=row.cameras,
        watchlist=row.watchlist_name,
        threshold=row.threshold,
        target_fpir=row.target_fpir,
        status=row.status,
        phase=deployments.phase(row, moment).value,
        created_by=row.created_by,
        authorised_by=row.authorised_by,
        authorised_at=row.authorised_at,
        justification=row.justification,
        cancelled_by=row.cancelled_by,
        cancel_reason=row.cancel_reason,
        ended_at=row.ended_at,
        effective_threshold=row.effective_threshold,
        threshold_note=row.threshold_note,
        watchlist_size=row.watchlist_size,
        snapshot_destroyed_at=row.snapshot_destroyed_at,
        frames=row.frames,
        faces_seen=row.faces_seen,
        alerts_raised=row.alerts_raised,
        may_match=permission.allowed,
        may_match_reason=permission.reason,
    )


def review_fields(review: AlertReview, require_second: bool) -> dict[str, Any]:
    return {
        "alert_id": review.alert_id,
        "deployment_id": review.deployment_id,
        "alert_at": review.alert_at,
        "person_ref": review.person_ref,
        "decision": review.decision,
        "decided_by": review.decided_by,
        "verified_by": review.verified_by,
        "outcome": review.outcome,
        "outcome_by": review.outcome_by,
        "held_by": review.held_by,
        "probe_purged_at": review.probe_purged_at,
        "stage": adjudication.stage(review, require_second),
    }


def alert_out(db: Session, alert: Alert, review: AlertReview, require_second: bool) -> AlertOut:
    facts = alert_source.facts(db, alert, review)
    return AlertOut(
        **review_fields(review, require_second),
        camera=facts.camera,
        track=facts.track,
        score=facts.score,
        person_name=facts.person_name,
        category=facts.category,
        reason=facts.reason,
        candidates=facts.candidates,
        has_probe=facts.has_probe,
        has_reference=facts.has_reference,
    )


# ----- who am I -----


@router.get("/me")
def me(principal: Principal = Depends(allow(*ANY_ROLE))) -> dict[str, str]:
    return {"username": principal.username, "role": principal.role.value, "csrf_token": principal.csrf_token}


# ----- users -----


@router.get("/users", response_model=list[UserOut])
def list_users(_: Principal = Depends(allow(A)), db: Session = Depends(get_db)) -> list[UserOut]:
    return [UserOut.model_validate(u, from_attributes=True) for u in db.scalars(select(User).order_by(User.username))]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(
    body: UserIn, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> UserOut:
    ctx = context(request, principal)
    user = auth.create_user(
        db, ctx.settings, body.username, body.password, body.role, principal.username, body.display_name
    )
    ctx.audit(db, "user.create", f"user:{user.username}", {"role": user.role})
    db.commit()
    return UserOut.model_validate(user, from_attributes=True)


def _other_account(db: Session, user_id: int, principal: Principal, doing: str) -> User:
    """The account an administrator acts on; never their own (an admin cannot lock themselves out or in)."""
    user = db.get(User, user_id)
    if user is None:
        raise services.NotFound(f"no user {user_id}")
    if user.id == principal.user_id:
        raise services.GovernanceError(f"you cannot {doing} your own account")
    return user


def _account_changed(
    db: Session, request: Request, principal: Principal, user: User, action: str, details: dict[str, Any]
) -> UserOut:
    """Audit an administrator's change to an account, commit both together, and answer with the account."""
    context(request, principal).audit(db, action, f"user:{user.username}", details)
    db.commit()
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/users/{user_id}/disable", response_model=UserOut)
def disable_user(
    user_id: int, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> UserOut:
    user = _other_account(db, user_id, principal, "disable")
    user.active = False
    ended = auth.end_sessions(db, user)
    return _account_changed(db, request, principal, user, "user.disable", {"sessions_ended": ended})


@router.post("/users/{user_id}/enable", response_model=UserOut)
def enable_user(
    user_id: int, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> UserOut:
    user = _other_account(db, user_id, principal, "enable")
    user.active = True
    return _account_changed(db, request, principal, user, "user.enable", {})


@router.post("/users/{user_id}/role", response_model=UserOut)
def change_role(
    user_id: int,
    body: RoleIn,
    request: Request,
    principal: Principal = Depends(allow(A)),
    db: Session = Depends(get_db),
) -> UserOut:
    user = _other_account(db, user_id, principal, "change the role of")
    before = user.role
    user.role = body.role.value
    ended = auth.end_sessions(db, user)  # sessions carry the role they were opened with
    details = {"from": before, "to": user.role, "sessions_ended": ended}
    return _account_changed(db, request, principal, user, "user.role", details)


@router.post("/users/{user_id}/password", response_model=UserOut)
def reset_password(
    user_id: int,
    body: PasswordIn,
    request: Request,
    principal: Principal = Depends(allow(A)),
    db: Session = Depends(get_db),
) -> UserOut:
    user = _other_account(db, user_id, principal, "reset the password of")
    ended = auth.set_password(db, server(request).settings, user, body.password)
    return _account_changed(db, request, principal, user, "user.password_reset", {"sessions_ended": ended})


@router.post("/me/password")
def change_own_password(
    body: PasswordChangeIn,
    request: Request,
    principal: Principal = Depends(allow(*ANY_ROLE)),
    db: Session = Depends(get_db),
) -> dict[str, str]:
    """Change your own password; every session and token of yours ends, this one included: log in again."""
    settings = server(request).settings
    user = db.get(User, principal.user_id)
    if user is None or not auth.password_matches(settings, user, body.current_password):
        raise auth.AccountError("the current password is not right")
    auth.set_password(db, settings, user, body.new_password)
    context(request, principal).audit(db, "user.password_change", f"user:{user.username}", {})
    db.commit()
    return {"detail": "password changed; log in again"}


# ----- console settings -----


@router.get("/settings")
def get_settings_route(
    request: Request, _: Principal = Depends(allow(*ANY_ROLE)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    return services.console_settings(db, server(request).settings)


@router.put("/settings")
def put_settings(
    body: SettingsIn, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    ctx = context(request, principal)
    for key, value in body.model_dump().items():
        services.change_setting(db, ctx, key, value)
    db.commit()
    return services.console_settings(db, ctx.settings)


# ----- watchlists -----


@router.get("/watchlists")
def list_watchlists(_: Principal = Depends(allow(A, AU, OP)), db: Session = Depends(get_db)) -> list[dict[str, Any]]:
    return [w.__dict__ for w in sources.list_watchlists(db, now_utc())]


@router.post("/watchlists", status_code=201)
def create_watchlist(
    body: WatchlistIn, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    ctx = context(request, principal)
    enrol_upload.create_watchlist(db, ctx, body.name, body.purpose)
    db.commit()
    return {"name": body.name}


@router.post("/watchlists/{name}/people", status_code=201)
async def enrol_person(
    name: str,
    request: Request,
    person: Annotated[str, Form(min_length=1, max_length=100)],
    display_name: Annotated[str, Form(min_length=1, max_length=200)],
    category: Annotated[str, Form(min_length=1, max_length=32)],
    images: Annotated[list[UploadFile], File()],
    reason: Annotated[str, Form(max_length=5000)] = "",
    legal_basis: Annotated[str, Form(max_length=5000)] = "",
    principal: Principal = Depends(allow(A)),
) -> dict[str, Any]:
    state = server(request)
    uploads = await enrol_upload.read_uploads(images, state.settings.max_upload_bytes)

    def work() -> dict[str, Any]:
        with state.sessions() as db:
            ctx = context(request, principal)
            result = enrol_upload.enrol(db, ctx, name, person, display_name, category, reason, legal_basis, uploads)
            db.commit()
            return result

    return await run_in_threadpool(work)


@router.delete("/watchlists/{name}/people/{person}")
def remove_person(
    name: str, person: str, request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    removed = enrol_upload.remove_person(db, context(request, principal), name, person)
    db.commit()
    return {"removed_images": removed}


# ----- deployments -----


@router.get("/deployments", response_model=list[DeploymentOut])
def list_deployments(_: Principal = Depends(allow(*ANY_ROLE)), db: Session = Depends(get_db)) -> list[DeploymentOut]:
    rows = db.scalars(select(Deployment).order_by(Deployment.starts_at.desc(), Deployment.id.desc())).all()
    return [deployment_out(r) for r in rows]


@router.post("/deployments", response_model=DeploymentOut, status_code=201)
def draft_deployment(
    body: DraftIn, request: Request, principal: Principal = Depends(allow(*DRAFTS)), db: Session = Depends(get_db)
) -> DeploymentOut:
    row = services.create_draft(
        db,
        context(request, principal),
        name=body.name,
        place=body.place,
        purpose=body.purpose,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        cameras=[c.model_dump() for c in body.cameras],
        watchlist=body.watchlist,
        threshold=body.threshold,
        target_fpir=body.target_fpir,
    )
    db.commit()
    return deployment_out(row)


@router.get("/deployments/{deployment_id}", response_model=DeploymentOut)
def get_deployment(
    deployment_id: int, _: Principal = Depends(allow(*ANY_ROLE)), db: Session = Depends(get_db)
) -> DeploymentOut:
    return deployment_out(services.get_deployment(db, deployment_id))


@router.post("/deployments/{deployment_id}/authorise", response_model=DeploymentOut)
def authorise_deployment(
    deployment_id: int,
    body: JustificationIn,
    request: Request,
    principal: Principal = Depends(allow(AU)),
    db: Session = Depends(get_db),
) -> DeploymentOut:
    row = services.authorise(db, context(request, principal), deployment_id, body.justification)
    db.commit()
    return deployment_out(row)


@router.post("/deployments/{deployment_id}/cancel", response_model=DeploymentOut)
def cancel_deployment(
    deployment_id: int,
    body: ReasonIn,
    request: Request,
    principal: Principal = Depends(allow(AU, A)),
    db: Session = Depends(get_db),
) -> DeploymentOut:
    row = services.cancel(db, context(request, principal), deployment_id, body.reason)
    db.commit()
    return deployment_out(row)


@router.post("/deployments/{deployment_id}/end", response_model=DeploymentOut)
def end_deployment(
    deployment_id: int,
    request: Request,
    principal: Principal = Depends(allow(OP, AU, A)),
    db: Session = Depends(get_db),
) -> DeploymentOut:
    row = services.end(db, context(request, principal), deployment_id)
    db.commit()
    return deployment_out(row)


@router.get("/deployments/{deployment_id}/record")
def deployment_record(
    deployment_id: int, _: Principal = Depends(allow(*READS_RECORDS)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    return services.record_of(db, services.get_deployment(db, deployment_id)).__dict__


@router.get("/deployments/{deployment_id}/record.csv")
def deployment_record_csv(
    deployment_id: int,
    request: Request,
    principal: Principal = Depends(allow(*READS_RECORDS)),
    db: Session = Depends(get_db),
) -> Response:
    record = services.record_of(db, services.get_deployment(db, deployment_id))
    context(request, principal).audit(db, "export.record", f"deployment:{deployment_id}", {"format": "csv"})
    db.commit()
    return _csv(records.records_csv([record]), f"deployment-{deployment_id}.csv")


def _period(since: date | None, until: date | None) -> tuple[datetime, datetime]:
    today = now_utc().date()
    start = since or today.replace(day=1)
    stop = until or today
    if stop < start:
        raise services.GovernanceError("the period ends before it starts")
    if (stop - start).days > 3660:
        raise services.GovernanceError("a period is at most ten years")
    return datetime.combine(start, time.min, UTC), datetime.combine(stop + timedelta(days=1), time.min, UTC)


@router.get("/records")
def period_records(
    since: date | None = None,
    until: date | None = None,
    _: Principal = Depends(allow(*READS_RECORDS)),
    db: Session = Depends(get_db),
) -> list[dict[str, Any]]:
    start, stop = _period(since, until)
    return [r.__dict__ for r in services.records_between(db, start, stop)]


@router.get("/records.csv")
def period_records_csv(
    request: Request,
    since: date | None = None,
    until: date | None = None,
    principal: Principal = Depends(allow(*READS_RECORDS)),
    db: Session = Depends(get_db),
) -> Response:
    start, stop = _period(since, until)
    rows = services.records_between(db, start, stop)
    context(request, principal).audit(
        db, "export.records", "deployments", {"since": start.date().isoformat(), "until": stop.date().isoformat()}
    )
    db.commit()
    return _csv(records.records_csv(rows), f"deployments-{start:%Y%m%d}-{stop:%Y%m%d}.csv")


# ----- alerts -----


def _require_second(request: Request, db: Session) -> bool:
    return bool(services.console_settings(db, server(request).settings)["require_second_verifier"])


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    request: Request,
    open_only: bool = False,
    deployment: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    _: Principal = Depends(allow(*SEES_ALERTS)),
    db: Session = Depends(get_db),
) -> list[AlertOut]:
    second = _require_second(request, db)
    pairs = services.alerts_with_reviews(db, deployment, limit=5000 if open_only else limit)
    if open_only:
        pairs = [(a, r) for a, r in pairs if adjudication.stage(r, second) != "closed"][:limit]
    return [alert_out(db, a, r, second) for a, r in pairs]


def _alert_and_review(db: Session, alert_id: int) -> tuple[Alert, AlertReview]:
    review = services.review_for(db, alert_id)
    alert = alert_source.alert_row(db, alert_id)
    if alert is None:
        raise services.NotFound(f"no alert {alert_id}")
    return alert, review


@router.get("/alerts/{alert_id}", response_model=AlertOut)
def get_alert(
    alert_id: int, request: Request, _: Principal = Depends(allow(*SEES_ALERTS)), db: Session = Depends(get_db)
) -> AlertOut:
    alert, review = _alert_and_review(db, alert_id)
    return alert_out(db, alert, review, _require_second(request, db))


def _jpeg(data: bytes | None, what: str) -> Response:
    if data is None:
        raise services.NotFound(f"the {what} is not available (purged, or never kept)")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/alerts/{alert_id}/probe.jpg")
def alert_probe(alert_id: int, _: Principal = Depends(allow(*SEES_ALERTS)), db: Session = Depends(get_db)) -> Response:
    return _jpeg(alert_source.probe_jpeg(db, alert_id), "probe image")


@router.get("/alerts/{alert_id}/reference.jpg")
def alert_reference(
    alert_id: int, _: Principal = Depends(allow(*SEES_ALERTS)), db: Session = Depends(get_db)
) -> Response:
    return _jpeg(alert_source.reference_jpeg(db, alert_id), "reference image")


@router.post("/alerts/{alert_id}/decision", response_model=ReviewOut)
def decide(
    alert_id: int,
    body: DecisionIn,
    request: Request,
    principal: Principal = Depends(allow(OP)),
    db: Session = Depends(get_db),
) -> ReviewOut:
    review = services.decide(db, context(request, principal), alert_id, body.decision)
    db.commit()
    return ReviewOut(**review_fields(review, _require_second(request, db)))


@router.post("/alerts/{alert_id}/verify", response_model=ReviewOut)
def verify(
    alert_id: int, request: Request, principal: Principal = Depends(allow(OP)), db: Session = Depends(get_db)
) -> ReviewOut:
    review = services.verify(db, context(request, principal), alert_id)
    db.commit()
    return ReviewOut(**review_fields(review, _require_second(request, db)))


@router.post("/alerts/{alert_id}/outcome", response_model=ReviewOut)
def outcome(
    alert_id: int,
    body: OutcomeIn,
    request: Request,
    principal: Principal = Depends(allow(OP)),
    db: Session = Depends(get_db),
) -> ReviewOut:
    review = services.record_outcome(db, context(request, principal), alert_id, body.outcome)
    db.commit()
    return ReviewOut(**review_fields(review, _require_second(request, db)))


@router.post("/alerts/{alert_id}/hold", response_model=ReviewOut)
def hold(
    alert_id: int,
    body: ReasonIn,
    request: Request,
    principal: Principal = Depends(allow(AU)),
    db: Session = Depends(get_db),
) -> ReviewOut:
    review = services.hold(db, context(request, principal), alert_id, body.reason)
    db.commit()
    return ReviewOut(**review_fields(review, _require_second(request, db)))


# ----- live: events and camera tiles -----


def queue_signature(db: Session) -> dict[str, Any]:
    """What changes when the queue changes: a new alert, or a decision, check or outcome on one."""
    alerts = db.execute(
        select(func.count(), func.max(Alert.id)).select_from(Alert).where(Alert.deployment_id.is_not(None))
    ).one()
    reviews = db.execute(
        select(func.count(AlertReview.decision), func.count(AlertReview.verified_by), func.count(AlertReview.outcome))
    ).one()
    moment = now_utc()
    live = sorted(
        row.id
        for row in db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value))
        if deployments.may_match(row, moment)
    )
    return {
        "alerts": alerts[0],
        "latest": alerts[1],
        "decided": reviews[0],
        "verified": reviews[1],
        "outcomes": reviews[2],
        "live": live,
    }


@router.get("/events")
async def events(request: Request, principal: Principal = Depends(allow(*SEES_ALERTS))) -> StreamingResponse:
    """Server-sent events: ``queue`` whenever the alert queue changes, ``cameras`` when a deployment goes live or
    stops (the database is the source, so alerts raised by a separate worker are announced too)."""
    state = server(request)
    token = request.cookies.get("openlfr_session") or request.headers.get("authorization", "")[7:]
    kind = "cookie" if request.cookies.get("openlfr_session") else "token"

    def poll() -> dict[str, Any] | None:
        with state.sessions() as db:
            if auth.resolve(db, token, kind) is None:
                return None  # logged out or expired: stop streaming
            return queue_signature(db)

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        idle = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            current = await run_in_threadpool(poll)
            if current is None:
                yield "event: logout\ndata: {}\n\n"
                return
            if current != last:
                if last is None or current["live"] != last["live"]:
                    yield f"event: cameras\ndata: {json.dumps(current['live'])}\n\n"
                if last is None or {k: v for k, v in current.items() if k != "live"} != {
                    k: v for k, v in last.items() if k != "live"
                }:
                    yield f"event: queue\ndata: {json.dumps(current)}\n\n"
                last, idle = current, 0.0
            elif idle >= 15.0:
                yield ": keep-alive\n\n"
                idle = 0.0
            await asyncio.sleep(0.5)
            idle += 0.5

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get("/deployments/{deployment_id}/cameras/{camera}/frame.jpg")
def camera_frame(
    deployment_id: int, camera: str, request: Request, _: Principal = Depends(allow(*SEES_ALERTS))
) -> Response:
    """The latest frame of a live camera, faces that raised no alert pixelated. Held in memory only."""
    tiles = getattr(request.app.state, "tiles", None)
    frame = tiles.latest(deployment_id, camera) if tiles is not None else None
    return _jpeg(frame, "camera picture")


# ----- audit -----


@router.get("/audit", response_model=list[AuditEntryOut])
def audit_entries(
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    _: Principal = Depends(allow(*READS_AUDIT)),
    db: Session = Depends(get_db),
) -> list[AuditEntryOut]:
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return [AuditEntryOut.model_validate(e, from_attributes=True) for e in db.scalars(query)]


@router.get("/audit/verify", response_model=VerdictOut)
def audit_verify(
    request: Request, principal: Principal = Depends(allow(*READS_AUDIT)), db: Session = Depends(get_db)
) -> VerdictOut:
    verdict = audit_log.verify(db, server(request).audit_key)
    context(request, principal).audit(db, "audit.verify", "audit_log", {"ok": verdict.ok, "entries": verdict.entries})
    db.commit()
    return VerdictOut(**verdict.as_dict())


# ----- retention -----


@router.post("/retention/run")
def retention_run(
    request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> dict[str, Any]:
    from openlfr.api.retention import policy_of

    state = server(request)
    ctx = context(request, principal)
    ctx.audit(db, "retention.run", "retention", {})
    report = services.enforce_retention(db, ctx, policy_of(state.settings))
    db.commit()
    return report.as_dict()
