"""MFA methods: every one is a 6-digit time-based one-time passcode (RFC 6238).

- `totp`, the authenticator app: SHA-1, 30-second steps, the adjacent step on
  either side accepted for clock drift.
- `email` and `sms`: the same algorithm on a per-method secret with a step of
  OTP_DELIVERY_STEP seconds, so a sent code stays usable for minutes. The
  current and the previous step are accepted (a code sent near the end of a
  step stays valid), but a code expires OTP_DELIVERY_STEP seconds after it was
  sent and dies after OTP_MAX_ATTEMPTS wrong tries.

Every method refuses a time step it has already accepted: the replay guard,
`MfaMethod.last_timecode`, kept in the database so it holds across instances.
Secrets are random 160-bit values, encrypted at rest with a key derived from
SECRET_KEY (changing SECRET_KEY therefore invalidates every enrolled method),
and readable only while their method awaits confirmation.

Layer 2: no request; time only from `db.now()`. Every function that changes
rows commits them, so an accepted code's replay guard is durable before the
response leaves.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import phonenumbers
import pyotp
import segno
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from phonenumbers import PhoneNumberType
from sqlalchemy import or_, update

from . import addresses, crypto, delivery, formats, locales
from .db import db, now, timestamp
from .models import MfaMethod, User

KINDS = ("totp", "email", "sms")  # also the order methods are listed in: the authenticator first
DIGITS = 6
TOTP_STEP = 30  # RFC 6238's recommended step, the one every authenticator app assumes
HOUR = 3600
CODE = re.compile(r"[0-9]{6}")
MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
# what a sent code is for: "Use this code to …"
PURPOSES = {  # completes "your code to …" (the email and the SMS)
    "signin": _l("sign in"),
    "enrol": _l("finish setting up this sign-in method"),
    "reauth": _l("confirm it's you before changing your sign-in settings"),
}


class MfaError(Exception):
    """A refusal whose message can be shown to the user as it is."""


class PhoneError(MfaError):
    """A number that cannot receive codes: not a number, not mobile, or an unsupported country."""


class LastMethodError(MfaError):
    """Removing this method would leave the account without MFA (SPEC 9)."""

    def __init__(self) -> None:
        super().__init__(_("This is your only sign-in method, so it can't be removed. Add another one first."))


class EnrolmentError(MfaError):
    """An enrolment step that no longer applies (the method is already confirmed)."""


class Outcome(StrEnum):
    """What `verify` and `confirm_enrolment` decided about a code."""

    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"  # email/SMS: sent more than OTP_DELIVERY_STEP seconds ago
    REPLAYED = "replayed"  # this code (time step) was already accepted
    LOCKED = "locked"  # email/SMS: OTP_MAX_ATTEMPTS wrong tries; send a new code
    NOT_SENT = "not_sent"  # email/SMS: no code was sent yet


@dataclass(frozen=True)
class VerifyResult:
    outcome: Outcome
    attempts_left: int | None = None  # email/SMS, after a wrong code: tries left for this code

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


class SendOutcome(StrEnum):
    """What `send_code` did."""

    SENT = "sent"
    COOLDOWN = "cooldown"  # too soon after the last code (OTP_RESEND_COOLDOWN)
    HOURLY_LIMIT = "hourly_limit"  # OTP_SENDS_PER_HOUR reached
    FAILED = "failed"  # it could not be queued (no mail can go to the address); nothing changed


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    seconds_left: int = 0  # cooldown / hourly_limit: when a code can be sent again
    message_id: int | None = None  # sent: the outbox message carrying the code (outbox.progress)

    @property
    def sent(self) -> bool:
        return self.outcome is SendOutcome.SENT


# --- secrets at rest -----------------------------------------------------------------


MFA_SECRETS = b"mfa-secret-encryption-v1"  # the HKDF label of the MFA secrets' key (crypto.py)


def encrypt_secret(secret: str) -> str:
    """A base32 secret as it is stored (encrypted at rest)."""
    return crypto.encrypt(MFA_SECRETS, secret.encode())


_encrypt = encrypt_secret


def _secret(method: MfaMethod) -> str:
    return crypto.decrypt(MFA_SECRETS, method.secret).decode()


def _new_secret() -> str:
    return pyotp.random_base32(32)  # 32 base32 characters: 160 bits (RFC 4226 4, R6)


# --- enrolment -----------------------------------------------------------------------


def start_enrolment(
    user: User, kind: str, target: str | None = None, *, replaces: MfaMethod | None = None
) -> MfaMethod:
    """Create an unconfirmed method of `kind` for `user`, replacing an earlier
    unconfirmed one of the same kind. `target` is the email address or phone
    number (parsed with `parse_phone`; raises `PhoneError`). `replaces`: the
    confirmed email/SMS method this one takes the place of once confirmed."""
    target = _check_target(kind, target)
    _check_replaces(user, kind, replaces)
    method = MfaMethod(
        kind=kind,
        target=target,
        secret=_encrypt(_new_secret()),
        replaces_id=replaces.id if replaces else None,
    )
    for earlier in [m for m in user.mfa_methods if m.kind == kind and m.confirmed_at is None]:
        # the hourly send limit follows the user, not the row (no limit reset by restarting)
        method.send_window_start, method.sends_in_window = earlier.send_window_start, earlier.sends_in_window
        user.mfa_methods.remove(earlier)
    user.mfa_methods.append(method)
    db.session.commit()
    return method


def replace_totp(user: User) -> MfaMethod:
    """Start enrolling a new authenticator; the current one keeps working until
    the new one is confirmed, which removes it (`confirm_enrolment`)."""
    return start_enrolment(user, "totp")


def _check_target(kind: str, target: str | None) -> str | None:
    if kind not in KINDS:
        raise ValueError(f"unknown MFA method kind {kind!r}")
    if kind == "sms":
        return parse_phone(target or "")
    if kind == "email":
        try:
            return addresses.check(target)
        except addresses.AddressRejected as rejected:
            raise MfaError(str(rejected)) from None
    return None


def _check_replaces(user: User, kind: str, replaces: MfaMethod | None) -> None:
    if replaces is None:
        return
    if replaces.user_id != user.id or replaces.kind != kind or replaces.confirmed_at is None:
        raise ValueError("a method can only replace a confirmed method of the same user and kind")


def provisioning_uri(method: MfaMethod) -> str:
    """The otpauth:// URI for the QR code: issuer PORTAL_NAME, account the user's
    email. Only while the authenticator awaits confirmation."""
    issuer = current_app.config["PORTAL_NAME"]
    totp = pyotp.TOTP(_provisioning_secret(method), digits=DIGITS, interval=TOTP_STEP)
    uri = totp.provisioning_uri(name=method.user.email, issuer_name=issuer)
    # pyotp leaves out parameters at their defaults; some apps want them spelt out
    return f"{uri}&algorithm=SHA1&digits={DIGITS}&period={TOTP_STEP}"


def grouped_secret(method: MfaMethod) -> str:
    """The secret for typing into an app by hand, in groups of four: "ABCD EFGH …"."""
    secret = _provisioning_secret(method)
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _provisioning_secret(method: MfaMethod) -> str:
    if method.kind != "totp":
        raise ValueError("only an authenticator app is set up from a secret")
    if method.confirmed_at is not None:
        raise EnrolmentError(_("This authenticator app is already set up; its secret is not shown again."))
    return _secret(method)


def qr_svg(uri: str) -> Markup:
    """`uri` as an inline SVG QR code: no XML declaration, no external
    references, a <title> for screen readers; it scales to its box (12rem)."""
    svg = segno.make(uri).svg_inline(
        omitsize=True,  # a viewBox only: the stylesheet sets the size
        border=4,  # the quiet zone the QR standard asks for
        dark="#000",
        light="#fff",  # scannable on a dark page too
        svgclass="qr-code",
        title="QR code to scan with your authenticator app",
    )
    return Markup(svg.replace("<svg ", '<svg role="img" ', 1))  # noqa: S704  (segno's SVG: paths and our title)


def confirm_enrolment(method: MfaMethod, code: str) -> VerifyResult:
    """Confirm an enrolling method with its first code (for email/SMS the code
    `send_code` sent). On success the method counts from now on, and the method
    it replaces goes: a new authenticator removes the previous one; a new email
    address or number removes the method named by `replaces` at the start."""
    if method.confirmed_at is not None:
        raise EnrolmentError(_("This sign-in method is already set up."))
    result = check(method, code)
    if result.ok:
        method.confirmed_at = now()
        for old in replaced_by(method):
            method.user.mfa_methods.remove(old)
        method.replaces_id = None
    db.session.commit()
    return result


def replaced_by(method: MfaMethod) -> list[MfaMethod]:
    """The confirmed methods that go once the enrolling `method` is confirmed:
    every other authenticator for an authenticator, else the one named by
    `replaces` at the start (pages ask before confirming, to tell the change)."""
    others = [m for m in method.user.mfa_methods if m is not method and m.confirmed_at is not None]
    if method.kind == "totp":
        return [m for m in others if m.kind == "totp"]
    return [m for m in others if m.id == method.replaces_id]


# --- codes ---------------------------------------------------------------------------


def verify(method: MfaMethod, code: str) -> VerifyResult:
    """Check a code the user typed for a confirmed method (spaces are ignored).
    On success the time step is remembered and never accepted again. Each try
    of an email/SMS code uses up one of its OTP_MAX_ATTEMPTS tries."""
    if method.confirmed_at is None:
        raise ValueError("an unconfirmed method is checked with confirm_enrolment")
    result = check(method, code)
    db.session.commit()
    return result


def check(method: MfaMethod, code: str) -> VerifyResult:
    """`verify` without the commit (the caller commits, with what it records
    of the outcome): uses up a try (email/SMS) and, on success, the code's
    time step."""
    refused = None if method.kind == "totp" else _sent_code_refusal(method)
    if refused:
        return refused
    typed = "".join(code.split())
    if not CODE.fullmatch(typed):  # a typo that is not even 6 digits costs no try
        return VerifyResult(Outcome.WRONG, _attempts_left(method))
    if method.kind != "totp" and not _take_attempt(method):
        return VerifyResult(Outcome.LOCKED)
    timecode = _matching_timecode(method, typed)
    if timecode is None:
        return VerifyResult(Outcome.WRONG, _attempts_left(method))
    if not _claim_timecode(method, timecode):
        return VerifyResult(Outcome.REPLAYED)
    return VerifyResult(Outcome.OK)


def _sent_code_refusal(method: MfaMethod) -> VerifyResult | None:
    """Why no email/SMS code can be accepted at all right now, if so."""
    cfg = current_app.config
    if method.code_sent_at is None:
        return VerifyResult(Outcome.NOT_SENT)
    if _seconds_since(method.code_sent_at) >= cfg["OTP_DELIVERY_STEP"]:
        return VerifyResult(Outcome.EXPIRED)
    if method.attempts >= cfg["OTP_MAX_ATTEMPTS"]:
        return VerifyResult(Outcome.LOCKED)
    return None


# The two guards below are single conditional UPDATEs, not read-then-write, so
# instances racing with the same code or a burst of guesses cannot both pass.


def _take_attempt(method: MfaMethod) -> bool:
    """Use up one of the sent code's OTP_MAX_ATTEMPTS tries; False if none is left."""
    taken = db.session.execute(
        update(MfaMethod)
        .where(MfaMethod.id == method.id, MfaMethod.attempts < current_app.config["OTP_MAX_ATTEMPTS"])
        .values(attempts=MfaMethod.attempts + 1)
        .execution_options(synchronize_session="fetch")
    )
    return taken.rowcount == 1


