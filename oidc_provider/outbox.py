"""The outbox: every message the provider sends (mail, SMS, back-channel logout
tokens) is first a row of `OutboxMessage`, committed with the change it tells
about; a worker (worker.py) then sends it, outside any request.

- A request only enqueues: it never waits on an SMTP server, an SMS gateway or
  an app, and a page can say truthfully that a message is on its way, or that
  it could not be sent (`progress`).
- Workers on any number of instances take due messages with a conditional
  UPDATE (a lease, `claimed_until`/`claimed_by`), so one message is sent by one
  worker; a worker that dies lets its lease run out and another takes over.
- A failed attempt is retried after an exponential backoff with jitter
  (OUTBOX_BACKOFF_BASE doubling up to OUTBOX_BACKOFF_MAX) until DELIVERY_RETRIES
  (mail, SMS) or BACKCHANNEL_RETRIES attempts; a permanent refusal (the server
  refused the recipient) is not retried.
- The payload holds what must stay secret (activation and reset links, MFA
  codes, whom a logout concerns): encrypted under its own key derived from
  SECRET_KEY, and erased once the message is sent or has failed for good.

Delivery is at least once: a worker that dies after the server accepted a
message but before recording it leaves it to be sent again when its lease
ends.

Each kind has one sender (`sender`), a function that makes one attempt and
raises `TransientError` or `PermanentError`; mail may have a preparer
(`preparer`) that composes it when it is first taken.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import func, or_, update

from . import audit, crypto
from .db import db, now
from .models import OutboxMessage, User

PAYLOAD_KEY = b"outbox-encryption-v1"  # the HKDF label of the payloads' key (crypto.py)
MAIL, SMS, BACKCHANNEL_LOGOUT = "mail", "sms", "backchannel_logout"
KINDS = (MAIL, SMS, BACKCHANNEL_LOGOUT)
PENDING, SENT, FAILED = "pending", "sent", "failed"
RETRIES = {MAIL: "DELIVERY_RETRIES", SMS: "DELIVERY_RETRIES", BACKCHANNEL_LOGOUT: "BACKCHANNEL_RETRIES"}
WAKE = "outbox_wake"  # set in a session's info by enqueue: wake the worker once committed

Payload = dict[str, Any]
Sender = Callable[[Payload], None]
Preparer = Callable[[Payload], "Payload | None"]
_SENDERS: dict[str, Sender] = {}
_PREPARERS: dict[str, Preparer] = {}


class TransientError(Exception):
    """A failure worth another attempt (network, 4xx SMTP reply, 5xx gateway)."""


class PermanentError(Exception):
    """A failure no retry can fix (the server refused the message or recipient)."""


def sender(kind: str) -> Callable[[Sender], Sender]:
    """Register the function that makes one attempt at a message of `kind`."""

    def register(function: Sender) -> Sender:
        _SENDERS[kind] = function
        return function

    return register


def preparer(kind: str) -> Callable[[Preparer], Preparer]:
    """Register a function that turns a queued payload of `kind` into the one to
    send, when a worker first takes it, in the transaction that stores the
    result (so it runs once). It may write rows (a link's token, the audit
    log); returning None means there is nothing to send: the row is deleted."""

    def register(function: Preparer) -> Preparer:
        _PREPARERS[kind] = function
        return function

    return register


# --- enqueueing ------------------------------------------------------------------------


def enqueue(
    kind: str,
    payload: Payload,
    *,
    label: str = "",
    user_id: int | None = None,
    expires_at: Any = None,
) -> int:
    """Queue a message; returns its id. Adds it to the current transaction
    (the caller commits); the worker of this process is woken by the commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of message {kind!r}")
    at = now()
    row = OutboxMessage(
        kind=kind,
        label=label[:100],
        user_id=user_id,
        status=PENDING,
        payload=_seal(payload),
        attempts=0,
        created_at=at,
        next_attempt_at=at,
        expires_at=expires_at,
    )
    db.session.add(row)
    db.session.flush()
    db.session.info[WAKE] = True
    return row.id


def _seal(payload: Payload) -> str:
    return crypto.encrypt(PAYLOAD_KEY, json.dumps(payload, separators=(",", ":")).encode())


def _open(sealed: str) -> Payload:
    return json.loads(crypto.decrypt(PAYLOAD_KEY, sealed))


# --- what pages and operators see ------------------------------------------------------


class Progress(StrEnum):
    """What a page may tell a person about a message."""

    ON_ITS_WAY = "on its way"  # queued, being sent, or sent (we cannot see the inbox)
    NOT_SENT = "not sent"  # failed for good, or its last attempt failed: try again


