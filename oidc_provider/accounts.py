"""Account services: register, activate, new activation link, forgot/reset
password, disable/enable. The pages (account.py) and the commands (cli.py)
call these; they take plain arguments (no flask.request) and commit.

Emailed links carry a random token (db.new_token(), 256 bits); only its
SHA-256 is stored (`AccountToken`), it works once and expires
(ACTIVATION_LIFETIME, PASSWORD_RESET_LIFETIME).

No enumeration: for an unknown address, or one whose mail budget is spent,
the functions return an outcome the pages never show; they answer the same
page whatever happened. Each address may be sent ACCOUNT_MAILS_PER_HOUR
emails an hour, one per ACCOUNT_MAIL_COOLDOWN, counted from the rows in the
database (tokens issued, "already registered" notices), so every instance
agrees and restarts forget nothing.

Mail is queued (delivery.py, outbox.py), never sent in a request. The forms
that only ask for a link (forgot password, new activation link) do not even
look the address up: `ask_for_link` queues the request, and the outbox worker
decides (`_compose_link`) whether a mail results, so the answer takes the same
time whatever the address.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from werkzeug.routing import BuildError

from . import addresses, audit, delivery, formats, locales, logout, passwords, sessions
from .db import db, new_token, now, same, token_hash
from .models import AccountToken, AuditEvent, SsoSession, Token, User

ACTIVATION, RESET = "activation", "reset"
NOT_ME = "not_me"  # "This wasn't me" in a new-device alert (alerts.py)
DUPLICATE = "duplicate"  # the "you already have an account" notice: no token, counted in the audit log


@dataclass(frozen=True)
class LinkMail:
    """The email that carries a link of one purpose."""

    subject: str  # %(portal)s is replaced by PORTAL_NAME
    template: str
    endpoint: str
    lifetime: str  # the setting


LINK_MAILS = {
    ACTIVATION: LinkMail(
        _l("Activate your %(portal)s account"), "activation", "account.activate", "ACTIVATION_LIFETIME"
    ),
    RESET: LinkMail(
        _l("Set a new password for %(portal)s"),
        "reset_password",
        "account.reset_password",
        "PASSWORD_RESET_LIFETIME",
    ),
    NOT_ME: LinkMail(
        _l("New sign-in to your %(portal)s account"), "new_device", "account.not_me", "NOT_ME_LINK_LIFETIME"
    ),
}


class Sent(StrEnum):
    """What became of an email a service was asked to send."""

    QUEUED = "queued"  # in the outbox: the worker sends it (and audits a failure)
    FAILED = "failed"  # it could not even be queued (an address no mail can go to)
    LIMITED = "limited"  # the address's mail budget is spent
    NO_ACCOUNT = "no account"
    NOT_NEEDED = "not needed"  # e.g. a new activation link for an active account


@dataclass(frozen=True)
class Mailed:
    """What a service did about an email, and the outbox id when one was queued."""

    outcome: Sent
    message_id: int | None = None


class PasswordRejected(ValueError):
    """The password breaks the policy; `problems` are sentences for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


