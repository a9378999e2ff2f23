"""A sign-in between its password and its second step lives on the server
(`PendingSignIn`): the browser holds a random id, it works once, for
minutes, and dies when the person signs out, changes or resets the password,
is disabled or has their MFA reset by support."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from mailserver import links
from rp import RP, make_user
from test_signin_mfa import enrol_authenticator

from oidc_provider import sessions
from oidc_provider.db import db, token_hash
from oidc_provider.models import PendingSignIn

NEW_PASSWORD = "a new passphrase after the scare"
COOKIE = "portal_session"


@pytest.fixture
def app(mail_app):
    return mail_app


def path(response) -> str:
    return urlsplit(response.location).path


def password_step(browser, person) -> str:
    response = browser.post("/login", data={"email": person.email, "password": person.password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return path(response)


def copy_of_cookies(app, browser):
    """Another browser holding a copy of `browser`'s session cookie (a thief's)."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, browser.get_cookie(COOKIE).value)
    return thief


def reset_password(browser, smtp_server, person) -> None:
    """The person sets a new password through the emailed link."""
    assert browser.post("/forgot-password", data={"email": person.email}).status_code == 303
    [link] = [u for u in links(smtp_server.last(person.email)) if "/reset-password/" in u]
    done = browser.post(urlsplit(link).path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert "Your password has been changed" in done.get_data(as_text=True)


def test_a_copy_of_the_cookie_replayed_after_sign_out_and_reset_ends_at_the_sign_in_page(
    app, smtp_server, clock
):
    """F-05 part A: a copy of Kim's cookie taken right after his enrolment
    code, replayed at /login/enrolled once Kim signed out and reset his
    password, signed the thief in (no password, no code)."""
    kim = make_user(app, email="kim@example.com", totp=False)
    browser = app.test_client()
    assert password_step(browser, kim) == "/mfa/setup"
    otp = enrol_authenticator(browser)
    response = browser.post("/mfa/setup/authenticator", data={"code": otp.at(clock.now)})
    assert path(response) == "/login/enrolled"
    thief = copy_of_cookies(app, browser)
    assert path(browser.get("/login/enrolled")) == "/account/mfa/welcome"  # Kim is signed in

    signed_out = browser.post("/logout", data={"confirm": "1"})
    assert "You are signed out" in signed_out.get_data(as_text=True)
    reset_password(browser, smtp_server, kim)

    replayed = thief.get("/login/enrolled")
    assert path(replayed) == "/login"
    assert path(thief.get("/account")) == "/login"
    assert path(thief.get("/login/code")) == "/login"


def test_a_phished_password_step_dies_with_a_reset_and_a_support_mfa_reset(app, rp, smtp_server):
    """F-05 part B: an attacker with Leo's phished password stops at the code
    step; Leo resets his password, support resets his MFA; the attacker's
    pending cookie then led to /mfa/setup, where he enrolled his own
    authenticator for Leo."""
    attacker = app.test_client()
    assert password_step(attacker, rp.user) == "/login/code"

    reset_password(app.test_client(), smtp_server, rp.user)
    result = app.test_cli_runner().invoke(
        args=["mfa", "reset", rp.user.email, "--reason", "reported phishing, ticket 77"]
    )
    assert result.exit_code == 0, result.output

    assert path(attacker.get("/login/code")) == "/login"
    assert path(attacker.get("/mfa/setup")) == "/login"
    assert path(attacker.post("/mfa/setup/authenticator", data={"code": "123456"})) == "/login"
    assert path(attacker.get("/login/enrolled")) == "/login"
    assert path(attacker.get("/account")) == "/login"


def test_the_browser_holds_only_a_random_id_whose_hash_is_stored(app, rp):
    rp.browser.post("/login", data={"email": rp.user.email, "password": rp.user.password})
    cookie = rp.browser.get_cookie(COOKIE).value
    data = app.session_interface.get_signing_serializer(app).loads(cookie)
    assert set(data) == {sessions.PENDING_KEY}
    token = data[sessions.PENDING_KEY]
    assert len(token) >= 43  # 256 bits
    with app.app_context():
        [row] = db.session.scalars(db.select(PendingSignIn)).all()
        assert row.token_hash == token_hash(token) != token
        assert (row.purpose, row.user_id, row.consumed_at) == ("signin", rp.user.id, None)
        assert (row.expires_at - row.created_at).total_seconds() == 300


def test_a_pending_sign_in_works_once(app, rp, clock):
    assert password_step(rp.browser, rp.user) == "/login/code"
    second_tab = copy_of_cookies(app, rp.browser)
    done = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert done.status_code == 302 and path(done) == "/"
    with app.test_request_context():
        [row] = db.session.scalars(db.select(PendingSignIn)).all()
        assert row.consumed_at is not None
        assert sessions.consume_pending(row) is False  # as a concurrent request would find it
    clock.advance(seconds=30)
    again = second_tab.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert path(again) == "/login"  # the code is right, but this sign-in was finished
    assert path(second_tab.get("/account")) == "/login"


def test_a_pending_sign_in_lives_five_minutes(app, rp, clock):
    assert password_step(rp.browser, rp.user) == "/login/code"
    clock.advance(seconds=app.config["PENDING_SIGNIN_LIFETIME"] - 1)
    assert rp.browser.get("/login/code").status_code == 200
    clock.advance(seconds=2)
    late = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert path(late) == "/login"
    assert "Enter your password again." in rp.browser.get(late.location).get_data(as_text=True)
    assert path(rp.browser.get("/account")) == "/login"


def change_password_elsewhere(app, rp, clock) -> None:
    other = RP(app, app.test_client(), clock, rp.user)
    other.sign_in(other.authorize())
    response = other.browser.post(
        "/account/password",
        data={"current": rp.user.password, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 303


def sign_out_elsewhere(app, rp, clock) -> None:
    other = RP(app, app.test_client(), clock, rp.user)
    other.sign_in(other.authorize())
    assert "You are signed out" in other.browser.post("/logout", data={"confirm": "1"}).get_data(as_text=True)


def disable(app, rp, clock) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "disable", rp.user.email, "--reason", "left"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", rp.user.email]).exit_code == 0  # back, but not the sign-in


@pytest.mark.parametrize("event", [change_password_elsewhere, sign_out_elsewhere, disable])
def test_a_pending_sign_in_dies_when_the_person_signs_out_or_changes_password_or_is_disabled(
    app, rp, clock, event
):
    assert password_step(rp.browser, rp.user) == "/login/code"
    event(app, rp, clock)
    clock.advance(seconds=30)
    response = rp.browser.post("/login/code", data={"code": rp.user.totp.at(clock.now)})
    assert path(response) == "/login"


def test_signing_out_drops_this_browsers_sign_in_in_progress(app, rp):
    assert password_step(rp.browser, rp.user) == "/login/code"
    copy = copy_of_cookies(app, rp.browser)
    rp.browser.post("/logout", data={"confirm": "1"})
    assert path(rp.browser.get("/login/code")) == "/login"
    assert path(copy.get("/login/code")) == "/login"
    with app.app_context():
        assert db.session.scalars(db.select(PendingSignIn)).all() == []