def progress(message_id: int | None, kind: str = MAIL) -> Progress:
    """How a message a page queued is doing. For no message (nothing was to be
    sent, e.g. an address without an account), the answer follows the last
    attempt at any message of `kind`, so such a page reads like the others."""
    refusing = server_refusing(kind)  # asked in every case: the page takes as long either way
    row = db.session.get(OutboxMessage, message_id) if message_id is not None else None
    if row is None:
        return Progress.NOT_SENT if refusing else Progress.ON_ITS_WAY
    if row.status == FAILED or (row.status == PENDING and row.last_error is not None):
        return Progress.NOT_SENT
    return Progress.ON_ITS_WAY


def server_refusing(kind: str) -> bool:
    """The last attempt at a message of `kind` failed and will be retried: the
    mail server (gateway, app) is unreachable or refusing for now. A message
    refused for good (a bad recipient) says nothing about the server."""
    last = db.session.execute(
        db.select(OutboxMessage.status, OutboxMessage.last_error)
        .where(OutboxMessage.kind == kind, OutboxMessage.last_attempt_at.is_not(None))
        .order_by(OutboxMessage.last_attempt_at.desc(), OutboxMessage.id.desc())
        .limit(1)
    ).first()
    return last is not None and last.status == PENDING and last.last_error is not None


def backlog() -> tuple[int, float]:
    """(messages due now, seconds the most overdue one has waited past its due
    time): one query, for readiness checks and metrics. A growing age means no
    worker is sending."""
    at = now()
    count, oldest = db.session.execute(
        db.select(func.count(OutboxMessage.id), func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= at
        )
    ).one()
    return count, max(0.0, (at - oldest).total_seconds()) if oldest is not None else 0.0


# --- sending ---------------------------------------------------------------------------


def claim(worker_id: str, limit: int, message_id: int | None = None) -> list[int]:
    """Take up to `limit` due messages (or the one `message_id`, due or not) for
    `worker_id` for OUTBOX_LEASE seconds, and commit. The UPDATE checks again
    that each is still free (two workers never take the same message); on
    PostgreSQL the rows are first locked with SKIP LOCKED, so workers taking
    messages at the same moment take different ones. A worker that lost every
    message it saw to another looks again (SQLite)."""
    for _ in range(5):
        candidates, claimed = _claim_once(worker_id, limit, message_id)
        if claimed or not candidates or message_id is not None:
            return claimed
    return []


def _claim_once(worker_id: str, limit: int, message_id: int | None) -> tuple[list[int], list[int]]:
    at = now()
    takeable = (
        OutboxMessage.status == PENDING,
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= at),
    )
    if message_id is None:
        candidates = db.session.scalars(
            db.select(OutboxMessage.id)
            .where(*takeable, OutboxMessage.next_attempt_at <= at)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    else:
        candidates = [message_id]
    if not candidates:
        db.session.commit()
        return [], []
    lease = at + timedelta(seconds=current_app.config["OUTBOX_LEASE"])
    claimed = db.session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(candidates), *takeable)
        .values(claimed_until=lease, claimed_by=worker_id)
        .returning(OutboxMessage.id)
    ).all()
    db.session.commit()
    return list(candidates), sorted(claimed)


@dataclass(frozen=True)
class Attempt:
    """What one attempt did: the message's status after it, and the error."""

    message_id: int
    status: str | None  # None: not attempted (taken by another worker, or nothing to send)
    error: str | None = None


@dataclass(frozen=True)
class _Taken:
    """A claimed message, read before its attempt (the row may change meanwhile)."""

    id: int
    kind: str
    label: str
    user_id: int | None
    attempts: int  # with this one
    payload: Payload


def attempt(message_id: int, worker_id: str) -> Attempt:
    """One attempt at a message `worker_id` claimed: prepare it (once), send it
    with no transaction open, record the outcome. Commits."""
    row = db.session.get(OutboxMessage, message_id)
    if row is None or row.status != PENDING or row.claimed_by != worker_id:
        db.session.rollback()
        return Attempt(message_id, None)
    try:
        payload, error = _open(row.payload or ""), None
    except (InvalidToken, ValueError):  # SECRET_KEY changed since it was queued: it can never be read
        db.session.rollback()
        return _record(message_id, worker_id, PermanentError("its content cannot be decrypted"))
    if row.expires_at is not None and row.expires_at <= now():
        error = PermanentError("expired before it could be sent")
    elif row.kind in _PREPARERS:
        try:
            prepared = _prepare(row, payload)
        except Exception as exc:  # e.g. the database went away: like a network error
            db.session.rollback()
            current_app.logger.warning("outbox: message %s not prepared: %s", message_id, exc)
            return _record(message_id, worker_id, TransientError(f"{type(exc).__name__}: {exc}"))
        if prepared is None:
            return Attempt(message_id, None)
        payload = prepared
    taken = _Taken(row.id, row.kind, row.label, row.user_id, row.attempts + 1, payload)
    db.session.commit()  # no transaction is held while a server is slow
    if error is None:
        error = _send(taken)
    return _record(message_id, worker_id, error, taken)


