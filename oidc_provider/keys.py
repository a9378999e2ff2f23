"""The signing key ring, kept in the database (`SigningKey` rows) so that every
instance signs with the same keys and publishes the same JWKS.

Life of a key (per algorithm):
  published  -- `rotate()` adds it with `activates_at` = now + rotation delay;
                RPs see it in the JWKS before it signs anything;
  signing    -- the newest key whose `activates_at` has passed;
  retired    -- a newer key signs; still published until every token it
                signed has expired (ID_TOKEN_LIFETIME after it stopped);
  expired    -- no longer published; the next rotation deletes the row.
The `kid` is the RFC 7638 thumbprint. The private JWK is stored encrypted
(crypto.py) under a key derived from SECRET_KEY.

Whatever adds or deletes keys (`ensure_keys`, `rotate`, `import_keys`) holds
the database's lock for the ring and re-checks inside it, so instances and
workers starting together on an empty database make one key per algorithm.
Each process reads the ring through a `KeyRing`, a cache: signing and the
JWKS never query the database per request.

`OIDC_KEYS_DIR` is the import/export format: one JWK file per key
(`{alg}-{kid}.json`, private part in clear, mode 0600), as older versions kept
their ring. A database without keys imports that folder instead of generating.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken
from flask import Flask, current_app
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, KeySet, RSAKey
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import ServiceUnavailable

from . import crypto
from .db import db, now
from .models import SigningKey

ALGS = ("RS256", "ES256")
KTY = {"RS256": "RSA", "ES256": "EC"}
PUBLIC_MEMBERS = ("kty", "kid", "use", "alg", "n", "e", "crv", "x", "y")
SIGNING_KEYS = b"signing-key-encryption-v1"  # the HKDF label of the private keys' key (crypto.py)
# PostgreSQL advisory lock id of the ring: any fixed 64-bit number no other lock uses.
RING_LOCK = int.from_bytes(hashlib.sha256(b"login-portal signing_key").digest()[:8], "big", signed=True)
UPGRADE = "run `flask --app oidc_provider db upgrade`, then `flask --app oidc_provider keys ensure`"

log = logging.getLogger(__name__)


class KeyRingError(RuntimeError):
    """The signing keys cannot be used; the message says what to do."""


class KeyFileError(KeyRingError):
    """A key file to import is not a signing key this provider can use."""


@dataclass(frozen=True)
class StoredKey:
    """One key of the ring as stored: the private JWK stays encrypted until it signs."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    encrypted_jwk: str
    created_at: datetime
    activates_at: datetime

    def public_key(self) -> Key:
        return JWKRegistry.import_key(self.public_jwk)

    def private_key(self) -> Key:
        """The key with its private part (to sign), decrypted with SECRET_KEY."""
        try:
            return JWKRegistry.import_key(json.loads(crypto.decrypt(SIGNING_KEYS, self.encrypted_jwk)))
        except InvalidToken:
            raise KeyRingError(
                f"signing key {self.kid} cannot be decrypted: SECRET_KEY is not the one it was stored under"
            ) from None


@dataclass(frozen=True)
class Ensured:
    """What `ensure_keys` did, and the ring after it."""

    imported: list[str]
    generated: list[str]
    keys: list[StoredKey]
    pending: bool  # added inside the caller's transaction: stored once the caller commits


def public_jwk(key: Key) -> dict[str, Any]:
    """The members of `key` a JWKS may show (an allowlist: never a private member)."""
    members = key.as_dict(private=False)
    return {m: members[m] for m in PUBLIC_MEMBERS if m in members}


def _seal(key: Key, created_at: datetime, activates_at: datetime) -> StoredKey:
    plain = json.dumps(key.as_dict(private=True)).encode()
    return StoredKey(
        key.kid,
        key.alg,
        public_jwk(key),
        crypto.encrypt(SIGNING_KEYS, plain),
        created_at,
        activates_at,
    )


def _generate(alg: str, at: datetime, activates_at: datetime) -> StoredKey:
    params = {"alg": alg, "use": "sig"}
    key = (
        RSAKey.generate_key(2048, parameters=params)
        if alg == "RS256"
        else ECKey.generate_key("P-256", parameters=params)
    )
    key.ensure_kid()  # RFC 7638 thumbprint
    return _seal(key, at, activates_at)


def _ordered(keys: list[StoredKey]) -> list[StoredKey]:
    # kid breaks ties, so that every instance picks the same signer
    return sorted(keys, key=lambda k: (k.activates_at, k.created_at, k.kid))


# -- the database: reads, and changes under the ring's lock ---------------------


