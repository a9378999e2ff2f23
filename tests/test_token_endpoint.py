"""The token endpoint and what hangs off it: code redemption, refresh tokens,
PKCE, client authentication, revocation (RFC 7009) and introspection
(RFC 7662); conformance modules where the suite has one."""

import threading
import time

import conftest
import jwt as pyjwt
import pytest
from conftest import SECRETS
from joserfc import jwt
from joserfc.jwk import RSAKey
from rp import RP, make_user, pkce, query

from oidc_provider.db import db
from oidc_provider.oauth import PrivateKeyJwt

PUBLIC_CB = "http://127.0.0.1:7000/cb"


def _assert_invalid_grant(response) -> None:
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.json["error"] == "invalid_grant"
    assert response.headers["Cache-Control"] == "no-store"


def _assert_invalid_client(response) -> None:
    """RFC 6749 5.2: 401 is a must only for credentials in the Authorization header."""
    assert response.status_code in (400, 401) and response.json["error"] == "invalid_client"


def _assert_token_revoked(rp: RP, access_token: str) -> None:
    response = rp.userinfo(access_token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# -- codes ------------------------------------------------------------------------------


def test_oidcc_codereuse(rp):
    code = rp.login_code()
    assert rp.token(code).status_code == 200
    _assert_invalid_grant(rp.token(code))


def test_oidcc_codereuse_30seconds(rp, clock):
    code = rp.login_code(scope="openid offline_access")
    first = rp.token(code).json
    clock.advance(seconds=30)
    _assert_invalid_grant(rp.token(code))
    _assert_token_revoked(rp, first["access_token"])  # RFC 6749 4.1.2: revoke what the code issued
    _assert_invalid_grant(rp.refresh(first["refresh_token"]))


def test_code_expires_after_60_seconds(rp, clock):
    code = rp.login_code()
    clock.advance(seconds=61)
    _assert_invalid_grant(rp.token(code))


def test_code_works_within_60_seconds(rp, clock):
    code = rp.login_code()
    clock.advance(seconds=59)
    assert rp.token(code).status_code == 200


def test_code_is_bound_to_its_client(rp):
    code = rp.login_code()
    response = rp.token(code, client_id="client2", redirect_uri="https://rp.example.test/callback2")
    _assert_invalid_grant(response)


def test_code_is_bound_to_its_redirect_uri(rp):
    _assert_invalid_grant(rp.token(rp.login_code(), redirect_uri="https://rp.example.test/callback2"))


def test_concurrent_redemption_of_one_code_gives_tokens_at_most_once(rp):
    code = rp.login_code()
    start = threading.Barrier(4)
    results = []

    def redeem() -> None:
        start.wait()
        results.append(rp.token(code))

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) <= 1 and set(statuses) <= {200, 400}, statuses
    for response in results:
        if response.status_code == 400:
            assert response.json["error"] == "invalid_grant"


def test_second_redemption_revokes_the_first_ones_tokens(rp):
    code = rp.login_code()
    first = rp.token(code).json
    _assert_invalid_grant(rp.token(code))
    _assert_token_revoked(rp, first["access_token"])


# -- every token response ---------------------------------------------------------------


def test_every_token_response_has_cache_control_no_store(rp):
    tokens = rp.tokens(scope="openid offline_access")
    responses = [
        rp.refresh(tokens["refresh_token"]),
        rp.token("no-such-code"),
        rp.token("no-such-code", secret="wrong"),
        rp.app.test_client().post("/token", data={"grant_type": "password"}),
    ]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store", response.status_code
        assert response.mimetype == "application/json"


def test_unsupported_grant_type_is_refused(rp):
    response = rp._token_request({"grant_type": "password"}, "client", SECRETS["client"], "basic")
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"


# -- client authentication -----------------------------------------------------------


def test_oidcc_server_client_secret_post(rp):
    meta = rp.app.test_client().get("/.well-known/openid-configuration").json
    assert "client_secret_post" in meta["token_endpoint_auth_methods_supported"]
    code = rp.login_code(client_id="client-post")
    response = rp.token(code, client_id="client-post", auth="post")
    assert response.status_code == 200
    rp.checked_id_token(response.json, client_id="client-post")


