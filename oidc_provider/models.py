"""The provider's tables. Secrets are never stored: only their SHA-256 (tokens)
or argon2id (passwords) hashes, and MFA secrets encrypted.

Times are naive UTC (`db.now()`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import db, new_token, now, timestamp


class User(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    # `sub`: stable, opaque, never the email (OIDC Core 2, 5.7)
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=now)
    activated_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # guessing limit: consecutive failures, and a lockout that doubles each time
    failed_logins: Mapped[int] = mapped_column(default=0)
    lockouts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # changes when whatever proved who the person is changes (password, MFA reset,
    # disable, sign-out): half-finished sign-ins made under an older one are refused
    security_stamp: Mapped[str] = mapped_column(String(64), default=lambda: new_token(16), server_default="")
    # the language the person chose (locales.LOCALES): their pages, emails and SMS;
    # None: no choice saved, pages follow the browser and messages speak English
    locale: Mapped[str | None] = mapped_column(String(8))

    mfa_methods: Mapped[list[MfaMethod]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="MfaMethod.id"
    )
    passkeys: Mapped[list[Passkey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="Passkey.id"
    )

    @property
    def is_active(self) -> bool:
        return self.activated_at is not None and self.disabled_at is None

    def get_user_id(self) -> int:  # Authlib
        return self.id

    @property
    def confirmed_methods(self) -> list[MfaMethod]:
        return [m for m in self.mfa_methods if m.confirmed_at is not None]

    @property
    def has_second_factor(self) -> bool:
        """A confirmed code method or a passkey: the enrolment gate is passed."""
        return bool(self.confirmed_methods or self.passkeys)


class LoginThrottle(db.Model):
    """Wrong passwords typed for an address that has no account, counted and
    locked out exactly as an account's (`User.failed_logins`…), so a lockout
    never tells whether an address has an account. Keyed by the address's
    SHA-256: the audit log is where typed addresses are kept."""

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    lockouts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # every write to this row counts a wrong password: stamped by the database
    # layer, so a purge can forget addresses that have not been tried for a while
    changed_at: Mapped[datetime | None] = mapped_column(default=now, onupdate=now)


class KnownDevice(db.Model):
    """A browser where the user completed a sign-in before (devices.py). Wrong
    guesses made from it count here, not against the account, so guesses from
    anywhere else never lock the owner out of it. It skips nothing. The
    browser's cookie holds the token whose SHA-256 is `token_hash`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))  # "Firefox on Windows"
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)  # the last sign-in completed here
    # its own guessing limit, as User.failed_logins…
    failed_logins: Mapped[int] = mapped_column(default=0)
    lockouts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class MfaMethod(db.Model):
    """One second factor: `totp` (authenticator app), `email` or `sms`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    target: Mapped[str | None] = mapped_column(String(320))  # email address or E.164 number
    secret: Mapped[str] = mapped_column(Text)  # encrypted (mfa.py)
    created_at: Mapped[datetime] = mapped_column(default=now)
    confirmed_at: Mapped[datetime | None]  # None while enrolment awaits its first code
    last_used_at: Mapped[datetime | None]
    last_timecode: Mapped[int | None]  # replay guard: the last time step accepted
    code_sent_at: Mapped[datetime | None]
    code_purpose: Mapped[str | None] = mapped_column(String(10))  # what the last sent code was for (PURPOSES)
    send_window_start: Mapped[datetime | None]
    sends_in_window: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)  # wrong tries for the current sent code
    # a new email/phone awaiting its code: the method it takes the place of once confirmed
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("mfa_method.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship(back_populates="mfa_methods")


class Passkey(db.Model):
    """A WebAuthn credential (passkey) the user registered: a sign-in method
    besides the code methods. Only its public key is stored (passkeys.py)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    # base64url of the credential ID (at most 1023 bytes, WebAuthn 5.8.3)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, as the authenticator gave it
    sign_count: Mapped[int] = mapped_column(default=0)
    transports: Mapped[list[str] | None] = mapped_column(JSON)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    backup_eligible: Mapped[bool] = mapped_column(default=False)  # a synced (multi-device) passkey
    backed_up: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="passkeys")


class PasskeyChallenge(db.Model):
    """A WebAuthn challenge handed to one browser (`browser_hash`) for one
    ceremony: `register`, `signin` (after the password, bound to its pending
    sign-in) or `passwordless` (bound to the app's parked request, if any).
    It works once (`used_at`) until `expires_at`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge: Mapped[str] = mapped_column(String(100), unique=True)  # base64url
    purpose: Mapped[str] = mapped_column(String(20))
    browser_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    pending_id: Mapped[int | None] = mapped_column(ForeignKey("pending_sign_in.id", ondelete="CASCADE"))
    tx_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class RecoveryCode(db.Model):
    """One of a user's ten single-use recovery codes; only its SHA-256 is stored."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    used_at: Mapped[datetime | None]