class LinkInvalid(Exception):
    """An emailed link that cannot be used: `reason` is unknown, expired, used
    or disabled; `user` is its account when known."""

    def __init__(self, reason: str, user: User | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user = user


class NameRejected(ValueError):
    """The name cannot be a person's name; the message is a sentence for people."""


class NoAccount(LookupError):
    """No account has that email address (command line only: pages never say)."""


# --- looking up ----------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """The form addresses are stored and looked up in (`addresses.normalize`):
    one account per mailbox, whatever the capitals typed."""
    return addresses.normalize(email)


def find_user(email: str) -> User | None:
    """The account with this address, or None."""
    return db.session.scalar(db.select(User).filter_by(email=normalize_email(email)))


def get_user(email: str) -> User:
    """The account with this address; NoAccount when there is none."""
    user = find_user(email)
    if user is None:
        raise NoAccount(f"no account has the email address {email}")
    return user


def state(user: User) -> str:
    """pending activation, active or disabled."""
    if user.disabled_at is not None:
        return "disabled"
    return "active" if user.activated_at is not None else "pending activation"


def list_users() -> list[User]:
    """Every account, oldest first."""
    return list(db.session.scalars(db.select(User).order_by(User.created_at, User.id)))


NAME_MAX = 200
# Unicode bidi embeddings, overrides and isolates: they reorder the text around a
# name (in a page or a mail) without being seen
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_name(name: str | None) -> str:
    """A person's full name, trimmed: any script, no control characters (line
    breaks, NUL, bidi overrides). Raises NameRejected."""
    text = (name or "").strip()
    if not text:
        raise NameRejected(_("Enter your full name."))
    if len(text) > NAME_MAX:
        raise NameRejected(_("Use at most %(max)d characters for your name.", max=NAME_MAX))
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI_CONTROLS for c in text):
        raise NameRejected(_("Your name cannot contain line breaks or other control characters."))
    return text


# --- register and activate -----------------------------------------------------------


def register_user(name: str, email: str, password: str, locale: str | None = None) -> Mailed:
    """Create an account pending activation and email its activation link.
    `locale`: the language of the page it was registered on, the account's
    language from then on (locales.py).

    Registering an address whose account still awaits activation registers
    it again: this name and password replace the pending ones, every earlier
    activation link stops working, and this registration's link is mailed
    (so whoever holds the mailbox ends up with the password they chose, not
    one a stranger registered first). An active or disabled account's
    address gets an "already registered" email instead, without a link that
    activates anything. Raises AddressRejected, NameRejected or
    PasswordRejected before anything is stored."""
    email = addresses.check(email)
    name = check_name(name)
    problems = passwords.policy_problems(password, email)
    if problems:
        raise PasswordRejected(problems)
    password_hash = passwords.hash_password(password)  # also for existing ones: same time spent
    existing = find_user(email)
    if existing is not None:
        return _register_again(existing, name, password_hash, locale)
    user = User(
        sub=new_token(16),
        email=email,
        name=name,
        password_hash=password_hash,
        created_at=now(),
        locale=locales.supported(locale),
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:  # registered a moment ago by a concurrent request
        db.session.rollback()
        return _register_again(get_user(email), name, password_hash, locale)
    token = _issue(user, ACTIVATION)
    audit.record("registered", user=user)
    return _post(_link_mail(user, ACTIVATION, token))


def create_user(name: str, email: str, password: str, *, activated: bool = False) -> User:
    """An account made by an admin (`users create`): the same password policy;
    activated at once or sent an activation link. Raises AddressRejected or
    NameRejected or PasswordRejected, or ValueError when the address already
    has an account."""
    email = addresses.check(email)
    name = check_name(name)
    problems = passwords.policy_problems(password, email)
    if problems:
        raise PasswordRejected(problems)
    if find_user(email) is not None:
        raise ValueError(f"{email} already has an account")
    user = User(
        sub=new_token(16),
        email=email,
        name=name,
        password_hash=passwords.hash_password(password),
        created_at=now(),
        activated_at=now() if activated else None,
    )
    db.session.add(user)
    audit.record("registered", user=user, by="admin")
    db.session.commit()
    if not activated:
        _send_link(user, ACTIVATION, "activation_resent", limited=False)
    return user


def _register_again(user: User, name: str, password_hash: str, locale: str | None = None) -> Mailed:
    """A registration for an address that has an account: a pending one takes
    this registration's name and password, with a new activation link (the
    earlier ones stop working); an active or disabled one is only told."""
    pending = user.activated_at is None and user.disabled_at is None
    if not _may_send(user, ACTIVATION if pending else DUPLICATE):
        audit.record("registered", user=user, outcome="limited")
        return _post(Sent.LIMITED)
    if pending:
        user.name, user.password_hash = name, password_hash
        user.locale = locales.supported(locale) or user.locale
        _use_all(user, ACTIVATION)
        token = _issue(user, ACTIVATION)
        audit.record("registered", user=user, outcome="replaced")
        return _post(_link_mail(user, ACTIVATION, token))
    audit.record("registered", user=user, outcome=DUPLICATE)
    return _post(
        _account_mail(
            user,
            _l("You already have a %(portal)s account"),
            "already_registered",
            login_link=_login_link(),
            forgot_link=_forgot_link(),
        )
    )


def activate(token: str) -> User:
    """Redeem an activation link: the account becomes active, with the
    password of the registration the link was sent for. Raises LinkInvalid
    (unknown, expired, used, or replaced by a newer registration)."""
    row = _redeem(token, ACTIVATION)
    user = row.user
    if row.password_hash:
        user.password_hash = row.password_hash
    _mark_activated(user, via=ACTIVATION)
    db.session.commit()
    return user


def _mark_activated(user: User, via: str) -> None:
    _use_all(user, ACTIVATION)
    if user.activated_at is None:
        user.activated_at = now()
        audit.record("activated", user=user, via=via)


def resend_activation(email: str, *, limited: bool = True) -> Mailed:
    """Email a new activation link to a pending account. `limited=False`
    (support's command) ignores the per-address mail budget."""
    return _post(_resend_mail(email, limited=limited))


def _resend_mail(email: str, *, limited: bool = True) -> delivery.Mail | Sent:
    user = find_user(email)
    if user is None:
        return Sent.NO_ACCOUNT
    if user.activated_at is not None:
        return Sent.NOT_NEEDED
    return _link_to_send(user, ACTIVATION, "activation_resent", limited=limited)


# --- forgot and reset password -------------------------------------------------------


def request_reset(email: str) -> Mailed:
    """Email a password-reset link to an existing, enabled account."""
    return _post(_reset_mail(email))


def _reset_mail(email: str) -> delivery.Mail | Sent:
    user = find_user(email)
    if user is None or user.disabled_at is not None:
        outcome = "unknown" if user is None else "disabled"
        audit.record("password_reset_requested", user=user, email=normalize_email(email), outcome=outcome)
        return Sent.NO_ACCOUNT
    return _link_to_send(user, RESET, "password_reset_requested")


# what a public form may ask for by email, without learning whether the address has an account
LINK_REQUESTS = {"reset": _reset_mail, "resend": _resend_mail}


def ask_for_link(request: str, email: str) -> int:
    """A public form asked for a link: "reset" (forgot password) or "resend"
    (a new activation link). Queues the request and returns its outbox id; the
    worker looks the address up and writes the mail, if any (`_compose_link`).
    The work done here is the same whatever the address (no enumeration by
    time); what the page then says about the message does not tell either."""
    if request not in LINK_REQUESTS:
        raise ValueError(f"unknown link request {request!r}")
    return delivery.send_composed(
        "account_link", request=request, email=normalize_email(email), origin=audit.current_origin()
    )


@delivery.composer("account_link")
def _compose_link(request: str, email: str, origin: dict[str, str | None]) -> delivery.Mail | None:
    """In the worker: the mail `ask_for_link` asked for, or None (no account,
    nothing to do, or the address's budget is spent: recorded in the audit log,
    as coming from the request's address)."""
    with audit.origin(origin.get("ip"), origin.get("user_agent")):
        mail = LINK_REQUESTS[request](email)
    return mail if isinstance(mail, delivery.Mail) else None


def reset_password(token: str, password: str) -> User:
    """Redeem a reset link: set the new password, end every session and
    trusted computer of the user, and confirm by email. MFA is unchanged: the
    next sign-in still asks for a code. A pending account becomes active (the
    link proved the address). Raises LinkInvalid or PasswordRejected (the link
    then still works)."""
    row = check_link(token, RESET)
    user = row.user
    if user.disabled_at is not None:
        raise LinkInvalid("disabled", user)
    problems = passwords.policy_problems(password, user.email)
    if problems:
        raise PasswordRejected(problems)
    _use_all(user, RESET)
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = now()
    _mark_activated(user, via=RESET)
    ended = end_access(user)
    audit.record("password_reset", user=user, sessions_ended=ended)
    _post(_password_changed_mail(user))
    return user


def change_password(user: User, password: str, keep_sid: str | None) -> int:
    """A signed-in user chose a new password (the current one was checked):
    everything obtained with the old one ends as after a reset (`end_access`)
    except this browser's session and its apps' tokens, and the user gets an
    email. Returns how many other sessions ended. Raises PasswordRejected."""
    problems = passwords.policy_problems(password, user.email)
    if problems:
        raise PasswordRejected(problems)
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = now()
    ended = end_access(user, keep_sid=keep_sid)
    audit.record("password_changed", user=user, sessions_ended=ended)
    _post(_password_changed_mail(user, kept_this_browser=keep_sid is not None))
    return ended


def end_access(user: User, keep_sid: str | None = None) -> int:
    """After a password reset or change, a support MFA reset, or when
    disabling: end every SSO session of the user as a logout does (its apps are
    told by back-channel logout), forget every trusted computer, revoke every
    token left, offline ones too, and every half-finished sign-in (security
    stamp), so nothing obtained before lives on. `keep_sid`: the session of
    the browser that changed the password, kept with its tokens. Returns how
    many sessions ended; commits."""
    open_sessions = db.session.scalars(db.select(SsoSession).filter_by(user_id=user.id, ended_at=None)).all()
    others = [sso for sso in open_sessions if keep_sid is None or sso.sid != keep_sid]
    for sso in others:
        logout.end_session(sso, reason="session_ended")
    sessions.revoke_trusted_computers(user.id)
    tokens = update(Token).where(Token.user_id == user.id, Token.revoked_at.is_(None))
    if keep_sid is not None:
        tokens = tokens.where(or_(Token.sid.is_(None), Token.sid != keep_sid))
    db.session.execute(tokens.values(revoked_at=now()))
    bump_security_stamp(user)
    db.session.commit()
    return len(others)


def bump_security_stamp(user: User) -> None:
    """Whatever proves who the person is changed (password, MFA methods reset,
    account disabled, signed out): every half-finished sign-in made before
    stops working (`sessions.pending`). Caller commits."""
    user.security_stamp = new_token(16)


# --- support -------------------------------------------------------------------------


def disable(email: str, reason: str) -> User:
    """Disable an account: no sign-in, sessions and trusted computers ended."""
    user = get_user(email)
    user.disabled_at = now()
    user.disabled_reason = reason[:500]
    ended = end_access(user)
    audit.record("account_disabled", user=user, reason=reason[:500], sessions_ended=ended)
    db.session.commit()
    return user


def enable(email: str) -> User:
    """Enable a disabled account again."""
    user = get_user(email)
    if user.disabled_at is not None:
        user.disabled_at = None
        user.disabled_reason = None
        audit.record("account_enabled", user=user)
        db.session.commit()
    return user


# --- links ---------------------------------------------------------------------------


def check_link(token: str, purpose: str) -> AccountToken:
    """The unused, unexpired token row for an emailed link, without using it.
    Raises LinkInvalid."""
    digest = token_hash(token or "")
    row = db.session.scalar(db.select(AccountToken).filter_by(token_hash=digest, purpose=purpose))
    if row is None or not same(row.token_hash, digest):
        raise LinkInvalid("unknown")
    if row.used_at is not None:
        # an activation link of an account still pending was replaced by a newer registration
        replaced = purpose == ACTIVATION and row.user.activated_at is None
        raise LinkInvalid("replaced" if replaced else "used", row.user)
    if row.expires_at <= now():
        raise LinkInvalid("expired", row.user)
    return row


def _redeem(token: str, purpose: str) -> AccountToken:
    row = check_link(token, purpose)
    row.used_at = now()
    return row


def _use_all(user: User, purpose: str) -> None:
    """Every open link of this purpose stops working (one use for all)."""
    at = now()
    open_rows = db.select(AccountToken).filter_by(user_id=user.id, purpose=purpose, used_at=None)
    for row in db.session.scalars(open_rows):
        row.used_at = at


def issue_link(user: User, purpose: str) -> tuple[str, AccountToken]:
    """A new emailed link's token and its row, for services that mail their
    own message around it (caller commits)."""
    token = _issue(user, purpose)
    db.session.flush()
    return token, db.session.scalar(db.select(AccountToken).filter_by(token_hash=token_hash(token)))


def redeem_link(token: str, purpose: str) -> AccountToken:
    """Use up an emailed link (caller commits). Raises LinkInvalid."""
    return _redeem(token, purpose)


def _issue(user: User, purpose: str) -> str:
    """A new token for an emailed link; only its hash is stored (caller commits).
    An activation link keeps the password (hash) it activates: the one the
    account has now, chosen by the registration it is sent for."""
    token = new_token()
    at = now()
    lifetime = timedelta(seconds=current_app.config[LINK_MAILS[purpose].lifetime])
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_hash(token),
            created_at=at,
            expires_at=at + lifetime,
            password_hash=user.password_hash if purpose == ACTIVATION else None,
        )
    )
    return token