def test_wrong_client_secret_basic_is_401_invalid_client_with_a_challenge(rp):
    response = rp.token(rp.login_code(), secret="not-the-secret")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_guessing_client_secrets_is_limited_per_ip(make_app):
    app = make_app(RATELIMIT_CLIENT_AUTH="3 per hour")
    server = app.test_client()
    form = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": "https://rp.example.test/callback",
    }
    for endpoint in ("/token", "/revoke", "/introspect"):  # one budget for the three
        assert server.post(endpoint, data={**form, "token": "x"}, auth=("client", "guess")).status_code == 401
    limited = server.post("/token", data=form, auth=("client", SECRETS["client"]))
    assert limited.status_code == 429 and limited.mimetype == "application/json"
    elsewhere = server.post(
        "/token", data=form, auth=("client", "guess"), environ_base={"REMOTE_ADDR": "10.1.1.1"}
    )
    assert elsewhere.status_code == 401
    right = server.post(
        "/token", data=form, auth=("client", SECRETS["client"]), environ_base={"REMOTE_ADDR": "10.1.1.2"}
    )
    assert right.json["error"] == "invalid_grant"  # authenticated; the code is not one


def test_wrong_client_secret_post_is_invalid_client(rp):
    code = rp.login_code(client_id="client-post")
    _assert_invalid_client(rp.token(code, client_id="client-post", secret="not-the-secret", auth="post"))


def test_client_must_use_its_registered_auth_method(rp):
    code = rp.login_code(client_id="client-post")
    response = rp.token(code, client_id="client-post", auth="basic")
    _assert_invalid_client(response)
    assert response.status_code == 401  # credentials were in the Authorization header


def test_confidential_client_cannot_skip_authentication(rp):
    response = rp.token(rp.login_code(), auth="none")
    _assert_invalid_client(response)


def test_es256_client_gets_an_es256_id_token(rp):
    code = rp.login_code(client_id="es256-app", redirect_uri="https://rp.example.test/es256")
    response = rp.token(
        code, client_id="es256-app", secret=SECRETS["client"], redirect_uri="https://rp.example.test/es256"
    )
    assert response.status_code == 200
    claims = rp.checked_id_token(response.json, client_id="es256-app")
    assert claims["aud"] == "es256-app"
    assert pyjwt.get_unverified_header(response.json["id_token"])["alg"] == "ES256"


# -- private_key_jwt (OIDC Core 9) -------------------------------------------------------


@pytest.fixture
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)


@pytest.fixture
def jwt_rp(make_app, clock, signing_key) -> RP:
    """An RP that authenticates with private_key_jwt, its public key registered."""
    client = {
        "client_id": "jwt-app",
        "name": "JWT app",
        "redirect_uris": ["https://rp.example.test/jwt"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [signing_key.as_dict(private=False)]},
        "scopes": ["openid", "profile"],
        "first_party": True,
    }
    app = make_app(clients=[*conftest.test_clients(), client])
    user = make_user(app)
    clock.advance(seconds=30)
    return RP(app, app.test_client(), clock, user)


def _assertion(key: RSAKey, jti: str = "jti-1", client_id: str = "jwt-app", **claims) -> str:
    # joserfc (inside Authlib) checks `exp` against the process clock, not the test clock
    issued = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": "https://op.example.test/token",
        "jti": jti,
        "iat": issued,
        "exp": issued + 60,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def _redeem_with_assertion(rp: RP, assertion: str, **request):
    code = rp.login_code(client_id="jwt-app", redirect_uri="https://rp.example.test/jwt")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "https://rp.example.test/jwt",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    return rp.app.test_client().post("/token", data=form, **request)


def test_private_key_jwt_client_redeems_a_code(jwt_rp, signing_key):
    response = _redeem_with_assertion(jwt_rp, _assertion(signing_key))
    assert response.status_code == 200, response.json
    jwt_rp.checked_id_token(response.json, client_id="jwt-app")


def test_private_key_jwt_replayed_jti_is_refused(jwt_rp, signing_key):
    assertion = _assertion(signing_key)
    assert _redeem_with_assertion(jwt_rp, assertion).status_code == 200
    response = _redeem_with_assertion(jwt_rp, assertion)
    _assert_invalid_client(response)


def test_private_key_jwt_signed_by_another_key_is_refused(jwt_rp):
    stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)
    response = _redeem_with_assertion(jwt_rp, _assertion(stranger))
    _assert_invalid_client(response)


def test_private_key_jwt_for_another_audience_is_refused(jwt_rp, signing_key):
    response = _redeem_with_assertion(jwt_rp, _assertion(signing_key, aud="https://elsewhere.test/token"))
    _assert_invalid_client(response)


def test_private_key_jwt_audience_is_ours_whatever_the_host_header(jwt_rp, signing_key):
    """An assertion the app made for another server cannot be replayed here by
    sending that server's name as Host."""
    assertion = _assertion(signing_key, aud="https://elsewhere.test/token")
    response = _redeem_with_assertion(jwt_rp, assertion, base_url="https://elsewhere.test")
    _assert_invalid_client(response)


