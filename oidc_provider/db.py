"""The database handle, migrations, the clock and the random source.

`now()` and `new_token()` are the only clock and randomness the provider uses,
so tests can move time (config `CLOCK`) and nothing ever sleeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_app_context
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event, make_url

# Named constraints keep Alembic migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
MIGRATIONS = str(Path(__file__).parent / "migrations")


def init_app(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    app.before_request(_keep_loaded)
    app.teardown_request(_expire_again)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)


def _private_sqlite_file(uri: str) -> None:
    """Create the SQLite file readable by this user only (0600): it holds
    password hashes, token hashes, encrypted MFA secrets and the audit log.
    SQLite gives its -wal and -shm files the database file's mode."""
    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # there already, or in a missing folder (SQLite then says so by name)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """SQLite as a server database: write-ahead log (readers never wait for the
    writer; a commit costs no fsync of the whole file), foreign keys enforced."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _keep_loaded() -> None:
    """A request reads each row once: its own commits leave what it loaded as
    it is, instead of expired and read again at the next use (a sign-in step
    commits three times and reads the person, the pending sign-in and the
    method after each). What must be read fresh after a commit is expired by
    the code that needs it: the guessing counters (lockout.py) are."""
    db.session().expire_on_commit = False


def _expire_again(_error: BaseException | None = None) -> None:
    """After the request, commits expire again (a test's or command's own
    session may outlive a request it made)."""
    if db.session.registry.has():
        db.session().expire_on_commit = True


def commit_keeping_loaded() -> None:
    """Commit, and leave the objects this request has loaded as they are
    instead of expired (each would be read again at its next use): for a small
    write of the request's own that changes nothing else it reads, such as an
    SSO session's last-seen time."""
    session = db.session()
    expiring, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expiring


def now() -> datetime:
    """The current time, UTC, naive (stored as such on SQLite and PostgreSQL)."""
    clock = current_app.config.get("CLOCK") if has_app_context() else None
    moment = clock() if clock else datetime.now(UTC)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def timestamp(moment: datetime | None = None) -> int:
    """Seconds since the epoch of a naive UTC datetime (default: now)."""
    return int((moment or now()).replace(tzinfo=UTC).timestamp())


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token (256 bits by default)."""
    source = current_app.config.get("TOKEN_SOURCE") if has_app_context() else None
    return (source or secrets.token_urlsafe)(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token: what is stored instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
