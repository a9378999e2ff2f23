"""How people reach support (SUPPORT_EMAIL, SUPPORT_URL) when the portal
cannot help them itself: above all an MFA reset, which only support may do
(SPEC 9). Pages and emails name the address through `support` in every
template; the reset request is a mailto: link with its subject and body
filled in, so the request arrives with what support needs (the account and
the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from flask import Flask, current_app
from flask_babel import gettext as _


@dataclass(frozen=True)
class Support:
    """Support's contact details, as templates use them."""

    email: str
    url: str  # a help page, or ""

    @property
    def mailto(self) -> str:
        """A plain mailto: link to support."""
        return f"mailto:{self.email}"


def contact() -> Support:
    """Support's address and help page (settings SUPPORT_EMAIL, SUPPORT_URL)."""
    return Support(current_app.config["SUPPORT_EMAIL"], current_app.config["SUPPORT_URL"])


def mfa_reset_subject() -> str:
    """The subject of a request to reset someone's sign-in methods."""
    return _("Request to reset my %(portal)s sign-in methods (MFA)", portal=current_app.config["PORTAL_NAME"])


def mfa_reset_body(account: str | None) -> str:
    """The body of that request: what support needs, with room for the reason."""
    lines = (
        _("Please reset the sign-in methods (MFA) of my %(portal)s account.", portal=current_app.config["PORTAL_NAME"]),
        "",
        _("My account (email address): %(account)s", account=account or ""),
        _("Why I cannot use any of my sign-in methods:") + " ",
    )
    return "\n".join(lines) + "\n"


def mfa_reset_mailto(account: str | None) -> str:
    """A mailto: link that opens a reset request to support, subject and body
    filled in (RFC 6068: percent-encoded, line breaks as CRLF)."""
    body = mfa_reset_body(account).replace("\n", "\r\n")
    return (
        f"mailto:{contact().email}?subject={quote(mfa_reset_subject(), safe='')}&body={quote(body, safe='')}"
    )


def disabled_message() -> str:
    """What a person whose account support disabled reads at sign-in."""
    return _(
        "This account has been disabled. If you think this is a mistake, write to support at %(email)s.",
        email=contact().email,
    )


def _context() -> dict[str, Support]:
    return {"support": contact()}


def init_app(app: Flask) -> None:
    """`support` in every template, pages and emails alike."""
    app.context_processor(_context)
