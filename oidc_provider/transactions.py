"""Authorization requests parked while the user signs in (`LoginTransaction`).

The browser carries only the transaction id (256 bits); the validated request
parameters stay in the database, so a restart or another instance resumes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app

from .db import db, new_token, now
from .models import LoginTransaction


class TransactionGone(Exception):
    """The id is unknown, expired, or the request was already answered."""

    def __init__(self, reason: str, tx: LoginTransaction | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tx = tx


def park(params: dict[str, Any], client_id: str) -> LoginTransaction:
    at = now()
    tx = LoginTransaction(
        id=new_token(),
        client_id=client_id,
        params=params,
        created_at=at,
        expires_at=at + timedelta(seconds=current_app.config["LOGIN_TRANSACTION_LIFETIME"]),
    )
    db.session.add(tx)
    db.session.commit()
    return tx


def load(tx_id: str | None) -> LoginTransaction:
    """A transaction that can still be answered, or TransactionGone."""
    tx = db.session.get(LoginTransaction, tx_id) if tx_id else None
    if tx is None:
        raise TransactionGone("unknown")
    if tx.completed_at is not None:
        raise TransactionGone("completed", tx)
    if tx.expires_at <= now():
        raise TransactionGone("expired", tx)
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


def consent_given(tx: LoginTransaction) -> None:
    tx.consented_at = now()
    db.session.commit()
