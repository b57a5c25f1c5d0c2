"""Accounts: who am I, changing my own password, and the administrator's list and changes of accounts."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.api.deps import DB, AdminPrincipal, AdminWrite, AnyoneWrite, AnyPrincipal
from openlfr.api.schemas import DetailOut, MeOut, PasswordChangeIn, PasswordIn, RoleIn, UserIn, UserOut
from openlfr.errors import AccountError, NotFound
from openlfr.governance.deployments import GovernanceError
from openlfr.services import accounts
from openlfr.services.accounts import Principal
from openlfr.store.governance_models import User

router = APIRouter(prefix="/api", tags=["accounts"])


@router.get("/me")
def me(principal: AnyPrincipal) -> MeOut:
    return MeOut.model_validate(principal)


@router.post("/me/password")
def change_own_password(body: PasswordChangeIn, write: AnyoneWrite) -> DetailOut:
    """Change your own password; every session and token of yours ends, this one included: log in again."""
    settings, db = write.ctx.settings, write.db
    user = db.get(User, write.principal.user_id)
    if user is None or not accounts.password_matches(settings, user, body.current_password):
        raise AccountError("the current password is not right")
    accounts.set_password(db, settings, user, body.new_password)
    write.ctx.audit(db, "user.password_change", f"user:{user.username}", {})
    return DetailOut(detail="password changed; log in again")


@router.get("/users")
def list_users(_: AdminPrincipal, db: DB) -> list[UserOut]:
    return UserOut.each(db.scalars(select(User).order_by(User.username)))


@router.post("/users", status_code=201)
def create_user(body: UserIn, write: AdminWrite) -> UserOut:
    user = accounts.create_account(write.db, write.ctx, body.username, body.password, body.role, body.display_name)
    return UserOut.model_validate(user)


def _other_account(db: Session, user_id: int, principal: Principal, doing: str) -> User:
    """The account an administrator acts on; never their own (an admin cannot lock themselves out or in)."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if user.id == principal.user_id:
        raise GovernanceError(f"you cannot {doing} your own account")
    return user


@router.post("/users/{user_id}/disable")
def disable_user(user_id: int, write: AdminWrite) -> UserOut:
    user = _other_account(write.db, user_id, write.principal, "disable")
    accounts.disable(write.db, write.ctx, user)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/enable")
def enable_user(user_id: int, write: AdminWrite) -> UserOut:
    user = _other_account(write.db, user_id, write.principal, "enable")
    accounts.enable(write.db, write.ctx, user)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/role")
def change_role(user_id: int, body: RoleIn, write: AdminWrite) -> UserOut:
    user = _other_account(write.db, user_id, write.principal, "change the role of")
    accounts.change_role(write.db, write.ctx, user, body.role)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/password")
def reset_password(user_id: int, body: PasswordIn, write: AdminWrite) -> UserOut:
    user = _other_account(write.db, user_id, write.principal, "reset the password of")
    accounts.reset_password(write.db, write.ctx, user, body.password)
    return UserOut.model_validate(user)
