"""The second sign-in step as a person meets it: enrolment gate, codes by
app, email and SMS, trusted computer, step-up, re-authentication, and the
last method that cannot be removed."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
from conftest import SECRETS
from rp import CALLBACK, make_user, query

from oidc_provider.db import db
from oidc_provider.models import TrustedComputer


def path(response) -> str:
    return urlsplit(response.location).path


def sign_in_password(browser, user, **args):
    return browser.post("/login", query_string=args, data={"email": user.email, "password": user.password})


def enrol_authenticator(browser) -> pyotp.TOTP:
    page = browser.get("/mfa/setup/authenticator").get_data(as_text=True)
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    # QR inline; the URI (it holds the secret) only behind "Open in authenticator app", never printed
    assert "<svg" in page and page.count("otpauth://") == 1 and 'href="otpauth://' in page
    return pyotp.TOTP(secret)


# -- the enrolment gate -------------------------------------------------------------


def test_first_sign_in_must_enrol_before_any_token(app, rp, clock):
    newcomer = make_user(app, email="willow@example.com", totp=False)
    response = rp.authorize()
    response = sign_in_password(rp.browser, newcomer, tx=query(response.location)["tx"])
    assert path(response) == "/mfa/setup"
    tx = query(rp.browser.get("/login", query_string={}).request.url).get("tx")
    # no session yet: the parked request still wants a sign-in, the portal too
    assert path(rp.browser.get("/")) == "/login"
    assert tx is None
    choose = rp.browser.get("/mfa/setup").get_data(as_text=True)
    assert "Recommended" in choose and choose.index("Authenticator app") < choose.index("Email")

    otp = enrol_authenticator(rp.browser)
    response = rp.browser.post("/mfa/setup/authenticator", data={"code": otp.at(clock.now)})
    assert path(response) == "/login/enrolled"
    response = rp.browser.get(response.location)
    assert path(response) == "/account/mfa/welcome"
    welcome = rp.browser.get(response.location).get_data(as_text=True)
    assert "We recommend a second method" in welcome and "Add email codes" in welcome
    going_on = query(response.location)["next"]
    code = rp.code_from(rp.browser.get(going_on))
    claims = rp.id_token(rp.token(code).json["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def test_the_enrolment_finish_page_does_not_skip_the_code_of_an_enrolled_account(rp):
    response = sign_in_password(rp.browser, rp.user)
    assert path(response) == "/login/code"
    response = rp.browser.get("/login/enrolled")  # the password alone, straight to the end
    assert path(response) == "/login/code"
    assert path(rp.browser.get("/account")) == "/login"  # no session
    assert path(rp.authorize()) == "/login"


def test_wrong_enrolment_code_is_refused(app, client, clock):
    newcomer = make_user(app, email="xander@example.com", totp=False)
    sign_in_password(client, newcomer)
    otp = enrol_authenticator(client)
    response = client.post(
        "/mfa/setup/authenticator", data={"code": otp.at(clock.now + timedelta(minutes=5))}
    )
    assert response.status_code == 401
    assert "not right" in response.get_data(as_text=True)


def test_enrol_by_email_with_a_code_from_the_mail_server(make_app, smtp_server, clock):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    browser = app.test_client()
    newcomer = make_user(app, email="oz@example.com", totp=False)
    sign_in_password(browser, newcomer)
    response = browser.post("/mfa/setup/email", data={"email": "oz.codes@example.org"})
    confirm = response.location
    assert "/confirm" in confirm
    message = smtp_server.messages[-1]
    assert message["To"] == "oz.codes@example.org"
    code = re.search(r"\b(\d{6})\b", message.get_body(("plain",)).get_content()).group(1)
    response = browser.post(confirm, data={"code": code})
    assert path(response) == "/login/enrolled"


def test_sms_number_from_an_unsupported_country_is_refused(app, client):
    newcomer = make_user(app, email="anya@example.com", totp=False)
    sign_in_password(client, newcomer)
    response = client.post("/mfa/setup/sms", data={"phone": "+55 11 91234-5678"})
    assert response.status_code == 422
    assert "Brazil" in response.get_data(as_text=True)


# -- codes at sign-in -----------------------------------------------------------------


def test_wrong_and_replayed_codes_are_refused(rp, clock):
    response = sign_in_password(rp.browser, rp.user)
    assert path(response) == "/login/code"
    page = rp.browser.get("/login/code").get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in page and 'inputmode="numeric"' in page
    assert "Trust this computer (skip MFA for a week)" in page
    wrong = rp.browser.post("/login/code", data={"code": "000000"})
    assert wrong.status_code == 401
    code = rp.user.totp.at(clock.now)
    assert rp.browser.post("/login/code", data={"code": code}).status_code == 302
    rp.browser.post("/logout", data={"confirm": "1"})
    sign_in_password(rp.browser, rp.user)
    replayed = rp.browser.post("/login/code", data={"code": code})
    assert replayed.status_code == 401 and "already used" in replayed.get_data(as_text=True)


def test_too_many_wrong_codes_lock_the_account_for_a_while(app, rp, clock):
    sign_in_password(rp.browser, rp.user)
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"]):
        rp.browser.post("/login/code", data={"code": "000000"})
    locked = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert locked.status_code == 429 and "try again in" in locked.get_data(as_text=True)
    clock.advance(seconds=app.config["LOGIN_LOCKOUT_BASE"] + 1)
    assert rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)}).status_code == 302


def test_entering_the_password_again_does_not_buy_more_guesses_at_the_code(app, rp, clock):
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"] - 1):
        sign_in_password(rp.browser, rp.user)
        assert rp.browser.post("/login/code", data={"code": "000000"}).status_code == 401
    assert path(sign_in_password(rp.browser, rp.user)) == "/login/code"
    locked = rp.browser.post("/login/code", data={"code": "000000"})
    assert locked.status_code == 429 and "try again in" in locked.get_data(as_text=True)


def test_an_address_without_an_account_is_locked_out_like_one_with(make_app, clock):
    """Otherwise the lockout tells which addresses have an account."""
    app = make_app(RATELIMIT_LOGIN="100 per minute")  # the per-address limit, not the per-IP one
    client, user = app.test_client(), make_user(app)

    def wrong_passwords(email: str) -> list[tuple[int, str]]:
        answers = []
        for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"] + 1):
            response = client.post("/login", data={"email": email, "password": "not the password"})
            message = re.search(r'role="alert">([^<]+)<', response.get_data(as_text=True)).group(1)
            answers.append((response.status_code, message))
        return answers

    assert wrong_passwords("nobody@example.com") == wrong_passwords(user.email)
    clock.advance(seconds=app.config["LOGIN_LOCKOUT_BASE"] + 1)
    assert wrong_passwords("nobody@example.com") == wrong_passwords(user.email)


def test_a_finished_sign_in_forgets_the_wrong_tries(app, rp, clock):
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"] - 1):
        rp.browser.post("/login", data={"email": rp.user.email, "password": "not the password"})
    rp.sign_in(rp.authorize())
    rp.browser.post("/login", data={"email": rp.user.email, "password": "not the password"})
    assert path(sign_in_password(rp.browser, rp.user)) == "/login/code"


# -- trusted computer ------------------------------------------------------------------


def test_trusted_computer_skips_mfa_for_seven_days(rp, clock):
    rp.sign_in(rp.authorize(), trust=True)
    cookie = rp.browser.get_cookie("portal_trusted")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    rp.browser.delete_cookie("portal_session")  # the browser was closed: the SSO session is gone
    clock.advance(days=6)
    response = sign_in_password(rp.browser, rp.user)
    assert path(response) == "/"  # no code asked
    code = rp.code_from(rp.authorize())
    claims = rp.id_token(rp.token(code).json["id_token"])
    assert claims["amr"] == ["pwd"] and claims["acr"].endswith(":pwd")

    rp.browser.delete_cookie("portal_session")
    clock.advance(days=1, seconds=1)
    assert path(sign_in_password(rp.browser, rp.user)) == "/login/code"


def test_logout_removes_the_trusted_computer(app, rp, clock):
    rp.sign_in(rp.authorize(), trust=True)
    rp.browser.post("/logout", data={"confirm": "1"})
    assert rp.browser.get_cookie("portal_trusted") is None
    with app.app_context():
        assert db.session.query(TrustedComputer).count() == 0
    assert path(sign_in_password(rp.browser, rp.user)) == "/login/code"


@pytest.mark.parametrize("how", ["acr_values", "require_mfa"])
def test_an_app_can_demand_fresh_mfa_on_a_trusted_computer(rp, clock, how):
    rp.sign_in(rp.authorize(), trust=True)
    rp.browser.delete_cookie("portal_session")
    clock.advance(hours=1)
    sign_in_password(rp.browser, rp.user)  # password only: trusted
    if how == "acr_values":
        response = rp.authorize(acr_values="urn:login-portal:acr:mfa")
    else:
        response = rp.authorize(client_id="mfa-app", redirect_uri="https://rp.example.test/strict")
    assert path(response) == "/login/step-up"
    response = rp.browser.get(response.location)
    assert path(response) == "/login/code"
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    code = rp.code_from(rp.browser.get(response.location))
    client_id = "client" if how == "acr_values" else "mfa-app"
    redirect_uri = CALLBACK if how == "acr_values" else "https://rp.example.test/strict"
    tokens = rp.token(code, client_id=client_id, secret=SECRETS["client"], redirect_uri=redirect_uri).json
    claims = rp.id_token(tokens["id_token"], client_id)
    assert "mfa" in claims["amr"] and claims["acr"].endswith(":mfa")


# -- Manage MFA -------------------------------------------------------------------------


def test_changes_need_a_fresh_sign_in(rp, clock):
    rp.sign_in(rp.authorize())
    clock.advance(minutes=6)
    response = rp.browser.get("/mfa/setup/email")
    assert path(response) == "/login" and query(response.location)["reauth"] == "1"
    response = rp.browser.post(response.location, data={"email": rp.user.email, "password": rp.user.password})
    assert path(response) == "/login/code"  # even a trusted computer gives a code here
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert response.location.rstrip("?") == "/mfa/setup/email"
    assert rp.browser.get("/mfa/setup/email").status_code == 200


def test_the_last_method_cannot_be_removed(app, rp):
    rp.sign_in(rp.authorize())
    page = rp.browser.get("/account/mfa").get_data(as_text=True)
    assert "Remove" not in page and "can't be removed" in page
    with app.app_context():
        from oidc_provider.models import MfaMethod

        method_id = db.session.query(MfaMethod).one().id
    response = rp.browser.post(f"/account/mfa/{method_id}/remove")
    assert response.status_code == 303
    assert "only sign-in method" in rp.browser.get("/account/mfa").get_data(as_text=True)
    with app.app_context():
        assert db.session.query(MfaMethod).count() == 1
