"""Passkeys: WebAuthn Level 3 credentials as a sign-in method, with the
`webauthn` library doing every CBOR, COSE and signature check.

- The RP ID is the issuer's host and the only origin accepted is the
  issuer's (scheme, host and port): an assertion made on any other page is
  refused. Browsers refuse WebAuthn on an IP address, so passkeys are
  offered only when OIDC_ISSUER names a host (`available`).
- Every ceremony gets a challenge of its own (`PasskeyChallenge`): random,
  handed to one browser, for one purpose, bound to the pending sign-in (after
  the password) or the app's parked request (passwordless), usable once and
  for PASSKEY_CHALLENGE_LIFETIME seconds. It is used up by one conditional
  UPDATE before the library checks the response, so a replayed response finds
  it gone, on any instance.
- Attestation is "none": the portal does not judge authenticator models.
  The signature counter is checked by the library (a counter that does not
  grow, where the authenticator keeps one, is refused) and stored with the
  backup flags after each use.
- The passkey must hold its account (a discoverable credential) so it can
  sign in without an email address; user verification is asked for always
  and required for a passwordless sign-in, which it makes two factors.

Layer 2: no request; the pages pass the browser's binding (`sessions.browser_binding`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import webauthn
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import update
from webauthn.helpers import bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .db import db, now, token_hash
from .mfa import LastMethodError
from .models import Passkey, PasskeyChallenge, PendingSignIn, User

REGISTER, SIGNIN, PASSWORDLESS = "register", "signin", "passwordless"  # what a challenge is for
NAME_MAX = 64
CHALLENGE_BYTES = 32


class PasskeyError(Exception):
    """A passkey response that was refused; the message can be shown as it is
    and never says why (no oracle: unknown passkey, wrong origin, replayed or
    expired challenge, bad signature all read the same)."""


REFUSED = _l("That passkey could not be used. Try again, or use another way to sign in.")
NOT_CREATED = _l("The passkey was not created. Try again, or use another kind of device.")


@dataclass(frozen=True)
class Assertion:
    """A passkey that signed a challenge: whose, and whether the person was
    verified on the device (PIN, fingerprint, face)."""

    passkey: Passkey
    user_verified: bool

    @property
    def user(self) -> User:
        return self.passkey.user


# --- where passkeys work -------------------------------------------------------------


def rp_id() -> str:
    """The WebAuthn Relying Party ID: the issuer's host."""
    return urlsplit(current_app.config["OIDC_ISSUER"]).hostname or ""


def origin() -> str:
    """The one origin whose passkey responses count: the issuer's."""
    parts = urlsplit(current_app.config["OIDC_ISSUER"])
    return f"{parts.scheme}://{parts.netloc}"


def available() -> bool:
    """Passkeys can work here: the issuer names a host, not an IP address
    (WebAuthn's RP ID is a domain)."""
    host = rp_id()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(host)
    return False


# --- challenges ------------------------------------------------------------------------


def _challenge(
    purpose: str,
    browser: str,
    user: User | None = None,
    pending: PendingSignIn | None = None,
    tx_id: str | None = None,
) -> bytes:
    """A new challenge for one ceremony in one browser (caller commits)."""
    at = now()  # expired ones are left to the purge (purge.py)
    value = secrets.token_bytes(CHALLENGE_BYTES)
    db.session.add(
        PasskeyChallenge(
            challenge=bytes_to_base64url(value),
            purpose=purpose,
            browser_hash=token_hash(browser),
            user_id=user.id if user else None,
            pending_id=pending.id if pending else None,
            tx_id=tx_id,
            created_at=at,
            expires_at=at + timedelta(seconds=current_app.config["PASSKEY_CHALLENGE_LIFETIME"]),
        )
    )
    return value


def _is(column: Any, value: object) -> Any:
    return column.is_(None) if value is None else column == value


def _use_challenge(
    client_data_json: bytes,
    purpose: str,
    browser: str,
    user: User | None = None,
    pending: PendingSignIn | None = None,
    tx_id: str | None = None,
) -> bytes:
    """Use up the challenge a response signed, if it is one this browser was
    given for this purpose (and sign-in, and request) and still works: the
    challenge's bytes for the library to compare. Raises PasskeyError."""
    try:
        challenge = parse_client_data_json(client_data_json).challenge
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyError(REFUSED) from None
    at = now()
    used = db.session.execute(
        update(PasskeyChallenge)
        .where(
            PasskeyChallenge.challenge == bytes_to_base64url(challenge),
            PasskeyChallenge.purpose == purpose,
            PasskeyChallenge.browser_hash == token_hash(browser),
            _is(PasskeyChallenge.user_id, user.id if user else None),
            _is(PasskeyChallenge.pending_id, pending.id if pending else None),
            _is(PasskeyChallenge.tx_id, tx_id),
            PasskeyChallenge.used_at.is_(None),
            PasskeyChallenge.expires_at > at,
        )
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()  # used up before anything is judged: a replay finds it gone
    if used.rowcount != 1:
        raise PasskeyError(REFUSED)
    return challenge


# --- registration ----------------------------------------------------------------------


def registration_options(user: User, browser: str) -> str:
    """The options for `navigator.credentials.create()` (JSON, WebAuthn's
    encoding), with a new challenge for this browser (commits)."""
    options = webauthn.generate_registration_options(
        rp_id=rp_id(),
        rp_name=current_app.config["PORTAL_NAME"],
        user_name=user.email,
        user_id=user.sub.encode(),  # opaque and stable, never the email (it is the user handle)
        user_display_name=user.name,
        challenge=_challenge(REGISTER, browser, user=user),
        timeout=current_app.config["PASSKEY_CHALLENGE_LIFETIME"] * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,  # discoverable: signs in without an email
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(user),  # one passkey per authenticator and account
    )
    db.session.commit()
    return webauthn.options_to_json(options)


def register(user: User, browser: str, credential: str, name: str) -> Passkey:
    """Check the response of `navigator.credentials.create()` and keep the new
    passkey under `name` (commits). Raises PasskeyError."""
    try:
        parsed = webauthn.helpers.parse_registration_credential_json(credential)
        challenge = _use_challenge(parsed.response.client_data_json, REGISTER, browser, user=user)
        verified = webauthn.verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
        )
    except PasskeyError:
        raise PasskeyError(NOT_CREATED) from None
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyError(NOT_CREATED) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(db.select(Passkey.id).filter_by(credential_id=credential_id)) is not None:
        raise PasskeyError(NOT_CREATED)  # already registered (exclude_credentials makes this rare)
    passkey = Passkey(
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t.value for t in (parsed.response.transports or [])],
        aaguid=verified.aaguid,
        backup_eligible=verified.credential_device_type == "multi_device",
        backed_up=verified.credential_backed_up,
        name=clean_name(name),
        created_at=now(),
    )
    user.passkeys.append(passkey)
    db.session.commit()
    return passkey


