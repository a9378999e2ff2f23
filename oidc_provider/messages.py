"""What the pages tell a person about their codes and MFA changes: one place
for these sentences, shared by the sign-in, enrolment and Manage MFA pages."""

from __future__ import annotations

from flask import current_app

from . import delivery
from .mfa import Outcome, SendOutcome, SendResult, VerifyResult, mask
from .models import MfaMethod, User

CODE_REFUSALS = {
    Outcome.WRONG: "That code is not right. Check the code and try again.",
    Outcome.EXPIRED: "That code has expired. Send a new code.",
    Outcome.REPLAYED: "That code was already used. Wait for the next code in your app.",
    Outcome.LOCKED: "Too many wrong tries for this code. Send a new code.",
    Outcome.NOT_SENT: "Send a code first.",
}


def _wait(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{-(-seconds // 60)} minutes"


def code_refusal(result: VerifyResult) -> str:
    """Why a code was refused, and what to do."""
    message = CODE_REFUSALS[result.outcome]
    if result.outcome is Outcome.WRONG and result.attempts_left is not None:
        message += f" {result.attempts_left} tries left for this code."
    return message


def code_sent(method: MfaMethod, result: SendResult) -> tuple[str, str]:
    """What to tell the user after asking for a code: (message, flash category)."""
    wait = _wait(result.seconds_left)
    return {
        SendOutcome.SENT: (f"We sent a code to {mask(method)}. It can take a minute to arrive.", "success"),
        SendOutcome.COOLDOWN: (f"A code was sent moments ago. You can ask for a new one in {wait}.", "info"),
        SendOutcome.HOURLY_LIMIT: (
            f"Too many codes were sent. You can ask for a new one in {wait}.",
            "error",
        ),
        SendOutcome.FAILED: ("We could not send the code right now. Please try again in a moment.", "error"),
    }[result.outcome]


def mfa_changed(user: User, change: str) -> bool:
    """Email the account address about a change to its sign-in methods (SPEC 8)."""
    return delivery.send_mail(
        user.email,
        f"Your {current_app.config['PORTAL_NAME']} sign-in methods changed",
        "mfa_changed",
        name=user.name,
        change=change,
        forgot_link=delivery.link("account.forgot_password"),
    )