@pytest.mark.parametrize(
    "claims",
    [{"jti": {"not": "a string"}}, {"jti": 7}, {"exp": 10**12}],  # exp: the year 33658
    ids=["jti object", "jti number", "exp beyond dates"],
)
def test_private_key_jwt_with_odd_signed_claims_is_refused_not_a_500(jwt_rp, signing_key, claims):
    _assert_invalid_client(_redeem_with_assertion(jwt_rp, _assertion(signing_key, **claims)))


def test_private_key_jwt_long_jti_is_kept_by_its_hash(jwt_rp, signing_key):
    """Any length of jti is remembered (a column of 200 characters on PostgreSQL)."""
    assertion = _assertion(signing_key, jti="j" * 1000)
    assert _redeem_with_assertion(jwt_rp, assertion).status_code == 200
    _assert_invalid_client(_redeem_with_assertion(jwt_rp, assertion))


def test_two_instances_racing_with_one_jti_accept_it_once(jwt_rp, monkeypatch):
    claims = {"sub": "jwt-app", "exp": int(time.time()) + 60}
    with jwt_rp.app.app_context():
        assert PrivateKeyJwt().validate_jti(claims, "jti-race")
        monkeypatch.setattr(db.session, "get", lambda *args, **kwargs: None)  # read before the other's commit
        assert not PrivateKeyJwt().validate_jti(claims, "jti-race")


def test_private_key_jwt_expired_assertion_is_refused(jwt_rp, signing_key):
    long_ago = int(time.time()) - 3600
    response = _redeem_with_assertion(jwt_rp, _assertion(signing_key, iat=long_ago, exp=long_ago + 60))
    _assert_invalid_client(response)


# -- PKCE (RFC 7636, S256 only) ------------------------------------------------------------


def test_oidcc_ensure_request_with_valid_pkce_succeeds(rp):
    verifier, challenge = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    response = rp.token(code, code_verifier=verifier)
    assert response.status_code == 200
    rp.checked_id_token(response.json)


def test_public_client_redeems_with_pkce_and_no_secret(rp):
    verifier, challenge = pkce()
    code = rp.login_code(
        client_id="public-app", redirect_uri=PUBLIC_CB, code_challenge=challenge, code_challenge_method="S256"
    )
    response = rp.token(
        code, client_id="public-app", redirect_uri=PUBLIC_CB, auth="none", code_verifier=verifier
    )
    assert response.status_code == 200
    rp.checked_id_token(response.json, client_id="public-app")


def test_public_client_without_pkce_is_refused_at_authorize(rp):
    response = rp.authorize(client_id="public-app", redirect_uri=PUBLIC_CB)
    assert query(response.location)["error"] == "invalid_request"


def test_pkce_plain_is_refused(rp):
    _, challenge = pkce()
    response = rp.authorize(code_challenge=challenge, code_challenge_method="plain")
    assert query(response.location)["error"] == "invalid_request"


def test_pkce_challenge_without_a_method_is_refused(rp):
    _, challenge = pkce()
    assert query(rp.authorize(code_challenge=challenge).location)["error"] == "invalid_request"


def test_pkce_challenge_with_a_line_break_is_refused(rp):
    """Not 43-128 unreserved characters (RFC 7636 4.2), though a regex's `$`
    lets a final line break by; one over 128 could not even be stored."""
    for challenge in (pkce()[1] + "\n", "a" * 128 + "\n"):
        response = rp.authorize(code_challenge=challenge, code_challenge_method="S256")
        assert query(response.location)["error"] == "invalid_request"


def test_pkce_wrong_verifier_is_invalid_grant(rp):
    _, challenge = pkce()
    wrong, _ = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    _assert_invalid_grant(rp.token(code, code_verifier=wrong))


def test_pkce_verifier_is_required_once_challenged(rp):
    _, challenge = pkce()
    code = rp.login_code(code_challenge=challenge, code_challenge_method="S256")
    response = rp.token(code)
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_request", "invalid_grant")


# -- refresh tokens ---------------------------------------------------------------------


def test_oidcc_refresh_token(rp):
    first = rp.tokens(scope="openid offline_access", prompt="consent")  # as the suite asks
    before = rp.checked_id_token(first)
    rp.clock.advance(seconds=10)
    response = rp.refresh(first["refresh_token"])
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    refreshed = response.json
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]  # rotation
    assert 1 <= refreshed["expires_in"] <= 31_536_000
    assert rp.userinfo(refreshed["access_token"]).json["sub"] == before["sub"]
    after = rp.checked_id_token(refreshed, nonce=None)  # optional; if sent, OIDC Core 12.2
    for claim in ("iss", "sub", "aud", "auth_time", "acr", "amr", "sid", "azp"):
        assert after[claim] == before[claim], claim
    assert after["iat"] > before["iat"]

    other = RP(rp.app, rp.app.test_client(), rp.clock, rp.user)
    code = other.login_code(
        client_id="client2", redirect_uri="https://rp.example.test/callback2", scope="openid offline_access"
    )
    client2 = other.token(code, client_id="client2", redirect_uri="https://rp.example.test/callback2").json
    _assert_invalid_grant(rp.refresh(client2["refresh_token"]))  # client 1 sends client 2's token


