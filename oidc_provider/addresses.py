"""Email addresses: the one rule for which addresses the provider accepts,
and the one form they are stored and looked up in.

Every entry point calls `check`: the forms (register, sign in, forgot
password, new activation link, email codes), `accounts.register_user` and
`accounts.create_user` (so `users create`), and the email MFA method's
target. An address one of them accepts, every other accepts too.

The rule lets a person use any address they can receive mail at: the syntax
of RFC 5321/5322 as email-validator reads it (internationalised domains and
mailbox names included), and a domain with a dot, or the reserved test
domain `.test` (RFC 6761), which staging and demo set-ups use for their own
mail servers. Nothing is looked up in DNS: a sign-in never waits for it, and
the activation email is what proves an address. The other special-use names
(`.local`, `.localhost`, `.invalid`, `.onion`, `.arpa`) are refused: no mail
server reaches them.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_babel import get_locale
from flask_babel import gettext as _


class AddressRejected(ValueError):
    """Not an address mail can be sent to; the message is a sentence for people."""


def check(address: str | None) -> str:
    """The stored form of an acceptable `address`: trimmed, Unicode-normalised
    (NFC, domain in its Unicode form) and lowercased, so one mailbox is one
    account whatever the capitals typed. Raises AddressRejected."""
    text = (address or "").strip()
    if not text:
        raise AddressRejected(_("Enter your email address."))
    try:
        valid = validate_email(text, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        hint = _("Enter an email address like name@example.com.")
        # email-validator explains what is wrong in English only: said on English pages
        english = get_locale() is None or get_locale().language == "en"
        raise AddressRejected(f"{hint} {exc}" if english else hint) from None
    return valid.normalized.lower()


def normalize(address: str | None) -> str:
    """The form an address is looked up in: `check`'s form when it is
    acceptable, else trimmed and lowercased (a lookup never raises)."""
    try:
        return check(address)
    except AddressRejected:
        return (address or "").strip().lower()
