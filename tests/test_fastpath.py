"""The apps' most frequent calls answered below Flask (oidc_provider/fastpath.py)
give the same answer as the Flask views, and everything that is not the plain
case still goes through the views: errors, rate limits, unusual tokens."""

import json
from base64 import b64encode, urlsafe_b64decode

import pytest
from conftest import SECRETS
from rp import CALLBACK, RP, pkce, query

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
    for name in (
        "endpoints.userinfo",
        "endpoints.introspect",
        "endpoints.discovery",
        "endpoints.jwks",
        "endpoints.token",
    ):
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


def _claims(id_token):
    payload = id_token.split(".")[1]
    return json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _alike(fast_response, slow_response):
    """Two token answers: the same status, headers, fields and ID token claims
    (the tokens themselves and the moments differ)."""
    assert fast_response.status_code == slow_response.status_code == 200, (fast_response.json, slow_response.json)
    headers = lambda r: sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE | {"Content-Length"})  # noqa: E731
    assert headers(fast_response) == headers(slow_response)
    fast, slow = fast_response.json, slow_response.json
    assert sorted(fast) == sorted(slow)
    assert {k: fast[k] for k in ("token_type", "expires_in", "scope")} == {
        k: slow[k] for k in ("token_type", "expires_in", "scope")
    }
    fast_claims, slow_claims = _claims(fast["id_token"]), _claims(slow["id_token"])
    assert sorted(fast_claims) == sorted(slow_claims)
    same_values = ("iss", "aud", "azp", "sub", "nonce", "acr", "amr", "auth_time", "sid")
    assert {k: fast_claims.get(k) for k in same_values} == {k: slow_claims.get(k) for k in same_values}


@pytest.mark.parametrize("auth", ["basic", "post", "none"])
def test_codes_and_refresh_tokens_are_redeemed_below_flask_as_the_view_redeems_them(pair, auth):
    fast, slow, rp, served = pair
    client_id = {"basic": "client", "post": "client-post", "none": "public-app"}[auth]
    redirect_uri = {"public-app": "http://127.0.0.1:7000/cb"}.get(client_id, "https://rp.example.test/callback")
    verifier, challenge = pkce()
    params = dict(client_id=client_id, redirect_uri=redirect_uri, scope="openid profile offline_access")
    params.update(code_challenge=challenge, code_challenge_method="S256", prompt="consent")
    answers = {}
    for name, app in (("fast", fast), ("slow", slow)):
        rp.app = app
        code = rp.login_code(**params)
        answers[name] = rp.token(code, client_id=client_id, redirect_uri=redirect_uri, auth=auth, code_verifier=verifier)
    assert served["views"] == 0, "a plain code exchange reached the view"
    _alike(answers["fast"], answers["slow"])
    refreshed = {}
    for name, app in (("fast", fast), ("slow", slow)):
        rp.app = app
        refreshed[name] = rp.refresh(answers[name].json["refresh_token"], client_id=client_id, auth=auth)
    assert served["views"] == 0, "a plain refresh reached the view"
    _alike(refreshed["fast"], refreshed["slow"])
    rp.app = fast
    assert rp.userinfo(refreshed["fast"].json["access_token"]).json["sub"] == _claims(refreshed["fast"].json["id_token"])["sub"]


def test_refused_token_requests_are_answered_by_the_view(pair, clock):
    """A wrong secret, a wrong verifier, an unknown code: the view's answer,
    and a refusal leaves nothing behind -- the code still redeems after."""
    fast, slow, rp, served = pair
    verifier, challenge = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    wrong_secret = rp.token(code, secret="wrong", code_verifier=verifier)
    assert wrong_secret.status_code == 401 and wrong_secret.json["error"] == "invalid_client"
    wrong_verifier = rp.token(code, code_verifier="x" * 43)
    assert wrong_verifier.status_code == 400 and wrong_verifier.json["error"] == "invalid_grant"
    unknown = rp.token("y" * 43, code_verifier=verifier)
    assert unknown.status_code == 400 and unknown.json["error"] == "invalid_grant"
    assert served["views"] == 3
    assert rp.token(code, code_verifier=verifier).status_code == 200
    assert served["views"] == 3


def test_a_replayed_code_is_answered_by_the_view_and_revokes_what_it_gave(pair):
    fast, slow, rp, served = pair
    verifier, challenge = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    first = rp.token(code, code_verifier=verifier)
    assert first.status_code == 200 and served["views"] == 0
    again = rp.token(code, code_verifier=verifier)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant" and served["views"] == 1
    assert rp.userinfo(first.json["access_token"]).status_code == 401


