"""Every setting of the provider: its default, its unit and why, in one place.

Settings come from environment variables; `create_app(config)` may override any
of them (tests do). An invalid value stops start-up with a message naming the
setting.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the provider cannot run with."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    kind: type = str


MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# name, default, what it is for (the README table is generated from this list)
SETTINGS: tuple[Setting, ...] = (
    Setting("OIDC_ISSUER", "http://127.0.0.1:5000", "Issuer identifier; every URL the RPs see starts here."),
    Setting(
        "SECRET_KEY",
        None,
        "Signs cookies and CSRF tokens; derives the MFA secret key. Unset: generated once into instance/secret_key.",
    ),
    Setting(
        "DATABASE_URL",
        None,
        "SQLAlchemy URL (sqlite:///… or postgresql+psycopg://…). Unset: SQLite in instance/.",
    ),
    Setting("OIDC_CLIENTS_FILE", "clients.yaml", "The registry of relying-party apps."),
    Setting(
        "OIDC_KEYS_DIR",
        "keys",
        "Import/export folder of signing keys (JWK files); read once to import keys of an older version.",
    ),
    Setting(
        "PORTAL_NAME", "Login Portal", "Shown on every page, in emails and as the authenticator app's issuer."
    ),
    Setting(
        "PORTAL_LOGO", "", "Path of a logo file (SVG or PNG) shown on every page; empty: the built-in one."
    ),
    Setting(
        "SUPPORT_EMAIL",
        "support@localhost",
        "Support's address: named on pages and in emails where people are told to contact support (MFA resets).",
    ),
    Setting(
        "SUPPORT_URL",
        "",
        "A help page for people who cannot sign in, linked next to SUPPORT_EMAIL; empty: the address only.",
    ),
    # lifetimes, seconds
    Setting(
        "AUTHORIZATION_CODE_LIFETIME",
        60,
        "Seconds an authorization code can be redeemed (RFC 9700: short).",
        int,
    ),
    Setting("ACCESS_TOKEN_LIFETIME", HOUR, "Seconds an access token is valid.", int),
    Setting("ID_TOKEN_LIFETIME", HOUR, "Seconds an ID token is valid.", int),
    Setting(
        "REFRESH_TOKEN_LIFETIME", 30 * DAY, "Seconds a refresh token is valid (each use rotates it).", int
    ),
    Setting(
        "REFRESH_TOKEN_FAMILY_LIFETIME",
        90 * DAY,
        "Seconds a sign-in's refresh tokens can be rotated in all: rotation never goes beyond it.",
        int,
    ),
    Setting(
        "LOGIN_TRANSACTION_LIFETIME",
        30 * MINUTE,
        "Seconds a parked authorization request waits for the sign-in.",
        int,
    ),
    Setting(
        "PENDING_SIGNIN_LIFETIME",
        5 * MINUTE,
        "Seconds a sign-in may take from its password to its code or first MFA method (works once).",
        int,
    ),
    Setting(
        "SSO_SESSION_LIFETIME", 12 * HOUR, "Seconds a sign-in lasts in the browser (SSO across apps).", int
    ),
    Setting("SSO_SESSION_IDLE", 2 * HOUR, "Seconds of inactivity after which the SSO session ends.", int),
    Setting("ACTIVATION_LIFETIME", 2 * DAY, "Seconds an activation link works (once).", int),
    Setting("PASSWORD_RESET_LIFETIME", HOUR, "Seconds a password-reset link works (once).", int),
    Setting("TRUSTED_COMPUTER_LIFETIME", 7 * DAY, "Seconds 'Trust this computer' skips MFA.", int),
    Setting(
        "MFA_MAX_AGE",
        0,
        "Seconds an earlier code of the SSO session still counts for apps that ask for MFA; 0: a new code each time.",
        int,
    ),
    Setting("REAUTH_MAX_AGE", 5 * MINUTE, "Seconds a sign-in counts as fresh for changing MFA methods.", int),
    Setting("OTP_DELIVERY_STEP", 10 * MINUTE, "Seconds an emailed or texted code stays valid.", int),
    Setting("OTP_RESEND_COOLDOWN", 30, "Seconds before another code can be sent.", int),
    Setting("OTP_SENDS_PER_HOUR", 5, "Codes one method may be sent per hour.", int),
    Setting("OTP_MAX_ATTEMPTS", 5, "Wrong tries allowed for one sent code.", int),
    Setting(
        "PASSKEY_CHALLENGE_LIFETIME",
        5 * MINUTE,
        "Seconds a passkey prompt can be answered; its challenge works once.",
        int,
    ),
    Setting(
        "NEW_DEVICE_ALERTS",
        True,
        "Email a person when their account signs in from a browser it has not used before.",
        bool,
    ),
    Setting(
        "NOT_ME_LINK_LIFETIME",
        DAY,
        "Seconds the 'This wasn't me' link of a new-device alert works (once).",
        int,
    ),
    # guessing limits
    Setting(
        "LOGIN_FAILURES_BEFORE_LOCKOUT",
        5,
        "Wrong passwords/codes per account before a temporary lockout.",
        int,
    ),
    Setting("LOGIN_LOCKOUT_BASE", MINUTE, "Seconds of the first lockout; each further one doubles.", int),
    Setting("LOGIN_LOCKOUT_MAX", HOUR, "Longest lockout in seconds; never permanent.", int),
    Setting(
        "KNOWN_DEVICE_LIFETIME",
        365 * DAY,
        "Seconds a browser stays known after a sign-in: its wrong guesses have their own lockout.",
        int,
    ),
    Setting(
        "RATELIMIT_STORAGE_URI",
        "memory://",
        "Flask-Limiter storage: memory:// for one process, redis://… for several.",
    ),
    Setting("RATELIMIT_LOGIN", "20 per minute;200 per hour", "Sign-in attempts per client IP."),
    Setting("RATELIMIT_EMAIL", "5 per hour", "Registration/reset/new-link emails per client IP."),
    Setting(
        "RATELIMIT_CLIENT_AUTH",
        "20 per minute;200 per hour",
        "Failed client authentications (token, revoke, introspect) per client IP.",
    ),
    Setting(
        "RATELIMIT_LINKS",
        "20 per minute;200 per hour",
        "Emailed links (activation, reset) that do not work, opened per client IP.",
    ),
    Setting(
        "RATELIMIT_AUTHORIZE",
        "30 per minute;300 per hour",
        "Authorization requests parked for a sign-in or consent, per client IP (signed-in SSO is not counted).",
    ),
    Setting(
        "ACCOUNT_MAIL_COOLDOWN",
        MINUTE,
        "Seconds before another activation/reset email goes to one address.",
        int,
    ),
    Setting("ACCOUNT_MAILS_PER_HOUR", 5, "Activation/reset emails one address may be sent per hour.", int),
    Setting("LOGOUT_TOKEN_LIFETIME", 2 * MINUTE, "Seconds a back-channel logout token is valid.", int),
    Setting("BACKCHANNEL_TIMEOUT", 5, "Seconds to wait for an app's back-channel logout endpoint.", int),
    Setting(
        "BACKCHANNEL_RETRIES", 8, "Attempts to deliver a logout token before it is recorded as failed.", int
    ),
    # keys
    Setting(
        "OIDC_KEY_ROTATION_DELAY",
        DAY,
        "Seconds a new key is published before it signs (RPs refresh their JWKS cache).",
        int,
    ),
    Setting(
        "OIDC_KEY_CACHE_SECONDS",
        30,
        "Seconds a process serves its cached key ring before re-reading it (keep below the rotation delay).",
        int,
    ),
    # mail and SMS
    Setting("MAIL_SERVER", "", "SMTP host; empty: mail goes to instance/outbox/ and the console."),
    Setting("MAIL_PORT", 25, "SMTP port.", int),
    Setting("MAIL_USE_TLS", False, "STARTTLS after connecting.", bool),
    Setting("MAIL_USE_SSL", False, "Implicit TLS (SMTPS).", bool),
    Setting("MAIL_USERNAME", "", "SMTP user, if the server needs one."),
    Setting("MAIL_PASSWORD", "", "SMTP password."),
    Setting("MAIL_FROM", "Login Portal <no-reply@localhost>", "Sender of every email."),
    Setting("MAIL_TIMEOUT", 10, "Seconds to wait for the SMTP server.", int),
    Setting("OUTBOX_DIR", None, "Where unsent mail and SMS are written. Unset: instance/outbox/."),
    Setting("SMS_GATEWAY_URL", "", "HTTP gateway for SMS (JSON POST); empty: SMS go to the outbox."),
    Setting("SMS_GATEWAY_TOKEN", "", "Bearer token for the SMS gateway."),
    Setting("SMS_GATEWAY_TIMEOUT", 10, "Seconds to wait for the SMS gateway.", int),
    Setting(
        "SMS_ALLOWED_REGIONS",
        "NL,BE,DE,FR,GB,US,CA",
        "ISO country codes whose mobile numbers may receive codes.",
    ),
    Setting(
        "DELIVERY_RETRIES",
        8,
        "Attempts for each email or SMS (spread by the backoff) before it fails for good.",
        int,
    ),
    # the outbox: every email, SMS and logout token is queued, then sent by a worker
    Setting(
        "OUTBOX_WORKER",
        "thread",
        "thread: each server process sends the queue itself; external: `flask worker` processes do.",
    ),
    Setting(
        "OUTBOX_POLL_INTERVAL",
        5,
        "Seconds between looks for messages other instances queued or retries due.",
        int,
    ),
    Setting(
        "OUTBOX_BACKOFF_BASE",
        15,
        "Seconds before the first retry; each further one doubles (with jitter).",
        int,
    ),
    Setting("OUTBOX_BACKOFF_MAX", HOUR, "Longest wait in seconds between two attempts at one message.", int),
    Setting(
        "OUTBOX_LEASE",
        2 * MINUTE,
        "Seconds a worker holds a message it is sending before another may take it.",
        int,
    ),
    Setting(
        "OUTBOX_CONCURRENCY", 4, "Messages one worker sends at once (a slow server holds up one slot).", int
    ),
    Setting(
        "MAX_CONTENT_LENGTH",
        64 * 1024,
        "Largest request body in bytes; a larger one is refused (413) unread.",
        int,
    ),
    # keeping the database small (`flask … purge`)
    Setting(
        "PURGE_GRACE",
        DAY,
        "Seconds used or expired codes, tokens, links and idle lockout counters are kept before a purge removes them.",
        int,
    ),
    Setting("MESSAGE_RETENTION", 30 * DAY, "Seconds delivered or failed outgoing messages are kept.", int),
    Setting("AUDIT_RETENTION", 400 * DAY, "Seconds audit events are kept.", int),
    Setting(
        "FASTPATH",
        True,
        "Answer the plain case of discovery, JWKS, userinfo and introspection below Flask (same answers, faster).",
        bool,
    ),
    Setting("TRUSTED_PROXIES", 0, "Reverse proxies in front whose X-Forwarded-For/-Proto are believed.", int),
    Setting("SESSION_COOKIE_SECURE", None, "Secure cookies; unset: on when OIDC_ISSUER is https.", bool),
    # language and time, as people read them (locales.py)
    Setting(
        "TIME_ZONE",
        "Europe/Amsterdam",
        "IANA time zone of every date and time people read, on pages and in emails.",
    ),
    # serving and operating
    Setting("WEB_HOST", "127.0.0.1", "Address `flask serve` listens on (0.0.0.0: every interface)."),
    Setting("WEB_PORT", 5000, "Port `flask serve` listens on.", int),
    Setting(
        "WEB_WORKERS", 1, "Worker processes of `flask serve` (several need a shared rate-limit storage).", int
    ),
    Setting("WEB_THREADS", 4, "Threads per worker process answering requests.", int),
    Setting(
        "RATELIMIT_MEMORY_PER_WORKER",
        False,
        "Let `flask serve` run several workers on memory:// (each counts alone: limits multiply).",
        bool,
    ),
    Setting("LOG_FORMAT", "text", "Log lines as text (one per line) or json (one object per line)."),
    Setting("METRICS_TOKEN", "", "Bearer token for /metrics; empty: only loopback clients may read it."),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "Folder where worker processes share metrics; unset: `flask serve` makes a fresh private one.",
    ),
    Setting("HEALTH_TIMEOUT", 2, "Seconds the readiness check's database query may run.", int),
    Setting(
        "HEALTH_OUTBOX_MAX_AGE",
        300,
        "Seconds a due message may wait before readiness says degraded (no worker sending?).",
        int,
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(setting: Setting, raw: Any) -> Any:
    if raw is None or setting.kind is str or not isinstance(raw, str):
        if setting.kind is int and raw is not None and not isinstance(raw, int):
            raise ConfigError(f"{setting.name}: expected a whole number, got {raw!r}")
        return raw
    if setting.kind is bool:
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ConfigError(f"{setting.name}: expected true or false, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{setting.name}: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{setting.name}: must not be negative, got {value}")
    return value


def _secret_key(instance: Path) -> str:
    """A key generated once and kept in instance/, so restarts keep cookies valid."""
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _check_outbox(values: dict[str, Any]) -> None:
    """The outbox settings a worker cannot run with, refused by name."""
    if values["OUTBOX_WORKER"] not in ("thread", "external"):
        raise ConfigError(f"OUTBOX_WORKER: expected thread or external, got {values['OUTBOX_WORKER']!r}")
    for name in ("OUTBOX_POLL_INTERVAL", "OUTBOX_CONCURRENCY", "DELIVERY_RETRIES", "BACKCHANNEL_RETRIES"):
        if values[name] <= 0:
            raise ConfigError(f"{name}: must be positive, got {values[name]}")
    # a message is held while it is sent: the lease must outlast the slowest attempt
    slowest = max(values["MAIL_TIMEOUT"], values["SMS_GATEWAY_TIMEOUT"], values["BACKCHANNEL_TIMEOUT"])
    if values["OUTBOX_LEASE"] < 3 * slowest:
        raise ConfigError(
            f"OUTBOX_LEASE: must be at least three times the longest timeout ({3 * slowest} s), "
            f"got {values['OUTBOX_LEASE']}"
        )


def load(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the Flask config mapping: defaults < environment < overrides."""
    overrides = dict(overrides or {})
    instance = Path(instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    # the provider's own: secret key, SQLite database, outbox; no one else reads it
    with contextlib.suppress(PermissionError):  # a folder someone else owns: their choice
        instance.chmod(0o700)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = overrides.pop(s.name) if s.name in overrides else os.environ.get(s.name, s.default)
        values[s.name] = _parse(s, raw)
    values.update(overrides)  # settings of Flask itself and tests' hooks (CLOCK, TESTING…)

    issuer = values["OIDC_ISSUER"]
    if not issuer.startswith(("https://", "http://")) or "?" in issuer or "#" in issuer:
        raise ConfigError(f"OIDC_ISSUER: must be an http(s) URL without query or fragment, got {issuer!r}")
    values["OIDC_ISSUER"] = issuer.rstrip("/")
    if not values["SECRET_KEY"]:
        values["SECRET_KEY"] = _secret_key(instance)
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{instance / 'portal.sqlite3'}"
    values.setdefault("SQLALCHEMY_DATABASE_URI", values["DATABASE_URL"])
    if not values["OUTBOX_DIR"]:
        values["OUTBOX_DIR"] = str(instance / "outbox")
    if values["SESSION_COOKIE_SECURE"] is None:
        values["SESSION_COOKIE_SECURE"] = values["OIDC_ISSUER"].startswith("https://")
    values["SMS_ALLOWED_REGIONS"] = [
        r.strip().upper() for r in str(values["SMS_ALLOWED_REGIONS"]).split(",") if r.strip()
    ]
    _support(values)
    if values["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT: expected text or json, got {values['LOG_FORMAT']!r}")
    for name in ("WEB_WORKERS", "WEB_THREADS"):
        if values[name] < 1:
            raise ConfigError(f"{name}: must be at least 1, got {values[name]}")
    _check_outbox(values)
    _time_zone(values)
    for name in ("AUTHORIZATION_CODE_LIFETIME", "ACCESS_TOKEN_LIFETIME", "ID_TOKEN_LIFETIME"):
        if values[name] <= 0:
            raise ConfigError(f"{name}: must be positive, got {values[name]}")
    values.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="portal_session",
        SQLALCHEMY_ENGINE_OPTIONS={},
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session cookie
        RATELIMIT_HEADERS_ENABLED=True,
    )
    _outages(values)
    return values


