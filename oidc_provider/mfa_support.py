"""Support's MFA reset (SPEC 9): the one way an account loses its last method.

For a person who lost every method: all their methods go, they are signed
out everywhere (sessions, trusted computers, tokens: `accounts.end_access`),
the audit log keeps support's reason, and the account address is emailed
(queued in the outbox) that the next sign-in will ask to set up a method
again (the enrolment gate).

Layer 2, above `accounts`, `mfa` and `messages` (none of which imports this).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import accounts, audit, messages, mfa, recovery
from .models import User

REASON_MAX = 500  # as `users disable --reason`


@dataclass(frozen=True)
class ResetReport:
    """What a support reset did."""

    methods_removed: int  # confirmed and pending, passkeys too
    recovery_codes_removed: int  # unused ones
    sessions_ended: int
    message_id: int | None  # the email telling the account address; None: tell them another way


def support_reset(user: User, reason: str) -> ResetReport:
    """Remove every MFA method of `user`, end all their access, record
    `reason` (required: ValueError when blank) and email the user."""
    reason = " ".join(reason.split())[:REASON_MAX]
    if not reason:
        raise ValueError("a support reset needs a reason")
    sessions_ended = accounts.end_access(user)
    removed = len(user.mfa_methods) + len(user.passkeys)
    codes = recovery.left(user)
    audit.record(
        "mfa_reset",
        user=user,
        reason=reason,
        methods_removed=removed,
        recovery_codes_removed=codes,
        sessions_ended=sessions_ended,
    )
    recovery.remove_all(user)
    mfa.reset_all(user)  # commits the audit record and the codes with the deletion
    return ResetReport(removed, codes, sessions_ended, messages.mfa_reset(user))