@pytest.mark.parametrize("endpoint", ["/token", "/introspect"])
def test_over_the_client_authentication_limit_a_right_secret_is_refused_too(make_app, rp, endpoint):
    """Else the limit would tell the one right guess from the wrong ones."""
    verifier, challenge = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    token = rp.tokens()["access_token"]
    app = make_app(RATELIMIT_CLIENT_AUTH="3 per minute")
    wrong = {"Authorization": "Basic " + b64encode(b"client:wrong").decode()}
    form = (
        {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}
        if endpoint == "/token"
        else {"token": token}
    )
    statuses = [app.test_client().post(endpoint, data=form, headers=wrong).status_code for _ in range(3)]
    right = app.test_client().post(endpoint, data=form, headers=basic())
    assert statuses == [401, 401, 401] and right.status_code == 429


# A database outage: the handler falls through and the view answers 503 (tests/test_outage.py
# calls /userinfo and /token with the fast path on, as it is by default).


# -- SSO authorize ---------------------------------------------------------------------

SECOND_APP = {"client_id": "client2", "redirect_uri": "https://rp.example.test/callback2"}


def _counted_authorize(app, served):
    view = app.view_functions["authorize.authorize"]

    def counted(*args, **kwargs):
        served["views"] += 1
        return view(*args, **kwargs)

    app.view_functions["authorize.authorize"] = counted


def _signed_in_browsers(pair):
    """One signed-in browser cookie, sent to the fast and the slow provider."""
    fast, slow, rp, served = pair
    rp.flow()  # signs the browser in (the app fixture's provider, the same database)
    cookie = rp.browser.get_cookie(fast.config["SESSION_COOKIE_NAME"]).value
    browsers = {}
    for name, app in (("fast", fast), ("slow", slow)):
        browsers[name] = app.test_client()
        browsers[name].set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    _counted_authorize(fast, served)
    return browsers


def test_sso_into_a_second_app_is_answered_below_flask_with_the_views_answer(pair):
    fast, slow, rp, served = pair
    browsers = _signed_in_browsers(pair)
    verifier, challenge = pkce()
    query_string = {
        "response_type": "code",
        "scope": "openid profile",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **SECOND_APP,
    }
    answers = {name: browser.get("/authorize", query_string=query_string) for name, browser in browsers.items()}
    assert served["views"] == 0, "a plain SSO request reached the view"
    fast_answer, slow_answer = answers["fast"], answers["slow"]
    assert fast_answer.status_code == slow_answer.status_code == 302
    headers = lambda r: sorted(  # noqa: E731
        (k, v) for k, v in r.headers.items() if k not in VOLATILE | {"Location", "Content-Length"}
    )
    assert headers(fast_answer) == headers(slow_answer)
    assert "Set-Cookie" not in fast_answer.headers
    fast_params, slow_params = query(fast_answer.location), query(slow_answer.location)
    assert sorted(fast_params) == sorted(slow_params) == ["code", "iss", "state"]
    assert fast_params["state"] == "s-1" and fast_params["iss"] == slow_params["iss"]
    assert fast_answer.location.startswith(SECOND_APP["redirect_uri"] + "?")
    rp.app = fast
    tokens = rp.token(fast_params["code"], client_id="client2", redirect_uri=SECOND_APP["redirect_uri"], code_verifier=verifier)
    assert tokens.status_code == 200
    claims = _claims(tokens.json["id_token"])
    assert claims["nonce"] == "n-1" and claims["aud"] == "client2" and claims["sub"] == rp.user.sub


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt": "none"},
        {"prompt": "login"},
        {"max_age": "0"},
        {"response_mode": "form_post"},
        {"ui_locales": "nl"},
        {"client_id": "third-party", "redirect_uri": "https://rp.example.test/tp"},  # asks for consent
        {"redirect_uri": "https://evil.example/cb"},
        {"client_id": "nobody"},
        {"scope": "profile"},  # no openid
    ],
    ids=lambda extra: ",".join(extra),
)
def test_sso_requests_that_are_not_the_plain_case_go_through_the_view(pair, extra):
    fast, slow, rp, served = pair
    browsers = _signed_in_browsers(pair)
    query_string = {"response_type": "code", "scope": "openid", "state": "s-2", "nonce": "n-2", **SECOND_APP, **extra}
    fast_answer = browsers["fast"].get("/authorize", query_string=query_string)
    slow_answer = browsers["slow"].get("/authorize", query_string=query_string)
    assert served["views"] == 1
    assert fast_answer.status_code == slow_answer.status_code
    if fast_answer.status_code == 302:
        assert sorted(query(fast_answer.location)) == sorted(query(slow_answer.location))


def test_a_browser_that_is_not_signed_in_goes_through_the_view(pair):
    fast, slow, rp, served = pair
    _counted_authorize(fast, served)
    query_string = {"response_type": "code", "scope": "openid", "state": "s", "nonce": "n", **SECOND_APP}
    response = fast.test_client().get("/authorize", query_string=query_string)
    assert served["views"] == 1 and response.status_code == 302 and "/login" in response.location
    forged = fast.test_client()
    forged.set_cookie(fast.config["SESSION_COOKIE_NAME"], "eyJzc28iOiJ4In0.forged.signature")
    response = forged.get("/authorize", query_string=query_string)
    assert served["views"] == 2 and "/login" in response.location
