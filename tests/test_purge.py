"""The purge: what stopped doing anything goes, what is still needed stays
(security audit F-06: no table grows without bound), on SQLite and on
PostgreSQL, in batches, from several instances at once."""

import threading
from datetime import timedelta

import pytest
from conftest import SECRETS
from rp import RP, make_user, query

from oidc_provider.db import db, now, token_hash
from oidc_provider.models import (
    AccountToken,
    AuditEvent,
    AuthorizationCode,
    LoginThrottle,
    LoginTransaction,
    OutboxMessage,
    PasskeyChallenge,
    PendingSignIn,
    SsoSession,
    Token,
    UsedJti,
)
from oidc_provider.purge import purge_expired

DAY = timedelta(days=1)
AUTHORIZE = {
    "response_type": "code",
    "client_id": "client",
    "redirect_uri": "https://rp.example.test/callback",
    "scope": "openid",
    "state": "s",
}
TABLES = {
    "login_transaction": LoginTransaction,
    "passkey_challenge": PasskeyChallenge,
    "pending_sign_in": PendingSignIn,
    "token": Token,
    "authorization_code": AuthorizationCode,
    "sso_session": SsoSession,
    "used_jti": UsedJti,
    "login_throttle": LoginThrottle,
    "account_token": AccountToken,
    "outbox_message": OutboxMessage,
    "audit_event": AuditEvent,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request, make_app):
    return make_app() if request.param == "sqlite" else request.getfixturevalue("pg_app")


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model).where(*where))


def _add(app, *rows) -> None:
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()


def _purge(app, at=None) -> dict[str, int]:
    with app.app_context():
        return purge_expired(at or now())


def _park(app) -> str:
    response = app.test_client().get("/authorize", query_string=AUTHORIZE)
    return query(response.location)["tx"]


def _links_jtis_deliveries(app, user_id: int) -> None:
    """An emailed link used, one unused (both expire in an hour), a client
    assertion's jti (exp in a minute), an outgoing message sent and one pending."""
    with app.app_context():
        at = now()
    hour = timedelta(hours=1)
    _add(
        app,
        AccountToken(
            user_id=user_id, purpose="reset", token_hash=token_hash("a"), expires_at=at + hour, used_at=at
        ),
        AccountToken(user_id=user_id, purpose="reset", token_hash=token_hash("b"), expires_at=at + hour),
        UsedJti(jti=token_hash("jti"), client_id="client", expires_at=at + timedelta(minutes=1)),
        OutboxMessage(
            kind="backchannel_logout", label="client", status="sent", sent_at=at, next_attempt_at=at
        ),
        OutboxMessage(kind="backchannel_logout", label="client", payload="sealed", next_attempt_at=at),
    )


def test_purge_removes_what_expired_and_keeps_what_is_still_needed(any_app, clock):
    app = any_app
    rp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    offline = rp.tokens(scope="openid offline_access")  # a refresh family that lives 30 days
    offline_code = rp.last["code"]
    rp.tokens()  # an access token alone: dead after an hour, with its code
    stale_tx = _park(app)  # an anonymous parked request, never finished
    app.test_client().post("/login", data={"email": "nobody@example.com", "password": "wrong"})  # a counter
    _links_jtis_deliveries(app, rp.user.id)

    clock.advance(days=2)  # the sign-in's session expired long ago
    fresh = RP(app, app.test_client(), clock, rp.user)
    live_code = fresh.login_code()  # a new session and an unexpired code, not redeemed yet
    open_tx = _park(app)
    purged = _purge(app)

    assert purged == {
        "login_transaction": 2,  # the sign-in's, answered, and the stale one
        "passkey_challenge": 1,  # the sign-in page's offer of passkeys, never taken
        "pending_sign_in": 1,  # the first sign-in's, used up (fresh's is still young)
        "token": 1,
        "authorization_code": 1,
        "sso_session": 1,
        "trusted_computer": 0,
        "used_jti": 1,
        "login_throttle": 1,
        "account_token": 2,
        "outbox_message": 0,  # sent two days ago: kept for MESSAGE_RETENTION
        "audit_event": 0,
    }
    assert app.test_client().get(f"/authorize?tx={stale_tx}").status_code == 404
    # ...and what is still needed works
    assert fresh.token(live_code).status_code == 200
    assert rp.refresh(offline["refresh_token"]).status_code == 200
    browser = app.test_client()
    assert browser.get("/authorize", query_string=AUTHORIZE).status_code == 302
    assert _count(app, LoginTransaction, LoginTransaction.id == open_tx) == 1
    pending = OutboxMessage.status == "pending"  # still to send:
    assert _count(app, OutboxMessage, pending, OutboxMessage.label == "client") == 1  # the logout token
    assert _count(app, OutboxMessage, pending, OutboxMessage.label == "new_device") == 1  # fresh's new browser
    assert _count(app, OutboxMessage, pending) == 2
    # the used code of the live family is kept: replayed, it still revokes the family
    replay = rp.token(offline_code)
    assert replay.json["error"] == "invalid_grant"
    assert _count(app, Token, Token.revoked_at.is_(None)) == 1  # only `fresh`'s token


