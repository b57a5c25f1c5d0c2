"""The four roles and what each is for. The API checks one of these on every endpoint."""

from __future__ import annotations

from enum import StrEnum

from openlfr.errors import OpenLFRError


class Role(StrEnum):
    ADMIN = "admin"  # accounts, settings, watchlists, drafting deployments
    AUTHORISER = "authoriser"  # approves or cancels deployments, holds alerts for an investigation
    OPERATOR = "operator"  # runs deployments, adjudicates alerts, verifies and records outcomes
    AUDITOR = "auditor"  # reads records and the audit log; sees no biometric images


ALL_ROLES: tuple[Role, ...] = tuple(Role)


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise OpenLFRError(f"unknown role {text!r}; choose one of {', '.join(r.value for r in Role)}") from None
