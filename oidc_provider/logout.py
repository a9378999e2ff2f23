"""Ending a sign-in everywhere: the SSO session, its refresh tokens, and every
app that got tokens in it (OpenID Back-Channel Logout 1.0 tokens, delivered by
the outbox worker with retries; Front-Channel Logout 1.0 URLs for the page).

A logout queues one outbox message per app holding the claims (client, URI,
`sub`, `sid`), never a token: each attempt mints a fresh logout token (new
`iat`, `exp`, `jti`), so a retry long after the logout still carries a token
the app must accept (Back-Channel Logout 1.0 section 2.4). The queue is in the
database, so any instance's worker finishes what another began.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import update

from . import audit, keys, outbox
from .clients import Client, query_client
from .db import db, new_token, now, timestamp
from .models import AuthorizationCode, SsoSession, Token

EVENT = "http://schemas.openid.net/event/backchannel-logout"


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


def logout_token(client: Client, sub: str, sid: str) -> str:
    """A Logout Token (Back-Channel Logout 1.0 section 2.4), minted now."""
    issued = timestamp()
    alg = client.id_token_signed_response_alg
    key = keys.signing_key(alg)
    claims = {
        "iss": current_app.config["OIDC_ISSUER"],
        "aud": client.client_id,
        "iat": issued,
        "exp": issued + current_app.config["LOGOUT_TOKEN_LIFETIME"],
        "jti": new_token(16),
        "sub": sub,
        "sid": sid,
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
            claims = {
                "client_id": client.client_id,
                "uri": client.backchannel_logout_uri,
                "sub": sso.user.sub,
                "sid": sso.sid,
            }
            outbox.enqueue(outbox.BACKCHANNEL_LOGOUT, claims, label=client.client_id, user_id=sso.user_id)
    audit.record(
        reason, user=sso.user, email=sso.user.email, sid=sso.sid, clients=[c.client_id for c in apps]
    )
    db.session.commit()
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


# -- delivery (the outbox worker) -------------------------------------------------------


@outbox.sender(outbox.BACKCHANNEL_LOGOUT)
def deliver(claims: outbox.Payload) -> None:
    """One attempt: POST a logout token minted for this attempt to the app.
    Back-Channel Logout 1.0 section 2.8: the app answers 200 (or 204) on success."""
    client = query_client(claims["client_id"])
    if client is None:
        raise outbox.PermanentError(f"the app {claims['client_id']!r} is no longer registered")
    token = logout_token(client, claims["sub"], claims["sid"])
    try:
        _post(claims["uri"], token, current_app.config["BACKCHANNEL_TIMEOUT"])
    except urllib.error.HTTPError as exc:
        exc.close()
        raise outbox.TransientError(f"{claims['uri']} answered {exc.code}") from exc
    except (OSError, ValueError) as exc:  # refused, timed out, bad URL
        raise outbox.TransientError(f"{type(exc).__name__}: {exc}") from exc


def _post(uri: str, logout_token: str, timeout: int) -> None:
    body = urllib.parse.urlencode({"logout_token": logout_token}).encode()
    request = urllib.request.Request(  # noqa: S310  (https or loopback http, checked in clients.yaml)
        uri, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        if response.status not in (200, 204):
            raise urllib.error.HTTPError(uri, response.status, "not 200", response.headers, None)
