"""A person's account activity, as My details shows it: sign-ins and the
wrong passwords and codes around them, lockouts, password changes and resets,
and changes to the sign-in methods, newest first, a page at a time. Read
from the audit log; every sentence a person reads about an event is here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from . import audit
from .clients import query_client
from .models import AuditEvent, User

PAGE_SIZE = 20
# the events a person is shown, with what they read (details fill the braces)
EVENTS: dict[str, Any] = {  # lazy: read in the page's language
    "signin_ok": _l("Signed in"),
    "signin_failed": _l("Wrong password"),
    "mfa_failed": _l("Wrong code"),
    "locked_out": _l("Sign-in locked for %(duration)s after too many wrong tries"),
    "password_change_failed": _l("Wrong current password while changing it"),
    "password_changed": _l("Password changed"),
    "password_reset": _l("Password set with an emailed link"),
    "mfa_added": _l("Sign-in method added: %(target)s"),
    "mfa_replaced": _l("Sign-in method replaced: now %(target)s"),
    "mfa_removed": _l("Sign-in method removed: %(target)s"),
    "mfa_reset": _l("Support reset your sign-in methods"),
    "trusted_computer_revoked": _l("A trusted computer was removed"),
    "logout": _l("Signed out"),
    "session_ended": _l("A browser was signed out"),
    "activated": _l("Account activated"),
    "account_disabled": _l("Account disabled by support"),
    "account_enabled": _l("Account enabled by support"),
}
SIGNIN_TO = _l("Signed in to %(app)s")  # signin_ok for an app's request


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
        return ngettext("%(num)d second", "%(num)d seconds", seconds)
    return ngettext("%(num)d minute", "%(num)d minutes", seconds // 60)


def _target(details: dict[str, Any]) -> str:
    target = details.get("target") or ""
    return str(_l("authenticator app")) if target in ("", "Authenticator app") else target


def describe(event: AuditEvent) -> str:
    """What the person reads about `event`."""
    details = event.details or {}
    if event.event == "signin_ok" and event.client_id and (app := query_client(event.client_id)):
        return str(SIGNIN_TO) % {"app": app.name}
    text = str(EVENTS[event.event])
    if "%(" not in text:
        return text
    return text % {"duration": _duration(details.get("seconds")), "target": _target(details)}


def page(user: User, number: int = 1, size: int = PAGE_SIZE) -> Page:
    """Page `number` (from 1) of the user's activity, `size` entries."""
    number = max(1, number)
    events = audit.query(user_id=user.id, events=list(EVENTS), limit=size + 1, offset=(number - 1) * size)
    entries = [Entry(e.at, describe(e), e.ip, e.outcome == "failed") for e in events[:size]]
    return Page(entries, number, len(events) > size)
