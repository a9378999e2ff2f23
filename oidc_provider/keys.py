"""The signing key ring in `keys/`: one JWK file per key, mode 0600.

Life of a key (per algorithm):
  published  -- `rotate()` writes it with `activates_at` = now + rotation delay;
                RPs see it in the JWKS before it signs anything;
  signing    -- the newest key whose `activates_at` has passed;
  retired    -- a newer key signs; still published until every token it
                signed has expired (ID_TOKEN_LIFETIME after it stopped);
  expired    -- no longer published; the next rotation deletes the file.
The `kid` is the RFC 7638 thumbprint.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from .db import now

ALGS = ("RS256", "ES256")
PUBLIC_MEMBERS = ("kty", "kid", "use", "alg", "n", "e", "crv", "x", "y")


@dataclass(frozen=True)
class StoredKey:
    key: Key
    alg: str
    created_at: datetime
    activates_at: datetime

    @property
    def kid(self) -> str:
        return self.key.kid


def _generate(alg: str) -> Key:
    params = {"alg": alg, "use": "sig"}
    key = (
        RSAKey.generate_key(2048, parameters=params)
        if alg == "RS256"
        else ECKey.generate_key("P-256", parameters=params)
    )
    key.ensure_kid()  # RFC 7638 thumbprint
    return key


def _write(directory: Path, stored: StoredKey) -> None:
    body = {
        "jwk": stored.key.as_dict(private=True),
        "created_at": stored.created_at.isoformat(),
        "activates_at": stored.activates_at.isoformat(),
    }
    path = directory / f"{stored.alg}-{stored.kid}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2)
    os.replace(tmp, path)


def read_keys(directory: Path) -> list[StoredKey]:
    """Every key file in the folder, oldest first."""
    keys = []
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text())
        key = RSAKey.import_key(body["jwk"]) if body["jwk"]["kty"] == "RSA" else ECKey.import_key(body["jwk"])
        keys.append(
            StoredKey(
                key=key,
                alg=body["jwk"]["alg"],
                created_at=datetime.fromisoformat(body["created_at"]),
                activates_at=datetime.fromisoformat(body["activates_at"]),
            )
        )
    return sorted(keys, key=lambda k: (k.activates_at, k.created_at))


def ensure_keys(directory: Path, at: datetime) -> list[str]:
    """Generate a signing key for each algorithm that has none; return new kids.
    A file lock makes several workers starting at once (gunicorn -w 4) agree."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = {k.alg for k in read_keys(directory)}
        made = []
        for alg in ALGS:
            if alg not in have:
                stored = StoredKey(_generate(alg), alg, at, at)
                _write(directory, stored)
                made.append(stored.kid)
        return made


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


def rotate(directory: Path, alg: str, at: datetime, delay: timedelta, lifetime: timedelta) -> StoredKey:
    """Publish a new key that signs after `delay`; delete keys already expired."""
    for k, state, _ in key_states(read_keys(directory), at, lifetime):
        if state == "expired":
            (directory / f"{k.alg}-{k.kid}.json").unlink(missing_ok=True)
    stored = StoredKey(_generate(alg), alg, at, at + delay)
    _write(directory, stored)
    return stored


class KeyRing:
    """The keys as the running server sees them, re-read when the folder changes
    or when a key changes state, never per request otherwise."""

    def __init__(self, directory: Path, lifetime: timedelta):
        self.directory = directory
        self.lifetime = lifetime
        self._stamp: tuple[int, datetime | None] | None = None
        self._signing: dict[str, Key] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self._body = b""
        self._all = KeySet([])

    def _refresh(self) -> None:
        at = now()
        mtime = self.directory.stat().st_mtime_ns
        if self._stamp and self._stamp[0] == mtime and (self._stamp[1] is None or at < self._stamp[1]):
            return
        states = key_states(read_keys(self.directory), at, self.lifetime)
        published = [k for k, state, _ in states if state != "expired"]
        self._signing = {k.alg: k.key for k, state, _ in states if state == "signing"}
        self._jwks = {
            "keys": [
                {m: k.key.as_dict()[m] for m in PUBLIC_MEMBERS if m in k.key.as_dict()} for k in published
            ]
        }
        self._body = json.dumps(self._jwks, separators=(",", ":")).encode()
        self._all = KeySet([k.key for k in published])
        changes = [until for _, _, until in states if until is not None]
        self._stamp = (mtime, min(changes) if changes else None)

    def signing_key(self, alg: str) -> Key:
        self._refresh()
        return self._signing[alg]

    def public_jwks(self) -> dict[str, Any]:
        self._refresh()
        return self._jwks

    def jwks_body(self) -> bytes:
        self._refresh()
        return self._body

    def verification_keys(self) -> KeySet:
        """Every published key (private parts included), to check our own tokens."""
        self._refresh()
        return self._all


def init_app(app: Flask) -> None:
    directory = Path(app.config["OIDC_KEYS_DIR"])
    with app.app_context():
        ensure_keys(directory, now())
    app.extensions["keys"] = KeyRing(directory, timedelta(seconds=app.config["ID_TOKEN_LIFETIME"]))


def ring() -> KeyRing:
    return current_app.extensions["keys"]


def signing_key(alg: str) -> Key:
    return ring().signing_key(alg)


def public_jwks() -> dict[str, Any]:
    return ring().public_jwks()