def test_refresh_token_only_with_offline_access(rp):
    assert "refresh_token" not in rp.tokens()


def test_refresh_token_reuse_revokes_the_family(rp):
    first = rp.tokens(scope="openid offline_access")
    second = rp.refresh(first["refresh_token"]).json
    _assert_invalid_grant(rp.refresh(first["refresh_token"]))  # the rotated-out token again
    _assert_invalid_grant(rp.refresh(second["refresh_token"]))
    _assert_token_revoked(rp, second["access_token"])


def test_refresh_cannot_widen_the_scope(rp):
    tokens = rp.tokens(scope="openid offline_access")
    response = rp.refresh(tokens["refresh_token"], scope="openid offline_access profile")
    assert response.status_code == 400 and response.json["error"] == "invalid_scope"


def test_refresh_token_expires(rp, clock):
    tokens = rp.tokens(scope="openid offline_access")
    clock.advance(seconds=rp.app.config["REFRESH_TOKEN_LIFETIME"] + 1)
    _assert_invalid_grant(rp.refresh(tokens["refresh_token"]))


# -- revocation (RFC 7009) -------------------------------------------------------------


def _revoke(rp: RP, token: str, client_id: str = "client", **extra):
    return rp.app.test_client().post(
        "/revoke", data={"token": token, **extra}, auth=(client_id, SECRETS[client_id])
    )


def test_revoked_access_token_no_longer_works(rp):
    tokens = rp.tokens()
    response = _revoke(rp, tokens["access_token"], token_type_hint="access_token")
    assert response.status_code == 200
    _assert_token_revoked(rp, tokens["access_token"])


def test_revoked_refresh_token_ends_the_grant(rp):
    tokens = rp.tokens(scope="openid offline_access")
    assert _revoke(rp, tokens["refresh_token"], token_type_hint="refresh_token").status_code == 200
    _assert_invalid_grant(rp.refresh(tokens["refresh_token"]))
    _assert_token_revoked(rp, tokens["access_token"])


def test_revoking_an_unknown_token_is_still_200(rp):
    assert _revoke(rp, "no-such-token").status_code == 200


def test_another_client_cannot_revoke_a_token(rp):
    tokens = rp.tokens()
    assert _revoke(rp, tokens["access_token"], client_id="client2").status_code == 400
    assert rp.userinfo(tokens["access_token"]).status_code == 200


def test_revocation_needs_client_authentication(rp):
    tokens = rp.tokens()
    response = rp.app.test_client().post("/revoke", data={"token": tokens["access_token"]})
    _assert_invalid_client(response)
    assert rp.userinfo(tokens["access_token"]).status_code == 200


# -- introspection (RFC 7662) ----------------------------------------------------------


def _introspect(rp: RP, token: str, client_id: str = "client") -> dict:
    response = rp.app.test_client().post(
        "/introspect", data={"token": token}, auth=(client_id, SECRETS[client_id])
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.json


def test_introspection_describes_an_active_token(rp):
    tokens = rp.tokens(scope="openid profile")
    info = _introspect(rp, tokens["access_token"])
    assert info["active"] is True
    assert (info["client_id"], info["sub"], info["scope"]) == ("client", rp.user.sub, "openid profile")
    assert info["iss"] == rp.issuer and info["exp"] > rp.clock.now.timestamp()
    assert info["token_type"] == "Bearer"


def test_introspection_of_expired_revoked_unknown_and_foreign_tokens_is_inactive(rp, clock):
    revoked = rp.tokens()["access_token"]
    _revoke(rp, revoked)
    expired = rp.tokens()["access_token"]
    foreign = rp.tokens()["access_token"]
    assert _introspect(rp, revoked) == {"active": False}
    assert _introspect(rp, foreign, client_id="client2") == {"active": False}
    assert _introspect(rp, "no-such-token") == {"active": False}
    clock.advance(seconds=rp.app.config["ACCESS_TOKEN_LIFETIME"] + 1)
    assert _introspect(rp, expired) == {"active": False}


def test_introspection_of_a_refresh_token_follows_the_refresh_token(rp, clock):
    tokens = rp.tokens(scope="openid offline_access")
    clock.advance(seconds=rp.app.config["ACCESS_TOKEN_LIFETIME"] + 1)  # the access token expired
    assert _introspect(rp, tokens["refresh_token"])["active"] is True
    rp.refresh(tokens["refresh_token"])
    assert _introspect(rp, tokens["refresh_token"]) == {"active": False}  # rotated out
