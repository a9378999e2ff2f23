"""Sign-in decisions: check a password or a code against the guessing limit
(lockout.py), say what a locked-out person can do and when, and which
second step comes next.

Guesses count on the record of the browser they come from (devices.py): a
browser where the account finished a sign-in before has its own count and
lockout; any other counts against the account. An address without an account
is counted as an account would be (LoginThrottle), so the lockout never tells
which addresses have one.

No Flask request here: views pass what they read from it (the device cookie
is read by devices.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError

from . import accounts, audit, devices, formats, lockout, messages, mfa, passwords, recovery, support
from .db import db, now, token_hash
from .locales import N_
from .lockout import Counted
from .models import KnownDevice, LoginThrottle, MfaMethod, User

WRONG = N_("The email address or password is not right.")


@dataclass(frozen=True)
class PasswordResult:
    user: User | None
    error: str | None = None
    kind: str = "ok"  # ok, wrong, locked, not_activated, disabled


@dataclass(frozen=True)
class CodeResult:
    """What `check_code` decided: None for a right code, else the message."""

    error: str | None = None
    kind: str = "ok"  # ok, wrong, replayed, locked, invalid (not shaped like a code)


@dataclass(frozen=True)
class Standing:
    """Where this browser stands with the guessing limit of an account, for the
    code page before any code is typed: locked out (and until when), one
    try from a lockout, or neither (`message` None)."""

    message: str | None = None
    locked: bool = False


def counter(user: User) -> User | KnownDevice:
    """The count a guess for `user` from this browser goes to: the browser's
    own if it is known for the account, else the account's."""
    return devices.known(user) or user


def locked_for(counted: Counted) -> int:
    """Seconds left of a lockout (0: not locked)."""
    return lockout.seconds_left(counted)


