"""When the database is away (stopped, restarting, unreachable, locked): a
503 with `Retry-After` that says to try again in a minute, instead of an
error page that blames the application.

Nothing is lost: the request's transaction is rolled back, and the browser's
session cookie is answered as it came (a step that failed moved the browser
nowhere: the same step can be done again). On PostgreSQL the pool
checks each connection before use (`pool_pre_ping`), so the first request after the
database returns is served, without a restart. The log gets one line per
such request (the access line names the error), not a traceback.
"""

from __future__ import annotations

import contextlib

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    render_template,
    request,
    session,
)
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .db import db
from .security import wants_json

RETRY_AFTER = 60  # seconds: a restart or a failover
MESSAGE = "The service is temporarily unavailable. Please try again in a minute."

# What the drivers raise when the server cannot be reached or cannot answer
# now: psycopg's OperationalError (connection refused or lost, server shutting
# down, statement timeout, deadlock) and InterfaceError (connection closed);
# sqlite3's OperationalError (database locked, file unreadable); the pool's
# own timeout when every connection is busy.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def reason(error: BaseException) -> str:
    """One line naming what failed, from the driver's message (which may span
    several lines and never holds a parameter value)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"database unavailable: {type(cause).__name__}: {text[0] if text else ''}"[:300]


def unavailable(error: Exception) -> tuple[Response | str, int, dict[str, str]]:
    """Answer 503 + Retry-After: JSON `temporarily_unavailable` for the apps'
    servers, a page for people."""
    with contextlib.suppress(SQLAlchemyError):  # the connection may be gone with the transaction
        db.session.rollback()
    _session_as_sent()
    g.unavailable = reason(error)
    headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
    if wants_json():
        return jsonify(error="temporarily_unavailable", error_description=MESSAGE), 503, headers
    page = render_template(
        "error.html",
        title="Temporarily unavailable",
        message=MESSAGE,
        hint="Nothing was changed: once it is back, do the same step again.",
    )
    return page, 503, headers


def _session_as_sent() -> None:
    """Undo what the failed request changed in the browser's session (a sign-in
    step that pops its pending sign-in, signs in): the cookie goes back as it came."""
    if not has_request_context() or not session.modified:
        return
    sent = current_app.session_interface.open_session(current_app, request)
    session.clear()
    session.update(sent or {})


def init_app(app: Flask) -> None:
    for kind in UNAVAILABLE:
        app.register_error_handler(kind, unavailable)
