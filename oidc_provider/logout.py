"""Ending a sign-in everywhere: the SSO session, its refresh tokens, and every
app that got tokens in it (OpenID Back-Channel Logout 1.0 tokens, delivered in
the background with retries; Front-Channel Logout 1.0 URLs for the page).

Deliveries are rows (`LogoutDelivery`), so a restart or another instance
finishes what one started; a small pool of threads posts them, so one slow
app never holds the user's logout or the other apps' deliveries.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import or_, update

from . import audit, keys
from .clients import Client, query_client
from .db import db, new_token, now, timestamp
from .models import AuthorizationCode, LogoutDelivery, SsoSession, Token

EVENT = "http://schemas.openid.net/event/backchannel-logout"
BACKOFF = (5, 30, 120, 600, 1800)  # seconds before each retry


@dataclass(frozen=True)
class Ended:
    """What a logout did: the session's apps, and the front-channel URLs to load."""

    sid: str | None
    client_ids: tuple[str, ...]
    frontchannel_urls: tuple[str, ...]


def clients_of(sid: str) -> list[Client]:
    """The apps that got a code in this session."""
    ids = db.session.scalars(db.select(AuthorizationCode.client_id).filter_by(sid=sid).distinct()).all()
    return [c for c in (query_client(i) for i in sorted(ids)) if c is not None]


def logout_token(client: Client, sso: SsoSession) -> str:
    """A Logout Token (Back-Channel Logout 1.0 section 2.4)."""
    issued = timestamp()
    alg = client.id_token_signed_response_alg
    key = keys.signing_key(alg)
    claims = {
        "iss": current_app.config["OIDC_ISSUER"],
        "aud": client.client_id,
        "iat": issued,
        "exp": issued + current_app.config["LOGOUT_TOKEN_LIFETIME"],
        "jti": new_token(16),
        "sub": sso.user.sub,
        "sid": sso.sid,
        "events": {EVENT: {}},
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "logout+jwt"}, claims, key)


def frontchannel_url(client: Client, sid: str) -> str:
    """Front-Channel Logout 1.0 section 2: the RP's URL with iss and sid."""
    params = {"iss": current_app.config["OIDC_ISSUER"], "sid": sid}
    return f"{client.frontchannel_logout_uri}{'&' if '?' in client.frontchannel_logout_uri else '?'}" + (
        urllib.parse.urlencode(params)
    )