@contextmanager
def _table_required() -> Iterator[None]:
    """A missing table (a database not migrated yet) becomes a clear KeyRingError."""
    try:
        yield
    except (OperationalError, ProgrammingError) as error:
        if inspect(db.engine).has_table(SigningKey.__tablename__):
            raise
        raise KeyRingError(f"the database has no signing_key table: {UPGRADE}") from error


def _row(stored: StoredKey) -> SigningKey:
    return SigningKey(
        kid=stored.kid,
        alg=stored.alg,
        public_jwk=stored.public_jwk,
        private_jwk=stored.encrypted_jwk,
        created_at=stored.created_at,
        activates_at=stored.activates_at,
    )


def _stored(row: SigningKey) -> StoredKey:
    return StoredKey(row.kid, row.alg, row.public_jwk, row.private_jwk, row.created_at, row.activates_at)


def _all(session: Session) -> list[StoredKey]:
    return _ordered([_stored(row) for row in session.scalars(select(SigningKey))])


def load_keys() -> list[StoredKey]:
    """Every key of the ring, oldest first, as the database holds it now."""
    with _table_required(), Session(db.engine) as session:
        return _all(session)


def stored_kids() -> frozenset[str]:
    """The kids in the database: how a cache notices that keys were added or deleted."""
    with _table_required(), Session(db.engine) as session:
        return frozenset(session.scalars(select(SigningKey.kid)))


def _holds_sqlite_write_lock() -> bool:
    """Whether this thread's transaction has written to SQLite already (the token
    endpoint signs after marking the code used): it holds the one write lock,
    and another connection would wait for it until the busy timeout."""
    if db.engine.dialect.name != "sqlite" or not db.session().in_transaction():
        return False
    return bool(db.session().connection().connection.dbapi_connection.in_transaction)