def _claim_timecode(method: MfaMethod, timecode: int) -> bool:
    """Record `timecode` as used (the replay guard); False if it or a later one already is."""
    claimed = db.session.execute(
        update(MfaMethod)
        .where(
            MfaMethod.id == method.id,
            or_(MfaMethod.last_timecode.is_(None), MfaMethod.last_timecode < timecode),
        )
        .values(last_timecode=timecode, last_used_at=now())
        .execution_options(synchronize_session="fetch")
    )
    return claimed.rowcount == 1


def _attempts_left(method: MfaMethod) -> int | None:
    if method.kind == "totp":  # guessing authenticator codes counts against the account (login lockout)
        return None
    return max(0, current_app.config["OTP_MAX_ATTEMPTS"] - method.attempts)


def _matching_timecode(method: MfaMethod, code: str) -> int | None:
    """The accepted time step whose code is `code`, compared in constant time.

    RFC 6238 is HOTP (RFC 4226) at counter T = unix time // step; the counter
    is computed here from `db.now()` because pyotp's TOTP reads the wall clock
    by default and caps its step at 120 s, short of the email/SMS step."""
    current = _timecode(method)
    window = (-1, 0, 1) if method.kind == "totp" else (-1, 0)
    hotp = pyotp.HOTP(_secret(method), digits=DIGITS)
    for timecode in (current + offset for offset in window):
        if hotp.verify(code, timecode):
            return timecode
    return None


