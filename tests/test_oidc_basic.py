"""The conformance suite's Basic OP plan (oidcc-basic-certification-test-plan),
one test per module, asserting what the suite asserts (CONFORMANCE.md 2 and 3)."""

import json
import secrets
from base64 import urlsafe_b64encode
from urllib.parse import urlencode, urlsplit

import pytest
from rp import CALLBACK, RP, assert_error, forms, make_user, query

from oidc_provider import mfa
from oidc_provider.db import db, now
from oidc_provider.models import User

STANDARD_ID_TOKEN_CLAIMS = {
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "sid",
}


# -- the normal flow and its variants ------------------------------------------------


def test_oidcc_server(rp):
    response = rp.sign_in(rp.authorize())
    code = rp.code_from(response)
    assert rp.last == {"code": code, "state": "af0ifjsldkj", "iss": rp.issuer}
    assert len(code) >= 22 and len(set(code)) >= 16  # ≥ 16 bytes, > 96 bits of entropy
    token_response = rp.token(code)
    assert token_response.status_code == 200 and token_response.mimetype == "application/json"
    assert token_response.headers["Cache-Control"] == "no-store"
    claims = rp.checked_id_token(token_response.json)
    assert set(claims) <= STANDARD_ID_TOKEN_CLAIMS
    assert "name" not in claims
    assert rp.userinfo(token_response.json["access_token"]).json == {"sub": claims["sub"]}


def test_every_authorization_gets_a_new_random_code(rp):
    first = rp.login_code()
    assert rp.login_code() != first


def test_sub_is_stable_and_not_the_email(rp):
    _, first, _ = rp.flow()
    _, second, _ = rp.flow(prompt="login")
    assert first["sub"] == second["sub"] == rp.user.sub
    assert rp.user.email not in first["sub"]


def test_oidcc_response_type_missing(rp):
    response = rp.authorize(response_type=None)
    assert response.status_code == 302 and response.location.startswith(CALLBACK + "?")
    assert_error(query(response.location), {"invalid_request", "unsupported_response_type"}, rp.issuer)


def test_state_is_returned_byte_identical(rp):
    state = secrets.token_urlsafe(96)[:124] + "-._~"
    assert len(state) == 128
    after_login = rp.sign_in(rp.authorize(state=state))
    assert query(after_login.location)["state"] == state
    silent = rp.authorize(state=state)
    assert query(silent.location)["state"] == state


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(rp):
    _, claims, _ = rp.flow(nonce=None)
    assert rp.last["state"] == "af0ifjsldkj"
    assert "nonce" not in claims


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(rp):
    rp.flow(extra="foobar")


@pytest.mark.parametrize("display", ["page", "popup"])
def test_oidcc_display(rp, display):  # oidcc-display-page, oidcc-display-popup
    rp.flow(display=display)


def test_oidcc_ui_locales(rp):
    rp.flow(ui_locales="se")


def test_oidcc_claims_locales(rp):
    rp.flow(claims_locales="se", scope="openid profile")


def test_oidcc_ensure_post_request_succeeds(rp):
    response = rp.authorize(method="post")
    assert urlsplit(response.location).path == "/login"
    rp.redeem(response)
    assert rp.last["state"] == "af0ifjsldkj"


def test_authorize_post_needs_no_csrf_token(make_app):
    protected = make_app(WTF_CSRF_ENABLED=True).test_client()
    data = {"response_type": "code", "client_id": "client", "redirect_uri": CALLBACK, "scope": "openid"}
    response = protected.post("/authorize", data=data)
    assert response.status_code == 302 and urlsplit(response.location).path == "/login"
    token = protected.post(
        "/token", data={"grant_type": "authorization_code", "code": "x"}, auth=("client", "x")
    )
    assert token.status_code == 401 and token.json["error"] == "invalid_client"


def test_oidcc_alternate_happy_flow(rp):
    params = [
        ("nonce", "n-0S6_WzA2Mj"),
        ("state", "af0ifjsldkj"),
        ("scope", "email openid"),
        ("redirect_uri", CALLBACK),
        ("client_id", "client"),
        ("response_type", "code"),
    ]
    response = rp.browser.get("/authorize?" + urlencode(params))
    tokens, claims = rp.redeem(response)
    assert {"email", "name"}.isdisjoint(claims)
    assert rp.userinfo(tokens["access_token"]).json == {
        "sub": claims["sub"],
        "email": rp.user.email,
        "email_verified": True,
    }


# -- scopes and claims ---------------------------------------------------------------


def _add_phone(app, user_id: int, number: str = "+31612345678") -> None:
    """Give the user a confirmed SMS method: their verified phone number."""
    with app.app_context():
        method = mfa.start_enrolment(db.session.get(User, user_id), "sms", number)
        method.confirmed_at = now()
        db.session.commit()


def test_oidcc_scope_profile(rp):
    _, claims, info = rp.flow(scope="openid profile")
    assert info == {"sub": claims["sub"], "name": "Buffy Summers"}
    assert "name" not in claims