def test_old_deliveries_audit_events_and_dead_families_go_in_the_end(any_app, clock):
    app = any_app
    rp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    rp.tokens(scope="openid offline_access")
    _links_jtis_deliveries(app, rp.user.id)
    events = _count(app, AuditEvent)
    assert events > 0

    clock.advance(days=31)  # the refresh family is over (30 days) and a day of grace passed
    purged = _purge(app)
    assert (purged["token"], purged["authorization_code"], purged["outbox_message"]) == (1, 1, 1)
    assert purged["audit_event"] == 0
    clock.advance(days=400)
    assert _purge(app)["audit_event"] == events
    assert _count(app, Token) == _count(app, AuthorizationCode) == _count(app, AuditEvent) == 0


def test_a_locked_or_recently_tried_address_keeps_its_counter(make_app, clock):
    app = make_app(
        LOGIN_FAILURES_BEFORE_LOCKOUT=2, LOGIN_LOCKOUT_BASE=3 * 24 * 3600, LOGIN_LOCKOUT_MAX=3 * 24 * 3600
    )
    browser = app.test_client()
    for address in ("locked@example.com", "locked@example.com", "tried@example.com"):
        browser.post("/login", data={"email": address, "password": "wrong"})
    clock.advance(hours=23)
    assert _purge(app)["login_throttle"] == 0
    clock.advance(hours=2)
    assert _purge(app)["login_throttle"] == 1  # the one tried once, a day ago
    clock.advance(days=2)
    assert _purge(app)["login_throttle"] == 1  # the lockout is over


def test_purge_works_in_batches(app, clock):
    for _ in range(7):
        _park(app)
    clock.advance(seconds=app.config["LOGIN_TRANSACTION_LIFETIME"] + 1)
    with app.app_context():
        assert purge_expired(now(), batch=2)["login_transaction"] == 7
    assert _count(app, LoginTransaction) == 0


def test_several_instances_purging_at_once_delete_each_row_once(any_app, clock):
    app = any_app
    for _ in range(25):  # within the per-IP parking limit
        _park(app)
    clock.advance(seconds=app.config["LOGIN_TRANSACTION_LIFETIME"] + 1)
    start = threading.Barrier(3)
    counts = []

    def instance() -> None:
        with app.app_context():
            start.wait()
            counts.append(purge_expired(now(), batch=5)["login_transaction"])
            db.session.remove()

    threads = [threading.Thread(target=instance) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 25 and len(counts) == 3
    assert _count(app, LoginTransaction) == 0


def test_flask_purge_prints_the_counts(app, clock):
    _park(app)
    clock.advance(seconds=app.config["LOGIN_TRANSACTION_LIFETIME"] + 1)
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split() for line in result.output.splitlines())
    assert lines["login_transaction"] == "1" and lines["token"] == "0"
    assert set(lines) == {*TABLES, "trusted_computer"}


def test_a_refused_third_party_code_stays_refused_after_a_purge(rp, clock):
    """A replay after the code is purged is still refused (unknown code)."""
    code = rp.login_code()
    assert rp.token(code).status_code == 200
    clock.advance(days=2)
    _purge(rp.app)
    response = rp.token(code, secret=SECRETS["client"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