def end_session(sso: SsoSession, reason: str = "logout") -> Ended:
    """End `sso`: revoke its refresh tokens (not offline_access ones), queue a
    logout token for each of its apps, and record it. Commits."""
    if sso.ended_at is None:
        sso.ended_at = now()
    db.session.execute(
        update(Token)
        .where(Token.sid == sso.sid, Token.offline.is_(False), Token.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    apps = clients_of(sso.sid)
    for client in apps:
        if client.backchannel_logout_uri:
            db.session.add(
                LogoutDelivery(
                    client_id=client.client_id,
                    uri=client.backchannel_logout_uri,
                    logout_token=logout_token(client, sso),
                    sid=sso.sid,
                    next_attempt_at=now(),
                )
            )
    audit.record(
        reason, user=sso.user, email=sso.user.email, sid=sso.sid, clients=[c.client_id for c in apps]
    )
    db.session.commit()
    dispatcher().wake()
    return Ended(
        sso.sid,
        tuple(c.client_id for c in apps),
        tuple(frontchannel_url(c, sso.sid) for c in apps if c.frontchannel_logout_uri),
    )


def verify_id_token_hint(hint: str | None) -> dict[str, Any] | None:
    """The claims of an ID token this provider signed (expired is fine: RP-Initiated
    Logout 1.0 section 2), or None."""
    if not hint:
        return None
    try:
        token = jwt.decode(hint, keys.ring().verification_keys(), algorithms=list(keys.ALGS))
    except (JoseError, ValueError, TypeError):
        return None
    claims = dict(token.claims)
    if claims.get("iss") != current_app.config["OIDC_ISSUER"]:
        return None
    return claims


# -- delivery -------------------------------------------------------------------------


def _post(uri: str, logout_token: str, timeout: int) -> None:
    body = urllib.parse.urlencode({"logout_token": logout_token}).encode()
    request = urllib.request.Request(  # noqa: S310  (https or loopback http, checked in clients.yaml)
        uri, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        if response.status != 200:
            raise urllib.error.HTTPError(uri, response.status, "not 200", response.headers, None)


def deliver(delivery_id: int) -> bool:
    """One attempt at one delivery; reschedules or gives up on failure."""
    item = db.session.get(LogoutDelivery, delivery_id)
    if item is None or item.delivered_at or item.failed_at:
        return True
    item.attempts += 1
    try:
        _post(item.uri, item.logout_token, current_app.config["BACKCHANNEL_TIMEOUT"])
    except (OSError, urllib.error.URLError) as exc:
        item.last_error = str(exc)[:500]
        if item.attempts >= current_app.config["BACKCHANNEL_RETRIES"]:
            item.failed_at = now()
            audit.record(
                "backchannel_logout_failed",
                client_id=item.client_id,
                outcome="failed",
                sid=item.sid,
                error=item.last_error,
            )
        else:
            item.next_attempt_at = now() + timedelta(
                seconds=BACKOFF[min(item.attempts - 1, len(BACKOFF) - 1)]
            )
        item.claimed_until = None
        db.session.commit()
        return False
    item.delivered_at = now()
    db.session.commit()
    return True


def claim_due(limit: int = 20) -> list[int]:
    """Deliveries due now, claimed for this process (safe with several instances)."""
    at = now()
    due = db.session.scalars(
        db.select(LogoutDelivery.id)
        .where(
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.failed_at.is_(None),
            LogoutDelivery.next_attempt_at <= at,
            or_(LogoutDelivery.claimed_until.is_(None), LogoutDelivery.claimed_until <= at),
        )
        .limit(limit)
    ).all()
    claimed = []
    for delivery_id in due:
        won = db.session.execute(
            update(LogoutDelivery)
            .where(
                LogoutDelivery.id == delivery_id,
                or_(LogoutDelivery.claimed_until.is_(None), LogoutDelivery.claimed_until <= at),
            )
            .values(claimed_until=at + timedelta(minutes=1))
        )
        if won.rowcount == 1:
            claimed.append(delivery_id)
    db.session.commit()
    return claimed


class Dispatcher:
    """A background thread that posts due deliveries through a small pool."""

    def __init__(self, app: Flask):
        self.app = app
        self.event = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="backchannel")
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.idle = threading.Event()
        self.stopped = False

    def wake(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="backchannel-dispatcher", daemon=True)
                self.thread.start()
        self.idle.clear()
        self.event.set()

    def _run(self) -> None:
        while not self.stopped:
            self.event.wait(timeout=5)  # also picks up retries that came due
            self.event.clear()
            while not self.stopped and (claimed := self._claim()):
                for future in [self.pool.submit(self._deliver, delivery_id) for delivery_id in claimed]:
                    future.result()
            if not self.event.is_set():
                self.idle.set()

    def _claim(self) -> list[int]:
        with self.app.app_context():
            try:
                return claim_due()
            except Exception:  # the database is away for a moment: try again at the next round
                self.app.logger.exception("back-channel logout: cannot read the deliveries")
                return []
            finally:
                db.session.remove()

    def stop(self) -> None:
        """Stop the thread (app shutdown, tests); queued deliveries stay in the database."""
        self.stopped = True
        self.event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.pool.shutdown(wait=True)

    def wait_idle(self, timeout: float) -> bool:
        """Until every due delivery was attempted (tests and shutdown)."""
        return self.idle.wait(timeout)

    def _deliver(self, delivery_id: int) -> None:
        with self.app.app_context():
            try:
                deliver(delivery_id)
            except Exception:  # a delivery must never kill the dispatcher
                current_app.logger.exception("back-channel logout delivery %s", delivery_id)
            finally:
                db.session.remove()


def init_app(app: Flask) -> None:
    app.extensions["logout_dispatcher"] = Dispatcher(app)


def dispatcher() -> Dispatcher:
    return current_app.extensions["logout_dispatcher"]
