"""Keeping the database small: rows that no longer do anything are deleted.

What goes, table by table (`PURGE_GRACE` keeps used or expired credentials a
while, so that a late replay is still recognised and an old link still says it
expired):

- parked authorization requests, sign-ins in progress (password accepted,
  second step owed) and passkey challenges past their expiry;
- token families whose every access and refresh token expired (revoked or
  not) more than PURGE_GRACE ago;
- authorization codes expired more than PURGE_GRACE ago, used or not, unless a
  token still names them (a replayed code revokes its tokens) or their SSO
  session is still open (logout tells that session's apps);
- SSO sessions ended or expired more than PURGE_GRACE ago; trusted computers
  past their expiry;
- client assertion `jti`s past their `exp` (plus PURGE_GRACE);
- lockout counters of addresses without an account, not locked and not tried
  for PURGE_GRACE;
- emailed-link tokens expired more than PURGE_GRACE ago, used or not;
- outgoing messages (the outbox) sent or failed more than MESSAGE_RETENTION ago;
- audit events older than AUDIT_RETENTION.

Rows go in small batches, each its own transaction, so no lock is held for
long; on PostgreSQL each batch takes only rows no other instance is deleting
(`FOR UPDATE SKIP LOCKED`), so several instances can purge at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, delete, exists, or_, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import aliased

from .db import db
from .models import (
    AccountToken,
    AuditEvent,
    AuthorizationCode,
    LoginThrottle,
    LoginTransaction,
    OutboxMessage,
    PasskeyChallenge,
    PendingSignIn,
    SsoSession,
    Token,
    TrustedComputer,
    UsedJti,
)

BATCH = 500  # rows per transaction: short locks, small WAL steps


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=current_app.config[name])


def _token_rule(at: datetime) -> Any:
    """Tokens of families whose every token's access and refresh lives ended
    before `at` (a reused old refresh token still revokes a live family)."""
    cut = at - _seconds("PURGE_GRACE")
    member = aliased(Token)
    alive = or_(member.expires_at > cut, member.refresh_expires_at > cut)
    return and_(
        Token.expires_at <= cut,
        or_(Token.refresh_expires_at.is_(None), Token.refresh_expires_at <= cut),
        ~exists().where(member.family == Token.family, alive),
    )


def _code_rule(at: datetime) -> Any:
    cut = at - _seconds("PURGE_GRACE")
    open_session = exists().where(
        SsoSession.sid == AuthorizationCode.sid, SsoSession.ended_at.is_(None), SsoSession.expires_at > at
    )
    return and_(
        AuthorizationCode.expires_at <= cut,
        ~exists().where(Token.code_id == AuthorizationCode.id),
        ~open_session,
    )


def _rules(at: datetime) -> dict[str, tuple[Any, Any]]:
    """Table name → (model, what of it goes), in an order that respects the
    foreign keys (tokens before the codes they name)."""
    grace = at - _seconds("PURGE_GRACE")
    messages = at - _seconds("MESSAGE_RETENTION")
    return {
        "login_transaction": (LoginTransaction, LoginTransaction.expires_at <= at),
        "passkey_challenge": (PasskeyChallenge, PasskeyChallenge.expires_at <= at),
        "pending_sign_in": (PendingSignIn, PendingSignIn.expires_at <= at),
        "token": (Token, _token_rule(at)),
        "authorization_code": (AuthorizationCode, _code_rule(at)),
        "sso_session": (
            SsoSession,
            or_(SsoSession.ended_at <= grace, SsoSession.expires_at <= grace),
        ),
        "trusted_computer": (TrustedComputer, TrustedComputer.expires_at <= at),
        "used_jti": (UsedJti, UsedJti.expires_at <= grace),
        "login_throttle": (
            LoginThrottle,
            and_(
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= at),
                or_(LoginThrottle.changed_at.is_(None), LoginThrottle.changed_at <= grace),
            ),
        ),
        "account_token": (AccountToken, AccountToken.expires_at <= grace),
        "outbox_message": (
            OutboxMessage,
            or_(OutboxMessage.sent_at <= messages, OutboxMessage.failed_at <= messages),
        ),
        "audit_event": (AuditEvent, AuditEvent.at <= at - _seconds("AUDIT_RETENTION")),
    }


def _delete_in_batches(model: Any, where: Any, batch: int) -> int:
    """Delete the rows of `model` matching `where`, `batch` at a time, each
    batch committed; rows another instance holds are left to it."""
    key = tuple(model.__table__.primary_key.columns)
    match: Callable[[list[Any]], Any] = (
        (lambda rows: key[0].in_([r[0] for r in rows]))
        if len(key) == 1
        else (lambda rows: tuple_(*key).in_([tuple(r) for r in rows]))
    )
    deleted = 0
    while True:
        rows = db.session.execute(
            select(*key).where(where).limit(batch).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return deleted
        try:
            # `where` again: a row that came back to life since (a token named
            # a code) stays.
            result = db.session.execute(
                delete(model).where(match(rows), where).execution_options(synchronize_session=False)
            )
            db.session.commit()
        except (IntegrityError, OperationalError):  # a concurrent change: the next run takes it
            db.session.rollback()
            current_app.logger.warning("purge of %s: a batch was left for the next run", model.__tablename__)
            return deleted
        deleted += result.rowcount
        if len(rows) < batch:
            return deleted


def purge_expired(at: datetime, batch: int = BATCH) -> dict[str, int]:
    """Delete what no longer does anything (the module docstring says what),
    as of `at`; the rows deleted per table. Safe to run on several instances
    at once, and again at any time."""
    return {name: _delete_in_batches(model, where, batch) for name, (model, where) in _rules(at).items()}
