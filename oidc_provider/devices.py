"""Known devices: browsers where a person has completed a sign-in before
(OWASP, "Slow Down Online Guessing Attacks with Device Cookies").

After every finished sign-in the browser keeps a long-lived cookie holding a
random token for that account (only its SHA-256 is stored), valid for
KNOWN_DEVICE_LIFETIME from the last sign-in there. Wrong passwords and codes
typed in a browser known for an account are counted and locked out on its
`KnownDevice` row; guesses from anywhere else count against the account. So
guesses from elsewhere never lock the owner out of a browser they use, while
guessing stays limited per account (unknown browsers), per known browser and
per IP (RATELIMIT_LOGIN).

This is not "Trust this computer" (sessions.py): a known device skips
nothing; it only decides which count a guess goes to.

The cookie holds one token per account signed in with the browser (a shared
computer knows each of its people), the latest first, at most
ACCOUNTS_PER_BROWSER. Like sessions.py, this module reads the cookie from the
request and sets it on the response.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Response, current_app, has_request_context, request

from .db import db, new_token, now, token_hash
from .models import KnownDevice, User
from .sessions import device_label

DEVICE_COOKIE = "portal_device"
ACCOUNTS_PER_BROWSER = 10  # bounds the cookie (44 characters a token) and the lookups
SEPARATOR = "."  # never in a token (URL-safe base64)


def _lifetime() -> timedelta:
    return timedelta(seconds=current_app.config["KNOWN_DEVICE_LIFETIME"])


def _tokens() -> list[str]:
    """The tokens this browser holds, as many as may be ours and of a sane size."""
    raw = request.cookies.get(DEVICE_COOKIE, "") if has_request_context() else ""
    tokens = [t for t in raw.split(SEPARATOR) if 0 < len(t) <= 100]
    return tokens[:ACCOUNTS_PER_BROWSER]


def _find(user: User, tokens: list[str]) -> tuple[KnownDevice | None, str | None]:
    """This browser's row for `user` and its token, whatever its age."""
    if not tokens:
        return None, None
    by_hash = {token_hash(t): t for t in tokens}
    device = db.session.scalar(
        db.select(KnownDevice).where(KnownDevice.user_id == user.id, KnownDevice.token_hash.in_(by_hash))
    )
    return (device, by_hash[device.token_hash]) if device else (None, None)


def known(user: User) -> KnownDevice | None:
    """This browser's record for `user`, if the user finished a sign-in here
    within KNOWN_DEVICE_LIFETIME; else None (an unknown browser)."""
    device, _ = _find(user, _tokens())
    if device is None or device.last_seen_at + _lifetime() <= now():
        return None
    return device


def remember(response: Response, user: User) -> KnownDevice:
    """A sign-in finished in this browser: know it for `user` for another
    KNOWN_DEVICE_LIFETIME (the caller commits; sets the cookie on `response`)."""
    tokens = _tokens()
    device, token = _find(user, tokens)
    if device is None or token is None:
        token = new_token()
        device = KnownDevice(
            user_id=user.id,
            token_hash=token_hash(token),
            label=device_label(request.user_agent.string),
            created_at=now(),
        )
        db.session.add(device)
    device.last_seen_at = now()
    kept = [token, *(t for t in tokens if t != token)][:ACCOUNTS_PER_BROWSER]
    response.set_cookie(
        DEVICE_COOKIE,
        SEPARATOR.join(kept),
        max_age=int(_lifetime().total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return device