def test_oidcc_scope_email(rp):
    _, claims, info = rp.flow(scope="openid email")
    assert info == {"sub": claims["sub"], "email": "buffy@example.com", "email_verified": True}
    assert {"email", "name"}.isdisjoint(claims)


def test_oidcc_scope_phone(rp, app):
    _add_phone(app, rp.user.id)
    _, claims, info = rp.flow(scope="openid phone")
    assert info == {"sub": claims["sub"], "phone_number": "+31612345678", "phone_number_verified": True}


def test_oidcc_scope_address_is_unsupported_and_the_request_still_succeeds(rp):
    assert (
        "address"
        not in rp.app.test_client().get("/.well-known/openid-configuration").json["scopes_supported"]
    )
    _, _, info = rp.flow(scope="openid address")
    assert "address" not in info


def test_oidcc_scope_all(rp, app):
    _add_phone(app, rp.user.id)
    _, claims, info = rp.flow(scope="openid profile email address phone")
    assert info == {
        "sub": claims["sub"],
        "name": "Buffy Summers",
        "email": "buffy@example.com",
        "email_verified": True,
        "phone_number": "+31612345678",
        "phone_number_verified": True,
    }
    assert set(claims) <= STANDARD_ID_TOKEN_CLAIMS


def test_oidcc_claims_essential(rp):
    claims_parameter = json.dumps({"userinfo": {"name": {"essential": True}}})
    _, claims, info = rp.flow(claims=claims_parameter)
    assert info["name"] == "Buffy Summers"
    assert "name" not in claims


def test_claims_parameter_that_is_not_json_is_invalid_request(rp):
    assert_error(query(rp.authorize(claims="{not json").location), "invalid_request", rp.issuer)


# -- userinfo ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["get", "post-header", "post-body"])
def test_oidcc_userinfo(rp, how):  # oidcc-userinfo-get, -post-header, -post-body
    tokens = rp.tokens(scope="openid email")
    response = rp.userinfo(tokens["access_token"], how)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json["sub"] == rp.user.sub and response.json["email"] == rp.user.email