def clean_name(name: str | None, default: str = "Passkey") -> str:
    """A passkey's name as kept: one line, at most NAME_MAX characters."""
    name = " ".join((name or "").split())[:NAME_MAX]
    return name or default


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(p.credential_id)) for p in user.passkeys
    ]


# --- signing in ------------------------------------------------------------------------


def authentication_options(
    browser: str,
    *,
    user: User | None = None,
    pending: PendingSignIn | None = None,
    tx_id: str | None = None,
) -> str:
    """The options for `navigator.credentials.get()` (JSON), with a new
    challenge for this browser (commits). After the password (`user` and its
    `pending` sign-in): that person's passkeys. Passwordless (no user): any
    passkey of this site, the person verified on the device."""
    purpose = SIGNIN if user is not None else PASSWORDLESS
    options = webauthn.generate_authentication_options(
        rp_id=rp_id(),
        challenge=_challenge(purpose, browser, user=user, pending=pending, tx_id=tx_id),
        timeout=current_app.config["PASSKEY_CHALLENGE_LIFETIME"] * 1000,
        allow_credentials=_descriptors(user) if user is not None else [],
        user_verification=(
            UserVerificationRequirement.PREFERRED
            if user is not None
            else UserVerificationRequirement.REQUIRED
        ),
    )
    db.session.commit()
    return webauthn.options_to_json(options)


def authenticate(
    browser: str,
    credential: str,
    *,
    user: User | None = None,
    pending: PendingSignIn | None = None,
    tx_id: str | None = None,
) -> Assertion:
    """Check the response of `navigator.credentials.get()` against the
    challenge this browser was given (see `authentication_options`) and the
    stored passkey; record its use (commits). Raises PasskeyError, the same
    for every reason."""
    purpose = SIGNIN if user is not None else PASSWORDLESS
    try:
        parsed = webauthn.helpers.parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyError(REFUSED) from None
    challenge = _use_challenge(
        parsed.response.client_data_json, purpose, browser, user=user, pending=pending, tx_id=tx_id
    )
    passkey = _stored(parsed.id, parsed.response.user_handle, user)
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=purpose == PASSWORDLESS,  # the passkey is both factors then
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyError(REFUSED) from None
    if (verified.credential_device_type == "multi_device") != passkey.backup_eligible:
        raise PasskeyError(REFUSED)  # backup eligibility never changes for a credential (WebAuthn 6.1.3)
    passkey.sign_count = verified.new_sign_count
    passkey.backed_up = verified.credential_backed_up
    passkey.last_used_at = now()
    db.session.commit()
    return Assertion(passkey, bool(verified.user_verified))


def _stored(credential_id: str, user_handle: bytes | None, user: User | None) -> Passkey:
    """The stored passkey a response names: the person's own (after the
    password), or any whose account the user handle names (passwordless)."""
    passkey = db.session.scalar(db.select(Passkey).filter_by(credential_id=credential_id[:1400]))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise PasskeyError(REFUSED)
    if user_handle is not None and user_handle != passkey.user.sub.encode():
        raise PasskeyError(REFUSED)
    return passkey


def amr(assertion: Assertion, *, with_password: bool) -> list[str]:
    """What a sign-in with this passkey used (RFC 8176): `hwk` for a key held
    by one device, `swk` for a synced passkey (its key leaves the hardware),
    `user` when the person was verified on the device, and `mfa`."""
    key = "swk" if assertion.passkey.backup_eligible else "hwk"
    return [
        *(["pwd"] if with_password else []),
        key,
        *(["user"] if assertion.user_verified else []),
        "mfa",
    ]


# --- the person's passkeys -------------------------------------------------------------


def find(user: User, passkey_id: int | None) -> Passkey | None:
    """The user's passkey with this id, or None."""
    return next((p for p in user.passkeys if p.id == passkey_id), None)


def remove(user: User, passkey: Passkey) -> None:
    """Remove one of the user's passkeys; never the last sign-in method
    (raises `mfa.LastMethodError`). Commits."""
    if not user.confirmed_methods and len(user.passkeys) == 1:
        raise LastMethodError()
    user.passkeys.remove(passkey)
    db.session.commit()


def options_json(options: str) -> str:
    """Options as they go into a page's JSON data block: no "<" at all, so
    nothing in a name can end the block or open a comment."""
    return json.dumps(json.loads(options)).replace("<", "\\u003c")
