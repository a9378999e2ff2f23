"""The browser's sign-in state; the only service that touches cookies.

- SSO session: a server-side `SsoSession` row; the browser holds a random
  token (in Flask's signed, HttpOnly, SameSite=Lax session cookie) whose
  SHA-256 is the row's `cookie_hash`. Every sign-in gets a new token (no
  fixation); `sid` stays for the browser's session so RPs can match logout.
- Pending sign-in: password accepted, second factor not yet -- not a session.
- Trusted computer: a persistent cookie (7 days) whose hash is stored with
  the user; while valid the password alone signs in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, request, session
from user_agents import parse as parse_user_agent

from .db import db, new_token, now, token_hash
from .models import SsoSession, TrustedComputer, User

SSO_KEY = "sso"
PENDING_KEY = "pending"
BROWSER_KEY = "browser"  # names this browser to the requests it parked (kept across sign-in)
TRUST_COOKIE = "portal_trusted"


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=current_app.config[name])


def device_label(user_agent: str | None) -> str:
    """ "Firefox on Windows" from a User-Agent header."""
    if not user_agent:
        return "Unknown browser"
    ua = parse_user_agent(user_agent)
    return f"{ua.browser.family} on {ua.os.family}"


# -- SSO session ------------------------------------------------------------------


def current() -> SsoSession | None:
    """The browser's live SSO session, or None (expired, idle, ended, disabled user)."""
    token = session.get(SSO_KEY)
    if not token:
        return None
    sso = db.session.scalar(db.select(SsoSession).filter_by(cookie_hash=token_hash(token)))
    at = now()
    if (
        sso is None
        or sso.ended_at is not None
        or sso.expires_at <= at
        or sso.last_seen_at + _seconds("SSO_SESSION_IDLE") <= at
        or not sso.user.is_active
    ):
        return None
    if at - sso.last_seen_at > timedelta(minutes=1):  # keep writes rare
        sso.last_seen_at = at
        db.session.commit()
    return sso


def start(user: User, amr: list[str], acr: str, mfa_at: datetime | None) -> SsoSession:
    """Sign the browser in: a new cookie token, the same `sid` if this browser
    was already signed in as this user."""
    previous = current()
    browser = session.get(BROWSER_KEY)
    session.clear()  # nothing from before the sign-in survives (fixation)...
    if browser:  # ...but the requests this browser parked are still its own
        session[BROWSER_KEY] = browser
    token = new_token()
    at = now()
    if previous is not None and previous.user_id == user.id:
        sso = previous
    else:
        if previous is not None:
            end(previous)
        sso = SsoSession(sid=new_token(16), user_id=user.id, created_at=at)
        db.session.add(sso)
    sso.cookie_hash = token_hash(token)
    sso.auth_time = at
    sso.amr = amr
    sso.acr = acr
    sso.mfa_at = mfa_at if mfa_at is not None else (sso.mfa_at if previous is sso else None)
    sso.last_seen_at = at
    sso.expires_at = at + _seconds("SSO_SESSION_LIFETIME")
    sso.user_agent = (request.user_agent.string or "")[:500]
    sso.ip = request.remote_addr
    db.session.commit()
    session[SSO_KEY] = token
    return sso


def end(sso: SsoSession) -> None:
    """End one SSO session (caller commits)."""
    if sso.ended_at is None:
        sso.ended_at = now()


def end_current() -> SsoSession | None:
    """Sign this browser out; returns the session that ended."""
    sso = current()
    if sso is not None:
        end(sso)
        db.session.commit()
    session.clear()
    return sso


def is_fresh(sso: SsoSession | None) -> bool:
    """Password and MFA within REAUTH_MAX_AGE: may change MFA methods."""
    return (
        sso is not None
        and sso.mfa_at is not None
        and sso.auth_time is not None
        and now() - min(sso.auth_time, sso.mfa_at) <= _seconds("REAUTH_MAX_AGE")
    )


def browser_binding(*, create: bool = True) -> str | None:
    """A random value kept in this browser's session, naming the browser to
    the authorization requests it parks; made on first use unless `create` is
    false (then None when there is none)."""
    value = session.get(BROWSER_KEY)
    if value is None and create:
        value = session[BROWSER_KEY] = new_token()
    return value


def sent_cookie() -> bool:
    """The request carried this browser's session cookie. A cross-site form
    POST does not (SameSite=Lax keeps it home); a session written in answer
    would replace the browser's own, signing it out."""
    return current_app.config["SESSION_COOKIE_NAME"] in request.cookies


# -- the sign-in in progress --------------------------------------------------------


def set_pending(user: User, tx: str | None, **extra: Any) -> None:
    """Password accepted; remember it (briefly) until the second factor."""
    session[PENDING_KEY] = {"user_id": user.id, "tx": tx, "at": now().isoformat(), **extra}


def pending() -> dict[str, Any] | None:
    """The password step of this browser, if recent enough to finish."""
    data = session.get(PENDING_KEY)
    if not data:
        return None
    if now() - datetime.fromisoformat(data["at"]) > _seconds("LOGIN_TRANSACTION_LIFETIME"):
        session.pop(PENDING_KEY, None)
        return None
    return data


def mark_enrolled(method_id: int) -> None:
    """The pending sign-in set up its first method (the enrolment gate), the one
    thing besides a code that lets it finish (`login.enrolled`)."""
    data = session.get(PENDING_KEY)
    if data:
        session[PENDING_KEY] = {**data, "enrolled": method_id}


# -- trusted computer ---------------------------------------------------------------


def trust_this_computer(response: Response, user: User) -> TrustedComputer:
    """Remember this browser for TRUSTED_COMPUTER_LIFETIME (persistent cookie)."""
    token = new_token()
    at = now()
    lifetime = _seconds("TRUSTED_COMPUTER_LIFETIME")
    item = TrustedComputer(
        user_id=user.id,
        token_hash=token_hash(token),
        label=device_label(request.user_agent.string),
        created_at=at,
        last_used_at=at,
        expires_at=at + lifetime,
    )
    db.session.add(item)
    db.session.commit()
    response.set_cookie(
        TRUST_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return item


def trusted_computer(user: User) -> TrustedComputer | None:
    """This browser's valid trust record for the user, if any."""
    token = request.cookies.get(TRUST_COOKIE)
    if not token:
        return None
    item = db.session.scalar(
        db.select(TrustedComputer).filter_by(token_hash=token_hash(token), user_id=user.id)
    )
    if item is None or item.expires_at <= now():
        return None
    return item


def forget_this_computer(response: Response) -> None:
    """Explicit logout: delete this browser's trust record and cookie."""
    token = request.cookies.get(TRUST_COOKIE)
    if token:
        db.session.execute(
            TrustedComputer.__table__.delete().where(TrustedComputer.token_hash == token_hash(token))
        )
        db.session.commit()
    response.delete_cookie(
        TRUST_COOKIE, httponly=True, samesite="Lax", secure=current_app.config["SESSION_COOKIE_SECURE"]
    )


def revoke_trusted_computers(user_id: int, computer_id: int | None = None) -> int:
    """Revoke one or all of a user's trusted computers (caller commits)."""
    query = TrustedComputer.__table__.delete().where(TrustedComputer.user_id == user_id)
    if computer_id is not None:
        query = query.where(TrustedComputer.id == computer_id)
    return db.session.execute(query).rowcount


def touch(item: Any) -> None:
    item.last_used_at = now()
