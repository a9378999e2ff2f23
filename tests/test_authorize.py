"""/authorize around the sign-in: single sign-on, consent for third-party
apps, MFA asked for by an app, and parked requests that are gone."""

from urllib.parse import urlsplit

import pytest
from conftest import SECRETS
from rp import CALLBACK, RP, assert_error, authorization_response, make_user, query

from oidc_provider.interaction import ACR_MFA, ACR_PASSWORD

TP = "https://rp.example.test/tp"
STRICT = "https://rp.example.test/strict"
THIRD_PARTY = {"client_id": "third-party", "redirect_uri": TP, "scope": "openid profile"}


def _path(response) -> str:
    assert response.status_code == 302, response.status_code
    return urlsplit(response.location).path


# -- single sign-on and the end of a session -----------------------------------------


def test_one_sign_in_gives_a_code_to_a_second_client_without_signing_in_again(rp):
    _, first, _ = rp.flow()
    response = rp.authorize(client_id="client2", redirect_uri="https://rp.example.test/callback2")
    assert urlsplit(response.location).netloc == "rp.example.test"  # no sign-in page
    tokens = rp.token(
        rp.code_from(response), client_id="client2", redirect_uri="https://rp.example.test/callback2"
    ).json
    second = rp.checked_id_token(tokens, client_id="client2")
    assert (second["sub"], second["sid"], second["auth_time"]) == (
        first["sub"],
        first["sid"],
        first["auth_time"],
    )


def test_prompt_none_after_logout_is_login_required(rp):
    rp.flow()
    assert rp.browser.post("/logout", data={"confirm": "1"}).status_code in (200, 302, 303)
    assert_error(query(rp.authorize(prompt="none").location), "login_required", rp.issuer)


def test_prompt_none_after_the_session_idled_out_is_login_required(rp, clock):
    rp.flow()
    clock.advance(seconds=rp.app.config["SSO_SESSION_IDLE"] + 1)
    assert_error(query(rp.authorize(prompt="none").location), "login_required", rp.issuer)


def test_using_the_session_keeps_it_from_idling_out(rp, clock):
    """Each use (at most one write a minute) moves the idle limit on."""
    rp.flow()
    idle = rp.app.config["SSO_SESSION_IDLE"]
    for _ in range(3):
        clock.advance(seconds=idle - 120)  # the last write was at most a minute before
        assert "code" in query(rp.authorize(prompt="none").location)
    clock.advance(seconds=idle + 1)
    assert_error(query(rp.authorize(prompt="none").location), "login_required", rp.issuer)


def test_password_without_the_code_is_no_session(rp):
    response = rp.sign_in(rp.authorize(), code=False)
    assert _path(response) == "/login/code"
    assert_error(query(rp.authorize(prompt="none").location), "login_required", rp.issuer)


# -- consent for apps that are not first-party ------------------------------------------


def _consent_page(rp, **params):
    response = rp.authorize(**{**THIRD_PARTY, **params})
    if _path(response) == "/login":
        response = rp.sign_in(response)
    assert _path(response) == "/authorize/consent"
    return response.location, rp.browser.get(response.location)


def _decide(rp, consent_url: str, decision: str):
    response = rp.browser.post(consent_url, data={"decision": decision})
    assert _path(response) in ("/authorize", urlsplit(TP).path)
    return rp.browser.get(response.location) if _path(response) == "/authorize" else response


def _redeem_third_party(rp, response) -> dict:
    tokens = rp.token(rp.code_from(response), client_id="third-party", redirect_uri=TP).json
    return rp.checked_id_token(tokens, client_id="third-party")


def test_third_party_app_shows_a_consent_page(rp):
    _, page = _consent_page(rp)
    assert page.status_code == 200
    assert b"Allow Third-party app?" in page.data
    assert b"See your name" in page.data


def test_allowing_consent_gives_the_app_a_code(rp):
    url, _ = _consent_page(rp)
    response = _decide(rp, url, "allow")
    assert response.location.startswith(TP + "?")
    _redeem_third_party(rp, response)
    assert rp.last["state"] == "af0ifjsldkj" and rp.last["iss"] == rp.issuer


def test_consent_is_remembered_for_the_next_request(rp):
    url, _ = _consent_page(rp)
    _decide(rp, url, "allow")
    response = rp.authorize(**THIRD_PARTY)
    assert "code" in query(response.location)
    assert "code" in query(rp.authorize(**THIRD_PARTY, prompt="none").location)


def test_prompt_consent_asks_again(rp):
    url, _ = _consent_page(rp)
    _decide(rp, url, "allow")
    assert _path(rp.authorize(**THIRD_PARTY, prompt="consent")) == "/authorize/consent"


def test_consent_for_more_scopes_asks_again(rp):
    url, _ = _consent_page(rp)
    _decide(rp, url, "allow")
    assert _path(rp.authorize(**{**THIRD_PARTY, "scope": "openid profile email"})) == "/authorize/consent"


def test_denying_consent_redirects_access_denied(rp):
    url, _ = _consent_page(rp)
    response = _decide(rp, url, "deny")
    assert response.location.startswith(TP + "?")
    assert_error(query(response.location), "access_denied", rp.issuer)


