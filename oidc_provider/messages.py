"""What the pages tell a person about their codes and MFA changes: one place
for these sentences, shared by the sign-in, enrolment and Manage MFA pages."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from . import delivery, outbox
from .mfa import Outcome, SendOutcome, SendResult, VerifyResult, mask, shown
from .models import MfaMethod, User

CODE_REFUSALS = {
    Outcome.WRONG: "That code is not right. Check the code and try again.",
    Outcome.EXPIRED: "That code has expired. Send a new code.",
    Outcome.REPLAYED: "That code was already used. Send a new code.",
    Outcome.LOCKED: "Too many wrong tries for this code. Send a new code.",
    Outcome.NOT_SENT: "Send a code first.",
}
# an authenticator app shows a new code every 30 seconds, from its own clock
APP_REPLAYED = "That code was already used. Wait for the next code in your app."
APP_WRONG = (
    "That code is not right. Enter the code your app shows now; if it still fails, "
    "check that your phone sets its date and time automatically."
)


def _wait(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{-(-seconds // 60)} minutes"


def code_refusal(result: VerifyResult, kind: str) -> str:
    """Why a code for a method of `kind` (totp, email, sms) was refused, and what to do."""
    if kind == "totp":  # wrong or replayed: nothing is sent, nothing expires
        return APP_WRONG if result.outcome is Outcome.WRONG else APP_REPLAYED
    message = CODE_REFUSALS[result.outcome]
    if result.outcome is Outcome.WRONG and result.attempts_left is not None:
        left = result.attempts_left
        message += f" {left} {'try' if left == 1 else 'tries'} left for this code."
    return message


def code_sent(method: MfaMethod, result: SendResult, full: bool = False) -> tuple[str, str]:
    """What to tell the user after asking for a code: (message, flash category).
    `full`: name the address or number in full (set-up pages: the person typed it)."""
    wait = _wait(result.seconds_left)
    target = shown(method) if full else mask(method)
    return {
        SendOutcome.SENT: (
            f"We're sending a code to {target}; it usually arrives within a minute.",
            "success",
        ),
        SendOutcome.COOLDOWN: (f"A code was sent moments ago. You can ask for a new one in {wait}.", "info"),
        SendOutcome.HOURLY_LIMIT: (
            f"Too many codes were sent. You can ask for a new one in {wait}.",
            "error",
        ),
        SendOutcome.FAILED: ("We could not send the code right now. Please try again in a moment.", "error"),
    }[result.outcome]


def code_progress(method: MfaMethod, message_id: int | None) -> outbox.Progress:
    """How the code last asked for on this page (`message_id`) is doing."""
    return outbox.progress(message_id, outbox.SMS if method.kind == "sms" else outbox.MAIL)


def code_not_sent(method: MfaMethod, full: bool = False) -> str:
    """The code (or its last attempt) failed: say so, and what to do."""
    target = shown(method) if full else mask(method)
    return f"We could not send the code to {target}; try again, or use another method."


# --- changes to the sign-in methods ----------------------------------------------------


def describe(method: MfaMethod, full: bool = False) -> str:
    """A method in a sentence: "the authenticator app", "email codes to
    j***@example.org", "text message codes to +31 6 ****5678". `full`: the
    address or number as it is, for its signed-in owner's pages (emails and
    the audit log keep it masked)."""
    if method.kind == "totp":
        return "the authenticator app"
    target = shown(method) if full else mask(method)
    if method.kind == "email":
        return f"email codes to {target}"
    return f"text message codes to {target}"


@dataclass(frozen=True)
class Change:
    """One change to a user's methods, told twice: `email` completes "… on
    your <portal> account." (the mfa_changed email), `page` is the flash."""

    email: str
    page: str


def method_added(method: MfaMethod) -> Change:
    return Change(
        f"A new sign-in method ({describe(method)}) was added",
        f"Done: you can now sign in with {describe(method, full=True)}.",
    )


def method_replaced(method: MfaMethod, old: str, old_shown: str) -> Change:
    """`method` took the place of the method masked (`mask`) as `old`, shown in
    full (`shown`) as `old_shown`."""
    if method.kind == "totp":
        return Change(
            "Your authenticator app was replaced by a new one",
            "Your new authenticator app is set up. Codes from the old one no longer work.",
        )
    return Change(
        f"Your codes now go to {mask(method)} instead of {old}",
        f"Codes now go to {shown(method)} instead of {old_shown}.",
    )


def method_removed(old: str, old_shown: str) -> Change:
    """A method was removed: `describe`d masked as `old`, in full as `old_shown`."""
    return Change(f"A sign-in method ({old}) was removed", f"Removed: {old_shown}.")


def mfa_changed(user: User, change: str) -> int | None:
    """Email the account address about a change to its sign-in methods (SPEC 8).
    The outbox id, or None when it could not be queued."""
    return delivery.send_mail(
        user.email,
        f"Your {current_app.config['PORTAL_NAME']} sign-in methods changed",
        "mfa_changed",
        user_id=user.id,
        name=user.name,
        change=change,
        forgot_link=delivery.link("account.forgot_password"),
    )


def mfa_reset(user: User) -> int | None:
    """Email the account address that support removed every method (SPEC 9):
    the next sign-in asks to set one up again. The outbox id, or None when it
    could not be queued."""
    return delivery.send_mail(
        user.email,
        f"Your {current_app.config['PORTAL_NAME']} sign-in methods were reset",
        "mfa_reset",
        user_id=user.id,
        name=user.name,
        login_link=delivery.link("login.password"),
        forgot_link=delivery.link("account.forgot_password"),
    )


# --- passkeys and recovery codes -----------------------------------------------------


def describe_passkey(name: str) -> str:
    """A passkey in a sentence: "the passkey “Work laptop”"."""
    return f"the passkey “{name}”"


def passkey_added(name: str) -> Change:
    return Change(
        f"A new sign-in method ({describe_passkey(name)}) was added",
        f"Done: you can now sign in with {describe_passkey(name)}.",
    )


def recovery_codes_made() -> Change:
    return Change(
        "A new set of recovery codes was made, and the earlier codes no longer work",
        "Here are your new recovery codes. The earlier ones no longer work.",
    )


def recovery_code_signed_in(left: int) -> str:
    """The flash after a sign-in with a recovery code."""
    if left == 0:
        return (
            "You signed in with your last recovery code. Set up a new sign-in method now, "
            "and make a new set of recovery codes."
        )
    if left == 1:
        return "You signed in with a recovery code; 1 is left. Set up a new sign-in method now."
    return f"You signed in with a recovery code; {left} are left. Set up a new sign-in method now."


def recovery_code_used(user: User, left: int) -> int | None:
    """Email the account address that a recovery code was used, and how many
    are left. The outbox id, or None when it could not be queued."""
    return delivery.send_mail(
        user.email,
        f"A recovery code was used for your {current_app.config['PORTAL_NAME']} account",
        "recovery_code_used",
        user_id=user.id,
        name=user.name,
        left=left,
        manage_link=delivery.link("portal.mfa_methods"),
        forgot_link=delivery.link("account.forgot_password"),
    )
