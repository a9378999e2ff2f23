"""Codes and refresh tokens that must not outlive what they stand for: a
redemption that loses a race is a replay and revokes (reliability review,
experiment 2 / defect 4), a code dies with its SSO session (security audit
F-15), a refresh family has an absolute lifetime (I-06); and PKCE per client
(I-02). On SQLite and on PostgreSQL where it matters."""

import threading
from datetime import timedelta

import pytest
import yaml
from conftest import ROOT, SECRETS
from rp import RP, assert_error, make_user, pkce, query

from oidc_provider.db import db
from oidc_provider.models import Token

RACES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def any_rp(request, make_app, clock):
    """A signed-in RP on SQLite, and on PostgreSQL (schema by the migrations)."""
    app = make_app() if request.param == "sqlite" else request.getfixturevalue("pg_app")
    user = make_user(app)
    clock.advance(seconds=30)
    return RP(app, app.test_client(), clock, user)


def _race(*calls):
    """Run the calls at once (released together); their results in order."""
    start = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        start.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _introspect(rp: RP, token: str) -> dict:
    response = rp.app.test_client().post(
        "/introspect", data={"token": token}, auth=("client", SECRETS["client"])
    )
    return response.json


def _winner(results) -> dict:
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400], statuses
    [loser] = [r for r in results if r.status_code == 400]
    assert loser.json["error"] == "invalid_grant"
    [winner] = [r for r in results if r.status_code == 200]
    return winner.json


def test_a_second_redemption_of_a_code_that_loses_the_race_revokes_like_a_replay(any_rp):
    """20 of 20 two-way races: the winner's tokens are revoked, as when the
    replay comes later (the replay may be the thief's or the app's)."""
    rp = any_rp
    revoked = 0
    for _ in range(RACES):
        code = rp.login_code(scope="openid offline_access")
        tokens = _winner(_race(lambda code=code: rp.token(code), lambda code=code: rp.token(code)))
        if _introspect(rp, tokens["access_token"]) == {"active": False}:
            refreshed = rp.refresh(tokens["refresh_token"])
            assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
            revoked += 1
    assert revoked == RACES


def test_a_second_refresh_that_loses_the_race_revokes_the_family(any_rp):
    rp = any_rp
    revoked = 0
    for _ in range(RACES):
        first = rp.tokens(scope="openid offline_access")
        token = first["refresh_token"]
        rotated = _winner(_race(lambda token=token: rp.refresh(token), lambda token=token: rp.refresh(token)))
        refreshed = rp.refresh(rotated["refresh_token"])
        if refreshed.status_code == 400 and _introspect(rp, rotated["access_token"]) == {"active": False}:
            assert refreshed.json["error"] == "invalid_grant"
            revoked += 1
    assert revoked == RACES


def test_the_losing_request_gives_out_nothing(any_rp):
    rp = any_rp
    code = rp.login_code(scope="openid offline_access")
    _winner(_race(lambda: rp.token(code), lambda: rp.token(code)))
    with rp.app.app_context():
        rows = db.session.scalars(db.select(Token)).all()
    assert (
        len(rows) == 1 and rows[0].revoked_at is not None
    )  # the winner's, revoked; the loser's never stored


# -- F-15: a code dies with its session ------------------------------------------------


def test_a_code_issued_before_logout_is_refused_after_it(any_rp):
    """F-15 proof of concept: the code is redeemed after the person signed out."""
    rp = any_rp
    code = rp.login_code(scope="openid offline_access")
    assert rp.browser.post("/logout", data={"confirm": "1"}).status_code in (200, 302, 303)
    response = rp.token(code)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    with rp.app.app_context():
        assert db.session.query(Token).count() == 0


def test_a_code_of_an_open_session_is_still_redeemed(any_rp):
    rp = any_rp
    code = rp.login_code()
    rp.clock.advance(seconds=30)
    assert rp.token(code).status_code == 200


# -- I-06: refresh families end ---------------------------------------------------------


def test_rotation_never_extends_a_refresh_family_beyond_its_lifetime(rp, clock):
    family_lifetime = rp.app.config["REFRESH_TOKEN_FAMILY_LIFETIME"]
    assert family_lifetime == 90 * 24 * 3600
    token = rp.tokens(scope="openid offline_access")["refresh_token"]
    started = clock.now  # when the family's first token was issued
    for _ in range(4):  # every 20 days: each rotation within REFRESH_TOKEN_LIFETIME
        clock.advance(days=20)
        response = rp.refresh(token)
        assert response.status_code == 200, response.json
        token = response.json["refresh_token"]
    assert _introspect(rp, token)["exp"] == int((started + timedelta(days=90)).timestamp())
    clock.advance(days=10, seconds=1)  # 90 days since the sign-in; the last rotation 10 days ago
    response = rp.refresh(token)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_a_short_family_lifetime_caps_the_first_refresh_token(make_app, clock):
    app = make_app(REFRESH_TOKEN_FAMILY_LIFETIME=3600)
    rp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    token = rp.tokens(scope="openid offline_access")["refresh_token"]
    clock.advance(seconds=3601)
    assert rp.refresh(token).json["error"] == "invalid_grant"


# -- I-02: PKCE per client ---------------------------------------------------------------


def test_the_shipped_apps_require_pkce():
    shipped = yaml.safe_load((ROOT / "clients.yaml").read_text())["clients"]
    assert len(shipped) == 6 and all(c["require_pkce"] is True for c in shipped)


@pytest.fixture
def shipped_rp(make_app, clock):
    """The provider with the shipped clients.yaml, as `make run` starts it (on its
    local http issuer: the shipped development secrets are refused on https)."""
    app = make_app(
        clients=yaml.safe_load((ROOT / "clients.yaml").read_text())["clients"],
        OIDC_ISSUER="http://127.0.0.1:5000",
    )
    user = make_user(app)
    clock.advance(seconds=30)
    return RP(app, app.test_client(), clock, user)


def test_a_request_without_a_code_challenge_for_a_pkce_app_is_invalid_request(shipped_rp):
    """I-02 proof of concept: a confidential app redeemed a code got without PKCE."""
    response = shipped_rp.authorize(client_id="modeler", redirect_uri="http://127.0.0.1:5001/callback")
    assert response.location.startswith("http://127.0.0.1:5001/callback?")
    assert_error(query(response.location), "invalid_request", shipped_rp.issuer)


def test_a_pkce_app_with_a_code_challenge_signs_in(shipped_rp):
    verifier, challenge = pkce()
    uri = "http://127.0.0.1:5001/callback"
    code = shipped_rp.login_code(
        client_id="modeler", redirect_uri=uri, code_challenge=challenge, code_challenge_method="S256"
    )
    response = shipped_rp.token(
        code, client_id="modeler", secret="dev-secret-modeler", redirect_uri=uri, code_verifier=verifier
    )
    assert response.status_code == 200
