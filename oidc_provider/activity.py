"""A person's account activity, as My details shows it: sign-ins and the
wrong passwords and codes around them, lockouts, password changes and resets,
and changes to the sign-in methods, newest first, a page at a time. Read
from the audit log; every sentence a person reads about an event is here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import audit
from .clients import query_client
from .models import AuditEvent, User

PAGE_SIZE = 20
# the events a person is shown, with what they read (details fill the braces)
EVENTS: dict[str, str] = {
    "signin_ok": "Signed in",
    "signin_failed": "Wrong password",
    "mfa_failed": "Wrong code",
    "locked_out": "Sign-in locked for {duration} after too many wrong tries",
    "password_change_failed": "Wrong current password while changing it",
    "password_changed": "Password changed",
    "password_reset": "Password set with an emailed link",
    "mfa_added": "Sign-in method added: {target}",
    "mfa_replaced": "Sign-in method replaced: now {target}",
    "mfa_removed": "Sign-in method removed: {target}",
    "mfa_reset": "Support reset your sign-in methods",
    "trusted_computer_revoked": "A trusted computer was removed",
    "logout": "Signed out",
    "session_ended": "A browser was signed out",
    "activated": "Account activated",
    "account_disabled": "Account disabled by support",
    "account_enabled": "Account enabled by support",
}
SIGNIN_TO = "Signed in to {app}"  # signin_ok for an app's request


@dataclass(frozen=True)
class Entry:
    """One line of the activity list."""

    at: datetime
    what: str
    ip: str | None
    failed: bool


@dataclass(frozen=True)
class Page:
    """A page of the activity list: `number` counts from 1 (the newest)."""

    entries: list[Entry]
    number: int
    has_older: bool


def _duration(seconds: Any) -> str:
    seconds = int(seconds or 0)
    if seconds % 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _target(details: dict[str, Any]) -> str:
    target = details.get("target") or ""
    return "authenticator app" if target in ("", "Authenticator app") else target


def describe(event: AuditEvent) -> str:
    """What the person reads about `event`."""
    details = event.details or {}
    if event.event == "signin_ok" and event.client_id and (app := query_client(event.client_id)):
        return SIGNIN_TO.format(app=app.name)
    return EVENTS[event.event].format(duration=_duration(details.get("seconds")), target=_target(details))


def page(user: User, number: int = 1, size: int = PAGE_SIZE) -> Page:
    """Page `number` (from 1) of the user's activity, `size` entries."""
    number = max(1, number)
    events = audit.query(user_id=user.id, events=list(EVENTS), limit=size + 1, offset=(number - 1) * size)
    entries = [Entry(e.at, describe(e), e.ip, e.outcome == "failed") for e in events[:size]]
    return Page(entries, number, len(events) > size)
