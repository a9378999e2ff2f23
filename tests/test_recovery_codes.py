"""Recovery codes as a person meets them: ten shown once when the first
method is set up and on demand in Manage MFA, stored hashed, single use;
one signs in where a code is asked for, is audited and mailed ("N left")
and leads to Manage MFA; guesses count like codes; a reminder below 3."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from mailserver import text_of
from rp import RP, make_user

from oidc_provider import audit, interaction, mfa, recovery
from oidc_provider.db import db
from oidc_provider.models import MfaMethod, RecoveryCode, User

CODE = re.compile(r"<code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code>")


@pytest.fixture
def app(mail_app):
    return mail_app


def path(response) -> str:
    return urlsplit(response.location).path


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def codes_on(response) -> list[str]:
    return CODE.findall(response.get_data(as_text=True))


def give_codes(app, person) -> list[str]:
    with app.app_context():
        return recovery.generate(db.session.get(User, person.id))


def password_step(rp: RP, start=None) -> object:
    start = start or rp.authorize()
    return rp.browser.post(start.location, data={"email": rp.user.email, "password": rp.user.password})


def test_the_first_method_shows_ten_recovery_codes_once(app, client, clock):
    person = make_user(app, email="xander@example.com", totp=False)
    browser = RP(app, client, clock, person)
    response = password_step(browser)
    assert path(response) == "/mfa/setup"
    client.get("/mfa/setup/authenticator")
    with app.app_context():
        method = db.session.scalars(db.select(MfaMethod).filter_by(user_id=person.id)).one()
        secret = parse_qs(urlsplit(mfa.provisioning_uri(method)).query)["secret"][0]
    response = client.post("/mfa/setup/authenticator", data={"code": pyotp.TOTP(secret).at(clock.now)})
    assert path(response) == "/login/enrolled"
    welcome = client.get(client.get(response.location).location)

    codes = codes_on(welcome)
    assert len(codes) == 10 == len(set(codes))
    assert "this is the only time they are shown" in text(welcome)
    assert welcome.headers["Cache-Control"] == "no-store"
    assert (
        codes_on(client.get(urlsplit(welcome.request.url).path + "?" + welcome.request.query_string.decode()))
        == []
    )
    with app.app_context():  # stored hashed: no code in the database
        hashes = [r.code_hash for r in db.session.scalars(db.select(RecoveryCode))]
        assert len(hashes) == 10 and not set(codes) & set(hashes)
        assert all(c.replace("-", "") not in h for c in codes for h in hashes)


def test_a_new_set_in_manage_mfa_ends_the_old_one(rp, app):
    old = give_codes(app, rp.user)
    rp.sign_in(rp.authorize())
    manage = text(rp.browser.get("/account/mfa"))
    assert "10 of 10 codes left" in manage

    response = rp.browser.post("/account/mfa/recovery-codes")

    new = codes_on(response)
    assert response.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        assert not recovery.use(user, old[0]) and recovery.use(user, new[0])
        [event] = audit.query(user_id=rp.user.id, events=["recovery_codes_generated"])
        assert event.details == {"count": 10}


def test_new_codes_need_a_fresh_sign_in(rp, app, clock):
    rp.sign_in(rp.authorize())
    clock.advance(minutes=6)

    response = rp.browser.post("/account/mfa/recovery-codes")

    assert response.status_code == 302 and "reauth=1" in response.location


def test_a_recovery_code_signs_in_once_is_mailed_and_leads_to_manage_mfa(rp, app, smtp_server):
    codes = give_codes(app, rp.user)
    start = rp.authorize()
    assert path(password_step(rp, start)) == "/login/code"
    assert "Use a recovery code" in text(rp.browser.get("/login/code"))

    response = rp.browser.post("/login/recovery", data={"code": codes[3].upper().replace("-", " ")})

    assert path(response) == "/account/mfa"
    going_on = parse_qs(urlsplit(response.location).query)["next"][0]
    manage = text(rp.browser.get(response.location))
    assert "You signed in with a recovery code; 9 are left. Set up a new sign-in method now." in manage
    assert "Continue" in manage and urlsplit(going_on).path == "/authorize"
    tokens = rp.token(rp.code_from(rp.browser.get(going_on))).json
    claims = rp.checked_id_token(tokens)
    assert claims["acr"] == interaction.ACR_MFA and claims["amr"] == ["pwd", "mfa"]
    [mail] = [m for m in smtp_server.to(rp.user.email) if "recovery code was used" in m["Subject"]]
    assert "9 recovery codes are left" in text_of(mail)
    with app.app_context():
        [event] = audit.query(user_id=rp.user.id, events=["recovery_code_used"])
        assert event.details["left"] == 9
        [signin] = audit.query(user_id=rp.user.id, events=["signin_ok"])
        assert signin.details["method"] == "recovery"

    rp.browser.post("/logout", data={"confirm": "1"})
    password_step(rp)
    again = rp.browser.post("/login/recovery", data={"code": codes[3]})
    assert again.status_code == 401 and "already used" in text(again)


def test_recovery_codes_are_guesses_under_the_lockout(rp, app):
    give_codes(app, rp.user)
    password_step(rp)
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCKOUT"] - 1):
        response = rp.browser.post("/login/recovery", data={"code": "aaaa-bbbb-cccc-dddd"})
        assert response.status_code == 401

    response = rp.browser.post("/login/recovery", data={"code": "aaaa-bbbb-cccc-dddd"})

    assert response.status_code == 429 and "Too many failed attempts" in text(response)
    with app.app_context():
        failed = audit.query(user_id=rp.user.id, events=["mfa_failed"])
        assert {e.details["method"] for e in failed} == {"recovery"}


def test_something_not_shaped_like_a_code_costs_no_try(rp, app):
    give_codes(app, rp.user)
    password_step(rp)

    response = rp.browser.post("/login/recovery", data={"code": "123456"})

    assert response.status_code == 422 and "16 letters and digits" in text(response)
    with app.app_context():
        assert db.session.get(User, rp.user.id).failed_logins == 0


def test_fewer_than_three_left_shows_a_reminder(rp, app):
    codes = give_codes(app, rp.user)
    with app.app_context():
        user = db.session.get(User, rp.user.id)
        for code in codes[:7]:
            assert recovery.use(user, code)
    rp.sign_in(rp.authorize())
    assert "recovery codes are left" not in text(rp.browser.get("/"))  # 3 left
    with app.app_context():
        assert recovery.use(db.session.get(User, rp.user.id), codes[7])

    assert "Only 2 recovery codes are left." in text(rp.browser.get("/"))
    assert "Only 2 recovery codes are left." in text(rp.browser.get("/account/mfa"))


def test_an_account_without_codes_is_reminded_to_make_them(rp, app):
    rp.sign_in(rp.authorize())
    assert "You have no recovery codes." in text(rp.browser.get("/"))
