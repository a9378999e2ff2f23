"""Bulk provisioning: `flask --app oidc_provider users import FILE`, to move an
existing user base over (and to fill a benchmark).

Each line (JSON Lines, or CSV with a header row) is one person:

- `email` (required): checked with the provider's one address rule (`addresses.check`);
- `name` (required);
- `password` (checked against the password policy and hashed with argon2id)
  or `password_hash`: an argon2 or bcrypt hash from the old system, kept as
  it is and rehashed to ours at the person's next sign-in;
- `activated` (default false: the person asks for an activation link);
- `totp_secret` (optional): the base32 secret of an authenticator app already
  set up at the old provider, stored encrypted like ours, so the app keeps
  working without a new enrolment.

Idempotent: an address that already has an account is reported and skipped.
Nothing is mailed. Each line gets its own result; the others go on.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError

from . import accounts, addresses, audit, mfa, passwords
from .db import db, new_token, now
from .models import MfaMethod, User

BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
TRUE, FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}
BATCH = 500  # rows per commit: a crash loses at most one batch, which a re-run adds
MIN_TOTP_BITS = 80  # RFC 4226 asks for 128; authenticators of older providers often have 80


@dataclass(frozen=True)
class LineResult:
    """What became of one line: created, skipped (the address has an account) or refused."""

    line: int
    email: str
    outcome: str
    detail: str

    def __str__(self) -> str:
        return (
            f"line {self.line}: {self.outcome} {self.email or '-'}{': ' + self.detail if self.detail else ''}"
        )


class Refused(ValueError):
    """A line that cannot become an account; the message says why."""


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, fields) for each person in a JSON Lines or CSV file. A
    line that is not valid JSON yields a `Refused` instead of fields."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv" or not text.lstrip().startswith("{"):
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            yield number, {k.strip(): (v or "").strip() for k, v in row.items() if k}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            yield number, {"_refused": "not valid JSON"}
            continue
        yield number, fields if isinstance(fields, dict) else {"_refused": "not a JSON object"}


def import_people(lines: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[LineResult]:
    """Create an account for each line; yields each line's result as it goes."""
    existing = set(db.session.scalars(db.select(User.email)))
    batch: list[User] = []
    for number, fields in lines:
        email = str(fields.get("email") or "").strip()
        try:
            person = _person(fields)
        except Refused as refused:
            yield LineResult(number, email, "refused", str(refused))
            continue
        if person["email"] in existing:
            yield LineResult(number, person["email"], "skipped", "already has an account")
            continue
        existing.add(person["email"])
        batch.append(_create(person))
        if len(batch) >= BATCH:
            _commit(batch)
        yield LineResult(number, person["email"], "created", _describe(person))
    _commit(batch)


def _commit(batch: list[User]) -> None:
    """Store a batch of new accounts with their audit records (ids exist after the flush)."""
    db.session.flush()
    for user in batch:
        audit.record("registered", user=user, by="import")
    db.session.commit()
    batch.clear()


def _person(fields: dict[str, Any]) -> dict[str, Any]:
    if "_refused" in fields:
        raise Refused(fields["_refused"])
    email = _address(fields.get("email"))
    name = " ".join(str(fields.get("name") or "").split())
    if not name or len(name) > 200:
        raise Refused("a name of 1 to 200 characters is needed")
    try:
        name = accounts.check_name(name)  # the register page's rule: no control characters
    except accounts.NameRejected as refused:
        raise Refused(str(refused)) from None
    return {
        "email": email,
        "name": name,
        "password_hash": _password_hash(fields, email),
        "activated": _flag(fields.get("activated", False)),
        "totp_secret": _totp_secret(fields.get("totp_secret")),
    }


def _address(value: Any) -> str:
    """The provider's one address rule (`addresses.check`), in its stored form."""
    if not isinstance(value, str) or not value.strip():
        raise Refused("no email address")
    try:
        return addresses.check(value)
    except addresses.AddressRejected as exc:
        raise Refused(f"not an email address the sign-in page accepts ({exc})") from None


def _password_hash(fields: dict[str, Any], email: str) -> str:
    password, stored = fields.get("password"), fields.get("password_hash")
    if bool(password) == bool(stored):
        raise Refused("give either password or password_hash")
    if password:
        problems = passwords.policy_problems(str(password), email)
        if problems:
            raise Refused(" ".join(problems))
        return passwords.hash_password(str(password))
    stored = str(stored)
    if BCRYPT.fullmatch(stored):
        return stored
    try:
        extract_parameters(stored)
    except (InvalidHashError, ValueError):
        raise Refused("password_hash is neither an argon2 nor a bcrypt hash") from None
    return stored


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise Refused(f"activated must be true or false, not {value!r}")


def _totp_secret(value: Any) -> str | None:
    if value in (None, ""):
        return None
    secret = "".join(str(value).split()).upper().rstrip("=")
    try:
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise Refused("totp_secret is not base32") from None
    if len(raw) * 8 < MIN_TOTP_BITS:
        raise Refused(f"totp_secret is shorter than {MIN_TOTP_BITS} bits")
    return secret


def _create(person: dict[str, Any]) -> User:
    at = now()
    user = User(
        sub=new_token(16),
        email=person["email"],
        name=person["name"],
        password_hash=person["password_hash"],
        created_at=at,
        activated_at=at if person["activated"] else None,
    )
    if person["totp_secret"]:
        user.mfa_methods.append(
            MfaMethod(
                kind="totp", secret=mfa.encrypt_secret(person["totp_secret"]), created_at=at, confirmed_at=at
            )
        )
    db.session.add(user)
    return user


def _describe(person: dict[str, Any]) -> str:
    parts = ["activated" if person["activated"] else "pending activation"]
    if person["totp_secret"]:
        parts.append("authenticator app")
    return ", ".join(parts)
