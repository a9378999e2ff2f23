"""The database goes away and comes back (reliability review experiment 5b,
defect 12): 503 with Retry-After and a "temporarily unavailable" answer, one
log line per request, and service again without a new app."""

import logging

import pytest
from rp import RP, make_user
from sqlalchemy import create_engine, make_url, text

from oidc_provider import logs

UNAVAILABLE = "The service is temporarily unavailable. Please try again in a minute."


def retry_after(response) -> int:
    """Seconds to wait: a minute (Flask-Limiter recomputes it on rate-limited
    endpoints, from the same moment, so a second may have passed)."""
    return int(response.headers["Retry-After"])


def refuse_connections(pg_admin, url: str, refuse: bool) -> None:
    """The database stops (or starts again) accepting connections; the open
    ones are cut, as when the server restarts."""
    name = make_url(url).database
    pg_admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if refuse else "true"}'))
    if refuse:
        pg_admin.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )


@pytest.fixture
def request_lines(caplog):
    """The log lines of one request at a time, stamped with request ids as the
    app's own handler stamps them."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(logs.RequestContext())
    return caplog


def one_line(caplog, response) -> logging.LogRecord:
    """The request's log lines: exactly one, the access line, without a traceback."""
    records = caplog.records
    assert [r.getMessage() for r in records][1:] == [], "more than one line for one request"
    [line] = records
    assert line.request_id == response.headers["X-Request-ID"]
    assert line.name == "oidc_provider.access" and line.status == 503
    assert line.exc_info is None and "\n" not in line.getMessage()
    assert "database unavailable" in line.error
    caplog.clear()
    return line


def test_database_outage_answers_503_with_retry_after_and_recovers(
    make_app, empty_pg_database, pg_admin, clock, request_lines
):
    app = make_app(DATABASE_URL=empty_pg_database)
    user = make_user(app)
    clock.advance(seconds=30)
    rp = RP(app, app.test_client(), clock, user)
    tokens = rp.tokens(scope="openid email")
    code = rp.login_code()  # signed in already: a code without a password
    request_lines.clear()

    refuse_connections(pg_admin, empty_pg_database, refuse=True)
    try:
        page = rp.browser.get("/account")
        assert page.status_code == 503 and 59 <= retry_after(page) <= 60
        assert page.mimetype == "text/html"
        assert b"Temporarily unavailable" in page.data and UNAVAILABLE.encode() in page.data
        assert b"Internal Server Error" not in page.data
        one_line(request_lines, page)

        token = rp.token(code)
        assert token.status_code == 503 and 59 <= retry_after(token) <= 60
        assert token.json == {"error": "temporarily_unavailable", "error_description": UNAVAILABLE}
        assert token.headers["Cache-Control"] == "no-store"
        one_line(request_lines, token)

        info = rp.userinfo(tokens["access_token"])
        assert info.status_code == 503 and 59 <= retry_after(info) <= 60
        assert info.json == {"error": "temporarily_unavailable", "error_description": UNAVAILABLE}
        one_line(request_lines, info)

        ready = app.test_client().get("/health/ready")
        assert ready.status_code == 503 and ready.json["status"] == "down"
        assert ready.json["checks"]["database"]["status"] == "down"
        assert app.test_client().get("/health/live").status_code == 200
    finally:
        refuse_connections(pg_admin, empty_pg_database, refuse=False)

    # the same app, no restart: the pool reconnects
    assert rp.browser.get("/account").status_code == 200
    token = rp.token(code)
    assert token.status_code == 200 and token.json["access_token"]
    assert rp.userinfo(tokens["access_token"]).json["email"] == user.email
    assert app.test_client().get("/health/ready").status_code == 200


def test_a_database_error_inside_authlib_reaches_the_outage_answer(
    make_app, empty_pg_database, clock, caplog
):
    """Authlib catches only its own errors: a statement that times out while
    /authorize stores its code (create_authorization_response) or while /token
    reads it (create_token_response) is a 503 too, and nothing is half-stored."""
    app = make_app(DATABASE_URL=f"{empty_pg_database}&options=-c%20statement_timeout%3D300")
    user = make_user(app)
    clock.advance(seconds=30)
    rp = RP(app, app.test_client(), clock, user)
    code = rp.login_code()  # signed in: the next /authorize goes straight to storing a code

    holder = create_engine(empty_pg_database)
    with holder.connect() as lock:  # another session holds the table while they run
        lock.execute(text("LOCK TABLE authorization_code IN ACCESS EXCLUSIVE MODE"))
        authorize = rp.authorize()
        token = rp.token(code)
        lock.rollback()
    holder.dispose()

    assert authorize.status_code == 503 and 59 <= retry_after(authorize) <= 60
    assert b"Temporarily unavailable" in authorize.data
    assert token.status_code == 503 and token.json["error"] == "temporarily_unavailable"
    errors = [r.error for r in caplog.records if getattr(r, "status", None) == 503]
    assert len(errors) == 2 and all("canceling statement due to statement timeout" in e for e in errors)
    # the lock is gone: the same requests succeed, the code was not spent
    assert rp.token(code).status_code == 200
    assert rp.code_from(rp.authorize())


def test_a_sign_in_that_cannot_be_stored_whole_stores_nothing_and_is_finished_by_the_next_code(
    make_app, empty_pg_database, clock
):
    """The code step finishes a sign-in in one transaction (its session, audit
    line, known browser): when part of it cannot be written, the person reads
    the outage page, nothing of the sign-in is stored, the browser is where it
    was, and the next code finishes the same sign-in."""
    from oidc_provider.db import db
    from oidc_provider.models import AuditEvent, PendingSignIn, SsoSession

    app = make_app(DATABASE_URL=f"{empty_pg_database}&options=-c%20statement_timeout%3D300")
    user = make_user(app)
    clock.advance(seconds=30)
    browser = app.test_client()
    step = browser.post("/login", data={"email": user.email, "password": user.password})
    assert step.status_code == 302 and step.location.endswith("/login/code")

    holder = create_engine(empty_pg_database)
    with holder.connect() as lock:  # another session holds the browsers' table past the timeout
        lock.execute(text("LOCK TABLE known_device IN ACCESS EXCLUSIVE MODE"))
        failed = browser.post("/login/code", data={"code": user.totp.at(clock.now)})
        lock.rollback()
    holder.dispose()

    assert failed.status_code == 503 and b"Temporarily unavailable" in failed.data
    with app.app_context():
        assert db.session.scalars(db.select(SsoSession)).all() == []
        assert db.session.scalars(db.select(AuditEvent).filter_by(event="signin_ok")).all() == []
        [pending] = db.session.scalars(db.select(PendingSignIn)).all()
        assert pending.consumed_at is None
    assert browser.get("/account").location.startswith("/login")

    clock.advance(seconds=30)  # the code just typed was used up: the app's next one
    done = browser.post("/login/code", data={"code": user.totp.at(clock.now)})
    assert done.status_code == 302 and done.location == "/"
    assert browser.get("/account").status_code == 200