def _timecode(method: MfaMethod) -> int:
    step = TOTP_STEP if method.kind == "totp" else current_app.config["OTP_DELIVERY_STEP"]
    return timestamp() // step


def _seconds_since(moment: datetime) -> float:
    return (now() - moment).total_seconds()


# --- sending email/SMS codes ---------------------------------------------------------


def send_code(method: MfaMethod, purpose: str = "signin") -> SendResult:
    """Email or text the current code of `method` (a purpose from PURPOSES).

    Refused during the OTP_RESEND_COOLDOWN after an unused code for the same
    purpose (a used enrolment code does not delay the first sign-in code) and
    beyond OTP_SENDS_PER_HOUR. Within one step an untried code is sent again as it
    was (both messages work); once it was tried or accepted, the secret is
    renewed, so the new code, with a fresh OTP_MAX_ATTEMPTS tries, differs."""
    if method.kind == "totp":
        raise ValueError("authenticator codes are not sent")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    waiting = _send_refusal(method, purpose)
    if waiting:
        return waiting
    renew = _code_spent(method)
    secret = _new_secret() if renew else _secret(method)
    code = pyotp.HOTP(secret, digits=DIGITS).at(_timecode(method))
    if renew:  # a new secret has no time step accepted yet
        method.secret, method.last_timecode = _encrypt(secret), None
    _count_send(method, purpose)
    message_id = _deliver(method, code, purpose)  # queued and committed with the changes above
    if message_id is None:
        db.session.rollback()
        return SendResult(SendOutcome.FAILED)
    return SendResult(SendOutcome.SENT, message_id=message_id)


