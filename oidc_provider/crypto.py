"""Encryption at rest of what the provider must be able to read back (MFA
secrets, private signing keys, queued messages): Fernet (AES-128-CBC with
HMAC-SHA256) under a key derived from SECRET_KEY by HKDF-SHA256, one key per
purpose, so no other use of SECRET_KEY (cookies, CSRF) ever sees these keys
and one purpose's ciphertext never opens with another's key.

Changing SECRET_KEY makes everything encrypted under the old one unreadable.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from .db import timestamp

SALT = b"login-portal"


def fernet(purpose: bytes) -> Fernet:
    """The Fernet key for `purpose` (a fixed label such as b"mfa-secret-encryption-v1")."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=purpose).derive(
        current_app.config["SECRET_KEY"].encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(purpose: bytes, plaintext: bytes) -> str:
    """Ciphertext (URL-safe text) of `plaintext` under `purpose`'s key, stamped with `db.now()`."""
    return fernet(purpose).encrypt_at_time(plaintext, timestamp()).decode()


def decrypt(purpose: bytes, ciphertext: str) -> bytes:
    """The plaintext; `cryptography.fernet.InvalidToken` when it was not made under this key."""
    return fernet(purpose).decrypt(ciphertext.encode())
