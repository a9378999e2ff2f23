"""The browser's sign-in state; the only service that touches cookies.

- SSO session: a server-side `SsoSession` row; the browser holds a random
  token (in Flask's signed, HttpOnly, SameSite=Lax session cookie) whose
  SHA-256 is the row's `cookie_hash`. Every sign-in gets a new token (no
  fixation); `sid` stays for the browser's session so RPs can match logout.
- Pending sign-in: password accepted, second factor not yet -- not a session.
  A server-side `PendingSignIn` row; the browser holds only its random token.
  It works once, for minutes, and dies with a change of the user's security
  stamp (password change or reset, MFA reset, disable, sign-out).
- Trusted computer: a persistent cookie (7 days) whose hash is stored with
  the user; while valid the password alone signs in.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from flask import Response, current_app, request, session
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import joinedload
from user_agents import parse as parse_user_agent

from . import crypto, logout
from .db import commit_keeping_loaded, db, new_token, now, same, token_hash
from .models import PendingSignIn, SsoSession, TrustedComputer, User

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


# Built once (every signed-in request reads the session): SQLAlchemy reuses
# their compiled form.
_HELD = select(SsoSession).where(SsoSession.cookie_hash == bindparam("digest"))
_LIVE = _HELD.options(joinedload(SsoSession.user))
_PENDING = select(PendingSignIn).where(PendingSignIn.token_hash == bindparam("digest")).options(joinedload(PendingSignIn.user))


def current() -> SsoSession | None:
    """The browser's live SSO session, or None (expired, idle, ended, disabled user)."""
    return live(session.get(SSO_KEY))


def live(token: Any) -> SsoSession | None:
    """The live SSO session whose cookie token is `token` (from the session
    cookie; `current` reads it through Flask, the fast path itself)."""
    if not isinstance(token, str) or not token:
        return None
    sso = db.session.scalar(_LIVE, {"digest": token_hash(token)})
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
        commit_keeping_loaded()  # the caller reads the session and its person next
    return sso


def held() -> SsoSession | None:
    """The session this browser's cookie names, unless it was ended: also when
    idle or past its lifetime, since the cookie proves this browser held it
    (signing out, signing in as someone else)."""
    token = session.get(SSO_KEY)
    if not isinstance(token, str):
        return None
    sso = db.session.scalar(_HELD, {"digest": token_hash(token)})
    return sso if sso is not None and sso.ended_at is None else None


def start(user: User, amr: list[str], acr: str, mfa_at: datetime | None) -> SsoSession:
    """Sign the browser in: a new cookie token, the same `sid` if this browser
    was already signed in as this user. Someone else's session in this browser
    ends as a logout ends it: its apps are told, its tokens revoked, audited.
    The caller commits."""
    someone_else = held()
    if someone_else is not None and someone_else.user_id != user.id:
        logout.end_session(someone_else, reason="session_ended")
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
    session[SSO_KEY] = token
    return sso


def end(sso: SsoSession) -> None:
    """End one SSO session (caller commits)."""
    if sso.ended_at is None:
        sso.ended_at = now()


def end_current() -> SsoSession | None:
    """Sign this browser out, a sign-in in progress too; returns the session that ended."""
    sso = current()
    if sso is not None:
        end(sso)
        db.session.commit()
    drop_pending()
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

SIGNIN, ENROL, STEP_UP, REAUTH = "signin", "enrol", "step_up", "reauth"  # what a pending sign-in is for


def begin_pending(
    user: User, purpose: str, tx_id: str | None = None, next_url: str | None = None
) -> PendingSignIn:
    """The password (or a signed-in browser) was accepted; the second step is
    still owed. A server-side row, PENDING_SIGNIN_LIFETIME long, made under the
    user's security stamp; the browser gets only its random token. Any earlier
    one of this browser ends."""
    drop_pending()
    at = now()  # expired ones are left to the purge (purge.py)
    token = new_token()
    item = PendingSignIn(
        token_hash=token_hash(token),
        user_id=user.id,
        purpose=purpose,
        security_stamp=user.security_stamp,
        tx_id=tx_id,
        next_url=next_url,
        created_at=at,
        expires_at=at + _seconds("PENDING_SIGNIN_LIFETIME"),
    )
    db.session.add(item)
    db.session.commit()
    session[PENDING_KEY] = token
    return item


