"""Who acts: the one audit actor format for every front door.

- a person at the keyboard: ``cli:<login>`` (role ``cli``), unless they name themselves with ``--by NAME``
- an account of the operator server: its user name, with its role
- the server itself (retention, closing windows): ``system`` (role ``system``)
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from openlfr.errors import OpenLFRError
from openlfr.governance.roles import Role
from openlfr.services import audit_log
from openlfr.settings import Settings
from openlfr.text import visible_text

CLI_ROLE = "cli"
SYSTEM = "system"


class Acting(Protocol):
    """An authenticated account (``openlfr.services.accounts.Principal`` fits)."""

    @property
    def username(self) -> str: ...
    @property
    def role(self) -> Role: ...


def local_actor(by: str | None = None) -> str:
    """The person at this keyboard: ``--by NAME`` if given, else ``cli:<login>``."""
    if by is not None:
        if not by.strip():
            raise OpenLFRError("--by is empty")
        return visible_text(by.strip(), "--by")[:100]
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass(frozen=True)
class Context:
    """Who acts, with which settings and audit key."""

    settings: Settings
    key: bytes
    actor: str
    role: str  # a Role value, "cli" for the command line, or "system" for the server's own actions

    @classmethod
    def of(cls, settings: Settings, key: bytes, principal: Acting) -> Context:
        return cls(settings, key, principal.username, principal.role.value)

    @classmethod
    def system(cls, settings: Settings, key: bytes) -> Context:
        return cls(settings, key, SYSTEM, SYSTEM)

    @classmethod
    def local(cls, settings: Settings, by: str | None = None) -> Context:
        """The person at the command line (the audit key read from settings or the key file)."""
        return cls(settings, audit_log.audit_key(settings), local_actor(by), CLI_ROLE)

    @property
    def as_role(self) -> Role | None:
        try:
            return Role(self.role)
        except ValueError:
            return None

    def audit(self, db: Session, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        audit_log.record(db, self.key, self.actor, self.role, action, target, details)