def resend_wait(method: MfaMethod, purpose: str = "signin") -> int:
    """Seconds before another code for `purpose` may be sent (0: now), the
    countdown next to "Send a new code"."""
    refused = _send_refusal(method, purpose) if method.kind != "totp" else None
    return refused.seconds_left if refused else 0


def _send_refusal(method: MfaMethod, purpose: str) -> SendResult | None:
    cfg = current_app.config
    if _code_waiting(method, purpose):
        left = cfg["OTP_RESEND_COOLDOWN"] - _seconds_since(method.code_sent_at)
        if left > 0:
            return SendResult(SendOutcome.COOLDOWN, math.ceil(left))
    if _window_open(method) and method.sends_in_window >= cfg["OTP_SENDS_PER_HOUR"]:
        assert method.send_window_start is not None
        return SendResult(
            SendOutcome.HOURLY_LIMIT, math.ceil(HOUR - _seconds_since(method.send_window_start))
        )
    return None


def _code_waiting(method: MfaMethod, purpose: str) -> bool:
    """A code for `purpose` was sent and not accepted yet: the one the cooldown
    protects (the person may still be waiting for it)."""
    sent = method.code_sent_at
    if sent is None or method.code_purpose not in (purpose, None):  # None: sent before purposes were kept
        return False
    sent_step = timestamp(sent) // current_app.config["OTP_DELIVERY_STEP"]
    accepted = method.last_timecode is not None and method.last_timecode >= sent_step
    return not accepted


def _window_open(method: MfaMethod) -> bool:
    return method.send_window_start is not None and _seconds_since(method.send_window_start) < HOUR


def _code_spent(method: MfaMethod) -> bool:
    """The code of this time step was accepted already, or tried: sending it
    again would be useless, or would give a guesser a fresh set of tries."""
    accepted = method.last_timecode is not None and method.last_timecode >= _timecode(method)
    return accepted or method.attempts > 0


def _count_send(method: MfaMethod, purpose: str) -> None:
    if not _window_open(method):
        method.send_window_start, method.sends_in_window = now(), 0
    method.sends_in_window += 1
    method.code_sent_at = now()
    method.code_purpose = purpose
    method.attempts = 0


def _deliver(method: MfaMethod, code: str, purpose: str) -> int | None:
    """Queue the code (a code that has expired by the time it could go out is not sent)."""
    cfg = current_app.config
    expires_at = now() + timedelta(seconds=cfg["OTP_DELIVERY_STEP"])
    assert method.target is not None
    locale = locales.recipient_locale(method.user)  # the account's language, whoever's page asked
    with locales.speaking(locale):
        valid_for, action = code_lifetime(), str(PURPOSES[purpose])
        if method.kind == "sms":
            text = _sms_text(code, action, valid_for)
            return delivery.send_sms(method.target, text, user_id=method.user_id, expires_at=expires_at)
        return delivery.send_mail(
            method.target,
            _("Your %(portal)s code", portal=cfg["PORTAL_NAME"]),
            "mfa_code",
            user_id=method.user_id,
            expires_at=expires_at,
            locale=locale,
            code=code,
            action=action,
            valid_for=valid_for,
            forgot_link=delivery.link("account.forgot_password"),
        )


def _sms_text(code: str, action: str, valid_for: str) -> str:
    cfg = current_app.config
    host = urlsplit(cfg["OIDC_ISSUER"]).hostname
    text = _(
        "%(code)s is your %(portal)s code to %(action)s. Valid for %(valid_for)s. Not you? Change your password.",
        code=code,
        portal=cfg["PORTAL_NAME"],
        action=action,
        valid_for=valid_for,
    )
    return f"{text}\n\n@{host} #{code}"  # origin-bound code (WebOTP): browsers autofill it