def pending(*purposes: str) -> PendingSignIn | None:
    """This browser's sign-in in progress (for one of `purposes`, if given), if
    it can still finish: not used, not expired, its user active, and nothing
    changed since about how the person proves who they are (security stamp)."""
    token = session.get(PENDING_KEY)
    if not isinstance(token, str):
        return None
    item = db.session.scalar(_PENDING, {"digest": token_hash(token)})
    if (
        item is None
        or item.consumed_at is not None
        or item.expires_at <= now()
        or not item.user.is_active
        or not same(item.security_stamp, item.user.security_stamp)
        or (purposes and item.purpose not in purposes)
    ):
        return None
    return item


def mark_enrolled(method_id: int) -> None:
    """The pending sign-in set up its first method (the enrolment gate), the one
    thing besides a code that lets it finish (`login.enrolled`)."""
    item = pending(ENROL)
    if item is not None:
        item.enrolled_method_id = method_id
        db.session.commit()


def consume_pending(item: PendingSignIn) -> bool:
    """Use the pending sign-in up: True for the one request that finishes it,
    False for any other (a copy of the cookie, a second tab, a double submit).
    The caller commits: the row stays locked by its transaction until then,
    so a concurrent request waits and then finds it used."""
    used = db.session.execute(
        update(PendingSignIn)
        .where(PendingSignIn.id == item.id, PendingSignIn.consumed_at.is_(None))
        .values(consumed_at=now())
    )
    session.pop(PENDING_KEY, None)
    return used.rowcount == 1


def drop_pending() -> bool:
    """This browser gives up its sign-in in progress (sign-out, a new sign-in,
    one that can no longer finish); True when it had one."""
    token = session.pop(PENDING_KEY, None)
    if isinstance(token, str):
        db.session.execute(delete(PendingSignIn).where(PendingSignIn.token_hash == token_hash(token)))
        db.session.commit()
    return token is not None


# -- codes on their way -------------------------------------------------------------

CODE_MESSAGES_KEY = "code_messages"  # method id → outbox id of the code this browser asked for last


def remember_code_message(method_id: int, message_id: int | None) -> None:
    """This browser asked for a code for `method_id`, carried by `message_id`,
    so its pages can tell how that message is doing."""
    if message_id is not None:
        session[CODE_MESSAGES_KEY] = {**session.get(CODE_MESSAGES_KEY, {}), str(method_id): message_id}


def code_message(method_id: int) -> int | None:
    """The outbox id of the code this browser last asked for `method_id`."""
    value = session.get(CODE_MESSAGES_KEY, {}).get(str(method_id))
    return value if isinstance(value, int) else None


# -- shown once ---------------------------------------------------------------------

SHOW_ONCE_KEY = "show_once"
SHOW_ONCE = b"shown-once-v1"  # the HKDF label of what waits in the cookie to be shown (crypto.py)


def keep_to_show(value: list[str]) -> None:
    """Keep `value` (recovery codes) for the next page of this browser to show
    once; encrypted, since the session cookie is only signed."""
    session[SHOW_ONCE_KEY] = crypto.encrypt(SHOW_ONCE, json.dumps(value).encode())


def take_to_show() -> list[str]:
    """What `keep_to_show` kept, gone from the cookie once taken (empty if nothing)."""
    kept = session.pop(SHOW_ONCE_KEY, None)
    if not isinstance(kept, str):
        return []
    try:
        value = json.loads(crypto.decrypt(SHOW_ONCE, kept))
    except (InvalidToken, ValueError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


# -- trusted computer ---------------------------------------------------------------


def trust_this_computer(response: Response, user: User) -> TrustedComputer:
    """Remember this browser for TRUSTED_COMPUTER_LIFETIME (persistent cookie;
    the caller commits)."""
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