class AccountToken(db.Model):
    """A single-use emailed link: `activation` (48 h), `reset` (1 h) or
    `not_me` (24 h, "This wasn't me" in a new-device alert)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # an activation link's: the password it activates, chosen by the registration it was sent for
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # a new-device alert's link: the browser it is about (forgotten when it wasn't the person)
    known_device_id: Mapped[int | None] = mapped_column(ForeignKey("known_device.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship()


class PendingSignIn(db.Model):
    """A sign-in between its password and its second step: a code (`signin`),
    the first MFA method (`enrol`), or more proof from a signed-in browser
    (`step_up`, `reauth`). The browser holds only a random token whose hash is
    `token_hash`. It works once (`consumed_at`), until `expires_at`, and only
    while the user's `security_stamp` is the one it was made under."""

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    security_stamp: Mapped[str] = mapped_column(String(64))
    tx_id: Mapped[str | None] = mapped_column(String(64))  # the app's parked request, if any
    next_url: Mapped[str | None] = mapped_column(Text)  # a local path to go on to
    # the method set up by this sign-in (`enrol`), the one thing besides a code that finishes it
    enrolled_method_id: Mapped[int | None] = mapped_column(ForeignKey("mfa_method.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class LoginTransaction(db.Model):
    """A validated authorization request parked while the user signs in. It
    belongs to the browser that parked it (`browser_hash`: SHA-256 of a random
    value in that browser's session) and consent given on it counts only for
    the SSO session that gave it (`consented_sid`)."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    browser_hash: Mapped[str | None] = mapped_column(String(64))  # None until a browser opens it
    consented_at: Mapped[datetime | None]
    consented_sid: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[datetime | None]


class SsoSession(db.Model):
    """A browser's sign-in. The cookie holds a token whose hash is `cookie_hash`;
    `sid` is the public id given to RPs and stays for the session's life."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[datetime]
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(100))
    mfa_at: Mapped[datetime | None]  # when the last MFA code was accepted in this session
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(500))
    ip: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()


class TrustedComputer(db.Model):
    """A browser where MFA is skipped for a week ("Trust this computer")."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class Consent(db.Model):
    """Scopes a user granted to a (not first-party) client."""

    __table_args__ = (UniqueConstraint("user_id", "client_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(default=now)


class AuthorizationCode(db.Model):
    """An issued code; kept after use (`used_at`) so a replay can revoke its tokens."""

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    response_type: Mapped[str] = mapped_column(String(40), default="code")
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auth_time: Mapped[datetime]
    acr: Mapped[str] = mapped_column(String(100))
    amr: Mapped[list[str]] = mapped_column(JSON)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    # Authlib's AuthorizationCodeMixin
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        """The sign-in time, not the code's: OIDC Core 2 `auth_time`."""
        return timestamp(self.auth_time)

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr)


class Token(db.Model):
    """An access token and, maybe, its refresh token. Refresh tokens rotate: the
    old row is revoked and the new one joins the same `family`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_type: Mapped[str] = mapped_column(String(20), default="Bearer")
    scope: Mapped[str] = mapped_column(Text)
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    refresh_used_at: Mapped[datetime | None]
    family: Mapped[str] = mapped_column(String(64), index=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("authorization_code.id"), index=True)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    auth_time: Mapped[datetime]
    acr: Mapped[str] = mapped_column(String(100))
    amr: Mapped[list[str]] = mapped_column(JSON)
    offline: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()

    # Authlib's TokenMixin
    def check_client(self, client: Any) -> bool:
        return self.client_id == client.get_client_id()

    def get_client(self) -> Any:
        from .clients import query_client

        return query_client(self.client_id)

    def get_user(self) -> User:
        return self.user

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def get_expires_at(self) -> int:
        return timestamp(self.expires_at)

    def is_expired(self) -> bool:
        return self.expires_at <= now()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None or not self.user.is_active


class AuditEvent(db.Model):
    __table_args__ = (Index("ix_audit_event_user_at", "user_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=now, index=True)
    event: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(20), default="ok")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    email: Mapped[str | None] = mapped_column(String(320))
    client_id: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OutboxMessage(db.Model):
    """An email, SMS or back-channel logout token on its way (outbox.py): sent
    by a worker, retried with backoff until sent or failed for good. The
    payload (addresses, links, codes, the logout claims) is encrypted, and
    erased once the message is sent or has failed; the rest stays as its record."""

    __table_args__ = (
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        Index("ix_outbox_message_kind_attempted", "kind", "last_attempt_at"),
        {"sqlite_autoincrement": True},  # an id is never given again: pages hold them
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # mail, sms, backchannel_logout
    label: Mapped[str] = mapped_column(String(100), default="")  # the template or app: no personal data
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, sent, failed
    payload: Mapped[str | None] = mapped_column(Text)  # encrypted JSON (crypto.py); None once settled
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=now)
    next_attempt_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime | None]  # not worth sending after this (an emailed code has expired)
    claimed_until: Mapped[datetime | None]  # the lease of the worker sending it
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))  # of the last attempt; cleared once sent


class ScheduledJob(db.Model):
    """When a periodic job of the worker (worker.py) runs next, and which worker
    holds it while it runs: one run per interval across every instance."""

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(default=now)
    claimed_until: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))


class UsedJti(db.Model):
    """`jti`s of client assertions (private_key_jwt) seen, refused if replayed."""

    jti: Mapped[str] = mapped_column(String(200), primary_key=True)  # its SHA-256
    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SigningKey(db.Model):
    """A key of the signing key ring (keys.py), shared by every instance: the
    public JWK as the JWKS shows it, the private JWK encrypted (crypto.py)."""

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)  # RFC 7638 thumbprint
    alg: Mapped[str] = mapped_column(String(10))  # RS256 or ES256
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_jwk: Mapped[str] = mapped_column(Text)  # encrypted: never readable without SECRET_KEY
    created_at: Mapped[datetime]
    activates_at: Mapped[datetime]  # signs from then on, until a newer key activates
