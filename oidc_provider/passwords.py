"""Passwords: argon2id hashing and the NIST SP 800-63B policy.

Policy (SP 800-63B 5.1.1.2): at least 12 characters, up to 1024, any
characters (Unicode normalised to NFKC before checking and hashing), no
composition rules; refused when it is a known common/breached password
(`data/common-passwords.txt`), a common password with digits or symbols
around it, a run of very few distinct characters, or contains the local part
of the user's email address.
"""

from __future__ import annotations

import functools
import os
import string
import threading
import unicodedata
from importlib import resources

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import gettext as _

MIN_LENGTH = 12
MAX_LENGTH = 1024  # NIST: allow at least 64; the cap bounds hashing work per request
MIN_DISTINCT = 5  # "aaaaaaaaaaaa", "abababababab": repetitive (SP 800-63B 5.1.1.2)
MIN_LOCAL_PART = 3  # a shorter local part ("jo@…") would refuse half of all passwords
AROUND = string.digits + string.punctuation + string.whitespace
# runs of these, forwards or backwards ("123456789012", "qwertyuiopas"): sequential (5.1.1.2)
SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "1qaz2wsx3edc4rfv5tgb")

# OWASP Password Storage Cheat Sheet, argon2id option "m=19456 (19 MiB), t=2,
# p=1": its minimum, chosen because every concurrent sign-in holds m of memory
# in a web worker; sign-ins are rate-limited and locked out, which carries the
# rest. Raising these later is safe: `needs_rehash` upgrades hashes at sign-in.
HASHES_AT_ONCE = len(os.sched_getaffinity(0)) or 1  # per process: one per core it may run on
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; hashes made elsewhere were made the same way
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)


def _normalise(password: str) -> str:
    """NFKC, so the same password typed on another keyboard or OS still matches."""
    return unicodedata.normalize("NFKC", password)


# argon2id holds 19 MiB for each computation: at most this many at once in one
# process (more would only queue for the same cores while holding memory).
_AT_ONCE = threading.BoundedSemaphore(HASHES_AT_ONCE)


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt and parameters included) to store."""
    with _AT_ONCE:
        return HASHER.hash(_normalise(password))


def verify_password(stored_hash: str | None, password: str | None) -> bool:
    """True when `password` matches `stored_hash`; never raises (False for
    anything malformed: empty, neither argon2 nor bcrypt, not a string). A
    bcrypt hash comes from an imported account (`users import`); it is
    replaced by an argon2id one at the next sign-in (`needs_rehash`)."""
    if not stored_hash or not isinstance(password, str):
        return False
    if stored_hash.startswith(BCRYPT_PREFIXES):
        return _verify_bcrypt(stored_hash, _normalise(password))
    try:
        with _AT_ONCE:
            return HASHER.verify(stored_hash, _normalise(password))
    except (VerificationError, InvalidHashError, TypeError, ValueError):
        return False


def _verify_bcrypt(stored_hash: str, password: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], stored_hash.encode())
    except ValueError:
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than HASHER's (or is
    not a valid hash): store `hash_password(pw)` after the next good sign-in."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, TypeError, ValueError):
        return True


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash("dummy password for accounts that do not exist")


def dummy_verify(password: str) -> None:
    """Spend what a real verification costs, for an unknown email address, so
    response times do not tell which addresses have an account."""
    verify_password(_dummy_hash(), password if isinstance(password, str) else "")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common/breached passwords, lowercased (loaded once)."""
    text = resources.files("oidc_provider").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("# "))


def is_common(password: str) -> bool:
    """On the list, or a listed password with digits/symbols before or after
    it ("Password2024!", "!!sunshine123")."""
    lowered = _normalise(password).lower()
    core = lowered.strip(AROUND)
    common = common_passwords()
    return lowered in common or (len(core) >= 4 and core in common)


def _is_sequence(password: str) -> bool:
    lowered = password.lower()
    return any(lowered in seq * 3 or lowered in seq[::-1] * 3 for seq in SEQUENCES)


def _local_part(email: str | None) -> str:
    local = (email or "").rpartition("@")[0].strip().lower()
    return local if len(local) >= MIN_LOCAL_PART else ""


def policy_problems(password: str, email: str | None = None) -> list[str]:
    """What is wrong with `password` for the account `email`, as sentences to
    show the user; empty when it may be used."""
    password = _normalise(password or "")
    if len(password) < MIN_LENGTH:
        return [_("Use at least %(min)d characters (this one has %(num)d).", min=MIN_LENGTH, num=len(password))]
    if len(password) > MAX_LENGTH:
        return [_("Use at most %(max)d characters.", max=MAX_LENGTH)]
    problems = []
    if is_common(password):
        problems.append(
            _("This password is too common: it is on lists of leaked passwords that attackers try first.")
        )
    elif len(set(password)) < MIN_DISTINCT or _is_sequence(password):
        problems.append(_("This password is a simple repetition or sequence of characters."))
    local = _local_part(email)
    if local and local in password.lower():
        problems.append(_("Do not use your email address (or its part before the @) in your password."))
    return problems


def strength_hint() -> str:
    """The advice shown under every new-password field."""
    return _(
        "At least %(min)d characters; longer is stronger. A few unrelated words make a good "
        "password. Any characters are allowed; common passwords and your email address are not.",
        min=MIN_LENGTH,
    )
