"""Sign-in decisions: check a password, count failures and lock out for a
while (doubling, never permanently), and say which second step comes next.

No Flask request here: views pass what they read from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError

from . import accounts, audit, passwords
from .db import db, now, token_hash
from .models import LoginThrottle, User

WRONG = "The email address or password is not right."


@dataclass(frozen=True)
class PasswordResult:
    user: User | None
    error: str | None = None
    kind: str = "ok"  # ok, wrong, locked, not_activated, disabled


def locked_for(user: User | LoginThrottle) -> int:
    """Seconds left of the lockout of an account, or of an address without one (0: not locked)."""
    if user.locked_until is None:
        return 0
    return max(0, int((user.locked_until - now()).total_seconds()))


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def locked_message(seconds: int) -> str:
    return f"Too many failed attempts. For your security, try again in {_minutes(seconds)}."


def _count_failure(counted: User | LoginThrottle) -> int | None:
    """One more wrong try; after too many a lockout that doubles each time
    (never permanent): its seconds, when this try started one."""
    config = current_app.config
    counted.failed_logins += 1
    if counted.failed_logins < config["LOGIN_FAILURES_BEFORE_LOCKOUT"]:
        return None
    counted.lockouts += 1
    seconds = min(config["LOGIN_LOCKOUT_BASE"] * 2 ** (counted.lockouts - 1), config["LOGIN_LOCKOUT_MAX"])
    counted.locked_until = now() + timedelta(seconds=seconds)
    counted.failed_logins = 0
    return seconds


def record_failure(user: User, event: str, client_id: str | None = None) -> None:
    """A wrong password or code: count it; lock the account for a while after too many."""
    audit.record(event, user=user, email=user.email, client_id=client_id, outcome="failed")
    if seconds := _count_failure(user):
        audit.record(
            "locked_out", user=user, email=user.email, client_id=client_id, outcome="failed", seconds=seconds
        )
    db.session.commit()


def record_success(user: User) -> None:
    """A finished sign-in (password and, unless skipped, a code) or a re-checked
    password of a signed-in user: the wrong tries so far are forgiven (caller
    commits). A right password alone is not enough: the code's guesses count on."""
    user.failed_logins = 0
    user.lockouts = 0
    user.locked_until = None


def check_password(email: str, password: str, client_id: str | None = None) -> PasswordResult:
    """The first sign-in step. Unknown email and wrong password get the same
    answer after the same work (a dummy argon2 verify), lockout included."""
    user = accounts.find_user(email or "")
    if user is None:
        return _no_account(accounts.normalize_email(email or ""), password, client_id)
    if seconds := locked_for(user):
        passwords.dummy_verify(password)
        return PasswordResult(None, locked_message(seconds), "locked")
    if not passwords.verify_password(user.password_hash, password):
        record_failure(user, "signin_failed", client_id)
        if seconds := locked_for(user):
            return PasswordResult(None, locked_message(seconds), "locked")
        return PasswordResult(None, WRONG, "wrong")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        db.session.commit()
    if user.disabled_at is not None:
        return PasswordResult(None, "This account has been disabled. Please contact support.", "disabled")
    if user.activated_at is None:
        return PasswordResult(
            user,
            "Your account is not activated yet. Open the link in the activation email we sent you "
            "(look in your spam folder too), or ask for a new link below.",
            "not_activated",
        )
    return PasswordResult(user)


def _no_account(address: str, password: str, client_id: str | None) -> PasswordResult:
    """A password for an address without an account: wrong, and counted as for
    an account, so that its lockout comes as an account's would."""
    key = token_hash(address)
    throttle = db.session.get(LoginThrottle, key) or LoginThrottle(
        email_hash=key, failed_logins=0, lockouts=0
    )
    passwords.dummy_verify(password)
    if seconds := locked_for(throttle):
        return PasswordResult(None, locked_message(seconds), "locked")
    db.session.add(throttle)
    details = {"email": address[:320], "client_id": client_id, "outcome": "failed", "reason": "unknown email"}
    audit.record("signin_failed", **details)
    if seconds := _count_failure(throttle):
        audit.record("locked_out", seconds=seconds, **details)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent first try at this address made its row; this one goes uncounted
        db.session.rollback()
    if seconds := locked_for(throttle):
        return PasswordResult(None, locked_message(seconds), "locked")
    return PasswordResult(None, WRONG, "wrong")


def check_current_password(user: User, password: str) -> str | None:
    """Re-check a signed-in user's password (changing it); wrong guesses count
    towards the same lockout as at sign-in. None when right, else the message."""
    if seconds := locked_for(user):
        return locked_message(seconds)
    if passwords.verify_password(user.password_hash, password):
        record_success(user)
        db.session.commit()
        return None
    record_failure(user, "password_change_failed")
    if seconds := locked_for(user):
        return locked_message(seconds)
    return "Your current password is not right."