def _support(values: dict[str, Any]) -> None:
    """Support's address and help page go into mailto: links and every email: a
    value that cannot be one is refused at start-up, not found by a person in need."""
    email = str(values["SUPPORT_EMAIL"] or "").strip()
    local, _, domain = email.rpartition("@")
    if not local or not domain or any(c.isspace() or c in '<>"?&,;' for c in email):
        raise ConfigError(f"SUPPORT_EMAIL: expected an email address like support@example.com, got {email!r}")
    values["SUPPORT_EMAIL"] = email
    url = str(values["SUPPORT_URL"] or "").strip()
    if url and (not url.startswith(("https://", "http://")) or any(c.isspace() for c in url)):
        raise ConfigError(f"SUPPORT_URL: expected an http(s) URL or nothing, got {url!r}")
    values["SUPPORT_URL"] = url
def _time_zone(values: dict[str, Any]) -> None:
    """A zone name that the time zone database does not know is refused at
    start-up, not found on a page that cannot show a time."""
    try:
        zoneinfo.ZoneInfo(str(values["TIME_ZONE"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TIME_ZONE: expected a time zone name like Europe/Amsterdam, got {values['TIME_ZONE']!r}"
        ) from None


def _outages(values: dict[str, Any]) -> None:
    """What a moment without the database or Redis costs: a short wait, never a
    hung worker; the rate limits fall back to counting in this process while
    Redis is away (each worker counts alone) rather than refusing everyone."""
    values.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    values.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    if str(values["RATELIMIT_STORAGE_URI"]).startswith(("redis://", "rediss://", "redis+unix://")):
        values.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 1, "socket_connect_timeout": 1})
    if values["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # psycopg waits forever for an unreachable server by default; a pooled
        # connection to a server that restarted is found dead before use
        # (a file database has no connection to lose: no ping per request there)
        values["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **values["SQLALCHEMY_ENGINE_OPTIONS"],
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 5},
        }
