"""What the pages tell a person about their codes and MFA changes: one place
for these sentences, shared by the sign-in, enrolment and Manage MFA pages.

A change to the sign-in methods is told twice: on the page, in the page's
language, and by email, in the account's (`Change.email` is a lazy sentence,
made of plain values, that speaks whatever language it is read in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, flash
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from . import audit, delivery, formats, locales, outbox, sessions
from .db import db
from .mfa import Outcome, SendOutcome, SendResult, VerifyResult, mask, shown
from .models import MfaMethod, User

CODE_REFUSALS = {
    Outcome.WRONG: _l("That code is not right. Check the code and try again."),
    Outcome.EXPIRED: _l("That code has expired. Send a new code."),
    Outcome.REPLAYED: _l("That code was already used. Send a new code."),
    Outcome.LOCKED: _l("Too many wrong tries for this code. Send a new code."),
    Outcome.NOT_SENT: _l("Send a code first."),
}
# an authenticator app shows a new code every 30 seconds, from its own clock
APP_REPLAYED = _l("That code was already used. Wait for the next code in your app.")
APP_WRONG = _l(
    "That code is not right. Enter the code your app shows now; if it still fails, "
    "check that your phone sets its date and time automatically."
)


def _wait(seconds: int) -> str:
    """ "47 seconds", "3 minutes" (rounded up: never too early)."""
    return formats.duration(seconds) if seconds < 120 else formats.duration(-(-seconds // 60) * 60)


def code_refusal(result: VerifyResult, kind: str) -> str:
    """Why a code for a method of `kind` (totp, email, sms) was refused, and what to do."""
    if kind == "totp":  # wrong or replayed: nothing is sent, nothing expires
        return str(APP_WRONG if result.outcome is Outcome.WRONG else APP_REPLAYED)
    message = str(CODE_REFUSALS[result.outcome])
    if result.outcome is Outcome.WRONG and result.attempts_left is not None:
        left = result.attempts_left
        message += " " + ngettext("%(num)d try left for this code.", "%(num)d tries left for this code.", left)
    return message


def code_sent(method: MfaMethod, result: SendResult, full: bool = False) -> tuple[str, str]:
    """What to tell the user after asking for a code: (message, flash category).
    `full`: name the address or number in full (set-up pages: the person typed it)."""
    wait = _wait(result.seconds_left)
    target = shown(method) if full else mask(method)
    return {
        SendOutcome.SENT: (
            _("We're sending a code to %(target)s; it usually arrives within a minute.", target=target),
            "success",
        ),
        SendOutcome.COOLDOWN: (
            _("A code was sent moments ago. You can ask for a new one in %(wait)s.", wait=wait),
            "info",
        ),
        SendOutcome.HOURLY_LIMIT: (
            _("Too many codes were sent. You can ask for a new one in %(wait)s.", wait=wait),
            "error",
        ),
        SendOutcome.FAILED: (_("We could not send the code right now. Please try again in a moment."), "error"),
    }[result.outcome]


def code_progress(method: MfaMethod, message_id: int | None) -> outbox.Progress:
    """How the code last asked for on this page (`message_id`) is doing."""
    return outbox.progress(message_id, outbox.SMS if method.kind == "sms" else outbox.MAIL)


def code_not_sent(method: MfaMethod, full: bool = False) -> str:
    """The code (or its last attempt) failed: say so, and what to do."""
    target = shown(method) if full else mask(method)
    return _("We could not send the code to %(target)s; try again, or use another method.", target=target)


# --- changes to the sign-in methods ----------------------------------------------------


def describe(method: MfaMethod, full: bool = False) -> Any:
    """A method in a sentence: "the authenticator app", "email codes to
    j***@example.org", "text message codes to +31 6 ****5678". `full`: the
    address or number as it is, for its signed-in owner's pages (emails and
    the audit log keep it masked). Lazy: it speaks the language it is read
    in (a page, or the account's email)."""
    if method.kind == "totp":
        return _l("the authenticator app")
    target = shown(method) if full else mask(method)
    if method.kind == "email":
        return _l("email codes to %(target)s", target=target)
    return _l("text message codes to %(target)s", target=target)


@dataclass(frozen=True)
class Change:
    """One change to a user's methods, told twice: `email` completes "… on
    your <portal> account." (the mfa_changed email, lazy: read in the
    account's language), `page` is the flash (the page's language)."""

    email: Any
    page: str


def method_added(method: MfaMethod) -> Change:
    """A method was added."""
    return Change(
        _l("A new sign-in method (%(method)s) was added", method=describe(method)),
        _("Done: you can now sign in with %(method)s.", method=describe(method, full=True)),
    )


def method_replaced(method: MfaMethod, old: str, old_shown: str) -> Change:
    """`method` took the place of the method masked (`mask`) as `old`, shown in
    full (`shown`) as `old_shown`."""
    if method.kind == "totp":
        return Change(
            _l("Your authenticator app was replaced by a new one"),
            _("Your new authenticator app is set up. Codes from the old one no longer work."),
        )
    return Change(
        _l("Your codes now go to %(new)s instead of %(old)s", new=mask(method), old=old),
        _("Codes now go to %(new)s instead of %(old)s.", new=shown(method), old=old_shown),
    )


def method_removed(old: Any, old_shown: Any) -> Change:
    """A method was removed: `describe`d masked as `old`, in full as `old_shown`."""
    return Change(
        _l("A sign-in method (%(method)s) was removed", method=old), _("Removed: %(method)s.", method=old_shown)
    )


def _account_mail(user: User, subject: Any, template: str, **context: Any) -> int | None:
    """Queue a mail to the account address in the account's language (`subject`
    and lazy values of `context` are read in it)."""
    locale = locales.recipient_locale(user)
    with locales.speaking(locale):
        return delivery.send_mail(
            user.email,
            str(subject) % {"portal": current_app.config["PORTAL_NAME"]},
            template,
            user_id=user.id,
            locale=locale,
            name=user.name,
            **{name: value if isinstance(value, int) else str(value) for name, value in context.items()},
        )


def mfa_changed(user: User, change: Any) -> int | None:
    """Email the account address about a change to its sign-in methods (SPEC 8),
    `change` being a Change's lazy `email`. The outbox id, or None when it
    could not be queued."""
    return _account_mail(
        user,
        _l("Your %(portal)s sign-in methods changed"),
        "mfa_changed",
        change=change,
        forgot_link=delivery.link("account.forgot_password"),
    )


def settle_mfa_change(user: User, change: Change, event: str, **details: Any) -> None:
    """After a person changed their sign-in methods: the audit record, the end of
    every "trust this computer" (an MFA change ends them all), one commit, the
    mail to the account address and the page's message."""
    audit.record(event, user=user, **details)
    sessions.revoke_trusted_computers(user.id)
    db.session.commit()
    mfa_changed(user, change.email)
    flash(change.page, "success")


def mfa_reset(user: User) -> int | None:
    """Email the account address that support removed every method (SPEC 9):
    the next sign-in asks to set one up again. The outbox id, or None when it
    could not be queued."""
    return _account_mail(
        user,
        _l("Your %(portal)s sign-in methods were reset"),
        "mfa_reset",
        login_link=delivery.link("login.password"),
        forgot_link=delivery.link("account.forgot_password"),
    )


# --- passkeys and recovery codes -----------------------------------------------------


def describe_passkey(name: str) -> Any:
    """A passkey in a sentence: "the passkey “Work laptop”" (lazy, as `describe`)."""
    return _l("the passkey “%(name)s”", name=name)


def passkey_added(name: str) -> Change:
    """A passkey was added."""
    return Change(
        _l("A new sign-in method (%(method)s) was added", method=describe_passkey(name)),
        _("Done: you can now sign in with %(method)s.", method=describe_passkey(name)),
    )


def recovery_codes_made() -> Change:
    """A new set of recovery codes replaced the earlier one."""
    return Change(
        _l("A new set of recovery codes was made, and the earlier codes no longer work"),
        _("Here are your new recovery codes. The earlier ones no longer work."),
    )


def recovery_code_signed_in(left: int) -> str:
    """The flash after a sign-in with a recovery code."""
    if left == 0:
        return _(
            "You signed in with your last recovery code. Set up a new sign-in method now, "
            "and make a new set of recovery codes."
        )
    return ngettext(
        "You signed in with a recovery code; %(num)d is left. Set up a new sign-in method now.",
        "You signed in with a recovery code; %(num)d are left. Set up a new sign-in method now.",
        left,
    )


def recovery_code_used(user: User, left: int) -> int | None:
    """Email the account address that a recovery code was used, and how many
    are left. The outbox id, or None when it could not be queued."""
    return _account_mail(
        user,
        _l("A recovery code was used for your %(portal)s account"),
        "recovery_code_used",
        left=left,
        manage_link=delivery.link("portal.mfa_methods"),
        forgot_link=delivery.link("account.forgot_password"),
    )
