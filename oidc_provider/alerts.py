"""New-device sign-in alerts: when a sign-in completes in a browser the
account has not used before (no known-device cookie for it, devices.py), the
person gets an email saying when, in which browser on which system, and from
which IP address (no geolocation service is asked), with a "This wasn't me"
link valid NOT_ME_LINK_LIFETIME seconds, once.

The very first sign-in of an account is no alert: there is no browser yet
to compare with. NEW_DEVICE_ALERTS turns the alerts off.

"This wasn't me" ends every session (apps told by back-channel logout),
revokes every token and trusted computer (`accounts.end_access`), forgets
the browser the alert was about, and starts a password reset.

Layer 2: no request; the sign-in passes what it read from it.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from flask_babel import gettext as _

from . import accounts, audit, delivery, formats, locales
from .db import db
from .models import KnownDevice, User


def is_new_browser(user: User, known: KnownDevice | None) -> bool:
    """A sign-in of `user` in a browser it has not used before (`known`: this
    browser's record, `devices.known`), and not the account's first."""
    if known is not None or not current_app.config["NEW_DEVICE_ALERTS"]:
        return False
    return db.session.scalar(db.select(KnownDevice.id).filter_by(user_id=user.id).limit(1)) is not None


def send(user: User, device: KnownDevice, at: datetime, ip: str | None) -> int | None:
    """Queue the email to the account address about a sign-in in a new
    browser (`device`, just remembered), with its link, in one commit. The
    outbox id, or None when it could not be queued."""
    token, row = accounts.issue_link(user, accounts.NOT_ME)
    row.known_device_id = device.id
    audit.record("new_device_alert", user=user, device=device.label, ip=ip)
    kind = accounts.LINK_MAILS[accounts.NOT_ME]
    locale = locales.recipient_locale(user)
    with locales.speaking(locale):
        return delivery.send_mail(
            user.email,
            str(kind.subject) % {"portal": current_app.config["PORTAL_NAME"]},
            kind.template,
            user_id=user.id,
            expires_at=row.expires_at,  # the link no longer works after this: the mail is not worth sending
            locale=locale,
            name=user.name if user.activated_at is not None else None,
            when=formats.moment(at),
            device=device.label,
            ip=ip or _("unknown"),
            link=delivery.link(kind.endpoint, token=token),
            valid_for=formats.duration(current_app.config[kind.lifetime]),
        )


def check(token: str) -> User:
    """The account a "This wasn't me" link is for, if it still works. Raises
    accounts.LinkInvalid."""
    return accounts.check_link(token, accounts.NOT_ME).user


def wasnt_me(token: str) -> str:
    """The person says a new-device sign-in was not theirs: end all access,
    forget that browser, and return a password-reset token for them to set
    a new password at once. Raises accounts.LinkInvalid."""
    row = accounts.redeem_link(token, accounts.NOT_ME)
    user = row.user
    device = db.session.get(KnownDevice, row.known_device_id) if row.known_device_id else None
    label = device.label if device else None
    if device is not None:  # its wrong guesses no longer count apart from the account's
        db.session.delete(device)
    ended = accounts.end_access(user)
    reset_token, _ = accounts.issue_link(user, accounts.RESET)
    audit.record("signin_disowned", user=user, device=label, sessions_ended=ended)
    db.session.commit()
    return reset_token