def deliver_now(message_id: int) -> Attempt:
    """Attempt one message at once, due or not, unless a worker holds it (the
    command line, which can wait for a server's answer and report it). Commits."""
    worker_id = f"now-{secrets.token_hex(8)}"
    if not claim(worker_id, 1, message_id=message_id):
        return Attempt(message_id, None)
    return attempt(message_id, worker_id)


def _send(taken: _Taken) -> Exception | None:
    """One call to the kind's sender; the error it raised, if any."""
    try:
        _SENDERS[taken.kind](taken.payload)
    except (TransientError, PermanentError) as exc:
        return exc
    except Exception as exc:  # a defect: logged in full, retried like a network error
        current_app.logger.exception("outbox: message %s (%s) raised", taken.id, taken.kind)
        return TransientError(f"{type(exc).__name__}: {exc}")
    return None


def _prepare(row: OutboxMessage, payload: Payload) -> Payload | None:
    """Run the kind's preparer and keep its result (or drop the row)."""
    prepared = _PREPARERS[row.kind](payload)
    if prepared is None:
        db.session.delete(row)
        db.session.commit()
        return None
    if prepared is not payload:
        row.payload = _seal(prepared)
        row.label = str(prepared.get("label", row.label))[:100]
        row.user_id = prepared.get("user_id", row.user_id)
    return prepared


def _record(message_id: int, worker_id: str, error: Exception | None, taken: _Taken | None = None) -> Attempt:
    """Store the outcome, if the lease is still ours (when it ran out, another
    worker may hold the message now: its outcome counts)."""
    row = db.session.get(OutboxMessage, message_id)
    if taken is None:  # failed before it was read in full
        if row is None:
            return Attempt(message_id, None)
        taken = _Taken(row.id, row.kind, row.label, row.user_id, row.attempts + 1, {})
    at = now()
    values: dict[str, Any] = {
        "attempts": taken.attempts,
        "last_attempt_at": at,
        "claimed_until": None,
        "claimed_by": None,
    }
    if error is None:
        values |= {"status": SENT, "sent_at": at, "payload": None, "last_error": None}
    elif isinstance(error, PermanentError) or taken.attempts >= current_app.config[RETRIES[taken.kind]]:
        values |= {"status": FAILED, "failed_at": at, "payload": None, "last_error": str(error)[:500]}
    else:
        values |= {"next_attempt_at": at + backoff(taken.attempts), "last_error": str(error)[:500]}
    done = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == worker_id)
        .values(**values)
    )
    if done.rowcount != 1:
        db.session.rollback()
        current_app.logger.warning("outbox: message %s: the lease ran out while it was sent", message_id)
        return Attempt(message_id, None)
    status = values.get("status", PENDING)
    _log(taken, status, error)
    if status == FAILED:
        _audit_failure(taken, str(error))
    db.session.commit()
    return Attempt(message_id, status, str(error) if error else None)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: doubling from
    OUTBOX_BACKOFF_BASE up to OUTBOX_BACKOFF_MAX, times a random 0.5-1 so that
    messages failed together are not retried together."""
    cfg = current_app.config
    ceiling = min(cfg["OUTBOX_BACKOFF_MAX"], cfg["OUTBOX_BACKOFF_BASE"] * 2 ** min(attempts - 1, 30))
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


def _log(taken: _Taken, status: str, error: Exception | None) -> None:
    what = f"{taken.kind} {taken.label!r} (message {taken.id})"
    if status == SENT:
        current_app.logger.info("outbox: %s sent at attempt %d", what, taken.attempts)
    elif status == FAILED:
        current_app.logger.error("outbox: %s failed for good at attempt %d: %s", what, taken.attempts, error)
    else:
        current_app.logger.warning(
            "outbox: %s failed (attempt %d), will retry: %s", what, taken.attempts, error
        )


def _audit_failure(taken: _Taken, error: str) -> None:
    """A message that will never arrive is a security-relevant event (a person
    may not get their link or code; an app may keep a session open)."""
    if taken.kind == BACKCHANNEL_LOGOUT:
        audit.record(
            "backchannel_logout_failed",
            client_id=taken.payload.get("client_id") or taken.label,
            outcome="failed",
            sid=taken.payload.get("sid"),
            error=error[:200],
        )
        return
    user = db.session.get(User, taken.user_id) if taken.user_id else None
    event = "mail_failed" if taken.kind == MAIL else "sms_failed"
    audit.record(event, user=user, outcome="failed", template=taken.label, error=error[:200])
