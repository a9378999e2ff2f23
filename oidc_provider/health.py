"""Health for load balancers and orchestrators.

- `/health/live`: the process answers (no I/O). Restart the instance when it fails.
- `/health/ready`: each check with its status, 200 unless one is down (503).
  Send it no traffic while it fails. `/healthz` is the same readiness check
  under its older name.

A check is a function returning `ok()`, `degraded(…)` or `down(…)` (or a bool);
one that raises is down. Degraded means serving with less (the rate limits
counted in each process while Redis is away): still ready. Checked: the
database, the rate-limit storage, a signing key per algorithm, the outbox's
backlog, and what other
modules add with one line (`health.register(name, fn)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import keys, outage, outbox
from .db import db
from .security import csrf, limiter

bp = Blueprint("health", __name__)
OK, DEGRADED, DOWN = "ok", "degraded", "down"


@dataclass(frozen=True)
class Result:
    status: str  # ok, degraded, down
    detail: str = ""


def ok(detail: str = "") -> Result:
    return Result(OK, detail)


def degraded(detail: str) -> Result:
    """Serving, with less than usual: reported, but still ready."""
    return Result(DEGRADED, detail)


def down(detail: str) -> Result:
    """Cannot serve: the instance is not ready."""
    return Result(DOWN, detail)


Check = Callable[[], "Result | bool"]
CHECKS: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    """Add (or replace) a readiness check under `name`; it runs in the app context."""
    CHECKS[name] = check


def database() -> Result:
    """`SELECT 1` on a connection of the pool, given `HEALTH_TIMEOUT` seconds."""
    try:
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                ms = int(current_app.config["HEALTH_TIMEOUT"] * 1000)
                connection.execute(text(f"SET LOCAL statement_timeout = {ms}"))
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return down(outage.reason(error))
    return ok()


def rate_limits() -> Result:
    """Where the rate limits are counted: shared storage reachable (ok), Redis
    away and limits counted in each process meanwhile (degraded)."""
    uri = str(current_app.config["RATELIMIT_STORAGE_URI"])
    scheme = uri.split(":", 1)[0]
    if scheme == "memory":
        return ok("memory:// (this process)")
    if limiter.storage.check():
        return ok(scheme)
    if current_app.config.get("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"):
        return degraded(f"{scheme} unreachable: limits counted in each process until it returns")
    return down(f"{scheme} unreachable")


def signing_keys() -> Result:
    """A key that signs now for every algorithm (made at the first need, as a
    token request would: a fresh database is ready once keys can be made)."""
    try:
        keys.ring().public_jwks()
    except (SQLAlchemyError, keys.KeyRingError) as error:
        return down(f"signing keys cannot be read: {str(error)[:200]}")
    missing = keys.missing_algs()
    return down(f"no signing key for {', '.join(missing)}") if missing else ok()


def outbox_backlog() -> Result:
    """Mail, SMS and logout tokens waiting: degraded (still serving) when the
    most overdue has waited longer than HEALTH_OUTBOX_MAX_AGE, since then no
    worker is sending."""
    count, waited = outbox.backlog()
    if count and waited > current_app.config["HEALTH_OUTBOX_MAX_AGE"]:
        return degraded(f"{count} message(s) due, the oldest {int(waited)} s overdue: is a worker running?")
    return ok()


register("database", database)
register("rate_limits", rate_limits)
register("signing_keys", signing_keys)
register("outbox", outbox_backlog)


def _run(check: Check) -> Result:
    try:
        result = check()
    except Exception as error:  # a broken check says so; it never breaks the answer
        return down(f"{type(error).__name__}: {str(error)[:200]}")
    if isinstance(result, bool):
        return ok() if result else down("failed")
    return result


def readiness() -> tuple[dict[str, Any], int]:
    """Every registered check; the worst status is the answer's."""
    results = {name: _run(check) for name, check in CHECKS.items()}
    statuses = {r.status for r in results.values()}
    status = DOWN if DOWN in statuses else DEGRADED if DEGRADED in statuses else OK
    checks = {
        name: {"status": r.status, **({"detail": r.detail} if r.detail else {})}
        for name, r in results.items()
    }
    return {"status": status, "checks": checks}, 503 if status == DOWN else 200


@bp.get("/health/live")
def live() -> tuple[dict[str, str], int]:
    return {"status": OK}, 200


@bp.get("/health/ready")
@bp.get("/healthz")
def ready() -> tuple[dict[str, Any], int, dict[str, str]]:
    body, status = readiness()
    return body, status, {"Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    limiter.exempt(bp)
    app.register_blueprint(bp)