def code_lifetime() -> str:
    """How long a sent code stays valid, in words: "10 minutes"."""
    return formats.duration(current_app.config["OTP_DELIVERY_STEP"])


# --- phone numbers -------------------------------------------------------------------


def parse_phone(raw: str, default_region: str | None = None) -> str:
    """The mobile number `raw` in E.164 ("+31612345678"), or `PhoneError` with a
    message for the user: not a number, not a mobile, or a country outside
    SMS_ALLOWED_REGIONS. `default_region` (ISO code) applies to numbers written
    without their country code."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise PhoneError(_("Enter a mobile number with its country code, like +31 6 12345678.")) from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(_("That is not a valid phone number. Check the country code and the digits."))
    if phonenumbers.region_code_for_number(number) not in current_app.config["SMS_ALLOWED_REGIONS"]:
        raise PhoneError(_unsupported_country(number))
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        raise PhoneError(_("That looks like a landline. Enter a mobile number that can receive text messages."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _unsupported_country(number: phonenumbers.PhoneNumber) -> str:
    from phonenumbers import geocoder  # ~100 MB of place names: load only when a number is refused

    country = geocoder.country_name_for_number(number, locales.current())
    where = f"{country} (+{number.country_code})" if country else f"+{number.country_code}"
    return _("Numbers from %(where)s can't receive codes yet. Use the authenticator app or email instead.", where=where)


# --- the user's methods --------------------------------------------------------------


def methods(user: User) -> list[MfaMethod]:
    """The user's confirmed methods, authenticator first, then email, then SMS."""
    return [m for m in all_methods(user) if m.confirmed_at is not None]


def all_methods(user: User) -> list[MfaMethod]:
    """Every method of the user, confirmed or still awaiting its first code,
    in the order of `methods` (for support's view)."""
    return sorted(user.mfa_methods, key=lambda m: (KINDS.index(m.kind), m.id))


def find(user: User, method_id: int) -> MfaMethod | None:
    """The user's method with this id (confirmed or not), or None: the one way
    pages turn an id from a form into a method."""
    return next((m for m in user.mfa_methods if m.id == method_id), None)


def mask(method: MfaMethod) -> str:
    """How the sign-in page names a method: "j***@example.com",
    "+31 6 ****5678", "Authenticator app"."""
    if method.kind == "totp":
        return "Authenticator app"
    target = method.target or ""
    if method.kind == "email":
        local, _, domain = target.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return _mask_phone(target)


def shown(method: MfaMethod) -> str:
    """How pages name a method to its signed-in owner: in full, so a typo can
    be seen ("ada.codes@example.com", "+31 6 12345678"); `mask` is for the
    code page, before the second step."""
    if method.kind == "totp":
        return _("Authenticator app")
    target = method.target or ""
    if method.kind == "email":
        return target
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(target), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return target


def _mask_phone(e164: str) -> str:
    """International format with only the first national digit and the last four shown."""
    number = phonenumbers.parse(e164)
    prefix = f"+{number.country_code}"
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)[len(prefix) :]
    total, seen, shown = sum(c.isdigit() for c in national), 0, []
    for char in national:
        if char.isdigit():
            seen += 1
            char = char if seen == 1 or seen > total - 4 else "*"
        shown.append(char)
    return prefix + "".join(shown)


def remove(user: User, method_id: int) -> None:
    """Remove one of the user's methods. Raises `LastMethodError` for the last
    confirmed one when no passkey is left either (SPEC 9: only support resets MFA) and `LookupError` for an id
    that is not the user's."""
    method = find(user, method_id)
    if method is None:
        raise LookupError(f"user {user.id} has no MFA method {method_id}")
    if method.confirmed_at is not None and len(user.confirmed_methods) == 1 and not user.passkeys:
        raise LastMethodError()
    for pending in user.mfa_methods:
        if pending.replaces_id == method.id:
            pending.replaces_id = None
    user.mfa_methods.remove(method)
    db.session.commit()


def reset_all(user: User) -> int:
    """Support reset: delete every method of the user, passkeys too (the user
    enrols again at the next sign-in); returns how many there were. The caller ends sessions,
    forgets trusted computers and writes the audit record."""
    count = len(user.mfa_methods) + len(user.passkeys)
    user.mfa_methods.clear()
    user.passkeys.clear()
    db.session.commit()
    return count