def test_denied_consent_is_posted_back_under_form_post(rp):
    url, _ = _consent_page(rp, response_mode="form_post")
    response = rp.browser.post(url, data={"decision": "deny"})
    assert_error(authorization_response(response), "access_denied", rp.issuer)


def test_prompt_none_without_consent_is_consent_required(rp):
    rp.flow()  # signed in through a first-party app
    response = rp.authorize(**THIRD_PARTY, prompt="none")
    assert response.location.startswith(TP + "?")
    assert_error(query(response.location), "consent_required", rp.issuer)


# -- MFA asked for by the app ------------------------------------------------------------


def _password_only_session(rp, clock) -> None:
    """Trust this computer, let the session idle out, sign in with the password alone."""
    rp.sign_in(rp.authorize(), trust=True)
    clock.advance(seconds=rp.app.config["SSO_SESSION_IDLE"] + 1)
    response = rp.sign_in(rp.authorize(), code=False)  # the trusted computer skips the code
    tokens = rp.token(rp.code_from(rp.browser.get(response.location))).json
    assert rp.checked_id_token(tokens)["acr"] == ACR_PASSWORD


def _enter_code(rp, response):
    """The app asked for MFA on a password-only session: the code page, then back."""
    while _path(response) != "/login/code":
        response = rp.browser.get(response.location)
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(rp.clock.now)})
    assert _path(response) == "/authorize"
    return rp.browser.get(response.location)


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "mfa-app", "redirect_uri": STRICT},
        {"client_id": "client", "redirect_uri": CALLBACK, "acr_values": ACR_MFA},
    ],
    ids=["client-requires-mfa", "acr-values"],
)
def test_app_asking_for_mfa_gets_a_code_step_after_a_trusted_computer_login(rp, clock, params):
    _password_only_session(rp, clock)
    response = _enter_code(rp, rp.authorize(**params))
    code = rp.code_from(response)
    client_id = params["client_id"]
    secret = SECRETS["client"]
    tokens = rp.token(code, client_id=client_id, secret=secret, redirect_uri=params["redirect_uri"]).json
    claims = rp.checked_id_token(tokens, client_id=client_id)
    assert claims["acr"] == ACR_MFA
    assert {"otp", "mfa"} <= set(claims["amr"])


def test_app_asking_for_mfa_under_prompt_none_after_a_password_only_login_is_interaction_required(rp, clock):
    _password_only_session(rp, clock)
    response = rp.authorize(acr_values=ACR_MFA, prompt="none")
    assert_error(query(response.location), "interaction_required", rp.issuer)


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "mfa-app", "redirect_uri": STRICT},
        {"client_id": "client", "redirect_uri": CALLBACK, "acr_values": ACR_MFA},
    ],
    ids=["client-requires-mfa", "acr-values"],
)
def test_app_asking_for_mfa_after_an_earlier_mfa_sign_in_gets_a_new_code(rp, params):
    """I-04: MFA asked for means a code in this sign-in (MFA_MAX_AGE 0), not
    one entered earlier in the SSO session for another app."""
    rp.flow()  # signed in with a code, half a minute ago
    response = rp.authorize(**params)
    assert _path(response) == "/login/step-up"
    code = rp.code_from(_enter_code(rp, response))
    tokens = rp.token(
        code, client_id=params["client_id"], secret=SECRETS["client"], redirect_uri=params["redirect_uri"]
    )
    claims = rp.checked_id_token(tokens.json, client_id=params["client_id"])
    assert claims["acr"] == ACR_MFA and "otp" in claims["amr"]
    response = rp.authorize(**params, prompt="none")  # and silently, never
    assert_error(query(response.location), "interaction_required", rp.issuer)


def test_mfa_app_within_mfa_max_age_of_an_mfa_sign_in_is_silent(make_app, clock):
    app = make_app(MFA_MAX_AGE=300)
    rp = RP(app, app.test_client(), clock, make_user(app))
    clock.advance(seconds=30)
    rp.flow()
    assert "code" in query(rp.authorize(client_id="mfa-app", redirect_uri=STRICT).location)
    clock.advance(seconds=300)
    assert _path(rp.authorize(client_id="mfa-app", redirect_uri=STRICT)) == "/login/step-up"


# -- parked requests that are gone --------------------------------------------------------


def _parked(rp) -> str:
    response = rp.authorize()
    assert _path(response) == "/login"
    return query(response.location)["tx"]


def test_back_to_a_finished_sign_in_shows_a_clear_page(rp):
    response = rp.authorize()
    tx = query(response.location)["tx"]
    rp.code_from(rp.sign_in(response))
    again = rp.browser.get(f"/authorize?tx={tx}")
    assert again.status_code == 410
    assert b"This sign-in request was already answered." in again.data


def test_expired_sign_in_shows_a_clear_page(rp, clock):
    tx = _parked(rp)
    clock.advance(seconds=rp.app.config["LOGIN_TRANSACTION_LIFETIME"] + 1)
    for url in (f"/authorize?tx={tx}", f"/authorize/consent?tx={tx}"):
        response = rp.browser.get(url)
        assert response.status_code == 410, url
        assert b"This sign-in took too long and has expired." in response.data


def test_unknown_sign_in_shows_a_clear_page(rp):
    response = rp.browser.get("/authorize?tx=not-a-transaction")
    assert response.status_code == 404
    assert b"This sign-in link is not valid" in response.data
