"""Authorization requests parked while the user signs in (`LoginTransaction`).

The browser carries only the transaction id (256 bits); the validated request
parameters stay in the database, so a restart or another instance resumes it.
Only the parameters the provider understands are kept, each within a length
cap, and a parked request belongs to the browser that parked it: a link to it
opened in another browser is refused (it could carry someone else's consent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import update

from . import sessions
from .db import db, new_token, now, same, token_hash
from .models import LoginTransaction

# The authorization request parameters the provider uses (OIDC Core 3.1.2.1,
# RFC 7636 4.3) and the longest value it accepts for each, in characters. A
# parked request keeps these and nothing else. `state` and `nonce` are the
# RP's own values: 2 kB leaves room for a signed state, not for a payload.
PARAMETERS: dict[str, int] = {
    "client_id": 255,
    "redirect_uri": 2048,
    "response_type": 64,
    "response_mode": 64,
    "scope": 1024,
    "state": 2048,
    "nonce": 2048,
    "prompt": 128,
    "max_age": 255,
    "ui_locales": 255,
    "claims_locales": 255,
    "id_token_hint": 8192,
    "login_hint": 1024,
    "acr_values": 1024,
    "claims": 4096,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "display": 32,
}
MAX_REQUEST = 16 * 1024  # all parameters of one request together, names included


class TransactionGone(Exception):
    """The id is unknown, expired, answered, or was parked in another browser."""

    def __init__(self, reason: str, tx: LoginTransaction | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tx = tx


def check_sizes(params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
    """ValueError naming the parameter when a value, or the whole request, is
    longer than the provider stores (its description is for the RP)."""
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    total = sum(len(str(name)) + len(str(value or "")) for name, value in pairs)
    if total > MAX_REQUEST:
        raise ValueError(f"The request is too large (at most {MAX_REQUEST} characters).")
    for name, value in pairs:
        cap = PARAMETERS.get(name)
        if cap is not None and value is not None and len(str(value)) > cap:
            raise ValueError(f"{name} is too long (at most {cap} characters).")


def fits(name: str, value: str | None) -> bool:
    """Whether a value is within its parameter's cap (an RP's `state` is echoed only then)."""
    return value is None or len(value) <= PARAMETERS.get(name, MAX_REQUEST)


def park(params: Mapping[str, Any], client_id: str, *, bind: bool = True) -> LoginTransaction:
    """Store the request's known parameters for the sign-in, bound to this
    browser; with `bind` false (the browser's session cannot be written) to
    the first browser that opens it."""
    at = now()
    browser = sessions.browser_binding(create=bind)
    tx = LoginTransaction(
        id=new_token(),
        client_id=client_id,
        params={name: params[name] for name in PARAMETERS if params.get(name) is not None},
        created_at=at,
        expires_at=at + timedelta(seconds=current_app.config["LOGIN_TRANSACTION_LIFETIME"]),
        browser_hash=token_hash(browser) if browser else None,
    )
    db.session.add(tx)
    db.session.commit()
    return tx


def _belongs_here(tx: LoginTransaction) -> bool:
    """The transaction was parked by this browser. One parked by a request that
    came without the session cookie (a cross-site POST: SameSite keeps it home)
    belongs to the first browser that opens it."""
    browser = sessions.browser_binding()
    digest = token_hash(browser)
    if tx.browser_hash is None:
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == tx.id, LoginTransaction.browser_hash.is_(None))
            .values(browser_hash=digest)
        )
        db.session.commit()
        db.session.refresh(tx)
    return tx.browser_hash is not None and same(tx.browser_hash, digest)


def load(tx_id: str | None) -> LoginTransaction:
    """A transaction this browser can still answer, or TransactionGone."""
    tx = db.session.get(LoginTransaction, tx_id) if tx_id else None
    if tx is None:
        raise TransactionGone("unknown")
    if tx.completed_at is not None:
        raise TransactionGone("completed", tx)
    if tx.expires_at <= now():
        raise TransactionGone("expired", tx)
    if not _belongs_here(tx):
        raise TransactionGone("elsewhere", tx)
    return tx


def find(tx_id: str | None) -> LoginTransaction | None:
    """Like load() but None instead of an error (the sign-in page works without one)."""
    try:
        return load(tx_id)
    except TransactionGone:
        return None


def complete(tx: LoginTransaction) -> None:
    tx.completed_at = now()
    db.session.commit()


def consent_given(tx: LoginTransaction, sid: str) -> None:
    """The person signed in as SSO session `sid` allowed the request; it counts
    for that session only (another person resuming it is asked)."""
    tx.consented_at = now()
    tx.consented_sid = sid
    db.session.commit()


def consented_in(tx: LoginTransaction | None, sid: str | None) -> bool:
    """Consent was given on this request by SSO session `sid`."""
    return bool(tx and tx.consented_sid and sid and same(tx.consented_sid, sid))
