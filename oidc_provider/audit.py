"""The audit log: every security event, one `AuditEvent` row each.

Event names: registered, activated, activation_resent, signin_ok,
signin_failed, locked_out, password_changed, password_reset_requested,
password_reset, logout, account_disabled, account_enabled, mail_failed,
mfa_* (added, removed, failed, reset…; `kind`/`method` passkey and recovery
too), recovery_codes_generated, recovery_code_used, new_device_alert,
signin_disowned ("This wasn't me"), key_rotated, keys_imported, keys_exported.
`signin_ok` names its `method`: totp, email, sms, passkey or recovery.

`record` adds the row to the current database session and does not commit:
the event is stored in the same transaction as the change it describes, so
the log never claims what was rolled back. The caller commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from flask import has_request_context, request
from sqlalchemy import or_

from . import metrics
from .db import db, now
from .models import AuditEvent, User


def record(
    event: str,
    *,
    user: User | None = None,
    email: str | None = None,
    client_id: str | None = None,
    outcome: str = "ok",
    ip: str | None = None,
    user_agent: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an event to the session (the caller commits). `ip` and `user_agent`
    default to the current request's; `email` to the user's; `details` must be
    JSON-serialisable and never hold a secret."""
    origin = current_origin()
    ip, user_agent = ip or origin["ip"], user_agent or origin["user_agent"]
    row = AuditEvent(
        at=now(),
        event=event[:50],
        outcome=outcome[:20],
        user_id=user.id if user is not None else None,
        email=_cut(email or (user.email if user is not None else None), 320),
        client_id=_cut(client_id, 100),
        ip=_cut(ip, 64),
        user_agent=_cut(user_agent, 500),
        details=details or None,
    )
    db.session.add(row)
    metrics.count_event(event, outcome, details)
    return row


_ORIGIN: ContextVar[dict[str, str | None] | None] = ContextVar("audit_origin", default=None)


def current_origin() -> dict[str, str | None]:
    """Where the events recorded now come from: the request's IP address and
    user agent, or those `origin` set for work done later on a request's behalf."""
    if has_request_context():
        return {"ip": request.remote_addr, "user_agent": request.user_agent.string}
    return _ORIGIN.get() or {"ip": None, "user_agent": None}


@contextmanager
def origin(ip: str | None, user_agent: str | None) -> Iterator[None]:
    """Record events in this block as coming from `ip` and `user_agent` (the
    outbox worker, acting for a request that has ended)."""
    token = _ORIGIN.set({"ip": ip, "user_agent": user_agent})
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


def query(
    user_id: int | None = None,
    since: datetime | None = None,
    limit: int = 100,
    events: list[str] | tuple[str, ...] | None = None,
    email: str | None = None,
    offset: int = 0,
) -> list[AuditEvent]:
    """The latest `limit` events (after skipping the `offset` newest), newest first. `user_id` and `email` together
    match either (an account's events and those naming its address before it
    existed or for unknown-account attempts)."""
    select = db.select(AuditEvent)
    who = []
    if user_id is not None:
        who.append(AuditEvent.user_id == user_id)
    if email is not None:
        who.append(AuditEvent.email == email)
    if who:
        select = select.where(or_(*who))
    if since is not None:
        select = select.where(AuditEvent.at >= since)
    if events:
        select = select.where(AuditEvent.event.in_(events))
    select = (
        select.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(max(0, limit))
        .offset(max(0, offset))
    )
    return list(db.session.scalars(select))