def _duration(seconds: int) -> str:
    """ "1 minute", "2 minutes", "90 seconds"."""
    if seconds % 60:
        return ngettext("%(num)d second", "%(num)d seconds", seconds)
    return ngettext("%(num)d minute", "%(num)d minutes", seconds // 60)


def _until(seconds: int) -> str:
    """When a lockout of `seconds` from now ends, exactly: "in 47 seconds", or
    for longer ones the minute from which a try is accepted, "at 09:43"
    (a static page cannot count down, but a time of day stays true)."""
    if seconds < 120:
        return ngettext("in %(num)d second", "in %(num)d seconds", seconds)
    start, end = now(), now() + timedelta(seconds=seconds)
    if end.second or end.microsecond:  # round up: the minute shown is never too early
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if formats.local(end).date() == formats.local(start).date():
        return _("at %(time)s", time=formats.time_of_day(end))
    return _("at %(time)s on %(day)s", time=formats.time_of_day(end), day=formats.day_in_year(end))


def locked_message(seconds: int) -> str:
    """What a locked-out person reads: that, and exactly when to try again."""
    return _("Too many failed attempts. For your security, try again %(when)s.", when=_until(seconds))


def _refusal(counted: Counted) -> str:
    """Why a guess was not even judged: a lockout, or every try taken by
    guesses still being judged (the lockout they will most likely start)."""
    return locked_message(locked_for(counted) or lockout.next_lockout(counted))


def warning(counted: Counted) -> str | None:
    """Before the last try: what it risks."""
    if lockout.tries_left(counted) != 1:
        return None
    return _("1 try left before a lockout of %(duration)s.", duration=_duration(lockout.next_lockout(counted)))


def _with_warning(message: str, counted: Counted) -> str:
    extra = warning(counted)
    return f"{message} {extra}" if extra else message


def _count_wrong(counted: Counted, event: str, user: User | None = None, **details: object) -> None:
    """A judged guess was wrong: record it; lock out for a while after too many (commits)."""
    if user is not None:
        details = {"email": user.email, **details}
    audit.record(event, user=user, outcome="failed", **details)
    if seconds := lockout.failed(counted):
        scope = "device" if isinstance(counted, KnownDevice) else "account"
        audit.record("locked_out", user=user, outcome="failed", seconds=seconds, scope=scope, **details)
    db.session.commit()


def record_success(user: User) -> None:
    """A finished sign-in (password and, unless skipped, a code) or a re-checked
    password of a signed-in user: the wrong tries so far counted for this
    browser are forgiven (caller commits). A right password alone is not
    enough: the code's guesses count on. Guesses made elsewhere are not
    forgiven by the owner's sign-in on a known browser."""
    lockout.reset(counter(user))


def check_password(email: str, password: str, client_id: str | None = None) -> PasswordResult:
    """The first sign-in step. Unknown email and wrong password get the same
    answer after the same work (a dummy argon2 verify), lockout included."""
    user = accounts.find_user(email or "")
    if user is None:
        return _no_account(accounts.normalize_email(email or ""), password, client_id)
    counted = counter(user)
    if not lockout.reserve(counted):
        passwords.dummy_verify(password)
        return PasswordResult(None, _refusal(counted), "locked")
    if not passwords.verify_password(user.password_hash, password):
        _count_wrong(counted, "signin_failed", user, client_id=client_id)
        if seconds := locked_for(counted):
            return PasswordResult(None, locked_message(seconds), "locked")
        return PasswordResult(None, _with_warning(_(WRONG), counted), "wrong")
    lockout.release(counted)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    db.session.commit()
    if user.disabled_at is not None:
        return PasswordResult(None, support.disabled_message(), "disabled")
    if user.activated_at is None:
        return PasswordResult(
            user,
            _(
                "Your account is not activated yet. Open the link in the activation email we sent you "
                "(look in your spam folder too), or ask for a new link below."
            ),
            "not_activated",
        )
    return PasswordResult(user)


def _throttle(address: str) -> LoginThrottle:
    """The count of an address without an account, made at its first guess."""
    key = token_hash(address)
    throttle = db.session.get(LoginThrottle, key)
    if throttle is not None:
        return throttle
    db.session.add(LoginThrottle(email_hash=key, failed_logins=0, lockouts=0))
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent first guess at this address made the row
        db.session.rollback()
    return db.session.get(LoginThrottle, key)


def _no_account(address: str, password: str, client_id: str | None) -> PasswordResult:
    """A password for an address without an account: wrong, and counted as for
    an account, so that its lockout comes as an account's would."""
    throttle = _throttle(address)
    passwords.dummy_verify(password)
    if not lockout.reserve(throttle):
        return PasswordResult(None, _refusal(throttle), "locked")
    _count_wrong(throttle, "signin_failed", email=address[:320], client_id=client_id, reason="unknown email")
    if seconds := locked_for(throttle):
        return PasswordResult(None, locked_message(seconds), "locked")
    return PasswordResult(None, _with_warning(_(WRONG), throttle), "wrong")


def check_code(user: User, method: MfaMethod, code: str, client_id: str | None = None) -> CodeResult:
    """The second sign-in step: a code for one of the user's methods, judged
    only while the guessing limit allows. A replayed code (already accepted)
    is refused but is no guess: it does not count."""
    counted = counter(user)
    if not lockout.reserve(counted):
        return CodeResult(_refusal(counted), "locked")
    result = mfa.check(method, code)
    if result.ok or result.outcome is mfa.Outcome.REPLAYED:
        lockout.release(counted)
        db.session.commit()  # the code's time step used up and the try given back, at once
        return (
            CodeResult() if result.ok else CodeResult(messages.code_refusal(result, method.kind), "replayed")
        )
    _count_wrong(counted, "mfa_failed", user, client_id=client_id, method=method.kind)
    if seconds := locked_for(counted):
        return CodeResult(locked_message(seconds), "locked")
    return CodeResult(_with_warning(messages.code_refusal(result, method.kind), counted), "wrong")


RECOVERY_WRONG = _l("That recovery code is not right, or it was already used. Check it and try again.")
RECOVERY_SHAPE = _l("A recovery code has 16 letters and digits, like abcd-efgh-jkmn-pqrs.")


def check_recovery_code(user: User, code: str, client_id: str | None = None) -> CodeResult:
    """A recovery code where a one-time code is asked for: a guess like a
    code, judged only while the guessing limit allows. Something that is not
    even shaped like a code costs no try."""
    if len(recovery.normalize(code)) != recovery.LENGTH:
        return CodeResult(str(RECOVERY_SHAPE), "invalid")
    counted = counter(user)
    if not lockout.reserve(counted):
        return CodeResult(_refusal(counted), "locked")
    if recovery.use(user, code):
        lockout.release(counted)
        db.session.commit()
        return CodeResult()
    _count_wrong(counted, "mfa_failed", user, client_id=client_id, method="recovery")
    if seconds := locked_for(counted):
        return CodeResult(locked_message(seconds), "locked")
    return CodeResult(_with_warning(str(RECOVERY_WRONG), counted), "wrong")


def standing(user: User) -> Standing:
    """This browser's standing with `user`'s guessing limit (the code page)."""
    counted = counter(user)
    if seconds := locked_for(counted):
        return Standing(locked_message(seconds), locked=True)
    return Standing(warning(counted))


def check_current_password(user: User, password: str) -> str | None:
    """Re-check a signed-in user's password (changing it); wrong guesses count
    towards the same lockout as at sign-in. None when right, else the message."""
    counted = counter(user)
    if not lockout.reserve(counted):
        passwords.dummy_verify(password)
        return _refusal(counted)
    if passwords.verify_password(user.password_hash, password):
        record_success(user)
        db.session.commit()
        return None
    _count_wrong(counted, "password_change_failed", user)
    if seconds := locked_for(counted):
        return locked_message(seconds)
    return _with_warning(_("Your current password is not right."), counted)
