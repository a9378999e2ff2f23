"""Recovery codes: ten single-use codes for the day every sign-in method is
out of reach (a lost phone), made as a set and shown once. Only their
SHA-256 is stored; making a new set ends the old one.

A code is 16 characters from an alphabet without look-alikes (about 79
bits), written in groups of four; typing it with any case, spaces or dashes
is the same code. A recovery code stands in for a one-time code, and like
one it is a guess: the sign-in pages check it under the guessing limit
(`signin.check_recovery_code`).

Layer 2: no request; time only from `db.now()`.
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, func, update

from .db import db, now, token_hash
from .models import RecoveryCode, User

COUNT = 10  # codes in a set
REMIND_BELOW = 3  # fewer left than this: the pages remind the person to make new ones
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1
LENGTH, GROUP = 16, 4


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def normalize(code: str) -> str:
    """The code as hashed: lower case, without spaces or dashes."""
    return "".join(c for c in (code or "").lower() if c not in " -\t")


def generate(user: User) -> list[str]:
    """A new set of COUNT codes for `user`; the earlier set stops working.
    Returns the codes to show once (commits)."""
    codes = [_new_code() for _ in range(COUNT)]
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    at = now()
    db.session.add_all(
        RecoveryCode(user_id=user.id, code_hash=token_hash(normalize(code)), created_at=at) for code in codes
    )
    db.session.commit()
    return codes


def left(user: User) -> int:
    """How many of the user's recovery codes are still unused."""
    return db.session.scalar(
        db.select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
        )
    )


def has_set(user: User) -> bool:
    """The user was ever given a set (used up or not)."""
    return db.session.scalar(db.select(RecoveryCode.id).filter_by(user_id=user.id).limit(1)) is not None


def needs_reminder(user: User) -> bool:
    """Fewer than REMIND_BELOW codes left (none ever made counts too)."""
    return left(user) < REMIND_BELOW


def use(user: User, code: str) -> bool:
    """Use up one of the user's codes: True when `code` is one of them and
    unused (one conditional UPDATE: two requests with the same code cannot
    both pass). Commits."""
    typed = normalize(code)
    if len(typed) != LENGTH:
        return False
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == token_hash(typed),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return used.rowcount == 1


def remove_all(user: User) -> int:
    """Support reset: the user's codes go with their methods (caller commits)."""
    return db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id)).rowcount
