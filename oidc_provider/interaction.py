"""The login policy: what an authorization request still needs before a code
can be issued. Pure functions, no Flask: the `prompt`, `max_age`,
`id_token_hint`, `acr_values`, trusted-computer and consent rules live here
and tests call them directly.

Order (like node-oidc-provider's interaction policy): login → mfa → consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Authentication Context Class References we issue (OIDC Core 2, `acr`).
ACR_PASSWORD = "urn:login-portal:acr:pwd"  # password only (a trusted computer skipped MFA)
ACR_MFA = "urn:login-portal:acr:mfa"  # two factors in this sign-in: password and code, or a passkey
ACR_VALUES = (ACR_PASSWORD, ACR_MFA)
# The `amr` values a sign-in can carry (RFC 8176): password, one-time code, SMS,
# a passkey held by one device (hwk) or synced (swk), the person verified on
# the device (user), and more than one factor (mfa).
AMR_VALUES = ("pwd", "otp", "sms", "hwk", "swk", "user", "mfa")
# Also understood as a request for MFA (OpenID PAPE's multi-factor policy).
MFA_REQUESTS = {ACR_MFA, "http://schemas.openid.net/pape/policies/2007/06/multi-factor", "mfa"}

LOGIN = "login"
MFA = "mfa"
CONSENT = "consent"


class InteractionError(Exception):
    """An authorization request that cannot proceed without the user."""

    error = "interaction_required"

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


class LoginRequired(InteractionError):
    error = "login_required"


class ConsentRequired(InteractionError):
    error = "consent_required"


@dataclass(frozen=True)
class Request:
    """The parts of an authorization request that decide interaction."""

    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    id_token_hint_sub: str | None = None
    acr_values: tuple[str, ...] = ()
    require_mfa: bool = False  # the client's setting in clients.yaml
    first_party: bool = True
    scope: frozenset[str] = field(default_factory=frozenset)
    started_at: datetime | None = None  # when the request was parked (resumed requests)
    consented: bool = False  # the signed-in user granted consent during this request
    mfa_max_age: int = 0  # MFA_MAX_AGE: seconds an earlier code still counts; 0: a code for this request

    @property
    def wants_mfa(self) -> bool:
        return self.require_mfa or bool(MFA_REQUESTS & set(self.acr_values))


@dataclass(frozen=True)
class Session:
    """The browser's current sign-in, as far as policy cares."""

    sub: str
    auth_time: datetime
    acr: str
    mfa_at: datetime | None = None  # when a one-time code was last accepted in this session


def _fresh(req: Request, sso: Session) -> bool:
    """Signed in after this request started: prompt=login and max_age are met."""
    return req.started_at is not None and sso.auth_time >= req.started_at


def _needs_login(req: Request, sso: Session | None, at: datetime) -> str | None:
    if sso is None:
        return "The user is not signed in."
    if req.id_token_hint_sub is not None and req.id_token_hint_sub != sso.sub:
        return "The signed-in user is not the one in id_token_hint."
    if _fresh(req, sso):
        return None
    if "login" in req.prompt:
        return "prompt=login asks for a new sign-in."
    if "select_account" in req.prompt:  # one account per browser: choosing one is signing in
        return "prompt=select_account lets the user sign in with another account."
    if req.max_age == 0:  # "max_age=0 is equivalent to prompt=login" (OIDC Core 3.1.2.1)
        return "max_age=0 asks for a new sign-in."
    if req.max_age is not None and (at - sso.auth_time).total_seconds() > req.max_age:  # any size of int
        return "The sign-in is older than max_age."
    return None


def _mfa_met(req: Request, sso: Session, at: datetime) -> bool:
    """An app that asks for MFA gets a code entered for this request ("a code
    in this sign-in"), or, when MFA_MAX_AGE allows, one entered within that
    many seconds in this SSO session. A password-only (trusted computer)
    sign-in never counts."""
    if sso.acr != ACR_MFA or sso.mfa_at is None:
        return False
    if req.started_at is not None and sso.mfa_at >= req.started_at:
        return True
    return req.mfa_max_age > 0 and (at - sso.mfa_at).total_seconds() <= req.mfa_max_age


def next_step(req: Request, sso: Session | None, has_consent: bool, at: datetime) -> str | None:
    """The first unmet step (LOGIN, MFA, CONSENT) or None: issue the code.

    Under prompt=none a needed step raises the spec's error instead
    (OIDC Core 3.1.2.6).
    """
    silent = "none" in req.prompt
    reason = _needs_login(req, sso, at)
    if reason:
        if silent:
            raise LoginRequired(reason)
        return LOGIN
    if req.wants_mfa and not _mfa_met(req, sso, at):
        if silent:
            raise InteractionError("This app needs a sign-in with a one-time code.")
        return MFA
    if not req.first_party and (not has_consent or "consent" in req.prompt) and not req.consented:
        if silent:
            raise ConsentRequired("The user has not approved this app yet.")
        return CONSENT
    return None


def parse_prompt(value: str | None) -> frozenset[str]:
    """`prompt` as a set; `none` with anything else is invalid (OIDC Core 3.1.2.1)."""
    prompts = frozenset((value or "").split())
    if "none" in prompts and len(prompts) > 1:
        raise ValueError("prompt=none cannot be combined with other values.")
    return prompts & {"none", "login", "consent", "select_account"}  # others are ignored


def parse_max_age(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()):  # "²".isdigit() is True
        raise ValueError("max_age must be a whole number of seconds.")
    digits = value.lstrip("0") or "0"
    # Beyond 10**100 seconds every sign-in is recent enough; and Python reads no
    # more than 4300 digits (its refusal is no answer for an RP).
    return int(digits) if len(digits) <= 100 else 10**100