@contextmanager
def _locked() -> Iterator[Session]:
    """A transaction that alone may change the ring, on every instance:
    PostgreSQL's advisory lock, or SQLite's write lock (BEGIN IMMEDIATE: SQLite
    has one writer at a time). Whoever waited re-reads inside it."""
    if _holds_sqlite_write_lock():
        yield db.session()  # already the only writer; the rows commit with the caller's work
        db.session().flush()
        return
    with _table_required(), Session(db.engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": RING_LOCK})
        else:
            session.execute(text("BEGIN IMMEDIATE"))
        yield session
        session.commit()


def _without_signer(keys: list[StoredKey], at: datetime) -> list[str]:
    return [alg for alg in ALGS if not any(k.alg == alg and k.activates_at <= at for k in keys)]


def ensure_keys(at: datetime, folder: Path | None = None) -> Ensured:
    """Give every algorithm a signing key. A database without keys first imports
    the key files of an older version from `folder` (so RPs keep their kids);
    algorithms still without a key that signs at `at` get a new one."""
    with _locked() as session:
        keys = _all(session)
        imported = []
        if not keys and folder is not None and folder.is_dir():
            found = read_folder(folder)
            session.add_all(_row(k) for k in found)
            keys, imported = _ordered(found), [k.kid for k in found]
        made = [_generate(alg, at, at) for alg in _without_signer(keys, at)]
        session.add_all(_row(k) for k in made)
        return Ensured(
            imported, [k.kid for k in made], _ordered(keys + made), pending=session is db.session()
        )


def rotate(alg: str, at: datetime, delay: timedelta, lifetime: timedelta) -> StoredKey:
    """Publish a new key that signs after `delay`; delete keys already expired.
    Two rotations at once (two machines) publish two keys: the one that
    activates later signs in the end; the other signs until then, and stays
    published like any retired key. Both are published before they sign."""
    with _locked() as session:
        expired = [k.kid for k, state, _ in key_states(_all(session), at, lifetime) if state == "expired"]
        session.execute(delete(SigningKey).where(SigningKey.kid.in_(expired)))
        new = _generate(alg, at, at + delay)
        session.add(_row(new))
    return new


def import_keys(folder: Path) -> tuple[list[str], list[str]]:
    """Add the key files of `folder` to the ring: (kids added, kids it already had).
    Every file is checked before any is added."""
    found = read_folder(folder)
    with _locked() as session:
        have = set(session.scalars(select(SigningKey.kid)))
        new = [k for k in found if k.kid not in have]
        session.add_all(_row(k) for k in new)
    return [k.kid for k in new], [k.kid for k in found if k.kid in have]


def export_keys(folder: Path) -> list[Path]:
    """Write every key of the ring to `folder` as JWK files, private parts included."""
    ring = [(stored, stored.private_key()) for stored in load_keys()]  # all readable before writing any
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return [_write(folder, stored, key) for stored, key in ring]


# -- key files: the import/export format ------------------------------------------


def _write(folder: Path, stored: StoredKey, key: Key) -> Path:
    body = {
        "jwk": key.as_dict(private=True),
        "created_at": stored.created_at.isoformat(),
        "activates_at": stored.activates_at.isoformat(),
    }
    path = folder / f"{stored.alg}-{stored.kid}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2)
    os.replace(tmp, path)
    return path


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def read_key_file(path: Path) -> StoredKey:
    """One key file (`{"jwk": {...private JWK...}, "created_at": ISO, "activates_at": ISO}`),
    checked: a private RSA-2048+ (RS256) or P-256 (ES256) signing key whose kid is its thumbprint."""
    try:
        body = json.loads(path.read_text())
        jwk = dict(body["jwk"])
        created_at, activates_at = _moment(body["created_at"]), _moment(body["activates_at"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise KeyFileError(
            f"{path}: not a key file (JSON with jwk, created_at, activates_at): {error}"
        ) from None
    alg = jwk.get("alg")
    if alg not in ALGS or jwk.get("kty") != KTY[alg] or jwk.get("use", "sig") != "sig":
        raise KeyFileError(f"{path}: not an RS256 (RSA) or ES256 (EC) signing key")
    try:
        key = JWKRegistry.import_key({**jwk, "use": "sig"})
    except (JoseError, ValueError, TypeError) as error:
        raise KeyFileError(f"{path}: not a usable key: {error}") from None
    if not key.is_private:
        raise KeyFileError(f"{path}: holds no private key, so it cannot sign")
    if alg == "ES256" and jwk.get("crv") != "P-256" or alg == "RS256" and key.raw_value.key_size < 2048:
        raise KeyFileError(f"{path}: ES256 needs a P-256 key, RS256 an RSA key of at least 2048 bits")
    if jwk.get("kid", key.thumbprint()) != key.thumbprint():
        raise KeyFileError(f"{path}: kid {jwk['kid']!r} is not the key's RFC 7638 thumbprint")
    key.ensure_kid()
    return _seal(key, created_at, activates_at)


def read_folder(folder: Path) -> list[StoredKey]:
    """Every key file (`*.json`) of the folder, oldest first."""
    return _ordered([read_key_file(path) for path in sorted(folder.glob("*.json"))])


# -- states ---------------------------------------------------------------------------


def key_states(
    keys: list[StoredKey], at: datetime, lifetime: timedelta
) -> list[tuple[StoredKey, str, datetime | None]]:
    """(key, state, until) for each key; `until` is when its state next changes."""
    out = []
    for alg in ALGS:
        mine = [k for k in keys if k.alg == alg]
        active = [k for k in mine if k.activates_at <= at]
        for k in mine:
            later = [n for n in active if n.activates_at > k.activates_at]
            if k.activates_at > at:
                out.append((k, "published", k.activates_at))
            elif not later:
                pending = [n.activates_at for n in mine if n.activates_at > at]
                out.append((k, "signing", min(pending) if pending else None))
            else:
                ends = later[0].activates_at + lifetime
                out.append((k, "retired", ends) if ends > at else (k, "expired", None))
    return out


# -- the per-process cache ---------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The ring as one process serves it, computed from the stored keys at one moment."""

    keys: tuple[StoredKey, ...]
    signing: dict[str, Key]
    jwks: dict[str, Any]
    body: bytes
    verification: KeySet
    changes_at: datetime | None  # a key's state changes then: recompute from `keys`
    checked_at: datetime | None  # rows last compared with the database; None: at the next use

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for k in self.keys)

    @property
    def missing(self) -> list[str]:
        return [alg for alg in ALGS if alg not in self.signing]


class KeyRing:
    """The keys as this process sees them: a cache with the JWKS body ready.
    It recomputes states when a key's state changes by time, and compares its
    rows with the database at most every `cache_seconds` (a `keys rotate` on any
    instance reaches this one within that time: harmless, since a new key is
    published long before it signs). Never a query per request otherwise."""

    def __init__(self, folder: Path, lifetime: timedelta, cache_seconds: int):
        self.folder = folder
        self.lifetime = lifetime
        self.cache_seconds = cache_seconds
        self._view: View | None = None
        self._private: dict[str, Key] = {}
        self._lock = threading.Lock()

    def _current(self, generate: bool) -> View:
        view = self._view
        if self._stale(view, now(), generate):
            with self._lock:  # one thread of the process reads (or generates) at a time
                view, at = self._view, now()
                if self._stale(view, at, generate):
                    view = self._view = self._refreshed(view, at, generate)
        assert view is not None
        return view

    def _stale(self, view: View | None, at: datetime, generate: bool) -> bool:
        if view is None or self._rows_due(view, at) or (generate and view.missing):
            return True
        return view.changes_at is not None and at >= view.changes_at

    def _rows_due(self, view: View, at: datetime) -> bool:
        checked = view.checked_at
        return checked is None or at < checked or (at - checked).total_seconds() >= self.cache_seconds

    def _refreshed(self, view: View | None, at: datetime, generate: bool) -> View:
        keys, checked_at = (view.keys, view.checked_at) if view else ((), None)
        if view is None or self._rows_due(view, at):
            try:
                kids = stored_kids()
                keys = keys if view and kids == view.kids else tuple(load_keys())
            except (SQLAlchemyError, KeyRingError) as error:
                if view is None:
                    raise
                # one line per request while the database is away, not a traceback
                cause = getattr(error, "orig", None) or error
                log.warning(
                    "signing keys: cannot re-read the ring (%s: %s); serving the cached keys",
                    type(cause).__name__,
                    (str(cause).strip().splitlines() or [""])[0][:200],
                )
            checked_at = at
        fresh = self._view_of(keys, at, checked_at)
        if generate and fresh.missing:
            ensured = ensure_keys(at, self.folder)
            # keys added inside the caller's transaction are compared again once it has committed
            fresh = self._view_of(tuple(ensured.keys), at, None if ensured.pending else at)
        return fresh

    def _view_of(self, keys: tuple[StoredKey, ...], at: datetime, checked_at: datetime | None) -> View:
        states = key_states(list(keys), at, self.lifetime)
        published = [k for k, state, _ in states if state != "expired"]
        signing = {k.alg: self._private_key(k) for k, state, _ in states if state == "signing"}
        jwks = {"keys": [k.public_jwk for k in published]}
        changes = [until for _, _, until in states if until is not None]
        return View(
            keys=keys,
            signing=signing,
            jwks=jwks,
            body=json.dumps(jwks, separators=(",", ":")).encode(),
            verification=KeySet([k.public_key() for k in published]),
            changes_at=min(changes) if changes else None,
            checked_at=checked_at,
        )

    def _private_key(self, stored: StoredKey) -> Key:
        if stored.kid not in self._private:
            self._private[stored.kid] = stored.private_key()
        return self._private[stored.kid]

    def refresh(self) -> None:
        """Compare with the database at the next use (after this process changed the ring)."""
        if self._view is not None:
            self._view = replace(self._view, checked_at=None)

    def signing_key(self, alg: str) -> Key:
        """The key that signs for `alg` now (generated at the first need)."""
        return self._current(generate=True).signing[alg]

    def public_jwks(self) -> dict[str, Any]:
        return self._current(generate=True).jwks

    def jwks_body(self) -> bytes:
        """The JWKS document, serialised once per change of the ring."""
        return self._current(generate=True).body

    def verification_keys(self) -> KeySet:
        """Every published key (public parts), to check tokens this provider signed."""
        return self._current(generate=False).verification

    def missing_algs(self) -> list[str]:
        """Algorithms without a signing key now; never generates. Keys that
        cannot be read at all (database down, not migrated) are all missing."""
        try:
            return self._current(generate=False).missing
        except (SQLAlchemyError, KeyRingError):
            return list(ALGS)


def _unavailable(error: KeyRingError) -> Any:
    """A request that needs the keys while they cannot be used: a 503 page or
    JSON error for the visitor, the reason (what to run) in the log."""
    current_app.logger.error("signing keys unavailable: %s", error)
    return current_app.handle_http_exception(
        ServiceUnavailable("The service is not ready yet. Try again in a minute.")
    )


def init_app(app: Flask) -> None:
    """No database work here: `flask db upgrade` builds an app before the table exists."""
    app.extensions["keys"] = KeyRing(
        Path(app.config["OIDC_KEYS_DIR"]),
        timedelta(seconds=app.config["ID_TOKEN_LIFETIME"]),
        app.config["OIDC_KEY_CACHE_SECONDS"],
    )
    app.register_error_handler(KeyRingError, _unavailable)


def ring() -> KeyRing:
    return current_app.extensions["keys"]


def signing_key(alg: str) -> Key:
    return ring().signing_key(alg)


def public_jwks() -> dict[str, Any]:
    return ring().public_jwks()


def missing_algs() -> list[str]:
    """For the readiness check: algorithms with no signing key now (from the cache)."""
    return ring().missing_algs()
