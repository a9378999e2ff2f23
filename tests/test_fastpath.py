"""The apps' most frequent calls answered below Flask (oidc_provider/fastpath.py)
give the same answer as the Flask views, and everything that is not the plain
case still goes through the views: errors, rate limits, unusual tokens."""

import json
from base64 import b64encode

import pytest
from conftest import SECRETS
from rp import RP

from oidc_provider.db import db, now
from oidc_provider.models import Token

VOLATILE = {"X-Request-ID", "Date", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"}


def basic(client_id="client"):
    return {"Authorization": "Basic " + b64encode(f"{client_id}:{SECRETS[client_id]}".encode()).decode()}


@pytest.fixture
def pair(make_app, clock, user):
    """The same provider twice on one database: the fast path on, and off."""
    fast = make_app()
    slow = make_app(FASTPATH=False)
    served = {"views": 0}
    for name in ("endpoints.userinfo", "endpoints.introspect", "endpoints.discovery", "endpoints.jwks"):
        view = fast.view_functions[name]

        def counted(*args, _view=view, **kwargs):
            served["views"] += 1
            return _view(*args, **kwargs)

        fast.view_functions[name] = counted
    rp = RP(fast, fast.test_client(), clock, user)
    return fast, slow, rp, served


def same(fast_response, slow_response):
    assert fast_response.status_code == slow_response.status_code
    assert fast_response.data == slow_response.data
    headers = lambda r: sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE)  # noqa: E731
    assert headers(fast_response) == headers(slow_response)
    assert fast_response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "call",
    [
        lambda c, t: c.get("/userinfo", headers={"Authorization": f"Bearer {t}"}),
        lambda c, t: c.post("/userinfo", headers={"Authorization": f"bearer {t}"}),
        lambda c, t: c.post("/introspect", data={"token": t}, headers=basic()),
        lambda c, t: c.post("/introspect", data={"token": t, "token_type_hint": "access_token"}, headers=basic()),
        lambda c, t: c.get("/.well-known/openid-configuration"),
        lambda c, t: c.get("/jwks.json"),
    ],
    ids=["userinfo-get", "userinfo-post", "introspect", "introspect-hint", "discovery", "jwks"],
)
def test_the_plain_case_is_answered_below_flask_with_the_views_answer(pair, call):
    fast, slow, rp, served = pair
    token = rp.tokens(scope="openid profile email")["access_token"]
    answered = call(fast.test_client(), token)
    assert served["views"] == 0, "the plain case reached a Flask view"
    same(answered, call(slow.test_client(), token))
    assert answered.status_code == 200


@pytest.mark.parametrize(
    ("case", "call"),
    [
        ("unknown token", lambda c, t: c.get("/userinfo", headers={"Authorization": "Bearer " + "x" * 43})),
        ("no token", lambda c, t: c.get("/userinfo")),
        ("token in the body", lambda c, t: c.post("/userinfo", data={"access_token": t})),
        ("another app's token", lambda c, t: c.post("/introspect", data={"token": t}, headers=basic("client2"))),
        (
            "a wrong secret",
            lambda c, t: c.post(
                "/introspect", data={"token": t}, headers={"Authorization": "Basic " + b64encode(b"client:no").decode()}
            ),
        ),
        ("a refresh token", lambda c, t: c.post("/introspect", data={"token": "r"}, headers=basic())),
        ("a wrong method", lambda c, t: c.put("/userinfo", headers={"Authorization": f"Bearer {t}"})),
        ("a NUL in a header", lambda c, t: c.get("/jwks.json", headers={"X-Odd": "a\x00b"})),
    ],
)
def test_anything_else_goes_through_the_views(pair, case, call):
    fast, slow, rp, served = pair
    token = rp.tokens(scope="openid profile email")["access_token"]
    answered = call(fast.test_client(), token)
    assert served["views"] == 1 or answered.status_code in (400, 405), case  # refused before any view
    same(answered, call(slow.test_client(), token))


def test_expired_revoked_and_disabled_go_through_the_views(pair, clock):
    fast, slow, rp, served = pair
    token = rp.tokens(scope="openid profile email")["access_token"]
    header = {"Authorization": f"Bearer {token}"}
    with fast.app_context():
        row = db.session.scalar(db.select(Token))
        row.revoked_at = now()
        db.session.commit()
    answered = fast.test_client().get("/userinfo", headers=header)
    assert answered.status_code == 401 and served["views"] == 1
    same(answered, slow.test_client().get("/userinfo", headers=header))


def test_claims_that_need_more_than_the_persons_row_go_through_the_views(pair):
    fast, slow, rp, served = pair
    claims = json.dumps({"userinfo": {"email": None}})
    token = rp.tokens(scope="openid", claims=claims)["access_token"]
    answered = fast.test_client().get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert answered.json["email"] == rp.user.email and served["views"] == 1


def test_failed_client_authentication_is_still_rate_limited(make_app, rp):
    """Wrong secrets are guesses: they fall through to the view, whose limit counts them."""
    token = rp.tokens()["access_token"]
    app = make_app(RATELIMIT_CLIENT_AUTH="3 per minute")
    wrong = {"Authorization": "Basic " + b64encode(b"client:wrong").decode()}
    statuses = [app.test_client().post("/introspect", data={"token": token}, headers=wrong).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


# A database outage: the handler falls through and the view answers 503 (tests/test_outage.py
# calls /userinfo and /token with the fast path on, as it is by default).