# --- mail ----------------------------------------------------------------------------


def _send_link(user: User, purpose: str, event: str, *, limited: bool = True) -> Mailed:
    """Record `event` and email a new link for `purpose`, unless `limited` and
    the address's mail budget is spent."""
    return _post(_link_to_send(user, purpose, event, limited=limited))


def _link_to_send(user: User, purpose: str, event: str, *, limited: bool = True) -> delivery.Mail | Sent:
    """Record `event` and issue a new link for `purpose` (the caller commits):
    its mail, or LIMITED when `limited` and the address's budget is spent."""
    if limited and not _may_send(user, purpose):
        audit.record(event, user=user, outcome="limited")
        return Sent.LIMITED
    token = _issue(user, purpose)
    audit.record(event, user=user)
    return _link_mail(user, purpose, token)


def _link_mail(user: User, purpose: str, token: str) -> delivery.Mail:
    kind = LINK_MAILS[purpose]
    with locales.speaking(user.locale):
        valid_for = formats.duration(current_app.config[kind.lifetime])
    return _account_mail(
        user,
        kind.subject,
        kind.template,
        link=delivery.link(kind.endpoint, token=token),
        valid_for=valid_for,
    )


def _may_send(user: User, purpose: str) -> bool:
    """Within the address's budget: none in the cooldown, fewer than the hourly limit."""
    cfg = current_app.config
    at = now()
    sent = _sent_since(user, purpose, at - timedelta(hours=1))
    cooldown_start = at - timedelta(seconds=cfg["ACCOUNT_MAIL_COOLDOWN"])
    return len(sent) < cfg["ACCOUNT_MAILS_PER_HOUR"] and all(t <= cooldown_start for t in sent)