def test_userinfo_accepts_the_token_type_in_any_case(rp):
    tokens = rp.tokens()
    response = rp.app.test_client().get(
        "/userinfo", headers={"Authorization": f"bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200


def _assert_invalid_token(response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_userinfo_refuses_an_unknown_token_with_invalid_token(rp):
    _assert_invalid_token(rp.userinfo("not-a-token"))


def test_userinfo_refuses_an_expired_token_with_invalid_token(rp, clock):
    tokens = rp.tokens()
    clock.advance(seconds=tokens["expires_in"] + 1)
    _assert_invalid_token(rp.userinfo(tokens["access_token"]))


def test_userinfo_without_a_token_asks_for_bearer(rp):
    response = rp.app.test_client().get("/userinfo")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- prompt, max_age, id_token_hint: when the user signs in again ---------------------


def test_oidcc_prompt_login(rp):
    _, first, _ = rp.flow()
    response = rp.authorize(prompt="login")
    assert urlsplit(response.location).path == "/login"  # a second login, with the next TOTP code
    _, second = rp.redeem(response)
    assert second["auth_time"] > first["auth_time"]
    assert second["sub"] == first["sub"]


def test_oidcc_prompt_none_not_logged_in(rp):
    response = rp.authorize(prompt="none")
    assert response.location.startswith(CALLBACK + "?")
    assert_error(query(response.location), "login_required", rp.issuer)
    assert query(response.location)["error_description"]  # every error redirect explains itself


def test_oidcc_prompt_none_logged_in(rp):
    _, first, _ = rp.flow()
    _, second = rp.redeem(rp.authorize(prompt="none"))  # silent
    assert (second["sub"], second["auth_time"]) == (first["sub"], first["auth_time"])


def test_prompt_none_with_another_value_is_invalid_request(rp):
    assert_error(query(rp.authorize(prompt="none login").location), "invalid_request", rp.issuer)


def test_oidcc_max_age_1(rp, clock):
    _, first, _ = rp.flow()
    clock.advance(seconds=2)
    response = rp.authorize(max_age="1")
    assert urlsplit(response.location).path == "/login"
    _, second = rp.redeem(response)
    assert first["auth_time"] < second["auth_time"] <= clock.now.timestamp()
    assert clock.now.timestamp() - second["auth_time"] < 60


def test_oidcc_max_age_10000(rp):
    _, first, _ = rp.flow(max_age="15000")
    response = rp.authorize(max_age="10000")
    assert urlsplit(response.location).netloc == "rp.example.test"  # silent
    _, second = rp.redeem(response)
    assert second["auth_time"] == first["auth_time"]


def test_max_age_0_is_a_new_login(rp):
    rp.flow()
    assert urlsplit(rp.authorize(max_age="0").location).path == "/login"


def test_oidcc_id_token_hint(rp):
    tokens, first, _ = rp.flow()
    response = rp.authorize(prompt="none", id_token_hint=tokens["id_token"])
    _, second = rp.redeem(response)
    assert (second["sub"], second["auth_time"]) == (first["sub"], first["auth_time"])


def test_expired_id_token_hint_from_this_provider_is_accepted(rp, clock):
    tokens, _, _ = rp.flow()
    clock.advance(seconds=rp.app.config["ID_TOKEN_LIFETIME"] + 60)
    response = rp.authorize(prompt="none", id_token_hint=tokens["id_token"])
    assert "code" in query(response.location)


def test_id_token_hint_for_another_user_than_the_session_is_login_required(rp, app, client, clock):
    other = RP(app, app.test_client(), clock, make_user(app, email="willow@example.com", name="Willow"))
    clock.advance(seconds=30)  # Willow's enrolment code is spent
    hint = other.tokens()["id_token"]
    rp.flow()
    assert_error(query(rp.authorize(prompt="none", id_token_hint=hint).location), "login_required", rp.issuer)


def test_id_token_hint_not_from_this_provider_is_invalid_request(rp):
    rp.flow()
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    assert_error(query(rp.authorize(id_token_hint=forged).location), "invalid_request", rp.issuer)


def test_oidcc_login_hint(rp):
    response = rp.authorize(login_hint=rp.user.email)
    page = rp.browser.get(response.location)
    login_form, cancel = forms(page.data)  # the sign-in, and "Cancel and go back to" the app
    assert ("email", rp.user.email) in login_form["fields"]
    assert cancel["action"].startswith("/authorize/cancel?tx=")
    rp.redeem(response)


def test_login_hint_with_an_unknown_address_neither_errors_nor_tells(rp):
    response = rp.authorize(login_hint="nobody@example.com")
    page = rp.browser.get(response.location)
    assert page.status_code == 200
    assert ("email", "nobody@example.com") in forms(page.data)[0]["fields"]


def test_oidcc_ensure_request_with_acr_values_succeeds(rp):
    supported = rp.app.test_client().get("/.well-known/openid-configuration").json["acr_values_supported"]
    _, claims, _ = rp.flow(acr_values=" ".join(supported))
    assert claims["acr"] in supported


# -- requests the provider refuses ---------------------------------------------------


def _assert_error_page(response) -> None:
    """An error page, never a redirect (RFC 6749 4.1.2.1)."""
    assert response.status_code == 400
    assert response.location is None
    assert response.mimetype == "text/html"
    assert b"This sign-in link does not work" in response.data


def test_oidcc_ensure_registered_redirect_uri(rp):
    _assert_error_page(rp.authorize(redirect_uri=f"{CALLBACK}/{secrets.token_hex(8)}"))


def test_missing_redirect_uri_is_an_error_page(rp):
    _assert_error_page(rp.authorize(redirect_uri=None))


def test_unknown_client_is_an_error_page(rp):
    _assert_error_page(rp.authorize(client_id="no-such-app"))


def _unsigned_request_object(**claims) -> str:
    def part(data: dict) -> str:
        return urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(rp):
    request_object = _unsigned_request_object(
        client_id="client", response_type="code", scope="openid", state="inside", nonce="inside"
    )
    response = rp.authorize(request=request_object, state=None, nonce=None)
    assert_error(query(response.location), "request_not_supported", rp.issuer, state=None)


def test_request_object_keeps_the_state_sent_outside(rp):
    response = rp.authorize(request=_unsigned_request_object(state="inside"))
    assert_error(query(response.location), "request_not_supported", rp.issuer)


def test_request_uri_is_refused_as_not_supported(rp):
    response = rp.authorize(request_uri="https://rp.example.test/request.jwt")
    assert_error(query(response.location), "request_uri_not_supported", rp.issuer)


def test_oidcc_ensure_request_object_with_redirect_uri(rp):
    request_object = _unsigned_request_object(redirect_uri=CALLBACK, state="inside")
    _assert_error_page(rp.authorize(request=request_object, redirect_uri=f"{CALLBACK}_invalid"))


def test_response_type_with_a_quote_is_refused_with_a_clean_description(rp):
    response = rp.authorize(response_type='code"\\')
    assert_error(query(response.location), "unsupported_response_type", rp.issuer)


def test_unregistered_redirect_uri_with_a_quote_is_an_error_page(rp):
    _assert_error_page(rp.authorize(redirect_uri=f'{CALLBACK}"x'))


def test_max_age_with_other_digits_than_ascii_is_invalid_request(rp):
    assert_error(query(rp.authorize(max_age="²").location), "invalid_request", rp.issuer)


def test_max_age_too_large_for_a_date_is_met_by_any_session(rp):
    rp.flow()
    assert "code" in query(rp.authorize(max_age="9" * 30).location)


def test_missing_openid_scope_is_invalid_request(rp):
    assert_error(query(rp.authorize(scope="profile").location), "invalid_request", rp.issuer)


def test_unsupported_response_mode_is_invalid_request(rp):
    assert_error(query(rp.authorize(response_mode="fragment").location), "invalid_request", rp.issuer)


def test_max_age_that_is_not_a_number_is_invalid_request(rp):
    assert_error(query(rp.authorize(max_age="soon").location), "invalid_request", rp.issuer)
