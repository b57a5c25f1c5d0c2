"""The sinks a server sends to, audited: each sink's settings as this process starts with them (what it hears of,
whether its alerts carry the probe crop), written to the audit log by ``system`` whenever they differ from the
last audited ones. Sending a face picture out of the system is the admin's choice, and the log says who made it
possible from when: the secret never appears, and of the address only where it leads (scheme, host, port)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import AuditEntry
from openlfr.urls import url_destination

ACTION = "sink.settings"


def shown(config: Any) -> dict[str, Any]:
    """A sink's settings as the audit log keeps them: no secret, and of the address only where it leads."""
    return {
        "type": config.type,
        "url": url_destination(config.url),
        "events": list(config.events),
        "include_probe": config.include_probe,
        "enabled": config.enabled,
        "signed": bool(config.secret or config.secret_file),
    }


def audit_sinks(store: Store, settings: Settings) -> int:
    """Audit each configured sink whose settings changed since last audited; how many entries were written."""
    ctx = Context.system(settings, audit_key(settings))
    written = 0
    with store.session() as db:
        for name, config in sorted(settings.sinks.items()):
            target = f"sink:{name}"
            last = db.scalar(
                select(AuditEntry.details)
                .where(AuditEntry.action == ACTION, AuditEntry.target == target)
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            )
            now = shown(config)
            if last != now:
                ctx.audit(db, ACTION, target, now)
                written += 1
    return written