def _sent_since(user: User, purpose: str, since: datetime) -> list[datetime]:
    if purpose == DUPLICATE:
        select = db.select(AuditEvent.at).filter_by(user_id=user.id, event="registered", outcome=DUPLICATE)
        return list(db.session.scalars(select.where(AuditEvent.at >= since)))
    select = db.select(AccountToken.created_at).filter_by(user_id=user.id, purpose=purpose)
    return list(db.session.scalars(select.where(AccountToken.created_at >= since)))


def _account_mail(user: User, subject: str, template: str, **context: object) -> delivery.Mail:
    """A mail to the account's address, in the account's language (`subject`:
    a lazy sentence with %(portal)s). Mail to an address not yet verified
    (no activation yet) greets without the name: it was typed by whoever
    registered, maybe not the owner of the mailbox."""
    name = user.name if user.activated_at is not None else None
    locale = locales.recipient_locale(user)
    with locales.speaking(locale):
        text = str(subject) % {"portal": _portal()}
    return delivery.Mail(user.email, text, template, {"name": name, **context}, user.id, locale)


def _password_changed_mail(user: User, **context: object) -> delivery.Mail:
    subject = _l("Your %(portal)s password was changed")
    return _account_mail(user, subject, "password_changed", forgot_link=_forgot_link(), **context)


def _post(mail: delivery.Mail | Sent) -> Mailed:
    """Queue `mail` with everything pending (one commit), or commit the reason there is none."""
    if isinstance(mail, Sent):
        db.session.commit()
        return Mailed(mail)
    message_id = delivery.queue_mail(mail)
    if message_id is None:
        db.session.commit()
        return Mailed(Sent.FAILED)
    return Mailed(Sent.QUEUED, message_id)


def _portal() -> str:
    return current_app.config["PORTAL_NAME"]


def _login_link() -> str:
    try:
        return delivery.link("login.password")
    except BuildError:  # the sign-in blueprint is not registered (yet)
        return current_app.config["OIDC_ISSUER"] + "/login"


def _forgot_link() -> str:
    return delivery.link("account.forgot_password")
