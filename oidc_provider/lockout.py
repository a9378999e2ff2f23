"""The guessing limit: wrong passwords and codes counted on a record (an
account, a known device, or an address without an account), and after
LOGIN_FAILURES_BEFORE_LOCKOUT of them a lockout of LOGIN_LOCKOUT_BASE seconds
that doubles each time up to LOGIN_LOCKOUT_MAX (never permanent).

A guess is reserved before it is judged: one conditional UPDATE takes a try
only while the record is not locked and tries are left, so however many
guesses arrive at once, on however many instances, at most
LOGIN_FAILURES_BEFORE_LOCKOUT are checked against a hash or a secret before
the lockout. A right answer gives its try back; a wrong one keeps it, and the
one that finds every try used starts the lockout, again with one conditional
UPDATE, so concurrent lockouts are never lost and always escalate.

Every record has the same three columns: `failed_logins` (tries taken since
the last lockout, guesses still being judged included), `lockouts` (since
the last finished sign-in) and `locked_until`. Layer 2: no request; time only
from `db.now()`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, or_, update

from .db import db, now
from .models import KnownDevice, LoginThrottle, User

Counted = User | KnownDevice | LoginThrottle
COLUMNS = ["failed_logins", "lockouts", "locked_until"]
MAX_DOUBLINGS = 32  # beyond this any LOGIN_LOCKOUT_MAX is reached; keeps the number small


def _limit() -> int:
    return current_app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]


def _row(counted: Counted) -> ColumnElement[bool]:
    """The WHERE clause naming `counted` by its primary key."""
    model = type(counted)
    return and_(*(column == getattr(counted, column.key) for column in model.__mapper__.primary_key))


def _unlocked(model: type[Counted], at: datetime) -> ColumnElement[bool]:
    return or_(model.locked_until.is_(None), model.locked_until <= at)


def _change(counted: Counted, *where: Any, returning: Any = None, **values: Any) -> Any:
    """One UPDATE of `counted`'s row, only where `where` holds; the rows it
    changed (or the `returning` value, None when it changed nothing)."""
    model = type(counted)
    statement = update(model).where(_row(counted), *where).values(**values)
    options = {"synchronize_session": False}
    if returning is not None:
        result = db.session.execute(statement.returning(returning).execution_options(**options)).scalar()
    else:
        result = db.session.execute(statement.execution_options(**options)).rowcount
    db.session.expire(counted, COLUMNS)  # read again from the database on next use
    return result


def reserve(counted: Counted) -> bool:
    """Take one try before judging a guess (commits, so every instance sees it).
    False when the record is locked or every try is taken: the guess must not
    be judged."""
    model = type(counted)
    taken = _change(
        counted,
        _unlocked(model, now()),
        model.failed_logins < _limit(),
        failed_logins=model.failed_logins + 1,
    )
    db.session.commit()
    return taken == 1


def release(counted: Counted) -> None:
    """The reserved guess was right, or not a guess at all (a replayed code):
    its try goes back. The caller commits."""
    model = type(counted)
    _change(counted, model.failed_logins > 0, failed_logins=model.failed_logins - 1)


def failed(counted: Counted) -> int | None:
    """The reserved guess was wrong: it keeps its try. When every try is used,
    lock out for a while (doubling each time); the lockout's seconds when this
    guess started it, else None. The caller commits."""
    model = type(counted)
    at = now()
    lockouts = _change(
        counted,
        model.failed_logins >= _limit(),
        _unlocked(model, at),
        returning=model.lockouts,
        failed_logins=0,
        lockouts=model.lockouts + 1,
    )
    if lockouts is None:
        return None
    seconds = lockout_seconds(lockouts)
    # the row stays locked by this transaction: no other guess runs between the two statements
    _change(counted, locked_until=at + timedelta(seconds=seconds))
    return seconds


def reset(counted: Counted) -> None:
    """A finished sign-in: the wrong tries and lockouts so far are forgiven.
    The caller commits."""
    _change(counted, failed_logins=0, lockouts=0, locked_until=None)


def lockout_seconds(lockouts: int) -> int:
    """How long the `lockouts`-th lockout in a row lasts."""
    config = current_app.config
    doublings = min(max(lockouts - 1, 0), MAX_DOUBLINGS)
    return min(config["LOGIN_LOCKOUT_BASE"] * 2**doublings, config["LOGIN_LOCKOUT_MAX"])


def seconds_left(counted: Counted) -> int:
    """Whole seconds until the lockout ends, rounded up (0: not locked)."""
    if counted.locked_until is None:
        return 0
    return max(0, math.ceil((counted.locked_until - now()).total_seconds()))


def tries_left(counted: Counted) -> int:
    """Wrong guesses left before the next lockout (0 while locked)."""
    if seconds_left(counted):
        return 0
    return max(0, _limit() - counted.failed_logins)


def next_lockout(counted: Counted) -> int:
    """Seconds the next lockout would last."""
    return lockout_seconds(counted.lockouts + 1)
